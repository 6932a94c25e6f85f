//! The process's allocator: mimalloc, asked the way its fast path expects.
//!
//! `mimalloc::MiMalloc` passes every request to `mi_malloc_aligned`, even
//! for the 8- and 16-byte alignments that all of mimalloc's blocks already
//! have. In mimalloc v3 that call takes its quick path only when the page
//! of the right size has a free block at hand and the size is at most
//! 1 KiB. Otherwise it asks whether the size is "naturally aligned" (a
//! power of two up to 4 KiB), and when it is not (a 48-byte header map, an
//! 8 KiB read buffer) it over-allocates by `align - 1` and aligns inside.
//! That is a bigger size class than asked for, and the page is marked as
//! holding interior pointers. Callgrind counted 9 of the 28 allocations of
//! a proxied request on that path, at about 200 instructions each.
//!
//! So an alignment that `mi_malloc` guarantees anyway (`MI_MAX_ALIGN_SIZE`,
//! 16 bytes, and never more than the size, as the C standard's `malloc`
//! and Rust's own `System` allocator reason) goes to the plain entry
//! points; only larger alignments (tokio's cache-padded cells) take the
//! aligned ones. Frees are the same call either way.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// mimalloc's `MI_MAX_ALIGN_SIZE`: every block it hands out is aligned to
/// this, or to its own size when that is smaller (an 8-byte block to 8).
const PLAIN_ALIGN: usize = 16;

/// mimalloc, with natural alignments sent to `mi_malloc`/`mi_realloc`.
pub struct Allocator;

impl Allocator {
    /// Whether `mi_malloc` of `layout.size()` bytes is sure to be aligned
    /// to `layout.align()`.
    #[inline]
    fn plain(layout: Layout) -> bool {
        layout.align() <= PLAIN_ALIGN && layout.align() <= layout.size()
    }
}

// SAFETY: each method returns memory from mimalloc that satisfies the
// layout: `plain` holds only where `mi_malloc`'s guaranteed alignment
// covers it, and every other case goes to mimalloc's aligned calls.
// `mi_free` releases blocks from either family.
unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: plain calls into the allocator with a nonzero size.
        unsafe {
            if Self::plain(layout) {
                mi::mi_malloc(layout.size()).cast()
            } else {
                mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        unsafe {
            if Self::plain(layout) {
                mi::mi_zalloc(layout.size()).cast()
            } else {
                mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator, so from mimalloc.
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator with `layout`; the new
        // block keeps the old alignment, checked against the new size.
        unsafe {
            let new = Layout::from_size_align_unchecked(new_size, layout.align());
            if Self::plain(new) {
                mi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_only_where_malloc_guarantees_the_alignment() {
        let plain = |size, align| Allocator::plain(Layout::from_size_align(size, align).unwrap());
        assert!(plain(1, 1));
        assert!(plain(8, 8));
        assert!(plain(48, 8));
        assert!(plain(8192, 8));
        assert!(plain(16, 16));
        assert!(plain(24, 8));
        // An 8-byte block is only 8-aligned.
        assert!(!plain(8, 16));
        assert!(!plain(128, 32));
        assert!(!plain(256, 128));
    }

    /// Every layout a program may ask for gets memory aligned as asked,
    /// that holds its bytes, and survives growing and shrinking.
    #[test]
    fn blocks_are_aligned_and_keep_their_bytes() {
        let a = Allocator;
        for align in [1, 2, 4, 8, 16, 32, 64, 128, 4096] {
            for size in [1, 7, 8, 15, 16, 24, 48, 100, 1024, 1025, 4096, 8192, 70_000] {
                let Ok(layout) = Layout::from_size_align(size, align) else {
                    continue;
                };
                // SAFETY: nonzero sizes; every block is freed with its layout.
                unsafe {
                    let p = a.alloc(layout);
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "size {size} align {align}");
                    p.write_bytes(0xA5, size);
                    let grown = a.realloc(p, layout, size * 3);
                    assert_eq!(grown as usize % align, 0);
                    assert!((0..size).all(|i| *grown.add(i) == 0xA5));
                    let grown_layout = Layout::from_size_align(size * 3, align).unwrap();
                    let shrunk = a.realloc(grown, grown_layout, size.div_ceil(2));
                    assert_eq!(shrunk as usize % align, 0);
                    assert!((0..size.div_ceil(2)).all(|i| *shrunk.add(i) == 0xA5));
                    a.dealloc(
                        shrunk,
                        Layout::from_size_align(size.div_ceil(2), align).unwrap(),
                    );

                    let z = a.alloc_zeroed(layout);
                    assert_eq!(z as usize % align, 0);
                    assert!((0..size).all(|i| *z.add(i) == 0));
                    a.dealloc(z, layout);
                }
            }
        }
    }
}
