//! The router's background work, as services: each loop is given only what
//! it reads and a cancellation token, and ends when the token is cancelled.
//!
//! - health probes: providers with `health_check`, on their intervals;
//! - chart samples: the ledger's totals every few seconds, for the dashboard;
//! - SIGHUP: reload the config;
//! - the config file: reload when its contents change;
//! - listener certificates: read again on SIGHUP and when they change.
//!
//! The usage store's syncer is a thread of its own (its I/O is blocking),
//! owned by the app state and stopped after the drain, for a final flush.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::app::{AppState, LiveRuntime};
use crate::metrics::series::{SAMPLE_EVERY, Series};
use crate::metrics::{CodeLabels, ListenerLabels, Metrics};
use crate::tls::{CertInfo, Tls};
use crate::upstream::Upstream;
use crate::upstream::probe::{self, Schedule};
use crate::usage::Ledger;

/// How often the probe schedule is looked at.
const PROBE_TICK: Duration = Duration::from_millis(100);

/// The running background tasks.
pub struct Tasks {
    stop: CancellationToken,
    set: JoinSet<()>,
}

/// The config file to watch, and the fingerprint of what was loaded.
pub struct Watched {
    pub path: PathBuf,
    pub loaded: Option<[u8; 32]>,
    pub every: Duration,
}

impl Tasks {
    /// Starts every background task for `app`.
    pub fn start(app: &AppState, watched: Option<Watched>) -> Self {
        let stop = CancellationToken::new();
        let mut set = JoinSet::new();
        set.spawn(health_probes(
            app.live(),
            app.upstream.clone(),
            stop.clone(),
        ));
        set.spawn(chart_samples(
            app.ledger.clone(),
            app.series.clone(),
            stop.clone(),
        ));
        set.spawn(reload_on_sighup(app.clone(), stop.clone()));
        if let Some(w) = watched {
            set.spawn(reload_on_change(app.clone(), w, stop.clone()));
        }
        Self { stop, set }
    }

    /// Also keeps each listener's certificate (named `public`, `admin`)
    /// current: read again on SIGHUP and when its files change (checked
    /// every `every`).
    pub fn watch_certificates(
        &mut self,
        certs: Vec<(&'static str, Arc<Tls>)>,
        metrics: Arc<Metrics>,
        every: Duration,
    ) {
        if certs.is_empty() {
            return;
        }
        for (listener, tls) in &certs {
            note_certificate(&metrics, listener, &tls.info());
        }
        self.set
            .spawn(certificates(certs, metrics, every, self.stop.clone()));
    }

    /// Stops every task and waits for them to end.
    pub async fn stop(mut self) {
        self.stop.cancel();
        while self.set.join_next().await.is_some() {}
    }
}

/// A tick every period, until the token is cancelled.
struct Ticks {
    interval: tokio::time::Interval,
    stop: CancellationToken,
}

impl Ticks {
    fn new(period: Duration, stop: CancellationToken) -> Self {
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Self { interval, stop }
    }

    /// The next tick's time, or `None` once stopped.
    async fn next(&mut self) -> Option<Instant> {
        tokio::select! {
            now = self.interval.tick() => Some(now),
            () = self.stop.cancelled() => None,
        }
    }
}

/// Probes providers as they fall due; each probe runs on its own, so a slow
/// provider delays no other.
pub async fn health_probes(live: LiveRuntime, upstream: Upstream, stop: CancellationToken) {
    let mut schedule = Schedule::default();
    let mut running = JoinSet::new();
    let mut ticks = Ticks::new(PROBE_TICK, stop);
    while let Some(now) = ticks.next().await {
        let runtime = live.load();
        for provider in schedule.due(&runtime.routes, now) {
            let upstream = upstream.clone();
            running.spawn(async move {
                probe::probe(&upstream, &provider).await;
            });
        }
        while running.try_join_next().is_some() {}
    }
    running.abort_all();
}

/// Samples the ledger's totals for the dashboard's charts.
pub async fn chart_samples(ledger: Arc<Ledger>, series: Arc<Series>, stop: CancellationToken) {
    let mut prev = None;
    let mut ticks = Ticks::new(SAMPLE_EVERY, stop);
    while ticks.next().await.is_some() {
        let totals: Vec<_> = ledger
            .cells()
            .iter()
            .map(|(_, cell)| cell.local_totals())
            .collect();
        prev = Some(series.sample(unix_secs(), &totals, prev));
    }
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Reloads the config on SIGHUP.
pub async fn reload_on_sighup(app: AppState, stop: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        loop {
            tokio::select! {
                got = hup.recv() => if got.is_none() { return },
                () = stop.cancelled() => return,
            }
            let _ = app.reload("sighup");
        }
    }
    #[cfg(not(unix))]
    stop.cancelled().await;
}

/// Reloads certificates that changed on disk, and all of them on SIGHUP.
/// A reload that fails keeps the certificate that serves.
pub async fn certificates(
    certs: Vec<(&'static str, Arc<Tls>)>,
    metrics: Arc<Metrics>,
    every: Duration,
    stop: CancellationToken,
) {
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut ticks = Ticks::new(every, stop);
    loop {
        #[cfg(unix)]
        let sighup = async {
            match &mut hup {
                Some(h) => h.recv().await,
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let sighup = std::future::pending::<Option<()>>();
        let all = tokio::select! {
            tick = ticks.next() => match tick {
                Some(_) => false,
                None => return,
            },
            _ = sighup => true,
        };
        for (listener, tls) in &certs {
            if all || tls.changed_on_disk() {
                reload_certificate(&metrics, listener, tls);
            }
        }
    }
}

/// Reads one listener's certificate again, and says how it went.
pub fn reload_certificate(metrics: &Metrics, listener: &'static str, tls: &Tls) {
    let outcome = match tls.reload() {
        Ok(info) => {
            tracing::info!(
                listener,
                subject = %info.subject,
                expires = %humantime::format_rfc3339_seconds(info.not_after),
                "certificate loaded"
            );
            note_certificate(metrics, listener, &info);
            "ok"
        }
        Err(e) => {
            tracing::warn!(listener, error = %e, "certificate not reloaded: the one loaded before still serves");
            "error"
        }
    };
    metrics
        .tls_reloads
        .get_or_create(&CodeLabels { code: outcome })
        .inc();
}

/// The certificate's expiry, in the gauge and (when near) in the log.
fn note_certificate(metrics: &Metrics, listener: &'static str, info: &CertInfo) {
    let expiry = info
        .not_after
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    metrics
        .tls_cert_expiry
        .get_or_create(&ListenerLabels { listener })
        .set(i64::try_from(expiry).unwrap_or(i64::MAX));
    let now = std::time::SystemTime::now();
    if info.expires_soon(now) {
        tracing::warn!(
            listener,
            days_left = info.remaining(now).as_secs() / 86_400,
            "the certificate expires soon"
        );
    }
}

/// Polls the config file and reloads when its contents change. Polling (not
/// inotify) also sees the symlink swaps Kubernetes ConfigMaps use. The
/// fingerprint of what was loaded is taken *before* the running config was
/// read, so a change made while starting up is not missed.
pub async fn reload_on_change(app: AppState, watched: Watched, stop: CancellationToken) {
    let mut last = watched.loaded;
    let mut ticks = Ticks::new(watched.every, stop);
    while ticks.next().await.is_some() {
        let now = crate::reload::file_fingerprint(&watched.path);
        if now.is_some() && now != last {
            last = now;
            let _ = app.reload("file_change");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn chart_samples_tick_until_stopped() {
        let ledger = Arc::new(Ledger::new());
        let series = Arc::new(Series::default());
        let stop = CancellationToken::new();
        let task = tokio::spawn(chart_samples(ledger.clone(), series.clone(), stop.clone()));
        let cell = ledger.cell(crate::usage::UsageKey {
            provider: "p".into(),
            key_fingerprint: "f".into(),
            model: "m".into(),
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        cell.restore(&crate::usage::Totals {
            requests: 3,
            ..Default::default()
        });
        tokio::time::sleep(SAMPLE_EVERY).await;
        let points = series.points();
        assert_eq!(points.len(), 1);
        assert_eq!(points[0].requests, 3);
        stop.cancel();
        task.await.unwrap();
    }
}
