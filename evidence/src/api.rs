//! Request and response bodies of the control plane's HTTP API (`/api/v1/*`).

use serde::{Deserialize, Serialize};

use crate::dsse::Envelope;
use crate::report::{Digest32, Tier};
use crate::verdict::{Reason, Status, Verdict};

/// Largest request body the control plane reads on `/register`: the report envelope,
/// a whole RTMR3 event log (JSON-escaped inside the request, at most doubling it), and
/// room for the quote and certificate chain. Derived from the event log's own cap, so
/// an agent's log fills up (and stops growing) before its registration could be too
/// large to be read.
pub const MAX_REGISTER_BODY: usize = crate::limits::MAX_ENVELOPE_BYTES
    + 2 * crate::eventlog::MAX_LOG_BYTES
    + 4 * crate::tdx::MAX_QUOTE_BYTES / 3
    + 128 * 1024;
/// Largest request body on `/heartbeat`.
pub const MAX_HEARTBEAT_BODY: usize = 96 * 1024;
/// Largest certificate chain presented at registration.
pub const MAX_CHAIN_CERTS: usize = 8;

/// `GET /api/v1/challenge`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Challenge {
    /// Single-use nonce the report must echo.
    pub nonce: Digest32,
    /// When the nonce stops being accepted, control-plane clock, UTC nanoseconds.
    pub expires_at_ns: u64,
}

/// Platform evidence that accompanies a report.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RegisterEvidence {
    /// Base64 quote (tier `tdx`) or TDREPORT (tier `tdx-report`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quote: Option<String>,
    /// The agent's RTMR3 runtime event log, JSON lines as [`crate::eventlog`]
    /// documents (TDX tiers). The control plane replays it against the quoted RTMR3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_log: Option<String>,
    /// `event_log` holds only the events from this `seq` on: the control plane already
    /// holds the ones before it (it said how many in the last
    /// [`RegisterResponse::event_log_events`]). Absent or 0: the whole log. A control
    /// plane that does not hold exactly that many answers 409 `EventLogPrefixUnknown`
    /// (or `EventLogPrefixMismatch` when its prefix does not lead to the quoted RTMR3,
    /// e.g. a restarted TD), and the agent sends the whole log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_log_from: Option<u64>,
    /// PEM certificates, leaf first, for CA-based enrollment of the report key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificate_chain: Vec<String>,
}

/// `POST /api/v1/register`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegisterRequest {
    /// The signed [`Report`](crate::Report).
    pub envelope: Envelope,
    /// Platform evidence binding the report; empty for the software tier.
    #[serde(default)]
    pub evidence: RegisterEvidence,
}

/// Answer to a successful registration.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegisterResponse {
    /// The registered agent.
    pub agent_id: String,
    /// The tier the evidence was accepted at.
    pub tier: Tier,
    /// Fingerprint of the report's heartbeat key, which must sign the pulses.
    pub key_fingerprint: String,
    /// The agent's verdict after registration.
    pub verdict: Verdict,
    /// Digest the first pulse must name as `previous`.
    pub chain_head: Digest32,
    /// The control plane's judgement of each reported workload (see [`WorkloadBadge`]).
    #[serde(default)]
    pub workloads: Vec<WorkloadBadge>,
    /// How many RTMR3 events the control plane now holds for this agent (TDX tiers):
    /// the next registration may send only the events after them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_log_events: Option<u64>,
}

/// Answer to an accepted pulse (`POST /api/v1/heartbeat`, body: the pulse envelope).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeartbeatResponse {
    /// Always true: a refused pulse gets an [`ErrorBody`] instead.
    pub accepted: bool,
    /// The accepted pulse's sequence number.
    pub sequence: u64,
    /// The agent's verdict after this pulse.
    pub verdict: Verdict,
    /// Mitigation commands for the agent (none yet; reserved).
    #[serde(default)]
    pub commands: Vec<String>,
    /// The control plane's current judgement of each reported workload, so the
    /// agent's `/health` can show it. Empty when the agent reports no workloads.
    #[serde(default)]
    pub workloads: Vec<WorkloadBadge>,
}

/// The control plane's judgement of one workload: DESIGN.md "Image signatures",
/// badge rules. `status` maps to the badge colour with [`Status::badge`].
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadBadge {
    /// Container name, as the agent reported it.
    pub name: String,
    /// Container id, as the agent reported it.
    pub id: String,
    /// The image reference the container runs, as the agent reported it.
    pub image: String,
    /// The manifest digest that was judged (`sha256:..`), if the agent reported one.
    pub image_digest: Option<String>,
    /// The worse of the image's and the agent's statuses.
    pub status: Status,
    /// The image's reasons, then the agent's.
    pub reasons: Vec<Reason>,
    /// The verified signer (SAN or key fingerprint), when the signature verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    /// When the control plane last verified the image's signature, UTC nanoseconds;
    /// `None` while it has not decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_at_ns: Option<u64>,
    /// The signature's Rekor entry log index, where it was logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rekor_log_index: Option<u64>,
}

/// Every 4xx/5xx body: `{"error":{"kind":..,"detail":..}}`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorInfo,
}

/// The error in an [`ErrorBody`].
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorInfo {
    /// Stable machine-readable kind (`BadSignature`, `Replay`, ...).
    pub kind: String,
    /// Human-readable detail; never secret material.
    pub detail: String,
    /// The Intel security advisory ids (`INTEL-SA-...`) behind a TCB status refusal;
    /// absent otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub advisories: Vec<String>,
}
