//! Quotes from the TDX simulator (tdx-sim) through the production verification code:
//! accepted only under the TEST root passed explicitly, refused under Intel's.

use cp_verifier::attest::dcap::{parse_collateral, verify_quote, verify_signatures, TcbStatus};
use evidence::tdx::{BodyKind, Quote};
use provenant_base::clock::UnixSecs;
use tdx_sim::quote::layout;
use tdx_sim::{platform, TdReport, TestPki};

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// 2030-01-01T00:00:00Z.
const FIXED: u64 = 1_893_456_000;

fn collateral() -> dcap_qvl::QuoteCollateralV3 {
    parse_collateral(TestPki::collateral_json()).unwrap()
}

fn root() -> Option<&'static [u8]> {
    Some(TestPki::root_ca_der())
}

fn body() -> TdReport {
    TdReport::new()
        .with_mrtd([0x11; 48])
        .with_rtmr(3, [0x33; 48])
        .with_mrconfigid([0x44; 48])
        .with_report_data(core::array::from_fn(|i| u8::try_from(i).unwrap()))
}

fn assert_fields(q: &Quote, b: &TdReport) {
    let t = &q.body;
    assert_eq!(t.kind, BodyKind::Td10);
    assert_eq!(t.tee_tcb_svn.0, b.tee_tcb_svn);
    assert_eq!(t.mrseam.0, b.mrseam);
    assert_eq!(t.mrsignerseam.0, b.mrsignerseam);
    assert_eq!(t.seam_attributes.0, b.seam_attributes);
    assert_eq!(t.td_attributes.0, b.td_attributes);
    assert_eq!(t.xfam.0, b.xfam);
    assert_eq!(t.mrtd.0, b.mrtd);
    assert_eq!(t.mrconfigid.0, b.mrconfigid);
    assert_eq!(t.mrowner.0, b.mrowner);
    assert_eq!(t.mrownerconfig.0, b.mrownerconfig);
    for i in 0..4 {
        assert_eq!(t.rtmrs[i].0, b.rtmrs[i], "rtmr{i}");
    }
    assert_eq!(t.report_data.0, b.report_data);
    assert!(!t.debug());
    assert_eq!(q.header.att_key_type, 2);
    assert_eq!(q.header.tee_type, 0x81);
    assert_eq!(q.header.qe_vendor_id.0, platform::INTEL_QE_VENDOR_ID);
    assert_eq!(
        q.signature.pck_chain_pem,
        TestPki::pck_chain_pem().as_bytes()
    );
    assert_eq!(q.trailing_bytes, 0);
}

#[test]
fn simulated_quotes_verify_up_to_date_under_the_test_root() {
    let b = body();
    let c = collateral();
    for (version, raw) in [(4, b.quote_v4()), (5, b.quote_v5())] {
        for at in [now(), FIXED] {
            let v = verify_quote(&raw, &c, UnixSecs::from_unsigned(at), root()).unwrap();
            assert_eq!(v.tcb_status(), &TcbStatus::UpToDate, "v{version} at {at}");
            assert!(v.advisory_ids().is_empty());
            assert_eq!(v.verified_at(), at);
            assert_eq!(v.quote().header.version, version);
            assert_fields(v.quote(), &b);
        }
    }
}

#[test]
fn the_collateral_window_is_2025_to_2049() {
    let raw = body().quote_v4();
    let c = collateral();
    for at in [platform::VALID_FROM_UNIX, platform::VALID_UNTIL_UNIX] {
        verify_quote(&raw, &c, UnixSecs::from_unsigned(at), root()).unwrap();
    }
    for at in [
        platform::VALID_FROM_UNIX - 1,
        platform::VALID_UNTIL_UNIX + 1,
    ] {
        let e = verify_quote(&raw, &c, UnixSecs::from_unsigned(at), root()).unwrap_err();
        assert_eq!(e.kind(), "QuoteVerificationFailed", "at {at}: {e}");
    }
}

#[test]
fn intel_root_refuses_simulated_quotes() {
    let raw = body().quote_v4();
    let e = verify_quote(&raw, &collateral(), UnixSecs::from_unsigned(now()), None).unwrap_err();
    assert_eq!(e.kind(), "QuoteVerificationFailed", "{e}");
    let e = verify_signatures(&raw, UnixSecs::from_unsigned(now()), None).unwrap_err();
    assert_eq!(e.kind(), "QuoteVerificationFailed", "{e}");
}

#[test]
fn the_checked_in_files_are_what_the_crate_embeds() {
    // Tests that configure the control plane "by path" get the same root and collateral.
    assert_eq!(
        std::fs::read(TestPki::root_ca_der_path()).unwrap(),
        TestPki::root_ca_der()
    );
    assert_eq!(
        std::fs::read(TestPki::collateral_path()).unwrap(),
        TestPki::collateral_json()
    );
    assert_ne!(
        TestPki::root_ca_der(),
        cp_verifier::attest::dcap::INTEL_SGX_ROOT_CA_DER
    );
}

#[test]
fn signatures_verify_under_the_test_root_without_collateral() {
    let b = body();
    let s = verify_signatures(&b.quote_v4(), UnixSecs::from_unsigned(now()), root()).unwrap();
    assert_eq!(s.fmspc(), Some(platform::FMSPC));
    assert_fields(s.quote(), &b);
    verify_signatures(&b.quote_v5(), UnixSecs::from_unsigned(FIXED), root()).unwrap();
}

#[test]
fn tampering_with_body_signature_or_qe_report_is_refused() {
    let raw = body().quote_v4();
    let c = collateral();
    for (what, off) in [
        ("header", 20),
        ("mrtd", layout::V4_MRTD + 5),
        ("rtmr3", layout::V4_RTMR3),
        ("report data", layout::V4_REPORT_DATA + 63),
        ("quote signature", layout::V4_SIGNATURE + 3),
        ("attestation key", layout::V4_ATTESTATION_KEY + 7),
        ("qe report", layout::V4_QE_REPORT + 100),
        ("qe report data", layout::V4_QE_REPORT + 320),
        ("qe report signature", layout::V4_QE_REPORT_SIGNATURE + 9),
    ] {
        let mut bad = raw.clone();
        bad[off] ^= 0x01;
        assert!(
            verify_quote(&bad, &c, UnixSecs::from_unsigned(now()), root()).is_err(),
            "{what} tampered, verify_quote accepted"
        );
        assert!(
            verify_signatures(&bad, UnixSecs::from_unsigned(now()), root()).is_err(),
            "{what} tampered, verify_signatures accepted"
        );
    }
    // The untouched quote still verifies: the refusals above are the tampering.
    verify_quote(&raw, &c, UnixSecs::from_unsigned(now()), root()).unwrap();
}

#[test]
fn low_svns_are_out_of_date() {
    let c = collateral();
    let v = verify_quote(
        &body().out_of_date().quote_v4(),
        &c,
        UnixSecs::from_unsigned(now()),
        root(),
    )
    .unwrap();
    assert_eq!(v.tcb_status(), &TcbStatus::OutOfDate);
    assert_eq!(v.advisory_ids(), [platform::OUT_OF_DATE_ADVISORY]);

    let module = body().with_tee_tcb_svn(platform::OUT_OF_DATE_MODULE_TEE_TCB_SVN);
    let v = verify_quote(
        &module.quote_v4(),
        &c,
        UnixSecs::from_unsigned(now()),
        root(),
    )
    .unwrap();
    assert_eq!(v.tcb_status(), &TcbStatus::OutOfDate);
    assert_eq!(v.advisory_ids(), [platform::OUT_OF_DATE_MODULE_ADVISORY]);
}

#[test]
fn debug_quotes_are_signed_but_carry_the_debug_bit() {
    let raw = body().with_debug(true).quote_v4();
    // Cryptographically valid: policy must be what rejects a debug TD.
    let s = verify_signatures(&raw, UnixSecs::from_unsigned(now()), root()).unwrap();
    assert!(s.quote().body.debug());
    assert_eq!(s.quote().body.tud_bits(), 1);
    // dcap-qvl's verifier (allow_debug off, as cp-verifier builds it) already refuses it.
    let e = verify_quote(&raw, &collateral(), UnixSecs::from_unsigned(now()), root()).unwrap_err();
    assert_eq!(e.kind(), "QuoteVerificationFailed");
    assert!(e.to_string().contains("Debug"), "{e}");
}

#[test]
fn trailing_bytes_after_the_signature_data_are_tolerated() {
    let b = body();
    let mut raw = b.quote_v4();
    let len = raw.len();
    raw.resize(20_000, 0);
    let v = verify_quote(&raw, &collateral(), UnixSecs::from_unsigned(now()), root()).unwrap();
    assert_eq!(v.quote().trailing_bytes, 20_000 - len);
    assert_eq!(v.quote().body.report_data.0, b.report_data);
}

#[test]
fn the_agents_configfs_provider_gets_a_verifying_quote_from_the_simulated_kernel() {
    use guest_agent::quote::{ConfigfsTsm, QuoteError, QuoteProvider};
    use tdx_sim::{Behaviour, ConfigfsKernel};

    let tsm = tempfile::tempdir().unwrap();
    let _k = ConfigfsKernel::start(tsm.path(), Behaviour::Honest, None).unwrap();
    let rd = [0x5a; 64];
    let raw = ConfigfsTsm::new(tsm.path())
        .evidence(&rd)
        .unwrap()
        .quote
        .unwrap();
    let v = verify_quote(&raw, &collateral(), UnixSecs::from_unsigned(now()), root()).unwrap();
    assert_eq!(v.quote().body.report_data.0, rd);

    // The tampering kernel's quote verifies, but without the agent's binding.
    let tsm = tempfile::tempdir().unwrap();
    let _k = ConfigfsKernel::start(tsm.path(), Behaviour::TamperReportData, None).unwrap();
    let raw = ConfigfsTsm::new(tsm.path())
        .evidence(&rd)
        .unwrap()
        .quote
        .unwrap();
    let v = verify_quote(&raw, &collateral(), UnixSecs::from_unsigned(now()), root()).unwrap();
    assert_ne!(v.quote().body.report_data.0, rd);

    // A racing kernel is caught by the agent's generation check.
    let tsm = tempfile::tempdir().unwrap();
    let _k = ConfigfsKernel::start(tsm.path(), Behaviour::Racing, None).unwrap();
    let e = ConfigfsTsm::new(tsm.path()).evidence(&rd).unwrap_err();
    assert!(matches!(e, QuoteError::Race { .. }), "{e}");
}
