//! The SSE splitter: any split of the input gives identical events.
#![no_main]
use libfuzzer_sys::fuzz_target;
use llm_router::relay::sse::EventSplitter;

fuzz_target!(|input: (Vec<u8>, u8)| {
    let (data, cut) = input;
    let cut = usize::from(cut).min(data.len());
    let collect = |parts: &[&[u8]]| {
        let mut s = EventSplitter::default();
        let mut out = Vec::new();
        for p in parts {
            s.push(p);
            while let Some(e) = s.next_event() {
                out.extend_from_slice(&e);
            }
        }
        if let Some(rest) = s.take_rest() {
            out.extend_from_slice(&rest);
        }
        out
    };
    assert_eq!(collect(&[&data]), collect(&[&data[..cut], &data[cut..]]));
});
