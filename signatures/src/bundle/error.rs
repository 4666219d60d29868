//! Why a bundle was refused: [`VerifyError`], and the mapping of `sigstore-verify`'s
//! errors onto it (every one not named fails closed as `Other`).

use policy::identity::IdentityViolation;

/// Why a bundle was refused. `kind()` is stable (the CLI prints it).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The bundle is larger than [`MAX_BUNDLE_BYTES`](crate::MAX_BUNDLE_BYTES).
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
    /// A bundle version this verifier does not accept as it is: v0.1 with only a
    /// signed entry timestamp (no inclusion proof and checkpoint).
    #[error("unsupported bundle version: {0}")]
    UnsupportedBundleVersion(String),
    /// Verification material or signing-time evidence is missing or empty.
    #[error("missing verification material: {0}")]
    MissingVerificationMaterial(String),
    /// A public-key bundle where a keyless (Fulcio) one is required.
    #[error("bundle is not keyless: a Fulcio certificate is required")]
    NotKeyless,
    /// A keyless (certificate) bundle given to the managed-key verifier.
    #[error("bundle carries a certificate: a managed-key bundle (public key) is required")]
    NotManagedKey,
    /// The managed public key cannot be used (not a `PUBLIC KEY` PEM, or an
    /// unsupported algorithm).
    #[error("invalid public key: {0}")]
    InvalidKey(String),
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
        now: i64,
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
            Self::NotManagedKey => "NotManagedKey",
            Self::InvalidKey(_) => "InvalidKey",
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

pub(super) fn map_sigstore_error(e: sigstore_verify::Error) -> VerifyError {
    use sigstore_verify::TransparencyLogError as L;
    use sigstore_verify::{CertificateError as C, Error as E, TimestampError as T};
    let s = e.to_string();
    match e {
        E::SignatureInvalid(d) => VerifyError::InvalidSignature(d),
        // The log-entry consistency check (step 8) reports a hashedrekord entry whose
        // digest is not this artifact's (or this DSSE envelope's PAE's) as an artifact
        // mismatch; by then the signature has verified over the artifact, so what
        // does not match is the entry.
        E::ArtifactMismatch(d) if d.contains("for hashedrekord entry") => {
            VerifyError::LogEntryMismatch(d)
        }
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
            // An intoto 0.0.2 entry records base64(signature) inside base64: when its
            // first layer does not decode as base64, it cannot record this bundle's
            // signature (whose base64 always decodes), so the entry does not match.
            L::MalformedEntry(d) if d.starts_with("failed to decode Rekor signature") => {
                VerifyError::LogEntryMismatch(format!(
                    "the intoto entry's signature is not base64 of a signature ({d})"
                ))
            }
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
                B::CheckpointRootMismatch | B::MissingCheckpoint => VerifyError::Checkpoint(s),
                B::MissingInclusionProof(_) => VerifyError::InclusionProof(s),
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
