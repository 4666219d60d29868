//! `evidence::eventlog::parse_jsonl` (the RTMR3 runtime log) on arbitrary bytes.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| drop(evidence::eventlog::parse_jsonl(data)));
