//! Replays, alert floods, webhook delivery, tier downgrades and the supervised
//! sweeper, against a real control plane on loopback (real SQLite, real HTTP, a real
//! webhook receiver on 127.0.0.1); only the clock is pinned.

mod harness;
use harness::*;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use evidence::api::{RegisterEvidence, RegisterRequest};
use evidence::report::HexBytes;
use evidence::{Report, Tier, REPORT_PAYLOAD_TYPE};
use guest_agent::agent::sign_payload;
use guest_agent::signer::Signer;
use serde_json::Value;

/// A webhook receiver on 127.0.0.1 that records every POST body.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Value>>>,
}

impl Receiver {
    /// Serves on `listener`; the URL has a secret path, as real webhooks do.
    fn serve(&self, listener: tokio::net::TcpListener) -> String {
        let url = format!(
            "http://{}/hook/SECRET-TOKEN",
            listener.local_addr().unwrap()
        );
        let got = self.got.clone();
        let app = axum::Router::new().route(
            "/hook/SECRET-TOKEN",
            axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
                let got = got.clone();
                async move {
                    got.lock().unwrap().push(v);
                    "ok"
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }
    async fn start(&self) -> String {
        self.serve(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap())
    }
    fn bodies(&self) -> Vec<Value> {
        self.got.lock().unwrap().clone()
    }
    /// Waits until `pred` holds for the bodies received (or 10 s).
    async fn until(&self, what: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        for _ in 0..200 {
            let b = self.bodies();
            if pred(&b) {
                return b;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("webhook receiver: {what}; got {:?}", self.bodies());
    }
}

fn codes(v: &Value) -> Vec<String> {
    v["verdict"]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap().to_string())
        .collect()
}

/// An old captured pulse re-posted (it travels in clear) is refused quietly and
/// counted: no red verdict, no alert per request. The exact accepted pulse again is
/// a harmless duplicate. A fork inside the skew window (a second pulse the key signed
/// for a used sequence) is still red.
#[tokio::test]
async fn finding03_old_pulse_replay_does_not_turn_agent_red() {
    let mut a = TestAgent::new("node-1");
    let cp = start(|c| c.enrollment.keys.push(a.enroll())).await;
    assert_eq!(cp.register(&mut a, measurements(1, 1)).await.0, 200);
    let mut old = Vec::new();
    // 60 s of pulses, one a second: the first ones fall outside the 30 s skew window.
    for _ in 0..60 {
        cp.clock.advance(Duration::from_secs(1));
        let env = a.next_pulse(cp.now(), measurements(1, 1));
        let (s, v) = cp.pulse(&env).await;
        assert_eq!(s, 200, "{v}");
        a.accepted(&env);
        old.push(env);
    }
    // The attacker re-posts captured old pulses, again and again.
    for _ in 0..5 {
        let (s, v) = cp.pulse(&old[0]).await;
        assert_eq!((s, kind(&v)), (409, "Replay"), "{v}");
        assert!(
            v["error"]["detail"].as_str().unwrap().contains("counted"),
            "{v}"
        );
    }
    let (s, _) = cp.pulse(&old[3]).await;
    assert_eq!(s, 409);
    // The exact last accepted pulse again (a retry), and an accepted one still inside
    // the window: duplicates, quiet.
    assert_eq!(cp.pulse(&old[59]).await.0, 409);
    assert_eq!(cp.pulse(&old[55]).await.0, 409);

    let (_, v) = cp.get("/api/v1/agents/node-1").await;
    assert_eq!(v["badge"], "yellow", "{v}");
    assert!(!codes(&v).contains(&"ReplayDetected".to_string()), "{v}");
    assert_eq!(v["stale_replays_refused"], 6, "{v}");
    assert!(cp.alerts("Replay").await.is_empty());
    // The agent goes on; the count is written to its record with the next pulse.
    cp.clock.advance(Duration::from_secs(1));
    let env = a.next_pulse(cp.now(), measurements(1, 1));
    let (s, v) = cp.pulse(&env).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["verdict"]["status"], "warn", "{v}");
    a.accepted(&env);
    let rec = cp.cp.agent("node-1").await.unwrap();
    assert_eq!(rec.stale_replays_refused, 6);

    // A fork: the agent's key signed another pulse for the current sequence, inside
    // the window. That is red.
    let fork = a.pulse_at(a.seq, HexBytes([7; 32]), cp.now(), measurements(1, 1));
    let (s, v) = cp.pulse(&fork).await;
    assert_eq!((s, kind(&v)), (409, "Replay"), "{v}");
    assert_eq!(cp.alerts("Replay").await.len(), 1);
    let (_, v) = cp.get("/api/v1/agents/node-1").await;
    assert_eq!(v["badge"], "red", "{v}");
    assert!(codes(&v).contains(&"ReplayDetected".to_string()), "{v}");
}

/// A registration that answers no open challenge writes nothing, not even the
/// enrollment alert.
#[tokio::test]
async fn finding04_challenge_is_checked_before_any_write() {
    let enrolled = TestAgent::new("node-1");
    let cp = start(|c| c.enrollment.keys.push(enrolled.enroll())).await;
    for i in 0..20 {
        let stranger = TestAgent::new(&format!("ghost-{i}"));
        let env = stranger.report(HexBytes(rand::random()), cp.now(), measurements(1, 1));
        let (s, v) = cp.register_env(&env).await;
        assert_eq!((s, kind(&v)), (403, "BadChallenge"), "{v}");
    }
    assert!(cp.alerts("Unenrolled").await.is_empty());
    let audit = std::fs::read_to_string(cp.dir.path().join("audit.jsonl")).unwrap_or_default();
    assert!(audit.is_empty(), "{audit}");
}

/// 1,000 unenrolled registrations with fresh keys and ids from one source: one alert
/// (and one webhook POST) per source per cooldown window, then one summary with the
/// count and a sample of the claimed ids.
#[tokio::test]
async fn finding04_unenrolled_flood_is_bounded() {
    let rx = Receiver::default();
    let url = rx.start().await;
    let enrolled = TestAgent::new("node-1");
    let cp = Arc::new(
        start(|c| {
            c.enrollment.keys.push(enrolled.enroll());
            c.alert_cooldown = Duration::from_secs(60);
            c.webhooks = vec![url.clone()];
        })
        .await,
    );
    const N: usize = 1000;
    let mut tasks = Vec::new();
    for chunk in 0..10 {
        let cp = cp.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..N / 10 {
                let mut a = TestAgent::new(&format!("flood-{chunk}-{i}"));
                let (s, v) = cp.register(&mut a, measurements(1, 1)).await;
                assert_eq!((s, kind(&v)), (403, "Unenrolled"), "{v}");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let alerts = cp.alerts("Unenrolled").await;
    assert_eq!(alerts.len(), 1, "first: {:?}", alerts.first());
    assert_eq!(alerts[0]["severity"], 2);
    assert!(alerts[0]["detail"]
        .as_str()
        .unwrap()
        .contains("from 127.0.0.1"));
    let got = rx.until("one Unenrolled POST", |b| !b.is_empty()).await;
    assert_eq!(got[0]["id"], alerts[0]["id"]);

    // The window closes: one summary with the count.
    cp.clock.advance(Duration::from_secs(61));
    cp.cp.sweep().await.unwrap();
    let alerts = cp.alerts("Unenrolled").await;
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    let summary = alerts[0]["detail"].as_str().unwrap();
    assert!(
        summary.contains(&format!("{} more", N - 1)) && summary.contains("flood-"),
        "{summary}"
    );
    // Nothing more to report: the next sweep is quiet.
    cp.clock.advance(Duration::from_secs(61));
    cp.cp.sweep().await.unwrap();
    assert_eq!(cp.alerts("Unenrolled").await.len(), 2);
    rx.until("two POSTs", |b| b.len() == 2).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(rx.bodies().len(), 2, "{:?}", rx.bodies());
    let audit = std::fs::read_to_string(cp.dir.path().join("audit.jsonl")).unwrap();
    assert_eq!(
        audit
            .lines()
            .filter(|l| l.contains("\"Unenrolled\""))
            .count(),
        2
    );
    // The enrolled agent still registers, and the webhook outbox drained.
    let mut e = enrolled;
    assert_eq!(cp.register(&mut e, measurements(1, 1)).await.0, 200);
    let (s, h) = cp.get("/healthz").await;
    assert_eq!(s, 200, "{h}");
    assert_eq!(h["queues"]["webhook_outbox"], 0, "{h}");
}

/// A severity-1 alert raised while the webhook is down is kept in the store's outbox
/// and delivered after a restart of the control plane, once the receiver is up.
#[tokio::test]
async fn finding04_severity1_webhook_survives_restart() {
    // A port with nothing listening: the receiver is down.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/hook/SECRET-TOKEN");
    let mut a = TestAgent::new("node-1");
    let enrolled = a.enroll();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let cp = start_with(dir, None, |c| {
        c.enrollment.keys.push(enrolled.clone());
        c.webhooks = vec![url.clone()];
    })
    .await;
    assert_eq!(cp.register(&mut a, measurements(1, 1)).await.0, 200);
    cp.clock.advance(Duration::from_secs(5));
    assert_eq!(cp.cp.sweep().await.unwrap(), 1);
    let blinded = cp.alerts("Blinded").await;
    assert_eq!(blinded.len(), 1);
    let id = blinded[0]["id"].as_str().unwrap().to_string();
    // The sender tries and fails (connection refused).
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (_, h) = cp.get("/healthz").await;
    assert_eq!(h["queues"]["webhook_outbox"], 1, "{h}");
    // The control plane stops.
    cp.cp.shutdown();
    let Cp { dir, .. } = cp;

    // The receiver comes up; a new control plane on the same database delivers.
    let rx = Receiver::default();
    rx.serve(
        tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap(),
    );
    let cp2 = start_with(dir, None, |c| {
        c.enrollment.keys.push(enrolled);
        c.webhooks = vec![url];
        c.data_dir = db;
    })
    .await;
    // Past the retry time the first control plane set.
    cp2.clock.advance(Duration::from_secs(600));
    let got = rx
        .until("the Blinded alert after the restart", |b| {
            b.iter().any(|v| v["id"] == id.as_str())
        })
        .await;
    let v = got.iter().find(|v| v["id"] == id.as_str()).unwrap();
    assert_eq!(v["kind"], "Blinded");
    assert_eq!(v["severity"], 1);
    // Delivered: the outbox is empty and it is not sent again.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (_, h) = cp2.get("/healthz").await;
    assert_eq!(h["queues"]["webhook_outbox"], 0, "{h}");
    assert_eq!(
        rx.bodies()
            .iter()
            .filter(|v| v["id"] == id.as_str())
            .count(),
        1
    );
}

/// Alerts older than `alert_retention` are deleted by the sweeper.
#[tokio::test]
async fn finding04_alert_retention_prunes_old_alerts() {
    let mut a = TestAgent::new("node-1");
    let cp = start(|c| {
        c.enrollment.keys.push(a.enroll());
        c.alert_retention = Duration::from_secs(2 * 86400);
    })
    .await;
    assert_eq!(cp.register(&mut a, measurements(1, 1)).await.0, 200);
    assert_eq!(cp.alerts("Registered").await.len(), 1);
    cp.clock.advance(Duration::from_secs(86400));
    cp.cp.sweep().await.unwrap();
    assert_eq!(
        cp.alerts("Registered").await.len(),
        1,
        "kept within retention"
    );
    assert_eq!(cp.alerts("Blinded").await.len(), 1);
    cp.clock.advance(Duration::from_secs(86400 + 1));
    cp.cp.sweep().await.unwrap();
    assert!(
        cp.alerts("Registered").await.is_empty(),
        "pruned after 2 days"
    );
    assert_eq!(cp.alerts("Blinded").await.len(), 1, "1 day old: kept");
}

fn tdx_register(a: &TestAgent, nonce: evidence::Digest32, at: u64) -> RegisterRequest {
    use base64::Engine;
    let mut r: Report = a.report(nonce, at, measurements(1, 1)).peek().unwrap();
    r.tier = Tier::Tdx;
    let env = sign_payload(&a.signer, REPORT_PAYLOAD_TYPE, &r).unwrap();
    let quote = tdx_sim::TdReport::default()
        .with_report_data(evidence::report_data(&env))
        .quote_v4();
    RegisterRequest {
        envelope: env,
        evidence: RegisterEvidence {
            quote: Some(base64::engine::general_purpose::STANDARD.encode(quote)),
            ..Default::default()
        },
    }
}

/// An agent that registered on tdx cannot come back on the software tier unless an
/// operator expects it (one-shot); the change raises `TierChanged` either way.
#[tokio::test]
async fn finding10_tier_downgrade_refused_unless_expected() {
    let mut a = TestAgent::new("node-tdx");
    let cp = start(|c| {
        c.enrollment.keys.push(a.enroll());
        c.tdx.root_ca_file = Some(tdx_sim::TestPki::root_ca_der_path());
        c.tdx.collateral_file = Some(tdx_sim::TestPki::collateral_path());
    })
    .await;
    let nonce = cp.challenge().await;
    let req = tdx_register(&a, nonce, cp.now());
    let (s, v) = cp
        .post_raw("/api/v1/register", serde_json::to_vec(&req).unwrap())
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["tier"], "tdx");

    // The same key, now claiming the software tier: refused.
    let (s, v) = cp.register(&mut a, measurements(1, 1)).await;
    assert_eq!((s, kind(&v)), (403, "TierDowngrade"), "{v}");
    let tc = cp.alerts("TierChanged").await;
    assert_eq!(tc.len(), 1);
    assert_eq!(tc[0]["severity"], 2);
    let (_, v) = cp.get("/api/v1/agents/node-tdx").await;
    assert_eq!(v["tier"], "tdx");
    assert_eq!(v["ever_tdx"], true);

    // The operator expects the move.
    let url = format!("{}/api/v1/agents/node-tdx/expect", cp.base);
    let r = cp
        .http
        .post(&url)
        .bearer_auth("0123456789abcdef-operator")
        .json(&serde_json::json!({"tier": "software"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["allowed_tier"], "software");
    let (s, v) = cp.register(&mut a, measurements(1, 1)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["tier"], "software");
    assert_eq!(cp.alerts("TierChanged").await.len(), 2);
    assert_eq!(cp.alerts("TierExpected").await.len(), 1);

    // One-shot: the allowance is used up, and the agent stays "ever tdx".
    let (s, v) = cp.register(&mut a, measurements(1, 1)).await;
    assert_eq!((s, kind(&v)), (403, "TierDowngrade"), "{v}");
    let (_, v) = cp.get("/api/v1/agents/node-tdx").await;
    assert_eq!(v["ever_tdx"], true, "{v}");
    assert!(v.get("allowed_tier").is_none(), "{v}");
    // Back on tdx is fine.
    let nonce = cp.challenge().await;
    let req = tdx_register(&a, nonce, cp.now());
    let (s, v) = cp
        .post_raw("/api/v1/register", serde_json::to_vec(&req).unwrap())
        .await;
    assert_eq!(s, 200, "{v}");
}

/// A re-registration with another key raises a severity-2 `KeyChanged`.
#[tokio::test]
async fn finding10_key_change_alerts() {
    let mut a = TestAgent::new("node-1");
    let mut b = TestAgent::new("node-1");
    let cp = start(|c| {
        c.enrollment.keys.push(a.enroll());
        c.enrollment.keys.push(b.enroll());
    })
    .await;
    assert_eq!(cp.register(&mut a, measurements(1, 1)).await.0, 200);
    assert!(cp.alerts("KeyChanged").await.is_empty());
    assert_eq!(cp.register(&mut a, measurements(1, 1)).await.0, 200);
    assert!(
        cp.alerts("KeyChanged").await.is_empty(),
        "same key: no alert"
    );
    assert_eq!(cp.register(&mut b, measurements(1, 1)).await.0, 200);
    let k = cp.alerts("KeyChanged").await;
    assert_eq!(k.len(), 1);
    assert_eq!(k[0]["severity"], 2);
    let d = k[0]["detail"].as_str().unwrap();
    assert!(
        d.contains(&a.signer.public_key().fingerprint())
            && d.contains(&b.signer.public_key().fingerprint()),
        "{d}"
    );
}

/// A genuinely corrupted agent row does not stop the sweeper: the other agents are
/// still swept (blinded), the bad row is alerted once, and the fleet list still
/// answers.
#[tokio::test]
async fn supervised_sweeper_skips_corrupt_record() {
    let mut a = TestAgent::new("node-1");
    let mut b = TestAgent::new("node-2");
    let cp = start(|c| {
        c.enrollment.keys.push(a.enroll());
        c.enrollment.keys.push(b.enroll());
    })
    .await;
    assert_eq!(cp.register(&mut a, measurements(1, 1)).await.0, 200);
    assert_eq!(cp.register(&mut b, measurements(1, 1)).await.0, 200);
    // Corrupt node-1's row in the database file itself.
    let db = cp.dir.path().join("db").join("provenant.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query(
        "UPDATE agents SET record = '{\"agent_id\": 7, truncated' WHERE agent_id = 'node-1'",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;

    cp.clock.advance(Duration::from_secs(5));
    assert_eq!(cp.cp.sweep().await.unwrap(), 1, "node-2 blinded");
    assert_eq!(cp.cp.sweep().await.unwrap(), 0);
    let rc = cp.alerts("RecordCorrupt").await;
    assert_eq!(rc.len(), 1, "alerted once: {rc:?}");
    assert_eq!(rc[0]["agent_id"], "node-1");
    assert_eq!(rc[0]["severity"], 1);
    let b_alerts = cp.alerts("Blinded").await;
    assert_eq!(b_alerts.len(), 1);
    assert_eq!(b_alerts[0]["agent_id"], "node-2");
    let (s, v) = cp.get("/api/v1/agents").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["agents"].as_array().unwrap().len(), 1);
    // The corrupt agent's pulses are refused, never accepted.
    let env = a.next_pulse(cp.now(), measurements(1, 1));
    assert_eq!(cp.pulse(&env).await.0, 500);
}

/// `/healthz` is JSON: a real store write probe, queue depths, the last sweep and the
/// supervised tasks.
#[tokio::test]
async fn healthz_reports_store_queues_sweep_and_tasks() {
    let rx = Receiver::default();
    let url = rx.start().await;
    let cp = start(|c| c.webhooks = vec![url]).await;
    let (s, h) = cp.get("/healthz").await;
    assert_eq!(s, 200, "{h}");
    assert_eq!(h["status"], "ok", "{h}");
    assert_eq!(h["store"]["writable"], true);
    assert_eq!(h["last_sweep_ns"], Value::Null);
    for q in [
        "webhook_outbox",
        "webhook_best_effort",
        "webhook_best_effort_dropped",
        "image_verifications",
    ] {
        assert_eq!(h["queues"][q], 0, "{q}: {h}");
    }
    let names: Vec<&str> = h["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["image-worker", "webhook-best-effort", "webhook-outbox"]
    );
    assert!(h["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["restarts"] == 0 && t["running"] == true));
    cp.cp.sweep().await.unwrap();
    let (_, h) = cp.get("/healthz").await;
    assert_eq!(h["last_sweep_ns"], cp.now());
    assert_eq!(h["last_sweep_age_ms"], 0);
}
