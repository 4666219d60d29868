//! Offline verification of container image signatures: cosign's legacy
//! simple-signing signatures (the `sha256-<hex>.sig` tag, and containers/image's
//! stored `sigstore-json` files) and Sigstore bundles naming the image digest.
//!
//! # What is checked
//!
//! For a [`ImageSignature::SimpleSigning`] signature, in this order (the
//! cryptography first, so a content error always describes an authentic signature):
//!
//! 1. bounds: payload, each annotation and their number;
//! 2. the signature (`dev.cosignproject.cosign/signature`, base64 ASN.1/raw) over
//!    the exact payload bytes, with a trusted cosign key (key rules), or with the
//!    key of the Fulcio leaf in `dev.sigstore.cosign/certificate` (keyless rules);
//! 3. the Rekor SET (`dev.sigstore.cosign/bundle`): the log key named by `logID`
//!    (SHA-256 of its DER SPKI) is trusted and valid at `integratedTime`, its ECDSA
//!    signature covers the canonical JSON `{"body","integratedTime","logID",
//!    "logIndex"}`, and the body is a `hashedrekord` 0.0.1 entry recording
//!    sha256(payload), the same signature and the same key or certificate. A
//!    missing SET is refused when Rekor is required (always for keyless), and an
//!    `integratedTime` after `now` is refused;
//! 4. keyless: the leaf chains (through `dev.sigstore.cosign/chain` or the trusted
//!    intermediates) to a trusted Fulcio CA whose window contains the integrated
//!    time, with the code-signing EKU, every certificate valid at the integrated
//!    time; then its issuer, SAN and Fulcio extensions meet the identity policy
//!    ([`policy::identity`]);
//! 5. the payload: `critical.type` is `cosign container image signature`,
//!    `critical.image.docker-manifest-digest` equals the image digest, and (for
//!    trust loaded from a policy rule) `critical.identity.docker-reference` lies in
//!    the rule's scope.
//!
//! For a [`ImageSignature::Bundle`] the bundle is verified with
//! [`crate::verify_bundle`] against the image digest under the rule's
//! `trusted_root.json` and identity policy; it must be a DSSE in-toto statement with
//! a subject of that digest whose name lies in the rule's scope (what
//! `actions/attest` with `push-to-registry` and cosign's new bundle format write).
//!
//! Not checked for simple-signing signatures: the leaf's embedded SCT (neither
//! containers/image nor cosign's legacy path require it) and Rekor inclusion proofs
//! (the legacy format carries only the SET).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use der::{Decode as _, Encode as _};
use evidence::verdict::ReasonCode;
use policy::identity::{
    IdentityClaims, IdentityPolicy, IdentityPolicyError, IdentityViolation, RunnerEnvironment,
    GITHUB_ACTIONS_ISSUER,
};
use policy::image::ImageRule;
use rustls_pki_types::{CertificateDer, UnixTime};
use sha2::{Digest as _, Sha256};
use spki::ObjectIdentifier;

use crate::image::ImageSignature;
use crate::{read_bounded, Artifact, ArtifactDigest, ReadBoundedError, TrustRoot, VerifyError};

/// The simple-signing layer media type (and `mimeType` of a stored signature file).
pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The payload's `critical.type`.
pub const COSIGN_SIGNATURE_TYPE: &str = "cosign container image signature";
/// Annotation: the base64 signature over the payload.
pub const ANNOTATION_SIGNATURE: &str = "dev.cosignproject.cosign/signature";
/// Annotation: the Fulcio leaf certificate, PEM.
pub const ANNOTATION_CERTIFICATE: &str = "dev.sigstore.cosign/certificate";
/// Annotation: the Fulcio chain (intermediates, root), PEM.
pub const ANNOTATION_CHAIN: &str = "dev.sigstore.cosign/chain";
/// Annotation: the Rekor bundle (SET and entry), JSON.
pub const ANNOTATION_BUNDLE: &str = "dev.sigstore.cosign/bundle";
/// containers/image's stored signature file prefix.
pub const SIGSTORE_JSON_PREFIX: &[u8] = b"\x00sigstore-json\n";

/// Largest signature file [`parse_signature_file`] accepts (a bundle is at most
/// [`crate::MAX_BUNDLE_BYTES`]; a simple-signing file is a few KiB).
pub const MAX_SIGNATURE_FILE_BYTES: usize = crate::MAX_BUNDLE_BYTES + 64 * 1024;
/// Largest simple-signing payload (cosign's are ~250 bytes plus `optional`).
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;
/// Largest single annotation value (a certificate chain is a few KiB).
pub const MAX_ANNOTATION_BYTES: usize = 256 * 1024;
/// Most annotations on one signature layer.
pub const MAX_ANNOTATIONS: usize = 64;
/// Most certificates in a `dev.sigstore.cosign/chain` annotation or a CA file.
pub const MAX_CHAIN_CERTS: usize = 16;
/// Largest key, certificate or CA file [`ImageTrust::load`] reads.
pub const MAX_TRUST_FILE_BYTES: usize = 1024 * 1024;
/// Largest decoded signature (RSA-8192 is 1024 bytes).
const MAX_SIGNATURE_BYTES: usize = 2048;

/// Why a trust rule could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageTrustError {
    /// A file could not be read.
    #[error("cannot read {path}: {detail}")]
    Io {
        /// The path as resolved.
        path: PathBuf,
        /// The I/O error.
        detail: String,
    },
    /// A file is larger than [`MAX_TRUST_FILE_BYTES`].
    #[error("{path} is larger than {max} bytes")]
    TooLarge {
        /// The path as resolved.
        path: PathBuf,
        /// The bound.
        max: usize,
    },
    /// A public key cannot be used.
    #[error("invalid public key{}: {detail}", fmt_origin(.origin))]
    InvalidKey {
        /// Where it came from.
        origin: String,
        /// Why.
        detail: String,
    },
    /// A CA certificate cannot be used.
    #[error("invalid CA certificate{}: {detail}", fmt_origin(.origin))]
    InvalidCertificate {
        /// Where it came from.
        origin: String,
        /// Why.
        detail: String,
    },
    /// The `trusted_root.json` cannot be used.
    #[error(transparent)]
    TrustRoot(#[from] crate::TrustRootError),
    /// The identity constraints do not form a usable policy.
    #[error("identity policy: {0}")]
    Identity(#[from] IdentityPolicyError),
    /// The rule's shape is unusable (no keys and no keyless, both, no Rekor key…).
    #[error("invalid trust rule: {0}")]
    InvalidRule(String),
}

fn fmt_origin(o: &str) -> String {
    if o.is_empty() {
        String::new()
    } else {
        format!(" ({o})")
    }
}

impl ImageTrustError {
    /// Stable machine-readable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Io { .. } => "TrustFileUnreadable",
            Self::TooLarge { .. } => "TrustFileTooLarge",
            Self::InvalidKey { .. } => "InvalidKey",
            Self::InvalidCertificate { .. } => "InvalidCaCertificate",
            Self::TrustRoot(e) => e.kind(),
            Self::Identity(e) => e.kind(),
            Self::InvalidRule(_) => "InvalidTrustRule",
        }
    }
}

/// Why an image signature was refused. `kind()` is stable; `reason_code()` is the
/// verdict reason it stands for.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageSigError {
    /// No signature was found for the image.
    #[error("the image has no signature")]
    Unsigned,
    /// The image digest given is not `sha256:<64 hex>`.
    #[error("invalid image digest {0:?}: expected sha256:<64 hex>")]
    InvalidDigest(String),
    /// A signature file, payload or annotation is larger than its bound.
    #[error("{what} is larger than {max} bytes")]
    TooLarge {
        /// What.
        what: &'static str,
        /// The bound.
        max: usize,
    },
    /// Not a signature file, layer JSON or bundle; or a malformed annotation.
    #[error("malformed signature: {0}")]
    Malformed(String),
    /// A signature shape this verifier does not accept for this trust.
    #[error("unsupported signature: {0}")]
    Unsupported(String),
    /// No `dev.cosignproject.cosign/signature` annotation.
    #[error("no {ANNOTATION_SIGNATURE} annotation")]
    MissingSignature,
    /// A keyless rule and no `dev.sigstore.cosign/certificate` annotation.
    #[error(
        "no {ANNOTATION_CERTIFICATE} annotation: a keyless signature needs its Fulcio certificate"
    )]
    MissingCertificate,
    /// The signature does not verify with any trusted key (or the certificate's key).
    #[error("invalid signature: {0}")]
    BadSignature(String),
    /// The certificate cannot be parsed or lacks what Fulcio writes.
    #[error("malformed certificate: {0}")]
    MalformedCertificate(String),
    /// The certificate does not chain to a trusted Fulcio CA (with code signing).
    #[error("certificate chain invalid: {0}")]
    CertificateChain(String),
    /// A certificate of the chain was not valid at the Rekor integrated time.
    #[error("certificate not valid at the signing time {signed_at} (unix): {detail}")]
    CertificateNotValidAtSigningTime {
        /// The integrated time.
        signed_at: i64,
        /// What webpki said.
        detail: String,
    },
    /// The certificate's identity does not meet the policy.
    #[error(transparent)]
    Identity(#[from] IdentityViolation),
    /// Rekor is required and there is no `dev.sigstore.cosign/bundle` annotation.
    #[error("no Rekor SET ({ANNOTATION_BUNDLE} annotation), and the policy requires one")]
    MissingRekorSet,
    /// The Rekor bundle annotation is malformed, or its SET does not verify.
    #[error("invalid Rekor SET: {0}")]
    InvalidRekorSet(String),
    /// The SET names a log whose key is not trusted.
    #[error("Rekor SET from an untrusted log {0}")]
    UnknownRekorLog(String),
    /// The Rekor entry does not record this payload, signature and key.
    #[error("Rekor entry does not match the signature: {0}")]
    RekorEntryMismatch(String),
    /// The integrated time lies after the verification time.
    #[error("logged at {signed_at} (unix), after the verification time {now}")]
    SignedAfterNow {
        /// Integrated time.
        signed_at: i64,
        /// The verification time given.
        now: i64,
    },
    /// The payload is not a cosign container image signature.
    #[error("invalid payload: {0}")]
    InvalidPayload(String),
    /// The signature is for another image.
    #[error("signature is for {got}, not {expected}")]
    DigestMismatch {
        /// The image digest being verified.
        expected: String,
        /// The digest the signature names.
        got: String,
    },
    /// The signed docker reference lies outside the rule's scope.
    #[error("signature names {reference:?}, outside the trusted scope {scope:?}")]
    ReferenceNotCovered {
        /// The signed reference (payload or subject name).
        reference: String,
        /// The rule's scope.
        scope: String,
    },
    /// The Sigstore bundle was refused.
    #[error("bundle: {0}")]
    Bundle(#[from] VerifyError),
}

impl ImageSigError {
    /// Stable machine-readable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unsigned => "Unsigned",
            Self::InvalidDigest(_) => "InvalidDigest",
            Self::TooLarge { .. } => "SignatureTooLarge",
            Self::Malformed(_) => "MalformedSignature",
            Self::Unsupported(_) => "UnsupportedSignature",
            Self::MissingSignature => "MissingSignature",
            Self::MissingCertificate => "MissingCertificate",
            Self::BadSignature(_) => "InvalidSignature",
            Self::MalformedCertificate(_) => "MalformedCertificate",
            Self::CertificateChain(_) => "CertificateChain",
            Self::CertificateNotValidAtSigningTime { .. } => "CertificateNotValidAtSigningTime",
            Self::Identity(_) => "IdentityMismatch",
            Self::MissingRekorSet => "MissingRekorSet",
            Self::InvalidRekorSet(_) => "InvalidRekorSet",
            Self::UnknownRekorLog(_) => "UnknownRekorLog",
            Self::RekorEntryMismatch(_) => "RekorEntryMismatch",
            Self::SignedAfterNow { .. } => "SignedAfterNow",
            Self::InvalidPayload(_) => "InvalidPayload",
            Self::DigestMismatch { .. } => "DigestMismatch",
            Self::ReferenceNotCovered { .. } => "ReferenceNotCovered",
            Self::Bundle(e) => e.kind(),
        }
    }

    /// The verdict reason this refusal stands for.
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            Self::Unsigned => ReasonCode::ImageUnsigned,
            Self::InvalidDigest(_) | Self::DigestMismatch { .. } => ReasonCode::ImageDigestMismatch,
            Self::Identity(_) | Self::ReferenceNotCovered { .. } => {
                ReasonCode::ImageIdentityMismatch
            }
            Self::Bundle(VerifyError::ArtifactMismatch(_)) => ReasonCode::ImageDigestMismatch,
            Self::Bundle(VerifyError::Identity(_)) => ReasonCode::ImageIdentityMismatch,
            _ => ReasonCode::ImageSignatureInvalid,
        }
    }

    /// How much the refusal says about the image: a verified signature with the
    /// wrong content beats a broken one (used by [`verify_any`]).
    fn informativeness(&self) -> u8 {
        match self {
            Self::DigestMismatch { .. }
            | Self::ReferenceNotCovered { .. }
            | Self::Identity(_)
            | Self::Bundle(VerifyError::ArtifactMismatch(_) | VerifyError::Identity(_)) => 4,
            Self::CertificateNotValidAtSigningTime { .. }
            | Self::SignedAfterNow { .. }
            | Self::MissingRekorSet
            | Self::CertificateChain(_)
            | Self::InvalidPayload(_) => 3,
            Self::InvalidRekorSet(_)
            | Self::UnknownRekorLog(_)
            | Self::RekorEntryMismatch(_)
            | Self::BadSignature(_)
            | Self::Bundle(_) => 2,
            Self::Unsigned => 0,
            _ => 1,
        }
    }
}

/// A signature that verified. Only this module constructs one.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct VerifiedImageSignature {
    /// The image digest, `sha256:<hex>`.
    pub digest: String,
    /// The signed repository (payload `docker-reference`, or the subject's name).
    pub docker_reference: Option<String>,
    /// A Fulcio certificate identity rather than a key.
    pub keyless: bool,
    /// The certificate SAN (email or URI), or `key:sha256:<fingerprint of DER SPKI>`.
    pub signer: String,
    /// The OIDC issuer (keyless).
    pub issuer: Option<String>,
    /// Fulcio source repository extension (`.12`).
    pub source_repository: Option<String>,
    /// Fulcio source repository ref extension (`.14`).
    pub source_ref: Option<String>,
    /// The Rekor integrated time (or the bundle's verified signing time), unix seconds.
    pub integrated_time: Option<i64>,
}

/// A public key ready to verify signatures.
#[derive(Clone)]
struct PublicKey {
    spki_der: Vec<u8>,
    /// `sha256:<hex of sha256(spki_der)>`.
    fingerprint: String,
    /// `[start, end]` unix seconds, when the trust material gives one.
    valid_for: Option<(i64, Option<i64>)>,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.fingerprint)
    }
}

impl PublicKey {
    fn from_spki_der(der: &[u8], origin: &str) -> Result<Self, ImageTrustError> {
        let bad = |detail: String| ImageTrustError::InvalidKey {
            origin: origin.to_owned(),
            detail,
        };
        key_algorithm(der).map_err(bad)?;
        Ok(Self {
            spki_der: der.to_vec(),
            fingerprint: format!("sha256:{}", hex::encode(Sha256::digest(der))),
            valid_for: None,
        })
    }

    fn log_id(&self) -> [u8; 32] {
        Sha256::digest(&self.spki_der).into()
    }

    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        verify_spki(&self.spki_der, msg, sig)
    }

    fn valid_at(&self, t: i64) -> bool {
        self.valid_for
            .is_none_or(|(s, e)| t >= s && e.is_none_or(|e| t <= e))
    }
}

const OID_EC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
/// id-kp-codeSigning (1.3.6.1.5.5.7.3.3), DER value bytes.
const EKU_CODE_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyAlg {
    P256,
    P384,
    Ed25519,
    Rsa,
}

fn key_algorithm(spki_der: &[u8]) -> Result<KeyAlg, String> {
    let spki = spki::SubjectPublicKeyInfoRef::from_der(spki_der)
        .map_err(|e| format!("not a DER SubjectPublicKeyInfo: {e}"))?;
    let oid = spki.algorithm.oid;
    if oid == OID_EC {
        match spki.algorithm.parameters_oid() {
            Ok(c) if c == OID_P256 => Ok(KeyAlg::P256),
            Ok(c) if c == OID_P384 => Ok(KeyAlg::P384),
            Ok(c) => Err(format!("unsupported EC curve {c}")),
            Err(e) => Err(format!("EC key without a named curve: {e}")),
        }
    } else if oid == OID_ED25519 {
        Ok(KeyAlg::Ed25519)
    } else if oid == OID_RSA {
        Ok(KeyAlg::Rsa)
    } else {
        Err(format!("unsupported key algorithm {oid}"))
    }
}

/// Verifies `sig` over `msg` with a DER SPKI: ECDSA P-256 (SHA-256), P-384
/// (SHA-384, or SHA-256 as cosign's Go verifier uses), Ed25519, RSA PKCS#1 v1.5
/// SHA-256 (2048–8192). ECDSA signatures in ASN.1 form, as cosign writes them.
fn verify_spki(spki_der: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    use ring::signature as rs;
    let Ok(alg) = key_algorithm(spki_der) else {
        return false;
    };
    let Ok(spki) = spki::SubjectPublicKeyInfoRef::from_der(spki_der) else {
        return false;
    };
    let Some(point) = spki.subject_public_key.as_bytes() else {
        return false;
    };
    let algs: &[&'static dyn rs::VerificationAlgorithm] = match alg {
        KeyAlg::P256 => &[&rs::ECDSA_P256_SHA256_ASN1],
        KeyAlg::P384 => &[&rs::ECDSA_P384_SHA384_ASN1, &rs::ECDSA_P384_SHA256_ASN1],
        KeyAlg::Ed25519 => &[&rs::ED25519],
        KeyAlg::Rsa => &[&rs::RSA_PKCS1_2048_8192_SHA256],
    };
    algs.iter().any(|a| {
        rs::UnparsedPublicKey::new(*a, point)
            .verify(msg, sig)
            .is_ok()
    })
}

/// A trusted Fulcio CA: its anchor and the trusted intermediates below it.
#[derive(Clone)]
struct FulcioCa {
    anchor_der: Vec<u8>,
    intermediates: Vec<Vec<u8>>,
    valid_for: Option<(i64, Option<i64>)>,
}

/// The keyless half of a trust rule.
#[derive(Clone)]
struct Keyless {
    cas: Vec<FulcioCa>,
    identity: IdentityPolicy,
    /// For bundles (only with a `trusted_root.json`).
    bundle_root: Option<std::sync::Arc<TrustRoot>>,
}

#[derive(Clone)]
enum Mode {
    Keys(Vec<PublicKey>),
    Keyless(Box<Keyless>),
}

/// The loaded, ready-to-verify form of one [`ImageRule`] (or of explicit CLI
/// arguments, through [`ImageTrust::from_parts`]).
#[derive(Clone)]
pub struct ImageTrust {
    mode: Mode,
    rekor_keys: Vec<PublicKey>,
    require_rekor: bool,
    scope: Option<String>,
}

impl std::fmt::Debug for ImageTrust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("ImageTrust");
        match &self.mode {
            Mode::Keys(k) => d.field("keys", k),
            Mode::Keyless(k) => d
                .field("fulcio_cas", &k.cas.len())
                .field("identity", &k.identity),
        };
        d.field("rekor_keys", &self.rekor_keys)
            .field("require_rekor", &self.require_rekor)
            .field("scope", &self.scope)
            .finish()
    }
}

/// The identity a keyless certificate must carry (all exact, but `san_regex`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeylessIdentity {
    /// OIDC issuer, exact (required).
    pub issuer: String,
    /// Email SAN, exact.
    pub subject_email: Option<String>,
    /// URI SAN, exact.
    pub san: Option<String>,
    /// SAN regex, anchored at both ends.
    pub san_regex: Option<String>,
    /// Fulcio source repository extension (`https://github.com/OWNER/REPO` or `OWNER/REPO`).
    pub source_repository: Option<String>,
    /// Fulcio source repository ref extension, exact.
    pub source_ref: Option<String>,
}

/// Trust material as bytes, for [`ImageTrust::from_parts`]. Exactly one of `keys`
/// and `keyless` must be given.
#[derive(Debug, Clone, Default)]
pub struct ImageTrustParts {
    /// Cosign public keys, PEM (`PUBLIC KEY`, SPKI); a file may hold several.
    pub keys: Vec<Vec<u8>>,
    /// Keyless: who must have signed.
    pub keyless: Option<KeylessIdentity>,
    /// A `trusted_root.json`: Fulcio CAs and Rekor keys (and bundle verification).
    pub trusted_root: Option<Vec<u8>>,
    /// Fulcio CA certificates, PEM; each one is a trust anchor.
    pub fulcio_ca: Option<Vec<u8>>,
    /// Rekor public keys, PEM.
    pub rekor_keys: Vec<Vec<u8>>,
    /// Require a Rekor SET (forced on for keyless).
    pub require_rekor: bool,
    /// `registry[:port]/path`: the signed docker reference must lie at or under it.
    pub scope: Option<String>,
}

impl ImageTrust {
    /// Loads a policy rule; relative paths resolve against `base_dir`. Files are
    /// read with a bound ([`MAX_TRUST_FILE_BYTES`], the trusted root's own).
    pub fn load(rule: &ImageRule, base_dir: &Path) -> Result<ImageTrust, ImageTrustError> {
        let read = |p: &Path, max: usize| -> Result<Vec<u8>, ImageTrustError> {
            let path = base_dir.join(p);
            read_bounded(&path, max).map_err(|e| match e {
                ReadBoundedError::TooLarge => ImageTrustError::TooLarge { path, max },
                ReadBoundedError::Io(e) => ImageTrustError::Io {
                    path,
                    detail: e.to_string(),
                },
            })
        };
        let mut parts = ImageTrustParts {
            require_rekor: rule.require_rekor,
            scope: Some(rule.scope.clone()),
            ..Default::default()
        };
        for k in &rule.keys {
            parts.keys.push(read(k, MAX_TRUST_FILE_BYTES)?);
        }
        if let Some(r) = &rule.rekor_key {
            parts.rekor_keys.push(read(r, MAX_TRUST_FILE_BYTES)?);
        }
        if let Some(k) = &rule.keyless {
            if let Some(t) = &k.trusted_root {
                parts.trusted_root = Some(read(t, crate::MAX_TRUSTED_ROOT_BYTES)?);
            }
            if let Some(c) = &k.fulcio_ca {
                parts.fulcio_ca = Some(read(c, MAX_TRUST_FILE_BYTES)?);
            }
            parts.keyless = Some(KeylessIdentity {
                issuer: k.issuer.clone(),
                subject_email: k.subject_email.clone(),
                san: k.san.clone(),
                san_regex: k.san_regex.clone(),
                source_repository: k.source_repository.clone(),
                source_ref: k.source_ref.clone(),
            });
        }
        Self::from_parts(parts)
    }

    /// Builds trust from explicit material (the CLI's `--key`, `--trusted-root`,
    /// `--fulcio-ca`, `--rekor-key` and identity flags).
    pub fn from_parts(parts: ImageTrustParts) -> Result<ImageTrust, ImageTrustError> {
        let mut rekor_keys = Vec::new();
        for (i, pem) in parts.rekor_keys.iter().enumerate() {
            for der in pem_blocks(pem, "PUBLIC KEY").map_err(|d| ImageTrustError::InvalidKey {
                origin: format!("Rekor key {}", i + 1),
                detail: d,
            })? {
                rekor_keys.push(PublicKey::from_spki_der(&der, "Rekor key")?);
            }
        }
        let mut trusted_root = None;
        let mut cas = Vec::new();
        if let Some(json) = &parts.trusted_root {
            let text = std::str::from_utf8(json).map_err(|_| {
                ImageTrustError::TrustRoot(crate::TrustRootError::Invalid("not UTF-8".into()))
            })?;
            let tr = sigstore_verify::trust_root::TrustedRoot::from_json(text)
                .map_err(|e| crate::TrustRootError::Invalid(e.to_string()))?;
            for t in &tr.tlogs {
                let mut k = PublicKey::from_spki_der(
                    t.public_key.raw_bytes.as_bytes(),
                    "trusted_root.json tlog",
                )?;
                k.valid_for = t
                    .public_key
                    .valid_for
                    .map(|v| (v.start.as_second(), v.end.map(|e| e.as_second())));
                rekor_keys.push(k);
            }
            for ca in &tr.certificate_authorities {
                let mut certs: Vec<Vec<u8>> = ca
                    .cert_chain
                    .certificates
                    .iter()
                    .map(|c| c.raw_bytes.as_bytes().to_vec())
                    .collect();
                let Some(anchor_der) = certs.pop() else {
                    continue;
                };
                check_anchor(&anchor_der, "trusted_root.json")?;
                cas.push(FulcioCa {
                    anchor_der,
                    intermediates: certs,
                    valid_for: ca
                        .valid_for
                        .map(|v| (v.start.as_second(), v.end.map(|e| e.as_second()))),
                });
            }
            trusted_root = Some(std::sync::Arc::new(TrustRoot::from_json(json)?));
        }
        if let Some(pem) = &parts.fulcio_ca {
            let ders = pem_blocks(pem, "CERTIFICATE").map_err(|detail| {
                ImageTrustError::InvalidCertificate {
                    origin: "Fulcio CA".into(),
                    detail,
                }
            })?;
            for der in ders {
                check_anchor(&der, "Fulcio CA")?;
                cas.push(FulcioCa {
                    anchor_der: der,
                    intermediates: Vec::new(),
                    valid_for: None,
                });
            }
        }
        let scope = parts
            .scope
            .map(|s| s.trim_end_matches('/').to_owned())
            .filter(|s| !s.is_empty());
        let mode = match (parts.keys.is_empty(), parts.keyless) {
            (false, Some(_)) => {
                return Err(ImageTrustError::InvalidRule(
                    "give either keys or a keyless identity, not both".into(),
                ))
            }
            (true, None) => {
                return Err(ImageTrustError::InvalidRule(
                    "give keys or a keyless identity".into(),
                ))
            }
            (false, None) => {
                let mut keys = Vec::new();
                for (i, pem) in parts.keys.iter().enumerate() {
                    let origin = format!("key {}", i + 1);
                    let ders =
                        pem_blocks(pem, "PUBLIC KEY").map_err(|d| ImageTrustError::InvalidKey {
                            origin: origin.clone(),
                            detail: d,
                        })?;
                    for der in ders {
                        keys.push(PublicKey::from_spki_der(&der, &origin)?);
                    }
                }
                if parts.require_rekor && rekor_keys.is_empty() {
                    return Err(ImageTrustError::InvalidRule(
                        "Rekor is required but no Rekor key is given".into(),
                    ));
                }
                Mode::Keys(keys)
            }
            (true, Some(id)) => {
                if cas.is_empty() {
                    return Err(ImageTrustError::InvalidRule(
                        "keyless needs Fulcio CAs: a trusted_root.json or a Fulcio CA file".into(),
                    ));
                }
                if rekor_keys.is_empty() {
                    return Err(ImageTrustError::InvalidRule(
                        "keyless needs a Rekor key: a trusted_root.json or a Rekor key file".into(),
                    ));
                }
                let identity = identity_policy(&id)?;
                Mode::Keyless(Box::new(Keyless {
                    cas,
                    identity,
                    bundle_root: trusted_root,
                }))
            }
        };
        let keyless = matches!(mode, Mode::Keyless(_));
        Ok(ImageTrust {
            mode,
            rekor_keys,
            require_rekor: parts.require_rekor || keyless,
            scope,
        })
    }

    /// Keyless (Fulcio identity) rather than keys.
    pub fn is_keyless(&self) -> bool {
        matches!(self.mode, Mode::Keyless(_))
    }

    /// Whether a Rekor SET is required.
    pub fn requires_rekor(&self) -> bool {
        self.require_rekor
    }

    /// The scope signed references must lie in, if any.
    pub fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }
}

fn check_anchor(der: &[u8], origin: &str) -> Result<(), ImageTrustError> {
    let cd = CertificateDer::from(der);
    webpki::anchor_from_trusted_cert(&cd)
        .map(|_| ())
        .map_err(|e| ImageTrustError::InvalidCertificate {
            origin: origin.to_owned(),
            detail: format!("{e:?}"),
        })
}

fn identity_policy(id: &KeylessIdentity) -> Result<IdentityPolicy, IdentityPolicyError> {
    let mut b = IdentityPolicy::builder().issuer(&id.issuer);
    match (&id.subject_email, &id.san) {
        (Some(_), Some(_)) => return Err(IdentityPolicyError::ConflictingSan),
        (Some(s), None) | (None, Some(s)) => b = b.san(s),
        (None, None) => {}
    }
    if let Some(r) = &id.san_regex {
        b = b.san_regex(r);
    }
    if let Some(r) = &id.source_repository {
        b = b.source_repository(r);
    }
    if let Some(r) = &id.source_ref {
        b = b.source_ref(r);
    }
    // GitHub Actions certificates must come from GitHub's own runners, as for build
    // provenance (DESIGN.md): a self-hosted runner is the repository owner's machine.
    // Other issuers (e.g. GitHub OAuth for an email identity) carry no runner claim.
    b = b.runner_environment(if id.issuer == GITHUB_ACTIONS_ISSUER {
        RunnerEnvironment::GithubHosted
    } else {
        RunnerEnvironment::Any
    });
    b.build()
}

/// Every PEM block labelled `label` (at most [`MAX_CHAIN_CERTS`]), DER-decoded. At
/// least one is required; other labels are skipped.
fn pem_blocks(pem: &[u8], label: &str) -> Result<Vec<Vec<u8>>, String> {
    let text = std::str::from_utf8(pem).map_err(|_| "PEM is not UTF-8".to_string())?;
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(&begin) {
        let after = &rest[start + begin.len()..];
        let stop = after
            .find(&end)
            .ok_or_else(|| format!("unterminated {label} PEM block"))?;
        let b64: String = after[..stop].split_whitespace().collect();
        let der = B64
            .decode(b64.as_bytes())
            .map_err(|e| format!("{label} PEM: {e}"))?;
        out.push(der);
        if out.len() > MAX_CHAIN_CERTS {
            return Err(format!("more than {MAX_CHAIN_CERTS} {label} PEM blocks"));
        }
        rest = &after[stop + end.len()..];
    }
    if out.is_empty() {
        return Err(format!("no {label} PEM block"));
    }
    Ok(out)
}

/// Parses a signature as stored on disk or fetched: containers/image's stored
/// signature file (`0x00 "sigstore-json" LF {mimeType, payload, annotations}`), a
/// cosign layer JSON (the same object without the prefix), or a Sigstore bundle.
pub fn parse_signature_file(bytes: &[u8]) -> Result<ImageSignature, ImageSigError> {
    if bytes.len() > MAX_SIGNATURE_FILE_BYTES {
        return Err(ImageSigError::TooLarge {
            what: "signature file",
            max: MAX_SIGNATURE_FILE_BYTES,
        });
    }
    let (json, prefixed) = match bytes.strip_prefix(SIGSTORE_JSON_PREFIX) {
        Some(rest) => (rest, true),
        None => (bytes, false),
    };
    let value: serde_json::Value = serde_json::from_slice(json)
        .map_err(|e| ImageSigError::Malformed(format!("not JSON: {e}")))?;
    let obj = value
        .as_object()
        .ok_or_else(|| ImageSigError::Malformed("not a JSON object".into()))?;
    if !prefixed {
        if let Some(mt) = obj.get("mediaType").and_then(|m| m.as_str()) {
            if mt.starts_with("application/vnd.dev.sigstore.bundle") {
                return Ok(ImageSignature::Bundle(bytes.to_vec()));
            }
        }
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Stored {
        #[serde(rename = "mimeType", default)]
        mime_type: Option<String>,
        payload: String,
        #[serde(default)]
        annotations: BTreeMap<String, String>,
    }
    let s: Stored = serde_json::from_value(value).map_err(|e| {
        ImageSigError::Malformed(format!(
            "neither a simple-signing signature nor a Sigstore bundle: {e}"
        ))
    })?;
    match s.mime_type.as_deref() {
        None | Some(SIMPLE_SIGNING_MEDIA_TYPE) => {}
        Some(other) => {
            return Err(ImageSigError::Unsupported(format!(
                "mimeType {:?}",
                truncate(other)
            )))
        }
    }
    let payload = B64
        .decode(s.payload.as_bytes())
        .map_err(|e| ImageSigError::Malformed(format!("payload is not base64: {e}")))?;
    let sig = ImageSignature::SimpleSigning {
        payload,
        annotations: s.annotations,
    };
    check_bounds(&sig)?;
    Ok(sig)
}

/// containers/image's stored signature file for a simple-signing signature (what
/// [`parse_signature_file`] reads); `None` for a bundle (store its bytes as they are).
pub fn encode_signature_file(sig: &ImageSignature) -> Option<Vec<u8>> {
    match sig {
        ImageSignature::SimpleSigning {
            payload,
            annotations,
        } => {
            let body = serde_json::json!({
                "mimeType": SIMPLE_SIGNING_MEDIA_TYPE,
                "payload": B64.encode(payload),
                "annotations": annotations,
            });
            let mut out = SIGSTORE_JSON_PREFIX.to_vec();
            out.extend(body.to_string().into_bytes());
            Some(out)
        }
        ImageSignature::Bundle(_) => None,
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(200).collect()
}

fn check_bounds(sig: &ImageSignature) -> Result<(), ImageSigError> {
    match sig {
        ImageSignature::SimpleSigning {
            payload,
            annotations,
        } => {
            if payload.len() > MAX_PAYLOAD_BYTES {
                return Err(ImageSigError::TooLarge {
                    what: "payload",
                    max: MAX_PAYLOAD_BYTES,
                });
            }
            if annotations.len() > MAX_ANNOTATIONS {
                return Err(ImageSigError::Malformed(format!(
                    "more than {MAX_ANNOTATIONS} annotations"
                )));
            }
            if annotations
                .iter()
                .any(|(k, v)| k.len() > 1024 || v.len() > MAX_ANNOTATION_BYTES)
            {
                return Err(ImageSigError::TooLarge {
                    what: "annotation",
                    max: MAX_ANNOTATION_BYTES,
                });
            }
            Ok(())
        }
        ImageSignature::Bundle(b) => {
            if b.len() > crate::MAX_BUNDLE_BYTES {
                return Err(ImageSigError::TooLarge {
                    what: "bundle",
                    max: crate::MAX_BUNDLE_BYTES,
                });
            }
            Ok(())
        }
    }
}

/// `sha256:<64 hex>` → lowercase.
fn normalise_digest(digest: &str) -> Result<String, ImageSigError> {
    let bad = || ImageSigError::InvalidDigest(truncate(digest));
    let hex_part = digest.strip_prefix("sha256:").ok_or_else(bad)?;
    if hex_part.len() != 64 || !hex_part.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    Ok(format!("sha256:{}", hex_part.to_ascii_lowercase()))
}

/// The repository of a docker reference: without `@digest` and without `:tag`
/// (a colon after the last slash).
pub fn reference_repository(reference: &str) -> &str {
    let no_digest = reference.split('@').next().unwrap_or(reference);
    let last_slash = no_digest.rfind('/').map_or(0, |i| i + 1);
    match no_digest[last_slash..].find(':') {
        Some(c) => &no_digest[..last_slash + c],
        None => no_digest,
    }
}

/// Verifies one signature of the image `digest` (`sha256:<hex>`) under `trust` at
/// `now` (unix seconds). See the module doc for every check. Never panics.
pub fn verify_image_signature(
    sig: &ImageSignature,
    digest: &str,
    trust: &ImageTrust,
    now: i64,
) -> Result<VerifiedImageSignature, ImageSigError> {
    let digest = normalise_digest(digest)?;
    check_bounds(sig)?;
    match sig {
        ImageSignature::SimpleSigning {
            payload,
            annotations,
        } => verify_simple(payload, annotations, &digest, trust, now),
        ImageSignature::Bundle(b) => verify_bundle_sig(b, &digest, trust, now),
    }
}

/// Verifies each signature in turn and returns the first that verifies; otherwise
/// the most informative refusal (a verified signature with the wrong digest or
/// identity before a broken one; the first on ties). No signatures: `Unsigned`.
pub fn verify_any(
    sigs: &[ImageSignature],
    digest: &str,
    trust: &ImageTrust,
    now: i64,
) -> Result<VerifiedImageSignature, ImageSigError> {
    let mut best: Option<ImageSigError> = None;
    for s in sigs {
        match verify_image_signature(s, digest, trust, now) {
            Ok(v) => return Ok(v),
            Err(e) => {
                if best
                    .as_ref()
                    .is_none_or(|b| e.informativeness() > b.informativeness())
                {
                    best = Some(e);
                }
            }
        }
    }
    Err(best.unwrap_or(ImageSigError::Unsigned))
}

struct Leaf {
    der: Vec<u8>,
    spki_der: Vec<u8>,
}

fn verify_simple(
    payload: &[u8],
    annotations: &BTreeMap<String, String>,
    digest: &str,
    trust: &ImageTrust,
    now: i64,
) -> Result<VerifiedImageSignature, ImageSigError> {
    // 1. The signature over the payload bytes.
    let sig_b64 = annotations
        .get(ANNOTATION_SIGNATURE)
        .ok_or(ImageSigError::MissingSignature)?;
    let sig = B64
        .decode(sig_b64.trim().as_bytes())
        .map_err(|e| ImageSigError::Malformed(format!("signature is not base64: {e}")))?;
    if sig.is_empty() || sig.len() > MAX_SIGNATURE_BYTES {
        return Err(ImageSigError::Malformed(format!(
            "signature of {} bytes",
            sig.len()
        )));
    }
    let mut signer;
    let mut leaf = None;
    // The DER the Rekor entry must name: the key's SPKI, or the leaf certificate.
    let logged_der: Vec<u8>;
    match &trust.mode {
        Mode::Keys(keys) => {
            let k = keys
                .iter()
                .find(|k| k.verify(payload, &sig))
                .ok_or_else(|| {
                    ImageSigError::BadSignature(format!(
                        "no trusted key ({} configured) verifies the signature",
                        keys.len()
                    ))
                })?;
            signer = format!("key:{}", k.fingerprint);
            logged_der = k.spki_der.clone();
        }
        Mode::Keyless(_) => {
            let pem = annotations
                .get(ANNOTATION_CERTIFICATE)
                .ok_or(ImageSigError::MissingCertificate)?;
            let der = pem_blocks(pem.as_bytes(), "CERTIFICATE")
                .map_err(ImageSigError::MalformedCertificate)?
                .into_iter()
                .next()
                .ok_or_else(|| ImageSigError::MalformedCertificate("no certificate".into()))?;
            let cert = x509_cert::Certificate::from_der(&der)
                .map_err(|e| ImageSigError::MalformedCertificate(e.to_string()))?;
            let spki_der = cert
                .tbs_certificate
                .subject_public_key_info
                .to_der()
                .map_err(|e| ImageSigError::MalformedCertificate(e.to_string()))?;
            if !verify_spki(&spki_der, payload, &sig) {
                return Err(ImageSigError::BadSignature(
                    "the certificate's key does not verify the signature".into(),
                ));
            }
            signer = String::new();
            logged_der = der.clone();
            leaf = Some((Leaf { der, spki_der }, cert));
        }
    }

    // 2. The Rekor SET.
    let integrated_time = match annotations.get(ANNOTATION_BUNDLE) {
        None if trust.require_rekor => return Err(ImageSigError::MissingRekorSet),
        None => None,
        Some(_) if trust.rekor_keys.is_empty() => None,
        Some(b) => Some(verify_set(
            b,
            payload,
            &sig,
            &logged_der,
            leaf.as_ref().map(|(l, _)| l),
            trust,
            now,
        )?),
    };

    // 3. Keyless: the chain at the integrated time, then the identity.
    let mut issuer = None;
    let mut source_repository = None;
    let mut source_ref = None;
    if let (Mode::Keyless(k), Some((leaf, cert))) = (&trust.mode, &leaf) {
        let t = integrated_time.ok_or(ImageSigError::MissingRekorSet)?;
        let chain = match annotations.get(ANNOTATION_CHAIN) {
            Some(p) => pem_blocks(p.as_bytes(), "CERTIFICATE").map_err(|e| {
                ImageSigError::MalformedCertificate(format!("{ANNOTATION_CHAIN}: {e}"))
            })?,
            None => Vec::new(),
        };
        verify_chain(&leaf.der, &chain, &k.cas, t)?;
        let claims = cert_claims(cert)?;
        let ci = IdentityClaims {
            issuer: claims.issuer.as_deref(),
            san: Some(&claims.san),
            source_repository_uri: claims.source_repository.as_deref(),
            source_repository_ref: claims.source_ref.as_deref(),
            runner_environment: claims.runner_environment.as_deref(),
            build_signer_uri: claims.build_signer_uri.as_deref(),
            predicate_type: None,
            subject_digests: Vec::new(),
        };
        k.identity.evaluate(&ci)?;
        signer = claims.san;
        issuer = claims.issuer;
        source_repository = claims.source_repository;
        source_ref = claims.source_ref;
    }

    // 4. The payload's content.
    let docker_reference = check_payload(payload, digest, trust)?;
    Ok(VerifiedImageSignature {
        digest: digest.to_owned(),
        docker_reference: Some(docker_reference),
        keyless: trust.is_keyless(),
        signer,
        issuer,
        source_repository,
        source_ref,
        integrated_time,
    })
}

fn check_payload(
    payload: &[u8],
    digest: &str,
    trust: &ImageTrust,
) -> Result<String, ImageSigError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Identity {
        #[serde(rename = "docker-reference")]
        docker_reference: String,
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Image {
        #[serde(rename = "docker-manifest-digest")]
        docker_manifest_digest: String,
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Critical {
        identity: Identity,
        image: Image,
        #[serde(rename = "type")]
        kind: String,
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Payload {
        critical: Critical,
        #[serde(default)]
        #[allow(dead_code)]
        optional: Option<serde_json::Value>,
    }
    let p: Payload = serde_json::from_slice(payload)
        .map_err(|e| ImageSigError::InvalidPayload(format!("not a simple-signing payload: {e}")))?;
    if p.critical.kind != COSIGN_SIGNATURE_TYPE {
        return Err(ImageSigError::InvalidPayload(format!(
            "type {:?}, expected {COSIGN_SIGNATURE_TYPE:?}",
            truncate(&p.critical.kind)
        )));
    }
    if p.critical.image.docker_manifest_digest != digest {
        return Err(ImageSigError::DigestMismatch {
            expected: digest.to_owned(),
            got: truncate(&p.critical.image.docker_manifest_digest),
        });
    }
    let reference = p.critical.identity.docker_reference;
    check_scope(trust, &reference)?;
    Ok(reference)
}

fn check_scope(trust: &ImageTrust, reference: &str) -> Result<(), ImageSigError> {
    if let Some(scope) = &trust.scope {
        if !policy::image::scope_covers(scope, reference_repository(reference)) {
            return Err(ImageSigError::ReferenceNotCovered {
                reference: truncate(reference),
                scope: scope.clone(),
            });
        }
    }
    Ok(())
}

/// Verifies the `dev.sigstore.cosign/bundle` annotation; returns the integrated time.
fn verify_set(
    bundle: &str,
    payload: &[u8],
    sig: &[u8],
    logged_der: &[u8],
    leaf: Option<&Leaf>,
    trust: &ImageTrust,
    now: i64,
) -> Result<i64, ImageSigError> {
    #[derive(serde::Deserialize)]
    struct SetPayload {
        body: serde_json::Value,
        #[serde(rename = "integratedTime")]
        integrated_time: i64,
        #[serde(rename = "logIndex")]
        log_index: i64,
        #[serde(rename = "logID")]
        log_id: String,
    }
    #[derive(serde::Deserialize)]
    struct RekorBundle {
        #[serde(rename = "SignedEntryTimestamp")]
        set: String,
        #[serde(rename = "Payload")]
        payload: SetPayload,
    }
    let bad = |d: String| ImageSigError::InvalidRekorSet(d);
    let rb: RekorBundle = serde_json::from_str(bundle).map_err(|e| bad(e.to_string()))?;
    let p = &rb.payload;
    let body_b64 = p
        .body
        .as_str()
        .ok_or_else(|| bad("Payload.body is not a string".into()))?;
    if p.integrated_time < 0 || p.log_index < 0 {
        return Err(bad("negative integratedTime or logIndex".into()));
    }
    let log_id = hex::decode(&p.log_id)
        .ok()
        .filter(|b| b.len() == 32)
        .ok_or_else(|| {
            bad(format!(
                "logID {:?} is not 32 hex bytes",
                truncate(&p.log_id)
            ))
        })?;
    let key = trust
        .rekor_keys
        .iter()
        .find(|k| k.log_id()[..] == log_id[..])
        .ok_or_else(|| ImageSigError::UnknownRekorLog(hex::encode(&log_id)))?;
    if !key.valid_at(p.integrated_time) {
        return Err(bad(format!(
            "the Rekor key {} is not valid at {}",
            key.fingerprint, p.integrated_time
        )));
    }
    let set = B64
        .decode(rb.set.as_bytes())
        .map_err(|e| bad(format!("SignedEntryTimestamp is not base64: {e}")))?;
    // Rekor signs the canonical JSON of the entry: keys sorted, no whitespace.
    let canonical = format!(
        "{{\"body\":{},\"integratedTime\":{},\"logID\":{},\"logIndex\":{}}}",
        serde_json::Value::String(body_b64.to_owned()),
        p.integrated_time,
        serde_json::Value::String(p.log_id.clone()),
        p.log_index
    );
    if !key.verify(canonical.as_bytes(), &set) {
        return Err(bad("the SET does not verify with the log's key".into()));
    }
    if p.integrated_time > now {
        return Err(ImageSigError::SignedAfterNow {
            signed_at: p.integrated_time,
            now,
        });
    }
    check_rekor_body(body_b64, payload, sig, logged_der, leaf)?;
    Ok(p.integrated_time)
}

/// The entry body must be `hashedrekord` 0.0.1 for sha256(payload), this signature
/// and this key (or certificate).
fn check_rekor_body(
    body_b64: &str,
    payload: &[u8],
    sig: &[u8],
    logged_der: &[u8],
    leaf: Option<&Leaf>,
) -> Result<(), ImageSigError> {
    let bad = |d: &str| ImageSigError::RekorEntryMismatch(d.to_owned());
    let body = B64
        .decode(body_b64.as_bytes())
        .map_err(|_| bad("body is not base64"))?;
    let v: serde_json::Value =
        serde_json::from_slice(&body).map_err(|_| bad("body is not JSON"))?;
    let kind = v["kind"].as_str().unwrap_or_default();
    let api = v["apiVersion"].as_str().unwrap_or_default();
    if kind != "hashedrekord" || api != "0.0.1" {
        return Err(ImageSigError::RekorEntryMismatch(format!(
            "entry kind {:?} {:?}, expected hashedrekord 0.0.1",
            truncate(kind),
            truncate(api)
        )));
    }
    let spec = &v["spec"];
    if spec["data"]["hash"]["algorithm"].as_str() != Some("sha256") {
        return Err(bad("entry hash is not sha256"));
    }
    let want = hex::encode(Sha256::digest(payload));
    if spec["data"]["hash"]["value"]
        .as_str()
        .map(str::to_ascii_lowercase)
        .as_deref()
        != Some(want.as_str())
    {
        return Err(bad("entry hash is not sha256 of the payload"));
    }
    let logged_sig = spec["signature"]["content"]
        .as_str()
        .and_then(|s| B64.decode(s.as_bytes()).ok())
        .ok_or_else(|| bad("entry has no base64 signature"))?;
    if logged_sig != sig {
        return Err(bad("entry records another signature"));
    }
    let logged_pem = spec["signature"]["publicKey"]["content"]
        .as_str()
        .and_then(|s| B64.decode(s.as_bytes()).ok())
        .ok_or_else(|| bad("entry has no base64 public key"))?;
    let label = if leaf.is_some() {
        "CERTIFICATE"
    } else {
        "PUBLIC KEY"
    };
    // A parse failure is "not the same signer" here, so the bare-key form below is
    // still tried.
    let ders = pem_blocks(&logged_pem, label).unwrap_or_default();
    let same = ders.first().is_some_and(|d| d == logged_der)
        // A keyless signature logged with the leaf's bare key is the same signer.
        || leaf.is_some_and(|l| {
            pem_blocks(&logged_pem, "PUBLIC KEY")
                .ok()
                .and_then(|d| d.into_iter().next())
                .is_some_and(|d| d == l.spki_der)
        });
    if !same {
        return Err(bad("entry records another key or certificate"));
    }
    Ok(())
}

/// In-toto predicate types a bundle may carry to count as an image signature.
pub const IMAGE_PREDICATE_TYPES: &[&str] = &[
    "https://sigstore.dev/cosign/sign/v1",
    "https://slsa.dev/provenance/v1",
];

fn verify_chain(
    leaf_der: &[u8],
    chain: &[Vec<u8>],
    cas: &[FulcioCa],
    at: i64,
) -> Result<(), ImageSigError> {
    let leaf = CertificateDer::from(leaf_der);
    let ee = webpki::EndEntityCert::try_from(&leaf)
        .map_err(|e| ImageSigError::MalformedCertificate(format!("{e:?}")))?;
    let secs = u64::try_from(at)
        .map_err(|_| ImageSigError::InvalidRekorSet(format!("integrated time {at} before 1970")))?;
    let time = UnixTime::since_unix_epoch(Duration::from_secs(secs));
    let mut last: Option<ImageSigError> = None;
    let mut any_ca = false;
    for ca in cas {
        if let Some((start, end)) = ca.valid_for {
            if at < start || end.is_some_and(|e| at > e) {
                continue;
            }
        }
        any_ca = true;
        let anchor_cd = CertificateDer::from(ca.anchor_der.as_slice());
        let Ok(anchor) = webpki::anchor_from_trusted_cert(&anchor_cd) else {
            continue;
        };
        let intermediates: Vec<CertificateDer<'_>> = ca
            .intermediates
            .iter()
            .chain(chain.iter())
            .filter(|d| d.as_slice() != leaf_der)
            .map(|d| CertificateDer::from(d.as_slice()))
            .collect();
        match ee.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &[anchor],
            &intermediates,
            time,
            webpki::KeyUsage::required(EKU_CODE_SIGNING),
            None,
            None,
        ) {
            Ok(_) => return Ok(()),
            Err(
                e @ (webpki::Error::CertExpired { .. } | webpki::Error::CertNotValidYet { .. }),
            ) => {
                last = Some(ImageSigError::CertificateNotValidAtSigningTime {
                    signed_at: at,
                    detail: format!("{e:?}"),
                });
            }
            Err(e) => {
                if last.is_none() {
                    last = Some(ImageSigError::CertificateChain(format!("{e:?}")));
                }
            }
        }
    }
    if !any_ca {
        return Err(ImageSigError::CertificateChain(format!(
            "no trusted Fulcio CA is valid at the signing time {at}"
        )));
    }
    Err(last.unwrap_or_else(|| ImageSigError::CertificateChain("no usable trust anchor".into())))
}

struct CertClaims {
    san: String,
    issuer: Option<String>,
    source_repository: Option<String>,
    source_ref: Option<String>,
    runner_environment: Option<String>,
    build_signer_uri: Option<String>,
}

/// The SAN (exactly one email or URI) and the Fulcio extensions of a leaf.
fn cert_claims(cert: &x509_cert::Certificate) -> Result<CertClaims, ImageSigError> {
    use x509_cert::ext::pkix::name::GeneralName;
    use x509_cert::ext::pkix::SubjectAltName;
    let malformed = |d: String| ImageSigError::MalformedCertificate(d);
    let san = match cert.tbs_certificate.get::<SubjectAltName>() {
        Ok(Some((_, san))) => san,
        Ok(None) => return Err(malformed("no subjectAltName".into())),
        Err(e) => return Err(malformed(format!("subjectAltName: {e}"))),
    };
    let names: Vec<String> = san
        .0
        .iter()
        .filter_map(|g| match g {
            GeneralName::Rfc822Name(s) => Some(s.to_string()),
            GeneralName::UniformResourceIdentifier(s) => Some(s.to_string()),
            _ => None,
        })
        .collect();
    let [san] = names.as_slice() else {
        return Err(malformed(format!(
            "{} email/URI SANs (exactly one required)",
            names.len()
        )));
    };
    let mut ext = BTreeMap::<u32, Vec<u8>>::new();
    for e in cert.tbs_certificate.extensions.iter().flatten() {
        let arcs: Vec<u32> = e.extn_id.arcs().collect();
        if let [1, 3, 6, 1, 4, 1, 57264, 1, n] = arcs.as_slice() {
            if ext.insert(*n, e.extn_value.as_bytes().to_vec()).is_some() {
                return Err(malformed(format!("duplicate Fulcio extension .{n}")));
            }
        }
    }
    let utf8 = |n: u32| -> Result<Option<String>, ImageSigError> {
        match ext.get(&n) {
            None => Ok(None),
            Some(b) => der::asn1::Utf8StringRef::from_der(b)
                .map(|s| Some(s.as_str().to_owned()))
                .map_err(|e| malformed(format!("Fulcio extension .{n}: {e}"))),
        }
    };
    let issuer = match utf8(8)? {
        Some(i) => Some(i),
        None => match ext.get(&1) {
            Some(b) => Some(
                String::from_utf8(b.clone())
                    .map_err(|_| malformed("Fulcio issuer (.1) is not UTF-8".into()))?,
            ),
            None => None,
        },
    };
    Ok(CertClaims {
        san: san.clone(),
        issuer,
        source_repository: utf8(12)?,
        source_ref: utf8(14)?,
        runner_environment: utf8(11)?,
        build_signer_uri: utf8(9)?,
    })
}

fn verify_bundle_sig(
    bundle: &[u8],
    digest: &str,
    trust: &ImageTrust,
    now: i64,
) -> Result<VerifiedImageSignature, ImageSigError> {
    let Mode::Keyless(k) = &trust.mode else {
        return Err(ImageSigError::Unsupported(
            "Sigstore bundles are accepted for keyless trust only".into(),
        ));
    };
    let Some(root) = &k.bundle_root else {
        return Err(ImageSigError::Unsupported(
            "Sigstore bundles need a trusted_root.json (a Fulcio CA file is not enough)".into(),
        ));
    };
    let now_u =
        u64::try_from(now).map_err(|_| ImageSigError::SignedAfterNow { signed_at: 0, now })?;
    let d = ArtifactDigest::parse(digest)?;
    let v = crate::verify_bundle(bundle, Artifact::Digest(&d), root, &k.identity, now_u)?;
    let Some(st) = v.statement() else {
        return Err(ImageSigError::Unsupported(
            "message-signature bundles are not accepted for images (a DSSE statement naming the image digest is)"
                .into(),
        ));
    };
    // Only statements that say "this image is ours": cosign's signature predicate, or
    // build provenance. An SBOM or a vulnerability scan the same workflow wrote about
    // an image (say, a base image it scanned) is not a signature of it.
    if !IMAGE_PREDICATE_TYPES.contains(&st.predicate_type.as_str()) {
        return Err(ImageSigError::Unsupported(format!(
            "predicate type {:?} is not an image signature (accepted: {})",
            truncate(&st.predicate_type),
            IMAGE_PREDICATE_TYPES.join(", ")
        )));
    }
    let hex_part = digest.trim_start_matches("sha256:");
    let subject = st
        .subjects
        .iter()
        .find(|s| s.digest.get("sha256").map(String::as_str) == Some(hex_part))
        .ok_or_else(|| ImageSigError::DigestMismatch {
            expected: digest.to_owned(),
            got: st
                .subjects
                .first()
                .and_then(|s| s.digest.get("sha256"))
                .map(|h| format!("sha256:{}", truncate(h)))
                .unwrap_or_else(|| "(no sha256 subject)".into()),
        })?;
    check_scope(trust, &subject.name)?;
    Ok(VerifiedImageSignature {
        digest: digest.to_owned(),
        docker_reference: (!subject.name.is_empty()).then(|| subject.name.clone()),
        keyless: true,
        signer: v.san().to_owned(),
        issuer: Some(v.issuer().to_owned()),
        source_repository: v.fulcio().source_repository_uri.clone(),
        source_ref: v.fulcio().source_repository_ref.clone(),
        integrated_time: Some(v.signed_at()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_and_results_cross_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<ImageTrust>();
        send_sync::<VerifiedImageSignature>();
        send_sync::<ImageSigError>();
    }

    #[test]
    fn references_and_scopes() {
        assert_eq!(reference_repository("a.b:5000/x/y:tag"), "a.b:5000/x/y");
        assert_eq!(reference_repository("a.b:5000/x/y"), "a.b:5000/x/y");
        assert_eq!(
            reference_repository("a.b:5000/x/y@sha256:00"),
            "a.b:5000/x/y"
        );
        assert_eq!(
            reference_repository("a.b:5000/x/y:t@sha256:00"),
            "a.b:5000/x/y"
        );
        assert!(policy::image::scope_covers("a.b:5000/x", "a.b:5000/x/y"));
        assert!(policy::image::scope_covers("a.b:5000/x", "a.b:5000/x"));
        assert!(!policy::image::scope_covers("a.b:5000/x", "a.b:5000/xy"));
        assert!(!policy::image::scope_covers("a.b:5000/x", "a.b:5000"));
    }

    #[test]
    fn digests_are_strict() {
        let h = "AB".repeat(32);
        assert_eq!(
            normalise_digest(&format!("sha256:{h}")).unwrap(),
            format!("sha256:{}", h.to_ascii_lowercase())
        );
        for bad in [
            "",
            "sha256:",
            "sha512:00",
            "sha256:zz",
            &format!("sha256:{h}0"),
        ] {
            assert_eq!(normalise_digest(bad).unwrap_err().kind(), "InvalidDigest");
        }
    }

    #[test]
    fn pem_blocks_are_bounded() {
        assert!(pem_blocks(b"", "CERTIFICATE").is_err());
        assert!(pem_blocks(b"-----BEGIN CERTIFICATE-----\nAAAA", "CERTIFICATE").is_err());
        let one = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert_eq!(
            pem_blocks(one.as_bytes(), "CERTIFICATE").unwrap(),
            vec![vec![0, 0, 0]]
        );
        let many = one.repeat(MAX_CHAIN_CERTS + 1);
        assert!(pem_blocks(many.as_bytes(), "CERTIFICATE").is_err());
    }
}
