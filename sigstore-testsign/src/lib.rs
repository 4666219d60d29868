//! sigstore-testsign: a TEST-ONLY Sigstore instance for Provenant's tests.
//!
//! It makes Sigstore bundles (v0.3, DSSE, in-toto Statement v1) shaped exactly like the
//! ones GitHub's `actions/attest` produces on the public-good instance, but under a
//! checked-in TEST key set (`sigstore-testsign/keys/`, made by `gen-test-sigstore`):
//!
//! - a TEST Fulcio root CA and intermediate (ECDSA P-384), which issue each bundle a
//!   10-minute leaf certificate for an ephemeral P-256 key, with the GitHub Actions
//!   identity in the URI SAN and the Fulcio OID extensions (`1.3.6.1.4.1.57264.1.*`),
//!   code-signing EKU and an embedded SCT;
//! - a TEST CT log key (P-256) that signs that SCT (RFC 6962 precertificate entry);
//! - a TEST Rekor log key (P-256) that signs the `dsse` 0.0.1 entry's inclusion promise
//!   (SET) and the checkpoint of a small Merkle tree the entry is included in.
//!
//! The bundles verify with `sigstore-verify` and with sigstore-python against
//! [`keys::trusted_root_json`] / [`keys::trust_config_path`] and nothing else: production
//! never trusts these keys (their private halves are public, in this repository).
//!
//! ```no_run
//! use sigstore_testsign::{Attestation, Identity, Subject, TestSigstore};
//! let signer = TestSigstore::load().unwrap();
//! let att = Attestation::new(
//!     vec![Subject::sha256_of("tdx-mrtd", b"...48 MRTD bytes...")],
//!     "https://provenant.dev/attestations/tdx-measurement/v1",
//!     serde_json::json!({"mrtd": "00"}),
//! );
//! let id = Identity::github("acme/guest-image", ".github/workflows/release.yml", "refs/heads/main");
//! let bundle_json: Vec<u8> = signer.sign_attestation(&att, &id, 1_750_000_000).unwrap();
//! ```

#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod cert;
pub mod cosign;
mod der;
pub mod github_api;
pub mod keys;
pub mod rekor;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{
    EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING,
};
use serde_json::json;
use sha2::{Digest, Sha256};

/// Fixed facts about the TEST instance, shared by the generator and the signer.
pub mod instance {
    /// Fulcio URL named in the trusted root and signing config (never contacted).
    pub const FULCIO_URL: &str = "https://fulcio.sigstore-test.provenant.invalid";
    /// Rekor URL named in the trusted root and signing config (never contacted).
    pub const REKOR_URL: &str = "https://rekor.sigstore-test.provenant.invalid";
    /// CT log URL named in the trusted root (never contacted).
    pub const CTLOG_URL: &str = "https://ctfe.sigstore-test.provenant.invalid/test";
    /// OIDC URL named in the signing config (never contacted).
    pub const OIDC_URL: &str = "https://oauth2.sigstore-test.provenant.invalid/auth";
    /// Operator named in the signing config.
    pub const OPERATOR: &str = "provenant TEST";
    /// The Rekor log's name in checkpoint signatures.
    pub const REKOR_NAME: &str = "rekor.sigstore-test.provenant.invalid";
    /// The Rekor checkpoint origin (`NAME - TREE_ID`, as Rekor v1 writes it).
    pub const REKOR_ORIGIN: &str = "rekor.sigstore-test.provenant.invalid - 1";
    /// Start of every validity window (certificates and trusted-root `validFor`):
    /// 2025-01-01T00:00:00Z.
    pub const VALID_FROM_UNIX: i64 = 1_735_689_600;
    /// End of the CA certificates' validity: 2074-12-31T23:59:59Z. The trusted root's
    /// windows are open-ended.
    pub const VALID_UNTIL_UNIX: i64 = 3_313_526_399;
    /// The OIDC issuer of GitHub Actions tokens.
    pub const GITHUB_ISSUER: &str = "https://token.actions.githubusercontent.com";
    /// Leaf certificate lifetime, as Fulcio issues them.
    pub const LEAF_LIFETIME_SECS: i64 = 600;
}

/// What can go wrong while signing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A key or certificate could not be loaded.
    #[error("key material: {0}")]
    Key(String),
    /// A signing operation failed.
    #[error("signing: {0}")]
    Crypto(String),
    /// A time was out of range.
    #[error("time: {0}")]
    Time(String),
    /// Log parameters are inconsistent (index not below tree size).
    #[error("log parameters: {0}")]
    Log(String),
}

/// The reusable workflow that actually ran the signing step, when it differs from the
/// caller's workflow (like `github/artifact-attestations-workflows`): it gives the SAN,
/// the build signer URI (`.9`) and the build signer digest (`.10`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignerWorkflow {
    /// `owner/name` of the repository holding the reusable workflow.
    pub repository: String,
    /// Workflow file path, e.g. `.github/workflows/attest.yml`.
    pub workflow_path: String,
    /// The ref (or SHA) the caller pinned it at.
    pub git_ref: String,
    /// The commit SHA of that workflow.
    pub sha: String,
}

/// A GitHub Actions workload identity, as Fulcio writes it into the certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// OIDC issuer (`.8` and legacy `.1`).
    pub issuer: String,
    /// `owner/name` of the repository whose workflow ran (`.12`, legacy `.5`).
    pub repository: String,
    /// Numeric repository id (`.15`).
    pub repository_id: String,
    /// Numeric owner id (`.17`).
    pub owner_id: String,
    /// The caller workflow's path, e.g. `.github/workflows/release.yml` (`.18`).
    pub workflow_path: String,
    /// The ref that triggered the run, e.g. `refs/heads/main` (`.14`, legacy `.6`).
    pub git_ref: String,
    /// The commit SHA of the run (`.13`, `.19`, legacy `.3`).
    pub sha: String,
    /// The triggering event, e.g. `push` (`.20`, legacy `.2`).
    pub event_name: String,
    /// The workflow's display name (legacy `.4`).
    pub workflow_name: String,
    /// `github-hosted` or `self-hosted` (`.11`).
    pub runner_environment: String,
    /// Run id and attempt (for the run invocation URI, `.21`).
    pub run_id: String,
    /// Run attempt.
    pub run_attempt: String,
    /// `public`, `private` or `internal` (`.22`).
    pub visibility: String,
    /// The signing reusable workflow, if not the caller's own workflow.
    pub signer: Option<SignerWorkflow>,
}

impl Identity {
    /// A github-hosted `push` run of `workflow_path` in `repository` at `git_ref`, with
    /// made-up ids and SHA. Change fields to make "wrong" identities.
    pub fn github(repository: &str, workflow_path: &str, git_ref: &str) -> Self {
        Self {
            issuer: instance::GITHUB_ISSUER.to_string(),
            repository: repository.to_string(),
            repository_id: "700000001".to_string(),
            owner_id: "70000001".to_string(),
            workflow_path: workflow_path.to_string(),
            git_ref: git_ref.to_string(),
            sha: "0123456789abcdef0123456789abcdef01234567".to_string(),
            event_name: "push".to_string(),
            workflow_name: "Release".to_string(),
            runner_environment: "github-hosted".to_string(),
            run_id: "9000000001".to_string(),
            run_attempt: "1".to_string(),
            visibility: "public".to_string(),
            signer: None,
        }
    }

    /// `https://github.com/{owner}`.
    pub fn owner_uri(&self) -> String {
        let owner = self.repository.split('/').next().unwrap_or_default();
        format!("https://github.com/{owner}")
    }

    /// `https://github.com/{repository}`.
    pub fn source_repository_uri(&self) -> String {
        format!("https://github.com/{}", self.repository)
    }

    /// `https://github.com/{repository}/{workflow_path}@{git_ref}` (`.18`).
    pub fn build_config_uri(&self) -> String {
        format!(
            "https://github.com/{}/{}@{}",
            self.repository, self.workflow_path, self.git_ref
        )
    }

    /// The certificate's URI SAN, which is also the build signer URI (`.9`): the
    /// signer workflow's `https://github.com/{repo}/{path}@{ref}`, or the caller's.
    pub fn san(&self) -> String {
        match &self.signer {
            Some(s) => format!(
                "https://github.com/{}/{}@{}",
                s.repository, s.workflow_path, s.git_ref
            ),
            None => self.build_config_uri(),
        }
    }

    /// The build signer digest (`.10`).
    pub fn signer_sha(&self) -> &str {
        self.signer.as_ref().map_or(&self.sha, |s| &s.sha)
    }

    /// `https://github.com/{repository}/actions/runs/{run_id}/attempts/{run_attempt}`.
    pub fn run_invocation_uri(&self) -> String {
        format!(
            "https://github.com/{}/actions/runs/{}/attempts/{}",
            self.repository, self.run_id, self.run_attempt
        )
    }
}

/// One in-toto subject: a name and its digests (algorithm → lowercase hex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// Subject name (file name, or e.g. `tdx-mrtd`).
    pub name: String,
    /// `(algorithm, hex)` pairs, e.g. `("sha256", "ab…")`.
    pub digests: Vec<(String, String)>,
}

impl Subject {
    /// A subject whose digest is the SHA-256 of `content`.
    pub fn sha256_of(name: &str, content: &[u8]) -> Self {
        Self::sha256_hex(name, &hex::encode(Sha256::digest(content)))
    }

    /// A subject with a given SHA-256 hex digest.
    pub fn sha256_hex(name: &str, hex_digest: &str) -> Self {
        Self {
            name: name.to_string(),
            digests: vec![("sha256".to_string(), hex_digest.to_ascii_lowercase())],
        }
    }
}

/// What gets attested: an in-toto Statement v1's subjects, predicate type and predicate.
#[derive(Debug, Clone, PartialEq)]
pub struct Attestation {
    /// The statement's subjects.
    pub subjects: Vec<Subject>,
    /// The predicate type URI.
    pub predicate_type: String,
    /// The predicate (any JSON).
    pub predicate: serde_json::Value,
}

impl Attestation {
    /// An attestation of `subjects` with a predicate.
    pub fn new(subjects: Vec<Subject>, predicate_type: &str, predicate: serde_json::Value) -> Self {
        Self {
            subjects,
            predicate_type: predicate_type.to_string(),
            predicate,
        }
    }

    /// The in-toto Statement v1 JSON, keys in the order actions/attest writes them.
    pub fn statement_json(&self) -> Vec<u8> {
        let subjects: Vec<serde_json::Value> = self
            .subjects
            .iter()
            .map(|s| {
                let digest: serde_json::Map<String, serde_json::Value> = s
                    .digests
                    .iter()
                    .map(|(alg, hex)| (alg.clone(), json!(hex)))
                    .collect();
                json!({"name": s.name, "digest": digest})
            })
            .collect();
        format!(
            "{{\"_type\":\"https://in-toto.io/Statement/v1\",\"subject\":{},\"predicateType\":{},\"predicate\":{}}}",
            serde_json::Value::Array(subjects),
            json!(self.predicate_type),
            self.predicate
        )
        .into_bytes()
    }
}

/// Knobs for one bundle. [`SignOptions::at`] gives the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignOptions {
    /// The Rekor integrated time (Unix seconds). The certificate is valid from
    /// `signed_at - 5` for [`instance::LEAF_LIFETIME_SECS`]; the SCT is stamped at
    /// its notBefore.
    pub signed_at: i64,
    /// The entry's index in the TEST log (`logIndex`, also the proof's leaf index).
    pub log_index: u64,
    /// The log's size at the checkpoint (`treeSize`); must exceed `log_index`.
    pub tree_size: u64,
    /// Embed an SCT in the certificate (Fulcio always does).
    pub embed_sct: bool,
    /// Include the inclusion promise (SET).
    pub inclusion_promise: bool,
}

impl SignOptions {
    /// Defaults at `signed_at`: entry 9 of a 14-leaf tree (a four-hash proof path),
    /// SCT and SET present.
    pub fn at(signed_at: i64) -> Self {
        Self {
            signed_at,
            log_index: 9,
            tree_size: 14,
            embed_sct: true,
            inclusion_promise: true,
        }
    }
}

/// A signed bundle and the pieces tests may want to look at or tamper with.
#[derive(Debug, Clone)]
pub struct SignedBundle {
    /// The bundle, `application/vnd.dev.sigstore.bundle.v0.3+json`.
    pub json: Vec<u8>,
    /// The leaf certificate, DER.
    pub certificate_der: Vec<u8>,
    /// The DSSE payload (the in-toto statement JSON).
    pub payload: Vec<u8>,
    /// The Rekor entry body (`canonicalizedBody`, decoded).
    pub rekor_body: Vec<u8>,
}

/// An ECDSA key with its SPKI DER.
struct LogKey {
    key: EcdsaKeyPair,
    spki_der: Vec<u8>,
}

impl LogKey {
    fn p256_from_pem(pem: &str, rng: &SystemRandom) -> Result<Self, Error> {
        let pkcs8 = keys::pem_to_der(pem, "PRIVATE KEY")?;
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &pkcs8, rng)
            .map_err(|e| Error::Key(format!("P-256 key: {e}")))?;
        let spki_der = cert::p256_spki(key.public_key().as_ref());
        Ok(Self { key, spki_der })
    }

    /// SHA-256 of the DER public key: the log ID, and (first 4 bytes) the note key hint.
    fn log_id(&self) -> [u8; 32] {
        Sha256::digest(&self.spki_der).into()
    }

    fn sign(&self, msg: &[u8], rng: &SystemRandom) -> Result<Vec<u8>, Error> {
        self.key
            .sign(rng, msg)
            .map(|s| s.as_ref().to_vec())
            .map_err(|e| Error::Crypto(e.to_string()))
    }
}

/// The TEST Sigstore instance: Fulcio intermediate, CT log and Rekor log keys.
pub struct TestSigstore {
    rng: SystemRandom,
    fulcio_intermediate_der: Vec<u8>,
    fulcio_key: EcdsaKeyPair,
    ctlog: LogKey,
    rekor: LogKey,
    /// The log ID written into entries; normally the Rekor key's own.
    rekor_log_id: [u8; 32],
}

impl std::fmt::Debug for TestSigstore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestSigstore")
            .field("rekor_log_id", &hex::encode(self.rekor_log_id))
            .finish_non_exhaustive()
    }
}

impl TestSigstore {
    /// The checked-in TEST key set.
    pub fn load() -> Result<Self, Error> {
        Self::from_pems(
            keys::FULCIO_INTERMEDIATE_PEM,
            keys::FULCIO_INTERMEDIATE_KEY,
            keys::CTLOG_KEY,
            keys::REKOR_KEY,
        )
    }

    /// A key set from PEM files: the Fulcio intermediate certificate and its P-384
    /// PKCS#8 key, and the CT log's and Rekor's P-256 PKCS#8 keys.
    pub fn from_pems(
        fulcio_intermediate_cert: &str,
        fulcio_intermediate_key: &str,
        ctlog_key: &str,
        rekor_key: &str,
    ) -> Result<Self, Error> {
        let rng = SystemRandom::new();
        let fulcio_intermediate_der = keys::pem_to_der(fulcio_intermediate_cert, "CERTIFICATE")?;
        let pkcs8 = keys::pem_to_der(fulcio_intermediate_key, "PRIVATE KEY")?;
        let fulcio_key = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_ASN1_SIGNING, &pkcs8, &rng)
            .map_err(|e| Error::Key(format!("Fulcio intermediate key (P-384): {e}")))?;
        let ctlog = LogKey::p256_from_pem(ctlog_key, &rng)?;
        let rekor = LogKey::p256_from_pem(rekor_key, &rng)?;
        let rekor_log_id = rekor.log_id();
        Ok(Self {
            rng,
            fulcio_intermediate_der,
            fulcio_key,
            ctlog,
            rekor,
            rekor_log_id,
        })
    }

    /// For negative tests: sign checkpoints and SETs with another P-256 key (PKCS#8
    /// PEM) while still naming the trusted Rekor log's ID in the entry.
    pub fn with_rekor_signing_key(mut self, rekor_key_pem: &str) -> Result<Self, Error> {
        self.rekor = LogKey::p256_from_pem(rekor_key_pem, &self.rng)?;
        Ok(self)
    }

    /// For negative tests: sign SCTs with another P-256 key (PKCS#8 PEM) while still
    /// naming the trusted CT log's ID in the SCT.
    pub fn with_ctlog_signing_key(mut self, ctlog_key_pem: &str) -> Result<Self, Error> {
        let trusted_id = self.ctlog.log_id();
        let mut other = LogKey::p256_from_pem(ctlog_key_pem, &self.rng)?;
        // Keep the advertised log ID: cert::sct_extension takes it from spki_der.
        other.spki_der = self.ctlog.spki_der.clone();
        debug_assert_eq!(other.log_id(), trusted_id);
        self.ctlog = other;
        Ok(self)
    }

    /// The Rekor log ID (SHA-256 of its DER public key).
    pub fn rekor_log_id(&self) -> [u8; 32] {
        self.rekor_log_id
    }

    /// Signs `attestation` as `identity` would from GitHub Actions with
    /// `actions/attest`, integrated in the TEST log at `signed_at` (Unix seconds).
    /// Returns the bundle JSON.
    pub fn sign_attestation(
        &self,
        attestation: &Attestation,
        identity: &Identity,
        signed_at: i64,
    ) -> Result<Vec<u8>, Error> {
        Ok(self
            .sign_attestation_with(attestation, identity, &SignOptions::at(signed_at))?
            .json)
    }

    /// [`Self::sign_attestation`] with every knob, returning the bundle's parts too.
    pub fn sign_attestation_with(
        &self,
        attestation: &Attestation,
        identity: &Identity,
        opts: &SignOptions,
    ) -> Result<SignedBundle, Error> {
        if opts.log_index >= opts.tree_size {
            return Err(Error::Log(format!(
                "log index {} is not below tree size {}",
                opts.log_index, opts.tree_size
            )));
        }

        // 1. The ephemeral key and its Fulcio certificate.
        let ephemeral_pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &self.rng)
                .map_err(|e| Error::Crypto(e.to_string()))?;
        let ephemeral = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_ASN1_SIGNING,
            ephemeral_pkcs8.as_ref(),
            &self.rng,
        )
        .map_err(|e| Error::Crypto(e.to_string()))?;
        let mut serial = [0u8; 20];
        self.rng
            .fill(&mut serial)
            .map_err(|e| Error::Crypto(e.to_string()))?;
        serial[0] &= 0x7f;
        let not_before = opts.signed_at - 5;
        let certificate_der = cert::issue_leaf(&cert::LeafRequest {
            issuer_der: &self.fulcio_intermediate_der,
            issuer_key: &self.fulcio_key,
            ctlog: opts
                .embed_sct
                .then_some((&self.ctlog.key, &self.ctlog.spki_der)),
            public_key: ephemeral.public_key().as_ref(),
            serial: &serial,
            not_before,
            not_after: not_before + instance::LEAF_LIFETIME_SECS,
            identity,
            rng: &self.rng,
        })?;

        // 2. The DSSE envelope.
        let payload = attestation.statement_json();
        let payload_type = "application/vnd.in-toto+json";
        let pae = dsse_pae(payload_type, &payload);
        let sig = ephemeral
            .sign(&self.rng, &pae)
            .map_err(|e| Error::Crypto(e.to_string()))?;
        let sig_b64 = B64.encode(sig.as_ref());
        let payload_b64 = B64.encode(&payload);
        let envelope = json!({
            "payload": payload_b64,
            "payloadType": payload_type,
            "signatures": [{"sig": sig_b64}],
        });

        // 3. The Rekor dsse 0.0.1 entry, canonicalized (sorted keys, no whitespace).
        let cert_pem = keys::der_to_pem(&certificate_der, "CERTIFICATE");
        let envelope_hash = hex::encode(Sha256::digest(envelope.to_string().as_bytes()));
        let rekor_body = format!(
            "{{\"apiVersion\":\"0.0.1\",\"kind\":\"dsse\",\"spec\":{{\"envelopeHash\":{{\"algorithm\":\"sha256\",\"value\":\"{}\"}},\"payloadHash\":{{\"algorithm\":\"sha256\",\"value\":\"{}\"}},\"signatures\":[{{\"signature\":\"{}\",\"verifier\":\"{}\"}}]}}}}",
            envelope_hash,
            hex::encode(Sha256::digest(&payload)),
            sig_b64,
            B64.encode(cert_pem.as_bytes()),
        )
        .into_bytes();
        let body_b64 = B64.encode(&rekor_body);

        // 4. A log with the entry at log_index; the other leaves are filler.
        let index = usize::try_from(opts.log_index).map_err(|e| Error::Log(e.to_string()))?;
        let size = usize::try_from(opts.tree_size).map_err(|e| Error::Log(e.to_string()))?;
        let leaves: Vec<[u8; 32]> = (0..size)
            .map(|i| {
                if i == index {
                    rekor::leaf_hash(&rekor_body)
                } else {
                    rekor::leaf_hash(format!("provenant TEST rekor filler leaf {i}").as_bytes())
                }
            })
            .collect();
        let root_hash = rekor::root(&leaves);
        let path = rekor::inclusion_path(index, &leaves);
        let note_body = rekor::checkpoint_body(instance::REKOR_ORIGIN, opts.tree_size, &root_hash);
        let note_sig = self.rekor.sign(note_body.as_bytes(), &self.rng)?;
        let checkpoint = rekor::signed_note(
            &note_body,
            instance::REKOR_NAME,
            &self.rekor_log_id[..4],
            &note_sig,
        );

        // 5. The inclusion promise: the SET over the canonical JSON Rekor signs.
        let set_payload = format!(
            "{{\"body\":\"{}\",\"integratedTime\":{},\"logID\":\"{}\",\"logIndex\":{}}}",
            body_b64,
            opts.signed_at,
            hex::encode(self.rekor_log_id),
            opts.log_index
        );
        let mut entry = json!({
            "logIndex": opts.log_index.to_string(),
            "logId": {"keyId": B64.encode(self.rekor_log_id)},
            "kindVersion": {"kind": "dsse", "version": "0.0.1"},
            "integratedTime": opts.signed_at.to_string(),
            "inclusionProof": {
                "logIndex": opts.log_index.to_string(),
                "rootHash": B64.encode(root_hash),
                "treeSize": opts.tree_size.to_string(),
                "hashes": path.iter().map(|h| B64.encode(h)).collect::<Vec<_>>(),
                "checkpoint": {"envelope": checkpoint},
            },
            "canonicalizedBody": body_b64,
        });
        if opts.inclusion_promise {
            let set = self.rekor.sign(set_payload.as_bytes(), &self.rng)?;
            entry["inclusionPromise"] = json!({"signedEntryTimestamp": B64.encode(set)});
        }

        let bundle = json!({
            "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
            "verificationMaterial": {
                "tlogEntries": [entry],
                "timestampVerificationData": {},
                "certificate": {"rawBytes": B64.encode(&certificate_der)},
            },
            "dsseEnvelope": envelope,
        });
        Ok(SignedBundle {
            json: bundle.to_string().into_bytes(),
            certificate_der,
            payload,
            rekor_body,
        })
    }
}

/// Signs with the checked-in TEST key set: see [`TestSigstore::sign_attestation`].
pub fn sign_attestation(
    attestation: &Attestation,
    identity: &Identity,
    signed_at: i64,
) -> Result<Vec<u8>, Error> {
    TestSigstore::load()?.sign_attestation(attestation, identity, signed_at)
}

/// DSSE v1 pre-authentication encoding.
pub fn dsse_pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}
