//! Embedded SQLite store (WAL, `synchronous = FULL`).
//!
//! Writes go through one writer task that commits in groups: it takes every write
//! waiting in its queue (up to [`MAX_BATCH`]), applies each inside its own savepoint,
//! commits once, and only then answers each caller. One fsync covers the batch, so
//! throughput scales with load while every acknowledged pulse is on disk. Reads use a
//! separate pool; WAL lets them run beside the writer.

use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, Row, SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use super::{to_i64, to_u64, AgentWrite, OutboxItem, Store, StoreError};
use crate::model::{Alert, AlertKind};
use crate::model::{AgentRecord, BuildKind, Tombstone, Withdrawal};

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
        sequence BIGINT NOT NULL,
        chain_head TEXT NOT NULL,
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
    "CREATE TABLE IF NOT EXISTS cache (
        key TEXT PRIMARY KEY,
        expires_at BIGINT NOT NULL,
        json BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS deleted_agents (
        agent_id TEXT PRIMARY KEY,
        key_fingerprint TEXT NOT NULL,
        at_ns BIGINT NOT NULL,
        reason TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS withdrawals (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        digest TEXT NOT NULL,
        reason TEXT NOT NULL,
        at_ns BIGINT NOT NULL,
        UNIQUE (kind, digest))",
    // Severity 1-2 alerts not yet delivered to every webhook (at-least-once).
    "CREATE TABLE IF NOT EXISTS webhook_outbox (
        alert_id TEXT PRIMARY KEY,
        at_ns BIGINT NOT NULL,
        attempts INTEGER NOT NULL,
        next_at_ns BIGINT NOT NULL,
        delivered TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS webhook_outbox_due ON webhook_outbox (next_at_ns)",
    // The /healthz write probe.
    "CREATE TABLE IF NOT EXISTS health (
        id INTEGER PRIMARY KEY,
        at_ns BIGINT NOT NULL)",
];

enum Op {
    Write(Box<AgentWrite>),
    Alerts(Vec<Alert>),
    PutChallenge(String, u64),
    TakeChallenge(String, u64),
    Prune(u64, u64),
    PutCached(String, Vec<u8>, u64),
    DeleteAgent(Box<Tombstone>, u64, Vec<Alert>),
    PutWithdrawal(Box<Withdrawal>, Vec<Alert>),
    DeleteWithdrawal(String, Vec<Alert>),
    PruneAlerts(u64),
    OutboxRetry(String, String, u32, u64),
    OutboxDone(String),
    Probe(u64),
}

type Reply = oneshot::Sender<Result<bool, StoreError>>;

pub struct SqliteStore {
    reads: SqlitePool,
    tx: mpsc::Sender<(Op, Reply)>,
    /// Severity 1-2 alerts also go to `webhook_outbox`.
    outbox: Arc<AtomicBool>,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// Creates `dir` (and missing parents) with mode 0700; an existing `dir` readable by
/// others is tightened to 0750 at most.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
    if mode & 0o027 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode & 0o750))?;
    }
    Ok(())
}

/// Creates the database file with mode 0600 (SQLite gives its -wal and -shm files
/// the database file's mode), or tightens an existing one to 0600.
fn private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    if f.metadata()?.permissions().mode() & 0o077 != 0 {
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if needed) `dir/provenant.db`.
    pub async fn open(dir: &Path) -> Result<SqliteStore, StoreError> {
        private_dir(dir).map_err(unavailable)?;
        let path = dir.join("provenant.db");
        private_file(&path).map_err(unavailable)?;
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
            .connect_with(opts.clone().read_only(true))
            .await
            .map_err(unavailable)?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let outbox = Arc::new(AtomicBool::new(false));
        tokio::spawn(writer_loop(opts, writer, rx, outbox.clone()));
        Ok(SqliteStore { reads, tx, outbox })
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

async fn writer_loop(
    opts: SqliteConnectOptions,
    conn: SqliteConnection,
    mut rx: mpsc::Receiver<(Op, Reply)>,
    outbox: Arc<AtomicBool>,
) {
    let mut conn = Some(conn);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        if conn.is_none() {
            match SqliteConnection::connect_with(&opts).await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    tracing::error!(error = %e, "cannot reopen the store; nothing in this batch was recorded");
                    for (_, reply) in batch.drain(..) {
                        let _ = reply.send(Err(unavailable(&e)));
                    }
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let outbox = outbox.load(Ordering::Relaxed);
        match apply_batch(c, &batch, outbox).await {
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
                // After a failed batch the connection's transaction state cannot be
                // trusted: SQLite may have rolled the transaction back itself (disk full,
                // I/O error) or kept it open after a failed COMMIT, and sqlx's count of
                // open transactions follows neither. Its later "commits" would then be
                // savepoint releases inside a transaction that never commits: writes
                // acknowledged and lost. The next batch gets a fresh connection (closing
                // this one rolls back whatever it still holds).
                if let Some(c) = conn.take() {
                    match tokio::time::timeout(Duration::from_secs(5), c.close()).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            tracing::warn!(error = %e, "closing the failed store connection")
                        }
                        Err(_) => tracing::warn!("closing the failed store connection timed out"),
                    }
                }
            }
        }
    }
}

/// Applies every op, then commits once.
///
/// An op's logical failure (compare-and-swap lost, nonce reused) must leave nothing
/// behind. Pulses, the hot path, are written so that each failure path undoes what
/// the op wrote (see [`apply`]), which spares two statements per pulse; ops that also
/// insert alerts run inside a savepoint. A database error in an op without a savepoint
/// aborts the whole batch, so a half-applied op is never committed.
async fn apply_batch(
    conn: &mut SqliteConnection,
    batch: &[(Op, Reply)],
    outbox: bool,
) -> Result<Vec<Result<bool, StoreError>>, sqlx::Error> {
    let mut tx = conn.begin().await?;
    let mut results = Vec::with_capacity(batch.len());
    for (op, _) in batch {
        let needs_savepoint = match op {
            Op::Write(w) => !w.alerts.is_empty(),
            Op::Alerts(_)
            | Op::Prune(..)
            | Op::PruneAlerts(_)
            | Op::DeleteAgent(..)
            | Op::PutWithdrawal(..)
            | Op::DeleteWithdrawal(..) => true,
            Op::PutChallenge(..) | Op::TakeChallenge(..) | Op::PutCached(..) => false,
            Op::OutboxRetry(..) | Op::OutboxDone(_) | Op::Probe(_) => false,
        };
        if needs_savepoint {
            let mut sp = tx.begin().await?;
            match apply(&mut sp, op, outbox).await {
                Ok(v) => {
                    sp.commit().await?;
                    results.push(Ok(v));
                }
                Err(e) => {
                    sp.rollback().await?;
                    results.push(Err(e));
                }
            }
        } else {
            match apply(&mut tx, op, outbox).await {
                Err(StoreError::Unavailable(d)) => {
                    return Err(sqlx::Error::Protocol(format!("op failed mid-batch: {d}")))
                }
                r => results.push(r),
            }
        }
    }
    tx.commit().await?;
    Ok(results)
}

async fn apply(c: &mut SqliteConnection, op: &Op, outbox: bool) -> Result<bool, StoreError> {
    match op {
        Op::Write(w) => {
            let rec = &w.record;
            // A pulse that only advances the chain rewrites the hot columns, not the
            // record: the writer task is the serial part of the pulse path.
            let json = if w.chain_only {
                None
            } else {
                Some(serde_json::to_string(rec).map_err(|e| StoreError::Corrupt(e.to_string()))?)
            };
            if let Some(nonce) = &w.nonce {
                // ON CONFLICT DO NOTHING (portable to PostgreSQL): a reused nonce writes
                // nothing and is reported, with nothing to undo.
                let n = sqlx::query(
                    "INSERT INTO pulse_nonces (agent_id, nonce, seen_at_ns) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                )
                .bind(&rec.agent_id)
                .bind(nonce)
                .bind(to_i64(rec.last_seen_ns))
                .execute(&mut *c)
                .await
                .map_err(unavailable)?
                .rows_affected();
                if n != 1 {
                    return Err(StoreError::DuplicateNonce);
                }
            }
            let head = rec.chain_head.to_hex();
            let n = match (w.expected_version, &json) {
                (None, None) => return Err(StoreError::Corrupt("a new agent needs its full record".into())),
                (None, Some(json)) => sqlx::query(
                    "INSERT INTO agents (agent_id, version, last_seen_ns, blinded, sequence, chain_head, record) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                )
                .bind(&rec.agent_id)
                .bind(to_i64(rec.version))
                .bind(to_i64(rec.last_seen_ns))
                .bind(i64::from(rec.blinded))
                .bind(to_i64(rec.sequence))
                .bind(&head)
                .bind(json)
                .execute(&mut *c)
                .await
                .map_err(unavailable)?
                .rows_affected(),
                (Some(v), Some(json)) => sqlx::query(
                    "UPDATE agents SET version = ?, last_seen_ns = ?, blinded = ?, sequence = ?, chain_head = ?, record = ? WHERE agent_id = ? AND version = ?",
                )
                .bind(to_i64(rec.version))
                .bind(to_i64(rec.last_seen_ns))
                .bind(i64::from(rec.blinded))
                .bind(to_i64(rec.sequence))
                .bind(&head)
                .bind(json)
                .bind(&rec.agent_id)
                .bind(to_i64(v))
                .execute(&mut *c)
                .await
                .map_err(unavailable)?
                .rows_affected(),
                (Some(v), None) => sqlx::query(
                    "UPDATE agents SET version = ?, last_seen_ns = ?, blinded = ?, sequence = ?, chain_head = ? WHERE agent_id = ? AND version = ?",
                )
                .bind(to_i64(rec.version))
                .bind(to_i64(rec.last_seen_ns))
                .bind(i64::from(rec.blinded))
                .bind(to_i64(rec.sequence))
                .bind(&head)
                .bind(&rec.agent_id)
                .bind(to_i64(v))
                .execute(&mut *c)
                .await
                .map_err(unavailable)?
                .rows_affected(),
            };
            if n != 1 {
                // Undo the nonce this op consumed, so a lost race leaves no trace.
                if let Some(nonce) = &w.nonce {
                    sqlx::query("DELETE FROM pulse_nonces WHERE agent_id = ? AND nonce = ?")
                        .bind(&rec.agent_id)
                        .bind(nonce)
                        .execute(&mut *c)
                        .await
                        .map_err(unavailable)?;
                }
                return Err(StoreError::Conflict);
            }
            insert_alerts(c, &w.alerts, outbox).await?;
            Ok(true)
        }
        Op::Alerts(a) => {
            insert_alerts(c, a, outbox).await?;
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
            sqlx::query("DELETE FROM cache WHERE expires_at <= ?")
                .bind(to_i64(*now / 1_000_000_000))
                .execute(&mut *c)
                .await
                .map_err(unavailable)?;
            Ok(true)
        }
        Op::PutCached(key, json, exp) => {
            sqlx::query(
                "INSERT INTO cache (key, expires_at, json) VALUES (?, ?, ?) \
                 ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at, json = excluded.json",
            )
            .bind(key)
            .bind(to_i64(*exp))
            .bind(json)
            .execute(&mut *c)
            .await
            .map_err(unavailable)?;
            Ok(true)
        }
        Op::DeleteAgent(t, version, alerts) => {
            let n = sqlx::query("DELETE FROM agents WHERE agent_id = ? AND version = ?")
                .bind(&t.agent_id)
                .bind(to_i64(*version))
                .execute(&mut *c)
                .await
                .map_err(unavailable)?
                .rows_affected();
            if n != 1 {
                return Err(StoreError::Conflict);
            }
            sqlx::query(
                "INSERT INTO deleted_agents (agent_id, key_fingerprint, at_ns, reason) VALUES (?, ?, ?, ?) \
                 ON CONFLICT (agent_id) DO UPDATE SET key_fingerprint = excluded.key_fingerprint, at_ns = excluded.at_ns, reason = excluded.reason",
            )
            .bind(&t.agent_id)
            .bind(&t.key_fingerprint)
            .bind(to_i64(t.at_ns))
            .bind(&t.reason)
            .execute(&mut *c)
            .await
            .map_err(unavailable)?;
            sqlx::query("DELETE FROM pulse_nonces WHERE agent_id = ?")
                .bind(&t.agent_id)
                .execute(&mut *c)
                .await
                .map_err(unavailable)?;
            insert_alerts(c, alerts, outbox).await?;
            Ok(true)
        }
        Op::PutWithdrawal(w, alerts) => {
            let n = sqlx::query(
                "INSERT INTO withdrawals (id, kind, digest, reason, at_ns) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            )
            .bind(&w.id)
            .bind(w.kind.as_str())
            .bind(&w.digest)
            .bind(&w.reason)
            .bind(to_i64(w.at_ns))
            .execute(&mut *c)
            .await
            .map_err(unavailable)?
            .rows_affected();
            if n == 1 {
                insert_alerts(c, alerts, outbox).await?;
            }
            Ok(n == 1)
        }
        Op::DeleteWithdrawal(id, alerts) => {
            let n = sqlx::query("DELETE FROM withdrawals WHERE id = ?")
                .bind(id)
                .execute(&mut *c)
                .await
                .map_err(unavailable)?
                .rows_affected();
            if n == 1 {
                insert_alerts(c, alerts, outbox).await?;
            }
            Ok(n == 1)
        }
        Op::PruneAlerts(before) => {
            sqlx::query("DELETE FROM webhook_outbox WHERE at_ns < ?")
                .bind(to_i64(*before))
                .execute(&mut *c)
                .await
                .map_err(unavailable)?;
            let n = sqlx::query("DELETE FROM alerts WHERE at_ns < ?")
                .bind(to_i64(*before))
                .execute(&mut *c)
                .await
                .map_err(unavailable)?
                .rows_affected();
            Ok(n > 0)
        }
        Op::OutboxRetry(id, delivered, attempts, next) => {
            sqlx::query(
                "UPDATE webhook_outbox SET delivered = ?, attempts = ?, next_at_ns = ? WHERE alert_id = ?",
            )
            .bind(delivered)
            .bind(i64::from(*attempts))
            .bind(to_i64(*next))
            .bind(id)
            .execute(&mut *c)
            .await
            .map_err(unavailable)?;
            Ok(true)
        }
        Op::OutboxDone(id) => {
            sqlx::query("DELETE FROM webhook_outbox WHERE alert_id = ?")
                .bind(id)
                .execute(&mut *c)
                .await
                .map_err(unavailable)?;
            Ok(true)
        }
        Op::Probe(now) => {
            sqlx::query(
                "INSERT INTO health (id, at_ns) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET at_ns = excluded.at_ns",
            )
            .bind(to_i64(*now))
            .execute(&mut *c)
            .await
            .map_err(unavailable)?;
            Ok(true)
        }
    }
}

async fn insert_alerts(
    c: &mut SqliteConnection,
    alerts: &[Alert],
    outbox: bool,
) -> Result<(), StoreError> {
    for a in alerts {
        if outbox && a.severity <= crate::act::alerts::DURABLE_SEVERITY {
            sqlx::query(
                "INSERT INTO webhook_outbox (alert_id, at_ns, attempts, next_at_ns, delivered) VALUES (?, ?, 0, ?, '[]') ON CONFLICT DO NOTHING",
            )
            .bind(&a.id)
            .bind(to_i64(a.at_ns))
            .bind(to_i64(a.at_ns))
            .execute(&mut *c)
            .await
            .map_err(unavailable)?;
        }
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

/// An alert from `id, at_ns, agent_id, kind, severity, detail` (columns 0-5).
fn decode_alert(r: &sqlx::sqlite::SqliteRow) -> Result<Alert, StoreError> {
    let corrupt = |e: sqlx::Error| StoreError::Corrupt(e.to_string());
    let kind: String = r.try_get(3).map_err(corrupt)?;
    Ok(Alert {
        id: r.try_get(0).map_err(corrupt)?,
        at_ns: to_u64(r.try_get(1).map_err(corrupt)?),
        agent_id: r.try_get(2).map_err(corrupt)?,
        kind: AlertKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("alert kind {kind:?}")))?,
        severity: u8::try_from(r.try_get::<i64, _>(4).map_err(corrupt)?).unwrap_or(0),
        detail: r.try_get(5).map_err(corrupt)?,
    })
}

const SELECT_AGENT: &str =
    "SELECT record, version, last_seen_ns, blinded, sequence, chain_head FROM agents";

/// The record JSON, with the hot columns (written on every pulse) laid over it.
fn decode_record(row: &sqlx::sqlite::SqliteRow) -> Result<AgentRecord, StoreError> {
    let corrupt = |e: String| StoreError::Corrupt(e);
    let mut rec: AgentRecord = serde_json::from_str(
        row.try_get::<&str, _>(0)
            .map_err(|e| corrupt(e.to_string()))?,
    )
    .map_err(|e| corrupt(e.to_string()))?;
    rec.version = to_u64(row.try_get(1).map_err(|e| corrupt(e.to_string()))?);
    rec.last_seen_ns = to_u64(row.try_get(2).map_err(|e| corrupt(e.to_string()))?);
    rec.blinded = row
        .try_get::<i64, _>(3)
        .map_err(|e| corrupt(e.to_string()))?
        != 0;
    rec.sequence = to_u64(row.try_get(4).map_err(|e| corrupt(e.to_string()))?);
    rec.chain_head = evidence::Digest32::from_hex(
        row.try_get::<&str, _>(5)
            .map_err(|e| corrupt(e.to_string()))?,
    )
    .map_err(|e| corrupt(e.to_string()))?;
    Ok(rec)
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
        let row = sqlx::query(&format!("{SELECT_AGENT} WHERE agent_id = ?"))
            .bind(agent_id)
            .fetch_optional(&self.reads)
            .await
            .map_err(unavailable)?;
        row.as_ref().map(decode_record).transpose()
    }

    async fn list_agents(&self) -> Result<Vec<AgentRecord>, StoreError> {
        let rows = sqlx::query(&format!("{SELECT_AGENT} ORDER BY agent_id"))
            .fetch_all(&self.reads)
            .await
            .map_err(unavailable)?;
        rows.iter().map(decode_record).collect()
    }

    async fn scan_agents(
        &self,
    ) -> Result<Vec<(String, Result<AgentRecord, StoreError>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT record, version, last_seen_ns, blinded, sequence, chain_head, agent_id FROM agents ORDER BY agent_id",
        )
        .fetch_all(&self.reads)
        .await
        .map_err(unavailable)?;
        Ok(rows
            .iter()
            .map(|r| {
                let id = r.try_get::<String, _>(6).unwrap_or_default();
                (id, decode_record(r))
            })
            .collect())
    }

    async fn nonce_seen(&self, agent_id: &str, nonce: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT 1 FROM pulse_nonces WHERE agent_id = ? AND nonce = ?")
            .bind(agent_id)
            .bind(nonce)
            .fetch_optional(&self.reads)
            .await
            .map_err(unavailable)?;
        Ok(row.is_some())
    }

    async fn prune_alerts(&self, before_ns: u64) -> Result<u64, StoreError> {
        self.submit(Op::PruneAlerts(before_ns)).await.map(u64::from)
    }

    fn set_webhook_outbox(&self, on: bool) {
        self.outbox.store(on, Ordering::Relaxed);
    }

    async fn outbox_due(&self, now_ns: u64, limit: u32) -> Result<Vec<OutboxItem>, StoreError> {
        let rows = sqlx::query(
            "SELECT a.id, a.at_ns, a.agent_id, a.kind, a.severity, a.detail, o.attempts, o.delivered \
             FROM webhook_outbox o JOIN alerts a ON a.id = o.alert_id \
             WHERE o.next_at_ns <= ? ORDER BY o.next_at_ns, o.alert_id LIMIT ?",
        )
        .bind(to_i64(now_ns))
        .bind(i64::from(limit))
        .fetch_all(&self.reads)
        .await
        .map_err(unavailable)?;
        rows.iter()
            .map(|r| {
                let delivered: String = r
                    .try_get(7)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                Ok(OutboxItem {
                    alert: decode_alert(r)?,
                    attempts: u32::try_from(
                        r.try_get::<i64, _>(6)
                            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    )
                    .unwrap_or(u32::MAX),
                    delivered: serde_json::from_str(&delivered)
                        .map_err(|e| StoreError::Corrupt(format!("outbox delivered: {e}")))?,
                })
            })
            .collect()
    }

    async fn outbox_retry(
        &self,
        alert_id: &str,
        delivered: &[String],
        attempts: u32,
        next_at_ns: u64,
    ) -> Result<(), StoreError> {
        let d = serde_json::to_string(delivered).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.submit(Op::OutboxRetry(
            alert_id.to_string(),
            d,
            attempts,
            next_at_ns,
        ))
        .await
        .map(|_| ())
    }

    async fn outbox_done(&self, alert_id: &str) -> Result<(), StoreError> {
        self.submit(Op::OutboxDone(alert_id.to_string()))
            .await
            .map(|_| ())
    }

    async fn outbox_len(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM webhook_outbox")
            .fetch_one(&self.reads)
            .await
            .map_err(unavailable)?;
        Ok(to_u64(n))
    }

    async fn probe_write(&self, now_ns: u64) -> Result<(), StoreError> {
        self.submit(Op::Probe(now_ns)).await.map(|_| ())
    }

    async fn write_agent(&self, w: AgentWrite) -> Result<(), StoreError> {
        self.submit(Op::Write(Box::new(w))).await.map(|_| ())
    }

    async fn insert_alerts(&self, alerts: &[Alert]) -> Result<(), StoreError> {
        self.submit(Op::Alerts(alerts.to_vec())).await.map(|_| ())
    }

    async fn get_cached(&self, key: &str) -> Result<Option<(Vec<u8>, u64)>, StoreError> {
        let row = sqlx::query("SELECT json, expires_at FROM cache WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.reads)
            .await
            .map_err(unavailable)?;
        row.map(|r| {
            let json: Vec<u8> = r
                .try_get(0)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let exp: i64 = r
                .try_get(1)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            Ok((json, to_u64(exp)))
        })
        .transpose()
    }

    async fn put_cached(&self, key: &str, json: &[u8], expires_at: u64) -> Result<(), StoreError> {
        self.submit(Op::PutCached(key.to_string(), json.to_vec(), expires_at))
            .await
            .map(|_| ())
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
        rows.iter().map(decode_alert).collect()
    }

    async fn prune(&self, now_ns: u64, nonce_cutoff_ns: u64) -> Result<(), StoreError> {
        self.submit(Op::Prune(now_ns, nonce_cutoff_ns))
            .await
            .map(|_| ())
    }

    async fn delete_agent(
        &self,
        tomb: &Tombstone,
        expected_version: u64,
        alerts: &[Alert],
    ) -> Result<(), StoreError> {
        self.submit(Op::DeleteAgent(
            Box::new(tomb.clone()),
            expected_version,
            alerts.to_vec(),
        ))
        .await
        .map(|_| ())
    }

    async fn get_tombstone(&self, agent_id: &str) -> Result<Option<Tombstone>, StoreError> {
        let row = sqlx::query(
            "SELECT agent_id, key_fingerprint, at_ns, reason FROM deleted_agents WHERE agent_id = ?",
        )
        .bind(agent_id)
        .fetch_optional(&self.reads)
        .await
        .map_err(unavailable)?;
        row.map(|r| {
            let corrupt = |e: sqlx::Error| StoreError::Corrupt(e.to_string());
            Ok(Tombstone {
                agent_id: r.try_get(0).map_err(corrupt)?,
                key_fingerprint: r.try_get(1).map_err(corrupt)?,
                at_ns: to_u64(r.try_get(2).map_err(corrupt)?),
                reason: r.try_get(3).map_err(corrupt)?,
            })
        })
        .transpose()
    }

    async fn put_withdrawal(&self, w: &Withdrawal, alerts: &[Alert]) -> Result<bool, StoreError> {
        self.submit(Op::PutWithdrawal(Box::new(w.clone()), alerts.to_vec()))
            .await
    }

    async fn list_withdrawals(&self) -> Result<Vec<Withdrawal>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, kind, digest, reason, at_ns FROM withdrawals ORDER BY at_ns, id",
        )
        .fetch_all(&self.reads)
        .await
        .map_err(unavailable)?;
        rows.iter()
            .map(|r| {
                let corrupt = |e: sqlx::Error| StoreError::Corrupt(e.to_string());
                let kind: String = r.try_get(1).map_err(corrupt)?;
                Ok(Withdrawal {
                    id: r.try_get(0).map_err(corrupt)?,
                    kind: BuildKind::parse(&kind)
                        .ok_or_else(|| StoreError::Corrupt(format!("withdrawal kind {kind:?}")))?,
                    digest: r.try_get(2).map_err(corrupt)?,
                    reason: r.try_get(3).map_err(corrupt)?,
                    at_ns: to_u64(r.try_get(4).map_err(corrupt)?),
                    source: "api".into(),
                })
            })
            .collect()
    }

    async fn delete_withdrawal(&self, id: &str, alerts: &[Alert]) -> Result<bool, StoreError> {
        self.submit(Op::DeleteWithdrawal(id.to_string(), alerts.to_vec()))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use evidence::report::HexBytes;
    use evidence::{Measurements, Platform, PolicyMeasurement, TeeKind, Tier};

    fn record(version: u64, seq: u64) -> AgentRecord {
        let m = Measurements {
            agent_binary: HexBytes([1; 32]),
            policy: PolicyMeasurement::from_files(vec![]),
            platform: Platform {
                tee: TeeKind::None,
                tpm_present: false,
                kernel_cmdline_sha256: None,
                lockdown: None,
            },
            workloads: None,
            ebpf: None,
        };
        let sk = guest_agent::signer::KeySigner::generate_ed25519().unwrap();
        AgentRecord {
            agent_id: "a".into(),
            partition: "default".into(),
            tier: Tier::Software,
            key: guest_agent::signer::Signer::public_key(&sk).clone(),
            registered_at_ns: 1,
            last_seen_ns: 1,
            sequence: seq,
            chain_head: HexBytes([0; 32]),
            heartbeat_interval_ms: 1000,
            lkg: m.clone(),
            current: m,
            expected: Default::default(),
            blinded: false,
            last_replay_ns: None,
            last_desync_ns: None,
            attestation: None,
            image_red: Vec::new(),
            disabled: None,
            enrollment_chain: Vec::new(),
            ever_tdx: false,
            allowed_tier: None,
            stale_replays_refused: 0,
            requote_failed: None,
            version,
        }
    }

    fn write(
        rec: AgentRecord,
        expected: Option<u64>,
        nonce: Option<&str>,
        alerts: usize,
    ) -> AgentWrite {
        AgentWrite {
            alerts: (0..alerts)
                .map(|_| Alert::new(5, &rec.agent_id, AlertKind::Replay, "x"))
                .collect(),
            record: rec,
            expected_version: expected,
            nonce: nonce.map(str::to_string),
            chain_only: false,
        }
    }

    #[tokio::test]
    async fn finding09_db_created_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let _s = SqliteStore::open(&data).await.unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&data.join("provenant.db")), 0o600);
        // An existing world-readable database and directory are tightened.
        let old = dir.path().join("old");
        std::fs::create_dir(&old).unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(old.join("provenant.db"), b"").unwrap();
        std::fs::set_permissions(
            old.join("provenant.db"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let _s = SqliteStore::open(&old).await.unwrap();
        assert_eq!(mode(&old), 0o750);
        assert_eq!(mode(&old.join("provenant.db")), 0o600);
    }

    #[tokio::test]
    async fn cache_round_trips_replaces_and_prunes() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).await.unwrap();
        assert_eq!(s.get_cached("k").await.unwrap(), None);
        s.put_cached("k", b"{}", 100).await.unwrap();
        assert_eq!(
            s.get_cached("k").await.unwrap(),
            Some((b"{}".to_vec(), 100))
        );
        s.put_cached("k", b"[1]", 200).await.unwrap();
        s.put_cached("old", b"[0]", 50).await.unwrap();
        assert_eq!(
            s.get_cached("k").await.unwrap(),
            Some((b"[1]".to_vec(), 200))
        );
        // At t = 100 s the entry expiring at 50 goes, the one at 200 stays.
        s.prune(100 * 1_000_000_000, 0).await.unwrap();
        assert_eq!(s.get_cached("old").await.unwrap(), None);
        assert!(s.get_cached("k").await.unwrap().is_some());
        // It survives a restart.
        drop(s);
        let s = SqliteStore::open(dir.path()).await.unwrap();
        assert!(s.get_cached("k").await.unwrap().is_some());
    }

    /// A lost compare-and-swap or a reused nonce leaves nothing behind, with and
    /// without the savepoint path.
    #[tokio::test]
    async fn failed_writes_leave_no_trace() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).await.unwrap();
        s.write_agent(write(record(0, 0), None, None, 0))
            .await
            .unwrap();
        assert!(matches!(
            s.write_agent(write(record(0, 0), None, None, 0)).await,
            Err(StoreError::Conflict)
        ));
        for alerts in [0, 1] {
            let cur = s.get_agent("a").await.unwrap().unwrap();
            let v = cur.version;
            // Stale version with a fresh nonce: Conflict, and the nonce is not consumed.
            let stale = write(
                record(v + 1, 9),
                Some(v + 7),
                Some(&format!("n{alerts}")),
                alerts,
            );
            assert!(matches!(
                s.write_agent(stale).await,
                Err(StoreError::Conflict)
            ));
            assert_eq!(s.get_agent("a").await.unwrap().unwrap(), cur);
            let ok = write(
                record(v + 1, cur.sequence + 1),
                Some(v),
                Some(&format!("n{alerts}")),
                alerts,
            );
            s.write_agent(ok).await.unwrap();
            // The same nonce again: DuplicateNonce, record unchanged.
            let now = s.get_agent("a").await.unwrap().unwrap();
            let dup = write(
                record(v + 2, 99),
                Some(v + 1),
                Some(&format!("n{alerts}")),
                alerts,
            );
            assert!(matches!(
                s.write_agent(dup).await,
                Err(StoreError::DuplicateNonce)
            ));
            assert_eq!(s.get_agent("a").await.unwrap().unwrap(), now);
        }
        // A chain-only write keeps the stored record and moves the hot columns.
        let cur = s.get_agent("a").await.unwrap().unwrap();
        let mut next = cur.clone();
        next.sequence += 1;
        next.chain_head = HexBytes([9; 32]);
        next.version += 1;
        next.lkg.agent_binary = HexBytes([0xee; 32]); // must NOT be written
        let mut w = write(next.clone(), Some(cur.version), Some("chain"), 0);
        w.chain_only = true;
        s.write_agent(w).await.unwrap();
        let got = s.get_agent("a").await.unwrap().unwrap();
        assert_eq!(got.sequence, next.sequence);
        assert_eq!(got.chain_head, next.chain_head);
        assert_eq!(got.version, next.version);
        assert_eq!(got.lkg, cur.lkg);
        // Only the alerts of successful writes were stored.
        assert_eq!(s.list_alerts(None, 100).await.unwrap().len(), 1);
    }
}
