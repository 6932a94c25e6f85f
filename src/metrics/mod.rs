//! Prometheus metrics, with nothing locked on the request path.
//!
//! prometheus-client's `Family` takes a read lock per lookup and its
//! `Histogram` a write lock per observation. So: every counter and histogram
//! a successful request touches is looked up once, when a routing table is
//! built, and kept as a handle in the candidate ([`CandidateMetrics`]);
//! histograms are our own [`LatencyHistogram`], atomics only. Failure paths
//! (rare by definition) may use `get_or_create`. Gauges that describe state
//! (cooldowns, store health) are set when `/metrics` is scraped.

pub mod recent;
pub mod series;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

/// Upper bounds, in seconds: from 5 ms to 5 min, for LLM latencies.
const BOUNDS: [f64; 16] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0,
];

/// A fixed-bucket histogram of atomics; cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct LatencyHistogram(Arc<HistogramInner>);

#[derive(Debug, Default)]
struct HistogramInner {
    /// Per-bucket counts (not cumulative); the last slot is +Inf.
    buckets: [AtomicU64; BOUNDS.len() + 1],
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl LatencyHistogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = BOUNDS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BOUNDS.len());
        self.0.buckets[i].fetch_add(1, Relaxed);
        self.0.sum_micros.fetch_add(d.as_micros() as u64, Relaxed);
        self.0.count.fetch_add(1, Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.0.count.load(Relaxed)
    }

    /// The `q` quantile (0..=1) in seconds, interpolated within its bucket.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let counts: Vec<u64> = self.0.buckets.iter().map(|b| b.load(Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * total as f64).max(1.0);
        let mut seen = 0u64;
        for (i, &c) in counts.iter().enumerate() {
            if c > 0 && (seen + c) as f64 >= rank {
                let lower = if i == 0 { 0.0 } else { BOUNDS[i - 1] };
                let upper = *BOUNDS.get(i).unwrap_or(&BOUNDS[BOUNDS.len() - 1]);
                let within = (rank - seen as f64) / c as f64;
                return Some(lower + (upper - lower) * within);
            }
            seen += c;
        }
        None
    }
}

impl TypedMetric for LatencyHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for LatencyHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        // Per-bucket counts: the encoder accumulates them, and prints the
        // infinite bound as +Inf.
        let buckets: Vec<(f64, u64)> = self
            .0
            .buckets
            .iter()
            .enumerate()
            .map(|(i, b)| {
                (
                    BOUNDS.get(i).copied().unwrap_or(f64::INFINITY),
                    b.load(Relaxed),
                )
            })
            .collect();
        encoder.encode_histogram::<NoLabelSet>(
            self.0.sum_micros.load(Relaxed) as f64 / 1e6,
            self.0.count.load(Relaxed),
            &buckets,
            None,
        )
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub group: String,
    pub provider: String,
    pub model: String,
    pub key: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CandidateLabels {
    pub provider: String,
    pub key: String,
    pub model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    pub provider: String,
    pub key: String,
    pub model: String,
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub provider: String,
    pub key: String,
    pub model: String,
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderModelLabels {
    pub provider: String,
    pub model: String,
}

/// A counter of dollars (a float, added to without a lock).
pub type UsdCounter = Counter<f64, AtomicU64>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    pub group: String,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabels {
    pub group: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    pub listener: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabels {
    pub code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabels {
    pub provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClientLabels {
    pub client: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BudgetLabels {
    pub client: String,
    /// `tokens` or `usd`.
    pub budget: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

/// Cache results over all groups, as atomics (the families above are by
/// group, and cannot be summed without a lock).
#[derive(Debug, Default)]
pub struct CacheTotals {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub bypasses: AtomicU64,
    pub saved_tokens: AtomicU64,
    pub saved_nanos: AtomicU64,
}

/// Every metric the router exports.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub rejected: Family<CodeLabels, Counter>,
    pub answered_locally: Family<CodeLabels, Counter>,
    pub tokens: Family<TokenLabels, Counter>,
    pub estimated: Family<CandidateLabels, Counter>,
    pub failovers: Family<GroupLabels, Counter>,
    pub upstream_errors: Family<ErrorLabels, Counter>,
    pub duration: Family<CandidateLabels, LatencyHistogram>,
    pub first_token: Family<CandidateLabels, LatencyHistogram>,
    pub upstream_latency: Family<CandidateLabels, LatencyHistogram>,
    pub in_flight: Gauge,
    pub open_streams: Gauge,
    pub cooldown: Family<CandidateLabels, Gauge>,
    pub key_cooldown: Family<CandidateLabels, Gauge>,
    pub provider_up: Family<ProviderLabels, Gauge>,
    pub store_healthy: Gauge,
    pub store_failures: Gauge<u64, AtomicU64>,
    pub reloads: Family<OutcomeLabels, Counter>,
    /// Admin and dashboard key checks that failed, by outcome.
    pub admin_auth_failures: Family<CodeLabels, Counter>,
    /// Unix time at which each listener's certificate expires.
    pub tls_cert_expiry: Family<ListenerLabels, Gauge>,
    /// Certificate reloads by outcome.
    pub tls_reloads: Family<CodeLabels, Counter>,
    pub client_requests: Family<ClientLabels, Counter>,
    pub client_tokens: Family<ClientLabels, Counter>,
    pub client_limited: Family<ClientLabels, Counter>,
    pub cost: Family<ProviderModelLabels, UsdCounter>,
    pub client_cost: Family<ClientLabels, UsdCounter>,
    /// Set at each scrape from the client keys' budgets.
    pub client_budget_used: Family<BudgetLabels, Gauge<f64, AtomicU64>>,
    pub cache_requests: Family<CacheLabels, Counter>,
    pub cache_bytes: Gauge,
    pub cache_saved_tokens: Family<GroupLabels, Counter>,
    pub cache_saved_cost: Family<GroupLabels, UsdCounter>,
    /// The last requests, for the dashboard (not exported).
    pub recent: recent::Recent,
    /// Cache results over all groups, for the dashboard.
    pub cache_totals: CacheTotals,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("llm_router");
        let m = Self {
            requests: Family::default(),
            rejected: Family::default(),
            answered_locally: Family::default(),
            tokens: Family::default(),
            estimated: Family::default(),
            failovers: Family::default(),
            upstream_errors: Family::default(),
            duration: Family::default(),
            first_token: Family::default(),
            upstream_latency: Family::default(),
            in_flight: Gauge::default(),
            open_streams: Gauge::default(),
            cooldown: Family::default(),
            key_cooldown: Family::default(),
            provider_up: Family::default(),
            store_healthy: Gauge::default(),
            store_failures: Gauge::default(),
            reloads: Family::default(),
            admin_auth_failures: Family::default(),
            tls_cert_expiry: Family::default(),
            tls_reloads: Family::default(),
            client_requests: Family::default(),
            client_tokens: Family::default(),
            client_limited: Family::default(),
            cost: Family::default(),
            client_cost: Family::default(),
            client_budget_used: Family::default(),
            cache_requests: Family::default(),
            cache_bytes: Gauge::default(),
            cache_saved_tokens: Family::default(),
            cache_saved_cost: Family::default(),
            recent: Default::default(),
            cache_totals: Default::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "requests",
            "Routed requests by group, provider, model, key alias and status",
            m.requests.clone(),
        );
        r.register(
            "rejected_requests",
            "Requests answered without reaching an upstream, by error code",
            m.rejected.clone(),
        );
        r.register(
            "answered_locally",
            "Requests the router answered itself, without an upstream, by what it did",
            m.answered_locally.clone(),
        );
        r.register(
            "tokens",
            "Tokens by provider, key alias, model and kind (prompt or completion)",
            m.tokens.clone(),
        );
        r.register(
            "estimated_usage_requests",
            "Requests whose usage was estimated because upstream reported none",
            m.estimated.clone(),
        );
        r.register(
            "failovers",
            "Attempts that failed over to another candidate, by group",
            m.failovers.clone(),
        );
        r.register(
            "upstream_errors",
            "Failed upstream attempts by kind",
            m.upstream_errors.clone(),
        );
        r.register(
            "request_duration_seconds",
            "Total request latency, streams until their end",
            m.duration.clone(),
        );
        r.register(
            "time_to_first_token_seconds",
            "Streams: time until the first event reached the client",
            m.first_token.clone(),
        );
        r.register(
            "upstream_response_seconds",
            "Time until the upstream's response headers",
            m.upstream_latency.clone(),
        );
        r.register(
            "in_flight_requests",
            "Requests being handled, streams included",
            m.in_flight.clone(),
        );
        r.register(
            "open_streams",
            "SSE streams open to clients",
            m.open_streams.clone(),
        );
        r.register(
            "cooldown_active",
            "1 while a key+model is cooling down",
            m.cooldown.clone(),
        );
        r.register(
            "key_cooldown_active",
            "1 while a whole key is cooling down (model label is *)",
            m.key_cooldown.clone(),
        );
        r.register(
            "provider_up",
            "0 while active health checks mark a provider down",
            m.provider_up.clone(),
        );
        r.register(
            "store_healthy",
            "1 while the usage store syncs successfully",
            m.store_healthy.clone(),
        );
        r.register(
            "store_sync_failures",
            "Failed usage store syncs since start",
            m.store_failures.clone(),
        );
        r.register(
            "admin_auth_failures",
            "Admin and dashboard key checks refused: a wrong key (wrong_key), or an address locked out after too many (locked_out)",
            m.admin_auth_failures.clone(),
        );
        r.register(
            "tls_certificate_expiry_timestamp_seconds",
            "When each listener's serving certificate expires (Unix time)",
            m.tls_cert_expiry.clone(),
        );
        r.register(
            "tls_reloads",
            "Certificate reloads by outcome (ok, error)",
            m.tls_reloads.clone(),
        );
        r.register(
            "trace_export_failures",
            "Spans lost: an export failed or timed out (export_failed), or the export queue was full (queue_full)",
            crate::telemetry::traces::EXPORT_FAILURES.clone(),
        );
        r.register(
            "config_reloads",
            "Config reloads by outcome",
            m.reloads.clone(),
        );
        r.register(
            "client_requests",
            "Admitted requests by client key name",
            m.client_requests.clone(),
        );
        r.register(
            "client_tokens",
            "Tokens used by client key name",
            m.client_tokens.clone(),
        );
        r.register(
            "client_rate_limited",
            "Requests refused by a client's limits",
            m.client_limited.clone(),
        );
        r.register(
            "cost_usd",
            "Money spent, in US dollars, by provider and model (models with a price only)",
            m.cost.clone(),
        );
        r.register(
            "client_cost_usd",
            "Money spent, in US dollars, by client key name",
            m.client_cost.clone(),
        );
        r.register(
            "client_budget_used_ratio",
            "Share of a client key's budget used in its current window (or for all time), by client and budget (tokens, usd); 1 means spent",
            m.client_budget_used.clone(),
        );
        r.register(
            "cache_requests",
            "Requests to groups that cache, by group and result (hit, miss, bypass)",
            m.cache_requests.clone(),
        );
        r.register(
            "cache_bytes",
            "Bytes the memory cache holds",
            m.cache_bytes.clone(),
        );
        r.register(
            "cache_saved_tokens",
            "Tokens cache hits did not spend, by group",
            m.cache_saved_tokens.clone(),
        );
        r.register(
            "cache_saved_cost_usd",
            "Dollars cache hits did not spend, by group",
            m.cache_saved_cost.clone(),
        );
        Self { registry, ..m }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Resolves a candidate's handles once, when a routing table is built.
    pub fn candidate(
        &self,
        group: &str,
        provider: &str,
        key: &str,
        model: &str,
    ) -> CandidateMetrics {
        let labels = CandidateLabels {
            provider: provider.into(),
            key: key.into(),
            model: model.into(),
        };
        let tokens = |kind| {
            self.tokens
                .get_or_create(&TokenLabels {
                    provider: provider.into(),
                    key: key.into(),
                    model: model.into(),
                    kind,
                })
                .clone()
        };
        CandidateMetrics {
            ok: self
                .requests
                .get_or_create(&RequestLabels {
                    group: group.into(),
                    provider: provider.into(),
                    model: model.into(),
                    key: key.into(),
                    status: 200,
                })
                .clone(),
            prompt_tokens: tokens("prompt"),
            completion_tokens: tokens("completion"),
            estimated: self.estimated.get_or_create(&labels).clone(),
            cost: self
                .cost
                .get_or_create(&ProviderModelLabels {
                    provider: provider.into(),
                    model: model.into(),
                })
                .clone(),
            duration: self.duration.get_or_create(&labels).clone(),
            first_token: self.first_token.get_or_create(&labels).clone(),
            upstream_latency: self.upstream_latency.get_or_create(&labels).clone(),
            labels,
            group: group.into(),
        }
    }

    pub fn in_flight(&self) -> InFlight {
        InFlight::new(self.in_flight.clone())
    }
}

/// Handles one candidate's request path uses; increments are atomics.
#[derive(Debug, Clone)]
pub struct CandidateMetrics {
    ok: Counter,
    pub prompt_tokens: Counter,
    pub completion_tokens: Counter,
    pub estimated: Counter,
    /// Dollars spent on this provider and model.
    pub cost: UsdCounter,
    pub duration: LatencyHistogram,
    pub first_token: LatencyHistogram,
    pub upstream_latency: LatencyHistogram,
    labels: CandidateLabels,
    group: String,
}

impl CandidateMetrics {
    /// Counts a request by status: lock-free for 200, a family lookup otherwise.
    pub fn request(&self, metrics: &Metrics, status: u16) {
        if status == 200 {
            self.ok.inc();
        } else {
            metrics
                .requests
                .get_or_create(&RequestLabels {
                    group: self.group.clone(),
                    provider: self.labels.provider.clone(),
                    model: self.labels.model.clone(),
                    key: self.labels.key.clone(),
                    status,
                })
                .inc();
        }
    }

    pub fn upstream_error(&self, metrics: &Metrics, kind: &'static str) {
        metrics
            .upstream_errors
            .get_or_create(&ErrorLabels {
                provider: self.labels.provider.clone(),
                key: self.labels.key.clone(),
                model: self.labels.model.clone(),
                kind,
            })
            .inc();
    }
}

/// Counts a request (or stream) as in flight until dropped.
#[derive(Debug)]
pub struct InFlight(Gauge<i64, AtomicI64>);

impl InFlight {
    pub fn new(gauge: Gauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_the_right_buckets() {
        let h = LatencyHistogram::default();
        assert_eq!(h.quantile(0.5), None);
        for _ in 0..90 {
            h.observe(Duration::from_millis(8));
        }
        for _ in 0..10 {
            h.observe(Duration::from_millis(800));
        }
        let p50 = h.quantile(0.5).unwrap();
        assert!((0.005..=0.01).contains(&p50), "{p50}");
        let p99 = h.quantile(0.99).unwrap();
        assert!((0.5..=1.0).contains(&p99), "{p99}");
    }

    #[test]
    fn histograms_encode_cumulative_buckets() {
        let m = Metrics::new();
        let c = m.candidate("g", "p", "p#0", "m");
        c.duration.observe(Duration::from_millis(7));
        c.duration.observe(Duration::from_secs(400));
        c.request(&m, 200);
        c.request(&m, 429);
        let text = m.encode();
        assert!(text.contains("llm_router_request_duration_seconds_bucket{le=\"0.01\",provider=\"p\",key=\"p#0\",model=\"m\"} 1"), "{text}");
        assert!(text.contains("llm_router_request_duration_seconds_bucket{le=\"300.0\",provider=\"p\",key=\"p#0\",model=\"m\"} 1"), "{text}");
        assert!(text.contains("llm_router_request_duration_seconds_bucket{le=\"+Inf\",provider=\"p\",key=\"p#0\",model=\"m\"} 2"), "{text}");
        assert!(text.contains("llm_router_request_duration_seconds_count{provider=\"p\",key=\"p#0\",model=\"m\"} 2"), "{text}");
        assert!(text.contains("llm_router_requests_total{group=\"g\",provider=\"p\",model=\"m\",key=\"p#0\",status=\"429\"} 1"), "{text}");
    }
}
