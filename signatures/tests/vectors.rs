//! Real Sigstore bundles (tests/data, from cli/cli and sigstore-python) verified
//! offline at their recorded times, and tampered copies of them refused with typed
//! errors: each check this crate claims fails when its input is tampered with.

use provenant_base::clock::UnixSecs;
use std::path::PathBuf;

use base64::Engine as _;
use serde_json::Value;
use signatures::{
    verify_bundle, Artifact, ArtifactDigest, IdentityField, IdentityPolicy, TimeSource, TrustRoot,
    VerifiedBundle, VerifyError, MAX_BUNDLE_BYTES,
};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(data(name)).unwrap()
}

fn expected() -> Value {
    serde_json::from_slice(&read("expected.json")).unwrap()
}

fn root(name: &str) -> TrustRoot {
    TrustRoot::from_file(&data(name)).unwrap()
}

fn root_2025() -> TrustRoot {
    root("public-good.sigstore-python-2025.json")
}

const REUSABLE: &str = "reusable-workflow-attestation.sigstore.json";
const REUSABLE_AT: UnixSecs = UnixSecs(1716578064);
const REUSABLE_DIGEST: &str =
    "sha256:49a3aa6075e0f49f82843e74b5baa614ad2a588e6675612bf108a0a008c5ac25";
const JS: &str = "sigstore-js-2.1.0-bundle.json";
const JS_AT: UnixSecs = UnixSecs(1693323623);

fn repo_policy(repo: &str) -> IdentityPolicy {
    IdentityPolicy::builder()
        .source_repository(repo)
        .build()
        .unwrap()
}

fn verify_reusable(bundle: &[u8]) -> Result<VerifiedBundle, VerifyError> {
    let d = ArtifactDigest::parse(REUSABLE_DIGEST).unwrap();
    verify_bundle(
        bundle,
        Artifact::Digest(&d),
        &root_2025(),
        &repo_policy("malancas/attest-demo"),
        REUSABLE_AT,
    )
}

fn verify_js(bundle: &[u8]) -> Result<VerifiedBundle, VerifyError> {
    verify_bundle(
        bundle,
        Artifact::StatementSubjects,
        &root_2025(),
        &repo_policy("sigstore/sigstore-js"),
        JS_AT,
    )
}

type VerifyFn = fn(&[u8]) -> Result<VerifiedBundle, VerifyError>;

/// Both real attestations: Rekor `dsse` (attest-build-provenance) and `intoto`
/// (npm provenance).
fn both() -> [(&'static str, VerifyFn); 2] {
    [(REUSABLE, verify_reusable), (JS, verify_js)]
}

type Tamper = Box<dyn Fn(&mut Value)>;

fn tampered(name: &str, f: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&read(name)).unwrap();
    f(&mut v);
    serde_json::to_vec(&v).unwrap()
}

fn flip_b64(v: &mut Value, index: usize) {
    let mut bytes = B64.decode(v.as_str().unwrap()).unwrap();
    let i = index.min(bytes.len() - 1);
    bytes[i] ^= 0x01;
    *v = Value::String(B64.encode(bytes));
}

fn tlog(v: &mut Value) -> &mut Value {
    &mut v["verificationMaterial"]["tlogEntries"][0]
}

#[test]
fn every_valid_vector_verifies_under_each_listed_root() {
    let exp = expected();
    for b in exp["bundles"].as_array().unwrap() {
        let name = b["file"].as_str().unwrap().rsplit('/').next().unwrap();
        let bundle = read(name);
        let want = &b["bundles"][0];
        let cert = &want["certificate"];
        let at =
            u64::try_from(want["tlog_entries"][0]["integratedTime"].as_i64().unwrap()).unwrap();
        let digest = ArtifactDigest::parse(&format!(
            "{}:{}",
            b["artifact_digest_alg"].as_str().unwrap(),
            b["artifact_digest"].as_str().unwrap()
        ))
        .unwrap();
        assert_eq!(b["expected"]["result"], "VALID");
        for root_path in b["expected"]["trusted_root"].as_array().unwrap() {
            let root = root(root_path.as_str().unwrap().rsplit('/').next().unwrap());
            let policy = IdentityPolicy::builder()
                .san(b["expected"]["identity_san"].as_str().unwrap())
                .source_repository(b["expected"]["repository"].as_str().unwrap())
                .source_ref(b["expected"]["ref"].as_str().unwrap())
                .predicate_type(want["predicateType"].as_str().unwrap())
                .subject_digest(digest.to_string())
                .build()
                .unwrap();
            for artifact in [Artifact::Digest(&digest), Artifact::StatementSubjects] {
                let v = verify_bundle(
                    &bundle,
                    artifact,
                    &root,
                    &policy,
                    UnixSecs::from_unsigned(at),
                )
                .unwrap_or_else(|e| panic!("{name} under {root_path}: {e} ({})", e.kind()));
                assert_eq!(v.media_type(), want["mediaType"]);
                assert_eq!(v.san(), cert["san"][0]);
                assert_eq!(v.issuer(), cert["oidc_issuer"]);
                let f = v.fulcio();
                assert_eq!(
                    f.build_signer_uri.as_deref(),
                    cert["BuildSignerURI"].as_str()
                );
                assert_eq!(
                    f.build_signer_digest.as_deref(),
                    cert["BuildSignerDigest"].as_str()
                );
                assert_eq!(
                    f.runner_environment.as_deref(),
                    cert["RunnerEnvironment"].as_str()
                );
                assert_eq!(
                    f.source_repository_uri.as_deref(),
                    cert["SourceRepositoryURI"].as_str()
                );
                assert_eq!(
                    f.source_repository_digest.as_deref(),
                    cert["SourceRepositoryDigest"].as_str()
                );
                assert_eq!(
                    f.source_repository_ref.as_deref(),
                    cert["SourceRepositoryRef"].as_str()
                );
                assert_eq!(
                    f.source_repository_owner_uri.as_deref(),
                    cert["SourceRepositoryOwnerURI"].as_str()
                );
                assert_eq!(
                    f.build_config_uri.as_deref(),
                    cert["BuildConfigURI"].as_str()
                );
                assert_eq!(f.build_trigger.as_deref(), cert["BuildTrigger"].as_str());
                assert_eq!(
                    f.run_invocation_uri.as_deref(),
                    cert["RunInvocationURI"].as_str()
                );
                assert_eq!(v.signed_at(), i64::try_from(at).unwrap());
                assert_eq!(v.time_source(), TimeSource::Rekor);
                assert_eq!(
                    v.signed_at_rfc3339(),
                    want["tlog_entries"][0]["integratedTime_iso"]
                        .as_str()
                        .unwrap()
                        .replace("+00:00", "Z")
                );
                assert_eq!(v.predicate_type(), want["predicateType"].as_str());
                assert!(v.predicate().unwrap().is_object());
                let subjects = serde_json::to_value(v.subjects()).unwrap();
                assert_eq!(subjects, want["subjects"]);
            }
        }
    }
}

#[test]
fn reusable_workflow_pins_signer_and_caller() {
    let d = ArtifactDigest::parse(REUSABLE_DIGEST).unwrap();
    let bundle = read(REUSABLE);
    let ok = IdentityPolicy::builder()
        .signer_workflow("github/artifact-attestations-workflows/.github/workflows/attest.yml")
        .source_repository("malancas/attest-demo")
        .build()
        .unwrap();
    verify_bundle(
        &bundle,
        Artifact::Digest(&d),
        &root_2025(),
        &ok,
        REUSABLE_AT,
    )
    .unwrap();
    // From the shared oracle (cli/cli verify_integration_test.go): these must fail.
    let cases = [
        (
            repo_policy("fakeowner/fakerepo"),
            IdentityField::SourceRepository,
        ),
        (
            IdentityPolicy::builder()
                .signer_workflow("foo/bar/.github/workflows/attest.yml")
                .build()
                .unwrap(),
            IdentityField::SignerWorkflow,
        ),
        (
            IdentityPolicy::builder()
                .san_regex(r"https://github\.com/fakeowner/.*")
                .build()
                .unwrap(),
            IdentityField::San,
        ),
    ];
    for (policy, field) in cases {
        let e = verify_bundle(
            &bundle,
            Artifact::Digest(&d),
            &root_2025(),
            &policy,
            REUSABLE_AT,
        )
        .unwrap_err();
        assert_eq!(e.kind(), "IdentityMismatch", "{e}");
        let VerifyError::Identity(v) = e else {
            panic!()
        };
        assert_eq!(v.first_field(), Some(field), "{v}");
    }
}

#[test]
fn sigstore_js_wrong_owner_or_repo_fails() {
    let bundle = read(JS);
    for (policy, field) in [
        (
            repo_policy("sigstore/fakerepo"),
            IdentityField::SourceRepository,
        ),
        (
            repo_policy("fakeowner/sigstore-js"),
            IdentityField::SourceRepository,
        ),
        (
            IdentityPolicy::builder()
                .san_regex(r"https://github\.com/fakeowner/.*")
                .build()
                .unwrap(),
            IdentityField::San,
        ),
        (
            IdentityPolicy::builder()
                .source_repository("sigstore/sigstore-js")
                .predicate_type("https://provenant.dev/attestations/tdx-measurement/v1")
                .build()
                .unwrap(),
            IdentityField::PredicateType,
        ),
        (
            IdentityPolicy::builder()
                .source_repository("sigstore/sigstore-js")
                .issuer("https://accounts.google.com")
                .build()
                .unwrap(),
            IdentityField::Issuer,
        ),
    ] {
        let e = verify_bundle(
            &bundle,
            Artifact::StatementSubjects,
            &root_2025(),
            &policy,
            JS_AT,
        )
        .unwrap_err();
        let VerifyError::Identity(v) = e else {
            panic!("{e}")
        };
        assert_eq!(v.first_field(), Some(field));
    }
}

#[test]
fn negative_vectors_are_refused() {
    let bundle = read("sigstoreBundle-invalid-signature.json");
    let policy = IdentityPolicy::builder()
        .san("brian@dehamer.com")
        .issuer("https://github.com/login/oauth")
        .runner_environment(policy::identity::RunnerEnvironment::Any)
        .build()
        .unwrap();
    for root_name in [
        "public-good.sigstore-python-2025.json",
        "public-good.cli-cli-2024.json",
    ] {
        let e = verify_bundle(
            &bundle,
            Artifact::StatementSubjects,
            &root(root_name),
            &policy,
            UnixSecs(1_700_000_000),
        )
        .unwrap_err();
        // This DSSE envelope carries a `text/plain` payload (its signature also
        // disagrees with the log entry): it is not an in-toto attestation, so it is
        // refused before any key is used. Signature mismatches on in-toto bundles
        // are covered by `tampered_signature_is_refused`.
        assert_eq!(e.kind(), "UnsupportedBundle", "{e}");
    }
    // v0.1 is accepted with an inclusion proof and checkpoint (README), never on a
    // SET alone.
    let v01 = read("sigstore-js-2.1.0-bundle-v0.1.json");
    verify_js(&v01).unwrap();
    let mut set_only: Value = serde_json::from_slice(&v01).unwrap();
    tlog(&mut set_only)
        .as_object_mut()
        .unwrap()
        .remove("inclusionProof");
    let e = verify_js(&serde_json::to_vec(&set_only).unwrap()).unwrap_err();
    assert_eq!(e.kind(), "UnsupportedBundleVersion", "{e}");
}

#[test]
fn artifact_must_match() {
    let other = ArtifactDigest::parse(&format!("sha256:{}", "00".repeat(32))).unwrap();
    let e = verify_bundle(
        &read(REUSABLE),
        Artifact::Digest(&other),
        &root_2025(),
        &repo_policy("malancas/attest-demo"),
        REUSABLE_AT,
    )
    .unwrap_err();
    assert_eq!(e.kind(), "ArtifactMismatch", "{e}");
    let e = verify_bundle(
        &read(REUSABLE),
        Artifact::Bytes(b"not the wheel"),
        &root_2025(),
        &repo_policy("malancas/attest-demo"),
        REUSABLE_AT,
    )
    .unwrap_err();
    assert_eq!(e.kind(), "ArtifactMismatch", "{e}");
}

#[test]
fn signed_after_now_is_refused() {
    // Gap wrapped: sigstore-verify compares with the wall clock only.
    let d = ArtifactDigest::parse(REUSABLE_DIGEST).unwrap();
    let e = verify_bundle(
        &read(REUSABLE),
        Artifact::Digest(&d),
        &root_2025(),
        &repo_policy("malancas/attest-demo"),
        UnixSecs(REUSABLE_AT.get() - 1),
    )
    .unwrap_err();
    assert_eq!(e.kind(), "SignedAfterNow", "{e}");
}

fn assert_kind(r: Result<VerifiedBundle, VerifyError>, kind: &str, what: &str) {
    match r {
        Ok(_) => panic!("{what}: tampered bundle verified"),
        Err(e) => assert_eq!(e.kind(), kind, "{what}: {e}"),
    }
}

#[test]
fn tampered_dsse_payload_is_refused() {
    for (name, verify) in both() {
        // A byte inside the predicate: the statement still parses and still names the
        // same subject, so only the signature can catch it.
        let b = tampered(name, |v| {
            let p = &mut v["dsseEnvelope"]["payload"];
            let mut bytes = B64.decode(p.as_str().unwrap()).unwrap();
            let s = String::from_utf8(bytes.clone()).unwrap();
            let i = s.find("buildType").unwrap();
            bytes[i] = b'B';
            *p = Value::String(B64.encode(bytes));
        });
        assert_kind(verify(&b), "InvalidSignature", name);
    }
}

#[test]
fn tampered_signature_is_refused() {
    for (name, verify) in both() {
        let b = tampered(name, |v| {
            flip_b64(&mut v["dsseEnvelope"]["signatures"][0]["sig"], 20)
        });
        assert_kind(verify(&b), "InvalidSignature", name);
    }
}

#[test]
fn tampered_integrated_time_is_refused() {
    // Moving the signing time outside the certificate's 10-minute window: the SET
    // covers integratedTime, so the forged time is refused before it could be used.
    let b = tampered(REUSABLE, |v| {
        tlog(v)["integratedTime"] = Value::String((REUSABLE_AT.get() + 3600).to_string());
    });
    assert_kind(
        verify_reusable(&b),
        "InvalidSignedEntryTimestamp",
        "time +1h",
    );
}

#[test]
fn certificate_outside_validity_at_signing_time() {
    // A genuine, SET-signed Rekor entry from another signature, 9 months earlier
    // (sigstore-js, 2023-08-29), grafted onto the attest-build-provenance bundle
    // (certificate valid 2024-05-24 19:14:24..19:24:24): the authenticated signing
    // time falls outside the certificate's validity.
    let js: Value = serde_json::from_slice(&read(JS)).unwrap();
    let b = tampered(REUSABLE, |v| {
        v["verificationMaterial"]["tlogEntries"] =
            js["verificationMaterial"]["tlogEntries"].clone();
    });
    assert_kind(
        verify_reusable(&b),
        "CertificateNotValidAtSigningTime",
        "foreign entry",
    );
}

#[test]
fn rekor_entry_for_a_different_body_is_refused() {
    // The body of another artifact's entry, with this entry's proof and SET: the SET
    // and the Merkle leaf both cover the body; the Merkle path is computed first
    // (a tampered SET alone: `forged_set_is_refused`).
    let js: Value = serde_json::from_slice(&read(JS)).unwrap();
    let b = tampered(REUSABLE, |v| {
        tlog(v)["canonicalizedBody"] =
            js["verificationMaterial"]["tlogEntries"][0]["canonicalizedBody"].clone();
    });
    assert_kind(verify_reusable(&b), "InvalidInclusionProof", "body swap");
    // Without the SET: body swapped and inclusion promise removed.
    let b = tampered(REUSABLE, |v| {
        let e = tlog(v);
        e["canonicalizedBody"] =
            js["verificationMaterial"]["tlogEntries"][0]["canonicalizedBody"].clone();
        e.as_object_mut().unwrap().remove("inclusionPromise");
    });
    // Without the SET, the inclusion proof still catches it.
    assert_kind(
        verify_reusable(&b),
        "InvalidInclusionProof",
        "body swap without SET",
    );
    // The SET alone gone: no authenticated signing time is left.
    let b = tampered(REUSABLE, |v| {
        tlog(v).as_object_mut().unwrap().remove("inclusionPromise");
    });
    assert_kind(verify_reusable(&b), "NoVerifiedTime", "no SET");
}

#[test]
fn inclusion_proof_not_reaching_the_root_is_refused() {
    let b = tampered(REUSABLE, |v| {
        flip_b64(&mut tlog(v)["inclusionProof"]["hashes"][0], 0)
    });
    assert_kind(verify_reusable(&b), "InvalidInclusionProof", "proof hash");
    let b = tampered(REUSABLE, |v| {
        let p = &mut tlog(v)["inclusionProof"];
        let idx: u64 = p["logIndex"].as_str().unwrap().parse().unwrap();
        p["logIndex"] = Value::String((idx + 1).to_string());
    });
    assert_kind(verify_reusable(&b), "InvalidInclusionProof", "proof index");
    // The proof does not reach the root it names.
    let b = tampered(REUSABLE, |v| {
        flip_b64(&mut tlog(v)["inclusionProof"]["rootHash"], 0)
    });
    assert_kind(verify_reusable(&b), "InvalidInclusionProof", "root hash");
    // A checkpoint the same log really signed, for another tree: the proof's root
    // is not the checkpoint's.
    let js: Value = serde_json::from_slice(&read(JS)).unwrap();
    let b = tampered(REUSABLE, |v| {
        tlog(v)["inclusionProof"]["checkpoint"] =
            js["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]["checkpoint"].clone();
    });
    assert_kind(verify_reusable(&b), "InvalidCheckpoint", "other checkpoint");
}

#[test]
fn forged_checkpoint_is_refused() {
    let b = tampered(REUSABLE, |v| {
        let cp = &mut tlog(v)["inclusionProof"]["checkpoint"]["envelope"];
        let text = cp.as_str().unwrap().to_string();
        // The signature line is the last non-empty line: "— origin base64sig".
        let (head, sig_line) = text.trim_end().rsplit_once('\n').unwrap();
        let (prefix, sig) = sig_line.rsplit_once(' ').unwrap();
        let mut raw = B64.decode(sig).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        *cp = Value::String(format!("{head}\n{prefix} {}\n", B64.encode(raw)));
    });
    assert_kind(verify_reusable(&b), "InvalidCheckpoint", "checkpoint sig");
}

#[test]
fn unknown_log_id_is_refused() {
    let b = tampered(REUSABLE, |v| flip_b64(&mut tlog(v)["logId"]["keyId"], 0));
    assert_kind(verify_reusable(&b), "UnknownLog", "log id");
}

#[test]
fn forged_set_is_refused() {
    for (name, verify) in both() {
        let b = tampered(name, |v| {
            flip_b64(&mut tlog(v)["inclusionPromise"]["signedEntryTimestamp"], 30)
        });
        assert_kind(verify(&b), "InvalidSignedEntryTimestamp", name);
    }
}

#[test]
fn missing_or_empty_material_is_refused() {
    let cases: Vec<(&str, Tamper, &str)> = vec![
        (
            "no verificationMaterial",
            Box::new(|v| {
                v.as_object_mut().unwrap().remove("verificationMaterial");
            }),
            "MissingVerificationMaterial",
        ),
        (
            "no certificate",
            Box::new(|v| {
                v["verificationMaterial"]
                    .as_object_mut()
                    .unwrap()
                    .remove("certificate");
            }),
            "MissingVerificationMaterial",
        ),
        (
            "empty certificate",
            Box::new(|v| {
                v["verificationMaterial"]["certificate"]["rawBytes"] = Value::String(String::new())
            }),
            "MalformedCertificate",
        ),
        (
            "no tlog entries",
            Box::new(|v| v["verificationMaterial"]["tlogEntries"] = Value::Array(vec![])),
            "NoTransparencyLogEntry",
        ),
        (
            "no inclusion proof",
            Box::new(|v| {
                tlog(v).as_object_mut().unwrap().remove("inclusionProof");
            }),
            "InvalidInclusionProof",
        ),
        (
            "no checkpoint",
            Box::new(|v| {
                tlog(v)["inclusionProof"]
                    .as_object_mut()
                    .unwrap()
                    .remove("checkpoint");
            }),
            "InvalidCheckpoint",
        ),
        (
            "no DSSE envelope",
            Box::new(|v| {
                v.as_object_mut().unwrap().remove("dsseEnvelope");
            }),
            "MalformedBundle",
        ),
        (
            "no DSSE signatures",
            Box::new(|v| v["dsseEnvelope"]["signatures"] = Value::Array(vec![])),
            "MalformedBundle",
        ),
        (
            "public key instead of certificate",
            Box::new(|v| {
                let vm = v["verificationMaterial"].as_object_mut().unwrap();
                vm.remove("certificate");
                vm.insert("publicKey".into(), serde_json::json!({"hint": "x"}));
            }),
            "NotKeyless",
        ),
    ];
    for (what, f, kind) in cases {
        let b = tampered(REUSABLE, |v| f(v));
        assert_kind(verify_reusable(&b), kind, what);
    }
}

#[test]
fn wrong_media_types_are_refused() {
    for (mt, kind) in [
        (
            "application/vnd.dev.sigstore.bundle.v0.4+json",
            "UnknownMediaType",
        ),
        ("application/json", "UnknownMediaType"),
    ] {
        let b = tampered(REUSABLE, |v| v["mediaType"] = Value::String(mt.into()));
        assert_kind(verify_reusable(&b), kind, mt);
    }
    let b = tampered(REUSABLE, |v| {
        v.as_object_mut().unwrap().remove("mediaType");
    });
    assert_kind(verify_reusable(&b), "MissingMediaType", "no media type");
    // v0.1 and v0.2 are accepted as media types; this v0.3-shaped bundle (single
    // certificate, inclusion proof and checkpoint) then verifies the same way.
    for mt in [signatures::MEDIA_TYPE_V0_1, signatures::MEDIA_TYPE_V0_2] {
        let b = tampered(REUSABLE, |v| v["mediaType"] = Value::String(mt.into()));
        verify_reusable(&b).unwrap();
    }
}

#[test]
fn non_in_toto_payload_type_is_refused() {
    let b = tampered(REUSABLE, |v| {
        v["dsseEnvelope"]["payloadType"] =
            Value::String("application/vnd.provenant.report.v1+json".into())
    });
    assert_kind(verify_reusable(&b), "UnsupportedBundle", "payload type");
}

#[test]
fn oversized_and_garbage_input_never_panics() {
    let big = vec![b' '; MAX_BUNDLE_BYTES + 1];
    assert_kind(verify_reusable(&big), "BundleTooLarge", "big");
    let bundle = read(REUSABLE);
    for cut in (0..bundle.len()).step_by(97) {
        assert!(verify_reusable(&bundle[..cut]).is_err());
    }
    let mut flipped = bundle.clone();
    for i in (0..flipped.len()).step_by(251) {
        flipped[i] ^= 0x20;
        let _ = verify_reusable(&flipped);
        flipped[i] ^= 0x20;
    }
    for garbage in [
        &b""[..],
        b"null",
        b"[]",
        b"{}",
        b"\xff\xfe",
        br#"{"mediaType":null}"#,
    ] {
        assert!(verify_reusable(garbage).is_err());
    }
}

#[test]
fn trusted_root_input_is_bounded_and_typed() {
    assert_eq!(
        TrustRoot::from_json(b"{").unwrap_err().kind(),
        "InvalidTrustRoot"
    );
    assert_eq!(
        TrustRoot::from_json(&vec![b' '; signatures::MAX_TRUSTED_ROOT_BYTES + 1])
            .unwrap_err()
            .kind(),
        "TrustRootTooLarge"
    );
    assert_eq!(
        TrustRoot::from_file(&data("does-not-exist.json"))
            .unwrap_err()
            .kind(),
        "TrustRootUnreadable"
    );
    // A bundle from the public-good instance does not verify under GitHub's.
    let gh = TrustRoot::github_instance().unwrap();
    assert_eq!(gh.instance(), signatures::Instance::GitHub);
    let d = ArtifactDigest::parse(REUSABLE_DIGEST).unwrap();
    let e = verify_bundle(
        &read(REUSABLE),
        Artifact::Digest(&d),
        &gh,
        &repo_policy("malancas/attest-demo"),
        REUSABLE_AT,
    )
    .unwrap_err();
    assert_eq!(e.kind(), "UnknownLog", "{e}");
}
