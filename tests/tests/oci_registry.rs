//! The OCI registry client (`signatures::oci`) against Debian's real
//! `docker-registry` 2.8 (plain, token-authenticated, TLS with a test CA) and against
//! a fake registry serving garbage, huge, wrong-digest and redirecting answers.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use provenant_tests::oci_servers::{SecuredRegistry, Served, TestTls, TokenServer};
use provenant_tests::registry::Registry;
use sha2::{Digest, Sha256};
use signatures::image::ImageSignature;
use signatures::oci::{
    Reference, RegistryClient, RegistryConfig, RegistryError, DOCKER_MANIFEST, OCI_MANIFEST,
    SIMPLE_SIGNING,
};

fn sha(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

fn cfg(host: &str) -> RegistryConfig {
    RegistryConfig {
        host: host.to_string(),
        insecure: true,
        ca_file: None,
        username: None,
        password_file: None,
        token_file: None,
    }
}

/// Pushes a tiny image (config + one layer) under `tag`; returns its manifest digest.
async fn push_image(c: &RegistryClient, repo: &str, tag: &str, layer: &[u8]) -> String {
    let layer_digest = c.push_blob(repo, layer).await.expect("push layer");
    assert_eq!(layer_digest, sha(layer));
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "config": {},
    }))
    .unwrap();
    let config_digest = c.push_blob(repo, &config).await.expect("push config");
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": config.len(), "digest": config_digest},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "size": layer.len(), "digest": layer_digest}],
    }))
    .unwrap();
    let d = c
        .push_manifest(repo, tag, OCI_MANIFEST, &manifest)
        .await
        .expect("push manifest");
    assert_eq!(d, sha(&manifest));
    d
}

fn simple_signing(repo: &str, digest: &str, n: u32) -> ImageSignature {
    let payload = serde_json::to_vec(&serde_json::json!({
        "critical": {
            "identity": {"docker-reference": repo},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature",
        },
        "optional": {"n": n},
    }))
    .unwrap();
    let mut annotations = BTreeMap::new();
    annotations.insert(
        "dev.cosignproject.cosign/signature".to_string(),
        format!("MEUCIQD{n}fakebase64signature=="),
    );
    ImageSignature::SimpleSigning {
        payload,
        annotations,
    }
}

#[tokio::test]
async fn push_resolve_sign_and_find_on_a_real_registry() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::start(dir.path(), dir.path());
    let c = RegistryClient::new(&[cfg(&reg.host)]).unwrap();
    let repo = format!("{}/provenant/app", reg.host);

    let d = push_image(&c, &repo, "v1", b"layer one").await;
    let other = push_image(&c, &repo, "v2", b"layer two").await;
    assert_ne!(d, other);

    // Resolve by tag and by digest; the repository is what the image policy takes.
    let r = Reference::parse(&format!("{repo}:v1")).unwrap();
    assert_eq!(c.resolve(&r).await.unwrap(), (repo.clone(), d.clone()));
    let r = Reference::parse(&format!("{repo}@{d}")).unwrap();
    assert_eq!(c.resolve(&r).await.unwrap(), (repo.clone(), d.clone()));
    // No tag means `latest`, which does not exist; an unknown digest neither.
    let e = c
        .resolve(&Reference::parse(&repo).unwrap())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "ManifestUnknown", "{e}");
    let missing = format!("sha256:{}", "0".repeat(64));
    let e = c
        .resolve(&Reference::parse(&format!("{repo}@{missing}")).unwrap())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "ManifestUnknown", "{e}");

    // A Docker v2 manifest resolves too.
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let cd = c.push_blob(&repo, config).await.unwrap();
    let docker = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": config.len(), "digest": cd},
        "layers": [],
    }))
    .unwrap();
    let dd = c
        .push_manifest(&repo, "docker", DOCKER_MANIFEST, &docker)
        .await
        .unwrap();
    let r = Reference::parse(&format!("{repo}:docker")).unwrap();
    assert_eq!(c.resolve(&r).await.unwrap().1, dd);

    // Unsigned: the registry says there is nothing.
    assert_eq!(c.find_signatures(&repo, &d).await.unwrap(), vec![]);

    // Two cosign signatures (the second appended to the first's .sig manifest), the
    // first pushed twice (not duplicated), then two bundle referrers.
    let s1 = simple_signing(&repo, &d, 1);
    let s2 = simple_signing(&repo, &d, 2);
    c.push_signature(&repo, &d, &s1).await.unwrap();
    c.push_signature(&repo, &d, &s2).await.unwrap();
    c.push_signature(&repo, &d, &s1).await.unwrap();
    assert_eq!(
        c.find_signatures(&repo, &d).await.unwrap(),
        vec![s1.clone(), s2.clone()]
    );
    // Stored as cosign stores it: tag sha256-<hex>.sig, simple-signing layers.
    let sig_ref = Reference::parse(&format!("{repo}:sha256-{}.sig", &d[7..])).unwrap();
    let m = c.get_manifest(&sig_ref).await.unwrap();
    let m: serde_json::Value = serde_json::from_slice(&m.bytes).unwrap();
    assert_eq!(m["layers"][0]["mediaType"], SIMPLE_SIGNING);
    assert_eq!(
        m["layers"][1]["annotations"]["dev.cosignproject.cosign/signature"],
        "MEUCIQD2fakebase64signature=="
    );

    let bundle1 = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../signatures/tests/data/sigstore-js-2.1.0-bundle-v0.1.json"
    ))
    .unwrap();
    let b1 = ImageSignature::Bundle(bundle1);
    let b2 = ImageSignature::Bundle(
        br#"{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","n":2}"#.to_vec(),
    );
    let r1 = c.push_signature(&repo, &d, &b1).await.unwrap();
    let r2 = c.push_signature(&repo, &d, &b2).await.unwrap();
    assert_ne!(r1, r2);
    assert_eq!(
        c.find_signatures(&repo, &d).await.unwrap(),
        vec![s1.clone(), s2.clone(), b1.clone(), b2.clone()]
    );
    // The referrer names the image as its subject.
    let rm = c
        .get_manifest(&Reference::parse(&format!("{repo}@{r1}")).unwrap())
        .await
        .unwrap();
    let rm: serde_json::Value = serde_json::from_slice(&rm.bytes).unwrap();
    assert_eq!(rm["subject"]["digest"], d.as_str());
    assert_eq!(
        rm["artifactType"],
        "application/vnd.dev.sigstore.bundle.v0.3+json"
    );

    // The other image stays unsigned; a bad digest is refused before asking.
    assert_eq!(c.find_signatures(&repo, &other).await.unwrap(), vec![]);
    let e = c.find_signatures(&repo, "sha256:abc").await.unwrap_err();
    assert_eq!(e.kind(), "InvalidReference");
    let e = c
        .find_signatures(&format!("{repo}:v1"), &d)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "InvalidReference");
}

#[tokio::test]
async fn stopped_registry_is_unreachable_not_unsigned() {
    let dir = tempfile::tempdir().unwrap();
    let mut reg = Registry::start(dir.path(), dir.path());
    let c = RegistryClient::new(&[cfg(&reg.host)]).unwrap();
    let repo = format!("{}/app", reg.host);
    let d = push_image(&c, &repo, "v1", b"x").await;
    assert_eq!(c.find_signatures(&repo, &d).await.unwrap(), vec![]);
    reg.stop();
    let e = c.find_signatures(&repo, &d).await.unwrap_err();
    assert_eq!(e.kind(), "Unreachable", "{e}");
    let e = c
        .resolve(&Reference::parse(&format!("{repo}:v1")).unwrap())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "Unreachable", "{e}");
    reg.restart();
    assert_eq!(c.find_signatures(&repo, &d).await.unwrap(), vec![]);
}

#[tokio::test]
async fn token_auth_against_a_real_registry() {
    let dir = tempfile::tempdir().unwrap();
    let token = TokenServer::start(dir.path(), "pusher", "correct horse");
    let reg = SecuredRegistry::start(dir.path(), "token-registry", Some(&token), None);
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "correct horse\n").unwrap();
    let creds = RegistryConfig {
        username: Some("pusher".into()),
        password_file: Some(pw.clone()),
        ..cfg(&reg.host)
    };
    let c = RegistryClient::new(std::slice::from_ref(&creds)).unwrap();
    let repo = format!("{}/signed/app", reg.host);
    let d = push_image(&c, &repo, "v1", b"token layer").await;
    let s = simple_signing(&repo, &d, 1);
    c.push_signature(&repo, &d, &s).await.unwrap();

    // Anonymous token flow: pull is granted, push is not.
    let anon = RegistryClient::new(&[cfg(&reg.host)]).unwrap();
    let before = token.issued();
    assert_eq!(
        anon.find_signatures(&repo, &d).await.unwrap(),
        vec![s.clone()]
    );
    let after_first = token.issued();
    assert!(after_first > before, "a token was fetched");
    // Cached until expiry: asking again fetches none.
    assert_eq!(
        anon.find_signatures(&repo, &d).await.unwrap(),
        vec![s.clone()]
    );
    assert_eq!(token.issued(), after_first, "the token is cached");
    // A token announced as already expired (within the refresh margin) is not reused.
    token.set_announced_lifetime(5);
    let short = RegistryClient::new(&[cfg(&reg.host)]).unwrap();
    short.find_signatures(&repo, &d).await.unwrap();
    let n = token.issued();
    short.find_signatures(&repo, &d).await.unwrap();
    assert!(token.issued() > n, "an expired token is fetched again");
    token.set_announced_lifetime(300);

    let e = anon.push_blob(&repo, b"nope").await.unwrap_err();
    assert_eq!(e.kind(), "Unauthorized", "{e}");

    // Wrong password: the token server refuses.
    std::fs::write(&pw, "wrong").unwrap();
    let bad = RegistryClient::new(&[creds]).unwrap();
    let e = bad.find_signatures(&repo, &d).await.unwrap_err();
    assert_eq!(e.kind(), "Unauthorized", "{e}");

    // A static bearer token the registry does not accept.
    let tf = dir.path().join("token");
    std::fs::write(&tf, "not-a-jwt").unwrap();
    let bearer = RegistryClient::new(&[RegistryConfig {
        token_file: Some(tf),
        ..cfg(&reg.host)
    }])
    .unwrap();
    let e = bearer.find_signatures(&repo, &d).await.unwrap_err();
    assert_eq!(e.kind(), "Unauthorized", "{e}");
}

#[tokio::test]
async fn tls_with_a_test_ca() {
    let dir = tempfile::tempdir().unwrap();
    let tls = TestTls::generate(dir.path());
    let reg = SecuredRegistry::start(dir.path(), "tls-registry", None, Some(&tls));
    let repo = format!("{}/tls/app", reg.host);
    let c = RegistryClient::new(&[RegistryConfig {
        insecure: false,
        ca_file: Some(tls.ca_file.clone()),
        ..cfg(&reg.host)
    }])
    .unwrap();
    let d = push_image(&c, &repo, "v1", b"tls layer").await;
    let r = Reference::parse(&format!("{repo}:v1")).unwrap();
    assert_eq!(c.resolve(&r).await.unwrap().1, d);
    assert_eq!(c.find_signatures(&repo, &d).await.unwrap(), vec![]);

    // Without the CA (web PKI roots only) the certificate is not trusted.
    let unconfigured = RegistryClient::new(&[]).unwrap();
    let e = unconfigured.resolve(&r).await.unwrap_err();
    assert_eq!(e.kind(), "Unreachable", "{e}");
    assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");
}

// ---- a fake registry serving bad answers ----------------------------------------

const PAYLOAD: &[u8] = br#"{"critical":{"type":"cosign container image signature"}}"#;
fn image_digest() -> String {
    format!("sha256:{}", "ab".repeat(32))
}
fn good_manifest() -> Vec<u8> {
    br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","size":2,"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},"layers":[]}"#.to_vec()
}
fn sig_manifest(size: usize) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 2, "digest": sha(b"{}")},
        "layers": [{"mediaType": SIMPLE_SIGNING, "size": size, "digest": sha(PAYLOAD), "annotations": {"a": "b"}}],
    }))
    .unwrap()
}

fn manifest_response(body: Vec<u8>) -> Response {
    ([("content-type", OCI_MANIFEST)], body).into_response()
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        r#"{"errors":[{"code":"MANIFEST_UNKNOWN"}]}"#,
    )
        .into_response()
}

async fn fake(uri: Uri, headers: HeaderMap, cdn: String) -> Response {
    let path = uri.path().to_string();
    let parts: Vec<&str> = path.trim_start_matches("/v2/").splitn(3, '/').collect();
    let [repo, kind, rest] = parts[..] else {
        return not_found();
    };
    let is_sig = rest.ends_with(".sig");
    match (repo, kind) {
        ("garbage", "manifests") => manifest_response(b"{not json".to_vec()),
        ("huge", "manifests") => manifest_response(vec![b' '; 5 * 1024 * 1024]),
        ("wrongdigest", "manifests") => {
            let mut r = manifest_response(good_manifest());
            r.headers_mut().insert(
                "docker-content-digest",
                format!("sha256:{}", "0".repeat(64)).parse().unwrap(),
            );
            r
        }
        ("loop", _) => {
            (StatusCode::TEMPORARY_REDIRECT, [("location", path.clone())]).into_response()
        }
        ("offsite", "manifests") => (
            StatusCode::TEMPORARY_REDIRECT,
            [("location", format!("http://{cdn}/elsewhere"))],
        )
            .into_response(),
        ("err500", _) => (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response(),
        ("basic", "manifests") => {
            let ok =
                headers.get("authorization").and_then(|v| v.to_str().ok()) == Some("Basic dTpw"); // u:p
            if ok {
                manifest_response(good_manifest())
            } else {
                (
                    StatusCode::UNAUTHORIZED,
                    [("www-authenticate", r#"Basic realm="fake""#)],
                )
                    .into_response()
            }
        }
        ("needsbearer", "manifests") => {
            if headers.get("authorization").and_then(|v| v.to_str().ok())
                == Some("Bearer static-token")
            {
                manifest_response(good_manifest())
            } else {
                StatusCode::UNAUTHORIZED.into_response()
            }
        }
        ("negotiate", _) => (
            StatusCode::UNAUTHORIZED,
            [("www-authenticate", "Negotiate")],
        )
            .into_response(),
        ("nochallenge", _) => StatusCode::UNAUTHORIZED.into_response(),
        ("slow", _) => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            not_found()
        }
        ("badblob" | "longblob" | "shortblob" | "redirblob", "manifests") if is_sig => {
            manifest_response(sig_manifest(PAYLOAD.len()))
        }
        ("hugesig", "manifests") if is_sig => manifest_response(sig_manifest(100 << 20)),
        ("badblob", "blobs") => {
            let mut b = PAYLOAD.to_vec();
            b[0] = b'[';
            b.into_response()
        }
        ("longblob", "blobs") => [PAYLOAD, b"extra"].concat().into_response(),
        ("shortblob", "blobs") => PAYLOAD[..10].to_vec().into_response(),
        ("redirblob", "blobs") => (
            StatusCode::TEMPORARY_REDIRECT,
            [("location", format!("http://{cdn}/storage/payload"))],
        )
            .into_response(),
        ("badrefs", "referrers") => (
            [("content-type", "application/vnd.oci.image.index.v1+json")],
            "[1,2",
        )
            .into_response(),
        ("manyrefs", "referrers") => {
            let d = serde_json::json!({"mediaType": OCI_MANIFEST, "digest": image_digest(), "size": 10, "artifactType": "application/vnd.dev.sigstore.bundle.v0.3+json"});
            let idx = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": vec![d; 300]});
            axum::Json(idx).into_response()
        }
        ("wrongsubject", "referrers") => {
            let m = wrong_subject_manifest();
            let idx = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
                {"mediaType": OCI_MANIFEST, "digest": sha(&m), "size": m.len(), "artifactType": "application/vnd.dev.sigstore.bundle.v0.3+json"},
                {"mediaType": OCI_MANIFEST, "digest": sha(b"ignored"), "size": 7, "artifactType": "application/vnd.example.sbom"}
            ]});
            axum::Json(idx).into_response()
        }
        ("goodrefs", "referrers") => {
            let m = good_referrer_manifest();
            let idx = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
                {"mediaType": OCI_MANIFEST, "digest": sha(b"sbom"), "size": 4, "artifactType": "application/vnd.example.sbom"},
                {"mediaType": OCI_MANIFEST, "digest": sha(&m), "size": m.len(), "artifactType": "application/vnd.dev.sigstore.bundle+json;version=0.3"}
            ]});
            (
                [("content-type", "application/vnd.oci.image.index.v1+json")],
                axum::Json(idx),
            )
                .into_response()
        }
        ("pagedrefs", "referrers") if uri.query() != Some("page=2") => {
            let idx = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
                {"mediaType": OCI_MANIFEST, "digest": sha(b"sbom"), "size": 4, "artifactType": "application/vnd.example.sbom"}
            ]});
            let link = format!("<{path}?page=2>; rel=\"next\"");
            ([("link", link)], axum::Json(idx)).into_response()
        }
        ("pagedrefs", "referrers") => {
            let m = good_referrer_manifest();
            let idx = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
                {"mediaType": OCI_MANIFEST, "digest": sha(&m), "size": m.len(), "artifactType": "application/vnd.dev.sigstore.bundle.v0.3+json"}
            ]});
            axum::Json(idx).into_response()
        }
        ("offsitepage", "referrers") => {
            let idx = serde_json::json!({"schemaVersion": 2, "manifests": []});
            let link = format!("<http://{cdn}/more>; rel=\"next\"");
            ([("link", link)], axum::Json(idx)).into_response()
        }
        ("goodrefs" | "pagedrefs", "manifests") if rest == sha(&good_referrer_manifest()) => {
            manifest_response(good_referrer_manifest())
        }
        ("goodrefs" | "pagedrefs", "blobs") if rest == sha(BUNDLE) => {
            BUNDLE.to_vec().into_response()
        }
        ("wrongsubject", "manifests") if rest.starts_with("sha256:") => {
            manifest_response(wrong_subject_manifest())
        }
        _ => not_found(),
    }
}

const BUNDLE: &[u8] = br#"{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"}"#;

fn good_referrer_manifest() -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "size": 2, "digest": sha(b"{}")},
        "layers": [{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json", "size": BUNDLE.len(), "digest": sha(BUNDLE)}],
        "subject": {"mediaType": OCI_MANIFEST, "size": 1, "digest": image_digest()},
    }))
    .unwrap()
}

fn wrong_subject_manifest() -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "size": 2, "digest": sha(b"{}")},
        "layers": [{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json", "size": 2, "digest": sha(b"{}")}],
        "subject": {"mediaType": OCI_MANIFEST, "size": 1, "digest": format!("sha256:{}", "cd".repeat(32))},
    }))
    .unwrap()
}

/// A "CDN" for blob redirects: serves the payload only to requests without
/// credentials (they must not leave the registry's host).
fn cdn() -> Served {
    Served::start(
        axum::Router::new().fallback(|headers: HeaderMap| async move {
            if headers.contains_key("authorization") {
                (StatusCode::BAD_REQUEST, "credentials leaked to the CDN").into_response()
            } else {
                PAYLOAD.to_vec().into_response()
            }
        }),
    )
}

/// An HTTP server whose every answer is an endless chunked body with no
/// Content-Length.
fn endless_server() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut s) = conn else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let mut req = Vec::new();
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: {OCI_MANIFEST}\r\ntransfer-encoding: chunked\r\n\r\n"
                );
                if s.write_all(head.as_bytes()).is_err() {
                    return;
                }
                let chunk = vec![b' '; 65536];
                loop {
                    let mut frame = format!("{:x}\r\n", chunk.len()).into_bytes();
                    frame.extend_from_slice(&chunk);
                    frame.extend_from_slice(b"\r\n");
                    if s.write_all(&frame).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn kind<T: std::fmt::Debug>(r: Result<T, RegistryError>) -> &'static str {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => {
            eprintln!("{}: {e}", e.kind());
            e.kind()
        }
    }
}

#[tokio::test]
async fn a_hostile_registry_yields_typed_errors() {
    let cdn = cdn();
    let cdn_addr = cdn.addr.to_string();
    let fake_srv = Served::start(axum::Router::new().fallback(
        move |uri: Uri, headers: HeaderMap| {
            let cdn = cdn_addr.clone();
            async move { fake(uri, headers, cdn).await }
        },
    ));
    let host = fake_srv.addr.to_string();
    let dir = tempfile::tempdir().unwrap();
    let tf = dir.path().join("token");
    std::fs::write(&tf, "static-token").unwrap();
    // A static bearer token on every request, to show it never reaches the CDN.
    let c = RegistryClient::with_timeout(
        &[RegistryConfig {
            token_file: Some(tf),
            ..cfg(&host)
        }],
        Duration::from_secs(2),
    )
    .unwrap();
    let at = |repo: &str, tag: &str| Reference::parse(&format!("{host}/{repo}:{tag}")).unwrap();
    let repo = |r: &str| format!("{host}/{r}");
    let d = image_digest();

    assert_eq!(kind(c.resolve(&at("garbage", "v1")).await), "Malformed");
    assert_eq!(kind(c.resolve(&at("huge", "v1")).await), "TooLarge");
    assert_eq!(
        kind(c.resolve(&at("wrongdigest", "v1")).await),
        "DigestMismatch"
    );
    let by_digest = Reference::parse(&format!("{host}/wrongdigest@{d}")).unwrap();
    assert_eq!(kind(c.resolve(&by_digest).await), "DigestMismatch");
    // The static bearer token is sent.
    let (_, got) = c.resolve(&at("needsbearer", "v1")).await.unwrap();
    assert_eq!(got, sha(&good_manifest()));
    assert_eq!(kind(c.resolve(&at("loop", "v1")).await), "BadRedirect");
    assert_eq!(kind(c.resolve(&at("offsite", "v1")).await), "BadRedirect");
    assert_eq!(kind(c.resolve(&at("err500", "v1")).await), "Http");
    assert_eq!(kind(c.resolve(&at("slow", "v1")).await), "Timeout");
    assert_eq!(kind(c.resolve(&at("negotiate", "v1")).await), "Malformed");
    assert_eq!(
        kind(c.resolve(&at("nochallenge", "v1")).await),
        "Unauthorized"
    );
    assert_eq!(kind(c.resolve(&at("basic", "v1")).await), "Unauthorized");

    // Signatures: blobs must match their descriptors.
    assert_eq!(
        kind(c.find_signatures(&repo("badblob"), &d).await),
        "DigestMismatch"
    );
    assert_eq!(
        kind(c.find_signatures(&repo("longblob"), &d).await),
        "SizeMismatch"
    );
    assert_eq!(
        kind(c.find_signatures(&repo("shortblob"), &d).await),
        "SizeMismatch"
    );
    assert_eq!(
        kind(c.find_signatures(&repo("hugesig"), &d).await),
        "TooLarge"
    );
    assert_eq!(
        kind(c.find_signatures(&repo("badrefs"), &d).await),
        "Malformed"
    );
    assert_eq!(
        kind(c.find_signatures(&repo("manyrefs"), &d).await),
        "TooMany"
    );
    assert_eq!(
        kind(c.find_signatures(&repo("wrongsubject"), &d).await),
        "Malformed"
    );
    assert_eq!(kind(c.find_signatures(&repo("err500"), &d).await), "Http");
    assert_eq!(
        kind(c.find_signatures(&repo("loop"), &d).await),
        "BadRedirect"
    );
    // A blob redirected to another host is followed, without the credentials.
    let found = c.find_signatures(&repo("redirblob"), &d).await.unwrap();
    assert_eq!(
        found,
        vec![ImageSignature::SimpleSigning {
            payload: PAYLOAD.to_vec(),
            annotations: BTreeMap::from([("a".to_string(), "b".to_string())]),
        }]
    );
    // The OCI 1.1 referrers API (which distribution 2.8 lacks), filtered by type.
    assert_eq!(
        c.find_signatures(&repo("goodrefs"), &d).await.unwrap(),
        vec![ImageSignature::Bundle(BUNDLE.to_vec())]
    );
    // Followed across pages (Link: rel="next"), never to another host.
    assert_eq!(
        c.find_signatures(&repo("pagedrefs"), &d).await.unwrap(),
        vec![ImageSignature::Bundle(BUNDLE.to_vec())]
    );
    assert_eq!(
        kind(c.find_signatures(&repo("offsitepage"), &d).await),
        "Malformed"
    );
    // Nothing there at all: no signatures.
    assert_eq!(c.find_signatures(&repo("empty"), &d).await.unwrap(), vec![]);

    // Basic credentials on a Basic challenge.
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "p").unwrap();
    let basic = RegistryClient::new(&[RegistryConfig {
        username: Some("u".into()),
        password_file: Some(pw),
        ..cfg(&host)
    }])
    .unwrap();
    let (_, got) = basic.resolve(&at("basic", "v1")).await.unwrap();
    assert_eq!(got, sha(&good_manifest()));

    // An endless body without Content-Length is cut at the bound.
    let endless = endless_server().to_string();
    let c2 = RegistryClient::new(&[cfg(&endless)]).unwrap();
    let r = Reference::parse(&format!("{endless}/x:v1")).unwrap();
    assert_eq!(kind(c2.resolve(&r).await), "TooLarge");
    assert_eq!(
        kind(c2.find_signatures(&format!("{endless}/x"), &d).await),
        "TooLarge"
    );
}

/// A peer reads what this client writes: skopeo (containers/image) sees the same
/// manifest bytes and the cosign `.sig` tag, and an image skopeo copies resolves to
/// the digest skopeo reports.
#[tokio::test]
async fn skopeo_agrees() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::start(dir.path(), dir.path());
    let c = RegistryClient::new(&[cfg(&reg.host)]).unwrap();
    let repo = format!("{}/peer/app", reg.host);
    let d = push_image(&c, &repo, "v1", b"peer layer").await;
    let s = simple_signing(&repo, &d, 7);
    c.push_signature(&repo, &d, &s).await.unwrap();

    let skopeo = |args: &[&str]| {
        let out = std::process::Command::new("skopeo")
            .arg("--insecure-policy")
            .args(args)
            .output()
            .expect("skopeo (Debian package skopeo) must be installed");
        assert!(
            out.status.success(),
            "skopeo {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let raw = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("docker://{repo}:v1"),
    ]);
    assert_eq!(sha(&raw), d);
    let tags: serde_json::Value = serde_json::from_slice(&skopeo(&[
        "list-tags",
        "--tls-verify=false",
        &format!("docker://{repo}"),
    ]))
    .unwrap();
    let sig_tag = format!("sha256-{}.sig", &d[7..]);
    assert!(
        tags["Tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == sig_tag.as_str()),
        "{tags}"
    );
    let sig: serde_json::Value = serde_json::from_slice(&skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("docker://{repo}:{sig_tag}"),
    ]))
    .unwrap();
    assert_eq!(sig["layers"][0]["mediaType"], SIMPLE_SIGNING);

    let digestfile = dir.path().join("copied.digest");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        "--digestfile",
        digestfile.to_str().unwrap(),
        &format!("docker://{repo}:v1"),
        &format!("docker://{}/peer/copy:c1", reg.host),
    ]);
    let copied = std::fs::read_to_string(&digestfile).unwrap();
    let r = Reference::parse(&format!("{}/peer/copy:c1", reg.host)).unwrap();
    assert_eq!(c.resolve(&r).await.unwrap().1, copied.trim());
}
