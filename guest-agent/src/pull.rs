//! `guest-agent pull IMAGE`: the verifying pull gate (DESIGN.md "Image signatures",
//! the guest's first layer).
//!
//! 1. Resolve the reference to the manifest digest the registry serves (a digest in
//!    the reference is used as given).
//! 2. Verify that digest's signature under the image policy with `signatures` (the
//!    same [`ImageVerifier`] the control plane uses): the rule covering the
//!    repository, cosign legacy signatures and Sigstore bundles, the exact signer
//!    identity, including a GitHub workflow, which podman's own policy cannot pin.
//! 3. Pull **by digest** through podman, under podman's own policy extended by
//!    exactly that digest (so podman's layer still governs everything else, and a
//!    Debian podman without sigstore support can still take the verified image).
//! 4. Record the digest and the verified signer in the RTMR3 event log, where the
//!    log exists, so the next quote covers what was admitted.
//!
//! Anything short of a verified signature is a refusal with a typed reason; nothing
//! is pulled. A registry that cannot be asked is a refusal too (fail closed).

use std::path::{Path, PathBuf};

use evidence::eventlog::Rtmr3Event;
use serde::Serialize;
use signatures::cosign::{ImageSigError, VerifiedImageSignature};
use signatures::oci::{Reference, RegistryError};
use signatures::verifier::{ImageVerdict, ImageVerifier};

use crate::config::AgentConfig;
use crate::rtmr::{EventLog, RtmrError};
use provenant_base::clock::UnixSecs;
use provenant_base::fsutil::read_text_bounded;

/// Largest image policy or podman policy file read.
pub const MAX_POLICY_BYTES: u64 = 1024 * 1024;
/// Most of podman's stderr kept in an error.
const MAX_PODMAN_OUTPUT: usize = 4096;

/// Why a pull was refused or failed. `kind()` is stable.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// No `image_policy_file` is configured: nothing is admitted.
    #[error("no image_policy_file is configured: the pull gate admits nothing")]
    NoPolicy,
    /// The image policy cannot be read or parsed, or its verifier not built.
    #[error("image policy {path}: {detail}")]
    Policy {
        /// The image policy file.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// The image reference does not parse.
    #[error("invalid image reference: {0}")]
    Reference(RegistryError),
    /// A tag could not be resolved to a digest at the registry.
    #[error("cannot resolve the image's digest: {0}")]
    Resolve(RegistryError),
    /// No image policy rule covers this repository (the repository).
    #[error("no image policy rule covers {0}")]
    NotCovered(String),
    /// The image's signatures do not satisfy the policy.
    #[error("signature refused: {0}")]
    Refused(ImageSigError),
    /// The signatures could not be fetched (registry unavailable or timed out).
    #[error("cannot fetch the image's signatures: {0}")]
    Unavailable(RegistryError),
    /// podman's policy cannot be read, parsed or extended.
    #[error("podman policy {path}: {detail}")]
    PodmanPolicy {
        /// podman's policy file.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// `podman pull` failed (with its stderr, bounded).
    #[error("podman pull failed: {0}")]
    Podman(String),
    /// The pull could not be recorded in the RTMR3 event log.
    #[error("event log: {0}")]
    EventLog(#[from] RtmrError),
}

impl PullError {
    /// A stable name for the error (e.g. `ImageNotCovered`; a signature refusal
    /// gives its reason code).
    pub fn kind(&self) -> &'static str {
        match self {
            PullError::NoPolicy => "NoImagePolicy",
            PullError::Policy { .. } => "ImagePolicy",
            PullError::Reference(_) => "InvalidReference",
            PullError::Resolve(_) => "ResolveFailed",
            PullError::NotCovered(_) => "ImageNotCovered",
            PullError::Refused(e) => e.reason_code().as_str(),
            PullError::Unavailable(_) => "ImageUnverifiable",
            PullError::PodmanPolicy { .. } => "PodmanPolicy",
            PullError::Podman(_) => "PodmanFailed",
            PullError::EventLog(_) => "EventLog",
        }
    }

    /// The detailed refusal kind (the signature verifier's or the registry's).
    pub fn detail_kind(&self) -> Option<&'static str> {
        match self {
            PullError::Refused(e) => Some(e.kind()),
            PullError::Reference(e) | PullError::Resolve(e) | PullError::Unavailable(e) => {
                Some(e.kind())
            }
            _ => None,
        }
    }

    /// Whether this is the gate saying no (exit 1), rather than a failure to do
    /// the job (exit 2).
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            PullError::NoPolicy
                | PullError::NotCovered(_)
                | PullError::Refused(_)
                | PullError::Unavailable(_)
        )
    }
}

/// A pull that happened.
#[derive(Debug, Serialize)]
pub struct Pulled {
    /// Always `true`: the image was pulled.
    pub pulled: bool,
    /// `repository@sha256:..`: what podman pulled.
    pub reference: String,
    /// The image's manifest digest (`sha256:..`).
    pub digest: String,
    /// The signature that verified it.
    pub signer: VerifiedImageSignature,
    /// The RTMR3 event recording it, where the log exists.
    pub event: Option<Rtmr3Event>,
}

/// Loads the image policy and builds the verifier.
pub fn verifier(cfg: &AgentConfig) -> Result<ImageVerifier, PullError> {
    let path = cfg.image_policy_file.as_ref().ok_or(PullError::NoPolicy)?;
    let err = |detail: String| PullError::Policy {
        path: path.display().to_string(),
        detail,
    };
    let text = read_text_bounded(path, MAX_POLICY_BYTES).map_err(|e| err(e.to_string()))?;
    let policy: policy::image::ImagePolicy =
        toml::from_str(&text).map_err(|e| err(e.to_string()))?;
    let base = path.parent().unwrap_or(Path::new(""));
    ImageVerifier::new(&policy, base, &cfg.registry).map_err(|e| err(e.to_string()))
}

/// Resolves and verifies `image` at `now`; returns the repository, the digest
/// and the verified signature. Pulls nothing.
pub async fn verify(
    v: &ImageVerifier,
    image: &str,
    now: UnixSecs,
) -> Result<(String, String, VerifiedImageSignature), PullError> {
    let r = Reference::parse(image).map_err(PullError::Reference)?;
    let (repository, digest) = match r.digest() {
        Some(d) => (r.repository(), d.to_owned()),
        None => v.client().resolve(&r).await.map_err(PullError::Resolve)?,
    };
    match v.verify(&repository, &digest, now).await {
        ImageVerdict::Verified(s) => Ok((repository, digest, s)),
        ImageVerdict::NotCovered { repository } => Err(PullError::NotCovered(repository)),
        ImageVerdict::Refused(e) => Err(PullError::Refused(e)),
        ImageVerdict::Unavailable(e) => Err(PullError::Unavailable(e)),
    }
}

/// Longest the resolution and verification of one image may take in all (each
/// registry request has its own timeout; a slow registry must not hold the gate).
pub const VERIFY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(120);

/// The whole gate: verify, record, pull by digest.
pub async fn pull(cfg: &AgentConfig, image: &str, now: UnixSecs) -> Result<Pulled, PullError> {
    let v = verifier(cfg)?;
    let (repository, digest, signer) =
        match tokio::time::timeout(VERIFY_DEADLINE, verify(&v, image, now)).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(PullError::Unavailable(RegistryError::Timeout {
                    host: format!(
                        "{} (resolving and verifying took over {}s)",
                        image.split('/').next().unwrap_or_default(),
                        VERIFY_DEADLINE.as_secs()
                    ),
                }))
            }
        };
    let reference = format!("{repository}@{digest}");
    let insecure = registry_insecure(cfg, &repository);
    let policy = podman_policy_admitting(&cfg.podman_policy_file, &reference)?;
    // Recorded before the pull: an image never sits in podman's storage unrecorded
    // (a pull that then fails leaves an event for an image that is not there, which
    // over-reports, never under-reports).
    let event = record(cfg, &reference, &signer)?;
    podman_pull(&cfg.podman_command, &policy, &reference, insecure)?;
    tracing::info!(%reference, signer = %signer.signer, "verified image pulled");
    Ok(Pulled {
        pulled: true,
        reference,
        digest,
        signer,
        event,
    })
}

fn registry_insecure(cfg: &AgentConfig, repository: &str) -> bool {
    let host = repository.split('/').next().unwrap_or_default();
    cfg.registry.iter().any(|r| r.host == host && r.insecure)
}

/// podman's policy (or `default: reject` when there is none) with one more
/// `docker` scope: exactly `reference` (`repo@sha256:..`), accepted. Written to a
/// temporary file that lives as long as the returned handle.
fn podman_policy_admitting(
    base: &Path,
    reference: &str,
) -> Result<tempfile::NamedTempFile, PullError> {
    let err = |detail: String| PullError::PodmanPolicy {
        path: base.display().to_string(),
        detail,
    };
    let mut doc: serde_json::Value = match read_text_bounded(base, MAX_POLICY_BYTES) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| err(e.to_string()))?,
        Err(provenant_base::fsutil::ReadError::Io(e))
            if e.kind() == std::io::ErrorKind::NotFound =>
        {
            serde_json::json!({"default": [{"type": "reject"}]})
        }
        Err(e) => return Err(err(e.to_string())),
    };
    let obj = doc
        .as_object_mut()
        .ok_or_else(|| err("not a JSON object".into()))?;
    let transports = obj
        .entry("transports")
        .or_insert_with(|| serde_json::json!({}))
        .as_object_mut()
        .ok_or_else(|| err("\"transports\" is not an object".into()))?;
    let docker = transports
        .entry("docker")
        .or_insert_with(|| serde_json::json!({}))
        .as_object_mut()
        .ok_or_else(|| err("\"transports.docker\" is not an object".into()))?;
    docker.insert(
        reference.to_owned(),
        serde_json::json!([{"type": "insecureAcceptAnything"}]),
    );
    let mut f = tempfile::Builder::new()
        .prefix("provenant-pull-")
        .suffix(".json")
        .tempfile()
        .map_err(|e| err(e.to_string()))?;
    serde_json::to_writer(&mut f, &doc).map_err(|e| err(e.to_string()))?;
    Ok(f)
}

fn podman_pull(
    command: &[String],
    policy: &tempfile::NamedTempFile,
    reference: &str,
    insecure: bool,
) -> Result<(), PullError> {
    let (prog, args) = command
        .split_first()
        .ok_or_else(|| PullError::Podman("podman_command is empty".into()))?;
    let out = std::process::Command::new(prog)
        .args(args)
        .arg("pull")
        .arg("--quiet")
        .arg("--signature-policy")
        .arg(policy.path())
        .arg(format!("--tls-verify={}", !insecure))
        .arg(reference)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| PullError::Podman(format!("cannot run {prog}: {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    let mut msg = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    if msg.len() > MAX_PODMAN_OUTPUT {
        let mut end = MAX_PODMAN_OUTPUT;
        while !msg.is_char_boundary(end) {
            end -= 1;
        }
        msg.truncate(end);
    }
    Err(PullError::Podman(format!("{}: {msg}", out.status)))
}

/// The RTMR3 event value for a verified pull: the digest and who signed it.
pub fn event_value(reference: &str, s: &VerifiedImageSignature) -> String {
    let mut v = format!("{reference} signer={}", s.signer);
    for (k, x) in [
        ("issuer", &s.issuer),
        ("source_repository", &s.source_repository),
        ("source_ref", &s.source_ref),
    ] {
        if let Some(x) = x {
            v.push_str(&format!(" {k}={x}"));
        }
    }
    v
}

/// Appends a `workload_image` event where the RTMR3 log exists (a TDX guest: the
/// register, or a log the agent keeps); elsewhere there is nothing to bind to.
fn record(
    cfg: &AgentConfig,
    reference: &str,
    s: &VerifiedImageSignature,
) -> Result<Option<Rtmr3Event>, PullError> {
    let register: PathBuf = cfg.rtmr_dir.join(crate::rtmr::RTMR3_FILE);
    if !register.exists() && !cfg.event_log_file.exists() {
        return Ok(None);
    }
    let mut log = EventLog::open(Some(cfg.event_log_file.clone()), Some(&cfg.rtmr_dir))?;
    Ok(Some(log.record_always(
        "workload_image",
        &event_value(reference, s),
    )?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn podman_policy_gets_exactly_one_more_scope() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("policy.json");
        let r = "127.0.0.1:5000/p/app@sha256:0489474da8ea22426ece86ace6c1c0026ab2fd3cdfbbd62b7e94650266c37d9a";
        // No base policy: reject everything else.
        let f = podman_policy_admitting(&base, r).unwrap();
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(f.path()).unwrap()).unwrap();
        assert_eq!(v["default"][0]["type"], "reject");
        assert_eq!(
            v["transports"]["docker"][r][0]["type"],
            "insecureAcceptAnything"
        );
        // A base policy keeps its scopes.
        std::fs::write(
            &base,
            r#"{"default":[{"type":"reject"}],"transports":{"docker":{"ghcr.io/x":[{"type":"sigstoreSigned","keyPath":"/k"}]}}}"#,
        )
        .unwrap();
        let f = podman_policy_admitting(&base, r).unwrap();
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(f.path()).unwrap()).unwrap();
        assert_eq!(
            v["transports"]["docker"]["ghcr.io/x"][0]["type"],
            "sigstoreSigned"
        );
        assert_eq!(v["transports"]["docker"].as_object().unwrap().len(), 2);
        // Garbage is an error, not a permissive default.
        std::fs::write(&base, "[1,2").unwrap();
        assert_eq!(
            podman_policy_admitting(&base, r).unwrap_err().kind(),
            "PodmanPolicy"
        );
        std::fs::write(&base, r#"{"transports":[]}"#).unwrap();
        assert!(podman_policy_admitting(&base, r).is_err());
    }
}
