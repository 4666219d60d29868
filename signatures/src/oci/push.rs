//! The push side, for tests and the signing tool: blobs, manifests, and signatures stored
//! where [`RegistryClient::find_signatures`] finds them again.

use std::collections::BTreeMap;

use reqwest::header::{HeaderMap, LOCATION};
use reqwest::{Method, StatusCode, Url};

use super::digest::Sha256Digest;
use super::transport::{Body, Redirects};
use super::{
    len64, parse_repository, Descriptor, ManifestDoc, Reference, RegistryClient, RegistryError,
    BUNDLE_V0_3, MAX_MANIFEST_BYTES, MAX_SIGNATURE_LAYERS, OCI_CONFIG, OCI_EMPTY, OCI_INDEX,
    OCI_MANIFEST, SIMPLE_SIGNING,
};
use crate::image::ImageSignature;

impl RegistryClient {
    /// Uploads a blob (monolithic: POST, then PUT with the digest) unless the registry
    /// has it; returns its digest.
    pub async fn push_blob(&self, repository: &str, bytes: &[u8]) -> Result<String, RegistryError> {
        let r = parse_repository(repository)?;
        let digest = Sha256Digest::of(bytes).into_string();
        let base = self.base(&r);
        let what = format!("blob upload to {}", r.repository());
        let head = self
            .send(
                &r,
                Method::HEAD,
                &format!("{base}/blobs/{digest}"),
                &HeaderMap::new(),
                Body::Empty,
                true,
                Redirects::AnyHostNoAuth,
            )
            .await?;
        if head.status().is_success() {
            return Ok(digest);
        }
        let resp = self
            .send(
                &r,
                Method::POST,
                &format!("{base}/blobs/uploads/"),
                &HeaderMap::new(),
                Body::Empty,
                true,
                Redirects::SameHost,
            )
            .await?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(Self::http_error(resp, &what, r.registry()).await);
        }
        let loc = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| RegistryError::Malformed("upload without a Location".into()))?;
        let mut url = Url::parse(&base)
            .and_then(|b| b.join(loc))
            .map_err(|e| RegistryError::Malformed(format!("upload Location: {e}")))?;
        url.query_pairs_mut().append_pair("digest", &digest);
        let resp = self
            .send(
                &r,
                Method::PUT,
                url.as_str(),
                &HeaderMap::new(),
                Body::Bytes(bytes, "application/octet-stream"),
                true,
                Redirects::SameHost,
            )
            .await?;
        if resp.status() != StatusCode::CREATED {
            return Err(Self::http_error(resp, &what, r.registry()).await);
        }
        Ok(digest)
    }

    /// Stores a manifest under `reference` (a tag or its digest); returns its digest.
    pub async fn push_manifest(
        &self,
        repository: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<String, RegistryError> {
        let r = parse_repository(repository)?;
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(RegistryError::TooLarge {
                what: "manifest".into(),
                max: MAX_MANIFEST_BYTES,
            });
        }
        let digest = Sha256Digest::of(bytes).into_string();
        let target = if reference.starts_with("sha256:") {
            if reference != digest {
                return Err(RegistryError::DigestMismatch {
                    what: "manifest to push".into(),
                    expected: reference.to_string(),
                    actual: digest,
                });
            }
            reference.to_string()
        } else {
            Reference::parse(&format!("{repository}:{reference}"))?;
            reference.to_string()
        };
        let what = format!("manifest push {}:{target}", r.repository());
        let url = format!("{}/manifests/{target}", self.base(&r));
        let resp = self
            .send(
                &r,
                Method::PUT,
                &url,
                &HeaderMap::new(),
                Body::Bytes(bytes, media_type),
                true,
                Redirects::SameHost,
            )
            .await?;
        if resp.status() != StatusCode::CREATED {
            return Err(Self::http_error(resp, &what, r.registry()).await);
        }
        if let Some(a) = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
        {
            if a != digest {
                return Err(RegistryError::DigestMismatch {
                    what,
                    expected: digest,
                    actual: super::clip(a),
                });
            }
        }
        Ok(digest)
    }

    /// Stores a cosign simple-signing signature for `image_digest` as cosign does: an
    /// OCI manifest at tag `sha256-<hex>.sig` whose layers are the payloads (with the
    /// annotations), appended to the existing signatures there (an identical layer is
    /// not added twice). Returns the new `.sig` manifest's digest.
    pub async fn push_simple_signing(
        &self,
        repository: &str,
        image_digest: &str,
        payload: &[u8],
        annotations: &BTreeMap<String, String>,
    ) -> Result<String, RegistryError> {
        let r = parse_repository(repository)?;
        let tag = format!("sha256-{}.sig", Sha256Digest::parse(image_digest)?.hex());
        let mut layers: Vec<Descriptor> = match self.get_manifest_opt(&r, &tag, true).await? {
            Some(m) => {
                let doc: ManifestDoc = serde_json::from_slice(&m.bytes)
                    .map_err(|e| RegistryError::Malformed(format!("signature manifest: {e}")))?;
                doc.layers
            }
            None => Vec::new(),
        };
        let layer_digest = self.push_blob(repository, payload).await?;
        let new = Descriptor {
            media_type: SIMPLE_SIGNING.into(),
            digest: layer_digest,
            size: len64(payload.len()),
            artifact_type: None,
            annotations: annotations.clone(),
        };
        if !layers.contains(&new) {
            layers.push(new);
        }
        if layers.len() > MAX_SIGNATURE_LAYERS {
            return Err(RegistryError::TooMany {
                what: "signature layers",
                max: MAX_SIGNATURE_LAYERS,
            });
        }
        // cosign's config: an image config whose rootfs lists the layers.
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "",
            "created": "0001-01-01T00:00:00Z",
            "history": [{"created": "0001-01-01T00:00:00Z"}],
            "os": "",
            "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.digest.clone()).collect::<Vec<_>>()},
            "config": {}}))
        .map_err(|e| RegistryError::Malformed(e.to_string()))?;
        let config_digest = self.push_blob(repository, &config).await?;
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "size": config.len(), "digest": config_digest},
            "layers": layers}))
        .map_err(|e| RegistryError::Malformed(e.to_string()))?;
        self.push_manifest(repository, &tag, OCI_MANIFEST, &manifest)
            .await
    }

    /// Stores a Sigstore bundle for `image_digest` as an OCI 1.1 referrer (artifact
    /// type bundle v0.3, `subject` = the image manifest), and adds it to the
    /// tag-schema fallback index `sha256-<hex>` (registries without the referrers API,
    /// such as distribution 2.8, serve referrers only through it). Returns the
    /// referrer manifest's digest.
    pub async fn push_bundle(
        &self,
        repository: &str,
        image_digest: &str,
        bundle: &[u8],
    ) -> Result<String, RegistryError> {
        let r = parse_repository(repository)?;
        let hex = Sha256Digest::parse(image_digest)?.hex().to_owned();
        let image = self
            .get_manifest_opt(&r, image_digest, true)
            .await?
            .ok_or_else(|| {
                RegistryError::ManifestUnknown(format!("{}@{image_digest}", r.repository()))
            })?;
        let empty = b"{}";
        let empty_digest = self.push_blob(repository, empty).await?;
        let bundle_digest = self.push_blob(repository, bundle).await?;
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": BUNDLE_V0_3,
            "config": {"mediaType": OCI_EMPTY, "size": empty.len(), "digest": empty_digest},
            "layers": [{"mediaType": BUNDLE_V0_3, "size": bundle.len(), "digest": bundle_digest}],
            "subject": {"mediaType": image.media_type, "size": image.bytes.len(), "digest": image.digest}}))
        .map_err(|e| RegistryError::Malformed(e.to_string()))?;
        let digest = Sha256Digest::of(&manifest).into_string();
        self.push_manifest(repository, &digest, OCI_MANIFEST, &manifest)
            .await?;
        // The fallback index.
        let tag = format!("sha256-{hex}");
        let mut manifests: Vec<Descriptor> = match self.get_manifest_opt(&r, &tag, true).await? {
            Some(m) if m.media_type == OCI_INDEX => {
                serde_json::from_slice::<ManifestDoc>(&m.bytes)
                    .map_err(|e| RegistryError::Malformed(format!("referrers index: {e}")))?
                    .manifests
            }
            _ => Vec::new(),
        };
        if !manifests.iter().any(|d| d.digest == digest) {
            manifests.push(Descriptor {
                media_type: OCI_MANIFEST.into(),
                digest: digest.clone(),
                size: len64(manifest.len()),
                artifact_type: Some(BUNDLE_V0_3.into()),
                annotations: BTreeMap::new(),
            });
        }
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": manifests}))
        .map_err(|e| RegistryError::Malformed(e.to_string()))?;
        self.push_manifest(repository, &tag, OCI_INDEX, &index)
            .await?;
        Ok(digest)
    }

    /// Stores an [`ImageSignature`] the way it is found again by
    /// [`RegistryClient::find_signatures`].
    pub async fn push_signature(
        &self,
        repository: &str,
        image_digest: &str,
        sig: &ImageSignature,
    ) -> Result<String, RegistryError> {
        match sig {
            ImageSignature::SimpleSigning {
                payload,
                annotations,
            } => {
                self.push_simple_signing(repository, image_digest, payload, annotations)
                    .await
            }
            ImageSignature::Bundle(b) => self.push_bundle(repository, image_digest, b).await,
        }
    }
}
