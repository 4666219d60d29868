//! The Provenant control plane: verifies what agents report and keeps the fleet's
//! state.
//!
//! Trust boundary: every byte from agents is untrusted. Requests are bounded by
//! explicit body limits, parsed by `evidence`'s bounded decoders, and refused with a
//! typed reason. Verification reads time from an injected clock, so each decision is
//! reproducible. A state change (record, consumed nonce, alerts) is durable in the
//! store before the agent is answered.
#![forbid(unsafe_code)]

pub mod alert;
pub mod attest;
pub mod collateral;
pub mod config;
pub mod dashboard;
// The demo runs a real guest agent in-process, so it links the agent (aya, bollard).
// It is a default feature for `cargo run -p cp-verifier -- demo`; the release build
// (`ci/build-release.sh`) turns it off so the server binary links no guest code.
#[cfg(feature = "demo")]
pub mod demo;
pub mod enroll;
pub mod error;
pub mod github;
pub mod images;
pub mod judge;
pub mod measure;
pub mod provenance;
pub mod server;
pub mod service;
pub mod store;
pub mod supervise;
pub mod tdx;
pub mod transport;
pub mod verify_cli;

pub use service::revoke;

use std::sync::Arc;

use provenant_base::clock::Clock;

/// Opens the store, builds the control plane and starts its (supervised) sweeper.
pub async fn start(
    cfg: config::CpConfig,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<(Arc<service::ControlPlane>, axum::Router)> {
    let store = Arc::new(store::sqlite::SqliteStore::open(&cfg.data_dir).await?);
    let cp = Arc::new(service::ControlPlane::new(cfg, store, clock)?);
    cp.load_revocations().await?;
    cp.spawn_sweeper();
    let router = server::router(cp.clone())?;
    Ok((cp, router))
}

/// A control plane bound to its address, ready to [`Bound::serve`].
pub struct Bound {
    pub cp: Arc<service::ControlPlane>,
    /// The address actually bound (port 0 resolved).
    pub addr: std::net::SocketAddr,
    /// The loaded `[tls]` section (its `pin` is what agents may pin).
    pub tls: Option<Arc<transport::Tls>>,
    listener: tokio::net::TcpListener,
    router: axum::Router,
}

/// Plain HTTP is served on loopback only, unless the config says `insecure_http`.
pub fn check_listen(cfg: &config::CpConfig) -> anyhow::Result<()> {
    anyhow::ensure!(
        cfg.tls.is_some() || cfg.insecure_http || cfg.listen.ip().is_loopback(),
        "refusing to serve plain HTTP on {}: pulses, tokens and the dashboard would travel \
         in clear. Configure [tls] cert_file and key_file, listen on a loopback address, or \
         set insecure_http = true (only behind a TLS-terminating proxy)",
        cfg.listen
    );
    Ok(())
}

/// Checks the listening rules, loads `[tls]`, starts the control plane and binds
/// `cfg.listen`. Nothing is served until [`Bound::serve`].
pub async fn bind(cfg: config::CpConfig, clock: Arc<dyn Clock>) -> anyhow::Result<Bound> {
    use anyhow::Context;
    check_listen(&cfg)?;
    let tls = cfg
        .tls
        .as_ref()
        .map(transport::Tls::load)
        .transpose()?
        .map(Arc::new);
    let listen = cfg.listen;
    let (cp, router) = start(cfg, clock).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    Ok(Bound {
        cp,
        addr,
        tls,
        listener,
        router,
    })
}

impl Bound {
    /// Serves until `shutdown` completes.
    pub async fn serve(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> std::io::Result<()> {
        let limits = self.cp.cfg.limits.clone();
        transport::serve(self.listener, self.router, self.tls, limits, shutdown).await
    }
}
