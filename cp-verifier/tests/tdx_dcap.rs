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

mod signatures_only {
    use super::*;
    use cp_verifier::tdx::{verify_signatures, INTEL_SGX_ROOT_CA_DER};
    use sha2::{Digest, Sha256};

    #[test]
    fn embedded_root_is_intels() {
        assert_eq!(
            hex::encode(Sha256::digest(INTEL_SGX_ROOT_CA_DER)),
            "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"
        );
    }

    #[test]
    fn real_quotes_verify_without_collateral() {
        for (file, at, fmspc) in [
            ("tdx_quote", V4_AT, "b0c06f000000"),
            ("tdx_quote_outdated", V5_AT, "90c06f000000"),
        ] {
            let q =
                verify_signatures(&data(file), at, None).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!(hex::encode(q.fmspc().unwrap()), fmspc, "{file}");
        }
    }

    #[test]
    fn each_signature_check_can_fail() {
        let raw = data("tdx_quote");
        let sig_at = 636; // v4: 48 header + 584 body + 4 length
        let cases: [(&str, usize); 6] = [
            ("body byte (quote signature)", 48 + 136),
            ("quote signature", sig_at + 10),
            ("attestation key (binding)", sig_at + 64 + 10),
            ("QE report (QE report signature)", sig_at + 128 + 6 + 10),
            ("QE report data (binding)", sig_at + 128 + 6 + 320 + 1),
            ("QE report signature", sig_at + 128 + 6 + 384 + 10),
        ];
        for (what, off) in cases {
            let mut t = raw.clone();
            t[off] ^= 0x02;
            let e = verify_signatures(&t, V4_AT, None).unwrap_err();
            assert_eq!(e.kind(), "QuoteVerificationFailed", "{what}: {e}");
        }
        // Outside the PCK certificates' validity.
        let e = verify_signatures(&raw, 1_600_000_000, None).unwrap_err();
        assert!(e.to_string().contains("not valid at"), "{e}");
        // A different root is not Intel's.
        let e = verify_signatures(&raw, V4_AT, Some(b"other root")).unwrap_err();
        assert!(e.to_string().contains("trusted root"), "{e}");
        // Every truncation is a typed parse error, never a panic.
        for n in (0..raw.len() - 70).step_by(7) {
            assert!(verify_signatures(&raw[..n], V4_AT, None).is_err());
        }
    }
}
