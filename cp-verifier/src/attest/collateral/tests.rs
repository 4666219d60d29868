//! Unit tests of the collateral source.

use super::pcs::{crl_der, normalise_base, percent_decode, signed_json};
use super::*;

#[test]
fn base_urls_are_normalised() {
    for (given, want) in [
        ("https://pccs:8081", "https://pccs:8081"),
        ("https://pccs:8081/", "https://pccs:8081"),
        (
            "https://pccs:8081/sgx/certification/v4/",
            "https://pccs:8081",
        ),
        (
            "https://pccs:8081/tdx/certification/v4",
            "https://pccs:8081",
        ),
        (INTEL_PCS_URL, INTEL_PCS_URL),
    ] {
        assert_eq!(normalise_base(given).unwrap(), want, "{given}");
    }
    for bad in ["ftp://x", "pccs:8081", "https://h/?a=b", "not a url"] {
        assert_eq!(
            normalise_base(bad).unwrap_err().kind(),
            "CollateralConfig",
            "{bad}"
        );
    }
}

#[test]
fn percent_decoding_is_strict() {
    assert_eq!(percent_decode("a%20b%2B+%0A").unwrap(), "a b++\n");
    assert!(percent_decode("%2").is_err());
    assert!(percent_decode("%zz").is_err());
    assert!(percent_decode("%ff").is_err());
}

#[test]
fn crl_bodies_are_der_or_hex() {
    assert_eq!(crl_der(&[0x30, 0x01, 0x00]).unwrap(), [0x30, 0x01, 0x00]);
    assert_eq!(crl_der(b"300100\n").unwrap(), [0x30, 0x01, 0x00]);
    assert!(crl_der(b"").is_err());
    assert!(crl_der(b"<html>").is_err());
}

#[test]
fn signed_json_keeps_the_exact_bytes() {
    // Spacing and key order a re-serialisation would change.
    let inner = r#"{ "z":1,  "a" : [1.50, 2e3] }"#;
    let body = format!(
        r#"{{"tcbInfo":{inner} , "signature":"{}"}}"#,
        "ab".repeat(64)
    );
    let (json, sig) = signed_json(Endpoint::TcbInfo, body.as_bytes(), "tcbInfo").unwrap();
    assert_eq!(json, inner);
    assert_eq!(sig, [0xab; 64]);
    // A duplicated signed field is refused, not resolved one way or the other.
    let dup = format!(
        r#"{{"tcbInfo":{{}},"tcbInfo":{inner},"signature":"{}"}}"#,
        "ab".repeat(64)
    );
    assert!(signed_json(Endpoint::TcbInfo, dup.as_bytes(), "tcbInfo").is_err());
    let short = format!(r#"{{"enclaveIdentity":{inner},"signature":"abcd"}}"#);
    assert!(signed_json(Endpoint::QeIdentity, short.as_bytes(), "enclaveIdentity").is_err());
    let not_obj = format!(
        r#"{{"enclaveIdentity":"x","signature":"{}"}}"#,
        "ab".repeat(64)
    );
    assert!(signed_json(Endpoint::QeIdentity, not_obj.as_bytes(), "enclaveIdentity").is_err());
}

#[test]
fn intel_root_crl_url_is_the_roots_distribution_point() {
    use x509_cert::der::Decode;
    use x509_cert::ext::pkix::name::{DistributionPointName, GeneralName};
    use x509_cert::ext::pkix::CrlDistributionPoints;
    let root =
        x509_cert::Certificate::from_der(crate::attest::dcap::INTEL_SGX_ROOT_CA_DER).unwrap();
    let (_, dps) = root
        .tbs_certificate
        .get::<CrlDistributionPoints>()
        .unwrap()
        .unwrap();
    let urls: Vec<String> = dps
        .0
        .iter()
        .filter_map(|dp| match &dp.distribution_point {
            Some(DistributionPointName::FullName(names)) => Some(names),
            _ => None,
        })
        .flatten()
        .filter_map(|n| match n {
            GeneralName::UniformResourceIdentifier(u) => Some(u.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(urls, [INTEL_ROOT_CA_CRL_URL]);
}

#[test]
fn fmspc_hex() {
    let f = Fmspc::from_hex("B0C06F000000").unwrap();
    assert_eq!(f.to_string(), "b0c06f000000");
    assert_eq!(Fmspc::from_hex("b0c06f000000"), Some(f));
    assert_eq!(Fmspc::from_hex("b0c06f"), None);
    assert_eq!(Fmspc::from_hex("b0c06f00000g"), None);
}
