//! Fleet state behind a trait, so the embedded SQLite store and a shared PostgreSQL
//! store are interchangeable.
//!
//! One write operation, [`Store::write_agent`], carries a whole state change: the new
//! agent record (compare-and-swap on its version), the pulse nonce it consumes, and
//! the alerts it raises. Either all of it is durable or none of it is, and it is
//! durable before the caller acknowledges anything.

pub mod fleet;
pub mod migrate;
pub mod postgres;
mod rows;
pub mod schema;
pub mod sqlite;

use async_trait::async_trait;
use provenant_base::clock::{UnixNanos, UnixSecs};

use crate::model::{Ack, Alert, PulseCount, VerdictChange};
use crate::model::{AgentRecord, Tombstone, Withdrawal};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The record changed since it was read (compare-and-swap failed).
    #[error("agent record changed concurrently")]
    Conflict,
    /// The pulse nonce was already consumed.
    #[error("nonce already seen")]
    DuplicateNonce,
    /// The database cannot be used right now.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Stored data could not be decoded.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// The database's schema is one this cp-verifier must not run on (written by a
    /// newer release, or its applied migrations differ from ours); nothing was
    /// changed (see [`schema`]).
    #[error("store {at}: {why}")]
    Schema {
        /// Which database (path or URL without its password).
        at: String,
        /// What is wrong with its schema.
        why: schema::SchemaError,
    },
}

/// Which alerts [`Store::query_alerts`] returns, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertFilter {
    /// Only this agent's alerts.
    pub agent: Option<String>,
    /// Only these severities (1-4); empty: all.
    pub severities: Vec<u8>,
    /// Only open (`Some(true)`: not acknowledged, severity 1-3) or only acknowledged
    /// (`Some(false)`) alerts; `None`: both.
    pub open: Option<bool>,
    /// Only alerts older than this alert id (the previous page's last id; ids sort
    /// by time).
    pub before: Option<String>,
    /// At most this many.
    pub limit: u32,
}

/// One atomic state change.
#[derive(Debug, Clone)]
pub struct AgentWrite {
    /// The new record.
    pub record: AgentRecord,
    /// `None`: insert a new agent (fails with `Conflict` if it exists).
    /// `Some(v)`: replace the record whose version is `v`.
    pub expected_version: Option<u64>,
    /// A pulse nonce to consume.
    pub nonce: Option<String>,
    /// Only the chain fields changed (`version`, `last_seen_ns`, `blinded`,
    /// `sequence`, `chain_head`); the store may skip rewriting the rest.
    pub chain_only: bool,
    /// Alerts raised by the change, written in the same transaction.
    pub alerts: Vec<Alert>,
    /// Badge changes the write makes, recorded in the same transaction (filled in by
    /// the control plane's `persist`).
    pub changes: Vec<VerdictChange>,
}

/// The control plane's durable state: agents, challenges, pulse nonces, alerts,
/// tombstones, withdrawals, the shared cache and the webhook outbox. Times in
/// parameters are typed ([`UnixNanos`], [`UnixSecs`]); in records, the field name says
/// the unit.
#[async_trait]
pub trait Store: Send + Sync {
    /// Stores a registration challenge valid until `expires_at`.
    async fn put_challenge(&self, nonce: &str, expires_at: UnixNanos) -> Result<(), StoreError>;
    /// Consumes a challenge: true if it existed and had not expired at `now`.
    async fn take_challenge(&self, nonce: &str, now: UnixNanos) -> Result<bool, StoreError>;
    /// The record of `agent_id`, if any.
    async fn get_agent(&self, agent_id: &str) -> Result<Option<AgentRecord>, StoreError>;
    /// Every agent record, by agent id; fails if any record cannot be decoded
    /// (see [`Store::scan_agents`]).
    async fn list_agents(&self) -> Result<Vec<AgentRecord>, StoreError>;
    /// Applies one [`AgentWrite`] atomically: `Conflict` on a version mismatch,
    /// `DuplicateNonce` if its nonce was consumed; nothing is written then.
    async fn write_agent(&self, w: AgentWrite) -> Result<(), StoreError>;
    /// Alerts not tied to a state change (e.g. refused registrations).
    async fn insert_alerts(&self, alerts: &[Alert]) -> Result<(), StoreError>;
    /// Newest first.
    async fn list_alerts(
        &self,
        agent_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Alert>, StoreError> {
        self.query_alerts(&AlertFilter {
            agent: agent_id.map(str::to_owned),
            limit,
            ..AlertFilter::default()
        })
        .await
    }
    /// The alerts `f` selects, newest first.
    async fn query_alerts(&self, f: &AlertFilter) -> Result<Vec<Alert>, StoreError>;
    /// Open alerts (not acknowledged, severity 1-3) by severity: `[sev 1, 2, 3]`.
    async fn open_alert_counts(&self) -> Result<[u64; 3], StoreError>;
    /// One alert by id.
    async fn get_alert(&self, id: &str) -> Result<Option<Alert>, StoreError>;
    /// Marks alert `id` acknowledged and records the `audit` alerts, atomically;
    /// false (nothing written) if there is no such alert or it is already
    /// acknowledged.
    async fn ack_alert(&self, id: &str, ack: &Ack, audit: &[Alert]) -> Result<bool, StoreError>;
    /// The agent's badge changes, newest first, at most `limit`.
    async fn verdict_history(
        &self,
        agent_id: &str,
        limit: u32,
    ) -> Result<Vec<VerdictChange>, StoreError>;
    /// Adds pulse counts (`(agent_id, count)`) to the stored ones of the same agent
    /// and minute: additive, so every replica adds its own.
    async fn add_pulse_counts(&self, counts: &[(String, PulseCount)]) -> Result<(), StoreError>;
    /// The agent's pulse counts from minute `since` on, oldest first.
    async fn pulse_history(
        &self,
        agent_id: &str,
        since: u64,
    ) -> Result<Vec<PulseCount>, StoreError>;
    /// Drops expired challenges and collateral, and nonces seen before
    /// `nonce_cutoff`.
    async fn prune(&self, now: UnixNanos, nonce_cutoff: UnixNanos) -> Result<(), StoreError>;
    /// A cached value (DCAP collateral, an attested MRTD) under `key`, with its
    /// expiry. Expired entries may be returned until pruned; callers check the expiry.
    async fn get_cached(&self, key: &str) -> Result<Option<(Vec<u8>, UnixSecs)>, StoreError>;
    /// Stores (or replaces) a cached value.
    async fn put_cached(
        &self,
        key: &str,
        json: &[u8],
        expires_at: UnixSecs,
    ) -> Result<(), StoreError>;
    /// Removes an agent whose record is at `expected_version` (else `Conflict`),
    /// records its tombstone and consumes its nonces, with the alerts, atomically.
    async fn delete_agent(
        &self,
        tomb: &Tombstone,
        expected_version: u64,
        alerts: &[Alert],
    ) -> Result<(), StoreError>;
    /// The tombstone of a deleted agent, if any.
    async fn get_tombstone(&self, agent_id: &str) -> Result<Option<Tombstone>, StoreError>;
    /// Records a withdrawal with its alerts; false (nothing written) if the same
    /// build is already withdrawn.
    async fn put_withdrawal(&self, w: &Withdrawal, alerts: &[Alert]) -> Result<bool, StoreError>;
    /// Oldest first.
    async fn list_withdrawals(&self) -> Result<Vec<Withdrawal>, StoreError>;
    /// Removes a withdrawal with its alerts; false if there was none with this id.
    async fn delete_withdrawal(&self, id: &str, alerts: &[Alert]) -> Result<bool, StoreError>;
    /// Whether `agent_id` used the pulse nonce (within the kept nonce window).
    async fn nonce_seen(&self, agent_id: &str, nonce: &str) -> Result<bool, StoreError>;
    /// Every agent row, each decoded on its own: one undecodable row does not hide
    /// the others. `(agent_id, record or why it cannot be decoded)`.
    async fn scan_agents(
        &self,
    ) -> Result<Vec<(String, Result<AgentRecord, StoreError>)>, StoreError>;
    /// Deletes alerts (and their webhook outbox entries) raised before `before`, and
    /// the badge changes and pulse counts older than it; returns how many alerts went.
    async fn prune_alerts(&self, before: UnixNanos) -> Result<u64, StoreError>;
    /// Whether alerts of severity 1-2 are also written to the webhook outbox, in the
    /// same transaction as the alert (only when webhooks are configured).
    fn set_webhook_outbox(&self, on: bool);
    /// Outbox entries due for delivery at `now`, oldest due first.
    async fn outbox_due(&self, now: UnixNanos, limit: u32) -> Result<Vec<OutboxItem>, StoreError>;
    /// Records a failed delivery round: the webhooks already served and when to try
    /// again.
    async fn outbox_retry(
        &self,
        alert_id: &str,
        delivered: &[String],
        attempts: u32,
        next_at: UnixNanos,
    ) -> Result<(), StoreError>;
    /// Removes a delivered entry.
    async fn outbox_done(&self, alert_id: &str) -> Result<(), StoreError>;
    /// Entries waiting in the outbox.
    async fn outbox_len(&self) -> Result<u64, StoreError>;
    /// A real write, committed (fsynced) like any other: is the store writable?
    async fn probe_write(&self, now: UnixNanos) -> Result<(), StoreError>;
    /// Whether this replica runs the once-per-fleet jobs this round (liveness sweep,
    /// pruning, webhook outbox delivery); asked before every round. A store one
    /// replica owns (SQLite) always says yes; the shared PostgreSQL store elects one
    /// leader with an advisory lock (see `postgres::leader`).
    async fn fleet_leader(&self) -> bool {
        true
    }
}

/// A severity 1-2 alert waiting for webhook delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxItem {
    /// The alert to deliver.
    pub alert: Alert,
    /// Failed delivery rounds so far.
    pub attempts: u32,
    /// Keys (`alert::webhook_key`) of the webhooks that already acknowledged it.
    pub delivered: Vec<String>,
}

/// The store as the collateral source's shared cache. Failures are logged: the
/// collateral in hand is still good, and a missing entry only costs a fetch.
pub struct StoreCollateralCache(pub std::sync::Arc<dyn Store>);

#[async_trait]
impl crate::attest::collateral::SharedCache for StoreCollateralCache {
    async fn load(&self, key: &str) -> Option<Vec<u8>> {
        match self.0.get_cached(&format!("collateral:{key}")).await {
            Ok(v) => v.map(|(json, _)| json),
            Err(e) => {
                tracing::warn!(%key, error = %e, "collateral cache read failed");
                None
            }
        }
    }
    async fn save(&self, key: &str, json: &[u8], expires_at: UnixSecs) {
        if let Err(e) = self
            .0
            .put_cached(&format!("collateral:{key}"), json, expires_at)
            .await
        {
            tracing::warn!(%key, error = %e, "collateral cache write failed");
        }
    }
}

/// Nanoseconds as SQL BIGINT. Timestamps fit until the year 2262.
pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
pub(crate) fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}
