//! An OCI distribution client that finds an image's signatures.
//!
//! It resolves tags to manifest digests, finds cosign's legacy signatures (the
//! `sha256-<hex>.sig` tag, simple-signing layers with their annotations) and Sigstore
//! bundles attached as OCI 1.1 referrers (the referrers API, or the tag-schema
//! fallback `sha256-<hex>` index when the registry has no such API, as distribution
//! 2.8), and pushes blobs, manifests and signatures (for tests and the signing tool).
//!
//! # Trust boundary
//!
//! Nothing a registry serves is trusted: every body is size-bounded while it is read
//! (with or without a `Content-Length`), every manifest fetched by digest must hash to
//! it, every blob must hash to its descriptor's digest and have its size, a referrer
//! must name the image as its `subject`, and the number of signatures and referrers is
//! bounded. What this client returns is still unverified: signatures go to
//! [`crate::cosign`] / [`crate::verify_bundle`].
//!
//! "The registry says there are no signatures" is `Ok(vec![])`; "the registry could
//! not be asked" (unreachable, timeout, HTTP error, garbage, too large, digest
//! mismatch) is a typed [`RegistryError`]: the first is a red badge, the second
//! unknown.
//!
//! # Bounds
//!
//! - manifests and indexes: [`MAX_MANIFEST_BYTES`] (4 MiB, distribution's own limit);
//! - signature payload and bundle blobs: [`MAX_SIGNATURE_BLOB_BYTES`] (2 MiB, the
//!   bundle verifier's own bound);
//! - token responses: [`MAX_TOKEN_RESPONSE_BYTES`]; error bodies: 16 KiB (read for
//!   the registry's error code only);
//! - signatures per image [`MAX_SIGNATURES`], layers per signature manifest
//!   [`MAX_SIGNATURE_LAYERS`], referrers considered [`MAX_REFERRERS`];
//! - redirects: [`MAX_REDIRECTS`], and only blob downloads may leave the registry's
//!   host (registries send them to storage or a CDN); credentials are never sent to
//!   another host.

mod auth;
mod challenge;
pub mod digest;
mod discover;
pub mod net;
mod push;
mod reference;

#[cfg(test)]
mod tests;
mod transport;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use digest::Sha256Digest;
pub use reference::{
    Reference, DOCKER_HUB, DOCKER_HUB_API_HOST, MAX_NAME_LEN, MAX_REFERENCE_LEN, MAX_TAG_LEN,
};

pub(crate) use reference::normalise_scope;

use auth::read_secret;
use challenge::{AuthMode, CachedToken, Creds};
use transport::{build_http, HostEntry};

/// `s`, cut to at most 80 bytes (on a character boundary) for error messages.
pub(crate) fn clip(s: &str) -> String {
    if s.len() <= 80 {
        return s.to_string();
    }
    let mut end = 80;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// Largest manifest or index read (distribution refuses to store larger ones).
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;
/// Largest signature payload or bundle blob read: the same bound as
/// [`crate::MAX_BUNDLE_BYTES`]; cosign payloads are well under 1 KiB.
pub const MAX_SIGNATURE_BLOB_BYTES: usize = crate::MAX_BUNDLE_BYTES;
/// Largest token-server response read.
pub const MAX_TOKEN_RESPONSE_BYTES: usize = 256 * 1024;
/// Largest error body read (for its error code).
const MAX_ERROR_BODY_BYTES: usize = 16 * 1024;
/// Largest secret file (password, token) read.
const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;
/// Largest `ca_file` read.
const MAX_CA_FILE_BYTES: u64 = 1024 * 1024;
/// Most signatures returned for one image; more is an error, not a truncation (a
/// valid one could be the one left out).
pub const MAX_SIGNATURES: usize = 64;
/// Most layers in one cosign `.sig` manifest.
pub const MAX_SIGNATURE_LAYERS: usize = 64;
/// Most referrer descriptors read from a referrers response or fallback index.
pub const MAX_REFERRERS: usize = 256;
/// Most pages of a referrers response followed (`Link: <..>; rel="next"`).
pub const MAX_REFERRER_PAGES: usize = 8;
/// Most redirects followed for one request.
pub const MAX_REDIRECTS: usize = 5;
/// Default whole-request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Connect timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest `WWW-Authenticate` header parsed.
const MAX_CHALLENGE_LEN: usize = 4096;
/// Tokens are refreshed this long before they expire.
const TOKEN_EXPIRY_MARGIN: Duration = Duration::from_secs(10);
/// Token lifetime assumed when the token server gives none (the spec's default).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// Longest token lifetime believed.
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker v2 schema 2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker v2 manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI empty descriptor (`{}`), the config of artifacts.
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
/// cosign's simple-signing layer.
pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// Sigstore bundle v0.3 artifact type (what cosign writes).
pub const BUNDLE_V0_3: &str = crate::MEDIA_TYPE_V0_3;
/// Artifact types recognised as Sigstore bundles.
pub const BUNDLE_ARTIFACT_TYPES: [&str; 3] = [
    crate::MEDIA_TYPE_V0_3,
    "application/vnd.dev.sigstore.bundle+json;version=0.3",
    crate::MEDIA_TYPE_V0_2,
];
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// Why the registry could not be asked or answered unusably. `kind()` is stable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The image reference (or repository, or digest) is not valid.
    #[error("invalid image reference: {0}")]
    InvalidReference(String),
    /// The registry configuration is unusable (missing secret file, bad CA, ...).
    #[error("invalid registry configuration: {0}")]
    Config(String),
    /// No connection could be made.
    #[error("registry {host} unreachable: {reason}")]
    Unreachable {
        /// The host asked.
        host: String,
        /// The transport error.
        reason: String,
    },
    /// The request did not finish in time.
    #[error("registry {host} timed out")]
    Timeout {
        /// The host asked.
        host: String,
    },
    /// An unexpected HTTP status.
    #[error("registry answered HTTP {status} to {what}{}", code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Http {
        /// The status code.
        status: u16,
        /// What was asked for.
        what: String,
        /// The registry's error code (`MANIFEST_UNKNOWN`, ...), when it gave one.
        code: Option<String>,
    },
    /// Authentication failed or was refused.
    #[error("not authorised by registry {host}: {reason}")]
    Unauthorized {
        /// The host asked.
        host: String,
        /// Why.
        reason: String,
    },
    /// The manifest asked for does not exist.
    #[error("manifest unknown: {0}")]
    ManifestUnknown(String),
    /// A body exceeds its bound.
    #[error("{what} is larger than {max} bytes")]
    TooLarge {
        /// What was being read.
        what: String,
        /// The bound.
        max: usize,
    },
    /// A body that is not what it should be (bad JSON, wrong shape, bad header).
    #[error("malformed registry response: {0}")]
    Malformed(String),
    /// Content does not hash to the digest it was fetched by or announced with.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What was fetched.
        what: String,
        /// The digest asked for or announced.
        expected: String,
        /// The digest of the bytes received.
        actual: String,
    },
    /// A blob's size differs from its descriptor's.
    #[error("size mismatch for {what}: descriptor says {expected}, got {actual}")]
    SizeMismatch {
        /// What was fetched.
        what: String,
        /// The descriptor's size.
        expected: u64,
        /// The size received.
        actual: u64,
    },
    /// Too many redirects, a redirect without a usable location, or one to another
    /// host where that is not allowed.
    #[error("bad redirect: {0}")]
    Redirect(String),
    /// More signatures, layers or referrers than bounded.
    #[error("too many {what} (more than {max})")]
    TooMany {
        /// What was counted.
        what: &'static str,
        /// The bound.
        max: usize,
    },
}

/// A digest that is not `sha256:<64 lowercase hex>` is an invalid reference.
impl From<digest::InvalidDigest> for RegistryError {
    fn from(e: digest::InvalidDigest) -> Self {
        RegistryError::InvalidReference(e.to_string())
    }
}

impl RegistryError {
    /// Stable machine-readable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidReference(_) => "InvalidReference",
            Self::Config(_) => "RegistryConfig",
            Self::Unreachable { .. } => "Unreachable",
            Self::Timeout { .. } => "Timeout",
            Self::Http { .. } => "Http",
            Self::Unauthorized { .. } => "Unauthorized",
            Self::ManifestUnknown(_) => "ManifestUnknown",
            Self::TooLarge { .. } => "TooLarge",
            Self::Malformed(_) => "Malformed",
            Self::DigestMismatch { .. } => "DigestMismatch",
            Self::SizeMismatch { .. } => "SizeMismatch",
            Self::Redirect(_) => "BadRedirect",
            Self::TooMany { .. } => "TooMany",
        }
    }
}

/// How to reach one registry: a `[[registry]]` entry in the agent's and the control
/// plane's TOML. Registries not configured are reached over https, anonymously (or
/// with the anonymous token flow), with the built-in web PKI roots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// `host[:port]` as in image references (`127.0.0.1:5000`, `ghcr.io`).
    pub host: String,
    /// Plain http instead of https.
    #[serde(default)]
    pub insecure: bool,
    /// Extra PEM roots trusted for this registry (added to the web PKI roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Basic-auth user name (used directly on a `Basic` challenge, and with the token
    /// server on a `Bearer` one). Requires `password_file`.
    #[serde(default)]
    pub username: Option<String>,
    /// File holding the password (trailing newline ignored).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// File holding a static bearer token sent on every request.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

/// The OCI registry client. Cheap to share (`&self` everywhere); token caches are
/// internal.
#[derive(Debug)]
pub struct RegistryClient {
    hosts: HashMap<String, HostEntry>,
    default: HostEntry,
    tokens: Mutex<HashMap<(String, String), CachedToken>>,
    modes: Mutex<HashMap<String, AuthMode>>,
}

/// A config-named file (CA bundle, secret) of at most `max` bytes; a refusal names
/// the file and what it is for.
fn read_bounded_file(p: &Path, max: u64, what: &str) -> Result<Vec<u8>, RegistryError> {
    use provenant_base::fsutil::ReadError;
    provenant_base::fsutil::read_bounded(p, max).map_err(|e| {
        RegistryError::Config(match e {
            ReadError::Io(e) => format!("cannot read {what} {}: {e}", p.display()),
            ReadError::TooLarge { .. } => {
                format!("{what} {} is larger than {max} bytes", p.display())
            }
        })
    })
}

/// A descriptor (the fields used here).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the target.
    #[serde(default)]
    pub media_type: String,
    /// `sha256:<hex>` of the target.
    pub digest: String,
    /// Size in bytes of the target.
    pub size: u64,
    /// Artifact type (referrers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManifestDoc {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
    #[serde(default)]
    subject: Option<Descriptor>,
}

/// A manifest as fetched: its bytes, digest and media type.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    /// The exact bytes served.
    pub bytes: Vec<u8>,
    /// `sha256:<hex>` of `bytes`.
    pub digest: String,
    /// `Content-Type` (or the body's `mediaType`).
    pub media_type: String,
}

/// Splits `registry[:port]/path` (no tag or digest).
fn parse_repository(repository: &str) -> Result<Reference, RegistryError> {
    let r = Reference::parse(repository)?;
    if r.tag().is_some() || r.digest().is_some() {
        return Err(RegistryError::InvalidReference(format!(
            "{}: a repository has no tag or digest",
            clip(repository)
        )));
    }
    Ok(r)
}

impl RegistryClient {
    /// A client for these registries (anything not listed: https, anonymous).
    pub fn new(configs: &[RegistryConfig]) -> Result<RegistryClient, RegistryError> {
        Self::with_timeout(configs, DEFAULT_TIMEOUT)
    }

    /// [`RegistryClient::new`] with another whole-request timeout.
    pub fn with_timeout(
        configs: &[RegistryConfig],
        timeout: Duration,
    ) -> Result<RegistryClient, RegistryError> {
        let mut hosts = HashMap::new();
        for c in configs {
            let host = c.host.trim().to_ascii_lowercase();
            if host.is_empty() || host.contains('/') || host.contains(char::is_whitespace) {
                return Err(RegistryError::Config(format!(
                    "registry host {:?} must be host[:port]",
                    clip(&c.host)
                )));
            }
            let creds = match (&c.username, &c.password_file, &c.token_file) {
                (None, None, None) => Creds::None,
                (Some(u), Some(p), None) => Creds::Basic {
                    user: u.clone(),
                    password: read_secret(p, "password_file")?,
                },
                (None, None, Some(t)) => Creds::Bearer(read_secret(t, "token_file")?),
                _ => {
                    return Err(RegistryError::Config(format!(
                        "registry {host}: give username with password_file, or token_file, not both"
                    )))
                }
            };
            let ca = match &c.ca_file {
                Some(p) => Some(read_bounded_file(p, MAX_CA_FILE_BYTES, "ca_file")?),
                None => None,
            };
            let entry = HostEntry {
                scheme: if c.insecure { "http" } else { "https" },
                client: build_http(ca.as_deref(), timeout, false)?,
                guarded: build_http(ca.as_deref(), timeout, true)?,
                creds,
            };
            if hosts.insert(host.clone(), entry).is_some() {
                return Err(RegistryError::Config(format!(
                    "registry {host} configured twice"
                )));
            }
        }
        Ok(RegistryClient {
            hosts,
            default: HostEntry {
                scheme: "https",
                client: build_http(None, timeout, false)?,
                guarded: build_http(None, timeout, true)?,
                creds: Creds::None,
            },
            tokens: Mutex::new(HashMap::new()),
            modes: Mutex::new(HashMap::new()),
        })
    }

    fn entry(&self, host: &str) -> &HostEntry {
        self.hosts
            .get(&host.to_ascii_lowercase())
            .unwrap_or(&self.default)
    }

    fn base(&self, r: &Reference) -> String {
        let host = r.api_host();
        format!(
            "{}://{host}/v2/{}",
            self.entry(r.registry()).scheme,
            r.path()
        )
    }
}

fn len64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}
