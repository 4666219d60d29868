//! Podman's own signature policy, rendered from the image policy
//! ([`ImagePolicy`](policy::image::ImagePolicy)): the second enforcement layer in the
//! guest (DESIGN.md "Image signatures"). A config renderer, kept out of the `policy`
//! crate, which only turns facts into verdicts.
//!
//! # Trust boundary
//!
//! The inputs are the operator's: the image policy and the key, certificate and
//! `trusted_root.json` files it names. They are trusted to say who may sign, but
//! parsed as untrusted bytes: each file is bounded ([`MAX_INPUT_FILE`]), every key
//! and certificate used is DER-checked (an SPKI of a known algorithm, an X.509
//! certificate) and re-encoded from its DER, and a scope podman would read differently from
//! [`ImagePolicy::rule_for`](policy::image::ImagePolicy::rule_for) is refused. The
//! output must never accept more than the image policy: a rule podman cannot express
//! is refused or rendered as `reject`, never weakened. Nothing here verifies a
//! signature (podman does, with the rendered files; Provenant's own verifier is the
//! `signatures` crate), and the library does no I/O: the `policy` binary reads the
//! files and writes the result.
//!
//! # What is rendered
//!
//! [`render`] is pure: the caller (the `policy render-podman` binary) reads every file
//! the image policy names and passes the contents in [`RenderInputs`]; the result
//! ([`Rendered`]) holds the text of `containers-policy.json`, of the `registries.d`
//! file, and the key material to install next to them, each PEM re-encoded from its
//! parsed DER so the output is canonical and deterministic.
//!
//! - `default: [{"type":"reject"}]`: anything not covered by a rule is refused, on
//!   every transport.
//! - one `transports.docker` entry per trust rule, keyed by its scope (podman, like
//!   [`ImagePolicy::rule_for`](policy::image::ImagePolicy::rule_for), applies the
//!   longest whole-segment match):
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
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod pem;
mod registries;
mod render;
mod trusted_root;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::PathBuf;

pub use error::RenderError;
pub use render::render;

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
    /// What to do with a keyless rule whose identity podman cannot pin.
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
