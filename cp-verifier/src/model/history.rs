//! What the control plane remembers of an agent's past: each change of a badge
//! (the agent's or a workload's) with its cause, and pulses accepted and refused
//! per minute. Plain data, like the rest of [`crate::model`].

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The subject of an agent's own badge in a [`VerdictChange`] (a workload's is its
/// name, which is never empty).
pub const AGENT_SUBJECT: &str = "";

/// Most workloads whose last badge a record remembers; a report carries fewer.
pub const MAX_SEEN_WORKLOADS: usize = 256;

/// The badges last recorded for an agent, so the next write can tell whether one
/// changed. Kept in the agent record: the per-agent compare-and-swap makes each
/// change recorded once, whichever replica wrote it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenBadges {
    /// The agent's badge (`green`, `yellow`, `unknown`, `red`).
    pub agent: String,
    /// The agent's reason codes (warn, unknown and fail) at that badge.
    #[serde(default)]
    pub reasons: Vec<String>,
    /// Each workload's badge, by workload name.
    #[serde(default)]
    pub workloads: BTreeMap<String, String>,
}

/// One change of one badge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VerdictChange {
    /// The agent.
    pub agent_id: String,
    /// Empty for the agent's own badge, else the workload's name.
    pub subject: String,
    /// When the change was recorded, UTC ns.
    pub at_ns: u64,
    /// The new badge (`green`, `yellow`, `unknown`, `red`).
    pub badge: String,
    /// The badge before; `None` for the first judgement recorded.
    pub previous: Option<String>,
    /// What caused it, for people: the alerts raised by the same write, the reasons
    /// that appeared or went, or the passing of time.
    pub cause: String,
    /// The ids of the alerts raised by the write that changed it.
    #[serde(default)]
    pub alerts: Vec<String>,
    /// Reason codes that stand after the change.
    #[serde(default)]
    pub reasons: Vec<String>,
    /// Reason codes that appeared with the change.
    #[serde(default)]
    pub appeared: Vec<String>,
    /// Reason codes that went with the change.
    #[serde(default)]
    pub gone: Vec<String>,
}

/// Pulses of one agent in one minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PulseCount {
    /// Minutes since the Unix epoch (UTC).
    pub minute: u64,
    /// Pulses accepted.
    pub accepted: u64,
    /// Pulses refused (any refusal after the pulse named this known agent).
    pub refused: u64,
}
