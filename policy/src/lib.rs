//! Provenant's trust policy: facts about an agent in, a verdict with reasons out.
//!
//! The control plane gathers facts (which checks passed, what changed, how fresh the
//! last pulse is); this crate alone decides what they mean. Keeping the decision in
//! one pure function makes it testable in isolation and keeps the rules in one place:
//! the badge colours in DESIGN.md map to [`Status`] as green = `Pass`,
//! yellow = `Warn`, red = `Fail`, unknown = `Unknown`.
//!
//! Fail closed: a missing fact is never read as a good one. No evidence yet is
//! `Unknown`, and `Unknown` is never acceptable.
//!
//! Trust boundary: the inputs are facts the caller already established (a quote that
//! passed DCAP verification, a signature the `signatures` crate verified, a workload
//! list that hashed to its signed digest). This crate checks no signature, does no
//! I/O and reads no clock; it only decides: the agent's verdict ([`evaluate`]), TDX
//! evidence ([`tdx`]), the workload and eBPF inventories ([`inventory`]), image
//! signatures and workload badges ([`image`]), and which signer identities are
//! acceptable ([`identity`]). [`podman`] renders the image policy for podman.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod ebpf;
pub mod identity;
pub mod image;
pub mod inventory;
pub mod rules;
pub mod tdx;

use std::time::Duration;

pub use evidence::verdict::{Reason, ReasonCode, Status, Verdict};
use evidence::Tier;
use serde::{Deserialize, Serialize};

/// The operator's trust policy for agents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrustPolicy {
    /// Accept the software tier at all (shown yellow). When false, software-tier
    /// registrations are refused.
    pub allow_software_tier: bool,
    /// Intervals without a valid pulse before an agent is `Blinded`.
    pub missed_heartbeats: u32,
    /// What a verified TDX quote must also satisfy (`[policy.tdx]`).
    pub tdx: tdx::TdxPolicy,
    /// Programs every node must keep loaded, and the BPF LSM (`[policy.ebpf]`).
    pub ebpf: ebpf::EbpfPolicy,
    /// What a node whose kernel reports its clock unsynchronised (the pulse's
    /// `health.clock`) turns: yellow `ClockUnsynchronised` by default.
    pub clock_unsynchronised: ClockUnsynchronised,
    /// How often TDX agents send a fresh quote: must match the agents'
    /// `requote_interval`. A quote older than three of these is stale (`QuoteStale`).
    #[serde(with = "humantime_serde")]
    pub requote_interval: Duration,
    /// Bad pulse signatures (over a connection authenticated as the agent) within
    /// `bad_signatures_window` that mark the agent `Compromised`; 1 to 1000.
    pub bad_signatures_threshold: u32,
    /// The window `bad_signatures_threshold` counts in.
    #[serde(with = "humantime_serde")]
    pub bad_signatures_window: Duration,
}

impl Default for TrustPolicy {
    fn default() -> Self {
        TrustPolicy {
            allow_software_tier: true,
            missed_heartbeats: 3,
            tdx: tdx::TdxPolicy::default(),
            ebpf: ebpf::EbpfPolicy::default(),
            clock_unsynchronised: ClockUnsynchronised::default(),
            requote_interval: Duration::from_secs(3600),
            bad_signatures_threshold: 1,
            bad_signatures_window: Duration::from_secs(3600),
        }
    }
}

/// `[policy] clock_unsynchronised`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClockUnsynchronised {
    /// Yellow, with the kernel's estimated and maximum error.
    #[default]
    Yellow,
    /// Not judged (fleets whose time is disciplined outside the guest kernel, or a
    /// test host without an NTP daemon). The health is still shown.
    Ignore,
}

/// What the control plane knows about one agent at `now`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentFacts {
    /// The tier the agent registered at.
    pub tier: Tier,
    /// Expected pulse interval.
    pub interval: Duration,
    /// Time since the last valid pulse (or registration).
    pub since_last_pulse: Duration,
    /// The agent binary differs from the last-known-good: what changed.
    pub binary_changed: Option<String>,
    /// The policy files differ from the last-known-good: which.
    pub policy_changed: Option<String>,
    /// The platform facts differ from the last-known-good.
    pub platform_changed: Option<String>,
    /// Time since the last replay/out-of-chain pulse, if any.
    pub since_replay: Option<Duration>,
    /// Time since the last clock-desync refusal, if any.
    pub since_clock_desync: Option<Duration>,
    /// Why the agent was marked compromised (bad signatures over its authenticated
    /// channel), until an operator clears it.
    pub compromised: Option<String>,
}

/// Evaluates the facts. The status is the worst status among the reasons.
pub fn evaluate(policy: &TrustPolicy, f: &AgentFacts) -> Verdict {
    let mut reasons = Vec::new();
    let mut push = |code, status, detail: String| reasons.push(Reason::new(code, status, detail));
    let window = f.interval.saturating_mul(policy.missed_heartbeats.max(1));

    match f.tier {
        Tier::Software => push(
            ReasonCode::SoftwareTier,
            if policy.allow_software_tier {
                Status::Warn
            } else {
                Status::Fail
            },
            "software tier: signed by the node key, no hardware root of trust".into(),
        ),
        // A TDREPORT's fields are claims (its MAC key is platform-local), so the node key
        // is what really vouches: no stronger than the software tier.
        Tier::TdxReport => push(
            ReasonCode::TdReportOnly,
            if policy.allow_software_tier {
                Status::Warn
            } else {
                Status::Fail
            },
            "tdx-report tier: a TDREPORT, not a quote; signed by the node key".into(),
        ),
        // Hardware tiers are judged by their own checks before an agent gets here.
        Tier::Tdx | Tier::Tpm => {}
    }
    if f.since_last_pulse > window {
        push(
            ReasonCode::Blinded,
            Status::Fail,
            format!(
                "no valid pulse for {}s (limit {} x {}s)",
                f.since_last_pulse.as_secs(),
                policy.missed_heartbeats,
                f.interval.as_secs_f64()
            ),
        );
    } else if f.since_last_pulse > f.interval.saturating_mul(2) {
        // One interval of slack absorbs normal jitter; more than that is late.
        push(
            ReasonCode::PulseLate,
            Status::Warn,
            format!("last valid pulse {}s ago", f.since_last_pulse.as_secs()),
        );
    }
    if let Some(d) = &f.binary_changed {
        push(ReasonCode::BinaryChanged, Status::Fail, d.clone());
    }
    if let Some(d) = &f.policy_changed {
        push(ReasonCode::PolicyChanged, Status::Fail, d.clone());
    }
    if let Some(d) = &f.platform_changed {
        push(ReasonCode::PlatformChanged, Status::Fail, d.clone());
    }
    if f.since_replay.is_some_and(|d| d <= window) {
        push(
            ReasonCode::ReplayDetected,
            Status::Fail,
            "a replayed or out-of-chain pulse was presented for this agent".into(),
        );
    }
    if let Some(d) = &f.compromised {
        push(ReasonCode::Compromised, Status::Fail, d.clone());
    }
    if f.since_clock_desync.is_some_and(|d| d <= window) {
        push(
            ReasonCode::ClockDesync,
            Status::Warn,
            "the agent's clock is outside the allowed skew; its pulses are refused".into(),
        );
    }
    Verdict::from_reasons(reasons)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> AgentFacts {
        AgentFacts {
            tier: Tier::Tdx,
            interval: Duration::from_secs(30),
            since_last_pulse: Duration::from_secs(5),
            binary_changed: None,
            policy_changed: None,
            platform_changed: None,
            since_replay: None,
            since_clock_desync: None,
            compromised: None,
        }
    }

    #[test]
    fn a_compromised_agent_is_red_whatever_else_holds() {
        let mut f = facts();
        f.compromised = Some("2 bad signatures in 1h".into());
        let v = evaluate(&TrustPolicy::default(), &f);
        assert_eq!(v.status, Status::Fail);
        assert_eq!(v.reasons[0].code, ReasonCode::Compromised);
        assert_eq!(v.reasons[0].detail, "2 bad signatures in 1h");
    }

    #[test]
    fn clean_hardware_agent_is_green() {
        let v = evaluate(&TrustPolicy::default(), &facts());
        assert_eq!(v.status, Status::Pass);
        assert!(v.reasons.is_empty());
    }

    #[test]
    fn software_tier_is_yellow_or_refused() {
        let mut f = facts();
        f.tier = Tier::Software;
        let v = evaluate(&TrustPolicy::default(), &f);
        assert_eq!(v.status, Status::Warn);
        assert_eq!(v.reasons[0].code, ReasonCode::SoftwareTier);
        let strict = TrustPolicy {
            allow_software_tier: false,
            ..TrustPolicy::default()
        };
        assert_eq!(evaluate(&strict, &f).status, Status::Fail);
        // tdx-report is judged like the software tier.
        f.tier = Tier::TdxReport;
        let v = evaluate(&TrustPolicy::default(), &f);
        assert_eq!(v.status, Status::Warn);
        assert_eq!(v.reasons[0].code, ReasonCode::TdReportOnly);
        assert_eq!(evaluate(&strict, &f).status, Status::Fail);
    }

    #[test]
    fn liveness_thresholds() {
        let p = TrustPolicy::default();
        let mut f = facts();
        f.since_last_pulse = Duration::from_secs(60);
        assert_eq!(evaluate(&p, &f).status, Status::Pass);
        f.since_last_pulse = Duration::from_secs(61);
        assert_eq!(evaluate(&p, &f).reasons[0].code, ReasonCode::PulseLate);
        f.since_last_pulse = Duration::from_secs(91);
        let v = evaluate(&p, &f);
        assert_eq!(v.status, Status::Fail);
        assert_eq!(v.reasons[0].code, ReasonCode::Blinded);
    }

    #[test]
    fn worst_reason_wins() {
        let mut f = facts();
        f.tier = Tier::Software;
        f.binary_changed = Some("agent binary aa.. -> bb..".into());
        f.since_clock_desync = Some(Duration::from_secs(1));
        let v = evaluate(&TrustPolicy::default(), &f);
        assert_eq!(v.status, Status::Fail);
        assert_eq!(v.reasons.len(), 3);
        assert!(!v.status.acceptable());
        f.binary_changed = None;
        assert!(evaluate(&TrustPolicy::default(), &f).status.acceptable());
        // Old replays age out of the verdict.
        f.since_replay = Some(Duration::from_secs(3600));
        assert_eq!(evaluate(&TrustPolicy::default(), &f).status, Status::Warn);
    }

    #[test]
    fn unknown_is_never_acceptable() {
        assert!(!Status::Unknown.acceptable());
        assert!(!Verdict::unknown("no evidence").status.acceptable());
    }
}
