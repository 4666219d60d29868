//! `guest-agent`'s `agent.toml` loader (`AgentConfig::load`: bounded read, TOML,
//! serde with `deny_unknown_fields`, the semantic checks) on arbitrary bytes. Must
//! return a typed error or a config, never panic.
#![no_main]
use std::io::Write;
use std::sync::OnceLock;

static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let dir = DIR.get_or_init(|| tempfile::tempdir().expect("temp dir"));
    let path = dir.path().join("agent.toml");
    let mut f = std::fs::File::create(&path).expect("create");
    f.write_all(data).expect("write");
    drop(f);
    let _ = guest_agent::config::AgentConfig::load(&path);
});
