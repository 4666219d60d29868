//! `cp-verifier migrate`: a fleet built on SQLite through the real control plane
//! (registrations, pulses, a replay alert, a withdrawal, a deleted agent) moves to a
//! real PostgreSQL (`harness/pg.rs`); a control plane on the PostgreSQL store then
//! continues every chain where it stopped, still refuses the consumed nonces and the
//! deleted agent, and shows the same agents, baselines, alerts and withdrawals. The
//! source is not modified; a second run is refused (target not empty), changing
//! nothing. The command itself is run once too.

mod harness;
use harness::*;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use cp_verifier::store::fleet::ImportError;
use cp_verifier::store::migrate::{migrate, FleetMigrateError};
use cp_verifier::store::postgres::{PgStore, PgTarget};
use cp_verifier::store::sqlite::SqliteStore;
use cp_verifier::store::Store;
use evidence::Envelope;
use provenant_base::clock::UnixNanos;
use serde_json::{json, Value};
use sqlx::Connection;

async fn op(cp: &Cp, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
    let r = cp
        .http
        .request(method, format!("{}{path}", cp.base))
        .bearer_auth(OPERATOR_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

struct Fleet {
    cp: Cp,
    agents: Vec<TestAgent>,
    /// Each live agent's last accepted pulse (a replay candidate).
    last: Vec<Envelope>,
    keys: Vec<cp_verifier::config::EnrolledKey>,
}

impl Fleet {
    fn data(&self) -> std::path::PathBuf {
        self.cp.dir.path().join("db")
    }
}

/// Two live agents with pulse chains, a deleted one, a replay alert, a withdrawal,
/// and two cache entries (one expired), on SQLite.
async fn build_fleet() -> Fleet {
    let mut agents: Vec<TestAgent> = ["node-a", "node-b", "node-gone"]
        .into_iter()
        .map(TestAgent::new)
        .collect();
    let keys: Vec<_> = agents.iter().map(TestAgent::enroll).collect();
    let k = keys.clone();
    let cp = start(move |c| c.enrollment.keys.extend(k)).await;
    for a in agents.iter_mut() {
        let (s, v) = cp.register(a, measurements(1, 1)).await;
        assert_eq!(s, 200, "{v}");
    }
    let mut last = Vec::new();
    let mut first = None;
    for _ in 0..3 {
        cp.clock.advance(Duration::from_secs(1));
        last.clear();
        for a in agents.iter_mut() {
            let env = a.next_pulse(cp.now(), measurements(1, 1));
            let (s, v) = cp.pulse(&env).await;
            assert_eq!(s, 200, "{v}");
            a.accepted(&env);
            first.get_or_insert_with(|| env.clone());
            last.push(env);
        }
    }
    // An old pulse again (a duplicate: refused), and a new one reusing an old
    // sequence number (a replay: refused and alerted).
    assert_eq!(cp.pulse(first.as_ref().unwrap()).await.0, 409);
    let env = agents[0].pulse_at(1, agents[0].head, cp.now(), measurements(1, 1));
    let (s, v) = cp.pulse(&env).await;
    assert_eq!(s, 409, "{v}");
    let (_, all) = cp.get("/api/v1/alerts?limit=1000").await;
    let replays = cp.alerts("Replay").await;
    assert!(!replays.is_empty(), "{v} {all}");
    // An acknowledged alert moves with who acknowledged it, when and why.
    let id = replays[0]["id"].as_str().unwrap().to_owned();
    let (s, v) = op(
        &cp,
        reqwest::Method::POST,
        &format!("/api/v1/alerts/{id}/ack"),
        json!({"by": "alice", "note": "a test replay"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["ack"]["by"], "alice (operator token)", "{v}");
    // Once only (409 names who), unknown ids are 404, and a read token cannot ack.
    let path = format!("/api/v1/alerts/{id}/ack");
    let (s, v) = op(&cp, reqwest::Method::POST, &path, json!({})).await;
    assert_eq!(
        (s, v["error"]["kind"].as_str()),
        (409, Some("AlreadyAcknowledged")),
        "{v}"
    );
    assert!(
        v["error"]["detail"].as_str().unwrap().contains("alice"),
        "{v}"
    );
    let (s, v) = op(
        &cp,
        reqwest::Method::POST,
        "/api/v1/alerts/nope/ack",
        json!({}),
    )
    .await;
    assert_eq!(s, 404, "{v}");
    let r = cp
        .http
        .post(format!("{}{path}", cp.base))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let (s, v) = cp.get("/api/v1/alerts?state=acked").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["alerts"].as_array().unwrap().len(), 1, "{v}");
    let (_, v) = cp.get("/api/v1/alerts?state=open&severity=1,2,3").await;
    assert!(
        v["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["id"] != id.as_str()),
        "{v}"
    );
    let audit = cp.alerts("AlertAcknowledged").await;
    assert_eq!(audit.len(), 1, "{audit:?}");
    // Informational alerts (the audit itself among them) are records, never open.
    let audit_id = audit[0]["id"].as_str().unwrap();
    let (s, v) = op(
        &cp,
        reqwest::Method::POST,
        &format!("/api/v1/alerts/{audit_id}/ack"),
        json!({}),
    )
    .await;
    assert_eq!(
        (s, v["error"]["kind"].as_str()),
        (400, Some("NotOpen")),
        "{v}"
    );
    assert!(
        audit[0]["detail"]
            .as_str()
            .unwrap()
            .contains("a test replay"),
        "{audit:?}"
    );
    let (s, v) = op(
        &cp,
        reqwest::Method::POST,
        "/api/v1/withdrawals",
        json!({"agent_binary": hex::encode([9u8; 32]), "reason": "CVE-2031-0002"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = op(
        &cp,
        reqwest::Method::DELETE,
        "/api/v1/agents/node-gone",
        json!({"reason": "decommissioned"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    last.pop();
    // Cache entries: one valid for an hour, one expired.
    let now_s = i64::try_from(cp.now() / SEC).unwrap();
    let mut c = sqlite(&cp.dir.path().join("db")).await;
    sqlx::query("INSERT INTO cache (key, expires_at, json) VALUES ('k-valid', ?, x'7b7d'), ('k-old', ?, x'7b7d')")
        .bind(now_s + 3600)
        .bind(now_s - 1)
        .execute(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
    Fleet {
        cp,
        agents,
        last,
        keys,
    }
}

async fn sqlite(data: &Path) -> sqlx::SqliteConnection {
    let o = sqlx::sqlite::SqliteConnectOptions::from_str(&format!(
        "sqlite://{}",
        data.join("provenant.db").display()
    ))
    .unwrap();
    sqlx::SqliteConnection::connect_with(&o).await.unwrap()
}

/// The bytes of the database and its WAL.
fn db_bytes(data: &Path) -> Vec<u8> {
    let mut b = std::fs::read(data.join("provenant.db")).unwrap();
    b.extend(std::fs::read(data.join("provenant.db-wal")).unwrap_or_default());
    b
}

async fn views(cp: &Cp) -> Vec<Value> {
    let mut out = Vec::new();
    for p in [
        "/api/v1/agents/node-a",
        "/api/v1/agents/node-b",
        "/api/v1/alerts?limit=1000",
        "/api/v1/withdrawals",
    ] {
        let (s, v) = cp.get(p).await;
        assert_eq!(s, 200, "{p}: {v}");
        out.push(v);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_fleet_moves_to_postgres_and_its_chains_continue() {
    let mut f = build_fleet().await;
    let data = f.data();
    let before = views(&f.cp).await;
    let src_bytes = db_bytes(&data);
    let src_nonces = SqliteStore::open_read_only(&data)
        .await
        .unwrap()
        .list_nonces()
        .await
        .unwrap();
    assert!(src_nonces.len() >= 6);

    let url = pg::shared().fresh_database().await;
    let t = PgTarget::parse(&url, None).unwrap();
    let now = UnixNanos(f.cp.now());
    let s = migrate(&data, &t, false, now).await.unwrap();
    assert!(s.verified);
    let c = s.copied;
    assert_eq!(
        (c.agents, c.tombstones, c.withdrawals, c.cache),
        (2, 1, 1, 1)
    );
    assert_eq!(c.nonces, u64::try_from(src_nonces.len()).unwrap());
    assert!(c.alerts >= 3, "{c:?}");
    // The verdict timelines move too (each agent's first judgement at least); the
    // read-back compares them change by change.
    assert!(c.changes >= 2, "{c:?}");
    assert_eq!(db_bytes(&data), src_bytes, "the source was modified");

    // Again: refused, nothing changed.
    let pg = Arc::new(PgStore::connect(&t).await.unwrap());
    let counts = pg.fleet_counts().await.unwrap();
    let e = migrate(&data, &t, false, now).await.unwrap_err();
    assert!(
        matches!(e, FleetMigrateError::Import(ImportError::TargetNotEmpty(_))),
        "{e}"
    );
    assert_eq!(e.kind(), "TargetNotEmpty");
    assert_eq!(pg.fleet_counts().await.unwrap(), counts);
    // Told to replace: the same fleet again, in one transaction, nothing doubled.
    let again = migrate(&data, &t, true, now).await.unwrap();
    assert!(again.replaced && again.verified);
    assert_eq!(again.copied, c);
    assert_eq!(pg.fleet_counts().await.unwrap(), counts);

    // The fleet on PostgreSQL, same clock.
    for n in &src_nonces {
        assert!(pg.nonce_seen(&n.agent_id, &n.nonce).await.unwrap());
    }
    assert!(pg.get_tombstone("node-gone").await.unwrap().is_some());
    assert_eq!(pg.get_cached("k-valid").await.unwrap().unwrap().0, b"{}");
    assert!(pg.get_cached("k-old").await.unwrap().is_none());
    let keys = f.keys.clone();
    let dst = start_on_store(pg.clone(), move |c| c.enrollment.keys.extend(keys)).await;
    dst.clock
        .0
        .store(f.cp.now(), std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        views(&dst).await,
        before,
        "agents, alerts or withdrawals differ"
    );

    // Old pulses replayed: refused.
    for env in &f.last {
        let (s, v) = dst.pulse(env).await;
        assert_eq!(s, 409, "replay accepted after migration: {v}");
    }
    // Each chain continues where it stopped.
    dst.clock.advance(Duration::from_secs(1));
    for a in f.agents.iter_mut().take(2) {
        let seq = a.seq;
        let env = a.next_pulse(dst.now(), measurements(1, 1));
        let (s, v) = dst.pulse(&env).await;
        assert_eq!(s, 200, "{}: {v}", a.id);
        a.accepted(&env);
        let (_, v) = dst.get(&format!("/api/v1/agents/{}", a.id)).await;
        assert_eq!(v["sequence"], json!(seq + 1), "{v}");
    }
    // The deleted agent stays deleted.
    let gone = &f.agents[2];
    let env = gone.next_pulse(dst.now(), measurements(1, 1));
    let (s, v) = dst.pulse(&env).await;
    assert_ne!(s, 200, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_migrate_command_copies_once_then_refuses() {
    let f = build_fleet().await;
    let data = f.data();
    let url = pg::shared().fresh_database().await;
    let pw = f.cp.dir.path().join("pg.pw");
    provenant_base::fsutil::write_private(&pw, b"s3cret-not-shown").unwrap();
    let run = |from: String| {
        let (url, pw) = (url.clone(), pw.clone());
        async move {
            let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_cp-verifier"))
                .args([
                    "migrate",
                    "--from",
                    &from,
                    "--to",
                    &url,
                    "--to-password-file",
                ])
                .arg(&pw)
                .output()
                .await
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout).to_string();
            let stderr = String::from_utf8_lossy(&out.stderr).to_string();
            assert!(!stdout.contains("s3cret") && !stderr.contains("s3cret"));
            let v: Value = serde_json::from_str(stdout.trim())
                .unwrap_or_else(|e| panic!("{e}: {stdout} {stderr}"));
            (out.status.code(), v)
        }
    };
    let from = format!("sqlite:{}", data.display());
    let (code, v) = run(from.clone()).await;
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["copied"]["agents"], 2, "{v}");
    assert_eq!(v["copied"]["tombstones"], 1, "{v}");
    assert_eq!(v["verified"], true, "{v}");
    // The database file works as the source too.
    let (code, v) = run(format!("sqlite:{}", data.join("provenant.db").display())).await;
    assert_eq!(code, Some(1), "{v}");
    assert_eq!(v["error"], "TargetNotEmpty", "{v}");
    let (code, v) = run("mysql://elsewhere".into()).await;
    assert_eq!(
        (code, v["error"].as_str()),
        (Some(1), Some("BadSource")),
        "{v}"
    );
    let (code, v) = run(format!(
        "sqlite:{}",
        f.cp.dir.path().join("nothing").display()
    ))
    .await;
    assert_eq!(
        (code, v["error"].as_str()),
        (Some(1), Some("SourceUnavailable")),
        "{v}"
    );
}
