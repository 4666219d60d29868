//! The agent's client for the control plane's API.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;

use evidence::api::{Challenge, ErrorBody, HeartbeatResponse, RegisterRequest, RegisterResponse};
use evidence::Envelope;
use serde::de::DeserializeOwned;

/// Largest response body the agent reads from the control plane.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// Why a request to the control plane failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The control plane could not be reached, or did not answer in time (the request
    /// may have reached it).
    #[error("control plane unreachable: {0}")]
    Transport(String),
    /// No connection to the control plane could be made: nothing was sent.
    #[error("control plane unreachable (not connected): {0}")]
    Unsent(String),
    /// The control plane refused the request with a typed reason.
    #[error("control plane refused ({status}): {kind}: {detail}")]
    Rejected {
        /// The HTTP status code.
        status: u16,
        /// The typed reason (e.g. `ClockDesync`, `StoreUnavailable`).
        kind: String,
        /// The control plane's human-readable detail.
        detail: String,
    },
    /// The control plane answered something we cannot read.
    #[error("bad answer from control plane: {0}")]
    Protocol(String),
    /// The client cannot be set up (TLS files, URL scheme).
    #[error("control plane client: {0}")]
    Config(String),
}

impl ClientError {
    /// The typed reason the control plane gave, if it gave one.
    pub fn kind(&self) -> Option<&str> {
        match self {
            ClientError::Rejected { kind, .. } => Some(kind),
            _ => None,
        }
    }
}

/// HTTP(S) client for the control plane's API, rooted at its base URL.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
}

/// How the agent's TLS connection to the control plane is checked and what it
/// presents.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// PEM CA(s) the server's certificate must chain to; absent: the public web roots.
    pub ca_file: Option<PathBuf>,
    /// `sha256:<hex>` of the server's SubjectPublicKeyInfo.
    pub pin: Option<String>,
    /// The client certificate chain (PEM, leaf first) and its key, for mTLS.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// Allow `http://`.
    pub insecure_http: bool,
}

impl TlsOptions {
    /// The options an agent config names: its CA or pin, and its identity key's
    /// certificate where it has one.
    pub fn from_config(cfg: &crate::config::AgentConfig) -> TlsOptions {
        TlsOptions {
            ca_file: cfg.control_plane_ca_file.clone(),
            pin: cfg.control_plane_pin.clone(),
            client_cert: cfg.certificate_file.clone().zip(cfg.key_file.clone()),
            insecure_http: cfg.insecure_http,
        }
    }
}

/// Largest CA or certificate file read.
const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// `sha256:<hex>` of a DER certificate's SubjectPublicKeyInfo: what `control_plane_pin`
/// names (`cp-verifier serve` logs it; `openssl x509 -pubkey -noout | openssl pkey
/// -pubin -outform der | sha256sum` computes it).
pub fn spki_pin(cert_der: &[u8]) -> Option<[u8; 32]> {
    use sha2::{Digest, Sha256};
    use x509_cert::der::{Decode, Encode};
    let c = x509_cert::Certificate::from_der(cert_der).ok()?;
    let spki = c.tbs_certificate.subject_public_key_info.to_der().ok()?;
    Some(Sha256::digest(spki).into())
}

/// Accepts a server only if its key is the pinned one (and, with a CA, its chain
/// verifies too).
#[derive(Debug)]
struct Pinned {
    pin: [u8; 32],
    ca: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    algs: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl rustls::client::danger::ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        use subtle::ConstantTimeEq;
        if let Some(ca) = &self.ca {
            ca.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)?;
        }
        let got = spki_pin(end_entity).ok_or(rustls::Error::InvalidCertificate(
            rustls::CertificateError::BadEncoding,
        ))?;
        if bool::from(got.ct_eq(&self.pin)) {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "the control plane's TLS key does not match control_plane_pin".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algs.supported_schemes()
    }
}

fn config_err(what: &str, path: &Path, e: impl std::fmt::Display) -> ClientError {
    ClientError::Config(format!("{what} {}: {e}", path.display()))
}

fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    use rustls::pki_types::pem::PemObject;
    let b = provenant_base::fsutil::read_bounded(path, MAX_PEM_BYTES)
        .map_err(|e| config_err(what, path, e))?;
    let certs = CertificateDer::pem_slice_iter(&b)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| config_err(what, path, e))?;
    if certs.is_empty() {
        return Err(config_err(what, path, "no PEM CERTIFICATE"));
    }
    Ok(certs)
}

/// The rustls client config for an https:// control plane.
fn rustls_config(o: &TlsOptions) -> Result<rustls::ClientConfig, ClientError> {
    use rustls::pki_types::pem::PemObject;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    match &o.ca_file {
        Some(p) => {
            for c in read_certs(p, "control_plane_ca_file")? {
                roots
                    .add(c)
                    .map_err(|e| config_err("control_plane_ca_file", p, e))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Config(format!("TLS: {e}")))?;
    let webpki = || {
        rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots.clone()),
            provider.clone(),
        )
        .build()
        .map_err(|e| ClientError::Config(format!("TLS verifier: {e}")))
    };
    let builder = match &o.pin {
        Some(pin) => {
            let h = pin
                .strip_prefix("sha256:")
                .and_then(|h| hex::decode(h).ok())
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| {
                    ClientError::Config("control_plane_pin must be sha256:<64 hex digits>".into())
                })?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Pinned {
                    pin: h,
                    ca: o.ca_file.as_ref().map(|_| webpki()).transpose()?,
                    algs: provider.signature_verification_algorithms,
                }))
        }
        None => builder.with_webpki_verifier(webpki()?),
    };
    let mut cfg = match &o.client_cert {
        Some((cert, key)) => {
            let chain = read_certs(cert, "certificate_file")?;
            let pem = provenant_base::fsutil::read_secret(key, crate::signer::MAX_KEY_FILE_BYTES)
                .map_err(|e| ClientError::Config(format!("key_file: {e}")))?;
            let k = rustls::pki_types::PrivateKeyDer::from_pem_slice(&pem)
                .map_err(|e| config_err("key_file", key, e))?;
            builder
                .with_client_auth_cert(chain, k)
                .map_err(|e| config_err("certificate_file", cert, e))?
        }
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// An error with its sources (reqwest's own message omits the TLS reason).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = c.source();
    }
    s
}

impl Client {
    /// A client for `base`: `https://` with `tls`'s CA, pin and client certificate;
    /// `http://` only when `tls.insecure_http` says so.
    pub fn new(base: &str, timeout: Duration, tls: &TlsOptions) -> Result<Client, ClientError> {
        let mut b = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("provenant-guest-agent/", env!("CARGO_PKG_VERSION")));
        if base.starts_with("https://") {
            b = b
                .use_preconfigured_tls(rustls_config(tls)?)
                .https_only(true);
        } else if base.starts_with("http://") {
            if !tls.insecure_http {
                return Err(ClientError::Config(format!(
                    "control plane {base} is plain http://; set insecure_http = true to allow it"
                )));
            }
        } else {
            return Err(ClientError::Config(format!(
                "control plane {base} is not an http(s) URL"
            )));
        }
        let http = b.build().map_err(|e| ClientError::Config(chain(&e)))?;
        Ok(Client {
            http,
            base: base.trim_end_matches('/').to_string(),
        })
    }

    /// Fetches a fresh challenge (`GET /api/v1/challenge`) to bind into a quote.
    pub async fn challenge(&self) -> Result<Challenge, ClientError> {
        let req = self.http.get(format!("{}/api/v1/challenge", self.base));
        self.send(req).await
    }

    /// Registers the agent with its evidence (`POST /api/v1/register`).
    pub async fn register(&self, body: &RegisterRequest) -> Result<RegisterResponse, ClientError> {
        let req = self
            .http
            .post(format!("{}/api/v1/register", self.base))
            .json(body);
        self.send(req).await
    }

    /// Sends a signed pulse (`POST /api/v1/heartbeat`).
    pub async fn heartbeat(&self, pulse: &Envelope) -> Result<HeartbeatResponse, ClientError> {
        let req = self
            .http
            .post(format!("{}/api/v1/heartbeat", self.base))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(pulse.to_json());
        self.send(req).await
    }

    async fn send<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let mut resp = req.send().await.map_err(|e| {
            if e.is_connect() {
                ClientError::Unsent(chain(&e.without_url()))
            } else {
                ClientError::Transport(chain(&e.without_url()))
            }
        })?;
        let status = resp.status();
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| ClientError::Transport(e.without_url().to_string()))?
        {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(ClientError::Protocol(format!(
                    "response larger than {MAX_RESPONSE_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        if status.is_success() {
            serde_json::from_slice(&body).map_err(|e| ClientError::Protocol(e.to_string()))
        } else if status.is_server_error() && serde_json::from_slice::<ErrorBody>(&body).is_err() {
            // A proxy's 502/503 page: treat as the control plane being unreachable.
            Err(ClientError::Transport(format!("HTTP {status}")))
        } else {
            match serde_json::from_slice::<ErrorBody>(&body) {
                Ok(e) => Err(ClientError::Rejected {
                    status: status.as_u16(),
                    kind: e.error.kind,
                    detail: e.error.detail,
                }),
                Err(_) => Err(ClientError::Protocol(format!(
                    "HTTP {status} without an error body"
                ))),
            }
        }
    }
}
