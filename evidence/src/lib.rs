//! Provenant's wire formats, shared by the guest agent and the control plane: the
//! statements an agent signs ([`Report`], [`Pulse`], with their [`Inventory`] lists),
//! the DSSE envelopes that carry them ([`dsse`]) and the keys that sign them
//! ([`keys`]), the HTTP bodies ([`api`], [`verdict`]), and parsers for TDX evidence
//! (quotes in [`tdx`], [`tdreport`], the firmware log in [`ccel`], the RTMR3
//! [`eventlog`]).
//!
//! Trust boundary: everything here may be handed bytes straight from the network or
//! from disk. Decoding is bounded by the named limits in [`limits`], reads binary
//! input only through [`codec::Reader`], never panics, and fails with a typed error
//! ([`EvidenceError`] for the signed formats). The crate does no I/O and reads no
//! clock: time always comes in as a parameter, so every check is reproducible in a
//! test. It checks envelope signatures under a key it is given (only that builds a
//! [`Verified`]) and field bounds; it does not decide whether a key may speak for an
//! agent, verify quotes or collateral, or judge what a measurement means: the control
//! plane and the `policy` crate do.
//!
//! The signed unit is a DSSE envelope ([`dsse`]). Signing the exact payload bytes,
//! rather than a re-serialised structure, means the bytes the agent signed are the
//! bytes the control plane verifies, with no canonicalisation step to get wrong.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod api;
pub mod ccel;
pub mod codec;
pub mod dsse;
pub mod error;
pub mod eventlog;
pub mod keys;
pub mod limits;
#[cfg(feature = "openapi")]
mod openapi;
pub mod report;
pub mod tdreport;
pub mod tdx;
pub mod verdict;

pub use dsse::{pae, report_data, Envelope, EnvelopeSignature, Unverified, Verified};
pub use error::EvidenceError;
pub use keys::{KeyAlgorithm, PublicKey};
pub use report::{
    BpfProgram, ClockSync, CollectorState, Digest32, DiskFree, Ebpf, EbpfExtra, FileMeasurement,
    Health, Inventory, InventoryItem, Measurements, Platform, PolicyMeasurement, Pulse, Report,
    TeeKind, Tier, Workload, Workloads, PULSE_PAYLOAD_TYPE, REPORT_PAYLOAD_TYPE,
};
