//! What a bundle must be about: the artifact's bytes or digest, or the statement's
//! own subjects.

use sigstore_verify::types::{ArtifactDigest as SsArtifactDigest, DigestBytes, HashAlgorithm};

use super::VerifyError;

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

    pub(super) fn to_sigstore(&self) -> Result<SsArtifactDigest, VerifyError> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
