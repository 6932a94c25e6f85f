//! Sends the mock's streams as server-sent events: the frames are built up
//! front, then sent one per `chunk_gap`, each stamped with its send time
//! (`x_sent_us`) when `stamp` is on, so a benchmark sees when it left.
//!
//! OpenAI chat and completions streams are `data:`-only frames ending in
//! `data: [DONE]`; the Responses API and Anthropic name each event with an
//! `event:` line that repeats the data's `type` (Anthropic's SDKs ignore
//! frames without one).

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::response::Response;
use http::{HeaderValue, header};
use serde_json::{Value, json};

use super::MockOptions;

/// One event of a stream.
pub(super) enum Frame {
    /// `data: {json}`: OpenAI chat and completions chunks.
    Data(Value),
    /// `event: {type}` then `data: {json}`: Responses API and Anthropic.
    Typed(Value),
    /// `data: [DONE]`, the end of an OpenAI chat or completions stream.
    Done,
}

/// A `text/event-stream` response that sends `frames` paced by the options.
pub(super) fn respond(frames: Vec<Frame>, options: &MockOptions) -> Response {
    let gap = options.chunk_gap;
    let stamp = options.stamp;
    let stream = futures_util::stream::unfold(
        (frames.into_iter(), true),
        move |(mut it, first)| async move {
            let frame = it.next()?;
            if !first && !gap.is_zero() {
                tokio::time::sleep(gap).await;
            }
            Some((Ok::<_, Infallible>(render(frame, stamp)), (it, false)))
        },
    );
    let mut response = Response::new(Body::from_stream(stream));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    response
}

/// Renders a frame at the moment it is sent.
fn render(frame: Frame, stamp: bool) -> Bytes {
    match frame {
        Frame::Done => Bytes::from_static(b"data: [DONE]\n\n"),
        Frame::Data(v) => Bytes::from(format!("data: {}\n\n", stamped(v, stamp))),
        Frame::Typed(v) => {
            let name = v["type"].as_str().unwrap_or("message").to_owned();
            Bytes::from(format!("event: {name}\ndata: {}\n\n", stamped(v, stamp)))
        }
    }
}

fn stamped(mut v: Value, stamp: bool) -> Value {
    if stamp {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        v["x_sent_us"] = json!(now);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_render_as_sse() {
        assert_eq!(&render(Frame::Done, false)[..], b"data: [DONE]\n\n");
        assert_eq!(
            &render(Frame::Data(json!({"a": 1})), false)[..],
            b"data: {\"a\":1}\n\n"
        );
        assert_eq!(
            &render(Frame::Typed(json!({"type": "ping"})), false)[..],
            b"event: ping\ndata: {\"type\":\"ping\"}\n\n"
        );
        let stamped = render(Frame::Data(json!({"a": 1})), true);
        assert!(
            std::str::from_utf8(&stamped)
                .unwrap()
                .contains("\"x_sent_us\":")
        );
    }
}
