//! Public keys (SPKI) and PEM: what a trusted key, a Rekor key or a Fulcio leaf's key
//! verifies with.
use der::Decode as _;
use sha2::{Digest as _, Sha256};
use spki::ObjectIdentifier;

use super::{ImageTrustError, MAX_CHAIN_CERTS};
use crate::oci::Sha256Digest;

/// A public key ready to verify signatures.
#[derive(Clone)]
pub(super) struct PublicKey {
    pub(super) spki_der: Vec<u8>,
    /// `sha256:<hex of sha256(spki_der)>`.
    pub(super) fingerprint: String,
    /// `[start, end]` unix seconds, when the trust material gives one.
    pub(super) valid_for: Option<(i64, Option<i64>)>,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.fingerprint)
    }
}

impl PublicKey {
    pub(super) fn from_spki_der(der: &[u8], origin: &str) -> Result<Self, ImageTrustError> {
        let bad = |detail: String| ImageTrustError::InvalidKey {
            origin: origin.to_owned(),
            detail,
        };
        key_algorithm(der).map_err(bad)?;
        Ok(Self {
            spki_der: der.to_vec(),
            fingerprint: Sha256Digest::of(der).into_string(),
            valid_for: None,
        })
    }

    pub(super) fn log_id(&self) -> [u8; 32] {
        Sha256::digest(&self.spki_der).into()
    }

    pub(super) fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        verify_spki(&self.spki_der, msg, sig)
    }

    pub(super) fn valid_at(&self, t: i64) -> bool {
        self.valid_for
            .is_none_or(|(s, e)| t >= s && e.is_none_or(|e| t <= e))
    }
}

const OID_EC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

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
pub(super) fn verify_spki(spki_der: &[u8], msg: &[u8], sig: &[u8]) -> bool {
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

/// Every PEM block labelled `label` (at most [`MAX_CHAIN_CERTS`]), DER-decoded. At
/// least one is required; other labels are skipped.
pub(super) fn pem_blocks(pem: &[u8], label: &str) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    for b in provenant_base::pem::blocks_in(pem).map_err(|e| e.to_string())? {
        if b.label != label {
            continue;
        }
        out.push(b.der().map_err(|e| e.to_string())?);
        if out.len() > MAX_CHAIN_CERTS {
            return Err(format!("more than {MAX_CHAIN_CERTS} {label} PEM blocks"));
        }
    }
    if out.is_empty() {
        return Err(format!("no {label} PEM block"));
    }
    Ok(out)
}
