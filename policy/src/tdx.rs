//! TDX evidence policy: what a verified quote must also satisfy.
//!
//! Input is a quote that already passed DCAP verification (signatures, chain,
//! collateral); this decides whether its contents are acceptable. Fail closed: a
//! status not named in the policy is refused, and unknown statuses are never allowed.

use evidence::report::HexBytes;
use evidence::verdict::{Reason, ReasonCode, Status, Verdict};
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
}

impl Default for TdxPolicy {
    fn default() -> Self {
        TdxPolicy {
            allowed_tcb_statuses: vec!["UpToDate".into()],
            warn_tcb_statuses: Vec::new(),
            mrtd_allowlist: Vec::new(),
            rtmr_allowlists: Default::default(),
        }
    }
}

/// The facts of a verified quote and its report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdxFacts {
    /// The TCB status DCAP verification gave. `None` for a TDREPORT (tier
    /// `tdx-report`), which has none: that is a warning, never green.
    pub tcb_status: Option<String>,
    pub advisory_ids: Vec<String>,
    pub td_attributes: [u8; 8],
    pub report_data: [u8; 64],
    /// `evidence::report_data(envelope)` of the report the quote came with.
    pub expected_report_data: [u8; 64],
    pub mrtd: [u8; 48],
    pub rtmrs: [[u8; 48]; 4],
    /// RTMR3 replayed from the agent's event log.
    pub rtmr3_replayed: [u8; 48],
    /// MRTD was found attested by the trusted repository's build provenance.
    pub mrtd_attested: bool,
}

pub fn evaluate_tdx(p: &TdxPolicy, f: &TdxFacts) -> Verdict {
    let mut reasons = Vec::new();
    let mut push = |code, status, detail: String| {
        reasons.push(Reason {
            code,
            status,
            detail,
        })
    };
    match &f.tcb_status {
        None => push(
            ReasonCode::TdReportOnly,
            Status::Warn,
            "a TDREPORT, not a quote: no TCB status, and its fields cannot be verified remotely"
                .into(),
        ),
        Some(s) if p.allowed_tcb_statuses.contains(s) => {}
        Some(s) if p.warn_tcb_statuses.contains(s) => push(
            ReasonCode::TcbStatus,
            Status::Warn,
            format!(
                "TCB status {s} (advisories {:?}) is allowed with a warning",
                f.advisory_ids
            ),
        ),
        Some(s) => push(
            ReasonCode::TcbStatus,
            Status::Fail,
            format!(
                "TCB status {s} (advisories {:?}) is not allowed",
                f.advisory_ids
            ),
        ),
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
}
