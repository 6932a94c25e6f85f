//! The attempt loop: pick a candidate, send, and fail over on failures that
//! are safe to retry, all before the client has seen a byte.
//!
//! Retried: connection errors, a timeout before response headers, 429, 5xx,
//! and 401/403 (the provider rejected *our* key; the client must never see
//! that as its own 401). Passed through: everything else, notably 400, 404
//! and 422, which mean the request itself is wrong. Each failure cools the
//! candidate down (see `routing::health`), so the next request avoids it too.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use tokio::time::Instant;

use super::{RequestBody, SendError, Upstream};
use crate::config::Cooldown;
use crate::metrics::Metrics;
use crate::payload::{Api, Endpoint, Parsed};
use crate::routing::{Candidate, Group, Reason, ms_at, now_ms};
use crate::telemetry::traces::Trace;
use crate::usage::{Penalties, Reservation, Settlement};

/// A request body ready for one API: the client's own, or its translation,
/// with what `rewrite` needs to splice each candidate's model into it.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub body: Bytes,
    pub parsed: Parsed,
}

/// The request as each candidate needs it: the client's own body for
/// providers that speak the client's API, and a translation per provider
/// that speaks the other (made only for providers in the group, and absent
/// for one that cannot take this request).
#[derive(Debug, Clone)]
pub struct Bodies {
    pub client_api: Api,
    pub own: Prepared,
    /// By provider name.
    pub translated: Vec<(Arc<str>, Prepared)>,
}

impl Bodies {
    /// The body for `c`'s provider, if there is one.
    pub fn get(&self, c: &Candidate) -> Option<&Prepared> {
        if c.provider.api() == self.client_api {
            return Some(&self.own);
        }
        self.translated
            .iter()
            .find(|(name, _)| *name == c.provider.name)
            .map(|(_, p)| p)
    }
}

const ANTHROPIC_VERSION: &str = "anthropic-version";

/// Everything one request's attempts need to know.
pub struct Plan<'a> {
    pub group: &'a Group,
    /// What the client asked for.
    pub endpoint: Endpoint,
    pub bodies: &'a Bodies,
    /// The client's body size, for the reservation's prompt estimate.
    pub body_len: usize,
    /// The client's query string. Passed on to Anthropic providers with the
    /// request they get as sent (`?beta=true` selects Anthropic's beta
    /// surface); never to a translation, nor to any other URL.
    pub query: Option<&'a str>,
    /// The client's headers (filtered per attempt by `forward_request_headers`).
    pub headers: &'a HeaderMap,
    pub max_attempts: u32,
    pub first_byte: Duration,
    pub deadline: Instant,
    pub cooldown: &'a Cooldown,
    pub penalties: Penalties,
    /// The request's span: each attempt is a child of it.
    pub trace: &'a Trace,
}

/// An upstream that answered with a response to pass on.
pub struct Attempt {
    pub response: crate::upstream::UpstreamResponse,
    pub candidate: usize,
    pub attempts: u32,
    pub reservation: Reservation,
    /// This attempt's span, which lasts as long as its answer.
    pub trace: Trace,
}

/// Why one attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Unreachable,
    Timeout,
    RateLimited {
        retry_after: Option<Duration>,
    },
    Status(u16),
    KeyRejected(u16),
    /// A 3xx: never followed (an upstream URL comes from config alone),
    /// never shown (its `Location` could point anywhere).
    Redirected(u16),
}

impl Failure {
    /// A short label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unreachable => "unreachable",
            Self::Timeout => "timeout",
            Self::RateLimited { .. } => "rate_limited",
            Self::Status(_) => "server_error",
            Self::KeyRejected(_) => "key_rejected",
            Self::Redirected(_) => "redirected",
        }
    }
}

/// Every attempt failed.
#[derive(Debug)]
pub struct FailoverError {
    pub failures: Vec<Failure>,
}

impl Plan<'_> {
    /// Whether candidate `c` can serve this request: its provider speaks
    /// the API, or can be translated to, and has a URI for it.
    pub fn serves(&self, c: &Candidate) -> bool {
        self.endpoint
            .for_provider(c.provider.api())
            .is_some_and(|e| c.uri(e).is_some())
            && self.bodies.get(c).is_some()
    }
}

impl FailoverError {
    /// All failures were rate limits: the smallest Retry-After among them.
    pub fn all_rate_limited(&self) -> Option<Option<Duration>> {
        let mut smallest: Option<Duration> = None;
        for f in &self.failures {
            match f {
                Failure::RateLimited { retry_after } => {
                    if let Some(d) = retry_after {
                        smallest = Some(smallest.map_or(*d, |s| s.min(*d)));
                    }
                }
                _ => return None,
            }
        }
        (!self.failures.is_empty()).then_some(smallest)
    }

    pub fn all_timed_out(&self) -> bool {
        !self.failures.is_empty() && self.failures.iter().all(|f| *f == Failure::Timeout)
    }
}

/// Sends `plan` to the best candidates in turn until one answers.
pub async fn send(
    upstream: &Upstream,
    plan: &Plan<'_>,
    metrics: &Metrics,
) -> Result<Attempt, FailoverError> {
    // Candidates that cannot serve this request are never picked, and do
    // not count as attempts.
    let mut excluded: Vec<usize> = (0..plan.group.candidates.len())
        .filter(|&i| !plan.serves(&plan.group.candidates[i]))
        .collect();
    let mut attempts = 0u32;
    let mut failures = Vec::new();
    let prompt_estimate = (plan.body_len / 4) as u64;
    while attempts < plan.max_attempts {
        let now = Instant::now();
        if now >= plan.deadline {
            failures.push(Failure::Timeout);
            break;
        }
        let Some(index) = plan.group.pick(&excluded, ms_at(now.into_std())) else {
            break;
        };
        excluded.push(index);
        attempts += 1;
        let c = &plan.group.candidates[index];
        let reservation = c.usage.reserve(prompt_estimate);
        let first_byte = (now + plan.first_byte).min(plan.deadline);
        let trace = attempt_span(plan, c, attempts);
        let Some(request) = request_for(plan, c) else {
            // Validation refuses such a base_url; should one get here, it is
            // a candidate that cannot be reached.
            trace.fail(Failure::Unreachable.kind());
            failures.push(Failure::Unreachable);
            reservation.settle(Settlement::failed(plan.penalties));
            continue;
        };
        // Moved, never borrowed, here: a local borrowed in this body would
        // be kept in the request's future beside the one `send` holds.
        let request = traced(request, &trace);
        let mut detail = None;
        let failure = match tokio::time::timeout_at(first_byte, upstream.send(request)).await {
            Ok(Ok(response)) => match classify(&response) {
                None => {
                    trace.set(
                        "http.response.status_code",
                        i64::from(response.status().as_u16()),
                    );
                    c.metrics.upstream_latency.observe(now.elapsed());
                    c.health.succeeded();
                    c.key.health.succeeded();
                    if attempts > 1 {
                        plan.group.failovers.inc_by(u64::from(attempts) - 1);
                    }
                    return Ok(Attempt {
                        response,
                        candidate: index,
                        attempts,
                        reservation,
                        trace,
                    });
                }
                Some(failure) => {
                    trace.set(
                        "http.response.status_code",
                        i64::from(response.status().as_u16()),
                    );
                    failure
                }
            },
            Ok(Err(SendError::ConnectTimeout)) => Failure::Timeout,
            Ok(Err(e)) => {
                detail = Some(e);
                Failure::Unreachable
            }
            Err(_elapsed) => Failure::Timeout,
        };

        tracing::warn!(
            group = &*plan.group.name,
            provider = %c.provider.name,
            model = &*c.model,
            key = %c.key.alias,
            failure = ?failure,
            error = detail.as_ref().map(tracing::field::display),
            attempt = attempts,
            "upstream attempt failed"
        );
        trace.fail(failure.kind());
        c.metrics.upstream_error(metrics, failure.kind());
        cool_down(c, failure, plan.cooldown, now_ms());
        reservation.settle(Settlement::failed(plan.penalties));
        failures.push(failure);
    }
    Err(FailoverError { failures })
}

/// `request` carrying the attempt's trace context, when tracing is on.
fn traced(mut request: http::Request<RequestBody>, trace: &Trace) -> http::Request<RequestBody> {
    if trace.is_on() {
        trace.inject(request.headers_mut());
        if let Some(host) = request.uri().host() {
            trace.set("server.address", host.to_string());
        }
    }
    request
}

/// A span for attempt number `n`, at candidate `c`: OpenTelemetry's GenAI
/// client span (`{operation} {model}`), plus which provider, key and try.
fn attempt_span(plan: &Plan<'_>, c: &Candidate, n: u32) -> Trace {
    if !plan.trace.is_on() {
        return Trace::off();
    }
    let operation = plan.endpoint.operation();
    let trace = plan.trace.attempt(format!("{operation} {}", c.model));
    trace.set("gen_ai.operation.name", operation);
    trace.set("gen_ai.provider.name", c.provider.kind.gen_ai_name());
    trace.set("gen_ai.request.model", c.model.to_string());
    trace.set("llm_router.provider", c.provider.name.to_string());
    trace.set("llm_router.key", c.key.alias.to_string());
    trace.set("llm_router.attempt", i64::from(n));
    trace
}

/// The request for one candidate: the body for its API with its model (and
/// shaping), the client's forwarded headers, the provider's, and its key.
fn request_for(plan: &Plan<'_>, c: &Candidate) -> Option<http::Request<RequestBody>> {
    let api = c.provider.api();
    let mut uri = c.uri(plan.endpoint.for_provider(api)?)?.clone();
    if let Some(query) = plan.query
        && api == Api::Anthropic
        && plan.bodies.client_api == api
        && uri.query().is_none()
        && let Ok(with_query) = format!("{uri}?{query}").parse()
    {
        uri = with_query;
    }
    let prepared = plan.bodies.get(c)?;
    let mut body = prepared.parsed.rewrite(&prepared.body, &c.model_json);
    if let Some(shaped) = c.provider.shaping.apply(&body) {
        body = shaped;
    }
    let mut headers = super::forward_request_headers(plan.headers, api);
    if api == Api::Anthropic && !headers.contains_key(ANTHROPIC_VERSION) {
        headers.insert(ANTHROPIC_VERSION, c.provider.anthropic_version.clone());
    }
    for (name, value) in &c.provider.headers {
        headers.insert(name.clone(), value.clone());
    }
    headers.insert(c.key.auth.0.clone(), c.key.auth.1.clone());
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let mut request = http::Request::new(RequestBody::new(body));
    *request.method_mut() = http::Method::POST;
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    Some(request)
}

/// `None` when the response should go to the client as it is.
fn classify<B>(response: &http::Response<B>) -> Option<Failure> {
    let status = response.status();
    match status {
        StatusCode::TOO_MANY_REQUESTS => Some(Failure::RateLimited {
            retry_after: retry_after(response.headers()),
        }),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            Some(Failure::KeyRejected(status.as_u16()))
        }
        s if s.is_server_error() => Some(Failure::Status(s.as_u16())),
        s if s.is_redirection() => Some(Failure::Redirected(s.as_u16())),
        _ => None,
    }
}

fn cool_down(c: &Candidate, failure: Failure, cooldown: &Cooldown, now: u64) {
    match failure {
        Failure::RateLimited { retry_after } => {
            c.health
                .failed(now, Reason::RateLimited, retry_after, cooldown)
        }
        Failure::Status(_) => c.health.failed(now, Reason::ServerError, None, cooldown),
        // The key itself is bad: every model on it cools down, for long.
        Failure::KeyRejected(_) => {
            c.key
                .health
                .failed(now, Reason::Unauthorized, Some(cooldown.max), cooldown)
        }
        // The provider's host is in trouble, whichever model we asked.
        Failure::Unreachable => c
            .key
            .health
            .failed(now, Reason::Unreachable, None, cooldown),
        Failure::Timeout => c.key.health.failed(now, Reason::Timeout, None, cooldown),
        // Wherever it points, this key's provider is not answering here.
        Failure::Redirected(_) => c.key.health.failed(now, Reason::Redirected, None, cooldown),
    }
}

/// How long the provider asked us to wait: `Retry-After` (seconds or an HTTP
/// date), else OpenAI's `x-ratelimit-reset-*` (durations) or Anthropic's
/// `anthropic-ratelimit-*-reset` (RFC 3339 times) for whichever limit ran
/// out.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(v) = text("retry-after-ms").and_then(|v| v.trim().parse::<f64>().ok())
        && v.is_finite()
        && v >= 0.0
    {
        return Some(Duration::from_secs_f64(v / 1000.0));
    }
    if let Some(v) = text("retry-after") {
        if let Ok(secs) = v.trim().parse::<u64>() {
            return Some(Duration::from_secs(secs));
        }
        if let Ok(when) = httpdate_parse(v) {
            return Some(when);
        }
    }
    let exhausted = |kind: &str| {
        text(&format!("x-ratelimit-remaining-{kind}")).is_some_and(|v| v.trim() == "0")
    };
    let openai = ["requests", "tokens"]
        .into_iter()
        .filter(|kind| exhausted(kind))
        .filter_map(|kind| text(&format!("x-ratelimit-reset-{kind}")).and_then(go_duration))
        .max();
    let anthropic_exhausted = |kind: &str| {
        text(&format!("anthropic-ratelimit-{kind}-remaining")).is_some_and(|v| v.trim() == "0")
    };
    let anthropic = ["requests", "tokens", "input-tokens", "output-tokens"]
        .into_iter()
        .filter(|kind| anthropic_exhausted(kind))
        .filter_map(|kind| text(&format!("anthropic-ratelimit-{kind}-reset")))
        .filter_map(|v| humantime::parse_rfc3339_weak(v.trim()).ok())
        .map(|when| {
            when.duration_since(std::time::SystemTime::now())
                .unwrap_or_default()
        })
        .max();
    openai.max(anthropic)
}

/// An HTTP date as a delay from now (zero if it is in the past).
fn httpdate_parse(v: &str) -> Result<Duration, ()> {
    let when = httpdate(v).ok_or(())?;
    Ok(when
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default())
}

fn httpdate(v: &str) -> Option<std::time::SystemTime> {
    // RFC 7231 IMF-fixdate, e.g. "Wed, 21 Oct 2015 07:28:00 GMT".
    humantime::parse_rfc3339_weak(&imf_to_rfc3339(v.trim())?).ok()
}

fn imf_to_rfc3339(v: &str) -> Option<String> {
    let mut parts = v.split_whitespace();
    let _weekday = parts.next()?;
    let day: u32 = parts.next()?.parse().ok()?;
    let month = match parts.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: u32 = parts.next()?.parse().ok()?;
    let time = parts.next()?;
    (parts.next()? == "GMT").then(|| format!("{year:04}-{month:02}-{day:02} {time}"))
}

/// Go-style durations as OpenAI sends them: "1s", "6m0s", "20ms", "1h2m3.5s".
fn go_duration(v: &str) -> Option<Duration> {
    let mut total = 0.0f64;
    let mut rest = v.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += n * scale;
        rest = &rest[unit_end..];
    }
    total
        .is_finite()
        .then(|| Duration::from_secs_f64(total.min(86_400.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn retry_after_reads_seconds_ms_and_dates() {
        assert_eq!(
            retry_after(&headers(&[("retry-after", "7")])),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            retry_after(&headers(&[("retry-after-ms", "250")])),
            Some(Duration::from_millis(250))
        );
        let past = retry_after(&headers(&[(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:00 GMT",
        )]));
        assert_eq!(past, Some(Duration::ZERO));
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")])), None);
    }

    #[test]
    fn ratelimit_reset_counts_only_for_the_exhausted_limit() {
        let h = headers(&[
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "1m30s"),
            ("x-ratelimit-remaining-tokens", "100"),
            ("x-ratelimit-reset-tokens", "6m0s"),
        ]);
        assert_eq!(retry_after(&h), Some(Duration::from_secs(90)));
        assert_eq!(go_duration("20ms"), Some(Duration::from_millis(20)));
        assert_eq!(go_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(go_duration("5x"), None);
    }

    #[test]
    fn overall_error_follows_the_failures() {
        let e = FailoverError {
            failures: vec![
                Failure::RateLimited {
                    retry_after: Some(Duration::from_secs(9)),
                },
                Failure::RateLimited {
                    retry_after: Some(Duration::from_secs(3)),
                },
            ],
        };
        assert_eq!(e.all_rate_limited(), Some(Some(Duration::from_secs(3))));
        let e = FailoverError {
            failures: vec![Failure::Timeout, Failure::Status(500)],
        };
        assert_eq!(e.all_rate_limited(), None);
        assert!(!e.all_timed_out());
        assert!(
            FailoverError {
                failures: vec![Failure::Timeout]
            }
            .all_timed_out()
        );
    }

    fn response(status: u16, pairs: &[(&'static str, &'static str)]) -> http::Response<()> {
        let mut r = http::Response::new(());
        *r.status_mut() = StatusCode::from_u16(status).unwrap();
        *r.headers_mut() = headers(pairs);
        r
    }

    #[test]
    fn only_failures_that_another_key_could_fix_are_retried() {
        for passed_through in [200, 201, 204, 400, 404, 409, 413, 422] {
            assert_eq!(
                classify(&response(passed_through, &[])),
                None,
                "{passed_through}"
            );
        }
        assert_eq!(
            classify(&response(429, &[("retry-after", "12")])),
            Some(Failure::RateLimited {
                retry_after: Some(Duration::from_secs(12))
            })
        );
        assert_eq!(
            classify(&response(429, &[])),
            Some(Failure::RateLimited { retry_after: None })
        );
        assert_eq!(
            classify(&response(401, &[])),
            Some(Failure::KeyRejected(401))
        );
        assert_eq!(
            classify(&response(403, &[])),
            Some(Failure::KeyRejected(403))
        );
        for server in [500, 502, 503, 504, 529] {
            assert_eq!(
                classify(&response(server, &[])),
                Some(Failure::Status(server))
            );
        }
    }

    #[test]
    fn failure_kinds_have_stable_labels() {
        let kinds: Vec<_> = [
            Failure::Unreachable,
            Failure::Timeout,
            Failure::RateLimited { retry_after: None },
            Failure::Status(500),
            Failure::KeyRejected(401),
        ]
        .iter()
        .map(Failure::kind)
        .collect();
        assert_eq!(
            kinds,
            [
                "unreachable",
                "timeout",
                "rate_limited",
                "server_error",
                "key_rejected"
            ]
        );
    }

    #[test]
    fn rate_limits_without_a_retry_after_or_mixed_failures_say_so() {
        let limited = |s: Option<u64>| Failure::RateLimited {
            retry_after: s.map(Duration::from_secs),
        };
        let e = |failures| FailoverError { failures };
        assert_eq!(
            e(vec![limited(None), limited(None)]).all_rate_limited(),
            Some(None)
        );
        assert_eq!(
            e(vec![limited(None), limited(Some(4))]).all_rate_limited(),
            Some(Some(Duration::from_secs(4)))
        );
        assert_eq!(
            e(vec![limited(Some(4)), Failure::Unreachable]).all_rate_limited(),
            None
        );
        assert_eq!(e(vec![]).all_rate_limited(), None);
        assert!(!e(vec![]).all_timed_out());
        assert!(!e(vec![Failure::Timeout, Failure::Unreachable]).all_timed_out());
        assert!(e(vec![Failure::Timeout, Failure::Timeout]).all_timed_out());
    }

    #[test]
    fn retry_after_prefers_milliseconds_then_seconds_then_resets() {
        assert_eq!(
            retry_after(&headers(&[
                ("retry-after-ms", "1500.5"),
                ("retry-after", "9")
            ])),
            Some(Duration::from_micros(1_500_500))
        );
        // A nonsensical millisecond value falls back to the next header.
        for bad in ["-5", "NaN", "inf", "soon"] {
            let h = headers(&[("retry-after-ms", bad), ("retry-after", " 9 ")]);
            assert_eq!(retry_after(&h), Some(Duration::from_secs(9)), "{bad}");
        }
        // Both limits exhausted: wait for the later reset.
        let h = headers(&[
            ("x-ratelimit-remaining-requests", " 0"),
            ("x-ratelimit-reset-requests", "2s"),
            ("x-ratelimit-remaining-tokens", "0"),
            ("x-ratelimit-reset-tokens", "1m"),
        ]);
        assert_eq!(retry_after(&h), Some(Duration::from_secs(60)));
        // Resets for limits with room left say nothing.
        let h = headers(&[
            ("x-ratelimit-remaining-tokens", "10"),
            ("x-ratelimit-reset-tokens", "1m"),
        ]);
        assert_eq!(retry_after(&h), None);
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }

    #[test]
    fn anthropic_resets_count_for_the_exhausted_limit() {
        let in_a_minute = humantime::format_rfc3339_seconds(
            std::time::SystemTime::now() + Duration::from_secs(60),
        )
        .to_string();
        let in_an_hour = humantime::format_rfc3339_seconds(
            std::time::SystemTime::now() + Duration::from_secs(3600),
        )
        .to_string();
        let mut h = HeaderMap::new();
        h.insert(
            "anthropic-ratelimit-output-tokens-remaining",
            HeaderValue::from_static("0"),
        );
        h.insert(
            "anthropic-ratelimit-output-tokens-reset",
            HeaderValue::from_str(&in_a_minute).unwrap(),
        );
        h.insert(
            "anthropic-ratelimit-requests-remaining",
            HeaderValue::from_static("40"),
        );
        h.insert(
            "anthropic-ratelimit-requests-reset",
            HeaderValue::from_str(&in_an_hour).unwrap(),
        );
        let wait = retry_after(&h).unwrap();
        assert!(
            (Duration::from_secs(55)..=Duration::from_secs(60)).contains(&wait),
            "{wait:?}"
        );
        // Retry-After, when given, says it all.
        h.insert("retry-after", HeaderValue::from_static("3"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
    }

    #[test]
    fn a_future_http_date_is_a_wait_until_then() {
        let when = std::time::SystemTime::now() + Duration::from_secs(120);
        let iso = humantime::format_rfc3339_seconds(when).to_string();
        // "2026-12-01T16:00:00Z" as "Tue, 01 Dec 2026 16:00:00 GMT".
        let months = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let month = months[iso[5..7].parse::<usize>().unwrap() - 1];
        let imf = format!(
            "Tue, {} {month} {} {} GMT",
            &iso[8..10],
            &iso[..4],
            &iso[11..19]
        );
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_str(&imf).unwrap());
        let wait = retry_after(&h).unwrap();
        assert!(
            (Duration::from_secs(115)..=Duration::from_secs(120)).contains(&wait),
            "{wait:?}"
        );
        for month_name in months {
            assert!(imf_to_rfc3339(&format!("Mon, 02 {month_name} 2026 10:00:00 GMT")).is_some());
        }
        assert_eq!(
            imf_to_rfc3339("Mon, 02 Mar 2026 10:00:00 GMT").as_deref(),
            Some("2026-03-02 10:00:00")
        );
        assert_eq!(imf_to_rfc3339("Mon, 02 Foo 2026 10:00:00 GMT"), None);
        assert_eq!(imf_to_rfc3339("Mon, 02 Mar 2026 10:00:00 CET"), None);
        assert_eq!(imf_to_rfc3339("Mon, 02 Mar 2026"), None);
    }

    #[test]
    fn go_durations_add_up_their_parts() {
        assert_eq!(
            go_duration("1h2m3.5s"),
            Some(Duration::from_millis(3_723_500))
        );
        assert_eq!(go_duration("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(go_duration(" 250ms "), Some(Duration::from_millis(250)));
        assert_eq!(go_duration("48h"), Some(Duration::from_secs(86_400)));
        for bad in ["", "5", "s", "1x", "1.2.3s"] {
            assert_eq!(go_duration(bad), None, "{bad}");
        }
    }

    mod attempts {
        use super::super::*;
        use crate::metrics::Metrics;
        use crate::routing::Routes;
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};

        /// A provider that answers each key with the status named in the
        /// key (`k500` → 500), and counts requests.
        async fn provider() -> (String, Arc<AtomicUsize>) {
            let seen = Arc::new(AtomicUsize::new(0));
            let count = seen.clone();
            let app = axum::Router::new().route(
                "/v1/chat/completions",
                axum::routing::post(move |headers: HeaderMap| {
                    let count = count.clone();
                    async move {
                        count.fetch_add(1, Ordering::SeqCst);
                        let key = headers["authorization"].to_str().unwrap().to_string();
                        let code: u16 = key.trim_start_matches("Bearer k").parse().unwrap();
                        (StatusCode::from_u16(code).unwrap(), "{}")
                    }
                }),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
            (format!("http://{addr}/v1"), seen)
        }

        fn routes(base_url: &str, keys: &str) -> Routes {
            let yaml = format!(
                "api_key: k\ngroups:\n  - name: g\n    models: [{{provider: p, name: m}}]\nproviders:\n  - {{name: p, base_url: \"{base_url}\", api_keys: [{keys}]}}\n"
            );
            Routes::from_yaml(&yaml)
        }

        async fn run(
            routes: &Routes,
            max_attempts: u32,
            deadline: Instant,
        ) -> Result<Attempt, FailoverError> {
            let body = Bytes::from_static(br#"{"model":"g","messages":[]}"#);
            let parsed = crate::payload::parse(&body).unwrap();
            let group = routes.group("g").unwrap();
            let bodies = Bodies {
                client_api: Api::OpenAi,
                own: Prepared {
                    body: body.clone(),
                    parsed,
                },
                translated: Vec::new(),
            };
            let plan = Plan {
                group,
                endpoint: Endpoint::ChatCompletions,
                bodies: &bodies,
                body_len: body.len(),
                query: None,
                headers: &HeaderMap::new(),
                max_attempts,
                first_byte: Duration::from_secs(5),
                deadline,
                cooldown: &Cooldown::default(),
                trace: &Trace::off(),
                penalties: Penalties {
                    request: 0,
                    error: 1_000,
                },
            };
            let upstream = Upstream::new(&Default::default()).unwrap();
            send(&upstream, &plan, &Metrics::new()).await
        }

        #[tokio::test]
        async fn failing_keys_are_passed_over_until_one_answers() {
            let (url, seen) = provider().await;
            let routes = routes(&url, "k500, k429, k200");
            let later = Instant::now() + Duration::from_secs(30);
            let attempt = run(&routes, 3, later).await.ok().unwrap();
            assert_eq!((attempt.candidate, attempt.attempts), (2, 3));
            // The reservation holds the prompt's estimate: a token per 4 bytes.
            assert_eq!(attempt.reservation.prompt_estimate(), 27 / 4);
            assert_eq!(attempt.response.status(), 200);
            assert_eq!(seen.load(Ordering::SeqCst), 3);
            let g = routes.group("g").unwrap();
            assert_eq!(g.failovers.get(), 2);
            // The failed keys carry the error penalty and are cooling down.
            assert_eq!(g.candidates[0].usage.totals().tokens, 1_000);
            assert_eq!(g.candidates[0].usage.totals().errors, 1);
            let now = crate::routing::now_ms();
            assert!(g.candidates[0].health.state(now).cooling_down);
            assert!(g.candidates[1].health.state(now).cooling_down);
            assert!(!g.candidates[2].health.state(now).cooling_down);
            // The next request goes straight to the key that works.
            let attempt = run(&routes, 3, later).await.ok().unwrap();
            assert_eq!((attempt.candidate, attempt.attempts), (2, 1));
            assert_eq!(g.failovers.get(), 2);
        }

        #[tokio::test]
        async fn attempts_stop_at_the_limit_and_report_every_failure() {
            let (url, seen) = provider().await;
            let routes = routes(&url, "k500, k503, k200");
            let e = run(&routes, 2, Instant::now() + Duration::from_secs(30))
                .await
                .err()
                .unwrap();
            assert_eq!(e.failures, [Failure::Status(500), Failure::Status(503)]);
            assert_eq!(seen.load(Ordering::SeqCst), 2);
            assert_eq!(routes.group("g").unwrap().failovers.get(), 0);
        }

        #[test]
        fn key_failures_cool_the_key_and_answers_cool_the_pair() {
            let routes = routes("http://127.0.0.1:9/v1", "k1");
            let c = &routes.group("g").unwrap().candidates[0];
            let cooldown = Cooldown {
                base: Duration::from_secs(2),
                max: Duration::from_secs(600),
            };
            let at = 1_000;
            let state = |h: &crate::routing::Health| h.state(at);
            cool_down(
                c,
                Failure::RateLimited {
                    retry_after: Some(Duration::from_secs(7)),
                },
                &cooldown,
                at,
            );
            assert_eq!(c.health.ready_at(), at + 7_000);
            assert_eq!(state(&c.health).reason, Reason::RateLimited);
            assert!(!state(&c.key.health).cooling_down);
            cool_down(c, Failure::Status(502), &cooldown, at);
            assert_eq!(state(&c.health).reason, Reason::ServerError);
            assert!(!state(&c.key.health).cooling_down);
            // A rejected key sits out the maximum, whichever model.
            cool_down(c, Failure::KeyRejected(401), &cooldown, at);
            assert_eq!(c.key.health.ready_at(), at + 600_000);
            assert_eq!(state(&c.key.health).reason, Reason::Unauthorized);
            c.key.health.succeeded();
            cool_down(c, Failure::Unreachable, &cooldown, at);
            assert_eq!(state(&c.key.health).reason, Reason::Unreachable);
            let wait = c.key.health.ready_at() - at;
            assert!((1_600..=2_400).contains(&wait), "{wait}");
            cool_down(c, Failure::Timeout, &cooldown, at);
            assert_eq!(state(&c.key.health).reason, Reason::Timeout);
            assert!(!state(&c.provider.health).cooling_down);
        }

        #[test]
        fn each_candidate_gets_the_body_of_its_api_and_only_those_with_one_serve() {
            let yaml = "api_key: k\ngroups:\n  - name: g\n    models: [{provider: o, name: m}, {provider: a1, name: m}, {provider: a2, name: m}]\nproviders:\n  - {name: o, base_url: \"http://o/v1\", api_keys: [k]}\n  - {name: a1, type: anthropic, base_url: \"http://a1/v1\", api_keys: [k]}\n  - {name: a2, type: anthropic, base_url: \"http://a2/v1\", api_keys: [k]}\n";
            let routes = Routes::from_yaml(yaml);
            let group = routes.group("g").unwrap();
            let on = |name: &str| {
                group
                    .candidates
                    .iter()
                    .find(|c| &*c.provider.name == name)
                    .unwrap()
            };
            let prepared = |body: &'static [u8]| Prepared {
                body: Bytes::from_static(body),
                parsed: crate::payload::parse(body).unwrap(),
            };
            let own = br#"{"model":"own","messages":[]}"#;
            let (one, two) = (
                br#"{"model":"a1","messages":[]}"#,
                br#"{"model":"a2","messages":[]}"#,
            );
            let body_of =
                |bodies: &Bodies, name: &str| bodies.get(on(name)).map(|p| p.body.clone());
            let both = Bodies {
                client_api: Api::OpenAi,
                own: prepared(own),
                translated: vec![("a1".into(), prepared(one)), ("a2".into(), prepared(two))],
            };
            assert_eq!(body_of(&both, "o").as_deref(), Some(&own[..]));
            assert_eq!(body_of(&both, "a1").as_deref(), Some(&one[..]));
            assert_eq!(body_of(&both, "a2").as_deref(), Some(&two[..]));

            // a1 could not take this request: no body, so it is not tried.
            let only_a2 = Bodies {
                translated: vec![("a2".into(), prepared(two))],
                ..both.clone()
            };
            assert_eq!(body_of(&only_a2, "a1"), None);
            let plan = |endpoint: Endpoint, bodies: &Bodies, f: &dyn Fn(&Plan) -> Vec<bool>| {
                f(&Plan {
                    group,
                    endpoint,
                    bodies,
                    body_len: 0,
                    query: None,
                    headers: &HeaderMap::new(),
                    max_attempts: 3,
                    first_byte: Duration::from_secs(5),
                    deadline: Instant::now(),
                    cooldown: &Cooldown::default(),
                    trace: &Trace::off(),
                    penalties: Penalties::default(),
                })
            };
            let serving = |p: &Plan| ["o", "a1", "a2"].map(|n| p.serves(on(n))).to_vec();
            assert_eq!(
                plan(Endpoint::ChatCompletions, &only_a2, &serving),
                [true, false, true]
            );
            // An endpoint Anthropic's API has no counterpart for.
            assert_eq!(
                plan(Endpoint::Embeddings, &only_a2, &serving),
                [true, false, false]
            );
        }

        #[test]
        fn anthropic_requests_carry_a_version_and_the_clients_query_only_when_passed_through() {
            let yaml = "api_key: k\ngroups:\n  - name: g\n    models: [{provider: o, name: m}, {provider: a, name: m}]\nproviders:\n  - {name: o, base_url: \"http://o/v1\", api_keys: [k]}\n  - {name: a, type: anthropic, anthropic_version: \"2023-06-01\", base_url: \"http://a/v1\", api_keys: [k]}\n";
            let routes = Routes::from_yaml(yaml);
            let group = routes.group("g").unwrap();
            let (o, a) = (&group.candidates[0], &group.candidates[1]);
            let body = br#"{"model":"g","max_tokens":5,"messages":[]}"#;
            let prepared = Prepared {
                body: Bytes::from_static(body),
                parsed: crate::payload::parse(body).unwrap(),
            };
            // A client of `client_api`, with `headers`: the request to `c`.
            let request = |client_api: Api, headers: &HeaderMap, c: &Candidate| {
                let bodies = Bodies {
                    client_api,
                    own: prepared.clone(),
                    translated: vec![
                        ("a".into(), prepared.clone()),
                        ("o".into(), prepared.clone()),
                    ],
                };
                let endpoint = match client_api {
                    Api::Anthropic => Endpoint::Messages,
                    Api::OpenAi => Endpoint::ChatCompletions,
                };
                let plan = Plan {
                    group,
                    endpoint,
                    bodies: &bodies,
                    body_len: body.len(),
                    query: Some("beta=true"),
                    headers,
                    max_attempts: 1,
                    first_byte: Duration::from_secs(5),
                    deadline: Instant::now(),
                    cooldown: &Cooldown::default(),
                    trace: &Trace::off(),
                    penalties: Penalties::default(),
                };
                request_for(&plan, c).unwrap()
            };
            let version = |r: &http::Request<RequestBody>| {
                r.headers()
                    .get("anthropic-version")
                    .map(|v| v.to_str().unwrap().to_string())
            };
            let none = HeaderMap::new();
            let mut versioned = HeaderMap::new();
            versioned.insert("anthropic-version", HeaderValue::from_static("2024-01-01"));

            // Passed through to Anthropic: the client's query and version go.
            let r = request(Api::Anthropic, &versioned, a);
            assert_eq!(r.uri(), "http://a/v1/messages?beta=true");
            assert_eq!(version(&r).as_deref(), Some("2024-01-01"));
            // Without one from the client: the provider's.
            let r = request(Api::Anthropic, &none, a);
            assert_eq!(version(&r).as_deref(), Some("2023-06-01"));
            // Translated for Anthropic: a version, but not the other API's query.
            let r = request(Api::OpenAi, &none, a);
            assert_eq!(r.uri(), "http://a/v1/messages");
            assert_eq!(version(&r).as_deref(), Some("2023-06-01"));
            // To OpenAI's API: neither.
            for client in [Api::OpenAi, Api::Anthropic] {
                let r = request(client, &versioned, o);
                assert_eq!(r.uri(), "http://o/v1/chat/completions");
                assert_eq!(version(&r), None);
            }
        }

        #[test]
        fn answers_are_sorted_into_failures_or_the_clients() {
            let answer =
                |status: u16| classify(&http::Response::builder().status(status).body(()).unwrap());
            for status in [200, 400, 404, 422] {
                assert!(answer(status).is_none(), "{status}");
            }
            assert!(matches!(answer(301), Some(Failure::Redirected(301))));
            assert!(matches!(answer(302), Some(Failure::Redirected(302))));
            assert!(matches!(answer(401), Some(Failure::KeyRejected(401))));
            assert!(matches!(answer(403), Some(Failure::KeyRejected(403))));
            assert!(matches!(answer(429), Some(Failure::RateLimited { .. })));
            assert!(matches!(answer(503), Some(Failure::Status(503))));
            assert!(matches!(answer(529), Some(Failure::Status(529))));
        }

        #[tokio::test]
        async fn a_spent_deadline_sends_nothing() {
            let (url, seen) = provider().await;
            let routes = routes(&url, "k200");
            let e = run(&routes, 3, Instant::now()).await.err().unwrap();
            assert_eq!(e.failures, [Failure::Timeout]);
            assert_eq!(seen.load(Ordering::SeqCst), 0);
        }

        #[tokio::test]
        async fn the_request_carries_the_providers_model_key_and_headers() {
            let routes = routes("http://127.0.0.1:9/v1", "k200");
            let g = routes.group("g").unwrap();
            let body = Bytes::from_static(br#"{"model":"g","messages":[]}"#);
            let parsed = crate::payload::parse(&body).unwrap();
            let mut client = HeaderMap::new();
            client.insert("authorization", HeaderValue::from_static("Bearer client"));
            client.insert("openai-beta", HeaderValue::from_static("x"));
            client.insert("content-type", HeaderValue::from_static("text/plain"));
            let bodies = Bodies {
                client_api: Api::OpenAi,
                own: Prepared {
                    body: body.clone(),
                    parsed,
                },
                translated: Vec::new(),
            };
            let plan = Plan {
                group: g,
                endpoint: Endpoint::ChatCompletions,
                bodies: &bodies,
                body_len: body.len(),
                query: None,
                headers: &client,
                max_attempts: 1,
                first_byte: Duration::from_secs(1),
                deadline: Instant::now(),
                cooldown: &Cooldown::default(),
                penalties: Penalties::default(),
                trace: &Trace::off(),
            };
            let request = request_for(&plan, &g.candidates[0]).unwrap();
            assert_eq!(request.method(), http::Method::POST);
            assert_eq!(request.uri(), "http://127.0.0.1:9/v1/chat/completions");
            assert_eq!(request.headers()["authorization"], "Bearer k200");
            assert_eq!(request.headers()["content-type"], "application/json");
            assert_eq!(request.headers()["openai-beta"], "x");
            use http_body_util::BodyExt;
            let sent = request.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(&sent[..], br#"{"model":"m","messages":[]}"#);
        }
    }
}
