//! Embedded SQLite store (WAL, `synchronous = FULL`).
//!
//! Writes go through one writer task that commits in groups: it takes every write
//! waiting in its queue (up to [`MAX_BATCH`]), applies each inside its own savepoint,
//! commits once, and only then answers each caller. One fsync covers the batch, so
//! throughput scales with load while every acknowledged pulse is on disk. Reads use a
//! separate pool; WAL lets them run beside the writer.

use provenant_base::clock::{UnixNanos, UnixSecs};
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, Row, SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use super::rows as decode;
use super::schema::{self, Applied};
use super::{to_i64, to_u64, AgentWrite, OutboxItem, Store, StoreError};
use crate::model::{Ack, Alert, PulseCount, VerdictChange};
use crate::model::{AgentRecord, Tombstone, Withdrawal};

mod export;
mod writer;
use writer::{writer_loop, Op, Reply};

/// Writes committed together at most. Bounds the latency one batch adds.
const MAX_BATCH: usize = 512;
/// Writes waiting for the writer at most; past it callers wait (backpressure).
const QUEUE: usize = 8192;

/// The schema, embedded at compile time (`migrations/sqlite`; see [`super::schema`]).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// The embedded SQLite [`Store`]: reads from a pool, writes through one
/// writer task that commits in groups (see the module doc).
pub struct SqliteStore {
    reads: SqlitePool,
    /// The writer task's queue; `None` when opened read-only.
    tx: Option<mpsc::Sender<(Op, Reply)>>,
    /// Severity 1-2 alerts also go to `webhook_outbox`.
    outbox: Arc<AtomicBool>,
    /// Which later `alerts` columns the database has (see [`decode::AlertCols`]):
    /// all when opened for writing; a read-only `migrate` source may be older.
    alert_cols: decode::AlertCols,
    /// Records decoded by the last full scan (see [`decode::ScanCache`]).
    scans: decode::ScanCache,
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
        migrate(&mut writer, &path).await?;
        let reads = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts.clone().read_only(true))
            .await
            .map_err(unavailable)?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let outbox = Arc::new(AtomicBool::new(false));
        tokio::spawn(writer_loop(opts, writer, rx, outbox.clone()));
        Ok(SqliteStore {
            reads,
            tx: Some(tx),
            outbox,
            alert_cols: decode::AlertCols::ALL,
            scans: decode::ScanCache::default(),
        })
    }

    /// Opens an existing database read-only (`path`: the data directory or the
    /// database file), as the source of `cp-verifier migrate`: nothing is created,
    /// migrated or written (every write is `Unavailable`). Its schema is checked like
    /// [`SqliteStore::open`] does.
    pub async fn open_read_only(path: &Path) -> Result<SqliteStore, StoreError> {
        let path = if path.is_dir() {
            path.join("provenant.db")
        } else {
            path.to_path_buf()
        };
        if !path.is_file() {
            return Err(unavailable(format!(
                "{}: no such database file",
                path.display()
            )));
        }
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .map_err(unavailable)?
            .read_only(true)
            .busy_timeout(Duration::from_secs(5));
        let reads = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await
            .map_err(unavailable)?;
        let mut c = reads.acquire().await.map_err(unavailable)?;
        let applied = applied_migrations(&mut c).await.map_err(unavailable)?;
        schema_check(&applied, &path)?;
        let has_agents: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'agents'",
        )
        .fetch_one(&mut *c)
        .await
        .map_err(unavailable)?;
        if has_agents == 0 {
            return Err(unavailable(format!(
                "{}: not a cp-verifier database (no agents table)",
                path.display()
            )));
        }
        let has_column = |name: &'static str| {
            sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM pragma_table_info('alerts') WHERE name = ?",
            )
            .bind(name)
        };
        let acks = has_column("acked_at_ns")
            .fetch_one(&mut *c)
            .await
            .map_err(unavailable)?;
        let explain = has_column("explain")
            .fetch_one(&mut *c)
            .await
            .map_err(unavailable)?;
        drop(c);
        Ok(SqliteStore {
            reads,
            tx: None,
            outbox: Arc::new(AtomicBool::new(false)),
            alert_cols: decode::AlertCols {
                acks: acks > 0,
                explain: explain > 0,
            },
            scans: decode::ScanCache::default(),
        })
    }

    async fn submit(&self, op: Op) -> Result<bool, StoreError> {
        let Some(tx) = &self.tx else {
            return Err(unavailable("store opened read-only"));
        };
        let (rtx, rrx) = oneshot::channel();
        tx.send((op, rtx))
            .await
            .map_err(|_| unavailable("writer stopped"))?;
        rrx.await.map_err(|_| unavailable("writer stopped"))?
    }
}

/// The migrations `_sqlx_migrations` records (none if it does not exist).
async fn applied_migrations(c: &mut SqliteConnection) -> Result<Vec<Applied>, sqlx::Error> {
    let exists: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
    )
    .fetch_one(&mut *c)
    .await?;
    if exists == 0 {
        return Ok(Vec::new());
    }
    let rows: Vec<(i64, Vec<u8>, bool)> =
        sqlx::query_as("SELECT version, checksum, success FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&mut *c)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(version, checksum, success)| Applied {
            version,
            checksum,
            success,
        })
        .collect())
}

fn schema_check(applied: &[Applied], path: &Path) -> Result<(), StoreError> {
    schema::check(&MIGRATOR, applied).map_err(|why| StoreError::Schema {
        at: path.display().to_string(),
        why,
    })
}

/// Checks the schema (refusing, untouched, a database this binary must not run on)
/// and applies the migrations not yet applied.
async fn migrate(c: &mut SqliteConnection, path: &Path) -> Result<(), StoreError> {
    let applied = applied_migrations(c).await.map_err(unavailable)?;
    schema_check(&applied, path)?;
    MIGRATOR
        .run(&mut *c)
        .await
        .map_err(|e| match schema::from_migrate(&MIGRATOR, e) {
            Ok(why) => StoreError::Schema {
                at: path.display().to_string(),
                why,
            },
            Err(e) => unavailable(format!("{}: migrating: {e}", path.display())),
        })
}

const SELECT_AGENT: &str =
    "SELECT record, version, last_seen_ns, blinded, sequence, chain_head, agent_id FROM agents";

/// An agent row's `blinded` (column 3): an integer here.
fn sqlite_blinded(row: &sqlx::sqlite::SqliteRow) -> Result<bool, StoreError> {
    let blinded: i64 = row
        .try_get(3)
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(blinded != 0)
}

/// An agent row (see [`decode::record`]).
fn decode_record(row: &sqlx::sqlite::SqliteRow) -> Result<AgentRecord, StoreError> {
    decode::record(row, sqlite_blinded(row)?)
}

#[async_trait]
impl Store for SqliteStore {
    async fn put_challenge(&self, nonce: &str, expires_at: UnixNanos) -> Result<(), StoreError> {
        self.submit(Op::PutChallenge(nonce.to_string(), expires_at.get()))
            .await
            .map(|_| ())
    }

    async fn take_challenge(&self, nonce: &str, now: UnixNanos) -> Result<bool, StoreError> {
        self.submit(Op::TakeChallenge(nonce.to_string(), now.get()))
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
        self.scans
            .records(&rows, sqlite_blinded)
            .into_iter()
            .collect()
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
        let records = self.scans.records(&rows, sqlite_blinded);
        Ok(rows
            .iter()
            .map(|r| r.try_get::<String, _>(6).unwrap_or_default())
            .zip(records)
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

    async fn verdict_history(
        &self,
        agent_id: &str,
        limit: u32,
    ) -> Result<Vec<VerdictChange>, StoreError> {
        let bodies: Vec<String> = sqlx::query_scalar(
            "SELECT body FROM verdict_changes WHERE agent_id = ? ORDER BY at_ns DESC, id DESC LIMIT ?",
        )
        .bind(agent_id)
        .bind(i64::from(limit))
        .fetch_all(&self.reads)
        .await
        .map_err(unavailable)?;
        Ok(decode::changes(&bodies))
    }

    async fn add_pulse_counts(&self, counts: &[(String, PulseCount)]) -> Result<(), StoreError> {
        if counts.is_empty() {
            return Ok(());
        }
        self.submit(Op::PulseCounts(counts.to_vec()))
            .await
            .map(|_| ())
    }

    async fn pulse_history(
        &self,
        agent_id: &str,
        since: u64,
    ) -> Result<Vec<PulseCount>, StoreError> {
        let rows: Vec<(i64, i64, i64)> = sqlx::query_as(
            "SELECT minute, accepted, refused FROM pulse_counts WHERE agent_id = ? AND minute >= ? ORDER BY minute",
        )
        .bind(agent_id)
        .bind(to_i64(since))
        .fetch_all(&self.reads)
        .await
        .map_err(unavailable)?;
        Ok(decode::pulse_counts(&rows))
    }

    async fn prune_alerts(&self, before: UnixNanos) -> Result<u64, StoreError> {
        self.submit(Op::PruneAlerts(before.get()))
            .await
            .map(u64::from)
    }

    fn set_webhook_outbox(&self, on: bool) {
        self.outbox.store(on, Ordering::Relaxed);
    }

    async fn outbox_due(&self, now: UnixNanos, limit: u32) -> Result<Vec<OutboxItem>, StoreError> {
        let rows = sqlx::query(
            "SELECT a.id, a.at_ns, a.agent_id, a.kind, a.severity, a.detail, o.attempts, o.delivered \
             FROM webhook_outbox o JOIN alerts a ON a.id = o.alert_id \
             WHERE o.next_at_ns <= ? ORDER BY o.next_at_ns, o.alert_id LIMIT ?",
        )
        .bind(to_i64(now.get()))
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
                    alert: decode::alert(r)?,
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
        next_at: UnixNanos,
    ) -> Result<(), StoreError> {
        let d = serde_json::to_string(delivered).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.submit(Op::OutboxRetry(
            alert_id.to_string(),
            d,
            attempts,
            next_at.get(),
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

    async fn probe_write(&self, now: UnixNanos) -> Result<(), StoreError> {
        self.submit(Op::Probe(now.get())).await.map(|_| ())
    }

    async fn write_agent(&self, w: AgentWrite) -> Result<(), StoreError> {
        self.submit(Op::Write(Box::new(w))).await.map(|_| ())
    }

    async fn insert_alerts(&self, alerts: &[Alert]) -> Result<(), StoreError> {
        self.submit(Op::Alerts(alerts.to_vec())).await.map(|_| ())
    }

    async fn get_cached(&self, key: &str) -> Result<Option<(Vec<u8>, UnixSecs)>, StoreError> {
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
            Ok((json, UnixSecs(exp)))
        })
        .transpose()
    }

    async fn put_cached(
        &self,
        key: &str,
        json: &[u8],
        expires_at: UnixSecs,
    ) -> Result<(), StoreError> {
        self.submit(Op::PutCached(
            key.to_string(),
            json.to_vec(),
            expires_at.unsigned(),
        ))
        .await
        .map(|_| ())
    }

    async fn query_alerts(&self, f: &super::AlertFilter) -> Result<Vec<Alert>, StoreError> {
        let rows = decode::alerts_query::<sqlx::Sqlite>(f, self.alert_cols)
            .build()
            .fetch_all(&self.reads)
            .await
            .map_err(unavailable)?;
        rows.iter().map(decode::alert_with_ack).collect()
    }

    async fn open_alert_counts(&self) -> Result<[u64; 3], StoreError> {
        let rows: Vec<(i64, i64)> = sqlx::query_as(decode::open_counts_sql(self.alert_cols.acks))
            .fetch_all(&self.reads)
            .await
            .map_err(unavailable)?;
        Ok(decode::open_counts(&rows))
    }

    async fn get_alert(&self, id: &str) -> Result<Option<Alert>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {} FROM alerts WHERE id = ?",
            decode::alert_columns(self.alert_cols)
        ))
        .bind(id)
        .fetch_optional(&self.reads)
        .await
        .map_err(unavailable)?;
        row.as_ref().map(decode::alert_with_ack).transpose()
    }

    async fn ack_alert(&self, id: &str, ack: &Ack, audit: &[Alert]) -> Result<bool, StoreError> {
        self.submit(Op::AckAlert(
            id.to_owned(),
            Box::new(ack.clone()),
            audit.to_vec(),
        ))
        .await
    }

    async fn prune(&self, now: UnixNanos, nonce_cutoff: UnixNanos) -> Result<(), StoreError> {
        self.submit(Op::Prune(now.get(), nonce_cutoff.get()))
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
        row.as_ref().map(decode::tombstone).transpose()
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
        rows.iter().map(decode::withdrawal).collect()
    }

    async fn delete_withdrawal(&self, id: &str, alerts: &[Alert]) -> Result<bool, StoreError> {
        self.submit(Op::DeleteWithdrawal(id.to_string(), alerts.to_vec()))
            .await
    }
}

#[cfg(test)]
mod tests;
