//! The `cp-verifier verify image` contract, through the real binary: the
//! containers/image cosign vectors (signatures/tests/data/cosign) and signatures made
//! by the project's TEST cosign signer.

mod common;

use std::path::PathBuf;

use serde_json::Value;
use sigstore_testsign::cosign::{CosignKey, CosignOptions};
use sigstore_testsign::{keys, Identity, TestSigstore};

const DIGEST: &str = "sha256:0489474da8ea22426ece86ace6c1c0026ab2fd3cdfbbd62b7e94650266c37d9a";
const KEYLESS_TIME: &str = "1674247893";
const KEY_TIME: &str = "1674251859";

fn vec_path(rel: &str) -> String {
    format!(
        "{}/../signatures/tests/data/cosign/containers-image/{rel}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn run(args: &[&str]) -> (i32, Value) {
    common::cp_verifier(&[&["verify", "image"], args].concat())
}

fn tmp(name: &str, bytes: &[u8]) -> String {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("verify_image_cli");
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p.to_string_lossy().into_owned()
}

#[test]
fn keyless_vector_verifies() {
    let (code, v) = run(&[
        "--manifest",
        &vec_path("dir-img-cosign-fulcio-rekor-valid/manifest.json"),
        "--signature",
        &vec_path("dir-img-cosign-fulcio-rekor-valid/signature-1"),
        "--fulcio-ca",
        &vec_path("fulcio_v1.crt.pem"),
        "--rekor-key",
        &vec_path("rekor.pub"),
        "--identity-email",
        "mitr@redhat.com",
        "--issuer",
        "https://github.com/login/oauth",
        "--at",
        KEYLESS_TIME,
    ]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["verified"], true);
    assert_eq!(v["digest"], DIGEST);
    assert_eq!(v["signer"]["keyless"], true);
    assert_eq!(v["signer"]["identity"], "mitr@redhat.com");
    assert_eq!(v["signer"]["issuer"], "https://github.com/login/oauth");
    assert_eq!(v["integrated_time"], 1674247893);
    assert_eq!(
        v["docker_reference"],
        "192.168.64.2:5000/cosign-signed/fulcio-rekor-1"
    );
}

#[test]
fn key_vector_verifies() {
    let (code, v) = run(&[
        "--digest",
        DIGEST,
        "--signature",
        &vec_path("dir-img-cosign-key-rekor-valid/signature-1"),
        "--key",
        &vec_path("cosign2.pub"),
        "--rekor-key",
        &vec_path("rekor.pub"),
        "--at",
        KEY_TIME,
    ]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["signer"]["keyless"], false);
    assert!(v["signer"]["identity"]
        .as_str()
        .unwrap()
        .starts_with("key:sha256:"));
    assert_eq!(v["integrated_time"], 1674251859);
}

#[test]
fn refusals_exit_1_with_kind_and_reason() {
    let keyless = |email: &str, digest: &str, at: &str| {
        run(&[
            "--digest",
            digest,
            "--signature",
            &vec_path("dir-img-cosign-fulcio-rekor-valid/signature-1"),
            "--fulcio-ca",
            &vec_path("fulcio_v1.crt.pem"),
            "--rekor-key",
            &vec_path("rekor.pub"),
            "--identity-email",
            email,
            "--issuer",
            "https://github.com/login/oauth",
            "--at",
            at,
        ])
    };
    let (code, v) = keyless("someone@example.com", DIGEST, KEYLESS_TIME);
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["error"]["kind"], "IdentityMismatch");
    assert_eq!(v["error"]["reason"], "ImageIdentityMismatch");
    let other = format!("sha256:{}", "00".repeat(32));
    let (code, v) = keyless("mitr@redhat.com", &other, KEYLESS_TIME);
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["error"]["kind"], "DigestMismatch");
    assert_eq!(v["error"]["reason"], "ImageDigestMismatch");
    let (code, v) = keyless("mitr@redhat.com", DIGEST, "1674247892");
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["error"]["kind"], "SignedAfterNow");

    // The wrong key.
    let (code, v) = run(&[
        "--digest",
        DIGEST,
        "--signature",
        &vec_path("dir-img-cosign-key-rekor-valid/signature-1"),
        "--key",
        &vec_path("rekor.pub"),
        "--at",
        KEY_TIME,
    ]);
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["error"]["kind"], "InvalidSignature");
    assert_eq!(v["error"]["reason"], "ImageSignatureInvalid");

    // SET removed while --rekor-key requires it.
    let raw = std::fs::read(vec_path("dir-img-cosign-key-rekor-valid/signature-1")).unwrap();
    let sig = signatures::parse_signature_file(&raw).unwrap();
    let signatures::ImageSignature::SimpleSigning {
        payload,
        mut annotations,
    } = sig
    else {
        unreachable!()
    };
    annotations.remove("dev.sigstore.cosign/bundle");
    let stripped = signatures::encode_signature_file(&signatures::ImageSignature::SimpleSigning {
        payload,
        annotations,
    })
    .unwrap();
    let p = tmp("no-set.sig", &stripped);
    let (code, v) = run(&[
        "--digest",
        DIGEST,
        "--signature",
        &p,
        "--key",
        &vec_path("cosign2.pub"),
        "--rekor-key",
        &vec_path("rekor.pub"),
        "--at",
        KEY_TIME,
    ]);
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["error"]["kind"], "MissingRekorSet");
    // Without --rekor-key the key signature alone verifies.
    let (code, v) = run(&[
        "--digest",
        DIGEST,
        "--signature",
        &p,
        "--key",
        &vec_path("cosign2.pub"),
        "--at",
        KEY_TIME,
    ]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["integrated_time"], Value::Null);

    // Garbage signature file.
    let p = tmp("garbage.sig", b"\x00sigstore-json\n{not json");
    let (code, v) = run(&[
        "--digest",
        DIGEST,
        "--signature",
        &p,
        "--key",
        &vec_path("cosign2.pub"),
    ]);
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["error"]["kind"], "MalformedSignature");
}

#[test]
fn usage_errors_exit_2() {
    let sig = vec_path("dir-img-cosign-key-rekor-valid/signature-1");
    let ca = vec_path("fulcio_v1.crt.pem");
    let rekor = vec_path("rekor.pub");
    let cases: Vec<Vec<&str>> = vec![
        // No trust.
        vec!["--digest", DIGEST, "--signature", &sig],
        // Bad digest.
        vec!["--digest", "sha256:00", "--signature", &sig, "--key", "x"],
        // Unreadable files.
        vec![
            "--digest",
            DIGEST,
            "--signature",
            "/nonexistent",
            "--key",
            "/nonexistent",
        ],
        // Keyless without an issuer.
        vec![
            "--digest",
            DIGEST,
            "--signature",
            &sig,
            "--fulcio-ca",
            &ca,
            "--rekor-key",
            &rekor,
            "--san",
            "x",
        ],
        // Unreadable trusted root.
        vec![
            "--digest",
            DIGEST,
            "--signature",
            &sig,
            "--trusted-root",
            "/nonexistent",
            "--issuer",
            "i",
            "--san",
            "x",
        ],
        // --fulcio-ca without --rekor-key.
        vec![
            "--digest",
            DIGEST,
            "--signature",
            &sig,
            "--fulcio-ca",
            "/nonexistent",
            "--issuer",
            "i",
            "--san",
            "x",
        ],
        // --key with keyless flags.
        vec![
            "--digest",
            DIGEST,
            "--signature",
            &sig,
            "--key",
            "x",
            "--issuer",
            "i",
        ],
    ];
    for c in cases {
        let (code, v) = run(&c);
        assert_eq!(code, 2, "{c:?}: {v}");
    }
    // An identity-less keyless policy.
    let (code, v) = run(&[
        "--digest",
        DIGEST,
        "--signature",
        &sig,
        "--fulcio-ca",
        &vec_path("fulcio_v1.crt.pem"),
        "--rekor-key",
        &vec_path("rekor.pub"),
        "--issuer",
        "https://github.com/login/oauth",
    ]);
    assert_eq!(code, 2, "{v}");
    assert_eq!(v["error"]["kind"], "NoIdentityConstraint");
}

#[test]
fn test_signer_signatures_verify_through_the_cli() {
    let t = TestSigstore::load().unwrap();
    let digest = format!("sha256:{}", "ab".repeat(32));
    let at = 1_750_000_000;
    let at_s = at.to_string();
    let rekor = keys::dir().join(keys::files::REKOR_PUB);
    let root = keys::trusted_root_path();

    // Key-based, with a SET.
    let key = CosignKey::test_key();
    let s = t
        .sign_image_with_key(
            &key,
            "127.0.0.1:5000/ns/app",
            &digest,
            &CosignOptions::at(at),
        )
        .unwrap();
    let sig = tmp("key.sig", &signatures::encode_signature_file(&s).unwrap());
    let pubkey = tmp("cosign.pub", key.public_key_pem().as_bytes());
    let (code, v) = run(&[
        "--digest",
        &digest,
        "--signature",
        &sig,
        "--key",
        &pubkey,
        "--rekor-key",
        rekor.to_str().unwrap(),
        "--at",
        &at_s,
    ]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(
        v["signer"]["identity"],
        format!("key:{}", key.fingerprint())
    );

    // Keyless GitHub workflow identity under the TEST trusted root, as the layer
    // JSON (no containers/image prefix).
    let id = Identity::github("acme/app", ".github/workflows/release.yml", "refs/tags/v1");
    let s = t
        .sign_image_keyless(
            &id,
            "127.0.0.1:5000/ns/app",
            &digest,
            &CosignOptions::at(at),
        )
        .unwrap();
    let file = signatures::encode_signature_file(&s).unwrap();
    let sig = tmp(
        "keyless.json",
        &file[signatures::cosign::SIGSTORE_JSON_PREFIX.len()..],
    );
    let keyless = |sig: &str, san: &str, source_ref: &str| {
        run(&[
            "--digest",
            &digest,
            "--signature",
            sig,
            "--trusted-root",
            root.to_str().unwrap(),
            "--san",
            san,
            "--issuer",
            "https://token.actions.githubusercontent.com",
            "--source-repository",
            "acme/app",
            "--source-ref",
            source_ref,
            "--at",
            &at_s,
        ])
    };
    let san = "https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1";
    let (code, v) = keyless(&sig, san, "refs/tags/v1");
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["signer"]["identity"], san);
    assert_eq!(
        v["signer"]["source_repository"],
        "https://github.com/acme/app"
    );
    assert_eq!(v["signer"]["source_ref"], "refs/tags/v1");
    let (code, v) = keyless(&sig, san, "refs/heads/main");
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["error"]["kind"], "IdentityMismatch");

    // The OCI-referrer bundle.
    let b = t
        .sign_image_bundle(&id, "127.0.0.1:5000/ns/app", &digest, at)
        .unwrap();
    let signatures::ImageSignature::Bundle(bytes) = b else {
        unreachable!()
    };
    let bundle = tmp("image.sigstore.json", &bytes);
    let (code, v) = keyless(&bundle, san, "refs/tags/v1");
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["docker_reference"], "127.0.0.1:5000/ns/app");
    let (code, v) = keyless(&bundle, san, "refs/heads/main");
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["error"]["reason"], "ImageIdentityMismatch");
}
