//! The attempt loop: pick a candidate, send, and fail over on failures that
//! are safe to retry, all before the client has seen a byte.
//!
//! Retried: connection errors, a timeout before response headers, 429, 5xx,
//! and 401/403 (the provider rejected *our* key; the client must never see
//! that as its own 401). Passed through: everything else, notably 400, 404
//! and 422, which mean the request itself is wrong. Each failure cools the
//! candidate down (see `routing::health`), so the next request avoids it too.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use tokio::time::Instant;

use super::{RequestBody, SendError, Upstream};
use crate::config::Cooldown;
use crate::metrics::Metrics;
use crate::payload::{Endpoint, Parsed};
use crate::routing::{Candidate, Group, Reason, now_ms};
use crate::usage::{Reservation, Settlement};

/// Everything one request's attempts need to know.
pub struct Plan<'a> {
    pub group: &'a Group,
    pub endpoint: Endpoint,
    pub parsed: &'a Parsed,
    pub body: &'a Bytes,
    /// The client's headers (filtered per attempt by `forward_request_headers`).
    pub headers: &'a HeaderMap,
    pub max_attempts: u32,
    pub first_byte: Duration,
    pub deadline: Instant,
    pub cooldown: &'a Cooldown,
    pub penalties: (u64, u64),
}

/// An upstream that answered with a response to pass on.
pub struct Attempt {
    pub response: http::Response<hyper::body::Incoming>,
    pub candidate: usize,
    pub attempts: u32,
    pub reservation: Reservation,
}

/// Why one attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Unreachable,
    Timeout,
    RateLimited { retry_after: Option<Duration> },
    Status(u16),
    KeyRejected(u16),
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
        }
    }
}

/// Every attempt failed.
#[derive(Debug)]
pub struct FailoverError {
    pub failures: Vec<Failure>,
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
    let mut tried: Vec<usize> = Vec::with_capacity(plan.max_attempts as usize);
    let mut failures = Vec::new();
    let prompt_estimate = (plan.body.len() / 4) as u64;
    while tried.len() < plan.max_attempts as usize {
        let now = Instant::now();
        if now >= plan.deadline {
            failures.push(Failure::Timeout);
            break;
        }
        let Some(index) = plan.group.pick(&tried, now_ms()) else {
            break;
        };
        tried.push(index);
        let c = &plan.group.candidates[index];
        let reservation = c.usage.reserve(prompt_estimate);
        let first_byte = (now + plan.first_byte).min(plan.deadline);
        let Some(request) = request_for(plan, c) else {
            // Validation refuses such a base_url; should one get here, it is
            // a candidate that cannot be reached.
            failures.push(Failure::Unreachable);
            reservation.settle(Settlement::failed(plan.penalties));
            continue;
        };
        let mut detail = None;
        let failure = match tokio::time::timeout_at(first_byte, upstream.send(request)).await {
            Ok(Ok(response)) => match classify(&response) {
                None => {
                    c.metrics.upstream_latency.observe(now.elapsed());
                    c.health.succeeded();
                    c.key.health.succeeded();
                    if tried.len() > 1 {
                        plan.group.failovers.inc_by(tried.len() as u64 - 1);
                    }
                    return Ok(Attempt {
                        response,
                        candidate: index,
                        attempts: tried.len() as u32,
                        reservation,
                    });
                }
                Some(failure) => failure,
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
            attempt = tried.len(),
            "upstream attempt failed"
        );
        c.metrics.upstream_error(metrics, failure.kind());
        cool_down(plan, index, failure);
        reservation.settle(Settlement::failed(plan.penalties));
        failures.push(failure);
    }
    Err(FailoverError { failures })
}

/// The request for one candidate: the body with its model (and shaping),
/// the client's forwarded headers, the provider's, and its key.
fn request_for(plan: &Plan<'_>, c: &Candidate) -> Option<http::Request<RequestBody>> {
    let uri = c.provider.endpoint_uri(plan.endpoint)?.clone();
    let mut body = plan.parsed.rewrite(plan.body, &c.model_json);
    if let Some(shaped) = c.provider.shaping.apply(&body) {
        body = shaped;
    }
    let mut headers = super::forward_request_headers(plan.headers);
    for (name, value) in &c.provider.headers {
        headers.insert(name.clone(), value.clone());
    }
    headers.insert(header::AUTHORIZATION, c.key.authorization.clone());
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
        _ => None,
    }
}

fn cool_down(plan: &Plan<'_>, index: usize, failure: Failure) {
    let c = &plan.group.candidates[index];
    let (base, max) = (plan.cooldown.base, plan.cooldown.max);
    match failure {
        Failure::RateLimited { retry_after } => {
            c.health.failed(Reason::RateLimited, retry_after, base, max)
        }
        Failure::Status(_) => c.health.failed(Reason::ServerError, None, base, max),
        // The key itself is bad: every model on it cools down, for long.
        Failure::KeyRejected(_) => c
            .key
            .health
            .failed(Reason::Unauthorized, Some(max), base, max),
        // The provider's host is in trouble, whichever model we asked.
        Failure::Unreachable => c.key.health.failed(Reason::Unreachable, None, base, max),
        Failure::Timeout => c.key.health.failed(Reason::Timeout, None, base, max),
    }
}

/// How long the provider asked us to wait: `Retry-After` (seconds or an HTTP
/// date), else OpenAI's `x-ratelimit-reset-*` for whichever limit ran out.
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
    ["requests", "tokens"]
        .into_iter()
        .filter(|kind| exhausted(kind))
        .filter_map(|kind| text(&format!("x-ratelimit-reset-{kind}")).and_then(go_duration))
        .max()
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
}
