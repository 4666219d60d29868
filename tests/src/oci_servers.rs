//! Registries with authentication and TLS for the OCI client's tests: Debian's real
//! `docker-registry` (distribution 2.8) configured with `auth: token` (trusting a
//! test key through `rootcertbundle`) and/or `http.tls` (a server certificate from a
//! test CA), and the token server it points clients at (axum, issuing ES256 JWTs
//! with the signing certificate in `x5c`, as distribution's token verifier expects).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use p256::ecdsa::signature::Signer;
use p256::pkcs8::DecodePrivateKey;
use serde_json::{json, Value};

use crate::{free_port, Proc};

/// The `service` the registry and its token server agree on.
pub const TOKEN_SERVICE: &str = "provenant-test-registry";
/// The token issuer the registry trusts.
pub const TOKEN_ISSUER: &str = "provenant-test-token-issuer";

/// A test CA and a server certificate for 127.0.0.1 it signed.
pub struct TestTls {
    /// The CA certificate (PEM file): what `ca_file` points at.
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl TestTls {
    pub fn generate(dir: &Path) -> TestTls {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, KeyUsagePurpose};
        let ca_key = KeyPair::generate().expect("ca key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "Provenant test registry CA");
        let ca_cert = ca.self_signed(&ca_key).expect("ca cert");
        let key = KeyPair::generate().expect("server key");
        let params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("server params");
        let cert = params
            .signed_by(&key, &ca_cert, &ca_key)
            .expect("server cert");
        let t = TestTls {
            ca_file: dir.join("test-ca.pem"),
            cert_file: dir.join("registry-cert.pem"),
            key_file: dir.join("registry-key.pem"),
        };
        std::fs::write(&t.ca_file, ca_cert.pem()).expect("write ca");
        std::fs::write(&t.cert_file, cert.pem()).expect("write cert");
        std::fs::write(&t.key_file, key.serialize_pem()).expect("write key");
        t
    }
}

/// A token server: anonymous callers get `pull`; callers with the configured basic
/// credentials get what they ask for; wrong credentials get 401.
pub struct TokenServer {
    /// `http://127.0.0.1:PORT/token`.
    pub realm: String,
    /// The self-signed certificate of the signing key (the registry's rootcertbundle).
    pub root_file: PathBuf,
    /// Tokens issued so far.
    pub issued: Arc<AtomicUsize>,
    /// The `expires_in` announced to clients (the JWT itself stays valid 300 s).
    lifetime: Arc<std::sync::atomic::AtomicU64>,
    _server: Served,
}

struct TokenState {
    key: p256::ecdsa::SigningKey,
    cert_der: Vec<u8>,
    user: String,
    password: String,
    issued: Arc<AtomicUsize>,
    lifetime: Arc<std::sync::atomic::AtomicU64>,
}

impl TokenServer {
    pub fn start(dir: &Path, user: &str, password: &str) -> TokenServer {
        use rcgen::{CertificateParams, KeyPair};
        let kp = KeyPair::generate().expect("token key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Provenant test token signer");
        let cert = params.self_signed(&kp).expect("token cert");
        let root_file = dir.join("token-root.pem");
        std::fs::write(&root_file, cert.pem()).expect("write token root");
        let key = p256::ecdsa::SigningKey::from_pkcs8_der(&kp.serialize_der()).expect("p256 key");
        let issued = Arc::new(AtomicUsize::new(0));
        let lifetime = Arc::new(std::sync::atomic::AtomicU64::new(300));
        let state = Arc::new(TokenState {
            key,
            cert_der: cert.der().to_vec(),
            user: user.into(),
            password: password.into(),
            issued: issued.clone(),
            lifetime: lifetime.clone(),
        });
        let app = axum::Router::new()
            .route("/token", axum::routing::get(token))
            .with_state(state);
        let server = Served::start(app);
        let realm = format!("http://{}/token", server.addr);
        TokenServer {
            realm,
            root_file,
            issued,
            lifetime,
            _server: server,
        }
    }

    /// Sets the `expires_in` announced with the next tokens.
    pub fn set_announced_lifetime(&self, secs: u64) {
        self.lifetime.store(secs, Ordering::SeqCst);
    }

    pub fn issued(&self) -> usize {
        self.issued.load(Ordering::SeqCst)
    }
}

/// An axum app served on 127.0.0.1 from its own thread and runtime (so it answers
/// whatever the test's runtime is doing); shut down when dropped.
pub struct Served {
    /// `127.0.0.1:PORT`.
    pub addr: std::net::SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Served {
    pub fn start(app: axum::Router) -> Served {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let l = tokio::net::TcpListener::from_std(listener).expect("listener");
                let _ = axum::serve(l, app)
                    .with_graceful_shutdown(async {
                        let _ = rx.await;
                    })
                    .await;
            });
            // Connections still open (a handler that never answers) are dropped here.
            rt.shutdown_background();
        });
        Served {
            addr,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        // Not joined: a connection held open by a handler that never answers would
        // keep graceful shutdown waiting; the thread ends with it.
        self.thread.take();
    }
}

async fn token(
    axum::extract::State(s): axum::extract::State<Arc<TokenState>>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let authed = match headers.get("authorization").and_then(|v| v.to_str().ok()) {
        None => false,
        Some(h) => {
            let expected = format!(
                "Basic {}",
                STANDARD.encode(format!("{}:{}", s.user, s.password))
            );
            if h != expected {
                return (axum::http::StatusCode::UNAUTHORIZED, "bad credentials").into_response();
            }
            true
        }
    };
    if q.get("service").map(String::as_str) != Some(TOKEN_SERVICE) {
        return (axum::http::StatusCode::BAD_REQUEST, "unknown service").into_response();
    }
    let mut access = Vec::new();
    if let Some(scope) = q.get("scope") {
        let parts: Vec<&str> = scope.splitn(3, ':').collect();
        if let [typ, name, actions] = parts[..] {
            let actions: Vec<&str> = actions
                .split(',')
                .filter(|a| authed || *a == "pull")
                .collect();
            access.push(json!({"type": typ, "name": name, "actions": actions}));
        }
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    let n = s.issued.fetch_add(1, Ordering::SeqCst);
    let claims = json!({
        "iss": TOKEN_ISSUER,
        "sub": if authed { s.user.as_str() } else { "" },
        "aud": TOKEN_SERVICE,
        "exp": now + 300,
        "nbf": now - 10,
        "iat": now,
        "jti": format!("t{n}"),
        "access": access,
    });
    let jwt = sign_jwt(&s.key, &s.cert_der, &claims);
    axum::Json(json!({"token": jwt, "expires_in": s.lifetime.load(Ordering::SeqCst)}))
        .into_response()
}

fn sign_jwt(key: &p256::ecdsa::SigningKey, cert_der: &[u8], claims: &Value) -> String {
    let header = json!({"typ": "JWT", "alg": "ES256", "x5c": [STANDARD.encode(cert_der)]});
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let sig: p256::ecdsa::Signature = key.sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
}

/// A `docker-registry` with token auth and/or TLS; stopped when dropped.
pub struct SecuredRegistry {
    /// `127.0.0.1:PORT`.
    pub host: String,
    _proc: Proc,
}

impl SecuredRegistry {
    /// Starts a registry storing under `dir/NAME`, with `auth: token` against `token`
    /// if given and TLS with `tls` if given.
    pub fn start(
        dir: &Path,
        name: &str,
        token: Option<&TokenServer>,
        tls: Option<&TestTls>,
    ) -> SecuredRegistry {
        let port = free_port();
        let root = dir.join(name);
        std::fs::create_dir_all(&root).expect("registry dir");
        let mut yml = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            root.display()
        );
        if let Some(t) = tls {
            yml.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                t.cert_file.display(),
                t.key_file.display()
            ));
        }
        if let Some(t) = token {
            yml.push_str(&format!(
                "auth:\n  token:\n    realm: {}\n    service: {TOKEN_SERVICE}\n    issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
                t.realm,
                t.root_file.display()
            ));
        }
        let config = dir.join(format!("{name}.yml"));
        std::fs::write(&config, yml).expect("registry config");
        let mut cmd = Command::new("docker-registry");
        cmd.arg("serve").arg(&config);
        let proc = Proc::spawn_cmd(name, cmd, dir);
        let host = format!("127.0.0.1:{port}");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&host).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "docker-registry did not listen on {host}: {}",
                proc.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        SecuredRegistry { host, _proc: proc }
    }

    pub fn log_text(&self) -> String {
        self._proc.log_text()
    }
}
