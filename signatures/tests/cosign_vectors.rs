//! cosign legacy signatures from containers/image's fixtures (tests/data/cosign),
//! verified at their Rekor integrated time, and everything that must not verify.

use provenant_base::clock::UnixSecs;
use std::collections::BTreeMap;
use std::path::PathBuf;

use evidence::verdict::ReasonCode;
use sha2::{Digest as _, Sha256};
use signatures::cosign::{ANNOTATION_BUNDLE, ANNOTATION_CERTIFICATE, ANNOTATION_SIGNATURE};
use signatures::{
    parse_signature_file, verify_any, verify_image_signature, ImageSigError, ImageSignature,
    ImageTrust, ImageTrustParts, KeylessIdentity,
};

const KEYLESS_DIR: &str = "dir-img-cosign-fulcio-rekor-valid";
const KEY_DIR: &str = "dir-img-cosign-key-rekor-valid";
const DIGEST: &str = "sha256:0489474da8ea22426ece86ace6c1c0026ab2fd3cdfbbd62b7e94650266c37d9a";
const KEYLESS_TIME: i64 = 1674247893;
const KEY_TIME: i64 = 1674251859;
const EMAIL: &str = "mitr@redhat.com";
const ISSUER: &str = "https://github.com/login/oauth";

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/cosign/containers-image")
}

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(dir().join(rel)).unwrap()
}

fn sig_file(d: &str) -> Vec<u8> {
    read(&format!("{d}/signature-1"))
}

fn sig(d: &str) -> ImageSignature {
    parse_signature_file(&sig_file(d)).unwrap()
}

fn keyless_identity(email: &str, issuer: &str) -> KeylessIdentity {
    KeylessIdentity {
        issuer: issuer.into(),
        subject_email: Some(email.into()),
        ..Default::default()
    }
}

fn keyless_trust_with(id: KeylessIdentity) -> ImageTrust {
    ImageTrust::from_parts(ImageTrustParts {
        keyless: Some(id),
        fulcio_ca: Some(read("fulcio_v1.crt.pem")),
        rekor_keys: vec![read("rekor.pub")],
        require_rekor: true,
        ..Default::default()
    })
    .unwrap()
}

fn keyless_trust() -> ImageTrust {
    keyless_trust_with(keyless_identity(EMAIL, ISSUER))
}

fn key_trust(require_rekor: bool) -> ImageTrust {
    ImageTrust::from_parts(ImageTrustParts {
        keys: vec![read("cosign2.pub")],
        rekor_keys: vec![read("rekor.pub")],
        require_rekor,
        ..Default::default()
    })
    .unwrap()
}

fn annotations(s: &ImageSignature) -> BTreeMap<String, String> {
    match s {
        ImageSignature::SimpleSigning { annotations, .. } => annotations.clone(),
        ImageSignature::Bundle(_) => panic!("not simple signing"),
    }
}

fn with_annotations(s: &ImageSignature, a: BTreeMap<String, String>) -> ImageSignature {
    match s {
        ImageSignature::SimpleSigning { payload, .. } => ImageSignature::SimpleSigning {
            payload: payload.clone(),
            annotations: a,
        },
        ImageSignature::Bundle(_) => panic!("not simple signing"),
    }
}

#[test]
fn manifest_digest_is_the_signed_digest() {
    for d in [KEYLESS_DIR, KEY_DIR] {
        let m = read(&format!("{d}/manifest.json"));
        assert_eq!(
            format!("sha256:{}", hex::encode(Sha256::digest(&m))),
            DIGEST
        );
    }
}

#[test]
fn keyless_vector_verifies_at_its_integrated_time() {
    let v = verify_image_signature(
        &sig(KEYLESS_DIR),
        DIGEST,
        &keyless_trust(),
        UnixSecs(KEYLESS_TIME),
    )
    .unwrap();
    assert!(v.keyless);
    assert_eq!(v.signer, EMAIL);
    assert_eq!(v.issuer.as_deref(), Some(ISSUER));
    assert_eq!(v.integrated_time, Some(KEYLESS_TIME));
    assert_eq!(v.digest, DIGEST);
    assert_eq!(
        v.docker_reference.as_deref(),
        Some("192.168.64.2:5000/cosign-signed/fulcio-rekor-1")
    );
    assert_eq!(v.source_repository, None);
    // Any later verification time works too: the certificate is checked at the
    // integrated time, not at `now`.
    verify_image_signature(
        &sig(KEYLESS_DIR),
        DIGEST,
        &keyless_trust(),
        UnixSecs(1_900_000_000),
    )
    .unwrap();
}

#[test]
fn key_vector_verifies_with_and_without_requiring_rekor() {
    for req in [true, false] {
        let v = verify_image_signature(&sig(KEY_DIR), DIGEST, &key_trust(req), UnixSecs(KEY_TIME))
            .unwrap();
        assert!(!v.keyless);
        assert!(v.signer.starts_with("key:sha256:"), "{}", v.signer);
        assert_eq!(v.integrated_time, Some(KEY_TIME));
        assert_eq!(v.issuer, None);
        assert_eq!(
            v.docker_reference.as_deref(),
            Some("192.168.64.2:5000/cosign-signed/key-1")
        );
    }
    // The key's fingerprint is sha256 of its DER SPKI.
    let pem = String::from_utf8(read("cosign2.pub")).unwrap();
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    use base64::Engine as _;
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    let v = verify_image_signature(&sig(KEY_DIR), DIGEST, &key_trust(true), UnixSecs(KEY_TIME))
        .unwrap();
    assert_eq!(
        v.signer,
        format!("key:sha256:{}", hex::encode(Sha256::digest(der)))
    );
}

#[test]
fn uppercase_digest_is_normalised() {
    let up = format!("sha256:{}", DIGEST[7..].to_ascii_uppercase());
    let v =
        verify_image_signature(&sig(KEY_DIR), &up, &key_trust(true), UnixSecs(KEY_TIME)).unwrap();
    assert_eq!(v.digest, DIGEST);
}

#[test]
fn wrong_identity_is_refused() {
    for (email, issuer) in [
        ("someone@example.com", ISSUER),
        (EMAIL, "https://accounts.google.com"),
        ("MITR@redhat.com", ISSUER),
    ] {
        let e = verify_image_signature(
            &sig(KEYLESS_DIR),
            DIGEST,
            &keyless_trust_with(keyless_identity(email, issuer)),
            UnixSecs(KEYLESS_TIME),
        )
        .unwrap_err();
        assert_eq!(e.kind(), "IdentityMismatch", "{email} {issuer}: {e}");
        assert_eq!(e.reason_code(), ReasonCode::ImageIdentityMismatch);
    }
    // Regex SAN, anchored: a partial match is not enough.
    let re = |r: &str| KeylessIdentity {
        issuer: ISSUER.into(),
        san_regex: Some(r.into()),
        ..Default::default()
    };
    verify_image_signature(
        &sig(KEYLESS_DIR),
        DIGEST,
        &keyless_trust_with(re(r".*@redhat\.com")),
        UnixSecs(KEYLESS_TIME),
    )
    .unwrap();
    let e = verify_image_signature(
        &sig(KEYLESS_DIR),
        DIGEST,
        &keyless_trust_with(re("mitr")),
        UnixSecs(KEYLESS_TIME),
    )
    .unwrap_err();
    assert_eq!(e.kind(), "IdentityMismatch");
    // A source repository constraint the OAuth certificate cannot meet.
    let e = verify_image_signature(
        &sig(KEYLESS_DIR),
        DIGEST,
        &keyless_trust_with(KeylessIdentity {
            source_repository: Some("containers/image".into()),
            ..keyless_identity(EMAIL, ISSUER)
        }),
        UnixSecs(KEYLESS_TIME),
    )
    .unwrap_err();
    assert_eq!(e.kind(), "IdentityMismatch");
}

#[test]
fn wrong_key_or_wrong_trust_mode_is_refused() {
    // The keyless signature under the key rule, and a key rule with the Rekor key as
    // "cosign key".
    let e = verify_image_signature(
        &sig(KEYLESS_DIR),
        DIGEST,
        &key_trust(true),
        UnixSecs(KEYLESS_TIME),
    )
    .unwrap_err();
    assert_eq!(e.kind(), "InvalidSignature");
    assert_eq!(e.reason_code(), ReasonCode::ImageSignatureInvalid);
    let other = ImageTrust::from_parts(ImageTrustParts {
        keys: vec![read("rekor.pub")],
        rekor_keys: vec![read("rekor.pub")],
        require_rekor: true,
        ..Default::default()
    })
    .unwrap();
    let e = verify_image_signature(&sig(KEY_DIR), DIGEST, &other, UnixSecs(KEY_TIME)).unwrap_err();
    assert_eq!(e.kind(), "InvalidSignature");
    // The key-based signature under the keyless rule: no certificate.
    let e = verify_image_signature(&sig(KEY_DIR), DIGEST, &keyless_trust(), UnixSecs(KEY_TIME))
        .unwrap_err();
    assert_eq!(e.kind(), "MissingCertificate");
}

#[test]
fn wrong_digest_is_refused() {
    let other = format!("sha256:{}", "00".repeat(32));
    for (s, t, at) in [
        (sig(KEY_DIR), key_trust(true), KEY_TIME),
        (sig(KEYLESS_DIR), keyless_trust(), KEYLESS_TIME),
    ] {
        let e = verify_image_signature(&s, &other, &t, UnixSecs(at)).unwrap_err();
        assert_eq!(e.kind(), "DigestMismatch", "{e}");
        assert_eq!(e.reason_code(), ReasonCode::ImageDigestMismatch);
        for bad in [
            "",
            "sha256:00",
            "sha512:00",
            DIGEST.trim_start_matches("sha256:"),
        ] {
            let e = verify_image_signature(&s, bad, &t, UnixSecs(at)).unwrap_err();
            assert_eq!(e.kind(), "InvalidDigest");
        }
    }
}

#[test]
fn missing_set_is_refused_when_rekor_is_required() {
    let mut a = annotations(&sig(KEY_DIR));
    a.remove(ANNOTATION_BUNDLE);
    let s = with_annotations(&sig(KEY_DIR), a);
    let e = verify_image_signature(&s, DIGEST, &key_trust(true), UnixSecs(KEY_TIME)).unwrap_err();
    assert_eq!(e.kind(), "MissingRekorSet");
    // Not required: the signature alone is enough, with no time claimed.
    let v = verify_image_signature(&s, DIGEST, &key_trust(false), UnixSecs(KEY_TIME)).unwrap();
    assert_eq!(v.integrated_time, None);
    // Keyless always requires it.
    let mut a = annotations(&sig(KEYLESS_DIR));
    a.remove(ANNOTATION_BUNDLE);
    let s = with_annotations(&sig(KEYLESS_DIR), a);
    let e =
        verify_image_signature(&s, DIGEST, &keyless_trust(), UnixSecs(KEYLESS_TIME)).unwrap_err();
    assert_eq!(e.kind(), "MissingRekorSet");
}

fn edit_set(s: &ImageSignature, f: impl FnOnce(&mut serde_json::Value)) -> ImageSignature {
    let mut a = annotations(s);
    let mut b: serde_json::Value = serde_json::from_str(&a[ANNOTATION_BUNDLE]).unwrap();
    f(&mut b);
    a.insert(ANNOTATION_BUNDLE.into(), b.to_string());
    with_annotations(s, a)
}

#[test]
fn forged_set_is_refused() {
    for (d, trust, at) in [
        (KEY_DIR, key_trust(true), KEY_TIME),
        (KEYLESS_DIR, keyless_trust(), KEYLESS_TIME),
    ] {
        let s = sig(d);
        // A later integrated time, signature kept: the SET no longer verifies.
        let e = verify_image_signature(
            &edit_set(&s, |b| b["Payload"]["integratedTime"] = (at + 1).into()),
            DIGEST,
            &trust,
            UnixSecs(at + 10),
        )
        .unwrap_err();
        assert_eq!(e.kind(), "InvalidRekorSet", "{e}");
        let e = verify_image_signature(
            &edit_set(&s, |b| b["Payload"]["logIndex"] = 1.into()),
            DIGEST,
            &trust,
            UnixSecs(at),
        )
        .unwrap_err();
        assert_eq!(e.kind(), "InvalidRekorSet");
        // The SET of the other vector.
        let other = annotations(&sig(if d == KEY_DIR { KEYLESS_DIR } else { KEY_DIR }));
        let other_set: serde_json::Value = serde_json::from_str(&other[ANNOTATION_BUNDLE]).unwrap();
        let e = verify_image_signature(
            &edit_set(&s, |b| {
                b["SignedEntryTimestamp"] = other_set["SignedEntryTimestamp"].clone()
            }),
            DIGEST,
            &trust,
            UnixSecs(at),
        )
        .unwrap_err();
        assert_eq!(e.kind(), "InvalidRekorSet");
        // The other vector's whole, valid entry: it records another signature.
        let mut a = annotations(&s);
        a.insert(ANNOTATION_BUNDLE.into(), other[ANNOTATION_BUNDLE].clone());
        let e = verify_image_signature(
            &with_annotations(&s, a),
            DIGEST,
            &trust,
            UnixSecs(at.max(KEY_TIME)),
        )
        .unwrap_err();
        assert_eq!(e.kind(), "RekorEntryMismatch", "{e}");
        // An unknown log.
        let e = verify_image_signature(
            &edit_set(&s, |b| b["Payload"]["logID"] = "00".repeat(32).into()),
            DIGEST,
            &trust,
            UnixSecs(at),
        )
        .unwrap_err();
        assert_eq!(e.kind(), "UnknownRekorLog");
        for garbage in ["", "{}", "null", "[1]", "{\"SignedEntryTimestamp\":1}"] {
            let mut a = annotations(&s);
            a.insert(ANNOTATION_BUNDLE.into(), garbage.into());
            let e = verify_image_signature(&with_annotations(&s, a), DIGEST, &trust, UnixSecs(at))
                .unwrap_err();
            assert_eq!(e.kind(), "InvalidRekorSet");
        }
    }
    // A Rekor key that is not the log's: the logID names no trusted log.
    let t = ImageTrust::from_parts(ImageTrustParts {
        keys: vec![read("cosign2.pub")],
        rekor_keys: vec![read("cosign2.pub")],
        require_rekor: true,
        ..Default::default()
    })
    .unwrap();
    let e = verify_image_signature(&sig(KEY_DIR), DIGEST, &t, UnixSecs(KEY_TIME)).unwrap_err();
    assert_eq!(e.kind(), "UnknownRekorLog");
}

#[test]
fn verification_before_the_log_time_is_refused() {
    // Verified before the integrated time: refused.
    let e = verify_image_signature(
        &sig(KEYLESS_DIR),
        DIGEST,
        &keyless_trust(),
        UnixSecs(KEYLESS_TIME - 1),
    )
    .unwrap_err();
    assert_eq!(e.kind(), "SignedAfterNow");
    let e = verify_image_signature(
        &sig(KEY_DIR),
        DIGEST,
        &key_trust(true),
        UnixSecs(KEY_TIME - 1),
    )
    .unwrap_err();
    assert_eq!(e.kind(), "SignedAfterNow");
    // (Certificates outside their validity at the integrated time: see
    // cosign_testsign.rs, which can sign such entries.)
    let e = verify_image_signature(&sig(KEYLESS_DIR), DIGEST, &keyless_trust(), UnixSecs(-5))
        .unwrap_err();
    assert_eq!(e.kind(), "SignedAfterNow");
}

#[test]
fn wrong_fulcio_root_is_refused() {
    // The Rekor key as "Fulcio CA" is not a certificate; a real but unrelated CA (the
    // project's TEST Fulcio root) does not anchor the chain.
    let t = ImageTrust::from_parts(ImageTrustParts {
        keyless: Some(keyless_identity(EMAIL, ISSUER)),
        fulcio_ca: Some(
            sigstore_testsign::cosign::fulcio_root_pem()
                .as_bytes()
                .to_vec(),
        ),
        rekor_keys: vec![read("rekor.pub")],
        require_rekor: true,
        ..Default::default()
    })
    .unwrap();
    let e =
        verify_image_signature(&sig(KEYLESS_DIR), DIGEST, &t, UnixSecs(KEYLESS_TIME)).unwrap_err();
    assert_eq!(e.kind(), "CertificateChain", "{e}");
    assert!(ImageTrust::from_parts(ImageTrustParts {
        keyless: Some(keyless_identity(EMAIL, ISSUER)),
        fulcio_ca: Some(read("rekor.pub")),
        rekor_keys: vec![read("rekor.pub")],
        ..Default::default()
    })
    .is_err());
}

#[test]
fn tampered_payload_or_signature_is_refused() {
    let s = sig(KEY_DIR);
    let ImageSignature::SimpleSigning {
        payload,
        annotations,
    } = &s
    else {
        unreachable!()
    };
    // A payload naming another digest, signature kept.
    let other = String::from_utf8(payload.clone())
        .unwrap()
        .replace(&DIGEST[7..], &"11".repeat(32));
    let forged = ImageSignature::SimpleSigning {
        payload: other.into_bytes(),
        annotations: annotations.clone(),
    };
    let e =
        verify_image_signature(&forged, DIGEST, &key_trust(true), UnixSecs(KEY_TIME)).unwrap_err();
    assert_eq!(e.kind(), "InvalidSignature");
    let e = verify_image_signature(
        &forged,
        &format!("sha256:{}", "11".repeat(32)),
        &key_trust(true),
        UnixSecs(KEY_TIME),
    )
    .unwrap_err();
    assert_eq!(e.kind(), "InvalidSignature");
    // Signature annotation removed, or garbage.
    for v in [None, Some(""), Some("!!"), Some("AAAA")] {
        let mut a = annotations.clone();
        match v {
            None => {
                a.remove(ANNOTATION_SIGNATURE);
            }
            Some(v) => {
                a.insert(ANNOTATION_SIGNATURE.into(), v.into());
            }
        }
        let e = verify_image_signature(
            &with_annotations(&s, a),
            DIGEST,
            &key_trust(true),
            UnixSecs(KEY_TIME),
        )
        .unwrap_err();
        assert!(
            ["MissingSignature", "MalformedSignature", "InvalidSignature"].contains(&e.kind()),
            "{e}"
        );
    }
    // Keyless: another certificate (garbage PEM).
    let k = sig(KEYLESS_DIR);
    let mut a = annotations_of(&k);
    a.insert(
        ANNOTATION_CERTIFICATE.into(),
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into(),
    );
    let e = verify_image_signature(
        &with_annotations(&k, a),
        DIGEST,
        &keyless_trust(),
        UnixSecs(KEYLESS_TIME),
    )
    .unwrap_err();
    assert_eq!(e.kind(), "MalformedCertificate");
}

fn annotations_of(s: &ImageSignature) -> BTreeMap<String, String> {
    annotations(s)
}

#[test]
fn scope_limits_the_signed_reference() {
    let scoped = |scope: &str| {
        ImageTrust::from_parts(ImageTrustParts {
            keys: vec![read("cosign2.pub")],
            rekor_keys: vec![read("rekor.pub")],
            require_rekor: true,
            scope: Some(scope.into()),
            ..Default::default()
        })
        .unwrap()
    };
    for ok in [
        "192.168.64.2:5000/cosign-signed",
        "192.168.64.2:5000/cosign-signed/key-1",
        "192.168.64.2:5000",
    ] {
        verify_image_signature(&sig(KEY_DIR), DIGEST, &scoped(ok), UnixSecs(KEY_TIME)).unwrap();
    }
    for bad in [
        "192.168.64.2:5000/cosign-signed/key",
        "192.168.64.2:5000/cosign-signed/key-1/sub",
        "ghcr.io/provenant",
    ] {
        let e = verify_image_signature(&sig(KEY_DIR), DIGEST, &scoped(bad), UnixSecs(KEY_TIME))
            .unwrap_err();
        assert_eq!(e.kind(), "ReferenceNotCovered", "{bad}");
        assert_eq!(e.reason_code(), ReasonCode::ImageIdentityMismatch);
    }
}

#[test]
fn verify_any_picks_the_valid_or_the_most_informative() {
    let t = key_trust(true);
    let e = verify_any(&[], DIGEST, &t, UnixSecs(KEY_TIME)).unwrap_err();
    assert!(matches!(e, ImageSigError::Unsigned));
    assert_eq!(e.reason_code(), ReasonCode::ImageUnsigned);
    // The keyless one fails (wrong key), the key one verifies.
    let v = verify_any(
        &[sig(KEYLESS_DIR), sig(KEY_DIR)],
        DIGEST,
        &t,
        UnixSecs(KEY_TIME),
    )
    .unwrap();
    assert!(!v.keyless);
    // Wrong digest for the valid one beats a broken signature.
    let other = format!("sha256:{}", "00".repeat(32));
    let e = verify_any(
        &[sig(KEYLESS_DIR), sig(KEY_DIR)],
        &other,
        &t,
        UnixSecs(KEY_TIME),
    )
    .unwrap_err();
    assert_eq!(e.kind(), "DigestMismatch");
    let e = verify_any(&[sig(KEYLESS_DIR)], DIGEST, &t, UnixSecs(KEY_TIME)).unwrap_err();
    assert_eq!(e.kind(), "InvalidSignature");
}

#[test]
fn signature_file_forms() {
    // The stored form, the layer JSON without prefix, and round trips.
    let raw = sig_file(KEY_DIR);
    let stored = parse_signature_file(&raw).unwrap();
    let layer =
        parse_signature_file(&raw[signatures::cosign::SIGSTORE_JSON_PREFIX.len()..]).unwrap();
    assert_eq!(stored, layer);
    let again = signatures::encode_signature_file(&stored).unwrap();
    assert_eq!(parse_signature_file(&again).unwrap(), stored);
    // A Sigstore bundle is recognised as one.
    let b = std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/reusable-workflow-attestation.sigstore.json"),
    )
    .unwrap();
    assert!(matches!(
        parse_signature_file(&b).unwrap(),
        ImageSignature::Bundle(_)
    ));
    // Other mime types and shapes are refused.
    for bad in [
        &br#"{"mimeType":"text/plain","payload":"","annotations":{}}"#[..],
        br#"{"payload":"!!"}"#,
        br#"{"payload":"", "extra": 1}"#,
        b"\x00sigstore-json\n",
        b"[]",
        b"",
    ] {
        assert!(
            parse_signature_file(bad).is_err(),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
    let huge = vec![b' '; signatures::cosign::MAX_SIGNATURE_FILE_BYTES + 1];
    assert_eq!(
        parse_signature_file(&huge).unwrap_err().kind(),
        "SignatureTooLarge"
    );
}

fn strip_chain(s: &ImageSignature) -> ImageSignature {
    let mut a = annotations(s);
    a.remove(signatures::cosign::ANNOTATION_CHAIN);
    with_annotations(s, a)
}

/// Every truncation and many single-byte flips of both signature files: never a
/// panic, never a verification of changed signed content.
#[test]
fn truncations_and_byte_flips_never_verify() {
    for (d, trust, at) in [
        (KEY_DIR, key_trust(true), KEY_TIME),
        (KEYLESS_DIR, keyless_trust(), KEYLESS_TIME),
    ] {
        let raw = sig_file(d);
        let original = parse_signature_file(&raw).unwrap();
        let check = |bytes: &[u8], what: &str| {
            if let Ok(s) = parse_signature_file(bytes) {
                // The chain annotation is an unauthenticated path-building hint (the
                // anchor is the trusted CA): a flip that only damages it may verify.
                if strip_chain(&s) == strip_chain(&original) {
                    return;
                }
                if let Ok(v) = verify_image_signature(&s, DIGEST, &trust, UnixSecs(at)) {
                    panic!("{d}: {what} verified: {v:?}");
                }
            }
        };
        for n in 0..raw.len() {
            check(&raw[..n], &format!("truncated to {n}"));
        }
        let step = if raw.len() > 4000 { 3 } else { 1 };
        for i in (0..raw.len()).step_by(step) {
            for mask in [0x01u8, 0x80] {
                let mut b = raw.clone();
                b[i] ^= mask;
                check(&b, &format!("byte {i} ^ {mask:#x}"));
            }
        }
    }
}

#[test]
fn trust_loads_from_a_policy_rule() {
    let rule: policy::image::ImageRule = toml::from_str(
        r#"
scope = "192.168.64.2:5000/cosign-signed"
keys = ["cosign2.pub"]
rekor_key = "rekor.pub"
"#,
    )
    .unwrap();
    let t = ImageTrust::load(&rule, &dir()).unwrap();
    assert!(!t.is_keyless());
    assert!(t.requires_rekor());
    verify_image_signature(&sig(KEY_DIR), DIGEST, &t, UnixSecs(KEY_TIME)).unwrap();

    let rule: policy::image::ImageRule = toml::from_str(
        r#"
scope = "192.168.64.2:5000/cosign-signed"
rekor_key = "rekor.pub"
[keyless]
fulcio_ca = "fulcio_v1.crt.pem"
issuer = "https://github.com/login/oauth"
subject_email = "mitr@redhat.com"
"#,
    )
    .unwrap();
    let t = ImageTrust::load(&rule, &dir()).unwrap();
    assert!(t.is_keyless());
    verify_image_signature(&sig(KEYLESS_DIR), DIGEST, &t, UnixSecs(KEYLESS_TIME)).unwrap();

    let missing: policy::image::ImageRule =
        toml::from_str("scope = \"x/y\"\nkeys = [\"nope.pub\"]\nrequire_rekor = false").unwrap();
    assert_eq!(
        ImageTrust::load(&missing, &dir()).unwrap_err().kind(),
        "TrustFileUnreadable"
    );
    let no_rekor: policy::image::ImageRule =
        toml::from_str("scope = \"x/y\"\nkeys = [\"cosign2.pub\"]").unwrap();
    assert_eq!(
        ImageTrust::load(&no_rekor, &dir()).unwrap_err().kind(),
        "InvalidTrustRule"
    );
}

/// The TEST signer writes the payload and the Rekor annotation exactly as cosign
/// does: same bytes for the same inputs, same key order.
#[test]
fn test_signer_matches_cosigns_byte_format() {
    let ImageSignature::SimpleSigning {
        payload,
        annotations,
    } = sig(KEY_DIR)
    else {
        unreachable!()
    };
    assert_eq!(
        sigstore_testsign::cosign::simple_signing_payload(
            "192.168.64.2:5000/cosign-signed/key-1",
            DIGEST
        ),
        payload
    );
    let key = sigstore_testsign::cosign::CosignKey::test_key();
    let ours = sigstore_testsign::TestSigstore::load()
        .unwrap()
        .sign_image_with_key(
            &key,
            "192.168.64.2:5000/cosign-signed/key-1",
            DIGEST,
            &sigstore_testsign::cosign::CosignOptions::at(KEY_TIME),
        )
        .unwrap();
    let ImageSignature::SimpleSigning {
        payload: our_payload,
        annotations: ours,
    } = ours
    else {
        unreachable!()
    };
    assert_eq!(our_payload, payload);
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        annotations.keys().collect::<Vec<_>>()
    );
    let keys_in_order = |s: &str| -> Vec<String> {
        let mut out = Vec::new();
        for k in [
            "SignedEntryTimestamp",
            "Payload",
            "body",
            "integratedTime",
            "logIndex",
            "logID",
        ] {
            out.push(format!("{}:{}", k, s.find(&format!("\"{k}\"")).unwrap()));
        }
        let mut sorted = out.clone();
        sorted.sort_by_key(|x| x.split(':').nth(1).unwrap().parse::<usize>().unwrap());
        sorted
            .into_iter()
            .map(|x| x.split(':').next().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        keys_in_order(&ours[ANNOTATION_BUNDLE]),
        keys_in_order(&annotations[ANNOTATION_BUNDLE])
    );
    // A payload with an extra top-level field is not cosign's: refused even when
    // validly signed.
    let t = sigstore_testsign::TestSigstore::load().unwrap();
    let trust = ImageTrust::from_parts(ImageTrustParts {
        keys: vec![key.public_key_pem().into_bytes()],
        ..Default::default()
    })
    .unwrap();
    let good = String::from_utf8(payload).unwrap();
    let cases = [
        (
            good.replace(",\"optional\":null}", ",\"optional\":null,\"x\":1}"),
            "InvalidPayload",
        ),
        (
            good.replace("\"type\"", "\"x\":1,\"type\""),
            "InvalidPayload",
        ),
        (
            good.replace(
                "cosign container image signature",
                "atomic container signature",
            ),
            "InvalidPayload",
        ),
        (good.replace(",\"optional\":null", ""), "ok"),
        (good.replace("null", "{\"creator\":\"me\"}"), "ok"),
        (good.replace(&DIGEST[7..17], "0000000000"), "DigestMismatch"),
        ("{}".to_owned(), "InvalidPayload"),
        ("not json".to_owned(), "InvalidPayload"),
    ];
    for (p, want) in cases {
        let s = t
            .sign_payload_with_key(
                &key,
                p.clone().into_bytes(),
                &sigstore_testsign::cosign::CosignOptions::at(KEY_TIME),
            )
            .unwrap();
        match verify_image_signature(&s, DIGEST, &trust, UnixSecs(KEY_TIME)) {
            Ok(_) => assert_eq!(want, "ok", "{p}"),
            Err(e) => assert_eq!(e.kind(), want, "{p}: {e}"),
        }
    }
}
