//! Provenant's wire formats, shared by the guest agent and the control plane.
//!
//! Trust boundary: everything here may be handed bytes straight from the network or
//! from disk. Decoding is bounded by the named limits in [`limits`], never panics, and
//! fails with a typed [`EvidenceError`]. The crate does no I/O and reads no clock:
//! time always comes in as a parameter, so every check is reproducible in a test.
//!
//! The signed unit is a DSSE envelope ([`dsse`]). Signing the exact payload bytes,
//! rather than a re-serialised structure, means the bytes the agent signed are the
//! bytes the control plane verifies, with no canonicalisation step to get wrong.
#![forbid(unsafe_code)]

pub mod api;
pub mod ccel;
pub mod codec;
pub mod dsse;
pub mod error;
pub mod eventlog;
pub mod keys;
pub mod limits;
pub mod report;
pub mod tdreport;
pub mod tdx;
pub mod verdict;

pub use dsse::{pae, report_data, Envelope, EnvelopeSignature, Unverified, Verified};
pub use error::EvidenceError;
pub use keys::{KeyAlgorithm, PublicKey};
pub use report::{
    BpfProgram, CollectorState, Digest32, Ebpf, EbpfExtra, FileMeasurement, Inventory,
    InventoryItem, Measurements, Platform, PolicyMeasurement, Pulse, Report, TeeKind, Tier,
    Workload, Workloads, PULSE_PAYLOAD_TYPE, REPORT_PAYLOAD_TYPE,
};
