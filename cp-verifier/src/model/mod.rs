//! The records every stage shares: what the control plane keeps about an agent
//! ([`AgentRecord`]), the TDX evidence it accepted ([`TdxAttestation`]) and the build
//! provenance behind it ([`MrtdProvenance`]), operator marks and withdrawals, and
//! the alerts raised about it ([`Alert`]).
//!
//! These are plain data (serde, no behaviour beyond small accessors). They live
//! apart from the store that persists them and the verifiers that produce them, so
//! that `store`, `attest` and `register` each depend on this module and not on one
//! another. The serde field names are the stored format: renaming one needs a
//! reader for the old shape.

pub mod explain;
pub mod history;

pub use explain::{Candidate, ExplainedEntry, Explanation};
pub use history::{PulseCount, SeenBadges, VerdictChange};

use evidence::eventlog::EventLogState;
use evidence::report::HexBytes;
use evidence::tdx::Mr;
use evidence::{Digest32, Measurements, PublicKey, Tier};
use policy::Reason;
use provenant_base::clock::UnixNanos;
use serde::{Deserialize, Serialize};

/// Measurements the operator announced ahead of a coordinated update.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Expectations {
    /// Announced agent binary SHA-256: when reported, it becomes last-known-good
    /// without a `BinaryChanged` alert.
    pub agent_binary: Option<Digest32>,
    /// Announced policy digest, likewise for `PolicyChanged`.
    pub policy_digest: Option<Digest32>,
}

/// Everything the control plane keeps about one agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentRecord {
    /// The agent's id (unique key of the record).
    pub agent_id: String,
    /// The partition the agent registered in; its pulses must name the same one.
    pub partition: String,
    /// The tier of the last registration.
    pub tier: Tier,
    /// The key that signs the agent's pulses (`heartbeat_key` of the report).
    pub key: PublicKey,
    /// When the agent last registered, UTC nanoseconds since the Unix epoch.
    pub registered_at_ns: u64,
    /// Last valid pulse (or registration).
    pub last_seen_ns: u64,
    /// Sequence number of the last accepted pulse; 0 right after a registration.
    pub sequence: u64,
    /// Digest of the last accepted pulse envelope (or registration report): the next
    /// pulse's `previous` must equal it.
    pub chain_head: Digest32,
    /// Pulse interval the agent announced, in milliseconds.
    pub heartbeat_interval_ms: u64,
    /// Last-known-good measurements.
    pub lkg: Measurements,
    /// Last reported measurements.
    pub current: Measurements,
    /// Updates the operator announced (see [`Expectations`]).
    pub expected: Expectations,
    /// Set by the liveness sweep after `missed_heartbeats` intervals without a valid
    /// pulse; cleared by the next valid pulse.
    pub blinded: bool,
    /// Last `Replay` alert, UTC ns.
    pub last_replay_ns: Option<u64>,
    /// Last `ClockDesync` alert, UTC ns.
    pub last_desync_ns: Option<u64>,
    /// TDX evidence checked at the last registration (TDX tiers).
    #[serde(default)]
    pub attestation: Option<TdxAttestation>,
    /// Workloads whose image is red (keys from `judge::verdict::image_key`), so each
    /// turn to red raises one `ImageRefused` alert.
    #[serde(default)]
    pub image_red: Vec<String>,
    /// Set while an operator has disabled the agent: its pulses and registrations
    /// are refused `Revoked`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<Disabled>,
    /// The certificate chain (PEM, leaf first) presented at registration, so the
    /// enrollment can be re-checked (expiry, CRL) on every pulse.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub enrollment_chain: Vec<String>,
    /// The agent once registered on the `tdx` tier: a later registration on a lower
    /// tier is refused unless an operator allowed it (`allowed_tier`).
    #[serde(default)]
    pub ever_tdx: bool,
    /// A one-shot operator allowance (`POST /api/v1/agents/{id}/expect` with
    /// `{"tier": ..}`) for the next registration at this tier.
    #[serde(default)]
    pub allowed_tier: Option<Tier>,
    /// Old pulses (issued outside the skew window) re-posted and refused: counted,
    /// not held against the agent.
    #[serde(default)]
    pub stale_replays_refused: u64,
    /// The last re-registration failed because an upstream the verification needs
    /// was unavailable (not a judgement of the agent): the agent keeps pulsing on its
    /// current registration and is shown `RequoteFailed` until one succeeds.
    #[serde(default)]
    pub requote_failed: Option<RequoteFailure>,
    /// The node's health from the last pulse that carried it, and when it arrived
    /// (UTC ns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<evidence::Health>,
    /// When `health` arrived (UTC ns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_at_ns: Option<u64>,
    /// When (UTC ns) the bad pulse signatures counted toward `Compromised` arrived:
    /// pulses naming this agent, over a connection whose mTLS client certificate
    /// names it, that did not verify under its key. Only those inside
    /// `[policy] bad_signatures_window` are kept, at most
    /// `bad_signatures_threshold` of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bad_signatures_ns: Vec<u64>,
    /// Set when the counted bad signatures reached the threshold: red `Compromised`
    /// until an operator clears it (a re-registration does not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compromised: Option<Compromise>,
    /// The key the last re-registration replaced: a pulse it signed is late (sent
    /// before the agent registered again), not forged, and is not counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_key: Option<PublicKey>,
    /// The badges recorded by the last write that changed one (see
    /// [`history::VerdictChange`]); `None` before the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seen: Option<SeenBadges>,
    /// Bumped on every write; the compare-and-swap token.
    pub version: u64,
}

/// Why and when an agent was marked compromised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compromise {
    /// When the threshold was reached, UTC ns.
    pub at_ns: u64,
    /// What was counted.
    pub detail: String,
}

/// An operator's disable mark.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disabled {
    /// When the agent was disabled, UTC ns.
    pub at_ns: u64,
    /// The operator's reason.
    pub reason: String,
}

/// What is left of an agent an operator deleted: its later pulses are refused
/// `Revoked` (not `UnknownAgent`), naming the deletion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Tombstone {
    /// The deleted agent's id.
    pub agent_id: String,
    /// Fingerprint of the key it had (`sha256:<hex>` over the SPKI DER).
    pub key_fingerprint: String,
    /// When it was deleted, UTC ns.
    pub at_ns: u64,
    /// The operator's reason.
    pub reason: String,
}

/// Which measurement a withdrawal names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BuildKind {
    /// The TD's MRTD (48 bytes).
    Mrtd,
    /// The agent binary's SHA-256.
    AgentBinary,
}

impl BuildKind {
    /// The stored and API name (`mrtd`, `agent_binary`).
    pub fn as_str(self) -> &'static str {
        match self {
            BuildKind::Mrtd => "mrtd",
            BuildKind::AgentBinary => "agent_binary",
        }
    }
    /// Inverse of [`BuildKind::as_str`].
    pub fn parse(s: &str) -> Option<BuildKind> {
        match s {
            "mrtd" => Some(BuildKind::Mrtd),
            "agent_binary" => Some(BuildKind::AgentBinary),
            _ => None,
        }
    }
}

/// A build withdrawn fleet-wide: it may not register, and agents running it are red
/// and their pulses refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Withdrawal {
    /// `wd-<16 hex>` (API) or `config-<kind>-<first 16 hex of digest>` (config).
    pub id: String,
    /// Which measurement `digest` is.
    pub kind: BuildKind,
    /// Lowercase hex.
    pub digest: String,
    /// The operator's reason.
    pub reason: String,
    /// When it was withdrawn, UTC ns (0 for `config` withdrawals).
    pub at_ns: u64,
    /// `api` (stored) or `config` (`[[withdrawn]]`).
    pub source: String,
}

/// Why a known agent's fresh quote could not be verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequoteFailure {
    /// When, UTC nanoseconds (the first failure of a run of them).
    pub at_ns: u64,
    /// The upstream's kind and detail (`CollateralUnavailable: ...`).
    pub reason: String,
}

/// What the control plane keeps of an agent's TDX evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TdxAttestation {
    /// True for a DCAP-verified quote; false for TDREPORT claims.
    pub verified: bool,
    /// The TCB status DCAP gave (none for a TDREPORT).
    pub tcb_status: Option<String>,
    /// Advisory ids DCAP reported with the TCB status (`INTEL-SA-...`).
    pub advisory_ids: Vec<String>,
    /// FMSPC of the platform (from the PCK certificate), lowercase hex.
    pub fmspc: Option<String>,
    /// The TD's MRTD.
    pub mrtd: Mr,
    /// RTMR0–3 from the quote or report.
    pub rtmrs: [Mr; 4],
    /// TDATTRIBUTES (bit 0 DEBUG).
    pub td_attributes: HexBytes<8>,
    /// Events in the RTMR3 log, and how many of them are bound to the register.
    pub event_log_events: usize,
    /// How many of those events are bound (extended RTMR3).
    pub event_log_bound: usize,
    /// When the evidence was checked, UTC nanoseconds.
    pub verified_at_ns: u64,
    /// The build provenance that attested MRTD, where `[provenance]` is configured.
    #[serde(default)]
    pub provenance: Option<MrtdProvenance>,
    /// Warnings the policy raised (a failure is a refusal, not a stored reason). They
    /// join the agent's verdict until the next registration. Re-attestation
    /// ([`crate::attest::TdxVerifier::reattest`]) replaces the TCB status's reason, and may add a
    /// failure (`TcbStatus`, `ReattestRefused`).
    pub reasons: Vec<Reason>,
    /// What ages, and what re-attestation needs (absent in older records).
    #[serde(default)]
    pub freshness: TdxFreshness,
    /// The replayed RTMR3 log (count, value, last bound value of each kind): the
    /// prefix the agent's next registration may continue instead of resending it.
    #[serde(default)]
    pub event_log_state: Option<EventLogState>,
}

/// The dates after which the evidence no longer holds, and the quote kept to verify
/// it again against the current collateral.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TdxFreshness {
    /// The earliest `nextUpdate` (Unix seconds) of the collateral (TCB info, QE
    /// identity, PCK and root CA CRLs) that last established the TCB status.
    #[serde(default)]
    pub collateral_next_update: Option<u64>,
    /// The earliest `notAfter` (Unix seconds) in the quote's PCK chain.
    #[serde(default)]
    pub pck_not_after: Option<u64>,
    /// The raw quote, base64 (verified quotes only), for re-attestation. The API
    /// leaves it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quote: Option<String>,
    /// When the quote was last verified again against current collateral (UTC ns).
    #[serde(default)]
    pub reattested_at_ns: Option<u64>,
    /// When re-attestation was last tried (UTC ns), decided or not.
    #[serde(default)]
    pub reattest_tried_ns: Option<u64>,
    /// Why the last try could not decide (collateral or provenance unavailable).
    #[serde(default)]
    pub reattest_error: Option<String>,
}

impl TdxAttestation {
    /// The dates [`policy::tdx::age_reasons`] judges.
    pub fn age(&self) -> policy::tdx::TdxAge {
        policy::tdx::TdxAge {
            quoted_at: self.verified_at_ns / 1_000_000_000,
            collateral_next_update: self.freshness.collateral_next_update,
            pck_not_after: self.freshness.pck_not_after,
            provenance_until: self.provenance.as_ref().map(|p| p.cached_until),
        }
    }
}

/// What the control plane keeps of an attested MRTD.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MrtdProvenance {
    /// The GitHub repository (`owner/name`) whose attestation was verified.
    pub repository: String,
    /// The signing certificate's SAN (the workflow identity).
    pub san: String,
    /// The source ref the build ran on (Fulcio `source_repository_ref`), if any.
    pub source_ref: Option<String>,
    /// The build signer URI (Fulcio `build_signer_uri`), if any.
    pub signer: Option<String>,
    /// When the bundle was signed (RFC 3339), per its Rekor entry or RFC 3161 stamp.
    pub signed_at: String,
    /// Where the bundle was found.
    pub bundle_source: String,
    /// Until when this answer is reused (Unix seconds).
    pub cached_until: u64,
    /// The MRTD the verified predicate attests (absent in answers cached by older
    /// versions, which are then never reused).
    #[serde(default)]
    pub mrtd: Option<Mr>,
    /// The predicate's `rtmr0..2`, where it has them.
    #[serde(default)]
    pub rtmrs: [Option<Mr>; 3],
    /// The bundle's transparency-log (Rekor) entry index, where its instance has a
    /// log (GitHub's own instance, for private repositories, has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_index: Option<u64>,
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[non_exhaustive]
pub enum AlertKind {
    /// No valid pulse for `missed_heartbeats` intervals: killed or blinded.
    Blinded,
    /// The agent binary changed without a coordinated update.
    BinaryChanged,
    /// A measured policy/config file changed.
    PolicyChanged,
    /// Platform facts changed.
    PlatformChanged,
    /// A replayed or out-of-chain pulse.
    Replay,
    /// A pulse outside the allowed clock skew.
    ClockDesync,
    /// A pulse for a known agent that does not verify under its key.
    BadSignature,
    /// A registration with a key not enrolled for the agent id.
    Unenrolled,
    /// An operator-announced update was observed and became last-known-good.
    ExpectedUpdateApplied,
    /// An operator accepted the current measurements as last-known-good.
    BaselineAccepted,
    /// An agent registered (or registered again).
    Registered,
    /// A blinded agent is pulsing again.
    Recovered,
    /// A registration whose TDX evidence was refused (bad quote, debug TD, REPORTDATA
    /// or RTMR3 mismatch, TCB status not allowed, ...).
    AttestationRefused,
    /// The loaded eBPF programs differ from the last-known-good (like a changed binary).
    EbpfChanged,
    /// The set of running workloads changed (informational).
    WorkloadsChanged,
    /// A workload's image turned red: unsigned, wrongly signed, not covered by the
    /// image policy, or without a registry digest.
    ImageRefused,
    /// An operator deleted the agent (`DELETE /api/v1/agents/{id}`).
    AgentDeleted,
    /// An operator disabled the agent (`POST /api/v1/agents/{id}/disable`).
    AgentDisabled,
    /// An operator enabled a disabled agent again.
    AgentEnabled,
    /// An operator withdrew a build (agent binary or MRTD) fleet-wide, or removed a
    /// withdrawal.
    BuildWithdrawn,
    /// An agent's pulse was refused because it is revoked: disabled, its enrollment
    /// no longer holds, or it runs a withdrawn build.
    AgentRevoked,
    /// A re-registration on a lower tier (tdx -> software or tdx-report).
    TierChanged,
    /// A re-registration with a different key.
    KeyChanged,
    /// An operator allowed the agent's next registration at a given tier.
    TierExpected,
    /// An agent's stored record cannot be decoded: the agent is not judged until an
    /// operator repairs or deletes it.
    RecordCorrupt,
    /// Re-attestation against current collateral changed a TDX agent's evidence: its
    /// TCB status (e.g. UpToDate -> OutOfDate) or the stored quote is now refused.
    AttestationChanged,
    /// A program `[policy.ebpf] required` names went missing, unpinned or changed,
    /// or the required BPF LSM is not active.
    RequiredProgram,
    /// Bad pulse signatures over the agent's authenticated channel reached
    /// `[policy] bad_signatures_threshold`: the agent is red `Compromised`.
    Compromised,
    /// An operator cleared an agent's `Compromised` mark.
    CompromiseCleared,
    /// An operator acknowledged an alert (the audit record of the acknowledgement).
    AlertAcknowledged,
}

impl AlertKind {
    /// The stored and API name (the variant's name).
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Blinded => "Blinded",
            AlertKind::BinaryChanged => "BinaryChanged",
            AlertKind::PolicyChanged => "PolicyChanged",
            AlertKind::PlatformChanged => "PlatformChanged",
            AlertKind::Replay => "Replay",
            AlertKind::ClockDesync => "ClockDesync",
            AlertKind::BadSignature => "BadSignature",
            AlertKind::Unenrolled => "Unenrolled",
            AlertKind::ExpectedUpdateApplied => "ExpectedUpdateApplied",
            AlertKind::BaselineAccepted => "BaselineAccepted",
            AlertKind::Registered => "Registered",
            AlertKind::Recovered => "Recovered",
            AlertKind::AttestationRefused => "AttestationRefused",
            AlertKind::EbpfChanged => "EbpfChanged",
            AlertKind::WorkloadsChanged => "WorkloadsChanged",
            AlertKind::ImageRefused => "ImageRefused",
            AlertKind::AgentDeleted => "AgentDeleted",
            AlertKind::AgentDisabled => "AgentDisabled",
            AlertKind::AgentEnabled => "AgentEnabled",
            AlertKind::BuildWithdrawn => "BuildWithdrawn",
            AlertKind::AgentRevoked => "AgentRevoked",
            AlertKind::TierChanged => "TierChanged",
            AlertKind::KeyChanged => "KeyChanged",
            AlertKind::TierExpected => "TierExpected",
            AlertKind::RecordCorrupt => "RecordCorrupt",
            AlertKind::AttestationChanged => "AttestationChanged",
            AlertKind::RequiredProgram => "RequiredProgram",
            AlertKind::Compromised => "Compromised",
            AlertKind::CompromiseCleared => "CompromiseCleared",
            AlertKind::AlertAcknowledged => "AlertAcknowledged",
        }
    }

    /// Inverse of [`AlertKind::as_str`].
    pub fn parse(s: &str) -> Option<AlertKind> {
        serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
    }

    /// 1 = critical (page someone), 2 = high, 3 = warning, 4 = informational.
    pub fn severity(self) -> u8 {
        match self {
            AlertKind::Blinded
            | AlertKind::BinaryChanged
            | AlertKind::EbpfChanged
            | AlertKind::RequiredProgram
            | AlertKind::Compromised
            | AlertKind::RecordCorrupt => 1,
            AlertKind::PolicyChanged
            | AlertKind::PlatformChanged
            | AlertKind::Replay
            | AlertKind::BadSignature
            | AlertKind::Unenrolled
            | AlertKind::AttestationRefused
            | AlertKind::ImageRefused
            | AlertKind::AgentDeleted
            | AlertKind::AgentDisabled
            | AlertKind::AgentEnabled
            | AlertKind::BuildWithdrawn
            | AlertKind::AgentRevoked
            | AlertKind::TierChanged
            | AlertKind::KeyChanged
            | AlertKind::CompromiseCleared
            | AlertKind::AttestationChanged => 2,
            AlertKind::ClockDesync | AlertKind::Recovered => 3,
            AlertKind::ExpectedUpdateApplied
            | AlertKind::BaselineAccepted
            | AlertKind::Registered
            | AlertKind::WorkloadsChanged
            | AlertKind::TierExpected
            | AlertKind::AlertAcknowledged => 4,
        }
    }
}

/// One alert about one agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Alert {
    /// `<at_ns, 20 digits>-<16 random hex>`: sorts by time.
    pub id: String,
    /// When it was raised, UTC ns.
    pub at_ns: u64,
    /// The agent it is about.
    pub agent_id: String,
    /// What happened.
    pub kind: AlertKind,
    /// [`AlertKind::severity`] at the time it was raised (1 critical .. 4 informational).
    pub severity: u8,
    /// Human-readable detail.
    pub detail: String,
    /// Set once an operator acknowledged the alert: it stays in the history but no
    /// longer counts as open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack: Option<Ack>,
    /// What a refusal compared (expected and found values, where they part), for
    /// the refusals that can say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explain: Option<Box<Explanation>>,
}

/// An operator's acknowledgement of an alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Ack {
    /// When it was acknowledged, UTC ns.
    pub at_ns: u64,
    /// Who, as the operator gave it, and how they were authenticated (e.g.
    /// `alice (operator token)`).
    pub by: String,
    /// The operator's note.
    pub note: String,
}

/// Largest alert severity that can be open: informational alerts (4) are records.
pub const MAX_OPEN_SEVERITY: u8 = 3;

impl Alert {
    /// Whether the alert still asks for attention: not acknowledged and of severity
    /// 1-3 (informational alerts are records, never open).
    pub fn is_open(&self) -> bool {
        self.ack.is_none() && self.severity <= MAX_OPEN_SEVERITY
    }

    /// An alert raised at `at`, with a fresh id and the kind's severity.
    pub fn new(at: UnixNanos, agent_id: &str, kind: AlertKind, detail: impl Into<String>) -> Alert {
        let at_ns = at.get();
        let r: [u8; 8] = rand::random();
        Alert {
            id: format!("{at_ns:020}-{}", hex::encode(r)),
            at_ns,
            agent_id: agent_id.to_string(),
            kind,
            severity: kind.severity(),
            detail: detail.into(),
            ack: None,
            explain: None,
        }
    }
}

/// The address a source is counted under: the IP, or for IPv6 its /64 (one host
/// commonly owns a whole /64). IPv4-mapped IPv6 counts as its IPv4 address.
pub fn source_addr(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V4(_) => ip,
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => std::net::IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                std::net::IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}
