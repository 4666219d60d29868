//! The control plane's listener: HTTPS on rustls (mTLS with a client CA) or plain
//! HTTP/1.1, with the server's limits: a TLS handshake deadline, a header deadline
//! (which also bounds an idle keep-alive connection), an idle timeout for a stalled
//! connection, a cap on open connections overall and per source. Every request
//! carries a [`Peer`] extension naming its source and what certificate it presented.
//! Request body deadlines and rate limits are the router's (`http::router`).

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tower::ServiceExt;

use crate::config::{Limits, TlsConfig};

/// Largest certificate or CA file read.
const MAX_PEM_BYTES: u64 = 1024 * 1024;
/// Largest private key file read.
const MAX_KEY_BYTES: u64 = 64 * 1024;
/// How long open connections get to finish after shutdown is asked.
const DRAIN: Duration = Duration::from_secs(5);

/// Who is on the other end of a request's connection (a request extension set by
/// [`serve`]).
#[derive(Debug, Clone)]
pub struct Peer {
    /// The peer's address.
    pub addr: SocketAddr,
    /// The connection presented a client certificate that verified against
    /// `[tls] operator_ca_file`.
    pub operator_cert: bool,
    /// The connection presented a client certificate that verified (agent or
    /// operator CA).
    pub client_cert: bool,
    /// The subject CNs and DNS SANs of a client certificate that verified against
    /// `[tls] client_ca_file` (the agents' CA): who the channel is authenticated as.
    /// Empty without one.
    pub agent_names: Vec<String>,
}

/// A loaded `[tls]` section.
pub struct Tls {
    acceptor: tokio_rustls::TlsAcceptor,
    operator: Option<Arc<dyn ClientCertVerifier>>,
    agents: Option<Arc<dyn ClientCertVerifier>>,
    /// `sha256:<hex>` of the server certificate's SubjectPublicKeyInfo: what an
    /// agent's `control_plane_pin` names.
    pub pin: String,
    /// Whether every connection must present a client certificate.
    pub mtls: bool,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("pin", &self.pin)
            .field("mtls", &self.mtls)
            .field("operator_ca", &self.operator.is_some())
            .finish_non_exhaustive()
    }
}

fn read_certs(path: &Path, what: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let b = provenant_base::fsutil::read_bounded(path, MAX_PEM_BYTES)
        .map_err(|e| anyhow::anyhow!("{what} {}: {e}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&b)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("{what} {}: {e}", path.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "{what} {} holds no PEM CERTIFICATE",
        path.display()
    );
    Ok(certs)
}

fn read_roots(path: &Path, what: &str) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for c in read_certs(path, what)? {
        roots
            .add(c)
            .map_err(|e| anyhow::anyhow!("{what} {}: {e}", path.display()))?;
    }
    Ok(roots)
}

/// `sha256:<hex>` of a certificate's DER SubjectPublicKeyInfo.
pub fn spki_pin(cert_der: &[u8]) -> anyhow::Result<String> {
    use der::{Decode, Encode};
    use sha2::{Digest, Sha256};
    let c = x509_cert::Certificate::from_der(cert_der)
        .map_err(|e| anyhow::anyhow!("certificate: {e}"))?;
    let spki = c
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|e| anyhow::anyhow!("certificate key: {e}"))?;
    Ok(format!("sha256:{}", hex::encode(Sha256::digest(spki))))
}

impl Tls {
    /// Loads the certificate, key and client CAs `cfg` names, and builds the acceptor.
    pub fn load(cfg: &TlsConfig) -> anyhow::Result<Tls> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certs = read_certs(&cfg.cert_file, "[tls] cert_file")?;
        let key_pem = provenant_base::fsutil::read_secret(&cfg.key_file, MAX_KEY_BYTES)
            .map_err(|e| anyhow::anyhow!("[tls] key_file: {e}"))?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
            anyhow::anyhow!(
                "[tls] key_file {}: no usable PEM private key ({e})",
                cfg.key_file.display()
            )
        })?;
        let pin = spki_pin(&certs[0])
            .map_err(|e| anyhow::anyhow!("[tls] cert_file {}: {e}", cfg.cert_file.display()))?;
        let client = cfg
            .client_ca_file
            .as_deref()
            .map(|p| read_roots(p, "[tls] client_ca_file"))
            .transpose()?;
        let operator = cfg
            .operator_ca_file
            .as_deref()
            .map(|p| read_roots(p, "[tls] operator_ca_file"))
            .transpose()?;
        let build = |roots: RootCertStore, optional: bool| {
            let b = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let b = if optional {
                b.allow_unauthenticated()
            } else {
                b
            };
            b.build()
                .map_err(|e| anyhow::anyhow!("[tls] client certificate verifier: {e}"))
        };
        let verifier = match (&client, &operator) {
            (None, None) => WebPkiClientVerifier::no_client_auth(),
            (Some(c), o) => {
                let mut all = c.clone();
                if let Some(o) = o {
                    all.roots.extend(o.roots.iter().cloned());
                }
                build(all, false)?
            }
            (None, Some(o)) => build(o.clone(), true)?,
        };
        let operator = operator.map(|o| build(o, false)).transpose()?;
        let agents = client
            .as_ref()
            .map(|c| build(c.clone(), false))
            .transpose()?;
        let mut sc = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| anyhow::anyhow!("TLS: {e}"))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)
            .map_err(|e| {
                anyhow::anyhow!(
                    "[tls] cert_file {} and key_file {}: {e}",
                    cfg.cert_file.display(),
                    cfg.key_file.display()
                )
            })?;
        sc.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(sc)),
            operator,
            agents,
            pin,
            mtls: client.is_some(),
        })
    }

    /// Whether the handshake's client chain verifies against the operator CA.
    fn is_operator(&self, chain: Option<&[CertificateDer<'static>]>) -> bool {
        match (&self.operator, chain) {
            (Some(v), Some([leaf, rest @ ..])) => {
                v.verify_client_cert(leaf, rest, UnixTime::now()).is_ok()
            }
            _ => false,
        }
    }

    /// The names (CN, DNS SANs) of a client chain that verifies against the agents'
    /// CA alone; none otherwise (an operator certificate names no agent).
    fn agent_names(&self, chain: Option<&[CertificateDer<'static>]>) -> Vec<String> {
        match (&self.agents, chain) {
            (Some(v), Some([leaf, rest @ ..]))
                if v.verify_client_cert(leaf, rest, UnixTime::now()).is_ok() =>
            {
                crate::register::enroll::der_cert_names(leaf)
            }
            _ => Vec::new(),
        }
    }
}

/// Open connections per source; a slot is given back when its guard drops.
#[derive(Default)]
struct PerSource(Mutex<HashMap<IpAddr, usize>>);

struct SourceSlot(Arc<PerSource>, IpAddr);

impl PerSource {
    fn take(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<SourceSlot> {
        let key = crate::model::source_addr(ip);
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(key).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(SourceSlot(self.clone(), key))
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut m = self.0 .0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.1) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.1);
            }
        }
    }
}

/// An IO that records when it last made progress, for the idle timeout.
struct Watched<T> {
    io: T,
    epoch: Instant,
    last_ms: Arc<AtomicU64>,
}

impl<T> Watched<T> {
    fn touch(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then gives open
/// connections a few seconds to finish. With `tls`, every connection is HTTPS.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<Tls>>,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let per_source = Arc::new(PerSource::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let limits = Arc::new(limits);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.map_err(std::io::Error::other)?,
            () = &mut shutdown => break,
        };
        let (tcp, addr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(slot) = per_source.take(addr.ip(), limits.max_connections_per_ip) else {
            tracing::debug!(%addr, "connection refused: too many from this source");
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (router, tls, limits, stop) =
            (router.clone(), tls.clone(), limits.clone(), stop_rx.clone());
        tokio::spawn(async move {
            let _held = (permit, slot);
            match tls {
                Some(tls) => {
                    let hs = tokio::time::timeout(
                        limits.tls_handshake_timeout,
                        tls.acceptor.accept(tcp),
                    )
                    .await;
                    let stream = match hs {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(%addr, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%addr, "TLS handshake timed out");
                            return;
                        }
                    };
                    let chain = stream.get_ref().1.peer_certificates();
                    let peer = Peer {
                        addr,
                        client_cert: chain.is_some_and(|c| !c.is_empty()),
                        operator_cert: tls.is_operator(chain),
                        agent_names: tls.agent_names(chain),
                    };
                    connection(stream, peer, router, &limits, stop).await;
                }
                None => {
                    let peer = Peer {
                        addr,
                        client_cert: false,
                        operator_cert: false,
                        agent_names: Vec::new(),
                    };
                    connection(tcp, peer, router, &limits, stop).await;
                }
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection holds a permit: all back means all closed.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(DRAIN + Duration::from_secs(1), slots.acquire_many(all)).await;
    Ok(())
}

async fn connection<T>(
    io: T,
    peer: Peer,
    router: Router,
    limits: &Limits,
    mut stop: watch::Receiver<bool>,
) where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let epoch = Instant::now();
    let last_ms = Arc::new(AtomicU64::new(0));
    let io = Watched {
        io,
        epoch,
        last_ms: last_ms.clone(),
    };
    let addr = peer.addr;
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(peer.clone());
        router.clone().oneshot(req.map(axum::body::Body::new))
    });
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(64 * 1024);
    let conn = b.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let idle = limits.idle_timeout;
    let tick = (idle / 4).max(Duration::from_millis(50));
    let mut draining: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%addr, error = %e, "connection ended");
                }
                return;
            }
            _ = tokio::time::sleep(tick) => {
                let last = Duration::from_millis(last_ms.load(Ordering::Relaxed));
                if epoch.elapsed().saturating_sub(last) > idle {
                    tracing::debug!(%addr, "closing an idle connection");
                    return;
                }
                if draining.is_some_and(|d| tokio::time::Instant::now() > d) {
                    return;
                }
            }
            r = stop.changed(), if draining.is_none() => {
                let _ = r;
                conn.as_mut().graceful_shutdown();
                draining = Some(tokio::time::Instant::now() + DRAIN);
            }
        }
    }
}
