//! Agent benchmarks (a plain bench binary; figures are printed, never asserted).
//!
//! 1. Pulse size (ed25519 envelope) at steady state with 9 and with 200 watched
//!    files (target <= 600 bytes), and after a registration; then pulse build + sign
//!    at steady state with cached measurements: p50 and p99 over many individually
//!    timed iterations. Target p50 <= 50 us.
//! 2. Hashing a 1 GiB file with the agent's `hash_file` against coreutils `sha256sum`
//!    on the same file in the same run (page cache warm for both). Target ratio >= 0.95.
//!
//! Set PROVENANT_BENCH_HASH_MIB to change the file size (default 1024).

#![allow(clippy::as_conversions)] // bench arithmetic on counts and durations

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use evidence::report::HexBytes;
use guest_agent::agent::{Agent, SentLists};
use guest_agent::collect::hash_file;
use guest_agent::config::AgentConfig;
use guest_agent::quote::NoTee;
use guest_agent::signer::{KeySigner, Signer};
use provenant_base::clock::SystemClock;

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

/// An agent watching `files` policy files (its own config is one of them), with
/// its signer and the measurements it takes.
fn bench_agent(
    dir: &std::path::Path,
    files: usize,
) -> (Agent, Arc<KeySigner>, evidence::Measurements) {
    let dir = dir.join(format!("files-{files}"));
    std::fs::create_dir_all(&dir).unwrap();
    let policy: Vec<String> = (0..files - 1)
        .map(|i| {
            let p = dir.join(format!("policy-{i}.toml"));
            std::fs::write(&p, format!("rule = {i}\n")).unwrap();
            format!("\"{}\"", p.display())
        })
        .collect();
    let cfg_path = dir.join("agent.toml");
    std::fs::write(
        &cfg_path,
        format!(
            "agent_id = \"bench\"\ncontrol_plane = \"http://127.0.0.1:9\"\ninsecure_http = true\npolicy_files = [{}]\n",
            policy.join(",")
        ),
    )
    .unwrap();
    let cfg = AgentConfig::load(&cfg_path).unwrap();
    let signer = Arc::new(KeySigner::generate_ed25519().unwrap());
    let agent = Agent::new(
        cfg,
        Some(signer.clone()),
        Arc::new(NoTee),
        Arc::new(SystemClock),
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let m = rt.block_on(agent.measure()).unwrap();
    assert_eq!(m.policy.files.len(), files);
    (agent, signer, m)
}

/// Envelope bytes of the first pulse after a registration (full lists) and of a
/// steady-state pulse (digests only).
fn pulse_sizes(agent: &Agent, m: &evidence::Measurements) -> (usize, usize) {
    let full = agent
        .build_pulse(1, HexBytes([7; 32]), SentLists::default().body(m), None)
        .unwrap();
    let steady = agent
        .build_pulse(
            1_000_000,
            HexBytes([7; 32]),
            SentLists::after(m).body(m),
            None,
        )
        .unwrap();
    (full.to_json().len(), steady.to_json().len())
}

fn pulse_bench(dir: &std::path::Path) {
    for files in [9, 200] {
        let (agent, _, m) = bench_agent(dir, files);
        let (full, steady) = pulse_sizes(&agent, &m);
        let with_health = agent
            .build_pulse(
                1_000_000,
                HexBytes([7; 32]),
                SentLists::after(&m).body(&m),
                Some(guest_agent::health::collect(&["/".into()], None)),
            )
            .unwrap()
            .to_json()
            .len();
        println!(
            "pulse envelope (ed25519) with {files} watched files: steady state {steady} bytes (target <= 600), {with_health} bytes on the pulses carrying health (1 in health_every); first pulse after a registration {full} bytes"
        );
    }
    let (agent, signer, m) = bench_agent(dir, 9);
    let m = SentLists::after(&m).body(&m);
    let n = 20_000;
    let mut times = Vec::with_capacity(n);
    for i in 0..(n + 1000) {
        let t = Instant::now();
        let env = agent
            .build_pulse(i as u64, HexBytes([7; 32]), m.clone(), None)
            .unwrap();
        let d = t.elapsed();
        std::hint::black_box(env);
        if i >= 1000 {
            times.push(d); // first 1000 are warm-up
        }
    }
    times.sort();
    // Baseline in the same run: the bare ed25519 signature over the same PAE bytes,
    // the floor any pulse must pay.
    let env = agent
        .build_pulse(1, HexBytes([7; 32]), m.clone(), None)
        .unwrap();
    let pae = env.pae();
    let mut base = Vec::with_capacity(n);
    for i in 0..(n + 1000) {
        let t = Instant::now();
        let sig = signer.sign(&pae).unwrap();
        let d = t.elapsed();
        std::hint::black_box(sig);
        if i >= 1000 {
            base.push(d);
        }
    }
    base.sort();
    let p50 = pct(&times, 0.5).as_secs_f64() * 1e6;
    let b50 = pct(&base, 0.5).as_secs_f64() * 1e6;
    println!(
        "pulse build+sign (ed25519, 9 measured files, steady state, cached measurements): p50 {p50:.1} us, p99 {:.1} us over {n} runs",
        pct(&times, 0.99).as_secs_f64() * 1e6,
    );
    println!(
        "baseline bare ed25519 sign of the same {} PAE bytes: p50 {b50:.1} us; pulse/sign ratio {:.2}",
        pae.len(),
        p50 / b50
    );
}

fn hash_bench(dir: &std::path::Path) {
    let mib: usize = std::env::var("PROVENANT_BENCH_HASH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let path = dir.join("big.bin");
    {
        let mut f = std::fs::File::create(&path).unwrap();
        let mut block = vec![0u8; 1 << 20];
        for i in 0..mib {
            block[0] = i as u8;
            block[4096] = (i >> 8) as u8;
            f.write_all(&block).unwrap();
        }
        f.sync_all().unwrap();
    }
    // Warm the page cache so both sides read from memory.
    hash_file(&path).unwrap();
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    let mut ours_hex = String::new();
    let mut theirs_hex = String::new();
    for _ in 0..3 {
        let t = Instant::now();
        ours_hex = hex::encode(hash_file(&path).unwrap());
        ours.push(t.elapsed());
        let t = Instant::now();
        let out = std::process::Command::new("sha256sum")
            .arg(&path)
            .output()
            .unwrap();
        theirs.push(t.elapsed());
        theirs_hex = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_string();
    }
    assert_eq!(ours_hex, theirs_hex, "digests must agree");
    ours.sort();
    theirs.sort();
    let (o, t) = (ours[1], theirs[1]);
    let gib = mib as f64 / 1024.0;
    println!(
        "hash {mib} MiB: hash_file {:.3} s ({:.2} GiB/s), sha256sum {:.3} s ({:.2} GiB/s); throughput ratio hash_file/sha256sum = {:.3} (median of 3)",
        o.as_secs_f64(),
        gib / o.as_secs_f64(),
        t.as_secs_f64(),
        gib / t.as_secs_f64(),
        t.as_secs_f64() / o.as_secs_f64(),
    );
}

fn main() {
    // `cargo test --benches` runs bench binaries with --bench absent; keep that quick.
    if !std::env::args().any(|a| a == "--bench") {
        println!("run with `cargo bench` to measure");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    pulse_bench(dir.path());
    hash_bench(dir.path());
}
