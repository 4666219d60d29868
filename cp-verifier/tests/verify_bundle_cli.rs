//! The `cp-verifier verify bundle` contract, through the real binary, on the real
//! Sigstore vectors in signatures/tests/data.

mod common;

use serde_json::Value;

fn data(name: &str) -> String {
    format!(
        "{}/../signatures/tests/data/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

const REUSABLE: &str = "reusable-workflow-attestation.sigstore.json";
const DIGEST: &str = "sha256:49a3aa6075e0f49f82843e74b5baa614ad2a588e6675612bf108a0a008c5ac25";
const JS: &str = "sigstore-js-2.1.0-bundle.json";
const ROOT: &str = "public-good.sigstore-python-2025.json";

fn run(args: &[&str]) -> (i32, Value) {
    common::cp_verifier(&[&["verify", "bundle"], args].concat())
}

#[test]
fn verified_bundle_json_shape() {
    let (code, v) = run(&[
        "--bundle",
        &data(REUSABLE),
        "--trusted-root",
        &data(ROOT),
        "--digest",
        DIGEST,
        "--source-repo",
        "malancas/attest-demo",
        "--signer-workflow",
        "github/artifact-attestations-workflows/.github/workflows/attest.yml",
        "--source-ref",
        "refs/heads/main",
        "--predicate-type",
        "https://slsa.dev/provenance/v1",
        "--at",
        "1716578064",
    ]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["verified"], true);
    let b = &v["bundles"][0];
    let mut keys: Vec<&String> = b.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "issuer",
            "media_type",
            "predicate_type",
            "runner_environment",
            "san",
            "signed_at",
            "source_ref",
            "source_repo",
            "subjects"
        ]
    );
    assert_eq!(
        b["media_type"],
        "application/vnd.dev.sigstore.bundle.v0.3+json"
    );
    assert_eq!(b["san"], "https://github.com/github/artifact-attestations-workflows/.github/workflows/attest.yml@09b495c3f12c7881b3cc17209a327792065c1a1d");
    assert_eq!(b["issuer"], "https://token.actions.githubusercontent.com");
    assert_eq!(b["source_repo"], "https://github.com/malancas/attest-demo");
    assert_eq!(b["source_ref"], "refs/heads/main");
    assert_eq!(b["runner_environment"], "github-hosted");
    assert_eq!(b["predicate_type"], "https://slsa.dev/provenance/v1");
    assert_eq!(
        b["subjects"],
        serde_json::json!([{"name":"github_provenance_demo-0.0.0-py3-none-any.whl","digest":{"sha256":"49a3aa6075e0f49f82843e74b5baa614ad2a588e6675612bf108a0a008c5ac25"}}])
    );
    assert_eq!(b["signed_at"], "2024-05-24T19:14:24Z");
}

#[test]
fn json_lines_every_line_must_verify() {
    let dir = tempfile::tempdir().unwrap();
    let line = |name: &str| {
        let v: Value = serde_json::from_slice(&std::fs::read(data(name)).unwrap()).unwrap();
        serde_json::to_string(&v).unwrap()
    };
    let good = dir.path().join("good.jsonl");
    std::fs::write(&good, format!("{}\n\n{}\n", line(JS), line(JS))).unwrap();
    let args = |p: &str| {
        vec![
            "--bundle".to_string(),
            p.to_string(),
            "--trusted-root".into(),
            data(ROOT),
            "--source-repo".into(),
            "sigstore/sigstore-js".into(),
            "--at".into(),
            "1693323623".into(),
        ]
    };
    let a = args(good.to_str().unwrap());
    let (code, v) = run(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["bundles"].as_array().unwrap().len(), 2);
    assert_eq!(
        v["bundles"][0]["subjects"][0]["digest"]["sha512"]
            .as_str()
            .unwrap()
            .len(),
        128
    );

    // Line 2: the v0.1 form of the same signature with only its SET (v0.1 is
    // accepted only with an inclusion proof and checkpoint).
    let mut set_only: Value =
        serde_json::from_str(&line("sigstore-js-2.1.0-bundle-v0.1.json")).unwrap();
    set_only["verificationMaterial"]["tlogEntries"][0]
        .as_object_mut()
        .unwrap()
        .remove("inclusionProof");
    let mixed = dir.path().join("mixed.jsonl");
    std::fs::write(&mixed, format!("{}\n{set_only}\n", line(JS))).unwrap();
    let a = args(mixed.to_str().unwrap());
    let (code, v) = run(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["error"]["kind"], "UnsupportedBundleVersion");
    assert!(
        v["error"]["detail"].as_str().unwrap().contains("line 2"),
        "{v}"
    );
}

#[test]
fn refusals_exit_1_with_typed_error() {
    let base = |extra: &[&str]| {
        let mut a = vec![
            "--bundle",
            REUSABLE,
            "--trusted-root",
            ROOT,
            "--at",
            "1716578064",
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
        a[1] = data(REUSABLE);
        a[3] = data(ROOT);
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    for (extra, kind) in [
        (
            vec!["--source-repo", "fakeowner/fakerepo"],
            "IdentityMismatch",
        ),
        (
            vec!["--signer-workflow", "foo/bar/.github/workflows/attest.yml"],
            "IdentityMismatch",
        ),
        (
            vec![
                "--source-repo",
                "malancas/attest-demo",
                "--digest",
                "sha256:0000000000000000000000000000000000000000000000000000000000000000",
            ],
            "ArtifactMismatch",
        ),
        (
            vec![
                "--source-repo",
                "malancas/attest-demo",
                "--issuer",
                "https://accounts.google.com",
            ],
            "IdentityMismatch",
        ),
    ] {
        let a = base(&extra);
        let (code, v) = run(&a.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(code, 1, "{extra:?}: {v}");
        assert_eq!(v["error"]["kind"], kind, "{v}");
        assert!(v["error"]["detail"].is_string());
        assert!(v.get("verified").is_none());
    }
    // Signed after --at.
    let mut a = base(&["--source-repo", "malancas/attest-demo"]);
    a[5] = "1716578000".into();
    let (code, v) = run(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(
        (code, v["error"]["kind"].as_str()),
        (1, Some("SignedAfterNow")),
        "{v}"
    );
    // An artifact file that is not the wheel.
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("artifact");
    std::fs::write(&f, b"not the wheel").unwrap();
    let a = base(&[
        "--source-repo",
        "malancas/attest-demo",
        "--artifact",
        f.to_str().unwrap(),
    ]);
    let (code, v) = run(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(
        (code, v["error"]["kind"].as_str()),
        (1, Some("ArtifactMismatch")),
        "{v}"
    );
}

#[test]
fn usage_errors_exit_2() {
    // No identity constraint: refused as cosign and gh refuse it.
    let (code, v) = run(&[
        "--bundle",
        &data(REUSABLE),
        "--trusted-root",
        &data(ROOT),
        "--at",
        "1716578064",
    ]);
    assert_eq!(code, 2, "{v}");
    assert_eq!(v["error"]["kind"], "NoIdentityConstraint");
    // Bad digest, unreadable file, missing flag.
    let (code, v) = run(&[
        "--bundle",
        &data(REUSABLE),
        "--trusted-root",
        &data(ROOT),
        "--source-repo",
        "a/b",
        "--digest",
        "md5:00",
    ]);
    assert_eq!(
        (code, v["error"]["kind"].as_str()),
        (2, Some("InvalidDigest"))
    );
    let (code, v) = run(&[
        "--bundle",
        "/nonexistent/bundle.json",
        "--trusted-root",
        &data(ROOT),
        "--source-repo",
        "a/b",
    ]);
    assert_eq!(
        (code, v["error"]["kind"].as_str()),
        (2, Some("Usage")),
        "{v}"
    );
    let (code, _) = run(&["--trusted-root", &data(ROOT), "--source-repo", "a/b"]);
    assert_eq!(code, 2);
    let (code, _) = run(&[
        "--bundle",
        &data(REUSABLE),
        "--trusted-root",
        &data(ROOT),
        "--san",
        "x",
        "--san-regex",
        "y",
    ]);
    assert_eq!(code, 2);
}

/// The suite's managed-key cases (signatures/tests/data/sigstore-conformance).
fn conformance(case: &str, file: &str) -> String {
    data(&format!("sigstore-conformance/bundle-verify/{case}/{file}"))
}

const KEY_CASE: &str = "managed-key-happy-path";
/// Its Rekor integrated time.
const KEY_AT: &str = "1766077479";

fn key_args(bundle: &str, key: &str, at: &str) -> Vec<String> {
    vec![
        "--bundle".into(),
        bundle.into(),
        "--trusted-root".into(),
        data("sigstore-conformance/trusted_root.public-good.json"),
        "--artifact".into(),
        data("sigstore-conformance/bundle-verify/a.txt"),
        "--key".into(),
        key.into(),
        "--at".into(),
        at.into(),
    ]
}

fn run_owned(a: &[String]) -> (i32, Value) {
    run(&a.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
fn managed_key_bundle_verifies_with_key() {
    let bundle = conformance(KEY_CASE, "bundle.sigstore.json");
    let key = conformance(KEY_CASE, "key.pub");
    let (code, v) = run_owned(&key_args(&bundle, &key, KEY_AT));
    assert_eq!(code, 0, "{v}");
    let b = &v["bundles"][0];
    let mut keys: Vec<&String> = b.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "key",
            "media_type",
            "predicate_type",
            "signed_at",
            "subjects"
        ]
    );
    assert_eq!(
        b["media_type"],
        "application/vnd.dev.sigstore.bundle.v0.3+json"
    );
    let pem = std::fs::read_to_string(&key).unwrap();
    let der = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        pem.lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<String>(),
    )
    .unwrap();
    let fpr = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&der))
    );
    assert_eq!(b["key"], fpr.as_str());
    assert_eq!(b["signed_at"], "2025-12-18T17:04:39Z");
    assert_eq!(b["subjects"], serde_json::json!([]));
    // Signed after --at.
    let (code, v) = run_owned(&key_args(&bundle, &key, "1766077478"));
    assert_eq!(
        (code, v["error"]["kind"].as_str()),
        (1, Some("SignedAfterNow")),
        "{v}"
    );
}

#[test]
fn managed_key_refusals() {
    let bundle = conformance(KEY_CASE, "bundle.sigstore.json");
    let key = conformance(KEY_CASE, "key.pub");
    let dir = tempfile::tempdir().unwrap();
    // Another valid P-256 key: the signature does not verify with it.
    let other = dir.path().join("other.pub");
    std::fs::write(
        &other,
        "-----BEGIN PUBLIC KEY-----\n\
         MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEKrVNSXBoZpLAfy/0gaq9KPQ0rNHy\n\
         /RLm2YjDbn9+nmA0qGiowbdhqsxMQ2+S1pknsOnEv7xXXj7tYerxkeucZA==\n\
         -----END PUBLIC KEY-----\n",
    )
    .unwrap();
    let cases: Vec<(Vec<String>, i32, &str)> = vec![
        (
            key_args(&bundle, other.to_str().unwrap(), KEY_AT),
            1,
            "InvalidSignature",
        ),
        // The suite's wrong key: not even a P-256 point.
        (
            key_args(
                &bundle,
                &conformance("managed-key-wrong-key_fail", "key.pub"),
                KEY_AT,
            ),
            1,
            "InvalidKey",
        ),
        // A keyless bundle given to --key.
        (
            key_args(
                &conformance("happy-path-v0.3-new-mediaType", "bundle.sigstore.json"),
                &key,
                "1710869186",
            ),
            1,
            "NotManagedKey",
        ),
    ];
    for (a, code, kind) in cases {
        let (c, v) = run_owned(&a);
        assert_eq!((c, v["error"]["kind"].as_str()), (code, Some(kind)), "{v}");
    }
    // The log checks are unchanged: an inclusion proof that does not reach its root.
    let mut v: Value = serde_json::from_slice(&std::fs::read(&bundle).unwrap()).unwrap();
    let h = &mut v["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]["hashes"][0];
    let mut raw = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        h.as_str().unwrap(),
    )
    .unwrap();
    raw[0] ^= 1;
    *h = Value::String(base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        raw,
    ));
    let tampered = dir.path().join("tampered.json");
    std::fs::write(&tampered, serde_json::to_vec(&v).unwrap()).unwrap();
    let (c, v) = run_owned(&key_args(tampered.to_str().unwrap(), &key, KEY_AT));
    assert_eq!(
        (c, v["error"]["kind"].as_str()),
        (1, Some("InvalidInclusionProof")),
        "{v}"
    );
    // The key bundle without --key: an identity is not a key.
    let (c, v) = run(&[
        "--bundle",
        &bundle,
        "--trusted-root",
        &data("sigstore-conformance/trusted_root.public-good.json"),
        "--san",
        "x",
        "--at",
        KEY_AT,
    ]);
    assert_eq!(
        (c, v["error"]["kind"].as_str()),
        (1, Some("NotKeyless")),
        "{v}"
    );
    // --key with an identity flag, or an unreadable key: usage errors.
    let mut a = key_args(&bundle, &key, KEY_AT);
    a.extend(["--source-repo".into(), "a/b".into()]);
    let (c, v) = run_owned(&a);
    assert_eq!((c, v["error"]["kind"].as_str()), (2, Some("Usage")), "{v}");
    let (c, v) = run_owned(&key_args(&bundle, "/nonexistent/key.pub", KEY_AT));
    assert_eq!((c, v["error"]["kind"].as_str()), (2, Some("Usage")), "{v}");
}
