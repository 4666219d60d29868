//! Typed errors for decoding and verification.

use thiserror::Error;

/// Why a piece of evidence was refused. Each variant names what was wrong so an
/// operator can act on it; none of them carries secret material.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EvidenceError {
    #[error("{what} is {len} bytes, over the limit of {max}")]
    TooLarge {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("malformed JSON in {what}: {detail}")]
    Json { what: &'static str, detail: String },
    #[error("bad base64 in {what}")]
    Base64 { what: &'static str },
    #[error("payloadType is {got:?}, expected {expected:?}")]
    WrongPayloadType { expected: &'static str, got: String },
    #[error("envelope carries no signature")]
    NoSignature,
    #[error("envelope carries {count} signatures, over the limit of {max}")]
    TooManySignatures { count: usize, max: usize },
    #[error("no signature verifies under key {fingerprint}")]
    BadSignature { fingerprint: String },
    #[error("unsupported or malformed public key: {detail}")]
    BadKey { detail: String },
    #[error("invalid field {field}: {detail}")]
    InvalidField { field: &'static str, detail: String },
    #[error("unsupported version {got} of {what}")]
    UnsupportedVersion { what: &'static str, got: u32 },
}

impl EvidenceError {
    /// A short, stable machine-readable name for the error kind.
    pub fn kind(&self) -> &'static str {
        match self {
            EvidenceError::TooLarge { .. } => "TooLarge",
            EvidenceError::Json { .. } => "MalformedJson",
            EvidenceError::Base64 { .. } => "BadBase64",
            EvidenceError::WrongPayloadType { .. } => "WrongPayloadType",
            EvidenceError::NoSignature => "NoSignature",
            EvidenceError::TooManySignatures { .. } => "TooManySignatures",
            EvidenceError::BadSignature { .. } => "BadSignature",
            EvidenceError::BadKey { .. } => "BadKey",
            EvidenceError::InvalidField { .. } => "InvalidField",
            EvidenceError::UnsupportedVersion { .. } => "UnsupportedVersion",
        }
    }
}
