//! The one digest vocabulary of image signatures: [`Sha256Digest`], a content digest
//! in its canonical OCI form `sha256:<64 lowercase hex>`.
//!
//! sha256 is the only algorithm the project signs images with, and the only one the
//! registry client asks for. The canonical form is what a registry serves, what goes
//! into URLs and tags (`sha256-<hex>.sig`), and what a computed digest is compared
//! with as a string, so [`Sha256Digest::parse`] accepts nothing else.
//! [`Sha256Digest::parse_ignore_case`] also takes uppercase hex and lowercases it: the
//! image digest given to [`crate::cosign::verify_image_signature`] has always been
//! accepted that way.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

use super::reference::clip;

const PREFIX: &str = "sha256:";
const HEX_LEN: usize = 64;

/// A SHA-256 digest, `sha256:<64 lowercase hex>`. Only a valid one can be made.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256Digest(String);

/// Why a string is not a [`Sha256Digest`]. It carries the input, clipped to 80 bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid digest {input:?}: expected sha256:<64 lowercase hex>")]
pub struct InvalidDigest {
    input: String,
}

impl InvalidDigest {
    fn of(input: &str) -> Self {
        Self { input: clip(input) }
    }

    /// The refused input (clipped).
    pub fn input(&self) -> &str {
        &self.input
    }
}

impl Sha256Digest {
    /// Parses the canonical form `sha256:<64 lowercase hex>`; anything else
    /// (uppercase hex, another algorithm, no prefix, surrounding space) is refused.
    pub fn parse(s: &str) -> Result<Self, InvalidDigest> {
        match s.strip_prefix(PREFIX) {
            Some(h)
                if h.len() == HEX_LEN
                    && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) =>
            {
                Ok(Self(s.to_owned()))
            }
            _ => Err(InvalidDigest::of(s)),
        }
    }

    /// Parses `sha256:<64 hex>` with hex digits of either case, and lowercases them.
    /// The prefix itself must be `sha256:`.
    pub fn parse_ignore_case(s: &str) -> Result<Self, InvalidDigest> {
        match s.strip_prefix(PREFIX) {
            Some(h) if h.len() == HEX_LEN && h.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Ok(Self(format!("{PREFIX}{}", h.to_ascii_lowercase())))
            }
            _ => Err(InvalidDigest::of(s)),
        }
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(format!("{PREFIX}{}", hex::encode(Sha256::digest(bytes))))
    }

    /// The 64 lowercase hex digits, without `sha256:`.
    pub fn hex(&self) -> &str {
        &self.0[PREFIX.len()..]
    }

    /// `sha256:<hex>`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `sha256:<hex>`, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Sha256Digest {
    type Err = InvalidDigest;

    /// [`Sha256Digest::parse`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl AsRef<str> for Sha256Digest {
    fn as_ref(&self) -> &str {
        &self.0
    }
}
