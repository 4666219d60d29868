//! Sigstore bundle verification for Provenant, offline and with an explicit time.
//!
//! # Trust boundary
//!
//! Everything this crate reads is untrusted: the bundle bytes (from GitHub's
//! attestations API, a registry or a file), and the artifact or digest it is said to
//! sign. What is trusted is given by the caller: a [`TrustRoot`] (a
//! `trusted_root.json` file the operator chose, or GitHub's embedded instance root,
//! only when explicitly asked for), an [`IdentityPolicy`] (who may have signed), and
//! `now`. A [`VerifiedBundle`] can only be made by [`verify_bundle`], and only when
//! all of the following hold:
//!
//! - the bundle is at most [`MAX_BUNDLE_BYTES`], JSON, media type v0.2 or v0.3
//!   (v0.1 is refused as unsupported, as `gh` does), keyless (a Fulcio certificate);
//! - the certificate chains to a Fulcio CA of the root, with the code-signing EKU,
//!   valid at **every** verified signing time, and (public-good roots) its SCT
//!   verifies against a CT log of the root;
//! - a signing time is established from Rekor (SET over the integrated time) and/or
//!   RFC 3161 timestamps from TSAs of the root, and none lies after `now`;
//! - with a file root, at least one Rekor entry, each from a log of the root, with a
//!   Merkle inclusion proof up to a checkpoint signed by that log, its SET if present,
//!   and a body that describes this very signature, key and artifact;
//! - the DSSE signature over the PAE (or the message signature over the artifact)
//!   verifies with the certificate's key, and the artifact matches (an in-toto
//!   subject digest, or the message digest);
//! - the certificate's issuer, SAN and Fulcio extensions, and the statement's
//!   predicate type and subjects, satisfy the identity policy.
//!
//! The cryptographic steps are `sigstore-verify` 0.15.1's (sigstore/sigstore-rust),
//! run with a ring/RustCrypto backend ([`provider`](self)). This crate adds what it
//! leaves to callers or does not take as a parameter; each addition is commented
//! where it happens and has a test: bounded input, the media-type policy, `now`,
//! the log-ID check, the requirement of a transparency log entry, the in-toto
//! statement's type, and the Fulcio-extension identity policy.
#![forbid(unsafe_code)]

pub mod cosign;
pub mod image;
pub mod oci;
mod provider;
pub mod verifier;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

pub use cosign::{
    encode_signature_file, parse_signature_file, verify_any, verify_image_signature, ImageSigError,
    ImageTrust, ImageTrustError, ImageTrustParts, KeylessIdentity, VerifiedImageSignature,
};
pub use image::ImageSignature;
pub use policy::identity::{
    IdentityClaims, IdentityField, IdentityMismatch, IdentityPolicy, IdentityPolicyError,
    IdentityViolation,
};
use sigstore_verify::trust_root::{SigstoreInstance, TrustedRoot};
use sigstore_verify::types::{
    ArtifactDigest as SsArtifactDigest, Bundle, DigestBytes, HashAlgorithm, SignatureContent,
};
use sigstore_verify::{VerificationPolicy, Verifier};

/// Largest bundle accepted. Real GitHub attestation bundles are 5–20 KiB; the SLSA
/// predicate is the variable part and stays far below this. The bound is checked
/// before any parsing, so a hostile server cannot make us parse megabytes of JSON.
pub const MAX_BUNDLE_BYTES: usize = 2 * 1024 * 1024;
/// Largest `trusted_root.json` accepted. Sigstore's public-good root is ~10 KiB with
/// all historical keys; a root 100 times that size is not a real one.
pub const MAX_TRUSTED_ROOT_BYTES: usize = 1024 * 1024;
/// Most subjects reported from one in-toto statement. `actions/attest` writes one
/// per artifact; a release with thousands is not something we attest.
pub const MAX_SUBJECTS: usize = 1024;

/// Bundle v0.1 media type (refused as unsupported).
pub const MEDIA_TYPE_V0_1: &str = "application/vnd.dev.sigstore.bundle+json;version=0.1";
/// Bundle v0.2 media type.
pub const MEDIA_TYPE_V0_2: &str = "application/vnd.dev.sigstore.bundle+json;version=0.2";
/// Bundle v0.3 media type.
pub const MEDIA_TYPE_V0_3: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// The alternative spelling of v0.3 that sigstore-go and sigstore-rust also accept.
const MEDIA_TYPE_V0_3_ALT: &str = "application/vnd.dev.sigstore.bundle+json;version=0.3";
/// The DSSE payload type of in-toto statements.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// Accepted in-toto statement `_type` values.
const IN_TOTO_STATEMENT_TYPES: [&str; 2] = [
    "https://in-toto.io/Statement/v1",
    "https://in-toto.io/Statement/v0.1",
];

/// Why a trusted root could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrustRootError {
    /// The file is larger than [`MAX_TRUSTED_ROOT_BYTES`].
    #[error("trusted root is larger than {max} bytes")]
    TooLarge {
        /// The bound.
        max: usize,
    },
    /// The file could not be read.
    #[error("cannot read trusted root: {0}")]
    Io(String),
    /// The JSON is not a usable `trusted_root.json`.
    #[error("invalid trusted root: {0}")]
    Invalid(String),
}

impl TrustRootError {
    /// Stable machine-readable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "TrustRootTooLarge",
            Self::Io(_) => "TrustRootUnreadable",
            Self::Invalid(_) => "InvalidTrustRoot",
        }
    }
}

/// Why a bundle was refused. `kind()` is stable (the CLI prints it).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The bundle is larger than [`MAX_BUNDLE_BYTES`].
    #[error("bundle is larger than {max} bytes")]
    BundleTooLarge {
        /// The bound.
        max: usize,
    },
    /// Not JSON, or not the shape of a Sigstore bundle.
    #[error("malformed bundle: {0}")]
    MalformedBundle(String),
    /// No `mediaType` (such bundles predate v0.1).
    #[error("bundle has no mediaType")]
    MissingMediaType,
    /// A media type that is not a Sigstore bundle's.
    #[error("unknown bundle media type {0:?}")]
    UnknownMediaType(String),
    /// Bundle v0.1: refused as unsupported by default, as `gh` does.
    #[error("unsupported bundle version: {0} (v0.2 or v0.3 required)")]
    UnsupportedBundleVersion(String),
    /// Verification material or signing-time evidence is missing or empty.
    #[error("missing verification material: {0}")]
    MissingVerificationMaterial(String),
    /// A public-key bundle where a keyless (Fulcio) one is required.
    #[error("bundle is not keyless: a Fulcio certificate is required")]
    NotKeyless,
    /// Well formed, but content this verifier does not support.
    #[error("unsupported bundle: {0}")]
    UnsupportedBundle(String),
    /// The artifact input cannot be used (e.g. a digest for a scheme that needs bytes).
    #[error("unsupported artifact: {0}")]
    UnsupportedArtifact(String),
    /// The artifact digest string is not `sha256:HEX` or `sha512:HEX`.
    #[error("invalid artifact digest {0:?}: expected sha256:HEX or sha512:HEX")]
    InvalidDigest(String),
    /// A message-signature bundle was verified without an artifact.
    #[error("this bundle signs an artifact directly; give the artifact or its digest")]
    ArtifactRequired,
    /// The DSSE or message signature does not verify with the certificate's key.
    #[error("invalid signature: {0}")]
    InvalidSignature(String),
    /// The bundle does not describe the given artifact.
    #[error("artifact mismatch: {0}")]
    ArtifactMismatch(String),
    /// The DSSE payload is not a valid in-toto statement.
    #[error("invalid in-toto statement: {0}")]
    InvalidStatement(String),
    /// The certificate cannot be parsed.
    #[error("malformed certificate: {0}")]
    MalformedCertificate(String),
    /// The certificate does not chain to a Fulcio CA of the trusted root.
    #[error("certificate chain invalid: {0}")]
    CertificateChain(String),
    /// The certificate was not valid at a verified signing time.
    #[error("certificate not valid at the signing time: {0}")]
    CertificateNotValidAtSigningTime(String),
    /// The certificate's SCT is missing or does not verify.
    #[error("invalid signed certificate timestamp: {0}")]
    Sct(String),
    /// A log entry names a log that is not in the trusted root.
    #[error("unknown transparency log {0}")]
    UnknownLog(String),
    /// The Merkle inclusion proof does not reach the root.
    #[error("invalid inclusion proof: {0}")]
    InclusionProof(String),
    /// The checkpoint is malformed, does not match the proof, or is not signed by the log.
    #[error("invalid checkpoint: {0}")]
    Checkpoint(String),
    /// The signed entry timestamp (inclusion promise) does not verify.
    #[error("invalid signed entry timestamp: {0}")]
    SignedEntryTimestamp(String),
    /// The log entry body does not describe this signature, key or artifact.
    #[error("log entry does not match the bundle: {0}")]
    LogEntryMismatch(String),
    /// The log entry's integrated time is outside the certificate's validity.
    #[error("invalid integrated time: {0}")]
    IntegratedTime(String),
    /// The log entry body cannot be parsed or is of an unsupported kind.
    #[error("malformed log entry: {0}")]
    MalformedLogEntry(String),
    /// The root requires a transparency log entry and the bundle has none.
    #[error("no transparency log entry: this trusted root requires Rekor inclusion")]
    NoTransparencyLogEntry,
    /// An RFC 3161 timestamp does not verify against a TSA of the root.
    #[error("invalid RFC 3161 timestamp: {0}")]
    Timestamp(String),
    /// No verified signing time (neither a SET-backed integrated time nor a TSA token).
    #[error("no verified signing time: {0}")]
    NoVerifiedTime(String),
    /// A verified signing time lies after `now`.
    #[error("signed at {signed_at} (unix), after the verification time {now}")]
    SignedAfterNow {
        /// The verified signing time, unix seconds.
        signed_at: i64,
        /// The verification time given, unix seconds.
        now: u64,
    },
    /// The trusted root could not be used.
    #[error("trusted root unusable: {0}")]
    TrustRoot(String),
    /// The verified claims do not meet the identity policy.
    #[error(transparent)]
    Identity(#[from] IdentityViolation),
    /// Anything else `sigstore-verify` reported (fails closed).
    #[error("verification failed: {0}")]
    Other(String),
}

impl VerifyError {
    /// Stable machine-readable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::BundleTooLarge { .. } => "BundleTooLarge",
            Self::MalformedBundle(_) => "MalformedBundle",
            Self::MissingMediaType => "MissingMediaType",
            Self::UnknownMediaType(_) => "UnknownMediaType",
            Self::UnsupportedBundleVersion(_) => "UnsupportedBundleVersion",
            Self::MissingVerificationMaterial(_) => "MissingVerificationMaterial",
            Self::NotKeyless => "NotKeyless",
            Self::UnsupportedBundle(_) => "UnsupportedBundle",
            Self::UnsupportedArtifact(_) => "UnsupportedArtifact",
            Self::InvalidDigest(_) => "InvalidDigest",
            Self::ArtifactRequired => "ArtifactRequired",
            Self::InvalidSignature(_) => "InvalidSignature",
            Self::ArtifactMismatch(_) => "ArtifactMismatch",
            Self::InvalidStatement(_) => "InvalidStatement",
            Self::MalformedCertificate(_) => "MalformedCertificate",
            Self::CertificateChain(_) => "CertificateChain",
            Self::CertificateNotValidAtSigningTime(_) => "CertificateNotValidAtSigningTime",
            Self::Sct(_) => "InvalidSct",
            Self::UnknownLog(_) => "UnknownLog",
            Self::InclusionProof(_) => "InvalidInclusionProof",
            Self::Checkpoint(_) => "InvalidCheckpoint",
            Self::SignedEntryTimestamp(_) => "InvalidSignedEntryTimestamp",
            Self::LogEntryMismatch(_) => "LogEntryMismatch",
            Self::IntegratedTime(_) => "InvalidIntegratedTime",
            Self::MalformedLogEntry(_) => "MalformedLogEntry",
            Self::NoTransparencyLogEntry => "NoTransparencyLogEntry",
            Self::Timestamp(_) => "InvalidTimestamp",
            Self::NoVerifiedTime(_) => "NoVerifiedTime",
            Self::SignedAfterNow { .. } => "SignedAfterNow",
            Self::TrustRoot(_) => "InvalidTrustRoot",
            Self::Identity(_) => "IdentityMismatch",
            Self::Other(_) => "VerificationFailed",
        }
    }
}

fn map_sigstore_error(e: sigstore_verify::Error) -> VerifyError {
    use sigstore_verify::TransparencyLogError as L;
    use sigstore_verify::{CertificateError as C, Error as E, TimestampError as T};
    let s = e.to_string();
    match e {
        E::SignatureInvalid(d) => VerifyError::InvalidSignature(d),
        E::ArtifactMismatch(d) => VerifyError::ArtifactMismatch(d),
        E::UnsupportedArtifact(d) => VerifyError::UnsupportedArtifact(d),
        E::Certificate(c) => match c {
            C::Malformed(d) => VerifyError::MalformedCertificate(d),
            C::NotYetValid { .. } | C::Expired { .. } => {
                VerifyError::CertificateNotValidAtSigningTime(s)
            }
            C::Sct(d) => VerifyError::Sct(d),
            // webpki checks the leaf's validity while building the chain at the
            // signing time, so an out-of-window certificate usually arrives here as
            // a chain error naming webpki's `CertNotValidYet`/`CertExpired`.
            C::ChainInvalid(d) if d.contains("CertNotValidYet") || d.contains("CertExpired") => {
                VerifyError::CertificateNotValidAtSigningTime(d)
            }
            _ => VerifyError::CertificateChain(s),
        },
        E::TransparencyLog(l) => match l {
            L::UnknownLog { log_id } => VerifyError::UnknownLog(log_id),
            L::InclusionProof(d) => VerifyError::InclusionProof(d),
            L::Checkpoint(d) => VerifyError::Checkpoint(d),
            L::InclusionPromise(d) => VerifyError::SignedEntryTimestamp(d),
            L::EntryMismatch(d) => VerifyError::LogEntryMismatch(d),
            L::IntegratedTime(d) => VerifyError::IntegratedTime(d),
            L::MalformedEntry(d) => VerifyError::MalformedLogEntry(d),
            _ => VerifyError::Other(s),
        },
        E::Timestamp(t) => match t {
            T::NoVerifiedTimestamp(d) => VerifyError::NoVerifiedTime(d),
            _ => VerifyError::Timestamp(s),
        },
        E::Bundle(b) => {
            use sigstore_verify::bundle::Error as B;
            match b {
                B::CheckpointRootMismatch => VerifyError::Checkpoint(s),
                B::LogIndexOutOfRange { .. } => VerifyError::InclusionProof(s),
                B::UnsupportedMediaType(m) => VerifyError::UnsupportedBundleVersion(m.to_string()),
                _ => VerifyError::MissingVerificationMaterial(s),
            }
        }
        E::InvalidBundle(d) if d.contains("no signing certificate") => {
            VerifyError::MissingVerificationMaterial(d)
        }
        E::InvalidBundle(d) => VerifyError::MalformedBundle(d),
        E::UnsupportedBundle(d) => VerifyError::UnsupportedBundle(d),
        E::InvalidTrustRoot(_) | E::TrustRoot(_) | E::TrustedCertificate(_) => {
            VerifyError::TrustRoot(s)
        }
        E::Types(_) => VerifyError::MalformedBundle(s),
        _ => VerifyError::Other(s),
    }
}

/// Which Sigstore instance a root belongs to; decides what the bundle must carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Instance {
    /// A `trusted_root.json` file (public-good or another Rekor-backed instance):
    /// certificate chain, SCT and at least one Rekor entry with an inclusion proof.
    File,
    /// GitHub's artifact-attestation instance (private repositories): it has no
    /// Rekor and no CT log, so the signing time comes from its RFC 3161 TSA and the
    /// SCT check is skipped, exactly as `gh` verifies it.
    GitHub,
}

/// Trusted verification material: Fulcio CAs, Rekor and CT log keys, TSAs.
pub struct TrustRoot {
    verifier: Verifier,
    instance: Instance,
    tlog_ids: Vec<Vec<u8>>,
}

impl std::fmt::Debug for TrustRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustRoot")
            .field("instance", &self.instance)
            .field("tlogs", &self.tlog_ids.len())
            .finish()
    }
}

impl TrustRoot {
    /// Parse a `trusted_root.json` (at most [`MAX_TRUSTED_ROOT_BYTES`]).
    pub fn from_json(bytes: &[u8]) -> Result<Self, TrustRootError> {
        if bytes.len() > MAX_TRUSTED_ROOT_BYTES {
            return Err(TrustRootError::TooLarge {
                max: MAX_TRUSTED_ROOT_BYTES,
            });
        }
        let text =
            std::str::from_utf8(bytes).map_err(|_| TrustRootError::Invalid("not UTF-8".into()))?;
        let root =
            TrustedRoot::from_json(text).map_err(|e| TrustRootError::Invalid(e.to_string()))?;
        Self::new(root, Instance::File)
    }

    /// Read and parse a `trusted_root.json` file, bounded.
    pub fn from_file(path: &Path) -> Result<Self, TrustRootError> {
        let bytes = read_bounded(path, MAX_TRUSTED_ROOT_BYTES).map_err(|e| match e {
            ReadBoundedError::TooLarge => TrustRootError::TooLarge {
                max: MAX_TRUSTED_ROOT_BYTES,
            },
            ReadBoundedError::Io(e) => TrustRootError::Io(format!("{}: {e}", path.display())),
        })?;
        Self::from_json(&bytes)
    }

    /// GitHub's artifact-attestation instance root, as embedded in `sigstore-verify`
    /// 0.15.1. An explicit opt-in: only a policy that accepts GitHub's private
    /// instance should call this.
    pub fn github_instance() -> Result<Self, TrustRootError> {
        let root = TrustedRoot::from_embedded(SigstoreInstance::GitHub)
            .map_err(|e| TrustRootError::Invalid(e.to_string()))?;
        Self::new(root, Instance::GitHub)
    }

    fn new(root: TrustedRoot, instance: Instance) -> Result<Self, TrustRootError> {
        provider::ensure_installed();
        let tlog_ids = root
            .tlogs
            .iter()
            .map(|t| t.log_id.key_id.as_bytes().to_vec())
            .collect();
        let verifier = Verifier::new(&root).map_err(|e| TrustRootError::Invalid(e.to_string()))?;
        Ok(Self {
            verifier,
            instance,
            tlog_ids,
        })
    }

    /// Which instance this root is.
    pub fn instance(&self) -> Instance {
        self.instance
    }
}

#[derive(Debug)]
enum ReadBoundedError {
    TooLarge,
    Io(std::io::Error),
}

fn read_bounded(path: &Path, max: usize) -> Result<Vec<u8>, ReadBoundedError> {
    let file = std::fs::File::open(path).map_err(ReadBoundedError::Io)?;
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    let mut buf = Vec::new();
    file.take(limit)
        .read_to_end(&mut buf)
        .map_err(ReadBoundedError::Io)?;
    if buf.len() > max {
        return Err(ReadBoundedError::TooLarge);
    }
    Ok(buf)
}

/// Read a bundle file (one bundle or JSON Lines), bounded by `max` bytes.
pub fn read_bundle_file(path: &Path, max: usize) -> Result<Vec<u8>, VerifyError> {
    read_bounded(path, max).map_err(|e| match e {
        ReadBoundedError::TooLarge => VerifyError::BundleTooLarge { max },
        ReadBoundedError::Io(e) => {
            VerifyError::MalformedBundle(format!("cannot read {}: {e}", path.display()))
        }
    })
}

/// A digest algorithm for artifacts and subjects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DigestAlgorithm {
    /// SHA-256.
    Sha256,
    /// SHA-512.
    Sha512,
}

impl DigestAlgorithm {
    /// `sha256` or `sha512`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sha256 => "sha256",
            Self::Sha512 => "sha512",
        }
    }
    fn len(self) -> usize {
        match self {
            Self::Sha256 => 32,
            Self::Sha512 => 64,
        }
    }
}

/// An artifact digest, `sha256:HEX` or `sha512:HEX`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactDigest {
    algorithm: DigestAlgorithm,
    bytes: Vec<u8>,
}

impl ArtifactDigest {
    /// Parse `sha256:HEX` or `sha512:HEX`.
    pub fn parse(s: &str) -> Result<Self, VerifyError> {
        let bad = || VerifyError::InvalidDigest(s.chars().take(200).collect());
        let (alg, hex_part) = s.split_once(':').ok_or_else(bad)?;
        let algorithm = match alg {
            "sha256" => DigestAlgorithm::Sha256,
            "sha512" => DigestAlgorithm::Sha512,
            _ => return Err(bad()),
        };
        let bytes = hex::decode(hex_part).map_err(|_| bad())?;
        if bytes.len() != algorithm.len() {
            return Err(bad());
        }
        Ok(Self { algorithm, bytes })
    }

    /// A digest from its algorithm and raw bytes.
    pub fn new(algorithm: DigestAlgorithm, bytes: &[u8]) -> Result<Self, VerifyError> {
        if bytes.len() != algorithm.len() {
            return Err(VerifyError::InvalidDigest(format!(
                "{}:{}",
                algorithm.as_str(),
                hex::encode(bytes)
            )));
        }
        Ok(Self {
            algorithm,
            bytes: bytes.to_vec(),
        })
    }

    /// The algorithm.
    pub fn algorithm(&self) -> DigestAlgorithm {
        self.algorithm
    }

    /// The raw digest.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    fn to_sigstore(&self) -> Result<SsArtifactDigest, VerifyError> {
        let alg = match self.algorithm {
            DigestAlgorithm::Sha256 => HashAlgorithm::Sha2256,
            DigestAlgorithm::Sha512 => HashAlgorithm::Sha2512,
        };
        SsArtifactDigest::new(alg, DigestBytes::new(self.bytes.clone()))
            .map_err(|e| VerifyError::InvalidDigest(e.to_string()))
    }
}

impl std::fmt::Display for ArtifactDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}",
            self.algorithm.as_str(),
            hex::encode(&self.bytes)
        )
    }
}

/// What the bundle must be about.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Artifact<'a> {
    /// The artifact's bytes.
    Bytes(&'a [u8]),
    /// The artifact's digest.
    Digest(&'a ArtifactDigest),
    /// No external artifact: an attestation (DSSE in-toto statement) is verified on
    /// its own and its subjects are reported; bind it to something through the
    /// policy's subject digest, or by reading the predicate (as `/register` does with
    /// the MRTD). A message-signature bundle refuses this with `ArtifactRequired`.
    StatementSubjects,
}

/// Where the signing time came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimeSource {
    /// A Rekor v1 integrated time, authenticated by its signed entry timestamp.
    Rekor,
    /// An RFC 3161 timestamp from a TSA of the trusted root.
    Rfc3161,
}

impl TimeSource {
    /// `rekor` or `rfc3161`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rekor => "rekor",
            Self::Rfc3161 => "rfc3161",
        }
    }
}

/// The Fulcio certificate extensions (OID arc `1.3.6.1.4.1.57264.1`) of a verified
/// certificate. Absent extensions are `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FulcioClaims {
    /// `.9` build signer URI (the signer workflow, with its `@ref`).
    pub build_signer_uri: Option<String>,
    /// `.10` build signer digest.
    pub build_signer_digest: Option<String>,
    /// `.11` runner environment.
    pub runner_environment: Option<String>,
    /// `.12` source repository URI.
    pub source_repository_uri: Option<String>,
    /// `.13` source repository digest (commit).
    pub source_repository_digest: Option<String>,
    /// `.14` source repository ref.
    pub source_repository_ref: Option<String>,
    /// `.15` source repository identifier.
    pub source_repository_identifier: Option<String>,
    /// `.16` source repository owner URI.
    pub source_repository_owner_uri: Option<String>,
    /// `.18` build config URI (the calling workflow).
    pub build_config_uri: Option<String>,
    /// `.20` build trigger.
    pub build_trigger: Option<String>,
    /// `.21` run invocation URI.
    pub run_invocation_uri: Option<String>,
}

/// One in-toto subject.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Subject {
    /// Its name (may be empty).
    pub name: String,
    /// Algorithm → lowercase hex.
    pub digest: BTreeMap<String, String>,
}

/// The in-toto statement of a DSSE bundle.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Statement {
    /// `_type`.
    pub statement_type: String,
    /// `predicateType`.
    pub predicate_type: String,
    /// `predicate` (an empty object when omitted).
    pub predicate: serde_json::Value,
    /// `subject`.
    pub subjects: Vec<Subject>,
}

/// A bundle that verified under a trusted root and an identity policy. Only
/// [`verify_bundle`] constructs one.
#[derive(Debug, Clone)]
pub struct VerifiedBundle {
    media_type: String,
    san: String,
    issuer: String,
    fulcio: FulcioClaims,
    signed_at: i64,
    time_source: TimeSource,
    certificate_not_before: i64,
    certificate_not_after: i64,
    statement: Option<Statement>,
}

impl VerifiedBundle {
    /// The bundle's media type.
    pub fn media_type(&self) -> &str {
        &self.media_type
    }
    /// The certificate SAN (URI or email).
    pub fn san(&self) -> &str {
        &self.san
    }
    /// The OIDC issuer extension.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }
    /// The Fulcio extensions.
    pub fn fulcio(&self) -> &FulcioClaims {
        &self.fulcio
    }
    /// The earliest verified signing time, unix seconds.
    pub fn signed_at(&self) -> i64 {
        self.signed_at
    }
    /// Where [`Self::signed_at`] came from.
    pub fn time_source(&self) -> TimeSource {
        self.time_source
    }
    /// The signed time as RFC 3339 (UTC).
    pub fn signed_at_rfc3339(&self) -> String {
        rfc3339(self.signed_at)
    }
    /// The certificate's validity window, unix seconds.
    pub fn certificate_validity(&self) -> (i64, i64) {
        (self.certificate_not_before, self.certificate_not_after)
    }
    /// The in-toto statement (DSSE bundles), `None` for message signatures.
    pub fn statement(&self) -> Option<&Statement> {
        self.statement.as_ref()
    }
    /// The predicate type, if a statement.
    pub fn predicate_type(&self) -> Option<&str> {
        self.statement.as_ref().map(|s| s.predicate_type.as_str())
    }
    /// The predicate, if a statement.
    pub fn predicate(&self) -> Option<&serde_json::Value> {
        self.statement.as_ref().map(|s| &s.predicate)
    }
    /// The subjects, empty for message signatures.
    pub fn subjects(&self) -> &[Subject] {
        self.statement
            .as_ref()
            .map_or(&[], |s| s.subjects.as_slice())
    }
}

/// Unix seconds → `YYYY-MM-DDTHH:MM:SSZ` (proleptic Gregorian, UTC).
fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Check the media type before anything else parses the bundle.
///
/// Gap wrapped: `sigstore-types` accepts v0.1 (and treats a missing `mediaType` as
/// v0.1), and `sigstore-verify` then verifies it. Provenant, like `gh` and
/// sigstore-go, refuses v0.1 as unsupported and a missing media type outright.
fn check_media_type(bundle: &[u8]) -> Result<String, VerifyError> {
    #[derive(serde::Deserialize)]
    struct Head {
        #[serde(rename = "mediaType")]
        media_type: Option<serde_json::Value>,
        #[serde(rename = "verificationMaterial")]
        verification_material: Option<serde_json::Map<String, serde_json::Value>>,
    }
    let head: Head = serde_json::from_slice(bundle)
        .map_err(|e| VerifyError::MalformedBundle(format!("not a JSON bundle: {e}")))?;
    // Missing verification material would otherwise surface as a serde error from
    // sigstore-types; name it.
    let has_key_material = head.verification_material.as_ref().is_some_and(|vm| {
        ["certificate", "x509CertificateChain", "publicKey"]
            .iter()
            .any(|k| vm.get(*k).is_some_and(|v| !v.is_null()))
    });
    let mt = match head.media_type {
        None | Some(serde_json::Value::Null) => return Err(VerifyError::MissingMediaType),
        Some(serde_json::Value::String(s)) => s,
        Some(_) => {
            return Err(VerifyError::MalformedBundle(
                "mediaType is not a string".into(),
            ))
        }
    };
    match mt.as_str() {
        MEDIA_TYPE_V0_2 | MEDIA_TYPE_V0_3 | MEDIA_TYPE_V0_3_ALT if !has_key_material => Err(
            VerifyError::MissingVerificationMaterial("no certificate or public key".into()),
        ),
        MEDIA_TYPE_V0_2 | MEDIA_TYPE_V0_3 | MEDIA_TYPE_V0_3_ALT => Ok(mt),
        MEDIA_TYPE_V0_1 => Err(VerifyError::UnsupportedBundleVersion(mt)),
        _ => Err(VerifyError::UnknownMediaType(
            mt.chars().take(200).collect(),
        )),
    }
}

fn parse_statement(payload: &[u8]) -> Result<Statement, VerifyError> {
    #[derive(serde::Deserialize)]
    struct RawSubject {
        #[serde(default)]
        name: String,
        digest: BTreeMap<String, String>,
    }
    #[derive(serde::Deserialize)]
    struct Raw {
        #[serde(rename = "_type")]
        statement_type: String,
        subject: Vec<RawSubject>,
        #[serde(rename = "predicateType")]
        predicate_type: String,
        #[serde(default)]
        predicate: Option<serde_json::Value>,
    }
    let raw: Raw = serde_json::from_slice(payload)
        .map_err(|e| VerifyError::InvalidStatement(e.to_string()))?;
    // Gap wrapped: sigstore-verify parses the statement only to bind subjects; it
    // does not check `_type`. A payload that is not an in-toto statement is refused.
    if !IN_TOTO_STATEMENT_TYPES.contains(&raw.statement_type.as_str()) {
        return Err(VerifyError::InvalidStatement(format!(
            "unsupported _type {:?}",
            raw.statement_type.chars().take(200).collect::<String>()
        )));
    }
    if raw.subject.is_empty() || raw.subject.len() > MAX_SUBJECTS {
        return Err(VerifyError::InvalidStatement(format!(
            "{} subjects (1 to {MAX_SUBJECTS} required)",
            raw.subject.len()
        )));
    }
    let subjects = raw
        .subject
        .into_iter()
        .map(|s| Subject {
            name: s.name,
            digest: s
                .digest
                .into_iter()
                .map(|(a, h)| (a, h.to_ascii_lowercase()))
                .collect(),
        })
        .collect();
    Ok(Statement {
        statement_type: raw.statement_type,
        predicate_type: raw.predicate_type,
        predicate: raw
            .predicate
            .unwrap_or_else(|| serde_json::Value::Object(Default::default())),
        subjects,
    })
}

/// Verify one Sigstore bundle offline at `now` (unix seconds).
///
/// See the crate doc for every check. `now` is the verification time: every
/// verified signing time must lie at or before it (the certificate itself is
/// checked at the signing time, as Sigstore defines it, not at `now`).
pub fn verify_bundle(
    bundle: &[u8],
    artifact: Artifact<'_>,
    root: &TrustRoot,
    policy: &IdentityPolicy,
    now: u64,
) -> Result<VerifiedBundle, VerifyError> {
    if bundle.len() > MAX_BUNDLE_BYTES {
        return Err(VerifyError::BundleTooLarge {
            max: MAX_BUNDLE_BYTES,
        });
    }
    let media_type = check_media_type(bundle)?;
    let text = std::str::from_utf8(bundle)
        .map_err(|_| VerifyError::MalformedBundle("not UTF-8".into()))?;
    let parsed =
        Bundle::from_json(text).map_err(|e| VerifyError::MalformedBundle(e.to_string()))?;

    use sigstore_verify::types::bundle::VerificationMaterialContent as Vm;
    match &parsed.verification_material.content {
        Vm::Certificate(_) | Vm::X509CertificateChain { .. } => {}
        Vm::PublicKey(_) => return Err(VerifyError::NotKeyless),
        _ => {
            return Err(VerifyError::MissingVerificationMaterial(
                "no certificate".into(),
            ))
        }
    }
    if let Vm::X509CertificateChain { certificates } = &parsed.verification_material.content {
        if certificates.is_empty() {
            return Err(VerifyError::MissingVerificationMaterial(
                "empty certificate chain".into(),
            ));
        }
    }

    let tlog_entries = &parsed.verification_material.tlog_entries;
    // Gap wrapped: sigstore-verify looks a SET's key up by log ID and reports an
    // unknown ID as an inclusion-promise failure, and an entry with only an inclusion
    // proof is matched by the checkpoint's key hint, never by its log ID. We require
    // every entry's log ID to name a log of the trusted root, and say so.
    for entry in tlog_entries {
        let id = entry.log_id.key_id.as_bytes();
        if !root.tlog_ids.iter().any(|t| t.as_slice() == id) {
            return Err(VerifyError::UnknownLog(hex::encode(id)));
        }
    }
    let sigstore_policy = match root.instance {
        Instance::File => {
            // Gap wrapped: with a TSA timestamp and no log entry, sigstore-verify's
            // structural check would let a v0.2 bundle through. A Rekor-backed
            // instance must show the signature in its log (gh: tlog threshold 1).
            if tlog_entries.is_empty() {
                return Err(VerifyError::NoTransparencyLogEntry);
            }
            VerificationPolicy::any_identity()
        }
        // GitHub's instance has neither Rekor nor a CT log (gh does the same).
        Instance::GitHub => VerificationPolicy::any_identity()
            .skip_tlog_unsafe()
            .skip_sct(),
    };

    let statement = match &parsed.content {
        SignatureContent::DsseEnvelope(env) => {
            if env.payload_type != IN_TOTO_PAYLOAD_TYPE {
                return Err(VerifyError::UnsupportedBundle(format!(
                    "DSSE payload type {:?} is not an in-toto statement",
                    env.payload_type.chars().take(200).collect::<String>()
                )));
            }
            Some(parse_statement(env.payload.as_bytes())?)
        }
        SignatureContent::MessageSignature(_) => None,
        _ => {
            return Err(VerifyError::MissingVerificationMaterial(
                "no signature content".into(),
            ))
        }
    };

    let owned_digest;
    let ss_artifact = match artifact {
        Artifact::Bytes(b) => sigstore_verify::types::Artifact::Blob(b),
        Artifact::Digest(d) => {
            owned_digest = d.to_sigstore()?;
            sigstore_verify::types::Artifact::Digest(owned_digest)
        }
        Artifact::StatementSubjects => {
            let st = statement.as_ref().ok_or(VerifyError::ArtifactRequired)?;
            let d = st
                .subjects
                .iter()
                .find_map(|s| {
                    [DigestAlgorithm::Sha256, DigestAlgorithm::Sha512]
                        .into_iter()
                        .find_map(|alg| {
                            let h = s.digest.get(alg.as_str())?;
                            ArtifactDigest::new(alg, &hex::decode(h).ok()?).ok()
                        })
                })
                .ok_or_else(|| {
                    VerifyError::InvalidStatement("no subject with a sha256/sha512 digest".into())
                })?;
            sigstore_verify::types::Artifact::Digest(d.to_sigstore()?)
        }
    };

    let result = root
        .verifier
        .verify(ss_artifact, &parsed, &sigstore_policy)
        .map_err(map_sigstore_error)?;

    // Fail closed on what sigstore-verify reports it did.
    if !result.certificate_verified() {
        return Err(VerifyError::CertificateChain(
            "certificate not verified".into(),
        ));
    }
    if root.instance == Instance::File && !(result.tlog_verified() && result.sct_verified()) {
        return Err(VerifyError::Other(
            "transparency log or SCT verification did not run".into(),
        ));
    }

    // Signing times: sigstore-verify returns the TSA times first (one per token, in
    // order), then the SET-authenticated integrated times.
    let n_tsa = parsed
        .verification_material
        .timestamp_verification_data
        .rfc3161_timestamps
        .len();
    let times: Vec<(i64, TimeSource)> = result
        .verified_timestamps()
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let src = if i < n_tsa {
                TimeSource::Rfc3161
            } else {
                TimeSource::Rekor
            };
            (t.as_second(), src)
        })
        .collect();
    // Gap wrapped: sigstore-verify compares times with the wall clock
    // (`jiff::Timestamp::now()`), not a caller-supplied time. We take `now`
    // explicitly and refuse a signature verified as made after it.
    let now_i = i64::try_from(now).unwrap_or(i64::MAX);
    for (t, _) in &times {
        if *t > now_i {
            return Err(VerifyError::SignedAfterNow { signed_at: *t, now });
        }
    }
    let (signed_at, time_source) = times
        .iter()
        .copied()
        .min_by_key(|(t, _)| *t)
        .ok_or_else(|| VerifyError::NoVerifiedTime("no verified timestamp".into()))?;

    let cert = result
        .certificate()
        .ok_or_else(|| VerifyError::MissingVerificationMaterial("no certificate".into()))?;
    let san = result
        .identity()
        .map(|s| s.as_str().to_string())
        .ok_or_else(|| VerifyError::MalformedCertificate("certificate has no SAN".into()))?;
    let issuer = result.issuer().map(str::to_string).ok_or_else(|| {
        VerifyError::MalformedCertificate("certificate has no OIDC issuer extension".into())
    })?;
    let ci = &cert.ci_claims;
    let fulcio = FulcioClaims {
        build_signer_uri: ci.build_signer_uri.clone(),
        build_signer_digest: ci.build_signer_digest.clone(),
        runner_environment: ci.runner_environment.clone(),
        source_repository_uri: ci.source_repository_uri.clone(),
        source_repository_digest: ci.source_repository_digest.clone(),
        source_repository_ref: ci.source_repository_ref.clone(),
        source_repository_identifier: ci.source_repository_identifier.clone(),
        source_repository_owner_uri: ci.source_repository_owner_uri.clone(),
        build_config_uri: ci.build_config_uri.clone(),
        build_trigger: ci.build_trigger.clone(),
        run_invocation_uri: ci.run_invocation_uri.clone(),
    };

    // The identity policy: sigstore-verify checks only SAN and issuer, and was given
    // none here; every constraint is evaluated in one place, `policy::identity`.
    let claims = IdentityClaims {
        issuer: Some(&issuer),
        san: Some(&san),
        source_repository_uri: fulcio.source_repository_uri.as_deref(),
        source_repository_ref: fulcio.source_repository_ref.as_deref(),
        runner_environment: fulcio.runner_environment.as_deref(),
        build_signer_uri: fulcio.build_signer_uri.as_deref(),
        predicate_type: statement.as_ref().map(|s| s.predicate_type.as_str()),
        subject_digests: statement
            .as_ref()
            .map(|s| s.subjects.iter().map(|x| &x.digest).collect())
            .unwrap_or_default(),
    };
    policy.evaluate(&claims)?;

    Ok(VerifiedBundle {
        media_type,
        san,
        issuer,
        fulcio,
        signed_at,
        time_source,
        certificate_not_before: cert.not_before.as_second(),
        certificate_not_after: cert.not_after.as_second(),
        statement,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The gaps this crate wraps are real: sigstore-verify on its own accepts a v0.1
    /// bundle, and does so whatever the caller's notion of `now` is.
    #[test]
    fn sigstore_verify_alone_accepts_what_we_refuse() {
        let root = TrustRoot::from_json(include_bytes!(
            "../tests/data/public-good.sigstore-python-2025.json"
        ))
        .unwrap();
        let v01 = include_str!("../tests/data/sigstore-js-2.1.0-bundle-v0.1.json");
        let bundle = Bundle::from_json(v01).unwrap();
        let digest = ArtifactDigest::parse(concat!(
            "sha512:90f223f992e4c88dd068cd2a5fc57f9d2b30798343dd6e38f29c240e04ba090e",
            "f831f84490847c4e82b9232c78e8a258463b1e55c0f7469f730265008fa6633f"
        ))
        .unwrap();
        let r = root.verifier.verify(
            sigstore_verify::types::Artifact::Digest(digest.to_sigstore().unwrap()),
            &bundle,
            &VerificationPolicy::any_identity(),
        );
        assert!(r.is_ok(), "{r:?}");
        let policy = IdentityPolicy::builder()
            .source_repository("sigstore/sigstore-js")
            .build()
            .unwrap();
        let ours = verify_bundle(
            v01.as_bytes(),
            Artifact::Digest(&digest),
            &root,
            &policy,
            1693323623,
        );
        assert_eq!(ours.unwrap_err().kind(), "UnsupportedBundleVersion");
    }

    #[test]
    fn rfc3339_formats_known_times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1693323623), "2023-08-29T15:40:23Z");
        assert_eq!(rfc3339(1716578064), "2024-05-24T19:14:24Z");
        assert_eq!(rfc3339(951782400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn digests_parse_strictly() {
        let d = ArtifactDigest::parse(&format!("sha256:{}", "ab".repeat(32))).unwrap();
        assert_eq!(d.algorithm(), DigestAlgorithm::Sha256);
        assert_eq!(d.to_string(), format!("sha256:{}", "ab".repeat(32)));
        for bad in [
            "",
            "sha256",
            "sha256:zz",
            "md5:00",
            "sha512:abcd",
            "sha256:",
        ] {
            assert_eq!(
                ArtifactDigest::parse(bad).unwrap_err().kind(),
                "InvalidDigest"
            );
        }
    }

    #[test]
    fn media_types() {
        let mt = |m: &str| {
            check_media_type(
                format!(r#"{{"mediaType":"{m}","verificationMaterial":{{"certificate":{{}}}}}}"#)
                    .as_bytes(),
            )
        };
        assert!(mt(MEDIA_TYPE_V0_2).is_ok());
        assert!(mt(MEDIA_TYPE_V0_3).is_ok());
        assert_eq!(
            mt(MEDIA_TYPE_V0_1).unwrap_err().kind(),
            "UnsupportedBundleVersion"
        );
        assert_eq!(
            mt("application/json").unwrap_err().kind(),
            "UnknownMediaType"
        );
        assert_eq!(
            check_media_type(b"{}").unwrap_err().kind(),
            "MissingMediaType"
        );
        assert_eq!(
            check_media_type(format!(r#"{{"mediaType":"{MEDIA_TYPE_V0_3}"}}"#).as_bytes())
                .unwrap_err()
                .kind(),
            "MissingVerificationMaterial"
        );
        assert_eq!(
            check_media_type(b"[").unwrap_err().kind(),
            "MalformedBundle"
        );
        assert_eq!(
            check_media_type(br#"{"mediaType":3}"#).unwrap_err().kind(),
            "MalformedBundle"
        );
    }

    #[test]
    fn statements_are_checked() {
        let ok = br#"{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"a","digest":{"sha256":"AB"}}],"predicateType":"p"}"#;
        let s = parse_statement(ok).unwrap();
        assert_eq!(s.subjects[0].digest["sha256"], "ab");
        assert_eq!(s.predicate, serde_json::json!({}));
        for bad in [
            &br#"{"_type":"x","subject":[{"digest":{}}],"predicateType":"p"}"#[..],
            br#"{"_type":"https://in-toto.io/Statement/v1","subject":[],"predicateType":"p"}"#,
            br#"{"_type":"https://in-toto.io/Statement/v1","predicateType":"p"}"#,
            b"null",
        ] {
            assert_eq!(parse_statement(bad).unwrap_err().kind(), "InvalidStatement");
        }
    }
}
