//! Client keys: who is calling, what they may use, and their limits.
//!
//! Besides the single `api_key`, each entry of `client_keys` is a caller
//! with a name, optional group scope, and optional requests-per-minute,
//! tokens-per-minute and total-token budget. Limits are checked at
//! admission with atomics only: a two-bucket sliding minute (the current
//! minute plus the previous one, weighted by how much of it still overlaps
//! the last 60 s). Rate counters are per instance; the budget is counted in
//! the usage ledger under `("client", fingerprint, "*")`, so it is persisted
//! and, with Redis, shared.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue};
use prometheus_client::metrics::counter::Counter;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{ClientKeyConfig, Config};
use crate::metrics::Metrics;
use crate::usage::{Ledger, UsageCell, UsageKey};

/// Who made a request.
#[derive(Debug, Clone)]
pub enum Caller {
    /// The router-wide `api_key`: no scope, no limits.
    Master,
    Client(Arc<Client>),
}

impl Caller {
    pub fn client(&self) -> Option<&Arc<Client>> {
        match self {
            Self::Master => None,
            Self::Client(c) => Some(c),
        }
    }
}

/// One configured client key.
#[derive(Debug)]
pub struct Client {
    pub name: Arc<str>,
    pub fingerprint: Arc<str>,
    key_hash: [u8; 32],
    groups: Option<Vec<String>>,
    rpm: Option<u64>,
    tpm: Option<u64>,
    budget: Option<u64>,
    pub state: Arc<ClientState>,
    pub usage: Arc<UsageCell>,
    requests_metric: Counter,
    tokens_metric: Counter,
}

/// Per-client rate counters, shared across reloads.
#[derive(Debug, Default)]
pub struct ClientState {
    minute: AtomicU64,
    req_cur: AtomicU64,
    req_prev: AtomicU64,
    tok_cur: AtomicU64,
    tok_prev: AtomicU64,
}

/// Rate-limit state as OpenAI reports it in `x-ratelimit-*` headers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateHeaders(Vec<(&'static str, String)>);

impl RateHeaders {
    pub fn apply(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.0 {
            if let Ok(v) = HeaderValue::from_str(value) {
                headers.insert(HeaderName::from_static(name), v);
            }
        }
    }
}

/// Why a client was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited {
    pub message: String,
    pub retry_after_secs: Option<u64>,
    pub headers: RateHeaders,
    pub quota_exhausted: bool,
}

fn now_secs_f64() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl ClientState {
    /// Rolls the buckets to the current minute; returns the fraction of the
    /// previous minute still inside the sliding window.
    fn roll(&self, now: f64) -> f64 {
        let minute = (now / 60.0) as u64;
        let seen = self.minute.load(Relaxed);
        if seen != minute
            && self
                .minute
                .compare_exchange(seen, minute, Relaxed, Relaxed)
                .is_ok()
        {
            let (req, tok) = if minute == seen + 1 {
                (self.req_cur.swap(0, Relaxed), self.tok_cur.swap(0, Relaxed))
            } else {
                self.req_cur.store(0, Relaxed);
                self.tok_cur.store(0, Relaxed);
                (0, 0)
            };
            self.req_prev.store(req, Relaxed);
            self.tok_prev.store(tok, Relaxed);
        }
        1.0 - (now % 60.0) / 60.0
    }

    fn rates(&self, now: f64) -> (f64, f64) {
        let weight = self.roll(now);
        let req = self.req_prev.load(Relaxed) as f64 * weight + self.req_cur.load(Relaxed) as f64;
        let tok = self.tok_prev.load(Relaxed) as f64 * weight + self.tok_cur.load(Relaxed) as f64;
        (req, tok)
    }

    pub fn add_tokens(&self, tokens: u64) {
        self.roll(now_secs_f64());
        self.tok_cur.fetch_add(tokens, Relaxed);
    }
}

impl Client {
    /// Whether this key may use `group` (requested as `requested`).
    pub fn may_use(&self, group: &str, requested: &str) -> bool {
        self.groups
            .as_ref()
            .is_none_or(|g| g.iter().any(|n| n == group || n == requested))
    }

    /// Admits a request that will use about `prompt_tokens`, or says why not.
    pub fn admit(&self, prompt_tokens: u64) -> Result<RateHeaders, Limited> {
        let now = now_secs_f64();
        let (req_rate, tok_rate) = self.state.rates(now);
        let reset = 60.0 - now % 60.0;
        let mut headers = Vec::new();
        if let Some(rpm) = self.rpm {
            headers.push(("x-ratelimit-limit-requests", rpm.to_string()));
            headers.push((
                "x-ratelimit-remaining-requests",
                (rpm as f64 - req_rate - 1.0).max(0.0).floor().to_string(),
            ));
            headers.push(("x-ratelimit-reset-requests", format!("{reset:.0}s")));
        }
        if let Some(tpm) = self.tpm {
            headers.push(("x-ratelimit-limit-tokens", tpm.to_string()));
            headers.push((
                "x-ratelimit-remaining-tokens",
                (tpm as f64 - tok_rate).max(0.0).floor().to_string(),
            ));
            headers.push(("x-ratelimit-reset-tokens", format!("{reset:.0}s")));
        }
        let headers = RateHeaders(headers);
        let retry = Some(reset.ceil().max(1.0) as u64);
        if let Some(rpm) = self.rpm
            && req_rate + 1.0 > rpm as f64
        {
            return Err(Limited {
                message: format!(
                    "Rate limit reached for client {:?}: {rpm} requests per minute.",
                    self.name
                ),
                retry_after_secs: retry,
                headers,
                quota_exhausted: false,
            });
        }
        if let Some(tpm) = self.tpm
            && tok_rate + prompt_tokens as f64 > tpm as f64
        {
            return Err(Limited {
                message: format!(
                    "Rate limit reached for client {:?}: {tpm} tokens per minute.",
                    self.name
                ),
                retry_after_secs: retry,
                headers,
                quota_exhausted: false,
            });
        }
        if let Some(budget) = self.budget
            && self.usage.totals().tokens >= budget
        {
            return Err(Limited {
                message: format!(
                    "Client {:?} has used its budget of {budget} tokens.",
                    self.name
                ),
                retry_after_secs: None,
                headers,
                quota_exhausted: true,
            });
        }
        self.state.req_cur.fetch_add(1, Relaxed);
        self.requests_metric.inc();
        Ok(headers)
    }

    /// Counts the tokens a finished request used.
    pub fn record_tokens(&self, tokens: u64) {
        self.state.add_tokens(tokens);
        self.tokens_metric.inc_by(tokens);
    }

    /// Limits, for the admin API.
    pub fn view(&self) -> serde_json::Value {
        let (rpm_now, tpm_now) = self.state.rates(now_secs_f64());
        let t = self.usage.totals();
        serde_json::json!({
            "name": &*self.name,
            "fingerprint": &*self.fingerprint,
            "groups": self.groups,
            "rpm": self.rpm,
            "tpm": self.tpm,
            "budget_tokens": self.budget,
            "requests_last_minute": rpm_now.round(),
            "tokens_last_minute": tpm_now.round(),
            "tokens": t.tokens,
            "requests": t.requests,
        })
    }
}

/// Client rate state by fingerprint, kept across reloads.
#[derive(Default)]
pub struct ClientBook {
    states: Mutex<HashMap<Arc<str>, Arc<ClientState>>>,
}

/// All callers a config admits.
#[derive(Debug, Default)]
pub struct Clients {
    master: Option<[u8; 32]>,
    clients: Vec<Arc<Client>>,
}

impl Clients {
    pub fn build(config: &Config, book: &ClientBook, ledger: &Ledger, metrics: &Metrics) -> Self {
        let clients = config
            .client_keys
            .iter()
            .map(|c| Arc::new(build_client(c, book, ledger, metrics)))
            .collect();
        Self {
            master: config
                .api_key
                .as_ref()
                .map(|k| Sha256::digest(k.expose().as_bytes()).into()),
            clients,
        }
    }

    /// Identifies the caller by bearer token. Every key is compared, in
    /// constant time, on fixed-size hashes: neither timing nor length tells
    /// which key (or how much of one) matched.
    pub fn identify(&self, token: &[u8]) -> Option<Caller> {
        let hash: [u8; 32] = Sha256::digest(token).into();
        let mut found = None;
        if let Some(m) = &self.master
            && bool::from(m.ct_eq(&hash))
        {
            found = Some(Caller::Master);
        }
        for c in &self.clients {
            if bool::from(c.key_hash.ct_eq(&hash)) {
                found = Some(Caller::Client(c.clone()));
            }
        }
        found
    }

    pub fn list(&self) -> &[Arc<Client>] {
        &self.clients
    }
}

fn build_client(
    c: &ClientKeyConfig,
    book: &ClientBook,
    ledger: &Ledger,
    metrics: &Metrics,
) -> Client {
    let fingerprint: Arc<str> = c.key.fingerprint().into();
    let state = book
        .states
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(fingerprint.clone())
        .or_default()
        .clone();
    let labels = crate::metrics::ClientLabels {
        client: c.name.clone(),
    };
    Client {
        name: c.name.as_str().into(),
        key_hash: Sha256::digest(c.key.expose().as_bytes()).into(),
        groups: c.groups.clone(),
        rpm: c.rpm,
        tpm: c.tpm,
        budget: c.budget_tokens,
        state,
        usage: ledger.cell(UsageKey {
            provider: "client".into(),
            key_fingerprint: fingerprint.clone(),
            model: "*".into(),
        }),
        requests_metric: metrics.client_requests.get_or_create(&labels).clone(),
        tokens_metric: metrics.client_tokens.get_or_create(&labels).clone(),
        fingerprint,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sliding_minute_weights_the_previous_bucket() {
        let s = ClientState::default();
        let t0 = 600.0 * 60.0; // the start of a minute
        s.roll(t0);
        s.req_cur.store(60, Relaxed);
        // 15 s into the next minute, 75% of the previous one still counts.
        let (req, _) = s.rates(t0 + 75.0);
        assert!((req - 45.0).abs() < 0.01, "{req}");
        // Two minutes later, nothing counts.
        let (req, _) = s.rates(t0 + 200.0);
        assert_eq!(req, 0.0);
    }
}
