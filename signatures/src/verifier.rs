//! The registry-backed image verifier: the operator's [`ImagePolicy`] plus a
//! [`RegistryClient`], answering "is this digest signed under the policy?" with a
//! [`ImageCheck`]. The control plane re-verifies every reported workload with it and
//! the guest's verifying pull gate (`guest-agent pull`) gates pulls with it, so both
//! read the same rules the same way.
//!
//! The mapping to badges fails closed:
//! - no rule covers the repository: `Refused(ImageNotCovered)` (red);
//! - the registry answers, with no signature or none that verifies:
//!   `Refused(<the most informative reason>)` (red);
//! - the registry cannot be asked (unreachable, timeout, garbage, over-size,
//!   5xx, ...): `Undecided` (unknown), never green and never red on a guess.

use provenant_base::clock::{UnixNanos, UnixSecs};
use std::path::Path;

use evidence::verdict::ReasonCode;
use policy::image::{ImageCheck, ImagePolicy};

use crate::cosign::{
    verify_any, ImageSigError, ImageTrust, ImageTrustError, VerifiedImageSignature,
};
use crate::oci::{RegistryClient, RegistryConfig, RegistryError};

/// Why a verifier could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum ImageVerifierError {
    /// The image policy does not validate.
    #[error("image policy: {0}")]
    Policy(#[from] policy::image::ImagePolicyError),
    /// A rule's keys, roots or identity cannot be loaded.
    #[error("trust rule {scope:?}: {source}")]
    Trust {
        /// The rule's scope, as written in the policy.
        scope: String,
        /// Why its trust could not be loaded.
        #[source]
        source: ImageTrustError,
    },
    /// The `[[registry]]` entries are unusable.
    #[error("registry configuration: {0}")]
    Registry(#[from] RegistryError),
}

/// What [`ImageVerifier::verify`] found, in full (the pull gate wants the signer).
#[derive(Debug)]
pub enum ImageVerdict {
    /// A signature verified under the covering rule.
    Verified(VerifiedImageSignature),
    /// No rule covers the repository.
    NotCovered {
        /// The repository asked about.
        repository: String,
    },
    /// The registry answered; no signature verified.
    Refused(ImageSigError),
    /// The registry could not be asked.
    Unavailable(RegistryError),
}

impl ImageVerdict {
    /// The badge input for `policy::image::workload_badge`, verified at `now`.
    pub fn to_check(&self, now: UnixNanos) -> ImageCheck {
        match self {
            ImageVerdict::Verified(v) => ImageCheck::Verified {
                keyless: v.keyless,
                signer: v.signer.clone(),
                verified_at_ns: now.get(),
                rekor_log_index: v.rekor_log_index,
            },
            ImageVerdict::NotCovered { repository } => ImageCheck::Refused {
                code: ReasonCode::ImageNotCovered,
                detail: format!("no image policy rule covers {repository}"),
            },
            ImageVerdict::Refused(e) => ImageCheck::Refused {
                code: e.reason_code(),
                detail: format!("{} ({})", e, e.kind()),
            },
            ImageVerdict::Unavailable(e) => ImageCheck::Undecided {
                detail: format!("could not fetch the signatures: {} ({})", e, e.kind()),
            },
        }
    }
}

/// The policy's rules, loaded, and the registry client.
pub struct ImageVerifier {
    policy: ImagePolicy,
    /// One loaded trust per rule, in the policy's order.
    trusts: Vec<ImageTrust>,
    client: RegistryClient,
}

impl std::fmt::Debug for ImageVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageVerifier")
            .field("rules", &self.trusts.len())
            .finish_non_exhaustive()
    }
}

impl ImageVerifier {
    /// Validates the policy and loads every rule's keys and roots (paths relative to
    /// `base_dir`), so a bad file is an error at start-up, not at the first workload.
    pub fn new(
        policy: &ImagePolicy,
        base_dir: &Path,
        registries: &[RegistryConfig],
    ) -> Result<ImageVerifier, ImageVerifierError> {
        policy.validate()?;
        let trusts = policy
            .trust
            .iter()
            .map(|r| {
                ImageTrust::load(r, base_dir).map_err(|source| ImageVerifierError::Trust {
                    scope: r.scope.clone(),
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ImageVerifier {
            policy: policy.clone(),
            trusts,
            client: RegistryClient::new(registries)?,
        })
    }

    /// The registry client (for resolving tags before a pull).
    pub fn client(&self) -> &RegistryClient {
        &self.client
    }

    /// The policy this verifier enforces.
    pub fn policy(&self) -> &ImagePolicy {
        &self.policy
    }

    /// Verifies `digest` (`sha256:<hex>`) in `repository` (`registry[:port]/path`) at
    /// `now`: the covering rule (longest scope), the signatures the registry
    /// holds (cosign `.sig` tag and Sigstore-bundle referrers), the first that
    /// verifies.
    pub async fn verify(&self, repository: &str, digest: &str, now: UnixSecs) -> ImageVerdict {
        let Some(index) = self
            .policy
            .rule_for(repository)
            .and_then(|rule| self.policy.trust.iter().position(|r| std::ptr::eq(r, rule)))
        else {
            return ImageVerdict::NotCovered {
                repository: repository.to_owned(),
            };
        };
        let trust = &self.trusts[index];
        // cosign's legacy signatures first: one that verifies settles it, whatever the
        // referrers lookup (which many registries do not serve) would say.
        let legacy = self.client.find_legacy_signatures(repository, digest).await;
        if let Ok(sigs) = &legacy {
            if let Ok(v) = verify_any(sigs, digest, trust, now) {
                return ImageVerdict::Verified(v);
            }
        }
        let referrers = match self
            .client
            .find_referrer_signatures(repository, digest)
            .await
        {
            Ok(s) => s,
            Err(e) => return ImageVerdict::Unavailable(e),
        };
        match legacy {
            Ok(mut all) => {
                all.extend(referrers);
                // Verified, or the most informative refusal over both kinds.
                match verify_any(&all, digest, trust, now) {
                    Ok(v) => ImageVerdict::Verified(v),
                    Err(e) => ImageVerdict::Refused(e),
                }
            }
            // Part of the answer is missing: only a verified referrer decides.
            Err(e) => match verify_any(&referrers, digest, trust, now) {
                Ok(v) => ImageVerdict::Verified(v),
                Err(_) => ImageVerdict::Unavailable(e),
            },
        }
    }

    /// [`ImageVerifier::verify`] as a badge input.
    pub async fn check(&self, repository: &str, digest: &str, now: UnixNanos) -> ImageCheck {
        self.verify(repository, digest, now.secs())
            .await
            .to_check(now)
    }
}
