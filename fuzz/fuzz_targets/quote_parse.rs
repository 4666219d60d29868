//! `evidence::tdx::Quote::parse` on arbitrary bytes: must return, never panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| drop(evidence::tdx::Quote::parse(data)));
