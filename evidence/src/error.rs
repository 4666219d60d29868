//! Typed errors for decoding and verification.

use thiserror::Error;

/// Why a piece of evidence was refused. Each variant names what was wrong so an
/// operator can act on it; none of them carries secret material.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EvidenceError {
    /// An input over its named limit (checked before it is decoded).
    #[error("{what} is {len} bytes, over the limit of {max}")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// JSON that does not parse, or does not have the expected shape.
    #[error("malformed JSON in {what}: {detail}")]
    Json {
        /// What was being decoded.
        what: &'static str,
        /// The parser's message.
        detail: String,
    },
    /// A base64 field that does not decode in either alphabet.
    #[error("bad base64 in {what}")]
    Base64 {
        /// The field.
        what: &'static str,
    },
    /// The envelope's `payloadType` is not the one expected here.
    #[error("payloadType is {got:?}, expected {expected:?}")]
    WrongPayloadType {
        /// The type expected.
        expected: &'static str,
        /// The type the envelope declares.
        got: String,
    },
    /// The envelope carries no signature.
    #[error("envelope carries no signature")]
    NoSignature,
    /// More signatures than [`MAX_SIGNATURES`](crate::limits::MAX_SIGNATURES).
    #[error("envelope carries {count} signatures, over the limit of {max}")]
    TooManySignatures {
        /// How many the envelope carries.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// No signature verifies under the key.
    #[error("no signature verifies under key {fingerprint}")]
    BadSignature {
        /// The key's fingerprint.
        fingerprint: String,
    },
    /// A public key of an unsupported algorithm or size, or malformed.
    #[error("unsupported or malformed public key: {detail}")]
    BadKey {
        /// What is wrong with it.
        detail: String,
    },
    /// A decoded field out of its bounds or syntax.
    #[error("invalid field {field}: {detail}")]
    InvalidField {
        /// The field's path (`measurements.workloads.name`, ...).
        field: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// A statement format version this code does not read.
    #[error("unsupported version {got} of {what}")]
    UnsupportedVersion {
        /// Which statement.
        what: &'static str,
        /// Its version.
        got: u32,
    },
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
