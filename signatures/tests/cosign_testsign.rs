//! Signatures made by the project's TEST cosign signer (sigstore-testsign) verify
//! under the matching trust, and tampered or mis-signed ones do not.

use evidence::verdict::ReasonCode;
use provenant_base::clock::UnixSecs;
use signatures::cosign::{ANNOTATION_CHAIN, ANNOTATION_SIGNATURE};
use signatures::{
    encode_signature_file, parse_signature_file, verify_any, verify_image_signature,
    ImageSignature, ImageTrust, ImageTrustParts, KeylessIdentity,
};
use sigstore_testsign::cosign::{CosignKey, CosignOptions};
use sigstore_testsign::{keys, Identity, TestSigstore};

const AT: i64 = 1_750_000_000;
const REPO: &str = "127.0.0.1:5000/provenant/app";
const WORKFLOW: &str =
    "https://github.com/provenant/provenant/.github/workflows/release.yml@refs/heads/main";

fn digest() -> String {
    format!("sha256:{}", "ab".repeat(32))
}

fn testsign() -> TestSigstore {
    TestSigstore::load().unwrap()
}

fn key_file(name: &str) -> Vec<u8> {
    std::fs::read(keys::dir().join(name)).unwrap()
}

fn key_trust(key: &CosignKey, require_rekor: bool) -> ImageTrust {
    ImageTrust::from_parts(ImageTrustParts {
        keys: vec![key.public_key_pem().into_bytes()],
        rekor_keys: vec![key_file(keys::files::REKOR_PUB)],
        require_rekor,
        scope: Some("127.0.0.1:5000/provenant".into()),
        ..Default::default()
    })
    .unwrap()
}

fn gh_identity() -> KeylessIdentity {
    KeylessIdentity {
        issuer: "https://token.actions.githubusercontent.com".into(),
        san: Some(WORKFLOW.into()),
        source_repository: Some("https://github.com/provenant/provenant".into()),
        source_ref: Some("refs/heads/main".into()),
        ..Default::default()
    }
}

fn root_trust(id: KeylessIdentity) -> ImageTrust {
    ImageTrust::from_parts(ImageTrustParts {
        keyless: Some(id),
        trusted_root: Some(keys::trusted_root_json().as_bytes().to_vec()),
        require_rekor: true,
        scope: Some("127.0.0.1:5000/provenant".into()),
        ..Default::default()
    })
    .unwrap()
}

fn pem_trust(id: KeylessIdentity) -> ImageTrust {
    ImageTrust::from_parts(ImageTrustParts {
        keyless: Some(id),
        fulcio_ca: Some(key_file(keys::files::FULCIO_ROOT_PEM)),
        rekor_keys: vec![key_file(keys::files::REKOR_PUB)],
        require_rekor: true,
        ..Default::default()
    })
    .unwrap()
}

fn identity() -> Identity {
    Identity::github(
        "provenant/provenant",
        ".github/workflows/release.yml",
        "refs/heads/main",
    )
}

#[test]
fn the_test_key_is_deterministic_and_valid() {
    let a = CosignKey::test_key();
    let b = CosignKey::test_key();
    assert_eq!(a.public_key_pem(), b.public_key_pem());
    assert_ne!(
        a.public_key_pem(),
        CosignKey::generate().unwrap().public_key_pem()
    );
    let again = CosignKey::from_pkcs8_pem(&a.private_key_pem()).unwrap();
    assert_eq!(again.fingerprint(), a.fingerprint());
}

#[test]
fn key_signed_with_set_verifies() {
    let key = CosignKey::test_key();
    let s = testsign()
        .sign_image_with_key(&key, REPO, &digest(), &CosignOptions::at(AT))
        .unwrap();
    let v = verify_image_signature(&s, &digest(), &key_trust(&key, true), UnixSecs(AT)).unwrap();
    assert!(!v.keyless);
    assert_eq!(v.signer, format!("key:{}", key.fingerprint()));
    assert_eq!(v.integrated_time, Some(AT));
    assert_eq!(v.docker_reference.as_deref(), Some(REPO));
    // Through the stored file format too.
    let file = encode_signature_file(&s).unwrap();
    let parsed = parse_signature_file(&file).unwrap();
    assert_eq!(parsed, s);
    verify_image_signature(
        &parsed,
        &digest(),
        &key_trust(&key, true),
        UnixSecs(AT + 3600),
    )
    .unwrap();
}

#[test]
fn key_signed_failures() {
    let key = CosignKey::test_key();
    let t = testsign();
    // No SET: refused when required, accepted otherwise.
    let no_set = t
        .sign_image_with_key(
            &key,
            REPO,
            &digest(),
            &CosignOptions {
                rekor_set: false,
                ..CosignOptions::at(AT)
            },
        )
        .unwrap();
    assert_eq!(
        verify_image_signature(&no_set, &digest(), &key_trust(&key, true), UnixSecs(AT))
            .unwrap_err()
            .kind(),
        "MissingRekorSet"
    );
    verify_image_signature(&no_set, &digest(), &key_trust(&key, false), UnixSecs(AT)).unwrap();
    // Another key.
    let other = CosignKey::generate().unwrap();
    let s = t
        .sign_image_with_key(&other, REPO, &digest(), &CosignOptions::at(AT))
        .unwrap();
    let e =
        verify_image_signature(&s, &digest(), &key_trust(&key, true), UnixSecs(AT)).unwrap_err();
    assert_eq!(e.kind(), "InvalidSignature");
    // A SET forged with another Rekor key that claims the trusted log's ID.
    let forger = t.with_rekor_signing_key(&other.private_key_pem()).unwrap();
    let s = forger
        .sign_image_with_key(&key, REPO, &digest(), &CosignOptions::at(AT))
        .unwrap();
    let e =
        verify_image_signature(&s, &digest(), &key_trust(&key, true), UnixSecs(AT)).unwrap_err();
    assert_eq!(e.kind(), "InvalidRekorSet");
    // Logged after `now`.
    let s = testsign()
        .sign_image_with_key(&key, REPO, &digest(), &CosignOptions::at(AT))
        .unwrap();
    let e = verify_image_signature(&s, &digest(), &key_trust(&key, true), UnixSecs(AT - 1))
        .unwrap_err();
    assert_eq!(e.kind(), "SignedAfterNow");
    // Another repository than the scope.
    let s = testsign()
        .sign_image_with_key(
            &key,
            "127.0.0.1:5000/elsewhere/app",
            &digest(),
            &CosignOptions::at(AT),
        )
        .unwrap();
    let e =
        verify_image_signature(&s, &digest(), &key_trust(&key, true), UnixSecs(AT)).unwrap_err();
    assert_eq!(e.kind(), "ReferenceNotCovered");
    // Another digest.
    let e = verify_image_signature(
        &s,
        &format!("sha256:{}", "cd".repeat(32)),
        &key_trust(&key, true),
        UnixSecs(AT),
    )
    .unwrap_err();
    assert_eq!(e.reason_code(), ReasonCode::ImageDigestMismatch);
}

#[test]
fn keyless_github_workflow_identity_verifies() {
    let s = testsign()
        .sign_image_keyless(&identity(), REPO, &digest(), &CosignOptions::at(AT))
        .unwrap();
    for trust in [root_trust(gh_identity()), pem_trust(gh_identity())] {
        let v = verify_image_signature(&s, &digest(), &trust, UnixSecs(AT)).unwrap();
        assert!(v.keyless);
        assert_eq!(v.signer, WORKFLOW);
        assert_eq!(
            v.issuer.as_deref(),
            Some("https://token.actions.githubusercontent.com")
        );
        assert_eq!(
            v.source_repository.as_deref(),
            Some("https://github.com/provenant/provenant")
        );
        assert_eq!(v.source_ref.as_deref(), Some("refs/heads/main"));
        assert_eq!(v.integrated_time, Some(AT));
    }
    // SAN regex alone.
    let re = KeylessIdentity {
        issuer: "https://token.actions.githubusercontent.com".into(),
        san_regex: Some(
            r"https://github\.com/provenant/provenant/\.github/workflows/.*@refs/heads/main".into(),
        ),
        ..Default::default()
    };
    verify_image_signature(&s, &digest(), &root_trust(re), UnixSecs(AT)).unwrap();
}

#[test]
fn keyless_identity_mismatches() {
    let t = testsign();
    let s = t
        .sign_image_keyless(&identity(), REPO, &digest(), &CosignOptions::at(AT))
        .unwrap();
    let cases: Vec<(&str, KeylessIdentity)> = vec![
        (
            "ref",
            KeylessIdentity {
                source_ref: Some("refs/heads/dev".into()),
                ..gh_identity()
            },
        ),
        (
            "repo",
            KeylessIdentity {
                source_repository: Some("provenant/other".into()),
                ..gh_identity()
            },
        ),
        (
            "san",
            KeylessIdentity {
                san: Some(WORKFLOW.replace("release.yml", "other.yml")),
                ..gh_identity()
            },
        ),
        (
            "issuer",
            KeylessIdentity {
                issuer: "https://accounts.google.com".into(),
                ..gh_identity()
            },
        ),
    ];
    for (what, id) in cases {
        let e = verify_image_signature(&s, &digest(), &root_trust(id), UnixSecs(AT)).unwrap_err();
        assert_eq!(e.kind(), "IdentityMismatch", "{what}: {e}");
        assert_eq!(e.reason_code(), ReasonCode::ImageIdentityMismatch);
    }
    // A self-hosted runner is refused for GitHub Actions identities.
    let mut self_hosted = identity();
    self_hosted.runner_environment = "self-hosted".into();
    let s = t
        .sign_image_keyless(&self_hosted, REPO, &digest(), &CosignOptions::at(AT))
        .unwrap();
    let e = verify_image_signature(&s, &digest(), &root_trust(gh_identity()), UnixSecs(AT))
        .unwrap_err();
    assert_eq!(e.kind(), "IdentityMismatch");
}

#[test]
fn keyless_certificate_validity_and_chain() {
    let t = testsign();
    // Leaf not yet valid, and expired, at the integrated time.
    for nb in [AT + 10, AT - 1000] {
        let s = t
            .sign_image_keyless(
                &identity(),
                REPO,
                &digest(),
                &CosignOptions {
                    leaf_not_before: Some(nb),
                    ..CosignOptions::at(AT)
                },
            )
            .unwrap();
        let e = verify_image_signature(
            &s,
            &digest(),
            &root_trust(gh_identity()),
            UnixSecs(AT + 5000),
        )
        .unwrap_err();
        assert_eq!(e.kind(), "CertificateNotValidAtSigningTime", "{e}");
    }
    // Before the TEST instance's window (2025-01-01): the trusted root's Rekor key is
    // not valid then; with PEM files (no windows) the CA certificates are not.
    let early = 1_700_000_000;
    let s = t
        .sign_image_keyless(&identity(), REPO, &digest(), &CosignOptions::at(early))
        .unwrap();
    let e = verify_image_signature(&s, &digest(), &root_trust(gh_identity()), UnixSecs(AT))
        .unwrap_err();
    assert_eq!(e.kind(), "InvalidRekorSet", "{e}");
    let e =
        verify_image_signature(&s, &digest(), &pem_trust(gh_identity()), UnixSecs(AT)).unwrap_err();
    assert_eq!(e.kind(), "CertificateNotValidAtSigningTime", "{e}");
    // No chain annotation: the trusted root holds the intermediate, the root-only
    // PEM does not.
    let s = t
        .sign_image_keyless(
            &identity(),
            REPO,
            &digest(),
            &CosignOptions {
                include_chain: false,
                ..CosignOptions::at(AT)
            },
        )
        .unwrap();
    verify_image_signature(&s, &digest(), &root_trust(gh_identity()), UnixSecs(AT)).unwrap();
    let e =
        verify_image_signature(&s, &digest(), &pem_trust(gh_identity()), UnixSecs(AT)).unwrap_err();
    assert_eq!(e.kind(), "CertificateChain");
    // No SET: keyless always requires one.
    let s = t
        .sign_image_keyless(
            &identity(),
            REPO,
            &digest(),
            &CosignOptions {
                rekor_set: false,
                ..CosignOptions::at(AT)
            },
        )
        .unwrap();
    let e = verify_image_signature(&s, &digest(), &root_trust(gh_identity()), UnixSecs(AT))
        .unwrap_err();
    assert_eq!(e.kind(), "MissingRekorSet");
}

#[test]
fn keyless_tampering() {
    let s = testsign()
        .sign_image_keyless(&identity(), REPO, &digest(), &CosignOptions::at(AT))
        .unwrap();
    let ImageSignature::SimpleSigning {
        payload,
        annotations,
    } = &s
    else {
        unreachable!()
    };
    // The signature of another keyless signing (another ephemeral key).
    let other = testsign()
        .sign_image_keyless(&identity(), REPO, &digest(), &CosignOptions::at(AT))
        .unwrap();
    let ImageSignature::SimpleSigning {
        annotations: other_a,
        ..
    } = &other
    else {
        unreachable!()
    };
    let mut a = annotations.clone();
    a.insert(
        ANNOTATION_SIGNATURE.into(),
        other_a[ANNOTATION_SIGNATURE].clone(),
    );
    let e = verify_image_signature(
        &ImageSignature::SimpleSigning {
            payload: payload.clone(),
            annotations: a,
        },
        &digest(),
        &root_trust(gh_identity()),
        UnixSecs(AT),
    )
    .unwrap_err();
    assert_eq!(e.kind(), "InvalidSignature");
    // A chain annotation that is garbage is refused (not silently ignored).
    let mut a = annotations.clone();
    a.insert(ANNOTATION_CHAIN.into(), "not pem".into());
    let e = verify_image_signature(
        &ImageSignature::SimpleSigning {
            payload: payload.clone(),
            annotations: a,
        },
        &digest(),
        &root_trust(gh_identity()),
        UnixSecs(AT),
    )
    .unwrap_err();
    assert_eq!(e.kind(), "MalformedCertificate");
    // Every byte of the payload flipped: never verifies.
    for i in 0..payload.len() {
        let mut p = payload.clone();
        p[i] ^= 0x20;
        let forged = ImageSignature::SimpleSigning {
            payload: p,
            annotations: annotations.clone(),
        };
        assert!(verify_image_signature(
            &forged,
            &digest(),
            &root_trust(gh_identity()),
            UnixSecs(AT)
        )
        .is_err());
    }
}

#[test]
fn bundles_for_the_referrer_path() {
    let t = testsign();
    let b = t
        .sign_image_bundle(&identity(), REPO, &digest(), AT)
        .unwrap();
    let v =
        verify_image_signature(&b, &digest(), &root_trust(gh_identity()), UnixSecs(AT)).unwrap();
    assert!(v.keyless);
    assert_eq!(v.signer, WORKFLOW);
    assert_eq!(v.docker_reference.as_deref(), Some(REPO));
    assert_eq!(v.source_ref.as_deref(), Some("refs/heads/main"));
    assert_eq!(v.integrated_time, Some(AT));
    // Parsed from a file, it is a bundle.
    let ImageSignature::Bundle(bytes) = &b else {
        unreachable!()
    };
    assert_eq!(parse_signature_file(bytes).unwrap(), b);
    // Another digest.
    let e = verify_image_signature(
        &b,
        &format!("sha256:{}", "cd".repeat(32)),
        &root_trust(gh_identity()),
        UnixSecs(AT),
    )
    .unwrap_err();
    assert_eq!(e.reason_code(), ReasonCode::ImageDigestMismatch, "{e}");
    // Another identity.
    let e = verify_image_signature(
        &b,
        &digest(),
        &root_trust(KeylessIdentity {
            source_ref: Some("refs/tags/v1".into()),
            ..gh_identity()
        }),
        UnixSecs(AT),
    )
    .unwrap_err();
    assert_eq!(e.reason_code(), ReasonCode::ImageIdentityMismatch, "{e}");
    // A subject outside the scope.
    let out = t
        .sign_image_bundle(&identity(), "127.0.0.1:5000/elsewhere/app", &digest(), AT)
        .unwrap();
    let e = verify_image_signature(&out, &digest(), &root_trust(gh_identity()), UnixSecs(AT))
        .unwrap_err();
    assert_eq!(e.kind(), "ReferenceNotCovered");
    // The same workflow's SBOM about the image is not a signature of it.
    let att = sigstore_testsign::Attestation::new(
        vec![sigstore_testsign::Subject::sha256_hex(
            REPO,
            digest().trim_start_matches("sha256:"),
        )],
        "https://spdx.dev/Document",
        serde_json::json!({}),
    );
    let sbom = ImageSignature::Bundle(t.sign_attestation(&att, &identity(), AT).unwrap());
    let e = verify_image_signature(&sbom, &digest(), &root_trust(gh_identity()), UnixSecs(AT))
        .unwrap_err();
    assert_eq!(e.kind(), "UnsupportedSignature", "{e}");
    assert!(e.to_string().contains("spdx"), "{e}");
    // Without a trusted_root.json, or under key trust: unsupported.
    let e =
        verify_image_signature(&b, &digest(), &pem_trust(gh_identity()), UnixSecs(AT)).unwrap_err();
    assert_eq!(e.kind(), "UnsupportedSignature");
    let e = verify_image_signature(
        &b,
        &digest(),
        &key_trust(&CosignKey::test_key(), true),
        UnixSecs(AT),
    )
    .unwrap_err();
    assert_eq!(e.kind(), "UnsupportedSignature");
    // verify_any over a bad legacy signature and the bundle.
    let legacy_other_digest = t
        .sign_image_keyless(
            &identity(),
            REPO,
            &format!("sha256:{}", "cd".repeat(32)),
            &CosignOptions::at(AT),
        )
        .unwrap();
    let v = verify_any(
        &[legacy_other_digest.clone(), b],
        &digest(),
        &root_trust(gh_identity()),
        UnixSecs(AT),
    )
    .unwrap();
    assert_eq!(v.signer, WORKFLOW);
    let e = verify_any(
        &[legacy_other_digest],
        &digest(),
        &root_trust(gh_identity()),
        UnixSecs(AT),
    )
    .unwrap_err();
    assert_eq!(e.kind(), "DigestMismatch");
}
