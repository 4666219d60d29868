//! A Sigstore bundle as an image signature: verified with [`crate::verify_bundle`], then
//! it must be a statement that says "this image is ours" about this digest.

use super::trust::{check_scope, Mode};
use super::{truncate, ImageSigError, ImageTrust, VerifiedImageSignature};
use crate::oci::Sha256Digest;
use crate::{Artifact, ArtifactDigest};
use provenant_base::clock::UnixSecs;

/// In-toto predicate types a bundle may carry to count as an image signature.
pub const IMAGE_PREDICATE_TYPES: &[&str] = &[
    "https://sigstore.dev/cosign/sign/v1",
    "https://slsa.dev/provenance/v1",
];

pub(super) fn verify_bundle_sig(
    bundle: &[u8],
    digest: &Sha256Digest,
    trust: &ImageTrust,
    now: UnixSecs,
) -> Result<VerifiedImageSignature, ImageSigError> {
    let Mode::Keyless(k) = &trust.mode else {
        return Err(ImageSigError::Unsupported(
            "Sigstore bundles are accepted for keyless trust only".into(),
        ));
    };
    let Some(root) = &k.bundle_root else {
        return Err(ImageSigError::Unsupported(
            "Sigstore bundles need a trusted_root.json (a Fulcio CA file is not enough)".into(),
        ));
    };
    let d = ArtifactDigest::parse(digest.as_str())?;
    let v = crate::verify_bundle(bundle, Artifact::Digest(&d), root, &k.identity, now)?;
    let Some(st) = v.statement() else {
        return Err(ImageSigError::Unsupported(
            "message-signature bundles are not accepted for images (a DSSE statement naming the image digest is)"
                .into(),
        ));
    };
    // Only statements that say "this image is ours": cosign's signature predicate, or
    // build provenance. An SBOM or a vulnerability scan the same workflow wrote about
    // an image (say, a base image it scanned) is not a signature of it.
    if !IMAGE_PREDICATE_TYPES.contains(&st.predicate_type.as_str()) {
        return Err(ImageSigError::Unsupported(format!(
            "predicate type {:?} is not an image signature (accepted: {})",
            truncate(&st.predicate_type),
            IMAGE_PREDICATE_TYPES.join(", ")
        )));
    }
    let hex_part = digest.hex();
    let subject = st
        .subjects
        .iter()
        .find(|s| s.digest.get("sha256").map(String::as_str) == Some(hex_part))
        .ok_or_else(|| ImageSigError::DigestMismatch {
            expected: digest.to_string(),
            got: st
                .subjects
                .first()
                .and_then(|s| s.digest.get("sha256"))
                .map(|h| format!("sha256:{}", truncate(h)))
                .unwrap_or_else(|| "(no sha256 subject)".into()),
        })?;
    check_scope(trust, &subject.name)?;
    Ok(VerifiedImageSignature {
        digest: digest.to_string(),
        docker_reference: (!subject.name.is_empty()).then(|| subject.name.clone()),
        keyless: true,
        signer: v.san().to_owned(),
        issuer: Some(v.issuer().to_owned()),
        source_repository: v.fulcio().source_repository_uri.clone(),
        source_ref: v.fulcio().source_repository_ref.clone(),
        integrated_time: Some(v.signed_at()),
        rekor_log_index: v.log_indexes().first().copied(),
    })
}
