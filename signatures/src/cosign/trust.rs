//! Trust: the loaded, ready-to-verify form of one image-policy rule, and the scope its
//! signed references must lie in.

use std::path::Path;

use policy::identity::{
    IdentityPolicy, IdentityPolicyError, RunnerEnvironment, GITHUB_ACTIONS_ISSUER,
};
use policy::image::ImageRule;
use rustls_pki_types::CertificateDer;

use super::keys::{pem_blocks, PublicKey};
use super::{truncate, ImageSigError, ImageTrustError, MAX_TRUST_FILE_BYTES};
use crate::bundle::{read_bounded, ReadBoundedError};
use crate::oci::{normalise_scope, Reference};
use crate::TrustRoot;

/// A trusted Fulcio CA: its anchor and the trusted intermediates below it.
#[derive(Clone)]
pub(super) struct FulcioCa {
    pub(super) anchor_der: Vec<u8>,
    pub(super) intermediates: Vec<Vec<u8>>,
    pub(super) valid_for: Option<(i64, Option<i64>)>,
}

/// The keyless half of a trust rule.
#[derive(Clone)]
pub(super) struct Keyless {
    pub(super) cas: Vec<FulcioCa>,
    pub(super) identity: IdentityPolicy,
    /// For bundles (only with a `trusted_root.json`).
    pub(super) bundle_root: Option<std::sync::Arc<TrustRoot>>,
}

#[derive(Clone)]
pub(super) enum Mode {
    Keys(Vec<PublicKey>),
    Keyless(Box<Keyless>),
}

/// The loaded, ready-to-verify form of one [`ImageRule`] (or of explicit CLI
/// arguments, through [`ImageTrust::from_parts`]).
#[derive(Clone)]
pub struct ImageTrust {
    pub(super) mode: Mode,
    pub(super) rekor_keys: Vec<PublicKey>,
    pub(super) require_rekor: bool,
    pub(super) scope: Option<String>,
}

impl std::fmt::Debug for ImageTrust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("ImageTrust");
        match &self.mode {
            Mode::Keys(k) => d.field("keys", k),
            Mode::Keyless(k) => d
                .field("fulcio_cas", &k.cas.len())
                .field("identity", &k.identity),
        };
        d.field("rekor_keys", &self.rekor_keys)
            .field("require_rekor", &self.require_rekor)
            .field("scope", &self.scope)
            .finish()
    }
}

/// The identity a keyless certificate must carry (all exact, but `san_regex`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeylessIdentity {
    /// OIDC issuer, exact (required).
    pub issuer: String,
    /// Email SAN, exact.
    pub subject_email: Option<String>,
    /// URI SAN, exact.
    pub san: Option<String>,
    /// SAN regex, anchored at both ends.
    pub san_regex: Option<String>,
    /// Fulcio source repository extension (`https://github.com/OWNER/REPO` or `OWNER/REPO`).
    pub source_repository: Option<String>,
    /// Fulcio source repository ref extension, exact.
    pub source_ref: Option<String>,
}

/// Trust material as bytes, for [`ImageTrust::from_parts`]. Exactly one of `keys`
/// and `keyless` must be given.
#[derive(Debug, Clone, Default)]
pub struct ImageTrustParts {
    /// Cosign public keys, PEM (`PUBLIC KEY`, SPKI); a file may hold several.
    pub keys: Vec<Vec<u8>>,
    /// Keyless: who must have signed.
    pub keyless: Option<KeylessIdentity>,
    /// A `trusted_root.json`: Fulcio CAs and Rekor keys (and bundle verification).
    pub trusted_root: Option<Vec<u8>>,
    /// Fulcio CA certificates, PEM; each one is a trust anchor.
    pub fulcio_ca: Option<Vec<u8>>,
    /// Rekor public keys, PEM.
    pub rekor_keys: Vec<Vec<u8>>,
    /// Require a Rekor SET (forced on for keyless).
    pub require_rekor: bool,
    /// `registry[:port]/path`: the signed docker reference must lie at or under it
    /// (compared normalised, see [`crate::oci::Reference::repository`]).
    pub scope: Option<String>,
}

impl ImageTrust {
    /// Loads a policy rule; relative paths resolve against `base_dir`. Files are
    /// read with a bound ([`MAX_TRUST_FILE_BYTES`], the trusted root's own).
    pub fn load(rule: &ImageRule, base_dir: &Path) -> Result<ImageTrust, ImageTrustError> {
        let read = |p: &Path, max: usize| -> Result<Vec<u8>, ImageTrustError> {
            let path = base_dir.join(p);
            read_bounded(&path, max).map_err(|e| match e {
                ReadBoundedError::TooLarge { .. } => ImageTrustError::TooLarge { path, max },
                ReadBoundedError::Io(e) => ImageTrustError::Io {
                    path,
                    detail: e.to_string(),
                },
            })
        };
        let mut parts = ImageTrustParts {
            require_rekor: rule.require_rekor,
            scope: Some(rule.scope.clone()),
            ..Default::default()
        };
        for k in &rule.keys {
            parts.keys.push(read(k, MAX_TRUST_FILE_BYTES)?);
        }
        if let Some(r) = &rule.rekor_key {
            parts.rekor_keys.push(read(r, MAX_TRUST_FILE_BYTES)?);
        }
        if let Some(k) = &rule.keyless {
            if let Some(t) = &k.trusted_root {
                parts.trusted_root = Some(read(t, crate::MAX_TRUSTED_ROOT_BYTES)?);
            }
            if let Some(c) = &k.fulcio_ca {
                parts.fulcio_ca = Some(read(c, MAX_TRUST_FILE_BYTES)?);
            }
            parts.keyless = Some(KeylessIdentity {
                issuer: k.issuer.clone(),
                subject_email: k.subject_email.clone(),
                san: k.san.clone(),
                san_regex: k.san_regex.clone(),
                source_repository: k.source_repository.clone(),
                source_ref: k.source_ref.clone(),
            });
        }
        Self::from_parts(parts)
    }

    /// Builds trust from explicit material (the CLI's `--key`, `--trusted-root`,
    /// `--fulcio-ca`, `--rekor-key` and identity flags).
    pub fn from_parts(parts: ImageTrustParts) -> Result<ImageTrust, ImageTrustError> {
        let mut rekor_keys = Vec::new();
        for (i, pem) in parts.rekor_keys.iter().enumerate() {
            for der in pem_blocks(pem, "PUBLIC KEY").map_err(|d| ImageTrustError::InvalidKey {
                origin: format!("Rekor key {}", i + 1),
                detail: d,
            })? {
                rekor_keys.push(PublicKey::from_spki_der(&der, "Rekor key")?);
            }
        }
        let mut trusted_root = None;
        let mut cas = Vec::new();
        if let Some(json) = &parts.trusted_root {
            let text = std::str::from_utf8(json).map_err(|_| {
                ImageTrustError::TrustRoot(crate::TrustRootError::Invalid("not UTF-8".into()))
            })?;
            let tr = sigstore_verify::trust_root::TrustedRoot::from_json(text)
                .map_err(|e| crate::TrustRootError::Invalid(e.to_string()))?;
            for t in &tr.tlogs {
                let mut k = PublicKey::from_spki_der(
                    t.public_key.raw_bytes.as_bytes(),
                    "trusted_root.json tlog",
                )?;
                k.valid_for = t
                    .public_key
                    .valid_for
                    .map(|v| (v.start.as_second(), v.end.map(|e| e.as_second())));
                rekor_keys.push(k);
            }
            for ca in &tr.certificate_authorities {
                let mut certs: Vec<Vec<u8>> = ca
                    .cert_chain
                    .certificates
                    .iter()
                    .map(|c| c.raw_bytes.as_bytes().to_vec())
                    .collect();
                let Some(anchor_der) = certs.pop() else {
                    continue;
                };
                check_anchor(&anchor_der, "trusted_root.json")?;
                cas.push(FulcioCa {
                    anchor_der,
                    intermediates: certs,
                    valid_for: ca
                        .valid_for
                        .map(|v| (v.start.as_second(), v.end.map(|e| e.as_second()))),
                });
            }
            trusted_root = Some(std::sync::Arc::new(TrustRoot::from_json(json)?));
        }
        if let Some(pem) = &parts.fulcio_ca {
            let ders = pem_blocks(pem, "CERTIFICATE").map_err(|detail| {
                ImageTrustError::InvalidCertificate {
                    origin: "Fulcio CA".into(),
                    detail,
                }
            })?;
            for der in ders {
                check_anchor(&der, "Fulcio CA")?;
                cas.push(FulcioCa {
                    anchor_der: der,
                    intermediates: Vec::new(),
                    valid_for: None,
                });
            }
        }
        let scope = parts
            .scope
            .map(|s| s.trim_end_matches('/').to_owned())
            .filter(|s| !s.is_empty())
            .map(|s| normalise_scope(&s));
        let mode = match (parts.keys.is_empty(), parts.keyless) {
            (false, Some(_)) => {
                return Err(ImageTrustError::InvalidRule(
                    "give either keys or a keyless identity, not both".into(),
                ))
            }
            (true, None) => {
                return Err(ImageTrustError::InvalidRule(
                    "give keys or a keyless identity".into(),
                ))
            }
            (false, None) => {
                let mut keys = Vec::new();
                for (i, pem) in parts.keys.iter().enumerate() {
                    let origin = format!("key {}", i + 1);
                    let ders =
                        pem_blocks(pem, "PUBLIC KEY").map_err(|d| ImageTrustError::InvalidKey {
                            origin: origin.clone(),
                            detail: d,
                        })?;
                    for der in ders {
                        keys.push(PublicKey::from_spki_der(&der, &origin)?);
                    }
                }
                if parts.require_rekor && rekor_keys.is_empty() {
                    return Err(ImageTrustError::InvalidRule(
                        "Rekor is required but no Rekor key is given".into(),
                    ));
                }
                Mode::Keys(keys)
            }
            (true, Some(id)) => {
                if cas.is_empty() {
                    return Err(ImageTrustError::InvalidRule(
                        "keyless needs Fulcio CAs: a trusted_root.json or a Fulcio CA file".into(),
                    ));
                }
                if rekor_keys.is_empty() {
                    return Err(ImageTrustError::InvalidRule(
                        "keyless needs a Rekor key: a trusted_root.json or a Rekor key file".into(),
                    ));
                }
                let identity = identity_policy(&id)?;
                Mode::Keyless(Box::new(Keyless {
                    cas,
                    identity,
                    bundle_root: trusted_root,
                }))
            }
        };
        let keyless = matches!(mode, Mode::Keyless(_));
        Ok(ImageTrust {
            mode,
            rekor_keys,
            require_rekor: parts.require_rekor || keyless,
            scope,
        })
    }

    /// Keyless (Fulcio identity) rather than keys.
    pub fn is_keyless(&self) -> bool {
        matches!(self.mode, Mode::Keyless(_))
    }

    /// Whether a Rekor SET is required.
    pub fn requires_rekor(&self) -> bool {
        self.require_rekor
    }

    /// The scope signed references must lie in, if any, as compared (a Docker Hub
    /// short name qualified, `index.docker.io` written `docker.io`).
    pub fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }
}

fn check_anchor(der: &[u8], origin: &str) -> Result<(), ImageTrustError> {
    let cd = CertificateDer::from(der);
    webpki::anchor_from_trusted_cert(&cd)
        .map(|_| ())
        .map_err(|e| ImageTrustError::InvalidCertificate {
            origin: origin.to_owned(),
            detail: format!("{e:?}"),
        })
}

fn identity_policy(id: &KeylessIdentity) -> Result<IdentityPolicy, IdentityPolicyError> {
    let mut b = IdentityPolicy::builder().issuer(&id.issuer);
    match (&id.subject_email, &id.san) {
        (Some(_), Some(_)) => return Err(IdentityPolicyError::ConflictingSan),
        (Some(s), None) | (None, Some(s)) => b = b.san(s),
        (None, None) => {}
    }
    if let Some(r) = &id.san_regex {
        b = b.san_regex(r);
    }
    if let Some(r) = &id.source_repository {
        b = b.source_repository(r);
    }
    if let Some(r) = &id.source_ref {
        b = b.source_ref(r);
    }
    // GitHub Actions certificates must come from GitHub's own runners, as for build
    // provenance (DESIGN.md): a self-hosted runner is the repository owner's machine.
    // Other issuers (e.g. GitHub OAuth for an email identity) carry no runner claim.
    b = b.runner_environment(if id.issuer == GITHUB_ACTIONS_ISSUER {
        RunnerEnvironment::GithubHosted
    } else {
        RunnerEnvironment::Any
    });
    b.build()
}

/// The signed docker reference (payload `docker-reference`, or a bundle subject's
/// name) must lie in the trust's scope.
///
/// Both sides are compared in the normalised form of [`Reference::repository`].
/// Before, the reference's repository was cut out as a string
/// (`cosign::reference_repository`, no Docker Hub normalisation). The two differ on
/// what `cosign/tests.rs` `scope_check_old_and_new` lists, deliberately:
///
/// - now covered: other spellings of a covered repository (`alpine`,
///   `library/alpine`, cosign's own `index.docker.io/library/alpine` under
///   `docker.io/library`). The image policy selects rules by normalised repository, so
///   a Docker Hub rule could not accept a cosign payload before;
/// - now refused: a reference that is not a valid reference (an invalid or uppercase
///   digest, a sha512 digest, uppercase path, an empty tag): it names no repository
///   that can be pulled; and a reference that names another repository once
///   normalised: `docker.io/alpine` (the official image) under the scope
///   `docker.io/alpine` (the namespace), `alpine/evil` under `alpine`, `myorg/app`
///   under `myorg` (a one-component short scope is an official image, as in a
///   reference; write `docker.io/myorg` for a namespace). Short scopes keep covering
///   their own spelling (`alpine` covers `alpine`, `alpine:3`). Qualified scopes, the
///   only ones `ImagePolicy::rule_for` can select, are compared as written.
pub(super) fn check_scope(trust: &ImageTrust, reference: &str) -> Result<(), ImageSigError> {
    if let Some(scope) = &trust.scope {
        if !scope_covers_reference(scope, reference) {
            return Err(ImageSigError::ReferenceNotCovered {
                reference: truncate(reference),
                scope: scope.clone(),
            });
        }
    }
    Ok(())
}

/// Whether the signed docker `reference` lies in `scope` (a normalised scope, see
/// [`crate::oci::normalise_scope`]): the reference's repository, normalised as
/// [`Reference::parse`] does, equals the scope or lies under it on whole path
/// segments. A reference that does not parse names no repository: not covered.
pub(super) fn scope_covers_reference(scope: &str, reference: &str) -> bool {
    Reference::parse(reference).is_ok_and(|r| policy::image::scope_covers(scope, &r.repository()))
}
