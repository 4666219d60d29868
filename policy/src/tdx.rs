//! TDX evidence policy: what a verified quote must also satisfy.
//!
//! Input is a quote that already passed DCAP verification (signatures, chain,
//! collateral); this decides whether its contents are acceptable. Fail closed: a
//! status not named in the policy is refused, and unknown statuses are never allowed.

use evidence::report::HexBytes;
use evidence::verdict::{Reason, ReasonCode, Status, Verdict};
use provenant_base::clock::UnixSecs;
use serde::{Deserialize, Serialize};

/// The operator's TDX policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TdxPolicy {
    /// TCB statuses accepted as green.
    pub allowed_tcb_statuses: Vec<String>,
    /// TCB statuses accepted with a warning (yellow), e.g. `SWHardeningNeeded`.
    pub warn_tcb_statuses: Vec<String>,
    /// If non-empty, MRTD must be one of these (hex, 48 bytes).
    pub mrtd_allowlist: Vec<HexBytes<48>>,
    /// If non-empty, RTMR0, RTMR1, RTMR2 must each be one of the listed values.
    pub rtmr_allowlists: [Vec<HexBytes<48>>; 3],
    /// What an agent is once the collateral its TCB status was established with is
    /// past `nextUpdate` and nothing fresher confirmed it: `red` (default) or
    /// `yellow`.
    pub expired_collateral: AgedStatus,
    /// MRSERVICETDs (hex, 48 bytes) a TD 1.5 may be bound to. A TD bound to any
    /// other service TD is refused (`ServiceTdBound`); one bound to a listed service
    /// TD is accepted with a warning, unless `trusted_mrservicetd` lists it too.
    pub allowed_mrservicetd: Vec<HexBytes<48>>,
    /// MRSERVICETDs whose binding is green. A trusted MRSERVICETD is also allowed.
    pub trusted_mrservicetd: Vec<HexBytes<48>>,
    /// Accept a migratable TD (TDATTRIBUTES MIGRATABLE). Default false.
    pub allow_migratable: bool,
    /// Accept a TD with TDATTRIBUTES SERVTD_EXT (service TDs bound after launch).
    /// Default false.
    pub allow_servtd_ext: bool,
}

/// The colour aged evidence turns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgedStatus {
    /// Red: not acceptable until fresh evidence arrives.
    #[default]
    Red,
    /// Yellow: acceptable with a warning.
    Yellow,
}

impl AgedStatus {
    fn status(self) -> Status {
        match self {
            AgedStatus::Red => Status::Fail,
            AgedStatus::Yellow => Status::Warn,
        }
    }
}

impl Default for TdxPolicy {
    fn default() -> Self {
        TdxPolicy {
            allowed_tcb_statuses: vec!["UpToDate".into()],
            warn_tcb_statuses: Vec::new(),
            mrtd_allowlist: Vec::new(),
            rtmr_allowlists: Default::default(),
            expired_collateral: AgedStatus::default(),
            allowed_mrservicetd: Vec::new(),
            trusted_mrservicetd: Vec::new(),
            allow_migratable: false,
            allow_servtd_ext: false,
        }
    }
}

impl TdxPolicy {
    /// Whether a TD bound to `mrservicetd` may be accepted (allowed or trusted).
    pub fn service_td_allowed(&self, mrservicetd: &[u8; 48]) -> bool {
        self.allowed_mrservicetd
            .iter()
            .chain(&self.trusted_mrservicetd)
            .any(|m| &m.0 == mrservicetd)
    }
}

/// What a TD is bound to beyond itself, read from a verified quote body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TdBinding {
    /// MRSERVICETD of a TD 1.5 body when non-zero (`None`: TD 1.0, or unbound).
    pub mrservicetd: Option<[u8; 48]>,
    /// TDATTRIBUTES MIGRATABLE.
    pub migratable: bool,
    /// TDATTRIBUTES SERVTD_EXT.
    pub servtd_ext: bool,
}

/// The reasons a TD's bindings give under the policy: a migratable TD or one with
/// SERVTD_EXT fails unless allowed; a TD bound to a service TD fails unless the
/// MRSERVICETD is allowed, and is yellow unless it is trusted.
pub fn binding_reasons(p: &TdxPolicy, b: &TdBinding) -> Vec<Reason> {
    let mut reasons = Vec::new();
    if b.migratable && !p.allow_migratable {
        reasons.push(Reason::new(
            ReasonCode::MigratableTd,
            Status::Fail,
            "TDATTRIBUTES MIGRATABLE is set: a migration TD can move this TD's state to \
             another platform ([policy.tdx] allow_migratable is false)",
        ));
    }
    if b.servtd_ext && !p.allow_servtd_ext {
        reasons.push(Reason::new(
            ReasonCode::ServTdExt,
            Status::Fail,
            "TDATTRIBUTES SERVTD_EXT is set: service TDs may be bound to this TD after \
             launch ([policy.tdx] allow_servtd_ext is false)",
        ));
    }
    if let Some(m) = &b.mrservicetd {
        let hex = hex::encode(m);
        if p.trusted_mrservicetd.iter().any(|t| &t.0 == m) {
            // Trusted: green, nothing to say.
        } else if p.service_td_allowed(m) {
            reasons.push(Reason::new(
                ReasonCode::ServiceTdBound,
                Status::Warn,
                format!(
                    "the TD is bound to service TD MRSERVICETD {hex}, allowed by [policy.tdx] \
                     allowed_mrservicetd but not listed in trusted_mrservicetd"
                ),
            ));
        } else {
            reasons.push(Reason::new(
                ReasonCode::ServiceTdBound,
                Status::Fail,
                format!(
                    "the TD is bound to service TD MRSERVICETD {hex}, which [policy.tdx] \
                     allowed_mrservicetd does not list"
                ),
            ));
        }
    }
    reasons
}

/// Advisory ids as people read them: `INTEL-SA-00960, INTEL-SA-00982`, or `none`.
pub fn advisory_list(advisory_ids: &[String]) -> String {
    if advisory_ids.is_empty() {
        "none".into()
    } else {
        advisory_ids.join(", ")
    }
}

/// The facts of a verified quote and its report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdxFacts {
    /// The TCB status DCAP verification gave. `None` for a TDREPORT (tier
    /// `tdx-report`), which has none: that is a warning, never green.
    pub tcb_status: Option<String>,
    /// The Intel security advisories (`INTEL-SA-..`) DCAP named with the status.
    pub advisory_ids: Vec<String>,
    /// TDATTRIBUTES from the quote.
    pub td_attributes: [u8; 8],
    /// REPORTDATA from the quote.
    pub report_data: [u8; 64],
    /// `evidence::report_data(envelope)` of the report the quote came with.
    pub expected_report_data: [u8; 64],
    /// MRTD from the quote.
    pub mrtd: [u8; 48],
    /// RTMR0–3 from the quote.
    pub rtmrs: [[u8; 48]; 4],
    /// RTMR3 replayed from the agent's event log.
    pub rtmr3_replayed: [u8; 48],
    /// MRTD was found attested by the trusted repository's build provenance.
    pub mrtd_attested: bool,
    /// RTMR0..2 found equal to the ones the build provenance attests (`match_rtmrs`).
    pub rtmrs_attested: [bool; 3],
    /// Service TD binding and the migration attributes.
    pub binding: TdBinding,
}

/// The TCB status's reason, if it is not plain green: a TDREPORT has none (warning),
/// a status in `warn_tcb_statuses` is a warning, any status not allowed fails.
pub fn tcb_reason(
    p: &TdxPolicy,
    tcb_status: Option<&str>,
    advisory_ids: &[String],
) -> Option<Reason> {
    let (status, detail) = match tcb_status {
        None => (
            Status::Warn,
            "a TDREPORT, not a quote: no TCB status, and its fields cannot be verified remotely"
                .to_string(),
        ),
        Some(s) if p.allowed_tcb_statuses.iter().any(|a| a == s) => return None,
        Some(s) if p.warn_tcb_statuses.iter().any(|a| a == s) => (
            Status::Warn,
            format!(
                "TCB status {s} (advisories: {}) is allowed with a warning",
                advisory_list(advisory_ids)
            ),
        ),
        Some(s) => (
            Status::Fail,
            format!(
                "TCB status {s} (advisories: {}) is not allowed",
                advisory_list(advisory_ids)
            ),
        ),
    };
    Some(Reason {
        code: if tcb_status.is_none() {
            ReasonCode::TdReportOnly
        } else {
            ReasonCode::TcbStatus
        },
        status,
        detail,
    })
}

/// What ages in stored TDX evidence, all Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TdxAge {
    /// When the agent's quote (or TDREPORT) was received and verified.
    pub quoted_at: u64,
    /// The earliest `nextUpdate` of the collateral (TCB info, QE identity, CRLs) the
    /// TCB status was last established with. `None`: not known (a TDREPORT, or a
    /// record from an older version).
    pub collateral_next_update: Option<u64>,
    /// The earliest `notAfter` in the quote's PCK chain.
    pub pck_not_after: Option<u64>,
    /// Until when MRTD's build provenance answer holds, where provenance pinned it.
    pub provenance_until: Option<u64>,
}

/// The reasons stored evidence gives at `now`: collateral past its
/// `nextUpdate` (`expired_collateral`: red by default), a PCK certificate past its
/// `notAfter` (red), a quote older than `3 x requote_interval` (yellow), provenance
/// not confirmed since its answer expired (yellow). Pure: the caller passes `now`.
pub fn age_reasons(
    p: &TdxPolicy,
    requote_interval: std::time::Duration,
    a: &TdxAge,
    now: UnixSecs,
) -> Vec<Reason> {
    // `TdxAge` holds unsigned seconds (collateral and certificate times are after 1970).
    let now = now.unsigned();
    let mut reasons = Vec::new();
    if let Some(t) = a.collateral_next_update.filter(|&t| now >= t) {
        reasons.push(Reason {
            code: ReasonCode::CollateralExpired,
            status: p.expired_collateral.status(),
            detail: format!(
                "the collateral that established the TCB status expired {}s ago (nextUpdate {t}) and no fresh collateral confirmed it",
                now - t
            ),
        });
    }
    if let Some(t) = a.pck_not_after.filter(|&t| now > t) {
        reasons.push(Reason {
            code: ReasonCode::PckExpired,
            status: Status::Fail,
            detail: format!(
                "a certificate of the quote's PCK chain expired {}s ago (notAfter {t})",
                now - t
            ),
        });
    }
    let limit = requote_interval.as_secs().max(1).saturating_mul(3);
    let age = now.saturating_sub(a.quoted_at);
    if age > limit {
        reasons.push(Reason {
            code: ReasonCode::QuoteStale,
            status: Status::Warn,
            detail: format!(
                "the last verified quote is {age}s old (limit 3 x requote_interval = {limit}s)"
            ),
        });
    }
    if let Some(t) = a.provenance_until.filter(|&t| now >= t) {
        reasons.push(Reason {
            code: ReasonCode::ProvenanceStale,
            status: Status::Warn,
            detail: format!(
                "MRTD's build provenance was not confirmed again since its answer expired {}s ago",
                now - t
            ),
        });
    }
    reasons
}

/// Judges a verified quote's facts under the policy: TCB status, TUD bits, the
/// REPORTDATA binding, MRTD and RTMR allowlists or provenance, and the RTMR3 replay.
/// The status is the worst among the reasons.
pub fn evaluate_tdx(p: &TdxPolicy, f: &TdxFacts) -> Verdict {
    let mut reasons = Vec::new();
    let mut push = |code, status, detail: String| reasons.push(Reason::new(code, status, detail));
    if let Some(r) = tcb_reason(p, f.tcb_status.as_deref(), &f.advisory_ids) {
        push(r.code, r.status, r.detail);
    }
    // TUD bits (TDATTRIBUTES byte 0): DEBUG is bit 0; any of them means the host can
    // inspect or alter the TD.
    if f.td_attributes[0] != 0 {
        push(
            ReasonCode::DebugTd,
            Status::Fail,
            format!(
                "TDATTRIBUTES TUD bits set ({:#04x}): the TD is debuggable",
                f.td_attributes[0]
            ),
        );
    }
    for r in binding_reasons(p, &f.binding) {
        push(r.code, r.status, r.detail);
    }
    if f.report_data != f.expected_report_data {
        push(
            ReasonCode::ReportDataMismatch,
            Status::Fail,
            "the quote's REPORTDATA is not SHA-512 of the report's DSSE PAE".into(),
        );
    }
    if p.mrtd_allowlist.is_empty() && !f.mrtd_attested {
        push(
            ReasonCode::MrtdUnpinned,
            Status::Warn,
            format!(
                "MRTD {} is pinned by neither build provenance nor [policy.tdx] mrtd_allowlist",
                hex::encode(f.mrtd)
            ),
        );
    }
    if !p.mrtd_allowlist.is_empty() && !p.mrtd_allowlist.iter().any(|m| m.0 == f.mrtd) {
        push(
            ReasonCode::MeasurementNotAllowed,
            Status::Fail,
            format!("MRTD {} is not on the allowlist", hex::encode(f.mrtd)),
        );
    }
    for (i, list) in p.rtmr_allowlists.iter().enumerate() {
        if !list.is_empty() && !list.iter().any(|m| m.0 == f.rtmrs[i]) {
            push(
                ReasonCode::MeasurementNotAllowed,
                Status::Fail,
                format!(
                    "RTMR{i} {} is not on the allowlist",
                    hex::encode(f.rtmrs[i])
                ),
            );
        }
    }
    // RTMR1 (kernel) and RTMR2 (command line, initrd): a genuine TD on our firmware
    // could still boot any kernel. Unpinned is a warning, never silent green.
    let unpinned: Vec<String> = [1usize, 2]
        .into_iter()
        .filter(|&i| p.rtmr_allowlists[i].is_empty() && !f.rtmrs_attested[i])
        .map(|i| format!("RTMR{i}"))
        .collect();
    if !unpinned.is_empty() {
        push(
            ReasonCode::RtmrsUnpinned,
            Status::Warn,
            format!(
                "{} (kernel, initrd, command line) pinned by neither build provenance \
                 ([provenance] match_rtmrs) nor [policy.tdx] rtmr_allowlists",
                unpinned.join(" and ")
            ),
        );
    }
    if f.rtmr3_replayed != f.rtmrs[3] {
        push(
            ReasonCode::Rtmr3Mismatch,
            Status::Fail,
            "RTMR3 replayed from the event log differs from the quoted RTMR3".into(),
        );
    }
    Verdict::from_reasons(reasons)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> TdxFacts {
        TdxFacts {
            tcb_status: Some("UpToDate".into()),
            advisory_ids: vec![],
            td_attributes: [0, 0, 0, 0x10, 0, 0, 0, 0],
            report_data: [7; 64],
            expected_report_data: [7; 64],
            mrtd: [1; 48],
            rtmrs: [[2; 48], [3; 48], [4; 48], [5; 48]],
            rtmr3_replayed: [5; 48],
            mrtd_attested: true,
            rtmrs_attested: [false, true, true],
            binding: TdBinding::default(),
        }
    }

    fn codes(v: &Verdict) -> Vec<ReasonCode> {
        v.reasons.iter().map(|r| r.code).collect()
    }

    #[test]
    fn good_quote_is_green() {
        let v = evaluate_tdx(&TdxPolicy::default(), &facts());
        assert_eq!(v.status, Status::Pass, "{v:?}");
    }

    #[test]
    fn tcb_statuses_default_to_up_to_date_only() {
        let mut f = facts();
        f.tcb_status = Some("SWHardeningNeeded".into());
        assert_eq!(evaluate_tdx(&TdxPolicy::default(), &f).status, Status::Fail);
        let p = TdxPolicy {
            warn_tcb_statuses: vec!["SWHardeningNeeded".into()],
            ..TdxPolicy::default()
        };
        assert_eq!(evaluate_tdx(&p, &f).status, Status::Warn);
        f.tcb_status = Some("Revoked".into());
        assert_eq!(evaluate_tdx(&p, &f).status, Status::Fail);
        // A TDREPORT has no TCB status: a warning, never green, whatever the policy.
        f.tcb_status = None;
        let v = evaluate_tdx(&p, &f);
        assert_eq!(v.status, Status::Warn);
        assert_eq!(codes(&v), vec![ReasonCode::TdReportOnly]);
    }

    #[test]
    fn an_unpinned_mrtd_is_a_warning() {
        let mut f = facts();
        f.mrtd_attested = false;
        let v = evaluate_tdx(&TdxPolicy::default(), &f);
        assert_eq!(v.status, Status::Warn);
        assert_eq!(codes(&v), vec![ReasonCode::MrtdUnpinned]);
        // An allowlist pins it (and refuses any other MRTD).
        let p = TdxPolicy {
            mrtd_allowlist: vec![HexBytes([1; 48])],
            ..TdxPolicy::default()
        };
        assert_eq!(evaluate_tdx(&p, &f).status, Status::Pass);
        f.mrtd = [9; 48];
        assert_eq!(
            codes(&evaluate_tdx(&p, &f)),
            vec![ReasonCode::MeasurementNotAllowed]
        );
    }

    #[test]
    fn each_check_fails_on_its_own() {
        let p = TdxPolicy {
            mrtd_allowlist: vec![HexBytes([1; 48])],
            rtmr_allowlists: [vec![HexBytes([2; 48])], vec![], vec![]],
            ..TdxPolicy::default()
        };
        assert_eq!(evaluate_tdx(&p, &facts()).status, Status::Pass);
        type Mutation = fn(&mut TdxFacts);
        let cases: Vec<(Mutation, ReasonCode)> = vec![
            (|f| f.td_attributes[0] = 1, ReasonCode::DebugTd),
            (|f| f.td_attributes[0] = 0x80, ReasonCode::DebugTd),
            (|f| f.report_data[63] ^= 1, ReasonCode::ReportDataMismatch),
            (|f| f.mrtd[0] ^= 1, ReasonCode::MeasurementNotAllowed),
            (|f| f.rtmrs[0][0] ^= 1, ReasonCode::MeasurementNotAllowed),
            (|f| f.rtmr3_replayed[0] ^= 1, ReasonCode::Rtmr3Mismatch),
        ];
        for (mutate, code) in cases {
            let mut f = facts();
            mutate(&mut f);
            let v = evaluate_tdx(&p, &f);
            assert_eq!(v.status, Status::Fail);
            assert_eq!(codes(&v), vec![code]);
        }
    }

    #[test]
    fn unpinned_kernel_registers_are_a_warning() {
        let mut f = facts();
        f.rtmrs_attested = [false; 3];
        let v = evaluate_tdx(&TdxPolicy::default(), &f);
        assert_eq!(v.status, Status::Warn);
        assert_eq!(codes(&v), vec![ReasonCode::RtmrsUnpinned]);
        assert!(v.reasons[0].detail.contains("RTMR1 and RTMR2"), "{v:?}");
        // One pinned by provenance, the other by an allowlist: pinned.
        f.rtmrs_attested = [false, true, false];
        let p = TdxPolicy {
            rtmr_allowlists: [vec![], vec![], vec![HexBytes([4; 48])]],
            ..TdxPolicy::default()
        };
        assert_eq!(evaluate_tdx(&p, &f).status, Status::Pass);
        // RTMR2 alone unpinned still warns, naming it.
        let v = evaluate_tdx(&TdxPolicy::default(), &f);
        assert_eq!(codes(&v), vec![ReasonCode::RtmrsUnpinned]);
        assert!(v.reasons[0].detail.starts_with("RTMR2 "), "{v:?}");
    }

    #[test]
    fn service_td_bindings_follow_the_lists() {
        let mut f = facts();
        f.binding.mrservicetd = Some([9; 48]);
        let v = evaluate_tdx(&TdxPolicy::default(), &f);
        assert_eq!(v.status, Status::Fail);
        assert_eq!(codes(&v), vec![ReasonCode::ServiceTdBound]);
        assert!(
            v.reasons[0].detail.contains(&hex::encode([9u8; 48])),
            "{v:?}"
        );
        let allowed = TdxPolicy {
            allowed_mrservicetd: vec![HexBytes([9; 48])],
            ..TdxPolicy::default()
        };
        let v = evaluate_tdx(&allowed, &f);
        assert_eq!(v.status, Status::Warn);
        assert_eq!(codes(&v), vec![ReasonCode::ServiceTdBound]);
        let trusted = TdxPolicy {
            trusted_mrservicetd: vec![HexBytes([9; 48])],
            ..TdxPolicy::default()
        };
        assert_eq!(evaluate_tdx(&trusted, &f).status, Status::Pass);
        // Another service TD is refused whatever the lists hold.
        f.binding.mrservicetd = Some([8; 48]);
        assert_eq!(evaluate_tdx(&allowed, &f).status, Status::Fail);
        assert_eq!(evaluate_tdx(&trusted, &f).status, Status::Fail);
    }

    #[test]
    fn migratable_and_servtd_ext_fail_by_default() {
        for (b, code) in [
            (
                TdBinding {
                    migratable: true,
                    ..TdBinding::default()
                },
                ReasonCode::MigratableTd,
            ),
            (
                TdBinding {
                    servtd_ext: true,
                    ..TdBinding::default()
                },
                ReasonCode::ServTdExt,
            ),
        ] {
            let mut f = facts();
            f.binding = b;
            let v = evaluate_tdx(&TdxPolicy::default(), &f);
            assert_eq!((v.status, codes(&v)), (Status::Fail, vec![code]));
            let open = TdxPolicy {
                allow_migratable: true,
                allow_servtd_ext: true,
                ..TdxPolicy::default()
            };
            assert_eq!(evaluate_tdx(&open, &f).status, Status::Pass);
        }
    }

    #[test]
    fn advisories_read_as_a_plain_list() {
        let ids = vec!["INTEL-SA-00960".to_string(), "INTEL-SA-00982".to_string()];
        let r = tcb_reason(&TdxPolicy::default(), Some("OutOfDate"), &ids).unwrap();
        assert_eq!(
            r.detail,
            "TCB status OutOfDate (advisories: INTEL-SA-00960, INTEL-SA-00982) is not allowed"
        );
        assert_eq!(advisory_list(&[]), "none");
    }

    #[test]
    fn evidence_ages() {
        let p = TdxPolicy::default();
        let hour = std::time::Duration::from_secs(3600);
        let a = TdxAge {
            quoted_at: 1000,
            collateral_next_update: Some(5000),
            pck_not_after: Some(9000),
            provenance_until: Some(7000),
        };
        let at = |now| {
            age_reasons(&p, hour, &a, UnixSecs(now))
                .iter()
                .map(|r| (r.code, r.status))
                .collect::<Vec<_>>()
        };
        assert_eq!(at(4999), vec![]);
        assert_eq!(
            at(5000),
            vec![(ReasonCode::CollateralExpired, Status::Fail)]
        );
        assert_eq!(
            at(9001),
            vec![
                (ReasonCode::CollateralExpired, Status::Fail),
                (ReasonCode::PckExpired, Status::Fail),
                (ReasonCode::ProvenanceStale, Status::Warn),
            ]
        );
        assert!(!at(1000 + 3 * 3600).contains(&(ReasonCode::QuoteStale, Status::Warn)));
        assert!(at(1000 + 3 * 3600 + 1).contains(&(ReasonCode::QuoteStale, Status::Warn)));
        let yellow = TdxPolicy {
            expired_collateral: AgedStatus::Yellow,
            ..TdxPolicy::default()
        };
        assert_eq!(
            age_reasons(&yellow, hour, &a, UnixSecs(5000))[0].status,
            Status::Warn
        );
        // Unknown dates (an older record) give nothing but staleness.
        assert!(age_reasons(
            &p,
            hour,
            &TdxAge {
                quoted_at: 1000,
                ..TdxAge::default()
            },
            UnixSecs(2000)
        )
        .is_empty());
    }
}
