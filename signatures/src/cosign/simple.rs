//! cosign's simple-signing signatures: the signature over the payload, then the Rekor
//! SET, the keyless chain and identity, and the payload's content.

use provenant_base::clock::UnixSecs;
use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use der::{Decode as _, Encode as _};
use policy::identity::IdentityClaims;

use super::chain::{cert_claims, verify_chain, Leaf};
use super::keys::{pem_blocks, verify_spki};
use super::rekor_set::verify_set;
use super::trust::{check_scope, Mode};
use super::{
    truncate, ImageSigError, ImageTrust, VerifiedImageSignature, ANNOTATION_BUNDLE,
    ANNOTATION_CERTIFICATE, ANNOTATION_CHAIN, ANNOTATION_SIGNATURE, COSIGN_SIGNATURE_TYPE,
    MAX_SIGNATURE_BYTES,
};
use crate::oci::Sha256Digest;

pub(super) fn verify_simple(
    payload: &[u8],
    annotations: &BTreeMap<String, String>,
    digest: &Sha256Digest,
    trust: &ImageTrust,
    now: UnixSecs,
) -> Result<VerifiedImageSignature, ImageSigError> {
    // 1. The signature over the payload bytes.
    let sig_b64 = annotations
        .get(ANNOTATION_SIGNATURE)
        .ok_or(ImageSigError::MissingSignature)?;
    let sig = B64
        .decode(sig_b64.trim().as_bytes())
        .map_err(|e| ImageSigError::Malformed(format!("signature is not base64: {e}")))?;
    if sig.is_empty() || sig.len() > MAX_SIGNATURE_BYTES {
        return Err(ImageSigError::Malformed(format!(
            "signature of {} bytes",
            sig.len()
        )));
    }
    let mut signer;
    let mut leaf = None;
    // The DER the Rekor entry must name: the key's SPKI, or the leaf certificate.
    let logged_der: Vec<u8>;
    match &trust.mode {
        Mode::Keys(keys) => {
            let k = keys
                .iter()
                .find(|k| k.verify(payload, &sig))
                .ok_or_else(|| {
                    ImageSigError::BadSignature(format!(
                        "no trusted key ({} configured) verifies the signature",
                        keys.len()
                    ))
                })?;
            signer = format!("key:{}", k.fingerprint);
            logged_der = k.spki_der.clone();
        }
        Mode::Keyless(_) => {
            let pem = annotations
                .get(ANNOTATION_CERTIFICATE)
                .ok_or(ImageSigError::MissingCertificate)?;
            let der = pem_blocks(pem.as_bytes(), "CERTIFICATE")
                .map_err(ImageSigError::MalformedCertificate)?
                .into_iter()
                .next()
                .ok_or_else(|| ImageSigError::MalformedCertificate("no certificate".into()))?;
            let cert = x509_cert::Certificate::from_der(&der)
                .map_err(|e| ImageSigError::MalformedCertificate(e.to_string()))?;
            let spki_der = cert
                .tbs_certificate
                .subject_public_key_info
                .to_der()
                .map_err(|e| ImageSigError::MalformedCertificate(e.to_string()))?;
            if !verify_spki(&spki_der, payload, &sig) {
                return Err(ImageSigError::BadSignature(
                    "the certificate's key does not verify the signature".into(),
                ));
            }
            signer = String::new();
            logged_der = der.clone();
            leaf = Some((Leaf { der, spki_der }, cert));
        }
    }

    // 2. The Rekor SET.
    let logged = match annotations.get(ANNOTATION_BUNDLE) {
        None if trust.require_rekor => return Err(ImageSigError::MissingRekorSet),
        None => None,
        Some(_) if trust.rekor_keys.is_empty() => None,
        Some(b) => Some(verify_set(
            b,
            payload,
            &sig,
            &logged_der,
            leaf.as_ref().map(|(l, _)| l),
            trust,
            now,
        )?),
    };

    let integrated_time = logged.map(|(t, _)| t);
    // 3. Keyless: the chain at the integrated time, then the identity.
    let mut issuer = None;
    let mut source_repository = None;
    let mut source_ref = None;
    if let (Mode::Keyless(k), Some((leaf, cert))) = (&trust.mode, &leaf) {
        let t = integrated_time.ok_or(ImageSigError::MissingRekorSet)?;
        let chain = match annotations.get(ANNOTATION_CHAIN) {
            Some(p) => pem_blocks(p.as_bytes(), "CERTIFICATE").map_err(|e| {
                ImageSigError::MalformedCertificate(format!("{ANNOTATION_CHAIN}: {e}"))
            })?,
            None => Vec::new(),
        };
        verify_chain(&leaf.der, &chain, &k.cas, t)?;
        let claims = cert_claims(cert)?;
        let ci = IdentityClaims {
            issuer: claims.issuer.as_deref(),
            san: Some(&claims.san),
            source_repository_uri: claims.source_repository.as_deref(),
            source_repository_ref: claims.source_ref.as_deref(),
            runner_environment: claims.runner_environment.as_deref(),
            build_signer_uri: claims.build_signer_uri.as_deref(),
            predicate_type: None,
            subject_digests: Vec::new(),
        };
        k.identity.evaluate(&ci)?;
        signer = claims.san;
        issuer = claims.issuer;
        source_repository = claims.source_repository;
        source_ref = claims.source_ref;
    }

    // 4. The payload's content.
    let docker_reference = check_payload(payload, digest, trust)?;
    Ok(VerifiedImageSignature {
        digest: digest.to_string(),
        docker_reference: Some(docker_reference),
        keyless: trust.is_keyless(),
        signer,
        issuer,
        source_repository,
        source_ref,
        integrated_time,
        rekor_log_index: logged.map(|(_, i)| i),
    })
}

fn check_payload(
    payload: &[u8],
    digest: &Sha256Digest,
    trust: &ImageTrust,
) -> Result<String, ImageSigError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Identity {
        #[serde(rename = "docker-reference")]
        docker_reference: String,
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Image {
        #[serde(rename = "docker-manifest-digest")]
        docker_manifest_digest: String,
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Critical {
        identity: Identity,
        image: Image,
        #[serde(rename = "type")]
        kind: String,
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Payload {
        critical: Critical,
        #[serde(default)]
        #[allow(dead_code)]
        optional: Option<serde_json::Value>,
    }
    let p: Payload = serde_json::from_slice(payload)
        .map_err(|e| ImageSigError::InvalidPayload(format!("not a simple-signing payload: {e}")))?;
    if p.critical.kind != COSIGN_SIGNATURE_TYPE {
        return Err(ImageSigError::InvalidPayload(format!(
            "type {:?}, expected {COSIGN_SIGNATURE_TYPE:?}",
            truncate(&p.critical.kind)
        )));
    }
    if p.critical.image.docker_manifest_digest != digest.as_str() {
        return Err(ImageSigError::DigestMismatch {
            expected: digest.to_string(),
            got: truncate(&p.critical.image.docker_manifest_digest),
        });
    }
    let reference = p.critical.identity.docker_reference;
    check_scope(trust, &reference)?;
    Ok(reference)
}
