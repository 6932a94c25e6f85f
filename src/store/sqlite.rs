//! The embedded default store: one SQLite file, written by the syncer.
//!
//! Rows are keyed by provider, key fingerprint and model, so reordering,
//! adding or removing keys in the config keeps the history of the rest.
//! Each sync writes, in one transaction, the rows whose totals changed. The
//! schema is versioned with `PRAGMA user_version`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use rusqlite::{Connection, params};

use super::UsageStore;
use crate::usage::{Totals, UsageKey};

/// Each entry takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE usage (
        provider TEXT NOT NULL,
        key_fingerprint TEXT NOT NULL,
        model TEXT NOT NULL,
        tokens INTEGER NOT NULL DEFAULT 0,
        prompt_tokens INTEGER NOT NULL DEFAULT 0,
        completion_tokens INTEGER NOT NULL DEFAULT 0,
        requests INTEGER NOT NULL DEFAULT 0,
        errors INTEGER NOT NULL DEFAULT 0,
        estimated INTEGER NOT NULL DEFAULT 0,
        updated_at INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (provider, key_fingerprint, model)
    ) WITHOUT ROWID;",
    // Money: what each (provider, key, model) and each client spent.
    "ALTER TABLE usage ADD COLUMN cost_nanos INTEGER NOT NULL DEFAULT 0;",
];

pub struct SqliteStore {
    path: PathBuf,
    conn: Option<Connection>,
    /// What the file holds, as far as we know; only changed rows are written.
    persisted: HashMap<UsageKey, Totals>,
}

impl SqliteStore {
    /// Does not touch the file yet: a store that cannot be opened at
    /// start-up is reported and retried, and the router serves meanwhile.
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            conn: None,
            persisted: HashMap::new(),
        }
    }

    #[cfg(test)]
    fn open(path: &Path) -> anyhow::Result<Self> {
        let mut store = Self::new(path);
        store.connection()?;
        Ok(store)
    }

    /// The open connection, reopened after a failure.
    fn connection(&mut self) -> anyhow::Result<&mut Connection> {
        if self.conn.is_none() {
            let conn = Connection::open(&self.path)
                .with_context(|| format!("opening {}", self.path.display()))?;
            conn.busy_timeout(Duration::from_millis(500))?;
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            migrate(&conn)?;
            self.conn = Some(conn);
        }
        Ok(self.conn.as_mut().expect("just opened"))
    }

    fn write(&mut self, rows: &[&(UsageKey, Totals)]) -> anyhow::Result<()> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let conn = self.connection()?;
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO usage (provider, key_fingerprint, model, tokens, prompt_tokens,
                    completion_tokens, requests, errors, estimated, updated_at, cost_nanos)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                 ON CONFLICT (provider, key_fingerprint, model) DO UPDATE SET
                    tokens = excluded.tokens, prompt_tokens = excluded.prompt_tokens,
                    completion_tokens = excluded.completion_tokens, requests = excluded.requests,
                    errors = excluded.errors, estimated = excluded.estimated,
                    updated_at = excluded.updated_at, cost_nanos = excluded.cost_nanos",
            )?;
            for (k, t) in rows {
                stmt.execute(params![
                    &*k.provider,
                    &*k.key_fingerprint,
                    &*k.model,
                    t.tokens as i64,
                    t.prompt_tokens as i64,
                    t.completion_tokens as i64,
                    t.requests as i64,
                    t.errors as i64,
                    t.estimated as i64,
                    now,
                    t.cost_nanos as i64,
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

fn migrate(conn: &Connection) -> anyhow::Result<()> {
    let version: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    anyhow::ensure!(
        version <= MIGRATIONS.len(),
        "database schema version {version} is newer than this router understands ({})",
        MIGRATIONS.len()
    );
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        conn.execute_batch(&format!(
            "BEGIN; {sql} PRAGMA user_version = {}; COMMIT;",
            i + 1
        ))
        .with_context(|| format!("migrating the usage database to version {}", i + 1))?;
    }
    Ok(())
}

impl UsageStore for SqliteStore {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    fn interval(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn load(&mut self) -> anyhow::Result<Vec<(UsageKey, Totals)>> {
        let conn = self.connection()?;
        let mut stmt = conn.prepare(
            "SELECT provider, key_fingerprint, model, tokens, prompt_tokens, completion_tokens,
                    requests, errors, estimated, cost_nanos FROM usage",
        )?;
        let rows = stmt
            .query_map([], |r| {
                let n = |i| r.get::<_, i64>(i).map(|v| v.max(0) as u64);
                Ok((
                    UsageKey {
                        provider: r.get::<_, String>(0)?.into(),
                        key_fingerprint: r.get::<_, String>(1)?.into(),
                        model: r.get::<_, String>(2)?.into(),
                    },
                    Totals {
                        tokens: n(3)?,
                        reserved: 0,
                        prompt_tokens: n(4)?,
                        completion_tokens: n(5)?,
                        requests: n(6)?,
                        errors: n(7)?,
                        estimated: n(8)?,
                        cost_nanos: n(9)?,
                    },
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        drop(stmt);
        self.persisted = rows.iter().cloned().collect();
        Ok(rows)
    }

    fn sync(&mut self, local: &[(UsageKey, Totals)]) -> anyhow::Result<Vec<(UsageKey, Totals)>> {
        let dirty: Vec<_> = local
            .iter()
            .filter(|(k, t)| self.persisted.get(k) != Some(t))
            .collect();
        if dirty.is_empty() {
            return Ok(Vec::new());
        }
        if let Err(e) = self.write(&dirty) {
            self.conn = None; // reopen next time: the file may have come back
            return Err(e);
        }
        for (k, t) in dirty {
            self.persisted.insert(k.clone(), *t);
        }
        Ok(Vec::new())
    }

    fn reset(&mut self, keys: &[UsageKey]) -> anyhow::Result<()> {
        let conn = self.connection()?;
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "DELETE FROM usage WHERE provider = ?1 AND key_fingerprint = ?2 AND model = ?3",
            )?;
            for k in keys {
                stmt.execute(params![&*k.provider, &*k.key_fingerprint, &*k.model])?;
            }
        }
        tx.commit()?;
        for k in keys {
            self.persisted.remove(k);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(m: &str) -> UsageKey {
        UsageKey {
            provider: "p".into(),
            key_fingerprint: "abc".into(),
            model: m.into(),
        }
    }

    #[test]
    fn totals_survive_reopening_and_reset_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u.db");
        let t = Totals {
            tokens: 42,
            requests: 3,
            cost_nanos: 1_250_000,
            ..Default::default()
        };
        {
            let mut s = SqliteStore::open(&path).unwrap();
            assert!(s.load().unwrap().is_empty());
            s.sync(&[(key("a"), t), (key("b"), t)]).unwrap();
        }
        let mut s = SqliteStore::open(&path).unwrap();
        let mut rows = s.load().unwrap();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(rows, vec![(key("a"), t), (key("b"), t)]);
        s.reset(&[key("a")]).unwrap();
        assert_eq!(s.load().unwrap(), vec![(key("b"), t)]);
    }

    #[test]
    fn a_first_version_database_gains_costs_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(&format!("{} PRAGMA user_version = 1;", MIGRATIONS[0]))
                .unwrap();
            conn.execute(
                "INSERT INTO usage (provider, key_fingerprint, model, tokens, requests) VALUES ('p', 'abc', 'old', 7, 1)",
                [],
            )
            .unwrap();
        }
        let mut s = SqliteStore::open(&path).unwrap();
        let rows = s.load().unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].1.tokens, rows[0].1.cost_nanos), (7, 0));
        let version: usize = Connection::open(&path)
            .unwrap()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len());
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u.db");
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        let err = SqliteStore::open(&path).err().unwrap();
        assert!(format!("{err:#}").contains("newer"));
    }
}
