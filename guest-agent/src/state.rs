//! The agent's state as its local API and the gate read it: the phase, the last
//! accepted pulse, the local verdict and what the gate accepts. Plain data, written
//! by the agent loop ([`crate::agent`]) and read by [`crate::api`].

use evidence::api::WorkloadBadge;
use evidence::verdict::Verdict;
use evidence::{Digest32, Measurements, Tier};
use serde::Serialize;

use crate::config::GateBadge;

/// Where the agent is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Constructed; the agent loop has not tried to register yet.
    Starting,
    /// No identity key: attestation is off. Nothing signed is sent.
    Disabled,
    /// Sending a registration (first, after losing the control plane, or a re-quote
    /// while not pulsing).
    Registering,
    /// Registered; pulses are being accepted.
    Pulsing,
    /// The control plane cannot be reached; retrying with backoff.
    Unreachable,
    /// The control plane refused us; retrying with backoff.
    Refused,
}

/// The last pulse the control plane accepted.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PulseInfo {
    /// The pulse's sequence number, as the control plane's response reports it.
    pub sequence: u64,
    /// When the pulse was sent, this node's clock (Unix ns).
    pub issued_at_ns: u64,
    /// Digest of the signed pulse envelope; the next pulse chains to it.
    pub digest: Digest32,
}

/// What the local API shows.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AgentState {
    /// This agent's id, from the config.
    pub agent_id: String,
    /// The partition the agent registers in, from the config.
    pub partition: String,
    /// Where the agent is in its life.
    pub phase: Phase,
    /// The attestation tier of the quote source.
    pub tier: Tier,
    /// Fingerprint of the identity key's public half; `None` without a key.
    pub key_fingerprint: Option<String>,
    /// When the last registration was accepted, this node's clock (Unix ns).
    pub registered_at_ns: Option<u64>,
    /// The last accepted pulse; `None` until one is.
    pub last_pulse: Option<PulseInfo>,
    /// The control plane's last verdict; `None` until it has given one, and again
    /// after it refused us.
    pub verdict: Option<Verdict>,
    /// When the control plane last confirmed `verdict` (an accepted registration or
    /// pulse), by this node's clock. The gate expires `gate.expires_after_ms` later.
    pub verdict_at_ns: Option<u64>,
    /// What opens the start-up gate (`/api/v1/verify`).
    pub gate: GateConfig,
    /// The last re-quote (re-registration) could not be verified because the control
    /// plane or an upstream it needs was unavailable: the agent keeps pulsing on its
    /// current registration and retries. `None` once one succeeds.
    pub requote_failed: Option<RequoteFailed>,
    /// The last error talking to the control plane; cleared by an accepted
    /// registration or pulse.
    pub last_error: Option<String>,
    /// Pulses the control plane accepted since start.
    pub pulses_accepted: u64,
    /// Pulses refused or not recorded (clock desync, store unavailable, rejected)
    /// since start.
    pub pulses_refused: u64,
    /// The last full measurements (pulses may carry only the digests of lists that
    /// did not change; this keeps the lists).
    pub measurements: Option<Measurements>,
    /// The control plane's last judgement of each workload (register or heartbeat
    /// response); empty until it has judged any.
    pub workload_badges: Vec<WorkloadBadge>,
    /// The RTMR3 event log (TDX tiers only).
    pub event_log: Option<EventLogInfo>,
    /// How long the last measurement took, per collector (`workloads`: podman;
    /// `files`: the agent binary, policy files, platform facts and eBPF programs),
    /// in microseconds.
    #[serde(default)]
    #[schema(value_type = std::collections::BTreeMap<String, u64>)]
    pub collect_us: std::collections::BTreeMap<&'static str, u64>,
}

/// The start-up gate's rule.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct GateConfig {
    /// Verdict colours that open it.
    pub accepts: Vec<GateBadge>,
    /// How long a verdict stands without an accepted pulse: `missed_heartbeats x
    /// heartbeat_interval`.
    pub expires_after_ms: u64,
}

/// A re-quote the control plane could not verify (not a refusal).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RequoteFailed {
    /// First failure of the current run, this node's clock.
    pub since_ns: u64,
    /// Consecutive failed re-quotes in the current run.
    pub attempts: u32,
    /// The last failure's message.
    pub error: String,
}

/// What `/health` and `/api/v1/status` say about the RTMR3 event log.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EventLogInfo {
    /// Number of events in the log.
    pub events: usize,
    /// Whether extensions reach the RTMR3 register (false: events are logged unbound).
    pub bound: bool,
}
