//! The policy rule behind each reason code: which setting decides it and what the
//! rule says, so the operator's view can show, beside every reason, the rule that
//! produced it and where to change it.

use crate::ReasonCode;

/// The rule behind a reason: the setting that governs it and the rule in words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// The control plane setting (`[policy] missed_heartbeats`), or where the fact
    /// comes from when no setting changes it.
    pub setting: &'static str,
    /// What the rule says.
    pub says: &'static str,
}

const fn r(setting: &'static str, says: &'static str) -> Rule {
    Rule { setting, says }
}

/// The rule that produces `code`.
pub fn rule_for(code: ReasonCode) -> Rule {
    use ReasonCode as C;
    match code {
        C::SoftwareTier => r("[policy] allow_software_tier", "a software-tier agent is yellow when allowed, else red"),
        C::TdReportOnly => r("[policy] allow_software_tier", "a TDREPORT (not a quote) counts as the software tier"),
        C::PulseLate => r("the agent's heartbeat interval", "no valid pulse for more than two intervals is yellow"),
        C::Blinded => r("[policy] missed_heartbeats", "no valid pulse for missed_heartbeats intervals is red (killed or blinded)"),
        C::BinaryChanged => r("last-known-good, POST /api/v1/agents/{id}/expect", "an agent binary differing from the last-known-good, unannounced, is red"),
        C::PolicyChanged => r("last-known-good, POST /api/v1/agents/{id}/expect", "measured policy or config files differing from the last-known-good, unannounced, are red"),
        C::PlatformChanged => r("last-known-good", "platform facts differing from the last-known-good are red"),
        C::ReplayDetected => r("[policy] missed_heartbeats (window)", "a forked or out-of-chain pulse is red for missed_heartbeats intervals"),
        C::ClockDesync => r("max_clock_skew", "a pulse outside the allowed clock skew is refused; yellow for missed_heartbeats intervals"),
        C::NotRegistered => r("registration", "an agent is judged only once registered"),
        C::TcbStatus => r("[policy.tdx] allowed_tcb_statuses, warn_tcb_statuses", "the platform's TCB status must be allowed (green) or warned (yellow)"),
        C::DebugTd => r("TDATTRIBUTES", "a debug TD is always refused"),
        C::ReportDataMismatch => r("registration binding", "REPORTDATA must bind the signed report (always)"),
        C::MeasurementNotAllowed => r("[policy.tdx] mrtd_allowlist, rtmr_allowlists", "MRTD and RTMR0-2 must be in their allowlists when these are set"),
        C::Rtmr3Mismatch => r("the RTMR3 event log", "the sent event log must replay to the quoted RTMR3 (always)"),
        C::MrtdUnpinned => r("[provenance] or [policy.tdx] mrtd_allowlist", "an MRTD neither attested nor allowlisted is yellow"),
        C::MrtdNotAttested => r("[provenance] repository, signer_workflow, san, source_ref", "the MRTD must be attested by the trusted repository's workflow"),
        C::RtmrsUnpinned => r("[provenance] match_rtmrs or [policy.tdx] rtmr_allowlists", "RTMR0-2 not pinned are yellow"),
        C::ImageUnsigned => r("[[images.trust]]", "an image without a signature is red"),
        C::ImageSignatureInvalid => r("[[images.trust]]", "an image signature that does not verify is red"),
        C::ImageDigestMismatch => r("[[images.trust]]", "the signed digest must be the running image's"),
        C::ImageIdentityMismatch => r("[[images.trust]] keyless identity", "the signer must be the identity the rule names"),
        C::ImageNotCovered => r("[[images.trust]] scope", "an image whose repository no rule covers is red"),
        C::ImageNoDigest => r("podman inventory", "a workload without a registry digest cannot be verified: red"),
        C::ImageKeySigned => r("[images] prefer_keyless", "a key-signed image is yellow when keyless is preferred"),
        C::ImageUnverifiable => r("the registry", "an image not yet verified (registry away) is unknown"),
        C::WorkloadsUnknown => r("the agent's podman collector", "workloads not readable are unknown"),
        C::EbpfUnavailable => r("the agent's eBPF collector", "eBPF programs not readable are unknown"),
        C::EbpfChanged => r("last-known-good", "loaded eBPF programs differing from the last-known-good are red"),
        C::WorkloadsChanged => r("last-known-good", "the set of running workloads changed (informational)"),
        C::Revoked => r("operator: disable, delete, enrollment", "a disabled, deleted or unenrolled agent is red"),
        C::Withdrawn => r("[[withdrawn]] or POST /api/v1/withdrawals", "an agent running a withdrawn build is red"),
        C::CollateralExpired => r("[policy.tdx] expired_collateral", "collateral past nextUpdate is red (or yellow) until refreshed"),
        C::PckExpired => r("the PCK certificate chain", "a PCK certificate past notAfter is red"),
        C::QuoteStale => r("[policy] requote_interval", "a quote older than 3 x requote_interval is yellow"),
        C::ProvenanceStale => r("[provenance] cache_ttl", "provenance not confirmed again within cache_ttl is yellow"),
        C::ReattestRefused => r("re-attestation", "the stored quote refused against current collateral is red"),
        C::RequoteFailed => r("collateral and provenance upstreams", "a fresh quote that could not be verified is yellow"),
        C::RequiredProgramMissing => r("[policy.ebpf] required", "a required eBPF program not loaded is red"),
        C::RequiredProgramUnpinned => r("[policy.ebpf] required", "a required eBPF program not pinned is red"),
        C::RequiredProgramChanged => r("[policy.ebpf] required", "a required eBPF program with another digest is red"),
        C::LsmInactive => r("[policy.ebpf] require_lsm", "the BPF LSM must be active"),
        C::ClockUnsynchronised => r("[policy] clock_unsynchronised", "a node whose kernel reports its clock unsynchronised is yellow"),
        C::ServiceTdBound => r("[policy.tdx] allowed_mrservicetd, trusted_mrservicetd", "a TD bound to a service TD must be allowed (yellow) or trusted"),
        C::MigratableTd => r("[policy.tdx] allow_migratable", "a migratable TD is refused unless allowed"),
        C::ServTdExt => r("[policy.tdx] allow_servtd_ext", "a TD with SERVTD_EXT is refused unless allowed"),
        C::Compromised => r("[policy] bad_signatures_threshold, bad_signatures_window", "bad signatures over the agent's own channel reaching the threshold: red until cleared"),
        C::SeptVeNotDisabled => r("TDATTRIBUTES", "a TD that does not disable SEPT #VE is refused"),
        _ => r("policy", "see the reason's detail"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_names_a_setting() {
        for c in [
            ReasonCode::Blinded,
            ReasonCode::Rtmr3Mismatch,
            ReasonCode::MrtdNotAttested,
            ReasonCode::TcbStatus,
        ] {
            let rule = rule_for(c);
            assert!(!rule.setting.is_empty() && !rule.says.is_empty());
        }
        assert_eq!(
            rule_for(ReasonCode::Blinded).setting,
            "[policy] missed_heartbeats"
        );
    }
}
