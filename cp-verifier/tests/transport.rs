//! The control plane's transport as deployed: a real `bind()` + `serve()` on
//! loopback with TLS, mTLS, operator certificates, tokens, limits; and the agent's
//! real client (CA, pin, client certificate, http:// refusal).

mod harness;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use cp_verifier::config::{CpConfig, TlsConfig};
use evidence::api::{RegisterEvidence, RegisterRequest};
use guest_agent::client::{Client, ClientError, TlsOptions};
use guest_agent::signer::KeySigner;
use harness::{measurements, ManualClock, TestAgent, OPERATOR_TOKEN, T0, VIEWER_TOKEN};
use provenant_base::fsutil::write_private;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
    pem: PathBuf,
}

fn ca(dir: &Path, name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = p.self_signed(&key).unwrap();
    let pem = dir.join(format!("{name}.pem"));
    std::fs::write(&pem, cert.pem()).unwrap();
    Ca { cert, key, pem }
}

/// A client certificate for `key` (PEM) signed by `ca`: (cert path, key path).
fn client_cert(dir: &Path, ca: &Ca, name: &str, key_pem: &str) -> (PathBuf, PathBuf) {
    let key = KeyPair::from_pem(key_pem).unwrap();
    let mut p = CertificateParams::new(vec![name.to_string()]).unwrap();
    p.distinguished_name.push(DnType::CommonName, name);
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let c = p.signed_by(&key, &ca.cert, &ca.key).unwrap();
    let (cp, kp) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&cp, c.pem()).unwrap();
    write_private(&kp, key_pem.as_bytes()).unwrap();
    (cp, kp)
}

struct Served {
    base: String,
    pin: Option<String>,
    ca: PathBuf,
    dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// A real control plane: `bind()` then `serve()`, with the throwaway TLS the demo
/// uses (when `tls`), viewer/operator tokens, and `f` applied last.
async fn serve(tls: bool, f: impl FnOnce(&Path, &mut CpConfig)) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut cfg = CpConfig::with_data_dir(&d.join("db"));
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    write_private(&d.join("op.token"), OPERATOR_TOKEN.as_bytes()).unwrap();
    write_private(&d.join("viewer.token"), VIEWER_TOKEN.as_bytes()).unwrap();
    cfg.operator_token_file = Some(d.join("op.token"));
    cfg.viewer_token_file = Some(d.join("viewer.token"));
    let (ca_pem, cert, key) =
        cp_verifier::demo::throwaway_tls("127.0.0.1".parse().unwrap()).unwrap();
    std::fs::write(d.join("ca.pem"), ca_pem).unwrap();
    if tls {
        std::fs::write(d.join("cp.crt"), cert).unwrap();
        write_private(&d.join("cp.key"), key.as_bytes()).unwrap();
        cfg.tls = Some(TlsConfig {
            cert_file: d.join("cp.crt"),
            key_file: d.join("cp.key"),
            client_ca_file: None,
            operator_ca_file: None,
        });
    }
    f(d, &mut cfg);
    let clock = Arc::new(ManualClock(AtomicU64::new(T0)));
    let bound = cp_verifier::bind(cfg, clock).await.unwrap();
    let scheme = if bound.tls.is_some() { "https" } else { "http" };
    let base = format!("{scheme}://{}", bound.addr);
    let pin = bound.tls.as_ref().map(|t| t.pin.clone());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(bound.serve(async move {
        let _ = rx.await;
    }));
    Served {
        base,
        pin,
        ca: dir.path().join("ca.pem"),
        dir,
        _stop: tx,
    }
}

fn client(base: &str, o: TlsOptions) -> Result<Client, ClientError> {
    Client::new(base, Duration::from_secs(5), &o)
}

async fn register(c: &Client, a: &TestAgent) -> Result<(), ClientError> {
    let ch = c.challenge().await?;
    let env = a.report(ch.nonce, T0, measurements(1, 1));
    c.register(&RegisterRequest {
        envelope: env,
        evidence: RegisterEvidence::default(),
    })
    .await
    .map(|_| ())
}

#[tokio::test]
async fn mtls_agent_with_a_certificate_registers_and_one_without_cannot_connect() {
    let agent = TestAgent::new("node-1");
    let key_pem = agent.signer.to_pkcs8_pem().unwrap();
    let enrolled = agent.enroll();
    let mut certs = None;
    let s = serve(true, |d, cfg| {
        let agents = ca(d, "agents-ca");
        certs = Some(client_cert(d, &agents, "node-1", &key_pem));
        cfg.tls.as_mut().unwrap().client_ca_file = Some(agents.pem.clone());
        cfg.enrollment.keys.push(enrolled);
    })
    .await;
    let with_cert = TlsOptions {
        ca_file: Some(s.ca.clone()),
        client_cert: certs.clone(),
        ..Default::default()
    };
    let c = client(&s.base, with_cert).unwrap();
    register(&c, &agent).await.unwrap();

    // No client certificate: the handshake is refused, nothing reaches the API.
    let bare = client(
        &s.base,
        TlsOptions {
            ca_file: Some(s.ca.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    let e = bare.challenge().await.unwrap_err();
    assert!(matches!(e, ClientError::Transport(_)), "{e}");

    // A certificate from another CA: refused too.
    let other = ca(s.dir.path(), "other-ca");
    let k2 = KeySigner::generate_ed25519()
        .unwrap()
        .to_pkcs8_pem()
        .unwrap();
    let wrong = client_cert(s.dir.path(), &other, "node-2", &k2);
    let c = client(
        &s.base,
        TlsOptions {
            ca_file: Some(s.ca.clone()),
            client_cert: Some(wrong),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(matches!(
        c.challenge().await.unwrap_err(),
        // A failed handshake: nothing was sent.
        ClientError::Transport(_) | ClientError::Unsent(_)
    ));

    // The agent's own trust: without the CA (public roots only) the server is refused.
    let c = client(
        &s.base,
        TlsOptions {
            client_cert: certs,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(matches!(
        c.challenge().await.unwrap_err(),
        // A failed handshake: nothing was sent.
        ClientError::Transport(_) | ClientError::Unsent(_)
    ));
}

#[tokio::test]
async fn a_pinned_agent_accepts_only_the_pinned_key() {
    let s = serve(true, |_, _| {}).await;
    let pin = s.pin.clone().unwrap();
    let c = client(
        &s.base,
        TlsOptions {
            pin: Some(pin),
            ..Default::default()
        },
    )
    .unwrap();
    c.challenge().await.unwrap();

    // Another server key (same CA name, same host): refused by the pin.
    let other = serve(true, |_, _| {}).await;
    assert_ne!(other.pin, s.pin);
    let c = client(
        &other.base,
        TlsOptions {
            pin: s.pin.clone(),
            ..Default::default()
        },
    )
    .unwrap();
    let e = c.challenge().await.unwrap_err().to_string();
    assert!(e.contains("control_plane_pin"), "{e}");
    // Pin and CA together: both must hold.
    let c = client(
        &other.base,
        TlsOptions {
            pin: s.pin.clone(),
            ca_file: Some(other.ca.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(c.challenge().await.is_err());
}

#[tokio::test]
async fn plain_http_is_refused_unless_insecure_http() {
    let s = serve(false, |_, _| {}).await;
    let e = client(&s.base, TlsOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("insecure_http"), "{e}");
    let c = client(
        &s.base,
        TlsOptions {
            insecure_http: true,
            ..Default::default()
        },
    )
    .unwrap();
    c.challenge().await.unwrap();

    // The control plane serves plain HTTP on loopback only, unless told otherwise.
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = CpConfig::with_data_dir(dir.path());
    cfg.listen = "0.0.0.0:0".parse().unwrap();
    let e = cp_verifier::check_listen(&cfg).unwrap_err().to_string();
    assert!(e.contains("[tls]") && e.contains("insecure_http"), "{e}");
    cfg.insecure_http = true;
    cp_verifier::check_listen(&cfg).unwrap();
    cfg.insecure_http = false;
    cfg.listen = "[::1]:0".parse().unwrap();
    cp_verifier::check_listen(&cfg).unwrap();
}

#[tokio::test]
async fn finding09_world_readable_key_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_, cert, key) = cp_verifier::demo::throwaway_tls("127.0.0.1".parse().unwrap()).unwrap();
    std::fs::write(d.join("cp.crt"), cert).unwrap();
    std::fs::write(d.join("cp.key"), key).unwrap();
    std::fs::set_permissions(d.join("cp.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut cfg = CpConfig::with_data_dir(&d.join("db"));
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.tls = Some(TlsConfig {
        cert_file: d.join("cp.crt"),
        key_file: d.join("cp.key"),
        client_ca_file: None,
        operator_ca_file: None,
    });
    let clock = || Arc::new(ManualClock(AtomicU64::new(T0)));
    let e = cp_verifier::bind(cfg.clone(), clock())
        .await
        .err()
        .unwrap()
        .to_string();
    let shown = d.join("cp.key").display().to_string();
    assert!(
        e.contains(&shown) && e.contains("0644") && e.contains(&format!("chmod 600 {shown}")),
        "{e}"
    );
    // Token files too.
    std::fs::set_permissions(d.join("cp.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(d.join("viewer.token"), VIEWER_TOKEN).unwrap();
    std::fs::set_permissions(
        d.join("viewer.token"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    cfg.viewer_token_file = Some(d.join("viewer.token"));
    let e = cp_verifier::bind(cfg.clone(), clock())
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("viewer.token") && e.contains("chmod 600"), "{e}");
    std::fs::set_permissions(
        d.join("viewer.token"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    cp_verifier::bind(cfg, clock()).await.unwrap();
}

fn https(ca: &Path, identity: Option<(&Path, &Path)>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .redirect(reqwest::redirect::Policy::none())
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap());
    if let Some((c, k)) = identity {
        let mut pem = std::fs::read(c).unwrap();
        pem.extend(std::fs::read(k).unwrap());
        b = b.identity(reqwest::Identity::from_pem(&pem).unwrap());
    }
    b.build().unwrap()
}

#[tokio::test]
async fn reads_need_a_token_or_an_operator_certificate() {
    let mut op = None;
    let s = serve(true, |d, cfg| {
        let ops = ca(d, "operators-ca");
        let k = KeyPair::generate().unwrap().serialize_pem();
        op = Some(client_cert(d, &ops, "alice", &k));
        cfg.tls.as_mut().unwrap().operator_ca_file = Some(ops.pem.clone());
    })
    .await;
    let anon = https(&s.ca, None);
    let read_paths = [
        "/api/v1/agents",
        "/api/v1/agents/node-1",
        "/api/v1/alerts",
        "/agents",
        "/agent/node-1",
    ];
    for p in read_paths {
        let r = anon.get(format!("{}{p}", s.base)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{p}");
        assert_eq!(r.headers()["cache-control"], "no-store");
        let r = anon
            .get(format!("{}{p}", s.base))
            .bearer_auth("not-the-token-at-all")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{p}");
    }
    let r = anon
        .get(format!("{}/api/v1/agents", s.base))
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["kind"], "Unauthorized");
    for t in [VIEWER_TOKEN, OPERATOR_TOKEN] {
        for p in ["/api/v1/agents", "/api/v1/alerts", "/agents"] {
            let r = anon
                .get(format!("{}{p}", s.base))
                .bearer_auth(t)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{p}");
            assert_eq!(r.headers()["cache-control"], "no-store");
        }
    }
    // The viewer token does not write.
    let r = anon
        .post(format!("{}/api/v1/agents/node-1/expect", s.base))
        .bearer_auth(VIEWER_TOKEN)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // An operator certificate reads without a token (and does not write).
    let (c, k) = op.unwrap();
    let alice = https(&s.ca, Some((&c, &k)));
    let r = alice
        .get(format!("{}/api/v1/agents", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = alice
        .post(format!("{}/api/v1/agents/node-1/expect", s.base))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // A browser: ?token= once sets a private cookie and leaves the address bar.
    let r = anon
        .get(format!("{}/agents?token={VIEWER_TOKEN}", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/agents");
    // A filtered page keeps its filters; only the token leaves the address.
    let r = anon
        .get(format!(
            "{}/agents?badge=red&token={VIEWER_TOKEN}&q=edge%2D",
            s.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/agents?badge=red&q=edge%2D");
    // Never to another site: `//host` is a network path to a browser.
    for evil in ["//evil.example/", "/\\evil.example/"] {
        let r = anon
            .get(format!("{}{evil}?token={VIEWER_TOKEN}", s.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303, "{evil}");
        assert_eq!(r.headers()["location"], "/", "{evil}");
    }
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    assert!(
        !cookie.contains(VIEWER_TOKEN),
        "the cookie holds the token encoded"
    );
    let pair = cookie.split(';').next().unwrap().to_string();
    let r = anon
        .get(format!("{}/agents", s.base))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("Fleet"));
    let r = anon
        .get(format!("{}/agents?token=wrong-wrong-wrong-wrong", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("set-cookie").is_none());

    // The agents' endpoints stay open, and a challenge is never cached.
    let r = anon
        .get(format!("{}/api/v1/challenge", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
}

#[tokio::test]
async fn challenge_and_register_are_rate_limited_per_source() {
    let s = serve(false, |_, cfg| {
        cfg.limits.challenge_burst = 3;
        cfg.limits.challenge_rate = 0.5;
        cfg.limits.register_burst = 2;
        cfg.limits.register_rate = 0.5;
    })
    .await;
    let http = reqwest::Client::new();
    for _ in 0..3 {
        let r = http
            .get(format!("{}/api/v1/challenge", s.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let r = http
        .get(format!("{}/api/v1/challenge", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&wait), "{wait}");
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["kind"], "RateLimited");
    for want in [400, 400, 429] {
        let r = http
            .post(format!("{}/api/v1/register", s.base))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), want);
    }
    // Pulses are not limited by these buckets.
    let r = http
        .post(format!("{}/api/v1/heartbeat", s.base))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[test]
fn rate_limiter_refills_and_keys_ipv6_by_64() {
    use cp_verifier::http::router::RateLimiter;
    use std::time::Instant;
    let l = RateLimiter::new(2.0, 2);
    let t = Instant::now();
    let a: std::net::IpAddr = "2001:db8::1".parse().unwrap();
    let same64: std::net::IpAddr = "2001:db8::ffff:1".parse().unwrap();
    let other: std::net::IpAddr = "2001:db8:0:1::1".parse().unwrap();
    assert!(l.check(a, t).is_ok());
    assert!(l.check(same64, t).is_ok());
    let wait = l.check(a, t).unwrap_err();
    assert!(wait <= Duration::from_millis(500), "{wait:?}");
    assert!(l.check(other, t).is_ok());
    assert!(l.check(a, t + Duration::from_millis(500)).is_ok());
    // IPv4-mapped IPv6 shares the IPv4 address's bucket.
    let v4: std::net::IpAddr = "192.0.2.7".parse().unwrap();
    let mapped: std::net::IpAddr = "::ffff:192.0.2.7".parse().unwrap();
    assert!(l.check(v4, t).is_ok());
    assert!(l.check(mapped, t).is_ok());
    assert!(l.check(v4, t).is_err());
}

#[tokio::test]
async fn slow_clients_are_cut_off_and_connections_are_capped() {
    let s = serve(false, |_, cfg| {
        cfg.limits.header_timeout = Duration::from_millis(300);
        cfg.limits.body_timeout = Duration::from_millis(300);
        cfg.limits.max_connections_per_ip = 2;
    })
    .await;
    let addr = s.base.trim_start_matches("http://").to_string();
    let blocking = |f: Box<dyn FnOnce() + Send>| tokio::task::spawn_blocking(f);
    blocking(Box::new(move || {
        // Headers never finished: closed after the header timeout.
        let mut c = std::net::TcpStream::connect(&addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").unwrap();
        let t = std::time::Instant::now();
        let mut buf = Vec::new();
        let _ = c.read_to_end(&mut buf);
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());

        // A body that never completes: a typed 400 after the body timeout.
        let mut c = std::net::TcpStream::connect(&addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(
            b"POST /api/v1/heartbeat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"a\":",
        )
        .unwrap();
        let mut buf = [0u8; 4096];
        let n = c.read(&mut buf).unwrap();
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(
            text.starts_with("HTTP/1.1 400") && text.contains("not received within"),
            "{text}"
        );

        drop(c);
        std::thread::sleep(Duration::from_millis(100));
        // Two connections from this source are held; a third is closed at once.
        let a = std::net::TcpStream::connect(&addr).unwrap();
        let b = std::net::TcpStream::connect(&addr).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let mut c = std::net::TcpStream::connect(&addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let _ = c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        let mut buf = [0u8; 64];
        let n = c.read(&mut buf).unwrap_or(0);
        assert_eq!(n, 0, "{}", String::from_utf8_lossy(&buf[..n]));
        drop((a, b));
    }))
    .await
    .unwrap();
}

/// Registers `a` over `c` and starts its chain at the report.
async fn register_as(c: &Client, a: &mut TestAgent) {
    let ch = c.challenge().await.unwrap();
    let report = a.report(ch.nonce, T0, measurements(1, 1));
    c.register(&RegisterRequest {
        envelope: report.clone(),
        evidence: RegisterEvidence::default(),
    })
    .await
    .unwrap();
    a.seq = 0;
    a.head = evidence::report::HexBytes(report.digest());
}

/// The reason codes of `id`'s verdict and its alerts of `kind`, read with the operator
/// token over `c` (a client that can connect: mTLS is on).
async fn codes_and_alerts(
    c: &reqwest::Client,
    base: &str,
    id: &str,
    kind: &str,
) -> (Vec<String>, Vec<serde_json::Value>) {
    let get = |p: String| async move {
        let r = c.get(p).bearer_auth(OPERATOR_TOKEN).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.json::<serde_json::Value>().await.unwrap()
    };
    let v = get(format!("{base}/api/v1/agents/{id}")).await;
    let codes = v["verdict"]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap().to_string())
        .collect();
    let a = get(format!("{base}/api/v1/alerts?limit=1000")).await;
    let alerts = a["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == kind && a["agent_id"] == id)
        .cloned()
        .collect();
    (codes, alerts)
}

/// The signed-heartbeat PRD: a pulse that fails signature verification marks the
/// device compromised. Anyone can post a pulse naming any agent, so it counts only
/// when the connection's agent certificate (mTLS) names the pulse's agent: a forgery
/// from another agent's connection raises `BadSignature` and changes nothing, and so
/// does a late pulse signed by the key the agent's last registration replaced. Over
/// the agent's own channel one bad signature (the default threshold) makes it red
/// `Compromised` (severity 1), which neither a valid pulse nor a registration clears;
/// an operator does, audited.
#[tokio::test]
async fn bad_signatures_mark_an_agent_compromised_only_over_its_own_channel() {
    let mut agent = TestAgent::new("node-1");
    let mut rekeyed = TestAgent::new("node-1");
    let key1 = agent.signer.to_pkcs8_pem().unwrap();
    let key2 = KeySigner::generate_ed25519()
        .unwrap()
        .to_pkcs8_pem()
        .unwrap();
    let enrolled = [agent.enroll(), rekeyed.enroll()];
    let (mut own, mut other) = (None, None);
    let s = serve(true, |d, cfg| {
        let agents = ca(d, "agents-ca");
        own = Some(client_cert(d, &agents, "node-1", &key1));
        other = Some(client_cert(d, &agents, "node-2", &key2));
        cfg.tls.as_mut().unwrap().client_ca_file = Some(agents.pem.clone());
        cfg.enrollment.keys.extend(enrolled);
    })
    .await;
    let tls = |c| TlsOptions {
        ca_file: Some(s.ca.clone()),
        client_cert: c,
        ..Default::default()
    };
    let c1 = client(&s.base, tls(own.clone())).unwrap();
    let c2 = client(&s.base, tls(other.clone())).unwrap();
    let (oc, ok) = own.clone().unwrap();
    let reader = https(&s.ca, Some((&oc, &ok)));
    register_as(&c1, &mut agent).await;
    let pulse = agent.next_pulse(T0, measurements(1, 1));
    c1.heartbeat(&pulse).await.unwrap();
    agent.accepted(&pulse);

    // A pulse for node-1 signed by another key.
    let forger = TestAgent::new("node-1");
    let forged = forger.pulse_at(2, agent.head, T0, measurements(1, 1));
    // From node-2's authenticated connection: refused, alerted, not counted.
    let e = c2.heartbeat(&forged).await.unwrap_err();
    assert_eq!(e.kind(), Some("BadSignature"), "{e}");
    let (codes, bad) = codes_and_alerts(&reader, &s.base, "node-1", "BadSignature").await;
    assert!(!codes.iter().any(|c| c == "Compromised"), "{codes:?}");
    assert_eq!(bad.len(), 1);
    assert!(
        bad[0]["detail"]
            .as_str()
            .unwrap()
            .contains("does not name this agent"),
        "{bad:?}"
    );

    // The agent registers again with a new key; a pulse its old key signed arrives
    // late over its own channel: refused, not counted.
    register_as(&c1, &mut rekeyed).await;
    let late = agent.next_pulse(T0, measurements(1, 1));
    let e = c1.heartbeat(&late).await.unwrap_err();
    assert_eq!(e.kind(), Some("BadSignature"), "{e}");
    let (codes, _) = codes_and_alerts(&reader, &s.base, "node-1", "BadSignature").await;
    assert!(!codes.iter().any(|c| c == "Compromised"), "{codes:?}");

    // The forgery over node-1's own connection: one is the threshold.
    let e = c1.heartbeat(&forged).await.unwrap_err();
    assert_eq!(e.kind(), Some("BadSignature"), "{e}");
    let (codes, marks) = codes_and_alerts(&reader, &s.base, "node-1", "Compromised").await;
    assert!(codes.iter().any(|c| c == "Compromised"), "{codes:?}");
    assert_eq!(marks.len(), 1, "{marks:?}");
    assert_eq!(marks[0]["severity"], 1);

    // Neither a valid pulse nor a registration clears it.
    register_as(&c1, &mut rekeyed).await;
    let p = rekeyed.next_pulse(T0, measurements(1, 1));
    let r = c1.heartbeat(&p).await.unwrap();
    assert_eq!(r.verdict.status, policy::Status::Fail);
    assert!(r
        .verdict
        .reasons
        .iter()
        .any(|x| x.code == policy::ReasonCode::Compromised));
    // More bad signatures once marked: no second Compromised alert.
    let _ = c1.heartbeat(&forged).await.unwrap_err();
    let (_, marks) = codes_and_alerts(&reader, &s.base, "node-1", "Compromised").await;
    assert_eq!(marks.len(), 1, "{marks:?}");

    // The operator clears it (audited); the agent is judged on its evidence again.
    let r = reader
        .post(format!("{}/api/v1/agents/node-1/expect", s.base))
        .bearer_auth(OPERATOR_TOKEN)
        .json(&serde_json::json!({ "clear_compromised": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (codes, cleared) = codes_and_alerts(&reader, &s.base, "node-1", "CompromiseCleared").await;
    assert!(!codes.iter().any(|c| c == "Compromised"), "{codes:?}");
    assert_eq!(cleared.len(), 1, "{cleared:?}");
}
