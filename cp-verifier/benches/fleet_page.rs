//! The fleet page's server time over a large fleet, against the JSON listing of the
//! same agents, in one run.
//!
//! A real control plane on embedded SQLite holds PROVENANT_BENCH_FLEET (default
//! 10,000) software-tier agents, registered through its public API (as
//! `cp-verifier loadgen` registers them). Each measured request is what the handler
//! does, without the HTTP stack: read the fleet from the store and judge every agent
//! (`ControlPlane::agents`), then either
//!
//! - JSON: filter, sort and cut the page, serialise `AgentPage` (`GET /api/v1/agents`);
//! - page: the same page plus the fleet counts, the recent alerts and the open alert
//!   counts, rendered through the templates (`GET /agents`).
//!
//! Figures (median and p99 of PROVENANT_BENCH_ROUNDS rounds, default 30) are printed,
//! never asserted; the fleet read alone is shown too, as the floor both share.
#![allow(clippy::as_conversions)] // bench arithmetic on counts and durations

use std::sync::Arc;
use std::time::{Duration, Instant};

use cp_verifier::http::fleet_query::{self, FleetFilter};
use cp_verifier::http::pages;
use cp_verifier::http::views::AgentPage;
use cp_verifier::loadgen::{self, LoadAgent};
use cp_verifier::plane::ControlPlane;
use cp_verifier::store::sqlite::SqliteStore;
use cp_verifier::store::Store;
use provenant_base::clock::{Clock, SystemClock};

fn env_or(name: &str, d: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn stats(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let p = |q: f64| ms(v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1]);
    (p(0.5), p(0.99))
}

async fn json(cp: &ControlPlane, f: &FleetFilter, limit: usize) -> usize {
    let all = cp.agents().await.unwrap();
    let p = fleet_query::page(all, f, None, limit);
    let body = serde_json::to_vec(&AgentPage {
        agents: p.agents,
        total: p.matched,
        next: p.next,
    })
    .unwrap();
    body.len()
}

async fn page(cp: &ControlPlane, f: &FleetFilter, limit: usize) -> usize {
    let all = cp.agents().await.unwrap();
    let alerts = cp.alerts(None, 20).await.unwrap();
    let open = cp.open_alerts().await.unwrap();
    let now = cp.now().get();
    pages::render_fleet(all, f, None, limit, &alerts, open, now)
        .unwrap()
        .len()
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("run with `cargo bench` to measure");
        return;
    }
    let n = env_or("PROVENANT_BENCH_FLEET", 10_000);
    let rounds = env_or("PROVENANT_BENCH_ROUNDS", 30);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let fleet = LoadAgent::fleet("fleet-page-bench", "node", n).unwrap();
        let cfg = loadgen::in_process_config(dir.path(), &fleet);
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).await.unwrap());
        let cp = Arc::new(ControlPlane::new(cfg, store.clone(), Arc::new(SystemClock)).unwrap());
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", l.local_addr().unwrap());
        let app = cp_verifier::http::router::router(cp.clone()).unwrap();
        tokio::spawn(async move { axum::serve(l, app).await });

        let started = Instant::now();
        let client = loadgen::client(64, None).unwrap();
        let fleet = Arc::new(fleet);
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let now = SystemClock.now().get();
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..32 {
            let (fleet, next, client, base) =
                (fleet.clone(), next.clone(), client.clone(), base.clone());
            workers.spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(a) = fleet.get(i) else { break };
                    a.register(&client, &base, now).await.unwrap();
                }
            });
        }
        while let Some(r) = workers.join_next().await {
            r.unwrap();
        }
        println!(
            "{n} agents registered through the API in {:.1} s",
            started.elapsed().as_secs_f64()
        );

        let everyone = FleetFilter::default();
        let search = FleetFilter {
            q: Some("node-99".into()),
            ..FleetFilter::default()
        };
        println!(
            "\n{n} agents, {rounds} rounds each, server time without HTTP (ms)\n\n\
             | what | JSON p50 | JSON p99 | page p50 | page p99 | page/JSON (p50) |\n|---|---|---|---|---|---|"
        );
        let mut floor = Vec::new();
        for _ in 0..rounds {
            let t = Instant::now();
            std::hint::black_box(cp.agents().await.unwrap().len());
            floor.push(t.elapsed());
        }
        let (f50, f99) = stats(floor);
        let mut scan = Vec::new();
        for _ in 0..rounds {
            let t = Instant::now();
            std::hint::black_box(store.scan_agents().await.unwrap().len());
            scan.push(t.elapsed());
        }
        let (s50, s99) = stats(scan);
        // The driver's share: the scan's query alone (the record text is read for the
        // keyed hash that lets a scan reuse decoded records), over a connection of its
        // own; and what cloning every record once costs (a scan returns owned records).
        let mut raw = Vec::new();
        {
            use sqlx::Connection;
            let mut c = sqlx::SqliteConnection::connect(&format!(
                "sqlite://{}?mode=ro",
                dir.path().join("provenant.db").display()
            ))
            .await
            .unwrap();
            for _ in 0..rounds {
                let t = Instant::now();
                let rows = sqlx::query(
                    "SELECT record, version, last_seen_ns, blinded, sequence, chain_head, agent_id FROM agents ORDER BY agent_id",
                )
                .fetch_all(&mut c)
                .await
                .unwrap();
                std::hint::black_box(rows.len());
                raw.push(t.elapsed());
            }
        }
        let (r50, r99) = stats(raw);
        let records = store.list_agents().await.unwrap();
        let mut cl = Vec::new();
        for _ in 0..rounds {
            let t = Instant::now();
            std::hint::black_box(records.clone());
            cl.push(t.elapsed());
        }
        let (c50, c99) = stats(cl);
        let only_floor = std::env::var_os("PROVENANT_BENCH_ONLY_FLOOR").is_some();
        for (what, f, limit) in [
            ("first 100 of the fleet", &everyone, 100),
            ("first 1,000 of the fleet", &everyone, 1000),
            ("search `node-99` (111 match)", &search, 100),
        ] {
            if only_floor {
                break;
            }
            let (mut j, mut p) = (Vec::new(), Vec::new());
            for _ in 0..rounds {
                let t = Instant::now();
                std::hint::black_box(json(&cp, f, limit).await);
                j.push(t.elapsed());
                let t = Instant::now();
                std::hint::black_box(page(&cp, f, limit).await);
                p.push(t.elapsed());
            }
            let (j50, j99) = stats(j);
            let (p50, p99) = stats(p);
            println!(
                "| {what} | {j50:.1} | {j99:.1} | {p50:.1} | {p99:.1} | {:.2} |",
                p50 / j50
            );
        }
        println!("| fleet read and judged alone (`ControlPlane::agents`) | {f50:.1} | {f99:.1} | | | |");
        println!("| of which the store scan and record decoding (`Store::scan_agents`) | {s50:.1} | {s99:.1} | | | |");
        println!(
            "| of which the SQLite driver reading every row (`fetch_all`) | {r50:.1} | {r99:.1} | | | |"
        );
        println!("| cloning every record once (`Vec<AgentRecord>::clone`) | {c50:.1} | {c99:.1} | | | |");
    });
}
