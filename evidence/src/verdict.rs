//! Verdicts as they travel on the wire. The rules that produce them live in the
//! `policy` crate; these are only the data both sides read.

use serde::{Deserialize, Serialize};

/// The overall judgement of an agent.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Every check passed (green).
    Pass,
    /// Weaker but acceptable (yellow).
    Warn,
    /// Nothing decided yet, or the verifier could not decide.
    Unknown,
    /// A check failed (red).
    Fail,
}

impl Status {
    /// Whether a workload may be started on this verdict (`/api/v1/verify`).
    pub fn acceptable(self) -> bool {
        matches!(self, Status::Pass | Status::Warn)
    }
    /// The badge colour: `green`, `yellow`, `unknown`, `red`.
    pub fn badge(self) -> &'static str {
        match self {
            Status::Pass => "green",
            Status::Warn => "yellow",
            Status::Unknown => "unknown",
            Status::Fail => "red",
        }
    }
}

/// Why a verdict is not plain green. Codes are stable; details are for people.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ReasonCode {
    /// No hardware root of trust: the report is signed by a software key.
    SoftwareTier,
    /// No valid pulse for more than one interval.
    PulseLate,
    /// No valid pulse for `missed_heartbeats` intervals: the agent was killed or blinded.
    Blinded,
    /// The agent binary differs from the last-known-good without a coordinated update.
    BinaryChanged,
    /// A measured policy/config file differs from the last-known-good.
    PolicyChanged,
    /// The platform facts (TEE, kernel command line, ...) changed.
    PlatformChanged,
    /// A replayed or out-of-chain pulse was presented recently.
    ReplayDetected,
    /// The agent's clock is outside the allowed skew, so its pulses are refused.
    ClockDesync,
    /// The agent has not registered.
    NotRegistered,
    /// The platform's TCB status is not UpToDate (allowed with warning, or refused).
    TcbStatus,
    /// The TD is debuggable (TDATTRIBUTES DEBUG or another TUD bit is set).
    DebugTd,
    /// The quote's REPORTDATA is not the binding of the report it came with.
    ReportDataMismatch,
    /// MRTD (or an RTMR) is not on the policy's allowlist.
    MeasurementNotAllowed,
    /// RTMR3 replayed from the agent's event log differs from the quoted RTMR3.
    Rtmr3Mismatch,
    /// The evidence is a TDREPORT (tier `tdx-report`): its claims cannot be verified
    /// remotely.
    TdReportOnly,
    /// MRTD is pinned by neither build provenance nor an allowlist: the TD is genuine,
    /// but nothing says it runs firmware we built.
    MrtdUnpinned,
    /// MRTD is not attested by the trusted repository's build provenance.
    MrtdNotAttested,
    /// No signature for the workload's image digest was found in its registry.
    ImageUnsigned,
    /// A signature was found but does not verify (bad signature, certificate chain, Rekor SET, expired certificate).
    ImageSignatureInvalid,
    /// The signature's payload names a different manifest digest than the workload runs.
    ImageDigestMismatch,
    /// The signature verifies, but its signer (key, SAN, issuer, repository, ref) is not the image policy's.
    ImageIdentityMismatch,
    /// No image policy rule covers the workload's repository.
    ImageNotCovered,
    /// The workload's image has no registry digest (built or loaded locally), so it cannot be verified.
    ImageNoDigest,
    /// Signed with a key where the policy prefers keyless (workflow identity) signatures.
    ImageKeySigned,
    /// The signature could not be checked (registry unreachable, garbage or oversized response): undecided, never green.
    ImageUnverifiable,
    /// The agent could not list its workloads (podman unreachable).
    WorkloadsUnknown,
    /// The agent could not list loaded eBPF programs (no privilege or kernel support).
    EbpfUnavailable,
    /// The set of loaded eBPF programs differs from the last-known-good.
    EbpfChanged,
    /// The set of running workloads differs from the last-known-good.
    WorkloadsChanged,
    /// The agent may no longer speak: an operator disabled it, or its enrollment no
    /// longer holds (key off the allowlist, certificate expired or revoked, CRL stale).
    Revoked,
    /// The agent runs a build (agent binary or MRTD) an operator withdrew fleet-wide.
    Withdrawn,
    /// RTMR1/RTMR2 (kernel, initrd, command line) are pinned by neither build
    /// provenance (`match_rtmrs`) nor `[policy.tdx] rtmr_allowlists`.
    RtmrsUnpinned,
    /// The DCAP collateral the TCB status was established with is past its
    /// `nextUpdate`, and no fresh collateral confirmed it since.
    CollateralExpired,
    /// A certificate of the quote's PCK chain is past its `notAfter`.
    PckExpired,
    /// The agent's last verified quote is older than `3 x requote_interval`.
    QuoteStale,
    /// MRTD's build provenance was not confirmed again after its cached answer expired.
    ProvenanceStale,
    /// Re-verified against current collateral (or provenance), the stored quote is
    /// refused (revoked PCK, no matching TCB level, attestation withdrawn, ...).
    ReattestRefused,
    /// The control plane could not verify the agent's fresh quote because an upstream
    /// (PCS/PCCS collateral, GitHub provenance, its store) was unavailable: the agent
    /// is alive and pulsing on its last verified registration, but its evidence is
    /// not being renewed. Not the agent being silent (that is `PulseLate`/`Blinded`).
    RequoteFailed,
    /// A program `[policy.ebpf] required` names is not loaded (or the eBPF list that
    /// would show it cannot be seen).
    RequiredProgramMissing,
    /// A required program is loaded but not pinned where the policy says.
    RequiredProgramUnpinned,
    /// A required program is loaded, but its instructions' digest is not the one the
    /// policy pins.
    RequiredProgramChanged,
    /// `[policy.ebpf] require_lsm` is set and the BPF LSM is not active (or not known
    /// to be).
    LsmInactive,
    /// The node's kernel reports its clock unsynchronised (`adjtimex`): its pulses
    /// may soon be refused `ClockDesync`. Yellow, an operations problem.
    ClockUnsynchronised,
    /// The TD is bound to a service TD (TD 1.5 MRSERVICETD non-zero): refused unless
    /// `[policy.tdx] allowed_mrservicetd` lists it; yellow unless
    /// `trusted_mrservicetd` also does.
    ServiceTdBound,
    /// The TD is migratable (TDATTRIBUTES MIGRATABLE): a migration TD can move its
    /// state to another platform.
    MigratableTd,
    /// The TD has TDATTRIBUTES SERVTD_EXT set (service TDs may be bound to it after
    /// launch).
    ServTdExt,
    /// Pulses naming the agent, sent over a connection whose mTLS client certificate
    /// names it too, failed signature verification under its registered key
    /// (`[policy] bad_signatures_threshold` within `bad_signatures_window`): whoever
    /// holds the agent's transport identity signs with a key that is not its own.
    /// Red until an operator clears it.
    Compromised,
    /// The TD's TDATTRIBUTES SEPT_VE_DISABLE is clear: the host's VMM can inject #VE
    /// on EPT violations into the guest. Intel's and dcap-qvl's TD attribute policy
    /// refuses it, and dcap-qvl has no switch to accept it: always refused (the
    /// default of Azure's paravisor TDs).
    SeptVeNotDisabled,
}

impl ReasonCode {
    /// The stable name, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonCode::SoftwareTier => "SoftwareTier",
            ReasonCode::PulseLate => "PulseLate",
            ReasonCode::Blinded => "Blinded",
            ReasonCode::BinaryChanged => "BinaryChanged",
            ReasonCode::PolicyChanged => "PolicyChanged",
            ReasonCode::PlatformChanged => "PlatformChanged",
            ReasonCode::ReplayDetected => "ReplayDetected",
            ReasonCode::ClockDesync => "ClockDesync",
            ReasonCode::NotRegistered => "NotRegistered",
            ReasonCode::TcbStatus => "TcbStatus",
            ReasonCode::DebugTd => "DebugTd",
            ReasonCode::ReportDataMismatch => "ReportDataMismatch",
            ReasonCode::MeasurementNotAllowed => "MeasurementNotAllowed",
            ReasonCode::Rtmr3Mismatch => "Rtmr3Mismatch",
            ReasonCode::TdReportOnly => "TdReportOnly",
            ReasonCode::MrtdUnpinned => "MrtdUnpinned",
            ReasonCode::MrtdNotAttested => "MrtdNotAttested",
            ReasonCode::ImageUnsigned => "ImageUnsigned",
            ReasonCode::ImageSignatureInvalid => "ImageSignatureInvalid",
            ReasonCode::ImageDigestMismatch => "ImageDigestMismatch",
            ReasonCode::ImageIdentityMismatch => "ImageIdentityMismatch",
            ReasonCode::ImageNotCovered => "ImageNotCovered",
            ReasonCode::ImageNoDigest => "ImageNoDigest",
            ReasonCode::ImageKeySigned => "ImageKeySigned",
            ReasonCode::ImageUnverifiable => "ImageUnverifiable",
            ReasonCode::WorkloadsUnknown => "WorkloadsUnknown",
            ReasonCode::EbpfUnavailable => "EbpfUnavailable",
            ReasonCode::EbpfChanged => "EbpfChanged",
            ReasonCode::WorkloadsChanged => "WorkloadsChanged",
            ReasonCode::Revoked => "Revoked",
            ReasonCode::Withdrawn => "Withdrawn",
            ReasonCode::RtmrsUnpinned => "RtmrsUnpinned",
            ReasonCode::CollateralExpired => "CollateralExpired",
            ReasonCode::PckExpired => "PckExpired",
            ReasonCode::QuoteStale => "QuoteStale",
            ReasonCode::ProvenanceStale => "ProvenanceStale",
            ReasonCode::ReattestRefused => "ReattestRefused",
            ReasonCode::RequoteFailed => "RequoteFailed",
            ReasonCode::RequiredProgramMissing => "RequiredProgramMissing",
            ReasonCode::RequiredProgramUnpinned => "RequiredProgramUnpinned",
            ReasonCode::RequiredProgramChanged => "RequiredProgramChanged",
            ReasonCode::LsmInactive => "LsmInactive",
            ReasonCode::ClockUnsynchronised => "ClockUnsynchronised",
            ReasonCode::ServiceTdBound => "ServiceTdBound",
            ReasonCode::MigratableTd => "MigratableTd",
            ReasonCode::ServTdExt => "ServTdExt",
            ReasonCode::Compromised => "Compromised",
            ReasonCode::SeptVeNotDisabled => "SeptVeNotDisabled",
        }
    }
}

/// One finding behind a verdict.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    /// What was found (stable).
    pub code: ReasonCode,
    /// What it counts as.
    pub status: Status,
    /// The specifics, for people.
    pub detail: String,
}

impl Reason {
    /// A finding: `code` counted as `status`, with the specifics for people.
    pub fn new(code: ReasonCode, status: Status, detail: impl Into<String>) -> Reason {
        Reason {
            code,
            status,
            detail: detail.into(),
        }
    }
}

/// A judgement with the findings behind it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// The overall status: at least as bad as every reason's.
    pub status: Status,
    /// The findings; empty for a plain pass.
    pub reasons: Vec<Reason>,
}

impl Verdict {
    /// A verdict whose status is the worst status among its reasons (Pass if none).
    pub fn from_reasons(reasons: Vec<Reason>) -> Verdict {
        let status = reasons
            .iter()
            .map(|r| r.status)
            .max()
            .unwrap_or(Status::Pass);
        Verdict { status, reasons }
    }

    /// An `Unknown` verdict with one `NotRegistered` reason saying `detail`.
    pub fn unknown(detail: &str) -> Verdict {
        Verdict {
            status: Status::Unknown,
            reasons: vec![Reason {
                code: ReasonCode::NotRegistered,
                status: Status::Unknown,
                detail: detail.to_owned(),
            }],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_code_names_are_their_serialised_form() {
        for c in [
            ReasonCode::SoftwareTier,
            ReasonCode::PulseLate,
            ReasonCode::Blinded,
            ReasonCode::BinaryChanged,
            ReasonCode::PolicyChanged,
            ReasonCode::PlatformChanged,
            ReasonCode::ReplayDetected,
            ReasonCode::ClockDesync,
            ReasonCode::NotRegistered,
            ReasonCode::TcbStatus,
            ReasonCode::DebugTd,
            ReasonCode::ReportDataMismatch,
            ReasonCode::MeasurementNotAllowed,
            ReasonCode::Rtmr3Mismatch,
            ReasonCode::TdReportOnly,
            ReasonCode::MrtdUnpinned,
            ReasonCode::MrtdNotAttested,
            ReasonCode::ImageUnsigned,
            ReasonCode::ImageSignatureInvalid,
            ReasonCode::ImageDigestMismatch,
            ReasonCode::ImageIdentityMismatch,
            ReasonCode::ImageNotCovered,
            ReasonCode::ImageNoDigest,
            ReasonCode::ImageKeySigned,
            ReasonCode::ImageUnverifiable,
            ReasonCode::WorkloadsUnknown,
            ReasonCode::EbpfUnavailable,
            ReasonCode::EbpfChanged,
            ReasonCode::WorkloadsChanged,
            ReasonCode::Revoked,
            ReasonCode::Withdrawn,
            ReasonCode::RtmrsUnpinned,
            ReasonCode::CollateralExpired,
            ReasonCode::PckExpired,
            ReasonCode::QuoteStale,
            ReasonCode::ProvenanceStale,
            ReasonCode::ReattestRefused,
            ReasonCode::RequiredProgramMissing,
            ReasonCode::RequiredProgramUnpinned,
            ReasonCode::RequiredProgramChanged,
            ReasonCode::LsmInactive,
            ReasonCode::ClockUnsynchronised,
            ReasonCode::ServiceTdBound,
            ReasonCode::MigratableTd,
            ReasonCode::ServTdExt,
            ReasonCode::Compromised,
            ReasonCode::SeptVeNotDisabled,
        ] {
            assert_eq!(
                serde_json::to_value(c).unwrap(),
                serde_json::Value::String(c.as_str().into())
            );
        }
    }
}
