//! The trusted verification material: a `trusted_root.json` file, or GitHub's embedded
//! instance root.

use std::path::Path;

use sigstore_verify::trust_root::{SigstoreInstance, TrustedRoot};
use sigstore_verify::Verifier;

use super::{read_bounded, ReadBoundedError};

/// Largest `trusted_root.json` accepted. Sigstore's public-good root is ~10 KiB with
/// all historical keys; a root 100 times that size is not a real one.
pub const MAX_TRUSTED_ROOT_BYTES: usize = 1024 * 1024;

/// Why a trusted root could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrustRootError {
    /// The file is larger than [`MAX_TRUSTED_ROOT_BYTES`].
    #[error("trusted root is larger than {max} bytes")]
    TooLarge {
        /// The bound.
        max: usize,
    },
    /// The file could not be read.
    #[error("cannot read trusted root: {0}")]
    Io(String),
    /// The JSON is not a usable `trusted_root.json`.
    #[error("invalid trusted root: {0}")]
    Invalid(String),
}

impl TrustRootError {
    /// Stable machine-readable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "TrustRootTooLarge",
            Self::Io(_) => "TrustRootUnreadable",
            Self::Invalid(_) => "InvalidTrustRoot",
        }
    }
}

/// Which Sigstore instance a root belongs to; decides what the bundle must carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Instance {
    /// A `trusted_root.json` file (public-good or another Rekor-backed instance):
    /// certificate chain, SCT and at least one Rekor entry with an inclusion proof.
    File,
    /// GitHub's artifact-attestation instance (private repositories): it has no
    /// Rekor and no CT log, so the signing time comes from its RFC 3161 TSA and the
    /// SCT check is skipped, exactly as `gh` verifies it.
    GitHub,
}

/// Trusted verification material: Fulcio CAs, Rekor and CT log keys, TSAs.
pub struct TrustRoot {
    pub(super) verifier: Verifier,
    pub(super) instance: Instance,
    pub(super) tlog_ids: Vec<Vec<u8>>,
}

impl std::fmt::Debug for TrustRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustRoot")
            .field("instance", &self.instance)
            .field("tlogs", &self.tlog_ids.len())
            .finish()
    }
}

impl TrustRoot {
    /// Parse a `trusted_root.json` (at most [`MAX_TRUSTED_ROOT_BYTES`]).
    pub fn from_json(bytes: &[u8]) -> Result<Self, TrustRootError> {
        if bytes.len() > MAX_TRUSTED_ROOT_BYTES {
            return Err(TrustRootError::TooLarge {
                max: MAX_TRUSTED_ROOT_BYTES,
            });
        }
        let text =
            std::str::from_utf8(bytes).map_err(|_| TrustRootError::Invalid("not UTF-8".into()))?;
        let root =
            TrustedRoot::from_json(text).map_err(|e| TrustRootError::Invalid(e.to_string()))?;
        Self::new(root, Instance::File)
    }

    /// Read and parse a `trusted_root.json` file, bounded.
    pub fn from_file(path: &Path) -> Result<Self, TrustRootError> {
        let bytes = read_bounded(path, MAX_TRUSTED_ROOT_BYTES).map_err(|e| match e {
            ReadBoundedError::TooLarge { .. } => TrustRootError::TooLarge {
                max: MAX_TRUSTED_ROOT_BYTES,
            },
            ReadBoundedError::Io(e) => TrustRootError::Io(format!("{}: {e}", path.display())),
        })?;
        Self::from_json(&bytes)
    }

    /// GitHub's artifact-attestation instance root, as embedded in `sigstore-verify`
    /// 0.15.1. An explicit opt-in: only a policy that accepts GitHub's private
    /// instance should call this.
    pub fn github_instance() -> Result<Self, TrustRootError> {
        let root = TrustedRoot::from_embedded(SigstoreInstance::GitHub)
            .map_err(|e| TrustRootError::Invalid(e.to_string()))?;
        Self::new(root, Instance::GitHub)
    }

    fn new(root: TrustedRoot, instance: Instance) -> Result<Self, TrustRootError> {
        crate::provider::ensure_installed();
        let tlog_ids = root
            .tlogs
            .iter()
            .map(|t| t.log_id.key_id.as_bytes().to_vec())
            .collect();
        let verifier = Verifier::new(&root).map_err(|e| TrustRootError::Invalid(e.to_string()))?;
        Ok(Self {
            verifier,
            instance,
            tlog_ids,
        })
    }

    /// Which instance this root is.
    pub fn instance(&self) -> Instance {
        self.instance
    }
}
