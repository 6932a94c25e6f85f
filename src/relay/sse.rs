//! Byte-level Server-Sent Events framing and the few facts we read from events.
//!
//! [`EventSplitter`] cuts a byte stream into whole events (up to and including
//! the blank line that ends each), whatever the network's read boundaries,
//! including splits inside a `\r\n` or a multi-byte UTF-8 character: it never
//! decodes text, it only looks for line endings. Events are forwarded as the
//! exact bytes received.

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::usage::TokenUsage;

#[derive(Debug, Default)]
pub struct EventSplitter {
    buf: BytesMut,
    /// Where the current line starts, and how far we have scanned.
    line_start: usize,
    scanned: usize,
}

impl EventSplitter {
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// The next complete event, if the buffer holds one.
    pub fn next_event(&mut self) -> Option<Bytes> {
        loop {
            let Some(at) = memchr::memchr2(b'\n', b'\r', &self.buf[self.scanned..]) else {
                // No line ends in what is held: the next push is scanned
                // from its own first byte, so an event arriving in many
                // reads costs its length once, not once per read.
                self.scanned = self.buf.len();
                return None;
            };
            let i = self.scanned + at;
            let end = match self.buf[i] {
                b'\n' => i + 1,
                // A lone `\r` at the end might be half of `\r\n`: wait.
                _ if i + 1 == self.buf.len() => {
                    self.scanned = i;
                    return None;
                }
                _ if self.buf[i + 1] == b'\n' => i + 2,
                _ => i + 1,
            };
            let blank = i == self.line_start;
            self.line_start = end;
            self.scanned = end;
            if blank {
                self.line_start = 0;
                self.scanned = 0;
                return Some(self.buf.split_to(end).freeze());
            }
        }
    }

    /// Bytes held for an event not yet complete.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Whatever is left when the stream ends (an unterminated last event).
    pub fn take_rest(&mut self) -> Option<Bytes> {
        self.line_start = 0;
        self.scanned = 0;
        (!self.buf.is_empty()).then(|| self.buf.split().freeze())
    }
}

/// The `data` of an event: its `data:` lines joined by `\n`. Borrowed when
/// there is a single data line (the usual case), so most events cost nothing.
pub fn data(event: &[u8]) -> Option<std::borrow::Cow<'_, [u8]>> {
    let mut out: Option<std::borrow::Cow<'_, [u8]>> = None;
    for line in lines(event) {
        let Some(value) = line.strip_prefix(b"data:") else {
            continue;
        };
        let value = value.strip_prefix(b" ").unwrap_or(value);
        out = Some(match out {
            None => std::borrow::Cow::Borrowed(value),
            Some(prev) => {
                let mut joined = prev.into_owned();
                joined.push(b'\n');
                joined.extend_from_slice(value);
                std::borrow::Cow::Owned(joined)
            }
        });
    }
    out
}

/// An event's lines, whichever of SSE's line endings (`\n`, `\r\n`, `\r`)
/// it uses (a `\r\n` yields an empty line too, which no field matches).
fn lines(event: &[u8]) -> impl Iterator<Item = &[u8]> {
    event.split(|&b| b == b'\n' || b == b'\r')
}

/// The value of an event's `event:` line (Anthropic names every event so),
/// if it has one.
pub fn event_name(event: &[u8]) -> Option<&str> {
    lines(event)
        .find_map(|line| line.strip_prefix(b"event:"))
        .map(|v| v.strip_prefix(b" ").unwrap_or(v))
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// What a chat-completion chunk tells us about usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChunkFacts {
    pub usage: Option<TokenUsage>,
    /// The chunk has `"choices": []`: the usage-only chunk.
    pub empty_choices: bool,
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Option<Vec<IgnoredAny>>,
    #[serde(default)]
    usage: Option<Usage>,
    /// Responses API: `response.completed` carries `response.usage`.
    #[serde(default)]
    response: Option<ResponseObject>,
}

#[derive(Deserialize)]
struct ResponseObject {
    #[serde(default)]
    usage: Option<Usage>,
}

/// The usage object of OpenAI chat completions (and of `/v1/completions` and
/// `/v1/embeddings`; the Responses API names the fields differently).
#[derive(Deserialize)]
pub struct Usage {
    #[serde(default, alias = "input_tokens")]
    prompt_tokens: u64,
    #[serde(default, alias = "output_tokens")]
    completion_tokens: u64,
    #[serde(default)]
    total_tokens: Option<u64>,
    #[serde(default, alias = "input_tokens_details")]
    prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Deserialize)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

impl From<Usage> for TokenUsage {
    fn from(u: Usage) -> Self {
        TokenUsage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u
                .total_tokens
                .unwrap_or(u.prompt_tokens + u.completion_tokens),
            cached_prompt_tokens: u
                .prompt_tokens_details
                .and_then(|d| d.cached_tokens)
                .unwrap_or(0),
        }
    }
}

/// Reads usage from a chunk's data, parsing only chunks that mention it.
pub fn chunk_facts(data: &[u8]) -> ChunkFacts {
    if memchr_usage(data)
        && let Ok(chunk) = serde_json::from_slice::<Chunk>(data)
    {
        return ChunkFacts {
            usage: chunk
                .usage
                .or(chunk.response.and_then(|r| r.usage))
                .map(Into::into),
            empty_choices: chunk.choices.is_some_and(|c| c.is_empty()),
        };
    }
    ChunkFacts::default()
}

fn memchr_usage(data: &[u8]) -> bool {
    data.windows(7).any(|w| w == b"\"usage\"")
}

/// Reads usage from a whole (non-streaming) JSON response body: from its
/// end, where OpenAI puts it, and walking the whole object only when it is
/// not there.
pub fn body_usage(body: &[u8]) -> Option<TokenUsage> {
    use crate::payload::scan::{last_member_value, top_level_value};
    let raw = last_member_value(body, "usage").or_else(|| top_level_value(body, "usage"))?;
    usage_value(raw)
}

/// Reads a `usage` member's raw value.
pub fn usage_value(raw: &[u8]) -> Option<TokenUsage> {
    serde_json::from_slice::<Option<Usage>>(raw)
        .ok()?
        .map(Into::into)
}

/// Whether an event's data is the last a client needs: OpenAI's `[DONE]`,
/// the Responses API's `response.completed`, or Anthropic's `message_stop`.
/// A client that closes after it has not lost anything.
pub fn ends_stream(data: &[u8]) -> bool {
    data == b"[DONE]"
        || (data.first() == Some(&b'{')
            && (memchr::memmem::find(data, b"\"response.completed\"").is_some()
                || memchr::memmem::find(data, b"\"message_stop\"").is_some())
            && matches!(
                crate::payload::scan::top_level_value(data, "type"),
                Some(b"\"response.completed\"" | b"\"message_stop\"")
            ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn split_all(input: &[u8], cuts: &[usize]) -> (Vec<Bytes>, Option<Bytes>) {
        let mut s = EventSplitter::default();
        let mut out = Vec::new();
        let mut last = 0;
        for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
            let cut = cut.clamp(last, input.len());
            s.push(&input[last..cut]);
            last = cut;
            while let Some(e) = s.next_event() {
                out.push(e);
            }
        }
        (out, s.take_rest())
    }

    #[test]
    fn pending_counts_the_bytes_of_the_unfinished_event() {
        let mut s = EventSplitter::default();
        assert_eq!(s.pending(), 0);
        s.push(b"data: a\n\ndata: par");
        assert_eq!(s.next_event().as_deref(), Some(&b"data: a\n\n"[..]));
        assert_eq!(s.pending(), b"data: par".len());
        s.push(b"tial\n\n");
        assert!(s.next_event().is_some());
        assert_eq!(s.pending(), 0);
    }

    #[test]
    fn bytes_already_scanned_are_not_scanned_again() {
        // A provider's event that never ends arrives in many reads: each
        // read is looked at once (the cost of an event is linear in its
        // length), whatever waits at the end of the buffer.
        let mut s = EventSplitter::default();
        s.push(b"data: aaaa");
        assert_eq!(s.next_event(), None);
        assert_eq!(s.scanned, 10);
        s.push(b"bbbb\r");
        assert_eq!(s.next_event(), None);
        // The lone `\r` is looked at again with the next read.
        assert_eq!(s.scanned, 14);
        s.push(b"\n\r\n");
        assert_eq!(
            s.next_event().as_deref(),
            Some(&b"data: aaaabbbb\r\n\r\n"[..])
        );
        assert_eq!((s.scanned, s.pending()), (0, 0));
    }

    #[test]
    fn event_names_and_data_with_any_line_ending() {
        assert_eq!(
            event_name(b"event: message_start\ndata: {}\n\n"),
            Some("message_start")
        );
        assert_eq!(event_name(b"data: {}\r\nevent:ping\r\n\r\n"), Some("ping"));
        assert_eq!(event_name(b"event: delta\rdata: x\r\r"), Some("delta"));
        assert_eq!(event_name(b"data: {\"event\": 1}\n\n"), None);
        assert_eq!(event_name(b": event: no\n\n"), None);
        assert_eq!(
            data(b"event: delta\rdata: x\r\r").as_deref(),
            Some(&b"x"[..])
        );
        assert_eq!(
            data(b"data: a\r\ndata: b\r\n\r\n").as_deref(),
            Some(&b"a\nb"[..])
        );
    }

    #[test]
    fn the_last_event_is_recognised_by_its_type_not_its_text() {
        assert!(ends_stream(b"[DONE]"));
        assert!(ends_stream(br#"{"type":"message_stop"}"#));
        assert!(ends_stream(
            br#"{"type":"response.completed","response":{}}"#
        ));
        assert!(!ends_stream(b" [DONE]"));
        assert!(!ends_stream(
            br#"{"type":"content_block_delta","delta":{"text":"\"message_stop\""}}"#
        ));
        assert!(!ends_stream(
            br#"{"type":"response.output_text.delta","delta":"\"response.completed\""}"#
        ));
        assert!(!ends_stream(br#"["message_stop"]"#));
        assert!(!ends_stream(br#"{"choices":[]}"#));
        // The name as a value of another member is not the type.
        assert!(!ends_stream(
            br#"{"type":"content_block_start","name":"message_stop"}"#
        ));
        assert!(!ends_stream(
            br#"{"type":"ping","note":"response.completed"}"#
        ));
    }

    #[test]
    fn splits_on_blank_lines_with_any_line_ending() {
        let input = b"data: a\n\ndata: b\r\n\r\nevent: x\rdata: c\r\r: comment\n\ndata: tail";
        let (events, rest) = split_all(input, &[]);
        assert_eq!(
            events,
            [
                &b"data: a\n\n"[..],
                b"data: b\r\n\r\n",
                b"event: x\rdata: c\r\r",
                b": comment\n\n"
            ]
        );
        assert_eq!(rest.as_deref(), Some(&b"data: tail"[..]));
    }

    #[test]
    fn a_crlf_split_across_reads_is_one_line_ending() {
        let (events, _) = split_all(b"data: a\r\n\r\n", &[8, 9, 10]);
        assert_eq!(events, [&b"data: a\r\n\r\n"[..]]);
    }

    #[test]
    fn multibyte_characters_split_across_reads_survive() {
        let input = "data: {\"c\":\"héllo 😀\"}\n\n".as_bytes();
        for cut in 0..input.len() {
            let (events, rest) = split_all(input, &[cut]);
            assert_eq!(events, [input], "cut at {cut}");
            assert!(rest.is_none());
        }
    }

    #[test]
    fn data_lines_are_joined() {
        assert_eq!(data(b"data: x\n\n").as_deref(), Some(&b"x"[..]));
        assert_eq!(
            data(b"data:x\r\ndata: y\r\n\r\n").as_deref(),
            Some(&b"x\ny"[..])
        );
        assert_eq!(data(b": ping\n\n"), None);
    }

    #[test]
    fn usage_chunk_is_recognised() {
        let f = chunk_facts(
            br#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#,
        );
        assert!(f.empty_choices);
        assert_eq!(f.usage.unwrap().total_tokens, 7);
        let f = chunk_facts(br#"{"choices":[{"delta":{}}],"usage":null}"#);
        assert_eq!(f, ChunkFacts::default());
        assert_eq!(chunk_facts(b"[DONE]"), ChunkFacts::default());
        assert_eq!(
            body_usage(br#"{"usage":{"prompt_tokens":1,"completion_tokens":2}}"#)
                .unwrap()
                .total_tokens,
            3
        );
    }

    #[test]
    fn data_strips_one_space_and_keeps_the_rest() {
        assert_eq!(data(b"data:  two\n\n").as_deref(), Some(&b" two"[..]));
        assert_eq!(data(b"data:\n\n").as_deref(), Some(&b""[..]));
        assert_eq!(
            data(b"event: message_start\r\ndata: {}\r\n\r\n").as_deref(),
            Some(&b"{}"[..])
        );
        assert_eq!(
            data(b"data: a\ndata: b\ndata: c\n\n").as_deref(),
            Some(&b"a\nb\nc"[..])
        );
        // Only lines that start with the field name count.
        assert_eq!(data(b" data: x\nid: 1\n\n"), None);
    }

    #[test]
    fn a_lone_cr_waits_for_the_next_read() {
        let mut s = EventSplitter::default();
        s.push(b"data: a\r");
        assert_eq!(s.next_event(), None);
        s.push(b"\r");
        assert_eq!(s.next_event(), None);
        s.push(b"x");
        assert_eq!(s.next_event().as_deref(), Some(&b"data: a\r\r"[..]));
        assert_eq!(s.take_rest().as_deref(), Some(&b"x"[..]));
        assert_eq!(s.take_rest(), None);
        // After take_rest the splitter starts clean.
        s.push(b"data: b\n\n");
        assert_eq!(s.next_event().as_deref(), Some(&b"data: b\n\n"[..]));
    }

    #[test]
    fn usage_is_read_in_every_shape_providers_send() {
        let u = |prompt, completion, total| TokenUsage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: total,
            cached_prompt_tokens: 0,
        };
        // A content chunk that also carries usage is not the usage-only chunk.
        let f = chunk_facts(br#"{"choices":[{"delta":{"content":"x"}}],"usage":{"prompt_tokens":2,"completion_tokens":3,"total_tokens":5}}"#);
        assert_eq!(f.usage, Some(u(2, 3, 5)));
        assert!(!f.empty_choices);
        // No `choices` at all is not an empty `choices`.
        let f = chunk_facts(br#"{"usage":{"prompt_tokens":1,"completion_tokens":1}}"#);
        assert_eq!((f.usage, f.empty_choices), (Some(u(1, 1, 2)), false));
        // The Responses API: `response.completed` with input/output tokens.
        let f = chunk_facts(br#"{"type":"response.completed","response":{"id":"r","usage":{"input_tokens":9,"output_tokens":4,"total_tokens":13}}}"#);
        assert_eq!(f.usage, Some(u(9, 4, 13)));
        // Cached prompt tokens, as chat and the Responses API name them.
        let cached = body_usage(br#"{"usage":{"prompt_tokens":100,"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":64}}}"#).unwrap();
        assert_eq!(
            (
                cached.prompt_tokens,
                cached.cached_prompt_tokens,
                cached.total_tokens
            ),
            (100, 64, 102)
        );
        let cached = body_usage(br#"{"usage":{"input_tokens":10,"output_tokens":2,"input_tokens_details":{"cached_tokens":8}}}"#).unwrap();
        assert_eq!(cached.cached_prompt_tokens, 8);
        assert_eq!(
            body_usage(br#"{"usage":{"prompt_tokens":1,"prompt_tokens_details":null}}"#)
                .unwrap()
                .cached_prompt_tokens,
            0
        );
        // A total that disagrees with the parts is taken as reported.
        assert_eq!(
            body_usage(br#"{"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":10}}"#),
            Some(u(1, 2, 10))
        );
        // `usage` only inside a string, or malformed, reads as nothing.
        assert_eq!(
            chunk_facts(br#"{"choices":[{"delta":{"content":""usage""}}]}"#).usage,
            None
        );
        assert_eq!(
            chunk_facts(br#"{"usage":{"prompt_tokens":"many"}}"#),
            ChunkFacts::default()
        );
        assert_eq!(
            chunk_facts(br#"{"usag":{"prompt_tokens":1}}"#),
            ChunkFacts::default()
        );
        assert_eq!(body_usage(br#"{"usage":null}"#), None);
        assert_eq!(body_usage(br#"{"id":"x"}"#), None);
        assert_eq!(body_usage(br#"{"usage":"x"}"#), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, rng_seed: proptest::test_runner::RngSeed::Fixed(11), ..ProptestConfig::default() })]

        /// Any split of any input yields the same events and the same rest.
        #[test]
        fn any_split_gives_identical_output(
            input in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'\r'), Just(b'a'), Just(b':'), any::<u8>()], 0..200),
            cuts in proptest::collection::vec(0usize..200, 0..8),
        ) {
            let mut cuts = cuts;
            cuts.sort();
            let whole = split_all(&input, &[]);
            let split = split_all(&input, &cuts);
            // A lone trailing `\r` may be pending in one and flushed in the other;
            // concatenations must agree exactly either way.
            let join = |(ev, rest): (Vec<Bytes>, Option<Bytes>)| {
                let mut v: Vec<u8> = ev.iter().flat_map(|b| b.to_vec()).collect();
                if let Some(r) = rest { v.extend_from_slice(&r); }
                v
            };
            prop_assert_eq!(&whole.0, &split.0);
            prop_assert_eq!(join(whole), join(split));
        }
    }
}
