//! The GitHub attestations client against a local server that plays the API and
//! serves real bundles (signatures/tests/data): paging, inline and snappy `bundle_url`
//! bundles, the token's reach, and each failure's typed error.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cp_verifier::attest::provenance::github::{GithubClient, GithubError, MAX_PAGES};

fn bundle(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/../signatures/tests/data/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

const DIGEST: &str = "sha256:7ea0b5e8e53f6ae4b7e4c4c84c4c6eb33c2f1eb2d1c2f3e9a3b8d0c1d2e3f4a5";

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Normal,
    NotFound,
    RateLimited,
    ServerError,
    OffOriginLink,
    EndlessLinks,
    Garbage,
    BadSnappy,
    Huge,
}

struct Api {
    mode: Mutex<Mode>,
    base: Mutex<String>,
    /// Authorization headers seen on API pages and on blobs.
    page_auth: Mutex<Vec<Option<String>>>,
    blob_auth: Mutex<Vec<Option<String>>>,
    pages: AtomicUsize,
}

type S = State<Arc<Api>>;

fn auth(h: &HeaderMap) -> Option<String> {
    h.get("authorization")
        .map(|v| v.to_str().unwrap().to_string())
}

async fn page(
    State(a): S,
    Path((owner, repo, digest)): Path<(String, String, String)>,
    Query(q): Query<std::collections::HashMap<String, String>>,
    h: HeaderMap,
) -> Response {
    a.page_auth.lock().unwrap().push(auth(&h));
    a.pages.fetch_add(1, Ordering::SeqCst);
    assert_eq!((owner.as_str(), repo.as_str()), ("acme", "firmware"));
    assert_eq!(digest, DIGEST);
    assert_eq!(q.get("per_page").map(String::as_str), Some("100"));
    let base = a.base.lock().unwrap().clone();
    let mode = *a.mode.lock().unwrap();
    match mode {
        Mode::NotFound => {
            return (StatusCode::NOT_FOUND, "{\"message\":\"Not Found\"}").into_response()
        }
        Mode::RateLimited => {
            return (
                StatusCode::FORBIDDEN,
                [
                    ("x-ratelimit-remaining", "0"),
                    ("x-ratelimit-reset", "1750000000"),
                ],
                "{\"message\":\"API rate limit exceeded\"}",
            )
                .into_response()
        }
        Mode::ServerError => return StatusCode::BAD_GATEWAY.into_response(),
        Mode::Garbage => return "{\"attestations\": [".into_response(),
        Mode::Huge => {
            return vec![b' '; cp_verifier::attest::provenance::github::MAX_PAGE_BYTES + 1]
                .into_response()
        }
        _ => {}
    }
    let next = format!("{base}/repos/acme/firmware/attestations/{DIGEST}?per_page=100&after=c1");
    match (mode, q.get("after").map(String::as_str)) {
        (Mode::OffOriginLink, _) => (
            [("link", "<http://evil.example/steal?after=c1>; rel=\"next\"".to_string())],
            "{\"attestations\":[]}",
        )
            .into_response(),
        (Mode::EndlessLinks, _) => (
            [("link", format!("<{next}>; rel=\"next\""))],
            "{\"attestations\":[]}",
        )
            .into_response(),
        (_, None) => (
            [(
                "link",
                format!("<{next}>; rel=\"next\", <{base}/first>; rel=\"first\""),
            )],
            format!(
                "{{\"attestations\":[{{\"bundle\":{},\"repository_id\":1}},{{\"bundle\":null,\"bundle_url\":\"{base}/blob/1\",\"repository_id\":1}}]}}",
                bundle("reusable-workflow-attestation.sigstore.json").trim()
            ),
        )
            .into_response(),
        (_, Some(_)) => format!(
            "{{\"attestations\":[{{\"bundle_url\":\"{base}/blob/2\",\"repository_id\":1}}]}}"
        )
        .into_response(),
    }
}

async fn blob(State(a): S, Path(n): Path<u32>, h: HeaderMap) -> Response {
    a.blob_auth.lock().unwrap().push(auth(&h));
    if *a.mode.lock().unwrap() == Mode::BadSnappy {
        return b"\xff\xff\xff\xff not snappy".to_vec().into_response();
    }
    let name = if n == 1 {
        "sigstore-js-2.1.0-bundle.json"
    } else {
        "reusable-workflow-attestation.sigstore.json"
    };
    snap::raw::Encoder::new()
        .compress_vec(bundle(name).as_bytes())
        .unwrap()
        .into_response()
}

async fn serve() -> (Arc<Api>, String) {
    let a = Arc::new(Api {
        mode: Mutex::new(Mode::Normal),
        base: Mutex::new(String::new()),
        page_auth: Mutex::default(),
        blob_auth: Mutex::default(),
        pages: AtomicUsize::new(0),
    });
    let app = axum::Router::new()
        .route("/repos/{owner}/{repo}/attestations/{digest}", get(page))
        .route("/blob/{n}", get(blob))
        .with_state(a.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    *a.base.lock().unwrap() = base.clone();
    tokio::spawn(async move { axum::serve(l, app).await });
    (a, base)
}

fn client(base: &str, token: Option<&str>) -> GithubClient {
    GithubClient::new(base, token, Duration::from_secs(5)).unwrap()
}

fn json(b: &[u8]) -> serde_json::Value {
    serde_json::from_slice(b).unwrap()
}

#[tokio::test]
async fn pages_inline_and_compressed_bundles_and_the_tokens_reach() {
    let (api, base) = serve().await;
    let found = client(&base, Some("ghp_test"))
        .attestations("acme/firmware", DIGEST)
        .await
        .unwrap();
    assert_eq!(found.len(), 3);
    // The inline bundle is passed on byte for byte.
    assert_eq!(
        found[0].bundle,
        bundle("reusable-workflow-attestation.sigstore.json")
            .trim()
            .as_bytes()
    );
    assert_eq!(
        json(&found[1].bundle),
        json(bundle("sigstore-js-2.1.0-bundle.json").as_bytes())
    );
    assert!(found[1].source.ends_with("/blob/1"));
    assert_eq!(
        json(&found[2].bundle),
        json(bundle("reusable-workflow-attestation.sigstore.json").as_bytes())
    );
    assert_eq!(api.pages.load(Ordering::SeqCst), 2);
    // The token goes to the API, never to bundle_url hosts.
    assert_eq!(
        *api.page_auth.lock().unwrap(),
        vec![Some("Bearer ghp_test".to_string()); 2]
    );
    assert_eq!(*api.blob_auth.lock().unwrap(), vec![None, None]);
    // Without a token, none is sent.
    client(&base, None)
        .attestations("acme/firmware", DIGEST)
        .await
        .unwrap();
    assert_eq!(api.page_auth.lock().unwrap()[2], None);
}

#[tokio::test]
async fn each_failure_has_its_typed_error() {
    let (api, base) = serve().await;
    let c = client(&base, Some("ghp_test"));
    let run = |m: Mode| {
        *api.mode.lock().unwrap() = m;
        c.attestations("acme/firmware", DIGEST)
    };
    assert_eq!(run(Mode::NotFound).await.unwrap(), vec![]);
    assert!(matches!(
        run(Mode::RateLimited).await.unwrap_err(),
        GithubError::RateLimited {
            reset_at: Some(1_750_000_000),
            ..
        }
    ));
    let e = run(Mode::ServerError).await.unwrap_err();
    assert!(matches!(e, GithubError::Status { status: 502, .. }), "{e}");
    let e = run(Mode::Garbage).await.unwrap_err();
    assert_eq!(e.kind(), "GithubMalformed", "{e}");
    let before = api.page_auth.lock().unwrap().len();
    let e = run(Mode::OffOriginLink).await.unwrap_err();
    assert!(e.to_string().contains("off the API's origin"), "{e}");
    assert_eq!(
        api.page_auth.lock().unwrap().len(),
        before + 1,
        "the link was not followed"
    );
    let before = api.pages.load(Ordering::SeqCst);
    assert_eq!(
        run(Mode::EndlessLinks).await.unwrap_err(),
        GithubError::TooManyPages
    );
    assert_eq!(api.pages.load(Ordering::SeqCst) - before, MAX_PAGES);
    let e = run(Mode::Huge).await.unwrap_err();
    assert_eq!(e.kind(), "GithubTooLarge", "{e}");
    let e = run(Mode::BadSnappy).await.unwrap_err();
    assert!(e.to_string().contains("not snappy"), "{e}");
}

#[tokio::test]
async fn an_unanswering_or_absent_server_is_typed_not_hung() {
    // Accepts connections, never answers.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    let c = GithubClient::new(&base, None, Duration::from_millis(300)).unwrap();
    let e = c.attestations("acme/firmware", DIGEST).await.unwrap_err();
    assert!(matches!(e, GithubError::Timeout { .. }), "{e}");

    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    let e = client(&closed, None)
        .attestations("acme/firmware", DIGEST)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "GithubUnreachable", "{e}");
}

/// A fake API whose attestation names a `bundle_url` at `target(port)`; counts blob hits.
async fn api_with_bundle_url(target: fn(u16) -> String) -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let h = hits.clone();
    let app = axum::Router::new()
        .route(
            "/repos/{owner}/{repo}/attestations/{digest}",
            get(move || async move {
                format!(
                    "{{\"attestations\":[{{\"bundle_url\":\"{}\",\"repository_id\":1}}]}}",
                    target(port)
                )
            }),
        )
        .route(
            "/blob",
            get(move || async move {
                h.fetch_add(1, Ordering::SeqCst);
                snap::raw::Encoder::new().compress_vec(b"{}").unwrap()
            }),
        );
    tokio::spawn(async move { axum::serve(l, app).await });
    (format!("http://127.0.0.1:{port}"), hits)
}

#[tokio::test]
async fn finding09_ssrf_bundle_url_to_internal_addresses_refused() {
    // The API's own host: fetched.
    let (base, hits) = api_with_bundle_url(|p| format!("http://127.0.0.1:{p}/blob")).await;
    client(&base, None)
        .attestations("acme/firmware", DIGEST)
        .await
        .unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    // Another host that is (or resolves to) an internal address: refused unfetched.
    let targets: [fn(u16) -> String; 3] = [
        |p| format!("http://localhost:{p}/blob"),
        |p| format!("http://[::ffff:127.0.0.1]:{p}/blob"),
        |p| format!("http://[::1]:{p}/blob"),
    ];
    for target in targets {
        let (base, hits) = api_with_bundle_url(target).await;
        let e = client(&base, None)
            .attestations("acme/firmware", DIGEST)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("bundle_url refused"), "{e}");
        assert!(e.to_string().contains("internal address"), "{e}");
        assert_eq!(hits.load(Ordering::SeqCst), 0);
    }
}
