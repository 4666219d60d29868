//! Offline verification of container image signatures: cosign's legacy
//! simple-signing signatures (the `sha256-<hex>.sig` tag, and containers/image's
//! stored `sigstore-json` files) and Sigstore bundles naming the image digest.
//!
//! # What is checked
//!
//! For a [`ImageSignature::SimpleSigning`] signature, in this order (the
//! cryptography first, so a content error always describes an authentic signature):
//!
//! 1. bounds: payload, each annotation and their number;
//! 2. the signature (`dev.cosignproject.cosign/signature`, base64 ASN.1/raw) over
//!    the exact payload bytes, with a trusted cosign key (key rules), or with the
//!    key of the Fulcio leaf in `dev.sigstore.cosign/certificate` (keyless rules);
//! 3. the Rekor SET (`dev.sigstore.cosign/bundle`): the log key named by `logID`
//!    (SHA-256 of its DER SPKI) is trusted and valid at `integratedTime`, its ECDSA
//!    signature covers the canonical JSON `{"body","integratedTime","logID",
//!    "logIndex"}`, and the body is a `hashedrekord` 0.0.1 entry recording
//!    sha256(payload), the same signature and the same key or certificate. A
//!    missing SET is refused when Rekor is required (always for keyless), and an
//!    `integratedTime` after `now` is refused;
//! 4. keyless: the leaf chains (through `dev.sigstore.cosign/chain` or the trusted
//!    intermediates) to a trusted Fulcio CA whose window contains the integrated
//!    time, with the code-signing EKU, every certificate valid at the integrated
//!    time; then its issuer, SAN and Fulcio extensions meet the identity policy
//!    ([`policy::identity`]);
//! 5. the payload: `critical.type` is `cosign container image signature`,
//!    `critical.image.docker-manifest-digest` equals the image digest, and (for
//!    trust loaded from a policy rule) `critical.identity.docker-reference` lies in
//!    the rule's scope.
//!
//! For a [`ImageSignature::Bundle`] the bundle is verified with
//! [`crate::verify_bundle`] against the image digest under the rule's
//! `trusted_root.json` and identity policy; it must be a DSSE in-toto statement with
//! a subject of that digest whose name lies in the rule's scope (what
//! `actions/attest` with `push-to-registry` and cosign's new bundle format write).
//!
//! Not checked for simple-signing signatures: the leaf's embedded SCT (neither
//! containers/image nor cosign's legacy path require it) and Rekor inclusion proofs
//! (the legacy format carries only the SET).

mod bundle;
mod chain;
mod error;
mod file;
mod keys;
mod rekor_set;
mod simple;
#[cfg(test)]
mod tests;
mod trust;

pub use bundle::IMAGE_PREDICATE_TYPES;
pub use error::{ImageSigError, ImageTrustError};
pub use file::{encode_signature_file, parse_signature_file};
pub use trust::{ImageTrust, ImageTrustParts, KeylessIdentity};

use crate::image::ImageSignature;
use crate::oci::Sha256Digest;
use bundle::verify_bundle_sig;
use file::check_bounds;
use provenant_base::clock::UnixSecs;
use simple::verify_simple;

/// The simple-signing layer media type (and `mimeType` of a stored signature file).
pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The payload's `critical.type`.
pub const COSIGN_SIGNATURE_TYPE: &str = "cosign container image signature";
/// Annotation: the base64 signature over the payload.
pub const ANNOTATION_SIGNATURE: &str = "dev.cosignproject.cosign/signature";
/// Annotation: the Fulcio leaf certificate, PEM.
pub const ANNOTATION_CERTIFICATE: &str = "dev.sigstore.cosign/certificate";
/// Annotation: the Fulcio chain (intermediates, root), PEM.
pub const ANNOTATION_CHAIN: &str = "dev.sigstore.cosign/chain";
/// Annotation: the Rekor bundle (SET and entry), JSON.
pub const ANNOTATION_BUNDLE: &str = "dev.sigstore.cosign/bundle";
/// containers/image's stored signature file prefix.
pub const SIGSTORE_JSON_PREFIX: &[u8] = b"\x00sigstore-json\n";

/// Largest signature file [`parse_signature_file`] accepts (a bundle is at most
/// [`crate::MAX_BUNDLE_BYTES`]; a simple-signing file is a few KiB).
pub const MAX_SIGNATURE_FILE_BYTES: usize = crate::MAX_BUNDLE_BYTES + 64 * 1024;
/// Largest simple-signing payload (cosign's are ~250 bytes plus `optional`).
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;
/// Largest single annotation value (a certificate chain is a few KiB).
pub const MAX_ANNOTATION_BYTES: usize = 256 * 1024;
/// Most annotations on one signature layer.
pub const MAX_ANNOTATIONS: usize = 64;
/// Most certificates in a `dev.sigstore.cosign/chain` annotation or a CA file.
pub const MAX_CHAIN_CERTS: usize = 16;
/// Largest key, certificate or CA file [`ImageTrust::load`] reads.
pub const MAX_TRUST_FILE_BYTES: usize = 1024 * 1024;
/// Largest decoded signature (RSA-8192 is 1024 bytes).
const MAX_SIGNATURE_BYTES: usize = 2048;

/// A signature that verified. Only this module constructs one.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct VerifiedImageSignature {
    /// The image digest, `sha256:<hex>`.
    pub digest: String,
    /// The signed repository (payload `docker-reference`, or the subject's name).
    pub docker_reference: Option<String>,
    /// A Fulcio certificate identity rather than a key.
    pub keyless: bool,
    /// The certificate SAN (email or URI), or `key:sha256:<fingerprint of DER SPKI>`.
    pub signer: String,
    /// The OIDC issuer (keyless).
    pub issuer: Option<String>,
    /// Fulcio source repository extension (`.12`).
    pub source_repository: Option<String>,
    /// Fulcio source repository ref extension (`.14`).
    pub source_ref: Option<String>,
    /// The Rekor integrated time (or the bundle's verified signing time), unix seconds.
    pub integrated_time: Option<i64>,
    /// The Rekor entry's log index, where the signature was logged.
    pub rekor_log_index: Option<u64>,
}

fn truncate(s: &str) -> String {
    s.chars().take(200).collect()
}

/// The image digest a caller gives: `sha256:<64 hex>`, uppercase hex accepted and
/// lowercased (as it always has been here; the registry client takes only lowercase).
fn image_digest(digest: &str) -> Result<Sha256Digest, ImageSigError> {
    Sha256Digest::parse_ignore_case(digest)
        .map_err(|_| ImageSigError::InvalidDigest(truncate(digest)))
}

/// Verifies one signature of the image `digest` (`sha256:<hex>`) under `trust` at
/// `now`. See the module doc for every check. Never panics.
pub fn verify_image_signature(
    sig: &ImageSignature,
    digest: &str,
    trust: &ImageTrust,
    now: UnixSecs,
) -> Result<VerifiedImageSignature, ImageSigError> {
    let digest = image_digest(digest)?;
    check_bounds(sig)?;
    match sig {
        ImageSignature::SimpleSigning {
            payload,
            annotations,
        } => verify_simple(payload, annotations, &digest, trust, now),
        ImageSignature::Bundle(b) => verify_bundle_sig(b, &digest, trust, now),
    }
}

/// Verifies each signature in turn and returns the first that verifies; otherwise
/// the most informative refusal (a verified signature with the wrong digest or
/// identity before a broken one; the first on ties). No signatures: `Unsigned`.
pub fn verify_any(
    sigs: &[ImageSignature],
    digest: &str,
    trust: &ImageTrust,
    now: UnixSecs,
) -> Result<VerifiedImageSignature, ImageSigError> {
    let mut best: Option<ImageSigError> = None;
    for s in sigs {
        match verify_image_signature(s, digest, trust, now) {
            Ok(v) => return Ok(v),
            Err(e) => {
                if best
                    .as_ref()
                    .is_none_or(|b| e.informativeness() > b.informativeness())
                {
                    best = Some(e);
                }
            }
        }
    }
    Err(best.unwrap_or(ImageSigError::Unsigned))
}
