//! Every bundle the TEST signer makes verifies with `sigstore-verify` 0.15.1 against the
//! checked-in `trusted_root.json` (no `skip_*` options), and tampered copies fail.

mod common;

use common::*;
use serde_json::Value;
use sigstore_testsign::{keys, Identity, SignOptions, TestSigstore};
use sigstore_verify::crypto::{CryptoProvider, HashContext, SigningScheme};
use sigstore_verify::trust_root::TrustedRoot;
use sigstore_verify::types::{Bundle, HashAlgorithm, Sha256Hash};
use sigstore_verify::{VerificationPolicy, VerificationResult, Verifier};

/// sigstore-verify is built without aws-lc-rs: this provider does its crypto with ring
/// (signatures over messages), p256 (prehashed P-256) and sha2.
#[derive(Debug)]
struct RingProvider;

struct Hasher<D: sha2::Digest + Send>(D);

impl<D: sha2::Digest + Send> HashContext for Hasher<D> {
    fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
    fn finalize(self: Box<Self>) -> Vec<u8> {
        self.0.finalize().to_vec()
    }
}

fn verr(e: impl std::fmt::Display) -> sigstore_verify::crypto::Error {
    sigstore_verify::crypto::Error::Verification(e.to_string())
}

impl CryptoProvider for RingProvider {
    fn hash(
        &self,
        algorithm: HashAlgorithm,
    ) -> sigstore_verify::crypto::Result<Box<dyn HashContext>> {
        Ok(match algorithm {
            HashAlgorithm::Sha2256 => Box::new(Hasher(sha2::Sha256::default())),
            HashAlgorithm::Sha2384 => Box::new(Hasher(sha2::Sha384::default())),
            HashAlgorithm::Sha2512 => Box::new(Hasher(sha2::Sha512::default())),
            other => return Err(verr(format!("test provider: {other:?} unsupported"))),
        })
    }

    fn verify_raw(
        &self,
        scheme: SigningScheme,
        key: &[u8],
        data: &[u8],
        signature: &[u8],
    ) -> sigstore_verify::crypto::Result<()> {
        use ring::signature as s;
        let alg: &dyn s::VerificationAlgorithm = match scheme {
            SigningScheme::EcdsaP256Sha256 => &s::ECDSA_P256_SHA256_ASN1,
            SigningScheme::EcdsaP256Sha384 => &s::ECDSA_P256_SHA384_ASN1,
            SigningScheme::EcdsaP384Sha256 => &s::ECDSA_P384_SHA256_ASN1,
            SigningScheme::EcdsaP384Sha384 => &s::ECDSA_P384_SHA384_ASN1,
            other => return Err(verr(format!("test provider: {other:?} unsupported"))),
        };
        s::UnparsedPublicKey::new(alg, key)
            .verify(data, signature)
            .map_err(verr)
    }

    fn verify_prehashed(
        &self,
        scheme: SigningScheme,
        key: &[u8],
        digest: &[u8],
        signature: &[u8],
    ) -> sigstore_verify::crypto::Result<()> {
        use p256::ecdsa::signature::hazmat::PrehashVerifier;
        if scheme != SigningScheme::EcdsaP256Sha256 {
            return Err(verr(format!(
                "test provider: prehashed {scheme:?} unsupported"
            )));
        }
        let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(key).map_err(verr)?;
        let sig = p256::ecdsa::Signature::from_der(signature).map_err(verr)?;
        key.verify_prehash(digest, &sig).map_err(verr)
    }
}

static PROVIDER: RingProvider = RingProvider;

fn verifier() -> Verifier {
    // Several tests race to install it; the first wins, and they are all the same.
    let _ = sigstore_verify::crypto::install_default_provider(&PROVIDER);
    let root = TrustedRoot::from_json(keys::trusted_root_json()).unwrap();
    Verifier::new(&root).unwrap()
}

fn verify(bundle: &[u8], digest_hex: &str, id: &Identity) -> Result<VerificationResult, String> {
    let bundle = Bundle::from_json(std::str::from_utf8(bundle).unwrap())
        .map_err(|e| format!("bundle: {e}"))?;
    let policy = VerificationPolicy::new(id.san(), id.issuer.clone());
    verifier()
        .verify(Sha256Hash::from_hex(digest_hex).unwrap(), &bundle, &policy)
        .map_err(|e| e.to_string())
}

#[test]
fn bundles_verify_with_sigstore_verify() {
    let signer = TestSigstore::load().unwrap();
    let (mrtd_att, mrtd_digest) = mrtd_attestation(&[0x5a; 48]);
    let (bin_att, bin_digest) = binary_attestation(b"the cp-verifier release binary");
    let cases = [
        (
            "MRTD, now",
            &mrtd_att,
            &mrtd_digest,
            release_identity(),
            recent(),
        ),
        (
            "MRTD, 2025-06-01",
            &mrtd_att,
            &mrtd_digest,
            release_identity(),
            FIXED_TIME,
        ),
        (
            "binary, reusable workflow",
            &bin_att,
            &bin_digest,
            reusable_identity(),
            recent(),
        ),
    ];
    for (name, att, digest, id, at) in &cases {
        let bundle = signer.sign_attestation(att, id, *at).unwrap();
        let result = verify(&bundle, digest, id).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(result.certificate_verified(), "{name}");
        assert!(result.sct_verified(), "{name}");
        assert!(result.tlog_verified(), "{name}");
        assert!(result.identity_policy_checked(), "{name}");
        assert_eq!(
            result.integrated_time().map(|t| t.as_second()),
            Some(*at),
            "{name}"
        );
        assert_eq!(
            result.identity().map(|s| s.as_str().to_string()),
            Some(id.san())
        );
        let claims = &result.certificate().unwrap().ci_claims;
        assert_eq!(
            claims.source_repository_uri,
            Some(id.source_repository_uri()),
            "{name}"
        );
        assert_eq!(
            claims.source_repository_ref,
            Some(id.git_ref.clone()),
            "{name}"
        );
        assert_eq!(claims.build_signer_uri, Some(id.san()), "{name}");
        assert_eq!(
            claims.build_config_uri,
            Some(id.build_config_uri()),
            "{name}"
        );
        assert_eq!(
            claims.runner_environment.as_deref(),
            Some("github-hosted"),
            "{name}"
        );
        assert_eq!(
            claims.source_repository_digest,
            Some(id.sha.clone()),
            "{name}"
        );
        assert_eq!(claims.build_trigger, Some(id.event_name.clone()), "{name}");
        assert_eq!(
            claims.run_invocation_uri,
            Some(id.run_invocation_uri()),
            "{name}"
        );
    }
}

#[test]
fn sigstore_verify_rejects_tampered_bundles_and_wrong_identities() {
    let signer = TestSigstore::load().unwrap();
    let (att, digest) = mrtd_attestation(&[9; 48]);
    let id = release_identity();
    let bundle = signer.sign_attestation(&att, &id, recent()).unwrap();
    verify(&bundle, &digest, &id).unwrap();

    for (name, bad) in tampered(&bundle) {
        assert!(verify(&bad, &digest, &id).is_err(), "{name}: accepted");
    }

    // A digest that is no subject.
    assert!(verify(&bundle, &"ab".repeat(32), &id).is_err());

    // Wrong workflow / repository / issuer in the policy.
    let mut wrong = id.clone();
    wrong.workflow_path = ".github/workflows/evil.yml".into();
    assert!(verify(&bundle, &digest, &wrong).is_err(), "wrong workflow");
    let mut wrong = id.clone();
    wrong.repository = "provenant/other".into();
    assert!(
        verify(&bundle, &digest, &wrong).is_err(),
        "wrong repository"
    );
    let mut wrong = id.clone();
    wrong.issuer = "https://accounts.google.com".into();
    assert!(verify(&bundle, &digest, &wrong).is_err(), "wrong issuer");

    // Checkpoint and SET signed by a rogue key under the trusted log ID.
    let rogue = ring_p256_pkcs8_pem();
    let bad = TestSigstore::load()
        .unwrap()
        .with_rekor_signing_key(&rogue)
        .unwrap()
        .sign_attestation(&att, &id, recent())
        .unwrap();
    assert!(verify(&bad, &digest, &id).is_err(), "wrong Rekor key");

    // An SCT signed by a rogue key under the trusted CT log ID.
    let bad = TestSigstore::load()
        .unwrap()
        .with_ctlog_signing_key(&rogue)
        .unwrap()
        .sign_attestation(&att, &id, recent())
        .unwrap();
    assert!(verify(&bad, &digest, &id).is_err(), "forged SCT");

    // No SCT at all.
    let mut opts = SignOptions::at(recent());
    opts.embed_sct = false;
    let bad = signer.sign_attestation_with(&att, &id, &opts).unwrap();
    assert!(verify(&bad.json, &digest, &id).is_err(), "missing SCT");

    // No inclusion promise: sigstore-verify then has no trusted integrated time.
    let mut opts = SignOptions::at(recent());
    opts.inclusion_promise = false;
    let no_set = signer.sign_attestation_with(&att, &id, &opts).unwrap();
    let err = verify(&no_set.json, &digest, &id).unwrap_err();
    assert!(err.contains("no verified timestamp"), "{err}");

    // Integrated in the future.
    let bad = signer.sign_attestation(&att, &id, recent() + 3600).unwrap();
    assert!(
        verify(&bad, &digest, &id).is_err(),
        "integrated time in the future"
    );

    // A trusted root whose Rekor key is another key: the entry's log is unknown.
    let mut root: Value = serde_json::from_str(keys::trusted_root_json()).unwrap();
    root["tlogs"] = root["ctlogs"].clone();
    let other_root = TrustedRoot::from_json(&root.to_string()).unwrap();
    let bundle_obj = Bundle::from_json(std::str::from_utf8(&bundle).unwrap()).unwrap();
    let policy = VerificationPolicy::new(id.san(), id.issuer.clone());
    let _ = sigstore_verify::crypto::install_default_provider(&PROVIDER);
    assert!(Verifier::new(&other_root)
        .unwrap()
        .verify(Sha256Hash::from_hex(&digest).unwrap(), &bundle_obj, &policy)
        .is_err());
}

/// The bundle's structure matches the real actions/attest-build-provenance vector
/// field by field where it matters.
#[test]
fn bundle_shape_matches_the_real_github_vector() {
    let real_path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../signatures/tests/data/reusable-workflow-attestation.sigstore.json"
    );
    let real: Value = serde_json::from_slice(&std::fs::read(real_path).unwrap()).unwrap();
    let (att, _) = binary_attestation(b"x");
    let signed = TestSigstore::load()
        .unwrap()
        .sign_attestation_with(&att, &reusable_identity(), &SignOptions::at(FIXED_TIME))
        .unwrap();
    let ours: Value = serde_json::from_slice(&signed.json).unwrap();

    fn shape(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                Value::Object(m.iter().map(|(k, v)| (k.clone(), shape(v))).collect())
            }
            Value::Array(a) => Value::Array(a.iter().take(1).map(shape).collect()),
            Value::String(_) => Value::String("string".into()),
            other => other.clone(),
        }
    }
    assert_eq!(shape(&ours), shape(&real));
    for ptr in [
        "/mediaType",
        "/dsseEnvelope/payloadType",
        "/verificationMaterial/tlogEntries/0/kindVersion",
    ] {
        assert_eq!(ours.pointer(ptr), real.pointer(ptr), "{ptr}");
    }

    // The Rekor body has the same keys and kind.
    use base64::Engine as _;
    let body = |v: &Value| -> Value {
        let b64 = v["verificationMaterial"]["tlogEntries"][0]["canonicalizedBody"]
            .as_str()
            .unwrap();
        serde_json::from_slice(
            &base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(shape(&body(&ours)), shape(&body(&real)));

    // The statement: same top-level keys in the same order.
    let payload = |v: &Value| -> String {
        let b64 = v["dsseEnvelope"]["payload"].as_str().unwrap();
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap(),
        )
        .unwrap()
    };
    let keys_in_order = |s: &str| -> Vec<usize> {
        [
            "\"_type\"",
            "\"subject\"",
            "\"predicateType\"",
            "\"predicate\"",
        ]
        .iter()
        .map(|k| s.find(k).unwrap())
        .collect()
    };
    let (o, r) = (
        keys_in_order(&payload(&ours)),
        keys_in_order(&payload(&real)),
    );
    assert!(o.windows(2).all(|w| w[0] < w[1]) && r.windows(2).all(|w| w[0] < w[1]));

    // The checkpoint: origin line, size, root, blank line, one "— name hint+sig" line.
    let cp = ours
        .pointer("/verificationMaterial/tlogEntries/0/inclusionProof/checkpoint/envelope")
        .and_then(Value::as_str)
        .unwrap();
    let lines: Vec<&str> = cp.split('\n').collect();
    assert_eq!(lines.len(), 6, "{cp:?}");
    assert_eq!(lines[0], sigstore_testsign::instance::REKOR_ORIGIN);
    assert_eq!(lines[1], "14");
    assert_eq!(lines[3], "");
    assert!(lines[4].starts_with("\u{2014} "));
    assert_eq!(
        ours.pointer("/verificationMaterial/tlogEntries/0/inclusionProof/hashes")
            .and_then(Value::as_array)
            .map(Vec::len),
        Some(4)
    );
}

/// The leaf certificate carries the same extensions as the real Fulcio leaf in the
/// GitHub vector (same OIDs, same order, same criticality), and the same algorithms.
#[test]
fn leaf_certificate_matches_the_real_fulcio_leaf() {
    use base64::Engine as _;
    use x509_cert::der::{Decode, Encode};
    let real_path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../signatures/tests/data/reusable-workflow-attestation.sigstore.json"
    );
    let real: Value = serde_json::from_slice(&std::fs::read(real_path).unwrap()).unwrap();
    let real_der = base64::engine::general_purpose::STANDARD
        .decode(
            real["verificationMaterial"]["certificate"]["rawBytes"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
    let (att, _) = binary_attestation(b"x");
    let ours_der = TestSigstore::load()
        .unwrap()
        .sign_attestation_with(&att, &reusable_identity(), &SignOptions::at(FIXED_TIME))
        .unwrap()
        .certificate_der;
    let real = x509_cert::Certificate::from_der(&real_der).unwrap();
    let ours = x509_cert::Certificate::from_der(&ours_der).unwrap();
    // Re-encoding gives the same bytes: the certificate is DER.
    assert_eq!(ours.to_der().unwrap(), ours_der);

    let exts = |c: &x509_cert::Certificate| -> Vec<(String, bool)> {
        c.tbs_certificate
            .extensions
            .as_ref()
            .unwrap()
            .iter()
            .map(|e| (e.extn_id.to_string(), e.critical))
            .collect()
    };
    assert_eq!(exts(&ours), exts(&real));
    assert_eq!(ours.signature_algorithm, real.signature_algorithm);
    assert_eq!(
        ours.tbs_certificate.subject_public_key_info.algorithm,
        real.tbs_certificate.subject_public_key_info.algorithm
    );
    assert_eq!(ours.tbs_certificate.subject, real.tbs_certificate.subject);
    assert_eq!(ours.tbs_certificate.version, real.tbs_certificate.version);
    let lifetime = |c: &x509_cert::Certificate| {
        let v = &c.tbs_certificate.validity;
        v.not_after.to_unix_duration() - v.not_before.to_unix_duration()
    };
    assert_eq!(lifetime(&ours), lifetime(&real));
}
