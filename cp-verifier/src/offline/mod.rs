//! The offline CLIs: `verify quote|bundle|image` ([`verify`]) and `measure`
//! ([`measure`]). They reuse the verifiers but never run in the server.

pub mod measure;
pub mod verify;
