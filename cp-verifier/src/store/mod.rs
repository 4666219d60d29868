//! Fleet state behind a trait, so the embedded SQLite store and a shared PostgreSQL
//! store are interchangeable.
//!
//! One write operation, [`Store::write_agent`], carries a whole state change: the new
//! agent record (compare-and-swap on its version), the pulse nonce it consumes, and
//! the alerts it raises. Either all of it is durable or none of it is, and it is
//! durable before the caller acknowledges anything.

pub mod sqlite;

use async_trait::async_trait;
use evidence::{Digest32, Measurements, PublicKey, Tier};
use serde::{Deserialize, Serialize};

use crate::alert::Alert;

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
}

/// Measurements the operator announced ahead of a coordinated update.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expectations {
    pub agent_binary: Option<Digest32>,
    pub policy_digest: Option<Digest32>,
}

/// Everything the control plane keeps about one agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRecord {
    pub agent_id: String,
    pub partition: String,
    pub tier: Tier,
    pub key: PublicKey,
    pub registered_at_ns: u64,
    /// Last valid pulse (or registration).
    pub last_seen_ns: u64,
    pub sequence: u64,
    pub chain_head: Digest32,
    pub heartbeat_interval_ms: u64,
    /// Last-known-good measurements.
    pub lkg: Measurements,
    /// Last reported measurements.
    pub current: Measurements,
    pub expected: Expectations,
    pub blinded: bool,
    pub last_replay_ns: Option<u64>,
    pub last_desync_ns: Option<u64>,
    /// TDX evidence checked at the last registration (TDX tiers).
    #[serde(default)]
    pub attestation: Option<crate::attest::TdxAttestation>,
    /// Workloads whose image is red (keys from `service::image_key`), so each
    /// turn to red raises one `ImageRefused` alert.
    #[serde(default)]
    pub image_red: Vec<String>,
    /// The last re-registration failed because an upstream the verification needs
    /// was unavailable (not a judgement of the agent): the agent keeps pulsing on its
    /// current registration and is shown `RequoteFailed` until one succeeds.
    #[serde(default)]
    pub requote_failed: Option<RequoteFailure>,
    /// Bumped on every write; the compare-and-swap token.
    pub version: u64,
}

/// Why a known agent's fresh quote could not be verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequoteFailure {
    /// When, UTC nanoseconds (the first failure of a run of them).
    pub at_ns: u64,
    /// The upstream's kind and detail (`CollateralUnavailable: ...`).
    pub reason: String,
}

/// One atomic state change.
#[derive(Debug, Clone)]
pub struct AgentWrite {
    pub record: AgentRecord,
    /// `None`: insert a new agent (fails with `Conflict` if it exists).
    /// `Some(v)`: replace the record whose version is `v`.
    pub expected_version: Option<u64>,
    /// A pulse nonce to consume.
    pub nonce: Option<String>,
    /// Only the chain fields changed (`version`, `last_seen_ns`, `blinded`,
    /// `sequence`, `chain_head`); the store may skip rewriting the rest.
    pub chain_only: bool,
    pub alerts: Vec<Alert>,
}

#[async_trait]
pub trait Store: Send + Sync {
    async fn put_challenge(&self, nonce: &str, expires_at_ns: u64) -> Result<(), StoreError>;
    /// Consumes a challenge: true if it existed and had not expired at `now_ns`.
    async fn take_challenge(&self, nonce: &str, now_ns: u64) -> Result<bool, StoreError>;
    async fn get_agent(&self, agent_id: &str) -> Result<Option<AgentRecord>, StoreError>;
    async fn list_agents(&self) -> Result<Vec<AgentRecord>, StoreError>;
    async fn write_agent(&self, w: AgentWrite) -> Result<(), StoreError>;
    /// Alerts not tied to a state change (e.g. refused registrations).
    async fn insert_alerts(&self, alerts: &[Alert]) -> Result<(), StoreError>;
    /// Newest first.
    async fn list_alerts(
        &self,
        agent_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Alert>, StoreError>;
    /// Drops expired challenges and collateral, and nonces seen before
    /// `nonce_cutoff_ns`.
    async fn prune(&self, now_ns: u64, nonce_cutoff_ns: u64) -> Result<(), StoreError>;
    /// A cached value (DCAP collateral, an attested MRTD) under `key`, with its
    /// expiry in Unix seconds. Expired entries may be returned until pruned; callers
    /// check the expiry.
    async fn get_cached(&self, key: &str) -> Result<Option<(Vec<u8>, u64)>, StoreError>;
    /// Stores (or replaces) a cached value.
    async fn put_cached(&self, key: &str, json: &[u8], expires_at: u64) -> Result<(), StoreError>;
}

/// The store as the collateral source's shared cache. Failures are logged: the
/// collateral in hand is still good, and a missing entry only costs a fetch.
pub struct StoreCollateralCache(pub std::sync::Arc<dyn Store>);

#[async_trait]
impl crate::collateral::SharedCache for StoreCollateralCache {
    async fn load(&self, key: &str) -> Option<Vec<u8>> {
        match self.0.get_cached(&format!("collateral:{key}")).await {
            Ok(v) => v.map(|(json, _)| json),
            Err(e) => {
                tracing::warn!(%key, error = %e, "collateral cache read failed");
                None
            }
        }
    }
    async fn save(&self, key: &str, json: &[u8], expires_at: u64) {
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
