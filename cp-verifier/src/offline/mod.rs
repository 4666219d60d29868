//! The offline CLIs: `verify quote|bundle|image` ([`verify`]), `measure`
//! ([`measure`]) and `collateral import` ([`collateral`]). They reuse the verifiers
//! but never run in the server.

pub mod collateral;
pub mod measure;
pub mod verify;
