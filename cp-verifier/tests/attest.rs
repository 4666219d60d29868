//! TDX evidence at registration (`cp_verifier::attest`), on a real quote with its real
//! collateral at its recorded time: the success path, and each refusal with its kind.

use std::path::PathBuf;

use cp_verifier::attest::TdxVerifier;
use cp_verifier::collateral::{CollateralSource, OfflineConfig};
use cp_verifier::error::ApiError;
use evidence::eventlog::Rtmr3Event;
use policy::tdx::TdxPolicy;

fn data_path(name: &str) -> PathBuf {
    format!(
        "{}/../evidence/tests/data/tdx/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
    .into()
}

/// expected.json: UpToDate at this time.
const AT_NS: u64 = 1_752_919_234 * 1_000_000_000;

fn quote() -> Vec<u8> {
    std::fs::read(data_path("tdx_quote")).unwrap()
}

fn report_data(q: &[u8]) -> [u8; 64] {
    evidence::tdx::Quote::parse(q).unwrap().body.report_data.0
}

/// The default policy with this quote's MRTD allowlisted (pinned).
fn pinned() -> TdxPolicy {
    TdxPolicy {
        mrtd_allowlist: vec![evidence::tdx::Quote::parse(&quote()).unwrap().body.mrtd],
        ..TdxPolicy::default()
    }
}

fn verifier(policy: TdxPolicy) -> TdxVerifier {
    let source = CollateralSource::offline(OfflineConfig::new(
        None,
        Some(data_path("tdx_quote_collateral.json")),
    ))
    .unwrap();
    TdxVerifier::new(None, Some(source), policy)
}

fn kind(r: Result<cp_verifier::attest::TdxAttestation, ApiError>) -> String {
    let e = r.unwrap_err();
    assert_eq!(e.status(), 403, "{e}");
    e.kind().to_string()
}

#[tokio::test]
async fn a_bound_up_to_date_quote_is_accepted() {
    let q = quote();
    let a = verifier(pinned())
        .verify_quote(&q, None, report_data(&q), AT_NS)
        .await
        .unwrap();
    assert!(a.verified);
    assert_eq!(a.tcb_status.as_deref(), Some("UpToDate"));
    assert_eq!(
        a.mrtd.to_hex(),
        "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7"
    );
    assert!(a.fmspc.is_some());
    assert_eq!(a.event_log_events, 0);
    assert!(a.reasons.is_empty(), "{:?}", a.reasons);
    assert_eq!(a.verified_at_ns, AT_NS);
    // Not pinned by anything: accepted, with a warning.
    let a = verifier(TdxPolicy::default())
        .verify_quote(&q, None, report_data(&q), AT_NS)
        .await
        .unwrap();
    assert_eq!(a.reasons.len(), 1);
    assert_eq!(a.reasons[0].code, policy::ReasonCode::MrtdUnpinned);
}

#[tokio::test]
async fn each_failed_check_is_a_typed_403() {
    let q = quote();
    let rd = report_data(&q);
    let v = verifier(TdxPolicy::default());

    // The quote binds some other report.
    let mut other = rd;
    other[0] ^= 1;
    assert_eq!(
        kind(v.verify_quote(&q, None, other, AT_NS).await),
        "ReportDataMismatch"
    );

    // The event log claims a bound event the quoted RTMR3 (all zero) never saw.
    let log = format!(
        "{}\n",
        serde_json::to_string(&Rtmr3Event::new(0, "agent_binary", &"aa".repeat(32), true)).unwrap()
    );
    assert_eq!(
        kind(v.verify_quote(&q, Some(log.as_str()), rd, AT_NS).await),
        "Rtmr3Mismatch"
    );
    // The same event unbound replays to zero: accepted.
    let unbound = log.replace("\"bound\":true", "\"bound\":false");
    let a = v
        .verify_quote(&q, Some(unbound.as_str()), rd, AT_NS)
        .await
        .unwrap();
    assert_eq!((a.event_log_events, a.event_log_bound), (1, 0));
    assert_eq!(
        kind(v.verify_quote(&q, Some("{not json"), rd, AT_NS).await),
        "MalformedEventLog"
    );

    // A byte of the body flipped: the quote signature fails.
    let mut bad = q.clone();
    bad[48 + 136] ^= 1;
    assert_eq!(
        kind(v.verify_quote(&bad, None, rd, AT_NS).await),
        "QuoteVerificationFailed"
    );
    assert_eq!(
        kind(v.verify_quote(&q[..100], None, rd, AT_NS).await),
        "MalformedQuote"
    );

    // Outside the collateral's window the TCB status is unknown: refused.
    let late = AT_NS + 86_400 * 1_000_000_000;
    assert_eq!(
        kind(v.verify_quote(&q, None, rd, late).await),
        "CollateralUnavailable"
    );
    // No collateral source at all: refused, never waved through.
    let none = TdxVerifier::new(None, None, TdxPolicy::default());
    assert_eq!(
        kind(none.verify_quote(&q, None, rd, AT_NS).await),
        "CollateralUnavailable"
    );

    // A policy that allows only another MRTD.
    let p = TdxPolicy {
        mrtd_allowlist: vec![evidence::report::HexBytes([7; 48])],
        ..TdxPolicy::default()
    };
    assert_eq!(
        kind(verifier(p).verify_quote(&q, None, rd, AT_NS).await),
        "MeasurementNotAllowed"
    );
    // A policy that does not accept UpToDate (a stricter list than the quote meets).
    let p = TdxPolicy {
        allowed_tcb_statuses: vec![],
        ..TdxPolicy::default()
    };
    assert_eq!(
        kind(verifier(p).verify_quote(&q, None, rd, AT_NS).await),
        "TcbStatus"
    );
    // Allowed with a warning: accepted, and the warning is kept for the verdict.
    let p = TdxPolicy {
        allowed_tcb_statuses: vec![],
        warn_tcb_statuses: vec!["UpToDate".into()],
        ..pinned()
    };
    let a = verifier(p).verify_quote(&q, None, rd, AT_NS).await.unwrap();
    assert_eq!(a.reasons.len(), 1);
    assert_eq!(a.reasons[0].code, policy::ReasonCode::TcbStatus);
}

#[tokio::test]
async fn a_configured_root_replaces_intels() {
    let q = quote();
    // Any other root (here a fresh self-signed one) refuses Intel-signed quotes.
    let other = rcgen::generate_simple_self_signed(vec!["x".into()]).unwrap();
    let source = CollateralSource::offline(OfflineConfig::new(
        None,
        Some(data_path("tdx_quote_collateral.json")),
    ))
    .unwrap();
    let v = TdxVerifier::new(
        Some(other.cert.der().to_vec()),
        Some(source),
        TdxPolicy::default(),
    );
    assert_eq!(
        kind(v.verify_quote(&q, None, report_data(&q), AT_NS).await),
        "QuoteVerificationFailed"
    );
}

#[test]
fn a_tdreport_is_checked_for_consistency_and_kept_as_claims() {
    let mut t = vec![0u8; evidence::tdreport::TDREPORT_LEN];
    t[0] = 0x81;
    t[128..192].copy_from_slice(&[9; 64]);
    t[528..576].copy_from_slice(&[3; 48]);
    let v = verifier(TdxPolicy::default());
    let a = v.check_tdreport(&t, None, [9; 64], AT_NS).unwrap();
    assert!(!a.verified);
    assert_eq!(a.tcb_status, None);
    assert_eq!(a.mrtd.0, [3; 48]);
    assert_eq!(a.reasons[0].code, policy::ReasonCode::TdReportOnly);
    assert_eq!(
        kind(v.check_tdreport(&t, None, [8; 64], AT_NS)),
        "ReportDataMismatch"
    );
    t[512] = 1; // DEBUG
    assert_eq!(kind(v.check_tdreport(&t, None, [9; 64], AT_NS)), "DebugTd");
    assert_eq!(
        kind(v.check_tdreport(&t[..1000], None, [9; 64], AT_NS)),
        "MalformedQuote"
    );
}
