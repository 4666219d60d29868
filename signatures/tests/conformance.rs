//! The Sigstore conformance suite's `bundle-verify` cases (tests/data/sigstore-conformance,
//! see its README), run through the functions `cp-verifier verify bundle` calls:
//! [`verify_bundle`] with the suite's identity and issuer, or [`verify_bundle_with_key`]
//! with the case's `key.pub`, under the case's trusted root, at the bundle's own
//! recorded time. Every case is in [`CASES`] with the outcome the suite prescribes and,
//! for each `_fail` case, the reason: the error kind and a pattern its detail must
//! contain. A refusal for any other reason fails the test.
//!
//! The last column is sigstore-python 4.5.1's result on the same case
//! (`ci/sigstore-conformance-python.py`); `sigstore_python_agrees_where_recorded`
//! checks it still holds.

use provenant_base::clock::UnixSecs;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use policy::identity::RunnerEnvironment;
use serde_json::Value;
use signatures::{
    verify_bundle, verify_bundle_with_key, Artifact, IdentityPolicy, ManagedKey, TrustRoot,
};

/// What the suite prescribes for a case.
#[derive(Debug, Clone, Copy)]
enum Want {
    /// The bundle verifies.
    Verify,
    /// Refused with this `kind()`, and a detail containing this text.
    Refuse(&'static str, &'static str),
}
use Want::{Refuse, Verify};

/// sigstore-python 4.5.1 on the same case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Py {
    Verified,
    Refused,
    /// No managed-key verification in sigstore-python.
    Unsupported,
}

/// (case, what we must do, why this is the reason the case is about, sigstore-python).
#[rustfmt::skip]
const CASES: &[(&str, Want, &str, Py)] = &[
    ("bundle-empty-certificate-chain_fail", Refuse("MissingVerificationMaterial", "empty certificate chain"), "the chain is empty", Py::Refused),
    ("bundle-invalid-base64-signature_fail", Refuse("MalformedBundle", "messageSignature.signature is not base64"), "not base64 even under protobuf-JSON's rules", Py::Refused),
    ("bundle-malformed-json_fail", Refuse("MalformedBundle", "not a JSON bundle"), "truncated JSON", Py::Refused),
    ("bundle-negative-log-index_fail", Refuse("MalformedBundle", "negative log index"), "logIndex -1", Py::Refused),
    ("bundle-unknown-version_fail", Refuse("UnknownMediaType", "version=99.9"), "media type version 99.9", Py::Refused),
    // v0.1 with an inclusion proof but no checkpoint: our v0.1 rule would refuse it
    // too (sigstore-python does, for that), but the chain is checked first.
    ("bundle-with-root-cert_fail", Refuse("CertificateChain", "is a root (self-issued"), "the chain carries the root", Py::Refused),
    ("bundle-with-sct-with-extensions", Verify, "an SCT with extensions is fine", Py::Verified),
    ("checkpoint-bad-keyhint_fail", Refuse("InvalidCheckpoint", "No matching Rekor key found for checkpoint signature"), "the checkpoint's key hint names no log key", Py::Refused),
    ("dsse-invalid-sig_fail", Refuse("InvalidSignature", "DSSE signature verification failed"), "the envelope signature is wrong", Py::Refused),
    ("dsse-mismatch-sig_fail", Refuse("LogEntryMismatch", "DSSE signature in bundle does not match"), "a valid signature, not the logged one", Py::Refused),
    ("happy-path-v0.1", Verify, "v0.1 with inclusion proof and checkpoint (README: bundles)", Py::Verified),
    ("happy-path-v0.2", Verify, "", Py::Verified),
    ("happy-path-v0.3-new-mediaType", Verify, "", Py::Verified),
    // The entry's body was edited (its public key), so it no longer hashes to the
    // leaf its inclusion proof (and SET) cover: the proof is what catches an edited
    // entry, before the body is compared with the bundle. sigstore-python: the same.
    ("incorrect-public-key_fail", Refuse("InvalidInclusionProof", "root hash mismatch"), "the logged entry was modified", Py::Refused),
    ("integrated-time-in-future_fail", Refuse("CertificateNotValidAtSigningTime", "CertExpired"), "integrated time after the certificate's notAfter", Py::Refused),
    ("intoto-expired-certificate_fail", Refuse("CertificateNotValidAtSigningTime", "CertNotValidYet"), "certificate not valid at the signing time", Py::Refused),
    ("intoto-log-entry-mismatch_fail", Refuse("LogEntryMismatch", "intoto entry's signature"), "the entry records another signature", Py::Refused),
    ("intoto-missing-inclusion-proof_fail", Refuse("InvalidInclusionProof", "has no inclusion proof"), "v0.2 without an inclusion proof", Py::Refused),
    ("intoto-set-outside-signing-cert-validity_fail", Refuse("CertificateNotValidAtSigningTime", "CertExpired { time: UnixTime(1675296000)"), "the SET's integrated time is after notAfter", Py::Refused),
    ("intoto-tsa-timestamp-outside-cert-validity_fail", Refuse("CertificateNotValidAtSigningTime", "CertExpired { time: UnixTime(1675296000)"), "the TSA time (2023-02-02) is after notAfter; the SET time is inside", Py::Refused),
    // sigstore-python refuses every intoto/0.0.2 entry ("Integrated time only
    // supported for dsse/hashedrekord 0.0.1 types"); the suite and we accept it.
    ("intoto-with-custom-trust-root", Verify, "", Py::Refused),
    ("invalid-checkpoint-signature_fail", Refuse("InvalidCheckpoint", "No valid Rekor signature found on checkpoint"), "the checkpoint signature is wrong", Py::Refused),
    ("invalid-ct-key_fail", Refuse("InvalidSct", "SCT signature verification failed"), "the root's CT key is not the SCT's", Py::Refused),
    // No checkpoint either; sigstore-python stops there ("entry must contain
    // inclusion proof, with checkpoint"). We compute the proof first.
    ("invalid-inclusion-proof_fail", Refuse("InvalidInclusionProof", "root hash mismatch"), "the proof does not reach its root", Py::Refused),
    ("managed-key-and-trusted-root", Verify, "", Py::Unsupported),
    ("managed-key-happy-path", Verify, "", Py::Unsupported),
    ("managed-key-no-key_fail", Refuse("NotKeyless", "a Fulcio certificate is required"), "a key bundle verified against an identity", Py::Refused),
    // key.pub is not a P-256 point (its last base64 symbol was edited): any key
    // that is not the signer's must fail, and this one fails at loading.
    ("managed-key-wrong-key_fail", Refuse("InvalidKey", "PEM"), "the given key is not the signer's", Py::Unsupported),
    ("message-digest-mismatch_fail", Refuse("ArtifactMismatch", "message digest in bundle does not match"), "messageDigest is not the artifact's", Py::Refused),
    ("rekor2-checkpoint-cosigned", Verify, "an unknown witness cosignature is ignored", Py::Verified),
    ("rekor2-checkpoint-missing-log-signature_fail", Refuse("InvalidCheckpoint", "no signatures found"), "", Py::Refused),
    ("rekor2-checkpoint-missing-origin_fail", Refuse("InvalidCheckpoint", "Invalid checkpoint format"), "the size line is read as the origin", Py::Refused),
    ("rekor2-checkpoint-missing-root-hash_fail", Refuse("InvalidCheckpoint", "missing root hash"), "", Py::Refused),
    ("rekor2-checkpoint-missing-size_fail", Refuse("InvalidCheckpoint", "invalid tree size"), "", Py::Refused),
    ("rekor2-checkpoint-multiple-cosigs", Verify, "", Py::Verified),
    ("rekor2-checkpoint-no-matching-signature_fail", Refuse("InvalidCheckpoint", "No valid Rekor signature found on checkpoint"), "origin renamed: the log's signature no longer verifies", Py::Refused),
    ("rekor2-checkpoint-origin-not-first", Verify, "the log's signature is the second line", Py::Verified),
    ("rekor2-checkpoint-two-sigs-cosigned", Verify, "", Py::Verified),
    ("rekor2-checkpoint-two-sigs-from-origin", Verify, "", Py::Verified),
    ("rekor2-dsse-invalid-sig_fail", Refuse("InvalidSignature", "DSSE signature verification failed"), "", Py::Refused),
    ("rekor2-dsse-mismatch-envelope_fail", Refuse("LogEntryMismatch", "artifact hash mismatch for hashedrekord entry"), "the logged digest is another envelope's PAE", Py::Refused),
    ("rekor2-dsse-mismatch-sig_fail", Refuse("LogEntryMismatch", "DSSE signature in bundle does not match signature in Rekor entry"), "", Py::Refused),
    ("rekor2-no-inclusion-proof_fail", Refuse("InvalidInclusionProof", "has no inclusion proof"), "", Py::Refused),
    ("rekor2-no-timestamp_fail", Refuse("NoVerifiedTime", "V2 bundle requires RFC3161 timestamp"), "Rekor v2 has no integrated time", Py::Refused),
    ("rekor2-timestamp-outside-trust-root-tsa-validity_fail", Refuse("InvalidTimestamp", "outside the validity period of the authority"), "", Py::Refused),
    ("rekor2-timestamp-outside-tsa-cert-validity_fail", Refuse("InvalidTimestamp", "CertExpired"), "the TSA's certificate had expired", Py::Refused),
    ("rekor2-timestamp-payload-mismatch_fail", Refuse("InvalidTimestamp", "message hash mismatch"), "the token stamps another signature", Py::Refused),
    ("rekor2-timestamp-untrusted-tsa-with-embedded-cert_fail", Refuse("InvalidTimestamp", "does not match any trusted TSA certificate"), "", Py::Refused),
    ("rekor2-timestamp-untrusted-tsa-without-embedded-cert_fail", Refuse("InvalidTimestamp", "does not match any trusted TSA certificate"), "", Py::Refused),
    ("rekor2-timestamp-with-embedded-cert", Verify, "", Py::Verified),
    ("rekor2-timestamp-with-expired-cert-chain", Verify, "valid at the timestamp, expired today", Py::Verified),
    ("rekor2-timestamp-without-embedded-cert", Verify, "", Py::Verified),
    ("signature-mismatch_fail", Refuse("InvalidSignature", "signature verification failed"), "", Py::Refused),
    ("trust-root-tlog-missing-validity-start_fail", Refuse("InvalidTrustRoot", "missing field `start`"), "refused when the root is loaded", Py::Refused),
    // The suite: TimeRange is closed, the end is inclusive. sigstore-python 4.5.1
    // treats it as exclusive ("not enough sources of verified time"). We follow
    // the suite (sigstore-verify's TimeRange::contains is inclusive).
    ("trust-root-tsa-validity-end-inclusive", Verify, "timestamp == the TSA's validFor.end", Py::Refused),
    ("wrong-hashedrekord-artifact_fail", Refuse("LogEntryMismatch", "artifact hash mismatch for hashedrekord entry"), "the entry records another artifact", Py::Refused),
    ("wrong-hashedrekord-cert-and-sig_fail", Refuse("LogEntryMismatch", "certificate in bundle does not match"), "", Py::Refused),
    ("wrong-hashedrekord-entry_fail", Refuse("LogEntryMismatch", "artifact hash mismatch for hashedrekord entry"), "the entry is another signing's", Py::Refused),
];

const DEFAULT_IDENTITY: &str = "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main";
const DEFAULT_ISSUER: &str = "https://token.actions.githubusercontent.com";
/// Verification time for the two cases with no recorded time at all (malformed
/// JSON, a Rekor v2 entry without a timestamp): the suite snapshot's date.
const FALLBACK_TIME: u64 = 1_765_000_000;

fn base() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/sigstore-conformance")
}

fn case_dirs() -> BTreeSet<String> {
    std::fs::read_dir(base().join("bundle-verify"))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_dir())
        .map(|e| e.file_name().into_string().unwrap())
        .collect()
}

/// One case as the suite runs it, at `now`: Ok(()) or the refusal's (kind, detail).
fn run_case(name: &str, bundle: &[u8], now: u64) -> Result<(), (String, String)> {
    let dir = base().join("bundle-verify").join(name);
    let read = |p: PathBuf| std::fs::read(p).ok();
    let text = |p: PathBuf| read(p).map(|b| String::from_utf8(b).unwrap().trim().to_string());
    let root_path = Some(dir.join("trusted_root.json"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| base().join("trusted_root.public-good.json"));
    let artifact = read(dir.join("artifact"))
        .unwrap_or_else(|| read(base().join("bundle-verify/a.txt")).unwrap());
    let refused = |kind: &str, e: &dyn std::fmt::Display| (kind.to_string(), e.to_string());
    let root = TrustRoot::from_file(&root_path).map_err(|e| refused(e.kind(), &e))?;
    let artifact = Artifact::Bytes(&artifact);
    match read(dir.join("key.pub")) {
        Some(pem) => {
            let key = ManagedKey::from_pem(&pem).map_err(|e| refused(e.kind(), &e))?;
            verify_bundle_with_key(bundle, artifact, &root, &key, UnixSecs::from_unsigned(now))
                .map(|_| ())
                .map_err(|e| refused(e.kind(), &e))
        }
        None => {
            // The suite's identity is the SAN and the issuer, nothing else: no
            // runner-environment constraint.
            let policy = IdentityPolicy::builder()
                .issuer(text(dir.join("issuer")).unwrap_or(DEFAULT_ISSUER.into()))
                .san(text(dir.join("identity")).unwrap_or(DEFAULT_IDENTITY.into()))
                .runner_environment(RunnerEnvironment::Any)
                .build()
                .unwrap();
            verify_bundle(
                bundle,
                artifact,
                &root,
                &policy,
                UnixSecs::from_unsigned(now),
            )
            .map(|_| ())
            .map_err(|e| refused(e.kind(), &e))
        }
    }
}

fn check(name: &str, want: Want, got: &Result<(), (String, String)>) -> Result<(), String> {
    match (want, got) {
        (Verify, Ok(())) => Ok(()),
        (Refuse(kind, pat), Err((k, d))) if k == kind && d.contains(pat) => Ok(()),
        _ => Err(format!("{name}: want {want:?}, got {got:?}")),
    }
}

#[test]
fn every_case_has_the_suites_outcome_and_reason() {
    let listed: BTreeSet<String> = CASES.iter().map(|c| c.0.to_string()).collect();
    assert_eq!(listed.len(), CASES.len(), "a case is listed twice");
    assert_eq!(listed, case_dirs(), "CASES and the case directories differ");
    let mut failures = Vec::new();
    for &(name, want, _, _) in CASES {
        assert_eq!(
            name.ends_with("_fail"),
            matches!(want, Refuse(..)),
            "{name}: the suite's outcome is in its name"
        );
        let bundle = std::fs::read(
            base()
                .join("bundle-verify")
                .join(name)
                .join("bundle.sigstore.json"),
        )
        .unwrap();
        let now = recorded_time(&bundle).unwrap_or(FALLBACK_TIME);
        if let Err(e) = check(name, want, &run_case(name, &bundle, now)) {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Bytes → a base64 form.
type Encoder = dyn Fn(&[u8]) -> String;

/// Every `bytes` field of `v` (the same list as the verifier's), rewritten by `f`.
fn rewrite_bytes_fields(v: &mut Value, f: &Encoder) {
    fn walk(v: &mut Value, path: &[&str], f: &dyn Fn(&[u8]) -> String) {
        match (path.split_first(), v) {
            (None, Value::String(s)) => {
                let b = base64::engine::general_purpose::STANDARD
                    .decode(&*s)
                    .unwrap();
                *s = f(&b);
            }
            (Some((&"*", rest)), Value::Array(a)) => a.iter_mut().for_each(|x| walk(x, rest, f)),
            (Some((k, rest)), Value::Object(m)) => {
                if let Some(x) = m.get_mut(*k) {
                    walk(x, rest, f)
                }
            }
            _ => {}
        }
    }
    let vm = "verificationMaterial";
    let te = "tlogEntries";
    for path in [
        &[vm, "certificate", "rawBytes"][..],
        &[vm, "x509CertificateChain", "certificates", "*", "rawBytes"],
        &[vm, te, "*", "logId", "keyId"],
        &[vm, te, "*", "inclusionPromise", "signedEntryTimestamp"],
        &[vm, te, "*", "inclusionProof", "rootHash"],
        &[vm, te, "*", "inclusionProof", "hashes", "*"],
        &[vm, te, "*", "canonicalizedBody"],
        &[
            vm,
            "timestampVerificationData",
            "rfc3161Timestamps",
            "*",
            "signedTimestamp",
        ],
        &["messageSignature", "messageDigest", "digest"],
        &["messageSignature", "signature"],
        &["dsseEnvelope", "payload"],
        &["dsseEnvelope", "signatures", "*", "sig"],
    ] {
        walk(v, path, f);
    }
}

/// Base64 as protobuf-JSON decodes it: the same bundle with its `bytes` fields
/// line-wrapped, or URL-safe and unpadded, reaches the same outcome for the same
/// reason. sigstore-types alone refuses the line-wrapped form (the gap wrapped).
#[test]
fn protojson_base64_forms_reach_the_same_checks() {
    let wrapped = |b: &[u8]| {
        let s = base64::engine::general_purpose::STANDARD.encode(b);
        let lines: Vec<&str> = s
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        lines.join("\n") + "\n"
    };
    let url = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    for name in [
        "happy-path-v0.3-new-mediaType",
        "intoto-with-custom-trust-root",
        "intoto-tsa-timestamp-outside-cert-validity_fail",
        "rekor2-timestamp-with-embedded-cert",
        "rekor2-timestamp-payload-mismatch_fail",
        "managed-key-happy-path",
        "dsse-mismatch-sig_fail",
    ] {
        let want = CASES.iter().find(|c| c.0 == name).unwrap().1;
        let original = std::fs::read(
            base()
                .join("bundle-verify")
                .join(name)
                .join("bundle.sigstore.json"),
        )
        .unwrap();
        let forms: [(&str, &Encoder); 2] = [("line-wrapped", &wrapped), ("url-safe", &url)];
        for (form, f) in forms {
            let mut v: Value = serde_json::from_slice(&original).unwrap();
            rewrite_bytes_fields(&mut v, f);
            let b = serde_json::to_vec(&v).unwrap();
            assert_ne!(b, original);
            let now = recorded_time(&original).unwrap_or(FALLBACK_TIME);
            check(name, want, &run_case(name, &b, now)).unwrap_or_else(|e| panic!("{form}: {e}"));
            if form == "line-wrapped" {
                let alone =
                    sigstore_verify::types::Bundle::from_json(std::str::from_utf8(&b).unwrap());
                assert!(
                    alone.is_err(),
                    "{name}: sigstore-types now takes line breaks"
                );
            }
        }
    }
}

/// sigstore-python 4.5.1 (`ci/install-sigstore-python.sh`) on the same cases gives
/// what [`CASES`] records. Fails when it is not installed, as the sigstore-testsign
/// cross-checks do.
#[test]
fn sigstore_python_agrees_where_recorded() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = std::env::var_os("SIGSTORE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/sigstore-python/bin/python"));
    assert!(
        python.exists(),
        "{} not found: run ci/install-sigstore-python.sh",
        python.display()
    );
    let out = std::process::Command::new(&python)
        .arg(root.join("ci/sigstore-conformance-python.py"))
        .arg(base())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let mut seen = 0;
    for line in stdout.lines() {
        let mut cols = line.splitn(3, '\t');
        let (name, outcome) = (cols.next().unwrap(), cols.next().unwrap());
        let py = match outcome {
            "verified" => Py::Verified,
            "refused" => Py::Refused,
            "unsupported" => Py::Unsupported,
            other => panic!("{line}: {other}"),
        };
        let case = CASES
            .iter()
            .find(|c| c.0 == name)
            .unwrap_or_else(|| panic!("{name}"));
        assert_eq!(case.3, py, "{line}");
        seen += 1;
    }
    assert_eq!(seen, CASES.len());
}

// --- The bundle's recorded time: the latest integrated time or RFC 3161 genTime.

fn recorded_time(bundle: &[u8]) -> Option<u64> {
    let v: Value = serde_json::from_slice(bundle).ok()?;
    let vm = &v["verificationMaterial"];
    let mut times = Vec::new();
    for e in vm["tlogEntries"].as_array().into_iter().flatten() {
        if let Some(t) = e["integratedTime"]
            .as_str()
            .and_then(|s| s.parse::<i64>().ok())
        {
            times.push(t);
        }
    }
    let tsa = vm["timestampVerificationData"]["rfc3161Timestamps"].as_array();
    for t in tsa.into_iter().flatten() {
        let der = base64::engine::general_purpose::STANDARD
            .decode(t["signedTimestamp"].as_str()?)
            .ok()?;
        times.push(gen_time(&der)?);
    }
    times.into_iter().max().and_then(|t| u64::try_from(t).ok())
}

/// One DER TLV: (tag, contents, rest).
fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = b.split_first()?;
    let (&l0, rest) = rest.split_first()?;
    let (len, rest) = if l0 < 0x80 {
        (usize::from(l0), rest)
    } else {
        let n = usize::from(l0 & 0x7f);
        let (lb, rest) = (rest.get(..n)?, rest.get(n..)?);
        (
            lb.iter().fold(0usize, |a, &x| (a << 8) | usize::from(x)),
            rest,
        )
    };
    Some((tag, rest.get(..len)?, rest.get(len..)?))
}

fn children(mut b: &[u8]) -> Option<Vec<(u8, &[u8])>> {
    let mut v = Vec::new();
    while !b.is_empty() {
        let (t, c, r) = tlv(b)?;
        v.push((t, c));
        b = r;
    }
    Some(v)
}

/// id-ct-TSTInfo, 1.2.840.113549.1.9.16.1.4.
const TSTINFO_OID: &[u8] = &[
    0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x10, 0x01, 0x04,
];

/// The genTime of the TSTInfo in a TimeStampResp or TimeStampToken: the content
/// following the TSTInfo content type is `[0] { OCTET STRING { TSTInfo } }`, and
/// genTime is TSTInfo's fifth field.
fn gen_time(b: &[u8]) -> Option<i64> {
    let kids = children(b)?;
    for (i, (t, c)) in kids.iter().enumerate() {
        if *t == 0x06 && *c == TSTINFO_OID {
            let (_, octets, _) = tlv(kids.get(i + 1)?.1)?;
            let (_, tst, _) = tlv(octets)?;
            let (tag, gt) = *children(tst)?.get(4)?;
            return (tag == 0x18).then(|| generalized_time(std::str::from_utf8(gt).ok()?))?;
        }
        if t & 0x20 != 0 {
            if let Some(x) = gen_time(c) {
                return Some(x);
            }
        }
    }
    None
}

/// `YYYYMMDDHHMMSS[.f]Z` → unix seconds.
fn generalized_time(s: &str) -> Option<i64> {
    let n = |a: usize, b: usize| s.get(a..b)?.parse::<i64>().ok();
    let (y, m, d) = (n(0, 4)?, n(4, 6)?, n(6, 8)?);
    let (y2, mp) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + (153 * mp + 2) / 5 + d - 1;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + n(8, 10)? * 3600 + n(10, 12)? * 60 + n(12, 14)?)
}

#[test]
fn generalized_times_convert() {
    assert_eq!(generalized_time("19700101000000Z"), Some(0));
    assert_eq!(generalized_time("20250612120220Z"), Some(1_749_729_740));
    assert_eq!(generalized_time("20000229000000.123Z"), Some(951_782_400));
}
