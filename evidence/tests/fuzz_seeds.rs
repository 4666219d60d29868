//! The fuzz crate's hand-written seeds stay valid inputs (fuzz/README.md).

#[test]
fn eventlog_seed_is_a_valid_log() {
    let path = format!(
        "{}/../fuzz/seeds/eventlog/valid.jsonl",
        env!("CARGO_MANIFEST_DIR")
    );
    let events = evidence::eventlog::parse_jsonl(&std::fs::read(path).unwrap()).unwrap();
    assert_eq!(events.len(), 4);
    assert_eq!(events.iter().filter(|e| e.bound).count(), 3);
}

fn seed(path: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/../fuzz/seeds/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

#[test]
fn envelope_seeds_parse_and_decode() {
    let p = evidence::Envelope::from_json(&seed("envelope/pulse.json")).unwrap();
    assert_eq!(p.decode::<evidence::Pulse>().unwrap().claimed().sequence, 1);
    let r = evidence::Envelope::from_json(&seed("envelope/report.json")).unwrap();
    assert_eq!(
        r.decode::<evidence::Report>().unwrap().claimed().agent_id,
        "node-17"
    );
}

#[test]
fn payload_seeds_decode() {
    let wrap = |t: &str, b: Vec<u8>| {
        evidence::Envelope::sign(t, b, "seed", |_| Ok::<_, ()>(vec![0; 64])).unwrap()
    };
    wrap(evidence::REPORT_PAYLOAD_TYPE, seed("report/report.json"))
        .peek::<evidence::Report>()
        .unwrap();
    wrap(evidence::PULSE_PAYLOAD_TYPE, seed("pulse/pulse.json"))
        .peek::<evidence::Pulse>()
        .unwrap();
    let steady = wrap(evidence::PULSE_PAYLOAD_TYPE, seed("pulse/steady.json"))
        .peek::<evidence::Pulse>()
        .unwrap();
    assert!(steady.measurements.is_none() && steady.measurements_digest.is_some());
}

#[test]
fn register_request_seeds_parse() {
    for f in [
        "register_request/tdx.json",
        "register_request/software.json",
    ] {
        let req: evidence::api::RegisterRequest = serde_json::from_slice(&seed(f)).unwrap();
        req.envelope.peek::<evidence::Report>().unwrap();
    }
    let tdx: evidence::api::RegisterRequest =
        serde_json::from_slice(&seed("register_request/tdx.json")).unwrap();
    assert!(tdx.evidence.quote.is_some() && tdx.evidence.event_log.is_some());
}
