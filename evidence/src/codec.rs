//! Decoding primitives every binary parser in Provenant shares: one bounds-checked
//! byte [`Reader`] (TDX quotes and TDREPORTs, the CCEL event log, and the control
//! plane's firmware and kernel measurer) and the [`b64`] helpers of the JSON formats.
//!
//! Trust boundary: the input is untrusted. No read panics or goes out of bounds; a
//! short input or an oversized declared length is a [`CodecError`] naming the field,
//! the offset, and how many bytes were needed and left. Each parser converts it into
//! its own typed error.

pub mod b64;
mod reader;

pub use reader::{CodecError, Reader};
