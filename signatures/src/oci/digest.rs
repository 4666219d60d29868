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

use super::clip;

const PREFIX: &str = "sha256:";
const HEX_LEN: usize = 64;

/// A SHA-256 digest, `sha256:<64 lowercase hex>`. Only a valid one can be made.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256Digest(String);

/// Debug-prints as the string it is (so a [`super::Reference`] prints as before).
impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    /// Input, [`Sha256Digest::parse`], [`Sha256Digest::parse_ignore_case`].
    ///
    /// These replace three checks that agreed with them exactly (an old-against-new
    /// table pinned it before the switch): `oci::reference::parse_digest` and `hex_of`
    /// through it accepted what `parse` does, with the same error text, and
    /// `cosign::normalise_digest` what `parse_ignore_case` does. Each call site kept
    /// its side: the registry client and `oci::Reference` the strict
    /// one (OCI's grammar; the digest goes into URLs and tags and is compared with
    /// computed digests as a string), `verify_image_signature` the lenient one.
    #[test]
    fn digest_forms() {
        let lower = format!("sha256:{HEX}");
        let upper = format!("sha256:{}", HEX.to_ascii_uppercase());
        let mixed = format!("sha256:{}{}", &HEX[..32], HEX[32..].to_ascii_uppercase());
        let none: Option<&str> = None;
        let rows: Vec<(String, Option<&str>, Option<&str>)> = vec![
            (lower.clone(), Some(&lower), Some(&lower)),
            (upper, none, Some(&lower)),
            (mixed, none, Some(&lower)),
            (format!("SHA256:{HEX}"), none, none),
            (HEX.to_owned(), none, none),
            (format!("sha256:{}", &HEX[..63]), none, none),
            (format!("sha256:{HEX}0"), none, none),
            (format!("sha256:{}", "zz".repeat(32)), none, none),
            (format!("sha512:{HEX}{HEX}"), none, none),
            (format!(" sha256:{HEX}"), none, none),
            (format!("sha256:{HEX}\n"), none, none),
            (format!("sha256:{}é", &HEX[..62]), none, none),
            ("sha256:".to_owned(), none, none),
            (String::new(), none, none),
        ];
        for (input, strict, any_case) in rows {
            let s = Sha256Digest::parse(&input);
            assert_eq!(
                s.as_ref().ok().map(Sha256Digest::as_str),
                strict,
                "{input:?}"
            );
            assert_eq!(input.parse::<Sha256Digest>().ok(), s.clone().ok());
            match &s {
                Ok(d) => {
                    assert_eq!(d.hex(), &input["sha256:".len()..]);
                    assert_eq!(d.to_string(), input);
                    assert_eq!(format!("{d:?}"), format!("{input:?}"));
                }
                Err(e) => assert_eq!(
                    e.to_string(),
                    format!(
                        "invalid digest {:?}: expected sha256:<64 lowercase hex>",
                        clip(&input)
                    )
                ),
            }
            assert_eq!(
                Sha256Digest::parse_ignore_case(&input)
                    .ok()
                    .map(Sha256Digest::into_string)
                    .as_deref(),
                any_case,
                "{input:?}"
            );
        }
    }

    #[test]
    fn digest_of_bytes() {
        let d = Sha256Digest::of(b"");
        assert_eq!(
            d.as_str(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(Sha256Digest::parse(d.as_str()), Ok(d));
    }
}
