//! Real quotes from two public clouds, never seen by the other tests: Microsoft
//! Azure (trustee's az-tdx-vtpm evidence) and Google Cloud (go-tdx-guest's COS
//! quote). See `tests/data/cloud/README.md` for where they come from.

mod common;

use cp_verifier::attest::dcap::{check_sept_ve, verify_signatures, BindingRules, QuoteVerifyError};
use provenant_base::clock::UnixSecs;

fn azure() -> (String, Vec<u8>) {
    let p = format!(
        "{}/tests/data/cloud/azure/td_quote.dat",
        env!("CARGO_MANIFEST_DIR")
    );
    let raw = std::fs::read(&p).unwrap();
    (p, raw)
}

fn gcp() -> Vec<u8> {
    std::fs::read(format!(
        "{}/../evidence/tests/data/tdx/go-tdx-guest/ccel/cos-113-tdx-quote.dat",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// 2025-01-01T00:00:00Z: inside both quotes' PCK chains.
const AT: u64 = 1_735_689_600;

#[test]
fn azure_and_gcp_quotes_verify_under_intels_root() {
    for (cloud, raw, fmspc) in [
        ("azure", azure().1, "00806f050000"),
        ("gcp", gcp(), "00806f050000"),
    ] {
        let s = verify_signatures(&raw, UnixSecs::from_unsigned(AT), None)
            .unwrap_or_else(|e| panic!("{cloud}: {e}"));
        assert_eq!(
            s.fmspc().map(hex::encode).as_deref(),
            Some(fmspc),
            "{cloud}"
        );
        let body = &s.quote().body;
        assert_eq!(body.kind, evidence::tdx::BodyKind::Td10, "{cloud}");
        // Neither is bound to a service TD nor migratable: the default rules pass.
        BindingRules::default().check(body).unwrap();
        // Google's TD has SEPT_VE_DISABLE set; Azure's paravisor TD has it clear.
        assert_eq!(body.sept_ve_disabled(), cloud == "gcp", "{cloud}");
        // Not yet valid before the PCK leaf was issued (2023).
        assert!(verify_signatures(&raw, UnixSecs::from_unsigned(1_600_000_000), None).is_err());
    }
    let (_, raw) = azure();
    let s = verify_signatures(&raw, UnixSecs::from_unsigned(AT), None).unwrap();
    let body = &s.quote().body;
    // Azure's paravisor TD: no RTMRs, and TDATTRIBUTES all zero (SEPT_VE_DISABLE
    // clear, which DCAP's attribute checks refuse once collateral is at hand: the
    // control plane and `verify quote --collateral` answer `SeptVeNotDisabled`).
    assert!(body.rtmrs.iter().all(|r| r.0 == [0; 48]));
    assert_eq!(body.td_attributes.0, [0; 8]);
    assert_eq!(
        check_sept_ve(body).unwrap_err(),
        QuoteVerifyError::SeptVeNotDisabled
    );
    assert_eq!(
        body.mrtd.to_hex(),
        "024a32b070383331181619fa387cb4d55d1e38879f989933055ccad5bc2db795d1737b66205949d15469dc8c1ba7ab7b"
    );
    assert_eq!(s.quote().trailing_bytes, 0);
}

#[test]
fn a_flipped_bit_in_the_azure_quote_is_refused() {
    let (_, raw) = azure();
    // MRTD, a QE report byte, a PCK chain byte.
    for at in [48 + 136, 636 + 128 + 6 + 10, 1300] {
        let mut q = raw.clone();
        q[at] ^= 1;
        assert!(
            verify_signatures(&q, UnixSecs::from_unsigned(AT), None).is_err(),
            "byte {at}"
        );
    }
}

#[test]
fn cli_verifies_the_azure_quote() {
    let (p, _) = azure();
    let (code, v) =
        common::cp_verifier(&["verify", "quote", "--quote", &p, "--at", &AT.to_string()]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["body"], "td10");
    assert_eq!(v["fmspc"], "00806f050000");
    assert_eq!(v["mrservicetd"], serde_json::Value::Null);
    assert_eq!(v["collateral"], "absent");
}
