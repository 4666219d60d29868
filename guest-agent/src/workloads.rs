//! The workloads collector: every podman container (all states) with the manifest
//! digest the registry serves for its image, from podman's REST API over its unix
//! socket.
//!
//! Containers and images come from podman's Docker-compatible API through `bollard`.
//! That API has no per-container manifest digest, so the digest is chosen from the
//! image's `RepoDigests`: the one for the container's image repository. Where an
//! image holds several digests for that repository (the same image pulled under two
//! tags whose manifests differ), the container's own `ImageDigest` from podman's
//! libpod API decides; if it does not, the digest is left out rather than guessed.
//! Podman unreachable, erroring or too slow gives `unknown` with the reason, never
//! an empty list.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use bollard::query_parameters::ListContainersOptions;
use bollard::{ClientVersion, Docker};
use evidence::limits::{MAX_IMAGE_REF_LEN, MAX_TEXT_LEN, MAX_WORKLOADS};
use evidence::{CollectorState, Workload, Workloads};
use http_body_util::BodyExt;

use crate::ebpf::bounded_text;

/// Largest libpod container-inspect body read.
const MAX_INSPECT_BYTES: usize = 4 << 20;

/// The compat API version asked for: podman 4.3 speaks Docker API 1.41.
const API_VERSION: ClientVersion = ClientVersion {
    major_version: 1,
    minor_version: 41,
};

/// Why the container list could not be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkloadsError {
    /// No connection to podman's API socket.
    #[error("podman API at {socket} unreachable: {detail}")]
    Unreachable {
        /// The API socket's path.
        socket: String,
        /// What failed.
        detail: String,
    },
    /// The Docker-compatible API answered with an error.
    #[error("podman API error: {0}")]
    Api(String),
    /// No answer within the bound (the collection's timeout; zero when the client's
    /// own request timeout fired).
    #[error("podman API did not answer within {0:?}")]
    Timeout(Duration),
    /// More than `MAX_WORKLOADS` containers.
    #[error("more than {MAX_WORKLOADS} containers")]
    TooMany,
    /// The libpod container-inspect call failed or answered something unreadable.
    #[error("podman libpod API: {0}")]
    Libpod(String),
}

impl WorkloadsError {
    /// A stable name for the error (`PodmanUnreachable`, `PodmanTimeout`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            WorkloadsError::Unreachable { .. } => "PodmanUnreachable",
            WorkloadsError::Api(_) => "PodmanApi",
            WorkloadsError::Timeout(_) => "PodmanTimeout",
            WorkloadsError::TooMany => "TooManyWorkloads",
            WorkloadsError::Libpod(_) => "PodmanLibpod",
        }
    }
}

/// Where the collector finds podman.
#[derive(Debug, Clone)]
pub struct WorkloadsCollector {
    /// podman's API unix socket.
    pub socket: PathBuf,
    /// Bound on one whole collection.
    pub timeout: Duration,
}

impl WorkloadsCollector {
    /// A collector of podman at `socket`, one collection bounded by `timeout`.
    pub fn new(socket: PathBuf, timeout: Duration) -> WorkloadsCollector {
        WorkloadsCollector { socket, timeout }
    }

    /// Lists the containers. Never fails: a list that cannot be had is `unknown`.
    pub async fn collect(&self) -> Workloads {
        let r = match tokio::time::timeout(self.timeout, self.list()).await {
            Ok(r) => r,
            Err(_) => Err(WorkloadsError::Timeout(self.timeout)),
        };
        match r {
            Ok(items) => Workloads::full(items, ()),
            Err(e) => {
                tracing::warn!(kind = e.kind(), error = %e, "workloads not measured");
                Workloads {
                    state: CollectorState::Unknown,
                    reason: Some(bounded_text(&e.to_string(), MAX_TEXT_LEN)),
                    extra: (),
                    digest: None,
                    items: None,
                }
            }
        }
    }

    /// Every container, sorted by (name, id).
    pub async fn list(&self) -> Result<Vec<Workload>, WorkloadsError> {
        let socket = self.socket.display().to_string();
        let secs = self.timeout.as_secs().max(1);
        let docker = Docker::connect_with_unix(&socket, secs, &API_VERSION).map_err(|e| {
            WorkloadsError::Unreachable {
                socket: socket.clone(),
                detail: e.to_string(),
            }
        })?;
        let opts = ListContainersOptions {
            all: true,
            ..Default::default()
        };
        let containers = docker
            .list_containers(Some(opts))
            .await
            .map_err(|e| api_error(&socket, e))?;
        if containers.len() > MAX_WORKLOADS {
            return Err(WorkloadsError::TooMany);
        }
        let mut repo_digests: HashMap<String, Vec<String>> = HashMap::new();
        let mut out = Vec::with_capacity(containers.len());
        for c in containers {
            let id = c.id.unwrap_or_default();
            let image = c.image.unwrap_or_default();
            let image_id = c.image_id.unwrap_or_default();
            let name = c
                .names
                .as_ref()
                .and_then(|n| n.first())
                .map(|n| n.trim_start_matches('/').to_string())
                .unwrap_or_default();
            let state = c
                .state
                .map(|s| s.to_string())
                .unwrap_or_else(|| "unknown".into());
            if !repo_digests.contains_key(&image_id) && !image_id.is_empty() {
                let d = match docker.inspect_image(&image_id).await {
                    Ok(i) => i.repo_digests.unwrap_or_default(),
                    // Removed between the two calls (podman keeps the image of an
                    // existing container, so this is a race, not a hidden image).
                    Err(bollard::errors::Error::DockerResponseServerError {
                        status_code: 404,
                        ..
                    }) => Vec::new(),
                    Err(e) => return Err(api_error(&socket, e)),
                };
                repo_digests.insert(image_id.clone(), d);
            }
            let empty = Vec::new();
            let candidates = repo_digests.get(&image_id).unwrap_or(&empty);
            let image_digest = match choose_digest(&image, candidates) {
                Choice::One(d) => Some(d),
                Choice::None => None,
                Choice::Many(list) => {
                    let own = libpod_image_digest(&self.socket, &id).await?;
                    match own {
                        Some(d) if list.contains(&d) => Some(d),
                        _ => {
                            tracing::warn!(container = %id, image = %image, candidates = ?list,
                                "several registry digests for this image's repository and podman does not say which: reporting none");
                            None
                        }
                    }
                }
            };
            out.push(Workload {
                name: bounded_text(&name, MAX_TEXT_LEN),
                id: bounded_text(&id, MAX_TEXT_LEN),
                state: bounded_text(&state, MAX_TEXT_LEN),
                image: bounded_text(&image, MAX_IMAGE_REF_LEN),
                image_id: bounded_text(&image_id, MAX_TEXT_LEN),
                image_digest,
            });
        }
        out.sort();
        Ok(out)
    }
}

fn api_error(socket: &str, e: bollard::errors::Error) -> WorkloadsError {
    use bollard::errors::Error as E;
    match e {
        E::SocketNotFoundError(_) | E::HyperResponseError { .. } | E::IOError { .. } => {
            WorkloadsError::Unreachable {
                socket: socket.to_string(),
                detail: e.to_string(),
            }
        }
        E::HyperLegacyError { ref err } if err.is_connect() => WorkloadsError::Unreachable {
            socket: socket.to_string(),
            detail: e.to_string(),
        },
        E::RequestTimeoutError => WorkloadsError::Timeout(Duration::ZERO),
        other => WorkloadsError::Api(other.to_string()),
    }
}

/// What the image's repo digests say about one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// Exactly one digest (`sha256:..`): the reference's own, or the only repo digest
    /// for its repository.
    One(String),
    /// Several digests for the reference's repository: the container must say.
    Many(Vec<String>),
    /// No registry digest: an unparseable or `localhost/` reference, or none for its
    /// repository.
    None,
}

/// Whether `s` is `sha256:` and 64 lowercase hex digits: the project's one digest
/// grammar, [`signatures::oci::Sha256Digest`].
fn is_digest(s: &str) -> bool {
    signatures::oci::Sha256Digest::parse(s).is_ok()
}

/// The digest to report for a container created from `reference`, given its image's
/// `RepoDigests` (`repo@sha256:..`). A reference pinned by digest names it; otherwise
/// the entries for the reference's repository (both normalised by
/// [`signatures::oci::Reference`], the grammar the control plane judges by).
pub fn choose_digest(reference: &str, repo_digests: &[String]) -> Choice {
    let Some(repo) = repository(reference) else {
        return Choice::None;
    };
    // podman names images it built (or loaded) `localhost/..` and gives them a
    // digest of a manifest no registry serves: such an image has no registry digest.
    if repo.starts_with("localhost/") {
        return Choice::None;
    }
    if let Some((_, d)) = reference.rsplit_once('@') {
        if is_digest(d) {
            return Choice::One(d.to_string());
        }
    }
    let mut found: Vec<String> = repo_digests
        .iter()
        .filter_map(|e| e.rsplit_once('@'))
        .filter(|(r, d)| is_digest(d) && repository(r).as_deref() == Some(repo.as_str()))
        .map(|(_, d)| d.to_string())
        .collect();
    found.sort();
    found.dedup();
    match found.len() {
        0 => Choice::None,
        1 => Choice::One(found.remove(0)),
        _ => Choice::Many(found),
    }
}

/// The repository of an image reference, normalised as Docker does (`alpine:3` ->
/// `docker.io/library/alpine`, `127.0.0.1:5000/a/b:1` -> `127.0.0.1:5000/a/b`), by
/// [`signatures::oci::Reference`]. `None` for a reference that grammar refuses.
pub fn repository(reference: &str) -> Option<String> {
    signatures::oci::Reference::parse(reference)
        .ok()
        .map(|r| r.repository())
}

/// The container's `ImageDigest` from `GET /v4.0.0/libpod/containers/{id}/json`.
pub async fn libpod_image_digest(
    socket: &std::path::Path,
    id: &str,
) -> Result<Option<String>, WorkloadsError> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(WorkloadsError::Libpod(format!("bad container id {id:?}")));
    }
    let err = |e: &dyn std::fmt::Display| WorkloadsError::Libpod(e.to_string());
    let stream =
        tokio::net::UnixStream::connect(socket)
            .await
            .map_err(|e| WorkloadsError::Unreachable {
                socket: socket.display().to_string(),
                detail: e.to_string(),
            })?;
    let (mut send, conn) = hyper::client::conn::http1::handshake::<
        _,
        http_body_util::Empty<hyper::body::Bytes>,
    >(hyper_util::rt::TokioIo::new(stream))
    .await
    .map_err(|e| err(&e))?;
    let driver = tokio::spawn(conn);
    let req = hyper::Request::get(format!("/v4.0.0/libpod/containers/{id}/json"))
        .header("host", "podman")
        .body(http_body_util::Empty::new())
        .map_err(|e| err(&e))?;
    let resp = send.send_request(req).await.map_err(|e| err(&e))?;
    let status = resp.status();
    let body = http_body_util::Limited::new(resp.into_body(), MAX_INSPECT_BYTES)
        .collect()
        .await
        .map_err(|e| err(&*e))?
        .to_bytes();
    driver.abort();
    if !status.is_success() {
        return Err(WorkloadsError::Libpod(format!(
            "container {id}: HTTP {status}"
        )));
    }
    let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| err(&e))?;
    Ok(v.get("ImageDigest")
        .and_then(|d| d.as_str())
        .filter(|d| is_digest(d))
        .map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn repository_normalisation() {
        for (r, want) in [
            ("alpine", "docker.io/library/alpine"),
            ("alpine:3.19", "docker.io/library/alpine"),
            ("library/alpine", "docker.io/library/alpine"),
            ("docker.io/alpine", "docker.io/library/alpine"),
            (
                "index.docker.io/library/alpine:1",
                "docker.io/library/alpine",
            ),
            ("ghcr.io/org/app:v1", "ghcr.io/org/app"),
            ("127.0.0.1:5000/smoke/app:1", "127.0.0.1:5000/smoke/app"),
            ("127.0.0.1:5000/smoke/app", "127.0.0.1:5000/smoke/app"),
            ("localhost/app:1", "localhost/app"),
            ("org/app", "docker.io/org/app"),
            (&format!("quay.io/a/b:t@{A}"), "quay.io/a/b"),
        ] {
            assert_eq!(repository(r).as_deref(), Some(want), "{r}");
        }
    }

    // Issue 11: the agent's own reference parser (`repository`/`normalise_repo`) was
    // replaced by `signatures::oci::Reference`. The old functions are kept here, in
    // the test only, to pin every divergence and the decision on it.
    /// The repository of an image reference, normalised: `alpine:3` ->
    /// `docker.io/library/alpine`, `127.0.0.1:5000/a/b:1` -> `127.0.0.1:5000/a/b`.
    fn old_repository(reference: &str) -> String {
        let r = reference.split('@').next().unwrap_or(reference);
        let last_slash = r.rfind('/').map_or(0, |i| i + 1);
        let r = match r[last_slash..].find(':') {
            Some(i) => &r[..last_slash + i],
            None => r,
        };
        old_normalise_repo(r)
    }

    /// Docker's name normalisation: no registry -> `docker.io`, single-component
    /// docker.io names -> `library/`, `index.docker.io` -> `docker.io`.
    fn old_normalise_repo(r: &str) -> String {
        let (registry, path) = match r.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first, rest)
            }
            _ => ("docker.io", r),
        };
        let registry = if registry == "index.docker.io" || registry == "registry-1.docker.io" {
            "docker.io"
        } else {
            registry
        };
        if registry == "docker.io" && !path.contains('/') {
            format!("docker.io/library/{path}")
        } else {
            format!("{registry}/{path}")
        }
    }

    #[test]
    fn repository_divergences_from_the_old_parser_are_decided() {
        // Same answer on everything podman reports and the usual spellings.
        for r in [
            "alpine",
            "alpine:3.19",
            "library/alpine",
            "docker.io/alpine",
            "index.docker.io/library/alpine:1",
            "ghcr.io/org/app:v1",
            "127.0.0.1:5000/smoke/app:1",
            "localhost/app:1",
            "org/app",
            "[::1]:5000/a/b:t",
        ] {
            assert_eq!(repository(r), Some(old_repository(r)), "{r}");
        }
        // Decided differences:
        // - `registry-1.docker.io` (Docker Hub's API host) was folded into
        //   `docker.io`; podman never reports it in RepoDigests, and the control plane
        //   judges by `Reference`, which keeps it: one grammar on both sides.
        assert_eq!(
            old_repository("registry-1.docker.io/library/a"),
            "docker.io/library/a"
        );
        assert_eq!(
            repository("registry-1.docker.io/library/a").as_deref(),
            Some("registry-1.docker.io/library/a")
        );
        // - references outside the grammar (uppercase path, empty tag, spaces) had a
        //   repository cut out of them; now they have none, so no digest is reported
        //   for them and the control plane shows the workload as unpinned.
        for r in ["Alpine", "alpine:", " alpine", ""] {
            assert!(repository(r).is_none(), "{r:?} -> {:?}", old_repository(r));
        }
        assert_eq!(
            choose_digest("Alpine", &[format!("docker.io/library/alpine@{A}")]),
            Choice::None
        );
    }

    #[test]
    fn digest_choice() {
        let rd = vec![
            format!("127.0.0.1:5000/smoke/app@{A}"),
            format!("127.0.0.1:5000/other/app@{B}"),
        ];
        assert_eq!(
            choose_digest("127.0.0.1:5000/smoke/app:1", &rd),
            Choice::One(A.into())
        );
        assert_eq!(
            choose_digest("127.0.0.1:5000/other/app:latest", &rd),
            Choice::One(B.into())
        );
        // A reference pinned by digest names it, whatever the image says.
        assert_eq!(
            choose_digest(&format!("127.0.0.1:5000/smoke/app@{B}"), &rd),
            Choice::One(B.into())
        );
        // Another repository's digest is never borrowed.
        assert_eq!(
            choose_digest("127.0.0.1:5000/third/app:1", &rd),
            Choice::None
        );
        assert_eq!(choose_digest("localhost/built:1", &[]), Choice::None);
        // podman's digest of a locally built image is served by no registry.
        let local = vec![format!("localhost/built@{A}")];
        assert_eq!(choose_digest("localhost/built:1", &local), Choice::None);
        assert_eq!(
            choose_digest(&format!("localhost/built@{A}"), &local),
            Choice::None
        );
        // A registry on localhost with a port is a registry.
        let port = vec![format!("localhost:5000/app@{A}")];
        assert_eq!(
            choose_digest("localhost:5000/app:1", &port),
            Choice::One(A.into())
        );
        // docker.io names match across spellings.
        let hub = vec![format!("docker.io/library/alpine@{A}")];
        assert_eq!(choose_digest("alpine:3", &hub), Choice::One(A.into()));
        // Two digests for one repository: the container must decide.
        let two = vec![
            format!("127.0.0.1:5000/smoke/app@{B}"),
            format!("127.0.0.1:5000/smoke/app@{A}"),
            format!("127.0.0.1:5000/smoke/app@{A}"),
        ];
        assert_eq!(
            choose_digest("127.0.0.1:5000/smoke/app:2", &two),
            Choice::Many(vec![A.into(), B.into()])
        );
        // Garbage entries are ignored.
        let bad = vec![
            "127.0.0.1:5000/smoke/app@sha256:zz".to_string(),
            "no-at-sign".into(),
        ];
        assert_eq!(
            choose_digest("127.0.0.1:5000/smoke/app:1", &bad),
            Choice::None
        );
        assert!(is_digest(A));
        assert!(!is_digest("sha256:AA"));
    }

    #[tokio::test]
    async fn missing_socket_is_unknown_with_a_reason() {
        let c = WorkloadsCollector::new("/nonexistent/podman.sock".into(), Duration::from_secs(2));
        let w = c.collect().await;
        assert_eq!(w.state, CollectorState::Unknown);
        assert!(w.items.is_none() && w.digest.is_none());
        assert!(w.reason.unwrap().contains("unreachable"));
    }

    #[tokio::test]
    async fn a_socket_that_never_answers_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("podman.sock");
        let _l = tokio::net::UnixListener::bind(&sock).unwrap();
        let c = WorkloadsCollector::new(sock, Duration::from_millis(300));
        let w = c.collect().await;
        assert_eq!(w.state, CollectorState::Unknown);
        assert!(
            w.reason.unwrap().contains("did not answer"),
            "timeout reason"
        );
    }

    #[tokio::test]
    async fn a_socket_that_serves_garbage_is_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("podman.sock");
        let l = tokio::net::UnixListener::bind(&sock).unwrap();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 9\r\n\r\n{garbage}")
                    .await;
            }
        });
        let c = WorkloadsCollector::new(sock, Duration::from_secs(5));
        let w = c.collect().await;
        assert_eq!(w.state, CollectorState::Unknown);
        assert!(w.reason.is_some());
    }
}
