//! Two control planes (replicas) on one PostgreSQL database: they share the fleet,
//! refuse each other's replays, and elect one leader for the once-per-fleet jobs,
//! which another replica takes over when the leader dies. Real PostgreSQL (a
//! throwaway cluster, `harness/pg.rs`), real HTTP, real signatures.

mod harness;
use harness::*;

use std::sync::Arc;
use std::time::Duration;

use cp_verifier::store::postgres::{PgStore, PgTarget};
use cp_verifier::store::Store;

async fn shared_store(url: &str) -> Arc<PgStore> {
    Arc::new(
        PgStore::connect(&PgTarget::parse(url, None).unwrap())
            .await
            .unwrap(),
    )
}

/// Both replicas' clocks to `at`.
fn set_clocks(a: &Cp, b: &Cp, at: u64) {
    for c in [a, b] {
        c.clock.0.store(at, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_on_one_pulse_to_the_other_replays_refused_across() {
    let url = pg::shared().fresh_database().await;
    let mut a = TestAgent::new("node-1");
    let key = a.enroll();
    let (k1, k2) = (key.clone(), key);
    let r1 = start_on_store(shared_store(&url).await, |c| c.enrollment.keys.push(k1)).await;
    let r2 = start_on_store(shared_store(&url).await, |c| c.enrollment.keys.push(k2)).await;

    // A challenge issued by one replica is good on the other, once.
    let nonce = r1.challenge().await;
    let env = a.report(nonce, r1.now(), measurements(1, 1));
    let (s, v) = r2.register_env(&env).await;
    assert_eq!(s, 200, "{v}");
    a.seq = 0;
    a.head = evidence::report::HexBytes(env.digest());
    assert_ne!(r1.register_env(&env).await.0, 200, "challenge reused");

    // Pulses alternate between replicas; each sees the other's chain.
    let mut t = T0;
    for i in 0..6 {
        t += SEC;
        set_clocks(&r1, &r2, t);
        let env = a.next_pulse(t, measurements(1, 1));
        let (to, other) = if i % 2 == 0 { (&r1, &r2) } else { (&r2, &r1) };
        let (s, v) = to.pulse(&env).await;
        assert_eq!(s, 200, "pulse {i}: {v}");
        a.accepted(&env);
        // The same pulse replayed to the other replica: refused.
        let (s, v) = other.pulse(&env).await;
        assert_eq!(s, 409, "replay {i} accepted by the other replica: {v}");
    }
    let (_, v1) = r1.get("/api/v1/agents/node-1").await;
    let (_, v2) = r2.get("/api/v1/agents/node-1").await;
    assert_eq!(v1["sequence"], v2["sequence"], "{v1} {v2}");
    // A replay is alerted once, in the shared store, whichever replica saw it.
    assert_eq!(
        r1.alerts("Replay").await.len(),
        r2.alerts("Replay").await.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_sweeps_blinded_once_and_a_follower_takes_over() {
    let url = pg::shared().fresh_database().await;
    let mut a = TestAgent::new("node-1");
    let key = a.enroll();
    let (s1, s2) = (shared_store(&url).await, shared_store(&url).await);
    let fast = |c: &mut cp_verifier::config::CpConfig| {
        c.sweep_interval = Duration::from_millis(50);
    };
    let k1 = key.clone();
    let r1 = start_on_store(s1.clone(), |c| {
        fast(c);
        c.enrollment.keys.push(k1)
    })
    .await;
    let r2 = start_on_store(s2.clone(), |c| {
        fast(c);
        c.enrollment.keys.push(key)
    })
    .await;

    // Exactly one leader.
    let l1 = s1.fleet_leader().await;
    let l2 = s2.fleet_leader().await;
    assert!(l1 ^ l2, "leaders: {l1} {l2}");
    let (leader, follower) = if l1 { (&s1, &s2) } else { (&s2, &s1) };
    // Asking again changes nothing (the lock is not stacked or lost).
    assert!(leader.fleet_leader().await);
    assert!(!follower.fleet_leader().await);

    assert_eq!(r1.register(&mut a, measurements(1, 1)).await.0, 200);
    // Both replicas' sweepers run; the agent goes silent for an hour.
    r1.cp.spawn_sweeper();
    r2.cp.spawn_sweeper();
    set_clocks(&r1, &r2, T0 + 3600 * SEC);
    let t0 = std::time::Instant::now();
    while r1.alerts("Blinded").await.is_empty() {
        assert!(t0.elapsed() < Duration::from_secs(20), "no Blinded alert");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Many more sweeps on both replicas: still one Blinded alert.
    set_clocks(&r1, &r2, T0 + 7200 * SEC);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(r1.alerts("Blinded").await.len(), 1);
    assert_eq!(r2.alerts("Blinded").await.len(), 1);

    // The leader's session dies (as with a crashed process or a cut connection):
    // PostgreSQL releases its lock, the leader notices at its next check, and the
    // follower takes over.
    let pid = leader.leader_backend_pid().await.expect("a leader session");
    sqlx::query("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .execute(follower.pool())
        .await
        .unwrap();
    let t0 = std::time::Instant::now();
    loop {
        let (l, f) = (leader.fleet_leader().await, follower.fleet_leader().await);
        if f && !l {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "no take-over: {l} {f}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The old leader stays a follower while the new one lives.
    assert!(!leader.fleet_leader().await);
    // A leader that resigns hands over too. The sweepers stop first: each asks for
    // leadership every 50 ms, and the resigned replica's own sweeper could take the
    // released lock back before the other replica asks.
    r1.cp.shutdown();
    r2.cp.shutdown();
    tokio::time::sleep(Duration::from_millis(200)).await;
    follower.resign_leadership().await;
    assert!(leader.fleet_leader().await);
    assert!(!follower.fleet_leader().await);
}

/// A severity-1 alert is posted to the webhook once, although both replicas run an
/// outbox sender on the shared outbox: only the leader delivers. The receiver is
/// slow (1 s per POST), so a second sender would find the entry still due.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_outbox_delivers_once_across_replicas() {
    use std::sync::Mutex;
    let got: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook/SECRET", listener.local_addr().unwrap());
    let g = got.clone();
    let app = axum::Router::new().route(
        "/hook/SECRET",
        axum::routing::post(move |axum::Json(v): axum::Json<serde_json::Value>| {
            let g = g.clone();
            async move {
                g.lock().unwrap().push(v);
                tokio::time::sleep(Duration::from_secs(1)).await;
                "ok"
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });

    let db = pg::shared().fresh_database().await;
    let mut a = TestAgent::new("node-1");
    let key = a.enroll();
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let (k, u) = (key.clone(), url.clone());
        let r = start_on_store(shared_store(&db).await, move |c| {
            c.sweep_interval = Duration::from_millis(50);
            c.webhooks = vec![u];
            c.enrollment.keys.push(k);
        })
        .await;
        r.cp.spawn_sweeper();
        replicas.push(r);
    }
    let (r1, r2) = (&replicas[0], &replicas[1]);
    assert_eq!(r2.register(&mut a, measurements(1, 1)).await.0, 200);
    set_clocks(r1, r2, T0 + 3600 * SEC);
    let blinded = |g: &[serde_json::Value]| {
        g.iter()
            .filter(|v| v.to_string().contains("Blinded"))
            .count()
    };
    let t0 = std::time::Instant::now();
    while blinded(&got.lock().unwrap()) == 0 {
        assert!(t0.elapsed() < Duration::from_secs(20), "no webhook POST");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Long enough for both senders to poll (every 0.5 s) while the POST is slow.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    assert_eq!(
        blinded(&got.lock().unwrap()),
        1,
        "{:?}",
        got.lock().unwrap()
    );
    let (_, h) = r1.get("/healthz").await;
    assert_eq!(h["queues"]["webhook_outbox"], 0, "{h}");
}
