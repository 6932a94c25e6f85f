//! The shared store: usage and cooldowns in Redis, for several instances.
//!
//! Each sync pipelines `HINCRBY` of what this instance counted since its
//! last *successful* sync, then reads every total back; others' share is
//! the total minus what we have sent. If Redis is slow or down, calls time
//! out quickly, a circuit breaker stops trying for a while, and the deltas
//! simply wait (they are numbers, so they do not grow in memory) until a
//! sync succeeds and reconciles them.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use redis::{Commands, Connection};

use super::{SharedCooldown, UsageStore};
use crate::usage::{Totals, UsageKey};

const PREFIX: &str = "llm-router";
const TIMEOUT: Duration = Duration::from_millis(250);
const FIELDS: [&str; 7] = [
    "tokens",
    "prompt_tokens",
    "completion_tokens",
    "requests",
    "errors",
    "estimated",
    "cost_nanos",
];

pub struct RedisStore {
    client: redis::Client,
    conn: Option<Connection>,
    /// Per key, the local totals Redis already has from us.
    sent: HashMap<UsageKey, Totals>,
    /// Circuit breaker: no attempts before this instant.
    open_until: Option<Instant>,
    backoff: Duration,
}

fn fields(t: &Totals) -> [u64; 7] {
    [
        t.tokens,
        t.prompt_tokens,
        t.completion_tokens,
        t.requests,
        t.errors,
        t.estimated,
        t.cost_nanos,
    ]
}

fn from_fields(v: [u64; 7]) -> Totals {
    Totals {
        tokens: v[0],
        reserved: 0,
        prompt_tokens: v[1],
        completion_tokens: v[2],
        requests: v[3],
        errors: v[4],
        estimated: v[5],
        cost_nanos: v[6],
    }
}

fn usage_key(k: &UsageKey) -> String {
    // A JSON array keeps names with any characters unambiguous.
    let name =
        serde_json::to_string(&[&*k.provider, &*k.key_fingerprint, &*k.model]).unwrap_or_default();
    format!("{PREFIX}:usage:{name}")
}

fn cooldown_key(
    name: &(
        std::sync::Arc<str>,
        std::sync::Arc<str>,
        Option<std::sync::Arc<str>>,
    ),
) -> String {
    let model = name.2.as_deref().unwrap_or("*");
    let name = serde_json::to_string(&[&*name.0, &*name.1, model]).unwrap_or_default();
    format!("{PREFIX}:cooldown:{name}")
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl RedisStore {
    pub fn new(url: &str) -> anyhow::Result<Self> {
        let client = redis::Client::open(url).context("invalid redis URL")?;
        Ok(Self {
            client,
            conn: None,
            sent: HashMap::new(),
            open_until: None,
            backoff: Duration::from_millis(500),
        })
    }

    /// Runs `f` on a live connection, with the circuit breaker around it.
    fn with_conn<T>(
        &mut self,
        f: impl FnOnce(&mut Connection) -> redis::RedisResult<T>,
    ) -> anyhow::Result<T> {
        if let Some(until) = self.open_until
            && Instant::now() < until
        {
            anyhow::bail!("circuit open after recent failures");
        }
        if self.conn.is_none() {
            let conn = self
                .client
                .get_connection_with_timeout(TIMEOUT)
                .map_err(|e| self.trip(e))?;
            conn.set_read_timeout(Some(TIMEOUT))?;
            conn.set_write_timeout(Some(TIMEOUT))?;
            self.conn = Some(conn);
        }
        let conn = self.conn.as_mut().expect("just connected");
        match f(conn) {
            Ok(v) => {
                self.open_until = None;
                self.backoff = Duration::from_millis(500);
                Ok(v)
            }
            Err(e) => {
                self.conn = None;
                Err(self.trip(e))
            }
        }
    }

    fn trip(&mut self, e: redis::RedisError) -> anyhow::Error {
        self.open_until = Some(Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(Duration::from_secs(5));
        anyhow::Error::new(e).context("redis")
    }
}

impl UsageStore for RedisStore {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn interval(&self) -> Duration {
        Duration::from_millis(200)
    }

    fn load(&mut self) -> anyhow::Result<Vec<(UsageKey, Totals)>> {
        // Totals arrive as others' share on the first sync.
        Ok(Vec::new())
    }

    fn sync(&mut self, local: &[(UsageKey, Totals)]) -> anyhow::Result<Vec<(UsageKey, Totals)>> {
        let mut pipe = redis::pipe();
        let mut pending = Vec::new();
        // What each key's increments in this round add, so that a Redis that
        // lost our earlier data is known to hold exactly this much from us.
        let mut this_round: HashMap<&UsageKey, [u64; 7]> = HashMap::new();
        for (k, t) in local {
            let before = self.sent.get(k).copied().unwrap_or_default();
            let delta: Vec<(usize, i64)> = fields(t)
                .iter()
                .zip(fields(&before))
                .enumerate()
                .filter(|(_, (now, was))| *now != was)
                .map(|(i, (now, was))| (i, *now as i64 - was as i64))
                .collect();
            let key = usage_key(k);
            for (i, d) in &delta {
                pipe.hincr(&key, FIELDS[*i], *d).ignore();
            }
            if !delta.is_empty() {
                pending.push((k.clone(), *t));
                let mut added = [0u64; 7];
                for (i, d) in &delta {
                    added[*i] = (*d).max(0) as u64;
                }
                this_round.insert(k, added);
            }
            pipe.cmd("HMGET").arg(&key).arg(&FIELDS[..]);
        }
        let totals: Vec<Vec<Option<u64>>> = self.with_conn(|c| pipe.query(c))?;
        for (k, t) in pending {
            self.sent.insert(k, t);
        }
        let mut shared = Vec::with_capacity(local.len());
        for ((k, _), values) in local.iter().zip(totals) {
            let mut all = [0u64; 7];
            for (slot, v) in all.iter_mut().zip(values) {
                *slot = v.unwrap_or(0);
            }
            let mine = fields(&self.sent.get(k).copied().unwrap_or_default());
            if all[0] < mine[0] {
                // Redis lost data (restarted empty). It holds only this round's
                // increments from us; the next sync sends the rest.
                tracing::warn!("redis holds less usage than this instance sent; re-sending");
                let held = this_round.get(k).copied().unwrap_or_default();
                self.sent.insert(k.clone(), from_fields(held));
                shared.push((k.clone(), Totals::default()));
                continue;
            }
            let mut theirs = [0u64; 7];
            for i in 0..theirs.len() {
                theirs[i] = all[i].saturating_sub(mine[i]);
            }
            shared.push((k.clone(), from_fields(theirs)));
        }
        Ok(shared)
    }

    fn reset(&mut self, keys: &[UsageKey]) -> anyhow::Result<()> {
        let names: Vec<String> = keys.iter().map(usage_key).collect();
        if !names.is_empty() {
            self.with_conn(|c| c.del::<_, ()>(&names))?;
        }
        for k in keys {
            self.sent.remove(k);
        }
        Ok(())
    }

    fn sync_cooldowns(&mut self, local: &[SharedCooldown]) -> anyhow::Result<Vec<SharedCooldown>> {
        let now = unix_ms();
        let mut pipe = redis::pipe();
        for (name, until) in local {
            if *until > now {
                // Last writer wins; readers keep the later of theirs and ours.
                pipe.pset_ex(cooldown_key(name), *until, until - now)
                    .ignore();
            }
        }
        for (name, _) in local {
            pipe.get(cooldown_key(name));
        }
        let values: Vec<Option<u64>> = self.with_conn(|c| pipe.query(c))?;
        Ok(local
            .iter()
            .zip(values)
            .filter_map(|((name, _), v)| v.filter(|&u| u > now).map(|u| (name.clone(), u)))
            .collect())
    }
}
