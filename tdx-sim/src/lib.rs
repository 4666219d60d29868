//! tdx-sim: a TEST-ONLY simulator of an Intel TDX platform, for Provenant's tests.
//!
//! No TDX hardware is needed. The simulator makes quotes that go through the same
//! verification code as real ones (dcap-qvl and the control plane's own checks) and
//! verify only when the TEST root CA is passed explicitly: production's default trust
//! anchor is Intel's root, which never signed anything here.
//!
//! - [`TestPki`]: the checked-in TEST root CA, PCK chain, keys and collateral
//!   (`tdx-sim/pki/`, made by the `gen-test-pki` binary).
//! - [`TdReport`], [`build_quote_v4`], [`build_quote_v5`]: TD report bodies and real
//!   signed quotes over them.
//! - [`ConfigfsKernel`]: a configfs-tsm tree on a plain directory, answering requests
//!   with signed quotes, with misbehaviours for negative tests.
//! - [`RtmrDevice`]: the `rtmrN:sha384` files of the TDX guest driver, with RTMR3
//!   extension on write.
//!
//! The collateral's TCB info and QE identity match what the quote builder reports:
//! default quotes verify as `UpToDate`, [`TdReport::out_of_date`] as `OutOfDate`.
//! Everything is valid from [`platform::VALID_FROM_UNIX`] (2025-01-01) to
//! [`platform::VALID_UNTIL_UNIX`] (2049-12-31).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod configfs;
mod fsutil;
pub mod pki;
pub mod platform;
pub mod quote;
pub mod rtmr;

pub use configfs::{Behaviour, ConfigfsKernel};
pub use pki::TestPki;
pub use quote::{build_quote_v4, build_quote_v5, TdReport};
pub use rtmr::{RtmrBehaviour, RtmrDevice};
