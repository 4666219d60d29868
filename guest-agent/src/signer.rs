//! The node identity key: signs reports and pulses.
//!
//! The key is the node's own: a dedicated ed25519 key (`guest-agent keygen`), or the
//! private key the node already uses for mTLS (ECDSA P-256, RSA or Ed25519 PEM), so
//! that the identity that authenticates the node's connections also signs its pulses.
//! Key material never leaves this module: `Debug` shows only the public fingerprint,
//! and errors never quote file contents.

use std::path::Path;

use evidence::PublicKey;

use pkcs8::der::asn1::BitString;
use pkcs8::der::{Decode, Encode};
use pkcs8::ObjectIdentifier;
use provenant_base::fsutil::{read_secret, SecretError};

/// Largest key file read. A PEM RSA-8192 key is about 6.5 KiB.
pub const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// Why the identity key could not be loaded or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignerError {
    /// The key file could not be read.
    #[error("cannot read key file {path}: {source}")]
    Io {
        /// The key file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The key file is larger than [`MAX_KEY_FILE_BYTES`].
    #[error("key file {path} is larger than {MAX_KEY_FILE_BYTES} bytes")]
    TooLarge {
        /// The key file.
        path: String,
    },
    /// The key file is not UTF-8 PEM holding a supported private key.
    #[error("key file {path}: {detail}")]
    Format {
        /// The key file.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// The key file is readable by group or others.
    #[error("key file {0}")]
    Exposed(String),
    /// The signing operation itself failed.
    #[error("signing failed: {0}")]
    Sign(String),
}

/// Something that signs with the node identity.
pub trait Signer: Send + Sync {
    /// The identity's public key.
    fn public_key(&self) -> &PublicKey;
    /// Signs `msg`; the signature's encoding depends on the key type.
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, SignerError>;
}

enum Secret {
    Ed25519(ed25519_dalek::SigningKey),
    P256(p256::ecdsa::SigningKey),
    /// RSA signing uses ring: constant-time, unlike the `rsa` crate (RUSTSEC-2023-0071).
    Rsa(ring::signature::RsaKeyPair),
}

/// A signer backed by a private key in a PEM file.
pub struct KeySigner {
    secret: Secret,
    public: PublicKey,
}

impl std::fmt::Debug for KeySigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeySigner({:?})", self.public)
    }
}

impl KeySigner {
    /// Loads a PEM private key: PKCS#8 (`PRIVATE KEY`: Ed25519, P-256 or RSA), SEC1
    /// (`EC PRIVATE KEY`, P-256) or PKCS#1 (`RSA PRIVATE KEY`).
    pub fn load(path: &Path) -> Result<KeySigner, SignerError> {
        let p = path.display().to_string();
        let bytes = read_secret(path, MAX_KEY_FILE_BYTES).map_err(|e| match e {
            SecretError::Io { source, .. } => SignerError::Io {
                path: p.clone(),
                source,
            },
            SecretError::TooLarge { .. } => SignerError::TooLarge { path: p.clone() },
            e @ SecretError::Exposed { .. } => SignerError::Exposed(e.to_string()),
        })?;
        let text = String::from_utf8(bytes).map_err(|_| SignerError::Format {
            path: p.clone(),
            detail: "not UTF-8 text".into(),
        })?;
        KeySigner::from_pem(&text).map_err(|detail| SignerError::Format { path: p, detail })
    }

    /// Parses a PEM private key. Errors describe the format problem, never the bytes.
    pub fn from_pem(text: &str) -> Result<KeySigner, String> {
        let (label, der) = pem_rfc7468_decode(text)?;
        let secret = match label.as_str() {
            "PRIVATE KEY" => {
                let info = pkcs8::PrivateKeyInfo::from_der(&der)
                    .map_err(|e| format!("not a PKCS#8 private key: {e}"))?;
                let oid = info.algorithm.oid;
                if oid == OID_ED25519 {
                    use ed25519_dalek::pkcs8::DecodePrivateKey;
                    Secret::Ed25519(
                        ed25519_dalek::SigningKey::from_pkcs8_der(&der)
                            .map_err(|e| format!("Ed25519 key: {e}"))?,
                    )
                } else if oid == OID_EC_PUBLIC_KEY {
                    use p256::pkcs8::DecodePrivateKey;
                    Secret::P256(
                        p256::ecdsa::SigningKey::from_pkcs8_der(&der)
                            .map_err(|e| format!("EC key (only P-256 is supported): {e}"))?,
                    )
                } else if oid == OID_RSA {
                    Secret::Rsa(
                        ring::signature::RsaKeyPair::from_pkcs8(&der)
                            .map_err(|e| format!("RSA key: {e}"))?,
                    )
                } else {
                    return Err(format!("unsupported key algorithm {oid}"));
                }
            }
            "EC PRIVATE KEY" => {
                let sk = p256::SecretKey::from_sec1_der(&der)
                    .map_err(|_| "EC key is not a valid SEC1 P-256 key".to_string())?;
                Secret::P256(p256::ecdsa::SigningKey::from(sk))
            }
            "RSA PRIVATE KEY" => Secret::Rsa(
                ring::signature::RsaKeyPair::from_der(&der)
                    .map_err(|e| format!("RSA key: {e}"))?,
            ),
            "ENCRYPTED PRIVATE KEY" => {
                return Err("encrypted private keys are not supported; decrypt it to a file readable only by the agent".into())
            }
            other => return Err(format!("PEM block {other:?} is not a private key")),
        };
        let spki = public_spki(&secret)?;
        let public = PublicKey::from_spki_der(&spki).map_err(|e| e.to_string())?;
        Ok(KeySigner { secret, public })
    }

    /// A fresh ed25519 key.
    pub fn generate_ed25519() -> Result<KeySigner, String> {
        let sk = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
        let secret = Secret::Ed25519(sk);
        let spki = public_spki(&secret)?;
        let public = PublicKey::from_spki_der(&spki).map_err(|e| e.to_string())?;
        Ok(KeySigner { secret, public })
    }

    /// The private key as PKCS#8 PEM (ed25519 keys only; used by `keygen`).
    pub fn to_pkcs8_pem(&self) -> Result<String, String> {
        match &self.secret {
            Secret::Ed25519(sk) => {
                use ed25519_dalek::pkcs8::EncodePrivateKey;
                sk.to_pkcs8_pem(pkcs8::LineEnding::LF)
                    .map(|z| z.to_string())
                    .map_err(|e| e.to_string())
            }
            _ => Err("only generated ed25519 keys are exported".into()),
        }
    }
}

fn public_spki(secret: &Secret) -> Result<Vec<u8>, String> {
    match secret {
        Secret::Ed25519(sk) => {
            use ed25519_dalek::pkcs8::EncodePublicKey;
            sk.verifying_key()
                .to_public_key_der()
                .map(|d| d.into_vec())
                .map_err(|e| e.to_string())
        }
        Secret::P256(sk) => {
            use p256::pkcs8::EncodePublicKey;
            sk.verifying_key()
                .to_public_key_der()
                .map(|d| d.into_vec())
                .map_err(|e| e.to_string())
        }
        Secret::Rsa(kp) => {
            use ring::signature::KeyPair;
            let pkcs1 = kp.public_key().as_ref();
            let info = spki::SubjectPublicKeyInfoOwned {
                algorithm: spki::AlgorithmIdentifierOwned {
                    oid: OID_RSA,
                    parameters: Some(pkcs8::der::asn1::Null.into()),
                },
                subject_public_key: BitString::from_bytes(pkcs1).map_err(|e| e.to_string())?,
            };
            info.to_der().map_err(|e| e.to_string())
        }
    }
}

/// Decodes one PEM block, returning its label and DER contents.
fn pem_rfc7468_decode(text: &str) -> Result<(String, Vec<u8>), String> {
    // Skip any leading text (OpenSSL writes "EC PARAMETERS" blocks before EC keys).
    let mut rest = text;
    loop {
        let start = rest
            .find("-----BEGIN ")
            .ok_or_else(|| "no PEM private key block found".to_string())?;
        let block = &rest[start..];
        let label_end = block[11..]
            .find("-----")
            .ok_or_else(|| "malformed PEM header".to_string())?;
        let label = &block[11..11 + label_end];
        let end_marker = format!("-----END {label}-----");
        let end = block
            .find(&end_marker)
            .ok_or_else(|| format!("PEM block {label:?} has no END line"))?;
        if label == "EC PARAMETERS" {
            rest = &block[end + end_marker.len()..];
            continue;
        }
        let full = &block[..end + end_marker.len()];
        let (l, der) = pkcs8::der::pem::decode_vec(full.as_bytes())
            .map_err(|e| format!("malformed PEM: {e}"))?;
        return Ok((l.to_string(), der));
    }
}

impl Signer for KeySigner {
    fn public_key(&self) -> &PublicKey {
        &self.public
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, SignerError> {
        match &self.secret {
            Secret::Ed25519(sk) => {
                use ed25519_dalek::Signer as _;
                Ok(sk.sign(msg).to_bytes().to_vec())
            }
            Secret::P256(sk) => {
                use p256::ecdsa::signature::Signer as _;
                let sig: p256::ecdsa::Signature = sk
                    .try_sign(msg)
                    .map_err(|e| SignerError::Sign(e.to_string()))?;
                Ok(sig.to_der().as_bytes().to_vec())
            }
            Secret::Rsa(kp) => {
                let rng = ring::rand::SystemRandom::new();
                let mut sig = vec![0u8; kp.public().modulus_len()];
                kp.sign(&ring::signature::RSA_PKCS1_SHA256, &rng, msg, &mut sig)
                    .map_err(|_| SignerError::Sign("RSA signing failed".into()))?;
                Ok(sig)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn openssl(args: &[&str]) -> Option<String> {
        let out = Command::new("openssl").args(args).output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn check(signer: &KeySigner) {
        let sig = signer.sign(b"hello").unwrap();
        signer.public_key().verify(b"hello", &sig).unwrap();
        assert!(signer.public_key().verify(b"hellp", &sig).is_err());
        let dbg = format!("{signer:?}");
        assert!(dbg.starts_with("KeySigner(PublicKey("), "{dbg}");
    }

    #[test]
    fn generated_ed25519_round_trips_through_pem() {
        let s = KeySigner::generate_ed25519().unwrap();
        let pem = s.to_pkcs8_pem().unwrap();
        let back = KeySigner::from_pem(&pem).unwrap();
        assert_eq!(back.public_key(), s.public_key());
        check(&back);
    }

    /// Keys in every format OpenSSL writes for mTLS deployments, made by the real
    /// `openssl` binary, sign verifiably.
    #[test]
    fn openssl_keys_in_every_format() {
        let dir = tempfile::tempdir().unwrap();
        let d = |n: &str| dir.path().join(n).display().to_string();
        let cases: Vec<(String, Vec<Vec<String>>)> = vec![
            (
                "ed.pem".into(),
                vec![vec![
                    "genpkey".into(),
                    "-algorithm".into(),
                    "ed25519".into(),
                    "-out".into(),
                    d("ed.pem"),
                ]],
            ),
            (
                "ec8.pem".into(),
                vec![vec![
                    "genpkey".into(),
                    "-algorithm".into(),
                    "EC".into(),
                    "-pkeyopt".into(),
                    "ec_paramgen_curve:P-256".into(),
                    "-out".into(),
                    d("ec8.pem"),
                ]],
            ),
            (
                "ec1.pem".into(),
                vec![vec![
                    "ecparam".into(),
                    "-name".into(),
                    "prime256v1".into(),
                    "-genkey".into(),
                    "-out".into(),
                    d("ec1.pem"),
                ]],
            ),
            (
                "rsa8.pem".into(),
                vec![vec![
                    "genpkey".into(),
                    "-algorithm".into(),
                    "RSA".into(),
                    "-pkeyopt".into(),
                    "rsa_keygen_bits:2048".into(),
                    "-out".into(),
                    d("rsa8.pem"),
                ]],
            ),
            (
                "rsa1.pem".into(),
                vec![vec![
                    "rsa".into(),
                    "-in".into(),
                    d("rsa8.pem"),
                    "-traditional".into(),
                    "-out".into(),
                    d("rsa1.pem"),
                ]],
            ),
        ];
        if openssl(&["version"]).is_none() {
            panic!("openssl is required for this test (apt-get install openssl)");
        }
        for (file, cmds) in cases {
            for c in cmds {
                let args: Vec<&str> = c.iter().map(String::as_str).collect();
                openssl(&args).unwrap_or_else(|| panic!("openssl {args:?} failed"));
            }
            let s =
                KeySigner::load(&dir.path().join(&file)).unwrap_or_else(|e| panic!("{file}: {e}"));
            check(&s);
            // The SPKI we derive is the one OpenSSL derives.
            let pub_pem = openssl(&["pkey", "-in", &d(&file), "-pubout"]).unwrap();
            let (_, der) = pkcs8::der::pem::decode_vec(pub_pem.as_bytes()).unwrap();
            assert_eq!(s.public_key().spki_der(), der.as_slice(), "{file}");
        }
    }

    #[test]
    fn bad_key_files_are_clear_errors() {
        for (text, want) in [
            ("", "no PEM private key block"),
            ("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "not a private key"),
            ("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "PKCS#8"),
            ("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n", "encrypted"),
            ("-----BEGIN PRIVATE KEY-----\nAAAA\n", "no END line"),
        ] {
            let err = KeySigner::from_pem(text).unwrap_err();
            assert!(err.contains(want), "{err:?} should mention {want:?}");
        }
    }

    #[test]
    fn finding09_world_readable_key_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("node.key");
        let k = KeySigner::generate_ed25519().unwrap();
        std::fs::write(&p, k.to_pkcs8_pem().unwrap()).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = KeySigner::load(&p).unwrap_err().to_string();
        assert!(
            e.contains(&p.display().to_string()) && e.contains("0644") && e.contains("chmod 600"),
            "{e}"
        );
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            KeySigner::load(&p).unwrap().public_key().fingerprint(),
            k.public_key().fingerprint()
        );
    }
}
