//! The heartbeat stage's refusals, as types; `http::error` converts them to the wire
//! error in one place.

use evidence::EvidenceError;

use crate::judge::baseline::InventoryError;
use crate::register::error::{ClockSkew, Revocation};
use crate::store::StoreError;

/// Which replay rule refused a pulse. All are answered `Replay`; only [`Fork`]
/// marks the agent (a second pulse its key signed for a used sequence), the others
/// are retries or old captures that anyone could re-post.
///
/// [`Fork`]: ReplayKind::Fork
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplayKind {
    /// The accepted pulse again (a retry): nothing recorded.
    Duplicate,
    /// A used sequence, issued outside the skew window: an old capture, counted.
    OldCapture,
    /// A used sequence inside the skew window that was never accepted: a forked
    /// chain, red.
    Fork,
    /// The pulse does not continue the agent's chain (sequence or previous head).
    ChainBroken,
    /// The pulse nonce was already consumed.
    NonceReused,
    /// The agent's chain moved concurrently and this pulse lost.
    LostRace,
}

/// Why a pulse was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PulseError {
    /// The envelope does not decode, or its signature does not verify under the
    /// agent's key.
    #[error(transparent)]
    Envelope(#[from] EvidenceError),
    /// The agent is unknown, deleted, disabled, unenrolled or runs a withdrawn build.
    #[error(transparent)]
    Revocation(#[from] Revocation),
    /// The pulse names another partition than the agent registered in.
    #[error("InvalidField: {0}")]
    WrongPartition(String),
    /// A replay rule refused it.
    #[error("Replay: {detail}")]
    Replay {
        /// Which rule.
        kind: ReplayKind,
        /// What was seen.
        detail: String,
    },
    /// The pulse's timestamp is outside the allowed skew.
    #[error(transparent)]
    ClockSkew(#[from] ClockSkew),
    /// The pulse's workload or eBPF lists do not match their digests.
    #[error("InconsistentInventory: {}", .0 .0)]
    Inventory(#[from] InventoryError),
    /// Storage failed; nothing was recorded.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl PulseError {
    pub(crate) fn replay(kind: ReplayKind, detail: impl Into<String>) -> PulseError {
        PulseError::Replay {
            kind,
            detail: detail.into(),
        }
    }
}
