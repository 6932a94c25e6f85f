//! `POST /v1/embeddings`: one small vector per input, derived from a hash of
//! the input's text, so the same text always gets the same unit-length
//! vector. `dimensions` is honoured (default 16), and
//! `encoding_format: "base64"` (which the official OpenAI SDKs request by
//! default) gives the little-endian `f32` bytes in base64.

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{Refusal, Shared, inputs, parse, require_key};

/// The vector length when the request names none.
const DEFAULT_DIMENSIONS: usize = 16;
/// The largest `dimensions` accepted (OpenAI's largest model has 3072).
const MAX_DIMENSIONS: usize = 3072;

#[derive(Deserialize)]
struct EmbeddingsRequest {
    #[serde(default)]
    model: String,
    #[serde(default)]
    input: Value,
    #[serde(default)]
    dimensions: Option<usize>,
    #[serde(default)]
    encoding_format: Option<String>,
}

pub(super) async fn embeddings(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    require_key(&headers)?;
    let request: EmbeddingsRequest = parse(&body)?;
    let inputs = inputs(&request.input).ok_or_else(|| {
        Refusal::bad_request("input must be a non-empty string, array of strings, or token array")
    })?;
    let dimensions = request.dimensions.unwrap_or(DEFAULT_DIMENSIONS);
    if !(1..=MAX_DIMENSIONS).contains(&dimensions) {
        let message = format!("dimensions must be between 1 and {MAX_DIMENSIONS}");
        return Err(Refusal::bad_request(message));
    }
    let base64 = match request.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            let message = format!("encoding_format must be float or base64, not {other}");
            return Err(Refusal::bad_request(message));
        }
    };
    state.first_byte().await;
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, input)| {
            let vector = vector(&input.text, dimensions);
            let embedding = if base64 {
                json!(encode(&vector))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    let prompt_tokens: u64 = inputs.iter().map(|i| i.tokens).sum();
    Ok(axum::Json(json!({
        "object": "list",
        "data": data,
        "model": request.model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }))
    .into_response())
}

/// A unit vector of `dimensions` numbers drawn from a generator seeded by
/// the text's SHA-256.
fn vector(text: &str, dimensions: usize) -> Vec<f32> {
    let digest = Sha256::digest(text.as_bytes());
    let mut seed = u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"));
    let raw: Vec<f64> = (0..dimensions)
        .map(|_| {
            // splitmix64, then the top 53 bits as a number in [-1, 1).
            seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = seed;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z >> 11) as f64 / (1u64 << 52) as f64 - 1.0
        })
        .collect();
    let norm = raw.iter().map(|x| x * x).sum::<f64>().sqrt();
    if norm == 0.0 {
        let mut unit = vec![0.0; dimensions];
        unit[0] = 1.0;
        return unit;
    }
    raw.iter().map(|x| (x / norm) as f32).collect()
}

/// The vector as base64 of its little-endian `f32` bytes.
fn encode(vector: &[f32]) -> String {
    let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64(&bytes)
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::testing::{OPENAI, app, post_json};
    use super::*;
    use http::StatusCode;

    async fn embed(body: Value) -> (StatusCode, Value) {
        post_json(app(), "/v1/embeddings", OPENAI, body).await
    }

    fn floats(v: &Value) -> Vec<f32> {
        let list = v["embedding"].as_array().unwrap();
        list.iter().map(|x| x.as_f64().unwrap() as f32).collect()
    }

    /// Decodes standard base64, for checking `encode`.
    fn decode(text: &str) -> Vec<u8> {
        let value = |c: u8| match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        };
        let mut out = Vec::new();
        for quad in text.as_bytes().chunks(4) {
            let digits: Vec<u8> = quad.iter().copied().filter(|&c| c != b'=').collect();
            let n = digits
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, &c)| n | u32::from(value(c)) << (18 - 6 * i));
            out.extend((0..digits.len() - 1).map(|i| (n >> (16 - 8 * i)) as u8));
        }
        out
    }

    #[test]
    fn base64_matches_known_answers() {
        for (plain, coded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), coded);
            assert_eq!(decode(coded), plain.as_bytes());
        }
    }

    #[tokio::test]
    async fn shape_usage_and_unit_vectors() {
        let (status, v) = embed(json!({"model": "e", "input": ["hello", "world!!!!"]})).await;
        assert_eq!(status, 200);
        assert_eq!(v["object"], "list");
        assert_eq!(v["model"], "e");
        assert_eq!(
            v["usage"],
            json!({"prompt_tokens": 2 + 3, "total_tokens": 5})
        );
        let data = v["data"].as_array().unwrap();
        assert_eq!(data.len(), 2);
        for (i, item) in data.iter().enumerate() {
            assert_eq!(item["object"], "embedding");
            assert_eq!(item["index"], i);
            let x = floats(item);
            assert_eq!(x.len(), DEFAULT_DIMENSIONS);
            let norm: f32 = x.iter().map(|a| a * a).sum();
            assert!((norm - 1.0).abs() < 1e-5, "{norm}");
        }
        assert_ne!(floats(&data[0]), floats(&data[1]));
    }

    #[tokio::test]
    async fn same_text_same_vector_and_dimensions_honoured() {
        let (_, a) = embed(json!({"model": "e", "input": "same", "dimensions": 5})).await;
        let (_, b) =
            embed(json!({"model": "e", "input": ["other", "same"], "dimensions": 5})).await;
        assert_eq!(floats(&a["data"][0]).len(), 5);
        assert_eq!(floats(&a["data"][0]), floats(&b["data"][1]));
    }

    #[tokio::test]
    async fn base64_decodes_to_the_float_form() {
        let (_, plain) =
            embed(json!({"model": "e", "input": "hi", "encoding_format": "float"})).await;
        let (_, coded) =
            embed(json!({"model": "e", "input": "hi", "encoding_format": "base64"})).await;
        let bytes = decode(coded["data"][0]["embedding"].as_str().unwrap());
        let decoded: Vec<f32> = bytes
            .chunks(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(decoded, floats(&plain["data"][0]));
        assert_eq!(coded["usage"], plain["usage"]);
    }

    #[tokio::test]
    async fn token_arrays_count_their_tokens() {
        let (_, v) = embed(json!({"model": "e", "input": [[1, 2, 3], [4]]})).await;
        assert_eq!(v["data"].as_array().unwrap().len(), 2);
        assert_eq!(v["usage"]["prompt_tokens"], 4);
    }

    #[tokio::test]
    async fn bad_requests_are_refused() {
        for body in [
            json!({"model": "e"}),
            json!({"model": "e", "input": []}),
            json!({"model": "e", "input": "x", "dimensions": 0}),
            json!({"model": "e", "input": "x", "encoding_format": "hex"}),
        ] {
            let (status, v) = embed(body.clone()).await;
            assert_eq!(status, 400, "{body}");
            assert!(v["error"]["message"].is_string());
        }
        let (status, _) = post_json(app(), "/v1/embeddings", &[], json!({"input": "x"})).await;
        assert_eq!(status, 401);
    }
}
