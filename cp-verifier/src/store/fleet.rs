//! A whole fleet's durable state as plain rows, for moving it between stores
//! (`cp-verifier migrate`): what the [`super::Store`] trait reads (agents, alerts,
//! withdrawals) plus the rows it has no listing for (tombstones, pulse nonces, the
//! shared cache, the webhook outbox, the health probe).

use crate::model::{AgentRecord, Alert, PulseCount, Tombstone, VerdictChange, Withdrawal};

/// A consumed pulse nonce (the replay guard).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NonceRow {
    /// The agent that used it.
    pub agent_id: String,
    /// The nonce.
    pub nonce: String,
    /// When it was seen (ns).
    pub seen_at_ns: u64,
}

/// A shared cache entry (collateral, attested MRTDs, image verdicts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheRow {
    /// The key.
    pub key: String,
    /// The cached JSON.
    pub json: Vec<u8>,
    /// Expiry, Unix seconds.
    pub expires_at: i64,
}

/// A webhook outbox entry, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    /// The alert waiting for delivery.
    pub alert_id: String,
    /// The alert's time (ns).
    pub at_ns: u64,
    /// Failed delivery rounds so far.
    pub attempts: u32,
    /// When to try next (ns).
    pub next_at_ns: u64,
    /// JSON list of the webhooks already served.
    pub delivered: String,
}

/// Everything a fleet's store holds that outlives a restart. Registration
/// challenges are left out: they live for seconds, and an agent whose challenge is
/// lost asks for another.
#[derive(Debug, Clone, Default)]
pub struct FleetSnapshot {
    /// Agent records (with version, chain head, sequence, baselines).
    pub agents: Vec<AgentRecord>,
    /// Deleted agents.
    pub tombstones: Vec<Tombstone>,
    /// Withdrawn builds.
    pub withdrawals: Vec<Withdrawal>,
    /// Alerts.
    pub alerts: Vec<Alert>,
    /// Pending webhook deliveries.
    pub outbox: Vec<OutboxRow>,
    /// Cache entries still valid.
    pub cache: Vec<CacheRow>,
    /// Pulse nonces still kept.
    pub nonces: Vec<NonceRow>,
    /// Health probe rows `(id, at_ns)`.
    pub health: Vec<(i64, u64)>,
    /// Badge changes (the verdict timelines), oldest first.
    pub changes: Vec<VerdictChange>,
    /// Pulse counts per agent and minute.
    pub pulses: Vec<(String, PulseCount)>,
}

/// Row counts per kind of state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct FleetCounts {
    /// Agents.
    pub agents: u64,
    /// Tombstones of deleted agents.
    pub tombstones: u64,
    /// Withdrawn builds.
    pub withdrawals: u64,
    /// Alerts.
    pub alerts: u64,
    /// Webhook outbox entries.
    pub outbox: u64,
    /// Cache entries.
    pub cache: u64,
    /// Pulse nonces.
    pub nonces: u64,
    /// Health probe rows.
    pub health: u64,
    /// Badge changes.
    pub changes: u64,
    /// Pulse count rows.
    pub pulses: u64,
}

impl FleetCounts {
    /// Whether any fleet state is there (cache entries and the health probe, which a
    /// replica writes on its own, do not count).
    pub fn has_fleet_state(&self) -> bool {
        self.agents
            + self.tombstones
            + self.withdrawals
            + self.alerts
            + self.outbox
            + self.nonces
            + self.changes
            + self.pulses
            > 0
    }
}

impl FleetSnapshot {
    /// How many rows of each kind the snapshot holds.
    pub fn counts(&self) -> FleetCounts {
        let n = |l: usize| u64::try_from(l).unwrap_or(u64::MAX);
        FleetCounts {
            agents: n(self.agents.len()),
            tombstones: n(self.tombstones.len()),
            withdrawals: n(self.withdrawals.len()),
            alerts: n(self.alerts.len()),
            outbox: n(self.outbox.len()),
            cache: n(self.cache.len()),
            nonces: n(self.nonces.len()),
            health: n(self.health.len()),
            changes: n(self.changes.len()),
            pulses: n(self.pulses.len()),
        }
    }
}

/// Why loading a fleet into a store failed; nothing was written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// The target already holds fleet state.
    #[error("the target store is not empty ({0:?}); refusing to mix two fleets (to replace what it holds, say so explicitly)")]
    TargetNotEmpty(Box<FleetCounts>),
    /// What the transaction wrote does not add up to what was read; rolled back.
    #[error(
        "row counts differ after loading (expected {expected:?}, found {found:?}); rolled back"
    )]
    CountMismatch {
        /// The source's counts.
        expected: Box<FleetCounts>,
        /// The target's counts inside the transaction.
        found: Box<FleetCounts>,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] super::StoreError),
}
