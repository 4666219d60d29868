//! The bodies of the agent's local API that [`crate::api`] writes as JSON values
//! (`/health`, `/api/v1/verify`), described for its OpenAPI document. Documentation
//! only: `cp-verifier/tests/openapi.rs` checks real answers against these schemas, so
//! a change to the JSON that is not made here fails there. `/api/v1/status` is
//! [`crate::state::AgentState`] itself.

#![allow(dead_code)]

use evidence::verdict::Status;
use evidence::{CollectorState, Digest32, Tier};
use utoipa::ToSchema;

use crate::config::GateBadge;
use crate::state::{EventLogInfo, Phase, PulseInfo, RequoteFailed};

/// The verdict as the node may rely on it now: the control plane's while it stands,
/// else `unknown` with the reason (`NoVerdict`, `VerdictExpired`).
#[derive(ToSchema)]
pub struct LocalVerdict {
    /// The verdict's status.
    status: Status,
    /// Its colour: `green`, `yellow`, `red` or `unknown`.
    #[schema(pattern = "^(green|yellow|red|unknown)$")]
    badge: String,
    /// The findings behind it.
    reasons: Vec<LocalReason>,
}

/// One finding: a control-plane reason code, or a local one (`NoVerdict`,
/// `VerdictExpired`, `NotJudged`).
#[derive(ToSchema)]
pub struct LocalReason {
    /// What was found (stable).
    code: String,
    /// What it counts as.
    status: Status,
    /// The specifics, for people.
    detail: String,
}

/// `GET /api/v1/verify`.
#[derive(ToSchema)]
pub struct VerifyBody {
    /// Whether the start-up gate is open (also the status: 200 or 503).
    acceptable: bool,
    /// The colours that open it.
    accepts: Vec<GateBadge>,
    /// The verdict it was judged on.
    verdict: LocalVerdict,
}

/// `/health` `gate`.
#[derive(ToSchema)]
pub struct GateView {
    /// Whether the start-up gate is open now.
    open: bool,
    /// The colours that open it.
    accepts: Vec<GateBadge>,
    /// How long a verdict stands without an accepted pulse.
    expires_after_ms: u64,
}

/// One reported workload with the control plane's last judgement of it.
#[derive(ToSchema)]
pub struct Deployment {
    /// Container name.
    name: String,
    /// Container id.
    id: String,
    /// Container state (podman's).
    state: String,
    /// The image reference.
    image: String,
    /// The manifest digest, when known.
    image_digest: Option<String>,
    /// The badge colour: `green`, `yellow`, `red` or `unknown`.
    #[schema(pattern = "^(green|yellow|red|unknown)$")]
    attestation_status: String,
    /// The reasons behind it (`NotJudged` while the control plane has not judged it).
    reasons: Vec<LocalReason>,
    /// When the control plane verified the image's signature (RFC 3339).
    verified_at: Option<String>,
    /// The verified signer.
    signer: Option<String>,
}

/// A collector's list, summarised.
#[derive(ToSchema)]
pub struct CollectorSummary {
    /// Whether it could see the whole list.
    state: CollectorState,
    /// Why not.
    reason: Option<String>,
    /// The list's digest.
    digest: Option<Digest32>,
    /// How many items it holds.
    count: Option<usize>,
}

/// The eBPF collector's list, summarised, with the programs.
#[derive(ToSchema)]
pub struct EbpfSummary {
    /// Whether it could see the whole list.
    state: CollectorState,
    /// Why not.
    reason: Option<String>,
    /// Whether the BPF LSM is active.
    lsm_active: Option<bool>,
    /// The list's digest.
    digest: Option<Digest32>,
    /// How many programs it holds.
    count: Option<usize>,
    /// The loaded programs.
    programs: Vec<ProgramSummary>,
}

/// One loaded eBPF program.
#[derive(serde::Serialize, ToSchema)]
pub struct ProgramSummary {
    /// The kernel's program id.
    id: u32,
    /// Its name.
    name: String,
    /// Its program type.
    #[serde(rename = "type")]
    prog_type: String,
    /// The kernel's tag.
    tag: String,
    /// SHA-256 of its instructions.
    sha256: Digest32,
    /// Where it is pinned.
    pinned: Vec<String>,
}

/// `/health` `collectors`.
#[derive(ToSchema)]
pub struct Collectors {
    /// The workloads collector; null when not configured or nothing measured yet.
    workloads: Option<CollectorSummary>,
    /// The eBPF collector; likewise.
    ebpf: Option<EbpfSummary>,
}

/// `GET /health`.
#[derive(ToSchema)]
pub struct HealthBody {
    /// The agent's id.
    agent_id: String,
    /// Where the agent is in its life.
    state: Phase,
    /// The attestation tier of its quote source.
    tier: Tier,
    /// The RTMR3 event log (TDX tiers).
    event_log: Option<EventLogInfo>,
    /// `enabled` with an identity key, else `disabled`.
    #[schema(pattern = "^(enabled|disabled)$")]
    attestation: String,
    /// The last accepted pulse.
    last_pulse: Option<PulseInfo>,
    /// The local verdict.
    verdict: LocalVerdict,
    /// The start-up gate.
    gate: GateView,
    /// A re-quote the control plane could not verify.
    requote_failed: Option<RequoteFailed>,
    /// The last error talking to the control plane.
    last_error: Option<String>,
    /// The reported workloads.
    deployments: Vec<Deployment>,
    /// The collectors' states.
    collectors: Collectors,
}
