//! Build provenance for MRTD: is the firmware a TD booted exactly what the trusted
//! repository's CI built and measured?
//!
//! CI computes the launch measurements (`cp-verifier measure`) and attests the
//! manifest with `actions/attest`: subject `tdx-mrtd` with digest
//! `sha256(<48 raw MRTD bytes>)`, predicate type [`MEASUREMENT_PREDICATE`], the
//! manifest as predicate. At registration, after the quote verified, the control plane
//! looks that digest up in the trusted repository's attestations, verifies each bundle
//! offline (trusted root, identity policy: issuer, repository, workflow, ref, runner),
//! and requires the verified predicate's `mrtd` to equal the quoted MRTD byte for byte
//! (and RTMR0–2 where configured).
//!
//! Trust boundary: the GitHub API is untrusted; it only finds bundles. Only a
//! [`signatures::VerifiedBundle`] counts, and only for the MRTD its own predicate
//! names. A lookup that fails is `ProvenanceUnavailable` (could not decide, refused),
//! never "attested". A verified answer is cached, in memory and in the store, for
//! `cache_ttl`, under a key that includes the identity policy and every value that was
//! matched (MRTD and the `match_rtmrs` registers), so a fleet of identical VMs costs
//! one lookup and a changed policy never reuses an old answer. The cached answer keeps
//! the predicate's values, and the quoted registers are compared with them on every
//! call, hit or miss: a TD with the same firmware but another kernel, initrd or
//! command line never rides on an honest TD's cached answer.

pub mod github;

use provenant_base::clock::UnixSecs;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use policy::identity::{IdentityPolicy, IdentityPolicyBuilder, RunnerEnvironment};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use signatures::{verify_bundle, Artifact, TrustRoot};

use evidence::tdx::Mr;

use crate::attest::error::AttestError;
use crate::attest::explain::AttestedValue;
use crate::attest::provenance::github::GithubClient;
use crate::model::MrtdProvenance;
use crate::store::Store;

/// The predicate type of a TDX measurement manifest.
pub const MEASUREMENT_PREDICATE: &str = "https://provenant.dev/attestations/tdx-measurement/v1";
/// MRTDs remembered in memory at most; past it the table is cleared.
const MAX_CACHED: usize = 4096;
/// Most attested MRTDs kept to explain a refused one against.
const MAX_ATTESTED_KEPT: usize = 64;
/// How long that list is kept after its last addition.
const ATTESTED_KEPT_SECS: u64 = 400 * 24 * 3600;

/// The workflow path of a GitHub Actions certificate SAN
/// (`https://github.com/o/r/.github/workflows/x.yml@refs/heads/main` →
/// `.github/workflows/x.yml`), or the SAN itself when it is not one.
pub fn workflow_of(san: &str) -> String {
    san.split_once("/.github/")
        .map(|(_, rest)| {
            let path = rest.split('@').next().unwrap_or(rest);
            format!(".github/{path}")
        })
        .unwrap_or_else(|| san.to_string())
}

/// Longest refusal detail (the reasons of every bundle tried, joined).
const MAX_DETAIL: usize = 4096;

/// `[provenance]`: where the MRTD must be attested, and by whom.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvenanceConfig {
    /// The trusted repository (`owner/name`) whose attestations are looked up; the
    /// certificate's source repository must be it.
    pub repository: String,
    /// The signer workflow (`owner/repo/path/to/workflow.yml`): the build signer URI
    /// up to its `@ref`. For `actions/attest` called directly this is the release
    /// workflow itself.
    #[serde(default)]
    pub signer_workflow: Option<String>,
    /// Exact certificate SAN, e.g.
    /// `https://github.com/{repo}/.github/workflows/release.yml@refs/heads/main`.
    #[serde(default)]
    pub san: Option<String>,
    /// Certificate SAN as an anchored regular expression (instead of `san`).
    #[serde(default)]
    pub san_regex: Option<String>,
    /// Source repository ref, e.g. `refs/heads/main` or `refs/tags/v1.2.0`.
    #[serde(default)]
    pub source_ref: Option<String>,
    /// OIDC issuer; GitHub Actions' by default.
    #[serde(default)]
    pub issuer: Option<String>,
    /// `github-hosted` (default), `any`, or an exact value.
    #[serde(default)]
    pub runner_environment: Option<String>,
    /// Sigstore `trusted_root.json`. Absent: GitHub's own instance (embedded), for
    /// private repositories' attestations.
    #[serde(default)]
    pub trusted_root_file: Option<PathBuf>,
    /// GitHub API base URL.
    #[serde(default = "default_api")]
    pub github_api: String,
    /// File holding a GitHub token (5000 requests/hour instead of 60). Absent: the
    /// `GITHUB_TOKEN` environment variable, if set.
    #[serde(default)]
    pub github_token_file: Option<PathBuf>,
    /// Also require these of the predicate's `rtmr0..2` to equal the quoted ones,
    /// e.g. `[1, 2]` (kernel, command line and initrd; `cp-verifier measure` does not
    /// compute RTMR0). Each listed register must be present in the predicate.
    #[serde(default)]
    pub match_rtmrs: Vec<u8>,
    /// How long a verified MRTD is remembered.
    #[serde(default = "default_ttl", with = "humantime_serde")]
    pub cache_ttl: Duration,
}

fn default_api() -> String {
    crate::attest::provenance::github::GITHUB_API_URL.to_string()
}
fn default_ttl() -> Duration {
    Duration::from_secs(24 * 3600)
}

/// Why a verified predicate does not cover a quote.
struct Mismatch {
    /// An RTMR (not MRTD, not the predicate's shape) differs.
    rtmr: bool,
    why: String,
}

impl ProvenanceConfig {
    /// Refuses a policy that any workflow of the repository could satisfy: like the
    /// image policy, it must pin who signed (`signer_workflow`, `san`, `san_regex`)
    /// or what was built (`source_ref`).
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            !self.repository.trim().is_empty(),
            "[provenance] repository must be set"
        );
        anyhow::ensure!(
            self.signer_workflow.is_some()
                || self.san.is_some()
                || self.san_regex.is_some()
                || self.source_ref.is_some(),
            "[provenance] for {} must pin an identity: set signer_workflow, san, san_regex or \
             source_ref (a repository alone accepts a bundle from any of its workflows, \
             pull-request runs included)",
            self.repository
        );
        anyhow::ensure!(
            !(self.san.is_some() && self.san_regex.is_some()),
            "[provenance] san and san_regex exclude each other"
        );
        anyhow::ensure!(
            self.match_rtmrs.iter().all(|&i| i <= 2),
            "[provenance] match_rtmrs lists RTMR indices 0, 1 or 2"
        );
        Ok(())
    }

    /// Whether RTMR1 and RTMR2 (kernel, initrd, command line) are pinned.
    pub fn pins_rtmrs(&self) -> [bool; 3] {
        core::array::from_fn(|i| self.match_rtmrs.iter().any(|&m| usize::from(m) == i))
    }
}

/// The predicate's `mrtd` and, where present, `rtmr0..2`. A present register that is
/// not 48 hex bytes refuses the predicate.
fn predicate_values(
    predicate: Option<&serde_json::Value>,
) -> Result<(Mr, [Option<Mr>; 3]), String> {
    let p = predicate.ok_or("no in-toto predicate")?;
    let reg = |name: &str| -> Result<Option<Mr>, String> {
        let Some(v) = p.get(name).filter(|v| !v.is_null()) else {
            return Ok(None);
        };
        let s = v
            .as_str()
            .ok_or_else(|| format!("predicate {name} is not a string"))?;
        let mut out = [0u8; 48];
        hex::decode_to_slice(s, &mut out)
            .map_err(|e| format!("predicate {name} is not 48 hex bytes: {e}"))?;
        Ok(Some(evidence::report::HexBytes(out)))
    };
    let mrtd = reg("mrtd")?.ok_or("predicate has no mrtd")?;
    Ok((mrtd, [reg("rtmr0")?, reg("rtmr1")?, reg("rtmr2")?]))
}

/// Checks MRTDs against GitHub build-provenance attestations, caching each answer
/// (in memory and in the shared store) until it expires.
pub struct ProvenanceChecker {
    cfg: ProvenanceConfig,
    root: TrustRoot,
    identity: IdentityPolicyBuilder,
    /// Fingerprint of everything that decides "attested": part of every cache key.
    policy_key: String,
    github: GithubClient,
    store: Option<Arc<dyn Store>>,
    memory: Mutex<HashMap<String, MrtdProvenance>>,
}

impl ProvenanceChecker {
    /// A checker for `cfg`, sharing answers through `store` when given.
    pub fn new(
        cfg: ProvenanceConfig,
        store: Option<Arc<dyn Store>>,
    ) -> anyhow::Result<ProvenanceChecker> {
        use anyhow::Context;
        let root = match &cfg.trusted_root_file {
            Some(p) => TrustRoot::from_file(p)
                .with_context(|| format!("[provenance] trusted_root_file {}", p.display()))?,
            None => TrustRoot::github_instance().context("GitHub's embedded trusted root")?,
        };
        let mut b = IdentityPolicy::builder()
            .source_repository(cfg.repository.clone())
            .predicate_type(MEASUREMENT_PREDICATE);
        if let Some(i) = &cfg.issuer {
            b = b.issuer(i.clone());
        }
        if let Some(w) = &cfg.signer_workflow {
            b = b.signer_workflow(w.clone());
        }
        if let Some(s) = &cfg.san {
            b = b.san(s.clone());
        }
        if let Some(s) = &cfg.san_regex {
            b = b.san_regex(s.clone());
        }
        if let Some(r) = &cfg.source_ref {
            b = b.source_ref(r.clone());
        }
        b = b.runner_environment(match cfg.runner_environment.as_deref() {
            None | Some("github-hosted") => RunnerEnvironment::GithubHosted,
            Some("any") => RunnerEnvironment::Any,
            Some(other) => RunnerEnvironment::Exact(other.to_string()),
        });
        cfg.validate()?;
        // Fail at start, not at the first registration, on a policy that cannot be built.
        b.clone().build().context("[provenance] identity policy")?;
        let token = match &cfg.github_token_file {
            Some(p) => Some(
                std::fs::read_to_string(p)
                    .with_context(|| format!("[provenance] github_token_file {}", p.display()))?
                    .trim()
                    .to_string(),
            ),
            // The environment, as `gh` reads it, where no file is configured.
            None => std::env::var("GITHUB_TOKEN")
                .ok()
                .filter(|t| !t.trim().is_empty()),
        };
        let github = GithubClient::new(
            &cfg.github_api,
            token.as_deref(),
            crate::attest::provenance::github::DEFAULT_TIMEOUT,
        )?;
        let policy_key = {
            let mut h = Sha256::new();
            for part in [
                Some(cfg.repository.as_str()),
                cfg.signer_workflow.as_deref(),
                cfg.san.as_deref(),
                cfg.san_regex.as_deref(),
                cfg.source_ref.as_deref(),
                cfg.issuer.as_deref(),
                cfg.runner_environment.as_deref(),
                cfg.trusted_root_file
                    .as_ref()
                    .and_then(|p| p.to_str())
                    .or(Some("github-instance")),
            ] {
                h.update(part.unwrap_or("-").as_bytes());
                h.update([0]);
            }
            h.update(&cfg.match_rtmrs);
            hex::encode(&h.finalize()[..12])
        };
        Ok(ProvenanceChecker {
            cfg,
            root,
            identity: b,
            policy_key,
            github,
            store,
            memory: Mutex::new(HashMap::new()),
        })
    }

    /// Which of RTMR0..2 a successful [`ProvenanceChecker::check`] pinned.
    pub fn pins_rtmrs(&self) -> [bool; 3] {
        self.cfg.pins_rtmrs()
    }

    /// The digest CI attests for an MRTD: `sha256:<hex of SHA-256(48 raw bytes)>`.
    pub fn subject_digest(mrtd: &[u8; 48]) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(mrtd)))
    }

    /// Checks that the trusted repository attested `mrtd` (and `rtmrs[0..3]` when
    /// configured), at `now`.
    pub async fn check(
        &self,
        mrtd: &[u8; 48],
        rtmrs: &[[u8; 48]; 4],
        now: UnixSecs,
    ) -> Result<MrtdProvenance, AttestError> {
        // The cache keeps unsigned seconds (`cached_until`).
        let now_secs = now.unsigned();
        let digest = Self::subject_digest(mrtd);
        // Every matched value is part of the key: TDs with one firmware but different
        // kernels each get their own answer (and their own lookup).
        let mut key = format!("mrtd-v2:{}:{}", self.policy_key, hex::encode(mrtd));
        for &i in &self.cfg.match_rtmrs {
            if let Some(r) = rtmrs.get(usize::from(i)) {
                key.push_str(&format!(":rtmr{i}={}", hex::encode(r)));
            }
        }
        if let Some(p) = self.cached(&key, now_secs).await {
            // Compared on every call: the answer is used only for the registers it
            // was verified for, whatever the cache returned.
            match self.covers(&p, mrtd, rtmrs) {
                Ok(()) => return Ok(p),
                Err(m) => {
                    tracing::warn!(key = %key, why = %m.why,
                        "a cached provenance answer does not cover the quote; looking it up again");
                }
            }
        }
        let found = self
            .github
            .attestations(&self.cfg.repository, &digest)
            .await
            .map_err(|e| {
                AttestError::unavailable("ProvenanceUnavailable", format!("{}: {e}", e.kind()))
            })?;
        let tried = format!(
            "MRTD {} (subject {digest}) in {}",
            hex::encode(mrtd),
            self.cfg.repository
        );
        if found.is_empty() {
            return Err(self
                .explained(
                    AttestError::refused(
                        "MrtdNotAttested",
                        format!("no attestation found for {tried}"),
                    ),
                    mrtd,
                )
                .await);
        }
        let policy = self
            .identity
            .clone()
            .subject_digest(digest.clone())
            .build()
            .map_err(|e| AttestError::Internal(format!("identity policy: {e}")))?;
        let mut reasons = Vec::new();
        let mut rtmr_only = false;
        for (i, f) in found.iter().enumerate() {
            let verified = match verify_bundle(
                &f.bundle,
                Artifact::StatementSubjects,
                &self.root,
                &policy,
                now,
            ) {
                Ok(v) => v,
                Err(e) => {
                    reasons.push(format!("bundle {i}: {}: {e}", e.kind()));
                    continue;
                }
            };
            let (attested_mrtd, attested_rtmrs) = match predicate_values(verified.predicate()) {
                Ok(v) => v,
                Err(why) => {
                    reasons.push(format!("bundle {i}: {why}"));
                    continue;
                }
            };
            let p = MrtdProvenance {
                repository: self.cfg.repository.clone(),
                san: verified.san().to_string(),
                source_ref: verified.fulcio().source_repository_ref.clone(),
                signer: verified.fulcio().build_signer_uri.clone(),
                signed_at: verified.signed_at_rfc3339(),
                bundle_source: f.source.clone(),
                cached_until: now_secs.saturating_add(self.cfg.cache_ttl.as_secs()),
                mrtd: Some(attested_mrtd),
                rtmrs: attested_rtmrs,
                log_index: verified.log_indexes().first().copied(),
            };
            if let Err(m) = self.covers(&p, mrtd, rtmrs) {
                rtmr_only |= m.rtmr;
                reasons.push(format!("bundle {i}: {}", m.why));
                continue;
            }
            self.remember(&key, &p).await;
            self.remember_attested(&p, now_secs).await;
            return Ok(p);
        }
        let mut detail = format!(
            "{} attestation(s) found for {tried}, none acceptable: {}",
            found.len(),
            reasons.join("; ")
        );
        if detail.len() > MAX_DETAIL {
            let mut cut = MAX_DETAIL;
            while !detail.is_char_boundary(cut) {
                cut -= 1;
            }
            detail.truncate(cut);
            detail.push('…');
        }
        // Every bundle that verified for this MRTD attests other RTMRs: the firmware is
        // ours, the kernel, initrd or command line is not.
        let kind = if rtmr_only && reasons.iter().all(|r| r.contains("rtmr")) {
            "RtmrNotAttested"
        } else {
            "MrtdNotAttested"
        };
        let refusal = AttestError::refused(kind, detail);
        Err(if kind == "MrtdNotAttested" {
            self.explained(refusal, mrtd).await
        } else {
            refusal
        })
    }

    /// The key under which the MRTDs verified under this identity policy are listed.
    fn attested_key(&self) -> String {
        format!("attested-mrtds:{}", self.policy_key)
    }

    /// The attested MRTDs this control plane verified under this policy (newest
    /// last, at most [`MAX_ATTESTED_KEPT`]).
    async fn attested_values(&self) -> Vec<AttestedValue> {
        let Some(store) = &self.store else {
            return Vec::new();
        };
        match store.get_cached(&self.attested_key()).await {
            Ok(Some((json, _))) => serde_json::from_slice(&json).unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// Adds a verified answer's MRTD to the list a refused MRTD is compared with.
    async fn remember_attested(&self, p: &MrtdProvenance, now: u64) {
        let (Some(store), Some(m)) = (&self.store, &p.mrtd) else {
            return;
        };
        let mut known = self.attested_values().await;
        known.retain(|k| k.mrtd != *m);
        known.push(AttestedValue {
            mrtd: *m,
            attested_by: format!(
                "{} {}{}, signed {}",
                p.repository,
                workflow_of(&p.san),
                p.source_ref
                    .as_deref()
                    .map(|r| format!(" on {r}"))
                    .unwrap_or_default(),
                p.signed_at
            ),
            verified_at: now,
        });
        if known.len() > MAX_ATTESTED_KEPT {
            known.drain(..known.len() - MAX_ATTESTED_KEPT);
        }
        if let Ok(json) = serde_json::to_vec(&known) {
            let until = UnixSecs::from_unsigned(now.saturating_add(ATTESTED_KEPT_SECS));
            if let Err(e) = store.put_cached(&self.attested_key(), &json, until).await {
                tracing::warn!(error = %e, "cannot keep the attested MRTD list for explanations");
            }
        }
    }

    /// `refusal` with the comparison of `mrtd` against the attested values known.
    async fn explained(&self, refusal: AttestError, mrtd: &[u8; 48]) -> AttestError {
        let known = self.attested_values().await;
        refusal.with_explanation(crate::attest::explain::mrtd(
            mrtd,
            &self.cfg.repository,
            &known,
        ))
    }

    /// The attested `mrtd` (and `rtmr0..2` where configured) of `p` equal the quote's.
    fn covers(
        &self,
        p: &MrtdProvenance,
        mrtd: &[u8; 48],
        rtmrs: &[[u8; 48]; 4],
    ) -> Result<(), Mismatch> {
        let m = p.mrtd.as_ref().ok_or(Mismatch {
            rtmr: false,
            why: "the answer names no attested MRTD".into(),
        })?;
        if &m.0 != mrtd {
            return Err(Mismatch {
                rtmr: false,
                why: format!(
                    "predicate attests MRTD {}, not the quoted one",
                    hex::encode(m.0)
                ),
            });
        }
        for &i in &self.cfg.match_rtmrs {
            let name = format!("rtmr{i}");
            let quoted = rtmrs.get(usize::from(i));
            let attested = p.rtmrs.get(usize::from(i)).and_then(|r| r.as_ref());
            match (attested, quoted) {
                (Some(a), Some(q)) if &a.0 == q => {}
                (Some(a), Some(q)) => {
                    return Err(Mismatch {
                        rtmr: true,
                        why: format!(
                            "predicate {name} {} differs from the quoted {name} {}",
                            hex::encode(a.0),
                            hex::encode(q)
                        ),
                    })
                }
                _ => {
                    return Err(Mismatch {
                        rtmr: true,
                        why: format!("predicate has no {name}"),
                    })
                }
            }
        }
        Ok(())
    }

    async fn cached(&self, key: &str, now: u64) -> Option<MrtdProvenance> {
        let hit = self
            .memory
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned();
        if let Some(p) = hit.filter(|p| now < p.cached_until) {
            return Some(p);
        }
        let (json, _) = self.store.as_ref()?.get_cached(key).await.ok()??;
        let p: MrtdProvenance = serde_json::from_slice(&json).ok()?;
        if now >= p.cached_until {
            return None;
        }
        self.remember_in_memory(key, &p);
        Some(p)
    }

    fn remember_in_memory(&self, key: &str, p: &MrtdProvenance) {
        let mut m = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() >= MAX_CACHED {
            m.clear();
        }
        m.insert(key.to_string(), p.clone());
    }

    async fn remember(&self, key: &str, p: &MrtdProvenance) {
        self.remember_in_memory(key, p);
        if let (Some(store), Ok(json)) = (&self.store, serde_json::to_vec(p)) {
            if let Err(e) = store
                .put_cached(key, &json, UnixSecs::from_unsigned(p.cached_until))
                .await
            {
                tracing::warn!(error = %e, "could not store the attested MRTD; memory cache only");
            }
        }
    }
}
