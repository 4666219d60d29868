//! Embedded SQLite store (WAL, `synchronous = FULL`).
//!
//! Writes go through one writer task that commits in groups: it takes every write
//! waiting in its queue (up to [`MAX_BATCH`]), applies each inside its own savepoint,
//! commits once, and only then answers each caller. One fsync covers the batch, so
//! throughput scales with load while every acknowledged pulse is on disk. Reads use a
//! separate pool; WAL lets them run beside the writer.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, Row, SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use super::{to_i64, to_u64, AgentRecord, AgentWrite, Store, StoreError};
use crate::alert::{Alert, AlertKind};

/// Writes committed together at most. Bounds the latency one batch adds.
const MAX_BATCH: usize = 512;
/// Writes waiting for the writer at most; past it callers wait (backpressure).
const QUEUE: usize = 8192;

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS agents (
        agent_id TEXT PRIMARY KEY,
        version BIGINT NOT NULL,
        last_seen_ns BIGINT NOT NULL,
        blinded INTEGER NOT NULL,
        record TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS challenges (
        nonce TEXT PRIMARY KEY,
        expires_at_ns BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS pulse_nonces (
        agent_id TEXT NOT NULL,
        nonce TEXT NOT NULL,
        seen_at_ns BIGINT NOT NULL,
        PRIMARY KEY (agent_id, nonce))",
    "CREATE INDEX IF NOT EXISTS pulse_nonces_seen ON pulse_nonces (seen_at_ns)",
    "CREATE TABLE IF NOT EXISTS alerts (
        id TEXT PRIMARY KEY,
        at_ns BIGINT NOT NULL,
        agent_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        severity INTEGER NOT NULL,
        detail TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS alerts_agent ON alerts (agent_id, at_ns)",
    "CREATE INDEX IF NOT EXISTS alerts_at ON alerts (at_ns)",
];

enum Op {
    Write(Box<AgentWrite>),
    Alerts(Vec<Alert>),
    PutChallenge(String, u64),
    TakeChallenge(String, u64),
    Prune(u64, u64),
}

type Reply = oneshot::Sender<Result<bool, StoreError>>;

pub struct SqliteStore {
    reads: SqlitePool,
    tx: mpsc::Sender<(Op, Reply)>,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl SqliteStore {
    /// Opens (creating if needed) `dir/provenant.db`.
    pub async fn open(dir: &Path) -> Result<SqliteStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(unavailable)?;
        let path = dir.join("provenant.db");
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .map_err(unavailable)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5));
        let mut writer = SqliteConnection::connect_with(&opts)
            .await
            .map_err(unavailable)?;
        for stmt in SCHEMA {
            sqlx::query(stmt)
                .execute(&mut writer)
                .await
                .map_err(unavailable)?;
        }
        let reads = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts.read_only(true))
            .await
            .map_err(unavailable)?;
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(writer_loop(writer, rx));
        Ok(SqliteStore { reads, tx })
    }

    async fn submit(&self, op: Op) -> Result<bool, StoreError> {
        let (rtx, rrx) = oneshot::channel();
        self.tx
            .send((op, rtx))
            .await
            .map_err(|_| unavailable("writer stopped"))?;
        rrx.await.map_err(|_| unavailable("writer stopped"))?
    }
}

async fn writer_loop(mut conn: SqliteConnection, mut rx: mpsc::Receiver<(Op, Reply)>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let results = apply_batch(&mut conn, &batch).await;
        match results {
            Ok(results) => {
                for ((_, reply), r) in batch.drain(..).zip(results) {
                    let _ = reply.send(r);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "store batch failed; nothing in it was recorded");
                for (_, reply) in batch.drain(..) {
                    let _ = reply.send(Err(unavailable(&e)));
                }
            }
        }
    }
}

/// Applies every op in its own savepoint; commits once. An op's own failure (CAS,
/// duplicate nonce) rolls back only that op. A commit failure fails them all.
async fn apply_batch(
    conn: &mut SqliteConnection,
    batch: &[(Op, Reply)],
) -> Result<Vec<Result<bool, StoreError>>, sqlx::Error> {
    let mut tx = conn.begin().await?;
    let mut results = Vec::with_capacity(batch.len());
    for (op, _) in batch {
        let mut sp = tx.begin().await?;
        match apply(&mut sp, op).await {
            Ok(v) => {
                sp.commit().await?;
                results.push(Ok(v));
            }
            Err(e) => {
                sp.rollback().await?;
                results.push(Err(e));
            }
        }
    }
    tx.commit().await?;
    Ok(results)
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.is_unique_violation())
}

async fn apply(c: &mut SqliteConnection, op: &Op) -> Result<bool, StoreError> {
    match op {
        Op::Write(w) => {
            let rec = &w.record;
            let json =
                serde_json::to_string(rec).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            if let Some(nonce) = &w.nonce {
                let r = sqlx::query(
                    "INSERT INTO pulse_nonces (agent_id, nonce, seen_at_ns) VALUES (?, ?, ?)",
                )
                .bind(&rec.agent_id)
                .bind(nonce)
                .bind(to_i64(rec.last_seen_ns))
                .execute(&mut *c)
                .await;
                match r {
                    Err(e) if is_unique_violation(&e) => return Err(StoreError::DuplicateNonce),
                    Err(e) => return Err(unavailable(e)),
                    Ok(_) => {}
                }
            }
            let n = match w.expected_version {
                None => sqlx::query(
                    "INSERT INTO agents (agent_id, version, last_seen_ns, blinded, record) VALUES (?, ?, ?, ?, ?)",
                )
                .bind(&rec.agent_id)
                .bind(to_i64(rec.version))
                .bind(to_i64(rec.last_seen_ns))
                .bind(i64::from(rec.blinded))
                .bind(&json)
                .execute(&mut *c)
                .await
                .map_err(|e| if is_unique_violation(&e) { StoreError::Conflict } else { unavailable(e) })?
                .rows_affected(),
                Some(v) => sqlx::query(
                    "UPDATE agents SET version = ?, last_seen_ns = ?, blinded = ?, record = ? WHERE agent_id = ? AND version = ?",
                )
                .bind(to_i64(rec.version))
                .bind(to_i64(rec.last_seen_ns))
                .bind(i64::from(rec.blinded))
                .bind(&json)
                .bind(&rec.agent_id)
                .bind(to_i64(v))
                .execute(&mut *c)
                .await
                .map_err(unavailable)?
                .rows_affected(),
            };
            if n != 1 {
                return Err(StoreError::Conflict);
            }
            insert_alerts(c, &w.alerts).await?;
            Ok(true)
        }
        Op::Alerts(a) => {
            insert_alerts(c, a).await?;
            Ok(true)
        }
        Op::PutChallenge(nonce, exp) => {
            sqlx::query("INSERT INTO challenges (nonce, expires_at_ns) VALUES (?, ?)")
                .bind(nonce)
                .bind(to_i64(*exp))
                .execute(&mut *c)
                .await
                .map_err(unavailable)?;
            Ok(true)
        }
        Op::TakeChallenge(nonce, now) => {
            let n = sqlx::query("DELETE FROM challenges WHERE nonce = ? AND expires_at_ns >= ?")
                .bind(nonce)
                .bind(to_i64(*now))
                .execute(&mut *c)
                .await
                .map_err(unavailable)?
                .rows_affected();
            Ok(n == 1)
        }
        Op::Prune(now, cutoff) => {
            sqlx::query("DELETE FROM challenges WHERE expires_at_ns < ?")
                .bind(to_i64(*now))
                .execute(&mut *c)
                .await
                .map_err(unavailable)?;
            sqlx::query("DELETE FROM pulse_nonces WHERE seen_at_ns < ?")
                .bind(to_i64(*cutoff))
                .execute(&mut *c)
                .await
                .map_err(unavailable)?;
            Ok(true)
        }
    }
}

async fn insert_alerts(c: &mut SqliteConnection, alerts: &[Alert]) -> Result<(), StoreError> {
    for a in alerts {
        sqlx::query(
            "INSERT INTO alerts (id, at_ns, agent_id, kind, severity, detail) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&a.id)
        .bind(to_i64(a.at_ns))
        .bind(&a.agent_id)
        .bind(a.kind.as_str())
        .bind(i64::from(a.severity))
        .bind(&a.detail)
        .execute(&mut *c)
        .await
        .map_err(unavailable)?;
    }
    Ok(())
}

fn decode_record(json: &str) -> Result<AgentRecord, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(e.to_string()))
}

#[async_trait]
impl Store for SqliteStore {
    async fn put_challenge(&self, nonce: &str, expires_at_ns: u64) -> Result<(), StoreError> {
        self.submit(Op::PutChallenge(nonce.to_string(), expires_at_ns))
            .await
            .map(|_| ())
    }

    async fn take_challenge(&self, nonce: &str, now_ns: u64) -> Result<bool, StoreError> {
        self.submit(Op::TakeChallenge(nonce.to_string(), now_ns))
            .await
    }

    async fn get_agent(&self, agent_id: &str) -> Result<Option<AgentRecord>, StoreError> {
        let row = sqlx::query("SELECT record FROM agents WHERE agent_id = ?")
            .bind(agent_id)
            .fetch_optional(&self.reads)
            .await
            .map_err(unavailable)?;
        row.map(|r| decode_record(r.get::<&str, _>(0))).transpose()
    }

    async fn list_agents(&self) -> Result<Vec<AgentRecord>, StoreError> {
        let rows = sqlx::query("SELECT record FROM agents ORDER BY agent_id")
            .fetch_all(&self.reads)
            .await
            .map_err(unavailable)?;
        rows.iter()
            .map(|r| decode_record(r.get::<&str, _>(0)))
            .collect()
    }

    async fn write_agent(&self, w: AgentWrite) -> Result<(), StoreError> {
        self.submit(Op::Write(Box::new(w))).await.map(|_| ())
    }

    async fn insert_alerts(&self, alerts: &[Alert]) -> Result<(), StoreError> {
        self.submit(Op::Alerts(alerts.to_vec())).await.map(|_| ())
    }

    async fn list_alerts(
        &self,
        agent_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Alert>, StoreError> {
        let rows = match agent_id {
            Some(id) => sqlx::query(
                "SELECT id, at_ns, agent_id, kind, severity, detail FROM alerts WHERE agent_id = ? ORDER BY at_ns DESC, id DESC LIMIT ?",
            )
            .bind(id)
            .bind(i64::from(limit))
            .fetch_all(&self.reads)
            .await,
            None => sqlx::query(
                "SELECT id, at_ns, agent_id, kind, severity, detail FROM alerts ORDER BY at_ns DESC, id DESC LIMIT ?",
            )
            .bind(i64::from(limit))
            .fetch_all(&self.reads)
            .await,
        }
        .map_err(unavailable)?;
        rows.iter()
            .map(|r| {
                let kind: String = r.get(3);
                Ok(Alert {
                    id: r.get(0),
                    at_ns: to_u64(r.get(1)),
                    agent_id: r.get(2),
                    kind: AlertKind::parse(&kind)
                        .ok_or_else(|| StoreError::Corrupt(format!("alert kind {kind:?}")))?,
                    severity: u8::try_from(r.get::<i64, _>(4)).unwrap_or(0),
                    detail: r.get(5),
                })
            })
            .collect()
    }

    async fn prune(&self, now_ns: u64, nonce_cutoff_ns: u64) -> Result<(), StoreError> {
        self.submit(Op::Prune(now_ns, nonce_cutoff_ns))
            .await
            .map(|_| ())
    }
}
