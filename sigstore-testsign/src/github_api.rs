//! A local HTTP server that plays the GitHub attestations API
//! (`GET /repos/{owner}/{repo}/attestations/{digest}`), serving the bundles a test
//! published with [`GithubApi::publish`] as inline `bundle`s. Unknown digests get
//! 404, as GitHub answers. Tests point the control plane's `github_api` at
//! [`GithubApi::base`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// (owner/repo, subject digest) -> bundles.
type Published = HashMap<(String, String), Vec<Vec<u8>>>;

#[derive(Default)]
struct Inner {
    bundles: Mutex<Published>,
    hits: AtomicUsize,
    down: AtomicBool,
}

/// A running fake GitHub API; it serves until the runtime it was started on ends.
#[derive(Clone)]
pub struct GithubApi {
    inner: Arc<Inner>,
    base: String,
}

impl GithubApi {
    /// Starts on a free loopback port (needs a Tokio runtime).
    pub async fn start() -> std::io::Result<GithubApi> {
        let inner = Arc::new(Inner::default());
        let app = axum::Router::new()
            .route(
                "/repos/{owner}/{repo}/attestations/{digest}",
                axum::routing::get(page),
            )
            .with_state(inner.clone());
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", l.local_addr()?);
        tokio::spawn(async move { axum::serve(l, app).await });
        Ok(GithubApi { inner, base })
    }

    /// The API base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Publishes a bundle for `repo` (`owner/name`) under `digest` (`sha256:<hex>`).
    pub fn publish(&self, repo: &str, digest: &str, bundle: Vec<u8>) {
        self.inner
            .bundles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((repo.to_string(), digest.to_string()))
            .or_default()
            .push(bundle);
    }

    /// Requests served so far.
    pub fn hits(&self) -> usize {
        self.inner.hits.load(Ordering::SeqCst)
    }

    /// While down, every request gets 503.
    pub fn set_down(&self, down: bool) {
        self.inner.down.store(down, Ordering::SeqCst);
    }
}

async fn page(
    State(a): State<Arc<Inner>>,
    Path((owner, repo, digest)): Path<(String, String, String)>,
) -> Response {
    a.hits.fetch_add(1, Ordering::SeqCst);
    if a.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let bundles = a.bundles.lock().unwrap_or_else(|e| e.into_inner());
    match bundles.get(&(format!("{owner}/{repo}"), digest)) {
        None => (StatusCode::NOT_FOUND, "{\"message\":\"Not Found\"}").into_response(),
        Some(list) => {
            let items: Vec<String> = list
                .iter()
                .map(|b| {
                    format!(
                        "{{\"bundle\":{},\"repository_id\":1}}",
                        String::from_utf8_lossy(b)
                    )
                })
                .collect();
            (
                [("content-type", "application/json")],
                format!("{{\"attestations\":[{}]}}", items.join(",")),
            )
                .into_response()
        }
    }
}
