//! TEST cosign image signatures: the legacy simple-signing format cosign writes to
//! the `sha256-<hex>.sig` tag (payload + OCI layer annotations), key-based or
//! keyless, with a Rekor SET by the TEST Rekor key; and Sigstore bundles naming an
//! image digest (the OCI 1.1 referrer path).
//!
//! The payload and annotations are byte for byte what cosign writes:
//!
//! - payload `{"critical":{"identity":{"docker-reference":R},"image":{"docker-manifest-digest":D},"type":"cosign container image signature"},"optional":null}`;
//! - `dev.cosignproject.cosign/signature`: base64 ASN.1 ECDSA P-256/SHA-256 over the payload;
//! - keyless: `dev.sigstore.cosign/certificate` (leaf PEM) and `dev.sigstore.cosign/chain`
//!   (intermediate and root PEM), the leaf issued by the TEST Fulcio intermediate;
//! - `dev.sigstore.cosign/bundle`: `{"SignedEntryTimestamp":B64,"Payload":{"body":B64,
//!   "integratedTime":T,"logIndex":I,"logID":HEX}}`, the SET being the TEST Rekor key's
//!   signature over the canonical JSON of `Payload`, and `body` a `hashedrekord` 0.0.1
//!   entry (sha256 of the payload, the signature, the key or certificate PEM).
//!
//! ```no_run
//! use sigstore_testsign::cosign::{CosignKey, CosignOptions};
//! use sigstore_testsign::{Identity, TestSigstore};
//! let t = TestSigstore::load().unwrap();
//! let digest = format!("sha256:{}", "ab".repeat(32));
//! let by_key = t
//!     .sign_image_with_key(&CosignKey::test_key(), "127.0.0.1:5000/ns/app", &digest, &CosignOptions::at(1_750_000_000))
//!     .unwrap();
//! let id = Identity::github("acme/app", ".github/workflows/release.yml", "refs/heads/main");
//! let keyless = t
//!     .sign_image_keyless(&id, "127.0.0.1:5000/ns/app", &digest, &CosignOptions::at(1_750_000_000))
//!     .unwrap();
//! ```

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use p256::ecdsa::signature::Signer as _;
use p256::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _};
use ring::rand::SecureRandom as _;
use ring::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_ASN1_SIGNING};
use sha2::{Digest as _, Sha256};
use signatures::image::ImageSignature;

use crate::{cert, instance, keys, Attestation, Error, Identity, Subject, TestSigstore};

const FULCIO_ROOT_PEM: &str = include_str!("../keys/fulcio_root.pem");

/// The seed of [`CosignKey::test_key`]: the TEST cosign key is SHA-256 of this.
pub const TEST_COSIGN_KEY_SEED: &str = "provenant TEST cosign key v1 - never trust in production";

/// A cosign signing key (ECDSA P-256), as `cosign generate-key-pair` makes.
#[derive(Clone)]
pub struct CosignKey {
    key: p256::ecdsa::SigningKey,
}

impl std::fmt::Debug for CosignKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CosignKey({})", self.fingerprint())
    }
}

impl CosignKey {
    /// The project's TEST cosign key: deterministic (the scalar is SHA-256 of
    /// [`TEST_COSIGN_KEY_SEED`]), so its public half can be configured anywhere.
    pub fn test_key() -> Self {
        let seed = Sha256::digest(TEST_COSIGN_KEY_SEED.as_bytes());
        // SHA-256 of a fixed string is a valid P-256 scalar (checked by the tests).
        let key =
            p256::ecdsa::SigningKey::from_slice(&seed).unwrap_or_else(|_| unreachable_scalar());
        Self { key }
    }

    /// A fresh random key (for "wrong key" tests).
    pub fn generate() -> Result<Self, Error> {
        let rng = ring::rand::SystemRandom::new();
        for _ in 0..16 {
            let mut b = [0u8; 32];
            rng.fill(&mut b).map_err(|e| Error::Crypto(e.to_string()))?;
            if let Ok(key) = p256::ecdsa::SigningKey::from_slice(&b) {
                return Ok(Self { key });
            }
        }
        Err(Error::Crypto("no valid P-256 scalar drawn".into()))
    }

    /// A key from PKCS#8 PEM (`PRIVATE KEY`).
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, Error> {
        use p256::pkcs8::DecodePrivateKey as _;
        let der = keys::pem_to_der(pem, "PRIVATE KEY")?;
        let key = p256::ecdsa::SigningKey::from_pkcs8_der(&der)
            .map_err(|e| Error::Key(format!("cosign key: {e}")))?;
        Ok(Self { key })
    }

    /// The public key, DER SPKI.
    pub fn public_key_der(&self) -> Vec<u8> {
        self.key
            .verifying_key()
            .to_public_key_der()
            .map(|d| d.as_bytes().to_vec())
            .unwrap_or_default()
    }

    /// The public key, PEM (`PUBLIC KEY`), as `cosign.pub`.
    pub fn public_key_pem(&self) -> String {
        keys::der_to_pem(&self.public_key_der(), "PUBLIC KEY")
    }

    /// The private key, PKCS#8 PEM (unencrypted; cosign's own file is encrypted).
    pub fn private_key_pem(&self) -> String {
        self.key
            .to_pkcs8_der()
            .map(|d| keys::der_to_pem(d.as_bytes(), "PRIVATE KEY"))
            .unwrap_or_default()
    }

    /// `sha256:<hex of SHA-256 of the DER SPKI>`: the verifier's `key:` signer name.
    pub fn fingerprint(&self) -> String {
        format!(
            "sha256:{}",
            hex::encode(Sha256::digest(self.public_key_der()))
        )
    }

    fn sign(&self, msg: &[u8]) -> Vec<u8> {
        let sig: p256::ecdsa::Signature = self.key.sign(msg);
        sig.to_der().as_bytes().to_vec()
    }
}

#[cold]
fn unreachable_scalar() -> p256::ecdsa::SigningKey {
    // Only reachable if SHA-256 of the seed were zero or >= n: it is not.
    p256::ecdsa::SigningKey::from_slice(&[1u8; 32]).unwrap_or_else(|_| unreachable_scalar())
}

/// Knobs for one legacy signature. [`CosignOptions::at`] gives the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CosignOptions {
    /// The Rekor integrated time (unix seconds); keyless leaves are valid from
    /// `signed_at - 5` for ten minutes.
    pub signed_at: i64,
    /// The entry's `logIndex`.
    pub log_index: u64,
    /// Write the `dev.sigstore.cosign/bundle` annotation (Rekor SET).
    pub rekor_set: bool,
    /// Keyless: write the `dev.sigstore.cosign/chain` annotation.
    pub include_chain: bool,
    /// Keyless: the leaf's notBefore (default `signed_at - 5`), for certificates
    /// that were not valid at the integrated time.
    pub leaf_not_before: Option<i64>,
}

impl CosignOptions {
    /// Defaults at `signed_at`: SET and chain present, log index 4242.
    pub fn at(signed_at: i64) -> Self {
        Self {
            signed_at,
            log_index: 4242,
            rekor_set: true,
            include_chain: true,
            leaf_not_before: None,
        }
    }
}

/// The simple-signing payload cosign signs for `docker_reference` at `digest`.
pub fn simple_signing_payload(docker_reference: &str, digest: &str) -> Vec<u8> {
    format!(
        "{{\"critical\":{{\"identity\":{{\"docker-reference\":{}}},\"image\":{{\"docker-manifest-digest\":{}}},\"type\":\"cosign container image signature\"}},\"optional\":null}}",
        serde_json::Value::String(docker_reference.to_owned()),
        serde_json::Value::String(digest.to_owned()),
    )
    .into_bytes()
}

impl TestSigstore {
    /// The `dev.sigstore.cosign/bundle` annotation: a `hashedrekord` 0.0.1 entry for
    /// `payload`, `sig` and `logged_pem` (key or certificate PEM), with its SET.
    fn rekor_annotation(
        &self,
        payload: &[u8],
        sig: &[u8],
        logged_pem: &str,
        opts: &CosignOptions,
    ) -> Result<String, Error> {
        let body = format!(
            "{{\"apiVersion\":\"0.0.1\",\"kind\":\"hashedrekord\",\"spec\":{{\"data\":{{\"hash\":{{\"algorithm\":\"sha256\",\"value\":\"{}\"}}}},\"signature\":{{\"content\":\"{}\",\"publicKey\":{{\"content\":\"{}\"}}}}}}}}",
            hex::encode(Sha256::digest(payload)),
            B64.encode(sig),
            B64.encode(logged_pem.as_bytes()),
        );
        let body_b64 = B64.encode(body.as_bytes());
        let log_id = hex::encode(self.rekor_log_id);
        let canonical = format!(
            "{{\"body\":\"{body_b64}\",\"integratedTime\":{},\"logID\":\"{log_id}\",\"logIndex\":{}}}",
            opts.signed_at, opts.log_index
        );
        let set = self.rekor.sign(canonical.as_bytes(), &self.rng)?;
        Ok(format!(
            "{{\"SignedEntryTimestamp\":\"{}\",\"Payload\":{{\"body\":\"{body_b64}\",\"integratedTime\":{},\"logIndex\":{},\"logID\":\"{log_id}\"}}}}",
            B64.encode(set),
            opts.signed_at,
            opts.log_index
        ))
    }

    /// A key-based cosign signature of `digest` for `docker_reference`, with a SET
    /// by the TEST Rekor key when `opts.rekor_set`.
    pub fn sign_image_with_key(
        &self,
        key: &CosignKey,
        docker_reference: &str,
        digest: &str,
        opts: &CosignOptions,
    ) -> Result<ImageSignature, Error> {
        self.sign_payload_with_key(key, simple_signing_payload(docker_reference, digest), opts)
    }

    /// Signs arbitrary payload bytes as a key-based simple-signing signature (for
    /// negative tests: payloads of another type, with extra fields, ...).
    pub fn sign_payload_with_key(
        &self,
        key: &CosignKey,
        payload: Vec<u8>,
        opts: &CosignOptions,
    ) -> Result<ImageSignature, Error> {
        let sig = key.sign(&payload);
        let mut annotations = BTreeMap::new();
        annotations.insert(
            "dev.cosignproject.cosign/signature".to_owned(),
            B64.encode(&sig),
        );
        if opts.rekor_set {
            annotations.insert(
                "dev.sigstore.cosign/bundle".to_owned(),
                self.rekor_annotation(&payload, &sig, &key.public_key_pem(), opts)?,
            );
        }
        Ok(ImageSignature::SimpleSigning {
            payload,
            annotations,
        })
    }

    /// A keyless cosign signature: an ephemeral P-256 key, a TEST Fulcio leaf for
    /// `identity` (URI SAN, issuer, source repository/ref extensions, code-signing
    /// EKU, SCT) valid from `signed_at - 5` for ten minutes, and a SET.
    pub fn sign_image_keyless(
        &self,
        identity: &Identity,
        docker_reference: &str,
        digest: &str,
        opts: &CosignOptions,
    ) -> Result<ImageSignature, Error> {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &self.rng)
            .map_err(|e| Error::Crypto(e.to_string()))?;
        let ephemeral =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &self.rng)
                .map_err(|e| Error::Crypto(e.to_string()))?;
        let mut serial = [0u8; 20];
        self.rng
            .fill(&mut serial)
            .map_err(|e| Error::Crypto(e.to_string()))?;
        serial[0] &= 0x7f;
        let not_before = opts.leaf_not_before.unwrap_or(opts.signed_at - 5);
        let leaf_der = cert::issue_leaf(&cert::LeafRequest {
            issuer_der: &self.fulcio_intermediate_der,
            issuer_key: &self.fulcio_key,
            ctlog: Some((&self.ctlog.key, &self.ctlog.spki_der)),
            public_key: ephemeral.public_key().as_ref(),
            serial: &serial,
            not_before,
            not_after: not_before + instance::LEAF_LIFETIME_SECS,
            identity,
            rng: &self.rng,
        })?;
        let leaf_pem = keys::der_to_pem(&leaf_der, "CERTIFICATE");
        let payload = simple_signing_payload(docker_reference, digest);
        let sig = ephemeral
            .sign(&self.rng, &payload)
            .map_err(|e| Error::Crypto(e.to_string()))?
            .as_ref()
            .to_vec();
        let mut annotations = BTreeMap::new();
        annotations.insert(
            "dev.cosignproject.cosign/signature".to_owned(),
            B64.encode(&sig),
        );
        annotations.insert(
            "dev.sigstore.cosign/certificate".to_owned(),
            leaf_pem.clone(),
        );
        if opts.include_chain {
            let intermediate = keys::der_to_pem(&self.fulcio_intermediate_der, "CERTIFICATE");
            annotations.insert(
                "dev.sigstore.cosign/chain".to_owned(),
                format!("{intermediate}{FULCIO_ROOT_PEM}"),
            );
        }
        if opts.rekor_set {
            annotations.insert(
                "dev.sigstore.cosign/bundle".to_owned(),
                self.rekor_annotation(&payload, &sig, &leaf_pem, opts)?,
            );
        }
        Ok(ImageSignature::SimpleSigning {
            payload,
            annotations,
        })
    }

    /// A Sigstore bundle for the OCI 1.1 referrer path: an in-toto statement whose
    /// one subject is `docker_reference` at `digest` (as `actions/attest` with
    /// `push-to-registry` writes), predicate type `https://sigstore.dev/cosign/sign/v1`,
    /// signed as `identity` and logged in the TEST Rekor at `signed_at`.
    pub fn sign_image_bundle(
        &self,
        identity: &Identity,
        docker_reference: &str,
        digest: &str,
        signed_at: i64,
    ) -> Result<ImageSignature, Error> {
        let hex_part = digest
            .strip_prefix("sha256:")
            .ok_or_else(|| Error::Key(format!("digest {digest:?} is not sha256:HEX")))?;
        let att = Attestation::new(
            vec![Subject::sha256_hex(docker_reference, hex_part)],
            "https://sigstore.dev/cosign/sign/v1",
            serde_json::json!({}),
        );
        Ok(ImageSignature::Bundle(
            self.sign_attestation(&att, identity, signed_at)?,
        ))
    }
}

/// The TEST Fulcio root CA, PEM (what a `--fulcio-ca` / `fulcio_ca` file holds).
pub fn fulcio_root_pem() -> &'static str {
    FULCIO_ROOT_PEM
}
