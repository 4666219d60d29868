//! Why a podman policy cannot be rendered, with a stable name per failure.

use policy::image::ImagePolicyError;

/// Why a podman policy cannot be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// The image policy itself does not validate.
    #[error("invalid image policy: {0}")]
    InvalidPolicy(#[from] ImagePolicyError),
    /// A trust rule's scope is not one podman's docker transport reads the same way.
    #[error("trust rule {index} ({scope:?}): not a podman docker scope: {detail}")]
    BadScope {
        /// The rule's index in the policy.
        index: usize,
        /// The scope as written.
        scope: String,
        /// What is wrong with it.
        detail: String,
    },
    /// Two trust rules render to the same podman scope.
    #[error("trust rules {first} and {second} have the same scope {scope:?}")]
    DuplicateScope {
        /// The first rule's index.
        first: usize,
        /// The second rule's index.
        second: usize,
        /// The shared scope.
        scope: String,
    },
    /// A keyless identity podman cannot express (see the crate documentation).
    #[error(
        "trust rule {index} ({scope:?}): podman cannot pin the keyless identity ({detail}): \
         its policy matches only an email SAN (fulcio.subjectEmail). Pin an email identity, \
         or render with --reject-unpinnable so podman refuses this scope and images in it \
         are pulled through `guest-agent pull`, which verifies the identity"
    )]
    UnpinnableIdentity {
        /// The rule's index in the policy.
        index: usize,
        /// The rule's scope.
        scope: String,
        /// The constraints podman cannot pin.
        detail: String,
    },
    /// The install directory is not an absolute path.
    #[error("the install directory {0:?} must be an absolute path")]
    InstallDir(String),
    /// A file the policy names is not in [`RenderInputs::files`](crate::RenderInputs::files).
    #[error("{path}: not provided to the renderer")]
    MissingFile {
        /// The path as written in the policy.
        path: String,
    },
    /// A key file that is not exactly one usable `PUBLIC KEY` (and any named file
    /// over [`MAX_INPUT_FILE`](crate::MAX_INPUT_FILE)).
    #[error("{path}: {detail}")]
    BadKey {
        /// The path as written in the policy.
        path: String,
        /// What is wrong with it.
        detail: String,
    },
    /// A certificate file without a usable `CERTIFICATE`.
    #[error("{path}: {detail}")]
    BadCertificate {
        /// The path as written in the policy.
        path: String,
        /// What is wrong with it.
        detail: String,
    },
    /// A `trusted_root.json` podman's material cannot be taken from.
    #[error("{path}: not a usable trusted_root.json: {detail}")]
    BadTrustedRoot {
        /// The path as written in the policy.
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
