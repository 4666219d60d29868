use std::collections::BTreeMap;
use std::sync::Mutex;

use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::Url;
use serde::Deserialize;

use super::challenge::{parse_challenge, Challenge};
use super::discover::next_link;
use super::transport::{own_host, same_origin};
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
        digest: Sha256Digest::of(BLOB.as_bytes()).into_string(),
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
