//! The Provenant guest agent: it measures the guest, binds the measurements to the
//! platform, signs them, and keeps the control plane informed with signed pulses.
//!
//! Trust boundary: the agent trusts its own binary and its config; it does not trust
//! the network. Everything it sends is signed, and nothing it receives changes what
//! it measures. A missing key or TEE is a visible, logged state, never a fake pass.
// Denied, not forbidden: `quote::ioctl` holds one unsafe call (an ioctl), `health`
// one (adjtimex), and `bpfsys` the raw bpf() syscalls of the eBPF collector.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod agent;
pub mod api;
pub mod api_schema;
pub mod bpfsys;
pub mod client;
pub mod collect;
pub mod config;
pub mod ebpf;
pub mod health;
pub mod pull;
pub mod quote;
pub mod rtmr;
pub mod signer;
pub mod state;
pub mod workloads;
