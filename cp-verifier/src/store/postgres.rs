//! Shared PostgreSQL store: several cp-verifier replicas on one fleet.
//!
//! Same semantics as the embedded SQLite store ([`super::sqlite`]), with the
//! database doing the serialising instead of one writer task:
//!
//! - every write that is one state change is one transaction;
//! - compare-and-swap is `UPDATE ... WHERE agent_id = $1 AND version = $2`: under READ
//!   COMMITTED a concurrent writer blocks on the row, then re-checks the `WHERE` against
//!   the committed row, so exactly one of two racing writers sees one row updated and
//!   the other sees none (`Conflict`);
//! - a pulse nonce is consumed by inserting it under its primary key: whichever
//!   replica inserts first wins, the other sees the key taken (`DuplicateNonce`);
//! - connection failures, pool exhaustion (bounded acquire timeout) and statements
//!   running past the statement timeout are `Unavailable`.
//!
//! The schema lives in `migrations/postgres` and is embedded at compile time.

use provenant_base::clock::{UnixNanos, UnixSecs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::Row;

use super::rows as decode;
use super::schema;
use super::{to_i64, to_u64, AgentWrite, OutboxItem, Store, StoreError};
use crate::model::{Ack, Alert, PulseCount, VerdictChange};
use crate::model::{AgentRecord, Tombstone, Withdrawal};

mod import;
mod leader;
pub mod target;
mod write;

pub use leader::LEADER_LOCK_KEY;

pub use target::{is_postgres_url, read_password_file, PgTarget, PgTargetError};

/// The schema, embedded at compile time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// Connections per replica at most.
const MAX_CONNECTIONS: u32 = 16;
/// How long a caller waits for a pooled connection before the store is `Unavailable`.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// The shared PostgreSQL [`Store`].
pub struct PgStore {
    pool: PgPool,
    /// Where to connect (for the leader's own session); its `Debug` hides the password.
    target: PgTarget,
    /// Severity 1-2 alerts also go to `webhook_outbox`.
    outbox: AtomicBool,
    /// This replica's side of the leader election (see the `leader` module).
    leader: leader::Leadership,
    /// Records decoded by the last full scan (see [`decode::ScanCache`]).
    scans: decode::ScanCache,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

pub(super) fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

impl PgStore {
    /// Connects and applies the embedded migrations (sqlx takes an advisory lock
    /// while migrating, so replicas starting together do not race).
    pub async fn connect(target: &PgTarget) -> Result<PgStore, StoreError> {
        let store = PgStore::connect_only(target).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Connects without touching the schema.
    pub async fn connect_only(target: &PgTarget) -> Result<PgStore, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(target.options())
            .await
            .map_err(|e| unavailable_at(target, e))?;
        Ok(PgStore {
            pool,
            target: target.clone(),
            outbox: AtomicBool::new(false),
            leader: leader::Leadership::new(target.clone()),
            scans: decode::ScanCache::default(),
        })
    }

    /// Checks the schema (see [`super::schema`]: a database written by a newer
    /// cp-verifier, or whose applied migrations differ from ours, is refused and left
    /// untouched), then applies the migrations not yet applied.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let applied = self.applied_migrations().await?;
        schema::check(&MIGRATOR, &applied).map_err(|why| self.schema_error(why))?;
        MIGRATOR
            .run(&self.pool)
            .await
            .map_err(|e| match schema::from_migrate(&MIGRATOR, e) {
                Ok(why) => self.schema_error(why),
                Err(e) => unavailable_at(&self.target, e),
            })
    }

    fn schema_error(&self, why: schema::SchemaError) -> StoreError {
        StoreError::Schema {
            at: self.target.to_string(),
            why,
        }
    }

    /// The migrations `_sqlx_migrations` records (none if it does not exist).
    pub async fn applied_migrations(&self) -> Result<Vec<schema::Applied>, StoreError> {
        let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
            .fetch_one(&self.pool)
            .await
            .map_err(|e| unavailable_at(&self.target, e))?;
        if !exists {
            return Ok(Vec::new());
        }
        let rows: Vec<(i64, Vec<u8>, bool)> = sqlx::query_as(
            "SELECT version, checksum, success FROM _sqlx_migrations ORDER BY version",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| unavailable_at(&self.target, e))?;
        Ok(rows
            .into_iter()
            .map(|(version, checksum, success)| schema::Applied {
                version,
                checksum,
                success,
            })
            .collect())
    }

    /// The connection target (password redacted in `Debug`).
    pub fn target(&self) -> &PgTarget {
        &self.target
    }

    /// Steps down as fleet leader (another replica takes over at its next check).
    pub async fn resign_leadership(&self) {
        self.leader.resign().await
    }

    /// The backend pid of the leader-election session, if open (for tests that
    /// terminate it to simulate a dead leader).
    pub async fn leader_backend_pid(&self) -> Option<i32> {
        self.leader.backend_pid().await
    }

    /// The pool, for tests and tooling.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// A connection or migration error, with the password (should the server or driver
/// echo it) redacted.
fn unavailable_at(t: &PgTarget, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(t.redact(&format!("{t}: {e}")))
}

const SELECT_AGENT: &str =
    "SELECT record, version, last_seen_ns, blinded, sequence, chain_head, agent_id FROM agents";

/// An agent row (see [`decode::record`]); `blinded` is a boolean here.
fn decode_record(row: &PgRow) -> Result<AgentRecord, StoreError> {
    decode::record(row, row.try_get::<bool, _>(3).map_err(corrupt)?)
}

#[async_trait]
impl Store for PgStore {
    async fn put_challenge(&self, nonce: &str, expires_at: UnixNanos) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO challenges (nonce, expires_at_ns) VALUES ($1, $2)")
            .bind(nonce)
            .bind(to_i64(expires_at.get()))
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn take_challenge(&self, nonce: &str, now: UnixNanos) -> Result<bool, StoreError> {
        // One statement: of two replicas taking the same challenge, one deletes it.
        let n = sqlx::query("DELETE FROM challenges WHERE nonce = $1 AND expires_at_ns >= $2")
            .bind(nonce)
            .bind(to_i64(now.get()))
            .execute(&self.pool)
            .await
            .map_err(unavailable)?
            .rows_affected();
        Ok(n == 1)
    }

    async fn get_agent(&self, agent_id: &str) -> Result<Option<AgentRecord>, StoreError> {
        let row = sqlx::query(&format!("{SELECT_AGENT} WHERE agent_id = $1"))
            .bind(agent_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        row.as_ref().map(decode_record).transpose()
    }

    async fn list_agents(&self) -> Result<Vec<AgentRecord>, StoreError> {
        let rows = sqlx::query(&format!("{SELECT_AGENT} ORDER BY agent_id"))
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        self.scans
            .records(&rows, |r| r.try_get::<bool, _>(3).map_err(corrupt))
            .into_iter()
            .collect()
    }

    async fn scan_agents(
        &self,
    ) -> Result<Vec<(String, Result<AgentRecord, StoreError>)>, StoreError> {
        let rows = sqlx::query(&format!("{SELECT_AGENT} ORDER BY agent_id"))
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        let records = self
            .scans
            .records(&rows, |r| r.try_get::<bool, _>(3).map_err(corrupt));
        Ok(rows
            .iter()
            .map(|r| r.try_get::<String, _>(6).unwrap_or_default())
            .zip(records)
            .collect())
    }

    async fn write_agent(&self, w: AgentWrite) -> Result<(), StoreError> {
        let outbox = self.outbox.load(Ordering::Relaxed);
        write::write_agent(&self.pool, &w, outbox).await
    }

    async fn insert_alerts(&self, alerts: &[Alert]) -> Result<(), StoreError> {
        let outbox = self.outbox.load(Ordering::Relaxed);
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        write::insert_alerts(&mut tx, alerts, outbox).await?;
        tx.commit().await.map_err(unavailable)
    }

    async fn query_alerts(&self, f: &super::AlertFilter) -> Result<Vec<Alert>, StoreError> {
        let rows = decode::alerts_query::<sqlx::Postgres>(f, decode::AlertCols::ALL)
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        rows.iter().map(decode::alert_with_ack).collect()
    }

    async fn open_alert_counts(&self) -> Result<[u64; 3], StoreError> {
        let rows: Vec<(i64, i64)> = sqlx::query_as(decode::open_counts_sql(true))
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(decode::open_counts(&rows))
    }

    async fn get_alert(&self, id: &str) -> Result<Option<Alert>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {} FROM alerts WHERE id = $1",
            decode::alert_columns(decode::AlertCols::ALL)
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        row.as_ref().map(decode::alert_with_ack).transpose()
    }

    async fn ack_alert(&self, id: &str, ack: &Ack, audit: &[Alert]) -> Result<bool, StoreError> {
        let outbox = self.outbox.load(Ordering::Relaxed);
        write::ack_alert(&self.pool, id, ack, audit, outbox).await
    }

    async fn prune(&self, now: UnixNanos, nonce_cutoff: UnixNanos) -> Result<(), StoreError> {
        write::prune(&self.pool, now.get(), nonce_cutoff.get()).await
    }

    async fn get_cached(&self, key: &str) -> Result<Option<(Vec<u8>, UnixSecs)>, StoreError> {
        let row = sqlx::query("SELECT json, expires_at FROM cache WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        row.map(|r| {
            let json: Vec<u8> = r.try_get(0).map_err(corrupt)?;
            let exp: i64 = r.try_get(1).map_err(corrupt)?;
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
        sqlx::query(
            "INSERT INTO cache (key, expires_at, json) VALUES ($1, $2, $3) \
             ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at, json = excluded.json",
        )
        .bind(key)
        .bind(to_i64(expires_at.unsigned()))
        .bind(json)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    async fn delete_agent(
        &self,
        tomb: &Tombstone,
        expected_version: u64,
        alerts: &[Alert],
    ) -> Result<(), StoreError> {
        let outbox = self.outbox.load(Ordering::Relaxed);
        write::delete_agent(&self.pool, tomb, expected_version, alerts, outbox).await
    }

    async fn get_tombstone(&self, agent_id: &str) -> Result<Option<Tombstone>, StoreError> {
        let row = sqlx::query(
            "SELECT agent_id, key_fingerprint, at_ns, reason FROM deleted_agents WHERE agent_id = $1",
        )
        .bind(agent_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        row.as_ref().map(decode::tombstone).transpose()
    }

    async fn put_withdrawal(&self, w: &Withdrawal, alerts: &[Alert]) -> Result<bool, StoreError> {
        let outbox = self.outbox.load(Ordering::Relaxed);
        write::put_withdrawal(&self.pool, w, alerts, outbox).await
    }

    async fn list_withdrawals(&self) -> Result<Vec<Withdrawal>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, kind, digest, reason, at_ns FROM withdrawals ORDER BY at_ns, id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        rows.iter().map(decode::withdrawal).collect()
    }

    async fn delete_withdrawal(&self, id: &str, alerts: &[Alert]) -> Result<bool, StoreError> {
        let outbox = self.outbox.load(Ordering::Relaxed);
        write::delete_withdrawal(&self.pool, id, alerts, outbox).await
    }

    async fn nonce_seen(&self, agent_id: &str, nonce: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT 1 FROM pulse_nonces WHERE agent_id = $1 AND nonce = $2")
            .bind(agent_id)
            .bind(nonce)
            .fetch_optional(&self.pool)
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
            "SELECT body FROM verdict_changes WHERE agent_id = $1 ORDER BY at_ns DESC, id DESC LIMIT $2",
        )
        .bind(agent_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(decode::changes(&bodies))
    }

    async fn add_pulse_counts(&self, counts: &[(String, PulseCount)]) -> Result<(), StoreError> {
        write::add_pulse_counts(&self.pool, counts).await
    }

    async fn pulse_history(
        &self,
        agent_id: &str,
        since: u64,
    ) -> Result<Vec<PulseCount>, StoreError> {
        let rows: Vec<(i64, i64, i64)> = sqlx::query_as(
            "SELECT minute, accepted, refused FROM pulse_counts WHERE agent_id = $1 AND minute >= $2 ORDER BY minute",
        )
        .bind(agent_id)
        .bind(to_i64(since))
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(decode::pulse_counts(&rows))
    }

    async fn prune_alerts(&self, before: UnixNanos) -> Result<u64, StoreError> {
        write::prune_alerts(&self.pool, before.get()).await
    }

    fn set_webhook_outbox(&self, on: bool) {
        self.outbox.store(on, Ordering::Relaxed);
    }

    async fn outbox_due(&self, now: UnixNanos, limit: u32) -> Result<Vec<OutboxItem>, StoreError> {
        let rows = sqlx::query(
            "SELECT a.id, a.at_ns, a.agent_id, a.kind, a.severity, a.detail, o.attempts, o.delivered \
             FROM webhook_outbox o JOIN alerts a ON a.id = o.alert_id \
             WHERE o.next_at_ns <= $1 ORDER BY o.next_at_ns, o.alert_id LIMIT $2",
        )
        .bind(to_i64(now.get()))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        rows.iter()
            .map(|r| {
                let delivered: String = r.try_get(7).map_err(corrupt)?;
                Ok(OutboxItem {
                    alert: decode::alert(r)?,
                    attempts: u32::try_from(r.try_get::<i64, _>(6).map_err(corrupt)?)
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
        let d = serde_json::to_string(delivered).map_err(corrupt)?;
        sqlx::query(
            "UPDATE webhook_outbox SET delivered = $1, attempts = $2, next_at_ns = $3 WHERE alert_id = $4",
        )
        .bind(d)
        .bind(i64::from(attempts))
        .bind(to_i64(next_at.get()))
        .bind(alert_id)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    async fn outbox_done(&self, alert_id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM webhook_outbox WHERE alert_id = $1")
            .bind(alert_id)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn outbox_len(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM webhook_outbox")
            .fetch_one(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(to_u64(n))
    }

    async fn fleet_leader(&self) -> bool {
        self.leader.check().await
    }

    async fn probe_write(&self, now: UnixNanos) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO health (id, at_ns) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET at_ns = excluded.at_ns",
        )
        .bind(to_i64(now.get()))
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(())
    }
}
