//! Public keys that may sign Provenant evidence, carried as DER SubjectPublicKeyInfo.
//!
//! Three algorithms, matching the keys nodes already hold for mTLS:
//! - `ed25519`: raw 64-byte signatures (RFC 8032, verified strictly);
//! - `ecdsa-p256-sha256`: ASN.1 DER signatures over SHA-256;
//! - `rsa-pkcs1-sha256`: RSASSA-PKCS1-v1_5 with SHA-256, 2048 to 8192 bits.
//!
//! The algorithm is derived from the SPKI itself and must agree with the declared
//! one, so a key cannot be presented under an algorithm it was not made for.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use spki::der::Decode;
use spki::{DecodePublicKey, ObjectIdentifier, SubjectPublicKeyInfoRef};

use crate::codec::b64;
use crate::error::EvidenceError;
use crate::limits::MAX_SPKI_BYTES;

const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// A signature algorithm Provenant verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyAlgorithm {
    /// Ed25519, raw 64-byte signatures (RFC 8032, verified strictly).
    #[serde(rename = "ed25519")]
    Ed25519,
    /// ECDSA over P-256 with SHA-256, ASN.1 DER signatures.
    #[serde(rename = "ecdsa-p256-sha256")]
    EcdsaP256Sha256,
    /// RSASSA-PKCS1-v1_5 with SHA-256, 2048 to 8192 bits.
    #[serde(rename = "rsa-pkcs1-sha256")]
    RsaPkcs1Sha256,
}

impl KeyAlgorithm {
    /// The algorithm's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlgorithm::Ed25519 => "ed25519",
            KeyAlgorithm::EcdsaP256Sha256 => "ecdsa-p256-sha256",
            KeyAlgorithm::RsaPkcs1Sha256 => "rsa-pkcs1-sha256",
        }
    }
}

#[derive(Clone)]
enum Parsed {
    Ed25519(ed25519_dalek::VerifyingKey),
    P256(p256::ecdsa::VerifyingKey),
    /// PKCS#1 RSAPublicKey DER, as ring wants it. RSA verification goes through ring
    /// rather than the `rsa` crate: ring is constant-time and widely reviewed.
    Rsa(Vec<u8>),
}

/// A parsed public key. Equality and hashing follow the SPKI bytes.
#[derive(Clone)]
pub struct PublicKey {
    alg: KeyAlgorithm,
    spki: Vec<u8>,
    /// Computed once: it names the key in every error, log line and verified value.
    fingerprint: String,
    parsed: Parsed,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PublicKey({}, {})",
            self.alg.as_str(),
            self.fingerprint()
        )
    }
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.spki == other.spki
    }
}
impl Eq for PublicKey {}

impl PublicKey {
    /// Parses a DER SubjectPublicKeyInfo.
    pub fn from_spki_der(der: &[u8]) -> Result<PublicKey, EvidenceError> {
        if der.len() > MAX_SPKI_BYTES {
            return Err(EvidenceError::TooLarge {
                what: "public key",
                len: der.len(),
                max: MAX_SPKI_BYTES,
            });
        }
        let bad = |detail: String| EvidenceError::BadKey { detail };
        let info = SubjectPublicKeyInfoRef::from_der(der).map_err(|e| bad(e.to_string()))?;
        let oid = info.algorithm.oid;
        let (alg, parsed) = if oid == OID_ED25519 {
            let k = ed25519_dalek::VerifyingKey::from_public_key_der(der)
                .map_err(|e| bad(format!("ed25519: {e}")))?;
            (KeyAlgorithm::Ed25519, Parsed::Ed25519(k))
        } else if oid == OID_EC_PUBLIC_KEY {
            let curve = info
                .algorithm
                .parameters_oid()
                .map_err(|_| bad("EC key without a named curve".into()))?;
            if curve != OID_P256 {
                return Err(bad(format!("EC curve {curve} is not P-256")));
            }
            let k = p256::ecdsa::VerifyingKey::from_public_key_der(der)
                .map_err(|e| bad(format!("P-256: {e}")))?;
            (KeyAlgorithm::EcdsaP256Sha256, Parsed::P256(k))
        } else if oid == OID_RSA {
            let bits = info
                .subject_public_key
                .as_bytes()
                .ok_or_else(|| bad("RSA key bit string is not byte aligned".into()))?;
            rsa_check(bits).map_err(bad)?;
            (KeyAlgorithm::RsaPkcs1Sha256, Parsed::Rsa(bits.to_vec()))
        } else {
            return Err(bad(format!("unsupported key algorithm {oid}")));
        };
        Ok(PublicKey {
            alg,
            spki: der.to_vec(),
            fingerprint: format!("sha256:{}", hex::encode(Sha256::digest(der))),
            parsed,
        })
    }

    /// The key's algorithm, derived from its SPKI.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.alg
    }

    /// The DER SubjectPublicKeyInfo.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki
    }

    /// `sha256:<hex of SHA-256 over the SPKI DER>`, the key's stable name in configs,
    /// allowlists and logs.
    pub fn fingerprint(&self) -> String {
        self.fingerprint.clone()
    }

    /// The fingerprint without allocating.
    pub fn fingerprint_str(&self) -> &str {
        &self.fingerprint
    }

    /// Verifies `sig` over `msg`.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> Result<(), EvidenceError> {
        let bad = || EvidenceError::BadSignature {
            fingerprint: self.fingerprint(),
        };
        match &self.parsed {
            Parsed::Ed25519(k) => {
                let sig = ed25519_dalek::Signature::from_slice(sig).map_err(|_| bad())?;
                k.verify_strict(msg, &sig).map_err(|_| bad())
            }
            Parsed::P256(k) => {
                use p256::ecdsa::signature::Verifier;
                let sig = p256::ecdsa::Signature::from_der(sig).map_err(|_| bad())?;
                k.verify(msg, &sig).map_err(|_| bad())
            }
            Parsed::Rsa(pkcs1) => ring::signature::UnparsedPublicKey::new(
                &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                pkcs1,
            )
            .verify(msg, sig)
            .map_err(|_| bad()),
        }
    }
}

/// Checks an RSA PKCS#1 public key: 2048 to 8192 bits, as ring's verifier requires.
fn rsa_check(pkcs1: &[u8]) -> Result<(), String> {
    use spki::der::asn1::UintRef;
    use spki::der::{Reader, SliceReader};
    let mut r = SliceReader::new(pkcs1).map_err(|e| e.to_string())?;
    let (n, _e) = r
        .sequence(|seq| {
            let n = UintRef::decode(seq)?;
            let e = UintRef::decode(seq)?;
            Ok((n, e))
        })
        .map_err(|e| format!("RSA key: {e}"))?;
    let bits = n.as_bytes().len() * 8;
    if !(2048..=8192).contains(&bits) {
        return Err(format!("RSA modulus of {bits} bits (2048 to 8192 allowed)"));
    }
    Ok(())
}

#[derive(Serialize, Deserialize)]
struct WireKey {
    alg: KeyAlgorithm,
    spki: String,
}

impl Serialize for PublicKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        WireKey {
            alg: self.alg,
            spki: b64::encode(&self.spki),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = WireKey::deserialize(d)?;
        if w.spki.len() > MAX_SPKI_BYTES * 4 / 3 + 4 {
            return Err(serde::de::Error::custom("public key too large"));
        }
        let der = b64::decode("public key", &w.spki).map_err(serde::de::Error::custom)?;
        let key = PublicKey::from_spki_der(&der).map_err(serde::de::Error::custom)?;
        if key.alg != w.alg {
            return Err(serde::de::Error::custom(format!(
                "key declared as {} but its SPKI is {}",
                w.alg.as_str(),
                key.alg.as_str()
            )));
        }
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::pkcs8::EncodePublicKey;
    use ed25519_dalek::Signer;

    #[test]
    fn ed25519_round_trip_and_tamper() {
        let sk = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
        let der = sk.verifying_key().to_public_key_der().unwrap();
        let pk = PublicKey::from_spki_der(der.as_bytes()).unwrap();
        assert_eq!(pk.algorithm(), KeyAlgorithm::Ed25519);
        let sig = sk.sign(b"msg").to_bytes();
        pk.verify(b"msg", &sig).unwrap();
        assert!(pk.verify(b"msh", &sig).is_err());
        let mut bad = sig;
        bad[3] ^= 1;
        assert!(pk.verify(b"msg", &bad).is_err());
        assert!(pk.verify(b"msg", &sig[..63]).is_err());
    }

    #[test]
    fn p256_round_trip_and_tamper() {
        use p256::ecdsa::signature::Signer as _;
        use p256::pkcs8::EncodePublicKey as _;
        let sk = p256::ecdsa::SigningKey::from_bytes(&[9u8; 32].into()).unwrap();
        let der = sk.verifying_key().to_public_key_der().unwrap();
        let pk = PublicKey::from_spki_der(der.as_bytes()).unwrap();
        assert_eq!(pk.algorithm(), KeyAlgorithm::EcdsaP256Sha256);
        let sig: p256::ecdsa::Signature = sk.sign(b"msg");
        let der_sig = sig.to_der();
        pk.verify(b"msg", der_sig.as_bytes()).unwrap();
        assert!(pk.verify(b"other", der_sig.as_bytes()).is_err());
    }

    #[test]
    fn declared_algorithm_must_match_spki() {
        let sk = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
        let der = sk.verifying_key().to_public_key_der().unwrap();
        let json = format!(
            r#"{{"alg":"rsa-pkcs1-sha256","spki":"{}"}}"#,
            b64::encode(der.as_bytes())
        );
        assert!(serde_json::from_str::<PublicKey>(&json).is_err());
        let json = json.replace("rsa-pkcs1-sha256", "ed25519");
        let k: PublicKey = serde_json::from_str(&json).unwrap();
        assert_eq!(serde_json::to_string(&k).unwrap(), json);
    }

    #[test]
    fn garbage_keys_are_typed_errors() {
        for der in [
            &b""[..],
            b"\x30\x00",
            b"\x30\x03\x02\x01\x00",
            &[0xffu8; 40],
        ] {
            assert_eq!(PublicKey::from_spki_der(der).unwrap_err().kind(), "BadKey");
        }
    }
}
