//! DCAP verification of every real quote in the shared vector set at its recorded time
//! (the data and its attribution are in evidence/tests/data/tdx): with collateral
//! where the vector ships it, signatures and PCK chain otherwise, and go-tdx-guest's
//! v5 quote against the TCB info it ships. Then corruptions of every quote and of the
//! collateral, which must fail with a typed error and never pass.

use cp_verifier::attest::dcap::{
    parse_collateral, verify_quote, verify_signatures, QuoteVerifyError, TcbStatus,
    INTEL_SGX_ROOT_CA_DER,
};
use dcap_qvl::QuoteCollateralV3;
use provenant_base::clock::UnixSecs;
use serde_json::Value;

/// A file of the test data by its expected.json name (the dcap-qvl files sit at the
/// top level of the directory).
fn data(name: &str) -> Vec<u8> {
    let local = name.strip_prefix("dcap-qvl/").unwrap_or(name);
    let path = format!(
        "{}/../evidence/tests/data/tdx/{local}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn expected(file: &str) -> Value {
    let all: Value = serde_json::from_slice(&data("expected.json")).unwrap();
    all["quotes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["file"] == file)
        .unwrap_or_else(|| panic!("{file} not in expected.json"))
        .clone()
}

fn collateral(file: &str) -> QuoteCollateralV3 {
    parse_collateral(&data(file)).unwrap()
}

/// Unix seconds of an RFC 3339 time as expected.json writes it (`...+00:00`).
fn unix(t: &str) -> u64 {
    let t = t.replace("+00:00", "Z");
    humantime::parse_rfc3339(&t)
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

const V4: &str = "dcap-qvl/tdx_quote";
const V5_OUTDATED: &str = "dcap-qvl/tdx_quote_outdated";
const GO_V5: &str = "go-tdx-guest/quote_v5_sample.dat";
const GO_CCEL: &str = "go-tdx-guest/ccel/cos-113-tdx-quote.dat";
const TRUSTEE: &str = "trustee/tdx_quote_4.dat";

/// expected.json: UpToDate at 1752919234 (collateral valid 1750329147..=1752919235).
const V4_AT: u64 = 1_752_919_234;
/// expected.json: the outdated fixture's recorded time.
const V5_AT: u64 = 1_774_003_274;
/// expected.json: go-tdx-guest's verification time for its v5 quote
/// (2026-02-03T01:00:00Z, as in its verify_test.go).
const GO_V5_AT: u64 = 1_770_080_400;

/// Every quote with a time at which its PCK chain is valid. expected.json records a
/// time for the first three; go-tdx-guest's CCEL quote and trustee's quote have
/// none, so they are verified one day into the PCK chain's validity window that
/// expected.json records for them (see `pck_windows_are_exact`).
fn quotes() -> [(&'static str, u64); 5] {
    let in_window =
        |f: &str| unix(expected(f)["pck_chain_valid_window"][0].as_str().unwrap()) + 86_400;
    [
        (V4, V4_AT),
        (V5_OUTDATED, V5_AT),
        (GO_V5, GO_V5_AT),
        (GO_CCEL, in_window(GO_CCEL)),
        (TRUSTEE, in_window(TRUSTEE)),
    ]
}

#[test]
fn recorded_times_match_expected_json() {
    for (file, at) in [(V4, V4_AT), (V5_OUTDATED, V5_AT), (GO_V5, GO_V5_AT)] {
        assert_eq!(
            expected(file)["suggested_verification_time_unix"].as_u64(),
            Some(at),
            "{file}"
        );
    }
    for file in [GO_CCEL, TRUSTEE] {
        assert!(expected(file)["suggested_verification_time_unix"].is_null());
    }
}

#[test]
fn v4_quote_is_up_to_date_at_its_recorded_time() {
    let c = collateral("tdx_quote_collateral.json");
    let v = verify_quote(&data(V4), &c, UnixSecs::from_unsigned(V4_AT), None).unwrap();
    assert_eq!(v.tcb_status(), &TcbStatus::UpToDate);
    assert!(v.advisory_ids().is_empty());
    assert_eq!(
        v.quote().body.mrtd.to_hex(),
        expected(V4)["td"]["mrtd"].as_str().unwrap()
    );
}

#[test]
fn outdated_fixture_is_not_up_to_date() {
    let c = collateral("tdx_quote_outdated_collateral.json");
    let e = verify_quote(&data(V5_OUTDATED), &c, UnixSecs::from_unsigned(V5_AT), None)
        .map(|_| ())
        .unwrap_err();
    assert_eq!(e, QuoteVerifyError::NoMatchingTcbLevel);
}

#[test]
fn collateral_outside_its_window_fails() {
    let c = collateral("tdx_quote_collateral.json");
    for at in [1_750_329_147 - 86_400, 1_752_919_235 + 86_400] {
        let e = verify_quote(&data(V4), &c, UnixSecs::from_unsigned(at), None)
            .map(|_| ())
            .unwrap_err();
        assert_eq!(e.kind(), "QuoteVerificationFailed", "at {at}: {e}");
    }
}

#[test]
fn embedded_root_is_intels() {
    use sha2::{Digest, Sha256};
    let root = data("expected.json");
    let all: Value = serde_json::from_slice(&root).unwrap();
    assert_eq!(
        hex::encode(Sha256::digest(INTEL_SGX_ROOT_CA_DER)),
        all["trust_anchor"]["sha256"].as_str().unwrap()
    );
}

/// Signatures, QE binding and PCK chain of every quote, without collateral, at its
/// time; the FMSPC from the PCK leaf is expected.json's.
#[test]
fn every_quote_verifies_without_collateral() {
    for (file, at) in quotes() {
        let q = verify_signatures(&data(file), UnixSecs::from_unsigned(at), None)
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        let e = expected(file);
        assert_eq!(
            hex::encode(q.fmspc().unwrap()),
            e["fmspc"].as_str().unwrap(),
            "{file}"
        );
        assert_eq!(
            q.quote().body.mrtd.to_hex(),
            e["td"]["mrtd"].as_str().unwrap()
        );
    }
}

/// expected.json's PCK validity window is exactly the window in which the chain
/// verifies: valid at both ends, refused a second outside.
#[test]
fn pck_windows_are_exact() {
    for (file, _) in quotes() {
        let w = &expected(file)["pck_chain_valid_window"];
        let (from, to) = (unix(w[0].as_str().unwrap()), unix(w[1].as_str().unwrap()));
        let raw = data(file);
        for at in [from, to] {
            verify_signatures(&raw, UnixSecs::from_unsigned(at), None)
                .unwrap_or_else(|e| panic!("{file} at {at}: {e}"));
        }
        for at in [from - 1, to + 1] {
            let e = verify_signatures(&raw, UnixSecs::from_unsigned(at), None).unwrap_err();
            assert!(
                e.to_string().contains("not valid at"),
                "{file} at {at}: {e}"
            );
        }
    }
}

/// go-tdx-guest's v5 quote comes with a PCS TCB info response for its FMSPC
/// (90c06f000000) but with no QE identity and no CRLs, so a full DCAP verification
/// is impossible at its recorded time. What can be checked honestly:
///
/// 1. at 1770080400: the quote's signatures and PCK chain ([`verify_signatures`]);
///    the TCB info's signature, by the Intel SGX TCB Signing certificate whose chain
///    (to Intel's root) ships in dcap-qvl's collateral, the same signer; and the TCB
///    level the platform meets in that TCB info, by [`tcb_status`] below;
/// 2. cross-check with dcap-qvl's full verification: dcap-qvl's 2026 collateral for
///    the same FMSPC (the outdated fixture's) supplies the QE identity and CRLs, and
///    go-tdx-guest's TCB info replaces its own. Both are valid together only between
///    2026-02-18T10:58:51Z (the CRLs' and QE identity's issue) and
///    2026-03-03T14:49:26Z (the TCB info's next update), so dcap-qvl verifies
///    inside that window, and must agree with 1.
mod go_tdx_guest_tcb_info {
    use super::*;
    use dcap_qvl::intel::{parse_pck_extension, PckExtension};
    use dcap_qvl::{TcbInfo, TcbStatus as Qvl, TcbStatusWithAdvisory};
    use p256::ecdsa::signature::Verifier;
    use x509_cert::der::Encode;

    /// Inside the window where go-tdx-guest's TCB info and the outdated fixture's QE
    /// identity and CRLs are all valid (2026-02-25T06:13:20Z).
    const BOTH_VALID_AT: u64 = 1_772_000_000;

    /// The exact signed bytes of a PCS TCB info response and its r‖s signature.
    fn split_response(body: &[u8]) -> (String, Vec<u8>) {
        #[derive(serde::Deserialize)]
        struct Response<'a> {
            #[serde(rename = "tcbInfo", borrow)]
            tcb_info: &'a serde_json::value::RawValue,
            signature: String,
        }
        let r: Response = serde_json::from_slice(body).unwrap();
        (
            r.tcb_info.get().to_string(),
            hex::decode(r.signature).unwrap(),
        )
    }

    fn check_validity(cert: &x509_cert::Certificate, now: u64) -> Result<(), String> {
        let v = &cert.tbs_certificate.validity;
        let now = std::time::Duration::from_secs(now);
        if now < v.not_before.to_unix_duration() || now > v.not_after.to_unix_duration() {
            return Err("certificate not valid now".into());
        }
        Ok(())
    }

    fn key(cert: &x509_cert::Certificate) -> p256::ecdsa::VerifyingKey {
        let bits = cert
            .tbs_certificate
            .subject_public_key_info
            .subject_public_key
            .as_bytes()
            .unwrap();
        p256::ecdsa::VerifyingKey::from_sec1_bytes(bits).unwrap()
    }

    /// Checks `signed` against `sig` (r‖s) under the TCB signing certificate of
    /// `issuer_chain` (leaf, Intel root), the chain itself, and validity at `now`.
    fn verify_tcb_info_signature(
        signed: &[u8],
        sig: &[u8],
        issuer_chain: &str,
        now: u64,
    ) -> Result<(), String> {
        let chain = x509_cert::Certificate::load_pem_chain(issuer_chain.as_bytes()).unwrap();
        let [leaf, root] = chain.as_slice() else {
            return Err("TCB signing chain is not leaf + root".into());
        };
        if root.to_der().unwrap() != INTEL_SGX_ROOT_CA_DER {
            return Err("TCB signing chain does not end at Intel's root".into());
        }
        if !leaf
            .tbs_certificate
            .subject
            .to_string()
            .contains("CN=Intel SGX TCB Signing")
        {
            return Err("not the TCB signing certificate".into());
        }
        check_validity(leaf, now)?;
        check_validity(root, now)?;
        let leaf_sig = p256::ecdsa::Signature::from_der(leaf.signature.as_bytes().unwrap())
            .map_err(|e| e.to_string())?;
        key(root)
            .verify(&leaf.tbs_certificate.to_der().unwrap(), &leaf_sig)
            .map_err(|_| "TCB signing certificate not signed by the root")?;
        let sig = p256::ecdsa::Signature::from_slice(sig).map_err(|e| e.to_string())?;
        key(leaf)
            .verify(signed, &sig)
            .map_err(|_| "TCB info signature does not verify".to_string())
    }

    fn pck_extension(raw: &[u8]) -> PckExtension {
        let q = dcap_qvl::quote::Quote::parse(raw).unwrap();
        let chain = dcap_qvl::intel::extract_cert_chain(&q).unwrap();
        parse_pck_extension(&chain[0]).unwrap()
    }

    /// The TCB status of a TD's platform in a (signature-checked) TCB info: launch
    /// status, and for a TD 1.5 the status of its current TCB (TEE_TCB_SVN2).
    ///
    /// Why this exists: dcap-qvl evaluates TCB levels only inside `verify`, which
    /// needs a QE identity and CRLs that go-tdx-guest does not ship; its
    /// `find_tcb_level`/`evaluate_tdx_tcb` are private. Its public building blocks
    /// do the comparisons, so this only strings them together the way dcap-qvl's
    /// `match_platform_tcb` does: FMSPC and TCB info type, TDX module identity
    /// (MRSIGNERSEAM, SEAMATTRIBUTES), the first TCB level with no SVN shortfall
    /// (`TcbLevel::shortfalls`), converged with the TDX module's level
    /// (`TcbStatusWithAdvisory::merge`). It does not sort the levels as dcap-qvl does
    /// but asserts Intel's order is already that order. The QE's own TCB is out of
    /// reach without a QE identity. Tested against dcap-qvl's platform status on
    /// every quote both can evaluate.
    fn tcb_status(
        tcb: &TcbInfo,
        pck: &PckExtension,
        quote: &evidence::tdx::Quote,
    ) -> Result<(TcbStatusWithAdvisory, Option<TcbStatusWithAdvisory>), String> {
        if hex::decode(&tcb.fmspc).ok().as_deref() != Some(&pck.fmspc[..]) {
            return Err("FMSPC mismatch".into());
        }
        if tcb.id != "TDX" || tcb.version < 3 {
            return Err("not a TDX TCB info".into());
        }
        let key = |l: &dcap_qvl::TcbLevel| {
            (
                l.tcb.sgx_components.clone(),
                l.tcb.pce_svn,
                l.tcb.tdx_components.clone(),
            )
        };
        assert!(
            tcb.tcb_levels.windows(2).all(|w| key(&w[0]) >= key(&w[1])),
            "TCB levels not in Intel QVL's order"
        );
        let b = &quote.body;
        let svn = b.tee_tcb_svn.0;
        let module = tcb.tdx_module.as_ref().ok_or("no tdxModule")?;
        let (signer, attrs, mask) =
            match tcb.tdx_module_identity(&svn).map_err(|e| e.to_string())? {
                Some(id) => (&id.mrsigner, &id.attributes, &id.attributes_mask),
                None => (
                    &module.mrsigner,
                    &module.attributes,
                    &module.attributes_mask,
                ),
            };
        let (attrs, mask) = (hex::decode(attrs).unwrap(), hex::decode(mask).unwrap());
        let seam = b.seam_attributes.0;
        if hex::decode(signer).unwrap() != b.mrsignerseam.0
            || (0..8).any(|i| seam[i] & mask[i] != attrs[i] & mask[i] || seam[i] & !mask[i] != 0)
        {
            return Err("TDX module identity mismatch".into());
        }
        let level = |svn: &[u8; 16]| -> Result<TcbStatusWithAdvisory, String> {
            let mut found = None;
            for l in &tcb.tcb_levels {
                let short = l
                    .shortfalls(&pck.cpu_svn, pck.pce_svn, Some(svn))
                    .map_err(|e| e.to_string())?;
                if short.is_empty() {
                    found = Some(l);
                    break;
                }
            }
            let l = found.ok_or("No matching TCB level found")?;
            let platform = TcbStatusWithAdvisory::new(l.tcb_status, l.advisory_ids.clone());
            match tcb.tdx_module_identity(svn).map_err(|e| e.to_string())? {
                None => Ok(platform),
                Some(id) => {
                    let m = id
                        .tcb_levels
                        .iter()
                        .find(|m| m.shortfall(svn).is_none())
                        .ok_or("TDX module ISVSVN below every level")?;
                    Ok(platform.merge(&TcbStatusWithAdvisory::new(
                        m.tcb_status,
                        m.advisory_ids.clone(),
                    )))
                }
            }
        };
        let launch = level(&svn)?;
        let current = b.tee_tcb_svn2.map(|s| level(&s.0)).transpose()?;
        Ok((launch, current))
    }

    fn go_tcb_info() -> (String, Vec<u8>) {
        split_response(&data("go-tdx-guest/sample_tcbinfo_response_v5"))
    }

    #[test]
    fn up_to_date_at_its_recorded_time() {
        let raw = data(GO_V5);
        // 1. Signatures and PCK chain.
        let signed = verify_signatures(&raw, UnixSecs::from_unsigned(GO_V5_AT), None).unwrap();
        // 2. The TCB info is Intel's: same signer as dcap-qvl's collateral's.
        let (tcb_json, sig) = go_tcb_info();
        let issuer = collateral("tdx_quote_outdated_collateral.json").tcb_info_issuer_chain;
        verify_tcb_info_signature(tcb_json.as_bytes(), &sig, &issuer, GO_V5_AT).unwrap();
        // ... and current at that time.
        let tcb: TcbInfo = serde_json::from_str(&tcb_json).unwrap();
        let (issued, next) = (unix(&tcb.issue_date), unix(&tcb.next_update));
        assert!((issued..=next).contains(&GO_V5_AT));
        // 3. The platform's TCB level.
        let (launch, current) = tcb_status(&tcb, &pck_extension(&raw), signed.quote()).unwrap();
        assert_eq!(launch.status, Qvl::UpToDate);
        assert!(launch.advisory_ids.is_empty());
        assert_eq!(current.unwrap().status, Qvl::UpToDate);

        // Tampered TCB info, or another time, is refused.
        let mut bad = tcb_json.clone().into_bytes();
        let at = tcb_json.find("UpToDate").unwrap();
        bad[at] = b'u';
        assert!(verify_tcb_info_signature(&bad, &sig, &issuer, GO_V5_AT).is_err());
        let mut bad_sig = sig.clone();
        bad_sig[40] ^= 1;
        assert!(
            verify_tcb_info_signature(tcb_json.as_bytes(), &bad_sig, &issuer, GO_V5_AT).is_err()
        );
        // The TCB signing certificate was issued on 2025-05-06.
        assert!(
            verify_tcb_info_signature(tcb_json.as_bytes(), &sig, &issuer, 1_700_000_000).is_err()
        );
    }

    /// The go-tdx-guest TCB info in dcap-qvl collateral: only the TCB info fields
    /// change, and they come from the PCS response exactly as signed.
    fn hybrid_collateral() -> QuoteCollateralV3 {
        let mut c = collateral("tdx_quote_outdated_collateral.json");
        let (tcb_json, sig) = go_tcb_info();
        c.tcb_info = tcb_json;
        c.tcb_info_signature = sig;
        c
    }

    #[test]
    fn dcap_qvl_agrees_with_full_collateral() {
        let raw = data(GO_V5);
        let c = hybrid_collateral();
        let v = verify_quote(&raw, &c, UnixSecs::from_unsigned(BOTH_VALID_AT), None).unwrap();
        assert_eq!(v.tcb_status(), &TcbStatus::UpToDate);
        assert!(v.advisory_ids().is_empty());
        // dcap-qvl's platform status is the matcher's.
        let r = dcap_qvl::verify::QuoteVerifier::new_prod()
            .verify(&raw, &c, BOTH_VALID_AT)
            .unwrap();
        let tcb: TcbInfo = serde_json::from_str(&c.tcb_info).unwrap();
        let q = evidence::tdx::Quote::parse(&raw).unwrap();
        let (launch, _) = tcb_status(&tcb, &pck_extension(&raw), &q).unwrap();
        assert_eq!(r.platform_status, launch);
        // The window is exactly where the TCB info and the QE identity are both
        // current (the CRLs' windows contain it): it verifies at both ends and is
        // refused a second outside, and at go-tdx-guest's own time.
        let qe: dcap_qvl::QeIdentity = serde_json::from_str(&c.qe_identity).unwrap();
        let from = unix(&tcb.issue_date).max(unix(&qe.issue_date));
        let to = unix(&tcb.next_update).min(unix(&qe.next_update));
        assert_eq!((from, to), (1_771_411_335, 1_772_549_366));
        assert!((from..=to).contains(&BOTH_VALID_AT));
        for at in [from, to] {
            assert!(
                verify_quote(&raw, &c, UnixSecs::from_unsigned(at), None).is_ok(),
                "at {at}"
            );
        }
        for at in [GO_V5_AT, from - 1, to + 1] {
            let e = verify_quote(&raw, &c, UnixSecs::from_unsigned(at), None)
                .map(|_| ())
                .unwrap_err();
            assert_eq!(e.kind(), "QuoteVerificationFailed", "at {at}: {e}");
        }
    }

    /// The matcher against dcap-qvl on dcap-qvl's own quotes.
    #[test]
    fn matcher_agrees_with_dcap_qvl_on_its_quotes() {
        // v4: dcap-qvl's platform status, exactly.
        let raw = data(V4);
        let c = collateral("tdx_quote_collateral.json");
        let r = dcap_qvl::verify::QuoteVerifier::new_prod()
            .verify(&raw, &c, V4_AT)
            .unwrap();
        let tcb: TcbInfo = serde_json::from_str(&c.tcb_info).unwrap();
        let q = evidence::tdx::Quote::parse(&raw).unwrap();
        let (launch, current) = tcb_status(&tcb, &pck_extension(&raw), &q).unwrap();
        assert_eq!(r.platform_status, launch);
        assert_eq!(launch.status, Qvl::UpToDate);
        assert!(current.is_none());
        // Outdated fixture: no level matches, for both.
        let raw = data(V5_OUTDATED);
        let c = collateral("tdx_quote_outdated_collateral.json");
        let tcb: TcbInfo = serde_json::from_str(&c.tcb_info).unwrap();
        let q = evidence::tdx::Quote::parse(&raw).unwrap();
        assert_eq!(
            tcb_status(&tcb, &pck_extension(&raw), &q).unwrap_err(),
            "No matching TCB level found"
        );
        assert_eq!(
            verify_quote(&raw, &c, UnixSecs::from_unsigned(V5_AT), None)
                .map(|_| ())
                .unwrap_err(),
            QuoteVerifyError::NoMatchingTcbLevel
        );
        // A TCB info for another FMSPC is refused by both.
        let tcb_go: TcbInfo = serde_json::from_str(&go_tcb_info().0).unwrap();
        let raw = data(V4);
        let q = evidence::tdx::Quote::parse(&raw).unwrap();
        assert_eq!(
            tcb_status(&tcb_go, &pck_extension(&raw), &q).unwrap_err(),
            "FMSPC mismatch"
        );
    }
}

/// Offsets to corrupt in a quote: two in the header, three in the body, one in each
/// signature-data field, and a sweep through the PCK chain.
fn flip_offsets(raw: &[u8]) -> Vec<(&'static str, usize)> {
    let q = evidence::tdx::Quote::parse(raw).unwrap();
    let body = if q.header.version == 5 { 54 } else { 48 };
    let sig = q.signed_len + 4;
    let qe = sig + 128 + 6;
    let auth = qe + 384 + 64 + 2;
    let chain = auth + q.signature.qe_auth_data.len() + 6;
    let end = raw.len() - q.trailing_bytes;
    let mut v = vec![
        ("header: QE SVN", 8),
        ("header: user data", 30),
        ("body: TEE_TCB_SVN", body),
        ("body: MRTD", body + 136 + 7),
        ("body: REPORTDATA", body + 520 + 63),
        ("quote signature r", sig + 3),
        ("quote signature s", sig + 40),
        ("attestation key", sig + 64 + 9),
        ("QE report", qe + 100),
        ("QE report data", qe + 320 + 5),
        ("QE report signature", qe + 384 + 20),
        ("QE auth data", auth + 3),
    ];
    if q.header.version == 5 {
        v.push(("body: TEE_TCB_SVN2", body + 584 + 1));
    }
    v.extend((chain..end).step_by(97).map(|i| ("PCK chain", i)));
    v.push(("PCK chain: last byte", end - 1));
    v
}

/// Bit flips anywhere in the header, body, signature data and certification data of
/// every quote: a typed failure, never a pass.
#[test]
fn bit_flips_never_verify() {
    for (file, at) in quotes() {
        let raw = data(file);
        for (what, off) in flip_offsets(&raw) {
            for bit in [0x01u8, 0x80] {
                let mut t = raw.clone();
                t[off] ^= bit;
                let e = verify_signatures(&t, UnixSecs::from_unsigned(at), None)
                    .map(|_| ())
                    .expect_err(&format!("{file}: {what} (byte {off} ^ {bit:#x}) verified"));
                assert!(
                    matches!(e.kind(), "QuoteVerificationFailed" | "MalformedQuote"),
                    "{file}: {what}: {e}"
                );
            }
        }
    }
    // The same through full DCAP verification, for the quotes with collateral.
    for (file, coll, at) in [
        (V4, "tdx_quote_collateral.json", V4_AT),
        (V5_OUTDATED, "tdx_quote_outdated_collateral.json", V5_AT),
    ] {
        let c = collateral(coll);
        let raw = data(file);
        for (what, off) in flip_offsets(&raw) {
            let mut t = raw.clone();
            t[off] ^= 0x01;
            let e = verify_quote(&t, &c, UnixSecs::from_unsigned(at), None)
                .map(|_| ())
                .expect_err(&format!("{file}: {what} (byte {off}) verified"));
            assert!(
                matches!(e.kind(), "QuoteVerificationFailed" | "MalformedQuote"),
                "{file}: {what}: {e}"
            );
        }
    }
}

#[test]
fn wrong_tee_type_and_oversized_chain_are_typed() {
    for (file, at) in quotes() {
        let raw = data(file);
        let mut t = raw.clone();
        t[4] = 0x00; // SGX
        let e = verify_signatures(&t, UnixSecs::from_unsigned(at), None).unwrap_err();
        assert_eq!(e.kind(), "MalformedQuote", "{file}: {e}");
        // Certification data length past the PCK chain bound.
        let q = evidence::tdx::Quote::parse(&raw).unwrap();
        let chain_len =
            q.signed_len + 4 + 128 + 6 + 384 + 64 + 2 + q.signature.qe_auth_data.len() + 2;
        let mut t = raw.clone();
        t[chain_len..chain_len + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let e = verify_signatures(&t, UnixSecs::from_unsigned(at), None).unwrap_err();
        assert_eq!(e.kind(), "MalformedQuote", "{file}: {e}");
        assert!(e.to_string().contains("pck_chain"), "{file}: {e}");
    }
    let c = collateral("tdx_quote_collateral.json");
    let mut t = data(V4);
    t[4] = 0x00;
    assert_eq!(
        verify_quote(&t, &c, UnixSecs::from_unsigned(V4_AT), None)
            .map(|_| ())
            .unwrap_err()
            .kind(),
        "MalformedQuote"
    );
}

#[test]
fn every_truncation_is_a_typed_failure() {
    for (file, at) in quotes() {
        let raw = data(file);
        let end = raw.len() - evidence::tdx::Quote::parse(&raw).unwrap().trailing_bytes;
        for n in (0..end).step_by(7).chain([end - 1]) {
            let e = verify_signatures(&raw[..n], UnixSecs::from_unsigned(at), None).unwrap_err();
            assert_eq!(e.kind(), "MalformedQuote", "{file}[..{n}]: {e}");
        }
    }
}

#[test]
fn each_signature_check_can_fail() {
    let raw = data(V4);
    let sig_at = 636; // v4: 48 header + 584 body + 4 length
    let cases: [(&str, usize, &str); 6] = [
        ("body byte", 48 + 136, "quote signature"),
        ("quote signature", sig_at + 10, "quote signature"),
        ("attestation key", sig_at + 64 + 10, ""),
        ("QE report", sig_at + 128 + 6 + 10, "QE report signature"),
        ("QE report data", sig_at + 128 + 6 + 320 + 1, ""),
        (
            "QE report signature",
            sig_at + 128 + 6 + 384 + 10,
            "QE report signature",
        ),
    ];
    for (what, off, msg) in cases {
        let mut t = raw.clone();
        t[off] ^= 0x02;
        let e = verify_signatures(&t, UnixSecs::from_unsigned(V4_AT), None).unwrap_err();
        assert_eq!(e.kind(), "QuoteVerificationFailed", "{what}: {e}");
        assert!(e.to_string().contains(msg), "{what}: {e}");
    }
    // A different root is not Intel's, for signatures and for full verification.
    let e =
        verify_signatures(&raw, UnixSecs::from_unsigned(V4_AT), Some(b"other root")).unwrap_err();
    assert!(e.to_string().contains("trusted root"), "{e}");
    let c = collateral("tdx_quote_collateral.json");
    let e = verify_quote(
        &raw,
        &c,
        UnixSecs::from_unsigned(V4_AT),
        Some(b"not a certificate"),
    )
    .map(|_| ())
    .unwrap_err();
    assert_eq!(e.kind(), "QuoteVerificationFailed");
}

type CollateralMutation = (&'static str, fn(&mut QuoteCollateralV3));

/// Garbage or tampered collateral: a typed error, never a pass.
#[test]
fn garbage_collateral_is_a_typed_error() {
    // Not collateral at all, and every truncation of the real one.
    for bad in [&b""[..], b"{}", b"[1,2]", b"{\"tcb_info\": 5}", b"\xff\xfe"] {
        assert_eq!(
            parse_collateral(bad).unwrap_err().kind(),
            "MalformedCollateral"
        );
    }
    let json = data("tdx_quote_collateral.json");
    for n in (0..json.len() - 1).step_by(101) {
        assert_eq!(
            parse_collateral(&json[..n]).unwrap_err().kind(),
            "MalformedCollateral",
            "[..{n}]"
        );
    }
    let oversized = vec![b' '; cp_verifier::attest::dcap::MAX_COLLATERAL_BYTES + 1];
    assert_eq!(
        parse_collateral(&oversized).unwrap_err().kind(),
        "MalformedCollateral"
    );
    // Well-formed JSON, wrong contents.
    let table: &[CollateralMutation] = &[
        ("TCB info status edited", |c| {
            c.tcb_info = c.tcb_info.replace("UpToDate", "UpToDatf")
        }),
        ("TCB info not JSON", |c| c.tcb_info = "garbage".into()),
        ("TCB info signature flipped", |c| {
            c.tcb_info_signature[5] ^= 1
        }),
        ("TCB info signature empty", |c| c.tcb_info_signature.clear()),
        ("TCB info issuer chain garbage", |c| {
            c.tcb_info_issuer_chain =
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into()
        }),
        ("QE identity edited", |c| {
            c.qe_identity = c.qe_identity.replace("TD_QE", "TD_QF")
        }),
        ("QE identity signature flipped", |c| {
            c.qe_identity_signature[60] ^= 0x80
        }),
        ("QE identity issuer chain empty", |c| {
            c.qe_identity_issuer_chain.clear()
        }),
        ("PCK CRL garbage", |c| {
            c.pck_crl = vec![0x30, 0x03, 0x02, 0x01, 0x00]
        }),
        ("PCK CRL flipped", |c| {
            let n = c.pck_crl.len();
            c.pck_crl[n - 10] ^= 1
        }),
        ("root CA CRL empty", |c| c.root_ca_crl.clear()),
    ];
    let raw = data(V4);
    for (what, mutate) in table {
        let mut c = collateral("tdx_quote_collateral.json");
        mutate(&mut c);
        let e = verify_quote(&raw, &c, UnixSecs::from_unsigned(V4_AT), None)
            .map(|_| ())
            .expect_err(&format!("{what}: verified"));
        assert_eq!(e.kind(), "QuoteVerificationFailed", "{what}: {e}");
    }
    // dcap-qvl does not read `pck_crl_issuer_chain`: the PCK CRL is authenticated
    // by the PCK chain's own CA during path validation. Garbage there is inert.
    let mut c = collateral("tdx_quote_collateral.json");
    c.pck_crl_issuer_chain = "x".into();
    assert!(verify_quote(&raw, &c, UnixSecs::from_unsigned(V4_AT), None).is_ok());
    // A PCK chain in the collateral replaces the quote's in dcap-qvl: it must be
    // the quote's own.
    let mut c = collateral("tdx_quote_collateral.json");
    let own = String::from_utf8(
        evidence::tdx::Quote::parse(&raw)
            .unwrap()
            .signature
            .pck_chain_pem,
    )
    .unwrap();
    c.pck_certificate_chain = Some(own.trim_end_matches('\0').to_string());
    assert!(verify_quote(&raw, &c, UnixSecs::from_unsigned(V4_AT), None).is_ok());
    let other = evidence::tdx::Quote::parse(&data(V5_OUTDATED))
        .unwrap()
        .signature
        .pck_chain_pem;
    c.pck_certificate_chain = Some(String::from_utf8(other).unwrap());
    let e = verify_quote(&raw, &c, UnixSecs::from_unsigned(V4_AT), None)
        .map(|_| ())
        .unwrap_err();
    assert_eq!(e.kind(), "MalformedCollateral", "{e}");
    c.pck_certificate_chain = Some("garbage".into());
    let e = verify_quote(&raw, &c, UnixSecs::from_unsigned(V4_AT), None)
        .map(|_| ())
        .unwrap_err();
    assert_eq!(e.kind(), "MalformedCollateral", "{e}");
    // Another platform's (valid) collateral.
    let other = collateral("tdx_quote_outdated_collateral.json");
    let e = verify_quote(&raw, &other, UnixSecs::from_unsigned(V5_AT), None)
        .map(|_| ())
        .unwrap_err();
    assert_eq!(e.kind(), "QuoteVerificationFailed", "{e}");
}

/// Every bit of every byte up to the end of the signature data, for every quote,
/// through signature verification, and through full DCAP verification for the
/// quotes with collateral. Slow in a debug build; run it with
/// `cargo test --release -p cp-verifier --test tdx_dcap -- --ignored`.
///
/// Its first run found quotes that still verified with a bit flipped in the PEM of
/// the PCK chain (a base64 padding `=`, the final newline, the NUL after it), which
/// the lenient PEM decoder absorbed, and with a flipped byte in the quote's copy of
/// the root certificate, which dcap-qvl never reads; `pem_regressions` keeps those.
#[test]
#[ignore]
fn exhaustive_bit_flips_never_verify() {
    let with_collateral = [
        (V4, "tdx_quote_collateral.json"),
        (V5_OUTDATED, "tdx_quote_outdated_collateral.json"),
    ];
    for (file, at) in quotes() {
        let raw = data(file);
        let end = raw.len() - evidence::tdx::Quote::parse(&raw).unwrap().trailing_bytes;
        let c = with_collateral
            .iter()
            .find(|(f, _)| *f == file)
            .map(|(_, c)| collateral(c));
        let mut passed = vec![];
        for off in 0..end {
            for bit in 0..8 {
                let mut t = raw.clone();
                t[off] ^= 1 << bit;
                if verify_signatures(&t, UnixSecs::from_unsigned(at), None).is_ok() {
                    passed.push(("signatures", off, bit));
                }
                if let Some(c) = &c {
                    if verify_quote(&t, c, UnixSecs::from_unsigned(at), None).is_ok() {
                        passed.push(("dcap", off, bit));
                    }
                }
            }
        }
        assert!(passed.is_empty(), "{file}: verified with {passed:?}");
    }
}

/// The flips the exhaustive sweep found (see above), every bit of each: base64
/// padding characters, the bytes after the last certificate, and the quote's copy
/// of the root certificate.
#[test]
fn pem_regressions() {
    for (file, at) in quotes() {
        let raw = data(file);
        let q = evidence::tdx::Quote::parse(&raw).unwrap();
        let end = raw.len() - q.trailing_bytes;
        let chain = end - q.signature.pck_chain_pem.len();
        let pem = &q.signature.pck_chain_pem;
        let last_end = pem
            .windows(25)
            .rposition(|w| w == b"-----END CERTIFICATE-----")
            .unwrap()
            + 25;
        let root_at = pem
            .windows(27)
            .rposition(|w| w == b"-----BEGIN CERTIFICATE-----")
            .unwrap()
            + 28;
        let mut offsets: Vec<usize> = pem
            .iter()
            .enumerate()
            .filter(|(_, &b)| b == b'=')
            .map(|(i, _)| chain + i)
            .collect();
        offsets.extend((chain + last_end)..end);
        offsets.extend((root_at..last_end - 26).step_by(61).map(|i| chain + i));
        for off in offsets {
            for bit in 0..8 {
                let mut t = raw.clone();
                t[off] ^= 1 << bit;
                let e = verify_signatures(&t, UnixSecs::from_unsigned(at), None)
                    .map(|_| ())
                    .expect_err(&format!("{file}: byte {off} bit {bit} verified"));
                assert!(matches!(
                    e.kind(),
                    "QuoteVerificationFailed" | "MalformedQuote"
                ));
            }
        }
    }
    // Through dcap-qvl: a flipped byte in the quote's root copy, which dcap-qvl's path
    // building never reads.
    let c = collateral("tdx_quote_collateral.json");
    let raw = data(V4);
    let q = evidence::tdx::Quote::parse(&raw).unwrap();
    let root_in_quote = raw.len() - q.trailing_bytes - 200;
    let mut t = raw.clone();
    t[root_in_quote] ^= 0x01;
    assert!(verify_signatures(&t, UnixSecs::from_unsigned(V4_AT), None).is_err());
    let e = verify_quote(&t, &c, UnixSecs::from_unsigned(V4_AT), None)
        .map(|_| ())
        .unwrap_err();
    assert_eq!(e.kind(), "QuoteVerificationFailed", "{e}");
}
