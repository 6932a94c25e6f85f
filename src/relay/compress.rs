//! Compression of SSE streams, one flush per event.
//!
//! tower-http's `CompressionLayer` compresses JSON responses but (rightly)
//! skips `text/event-stream`, since a buffering encoder would hold events
//! back. Here each event is written to the encoder and flushed, so every
//! event leaves as a decodable block the moment it arrives.

use async_compression::Level;
use async_compression::tokio::write::{BrotliEncoder, GzipEncoder, ZstdEncoder};
use bytes::Bytes;
use http::HeaderValue;
use tokio::io::AsyncWriteExt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Br,
    Zstd,
    Gzip,
}

impl Encoding {
    pub fn header_value(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Self::Br => "br",
            Self::Zstd => "zstd",
            Self::Gzip => "gzip",
        })
    }
}

/// Picks an encoding from `Accept-Encoding`, honouring q-values. At equal q
/// we prefer br, then zstd, then gzip. `identity` and unknown codings mean
/// no compression unless a supported one is also acceptable.
pub fn negotiate(accept_encoding: Option<&HeaderValue>) -> Option<Encoding> {
    let header = accept_encoding?.to_str().ok()?;
    let mut best: Option<(Encoding, u32)> = None;
    let mut star: Option<u32> = None;
    let mut seen = [false; 3];
    for item in header.split(',') {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .find_map(|p| p.trim().strip_prefix("q=").map(parse_q))
            .unwrap_or(1000);
        let enc = match name.as_str() {
            "br" => Encoding::Br,
            "zstd" => Encoding::Zstd,
            "gzip" | "x-gzip" => Encoding::Gzip,
            "*" => {
                star = Some(q);
                continue;
            }
            _ => continue,
        };
        seen[enc as usize] = true;
        consider(&mut best, enc, q);
    }
    if let Some(q) = star {
        for enc in [Encoding::Br, Encoding::Zstd, Encoding::Gzip] {
            if !seen[enc as usize] {
                consider(&mut best, enc, q);
            }
        }
    }
    best.map(|(e, _)| e)
}

fn consider(best: &mut Option<(Encoding, u32)>, enc: Encoding, q: u32) {
    if q == 0 {
        return;
    }
    let better = match best {
        None => true,
        Some((b, bq)) => q > *bq || (q == *bq && (enc as usize) < (*b as usize)),
    };
    if better {
        *best = Some((enc, q));
    }
}

/// q-value in thousandths; malformed values count as 0 (not acceptable).
fn parse_q(raw: &str) -> u32 {
    match raw.trim().parse::<f32>() {
        Ok(q) if (0.0..=1.0).contains(&q) => (q * 1000.0).round() as u32,
        _ => 0,
    }
}

/// A streaming encoder that emits one flushed block per event.
/// Brotli's state is large; it is boxed so the enum stays small.
pub enum EventEncoder {
    Br(Box<BrotliEncoder<Vec<u8>>>),
    Zstd(ZstdEncoder<Vec<u8>>),
    Gzip(GzipEncoder<Vec<u8>>),
}

impl EventEncoder {
    pub fn new(encoding: Encoding) -> Self {
        // Fast levels: events are small and latency matters more than ratio.
        let level = Level::Fastest;
        match encoding {
            Encoding::Br => Self::Br(Box::new(BrotliEncoder::with_quality(Vec::new(), level))),
            Encoding::Zstd => Self::Zstd(ZstdEncoder::with_quality(Vec::new(), level)),
            Encoding::Gzip => Self::Gzip(GzipEncoder::with_quality(Vec::new(), level)),
        }
    }

    /// Compresses `event` and flushes, returning the bytes to send now.
    pub async fn encode(&mut self, event: &[u8]) -> std::io::Result<Bytes> {
        match self {
            Self::Br(e) => write_flush(&mut **e, event).await,
            Self::Zstd(e) => write_flush(e, event).await,
            Self::Gzip(e) => write_flush(e, event).await,
        }
    }

    /// Compresses `data` without flushing: its bytes come with the next
    /// flush or [`Self::finish`].
    pub async fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Self::Br(e) => e.write_all(data).await,
            Self::Zstd(e) => e.write_all(data).await,
            Self::Gzip(e) => e.write_all(data).await,
        }
    }

    /// Compresses `data` without flushing, and returns whatever compressed
    /// bytes are ready (often none): for a body relayed as it arrives,
    /// where blocks need not be decodable one by one.
    pub async fn write_out(&mut self, data: &[u8]) -> std::io::Result<Bytes> {
        self.write(data).await?;
        Ok(match self {
            Self::Br(e) => Bytes::from(std::mem::take(e.buffer())),
            Self::Zstd(e) => Bytes::from(std::mem::take(e.buffer())),
            Self::Gzip(e) => Bytes::from(std::mem::take(e.buffer())),
        })
    }

    /// Ends the compressed stream, returning what it has not yet returned.
    pub async fn finish(&mut self) -> std::io::Result<Bytes> {
        match self {
            Self::Br(e) => shutdown(&mut **e).await,
            Self::Zstd(e) => shutdown(e).await,
            Self::Gzip(e) => shutdown(e).await,
        }
    }
}

/// Compresses a whole body in one go (no intermediate flush).
pub async fn whole(encoding: Encoding, body: &[u8]) -> std::io::Result<Bytes> {
    let mut encoder = EventEncoder::new(encoding);
    encoder.write(body).await?;
    encoder.finish().await
}

trait IntoVec: tokio::io::AsyncWrite + Unpin {
    fn buffer(&mut self) -> &mut Vec<u8>;
}
impl IntoVec for BrotliEncoder<Vec<u8>> {
    fn buffer(&mut self) -> &mut Vec<u8> {
        self.get_mut()
    }
}
impl IntoVec for ZstdEncoder<Vec<u8>> {
    fn buffer(&mut self) -> &mut Vec<u8> {
        self.get_mut()
    }
}
impl IntoVec for GzipEncoder<Vec<u8>> {
    fn buffer(&mut self) -> &mut Vec<u8> {
        self.get_mut()
    }
}

async fn write_flush<W: IntoVec>(w: &mut W, data: &[u8]) -> std::io::Result<Bytes> {
    w.write_all(data).await?;
    w.flush().await?;
    Ok(Bytes::from(std::mem::take(w.buffer())))
}

async fn shutdown<W: IntoVec>(w: &mut W) -> std::io::Result<Bytes> {
    w.shutdown().await?;
    Ok(Bytes::from(std::mem::take(w.buffer())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn neg(s: &str) -> Option<Encoding> {
        negotiate(Some(&HeaderValue::from_str(s).unwrap()))
    }

    #[test]
    fn negotiation_honours_q_values() {
        assert_eq!(neg("gzip"), Some(Encoding::Gzip));
        assert_eq!(neg("gzip, deflate, br"), Some(Encoding::Br));
        assert_eq!(neg("br;q=0.5, gzip;q=0.9"), Some(Encoding::Gzip));
        assert_eq!(neg("zstd, gzip;q=0.1"), Some(Encoding::Zstd));
        assert_eq!(neg("br;q=0, gzip;q=0"), None);
        assert_eq!(neg("identity"), None);
        assert_eq!(neg("*;q=0.2, br;q=0"), Some(Encoding::Zstd));
        assert_eq!(neg("deflate"), None);
        assert_eq!(negotiate(None), None);
    }

    #[tokio::test]
    async fn each_flushed_block_decodes_on_its_own() {
        use async_compression::tokio::bufread::GzipDecoder;
        use tokio::io::AsyncReadExt;
        let mut enc = EventEncoder::new(Encoding::Gzip);
        let first = enc.encode(b"data: one\n\n").await.unwrap();
        assert!(!first.is_empty(), "flush must emit bytes for the event");
        // The first block alone decodes to the first event (a partial stream).
        let mut dec = GzipDecoder::new(&first[..]);
        let mut out = vec![0u8; 64];
        let n = dec.read(&mut out).await.unwrap();
        assert_eq!(&out[..n], b"data: one\n\n");
        let second = enc.encode(b"data: two\n\n").await.unwrap();
        let trailer = enc.finish().await.unwrap();
        let all = [first, second, trailer].concat();
        let mut text = String::new();
        GzipDecoder::new(&all[..])
            .read_to_string(&mut text)
            .await
            .unwrap();
        assert_eq!(text, "data: one\n\ndata: two\n\n");
    }
}
