//! Why trust could not be loaded ([`ImageTrustError`]) and why a signature was refused
//! ([`ImageSigError`]).

use std::path::PathBuf;

use evidence::verdict::ReasonCode;
use policy::identity::{IdentityPolicyError, IdentityViolation};

#[cfg(doc)]
use super::{verify_any, MAX_TRUST_FILE_BYTES};
use super::{ANNOTATION_BUNDLE, ANNOTATION_CERTIFICATE, ANNOTATION_SIGNATURE};
use crate::VerifyError;

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
    pub(super) fn informativeness(&self) -> u8 {
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
