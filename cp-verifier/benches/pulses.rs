//! Control-plane ingest and its ceiling, three ways, in one run, with one client:
//!
//! - (a) a no-op axum endpoint that reads the body and answers a small JSON: the
//!   HTTP stack and the client alone;
//! - (b) an endpoint that decodes the envelope and the pulse and verifies the
//!   ed25519 signature under the agent's key (looked up by the claimed agent id):
//!   the cryptographic floor of any verifier;
//! - (c) the real control plane's `/api/v1/heartbeat`: decode, verify, replay and
//!   chain checks, verdict, durable commit before the answer.
//!
//! (c) runs on each store: embedded SQLite (WAL, synchronous=FULL, group commit), one
//! PostgreSQL replica, and two replicas on the same database (agents split between
//! them as a sticky balancer would), PostgreSQL started by the bench with fsync and
//! synchronous commit on. Every row has its own (a) and (b), measured just before
//! its (c). The requests go through `cp_verifier::loadgen` (the `cp-verifier
//! loadgen` client), over loopback, every agent sending its signed chain one pulse at
//! a time, all agents concurrently. Figures are printed, never asserted (except that
//! every pulse of (c) is accepted).
//!
//! PROVENANT_BENCH_AGENTS (default 64) agents x PROVENANT_BENCH_PULSES (default 250)
//! pulses per row; PROVENANT_BENCH_STORES (default `sqlite,pg1,pg2`) picks the rows;
//! PROVENANT_BENCH_ONLY_FULL=1 runs (c) alone (for a profiler).
#![allow(clippy::as_conversions)] // bench arithmetic on counts and durations

#[path = "../tests/harness/pg.rs"]
mod pg;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use cp_verifier::loadgen::{self, LoadAgent, LoadReport};
use cp_verifier::plane::ControlPlane;
use cp_verifier::store::postgres::{PgStore, PgTarget};
use cp_verifier::store::sqlite::SqliteStore;
use cp_verifier::store::Store;
use evidence::{Envelope, PublicKey, Pulse};
use provenant_base::clock::{Clock, SystemClock};

/// No phase of a row may take longer.
const PHASE_DEADLINE: Duration = Duration::from_secs(180);

fn env_or(name: &str, d: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

async fn serve(app: axum::Router) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });
    base
}

/// (a): read the body, answer.
fn noop() -> axum::Router {
    axum::Router::new().route(
        "/noop",
        axum::routing::post(|b: axum::body::Bytes| async move {
            axum::Json(serde_json::json!({"accepted": true, "len": b.len()}))
        }),
    )
}

/// (b): bounded envelope decode, pulse decode, signature check under the claimed
/// agent's key.
fn verify_only(keys: HashMap<String, PublicKey>) -> axum::Router {
    let keys = Arc::new(keys);
    axum::Router::new().route(
        "/verify",
        axum::routing::post(move |b: axum::body::Bytes| {
            let keys = keys.clone();
            async move {
                let ok = (|| {
                    let env = Envelope::from_json(&b).ok()?;
                    let claimed = env.decode::<Pulse>().ok()?;
                    let key = keys.get(&claimed.claimed().agent_id)?;
                    let v = claimed.verify(key).ok()?;
                    Some(v.value().sequence)
                })();
                match ok {
                    Some(seq) => (
                        axum::http::StatusCode::OK,
                        axum::Json(serde_json::json!({"accepted": true, "sequence": seq})),
                    ),
                    None => (
                        axum::http::StatusCode::FORBIDDEN,
                        axum::Json(serde_json::json!({"accepted": false})),
                    ),
                }
            }
        }),
    )
}

struct Row {
    store: &'static str,
    noop: LoadReport,
    verify: LoadReport,
    full: LoadReport,
}

/// One row: `stores` are the replicas (one per control plane).
async fn row(
    label: &'static str,
    stores: Vec<Arc<dyn Store>>,
    agents: usize,
    per: usize,
    dir: &std::path::Path,
) -> Row {
    let clock = Arc::new(SystemClock);
    let fleet = LoadAgent::fleet(label, "bench", agents).unwrap();
    let mut cfg = loadgen::in_process_config(dir, &fleet);
    cfg.max_clock_skew = Duration::from_secs(600);
    let mut targets = Vec::new();
    for store in stores {
        let cp = Arc::new(ControlPlane::new(cfg.clone(), store, clock.clone()).unwrap());
        targets.push(serve(cp_verifier::http::router::router(cp).unwrap()).await);
    }
    let client = loadgen::client(agents, None).unwrap();
    let now = clock.now().get();
    let mut chains = Vec::with_capacity(agents);
    for (i, a) in fleet.iter().enumerate() {
        let head = a
            .register(&client, &targets[i % targets.len()], now)
            .await
            .unwrap();
        chains.push(a.chain(head, per, now).unwrap());
    }
    let keys = fleet
        .iter()
        .map(|a| (a.id.clone(), a.public_key().clone()))
        .collect();
    let noop_base = vec![serve(noop()).await];
    let verify_base = vec![serve(verify_only(keys)).await];

    // Warm the connection pools, then (a), (b), (c) back to back.
    let warm = chains.iter().map(|c| vec![c[0].clone()]).collect();
    loadgen::fire(&client, &noop_base, "/noop", warm, PHASE_DEADLINE).await;
    // PROVENANT_BENCH_ONLY_FULL skips (a) and (b), for profiling (c) alone.
    let only_full = std::env::var_os("PROVENANT_BENCH_ONLY_FULL").is_some();
    let (noop, verify) = if only_full {
        (LoadReport::default(), LoadReport::default())
    } else {
        (
            loadgen::fire(&client, &noop_base, "/noop", chains.clone(), PHASE_DEADLINE).await,
            loadgen::fire(
                &client,
                &verify_base,
                "/verify",
                chains.clone(),
                PHASE_DEADLINE,
            )
            .await,
        )
    };
    let full = loadgen::fire(
        &client,
        &targets,
        "/api/v1/heartbeat",
        chains,
        PHASE_DEADLINE,
    )
    .await;
    let total = (agents * per) as u64;
    if !only_full {
        assert_eq!(noop.accepted, total, "{label} no-op: {noop:?}");
        assert_eq!(verify.accepted, total, "{label} verify-only: {verify:?}");
    }
    assert_eq!(
        full.accepted, total,
        "{label}: every pulse must be accepted: {full:?}"
    );
    Row {
        store: label,
        noop,
        verify,
        full,
    }
}

async fn pg_store(url: &str) -> Arc<dyn Store> {
    let t = PgTarget::parse(url, None).unwrap();
    Arc::new(PgStore::connect(&t).await.unwrap())
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("run with `cargo bench` to measure");
        return;
    }
    let agents = env_or("PROVENANT_BENCH_AGENTS", 64);
    let per = env_or("PROVENANT_BENCH_PULSES", 250);
    let stores = std::env::var("PROVENANT_BENCH_STORES").unwrap_or("sqlite,pg1,pg2".into());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let cluster = stores
            .contains("pg")
            .then(pg::PgCluster::start_durable);
        let mut rows = Vec::new();
        for s in stores.split(',') {
            let sub = dir.path().join(s);
            let r = match s {
                "sqlite" => {
                    let st: Arc<dyn Store> = Arc::new(SqliteStore::open(&sub).await.unwrap());
                    row("sqlite", vec![st], agents, per, &sub).await
                }
                "pg1" | "pg2" => {
                    let url = cluster.as_ref().unwrap().fresh_database().await;
                    let n = if s == "pg1" { 1 } else { 2 };
                    let mut st = Vec::new();
                    for _ in 0..n {
                        st.push(pg_store(&url).await);
                    }
                    let label = if n == 1 { "postgres x1" } else { "postgres x2" };
                    row(label, st, agents, per, &sub).await
                }
                other => panic!("unknown store {other:?} in PROVENANT_BENCH_STORES"),
            };
            println!("{}: done", r.store);
            rows.push(r);
        }
        println!(
            "\n{agents} agents x {per} pulses per row, 2 tokio workers, loopback HTTP, one client\n"
        );
        println!("| store | (a) no-op /s | (b) verify-only /s | (c) full /s | (c)/(b) | (c)/(a) | (c) p50 ms | (c) p99 ms | (b) p99 ms | (a) p99 ms |");
        println!("|---|---|---|---|---|---|---|---|---|---|");
        for r in &rows {
            println!(
                "| {} | {:.0} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
                r.store,
                r.noop.accepted_per_s,
                r.verify.accepted_per_s,
                r.full.accepted_per_s,
                r.full.accepted_per_s / r.verify.accepted_per_s,
                r.full.accepted_per_s / r.noop.accepted_per_s,
                r.full.latency.p50_ms,
                r.full.latency.p99_ms,
                r.verify.latency.p99_ms,
                r.noop.latency.p99_ms,
            );
        }
        if let (Some(one), Some(two)) = (
            rows.iter().find(|r| r.store == "postgres x1"),
            rows.iter().find(|r| r.store == "postgres x2"),
        ) {
            println!(
                "\ntwo PostgreSQL replicas / one: {:.2}x",
                two.full.accepted_per_s / one.full.accepted_per_s
            );
        }
    });
}
