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
