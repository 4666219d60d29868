//! The CCEL table parser, and the event log parser plus RTMR replay, on arbitrary bytes.
#![no_main]
use evidence::ccel::{CcelTable, EventLog};
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    drop(CcelTable::parse(data));
    drop(EventLog::parse(data).map(|log| log.replay()));
});
