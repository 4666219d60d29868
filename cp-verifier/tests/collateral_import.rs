//! Raw PCS / PCCS collateral: `cp-verifier collateral import` and raw `collateral_dir`
//! entries give the same collateral, byte for byte, as the dcap-qvl JSON the raw
//! files were derived from (`tests/data/raw-pcs/README.md`), verify the same quotes,
//! and anything tampered is refused at import with the part named.

mod common;

use std::path::{Path, PathBuf};

use cp_verifier::attest::collateral::{
    import, quote_collateral_key, CollateralSource, OfflineConfig, RawCollateral, RawPart,
};
use cp_verifier::attest::dcap::{parse_collateral, verify_quote, INTEL_SGX_ROOT_CA_DER};
use provenant_base::clock::UnixSecs;
use serde_json::Value;

fn tdx_data(name: &str) -> PathBuf {
    format!(
        "{}/../evidence/tests/data/tdx/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
    .into()
}

fn raw_dir(set: &str) -> PathBuf {
    format!("{}/tests/data/raw-pcs/{set}", env!("CARGO_MANIFEST_DIR")).into()
}

/// (raw set, its quote, the dcap-qvl JSON it was derived from, the quote's recorded
/// time).
const SETS: [(&str, &str, &str, u64); 2] = [
    (
        "dcap-qvl-tdx_quote",
        "tdx_quote",
        "tdx_quote_collateral.json",
        1_752_919_234,
    ),
    (
        "dcap-qvl-tdx_quote_outdated",
        "tdx_quote_outdated",
        "tdx_quote_outdated_collateral.json",
        1_774_003_274,
    ),
];

fn read_raw(dir: &Path) -> RawCollateral {
    RawCollateral::read_dir(dir).unwrap().unwrap()
}

#[test]
fn imported_raw_collateral_is_the_json_byte_for_byte() {
    for (set, _, json, _) in SETS {
        let want = parse_collateral(&std::fs::read(tdx_data(json)).unwrap()).unwrap();
        let raw = read_raw(&raw_dir(set));
        let got = import(&raw, INTEL_SGX_ROOT_CA_DER).unwrap();
        let got = got.collateral();
        assert_eq!(got.tcb_info, want.tcb_info, "{set}");
        assert_eq!(got.tcb_info_signature, want.tcb_info_signature);
        assert_eq!(got.qe_identity, want.qe_identity);
        assert_eq!(got.qe_identity_signature, want.qe_identity_signature);
        assert_eq!(got.tcb_info_issuer_chain, want.tcb_info_issuer_chain);
        assert_eq!(got.qe_identity_issuer_chain, want.qe_identity_issuer_chain);
        assert_eq!(got.pck_crl_issuer_chain, want.pck_crl_issuer_chain);
        assert_eq!(got.pck_crl, want.pck_crl);
        assert_eq!(got.root_ca_crl, want.root_ca_crl);
        // The signed JSON is a slice of the file as served.
        let body = std::str::from_utf8(&raw.tcb_info).unwrap();
        assert!(body.starts_with(&format!("{{\"tcbInfo\":{}", got.tcb_info)));
    }
}

#[test]
fn imported_collateral_verifies_the_same_quotes() {
    for (set, quote, json, at) in SETS {
        let q = std::fs::read(tdx_data(quote)).unwrap();
        let at = UnixSecs::from_unsigned(at);
        let from_json = parse_collateral(&std::fs::read(tdx_data(json)).unwrap()).unwrap();
        let raw = read_raw(&raw_dir(set));
        let imported = import(&raw, INTEL_SGX_ROOT_CA_DER).unwrap();
        let a = verify_quote(&q, &from_json, at, None).map(|v| v.tcb_status().clone());
        let b = verify_quote(&q, imported.collateral(), at, None).map(|v| v.tcb_status().clone());
        assert_eq!(a, b, "{set}");
    }
    // And the first is a pass, not two equal failures.
    let q = std::fs::read(tdx_data("tdx_quote")).unwrap();
    let imported = import(
        &read_raw(&raw_dir("dcap-qvl-tdx_quote")),
        INTEL_SGX_ROOT_CA_DER,
    )
    .unwrap();
    let v = verify_quote(
        &q,
        imported.collateral(),
        UnixSecs::from_unsigned(1_752_919_234),
        None,
    )
    .unwrap();
    assert_eq!(v.tcb_status().as_str(), "UpToDate");
}

/// go-tdx-guest's `sample_tcbinfo_response_v5` is a TCB info response exactly as
/// Intel PCS served it: it imports, its signature verifying under Intel's TCB
/// signing chain (taken from the dcap-qvl set: the same certificate signs both).
#[test]
fn a_real_pcs_tcb_info_response_imports() {
    let mut raw = read_raw(&raw_dir("dcap-qvl-tdx_quote_outdated"));
    raw.tcb_info = std::fs::read(tdx_data("go-tdx-guest/sample_tcbinfo_response_v5")).unwrap();
    let fc = import(&raw, INTEL_SGX_ROOT_CA_DER).unwrap();
    assert_eq!(fc.fmspc().to_hex(), "90c06f000000");
    let body = std::str::from_utf8(&raw.tcb_info).unwrap();
    assert!(body.starts_with(&format!("{{\"tcbInfo\":{}", fc.collateral().tcb_info)));
}

/// Each raw file with one byte changed where the signature covers it.
fn tampered() -> Vec<(RawPart, RawCollateral)> {
    let base = read_raw(&raw_dir("dcap-qvl-tdx_quote"));
    let mut out = Vec::new();
    let mut r = base.clone();
    let s = String::from_utf8(r.tcb_info).unwrap();
    r.tcb_info = s.replacen("\"tcbType\":0", "\"tcbType\":1", 1).into_bytes();
    assert_ne!(r.tcb_info, base.tcb_info);
    out.push((RawPart::TcbInfo, r));
    let mut r = base.clone();
    let s = String::from_utf8(r.qe_identity).unwrap();
    r.qe_identity = s.replacen("\"version\":2", "\"version\":3", 1).into_bytes();
    assert_ne!(r.qe_identity, base.qe_identity);
    out.push((RawPart::QeIdentity, r));
    // The TCB info signature's last hex digit.
    let mut r = base.clone();
    let at = r.tcb_info.len() - 3;
    r.tcb_info[at] = if r.tcb_info[at] == b'0' { b'1' } else { b'0' };
    out.push((RawPart::TcbInfo, r));
    // A byte inside the PCK CRL's signed part (its DER issuer name).
    let mut r = base.clone();
    r.pck_crl[40] ^= 0x01;
    out.push((RawPart::PckCrl, r));
    // The root CA CRL as DER with its last signature byte changed.
    let mut r = base.clone();
    let want =
        parse_collateral(&std::fs::read(tdx_data("tdx_quote_collateral.json")).unwrap()).unwrap();
    let mut der = want.root_ca_crl.clone();
    let n = der.len();
    der[n - 1] ^= 0x01;
    r.root_ca_crl = der;
    out.push((RawPart::RootCaCrl, r));
    // A chain that does not end at Intel's root (its root certificate removed).
    let mut r = base.clone();
    let pem = &want.qe_identity_issuer_chain;
    let second = pem.match_indices("-----BEGIN").nth(1).unwrap().0;
    r.qe_identity_chain = pem.as_bytes()[..second].to_vec();
    out.push((RawPart::QeIdentityChain, r));
    out
}

#[test]
fn tampered_raw_files_are_refused_naming_the_part() {
    for (part, raw) in tampered() {
        let e = import(&raw, INTEL_SGX_ROOT_CA_DER).unwrap_err();
        assert_eq!(e.part(), part, "{e}");
        // Everything but the CRL whose DER changed still parses: the signature or
        // the chain is what fails.
        if part == RawPart::PckCrl {
            assert!(
                matches!(e.kind(), "CollateralUnverified" | "CollateralMalformed"),
                "{e}"
            );
        } else {
            assert_eq!(e.kind(), "CollateralUnverified", "{e}");
        }
    }
    // Garbage is malformed, with the part named.
    let mut raw = read_raw(&raw_dir("dcap-qvl-tdx_quote"));
    raw.pck_crl_chain = b"%zz".to_vec();
    let e = import(&raw, INTEL_SGX_ROOT_CA_DER).unwrap_err();
    assert_eq!(
        (e.kind(), e.part()),
        ("CollateralMalformed", RawPart::PckCrlChain)
    );
    // An oversized file is refused before it is parsed.
    let mut raw = read_raw(&raw_dir("dcap-qvl-tdx_quote"));
    raw.tcb_info = vec![b' '; RawPart::TcbInfo.max_bytes() + 1];
    assert_eq!(
        import(&raw, INTEL_SGX_ROOT_CA_DER).unwrap_err().kind(),
        "CollateralTooLarge"
    );
    // Another root: every chain fails.
    let e = import(
        &read_raw(&raw_dir("dcap-qvl-tdx_quote")),
        tdx_sim::TestPki::root_ca_der(),
    )
    .unwrap_err();
    assert_eq!(e.kind(), "CollateralUnverified");
}

fn import_args(dir: &Path) -> Vec<String> {
    RawPart::ALL
        .iter()
        .flat_map(|p| {
            [
                format!("--{}", p.name()),
                dir.join(p.name()).display().to_string(),
            ]
        })
        .collect()
}

fn run(args: &[String]) -> (i32, Value) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    common::cp_verifier(&args)
}

#[test]
fn cli_import_then_verify_quote() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("collateral.json");
    let mut args = vec!["collateral".to_string(), "import".to_string()];
    args.extend(import_args(&raw_dir("dcap-qvl-tdx_quote")));
    // To stdout: the collateral JSON itself.
    let (code, v) = run(&args);
    assert_eq!(code, 0, "{v}");
    let want: Value =
        serde_json::from_slice(&std::fs::read(tdx_data("tdx_quote_collateral.json")).unwrap())
            .unwrap();
    assert_eq!(v["tcb_info"], want["tcb_info"]);
    assert_eq!(v["pck_crl"], want["pck_crl"]);
    // To a file, then read by verify quote.
    args.extend([
        "--out".into(),
        out.display().to_string(),
        "--at".into(),
        "1752919234".into(),
    ]);
    let (code, v) = run(&args);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["fmspc"], "b0c06f000000");
    assert_eq!(v["file_name"], "b0c06f000000-platform.json");
    assert_eq!(v["usable_at_now"], true);
    let (code, v) = common::cp_verifier(&[
        "verify",
        "quote",
        "--quote",
        tdx_data("tdx_quote").to_str().unwrap(),
        "--collateral",
        out.to_str().unwrap(),
        "--at",
        "1752919234",
    ]);
    assert_eq!(
        (code, v["tcb_status"].as_str()),
        (0, Some("UpToDate")),
        "{v}"
    );
}

#[test]
fn cli_refuses_a_tampered_file_and_writes_nothing() {
    for (part, raw) in tampered() {
        let tmp = tempfile::tempdir().unwrap();
        for p in RawPart::ALL {
            std::fs::write(tmp.path().join(p.name()), raw.part(p)).unwrap();
        }
        let out = tmp.path().join("out.json");
        let mut args = vec!["collateral".to_string(), "import".to_string()];
        args.extend(import_args(tmp.path()));
        args.extend(["--out".into(), out.display().to_string()]);
        let (code, v) = run(&args);
        assert_eq!(code, 1, "{v}");
        assert_eq!(v["error"]["part"], part.name(), "{v}");
        assert!(!out.exists());
    }
    let mut args = vec!["collateral".to_string(), "import".to_string()];
    args.extend(import_args(Path::new("/nonexistent")));
    assert_eq!(run(&args).0, 2);
}

#[tokio::test]
async fn collateral_dir_reads_raw_entries() {
    for (set, quote, json, at) in SETS {
        let q = std::fs::read(tdx_data(quote)).unwrap();
        let (fmspc, ca) = quote_collateral_key(&q).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let entry = tmp.path().join(format!("{fmspc}-{ca}"));
        std::fs::create_dir(&entry).unwrap();
        for p in RawPart::ALL {
            std::fs::copy(raw_dir(set).join(p.name()), entry.join(p.name())).unwrap();
        }
        let source =
            CollateralSource::offline(OfflineConfig::new(Some(tmp.path().to_path_buf()), None))
                .unwrap();
        let got = source
            .get(fmspc, ca, UnixSecs::from_unsigned(at - 3600))
            .await
            .unwrap();
        let want = parse_collateral(&std::fs::read(tdx_data(json)).unwrap()).unwrap();
        assert_eq!(got.collateral().tcb_info, want.tcb_info, "{set}");
        assert_eq!(got.collateral().pck_crl, want.pck_crl, "{set}");
        // A malformed raw entry is an error, never skipped for another candidate.
        std::fs::write(entry.join("pck-crl"), b"not a CRL").unwrap();
        let e = source
            .get(fmspc, ca, UnixSecs::from_unsigned(at - 3600))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), "CollateralMalformed", "{e}");
    }
}
