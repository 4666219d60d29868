//! The body of `/api/v1/register` (`RegisterRequest`) on arbitrary bytes, taken
//! through every parser the control plane runs on it before any cryptography: the
//! JSON, the report envelope and payload, the base64 quote and its DCAP parser, the
//! RTMR3 event log and the certificate chain's PEM blocks. Must return, never panic.
#![no_main]
use base64::Engine;
use evidence::api::RegisterRequest;
use evidence::Report;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(req) = serde_json::from_slice::<RegisterRequest>(data) else {
        return;
    };
    let _ = req.envelope.peek::<Report>();
    let _ = evidence::report_data(&req.envelope);
    if let Some(q) = &req.evidence.quote {
        if let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(q) {
            let _ = evidence::tdx::Quote::parse(&raw);
        }
    }
    if let Some(log) = &req.evidence.event_log {
        if let Ok(events) = evidence::eventlog::parse_jsonl(log.as_bytes()) {
            let _ = evidence::eventlog::replay(&events);
        }
    }
    for pem in &req.evidence.certificate_chain {
        let _ = x509_cert::Certificate::load_pem_chain(pem.as_bytes());
    }
});
