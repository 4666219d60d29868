//! The image policy: which signers may sign which repositories, and the per-workload
//! badge rule of DESIGN.md "Image signatures".
//!
//! The same [`ImagePolicy`] drives three enforcement points, so they cannot drift:
//! the control plane's re-verification of every reported workload (`cp-verifier`),
//! the guest's verifying pull gate (`guest-agent pull`), and the podman
//! `containers-policy.json` rendered from it (`policy render-podman`, in the
//! `podman-policy` crate).
//!
//! ```toml
//! prefer_keyless = true
//!
//! [[trust]]
//! scope = "ghcr.io/provenant"          # every repository at or under this path
//! [trust.keyless]
//! trusted_root = "trusted_root.json"   # Fulcio CAs and Rekor keys
//! issuer = "https://token.actions.githubusercontent.com"
//! san = "https://github.com/provenant/provenant/.github/workflows/release.yml@refs/heads/main"
//! source_repository = "https://github.com/provenant/provenant"
//! source_ref = "refs/heads/main"
//!
//! [[trust]]
//! scope = "registry.example:5000/vendor"
//! keys = ["cosign.pub"]
//! rekor_key = "rekor.pub"
//! ```

use std::path::PathBuf;

use evidence::verdict::{Reason, ReasonCode, Status, Verdict};
use evidence::Workload;
use serde::{Deserialize, Serialize};

/// Who may sign what.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImagePolicy {
    /// A key-signed image is shown yellow (`ImageKeySigned`), not green, when set:
    /// only a keyless signature names the workflow that built the image.
    #[serde(default)]
    pub prefer_keyless: bool,
    /// The rules; for a repository the rule with the longest matching scope applies.
    #[serde(default)]
    pub trust: Vec<ImageRule>,
}

/// The signers trusted for one registry namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageRule {
    /// `registry[:port]/path`: the rule covers this repository and every repository
    /// under it (matched on whole path segments: `a/b` covers `a/b/c`, not `a/bc`).
    pub scope: String,
    /// Key-based: cosign public keys (PEM). A signature by any of them is accepted.
    #[serde(default)]
    pub keys: Vec<PathBuf>,
    /// Keyless: a Fulcio certificate for a named identity, logged in Rekor.
    #[serde(default)]
    pub keyless: Option<KeylessRule>,
    /// Rekor public key (PEM) for SETs. For keyless rules it may come from
    /// `keyless.trusted_root` instead.
    #[serde(default)]
    pub rekor_key: Option<PathBuf>,
    /// Require a valid Rekor SET (`dev.sigstore.cosign/bundle`) or a bundle's tlog
    /// entry. Default true; keyless signatures always require one.
    #[serde(default = "yes")]
    pub require_rekor: bool,
}

fn yes() -> bool {
    true
}

/// The identity a keyless signature's certificate must carry, and what it chains to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeylessRule {
    /// A `trusted_root.json` (Fulcio CAs, Rekor keys, CT logs).
    #[serde(default)]
    pub trusted_root: Option<PathBuf>,
    /// Or a PEM Fulcio CA (bundle), used with the rule's `rekor_key`.
    #[serde(default)]
    pub fulcio_ca: Option<PathBuf>,
    /// The OIDC issuer, matched exactly.
    pub issuer: String,
    /// An email SAN, matched exactly (the only identity podman itself can pin).
    #[serde(default)]
    pub subject_email: Option<String>,
    /// A URI SAN, matched exactly (a GitHub workflow:
    /// `https://github.com/OWNER/REPO/.github/workflows/F.yml@REF`).
    #[serde(default)]
    pub san: Option<String>,
    /// A SAN regex, anchored at both ends.
    #[serde(default)]
    pub san_regex: Option<String>,
    /// The Fulcio source-repository extension (`https://github.com/OWNER/REPO`).
    #[serde(default)]
    pub source_repository: Option<String>,
    /// The Fulcio source-repository-ref extension (`refs/heads/main`).
    #[serde(default)]
    pub source_ref: Option<String>,
}

/// Why an image policy cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImagePolicyError {
    /// A trust rule that is malformed or incomplete.
    #[error("trust rule {index} ({scope:?}): {detail}")]
    InvalidRule {
        /// The rule's position in `trust`, from 0.
        index: usize,
        /// Its scope, as written.
        scope: String,
        /// What is wrong with it.
        detail: String,
    },
}

impl ImagePolicy {
    /// Checks every rule: a well-formed scope, exactly one of `keys` / `keyless`,
    /// trust material and at least one identity constraint for keyless.
    pub fn validate(&self) -> Result<(), ImagePolicyError> {
        for (index, r) in self.trust.iter().enumerate() {
            let bad = |detail: &str| ImagePolicyError::InvalidRule {
                index,
                scope: r.scope.clone(),
                detail: detail.to_owned(),
            };
            let scope = r.scope.trim_end_matches('/');
            if scope.is_empty()
                || scope.contains("//")
                || scope.contains(['@', ' ', '\t', '\n'])
                || scope.len() > 512
            {
                return Err(bad("scope must be registry[:port]/path"));
            }
            match (&r.keys.is_empty(), &r.keyless) {
                (false, Some(_)) => return Err(bad("give either keys or keyless, not both")),
                (true, None) => return Err(bad("give keys or keyless")),
                (true, Some(k)) => {
                    if k.trusted_root.is_none() && (k.fulcio_ca.is_none() || r.rekor_key.is_none())
                    {
                        return Err(bad(
                            "keyless needs trusted_root, or fulcio_ca together with rekor_key",
                        ));
                    }
                    if k.issuer.is_empty() {
                        return Err(bad("keyless needs an issuer"));
                    }
                    if k.subject_email.is_none()
                        && k.san.is_none()
                        && k.san_regex.is_none()
                        && k.source_repository.is_none()
                    {
                        return Err(bad(
                            "keyless needs an identity: subject_email, san, san_regex or source_repository",
                        ));
                    }
                    // A GitHub Actions certificate names a repository, but any
                    // workflow file on any branch of it gets one: pin the workflow
                    // (san / san_regex) or at least the ref.
                    if k.issuer == crate::identity::GITHUB_ACTIONS_ISSUER
                        && k.san.is_none()
                        && k.san_regex.is_none()
                        && k.source_ref.is_none()
                    {
                        return Err(bad(
                            "a GitHub Actions identity needs san, san_regex or source_ref: \
                             source_repository alone admits any workflow on any branch",
                        ));
                    }
                    if let Some(re) = &k.san_regex {
                        regex::Regex::new(re)
                            .map_err(|e| bad(&format!("san_regex does not compile: {e}")))?;
                    }
                    if !r.require_rekor {
                        return Err(bad("keyless signatures always require Rekor"));
                    }
                }
                (false, None) => {
                    if r.require_rekor && r.rekor_key.is_none() {
                        return Err(bad("require_rekor needs rekor_key"));
                    }
                }
            }
        }
        Ok(())
    }

    /// The rule for `repository` (`registry[:port]/path`, no tag or digest): the
    /// longest scope that equals it or is a whole-segment prefix of it.
    pub fn rule_for(&self, repository: &str) -> Option<&ImageRule> {
        self.trust
            .iter()
            .filter(|r| scope_covers(r.scope.trim_end_matches('/'), repository))
            .max_by_key(|r| r.scope.trim_end_matches('/').len())
    }
}

/// Whether `scope` covers `repository`: equal, or a whole-path-segment prefix
/// (`a/b` covers `a/b/c`, not `a/bc`).
pub fn scope_covers(scope: &str, repository: &str) -> bool {
    match repository.strip_prefix(scope) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// What the control plane (or the pull gate) found out about one image digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ImageCheck {
    /// Not verified yet.
    Pending,
    /// A signature verified under the rule for the image's repository.
    Verified {
        /// Keyless (certificate identity) rather than a key.
        keyless: bool,
        /// The SAN, or the key's fingerprint.
        signer: String,
        /// When it was verified, UTC nanoseconds.
        verified_at_ns: u64,
        /// The Rekor entry's log index, where the signature was logged.
        #[serde(default)]
        rekor_log_index: Option<u64>,
    },
    /// A failed check: the image is unsigned or wrongly signed. `code` is one of
    /// the `Image*` reason codes.
    Refused {
        /// The `Image*` reason code.
        code: ReasonCode,
        /// Why, for people.
        detail: String,
    },
    /// The verifier could not decide (registry unreachable, garbage response).
    Undecided {
        /// Why, for people.
        detail: String,
    },
}

/// The coverage rule (`ImageNotCovered`): an image whose repository no
/// `[[images.trust]]` rule covers is refused before any registry is asked, so an
/// agent cannot make the control plane contact registries of its choosing. `policy`
/// is `None` when no `[images]` section is configured. `None`: covered.
pub fn uncovered(policy: Option<&ImagePolicy>, repository: &str) -> Option<ImageCheck> {
    let detail = match policy {
        None => {
            format!("no [images] policy is configured, so no signer is trusted for {repository}")
        }
        Some(p) if p.rule_for(repository).is_none() => {
            format!("no [[images.trust]] rule covers {repository}")
        }
        Some(_) => return None,
    };
    Some(ImageCheck::Refused {
        code: ReasonCode::ImageNotCovered,
        detail,
    })
}

/// Whether `code` is a fault of the image itself (unsigned, wrongly signed, not
/// covered, no digest), as opposed to the agent that runs it or an undecided check.
pub fn is_image_fault(code: ReasonCode) -> bool {
    matches!(
        code,
        ReasonCode::ImageUnsigned
            | ReasonCode::ImageSignatureInvalid
            | ReasonCode::ImageDigestMismatch
            | ReasonCode::ImageIdentityMismatch
            | ReasonCode::ImageNotCovered
            | ReasonCode::ImageNoDigest
    )
}

/// Whether a workload badge is red because of its image (each turn to red raises
/// one `ImageRefused` alert).
pub fn image_red(badge: &[Reason]) -> bool {
    badge
        .iter()
        .any(|r| r.status == Status::Fail && is_image_fault(r.code))
}

/// The badge of one workload: its image check combined with the verdict on the
/// agent that runs it (DESIGN.md "Image signatures"). Green only when the image is
/// signed under the policy *and* the agent is green (TDX evidence with provenance,
/// fresh pulses, hashes at last-known-good); the agent's reasons are carried over so
/// a software-tier agent's workloads are yellow, never green.
pub fn workload_badge(
    policy: &ImagePolicy,
    agent: &Verdict,
    workload: &Workload,
    check: &ImageCheck,
) -> Verdict {
    let mut reasons = Vec::new();
    let mut push = |code, status, detail: String| reasons.push(Reason::new(code, status, detail));
    if workload.image_digest.is_none() {
        push(
            ReasonCode::ImageNoDigest,
            Status::Fail,
            format!(
                "image {} has no registry digest (built or loaded locally): it cannot carry a signature",
                workload.image
            ),
        );
    } else {
        match check {
            ImageCheck::Pending => push(
                ReasonCode::ImageUnverifiable,
                Status::Unknown,
                "the image signature has not been verified yet".into(),
            ),
            ImageCheck::Undecided { detail } => push(
                ReasonCode::ImageUnverifiable,
                Status::Unknown,
                detail.clone(),
            ),
            ImageCheck::Refused { code, detail } => push(*code, Status::Fail, detail.clone()),
            ImageCheck::Verified {
                keyless, signer, ..
            } => {
                if !keyless && policy.prefer_keyless {
                    push(
                        ReasonCode::ImageKeySigned,
                        Status::Warn,
                        format!("signed with key {signer}; the policy prefers keyless signatures"),
                    );
                }
            }
        }
    }
    reasons.extend(agent.reasons.iter().cloned());
    let mut v = Verdict::from_reasons(reasons);
    // An agent verdict can carry a status without reasons only if it is Pass; keep
    // the worse of the two in any case.
    v.status = v.status.max(agent.status);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> ImagePolicy {
        toml::from_str(
            r#"
prefer_keyless = true
[[trust]]
scope = "127.0.0.1:5000/provenant"
[trust.keyless]
trusted_root = "trusted_root.json"
issuer = "https://token.actions.githubusercontent.com"
san = "https://github.com/provenant/provenant/.github/workflows/release.yml@refs/heads/main"
[[trust]]
scope = "127.0.0.1:5000/provenant/vendor"
keys = ["cosign.pub"]
rekor_key = "rekor.pub"
"#,
        )
        .unwrap()
    }

    #[test]
    fn coverage_rule_refuses_uncovered_repositories_before_any_registry() {
        let p = policy();
        let covered = p.trust[0].scope.clone();
        assert_eq!(uncovered(Some(&p), &covered), None);
        for (pol, want) in [
            (None, "no [images] policy is configured"),
            (Some(&p), "no [[images.trust]] rule covers"),
        ] {
            match uncovered(pol, "evil.example/x") {
                Some(ImageCheck::Refused { code, detail }) => {
                    assert_eq!(code, ReasonCode::ImageNotCovered);
                    assert!(
                        detail.contains(want) && detail.contains("evil.example/x"),
                        "{detail}"
                    );
                }
                other => panic!("{other:?}"),
            }
        }
        let red = |code, status| Reason {
            code,
            status,
            detail: String::new(),
        };
        assert!(image_red(&[red(ReasonCode::ImageNotCovered, Status::Fail)]));
        // The agent's own faults, or an undecided check, do not make the image red.
        assert!(!image_red(&[red(
            ReasonCode::ImageUnverifiable,
            Status::Unknown
        )]));
        assert!(!image_red(&[red(ReasonCode::ImageUnsigned, Status::Warn)]));
        assert!(!image_red(&[red(ReasonCode::Blinded, Status::Fail)]));
    }

    fn workload(digest: Option<&str>) -> Workload {
        Workload {
            name: "web".into(),
            id: "ab".repeat(32),
            state: "running".into(),
            image: "127.0.0.1:5000/provenant/web:1".into(),
            image_id: format!("sha256:{}", "cd".repeat(32)),
            image_digest: digest.map(str::to_owned),
        }
    }

    fn verified(keyless: bool) -> ImageCheck {
        ImageCheck::Verified {
            keyless,
            signer: "x".into(),
            verified_at_ns: 1,
            rekor_log_index: None,
        }
    }

    #[test]
    fn longest_whole_segment_scope_wins() {
        let p = policy();
        p.validate().unwrap();
        assert!(p
            .rule_for("127.0.0.1:5000/provenant/web")
            .unwrap()
            .keyless
            .is_some());
        assert_eq!(
            p.rule_for("127.0.0.1:5000/provenant/vendor/db")
                .unwrap()
                .keys
                .len(),
            1
        );
        assert!(p.rule_for("127.0.0.1:5000/provenantx/web").is_none());
        assert!(p.rule_for("127.0.0.1:5000").is_none());
    }

    #[test]
    fn invalid_rules_are_named() {
        let mut p = policy();
        p.trust[1].keyless = p.trust[0].keyless.clone();
        assert!(p.validate().unwrap_err().to_string().contains("not both"));
        let mut p = policy();
        p.trust[1].rekor_key = None;
        assert!(p.validate().unwrap_err().to_string().contains("rekor_key"));
        let mut p = policy();
        let k = p.trust[0].keyless.as_mut().unwrap();
        k.san = None;
        assert!(p.validate().unwrap_err().to_string().contains("identity"));
        // A GitHub repository alone is not a workflow identity.
        let mut p = policy();
        let k = p.trust[0].keyless.as_mut().unwrap();
        k.san = None;
        k.source_repository = Some("https://github.com/provenant/provenant".into());
        assert!(p
            .validate()
            .unwrap_err()
            .to_string()
            .contains("any workflow"));
        p.trust[0].keyless.as_mut().unwrap().source_ref = Some("refs/heads/main".into());
        p.validate().unwrap();
        p.trust[0].keyless.as_mut().unwrap().san_regex = Some("(".into());
        assert!(p.validate().unwrap_err().to_string().contains("compile"));
        assert!(toml::from_str::<ImagePolicy>("[[trust]]\nscope='a'\nkeyz=[]").is_err());
    }

    #[test]
    fn badges_follow_the_design_rules() {
        let p = policy();
        let d = Some("sha256:0489474da8ea22426ece86ace6c1c0026ab2fd3cdfbbd62b7e94650266c37d9a");
        let green = Verdict::from_reasons(vec![]);
        let soft = Verdict::from_reasons(vec![Reason {
            code: ReasonCode::SoftwareTier,
            status: Status::Warn,
            detail: String::new(),
        }]);
        let w = workload(d);
        assert_eq!(
            workload_badge(&p, &green, &w, &verified(true)).status,
            Status::Pass
        );
        // Never green on the software tier.
        assert_eq!(
            workload_badge(&p, &soft, &w, &verified(true)).status,
            Status::Warn
        );
        let ks = workload_badge(&p, &green, &w, &verified(false));
        assert_eq!(ks.status, Status::Warn);
        assert_eq!(ks.reasons[0].code, ReasonCode::ImageKeySigned);
        let refused = ImageCheck::Refused {
            code: ReasonCode::ImageUnsigned,
            detail: "no signature".into(),
        };
        assert_eq!(workload_badge(&p, &soft, &w, &refused).status, Status::Fail);
        let undecided = ImageCheck::Undecided {
            detail: "registry unreachable".into(),
        };
        assert_eq!(
            workload_badge(&p, &soft, &w, &undecided).status,
            Status::Unknown
        );
        assert_eq!(
            workload_badge(&p, &green, &w, &ImageCheck::Pending).status,
            Status::Unknown
        );
        // No digest: red, whatever the check says.
        let local = workload(None);
        let v = workload_badge(&p, &green, &local, &verified(true));
        assert_eq!(v.status, Status::Fail);
        assert_eq!(v.reasons[0].code, ReasonCode::ImageNoDigest);
        // A red agent makes every workload red.
        let blinded = Verdict::from_reasons(vec![Reason {
            code: ReasonCode::Blinded,
            status: Status::Fail,
            detail: String::new(),
        }]);
        assert_eq!(
            workload_badge(&p, &blinded, &w, &verified(true)).status,
            Status::Fail
        );
    }
}
