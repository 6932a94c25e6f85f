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
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue};
use prometheus_client::metrics::counter::Counter;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use arc_swap::ArcSwap;

use crate::config::{ClientKeyConfig, Config};
use crate::metrics::{Metrics, UsdCounter};
use crate::usage::cost::{NANOS_PER_USD, usd};
use crate::usage::{Ledger, Settlement, UsageCell, UsageKey};

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
    budget: Budget,
    pub state: Arc<ClientState>,
    /// Everything this key used, for all time.
    pub usage: Arc<UsageCell>,
    requests_metric: Counter,
    tokens_metric: Counter,
    cost_metric: UsdCounter,
}

/// What a client key may spend, and where its spending is counted: in the
/// usage ledger (so it is persisted and, with Redis, shared), under
/// `("client", fingerprint, "*")` for all time, or one cell per window,
/// `("client", fingerprint, "budget/<window start>")`, when budgets renew.
#[derive(Debug)]
struct Budget {
    tokens: Option<u64>,
    nanos: Option<u64>,
    window: Option<Duration>,
    /// The window counted now (its number) and its cell.
    current: ArcSwap<(u64, Arc<UsageCell>)>,
    ledger: Arc<Ledger>,
    fingerprint: Arc<str>,
}

impl Budget {
    /// The cell this moment's spending counts in. A new window's cell is
    /// looked up once, when the window starts (a ledger lock, once a day or
    /// so); otherwise this is one atomic load.
    fn cell(&self, now_secs: f64) -> Arc<UsageCell> {
        let Some(window) = self.window else {
            return self.current.load().1.clone();
        };
        let length = window.as_secs().max(1);
        let index = now_secs.max(0.0) as u64 / length;
        let current = self.current.load();
        if current.0 == index {
            return current.1.clone();
        }
        let cell = self.ledger.cell(UsageKey {
            provider: "client".into(),
            key_fingerprint: self.fingerprint.clone(),
            model: format!("budget/{}", index * length).into(),
        });
        self.current.store(Arc::new((index, cell.clone())));
        cell
    }

    /// Why the key may not spend more now, if it may not.
    fn exhausted(&self, now_secs: f64, name: &str) -> Option<String> {
        if self.tokens.is_none() && self.nanos.is_none() {
            return None;
        }
        let spent = self.cell(now_secs).totals();
        let period = match self.window {
            Some(w) => format!(" for this {} window", humantime::format_duration(w)),
            None => String::new(),
        };
        if let Some(budget) = self.tokens
            && spent.tokens >= budget
        {
            return Some(format!(
                "Client {name:?} has used its budget of {budget} tokens{period}."
            ));
        }
        if let Some(budget) = self.nanos
            && spent.cost_nanos >= budget
        {
            return Some(format!(
                "Client {name:?} has spent its budget of ${:.2}{period}.",
                usd(budget)
            ));
        }
        None
    }
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

    fn add_tokens(&self, tokens: u64, now: f64) {
        self.roll(now);
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
        self.admit_at(prompt_tokens, now_secs_f64())
    }

    /// [`Self::admit`] at `now` (Unix seconds).
    fn admit_at(&self, prompt_tokens: u64, now: f64) -> Result<RateHeaders, Limited> {
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
        if let Some(message) = self.budget.exhausted(now, &self.name) {
            // A renewing budget is back at the next window.
            let retry_after_secs = self.budget.window.map(|w| {
                let length = w.as_secs().max(1) as f64;
                (length - now % length).ceil().max(1.0) as u64
            });
            return Err(Limited {
                message,
                retry_after_secs,
                headers,
                quota_exhausted: true,
            });
        }
        self.state.req_cur.fetch_add(1, Relaxed);
        self.requests_metric.inc();
        Ok(headers)
    }

    /// Counts a finished request against this key: its usage and cost
    /// (all time, and the budget's window), and its tokens per minute.
    pub fn record(&self, settlement: Settlement, prompt_estimate: u64, tokens: u64) {
        self.record_at(settlement, prompt_estimate, tokens, now_secs_f64());
    }

    fn record_at(&self, settlement: Settlement, prompt_estimate: u64, tokens: u64, now: f64) {
        self.usage.reserve(prompt_estimate).settle(settlement);
        if self.budget.window.is_some() {
            self.budget
                .cell(now)
                .reserve(prompt_estimate)
                .settle(settlement);
        }
        self.record_tokens_at(tokens, now);
        if settlement.cost_nanos > 0 {
            self.cost_metric.inc_by(usd(settlement.cost_nanos));
        }
    }

    fn record_tokens_at(&self, tokens: u64, now: f64) {
        self.state.add_tokens(tokens, now);
        self.tokens_metric.inc_by(tokens);
    }

    /// How much of each budget this key has used, in the current window or
    /// for all time: `("tokens", 0.42)`, `("usd", 1.0)`; 1 or more means
    /// spent. Empty when the key has no budget.
    pub fn budget_used(&self) -> Vec<(&'static str, f64)> {
        self.budget_used_at(now_secs_f64())
    }

    fn budget_used_at(&self, now: f64) -> Vec<(&'static str, f64)> {
        let budget = &self.budget;
        if budget.tokens.is_none() && budget.nanos.is_none() {
            return Vec::new();
        }
        let spent = budget.cell(now).totals();
        // A budget of zero is spent before anything is.
        let share = |spent: u64, of: u64| {
            if of == 0 {
                1.0
            } else {
                spent as f64 / of as f64
            }
        };
        let tokens = budget.tokens.map(|of| ("tokens", share(spent.tokens, of)));
        let usd = budget.nanos.map(|of| ("usd", share(spent.cost_nanos, of)));
        tokens.into_iter().chain(usd).collect()
    }

    /// Limits, for the admin API.
    pub fn view(&self) -> serde_json::Value {
        self.view_at(now_secs_f64())
    }

    fn view_at(&self, now: f64) -> serde_json::Value {
        let (rpm_now, tpm_now) = self.state.rates(now);
        let t = self.usage.totals();
        let window = self.budget.cell(now).totals();
        serde_json::json!({
            "name": &*self.name,
            "fingerprint": &*self.fingerprint,
            "groups": self.groups,
            "rpm": self.rpm,
            "tpm": self.tpm,
            "budget_tokens": self.budget.tokens,
            "budget_usd": self.budget.nanos.map(usd),
            "budget_window": self.budget.window.map(|w| humantime::format_duration(w).to_string()),
            "budget_spent_tokens": window.tokens,
            "budget_spent_usd": usd(window.cost_nanos),
            "requests_last_minute": rpm_now.round(),
            "tokens_last_minute": tpm_now.round(),
            "tokens": t.tokens,
            "requests": t.requests,
            "cost_usd": usd(t.cost_nanos),
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
    pub fn build(
        config: &Config,
        book: &ClientBook,
        ledger: &Arc<Ledger>,
        metrics: &Metrics,
    ) -> Self {
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
    ledger: &Arc<Ledger>,
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
    let usage = ledger.cell(UsageKey {
        provider: "client".into(),
        key_fingerprint: fingerprint.clone(),
        model: "*".into(),
    });
    Client {
        name: c.name.as_str().into(),
        key_hash: Sha256::digest(c.key.expose().as_bytes()).into(),
        groups: c.groups.clone(),
        rpm: c.rpm,
        tpm: c.tpm,
        budget: Budget {
            tokens: c.budget_tokens,
            nanos: c.budget_usd.map(|d| (d * NANOS_PER_USD).round() as u64),
            window: c.budget_window,
            // Window 0 is 1970's: the first request finds its own.
            current: ArcSwap::from_pointee((0, usage.clone())),
            ledger: ledger.clone(),
            fingerprint: fingerprint.clone(),
        },
        state,
        usage,
        requests_metric: metrics.client_requests.get_or_create(&labels).clone(),
        tokens_metric: metrics.client_tokens.get_or_create(&labels).clone(),
        cost_metric: metrics.client_cost.get_or_create(&labels).clone(),
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

    use crate::config::Format;
    use crate::usage::{Settlement, TokenUsage};

    const KEYS: &str = "api_key: master-key\nclient_keys:\n  - {name: team-a, key: key-a, rpm: 2, tpm: 1000, budget_tokens: 5000, groups: [g, fast]}\n  - {name: team-b, key: key-b}\ngroups:\n  - name: g\n    models: [{provider: p, name: m}]\naliases: {fast: g}\nproviders:\n  - {name: p, base_url: \"http://a\", api_keys: [ka]}\n";

    fn clients() -> (Clients, Metrics) {
        let config = Config::parse(KEYS, Format::Yaml).unwrap();
        assert!(config.validate().is_empty());
        let metrics = Metrics::new();
        let clients = Clients::build(
            &config,
            &ClientBook::default(),
            &Arc::new(Ledger::new()),
            &metrics,
        );
        (clients, metrics)
    }

    fn team_a(clients: &Clients) -> Arc<Client> {
        clients
            .identify(b"key-a")
            .unwrap()
            .client()
            .unwrap()
            .clone()
    }

    /// 15 s into a minute.
    const T0: f64 = 29_000_000.0 * 60.0 + 15.0;

    fn header<'a>(h: &'a RateHeaders, name: &str) -> &'a str {
        h.0.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .unwrap()
    }

    #[test]
    fn keys_identify_their_caller() {
        let (clients, _) = clients();
        assert!(matches!(
            clients.identify(b"master-key"),
            Some(Caller::Master)
        ));
        assert!(clients.identify(b"master-key").unwrap().client().is_none());
        assert_eq!(&*team_a(&clients).name, "team-a");
        let b = clients.identify(b"key-b").unwrap();
        assert_eq!(&*b.client().unwrap().name, "team-b");
        assert!(clients.identify(b"key-c").is_none());
        assert!(clients.identify(b"").is_none());
        assert_eq!(clients.list().len(), 2);
    }

    #[test]
    fn scopes_name_groups_or_the_alias_asked_for() {
        let (clients, _) = clients();
        let a = team_a(&clients);
        assert!(a.may_use("g", "g"));
        assert!(a.may_use("other", "fast"));
        assert!(!a.may_use("other", "other"));
        let b = clients.identify(b"key-b").unwrap();
        assert!(b.client().unwrap().may_use("anything", "at-all"));
    }

    #[test]
    fn requests_per_minute_are_admitted_up_to_the_limit() {
        let (clients, metrics) = clients();
        let a = team_a(&clients);
        let first = a.admit_at(10, T0).unwrap();
        assert_eq!(header(&first, "x-ratelimit-limit-requests"), "2");
        assert_eq!(header(&first, "x-ratelimit-remaining-requests"), "1");
        assert_eq!(header(&first, "x-ratelimit-reset-requests"), "45s");
        assert_eq!(header(&first, "x-ratelimit-limit-tokens"), "1000");
        assert_eq!(header(&first, "x-ratelimit-remaining-tokens"), "1000");
        let second = a.admit_at(10, T0 + 1.0).unwrap();
        assert_eq!(header(&second, "x-ratelimit-remaining-requests"), "0");
        let refused = a.admit_at(10, T0 + 2.0).unwrap_err();
        assert!(
            refused.message.contains("team-a") && refused.message.contains("2 requests"),
            "{}",
            refused.message
        );
        assert_eq!(refused.retry_after_secs, Some(43));
        assert!(!refused.quota_exhausted);
        assert_eq!(
            header(&refused.headers, "x-ratelimit-remaining-requests"),
            "0"
        );
        let text = metrics.encode();
        assert!(
            text.contains("llm_router_client_requests_total{client=\"team-a\"} 2"),
            "{text}"
        );
        // Late in the next minute, the old one has almost slid away.
        assert!(a.admit_at(10, T0 + 100.0).is_ok());
    }

    #[test]
    fn tokens_per_minute_count_recorded_tokens_and_the_prompt() {
        let (clients, _) = clients();
        let a = team_a(&clients);
        a.record_tokens_at(900, T0);
        let ok = a.admit_at(100, T0 + 1.0).unwrap();
        assert_eq!(header(&ok, "x-ratelimit-remaining-tokens"), "100");
        let refused = a.admit_at(101, T0 + 1.0).unwrap_err();
        assert!(
            refused.message.contains("1000 tokens"),
            "{}",
            refused.message
        );
        assert!(!refused.quota_exhausted);
        // 15 s into the next minute, three quarters of 900 still count.
        let refused = a.admit_at(400, T0 + 60.0).unwrap_err();
        assert_eq!(refused.retry_after_secs, Some(45));
        assert!(a.admit_at(300, T0 + 60.0).is_ok());
    }

    #[test]
    fn a_spent_budget_is_a_quota_error_without_retry() {
        let (clients, _) = clients();
        let a = team_a(&clients);
        a.usage.reserve(0).settle(Settlement {
            usage: Some(TokenUsage {
                prompt_tokens: 4_999,
                completion_tokens: 0,
                total_tokens: 4_999,
                cached_prompt_tokens: 0,
            }),
            ..Default::default()
        });
        assert!(a.admit_at(0, T0).is_ok());
        a.usage.reserve(0).settle(Settlement {
            usage: Some(TokenUsage {
                prompt_tokens: 1,
                completion_tokens: 0,
                total_tokens: 1,
                cached_prompt_tokens: 0,
            }),
            ..Default::default()
        });
        let refused = a.admit_at(0, T0 + 30.0).unwrap_err();
        assert!(refused.quota_exhausted);
        assert_eq!(refused.retry_after_secs, None);
        assert!(
            refused.message.contains("5000 tokens"),
            "{}",
            refused.message
        );
    }

    #[test]
    fn a_client_without_limits_is_always_admitted_with_no_headers() {
        let (clients, _) = clients();
        let b = clients
            .identify(b"key-b")
            .unwrap()
            .client()
            .unwrap()
            .clone();
        for i in 0..50 {
            let h = b.admit_at(1_000_000, T0 + f64::from(i)).unwrap();
            assert_eq!(h, RateHeaders::default());
        }
    }

    #[test]
    fn rate_headers_are_written_into_the_response() {
        let (clients, _) = clients();
        let h = team_a(&clients).admit_at(0, T0).unwrap();
        let mut out = HeaderMap::new();
        h.apply(&mut out);
        assert_eq!(out["x-ratelimit-limit-requests"], "2");
        assert_eq!(out["x-ratelimit-reset-tokens"], "45s");
        assert_eq!(out.len(), 6);
    }

    #[test]
    fn the_admin_view_shows_limits_and_current_rates() {
        let (clients, metrics) = clients();
        let a = team_a(&clients);
        a.admit_at(0, T0).unwrap();
        a.record_tokens_at(120, T0);
        let v = a.view_at(T0 + 1.0);
        assert_eq!(v["name"], "team-a");
        assert_eq!(v["rpm"], 2);
        assert_eq!(v["tpm"], 1000);
        assert_eq!(v["budget_tokens"], 5000);
        assert_eq!(v["groups"], serde_json::json!(["g", "fast"]));
        assert_eq!(v["requests_last_minute"], 1.0);
        assert_eq!(v["tokens_last_minute"], 120.0);
        assert!(
            metrics
                .encode()
                .contains("llm_router_client_tokens_total{client=\"team-a\"} 120")
        );
    }

    #[test]
    fn a_gap_of_minutes_empties_both_buckets() {
        let s = ClientState::default();
        s.roll(T0);
        s.req_cur.store(30, Relaxed);
        s.tok_cur.store(300, Relaxed);
        assert_eq!(s.rates(T0 + 30.0), (30.0, 300.0));
        // The next minute: the previous bucket weighs what still overlaps.
        let (req, tok) = s.rates(T0 + 60.0);
        assert!(
            (req - 22.5).abs() < 1e-9 && (tok - 225.0).abs() < 1e-9,
            "{req} {tok}"
        );
        s.req_cur.store(8, Relaxed);
        let (req, _) = s.rates(T0 + 180.0);
        assert_eq!(req, 0.0);
        assert_eq!(s.req_prev.load(Relaxed), 0);
    }

    #[test]
    fn the_live_clock_is_unix_time() {
        let (clients, _) = clients();
        let a = team_a(&clients);
        let before = now_secs_f64();
        let headers = a.admit(10).unwrap();
        let after = now_secs_f64();
        assert!(before > 1_577_836_800.0, "{before}");
        // The reset is the rest of the current minute, by the wall clock.
        let reset: f64 = header(&headers, "x-ratelimit-reset-requests")
            .trim_end_matches('s')
            .parse()
            .unwrap();
        let (low, high) = (60.0 - after % 60.0, 60.0 - before % 60.0);
        assert!(
            (low.floor()..=high.ceil()).contains(&reset) || low > high,
            "{reset} not in {low}..{high}"
        );
        a.record(spent(25, 0), 0, 25);
        let v = a.view();
        assert_eq!(v["name"], "team-a");
        assert_eq!(v["requests_last_minute"], 1.0);
        assert_eq!(v["tokens_last_minute"], 25.0);
    }

    fn spent(tokens: u64, cost_nanos: u64) -> Settlement {
        Settlement {
            usage: Some(TokenUsage {
                prompt_tokens: tokens,
                completion_tokens: 0,
                total_tokens: tokens,
                cached_prompt_tokens: 0,
            }),
            cost_nanos,
            ..Default::default()
        }
    }

    fn with_budget(extra: &str) -> Arc<Client> {
        let yaml = format!(
            "api_key: master-key\nclient_keys:\n  - {{name: team, key: key-t, {extra}}}\ngroups:\n  - name: g\n    models: [{{provider: p, name: m}}]\nproviders:\n  - {{name: p, base_url: \"http://a\", api_keys: [ka]}}\n"
        );
        let config = Config::parse(&yaml, Format::Yaml).unwrap();
        assert!(config.validate().is_empty(), "{:?}", config.validate());
        let clients = Clients::build(
            &config,
            &ClientBook::default(),
            &Arc::new(Ledger::new()),
            &Metrics::new(),
        );
        clients
            .identify(b"key-t")
            .unwrap()
            .client()
            .unwrap()
            .clone()
    }

    #[test]
    fn a_dollar_budget_is_spent_for_all_time_without_a_window() {
        let c = with_budget("budget_usd: 0.5");
        c.record_at(spent(10, 300_000_000), 0, 10, T0);
        assert!(c.admit_at(0, T0).is_ok());
        c.record_at(spent(10, 200_000_000), 0, 10, T0 + 1.0);
        let refused = c.admit_at(0, T0 + 86_400.0 * 365.0).unwrap_err();
        assert!(refused.quota_exhausted);
        assert_eq!(refused.retry_after_secs, None);
        assert!(refused.message.contains("$0.50"), "{}", refused.message);
        assert_eq!(c.usage.totals().cost_nanos, 500_000_000);
        let v = c.view_at(T0);
        assert_eq!(v["budget_usd"], 0.5);
        assert_eq!(v["cost_usd"], 0.5);
        assert_eq!(v["budget_spent_usd"], 0.5);
    }

    #[test]
    fn the_share_of_each_budget_used_is_reported_per_window() {
        assert!(with_budget("rpm: 5").budget_used_at(T0).is_empty());
        let c = with_budget("budget_usd: 2, budget_tokens: 1000, budget_window: 1d");
        let day = 86_400.0;
        let noon = (T0 / day).floor() * day + day / 2.0;
        assert_eq!(c.budget_used_at(noon), [("tokens", 0.0), ("usd", 0.0)]);
        c.record_at(spent(250, 500_000_000), 0, 250, noon);
        assert_eq!(
            c.budget_used_at(noon + 1.0),
            [("tokens", 0.25), ("usd", 0.25)]
        );
        c.record_at(spent(1_000, 1_500_000_000), 0, 1_000, noon + 2.0);
        assert_eq!(
            c.budget_used_at(noon + 3.0),
            [("tokens", 1.25), ("usd", 1.0)]
        );
        // A new window starts from nothing.
        assert_eq!(
            c.budget_used_at(noon + day),
            [("tokens", 0.0), ("usd", 0.0)]
        );
        // Only the budgets the key has; a zero budget is spent.
        let c = with_budget("budget_tokens: 0");
        assert_eq!(c.budget_used_at(T0), [("tokens", 1.0)]);
        let c = with_budget("budget_tokens: 100");
        c.record_at(spent(50, 7), 0, 50, T0);
        assert_eq!(c.budget_used_at(T0), [("tokens", 0.5)]);
    }

    #[test]
    fn a_renewing_budget_starts_again_each_window() {
        let c = with_budget("budget_usd: 1, budget_tokens: 1000, budget_window: 1d");
        let day = 86_400.0;
        let noon = (T0 / day).floor() * day + day / 2.0;
        c.record_at(spent(10, 1_000_000_000), 0, 10, noon);
        let refused = c.admit_at(0, noon + 60.0).unwrap_err();
        assert!(refused.quota_exhausted);
        assert!(
            refused.message.contains("1day window"),
            "{}",
            refused.message
        );
        // Back at midnight UTC: Retry-After says when.
        assert_eq!(refused.retry_after_secs, Some((day / 2.0 - 60.0) as u64));
        assert!(c.admit_at(0, noon + day / 2.0).is_ok());
        // Tokens count per window too.
        c.record_at(spent(1_000, 0), 0, 1_000, noon + day);
        assert!(
            c.admit_at(0, noon + day + 1.0)
                .unwrap_err()
                .message
                .contains("1000 tokens")
        );
        // All time, the key spent both days' worth.
        assert_eq!(c.usage.totals().cost_nanos, 1_000_000_000);
        assert_eq!(c.usage.totals().tokens, 1_010);
        assert_eq!(c.view_at(noon + day)["budget_spent_tokens"], 1_000);
    }
}
