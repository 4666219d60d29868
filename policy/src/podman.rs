//! Podman's own signature policy, rendered from the [`ImagePolicy`]: the second
//! enforcement layer in the guest (DESIGN.md "Image signatures").
//!
//! [`render`] is pure: the caller (the `policy render-podman` binary) reads every file
//! the image policy names and passes the contents in [`RenderInputs`]; the result
//! ([`Rendered`]) holds the text of `containers-policy.json`, of the `registries.d`
//! file, and the key material to install next to them, each PEM re-encoded from its
//! parsed DER so the output is canonical and deterministic.
//!
//! What is rendered:
//! - `default: [{"type":"reject"}]`: anything not covered by a rule is refused, on
//!   every transport.
//! - one `transports.docker` entry per trust rule, keyed by its scope (podman, like
//!   [`ImagePolicy::rule_for`], applies the longest whole-segment match):
//!   - key-based: `sigstoreSigned` with `keyPath` (one key) or `keyPaths` (several;
//!     any one of them may sign), plus `rekorPublicKeyPath` when the rule requires
//!     Rekor;
//!   - keyless: `sigstoreSigned` with `fulcio{caPath, oidcIssuer, subjectEmail}` and
//!     `rekorPublicKeyPath`. For a rule with a `trusted_root`, the Fulcio CA
//!     certificates and the Rekor (v1, SET-signing) key are extracted from the root;
//!   - `signedIdentity: {"type":"matchRepository"}`, since cosign payloads name the
//!     repository only.
//! - `registries.d`: `use-sigstore-attachments: true` for each signed scope.
//!
//! **Identities podman cannot pin.** podman's `fulcio` requirement matches the
//! certificate's email SAN and nothing else, and `subjectEmail` is mandatory. A
//! keyless rule that names a GitHub workflow (a URI `san`, a `san_regex`, a
//! `source_repository` or `source_ref`) cannot be expressed, and rendering anything
//! weaker than the image policy would let podman accept images the policy refuses.
//! So by default [`render`] refuses ([`RenderError::UnpinnableIdentity`]). With
//! [`Unpinnable::Reject`] the rule's scope is rendered as `reject` (explicitly, so a
//! broader rule cannot catch its repositories either) with a warning: podman then
//! refuses those images outright, and they reach the guest only through the
//! verifying pull gate (`guest-agent pull`), which checks the workflow identity.
//!
//! **Podman versions.** Debian 12's podman 4.3 (containers/image 5.23) knows only
//! `keyPath`/`keyData` for `sigstoreSigned`; it rejects a policy file using `keyPaths`,
//! `fulcio` or `rekorPublicKeyPath` as a whole ("Unknown key"), which is fail-closed
//! but stops every pull. Each use of those fields is reported in
//! [`Rendered::warnings`]. Debian's build also has sigstore verification patched out,
//! so even a valid `keyPath` policy there rejects signed images too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::image::{ImagePolicy, ImagePolicyError, ImageRule, KeylessRule};

/// The policy file's name in the output directory.
pub const POLICY_FILE: &str = "containers-policy.json";
/// The `registries.d` file's path in the output directory.
pub const REGISTRIES_D_FILE: &str = "registries.d/provenant.yaml";
/// The directory (in the output and install directories) holding the key material.
pub const KEY_DIR: &str = "keys";
/// The largest key, certificate or trusted-root file accepted.
pub const MAX_INPUT_FILE: usize = 4 << 20;

/// What to do with a keyless rule whose identity podman cannot pin.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Unpinnable {
    /// Fail: [`RenderError::UnpinnableIdentity`].
    #[default]
    Refuse,
    /// Render the scope as `reject`, with a warning.
    Reject,
}

/// Everything [`render`] needs besides the policy.
#[derive(Debug, Clone, Default)]
pub struct RenderInputs {
    /// Absolute directory the rendered files will be installed in on the target
    /// (`keyPath`s point at `INSTALL_DIR/keys/..`).
    pub install_dir: String,
    /// The contents of every file the policy names (`keys`, `rekor_key`,
    /// `keyless.trusted_root`, `keyless.fulcio_ca`), keyed by the path exactly as
    /// written in the policy.
    pub files: BTreeMap<PathBuf, Vec<u8>>,
    /// What to do with a keyless rule podman cannot pin.
    pub unpinnable: Unpinnable,
}

/// The rendered files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// `containers-policy.json` (pretty JSON, trailing newline).
    pub policy_json: String,
    /// The `registries.d` YAML ([`REGISTRIES_D_FILE`]).
    pub registries_d: String,
    /// Key material to write, by path relative to the output directory
    /// (`keys/NAME`); the policy refers to it under `install_dir`.
    pub files: BTreeMap<String, Vec<u8>>,
    /// What the operator must know: fields older podman rejects, scopes rendered as
    /// `reject`, trust-root entries left out.
    pub warnings: Vec<String>,
}

/// Why a podman policy cannot be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// The image policy itself is invalid.
    #[error("invalid image policy: {0}")]
    InvalidPolicy(#[from] ImagePolicyError),
    /// A scope podman's `transports.docker` cannot key on.
    #[error("trust rule {index} ({scope:?}): not a podman docker scope: {detail}")]
    BadScope {
        /// The rule's position, from 0.
        index: usize,
        /// Its scope.
        scope: String,
        /// Why podman cannot use it.
        detail: String,
    },
    /// Two rules with one scope (podman keys its entries by scope).
    #[error("trust rules {first} and {second} have the same scope {scope:?}")]
    DuplicateScope {
        /// The first rule's position.
        first: usize,
        /// The second rule's position.
        second: usize,
        /// The scope.
        scope: String,
    },
    /// A keyless rule whose identity podman's policy cannot express
    /// ([`Unpinnable::Refuse`]).
    #[error(
        "trust rule {index} ({scope:?}): podman cannot pin the keyless identity ({detail}): \
         its policy matches only an email SAN (fulcio.subjectEmail). Pin an email identity, \
         or render with --reject-unpinnable so podman refuses this scope and images in it \
         are pulled through `guest-agent pull`, which verifies the identity"
    )]
    UnpinnableIdentity {
        /// The rule's position, from 0.
        index: usize,
        /// Its scope.
        scope: String,
        /// The identity constraint podman cannot express.
        detail: String,
    },
    /// An install directory that is not absolute.
    #[error("the install directory {0:?} must be an absolute path")]
    InstallDir(String),
    /// A file the policy names that is not among the inputs.
    #[error("{path}: not provided to the renderer")]
    MissingFile {
        /// The path, as the policy writes it.
        path: String,
    },
    /// A key file that is not a usable public key, or any input file over
    /// [`MAX_INPUT_FILE`].
    #[error("{path}: {detail}")]
    BadKey {
        /// The path, as the policy writes it.
        path: String,
        /// What is wrong with it.
        detail: String,
    },
    /// A CA file that is not usable certificates.
    #[error("{path}: {detail}")]
    BadCertificate {
        /// The path, as the policy writes it.
        path: String,
        /// What is wrong with it.
        detail: String,
    },
    /// A trusted root podman's keys and CAs cannot be taken from.
    #[error("{path}: not a usable trusted_root.json: {detail}")]
    BadTrustedRoot {
        /// The path, as the policy writes it.
        path: String,
        /// What is wrong with it.
        detail: String,
    },
}

impl RenderError {
    /// A stable name for the failure.
    pub fn kind(&self) -> &'static str {
        match self {
            RenderError::InvalidPolicy(_) => "invalid_policy",
            RenderError::BadScope { .. } => "bad_scope",
            RenderError::DuplicateScope { .. } => "duplicate_scope",
            RenderError::UnpinnableIdentity { .. } => "unpinnable_identity",
            RenderError::InstallDir(_) => "bad_install_dir",
            RenderError::MissingFile { .. } => "missing_file",
            RenderError::BadKey { .. } => "bad_key",
            RenderError::BadCertificate { .. } => "bad_certificate",
            RenderError::BadTrustedRoot { .. } => "bad_trusted_root",
        }
    }
}

// --- the JSON shape (structs, so field order is fixed whatever serde_json's features) ---

#[derive(Serialize)]
struct PolicyJson {
    default: Vec<Requirement>,
    transports: BTreeMap<&'static str, BTreeMap<String, Vec<Requirement>>>,
}

#[derive(Serialize)]
#[serde(tag = "type")]
enum Requirement {
    #[serde(rename = "reject")]
    Reject,
    #[serde(rename = "sigstoreSigned", rename_all = "camelCase")]
    SigstoreSigned {
        #[serde(skip_serializing_if = "Option::is_none")]
        key_path: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        key_paths: Option<Vec<String>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        fulcio: Option<Fulcio>,
        #[serde(skip_serializing_if = "Option::is_none")]
        rekor_public_key_path: Option<String>,
        signed_identity: SignedIdentity,
    },
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Fulcio {
    ca_path: String,
    oidc_issuer: String,
    subject_email: String,
}

#[derive(Serialize)]
struct SignedIdentity {
    #[serde(rename = "type")]
    kind: &'static str,
}

const OLD_PODMAN: &str =
    "podman 4.3 (Debian 12) knows only keyPath/keyData and rejects the whole policy file";

/// Renders podman's policy for `policy`. Validates the policy first.
pub fn render(policy: &ImagePolicy, inputs: &RenderInputs) -> Result<Rendered, RenderError> {
    policy.validate()?;
    let install = inputs.install_dir.trim_end_matches('/');
    if !inputs.install_dir.starts_with('/') || inputs.install_dir.contains(['\n', '\0']) {
        return Err(RenderError::InstallDir(inputs.install_dir.clone()));
    }
    let mut out = Rendered {
        policy_json: String::new(),
        registries_d: String::new(),
        files: BTreeMap::new(),
        warnings: Vec::new(),
    };
    let mut docker: BTreeMap<String, Vec<Requirement>> = BTreeMap::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut signed_scopes = BTreeSet::new();

    for (index, rule) in policy.trust.iter().enumerate() {
        let scope = podman_scope(index, &rule.scope)?;
        if let Some(&first) = seen.get(&scope) {
            return Err(RenderError::DuplicateScope {
                first,
                second: index,
                scope,
            });
        }
        seen.insert(scope.clone(), index);
        let stem = format!("{index:02}-{}", slug(&scope));
        let mut put = |name: String, pem: Vec<u8>| -> String {
            let rel = format!("{KEY_DIR}/{name}");
            let abs = format!("{install}/{rel}");
            out.files.insert(rel, pem);
            abs
        };

        let requirement = match &rule.keyless {
            None => {
                let mut paths = Vec::new();
                for (n, key) in rule.keys.iter().enumerate() {
                    let pem = public_key_pem(key, file(inputs, key)?)?;
                    let name = if rule.keys.len() == 1 {
                        format!("{stem}.pub")
                    } else {
                        format!("{stem}.{n}.pub")
                    };
                    paths.push(put(name, pem));
                }
                let rekor_public_key_path = match (&rule.rekor_key, rule.require_rekor) {
                    (Some(k), true) => {
                        let pem = public_key_pem(k, file(inputs, k)?)?;
                        Some(put(format!("{stem}.rekor.pub"), pem))
                    }
                    _ => None,
                };
                let (key_path, key_paths) = if paths.len() == 1 {
                    (paths.pop(), None)
                } else {
                    out.warnings.push(format!(
                        "trust rule {index} ({scope}): {} keys rendered as keyPaths; {OLD_PODMAN} (Unknown key \"keyPaths\")",
                        paths.len()
                    ));
                    (None, Some(paths))
                };
                if rekor_public_key_path.is_some() {
                    out.warnings.push(format!(
                        "trust rule {index} ({scope}): require_rekor rendered as rekorPublicKeyPath; {OLD_PODMAN} (Unknown key \"rekorPublicKeyPath\")"
                    ));
                }
                signed_scopes.insert(scope.clone());
                Requirement::SigstoreSigned {
                    key_path,
                    key_paths,
                    fulcio: None,
                    rekor_public_key_path,
                    signed_identity: SignedIdentity {
                        kind: "matchRepository",
                    },
                }
            }
            Some(k) => match pinnable_email(k) {
                Err(detail) => match inputs.unpinnable {
                    Unpinnable::Refuse => {
                        return Err(RenderError::UnpinnableIdentity {
                            index,
                            scope,
                            detail,
                        })
                    }
                    Unpinnable::Reject => {
                        out.warnings.push(format!(
                            "trust rule {index} ({scope}): podman cannot pin the keyless identity ({detail}); \
                             rendered as reject: podman refuses every image under {scope}. Pull them with \
                             `guest-agent pull`, which verifies the identity and pulls by digest"
                        ));
                        Requirement::Reject
                    }
                },
                Ok(email) => {
                    let (ca, rekor) =
                        keyless_material(index, &scope, rule, k, inputs, &mut out.warnings)?;
                    let ca_path = put(format!("{stem}.fulcio-ca.pem"), ca);
                    let rekor_path = put(format!("{stem}.rekor.pub"), rekor);
                    out.warnings.push(format!(
                        "trust rule {index} ({scope}): keyless rendered as fulcio + rekorPublicKeyPath; {OLD_PODMAN} (Unknown key \"fulcio\")"
                    ));
                    signed_scopes.insert(scope.clone());
                    Requirement::SigstoreSigned {
                        key_path: None,
                        key_paths: None,
                        fulcio: Some(Fulcio {
                            ca_path,
                            oidc_issuer: k.issuer.clone(),
                            subject_email: email.to_owned(),
                        }),
                        rekor_public_key_path: Some(rekor_path),
                        signed_identity: SignedIdentity {
                            kind: "matchRepository",
                        },
                    }
                }
            },
        };
        docker.insert(scope, vec![requirement]);
    }
    if policy.trust.is_empty() {
        out.warnings
            .push("the image policy has no trust rules: podman will refuse every image".into());
    }

    let doc = PolicyJson {
        default: vec![Requirement::Reject],
        transports: BTreeMap::from([("docker", docker)]),
    };
    // Serialising plain structs and string maps cannot fail.
    out.policy_json = serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n";
    let mut y = String::from(
        "# Generated by `policy render-podman` from the Provenant image policy: fetch\n\
         # sigstore signatures (cosign's sha256-<digest>.sig tags) for the signed scopes.\n",
    );
    if signed_scopes.is_empty() {
        y.push_str("docker: {}\n");
    } else {
        y.push_str("docker:\n");
        for s in &signed_scopes {
            // Scopes are restricted to [a-z0-9._:/-] (see podman_scope): a
            // double-quoted YAML string needs no escapes.
            y.push_str(&format!("  \"{s}\":\n    use-sigstore-attachments: true\n"));
        }
    }
    out.registries_d = y;
    Ok(out)
}

/// The email podman can pin for `k`, or why it cannot.
fn pinnable_email(k: &KeylessRule) -> Result<&str, String> {
    let mut extra = Vec::new();
    if let Some(s) = &k.san {
        extra.push(format!("san {s:?}"));
    }
    if let Some(s) = &k.san_regex {
        extra.push(format!("san_regex {s:?}"));
    }
    if let Some(s) = &k.source_repository {
        extra.push(format!("source_repository {s:?}"));
    }
    if let Some(s) = &k.source_ref {
        extra.push(format!("source_ref {s:?}"));
    }
    match (&k.subject_email, extra.is_empty()) {
        (Some(e), true) if !e.is_empty() => Ok(e),
        _ => Err(if extra.is_empty() {
            "no subject_email".to_owned()
        } else {
            extra.join(", ")
        }),
    }
}

/// The Fulcio CA PEM bundle and the Rekor key PEM for a keyless rule.
fn keyless_material(
    index: usize,
    scope: &str,
    rule: &ImageRule,
    k: &KeylessRule,
    inputs: &RenderInputs,
    warnings: &mut Vec<String>,
) -> Result<(Vec<u8>, Vec<u8>), RenderError> {
    let mut from_root = None;
    if let Some(root) = &k.trusted_root {
        let (ca, rekor, skipped) = from_trusted_root(root, file(inputs, root)?)?;
        for s in skipped {
            warnings.push(format!(
                "trust rule {index} ({scope}): {s} left out: podman needs a Rekor key that signs SETs"
            ));
        }
        from_root = Some((ca, rekor));
    }
    // An explicit `fulcio_ca` / `rekor_key` takes precedence over the root's.
    let ca = match (&k.fulcio_ca, &from_root) {
        (Some(p), _) => certificates_pem(p, file(inputs, p)?)?,
        (None, Some((ca, _))) => ca.clone(),
        (None, None) => unreachable_validated(index, scope)?,
    };
    let rekor = match (&rule.rekor_key, &from_root) {
        (Some(p), _) => public_key_pem(p, file(inputs, p)?)?,
        (None, Some((_, r))) => r.clone(),
        (None, None) => unreachable_validated(index, scope)?,
    };
    Ok((ca, rekor))
}

// `validate()` guarantees trust material; this keeps the code total without a panic.
fn unreachable_validated(index: usize, scope: &str) -> Result<Vec<u8>, RenderError> {
    Err(RenderError::InvalidPolicy(ImagePolicyError::InvalidRule {
        index,
        scope: scope.to_owned(),
        detail: "keyless needs trusted_root, or fulcio_ca together with rekor_key".into(),
    }))
}

fn file<'a>(inputs: &'a RenderInputs, path: &Path) -> Result<&'a [u8], RenderError> {
    let data = inputs
        .files
        .get(path)
        .ok_or_else(|| RenderError::MissingFile {
            path: path.display().to_string(),
        })?;
    if data.len() > MAX_INPUT_FILE {
        return Err(RenderError::BadKey {
            path: path.display().to_string(),
            detail: format!("larger than {MAX_INPUT_FILE} bytes"),
        });
    }
    Ok(data)
}

/// Checks a scope is one podman's docker transport takes and means what
/// [`ImagePolicy::rule_for`] means: `host[:port][/path]`, an explicit registry host,
/// lowercase repository path segments, no tag, digest or wildcard.
fn podman_scope(index: usize, raw: &str) -> Result<String, RenderError> {
    let bad = |detail: &str| RenderError::BadScope {
        index,
        scope: raw.to_owned(),
        detail: detail.to_owned(),
    };
    let scope = raw.trim_end_matches('/');
    let mut parts = scope.split('/');
    let host = parts.next().unwrap_or_default();
    let (name, port) = match host.rsplit_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (host, None),
    };
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        || name.starts_with(['.', '-'])
        || name.ends_with(['.', '-'])
    {
        return Err(bad("the registry host must be a DNS name or IP address"));
    }
    if !(name.contains('.') || port.is_some() || name == "localhost") {
        return Err(bad(
            "the first segment must be a registry host (with a dot or a port, or localhost); \
             podman would read it as a docker.io namespace",
        ));
    }
    if let Some(p) = port {
        if !p.bytes().all(|b| b.is_ascii_digit()) || !matches!(p.parse::<u16>(), Ok(1..)) {
            return Err(bad("bad registry port"));
        }
    }
    for seg in parts {
        let ok = !seg.is_empty()
            && seg
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
            && seg.starts_with(|c: char| c.is_ascii_alphanumeric())
            && seg.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !ok {
            return Err(bad(
                "repository path segments are lowercase [a-z0-9._-], with no tag or digest",
            ));
        }
    }
    Ok(scope.to_owned())
}

/// A file-name-safe form of a scope.
fn slug(scope: &str) -> String {
    scope
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

// --- PEM and DER ---

/// The PEM blocks in `data`: (label, DER). Text outside blocks is ignored, as
/// RFC 7468 allows.
fn pem_blocks(data: &[u8]) -> Result<Vec<(String, Vec<u8>)>, String> {
    let text = std::str::from_utf8(data).map_err(|_| "not UTF-8 text (PEM expected)")?;
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let after = &rest[start + 11..];
        let label_end = after.find("-----").ok_or("unterminated PEM header")?;
        let label = &after[..label_end];
        let body_start = &after[label_end + 5..];
        let end_marker = format!("-----END {label}-----");
        let body_end = body_start
            .find(&end_marker)
            .ok_or_else(|| format!("no {end_marker:?}"))?;
        let b64: String = body_start[..body_end]
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(b64.as_bytes())
            .map_err(|e| format!("bad base64 in the {label} block: {e}"))?;
        blocks.push((label.to_owned(), der));
        rest = &body_start[body_end + end_marker.len()..];
    }
    Ok(blocks)
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        s.push_str(&String::from_utf8_lossy(chunk));
        s.push('\n');
    }
    s.push_str(&format!("-----END {label}-----\n"));
    s
}

const OID_EC: &str = "1.2.840.10045.2.1";
const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_ED25519: &str = "1.3.101.112";

/// Checks DER is a SubjectPublicKeyInfo of a kind cosign and podman use.
fn check_spki(der: &[u8]) -> Result<(), String> {
    use der::Decode as _;
    let spki = spki::SubjectPublicKeyInfoRef::from_der(der)
        .map_err(|e| format!("not a SubjectPublicKeyInfo: {e}"))?;
    let oid = spki.algorithm.oid.to_string();
    if ![OID_EC, OID_RSA, OID_ED25519].contains(&oid.as_str()) {
        return Err(format!(
            "unsupported public key algorithm {oid} (ECDSA, RSA or Ed25519 expected)"
        ));
    }
    Ok(())
}

/// One `PUBLIC KEY` PEM block, checked and re-encoded.
fn public_key_pem(path: &Path, data: &[u8]) -> Result<Vec<u8>, RenderError> {
    let bad = |detail: String| RenderError::BadKey {
        path: path.display().to_string(),
        detail,
    };
    let blocks = pem_blocks(data).map_err(bad)?;
    let keys: Vec<_> = blocks.iter().filter(|(l, _)| l == "PUBLIC KEY").collect();
    match keys.as_slice() {
        [(_, der)] => {
            check_spki(der).map_err(bad)?;
            Ok(pem_encode("PUBLIC KEY", der).into_bytes())
        }
        [] => Err(bad(
            "no PEM \"PUBLIC KEY\" block (a cosign public key expected)".into(),
        )),
        _ => Err(bad(
            "several PUBLIC KEY blocks; give each key its own file".into()
        )),
    }
}

fn check_certificate(der: &[u8]) -> Result<(), String> {
    use der::Decode as _;
    x509_cert::Certificate::from_der(der)
        .map(|_| ())
        .map_err(|e| format!("not an X.509 certificate: {e}"))
}

/// Every `CERTIFICATE` block, checked and re-encoded (at least one).
fn certificates_pem(path: &Path, data: &[u8]) -> Result<Vec<u8>, RenderError> {
    let bad = |detail: String| RenderError::BadCertificate {
        path: path.display().to_string(),
        detail,
    };
    let mut pem = String::new();
    for (label, der) in pem_blocks(data).map_err(bad)? {
        if label == "CERTIFICATE" {
            check_certificate(&der).map_err(bad)?;
            pem.push_str(&pem_encode("CERTIFICATE", &der));
        }
    }
    if pem.is_empty() {
        return Err(bad("no PEM CERTIFICATE block".into()));
    }
    Ok(pem.into_bytes())
}

// --- trusted_root.json ---

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TrustedRoot {
    media_type: String,
    #[serde(default)]
    tlogs: Vec<Tlog>,
    #[serde(default)]
    certificate_authorities: Vec<CertificateAuthority>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Tlog {
    #[serde(default)]
    base_url: String,
    public_key: TlogKey,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TlogKey {
    raw_bytes: String,
    #[serde(default)]
    key_details: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CertificateAuthority {
    cert_chain: CertChain,
}

#[derive(Deserialize)]
struct CertChain {
    certificates: Vec<RawBytes>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawBytes {
    raw_bytes: String,
}

/// Fulcio CA PEM bundle, Rekor key PEM, and the log keys left out.
type RootMaterial = (Vec<u8>, Vec<u8>, Vec<String>);

/// From a `trusted_root.json`: every Fulcio CA certificate (all chains, as one PEM
/// bundle: podman's `caPath`), the one SET-signing (ECDSA, Rekor v1) Rekor key, and a
/// description of each log key left out (Rekor v2 logs sign no SETs).
fn from_trusted_root(path: &Path, data: &[u8]) -> Result<RootMaterial, RenderError> {
    let bad = |detail: String| RenderError::BadTrustedRoot {
        path: path.display().to_string(),
        detail,
    };
    let root: TrustedRoot = serde_json::from_slice(data).map_err(|e| bad(e.to_string()))?;
    if !root
        .media_type
        .starts_with("application/vnd.dev.sigstore.trustedroot")
    {
        return Err(bad(format!("unexpected mediaType {:?}", root.media_type)));
    }
    let b64 = |s: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .map_err(|e| bad(format!("bad base64: {e}")))
    };
    let mut ca = String::new();
    let mut seen = BTreeSet::new();
    for authority in &root.certificate_authorities {
        for c in &authority.cert_chain.certificates {
            let der = b64(&c.raw_bytes)?;
            check_certificate(&der).map_err(|e| bad(format!("certificate authority: {e}")))?;
            if seen.insert(der.clone()) {
                ca.push_str(&pem_encode("CERTIFICATE", &der));
            }
        }
    }
    if ca.is_empty() {
        return Err(bad("no certificate authorities (Fulcio)".into()));
    }
    let mut rekor: Vec<(String, Vec<u8>)> = Vec::new();
    let mut skipped = Vec::new();
    for t in &root.tlogs {
        let der = b64(&t.public_key.raw_bytes)?;
        if t.public_key.key_details.starts_with("PKIX_ECDSA") {
            check_spki(&der).map_err(|e| bad(format!("Rekor key of {}: {e}", t.base_url)))?;
            if !rekor.iter().any(|(_, d)| d == &der) {
                rekor.push((t.base_url.clone(), der));
            }
        } else {
            skipped.push(format!(
                "the {} key of log {}",
                if t.public_key.key_details.is_empty() {
                    "unspecified"
                } else {
                    &t.public_key.key_details
                },
                t.base_url
            ));
        }
    }
    match rekor.as_slice() {
        [(_, der)] => Ok((
            ca.into_bytes(),
            pem_encode("PUBLIC KEY", der).into_bytes(),
            skipped,
        )),
        [] => Err(bad("no ECDSA (SET-signing) Rekor key in tlogs".into())),
        several => Err(bad(format!(
            "{} ECDSA Rekor keys ({}); podman's rekorPublicKeyPath takes one: give fulcio_ca and rekor_key instead",
            several.len(),
            several
                .iter()
                .map(|(u, _)| u.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::ImagePolicy;

    const VENDOR_KEY: &[u8] = include_bytes!("../files/vendor-cosign.pub");
    const PUBLIC_GOOD_REKOR: &[u8] = include_bytes!("../files/rekor.pub");
    const ROOT: &[u8] = include_bytes!("../files/trusted_root.json");
    const COSIGN2: &[u8] = include_bytes!("../files/testdata/cosign2.pub");
    const FULCIO_V1: &[u8] = include_bytes!("../files/testdata/fulcio_v1.crt.pem");
    const FIXTURE_REKOR: &[u8] = include_bytes!("../files/testdata/rekor.pub");

    fn inputs() -> RenderInputs {
        let files = [
            ("vendor.pub", VENDOR_KEY),
            ("cosign2.pub", COSIGN2),
            ("rekor.pub", PUBLIC_GOOD_REKOR),
            ("trusted_root.json", ROOT),
            ("fulcio_v1.crt.pem", FULCIO_V1),
            ("fixture-rekor.pub", FIXTURE_REKOR),
        ]
        .into_iter()
        .map(|(p, d)| (PathBuf::from(p), d.to_vec()))
        .collect();
        RenderInputs {
            install_dir: "/etc/containers/provenant".into(),
            files,
            unpinnable: Unpinnable::Refuse,
        }
    }

    fn policy(toml_text: &str) -> ImagePolicy {
        toml::from_str(toml_text).unwrap()
    }

    fn json(r: &Rendered) -> serde_json::Value {
        serde_json::from_str(&r.policy_json).unwrap()
    }

    const WORKFLOW: &str = r#"
[[trust]]
scope = "ghcr.io/provenant"
[trust.keyless]
trusted_root = "trusted_root.json"
issuer = "https://token.actions.githubusercontent.com"
san = "https://github.com/provenant/provenant/.github/workflows/release.yml@refs/heads/main"
"#;

    #[test]
    fn one_key_renders_key_path_and_default_reject() {
        let p = policy(
            "[[trust]]\nscope = \"127.0.0.1:5000/team/\"\nkeys = [\"vendor.pub\"]\nrequire_rekor = false\n",
        );
        let r = render(&p, &inputs()).unwrap();
        let v = json(&r);
        assert_eq!(v["default"], serde_json::json!([{"type": "reject"}]));
        assert_eq!(
            v["transports"]["docker"]["127.0.0.1:5000/team"],
            serde_json::json!([{
                "type": "sigstoreSigned",
                "keyPath": "/etc/containers/provenant/keys/00-127.0.0.1_5000_team.pub",
                "signedIdentity": {"type": "matchRepository"}
            }])
        );
        assert_eq!(
            r.files["keys/00-127.0.0.1_5000_team.pub"], VENDOR_KEY,
            "an already canonical PEM is kept byte for byte"
        );
        assert_eq!(r.files.len(), 1);
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        assert_eq!(
            r.registries_d.lines().skip(2).collect::<Vec<_>>(),
            [
                "docker:",
                "  \"127.0.0.1:5000/team\":",
                "    use-sigstore-attachments: true"
            ]
        );
        // Field order is fixed: type first.
        assert!(r
            .policy_json
            .contains("\"type\": \"sigstoreSigned\",\n          \"keyPath\""));
        assert_eq!(render(&p, &inputs()).unwrap(), r, "deterministic");
    }

    #[test]
    fn several_keys_and_rekor_are_rendered_with_warnings() {
        let p = policy(
            "[[trust]]\nscope = \"registry.example.com/vendor\"\nkeys = [\"vendor.pub\", \"cosign2.pub\"]\nrekor_key = \"rekor.pub\"\n",
        );
        let r = render(&p, &inputs()).unwrap();
        let req = &json(&r)["transports"]["docker"]["registry.example.com/vendor"][0];
        assert_eq!(
            req["keyPaths"],
            serde_json::json!([
                "/etc/containers/provenant/keys/00-registry.example.com_vendor.0.pub",
                "/etc/containers/provenant/keys/00-registry.example.com_vendor.1.pub"
            ])
        );
        assert!(req.get("keyPath").is_none());
        assert_eq!(
            req["rekorPublicKeyPath"],
            "/etc/containers/provenant/keys/00-registry.example.com_vendor.rekor.pub"
        );
        assert_eq!(r.files.len(), 3);
        assert_eq!(r.warnings.len(), 2, "{:?}", r.warnings);
        assert!(r.warnings[0].contains("keyPaths") && r.warnings[0].contains("Debian 12"));
        assert!(r.warnings[1].contains("rekorPublicKeyPath"));
    }

    #[test]
    fn keyless_email_from_trusted_root_extracts_fulcio_and_rekor() {
        let p = policy(
            r#"
[[trust]]
scope = "quay.io/example-team"
[trust.keyless]
trusted_root = "trusted_root.json"
issuer = "https://accounts.google.com"
subject_email = "release@example.com"
"#,
        );
        let r = render(&p, &inputs()).unwrap();
        let req = &json(&r)["transports"]["docker"]["quay.io/example-team"][0];
        assert_eq!(
            req["fulcio"],
            serde_json::json!({
                "caPath": "/etc/containers/provenant/keys/00-quay.io_example-team.fulcio-ca.pem",
                "oidcIssuer": "https://accounts.google.com",
                "subjectEmail": "release@example.com"
            })
        );
        assert_eq!(
            r.files["keys/00-quay.io_example-team.rekor.pub"], PUBLIC_GOOD_REKOR,
            "the root's ECDSA Rekor key"
        );
        // Two CAs in the root: one self-signed root, and an intermediate + root.
        let ca = String::from_utf8(r.files["keys/00-quay.io_example-team.fulcio-ca.pem"].clone())
            .unwrap();
        assert_eq!(ca.matches("-----BEGIN CERTIFICATE-----").count(), 3);
        assert!(certificates_pem(Path::new("ca"), ca.as_bytes()).is_ok());
        // The Rekor v2 (Ed25519) log is left out, and said so.
        assert!(r
            .warnings
            .iter()
            .any(|w| w.contains("PKIX_ED25519") && w.contains("log2025-1.rekor.sigstore.dev")));
        assert!(r.warnings.iter().any(|w| w.contains("\"fulcio\"")));
    }

    #[test]
    fn keyless_email_from_fulcio_ca_and_rekor_key() {
        let p = policy(
            r#"
[[trust]]
scope = "localhost/app"
rekor_key = "fixture-rekor.pub"
[trust.keyless]
fulcio_ca = "fulcio_v1.crt.pem"
issuer = "https://github.com/login/oauth"
subject_email = "mitr@redhat.com"
"#,
        );
        let r = render(&p, &inputs()).unwrap();
        let req = &json(&r)["transports"]["docker"]["localhost/app"][0];
        assert_eq!(req["fulcio"]["subjectEmail"], "mitr@redhat.com");
        assert_eq!(
            req["rekorPublicKeyPath"],
            "/etc/containers/provenant/keys/00-localhost_app.rekor.pub"
        );
        assert_eq!(
            r.files["keys/00-localhost_app.fulcio-ca.pem"]
                .windows(27)
                .filter(|w| w == b"-----BEGIN CERTIFICATE-----")
                .count(),
            1
        );
    }

    #[test]
    fn workflow_identity_is_refused_or_rendered_as_reject() {
        let p = policy(&format!(
            "{WORKFLOW}\n[[trust]]\nscope = \"ghcr.io\"\nkeys = [\"vendor.pub\"]\nrequire_rekor = false\n"
        ));
        let e = render(&p, &inputs()).unwrap_err();
        assert_eq!(e.kind(), "unpinnable_identity");
        assert!(
            e.to_string().contains("san \"https://github.com/provenant"),
            "{e}"
        );
        assert!(e.to_string().contains("--reject-unpinnable"), "{e}");

        let mut i = inputs();
        i.unpinnable = Unpinnable::Reject;
        let r = render(&p, &i).unwrap();
        let v = json(&r);
        // Explicitly rejected, so the broader ghcr.io key rule cannot catch it.
        assert_eq!(
            v["transports"]["docker"]["ghcr.io/provenant"],
            serde_json::json!([{"type": "reject"}])
        );
        assert_eq!(
            v["transports"]["docker"]["ghcr.io"][0]["type"],
            "sigstoreSigned"
        );
        assert!(
            r.warnings[0].contains("rendered as reject")
                && r.warnings[0].contains("guest-agent pull")
        );
        assert!(!r.registries_d.contains("ghcr.io/provenant"));
        assert!(r.registries_d.contains("\"ghcr.io\":"));
        assert!(
            !r.files.keys().any(|k| k.contains("provenant")),
            "no key material for a rejected scope"
        );

        // An email together with a workflow constraint is no more pinnable.
        let mut p = policy(WORKFLOW);
        let k = p.trust[0].keyless.as_mut().unwrap();
        k.san = None;
        k.subject_email = Some("a@example.com".into());
        k.source_repository = Some("https://github.com/provenant/provenant".into());
        k.source_ref = Some("refs/heads/main".into());
        let e = render(&p, &inputs()).unwrap_err();
        assert_eq!(e.kind(), "unpinnable_identity");
        assert!(e.to_string().contains("source_repository"), "{e}");
    }

    #[test]
    fn scopes_podman_would_misread_are_refused() {
        for scope in [
            "provenant/app",
            "ghcr.io/Provenant",
            "ghcr.io/provenant/app:1",
            "*.example.com",
            "ghcr.io//x",
            "-bad.io/x",
            "host:99999999/x",
            "host:65536/x",
            "host:0/x",
            "host:/x",
            "host:+80/x",
        ] {
            let p = ImagePolicy {
                prefer_keyless: false,
                trust: vec![ImageRule {
                    scope: scope.into(),
                    keys: vec!["vendor.pub".into()],
                    keyless: None,
                    rekor_key: None,
                    require_rekor: false,
                }],
            };
            let e = render(&p, &inputs()).unwrap_err();
            assert!(
                matches!(e.kind(), "bad_scope" | "invalid_policy"),
                "{scope}: {e}"
            );
        }
        let p = policy(
            "[[trust]]\nscope = \"a.io/x\"\nkeys = [\"vendor.pub\"]\nrequire_rekor = false\n[[trust]]\nscope = \"a.io/x/\"\nkeys = [\"cosign2.pub\"]\nrequire_rekor = false\n",
        );
        let e = render(&p, &inputs()).unwrap_err();
        assert_eq!(e.kind(), "duplicate_scope", "{e}");
    }

    #[test]
    fn bad_material_is_named() {
        let key_rule = |key: &str| {
            policy(&format!(
                "[[trust]]\nscope = \"a.io/x\"\nkeys = [\"{key}\"]\nrequire_rekor = false\n"
            ))
        };
        let mut i = inputs();
        i.files
            .insert("garbage".into(), b"\x00\xffnot pem".to_vec());
        i.files.insert("cert-as-key".into(), FULCIO_V1.to_vec());
        i.files
            .insert("two-keys".into(), [VENDOR_KEY, COSIGN2].concat());
        i.files.insert(
            "bad-der".into(),
            b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n".to_vec(),
        );
        i.files
            .insert("huge".into(), vec![b' '; MAX_INPUT_FILE + 1]);
        for (path, kind, needle) in [
            ("absent.pub", "missing_file", "not provided"),
            ("garbage", "bad_key", "UTF-8"),
            ("cert-as-key", "bad_key", "no PEM \"PUBLIC KEY\""),
            ("two-keys", "bad_key", "several"),
            ("bad-der", "bad_key", "SubjectPublicKeyInfo"),
            ("huge", "bad_key", "larger than"),
        ] {
            let e = render(&key_rule(path), &i).unwrap_err();
            assert_eq!(e.kind(), kind, "{path}: {e}");
            assert!(e.to_string().contains(needle), "{path}: {e}");
        }

        let email_rule = policy(
            "[[trust]]\nscope = \"a.io/x\"\n[trust.keyless]\ntrusted_root = \"root\"\nissuer = \"i\"\nsubject_email = \"e@x\"\n",
        );
        let mut root: serde_json::Value = serde_json::from_slice(ROOT).unwrap();
        let ecdsa = root["tlogs"][0].clone();
        let mut variants = Vec::new();
        variants.push((b"{".to_vec(), "EOF"));
        let mut r = root.clone();
        r["mediaType"] = "application/json".into();
        variants.push((serde_json::to_vec(&r).unwrap(), "mediaType"));
        let mut r = root.clone();
        r["tlogs"] = serde_json::json!([root["tlogs"][1].clone()]);
        variants.push((serde_json::to_vec(&r).unwrap(), "no ECDSA"));
        let mut r = root.clone();
        let mut other = ecdsa.clone();
        other["baseUrl"] = "https://other.example".into();
        other["publicKey"]["rawBytes"] = serde_json::Value::String(
            base64::engine::general_purpose::STANDARD.encode(&pem_blocks(COSIGN2).unwrap()[0].1),
        );
        r["tlogs"] = serde_json::json!([ecdsa, other]);
        variants.push((serde_json::to_vec(&r).unwrap(), "2 ECDSA Rekor keys"));
        root["certificateAuthorities"] = serde_json::json!([]);
        variants.push((
            serde_json::to_vec(&root).unwrap(),
            "no certificate authorities",
        ));
        for (data, needle) in variants {
            let mut i = inputs();
            i.files.insert("root".into(), data);
            let e = render(&email_rule, &i).unwrap_err();
            assert_eq!(e.kind(), "bad_trusted_root", "{e}");
            assert!(e.to_string().contains(needle), "{needle}: {e}");
        }
    }

    #[test]
    fn install_dir_must_be_absolute_and_empty_policy_rejects_all() {
        let mut i = inputs();
        i.install_dir = "relative/dir".into();
        assert_eq!(
            render(&ImagePolicy::default(), &i).unwrap_err().kind(),
            "bad_install_dir"
        );
        let r = render(&ImagePolicy::default(), &inputs()).unwrap();
        assert_eq!(
            json(&r),
            serde_json::json!({"default": [{"type": "reject"}], "transports": {"docker": {}}})
        );
        assert!(r.warnings[0].contains("refuse every image"));
        assert!(r.registries_d.ends_with("docker: {}\n"));
    }

    #[test]
    fn pem_parser_never_panics_on_odd_input() {
        for s in [
            "-----BEGIN ",
            "-----BEGIN X-----",
            "-----BEGIN X-----\n-----END Y-----",
            "-----BEGIN PUBLIC KEY-----\n!!\n-----END PUBLIC KEY-----",
            "-----BEGIN é-----\n-----END é-----",
        ] {
            let _ = pem_blocks(s.as_bytes());
            let _ = public_key_pem(Path::new("p"), s.as_bytes());
            let _ = certificates_pem(Path::new("p"), s.as_bytes());
        }
    }
}
