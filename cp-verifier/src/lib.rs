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
pub mod verify_cli;

pub use service::revoke;

use std::sync::Arc;

use guest_agent::clock::Clock;

/// Opens the store, builds the control plane and starts its (supervised) sweeper.
pub async fn start(
    cfg: config::CpConfig,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<(Arc<service::ControlPlane>, axum::Router)> {
    let store = Arc::new(store::sqlite::SqliteStore::open(&cfg.data_dir).await?);
    let cp = Arc::new(service::ControlPlane::new(cfg, store, clock)?);
    cp.load_revocations().await?;
    cp.spawn_sweeper();
    let router = server::router(cp.clone());
    Ok((cp, router))
}
