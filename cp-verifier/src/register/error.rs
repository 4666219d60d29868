//! The register stage's refusals, as types: what `/register` and the pulse
//! pre-checks decide, without knowing how HTTP spells it. `http::error` converts each
//! to the one wire error (`{"error":{"kind","detail"}}` with its status), in one place.

use std::time::Duration;

use evidence::EvidenceError;

use crate::attest::AttestError;
use crate::judge::baseline::InventoryError;
use crate::register::enroll::EnrollError;
use crate::store::StoreError;

/// A report or pulse timestamp outside the allowed skew of the control plane's
/// clock: its own error, because it is an operations problem on the node (time sync),
/// not a compromise signal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{what} timestamp is {:.3}s {} the control plane's clock (allowed skew {}s); check the node's time sync",
    skew.as_secs_f64(),
    if *ahead { "ahead of" } else { "behind" },
    allowed.as_secs_f64()
)]
pub struct ClockSkew {
    /// What carried the timestamp (`report`, `pulse`).
    pub what: &'static str,
    /// How far off it is.
    pub skew: Duration,
    /// Whether it is ahead of the control plane's clock (else behind).
    pub ahead: bool,
    /// The configured `max_clock_skew`.
    pub allowed: Duration,
}

/// Why an agent may not speak any more, or was never known.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Revocation {
    /// Deleted or disabled by an operator, or its enrollment no longer holds. The
    /// detail starts with the typed reason (`AgentDisabled`, `AgentDeleted`,
    /// `CertificateRevoked`, ...).
    #[error("Revoked: {0}")]
    Revoked(String),
    /// It runs (or booted) a build that was withdrawn fleet-wide.
    #[error("Withdrawn: {0}")]
    Withdrawn(String),
    /// No record, and no tombstone: it never registered (or its record is gone).
    #[error("UnknownAgent: {0}")]
    UnknownAgent(String),
    /// The withdrawals or tombstones could not be read: nothing was decided.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a registration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegisterError {
    /// The envelope does not decode, or the report's own signature does not verify.
    #[error(transparent)]
    Envelope(#[from] EvidenceError),
    /// A field is malformed or does not belong (`kind`: `InvalidField`, `BadBase64`).
    #[error("{kind}: {detail}")]
    BadField {
        /// The typed reason.
        kind: &'static str,
        /// Which field and why.
        detail: String,
    },
    /// The policy does not accept this evidence tier, or no verifier exists for it.
    #[error("TierNotAllowed: {0}")]
    TierNotAllowed(String),
    /// The report's nonce is not an open challenge (unknown, used or expired).
    #[error("BadChallenge: {0}")]
    BadChallenge(String),
    /// The key is not enrolled for this agent id (or its certificate is refused).
    #[error(transparent)]
    Enroll(#[from] EnrollError),
    /// The report's timestamp is outside the allowed skew.
    #[error(transparent)]
    ClockSkew(#[from] ClockSkew),
    /// The report's workload or eBPF lists do not match their digests.
    #[error("InconsistentInventory: {}", .0 .0)]
    Inventory(#[from] InventoryError),
    /// The declared heartbeat interval is zero or longer than the policy allows.
    #[error("IntervalTooLong: {0}")]
    IntervalTooLong(String),
    /// The platform evidence was refused (or could not be judged, for an agent the
    /// control plane does not know yet).
    #[error(transparent)]
    Attest(#[from] AttestError),
    /// A re-registration on a lower tier by an agent that was on TDX, which no
    /// operator expected.
    #[error("TierDowngrade: {0}")]
    TierDowngrade(String),
    /// The agent is disabled, or runs a withdrawn build.
    #[error(transparent)]
    Revocation(#[from] Revocation),
    /// A known agent's fresh evidence could not be verified because an upstream is
    /// down: not a judgement; the agent keeps its registration.
    #[error("UpstreamUnavailable: {upstream}: {detail}")]
    UpstreamUnavailable {
        /// The upstream's own kind (`CollateralUnavailable`, ...).
        upstream: &'static str,
        /// The upstream's error.
        detail: String,
    },
    /// A concurrent registration for the same agent won the write.
    #[error("Replay: a concurrent registration for this agent won; retry")]
    LostRace,
    /// Storage failed; nothing was recorded.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl RegisterError {
    /// A malformed field, named by `kind`.
    pub(crate) fn bad_field(kind: &'static str, detail: impl Into<String>) -> RegisterError {
        RegisterError::BadField {
            kind,
            detail: detail.into(),
        }
    }
}
