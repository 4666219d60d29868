//! Provenant's shared basics, used by the guest agent, the control plane, the
//! signature verifier and the test tools alike: time as an injectable dependency
//! ([`clock`]), reading files whose size or permissions an attacker may control
//! ([`fsutil`]), PEM text ([`pem`]), and process plumbing (`logging`, behind the
//! `logging` feature, which the binaries turn on).
//!
//! Trust boundary: nothing here judges evidence. The crate exists so that the
//! control plane does not depend on the guest agent (which links aya, bollard and raw
//! syscalls) just to read a bounded file or ask the time, and so that each of these
//! rules is written once. It has no `unsafe` code and no network access.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod clock;
pub mod errors;
pub mod fsutil;
#[cfg(feature = "logging")]
pub mod logging;
pub mod pem;
