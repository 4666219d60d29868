//! DCAP verification of real quotes with their real collateral, at their recorded
//! times (the data and its attribution are in evidence/tests/data/tdx).

use cp_verifier::tdx::{parse_collateral, verify_quote, QuoteVerifyError, TcbStatus};

fn data(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/../evidence/tests/data/tdx/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// expected.json: UpToDate at 1752919234 (collateral valid 1750329147..=1752919235).
const V4_AT: u64 = 1_752_919_234;
/// expected.json: the outdated fixture's recorded time.
const V5_AT: u64 = 1_774_003_274;

#[test]
fn v4_quote_is_up_to_date_at_its_recorded_time() {
    let c = parse_collateral(&data("tdx_quote_collateral.json")).unwrap();
    let v = verify_quote(&data("tdx_quote"), &c, V4_AT, None).unwrap();
    assert_eq!(v.tcb_status(), &TcbStatus::UpToDate);
    assert!(v.advisory_ids().is_empty());
    assert_eq!(
        v.quote().body.mrtd.to_hex(),
        "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7"
    );
}

#[test]
fn outdated_fixture_is_not_up_to_date() {
    let c = parse_collateral(&data("tdx_quote_outdated_collateral.json")).unwrap();
    let e = verify_quote(&data("tdx_quote_outdated"), &c, V5_AT, None).unwrap_err();
    assert_eq!(e, QuoteVerifyError::NoMatchingTcbLevel);
}

#[test]
fn collateral_outside_its_window_fails() {
    let c = parse_collateral(&data("tdx_quote_collateral.json")).unwrap();
    for at in [1_750_329_147 - 86_400, 1_752_919_235 + 86_400] {
        let e = verify_quote(&data("tdx_quote"), &c, at, None).unwrap_err();
        assert_eq!(e.kind(), "QuoteVerificationFailed", "at {at}: {e}");
    }
}

#[test]
fn tampering_anywhere_signed_fails() {
    let c = parse_collateral(&data("tdx_quote_collateral.json")).unwrap();
    let raw = data("tdx_quote");
    // Header, body (MRTD, REPORTDATA), quote signature, attestation key, QE report,
    // QE report signature.
    for off in [
        20usize,
        48 + 136 + 5,
        48 + 520 + 63,
        636 + 3,
        636 + 64 + 7,
        636 + 128 + 6 + 100,
        636 + 128 + 6 + 384 + 9,
    ] {
        let mut t = raw.clone();
        t[off] ^= 0x01;
        let e = verify_quote(&t, &c, V4_AT, None).unwrap_err();
        assert!(
            matches!(e.kind(), "QuoteVerificationFailed" | "MalformedQuote"),
            "byte {off}: {e}"
        );
    }
    // Any other root than Intel's is not trusted.
    let e = verify_quote(&raw, &c, V4_AT, Some(b"not a certificate")).unwrap_err();
    assert_eq!(e.kind(), "QuoteVerificationFailed");
}

#[test]
fn garbage_collateral_is_a_typed_error() {
    for bad in [&b""[..], b"{}", b"[1,2]", b"{\"tcb_info\": 5}"] {
        assert_eq!(
            parse_collateral(bad).unwrap_err().kind(),
            "MalformedCollateral"
        );
    }
    let mut c = parse_collateral(&data("tdx_quote_collateral.json")).unwrap();
    c.tcb_info = c.tcb_info.replace("UpToDate", "UpToDatf");
    let e = verify_quote(&data("tdx_quote"), &c, V4_AT, None).unwrap_err();
    assert_eq!(e.kind(), "QuoteVerificationFailed", "{e}");
}
