//! The control plane's config loader (`CpConfig::load`: bounded read, TOML, serde
//! with `deny_unknown_fields`, and `check()`, which validates the `[images]` policy,
//! `[provenance]`, enrollment and webhooks) on arbitrary bytes. Must return a typed
//! error or a config, never panic.
#![no_main]
use std::io::Write;
use std::sync::OnceLock;

static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let dir = DIR.get_or_init(|| tempfile::tempdir().expect("temp dir"));
    let path = dir.path().join("cp.toml");
    let mut f = std::fs::File::create(&path).expect("create");
    f.write_all(data).expect("write");
    drop(f);
    let _ = cp_verifier::config::CpConfig::load(&path);
});
