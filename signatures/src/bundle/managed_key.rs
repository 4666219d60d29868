//! Managed-key bundles: signed with a key the operator holds and trusts directly,
//! with no Fulcio certificate (`verificationMaterial.publicKey` carries only a hint).
//!
//! Trust comes from the key the caller passes ([`ManagedKey`]), never from the
//! bundle's hint. Everything else is the keyless path's: the same [`prepare`]
//! checks (size, media type, base64, every log entry from a log of the root with an
//! inclusion proof and checkpoint), the same `sigstore-verify` log checks (inclusion
//! proof, checkpoint signature, SET, entry consistency with this signature and key),
//! any RFC 3161 timestamp must verify, and no verified time may lie after `now`. A
//! key has no validity window, so no signing time is required.

use provenant_base::clock::UnixSecs;
use sha2::{Digest as _, Sha256};
use sigstore_verify::types::DerPublicKey;
use sigstore_verify::PublicKeyVerificationPolicy;

use super::{
    map_sigstore_error, prepare, rfc3339, signing_times, sigstore_artifact, Artifact, Instance,
    Material, Prepared, Statement, Subject, TimeSource, TrustRoot, VerifyError,
};

/// Largest PEM public key accepted. An RSA-4096 SPKI in PEM is under 1 KiB.
pub const MAX_KEY_BYTES: usize = 16 * 1024;

/// A public key the caller trusts to sign bundles (`PUBLIC KEY` PEM: ECDSA P-256 or
/// P-384, Ed25519, or RSA).
#[derive(Clone)]
pub struct ManagedKey {
    der: DerPublicKey,
    fingerprint: String,
}

impl std::fmt::Debug for ManagedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagedKey")
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

impl ManagedKey {
    /// Parse a `PUBLIC KEY` PEM (at most [`MAX_KEY_BYTES`]); the key algorithm must
    /// be one `sigstore-verify` verifies with.
    pub fn from_pem(pem: &[u8]) -> Result<Self, VerifyError> {
        if pem.len() > MAX_KEY_BYTES {
            return Err(VerifyError::InvalidKey(format!(
                "larger than {MAX_KEY_BYTES} bytes"
            )));
        }
        let text =
            std::str::from_utf8(pem).map_err(|_| VerifyError::InvalidKey("not UTF-8".into()))?;
        let der =
            DerPublicKey::from_pem(text).map_err(|e| VerifyError::InvalidKey(e.to_string()))?;
        sigstore_verify::crypto::KeyAlgorithm::from_spki(&der)
            .map_err(|e| VerifyError::InvalidKey(e.to_string()))?;
        let fingerprint = format!("sha256:{}", hex::encode(Sha256::digest(der.as_bytes())));
        Ok(Self { der, fingerprint })
    }

    /// `sha256:HEX` of the key's DER SubjectPublicKeyInfo.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

/// A managed-key bundle that verified under a trusted root with the caller's key.
/// Only [`verify_bundle_with_key`] constructs one.
#[derive(Debug, Clone)]
pub struct VerifiedKeyBundle {
    media_type: String,
    key_fingerprint: String,
    signed_at: Option<(i64, TimeSource)>,
    statement: Option<Statement>,
}

impl VerifiedKeyBundle {
    /// The bundle's media type.
    pub fn media_type(&self) -> &str {
        &self.media_type
    }
    /// The fingerprint of the key it verified with ([`ManagedKey::fingerprint`]).
    pub fn key_fingerprint(&self) -> &str {
        &self.key_fingerprint
    }
    /// The earliest verified signing time (unix seconds) and its source, if the
    /// bundle carries one (a SET or an RFC 3161 timestamp).
    pub fn signed_at(&self) -> Option<(i64, TimeSource)> {
        self.signed_at
    }
    /// [`Self::signed_at`] as RFC 3339 (UTC).
    pub fn signed_at_rfc3339(&self) -> Option<String> {
        self.signed_at.map(|(t, _)| rfc3339(t))
    }
    /// The in-toto statement (DSSE bundles), `None` for message signatures.
    pub fn statement(&self) -> Option<&Statement> {
        self.statement.as_ref()
    }
    /// The predicate type, if a statement.
    pub fn predicate_type(&self) -> Option<&str> {
        self.statement.as_ref().map(|s| s.predicate_type.as_str())
    }
    /// The subjects, empty for message signatures.
    pub fn subjects(&self) -> &[Subject] {
        self.statement
            .as_ref()
            .map_or(&[], |s| s.subjects.as_slice())
    }
}

/// Verify one managed-key bundle offline at `now` (unix seconds) with `key`.
///
/// A bundle with a certificate is refused (`NotManagedKey`): keyless bundles go
/// through [`verify_bundle`](super::verify_bundle) and its identity policy.
pub fn verify_bundle_with_key(
    bundle: &[u8],
    artifact: Artifact<'_>,
    root: &TrustRoot,
    key: &ManagedKey,
    now: UnixSecs,
) -> Result<VerifiedKeyBundle, VerifyError> {
    let Prepared {
        media_type,
        parsed,
        statement,
    } = prepare(bundle, root, Material::ManagedKey)?;
    let policy = match root.instance {
        Instance::File => PublicKeyVerificationPolicy::new(key.der.clone()),
        // As on the keyless path: GitHub's instance has no log to check.
        Instance::GitHub => PublicKeyVerificationPolicy::new(key.der.clone()).skip_tlog_unsafe(),
    };
    let ss_artifact = sigstore_artifact(artifact, statement.as_ref())?;
    let result = root
        .verifier
        .verify(ss_artifact, &parsed, &policy)
        .map_err(map_sigstore_error)?;
    // Fail closed on what sigstore-verify reports it did.
    if root.instance == Instance::File && !result.tlog_verified() {
        return Err(VerifyError::Other(
            "transparency log verification did not run".into(),
        ));
    }
    let signed_at = signing_times(&result, &parsed, false, now)?
        .into_iter()
        .min_by_key(|(t, _)| *t);
    Ok(VerifiedKeyBundle {
        media_type,
        key_fingerprint: key.fingerprint.clone(),
        signed_at,
        statement,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_strictly() {
        let pem = include_bytes!(
            "../../tests/data/sigstore-conformance/bundle-verify/managed-key-happy-path/key.pub"
        );
        let k = ManagedKey::from_pem(pem).unwrap();
        assert!(k.fingerprint().starts_with("sha256:"));
        assert_eq!(k.fingerprint().len(), 7 + 64);
        for bad in [
            &b""[..],
            b"not pem",
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        ] {
            assert_eq!(ManagedKey::from_pem(bad).unwrap_err().kind(), "InvalidKey");
        }
        let big = vec![b'A'; MAX_KEY_BYTES + 1];
        assert_eq!(ManagedKey::from_pem(&big).unwrap_err().kind(), "InvalidKey");
    }
}
