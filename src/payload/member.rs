//! One top-level member of a JSON object that arrives in pieces.
//!
//! A non-streaming answer can be hundreds of megabytes, and its `usage`
//! comes last. [`MemberScanner`] watches the bytes go by on their way to
//! the client and keeps only the member's value (up to a cap), a nesting
//! depth and a few bytes of the key being read: its memory does not depend
//! on the body's size, however the network splits it. Inside strings it
//! jumps to the next quote or backslash with `memchr`, so a long text costs
//! little more than the copy.
//!
//! It trusts nothing: malformed JSON simply yields no value.

/// Longest key we compare; longer keys cannot be the one we want.
const MAX_KEY: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the top-level `{`.
    Start,
    /// In the top-level object, expecting a key (or `}`).
    Key,
    /// Reading a top-level key's string.
    KeyString { escaped: bool },
    /// After a top-level key, expecting `:`.
    Colon,
    /// After `:`, expecting the value's first byte.
    Value,
    /// Inside a top-level value: `depth` open brackets, maybe in a string.
    InValue {
        depth: u32,
        in_string: bool,
        escaped: bool,
    },
    /// Inside a top-level literal (number, true, false, null).
    InLiteral,
    /// After a value, expecting `,` or `}`.
    AfterValue,
    /// The object closed, or the input is not an object we can read.
    Done,
}

/// Finds the value of top-level `key` in a JSON object fed piece by piece.
#[derive(Debug)]
pub struct MemberScanner {
    key: &'static str,
    max_value: usize,
    state: State,
    key_buf: Vec<u8>,
    key_too_long: bool,
    /// Whether the value being read belongs to `key`.
    capturing: bool,
    value: Vec<u8>,
    found: Option<Vec<u8>>,
    too_large: bool,
    /// The top-level object's closing `}` was read.
    closed: bool,
}

impl MemberScanner {
    /// Looks for `key`, keeping at most `max_value` bytes of its value (a
    /// larger value is given up on).
    pub fn new(key: &'static str, max_value: usize) -> Self {
        Self {
            key,
            max_value,
            state: State::Start,
            key_buf: Vec::new(),
            key_too_long: false,
            capturing: false,
            value: Vec::new(),
            found: None,
            too_large: false,
            closed: false,
        }
    }

    /// The member's raw value (the first, if the key repeats), once the
    /// object has been read to its end.
    pub fn value(&self) -> Option<&[u8]> {
        self.found.as_deref().filter(|_| self.closed)
    }

    /// Reads the next piece of the body.
    pub fn feed(&mut self, mut chunk: &[u8]) {
        while !chunk.is_empty() && self.state != State::Done {
            let used = self.step(chunk);
            chunk = &chunk[used..];
        }
    }

    /// Consumes some of `chunk` (at least one byte); returns how much.
    fn step(&mut self, chunk: &[u8]) -> usize {
        let b = chunk[0];
        match self.state {
            State::Start => match b {
                b'{' => self.state = State::Key,
                b if is_ws(b) => {}
                _ => self.state = State::Done,
            },
            State::Key => match b {
                b'"' => {
                    self.key_buf.clear();
                    self.key_too_long = false;
                    self.state = State::KeyString { escaped: false };
                }
                b'}' if self.found.is_none() && self.key_buf.is_empty() => self.close(),
                b if is_ws(b) => {}
                _ => self.state = State::Done,
            },
            State::KeyString { escaped } => {
                if escaped {
                    self.push_key(b);
                    self.state = State::KeyString { escaped: false };
                } else if b == b'\\' {
                    self.push_key(b);
                    self.state = State::KeyString { escaped: true };
                } else if b == b'"' {
                    self.capturing = self.found.is_none() && self.key_matches();
                    self.state = State::Colon;
                } else {
                    // Copy up to the next quote or backslash in one go.
                    let run = memchr::memchr2(b'"', b'\\', chunk).unwrap_or(chunk.len());
                    for &c in &chunk[..run] {
                        self.push_key(c);
                    }
                    return run;
                }
            }
            State::Colon => match b {
                b':' => self.state = State::Value,
                b if is_ws(b) => {}
                _ => self.state = State::Done,
            },
            State::Value => {
                if is_ws(b) {
                    return 1;
                }
                let next = match b {
                    b'{' | b'[' => State::InValue {
                        depth: 1,
                        in_string: false,
                        escaped: false,
                    },
                    b'"' => State::InValue {
                        depth: 0,
                        in_string: true,
                        escaped: false,
                    },
                    b'}' | b']' | b',' | b':' => State::Done,
                    _ => State::InLiteral,
                };
                self.state = next;
                self.value.clear();
                self.too_large = false;
                self.keep(&chunk[..1]);
            }
            State::InValue {
                depth,
                in_string,
                escaped,
            } => return self.in_value(chunk, depth, in_string, escaped),
            State::InLiteral => {
                if is_ws(b) || matches!(b, b',' | b'}') {
                    self.end_value();
                    return self.after_value_byte(b);
                }
                self.keep(&chunk[..1]);
            }
            State::AfterValue => return self.after_value_byte(b),
            State::Done => return chunk.len(),
        }
        1
    }

    fn in_value(&mut self, chunk: &[u8], depth: u32, in_string: bool, escaped: bool) -> usize {
        let b = chunk[0];
        if in_string {
            if escaped {
                self.keep(&chunk[..1]);
                self.state = State::InValue {
                    depth,
                    in_string: true,
                    escaped: false,
                };
                return 1;
            }
            let run = memchr::memchr2(b'"', b'\\', chunk).unwrap_or(chunk.len());
            if run > 0 {
                self.keep(&chunk[..run]);
                return run;
            }
            self.keep(&chunk[..1]);
            if b == b'\\' {
                self.state = State::InValue {
                    depth,
                    in_string: true,
                    escaped: true,
                };
            } else if depth == 0 {
                // A top-level string value ended.
                self.end_value();
                self.state = State::AfterValue;
            } else {
                self.state = State::InValue {
                    depth,
                    in_string: false,
                    escaped: false,
                };
            }
            return 1;
        }
        // Outside strings: count brackets up to the next quote, in one pass.
        let mut depth = depth;
        for (i, &c) in chunk.iter().enumerate() {
            match c {
                b'"' => {
                    self.keep(&chunk[..=i]);
                    self.state = State::InValue {
                        depth,
                        in_string: true,
                        escaped: false,
                    };
                    return i + 1;
                }
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    depth -= 1;
                    if depth == 0 {
                        self.keep(&chunk[..=i]);
                        self.end_value();
                        self.state = State::AfterValue;
                        return i + 1;
                    }
                }
                _ => {}
            }
        }
        self.keep(chunk);
        self.state = State::InValue {
            depth,
            in_string: false,
            escaped: false,
        };
        chunk.len()
    }

    /// Reads `b` where a value has just ended.
    fn after_value_byte(&mut self, b: u8) -> usize {
        match b {
            b',' => self.state = State::Key,
            b'}' => self.close(),
            b if is_ws(b) => self.state = State::AfterValue,
            _ => self.state = State::Done,
        }
        1
    }

    fn close(&mut self) {
        self.closed = true;
        self.state = State::Done;
    }

    fn push_key(&mut self, b: u8) {
        if self.key_buf.len() < MAX_KEY {
            self.key_buf.push(b);
        } else {
            self.key_too_long = true;
        }
    }

    /// Whether the key just read is ours (decoding escapes if it has any).
    fn key_matches(&self) -> bool {
        if self.key_too_long {
            return false;
        }
        if !self.key_buf.contains(&b'\\') {
            return self.key_buf == self.key.as_bytes();
        }
        let mut quoted = Vec::with_capacity(self.key_buf.len() + 2);
        quoted.push(b'"');
        quoted.extend_from_slice(&self.key_buf);
        quoted.push(b'"');
        serde_json::from_slice::<String>(&quoted).is_ok_and(|k| k == self.key)
    }

    fn keep(&mut self, bytes: &[u8]) {
        if !self.capturing || self.too_large {
            return;
        }
        if self.value.len() + bytes.len() > self.max_value {
            self.too_large = true;
            self.value = Vec::new();
            return;
        }
        self.value.extend_from_slice(bytes);
    }

    fn end_value(&mut self) {
        if self.capturing && !self.too_large {
            self.found = Some(std::mem::take(&mut self.value));
        }
        self.capturing = false;
    }
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn scan(body: &[u8], cuts: &[usize]) -> Option<Vec<u8>> {
        let mut s = MemberScanner::new("usage", 1 << 20);
        let mut last = 0;
        for &cut in cuts.iter().chain(std::iter::once(&body.len())) {
            let cut = cut.clamp(last, body.len());
            s.feed(&body[last..cut]);
            last = cut;
        }
        s.value().map(<[u8]>::to_vec)
    }

    fn text(v: Option<Vec<u8>>) -> Option<String> {
        v.map(|v| String::from_utf8(v).unwrap())
    }

    #[test]
    fn finds_the_member_at_any_position_and_depth_of_nesting() {
        let body = br#" { "choices": [{"usage": 1, "t": "a \"usage\": 2 }"}], "x": {"usage": 3},
            "usage" : {"prompt_tokens": 5, "n": [1, {"a": "]"}]} , "z": null }"#;
        assert_eq!(
            text(scan(body, &[])).as_deref(),
            Some(r#"{"prompt_tokens": 5, "n": [1, {"a": "]"}]}"#)
        );
        assert_eq!(
            text(scan(br#"{"usage":null}"#, &[])).as_deref(),
            Some("null")
        );
        assert_eq!(text(scan(br#"{"usage": 12 }"#, &[])).as_deref(), Some("12"));
        assert_eq!(
            text(scan(br#"{"usage":"x\"y"}"#, &[])).as_deref(),
            Some(r#""x\"y""#)
        );
        assert_eq!(
            text(scan(br#"{"a":1,"usage":true}"#, &[])).as_deref(),
            Some("true")
        );
        assert_eq!(
            text(scan(br#"{"us\u0061ge":[1]}"#, &[])).as_deref(),
            Some("[1]")
        );
        // The first of two wins, as in the whole-body scan.
        assert_eq!(
            text(scan(br#"{"usage":1,"usage":2}"#, &[])).as_deref(),
            Some("1")
        );
    }

    #[test]
    fn nothing_is_found_in_what_is_not_a_well_formed_object() {
        for body in [
            &b""[..],
            b"[]",
            br#""usage""#,
            br#"{"usage""#,
            br#"{"usage":"#,
            br#"{"usage":{"a":1}"#,
            br#"{"a":1 "usage":2}"#,
            br#"{"a":"\"}"#,
            br#"{"usage":}"#,
            br#"{"missing":1}"#,
        ] {
            assert_eq!(scan(body, &[]), None, "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn a_value_over_the_cap_is_given_up_not_kept() {
        let big = format!(r#"{{"usage":"{}"}}"#, "x".repeat(100));
        let mut s = MemberScanner::new("usage", 50);
        s.feed(big.as_bytes());
        assert_eq!(s.value(), None);
        assert!(s.value.capacity() <= 64, "{}", s.value.capacity());
        // A long key is no match, and costs no memory either.
        let long_key = format!(r#"{{"{}":1,"usage":2}}"#, "k".repeat(10_000));
        let mut s = MemberScanner::new("usage", 50);
        s.feed(long_key.as_bytes());
        assert_eq!(s.value(), Some(&b"2"[..]));
        assert!(s.key_buf.capacity() <= 128);
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(Into::into),
            any::<i64>().prop_map(Into::into),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Into::into),
            "\\PC{0,12}".prop_map(Into::into),
            "[\"\\\\{}\\[\\],:u]{0,6}".prop_map(Into::into),
        ];
        crate::payload::nested_json::nested(leaf, "[a-z\"]{1,6}", 4)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, rng_seed: proptest::test_runner::RngSeed::Fixed(7), ..ProptestConfig::default() })]

        /// However the body is formatted and split, the scanner finds
        /// exactly what the whole-body scan finds.
        #[test]
        fn agrees_with_the_whole_body_scan_under_any_split(
            members in proptest::collection::btree_map("(usage|[a-z]{1,4})", json_value(), 0..6),
            pretty in any::<bool>(),
            cuts in proptest::collection::vec(0usize..400, 0..10),
        ) {
            let object: serde_json::Map<_, _> = members.into_iter().collect();
            let body = if pretty {
                serde_json::to_vec_pretty(&object).unwrap()
            } else {
                serde_json::to_vec(&object).unwrap()
            };
            let mut cuts = cuts;
            cuts.sort();
            let whole = crate::payload::scan::top_level_value(&body, "usage").map(<[u8]>::to_vec);
            prop_assert_eq!(scan(&body, &cuts), whole);
        }

        #[test]
        fn arbitrary_bytes_in_any_pieces_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..256),
            cuts in proptest::collection::vec(0usize..256, 0..6),
        ) {
            let mut cuts = cuts;
            cuts.sort();
            let _ = scan(&bytes, &cuts);
        }
    }
}
