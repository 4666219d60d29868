//! Control-plane throughput: verified pulses per second over loopback HTTP against
//! the real server (ed25519 verification, replay and chain checks, SQLite WAL with
//! synchronous=FULL and group commit), compared with a no-op axum endpoint that
//! reads the same bodies, in the same run, with the same client and concurrency.
//! Figures are printed, never asserted. Targets: >= 5,000/s and >= 0.5x the no-op.
//!
//! PROVENANT_BENCH_AGENTS (default 64) agents each send PROVENANT_BENCH_PULSES
//! (default 250) pre-signed pulses in chain order, all agents concurrently.
#![allow(clippy::as_conversions)] // bench arithmetic on counts and durations

use std::sync::Arc;
use std::time::{Duration, Instant};

use cp_verifier::config::{CpConfig, EnrolledKey};
use cp_verifier::plane::ControlPlane;
use cp_verifier::store::sqlite::SqliteStore;
use evidence::api::{RegisterEvidence, RegisterRequest};
use evidence::report::HexBytes;
use evidence::{
    Digest32, Envelope, FileMeasurement, Measurements, Platform, PolicyMeasurement, Pulse, Report,
    TeeKind, Tier, PULSE_PAYLOAD_TYPE, REPORT_PAYLOAD_TYPE,
};
use guest_agent::agent::sign_payload;
use guest_agent::signer::{KeySigner, Signer};
use provenant_base::clock::{Clock, SystemClock};

fn env_or(name: &str, d: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn measurements() -> Measurements {
    Measurements {
        agent_binary: HexBytes([1; 32]),
        policy: PolicyMeasurement::from_files(
            (0..4)
                .map(|i| FileMeasurement {
                    path: format!("/etc/provenant/policy-{i}.toml"),
                    sha256: HexBytes([i; 32]),
                })
                .collect(),
        ),
        platform: Platform {
            tee: TeeKind::None,
            tpm_present: false,
            kernel_cmdline_sha256: Some(HexBytes([9; 32])),
            lockdown: None,
        },
        workloads: None,
        ebpf: None,
    }
}

async fn fire(base: &str, path: &str, bodies: Vec<Vec<Vec<u8>>>) -> (Duration, usize) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(bodies.len())
        .build()
        .unwrap();
    let url = format!("{base}{path}");
    let start = Instant::now();
    let mut tasks = Vec::new();
    for chain in bodies {
        let client = client.clone();
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let mut ok = 0;
            for b in chain {
                let r = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(b)
                    .send()
                    .await
                    .unwrap();
                let s = r.status();
                let _ = r.bytes().await;
                if s.is_success() {
                    ok += 1;
                }
            }
            ok
        }));
    }
    let mut ok = 0;
    for t in tasks {
        ok += t.await.unwrap();
    }
    (start.elapsed(), ok)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("run with `cargo bench` to measure");
        return;
    }
    let agents = env_or("PROVENANT_BENCH_AGENTS", 64);
    let per = env_or("PROVENANT_BENCH_PULSES", 250);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let signers: Vec<KeySigner> = (0..agents).map(|_| KeySigner::generate_ed25519().unwrap()).collect();
        let mut cfg = CpConfig::with_data_dir(&dir.path().join("db"));
        cfg.max_clock_skew = Duration::from_secs(600);
        // Every bench agent registers from one address at once.
        cfg.limits.challenge_rate = 1e9;
        cfg.limits.challenge_burst = u32::MAX;
        cfg.limits.register_rate = 1e9;
        cfg.limits.register_burst = u32::MAX;
        cfg.enrollment.keys = signers
            .iter()
            .enumerate()
            .map(|(i, s)| EnrolledKey { agent_id: format!("bench-{i}"), fingerprint: s.public_key().fingerprint() })
            .collect();
        let store = Arc::new(SqliteStore::open(&cfg.data_dir).await.unwrap());
        let clock = Arc::new(SystemClock);
        let cp = Arc::new(ControlPlane::new(cfg, store, clock.clone()).unwrap());
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", l.local_addr().unwrap());
        let app = cp_verifier::http::router::router(cp.clone()).unwrap();
        tokio::spawn(async move { axum::serve(l, app).await });

        // A no-op endpoint: reads the body, answers a small JSON. Same stack minus our work.
        let noop = axum::Router::new().route(
            "/noop",
            axum::routing::post(|b: axum::body::Bytes| async move {
                axum::Json(serde_json::json!({"accepted": true, "len": b.len()}))
            }),
        );
        let nl = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let noop_base = format!("http://{}", nl.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(nl, noop).await });

        // Register every agent, then pre-sign its chain of pulses.
        let m = measurements();
        let mut bodies = Vec::with_capacity(agents);
        for (i, s) in signers.iter().enumerate() {
            let id = format!("bench-{i}");
            let ch = cp.challenge().await.unwrap();
            let report = Report {
                version: 1,
                agent_id: id.clone(),
                partition: "default".into(),
                tier: Tier::Software,
                issued_at_ns: clock.now().get(),
                nonce: ch.nonce,
                sequence: 0,
                previous_pulse: None,
                heartbeat_key: s.public_key().clone(),
                heartbeat_interval_ms: 30_000,
                agent_version: "bench".into(),
                measurements: m.clone(),
            };
            let env = sign_payload(s, REPORT_PAYLOAD_TYPE, &report).unwrap();
            let head: Digest32 = HexBytes(env.digest());
            cp.register(RegisterRequest { envelope: env, evidence: RegisterEvidence::default() })
                .await
                .unwrap();
            let mut prev = head;
            let mut chain = Vec::with_capacity(per);
            for seq in 1..=per as u64 {
                let p = Pulse {
                    version: 1,
                    agent_id: id.clone(),
                    partition: "default".into(),
                    sequence: seq,
                    issued_at_ns: clock.now().get(),
                    nonce: HexBytes(rand::random()),
                    previous: prev,
                    measurements: Some(m.clone()),
                    measurements_digest: None,
                    health: None,
                };
                let env: Envelope = sign_payload(s, PULSE_PAYLOAD_TYPE, &p).unwrap();
                prev = HexBytes(env.digest());
                chain.push(env.to_json());
            }
            bodies.push(chain);
        }
        let total = agents * per;
        let body_len = bodies[0][0].len();

        // Warm both servers' connection pools briefly, then measure: no-op first, then
        // the control plane, then the no-op again to see drift.
        if std::env::var("PROVENANT_BENCH_ONLY_CP").is_ok() {
            // For profiling the control plane alone.
            let (v, ok_v) = fire(&base, "/api/v1/heartbeat", bodies).await;
            assert_eq!(ok_v, total);
            println!("control plane only: {:.0} pulses/s", total as f64 / v.as_secs_f64());
            return;
        }
        let warm: Vec<Vec<Vec<u8>>> = bodies.iter().map(|c| vec![c[0].clone()]).collect();
        fire(&noop_base, "/noop", warm).await;
        let (n1, ok_n1) = fire(&noop_base, "/noop", bodies.clone()).await;
        let (v, ok_v) = fire(&base, "/api/v1/heartbeat", bodies.clone()).await;
        let (n2, ok_n2) = fire(&noop_base, "/noop", bodies).await;
        assert_eq!(ok_v, total, "every pulse must be accepted");
        assert_eq!(ok_n1 + ok_n2, 2 * total);
        let rate = |d: Duration| total as f64 / d.as_secs_f64();
        let noop_rate = (rate(n1) + rate(n2)) / 2.0;
        println!(
            "control plane: {total} pulses ({agents} agents x {per}, {body_len}-byte envelopes) verified and stored in {:.2} s = {:.0} pulses/s",
            v.as_secs_f64(),
            rate(v)
        );
        println!(
            "no-op axum endpoint, same bodies and client: {:.0} req/s and {:.0} req/s (mean {:.0})",
            rate(n1),
            rate(n2),
            noop_rate
        );
        println!("ratio control plane / no-op = {:.2}", rate(v) / noop_rate);
        let seq = cp.agents().await.unwrap().iter().map(|a| a.sequence).min().unwrap();
        assert_eq!(seq, per as u64);
    });
}
