//! One cached answer, and its bytes in Redis.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use crate::usage::TokenUsage;

/// Whether the answer was a whole body or a stream of events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    Json,
    Stream,
}

/// An answer as the client got it, and what it cost when it was fresh.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub kind: Kind,
    /// The body (one part), or the events in order, each as sent.
    pub parts: Vec<Bytes>,
    pub content_type: String,
    /// The usage the fresh answer was charged: what a hit saves.
    pub usage: TokenUsage,
    /// Its cost, where the model had a price.
    pub cost_nanos: Option<u64>,
    pub group: String,
}

/// What goes before the parts in the stored form.
#[derive(Serialize, Deserialize)]
struct Header {
    kind: Kind,
    content_type: String,
    prompt_tokens: u64,
    completion_tokens: u64,
    cached_prompt_tokens: u64,
    cost_nanos: Option<u64>,
    group: String,
    parts: u32,
}

impl Entry {
    /// Bytes it holds (what the memory store weighs it by).
    pub fn size(&self) -> usize {
        self.parts.iter().map(Bytes::len).sum::<usize>() + self.content_type.len() + 64
    }

    /// The stored form: a JSON header, then each part with its length.
    pub fn encode(&self) -> Vec<u8> {
        let header = Header {
            kind: self.kind,
            content_type: self.content_type.clone(),
            prompt_tokens: self.usage.prompt_tokens,
            completion_tokens: self.usage.completion_tokens,
            cached_prompt_tokens: self.usage.cached_prompt_tokens,
            cost_nanos: self.cost_nanos,
            group: self.group.clone(),
            parts: self.parts.len() as u32,
        };
        let head = serde_json::to_vec(&header).unwrap_or_default();
        let mut out = BytesMut::with_capacity(self.size() + head.len());
        out.put_u32(head.len() as u32);
        out.put_slice(&head);
        for part in &self.parts {
            out.put_u32(part.len() as u32);
            out.put_slice(part);
        }
        out.to_vec()
    }

    /// Reads the stored form back; `None` for anything else.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let mut buf = bytes;
        let take = |buf: &mut &[u8]| -> Option<Bytes> {
            if buf.remaining() < 4 {
                return None;
            }
            let len = buf.get_u32() as usize;
            if buf.remaining() < len {
                return None;
            }
            let part = Bytes::copy_from_slice(&buf[..len]);
            buf.advance(len);
            Some(part)
        };
        let header: Header = serde_json::from_slice(&take(&mut buf)?).ok()?;
        let parts = (0..header.parts)
            .map(|_| take(&mut buf))
            .collect::<Option<Vec<_>>>()?;
        buf.is_empty().then(|| Self {
            kind: header.kind,
            parts,
            content_type: header.content_type,
            usage: TokenUsage {
                prompt_tokens: header.prompt_tokens,
                completion_tokens: header.completion_tokens,
                total_tokens: header.prompt_tokens + header.completion_tokens,
                cached_prompt_tokens: header.cached_prompt_tokens,
            },
            cost_nanos: header.cost_nanos,
            group: header.group,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_survive_the_stored_form_and_garbage_does_not_pass() {
        let e = Entry {
            kind: Kind::Stream,
            parts: vec![
                Bytes::from_static(b"data: {}\n\n"),
                Bytes::from_static(b"data: [DONE]\n\n"),
            ],
            content_type: "text/event-stream".into(),
            usage: TokenUsage {
                prompt_tokens: 10,
                completion_tokens: 3,
                total_tokens: 13,
                cached_prompt_tokens: 4,
            },
            cost_nanos: Some(1234),
            group: "g".into(),
        };
        let bytes = e.encode();
        assert_eq!(Entry::decode(&bytes), Some(e.clone()));
        assert_eq!(Entry::decode(&bytes[..bytes.len() - 1]), None);
        assert_eq!(Entry::decode(b"garbage"), None);
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(Entry::decode(&longer), None);
        assert!(e.size() > 24);
    }
}
