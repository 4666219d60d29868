//! DSSE envelopes (<https://github.com/secure-systems-lab/dsse>, protocol v1).
//!
//! The signature covers `PAE(payloadType, payload)`:
//! `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, where LEN is the ASCII
//! decimal byte length with no leading zeros. The envelope is JSON with base64
//! fields; both the standard and URL-safe alphabets are accepted on input, as the
//! spec allows, and standard base64 with padding is produced on output.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};

use crate::codec::b64;
use crate::error::EvidenceError;
use crate::keys::PublicKey;
use crate::limits::*;

/// Pre-Authentication Encoding, exactly as DSSE v1 defines it.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let t = payload_type.as_bytes();
    let tl = t.len().to_string();
    let pl = payload.len().to_string();
    let mut out = Vec::with_capacity(6 + 4 + tl.len() + t.len() + pl.len() + payload.len());
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(tl.as_bytes());
    out.push(b' ');
    out.extend_from_slice(t);
    out.push(b' ');
    out.extend_from_slice(pl.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload);
    out
}

/// One signature in an envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeSignature {
    /// Names the signing key (the agent puts its fingerprint); unauthenticated, a hint.
    pub keyid: String,
    /// The signature bytes over the PAE.
    pub sig: Vec<u8>,
}

/// A DSSE envelope with its payload and signatures decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The media type of `payload` (e.g. [`REPORT_PAYLOAD_TYPE`](crate::REPORT_PAYLOAD_TYPE)).
    pub payload_type: String,
    /// The exact signed bytes.
    pub payload: Vec<u8>,
    /// One or more signatures over `PAE(payload_type, payload)`.
    pub signatures: Vec<EnvelopeSignature>,
}

#[derive(Serialize, Deserialize)]
struct WireSignature {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    keyid: String,
    sig: String,
}

#[derive(Serialize, Deserialize)]
struct WireEnvelope {
    payload: String,
    #[serde(rename = "payloadType")]
    payload_type: String,
    signatures: Vec<WireSignature>,
}

impl Serialize for Envelope {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        WireEnvelope {
            payload: b64::encode(&self.payload),
            payload_type: self.payload_type.clone(),
            signatures: self
                .signatures
                .iter()
                .map(|sig| WireSignature {
                    keyid: sig.keyid.clone(),
                    sig: b64::encode(&sig.sig),
                })
                .collect(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Envelope {
    /// Deserialising through serde applies the same bounds as [`Envelope::from_json`],
    /// except the outer byte limit, which the caller's body limit enforces.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let wire = WireEnvelope::deserialize(d)?;
        Envelope::from_wire(wire).map_err(serde::de::Error::custom)
    }
}

impl Envelope {
    /// Builds and signs an envelope. `sign` receives the PAE bytes.
    pub fn sign<E>(
        payload_type: &str,
        payload: Vec<u8>,
        keyid: &str,
        sign: impl FnOnce(&[u8]) -> Result<Vec<u8>, E>,
    ) -> Result<Envelope, E> {
        let sig = sign(&pae(payload_type, &payload))?;
        Ok(Envelope {
            payload_type: payload_type.to_owned(),
            payload,
            signatures: vec![EnvelopeSignature {
                keyid: keyid.to_owned(),
                sig,
            }],
        })
    }

    /// Parses an envelope from JSON bytes, enforcing every bound.
    pub fn from_json(bytes: &[u8]) -> Result<Envelope, EvidenceError> {
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(EvidenceError::TooLarge {
                what: "envelope",
                len: bytes.len(),
                max: MAX_ENVELOPE_BYTES,
            });
        }
        let wire: WireEnvelope =
            serde_json::from_slice(bytes).map_err(|e| EvidenceError::Json {
                what: "envelope",
                detail: e.to_string(),
            })?;
        Envelope::from_wire(wire)
    }

    fn from_wire(wire: WireEnvelope) -> Result<Envelope, EvidenceError> {
        if wire.payload_type.len() > MAX_PAYLOAD_TYPE_LEN {
            return Err(EvidenceError::TooLarge {
                what: "payloadType",
                len: wire.payload_type.len(),
                max: MAX_PAYLOAD_TYPE_LEN,
            });
        }
        // base64 is 4/3 of the data; check before decoding so we never allocate more.
        let max_b64 = MAX_PAYLOAD_BYTES / 3 * 4 + 4;
        if wire.payload.len() > max_b64 {
            return Err(EvidenceError::TooLarge {
                what: "payload",
                len: wire.payload.len() / 4 * 3,
                max: MAX_PAYLOAD_BYTES,
            });
        }
        if wire.signatures.is_empty() {
            return Err(EvidenceError::NoSignature);
        }
        if wire.signatures.len() > MAX_SIGNATURES {
            return Err(EvidenceError::TooManySignatures {
                count: wire.signatures.len(),
                max: MAX_SIGNATURES,
            });
        }
        let payload = b64::decode("payload", &wire.payload)?;
        let mut signatures = Vec::with_capacity(wire.signatures.len());
        for s in wire.signatures {
            if s.keyid.len() > MAX_KEYID_LEN {
                return Err(EvidenceError::TooLarge {
                    what: "keyid",
                    len: s.keyid.len(),
                    max: MAX_KEYID_LEN,
                });
            }
            if s.sig.len() > MAX_SIGNATURE_BYTES / 3 * 4 + 4 {
                return Err(EvidenceError::TooLarge {
                    what: "signature",
                    len: s.sig.len() / 4 * 3,
                    max: MAX_SIGNATURE_BYTES,
                });
            }
            signatures.push(EnvelopeSignature {
                keyid: s.keyid,
                sig: b64::decode("signature", &s.sig)?,
            });
        }
        Ok(Envelope {
            payload_type: wire.payload_type,
            payload,
            signatures,
        })
    }

    /// Serialises to compact JSON.
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising plain strings into a Vec cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The PAE bytes this envelope's signatures cover.
    pub fn pae(&self) -> Vec<u8> {
        pae(&self.payload_type, &self.payload)
    }

    /// SHA-256 over the PAE bytes: the identity of a signed statement, used for the
    /// pulse hash chain. Two envelopes with the same payload share it, whatever their
    /// signatures, so re-signing cannot fork the chain.
    pub fn digest(&self) -> [u8; 32] {
        Sha256::digest(self.pae()).into()
    }

    /// Checks the payload type, then that at least one signature verifies under `key`.
    pub fn verify(
        &self,
        expected_type: &'static str,
        key: &PublicKey,
    ) -> Result<(), EvidenceError> {
        self.check_type(expected_type)?;
        self.check_signatures(&self.pae(), key)
    }

    fn check_type(&self, expected: &'static str) -> Result<(), EvidenceError> {
        if self.payload_type != expected {
            return Err(EvidenceError::WrongPayloadType {
                expected,
                got: self.payload_type.clone(),
            });
        }
        Ok(())
    }

    /// At least one signature must verify under `key` over `pae` (this envelope's).
    fn check_signatures(&self, pae: &[u8], key: &PublicKey) -> Result<(), EvidenceError> {
        if self.signatures.is_empty() {
            return Err(EvidenceError::NoSignature);
        }
        if self
            .signatures
            .iter()
            .any(|s| key.verify(pae, &s.sig).is_ok())
        {
            Ok(())
        } else {
            Err(EvidenceError::BadSignature {
                fingerprint: key.fingerprint(),
            })
        }
    }

    /// Decodes the payload as `T` without verifying anything. Use it only to route
    /// (find which key to verify with), never to decide.
    pub fn peek<T: Payload>(&self) -> Result<T, EvidenceError> {
        self.check_type(T::PAYLOAD_TYPE)?;
        decode_payload::<T>(&self.payload)
    }

    /// Decodes the payload once, for routing, keeping it tied to this envelope so
    /// that [`Unverified::verify`] can turn it into a [`Verified`] without decoding
    /// again. Nothing in an `Unverified` may be trusted before that.
    pub fn decode<T: Payload>(&self) -> Result<Unverified<'_, T>, EvidenceError> {
        Ok(Unverified {
            value: self.peek()?,
            envelope: self,
        })
    }

    /// Verifies the envelope under `key`, then decodes its payload: a tampered
    /// payload is reported as a bad signature, not as whatever it decodes to.
    pub fn open<T: Payload>(&self, key: &PublicKey) -> Result<Verified<T>, EvidenceError> {
        self.check_type(T::PAYLOAD_TYPE)?;
        let pae = self.pae();
        self.check_signatures(&pae, key)?;
        let value = decode_payload::<T>(&self.payload)?;
        Ok(Verified {
            value,
            digest: Sha256::digest(&pae).into(),
            key_fingerprint: key.fingerprint(),
        })
    }
}

/// A payload decoded from an envelope whose signature has not been checked yet.
#[derive(Debug)]
pub struct Unverified<'e, T> {
    value: T,
    envelope: &'e Envelope,
}

impl<T> Unverified<'_, T> {
    /// The claimed payload: use it only to decide which key to verify with.
    pub fn claimed(&self) -> &T {
        &self.value
    }

    /// Checks the envelope's signature under `key`. The only way to get a [`Verified`].
    pub fn verify(self, key: &PublicKey) -> Result<Verified<T>, EvidenceError>
    where
        T: Payload,
    {
        let pae = self.envelope.pae();
        self.envelope.check_signatures(&pae, key)?;
        Ok(Verified {
            value: self.value,
            digest: Sha256::digest(&pae).into(),
            key_fingerprint: key.fingerprint(),
        })
    }
}

/// A payload type carried in an envelope.
pub trait Payload: DeserializeOwned {
    /// The `payloadType` an envelope of it must declare.
    const PAYLOAD_TYPE: &'static str;
    /// Largest payload decoded as this type.
    const MAX_BYTES: usize;
    /// Field-level checks beyond what serde does (lengths, identifiers, versions).
    fn validate(&self) -> Result<(), EvidenceError>;
}

fn decode_payload<T: Payload>(payload: &[u8]) -> Result<T, EvidenceError> {
    if payload.len() > T::MAX_BYTES {
        return Err(EvidenceError::TooLarge {
            what: "payload",
            len: payload.len(),
            max: T::MAX_BYTES,
        });
    }
    let value: T = serde_json::from_slice(payload).map_err(|e| EvidenceError::Json {
        what: "payload",
        detail: e.to_string(),
    })?;
    value.validate()?;
    Ok(value)
}

/// A payload whose envelope signature was checked. Only [`Envelope::open`] and
/// [`Unverified::verify`] build one.
#[derive(Debug, Clone)]
pub struct Verified<T> {
    value: T,
    digest: [u8; 32],
    key_fingerprint: String,
}

impl<T> Verified<T> {
    /// The verified payload.
    pub fn value(&self) -> &T {
        &self.value
    }
    /// The verified payload, by value.
    pub fn into_value(self) -> T {
        self.value
    }
    /// SHA-256 of the envelope's PAE bytes.
    pub fn digest(&self) -> [u8; 32] {
        self.digest
    }
    /// Fingerprint of the key that verified it.
    pub fn key_fingerprint(&self) -> &str {
        &self.key_fingerprint
    }
}

impl<T> std::ops::Deref for Verified<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

/// The TDX REPORTDATA binding: SHA-512 over the envelope's PAE bytes.
pub fn report_data(envelope: &Envelope) -> [u8; 64] {
    Sha512::digest(envelope.pae()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_dsse_spec_example() {
        // The worked example from the DSSE protocol document.
        let got = pae("http://example.com/HelloWorld", b"hello world");
        assert_eq!(
            got,
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ".to_vec());
    }

    #[test]
    fn accepts_both_base64_alphabets_with_or_without_padding() {
        for (payload, sig) in [("aGk=", "_-8="), ("aGk", "/+8"), ("aGk=", "/+8=")] {
            let json = format!(
                r#"{{"payload":"{payload}","payloadType":"t","signatures":[{{"sig":"{sig}"}}]}}"#
            );
            let env = Envelope::from_json(json.as_bytes()).unwrap();
            assert_eq!(env.payload, b"hi");
            assert_eq!(env.signatures[0].sig, vec![0xff, 0xef]);
        }
    }

    #[test]
    fn rejects_bad_input_with_typed_errors() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"not json".to_vec(), "MalformedJson"),
            (
                br#"{"payload":"!!","payloadType":"t","signatures":[{"sig":"AA=="}]}"#.to_vec(),
                "BadBase64",
            ),
            (
                br#"{"payload":"AA==","payloadType":"t","signatures":[]}"#.to_vec(),
                "NoSignature",
            ),
            (
                br#"{"payload":"AA==","payloadType":"t","signatures":[{"sig":"*"}]}"#.to_vec(),
                "BadBase64",
            ),
            (vec![b' '; MAX_ENVELOPE_BYTES + 1], "TooLarge"),
        ];
        for (input, kind) in cases {
            let err = Envelope::from_json(&input).unwrap_err();
            assert_eq!(err.kind(), kind, "{err}");
        }
        let many = format!(
            r#"{{"payload":"AA==","payloadType":"t","signatures":[{}]}}"#,
            [r#"{"sig":"AA=="}"#; MAX_SIGNATURES + 1].join(",")
        );
        assert_eq!(
            Envelope::from_json(many.as_bytes()).unwrap_err().kind(),
            "TooManySignatures"
        );
    }

    #[test]
    fn round_trips_through_json() {
        let env = Envelope {
            payload_type: "application/x".into(),
            payload: (0u8..=255).collect(),
            signatures: vec![EnvelopeSignature {
                keyid: "k".into(),
                sig: vec![1, 2, 3],
            }],
        };
        assert_eq!(Envelope::from_json(&env.to_json()).unwrap(), env);
    }

    #[test]
    fn report_data_is_sha512_of_pae() {
        let env = Envelope {
            payload_type: "t".into(),
            payload: b"x".to_vec(),
            signatures: vec![],
        };
        let want: [u8; 64] = Sha512::digest(b"DSSEv1 1 t 1 x").into();
        assert_eq!(report_data(&env), want);
    }
}
