//! OpenTelemetry traces, exported over OTLP (HTTP/protobuf or gRPC).
//!
//! Off unless an endpoint is configured (`tracing.otlp_endpoint` or the
//! standard `OTEL_EXPORTER_OTLP_*` variables). Off, a request makes no span
//! at all: [`Trace`] is an empty handle, and every method on it returns at
//! once.
//!
//! On, each proxied request is a server span (its parent taken from the
//! client's W3C `traceparent`), and each upstream attempt a client span
//! under it, whose `traceparent` the upstream request carries. Spans are
//! `tracing` spans on their own target, turned into OpenTelemetry spans by
//! `tracing-opentelemetry`, so they never reach the log lines.
//!
//! Export never costs a request: a finished span is queued (a bounded
//! queue: [`Pipeline`] counts what it drops instead of waiting) without
//! waking anything, and the SDK's batch thread hands full batches (or what
//! its timer finds) to the exporter, which runs on the main runtime. A collector that is down, slow or
//! refusing costs spans, counted in `llm_router_trace_export_failures_total`
//! by reason, never memory beyond the queue nor a request's time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use http::HeaderMap;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{Status, TraceContextExt};
use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter, SpanProcessor};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The `tracing` target of request spans: only the OpenTelemetry layer
/// listens to it.
pub const TARGET: &str = "llm_router::otel";

/// How long one export may take before its spans count as lost.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Spans waiting for export, at most. When content is captured, spans are
/// up to 64 KiB larger, and fewer wait.
const QUEUE: usize = 2048;
const QUEUE_WITH_CONTENT: usize = 256;

/// Most bytes of prompt or completion text recorded on a span (with
/// `capture_content`).
pub const MAX_CONTENT_BYTES: usize = 32 * 1024;

/// Whether request spans are made (set once, when the pipeline starts).
static ENABLED: AtomicBool = AtomicBool::new(false);
/// Whether prompt and completion text go on spans.
static CAPTURE_CONTENT: AtomicBool = AtomicBool::new(false);

/// `llm_router_trace_export_failures_total{reason}`: spans lost, because
/// an export failed or timed out (`export_failed`) or because the queue was
/// full (`queue_full`). The metrics registry registers it.
pub static EXPORT_FAILURES: LazyLock<Family<FailureLabels, Counter>> = LazyLock::new(|| {
    let family = Family::<FailureLabels, Counter>::default();
    for reason in ["export_failed", "queue_full"] {
        family.get_or_create(&FailureLabels { reason }).inc_by(0);
    }
    family
});

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    pub reason: &'static str,
}

fn lost(reason: &'static str, spans: usize) {
    EXPORT_FAILURES
        .get_or_create(&FailureLabels { reason })
        .inc_by(spans as u64);
}

/// Whether spans are being made.
pub fn enabled() -> bool {
    ENABLED.load(Relaxed)
}

/// Whether prompt and completion text may be recorded.
pub fn capture_content() -> bool {
    CAPTURE_CONTENT.load(Relaxed)
}

/// The wire protocol to the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `http/protobuf`: POST to `…/v1/traces`.
    HttpProtobuf,
    /// `grpc`: the collector's OTLP gRPC service.
    Grpc,
}

impl Protocol {
    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw.trim() {
            "http/protobuf" | "http" => Ok(Self::HttpProtobuf),
            "grpc" => Ok(Self::Grpc),
            other => Err(format!(
                "{other:?} is not a supported protocol: use \"http/protobuf\" or \"grpc\""
            )),
        }
    }
}

/// What the config file asks for (every field optional: the environment
/// fills what it leaves out).
#[derive(Debug, Clone, Default)]
pub struct Requested {
    pub otlp_endpoint: Option<String>,
    pub protocol: Option<String>,
    pub sample_ratio: Option<f64>,
    pub service_name: Option<String>,
    pub headers: Vec<(String, String)>,
    pub capture_content: bool,
}

/// Where and how spans are exported, resolved.
#[derive(Clone, PartialEq)]
pub struct Settings {
    /// The URL spans are sent to (for HTTP, the full `…/v1/traces` URL).
    pub endpoint: String,
    pub protocol: Protocol,
    pub sample_ratio: f64,
    pub service_name: String,
    /// Sent with every export (a collector's API key, say): never logged.
    pub headers: Vec<(String, String)>,
    pub capture_content: bool,
    pub timeout: Duration,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("Settings")
            .field("endpoint", &self.endpoint)
            .field("protocol", &self.protocol)
            .field("sample_ratio", &self.sample_ratio)
            .field("service_name", &self.service_name)
            .field("headers", &names)
            .field("capture_content", &self.capture_content)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Settings {
    /// The config's request, completed from the environment (`env` reads a
    /// variable): the file wins where it says something; then
    /// `OTEL_EXPORTER_OTLP_TRACES_*`, then `OTEL_EXPORTER_OTLP_*`,
    /// `OTEL_TRACES_SAMPLER[_ARG]` and `OTEL_SERVICE_NAME`. `None` when no
    /// endpoint is set anywhere, or `OTEL_SDK_DISABLED=true`.
    pub fn resolve(
        requested: Requested,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, String> {
        let env = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        if env("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        let protocol = match requested.protocol {
            Some(p) => Protocol::parse(&p)?,
            None => match env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                .or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL"))
            {
                Some(p) => {
                    Protocol::parse(&p).map_err(|e| format!("OTEL_EXPORTER_OTLP_PROTOCOL: {e}"))?
                }
                None => Protocol::HttpProtobuf,
            },
        };
        // A base URL (ours, or `OTEL_EXPORTER_OTLP_ENDPOINT`) gets the
        // signal's path for HTTP; the per-signal variable is used as is.
        let endpoint = match (
            requested.otlp_endpoint,
            env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
        ) {
            (Some(base), _) => signal_url(&base, protocol),
            (None, Some(full)) => full.trim().to_string(),
            (None, None) => match env("OTEL_EXPORTER_OTLP_ENDPOINT") {
                Some(base) => signal_url(&base, protocol),
                None => return Ok(None),
            },
        };
        let parsed: http::Uri = endpoint.parse().map_err(|e| {
            format!("the OTLP endpoint {endpoint:?} must be an http:// or https:// URL: {e}")
        })?;
        if !matches!(parsed.scheme_str(), Some("http" | "https")) || parsed.host().is_none() {
            return Err(format!(
                "the OTLP endpoint {endpoint:?} must be an http:// or https:// URL"
            ));
        }
        let sample_ratio = match requested.sample_ratio {
            Some(r) => r,
            None => sampler_from_env(&env)?,
        };
        if !(0.0..=1.0).contains(&sample_ratio) {
            return Err(format!(
                "sample_ratio {sample_ratio} is not between 0 and 1"
            ));
        }
        let service_name = requested
            .service_name
            .or_else(|| env("OTEL_SERVICE_NAME"))
            .unwrap_or_else(|| "llm-router".into());
        let mut headers = Vec::new();
        for var in [
            "OTEL_EXPORTER_OTLP_HEADERS",
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        ] {
            if let Some(raw) = env(var) {
                for (k, v) in parse_headers(&raw) {
                    headers.retain(|(name, _): &(String, String)| !name.eq_ignore_ascii_case(&k));
                    headers.push((k, v));
                }
            }
        }
        for (k, v) in requested.headers {
            headers.retain(|(name, _)| !name.eq_ignore_ascii_case(&k));
            headers.push((k, v));
        }
        let timeout = env("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT")
            .or_else(|| env("OTEL_EXPORTER_OTLP_TIMEOUT"))
            .and_then(|ms| ms.trim().parse::<u64>().ok())
            .map_or(DEFAULT_TIMEOUT, Duration::from_millis);
        Ok(Some(Self {
            endpoint,
            protocol,
            sample_ratio,
            service_name,
            headers,
            capture_content: requested.capture_content,
            timeout,
        }))
    }
}

impl Settings {
    /// The endpoint without anything secret a URL may hold (user info, a
    /// query), for the log.
    pub fn describe_endpoint(&self) -> String {
        match self.endpoint.parse::<http::Uri>() {
            Ok(uri) => {
                format!(
                    "{}://{}{}",
                    uri.scheme_str().unwrap_or("http"),
                    uri.host().unwrap_or_default(),
                    uri.port().map(|p| format!(":{p}")).unwrap_or_default()
                ) + uri.path()
            }
            Err(_) => "(invalid)".into(),
        }
    }
}

/// A base URL as the traces endpoint: for HTTP, with `/v1/traces`
/// appended unless it is there already.
fn signal_url(base: &str, protocol: Protocol) -> String {
    let base = base.trim();
    match protocol {
        Protocol::Grpc => base.to_string(),
        Protocol::HttpProtobuf if base.trim_end_matches('/').ends_with("/v1/traces") => {
            base.to_string()
        }
        Protocol::HttpProtobuf => format!("{}/v1/traces", base.trim_end_matches('/')),
    }
}

/// The sample ratio `OTEL_TRACES_SAMPLER` and `_ARG` ask for (1 when unset).
fn sampler_from_env(env: &impl Fn(&str) -> Option<String>) -> Result<f64, String> {
    let arg = || {
        env("OTEL_TRACES_SAMPLER_ARG").map_or(Ok(1.0), |a| {
            a.trim()
                .parse::<f64>()
                .map_err(|_| format!("OTEL_TRACES_SAMPLER_ARG {a:?} is not a number"))
        })
    };
    match env("OTEL_TRACES_SAMPLER").as_deref().map(str::trim) {
        None | Some("always_on" | "parentbased_always_on") => Ok(1.0),
        Some("always_off" | "parentbased_always_off") => Ok(0.0),
        Some("traceidratio" | "parentbased_traceidratio") => arg(),
        Some(other) => Err(format!("OTEL_TRACES_SAMPLER {other:?} is not supported")),
    }
}

/// `k1=v1,k2=v2`, values percent-decoded (the OTLP exporter's format).
fn parse_headers(raw: &str) -> Vec<(String, String)> {
    raw.split(',')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            let k = k.trim();
            let v = percent_decode(v.trim());
            (!k.is_empty()).then(|| (k.to_string(), v))
        })
        .collect()
}

fn percent_decode(v: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", v.replace('+', "%2B")).as_bytes())
        .next()
        .map_or_else(|| v.to_string(), |(_, value)| value.into_owned())
}

/// The running exporter. Dropping it does not flush: call
/// [`Pipeline::shutdown`] when the server has stopped.
pub struct Pipeline {
    provider: SdkTracerProvider,
}

impl Pipeline {
    /// Starts exporting with `settings`, and returns the tracer the log
    /// setup turns request spans over to. Must run inside the Tokio
    /// runtime that will stay up while the process serves: the batch
    /// exporter's task runs on it.
    pub fn start(settings: &Settings) -> Result<(Self, opentelemetry_sdk::trace::Tracer), String> {
        use opentelemetry::trace::TracerProvider as _;
        use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, Sampler};

        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| "trace export needs the Tokio runtime".to_string())?;
        let exporter = exporter(settings)?;
        let queue = if settings.capture_content {
            QUEUE_WITH_CONTENT
        } else {
            QUEUE
        };
        let pending = Arc::new(AtomicUsize::new(0));
        let batch = BatchConfigBuilder::default()
            .with_max_queue_size(queue)
            .with_max_export_batch_size(512.min(queue))
            .build();
        // The SDK's batch processor: a thread that takes finished spans from
        // a channel without being woken for each (it wakes for a full batch,
        // or on its timer), and hands batches to the exporter, which runs
        // them on the runtime (the OTLP clients are Tokio's).
        let processor = BatchSpanProcessor::builder(Counted {
            inner: Arc::new(exporter),
            pending: pending.clone(),
            runtime,
            timeout: settings.timeout,
        })
        .with_batch_config(batch)
        .build();
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name(settings.service_name.clone())
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(Bounded {
                inner: processor,
                pending,
                max: queue,
            })
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                settings.sample_ratio,
            ))))
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("llm-router");
        CAPTURE_CONTENT.store(settings.capture_content, Relaxed);
        ENABLED.store(true, Relaxed);
        Ok((Self { provider }, tracer))
    }

    /// Exports what is queued (within 5 s), then stops.
    pub fn shutdown(self) {
        ENABLED.store(false, Relaxed);
        if let Err(e) = self.provider.shutdown_with_timeout(Duration::from_secs(5)) {
            tracing::warn!(error = %e, "trace export did not finish at shutdown");
        }
    }
}

fn exporter(settings: &Settings) -> Result<opentelemetry_otlp::SpanExporter, String> {
    use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};

    let built = match settings.protocol {
        Protocol::HttpProtobuf => {
            let client = opentelemetry_http::hyper::HyperClient::new(
                https_connector(),
                settings.timeout,
                None,
            );
            opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_http_client(client)
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(settings.endpoint.clone())
                .with_timeout(settings.timeout)
                .with_headers(settings.headers.iter().cloned().collect::<HashMap<_, _>>())
                .build()
        }
        Protocol::Grpc => {
            let mut metadata = tonic::metadata::MetadataMap::new();
            for (k, v) in &settings.headers {
                let key =
                    tonic::metadata::MetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes())
                        .map_err(|_| {
                            format!("tracing header {k:?} is not a valid gRPC metadata name")
                        })?;
                let value = v
                    .parse()
                    .map_err(|_| format!("the value of tracing header {k:?} is not valid"))?;
                metadata.insert(key, value);
            }
            let mut builder = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(settings.endpoint.clone())
                .with_timeout(settings.timeout)
                .with_metadata(metadata);
            if settings.endpoint.starts_with("https://") {
                builder = builder
                    .with_tls_config(tonic::transport::ClientTlsConfig::new().with_enabled_roots());
            }
            builder.build()
        }
    };
    built.map_err(|e| format!("cannot set up trace export: {e}"))
}

/// HTTP and HTTPS (rustls, Mozilla's roots plus the system's) to the
/// collector.
fn https_connector()
-> hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map(|b| b.with_root_certificates(roots).with_no_client_auth());
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    let builder = hyper_rustls::HttpsConnectorBuilder::new();
    match tls {
        Ok(tls) => builder
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http),
        // ring supports the default versions; should it not, plain HTTP
        // still works and HTTPS exports fail (and are counted).
        Err(_) => builder
            .with_tls_config(
                rustls::ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_protocol_versions(rustls::DEFAULT_VERSIONS)
                .expect("ring supports TLS 1.2 and 1.3")
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
            )
            .https_or_http()
            .enable_http1()
            .wrap_connector(http),
    }
}

/// The exporter as the batch processor's thread sees it: each export runs
/// on the Tokio runtime, within the export timeout; the spans of one that
/// fails or times out are counted lost; either way their places in the
/// queue are released.
#[derive(Debug)]
struct Counted<E> {
    inner: Arc<E>,
    pending: Arc<AtomicUsize>,
    runtime: tokio::runtime::Handle,
    timeout: Duration,
}

/// One export's spans: released (and counted lost unless the export
/// succeeded) when the export ends, however it ends.
struct InFlight<'a> {
    pending: &'a AtomicUsize,
    spans: usize,
    ok: bool,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.pending.fetch_sub(self.spans, Relaxed);
        if !self.ok {
            lost("export_failed", self.spans);
        }
    }
}

impl<E: SpanExporter + 'static> SpanExporter for Counted<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        use opentelemetry_sdk::error::OTelSdkError;
        let mut in_flight = InFlight {
            pending: &self.pending,
            spans: batch.len(),
            ok: false,
        };
        let (inner, timeout) = (self.inner.clone(), self.timeout);
        let task = self
            .runtime
            .spawn(async move { tokio::time::timeout(timeout, inner.export(batch)).await });
        let result = match task.await {
            Ok(Ok(result)) => result,
            Ok(Err(_elapsed)) => Err(OTelSdkError::Timeout(timeout)),
            Err(e) => Err(OTelSdkError::InternalFailure(e.to_string())),
        };
        in_flight.ok = result.is_ok();
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        // Called once, when the provider is built: before any export
        // holds a clone.
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.set_resource(resource);
        }
    }
}

/// The batch processor behind a queue bound of our own: a span that would
/// not fit is dropped here and counted (the SDK's own queue would drop it
/// silently). `pending` counts spans handed on and not yet exported, so
/// the SDK's queue (as large as `max`) never fills.
#[derive(Debug)]
struct Bounded<P> {
    inner: P,
    pending: Arc<AtomicUsize>,
    max: usize,
}

impl<P: SpanProcessor> SpanProcessor for Bounded<P> {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &opentelemetry::Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if self.pending.fetch_add(1, Relaxed) >= self.max {
            self.pending.fetch_sub(1, Relaxed);
            lost("queue_full", 1);
            return;
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}

/// A request's span, or an attempt's: empty when traces are off (or the
/// request is not traced), and then every method is a no-op.
#[derive(Clone, Debug, Default)]
pub struct Trace(Option<tracing::Span>);

impl Trace {
    /// No span.
    pub const fn off() -> Self {
        Self(None)
    }

    /// The server span of a request to `name` (e.g. `POST
    /// /v1/chat/completions`), child of the client's `traceparent` if it
    /// sent one.
    pub fn server(name: &'static str, headers: &HeaderMap) -> Self {
        if !enabled() {
            return Self(None);
        }
        let span = tracing::info_span!(
            target: TARGET,
            parent: None,
            "request",
            otel.name = name,
            otel.kind = "server"
        );
        if headers.contains_key("traceparent") {
            let parent = TraceContextPropagator::new()
                .extract(&opentelemetry_http::HeaderExtractor(headers));
            let _ = span.set_parent(parent);
        }
        Self(Some(span))
    }

    /// A child span for one upstream attempt, named `name` (e.g. `chat
    /// gpt-4o`).
    pub fn attempt(&self, name: String) -> Self {
        let Some(parent) = &self.0 else {
            return Self(None);
        };
        Self(Some(tracing::info_span!(
            target: TARGET,
            parent: parent,
            "attempt",
            otel.name = name,
            otel.kind = "client"
        )))
    }

    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }

    /// Sets an attribute (nothing when off).
    pub fn set(&self, key: &'static str, value: impl Into<Value>) {
        if let Some(span) = &self.0 {
            span.set_attribute(key, value);
        }
    }

    /// Marks the span failed, with OpenTelemetry's `error.type`.
    pub fn fail(&self, error_type: &'static str) {
        if let Some(span) = &self.0 {
            span.set_attribute("error.type", error_type);
            span.set_status(Status::error(error_type));
        }
    }

    /// Text, cut to [`MAX_CONTENT_BYTES`] at a character boundary, when
    /// content capture is on.
    pub fn set_content(&self, key: &'static str, text: &[u8]) {
        if self.0.is_none() || !capture_content() {
            return;
        }
        let mut end = text.len().min(MAX_CONTENT_BYTES);
        let text = loop {
            match std::str::from_utf8(&text[..end]) {
                Ok(t) => break t,
                Err(e) => end = e.valid_up_to(),
            }
        };
        self.set(key, text.to_string());
    }

    /// Writes this span's `traceparent` (and `tracestate`) into `headers`.
    pub fn inject(&self, headers: &mut HeaderMap) {
        if let Some(span) = &self.0 {
            let cx = span.context();
            TraceContextPropagator::new()
                .inject_context(&cx, &mut opentelemetry_http::HeaderInjector(headers));
        }
    }

    /// The trace id, as 32 hex digits, for the log line.
    pub fn trace_id(&self) -> Option<String> {
        let span = self.0.as_ref()?;
        let cx = span.context();
        let id = cx.span().span_context().trace_id();
        (id != opentelemetry::trace::TraceId::INVALID).then(|| id.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(requested: Requested, vars: &[(&str, &str)]) -> Result<Option<Settings>, String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::resolve(requested, |name| vars.get(name).cloned())
    }

    fn endpoint(e: &str) -> Requested {
        Requested {
            otlp_endpoint: Some(e.into()),
            ..Requested::default()
        }
    }

    #[test]
    fn nothing_is_exported_without_an_endpoint() {
        assert_eq!(resolve(Requested::default(), &[]), Ok(None));
        let disabled = resolve(
            endpoint("http://collector:4318"),
            &[("OTEL_SDK_DISABLED", "true")],
        );
        assert_eq!(disabled, Ok(None));
    }

    #[test]
    fn a_base_url_gets_the_traces_path_for_http_only() {
        let s = resolve(endpoint("http://collector:4318"), &[])
            .unwrap()
            .unwrap();
        assert_eq!(s.endpoint, "http://collector:4318/v1/traces");
        assert_eq!(s.protocol, Protocol::HttpProtobuf);
        assert_eq!(s.sample_ratio, 1.0);
        assert_eq!(s.service_name, "llm-router");
        assert_eq!(s.timeout, DEFAULT_TIMEOUT);
        let s = resolve(endpoint("http://collector:4318/v1/traces/"), &[])
            .unwrap()
            .unwrap();
        assert_eq!(s.endpoint, "http://collector:4318/v1/traces/");
        let grpc = Requested {
            protocol: Some("grpc".into()),
            ..endpoint("http://collector:4317")
        };
        let s = resolve(grpc, &[]).unwrap().unwrap();
        assert_eq!(
            (s.endpoint.as_str(), s.protocol),
            ("http://collector:4317", Protocol::Grpc)
        );
    }

    #[test]
    fn the_environment_fills_what_the_file_leaves_out() {
        let vars = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://otel.example:4318/"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=abc%3D%3D,x-team=a"),
            ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-team=b"),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
            ("OTEL_SERVICE_NAME", "gateway"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
        ];
        let s = resolve(Requested::default(), &vars).unwrap().unwrap();
        assert_eq!(s.endpoint, "https://otel.example:4318/v1/traces");
        assert_eq!(s.sample_ratio, 0.25);
        assert_eq!(s.service_name, "gateway");
        assert_eq!(s.timeout, Duration::from_millis(2500));
        assert_eq!(
            s.headers,
            vec![
                ("x-api-key".to_string(), "abc==".to_string()),
                ("x-team".to_string(), "b".to_string())
            ]
        );
        // The file wins where it speaks.
        let file = Requested {
            otlp_endpoint: Some("http://local:4318".into()),
            sample_ratio: Some(1.0),
            service_name: Some("router-a".into()),
            headers: vec![("X-Team".into(), "file".into())],
            ..Requested::default()
        };
        let s = resolve(file, &vars).unwrap().unwrap();
        assert_eq!(s.endpoint, "http://local:4318/v1/traces");
        assert_eq!(s.sample_ratio, 1.0);
        assert_eq!(s.service_name, "router-a");
        assert_eq!(
            s.headers,
            vec![
                ("x-api-key".to_string(), "abc==".to_string()),
                ("X-Team".to_string(), "file".to_string())
            ]
        );
        // The per-signal endpoint is taken as it is.
        let s = resolve(
            Requested::default(),
            &[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:9999/custom")],
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.endpoint, "http://c:9999/custom");
        let s = resolve(
            Requested::default(),
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ("OTEL_TRACES_SAMPLER", "always_off"),
            ],
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (s.endpoint.as_str(), s.protocol, s.sample_ratio),
            ("http://c:4317", Protocol::Grpc, 0.0)
        );
    }

    #[test]
    fn bad_settings_are_refused_with_the_reason() {
        let bad = |r, vars: &[(&str, &str)]| resolve(r, vars).unwrap_err();
        assert!(bad(endpoint("collector:4318"), &[]).contains("http:// or https://"));
        assert!(bad(endpoint("ftp://collector"), &[]).contains("http:// or https://"));
        let ratio = Requested {
            sample_ratio: Some(1.5),
            ..endpoint("http://c:4318")
        };
        assert!(bad(ratio, &[]).contains("between 0 and 1"));
        let protocol = Requested {
            protocol: Some("http/json".into()),
            ..endpoint("http://c:4318")
        };
        assert!(bad(protocol, &[]).contains("http/protobuf"));
        assert!(
            bad(
                endpoint("http://c:4318"),
                &[
                    ("OTEL_TRACES_SAMPLER", "traceidratio"),
                    ("OTEL_TRACES_SAMPLER_ARG", "x")
                ]
            )
            .contains("OTEL_TRACES_SAMPLER_ARG")
        );
        assert!(
            bad(
                endpoint("http://c:4318"),
                &[("OTEL_TRACES_SAMPLER", "jaeger_remote")]
            )
            .contains("not supported")
        );
    }

    #[test]
    fn headers_never_show_in_debug_output() {
        let s = resolve(
            Requested {
                headers: vec![("authorization".into(), "Bearer collector-secret".into())],
                ..endpoint("http://c:4318")
            },
            &[],
        )
        .unwrap()
        .unwrap();
        let shown = format!("{s:?}");
        assert!(
            shown.contains("authorization") && !shown.contains("collector-secret"),
            "{shown}"
        );
    }

    #[test]
    fn an_empty_trace_does_nothing() {
        let t = Trace::off();
        assert!(!t.is_on());
        assert!(!t.attempt("chat x".into()).is_on());
        let mut headers = HeaderMap::new();
        t.inject(&mut headers);
        assert!(headers.is_empty());
        assert_eq!(t.trace_id(), None);
        // Not enabled: no server span either.
        assert!(!Trace::server("POST /v1/chat/completions", &HeaderMap::new()).is_on());
    }

    #[test]
    fn lost_spans_are_counted_by_reason() {
        let before = |reason| {
            EXPORT_FAILURES
                .get_or_create(&FailureLabels { reason })
                .get()
        };
        let (failed, full) = (before("export_failed"), before("queue_full"));
        let pending = AtomicUsize::new(3);
        drop(InFlight {
            pending: &pending,
            spans: 3,
            ok: false,
        });
        assert_eq!(pending.load(Relaxed), 0);
        assert_eq!(before("export_failed"), failed + 3);
        pending.store(2, Relaxed);
        drop(InFlight {
            pending: &pending,
            spans: 2,
            ok: true,
        });
        assert_eq!(pending.load(Relaxed), 0);
        assert_eq!(before("export_failed"), failed + 3);
        assert_eq!(before("queue_full"), full);
    }

    #[derive(Debug, Default)]
    struct Counting(AtomicUsize);

    impl SpanProcessor for Counting {
        fn on_start(&self, _: &mut opentelemetry_sdk::trace::Span, _: &opentelemetry::Context) {}
        fn on_end(&self, _: SpanData) {
            self.0.fetch_add(1, Relaxed);
        }
        fn force_flush(&self) -> OTelSdkResult {
            Ok(())
        }
        fn shutdown_with_timeout(&self, _: Duration) -> OTelSdkResult {
            Ok(())
        }
    }

    fn span() -> SpanData {
        SpanData {
            span_context: opentelemetry::trace::SpanContext::empty_context(),
            parent_span_id: opentelemetry::trace::SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: opentelemetry::trace::SpanKind::Server,
            name: "s".into(),
            start_time: std::time::SystemTime::now(),
            end_time: std::time::SystemTime::now(),
            attributes: Vec::new(),
            dropped_attributes_count: 0,
            events: Default::default(),
            links: Default::default(),
            status: Status::Unset,
            instrumentation_scope: Default::default(),
        }
    }

    #[test]
    fn spans_past_the_queue_bound_are_dropped_and_counted() {
        let full = || {
            EXPORT_FAILURES
                .get_or_create(&FailureLabels {
                    reason: "queue_full",
                })
                .get()
        };
        let before = full();
        let bounded = Bounded {
            inner: Counting::default(),
            pending: Arc::new(AtomicUsize::new(0)),
            max: 2,
        };
        for _ in 0..5 {
            bounded.on_end(span());
        }
        assert_eq!(bounded.inner.0.load(Relaxed), 2, "two fit");
        assert_eq!(bounded.pending.load(Relaxed), 2);
        // Other tests may drop spans too; this one dropped three.
        assert!(full() >= before + 3);
        // An export releases its spans' places.
        bounded.pending.fetch_sub(2, Relaxed);
        bounded.on_end(span());
        assert_eq!(bounded.inner.0.load(Relaxed), 3);
    }
}
