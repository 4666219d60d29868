//! Finding an image's signatures: manifests and blobs fetched and checked against their
//! digests, cosign's `.sig` tag, and Sigstore-bundle referrers (the referrers API, or the
//! tag-schema fallback index).

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, CONTENT_TYPE};
use reqwest::{Method, StatusCode, Url};

use super::digest::Sha256Digest;
use super::transport::{read_body, Body, Redirects};
use super::{
    len64, parse_repository, Descriptor, FetchedManifest, ManifestDoc, Reference, RegistryClient,
    RegistryError, BUNDLE_ARTIFACT_TYPES, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, MANIFEST_ACCEPT,
    MAX_CHALLENGE_LEN, MAX_MANIFEST_BYTES, MAX_REFERRERS, MAX_REFERRER_PAGES, MAX_SIGNATURES,
    MAX_SIGNATURE_BLOB_BYTES, MAX_SIGNATURE_LAYERS, OCI_INDEX, OCI_MANIFEST, SIMPLE_SIGNING,
};
use crate::image::ImageSignature;

impl RegistryClient {
    /// GETs a manifest by tag or digest. `Ok(None)` on 404 (any error code: a
    /// registry answers 404 with `MANIFEST_UNKNOWN` or `NAME_UNKNOWN`).
    pub(super) async fn get_manifest_opt(
        &self,
        r: &Reference,
        reference: &str,
        push: bool,
    ) -> Result<Option<FetchedManifest>, RegistryError> {
        let url = format!("{}/manifests/{reference}", self.base(r));
        let mut h = HeaderMap::new();
        h.insert(ACCEPT, HeaderValue::from_static(MANIFEST_ACCEPT));
        let sep = if reference.starts_with("sha256:") {
            '@'
        } else {
            ':'
        };
        let what = format!("manifest {}{sep}{}", r.repository(), super::clip(reference));
        let resp = self
            .send(
                r,
                Method::GET,
                &url,
                &h,
                Body::Empty,
                push,
                Redirects::SameHost,
            )
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(Self::http_error(resp, &what, r.registry()).await);
        }
        let announced = resp
            .headers()
            .get("docker-content-digest")
            .map(|v| v.to_str().map(str::to_string))
            .transpose()
            .map_err(|_| RegistryError::Malformed("Docker-Content-Digest is not ASCII".into()))?;
        let ctype = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.split(';').next().unwrap_or("").trim().to_string());
        let bytes = read_body(resp, MAX_MANIFEST_BYTES, &what, r.registry()).await?;
        let digest = Sha256Digest::of(&bytes).into_string();
        if reference.starts_with("sha256:") && digest != reference {
            return Err(RegistryError::DigestMismatch {
                what,
                expected: reference.to_string(),
                actual: digest,
            });
        }
        if let Some(a) = announced {
            // Another algorithm cannot be checked here; sha256 must match.
            if a.starts_with("sha256:") && a != digest {
                return Err(RegistryError::DigestMismatch {
                    what: format!("{what} (Docker-Content-Digest)"),
                    expected: super::clip(&a),
                    actual: digest,
                });
            }
        }
        let doc: ManifestDoc = serde_json::from_slice(&bytes)
            .map_err(|e| RegistryError::Malformed(format!("{what}: {e}")))?;
        let media_type = doc
            .media_type
            .clone()
            .or(ctype.filter(|c| !c.is_empty() && c != "application/json"))
            .ok_or_else(|| RegistryError::Malformed(format!("{what}: no media type")))?;
        if ![
            OCI_MANIFEST,
            OCI_INDEX,
            DOCKER_MANIFEST,
            DOCKER_MANIFEST_LIST,
        ]
        .contains(&media_type.as_str())
        {
            return Err(RegistryError::Malformed(format!(
                "{what}: unsupported media type {:?}",
                super::clip(&media_type)
            )));
        }
        Ok(Some(FetchedManifest {
            bytes,
            digest,
            media_type,
        }))
    }

    /// Fetches a manifest (by tag or digest), checked as described above.
    pub async fn get_manifest(&self, r: &Reference) -> Result<FetchedManifest, RegistryError> {
        let reference = r.digest().or(r.tag()).unwrap_or("latest").to_string();
        self.get_manifest_opt(r, &reference, false)
            .await?
            .ok_or_else(|| RegistryError::ManifestUnknown(r.to_string()))
    }

    /// Resolves a reference to `(repository, "sha256:<hex>")`: the manifest (or index)
    /// digest the registry serves for its tag (`latest` when none) or digest. The body
    /// is fetched and hashed, so the digest is never just the registry's word.
    pub async fn resolve(&self, r: &Reference) -> Result<(String, String), RegistryError> {
        let m = self.get_manifest(r).await?;
        Ok((r.repository(), m.digest))
    }

    /// Fetches a blob, checking its size and digest against the descriptor.
    pub async fn get_blob(
        &self,
        r: &Reference,
        d: &Descriptor,
        max: usize,
    ) -> Result<Vec<u8>, RegistryError> {
        Sha256Digest::parse(&d.digest)?;
        let what = format!("blob {}@{}", r.repository(), d.digest);
        if d.size > len64(max) {
            return Err(RegistryError::TooLarge { what, max });
        }
        let url = format!("{}/blobs/{}", self.base(r), d.digest);
        let resp = self
            .send(
                r,
                Method::GET,
                &url,
                &HeaderMap::new(),
                Body::Empty,
                false,
                Redirects::AnyHostNoAuth,
            )
            .await?;
        if !resp.status().is_success() {
            return Err(Self::http_error(resp, &what, r.registry()).await);
        }
        // Read up to the bound (not just the descriptor's size), so a mismatch
        // reports the size actually served.
        let bytes = read_body(resp, max, &what, r.registry()).await?;
        if len64(bytes.len()) != d.size {
            return Err(RegistryError::SizeMismatch {
                what,
                expected: d.size,
                actual: len64(bytes.len()),
            });
        }
        let actual = Sha256Digest::of(&bytes).into_string();
        if actual != d.digest {
            return Err(RegistryError::DigestMismatch {
                what,
                expected: d.digest.clone(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Every signature stored for `digest` in `repository` (`registry/path`): cosign's
    /// legacy `.sig` tag and Sigstore-bundle referrers. `Ok(vec![])` when the registry
    /// answers that there are none.
    pub async fn find_signatures(
        &self,
        repository: &str,
        digest: &str,
    ) -> Result<Vec<ImageSignature>, RegistryError> {
        let mut out = self.find_legacy_signatures(repository, digest).await?;
        out.extend(self.find_referrer_signatures(repository, digest).await?);
        if out.len() > MAX_SIGNATURES {
            return Err(RegistryError::TooMany {
                what: "signatures",
                max: MAX_SIGNATURES,
            });
        }
        Ok(out)
    }

    /// cosign's legacy signatures of `digest`: the simple-signing layers of the
    /// `sha256-<hex>.sig` tag. `Ok(vec![])` when there is no such tag.
    pub async fn find_legacy_signatures(
        &self,
        repository: &str,
        digest: &str,
    ) -> Result<Vec<ImageSignature>, RegistryError> {
        let r = parse_repository(repository)?;
        let digest = Sha256Digest::parse(digest)?;
        let mut out = Vec::new();
        if let Some(m) = self
            .get_manifest_opt(&r, &format!("sha256-{}.sig", digest.hex()), false)
            .await?
        {
            let doc: ManifestDoc = serde_json::from_slice(&m.bytes)
                .map_err(|e| RegistryError::Malformed(format!("signature manifest: {e}")))?;
            if doc.layers.len() > MAX_SIGNATURE_LAYERS {
                return Err(RegistryError::TooMany {
                    what: "signature layers",
                    max: MAX_SIGNATURE_LAYERS,
                });
            }
            for l in doc.layers.iter().filter(|l| l.media_type == SIMPLE_SIGNING) {
                let payload = self.get_blob(&r, l, MAX_SIGNATURE_BLOB_BYTES).await?;
                out.push(ImageSignature::SimpleSigning {
                    payload,
                    annotations: l.annotations.clone(),
                });
            }
        }
        Ok(out)
    }

    /// The Sigstore bundles attached to `digest` as OCI 1.1 referrers (the referrers
    /// API, or the tag-schema fallback). `Ok(vec![])` when there are none.
    pub async fn find_referrer_signatures(
        &self,
        repository: &str,
        digest: &str,
    ) -> Result<Vec<ImageSignature>, RegistryError> {
        let r = parse_repository(repository)?;
        let digest = Sha256Digest::parse(digest)?;
        let mut out = Vec::new();
        for d in self.referrers(&r, &digest).await? {
            if out.len() >= MAX_SIGNATURES {
                return Err(RegistryError::TooMany {
                    what: "signatures",
                    max: MAX_SIGNATURES,
                });
            }
            let m = self
                .get_manifest_opt(&r, &d.digest, false)
                .await?
                .ok_or_else(|| RegistryError::ManifestUnknown(format!("referrer {}", d.digest)))?;
            let doc: ManifestDoc = serde_json::from_slice(&m.bytes)
                .map_err(|e| RegistryError::Malformed(format!("referrer manifest: {e}")))?;
            // The index is the registry's word; the manifest itself must name the image.
            match &doc.subject {
                Some(s) if s.digest == digest.as_str() => {}
                _ => {
                    return Err(RegistryError::Malformed(format!(
                        "referrer {} does not name {digest} as its subject",
                        d.digest
                    )))
                }
            }
            if doc.layers.len() > MAX_SIGNATURE_LAYERS {
                return Err(RegistryError::TooMany {
                    what: "referrer layers",
                    max: MAX_SIGNATURE_LAYERS,
                });
            }
            let bundle_layers: Vec<&Descriptor> = doc
                .layers
                .iter()
                .filter(|l| BUNDLE_ARTIFACT_TYPES.contains(&l.media_type.as_str()))
                .collect();
            if bundle_layers.is_empty() {
                return Err(RegistryError::Malformed(format!(
                    "referrer {} of a bundle artifact type has no bundle layer",
                    d.digest
                )));
            }
            for l in bundle_layers {
                out.push(ImageSignature::Bundle(
                    self.get_blob(&r, l, MAX_SIGNATURE_BLOB_BYTES).await?,
                ));
            }
        }
        if out.len() > MAX_SIGNATURES {
            return Err(RegistryError::TooMany {
                what: "signatures",
                max: MAX_SIGNATURES,
            });
        }
        Ok(out)
    }

    /// The bundle referrers of `digest` (descriptors filtered by artifact type).
    async fn referrers(
        &self,
        r: &Reference,
        digest: &Sha256Digest,
    ) -> Result<Vec<Descriptor>, RegistryError> {
        let mut url = format!("{}/referrers/{digest}", self.base(r));
        let mut h = HeaderMap::new();
        h.insert(ACCEPT, HeaderValue::from_static(OCI_INDEX));
        let what = format!("referrers of {}@{digest}", r.repository());
        let mut all: Vec<Descriptor> = Vec::new();
        let mut pages = 0;
        loop {
            pages += 1;
            let resp = self
                .send(
                    r,
                    Method::GET,
                    &url,
                    &h,
                    Body::Empty,
                    false,
                    Redirects::SameHost,
                )
                .await?;
            if resp.status() == StatusCode::NOT_FOUND && pages == 1 {
                // No referrers API: the tag schema (one index, no pages).
                let Some(m) = self
                    .get_manifest_opt(r, &format!("sha256-{}", digest.hex()), false)
                    .await?
                else {
                    return Ok(Vec::new());
                };
                if m.media_type != OCI_INDEX {
                    // A tag of that name that is not a referrers index.
                    return Ok(Vec::new());
                }
                all = serde_json::from_slice::<ManifestDoc>(&m.bytes)
                    .map_err(|e| RegistryError::Malformed(format!("{what}: {e}")))?
                    .manifests;
                break;
            }
            if !resp.status().is_success() {
                return Err(Self::http_error(resp, &what, r.registry()).await);
            }
            let next = next_link(resp.headers(), &url)?;
            let bytes = read_body(resp, MAX_MANIFEST_BYTES, &what, r.registry()).await?;
            let doc: ManifestDoc = serde_json::from_slice(&bytes)
                .map_err(|e| RegistryError::Malformed(format!("{what}: {e}")))?;
            all.extend(doc.manifests);
            if all.len() > MAX_REFERRERS {
                break;
            }
            match next {
                None => break,
                Some(_) if pages >= MAX_REFERRER_PAGES => {
                    return Err(RegistryError::TooMany {
                        what: "referrer pages",
                        max: MAX_REFERRER_PAGES,
                    })
                }
                Some(n) => url = n,
            }
        }
        if all.len() > MAX_REFERRERS {
            return Err(RegistryError::TooMany {
                what: "referrers",
                max: MAX_REFERRERS,
            });
        }
        let mut out = Vec::new();
        for d in all {
            let at = d.artifact_type.as_deref().unwrap_or_default();
            if BUNDLE_ARTIFACT_TYPES.contains(&at) {
                Sha256Digest::parse(&d.digest).map_err(|_| {
                    RegistryError::Malformed(format!(
                        "{what}: descriptor digest {:?}",
                        super::clip(&d.digest)
                    ))
                })?;
                if d.size > len64(MAX_MANIFEST_BYTES) {
                    return Err(RegistryError::TooLarge {
                        what: format!("referrer {}", d.digest),
                        max: MAX_MANIFEST_BYTES,
                    });
                }
                out.push(d);
            }
        }
        Ok(out)
    }
}

/// The `rel="next"` target of a `Link` header, resolved against `current`; it must
/// stay on the registry's origin (credentials are sent to it).
pub(super) fn next_link(
    headers: &HeaderMap,
    current: &str,
) -> Result<Option<String>, RegistryError> {
    let bad = |why: &str| RegistryError::Malformed(format!("Link header: {why}"));
    for v in headers.get_all(reqwest::header::LINK) {
        let v = v.to_str().map_err(|_| bad("not ASCII"))?;
        if v.len() > MAX_CHALLENGE_LEN {
            return Err(bad("too long"));
        }
        for link in v.split(',') {
            let link = link.trim();
            let Some(rest) = link.strip_prefix('<') else {
                continue;
            };
            let Some((target, params)) = rest.split_once('>') else {
                return Err(bad("unterminated <"));
            };
            let is_next = params.split(';').any(|p| {
                let p = p.trim().replace(' ', "");
                p.eq_ignore_ascii_case("rel=\"next\"") || p.eq_ignore_ascii_case("rel=next")
            });
            if !is_next {
                continue;
            }
            let base = Url::parse(current).map_err(|e| bad(&e.to_string()))?;
            let next = base.join(target).map_err(|e| bad(&e.to_string()))?;
            let origin = |u: &Url| {
                (
                    u.scheme().to_string(),
                    u.host_str().map(str::to_string),
                    u.port_or_known_default(),
                )
            };
            if origin(&next) != origin(&base) {
                return Err(bad("next page on another host"));
            }
            return Ok(Some(next.to_string()));
        }
    }
    Ok(None)
}
