//! The Provenant control plane: verifies what agents report and keeps the fleet's
//! state.
//!
//! Trust boundary: every byte from agents is untrusted. Requests are bounded by
//! explicit body limits, parsed by `evidence`'s bounded decoders, and refused with a
//! typed reason. Verification reads time from an injected clock, so each decision is
//! reproducible. A state change (record, consumed nonce, alerts) is durable in the
//! store before the agent is answered.
//!
//! The modules follow the data flow (see `docs/ARCHITECTURE.md`):
//! - [`register`]: challenge, enrollment, revocation and the `/register` flow;
//! - [`attest`]: the platform evidence a registration carries: DCAP quote
//!   verification ([`attest::dcap`]), Intel collateral ([`attest::collateral`]) and
//!   the MRTD's build provenance ([`attest::provenance`]);
//! - [`heartbeat`]: the `/heartbeat` flow and the liveness sweep;
//! - [`judge`]: last-known-good comparison, workload image verification, and the
//!   verdict and badges assembled from them through `policy`;
//! - [`act`]: alerts (log, audit log, webhooks), cooldowns and operator actions;
//! - [`http`]: router, TLS transport, the one error type, views and the dashboard;
//! - [`store`]: durable state; [`model`]: the records every stage shares;
//! - [`plane`]: the control plane's state, [`wiring`]: its composition root;
//! - [`offline`]: `verify` and `measure`, the offline CLIs (never used by the server);
//! - [`loadgen`]: `cp-verifier loadgen`, a client that measures a control plane.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod act;
pub mod attest;
pub mod config;
#[cfg(feature = "demo")]
pub mod demo;
pub mod heartbeat;
pub mod http;
pub mod judge;
pub mod loadgen;
pub mod model;
pub mod offline;
pub mod plane;
pub mod register;
pub mod store;
pub mod supervise;
pub mod wiring;

pub use wiring::{bind, check_listen, start, Bound};
