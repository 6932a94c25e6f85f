//! A real OTLP trace receiver: `POST /v1/traces` (HTTP/protobuf) and the
//! gRPC `TraceService/Export` method (HTTP/2 without TLS, as collectors
//! serve it on 4317), both decoding `ExportTraceServiceRequest` with the
//! `opentelemetry-proto` types. It can also fail every export, or never
//! answer, on the test's word.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http::{HeaderMap, StatusCode};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::{Value, json};

use super::serve_on_loopback;

/// What the receiver does with an export.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    Accept = 0,
    /// Answer 503 (HTTP) or UNAVAILABLE (gRPC).
    Fail = 1,
    /// Never answer.
    Hang = 2,
}

/// A span as received, with its resource's attributes.
#[derive(Clone, Debug)]
pub struct Received {
    pub span: Span,
    pub resource: Vec<(String, Value)>,
}

impl Received {
    pub fn name(&self) -> &str {
        &self.span.name
    }

    /// An attribute's value as JSON (strings, ints, doubles, bools).
    pub fn attr(&self, key: &str) -> Option<Value> {
        attrs(&self.span.attributes)
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    pub fn str(&self, key: &str) -> String {
        match self.attr(key) {
            Some(Value::String(s)) => s,
            other => panic!("attribute {key} is {other:?} on span {}", self.name()),
        }
    }

    pub fn int(&self, key: &str) -> i64 {
        self.attr(key)
            .and_then(|v| v.as_i64())
            .unwrap_or_else(|| panic!("no int attribute {key} on span {}", self.name()))
    }

    pub fn trace_id(&self) -> String {
        hex(&self.span.trace_id)
    }

    pub fn span_id(&self) -> String {
        hex(&self.span.span_id)
    }

    pub fn parent_id(&self) -> String {
        hex(&self.span.parent_span_id)
    }

    /// OpenTelemetry's span kind: 2 server, 3 client.
    pub fn kind(&self) -> i32 {
        self.span.kind
    }

    /// Status code: 0 unset, 1 ok, 2 error.
    pub fn status(&self) -> i32 {
        self.span.status.as_ref().map_or(0, |s| s.code)
    }

    /// Everything the span says, as text (to search for what must not be
    /// there).
    pub fn all_text(&self) -> String {
        format!("{:?} {:?}", self.span, self.resource)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn value(v: &AnyValue) -> Value {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => json!(s),
        Some(any_value::Value::IntValue(i)) => json!(i),
        Some(any_value::Value::DoubleValue(d)) => json!(d),
        Some(any_value::Value::BoolValue(b)) => json!(b),
        other => json!(format!("{other:?}")),
    }
}

fn attrs(kvs: &[opentelemetry_proto::tonic::common::v1::KeyValue]) -> Vec<(String, Value)> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), kv.value.as_ref().map_or(Value::Null, value)))
        .collect()
}

#[derive(Default)]
struct CollectorState {
    spans: Mutex<Vec<Received>>,
    headers: Mutex<Vec<HeaderMap>>,
    mode: AtomicU8,
    exports: AtomicUsize,
}

pub struct Collector {
    pub addr: SocketAddr,
    state: Arc<CollectorState>,
}

impl Collector {
    pub async fn start() -> Self {
        let state = Arc::new(CollectorState::default());
        let app = Router::new()
            .route("/v1/traces", post(http_export))
            .route(
                "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                post(grpc_export),
            )
            .with_state(state.clone());
        let addr = serve_on_loopback(app).await;
        Self { addr, state }
    }

    /// The base URL, as `tracing.otlp_endpoint` takes it.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_mode(&self, mode: Mode) {
        self.state.mode.store(mode as u8, Ordering::Relaxed);
    }

    /// Exports received (accepted or not).
    pub fn exports(&self) -> usize {
        self.state.exports.load(Ordering::Relaxed)
    }

    pub fn spans(&self) -> Vec<Received> {
        self.state.spans.lock().unwrap().clone()
    }

    /// The headers of every export request.
    pub fn headers(&self) -> Vec<HeaderMap> {
        self.state.headers.lock().unwrap().clone()
    }

    /// Waits until `n` spans arrived (spans are exported in batches, after
    /// the request they describe has ended).
    pub async fn wait_spans(&self, n: usize) -> Vec<Received> {
        let start = std::time::Instant::now();
        loop {
            let spans = self.spans();
            if spans.len() >= n {
                return spans;
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "only {} of {n} spans arrived: {:#?}",
                spans.len(),
                spans.iter().map(Received::name).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The spans of one trace.
    pub fn trace(&self, trace_id: &str) -> Vec<Received> {
        self.spans()
            .into_iter()
            .filter(|s| s.trace_id() == trace_id)
            .collect()
    }
}

/// Decodes one export, unless told to fail or hang: `Err` is the failure.
async fn receive(state: &CollectorState, headers: HeaderMap, body: &[u8]) -> Result<(), ()> {
    state.exports.fetch_add(1, Ordering::Relaxed);
    state.headers.lock().unwrap().push(headers);
    match state.mode.load(Ordering::Relaxed) {
        1 => return Err(()),
        2 => std::future::pending::<()>().await,
        _ => {}
    }
    let request = ExportTraceServiceRequest::decode(body).map_err(|_| ())?;
    let mut spans = state.spans.lock().unwrap();
    for rs in request.resource_spans {
        let resource = rs
            .resource
            .map(|r| attrs(&r.attributes))
            .unwrap_or_default();
        for ss in rs.scope_spans {
            for span in ss.spans {
                spans.push(Received {
                    span,
                    resource: resource.clone(),
                });
            }
        }
    }
    Ok(())
}

async fn http_export(
    State(state): State<Arc<CollectorState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    assert_eq!(
        headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/x-protobuf")
    );
    match receive(&state, headers, &body).await {
        Ok(()) => (
            [("content-type", "application/x-protobuf")],
            ExportTraceServiceResponse::default().encode_to_vec(),
        )
            .into_response(),
        Err(()) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

/// gRPC, by hand: the request is one length-prefixed message; the answer
/// is one too, with `grpc-status` in the trailers.
async fn grpc_export(
    State(state): State<Arc<CollectorState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    use http_body_util::StreamBody;
    use hyper::body::Frame;

    let message = body.get(5..).unwrap_or_default();
    assert_eq!(body.first(), Some(&0), "uncompressed");
    let status = match receive(&state, headers, message).await {
        Ok(()) => "0",
        Err(()) => "14",
    };
    let reply = ExportTraceServiceResponse::default().encode_to_vec();
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(reply.len() as u32).to_be_bytes());
    framed.extend_from_slice(&reply);
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", status.parse().unwrap());
    let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = if status == "0" {
        vec![
            Ok(Frame::data(Bytes::from(framed))),
            Ok(Frame::trailers(trailers)),
        ]
    } else {
        vec![Ok(Frame::trailers(trailers))]
    };
    let mut response = Response::new(Body::new(StreamBody::new(futures_util::stream::iter(
        frames,
    ))));
    response
        .headers_mut()
        .insert("content-type", "application/grpc".parse().unwrap());
    response
}
