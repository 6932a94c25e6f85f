//! `POST /v1/completions`: OpenAI's legacy text completions. One choice per
//! prompt (a string, an array of strings, or token arrays), as JSON or as a
//! stream of `text_completion` chunks: the words, a chunk with the
//! `finish_reason`, the usage chunk (`choices: []`) only when
//! `stream_options.include_usage` is true, then `data: [DONE]`.

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};

use super::sse::{self, Frame};
use super::{Refusal, Shared, StreamOptions, inputs, parse, require_key};

#[derive(Deserialize)]
struct CompletionRequest {
    #[serde(default)]
    model: String,
    #[serde(default)]
    prompt: Value,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    max_tokens: Option<usize>,
}

/// One choice's words and why they ended.
struct Choice {
    words: Vec<String>,
    finish_reason: &'static str,
}

pub(super) async fn completions(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    require_key(&headers)?;
    let request: CompletionRequest = parse(&body)?;
    let prompts = inputs(&request.prompt).ok_or_else(|| {
        Refusal::bad_request("prompt must be a non-empty string, array of strings, or token array")
    })?;
    state.first_byte().await;
    let id = format!("cmpl-mock-{}", state.next_id());
    let choices: Vec<Choice> = prompts
        .iter()
        .map(|prompt| {
            let reply = state.reply(&request.model, &prompt.text);
            let (words, cut) = state.words(&reply, request.max_tokens);
            let finish_reason = if cut { "length" } else { "stop" };
            Choice {
                words,
                finish_reason,
            }
        })
        .collect();
    let prompt_tokens: u64 = prompts.iter().map(|p| p.tokens).sum();
    let completion_tokens: u64 = choices.iter().map(|c| c.words.len() as u64).sum();
    let usage = json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    });
    let include_usage = request.stream_options.is_some_and(|o| o.include_usage);
    let head = Head {
        id,
        model: request.model,
    };
    if request.stream {
        let usage = include_usage.then_some(usage);
        return Ok(sse::respond(stream(&head, choices, usage), &state.options));
    }
    let choices: Vec<Value> = choices
        .into_iter()
        .enumerate()
        .map(|(index, c)| choice(index, &c.words.concat(), Some(c.finish_reason)))
        .collect();
    let mut body = head.wrap(json!(choices));
    body["usage"] = usage;
    Ok(axum::Json(body).into_response())
}

/// What every body and chunk of one completion carries.
struct Head {
    id: String,
    model: String,
}

impl Head {
    fn wrap(&self, choices: Value) -> Value {
        json!({
            "id": self.id, "object": "text_completion", "created": 0, "model": self.model,
            "system_fingerprint": "llm-router-mock", "choices": choices,
        })
    }
}

fn choice(index: usize, text: &str, finish_reason: Option<&str>) -> Value {
    json!({"text": text, "index": index, "logprobs": null, "finish_reason": finish_reason})
}

/// The stream's frames: each choice's words then its finish, the usage
/// chunk if given, then `[DONE]`.
fn stream(head: &Head, choices: Vec<Choice>, usage: Option<Value>) -> Vec<Frame> {
    let mut frames = Vec::new();
    for (index, c) in choices.into_iter().enumerate() {
        for word in &c.words {
            frames.push(Frame::Data(head.wrap(json!([choice(index, word, None)]))));
        }
        let finish = choice(index, "", Some(c.finish_reason));
        frames.push(Frame::Data(head.wrap(json!([finish]))));
    }
    if let Some(usage) = usage {
        let mut last = head.wrap(json!([]));
        last["usage"] = usage;
        frames.push(Frame::Data(last));
    }
    frames.push(Frame::Done);
    frames
}

#[cfg(test)]
mod tests {
    use super::super::MockOptions;
    use super::super::testing::{OPENAI, app, app_with, events, post, post_json};
    use serde_json::{Value, json};

    #[tokio::test]
    async fn json_shape_and_usage() {
        let body = json!({"model": "c", "prompt": "Say hi"});
        let (status, v) = post_json(app(), "/v1/completions", OPENAI, body).await;
        assert_eq!(status, 200);
        assert!(v["id"].as_str().unwrap().starts_with("cmpl-mock-"));
        assert_eq!(v["object"], "text_completion");
        assert_eq!(v["model"], "c");
        let choice = &v["choices"][0];
        assert_eq!(
            (choice["index"].clone(), choice["finish_reason"].clone()),
            (json!(0), json!("stop"))
        );
        assert_eq!(choice["logprobs"], Value::Null);
        let text = choice["text"].as_str().unwrap();
        assert!(
            text.contains("mock") && text.ends_with("You said: Say hi"),
            "{text}"
        );
        let words = text.split_inclusive(' ').count() as u64;
        assert_eq!(
            v["usage"],
            json!({"prompt_tokens": 2, "completion_tokens": words, "total_tokens": 2 + words})
        );
    }

    #[tokio::test]
    async fn one_choice_per_prompt() {
        let body = json!({"model": "c", "prompt": ["a", [1, 2, 3]], "max_tokens": 2});
        let (_, v) = post_json(app(), "/v1/completions", OPENAI, body).await;
        let choices = v["choices"].as_array().unwrap();
        assert_eq!(choices.len(), 2);
        assert_eq!(choices[1]["index"], 1);
        assert_eq!(v["usage"]["prompt_tokens"], 1 + 3);
        assert_eq!(v["usage"]["completion_tokens"], 4);
    }

    #[tokio::test]
    async fn max_tokens_cuts_with_length() {
        let app = app_with(MockOptions {
            chunks: Some(10),
            ..MockOptions::default()
        });
        let body = json!({"model": "c", "prompt": "x", "max_tokens": 3});
        let (_, v) = post_json(app, "/v1/completions", OPENAI, body).await;
        assert_eq!(v["choices"][0]["text"], "tok0 tok1 tok2 ");
        assert_eq!(v["choices"][0]["finish_reason"], "length");
        assert_eq!(v["usage"]["completion_tokens"], 3);
    }

    async fn stream(include_usage: Option<bool>) -> Vec<Value> {
        let mut body = json!({"model": "c", "prompt": "x", "stream": true, "max_tokens": 2});
        if let Some(include) = include_usage {
            body["stream_options"] = json!({"include_usage": include});
        }
        let (status, bytes) = post(app(), "/v1/completions", OPENAI, body).await;
        assert_eq!(status, 200);
        let frames = events(&bytes);
        assert_eq!(frames.last().unwrap(), &(None, "[DONE]".to_string()));
        let chunks = &frames[..frames.len() - 1];
        chunks
            .iter()
            .map(|(_, d)| serde_json::from_str(d).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn stream_words_then_finish_then_done() {
        let chunks = stream(None).await;
        assert_eq!(chunks.len(), 3);
        for chunk in &chunks {
            assert_eq!(chunk["object"], "text_completion");
            assert!(chunk.get("usage").is_none());
        }
        assert_eq!(chunks[0]["choices"][0]["text"], "This ");
        assert_eq!(chunks[1]["choices"][0]["finish_reason"], Value::Null);
        assert_eq!(chunks[2]["choices"][0]["text"], "");
        assert_eq!(chunks[2]["choices"][0]["finish_reason"], "length");
        assert_eq!(stream(Some(false)).await.len(), 3);
    }

    #[tokio::test]
    async fn stream_usage_chunk_when_asked() {
        let chunks = stream(Some(true)).await;
        assert_eq!(chunks.len(), 4);
        let last = &chunks[3];
        assert_eq!(last["choices"], json!([]));
        assert_eq!(
            last["usage"],
            json!({"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3})
        );
    }

    #[tokio::test]
    async fn bad_prompt_and_missing_key() {
        let (status, _) = post_json(app(), "/v1/completions", OPENAI, json!({"model": "c"})).await;
        assert_eq!(status, 400);
        let (status, _) = post_json(app(), "/v1/completions", &[], json!({"prompt": "x"})).await;
        assert_eq!(status, 401);
    }
}
