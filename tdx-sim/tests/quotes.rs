//! Simulated quotes verify with dcap-qvl against the checked-in TEST root and
//! collateral, and only against it.

use dcap_qvl::verify::QuoteVerifier;
use dcap_qvl::QuoteCollateralV3;
use tdx_sim::{platform, TdReport, TestPki};

fn collateral() -> QuoteCollateralV3 {
    serde_json::from_slice(TestPki::collateral_json()).unwrap()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn verify(quote: &[u8], at: u64) -> Result<dcap_qvl::verify::VerifiedReport, String> {
    QuoteVerifier::new(TestPki::root_ca_der().to_vec())
        .verify(quote, &collateral(), at)
        .map_err(|e| format!("{e:#}"))
}

#[test]
fn v4_and_v5_quotes_verify_up_to_date_under_the_test_root() {
    let body = TdReport::new().with_report_data([7; 64]);
    for q in [body.quote_v4(), body.quote_v5()] {
        for at in [now(), platform::VALID_FROM_UNIX, platform::VALID_UNTIL_UNIX] {
            let r = verify(&q, at).unwrap();
            assert_eq!(r.status, "UpToDate", "at {at}");
            assert!(r.advisory_ids.is_empty());
            let td = r.report.as_td10().unwrap();
            assert_eq!(td.report_data, [7; 64]);
            assert_eq!(td.mr_td, body.mrtd);
        }
    }
}

#[test]
fn outside_the_validity_window_is_refused() {
    let q = TdReport::new().quote_v4();
    assert!(verify(&q, platform::VALID_FROM_UNIX - 1).is_err());
    assert!(verify(&q, platform::VALID_UNTIL_UNIX + 1).is_err());
}

#[test]
fn intel_root_refuses_simulated_quotes() {
    let q = TdReport::new().quote_v4();
    let e = QuoteVerifier::new_prod()
        .verify(&q, &collateral(), now())
        .unwrap_err();
    // The collateral's root CRL is signed by the TEST root, not Intel's.
    assert!(
        format!("{e:#}").to_lowercase().contains("signature"),
        "{e:#}"
    );
}

#[test]
fn low_svns_are_out_of_date() {
    let r = verify(&TdReport::new().out_of_date().quote_v4(), now()).unwrap();
    assert_eq!(r.status, "OutOfDate");
    assert_eq!(r.advisory_ids, [platform::OUT_OF_DATE_ADVISORY]);
    let r = verify(
        &TdReport::new()
            .with_tee_tcb_svn(platform::OUT_OF_DATE_MODULE_TEE_TCB_SVN)
            .quote_v4(),
        now(),
    )
    .unwrap();
    assert_eq!(r.status, "OutOfDate");
    assert_eq!(r.advisory_ids, [platform::OUT_OF_DATE_MODULE_ADVISORY]);
}

#[test]
fn debug_quotes_are_refused_by_dcap_qvl_default() {
    let e = verify(&TdReport::new().with_debug(true).quote_v4(), now()).unwrap_err();
    assert!(e.contains("Debug"), "{e}");
}
