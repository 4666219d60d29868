//! The crypto backend `sigstore-crypto` calls into: ring and RustCrypto.
//!
//! `sigstore-crypto` ships one backend, aws-lc-rs (its default feature), and a
//! [`CryptoProvider`] trait for others. aws-lc-rs builds a C/assembly library
//! (aws-lc-sys) at compile time, which this workspace otherwise avoids: ring and
//! the RustCrypto curves are already in the tree for DSSE and quote verification.
//! So `sigstore-verify` is built with `default-features = false` and this provider
//! is installed instead (verification only: no key generation or signing).
//!
//! - Hashing: `sha2`.
//! - Signatures over a message: ring (ECDSA P-256/P-384 with SHA-256/384, Ed25519,
//!   RSA PKCS#1 v1.5 and PSS 2048–8192 bits). ML-DSA is refused as unsupported.
//! - Signatures over a prehashed digest (hashedrekord with a digest-only artifact):
//!   ring has no prehashed API, so ECDSA uses the RustCrypto `p256`/`p384` crates'
//!   `PrehashVerifier`. Prehashed RSA is refused as unsupported (Fulcio leaf keys are
//!   ECDSA; an RSA managed-key hashedrekord needs the artifact bytes).

use sigstore_verify::crypto::{CryptoProvider, Error, HashContext, Result, SigningScheme};
use sigstore_verify::types::HashAlgorithm;

use ring::signature as rs;
use sha2::Digest as _;

/// Verification-only provider; see the module doc.
#[derive(Debug)]
pub(crate) struct RingProvider;

pub(crate) static PROVIDER: RingProvider = RingProvider;

/// Install [`PROVIDER`] as `sigstore-crypto`'s process-wide backend (idempotent).
///
/// If some other code in the process installed a provider first, that one stays;
/// `sigstore-crypto` offers no way to replace it, and any correct provider gives the
/// same answers.
pub(crate) fn ensure_installed() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _already_set = sigstore_verify::crypto::install_default_provider(&PROVIDER);
    });
}

enum Hasher {
    Sha256(sha2::Sha256),
    Sha384(sha2::Sha384),
    Sha512(sha2::Sha512),
}

impl HashContext for Hasher {
    fn update(&mut self, data: &[u8]) {
        match self {
            Self::Sha256(h) => h.update(data),
            Self::Sha384(h) => h.update(data),
            Self::Sha512(h) => h.update(data),
        }
    }

    fn finalize(self: Box<Self>) -> Vec<u8> {
        match *self {
            Self::Sha256(h) => h.finalize().to_vec(),
            Self::Sha384(h) => h.finalize().to_vec(),
            Self::Sha512(h) => h.finalize().to_vec(),
        }
    }
}

fn ring_algorithm(scheme: SigningScheme) -> Result<&'static dyn rs::VerificationAlgorithm> {
    Ok(match scheme {
        SigningScheme::EcdsaP256Sha256 => &rs::ECDSA_P256_SHA256_ASN1,
        SigningScheme::EcdsaP256Sha384 => &rs::ECDSA_P256_SHA384_ASN1,
        SigningScheme::EcdsaP384Sha256 => &rs::ECDSA_P384_SHA256_ASN1,
        SigningScheme::EcdsaP384Sha384 => &rs::ECDSA_P384_SHA384_ASN1,
        SigningScheme::Ed25519 => &rs::ED25519,
        SigningScheme::RsaPssSha256 => &rs::RSA_PSS_2048_8192_SHA256,
        SigningScheme::RsaPssSha384 => &rs::RSA_PSS_2048_8192_SHA384,
        SigningScheme::RsaPssSha512 => &rs::RSA_PSS_2048_8192_SHA512,
        SigningScheme::RsaPkcs1Sha256 => &rs::RSA_PKCS1_2048_8192_SHA256,
        SigningScheme::RsaPkcs1Sha384 => &rs::RSA_PKCS1_2048_8192_SHA384,
        SigningScheme::RsaPkcs1Sha512 => &rs::RSA_PKCS1_2048_8192_SHA512,
        other => {
            return Err(Error::UnsupportedAlgorithm(format!(
                "{} is not supported by Provenant's crypto backend",
                other.name()
            )))
        }
    })
}

fn invalid(scheme: SigningScheme) -> Error {
    Error::Verification(format!("{} signature invalid", scheme.name()))
}

impl CryptoProvider for RingProvider {
    fn hash(&self, algorithm: HashAlgorithm) -> Result<Box<dyn HashContext>> {
        Ok(Box::new(match algorithm {
            HashAlgorithm::Sha2256 => Hasher::Sha256(sha2::Sha256::new()),
            HashAlgorithm::Sha2384 => Hasher::Sha384(sha2::Sha384::new()),
            HashAlgorithm::Sha2512 => Hasher::Sha512(sha2::Sha512::new()),
            other => {
                return Err(Error::UnsupportedAlgorithm(format!(
                    "cannot compute {other} digests"
                )))
            }
        }))
    }

    fn sha256(&self, data: &[u8]) -> [u8; 32] {
        sha2::Sha256::digest(data).into()
    }

    fn sha384(&self, data: &[u8]) -> [u8; 48] {
        sha2::Sha384::digest(data).into()
    }

    fn sha512(&self, data: &[u8]) -> [u8; 64] {
        sha2::Sha512::digest(data).into()
    }

    fn verify_raw(
        &self,
        scheme: SigningScheme,
        spki_pubkey_bytes: &[u8],
        data: &[u8],
        signature: &[u8],
    ) -> Result<()> {
        rs::UnparsedPublicKey::new(ring_algorithm(scheme)?, spki_pubkey_bytes)
            .verify(data, signature)
            .map_err(|_| invalid(scheme))
    }

    fn verify_prehashed(
        &self,
        scheme: SigningScheme,
        spki_pubkey_bytes: &[u8],
        digest: &[u8],
        signature: &[u8],
    ) -> Result<()> {
        use p256::ecdsa::signature::hazmat::PrehashVerifier;
        match scheme {
            SigningScheme::EcdsaP256Sha256 | SigningScheme::EcdsaP256Sha384 => {
                let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(spki_pubkey_bytes)
                    .map_err(|_| Error::InvalidKeyFormat("bad P-256 point".into()))?;
                let sig =
                    p256::ecdsa::Signature::from_der(signature).map_err(|_| invalid(scheme))?;
                key.verify_prehash(digest, &sig)
                    .map_err(|_| invalid(scheme))
            }
            SigningScheme::EcdsaP384Sha256 | SigningScheme::EcdsaP384Sha384 => {
                let key = p384::ecdsa::VerifyingKey::from_sec1_bytes(spki_pubkey_bytes)
                    .map_err(|_| Error::InvalidKeyFormat("bad P-384 point".into()))?;
                let sig =
                    p384::ecdsa::Signature::from_der(signature).map_err(|_| invalid(scheme))?;
                key.verify_prehash(digest, &sig)
                    .map_err(|_| invalid(scheme))
            }
            other => Err(Error::UnsupportedAlgorithm(format!(
                "prehashed {} is not supported by Provenant's crypto backend",
                other.name()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::hazmat::PrehashSigner;

    #[test]
    fn hashes_match_sha2() {
        let mut h = PROVIDER.hash(HashAlgorithm::Sha2384).unwrap();
        h.update(b"ab");
        h.update(b"c");
        assert_eq!(h.finalize(), sha2::Sha384::digest(b"abc").to_vec());
        assert_eq!(
            PROVIDER.sha256(b"abc").to_vec(),
            sha2::Sha256::digest(b"abc").to_vec()
        );
    }

    #[test]
    fn prehashed_and_raw_ecdsa_agree_and_fail_on_tamper() {
        let sk = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
        let pk = sk.verifying_key().to_encoded_point(false);
        let digest = sha2::Sha256::digest(b"artifact");
        let sig: p256::ecdsa::Signature = sk.sign_prehash(&digest).unwrap();
        let der = sig.to_der();
        let scheme = SigningScheme::EcdsaP256Sha256;
        PROVIDER
            .verify_prehashed(scheme, pk.as_bytes(), &digest, der.as_bytes())
            .unwrap();
        PROVIDER
            .verify_raw(scheme, pk.as_bytes(), b"artifact", der.as_bytes())
            .unwrap();
        assert!(PROVIDER
            .verify_raw(scheme, pk.as_bytes(), b"artifacT", der.as_bytes())
            .is_err());
        let mut bad = digest.to_vec();
        bad[0] ^= 1;
        assert!(PROVIDER
            .verify_prehashed(scheme, pk.as_bytes(), &bad, der.as_bytes())
            .is_err());
        assert!(PROVIDER
            .verify_raw(SigningScheme::MlDsa44, pk.as_bytes(), b"x", der.as_bytes())
            .is_err());
    }
}
