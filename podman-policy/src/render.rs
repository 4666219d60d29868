//! [`render`]: the image policy's trust rules as podman's `containers-policy.json`
//! requirements, with the key material they name.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use policy::image::{ImagePolicy, ImagePolicyError, ImageRule, KeylessRule};
use serde::Serialize;

use crate::pem::{certificates_pem, public_key_pem};
use crate::registries::{podman_scope, registries_d, slug};
use crate::trusted_root::from_trusted_root;
use crate::{RenderError, RenderInputs, Rendered, Unpinnable, KEY_DIR, MAX_INPUT_FILE};

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
    out.registries_d = registries_d(&signed_scopes);
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
