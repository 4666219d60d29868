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

pub mod net;
mod reference;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::header::{
    HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE,
};
use reqwest::{Method, StatusCode, Url};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use reference::{
    Reference, DOCKER_HUB, DOCKER_HUB_API_HOST, MAX_NAME_LEN, MAX_REFERENCE_LEN, MAX_TAG_LEN,
};

use crate::image::ImageSignature;

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

/// A secret that never prints.
#[derive(Clone)]
struct Secret(String);
impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, Clone)]
enum Creds {
    None,
    Basic { user: String, password: Secret },
    Bearer(Secret),
}

#[derive(Debug)]
struct HostEntry {
    scheme: &'static str,
    client: reqwest::Client,
    /// For hosts other than the registry's own (token realms, blob redirects): it
    /// connects only to addresses [`net::GuardedResolver`] found public.
    guarded: reqwest::Client,
    creds: Creds,
}

/// A cached bearer token for (host, scope).
#[derive(Debug)]
struct CachedToken {
    token: Secret,
    until: Instant,
}

/// What the registry asked for last time, per host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AuthMode {
    Unknown,
    Basic,
    Token,
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

fn read_bounded_file(p: &Path, max: u64, what: &str) -> Result<Vec<u8>, RegistryError> {
    use std::io::Read;
    let f = std::fs::File::open(p)
        .map_err(|e| RegistryError::Config(format!("cannot read {what} {}: {e}", p.display())))?;
    let mut buf = Vec::new();
    f.take(max + 1)
        .read_to_end(&mut buf)
        .map_err(|e| RegistryError::Config(format!("cannot read {what} {}: {e}", p.display())))?;
    if len64(buf.len()) > max {
        return Err(RegistryError::Config(format!(
            "{what} {} is larger than {max} bytes",
            p.display()
        )));
    }
    Ok(buf)
}

fn read_secret(p: &Path, what: &str) -> Result<Secret, RegistryError> {
    let b = read_bounded_file(p, MAX_SECRET_FILE_BYTES, what)?;
    let s = String::from_utf8(b)
        .map_err(|_| RegistryError::Config(format!("{what} {} is not UTF-8", p.display())))?;
    let s = s.trim_end_matches(['\n', '\r']).to_string();
    if s.is_empty() {
        return Err(RegistryError::Config(format!(
            "{what} {} is empty",
            p.display()
        )));
    }
    Ok(Secret(s))
}

fn build_http(
    ca_pem: Option<&[u8]>,
    timeout: Duration,
    guarded: bool,
) -> Result<reqwest::Client, RegistryError> {
    let mut b = reqwest::Client::builder();
    if guarded {
        b = net::guarded(b);
    }
    let mut b = b
        .use_rustls_tls()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(timeout)
        .user_agent(concat!("provenant-signatures/", env!("CARGO_PKG_VERSION")));
    if let Some(pem) = ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| RegistryError::Config(format!("ca_file: {e}")))?;
        if certs.is_empty() {
            return Err(RegistryError::Config("ca_file holds no certificate".into()));
        }
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    b.build()
        .map_err(|e| RegistryError::Config(format!("HTTP client: {e}")))
}

/// Whether two URLs share scheme, host and port.
fn same_origin(a: &Url, b: &str) -> bool {
    Url::parse(b).is_ok_and(|b| {
        a.scheme() == b.scheme()
            && a.host_str() == b.host_str()
            && a.port_or_known_default() == b.port_or_known_default()
    })
}

/// The host part of `host[:port]` (brackets of an IPv6 literal removed), lowercased.
fn host_part(registry: &str) -> String {
    match registry.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => registry.split(':').next().unwrap_or(registry),
    }
    .to_ascii_lowercase()
}

/// Whether `url` is on one of the registry's own hosts (the configured `host[:port]`
/// or its API host), whatever the port: the only place an internal address is
/// reached, because the operator named it.
fn own_host(url: &Url, own: &[&str]) -> bool {
    let Some(h) = url.host_str() else {
        return false;
    };
    let h = h.trim_start_matches('[').trim_end_matches(']');
    own.iter().any(|o| host_part(o) == h.to_ascii_lowercase())
}

/// One parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parses `Basic realm=".."` or `Bearer realm="..",service="..",scope=".."`.
fn parse_challenge(h: &str) -> Result<Challenge, RegistryError> {
    let bad = |why: &str| RegistryError::Malformed(format!("WWW-Authenticate: {why}"));
    if h.len() > MAX_CHALLENGE_LEN {
        return Err(bad("too long"));
    }
    let h = h.trim();
    let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
    let mut params = BTreeMap::new();
    let mut s = rest.trim();
    while !s.is_empty() {
        let (k, after) = s
            .split_once('=')
            .ok_or_else(|| bad("parameter without '='"))?;
        let k = k.trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (v, rest) = if let Some(q) = after.strip_prefix('"') {
            // Quoted string with backslash escapes.
            let mut v = String::new();
            let mut chars = q.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            v.push(n);
                        }
                    }
                    '"' => {
                        end = Some(i);
                        break;
                    }
                    c => v.push(c),
                }
            }
            let end = end.ok_or_else(|| bad("unterminated quoted string"))?;
            (v, &q[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        params.insert(k, v);
        s = rest.trim_start();
        s = s.strip_prefix(',').unwrap_or(s).trim_start();
    }
    if scheme.eq_ignore_ascii_case("basic") {
        Ok(Challenge::Basic)
    } else if scheme.eq_ignore_ascii_case("bearer") {
        let realm = params
            .remove("realm")
            .ok_or_else(|| bad("Bearer without realm"))?;
        Ok(Challenge::Bearer {
            realm,
            service: params.remove("service"),
            scope: params.remove("scope"),
        })
    } else {
        Err(bad(&format!(
            "unsupported scheme {:?}",
            reference::clip(scheme)
        )))
    }
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

fn sha256_digest(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

fn hex_of(digest: &str) -> Result<&str, RegistryError> {
    reference::parse_digest(digest).map_err(RegistryError::InvalidReference)?;
    Ok(&digest["sha256:".len()..])
}

/// Splits `registry[:port]/path` (no tag or digest).
fn parse_repository(repository: &str) -> Result<Reference, RegistryError> {
    let r = Reference::parse(repository)?;
    if r.tag().is_some() || r.digest().is_some() {
        return Err(RegistryError::InvalidReference(format!(
            "{}: a repository has no tag or digest",
            reference::clip(repository)
        )));
    }
    Ok(r)
}

enum Body<'a> {
    Empty,
    Bytes(&'a [u8], &'a str),
}

/// What kind of request: only blob downloads may be redirected to another host.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Redirects {
    SameHost,
    AnyHostNoAuth,
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
                    reference::clip(&c.host)
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

    fn transport_error(host: &str, e: reqwest::Error) -> RegistryError {
        if e.is_timeout() {
            RegistryError::Timeout {
                host: host.to_string(),
            }
        } else {
            // The full chain: rustls' certificate errors sit under reqwest's.
            let mut reason = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                reason.push_str(": ");
                reason.push_str(&s.to_string());
                src = s.source();
            }
            RegistryError::Unreachable {
                host: host.to_string(),
                reason,
            }
        }
    }

    /// Sends one request with auth and redirect handling; returns the final response
    /// (any status; 401 only when auth could not help).
    #[allow(clippy::too_many_arguments)]
    async fn send(
        &self,
        r: &Reference,
        method: Method,
        url: &str,
        headers: &HeaderMap,
        body: Body<'_>,
        push: bool,
        redirects: Redirects,
    ) -> Result<reqwest::Response, RegistryError> {
        let host = r.registry().to_string();
        let entry = self.entry(&host);
        let scope = format!(
            "repository:{}:{}",
            r.path(),
            if push { "pull,push" } else { "pull" }
        );
        let mut tried_auth = false;
        // A token just fetched is used for the retry whatever its announced lifetime
        // (one shorter than the refresh margin is good for this one request).
        let mut fresh: Option<HeaderValue> = None;
        loop {
            let auth = fresh
                .take()
                .or_else(|| self.auth_header(&host, &scope, entry));
            let resp = self
                .send_following(
                    entry,
                    &host,
                    method.clone(),
                    url,
                    headers,
                    &body,
                    auth,
                    redirects,
                )
                .await?;
            if resp.status() != StatusCode::UNAUTHORIZED {
                return Ok(resp);
            }
            // Only the registry itself may ask for credentials: a 401 from a host a blob
            // was redirected to is not answered (its challenge would send the
            // configured credentials to a realm of its choosing).
            if !same_origin(resp.url(), url) {
                return Err(RegistryError::Unauthorized {
                    host,
                    reason: format!(
                        "{} (a redirect target) asked for credentials; they go to the registry only",
                        reference::clip(resp.url().host_str().unwrap_or_default())
                    ),
                });
            }
            if tried_auth {
                return Err(RegistryError::Unauthorized {
                    host,
                    reason: "credentials refused".into(),
                });
            }
            tried_auth = true;
            let challenge = match resp.headers().get(WWW_AUTHENTICATE) {
                Some(v) => parse_challenge(v.to_str().map_err(|_| {
                    RegistryError::Malformed("WWW-Authenticate is not ASCII".into())
                })?)?,
                None => {
                    return Err(RegistryError::Unauthorized {
                        host,
                        reason: "401 without a WWW-Authenticate challenge".into(),
                    })
                }
            };
            match (&entry.creds, challenge) {
                (Creds::Bearer(_), _) => {
                    return Err(RegistryError::Unauthorized {
                        host,
                        reason: "static bearer token refused".into(),
                    })
                }
                (Creds::Basic { .. }, Challenge::Basic) => {
                    self.set_mode(&host, AuthMode::Basic);
                }
                (Creds::None, Challenge::Basic) => {
                    return Err(RegistryError::Unauthorized {
                        host,
                        reason: "registry asks for Basic credentials and none are configured"
                            .into(),
                    })
                }
                (
                    creds,
                    Challenge::Bearer {
                        realm,
                        service,
                        scope: asked,
                    },
                ) => {
                    let token = self
                        .fetch_token(
                            entry,
                            &host,
                            creds,
                            &realm,
                            service.as_deref(),
                            asked.as_deref().unwrap_or(&scope),
                        )
                        .await?;
                    let mut h = HeaderValue::from_str(&format!("Bearer {}", token.token.0))
                        .map_err(|_| {
                            RegistryError::Malformed("token is not a valid header value".into())
                        })?;
                    h.set_sensitive(true);
                    fresh = Some(h);
                    self.tokens
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert((host.clone(), scope.clone()), token);
                    self.set_mode(&host, AuthMode::Token);
                }
            }
        }
    }

    fn set_mode(&self, host: &str, m: AuthMode) {
        self.modes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(host.to_string(), m);
    }

    fn auth_header(&self, host: &str, scope: &str, entry: &HostEntry) -> Option<HeaderValue> {
        let mode = *self
            .modes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(host)
            .unwrap_or(&AuthMode::Unknown);
        let v = match (&entry.creds, mode) {
            (Creds::Bearer(t), _) => format!("Bearer {}", t.0),
            (Creds::Basic { user, password }, AuthMode::Basic) => basic(user, &password.0),
            (_, AuthMode::Token) => {
                let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
                let key = (host.to_string(), scope.to_string());
                match tokens.get(&key) {
                    Some(t) if t.until > Instant::now() => format!("Bearer {}", t.token.0),
                    Some(_) => {
                        tokens.remove(&key);
                        return None;
                    }
                    None => return None,
                }
            }
            _ => return None,
        };
        let mut h = HeaderValue::from_str(&v).ok()?;
        h.set_sensitive(true);
        Some(h)
    }

    async fn fetch_token(
        &self,
        entry: &HostEntry,
        host: &str,
        creds: &Creds,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<CachedToken, RegistryError> {
        let mut url = Url::parse(realm).map_err(|e| {
            RegistryError::Malformed(format!("token realm {:?}: {e}", reference::clip(realm)))
        })?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(RegistryError::Malformed(format!(
                "token realm {:?} is not http(s)",
                reference::clip(realm)
            )));
        }
        // A registry names its token server, which may be another host (Docker Hub's
        // is). It may not point us at internal addresses it does not itself live on:
        // another host is reached over https (unless the registry itself is plain
        // http), and only at addresses that are public once resolved.
        let external = !own_host(&url, &[host]);
        let refuse = |why: String| RegistryError::Unauthorized {
            host: host.to_string(),
            reason: format!("token realm {:?} refused: {why}", reference::clip(realm)),
        };
        if external {
            if url.scheme() != "https" && entry.scheme != "http" {
                return Err(refuse(
                    "plain http on another host than an https registry's".into(),
                ));
            }
            net::check_literal(&url).map_err(|e| refuse(e.to_string()))?;
        }
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            q.append_pair("scope", scope);
        }
        let mut req = if external {
            entry.guarded.get(url.clone())
        } else {
            entry.client.get(url.clone())
        };
        if let Creds::Basic { user, password } = creds {
            // Credentials travel in clear only where the registry itself is plain http.
            if url.scheme() == "https" || entry.scheme == "http" {
                let mut h = HeaderValue::from_str(&basic(user, &password.0))
                    .map_err(|_| RegistryError::Config("username is not a valid header".into()))?;
                h.set_sensitive(true);
                req = req.header(AUTHORIZATION, h);
            } else {
                return Err(RegistryError::Unauthorized {
                    host: host.to_string(),
                    reason: "token realm is plain http for an https registry: credentials not sent"
                        .into(),
                });
            }
        }
        let realm_host = url.host_str().unwrap_or_default().to_string();
        let resp = req.send().await.map_err(|e| match net::internal_in(&e) {
            Some(i) => refuse(i.to_string()),
            None => Self::transport_error(&realm_host, e),
        })?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(RegistryError::Unauthorized {
                host: host.to_string(),
                reason: format!("token server answered {}", status.as_u16()),
            });
        }
        if !status.is_success() {
            return Err(RegistryError::Http {
                status: status.as_u16(),
                what: "token".into(),
                code: None,
            });
        }
        let body = read_body(
            resp,
            MAX_TOKEN_RESPONSE_BYTES,
            "token response",
            &realm_host,
        )
        .await?;
        #[derive(Deserialize)]
        struct TokenResponse {
            #[serde(default)]
            token: Option<String>,
            #[serde(default)]
            access_token: Option<String>,
            #[serde(default)]
            expires_in: Option<u64>,
        }
        let t: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| RegistryError::Malformed(format!("token response: {e}")))?;
        let token = t
            .token
            .filter(|s| !s.is_empty())
            .or(t.access_token.filter(|s| !s.is_empty()))
            .ok_or_else(|| RegistryError::Malformed("token response without a token".into()))?;
        if HeaderValue::from_str(&format!("Bearer {token}")).is_err() {
            return Err(RegistryError::Malformed(
                "token is not a valid header value".into(),
            ));
        }
        let life = t
            .expires_in
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_TOKEN_LIFETIME)
            .min(MAX_TOKEN_LIFETIME);
        Ok(CachedToken {
            token: Secret(token),
            until: Instant::now() + life.saturating_sub(TOKEN_EXPIRY_MARGIN),
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn send_following(
        &self,
        entry: &HostEntry,
        host: &str,
        method: Method,
        url: &str,
        headers: &HeaderMap,
        body: &Body<'_>,
        auth: Option<HeaderValue>,
        redirects: Redirects,
    ) -> Result<reqwest::Response, RegistryError> {
        let mut url = Url::parse(url)
            .map_err(|e| RegistryError::InvalidReference(format!("URL {url}: {e}")))?;
        let origin = (
            url.scheme().to_string(),
            url.host_str().map(str::to_string),
            url.port_or_known_default(),
        );
        let origin_host = url.host_str().unwrap_or_default().to_string();
        let mut hops = 0;
        loop {
            let same_origin = (
                url.scheme().to_string(),
                url.host_str().map(str::to_string),
                url.port_or_known_default(),
            ) == origin;
            // Hosts other than the registry's own (a blob's CDN): https unless the
            // registry is plain http, and public addresses only.
            let external = !same_origin && !own_host(&url, &[host, &origin_host]);
            if external {
                if url.scheme() != "https" && entry.scheme != "http" {
                    return Err(RegistryError::Redirect(format!(
                        "plain http redirect target {} for an https registry refused",
                        reference::clip(url.host_str().unwrap_or_default())
                    )));
                }
                net::check_literal(&url).map_err(|e| {
                    RegistryError::Redirect(format!("redirect target refused: {e}"))
                })?;
            }
            let client = if external {
                &entry.guarded
            } else {
                &entry.client
            };
            let mut req = client
                .request(method.clone(), url.clone())
                .headers(headers.clone());
            if same_origin {
                if let Some(a) = &auth {
                    req = req.header(AUTHORIZATION, a.clone());
                }
            }
            if let Body::Bytes(b, ct) = body {
                req = req.header(CONTENT_TYPE, *ct).body(b.to_vec());
            } else if method == Method::PUT || method == Method::POST {
                req = req.header(reqwest::header::CONTENT_LENGTH, "0");
            }
            let resp = req.send().await.map_err(|e| {
                if let Some(i) = net::internal_in(&e) {
                    return RegistryError::Redirect(format!("redirect target refused: {i}"));
                }
                let shown = match (url.host_str(), url.port_or_known_default()) {
                    (Some(h), Some(p)) if !same_origin => format!("{h}:{p}"),
                    _ => host.to_string(),
                };
                Self::transport_error(&shown, e)
            })?;
            if !resp.status().is_redirection() || resp.status() == StatusCode::NOT_MODIFIED {
                return Ok(resp);
            }
            hops += 1;
            if hops > MAX_REDIRECTS {
                return Err(RegistryError::Redirect(format!(
                    "more than {MAX_REDIRECTS} redirects"
                )));
            }
            let loc = resp
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| RegistryError::Redirect("redirect without a Location".into()))?;
            let next = url.join(loc).map_err(|e| {
                RegistryError::Redirect(format!("Location {:?}: {e}", reference::clip(loc)))
            })?;
            if !matches!(next.scheme(), "http" | "https") {
                return Err(RegistryError::Redirect("Location is not http(s)".into()));
            }
            let next_origin = (
                next.scheme().to_string(),
                next.host_str().map(str::to_string),
                next.port_or_known_default(),
            );
            if redirects == Redirects::SameHost && next_origin != origin {
                return Err(RegistryError::Redirect(format!(
                    "redirect to another host ({}:{}) refused",
                    next.host_str().unwrap_or_default(),
                    next.port_or_known_default().unwrap_or_default()
                )));
            }
            url = next;
        }
    }

    /// Reads an error response into a typed error.
    async fn http_error(resp: reqwest::Response, what: &str, host: &str) -> RegistryError {
        let status = resp.status().as_u16();
        let code = match read_body(resp, MAX_ERROR_BODY_BYTES, "error body", host).await {
            Ok(b) => serde_json::from_slice::<serde_json::Value>(&b)
                .ok()
                .and_then(|v| v["errors"][0]["code"].as_str().map(reference::clip)),
            Err(_) => None,
        };
        if status == 403 {
            return RegistryError::Unauthorized {
                host: host.to_string(),
                reason: format!("403 for {what}"),
            };
        }
        RegistryError::Http {
            status,
            what: what.to_string(),
            code,
        }
    }

    /// GETs a manifest by tag or digest. `Ok(None)` on 404 (any error code: a
    /// registry answers 404 with `MANIFEST_UNKNOWN` or `NAME_UNKNOWN`).
    async fn get_manifest_opt(
        &self,
        r: &Reference,
        reference: &str,
        push: bool,
    ) -> Result<Option<FetchedManifest>, RegistryError> {
        let url = format!("{}/manifests/{reference}", self.base(r));
        let mut h = HeaderMap::new();
        h.insert(ACCEPT, HeaderValue::from_static(MANIFEST_ACCEPT));
        let sep = if reference.starts_with("sha256:") {
            '@'
        } else {
            ':'
        };
        let what = format!(
            "manifest {}{sep}{}",
            r.repository(),
            reference::clip(reference)
        );
        let resp = self
            .send(
                r,
                Method::GET,
                &url,
                &h,
                Body::Empty,
                push,
                Redirects::SameHost,
            )
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(Self::http_error(resp, &what, r.registry()).await);
        }
        let announced = resp
            .headers()
            .get("docker-content-digest")
            .map(|v| v.to_str().map(str::to_string))
            .transpose()
            .map_err(|_| RegistryError::Malformed("Docker-Content-Digest is not ASCII".into()))?;
        let ctype = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.split(';').next().unwrap_or("").trim().to_string());
        let bytes = read_body(resp, MAX_MANIFEST_BYTES, &what, r.registry()).await?;
        let digest = sha256_digest(&bytes);
        if reference.starts_with("sha256:") && digest != reference {
            return Err(RegistryError::DigestMismatch {
                what,
                expected: reference.to_string(),
                actual: digest,
            });
        }
        if let Some(a) = announced {
            // Another algorithm cannot be checked here; sha256 must match.
            if a.starts_with("sha256:") && a != digest {
                return Err(RegistryError::DigestMismatch {
                    what: format!("{what} (Docker-Content-Digest)"),
                    expected: reference::clip(&a),
                    actual: digest,
                });
            }
        }
        let doc: ManifestDoc = serde_json::from_slice(&bytes)
            .map_err(|e| RegistryError::Malformed(format!("{what}: {e}")))?;
        let media_type = doc
            .media_type
            .clone()
            .or(ctype.filter(|c| !c.is_empty() && c != "application/json"))
            .ok_or_else(|| RegistryError::Malformed(format!("{what}: no media type")))?;
        if ![
            OCI_MANIFEST,
            OCI_INDEX,
            DOCKER_MANIFEST,
            DOCKER_MANIFEST_LIST,
        ]
        .contains(&media_type.as_str())
        {
            return Err(RegistryError::Malformed(format!(
                "{what}: unsupported media type {:?}",
                reference::clip(&media_type)
            )));
        }
        Ok(Some(FetchedManifest {
            bytes,
            digest,
            media_type,
        }))
    }

    /// Fetches a manifest (by tag or digest), checked as described above.
    pub async fn get_manifest(&self, r: &Reference) -> Result<FetchedManifest, RegistryError> {
        let reference = r.digest().or(r.tag()).unwrap_or("latest").to_string();
        self.get_manifest_opt(r, &reference, false)
            .await?
            .ok_or_else(|| RegistryError::ManifestUnknown(r.to_string()))
    }

    /// Resolves a reference to `(repository, "sha256:<hex>")`: the manifest (or index)
    /// digest the registry serves for its tag (`latest` when none) or digest. The body
    /// is fetched and hashed, so the digest is never just the registry's word.
    pub async fn resolve(&self, r: &Reference) -> Result<(String, String), RegistryError> {
        let m = self.get_manifest(r).await?;
        Ok((r.repository(), m.digest))
    }

    /// Fetches a blob, checking its size and digest against the descriptor.
    pub async fn get_blob(
        &self,
        r: &Reference,
        d: &Descriptor,
        max: usize,
    ) -> Result<Vec<u8>, RegistryError> {
        hex_of(&d.digest)?;
        let what = format!("blob {}@{}", r.repository(), d.digest);
        if d.size > len64(max) {
            return Err(RegistryError::TooLarge { what, max });
        }
        let url = format!("{}/blobs/{}", self.base(r), d.digest);
        let resp = self
            .send(
                r,
                Method::GET,
                &url,
                &HeaderMap::new(),
                Body::Empty,
                false,
                Redirects::AnyHostNoAuth,
            )
            .await?;
        if !resp.status().is_success() {
            return Err(Self::http_error(resp, &what, r.registry()).await);
        }
        // Read up to the bound (not just the descriptor's size), so a mismatch
        // reports the size actually served.
        let bytes = read_body(resp, max, &what, r.registry()).await?;
        if len64(bytes.len()) != d.size {
            return Err(RegistryError::SizeMismatch {
                what,
                expected: d.size,
                actual: len64(bytes.len()),
            });
        }
        let actual = sha256_digest(&bytes);
        if actual != d.digest {
            return Err(RegistryError::DigestMismatch {
                what,
                expected: d.digest.clone(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Every signature stored for `digest` in `repository` (`registry/path`): cosign's
    /// legacy `.sig` tag and Sigstore-bundle referrers. `Ok(vec![])` when the registry
    /// answers that there are none.
    pub async fn find_signatures(
        &self,
        repository: &str,
        digest: &str,
    ) -> Result<Vec<ImageSignature>, RegistryError> {
        let mut out = self.find_legacy_signatures(repository, digest).await?;
        out.extend(self.find_referrer_signatures(repository, digest).await?);
        if out.len() > MAX_SIGNATURES {
            return Err(RegistryError::TooMany {
                what: "signatures",
                max: MAX_SIGNATURES,
            });
        }
        Ok(out)
    }

    /// cosign's legacy signatures of `digest`: the simple-signing layers of the
    /// `sha256-<hex>.sig` tag. `Ok(vec![])` when there is no such tag.
    pub async fn find_legacy_signatures(
        &self,
        repository: &str,
        digest: &str,
    ) -> Result<Vec<ImageSignature>, RegistryError> {
        let r = parse_repository(repository)?;
        let hex = hex_of(digest)?.to_string();
        let mut out = Vec::new();
        if let Some(m) = self
            .get_manifest_opt(&r, &format!("sha256-{hex}.sig"), false)
            .await?
        {
            let doc: ManifestDoc = serde_json::from_slice(&m.bytes)
                .map_err(|e| RegistryError::Malformed(format!("signature manifest: {e}")))?;
            if doc.layers.len() > MAX_SIGNATURE_LAYERS {
                return Err(RegistryError::TooMany {
                    what: "signature layers",
                    max: MAX_SIGNATURE_LAYERS,
                });
            }
            for l in doc.layers.iter().filter(|l| l.media_type == SIMPLE_SIGNING) {
                let payload = self.get_blob(&r, l, MAX_SIGNATURE_BLOB_BYTES).await?;
                out.push(ImageSignature::SimpleSigning {
                    payload,
                    annotations: l.annotations.clone(),
                });
            }
        }
        Ok(out)
    }

    /// The Sigstore bundles attached to `digest` as OCI 1.1 referrers (the referrers
    /// API, or the tag-schema fallback). `Ok(vec![])` when there are none.
    pub async fn find_referrer_signatures(
        &self,
        repository: &str,
        digest: &str,
    ) -> Result<Vec<ImageSignature>, RegistryError> {
        let r = parse_repository(repository)?;
        let hex = hex_of(digest)?.to_string();
        let mut out = Vec::new();
        for d in self.referrers(&r, digest, &hex).await? {
            if out.len() >= MAX_SIGNATURES {
                return Err(RegistryError::TooMany {
                    what: "signatures",
                    max: MAX_SIGNATURES,
                });
            }
            let m = self
                .get_manifest_opt(&r, &d.digest, false)
                .await?
                .ok_or_else(|| RegistryError::ManifestUnknown(format!("referrer {}", d.digest)))?;
            let doc: ManifestDoc = serde_json::from_slice(&m.bytes)
                .map_err(|e| RegistryError::Malformed(format!("referrer manifest: {e}")))?;
            // The index is the registry's word; the manifest itself must name the image.
            match &doc.subject {
                Some(s) if s.digest == digest => {}
                _ => {
                    return Err(RegistryError::Malformed(format!(
                        "referrer {} does not name {digest} as its subject",
                        d.digest
                    )))
                }
            }
            if doc.layers.len() > MAX_SIGNATURE_LAYERS {
                return Err(RegistryError::TooMany {
                    what: "referrer layers",
                    max: MAX_SIGNATURE_LAYERS,
                });
            }
            let bundle_layers: Vec<&Descriptor> = doc
                .layers
                .iter()
                .filter(|l| BUNDLE_ARTIFACT_TYPES.contains(&l.media_type.as_str()))
                .collect();
            if bundle_layers.is_empty() {
                return Err(RegistryError::Malformed(format!(
                    "referrer {} of a bundle artifact type has no bundle layer",
                    d.digest
                )));
            }
            for l in bundle_layers {
                out.push(ImageSignature::Bundle(
                    self.get_blob(&r, l, MAX_SIGNATURE_BLOB_BYTES).await?,
                ));
            }
        }
        if out.len() > MAX_SIGNATURES {
            return Err(RegistryError::TooMany {
                what: "signatures",
                max: MAX_SIGNATURES,
            });
        }
        Ok(out)
    }

    /// The bundle referrers of `digest` (descriptors filtered by artifact type).
    async fn referrers(
        &self,
        r: &Reference,
        digest: &str,
        hex: &str,
    ) -> Result<Vec<Descriptor>, RegistryError> {
        let mut url = format!("{}/referrers/{digest}", self.base(r));
        let mut h = HeaderMap::new();
        h.insert(ACCEPT, HeaderValue::from_static(OCI_INDEX));
        let what = format!("referrers of {}@{digest}", r.repository());
        let mut all: Vec<Descriptor> = Vec::new();
        let mut pages = 0;
        loop {
            pages += 1;
            let resp = self
                .send(
                    r,
                    Method::GET,
                    &url,
                    &h,
                    Body::Empty,
                    false,
                    Redirects::SameHost,
                )
                .await?;
            if resp.status() == StatusCode::NOT_FOUND && pages == 1 {
                // No referrers API: the tag schema (one index, no pages).
                let Some(m) = self
                    .get_manifest_opt(r, &format!("sha256-{hex}"), false)
                    .await?
                else {
                    return Ok(Vec::new());
                };
                if m.media_type != OCI_INDEX {
                    // A tag of that name that is not a referrers index.
                    return Ok(Vec::new());
                }
                all = serde_json::from_slice::<ManifestDoc>(&m.bytes)
                    .map_err(|e| RegistryError::Malformed(format!("{what}: {e}")))?
                    .manifests;
                break;
            }
            if !resp.status().is_success() {
                return Err(Self::http_error(resp, &what, r.registry()).await);
            }
            let next = next_link(resp.headers(), &url)?;
            let bytes = read_body(resp, MAX_MANIFEST_BYTES, &what, r.registry()).await?;
            let doc: ManifestDoc = serde_json::from_slice(&bytes)
                .map_err(|e| RegistryError::Malformed(format!("{what}: {e}")))?;
            all.extend(doc.manifests);
            if all.len() > MAX_REFERRERS {
                break;
            }
            match next {
                None => break,
                Some(_) if pages >= MAX_REFERRER_PAGES => {
                    return Err(RegistryError::TooMany {
                        what: "referrer pages",
                        max: MAX_REFERRER_PAGES,
                    })
                }
                Some(n) => url = n,
            }
        }
        if all.len() > MAX_REFERRERS {
            return Err(RegistryError::TooMany {
                what: "referrers",
                max: MAX_REFERRERS,
            });
        }
        let mut out = Vec::new();
        for d in all {
            let at = d.artifact_type.as_deref().unwrap_or_default();
            if BUNDLE_ARTIFACT_TYPES.contains(&at) {
                hex_of(&d.digest).map_err(|_| {
                    RegistryError::Malformed(format!(
                        "{what}: descriptor digest {:?}",
                        reference::clip(&d.digest)
                    ))
                })?;
                if d.size > len64(MAX_MANIFEST_BYTES) {
                    return Err(RegistryError::TooLarge {
                        what: format!("referrer {}", d.digest),
                        max: MAX_MANIFEST_BYTES,
                    });
                }
                out.push(d);
            }
        }
        Ok(out)
    }

    // ---- push side -------------------------------------------------------------

    /// Uploads a blob (monolithic: POST, then PUT with the digest) unless the registry
    /// has it; returns its digest.
    pub async fn push_blob(&self, repository: &str, bytes: &[u8]) -> Result<String, RegistryError> {
        let r = parse_repository(repository)?;
        let digest = sha256_digest(bytes);
        let base = self.base(&r);
        let what = format!("blob upload to {}", r.repository());
        let head = self
            .send(
                &r,
                Method::HEAD,
                &format!("{base}/blobs/{digest}"),
                &HeaderMap::new(),
                Body::Empty,
                true,
                Redirects::AnyHostNoAuth,
            )
            .await?;
        if head.status().is_success() {
            return Ok(digest);
        }
        let resp = self
            .send(
                &r,
                Method::POST,
                &format!("{base}/blobs/uploads/"),
                &HeaderMap::new(),
                Body::Empty,
                true,
                Redirects::SameHost,
            )
            .await?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(Self::http_error(resp, &what, r.registry()).await);
        }
        let loc = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| RegistryError::Malformed("upload without a Location".into()))?;
        let mut url = Url::parse(&base)
            .and_then(|b| b.join(loc))
            .map_err(|e| RegistryError::Malformed(format!("upload Location: {e}")))?;
        url.query_pairs_mut().append_pair("digest", &digest);
        let resp = self
            .send(
                &r,
                Method::PUT,
                url.as_str(),
                &HeaderMap::new(),
                Body::Bytes(bytes, "application/octet-stream"),
                true,
                Redirects::SameHost,
            )
            .await?;
        if resp.status() != StatusCode::CREATED {
            return Err(Self::http_error(resp, &what, r.registry()).await);
        }
        Ok(digest)
    }

    /// Stores a manifest under `reference` (a tag or its digest); returns its digest.
    pub async fn push_manifest(
        &self,
        repository: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<String, RegistryError> {
        let r = parse_repository(repository)?;
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(RegistryError::TooLarge {
                what: "manifest".into(),
                max: MAX_MANIFEST_BYTES,
            });
        }
        let digest = sha256_digest(bytes);
        let target = if reference.starts_with("sha256:") {
            if reference != digest {
                return Err(RegistryError::DigestMismatch {
                    what: "manifest to push".into(),
                    expected: reference.to_string(),
                    actual: digest,
                });
            }
            reference.to_string()
        } else {
            Reference::parse(&format!("{repository}:{reference}"))?;
            reference.to_string()
        };
        let what = format!("manifest push {}:{target}", r.repository());
        let url = format!("{}/manifests/{target}", self.base(&r));
        let resp = self
            .send(
                &r,
                Method::PUT,
                &url,
                &HeaderMap::new(),
                Body::Bytes(bytes, media_type),
                true,
                Redirects::SameHost,
            )
            .await?;
        if resp.status() != StatusCode::CREATED {
            return Err(Self::http_error(resp, &what, r.registry()).await);
        }
        if let Some(a) = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
        {
            if a != digest {
                return Err(RegistryError::DigestMismatch {
                    what,
                    expected: digest,
                    actual: reference::clip(a),
                });
            }
        }
        Ok(digest)
    }

    /// Stores a cosign simple-signing signature for `image_digest` as cosign does: an
    /// OCI manifest at tag `sha256-<hex>.sig` whose layers are the payloads (with the
    /// annotations), appended to the existing signatures there (an identical layer is
    /// not added twice). Returns the new `.sig` manifest's digest.
    pub async fn push_simple_signing(
        &self,
        repository: &str,
        image_digest: &str,
        payload: &[u8],
        annotations: &BTreeMap<String, String>,
    ) -> Result<String, RegistryError> {
        let r = parse_repository(repository)?;
        let hex = hex_of(image_digest)?.to_string();
        let tag = format!("sha256-{hex}.sig");
        let mut layers: Vec<Descriptor> = match self.get_manifest_opt(&r, &tag, true).await? {
            Some(m) => {
                let doc: ManifestDoc = serde_json::from_slice(&m.bytes)
                    .map_err(|e| RegistryError::Malformed(format!("signature manifest: {e}")))?;
                doc.layers
            }
            None => Vec::new(),
        };
        let layer_digest = self.push_blob(repository, payload).await?;
        let new = Descriptor {
            media_type: SIMPLE_SIGNING.into(),
            digest: layer_digest,
            size: len64(payload.len()),
            artifact_type: None,
            annotations: annotations.clone(),
        };
        if !layers.contains(&new) {
            layers.push(new);
        }
        if layers.len() > MAX_SIGNATURE_LAYERS {
            return Err(RegistryError::TooMany {
                what: "signature layers",
                max: MAX_SIGNATURE_LAYERS,
            });
        }
        // cosign's config: an image config whose rootfs lists the layers.
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "",
            "created": "0001-01-01T00:00:00Z",
            "history": [{"created": "0001-01-01T00:00:00Z"}],
            "os": "",
            "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.digest.clone()).collect::<Vec<_>>()},
            "config": {},
        }))
        .map_err(|e| RegistryError::Malformed(e.to_string()))?;
        let config_digest = self.push_blob(repository, &config).await?;
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "size": config.len(), "digest": config_digest},
            "layers": layers,
        }))
        .map_err(|e| RegistryError::Malformed(e.to_string()))?;
        self.push_manifest(repository, &tag, OCI_MANIFEST, &manifest)
            .await
    }

    /// Stores a Sigstore bundle for `image_digest` as an OCI 1.1 referrer (artifact
    /// type bundle v0.3, `subject` = the image manifest), and adds it to the
    /// tag-schema fallback index `sha256-<hex>` (registries without the referrers API,
    /// such as distribution 2.8, serve referrers only through it). Returns the
    /// referrer manifest's digest.
    pub async fn push_bundle(
        &self,
        repository: &str,
        image_digest: &str,
        bundle: &[u8],
    ) -> Result<String, RegistryError> {
        let r = parse_repository(repository)?;
        let hex = hex_of(image_digest)?.to_string();
        let image = self
            .get_manifest_opt(&r, image_digest, true)
            .await?
            .ok_or_else(|| {
                RegistryError::ManifestUnknown(format!("{}@{image_digest}", r.repository()))
            })?;
        let empty = b"{}";
        let empty_digest = self.push_blob(repository, empty).await?;
        let bundle_digest = self.push_blob(repository, bundle).await?;
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": BUNDLE_V0_3,
            "config": {"mediaType": OCI_EMPTY, "size": empty.len(), "digest": empty_digest},
            "layers": [{"mediaType": BUNDLE_V0_3, "size": bundle.len(), "digest": bundle_digest}],
            "subject": {"mediaType": image.media_type, "size": image.bytes.len(), "digest": image.digest},
        }))
        .map_err(|e| RegistryError::Malformed(e.to_string()))?;
        let digest = sha256_digest(&manifest);
        self.push_manifest(repository, &digest, OCI_MANIFEST, &manifest)
            .await?;
        // The fallback index.
        let tag = format!("sha256-{hex}");
        let mut manifests: Vec<Descriptor> = match self.get_manifest_opt(&r, &tag, true).await? {
            Some(m) if m.media_type == OCI_INDEX => {
                serde_json::from_slice::<ManifestDoc>(&m.bytes)
                    .map_err(|e| RegistryError::Malformed(format!("referrers index: {e}")))?
                    .manifests
            }
            _ => Vec::new(),
        };
        if !manifests.iter().any(|d| d.digest == digest) {
            manifests.push(Descriptor {
                media_type: OCI_MANIFEST.into(),
                digest: digest.clone(),
                size: len64(manifest.len()),
                artifact_type: Some(BUNDLE_V0_3.into()),
                annotations: BTreeMap::new(),
            });
        }
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": manifests,
        }))
        .map_err(|e| RegistryError::Malformed(e.to_string()))?;
        self.push_manifest(repository, &tag, OCI_INDEX, &index)
            .await?;
        Ok(digest)
    }

    /// Stores an [`ImageSignature`] the way it is found again by
    /// [`RegistryClient::find_signatures`].
    pub async fn push_signature(
        &self,
        repository: &str,
        image_digest: &str,
        sig: &ImageSignature,
    ) -> Result<String, RegistryError> {
        match sig {
            ImageSignature::SimpleSigning {
                payload,
                annotations,
            } => {
                self.push_simple_signing(repository, image_digest, payload, annotations)
                    .await
            }
            ImageSignature::Bundle(b) => self.push_bundle(repository, image_digest, b).await,
        }
    }
}

/// The `rel="next"` target of a `Link` header, resolved against `current`; it must
/// stay on the registry's origin (credentials are sent to it).
fn next_link(headers: &HeaderMap, current: &str) -> Result<Option<String>, RegistryError> {
    let bad = |why: &str| RegistryError::Malformed(format!("Link header: {why}"));
    for v in headers.get_all(reqwest::header::LINK) {
        let v = v.to_str().map_err(|_| bad("not ASCII"))?;
        if v.len() > MAX_CHALLENGE_LEN {
            return Err(bad("too long"));
        }
        for link in v.split(',') {
            let link = link.trim();
            let Some(rest) = link.strip_prefix('<') else {
                continue;
            };
            let Some((target, params)) = rest.split_once('>') else {
                return Err(bad("unterminated <"));
            };
            let is_next = params.split(';').any(|p| {
                let p = p.trim().replace(' ', "");
                p.eq_ignore_ascii_case("rel=\"next\"") || p.eq_ignore_ascii_case("rel=next")
            });
            if !is_next {
                continue;
            }
            let base = Url::parse(current).map_err(|e| bad(&e.to_string()))?;
            let next = base.join(target).map_err(|e| bad(&e.to_string()))?;
            let origin = |u: &Url| {
                (
                    u.scheme().to_string(),
                    u.host_str().map(str::to_string),
                    u.port_or_known_default(),
                )
            };
            if origin(&next) != origin(&base) {
                return Err(bad("next page on another host"));
            }
            return Ok(Some(next.to_string()));
        }
    }
    Ok(None)
}

fn len64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// Reads a body, refusing it as soon as it exceeds `max` (whatever the
/// `Content-Length` says, or without one).
async fn read_body(
    mut resp: reqwest::Response,
    max: usize,
    what: &str,
    host: &str,
) -> Result<Vec<u8>, RegistryError> {
    let too_large = || RegistryError::TooLarge {
        what: what.to_string(),
        max,
    };
    if resp.content_length().is_some_and(|l| l > len64(max)) {
        return Err(too_large());
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| RegistryClient::transport_error(host, e))?
    {
        if out.len() + chunk.len() > max {
            return Err(too_large());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A loopback "registry" answering by path with raw HTTP/1.1; counts the requests
    /// each path got.
    async fn fake_registry(
        routes: impl Fn(&str, u16) -> String + Send + Sync + 'static,
    ) -> (u16, std::sync::Arc<Mutex<Vec<String>>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
        let (seen2, routes) = (seen.clone(), std::sync::Arc::new(routes));
        tokio::spawn(async move {
            while let Ok((mut c, _)) = l.accept().await {
                let (seen, routes) = (seen2.clone(), routes.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match c.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&buf).to_string();
                    let path = head.split(' ').nth(1).unwrap_or("").to_string();
                    seen.lock().unwrap().push(path.clone());
                    let _ = c.write_all(routes(&path, port).as_bytes()).await;
                });
            }
        });
        (port, seen)
    }

    fn raw(status: &str, headers: &str, body: &str) -> String {
        format!(
            "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    }

    #[tokio::test]
    async fn finding09_ssrf_blob_redirect_and_token_realm_to_internal_addresses_refused() {
        const BLOB: &str = "hello";
        let (port, seen) = fake_registry(|path, port| {
            let to = |loc: String| raw("307 Temporary Redirect", &format!("Location: {loc}\r\n"), "");
            if path.contains("/blobs/") && path.contains("own") {
                to(format!("http://127.0.0.1:{port}/cdn"))
            } else if path.starts_with("/v2/named/blobs/") {
                // A host name that resolves to loopback.
                to(format!("http://localhost:{port}/cdn"))
            } else if path.starts_with("/v2/mapped/blobs/") {
                // Loopback written as IPv4-mapped IPv6.
                to(format!("http://[::ffff:127.0.0.1]:{port}/cdn"))
            } else if path == "/cdn" {
                raw("200 OK", "", BLOB)
            } else if path.starts_with("/token") {
                raw("200 OK", "", "{\"token\":\"t0k3n\"}")
            } else {
                raw(
                    "401 Unauthorized",
                    &format!(
                        "WWW-Authenticate: Bearer realm=\"http://[::ffff:127.0.0.1]:{port}/token\",service=\"x\"\r\n"
                    ),
                    "",
                )
            }
        })
        .await;
        let host = format!("127.0.0.1:{port}");
        let c = RegistryClient::new(&[RegistryConfig {
            host: host.clone(),
            insecure: true,
            ca_file: None,
            username: None,
            password_file: None,
            token_file: None,
        }])
        .unwrap();
        let d = Descriptor {
            media_type: String::new(),
            digest: sha256_digest(BLOB.as_bytes()),
            size: 5,
            artifact_type: None,
            annotations: BTreeMap::new(),
        };
        let r = |repo: &str| Reference::parse(&format!("{host}/{repo}:latest")).unwrap();
        // The registry's own host, another path: followed.
        assert_eq!(
            c.get_blob(&r("own"), &d, 1024).await.unwrap(),
            BLOB.as_bytes()
        );
        let cdn_hits = || seen.lock().unwrap().iter().filter(|p| *p == "/cdn").count();
        assert_eq!(cdn_hits(), 1);
        for repo in ["named", "mapped"] {
            let e = c.get_blob(&r(repo), &d, 1024).await.unwrap_err();
            assert_eq!(e.kind(), "BadRedirect", "{repo}: {e}");
            assert!(e.to_string().contains("internal address"), "{repo}: {e}");
        }
        assert_eq!(cdn_hits(), 1, "no request reached the internal address");

        // A token realm at an internal address other than the registry's: refused
        // before any request.
        let e = c.resolve(&r("app")).await.unwrap_err();
        assert_eq!(e.kind(), "Unauthorized", "{e}");
        assert!(e.to_string().contains("internal address"), "{e}");
        assert!(!seen.lock().unwrap().iter().any(|p| p.starts_with("/token")));
    }

    #[test]
    fn internal_realms_only_on_the_registrys_own_host() {
        let u = |s: &str| Url::parse(s).unwrap();
        assert!(own_host(
            &u("http://127.0.0.1:9/token"),
            &["127.0.0.1:5000"]
        ));
        assert!(!own_host(
            &u("http://127.0.0.1:9/token"),
            &["registry.example"]
        ));
        assert!(!own_host(&u("http://10.1.2.3/t"), &["10.1.2.4:5000"]));
        assert!(own_host(&u("http://[::1]:8/t"), &["[::1]:5000"]));
        assert!(own_host(&u("https://REG.example/t"), &["reg.example:443"]));
        assert!(!own_host(
            &u("https://auth.docker.io/token"),
            &["docker.io"]
        ));
        assert!(same_origin(&u("http://a:5000/v2/x"), "http://a:5000/v2/y"));
        assert!(!same_origin(&u("http://b:5000/v2/x"), "http://a:5000/v2/y"));
        assert!(!same_origin(&u("https://a/v2/x"), "http://a/v2/y"));
    }

    #[test]
    fn challenges_parse() {
        assert_eq!(
            parse_challenge(r#"Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull,push""#).unwrap(),
            Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("reg".into()),
                scope: Some("repository:a/b:pull,push".into()),
            }
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#).unwrap(),
            Challenge::Basic
        );
        assert_eq!(
            parse_challenge(r#"bearer realm=http://x/t, service="a\"b""#).unwrap(),
            Challenge::Bearer {
                realm: "http://x/t".into(),
                service: Some("a\"b".into()),
                scope: None,
            }
        );
        for bad in [
            "Bearer service=\"x\"",
            "Negotiate abc",
            "Bearer realm=\"unterminated",
            "Bearer realm",
        ] {
            assert_eq!(
                parse_challenge(bad).unwrap_err().kind(),
                "Malformed",
                "{bad}"
            );
        }
        assert_eq!(
            parse_challenge(&format!("Bearer realm=\"{}\"", "a".repeat(5000)))
                .unwrap_err()
                .kind(),
            "Malformed"
        );
    }

    #[test]
    fn config_is_strict_and_secrets_are_checked() {
        let c: RegistryConfig = toml_like(r#"{"host":"127.0.0.1:5000","insecure":true}"#);
        assert!(c.insecure && c.ca_file.is_none());
        assert!(serde_json::from_str::<RegistryConfig>(r#"{"host":"h","nope":1}"#).is_err());
        let dir = std::env::temp_dir().join(format!("oci-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pw = dir.join("pw");
        std::fs::write(&pw, "s3cret\n").unwrap();
        let mut c = RegistryConfig {
            host: "r.example".into(),
            insecure: false,
            ca_file: None,
            username: Some("u".into()),
            password_file: Some(pw.clone()),
            token_file: None,
        };
        let client = RegistryClient::new(std::slice::from_ref(&c)).unwrap();
        assert!(!format!("{client:?}").contains("s3cret"));
        c.token_file = Some(pw.clone());
        assert_eq!(
            RegistryClient::new(&[c.clone()]).unwrap_err().kind(),
            "RegistryConfig"
        );
        c.token_file = None;
        c.password_file = Some(dir.join("missing"));
        assert_eq!(
            RegistryClient::new(&[c.clone()]).unwrap_err().kind(),
            "RegistryConfig"
        );
        c.password_file = Some(pw);
        assert_eq!(
            RegistryClient::new(&[c.clone(), c.clone()])
                .unwrap_err()
                .kind(),
            "RegistryConfig"
        );
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, "not a pem").unwrap();
        let bad_ca = RegistryConfig {
            host: "r2".into(),
            ca_file: Some(ca),
            ..c
        };
        assert_eq!(
            RegistryClient::new(&[bad_ca]).unwrap_err().kind(),
            "RegistryConfig"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn toml_like(s: &str) -> RegistryConfig {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn registry_entries_embed_in_toml() {
        #[derive(Deserialize)]
        struct Outer {
            registry: Vec<RegistryConfig>,
        }
        let o: Outer = toml::from_str(
            r#"
[[registry]]
host = "127.0.0.1:5000"
insecure = true

[[registry]]
host = "ghcr.io"
ca_file = "/etc/provenant/ca.pem"
username = "bot"
password_file = "/run/secrets/ghcr"
"#,
        )
        .unwrap();
        assert_eq!(o.registry.len(), 2);
        assert!(o.registry[0].insecure);
        assert_eq!(o.registry[1].username.as_deref(), Some("bot"));
        assert!(!o.registry[1].insecure);
        let e = toml::from_str::<Outer>("[[registry]]\nhost = \"h\"\npassword = \"x\"\n");
        assert!(
            e.is_err(),
            "unknown fields are refused (no inline passwords)"
        );
        assert!(toml::from_str::<Outer>("[[registry]]\ninsecure = true\n").is_err());
    }

    /// Arbitrary challenge and Link header text never panics.
    #[test]
    fn arbitrary_headers_never_panic() {
        let alphabet: Vec<char> = "Bearer Basic realm=\"\\,;<>/:é€rel=next".chars().collect();
        let n = u64::try_from(alphabet.len()).unwrap();
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut step = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let len = step() % 48;
            let s: String = (0..len)
                .map(|_| alphabet[usize::try_from(step() % n).unwrap()])
                .collect();
            let _ = parse_challenge(&s);
            if let Ok(v) = HeaderValue::from_str(&s) {
                let mut h = HeaderMap::new();
                h.insert(reqwest::header::LINK, v);
                let _ = next_link(&h, "http://r.example/v2/a/referrers/x");
            }
        }
    }

    #[test]
    fn link_headers() {
        let cur = "http://r.example:5000/v2/a/referrers/sha256:00";
        let mut h = HeaderMap::new();
        assert_eq!(next_link(&h, cur).unwrap(), None);
        h.insert(
            reqwest::header::LINK,
            HeaderValue::from_static(r#"</v2/a/referrers/sha256:00?n=2>; rel="next""#),
        );
        assert_eq!(
            next_link(&h, cur).unwrap().as_deref(),
            Some("http://r.example:5000/v2/a/referrers/sha256:00?n=2")
        );
        h.insert(
            reqwest::header::LINK,
            HeaderValue::from_static(r#"<http://evil.example/x>; rel="next""#),
        );
        assert_eq!(next_link(&h, cur).unwrap_err().kind(), "Malformed");
        h.insert(
            reqwest::header::LINK,
            HeaderValue::from_static(r#"</x>; rel="prev""#),
        );
        assert_eq!(next_link(&h, cur).unwrap(), None);
    }
}
