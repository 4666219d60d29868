//! The store contract, run against both backends from the same test bodies: the
//! embedded SQLite store and the shared PostgreSQL store (a real throwaway cluster,
//! see `harness/pg.rs`; without PostgreSQL these tests fail, they do not skip).

#[path = "harness/pg.rs"]
mod pg;

use std::sync::Arc;

use cp_verifier::model::{Ack, AgentRecord, Alert, AlertKind, BuildKind, Tombstone, Withdrawal};
use cp_verifier::store::postgres::{PgStore, PgTarget};
use cp_verifier::store::sqlite::SqliteStore;
use cp_verifier::store::{AgentWrite, AlertFilter, Store, StoreError};
use evidence::report::HexBytes;
use evidence::{Measurements, Platform, PolicyMeasurement, TeeKind, Tier};
use provenant_base::clock::{UnixNanos, UnixSecs};

/// A store and what keeps it alive (the SQLite directory).
struct Backend {
    store: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
    /// The PostgreSQL database URL, for a second replica's store.
    url: Option<String>,
}

async fn sqlite() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    Backend {
        store: Arc::new(SqliteStore::open(dir.path()).await.unwrap()),
        _dir: Some(dir),
        url: None,
    }
}

async fn postgres() -> Backend {
    let url = pg::shared().fresh_database().await;
    let t = PgTarget::parse(&url, None).unwrap();
    Backend {
        store: Arc::new(PgStore::connect(&t).await.unwrap()),
        _dir: None,
        url: Some(url),
    }
}

/// Each contract test, once per backend: `sqlite::name` and `postgres::name`.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::sqlite().await).await })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::postgres().await).await })*
        }
    };
}

contract!(
    cas_conflict_and_duplicate_nonce_leave_no_trace,
    racing_writers_one_wins,
    challenges_are_single_use_and_expire,
    alerts_newest_first_by_agent,
    alerts_acknowledged_once_filtered_and_counted,
    tombstones_delete_and_consume_nonces,
    withdrawals_once_per_build,
    cache_round_trips_replaces_and_prunes,
    outbox_due_retry_done_and_pruned_with_alerts,
    prune_drops_old_nonces_only,
    probe_write_and_scan,
    scans_reuse_records_but_never_stale_ones,
    badge_changes_and_pulse_counts_kept_with_their_writes,
);

fn change(agent: &str, at: u64, badge: &str) -> cp_verifier::model::VerdictChange {
    cp_verifier::model::VerdictChange {
        agent_id: agent.into(),
        subject: String::new(),
        at_ns: at,
        badge: badge.into(),
        previous: None,
        cause: format!("to {badge}"),
        alerts: vec![],
        reasons: vec![],
        appeared: vec![],
        gone: vec![],
    }
}

/// Badge changes go in the transaction of their write (none left by a lost
/// compare-and-swap), read back newest first; pulse counts add up per agent and
/// minute; an alert's explanation round-trips; all are pruned by age.
async fn badge_changes_and_pulse_counts_kept_with_their_writes(b: Backend) {
    use cp_verifier::model::{Explanation, PulseCount};
    let s = &b.store;
    let mut w = write(record("h", 1, 0), None, None, 1);
    w.changes = vec![change("h", 10, "green")];
    s.write_agent(w).await.unwrap();
    let mut w = write(record("h", 2, 1), Some(1), Some("n1"), 0);
    w.changes = vec![change("h", 20, "red")];
    s.write_agent(w).await.unwrap();
    // A lost compare-and-swap records nothing, its change included.
    let mut lost = write(record("h", 3, 2), Some(1), Some("n2"), 0);
    lost.changes = vec![change("h", 30, "yellow")];
    assert!(matches!(
        s.write_agent(lost).await,
        Err(StoreError::Conflict)
    ));
    let got = s.verdict_history("h", 10).await.unwrap();
    assert_eq!(
        got.iter()
            .map(|c| (c.at_ns, c.badge.as_str()))
            .collect::<Vec<_>>(),
        [(20, "red"), (10, "green")]
    );
    assert_eq!(got[1], change("h", 10, "green"));
    assert_eq!(s.verdict_history("h", 1).await.unwrap().len(), 1);
    assert!(s.verdict_history("other", 10).await.unwrap().is_empty());

    let p = |minute, accepted, refused| PulseCount {
        minute,
        accepted,
        refused,
    };
    s.add_pulse_counts(&[("h".into(), p(5, 3, 1)), ("g".into(), p(5, 9, 0))])
        .await
        .unwrap();
    // A second replica adds to the same minute.
    s.add_pulse_counts(&[("h".into(), p(5, 2, 0)), ("h".into(), p(6, 1, 4))])
        .await
        .unwrap();
    assert_eq!(
        s.pulse_history("h", 0).await.unwrap(),
        vec![p(5, 5, 1), p(6, 1, 4)]
    );
    assert_eq!(s.pulse_history("h", 6).await.unwrap(), vec![p(6, 1, 4)]);

    let mut a = Alert::new(
        UnixNanos(40),
        "h",
        AlertKind::AttestationRefused,
        "Rtmr3Mismatch",
    );
    a.explain = Some(Box::new(Explanation {
        subject: "RTMR3".into(),
        expected_label: "quoted RTMR3".into(),
        expected: "aa".into(),
        found_label: "replayed".into(),
        found: "bb".into(),
        divergence: Some("entry 1".into()),
        notes: vec!["n".into()],
        entries: vec![],
        entries_omitted: 0,
        candidates: vec![],
    }));
    s.insert_alerts(std::slice::from_ref(&a)).await.unwrap();
    assert_eq!(s.get_alert(&a.id).await.unwrap().unwrap(), a);
    assert_eq!(s.list_alerts(Some("h"), 1).await.unwrap()[0], a);

    // Pruning by age: changes before 15 ns go; pulse minutes before the cutoff go.
    s.prune_alerts(UnixNanos(15)).await.unwrap();
    assert_eq!(s.verdict_history("h", 10).await.unwrap().len(), 1);
    s.prune_alerts(UnixNanos(6 * 60_000_000_000)).await.unwrap();
    assert_eq!(s.pulse_history("h", 0).await.unwrap(), vec![p(6, 1, 4)]);
}

/// Scans reuse the records they decoded before (see `ScanCache`), but a chain-only
/// write's hot columns, a rewritten record and a deleted agent always show.
async fn scans_reuse_records_but_never_stale_ones(b: Backend) {
    let s = &b.store;
    let ids = |v: &[(String, Result<AgentRecord, StoreError>)]| {
        v.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>()
    };
    for id in ["a", "b", "c"] {
        s.write_agent(write(record(id, 1, 0), None, None, 0))
            .await
            .unwrap();
    }
    let first = s.scan_agents().await.unwrap();
    assert_eq!(ids(&first), ["a", "b", "c"]);
    // A pulse: only the hot columns change.
    let mut a = record("a", 2, 7);
    a.last_seen_ns = 99;
    a.chain_head = HexBytes([7; 32]);
    let mut w = write(a, Some(1), Some("n1"), 0);
    w.chain_only = true;
    s.write_agent(w).await.unwrap();
    // A rewritten record: the partition moved.
    let mut b2 = s.get_agent("b").await.unwrap().unwrap();
    b2.partition = "eu".into();
    b2.version = 2;
    s.write_agent(write(b2, Some(1), None, 0)).await.unwrap();
    s.delete_agent(
        &Tombstone {
            agent_id: "c".into(),
            key_fingerprint: "x".into(),
            at_ns: 5,
            reason: "test".into(),
        },
        1,
        &[],
    )
    .await
    .unwrap();
    for _ in 0..2 {
        let scan = s.scan_agents().await.unwrap();
        assert_eq!(ids(&scan), ["a", "b"]);
        let a = scan[0].1.as_ref().unwrap();
        assert_eq!((a.version, a.sequence, a.last_seen_ns), (2, 7, 99));
        assert_eq!(a.chain_head, HexBytes([7; 32]));
        let b = scan[1].1.as_ref().unwrap();
        assert_eq!((b.partition.as_str(), b.version), ("eu", 2));
        let listed = s.list_agents().await.unwrap();
        assert_eq!(listed[0].sequence, 7);
        assert_eq!(listed[1].partition, "eu");
    }
    // Deleted, then created again at the same version: never the old record.
    let mut c = record("c", 1, 0);
    c.partition = "reborn".into();
    s.write_agent(write(c, None, None, 0)).await.unwrap();
    let scan = s.scan_agents().await.unwrap();
    assert_eq!(scan[2].1.as_ref().unwrap().partition, "reborn");
    // A record text edited by hand (no new revision): the next scan shows the edit.
    let mut edited = s.get_agent("a").await.unwrap().unwrap();
    edited.partition = "by-hand".into();
    let text = serde_json::to_string(&edited).unwrap();
    match (&b._dir, &b.url) {
        (Some(dir), _) => {
            use sqlx::Connection;
            let mut c = sqlx::SqliteConnection::connect(&format!(
                "sqlite://{}",
                dir.path().join("provenant.db").display()
            ))
            .await
            .unwrap();
            sqlx::query("UPDATE agents SET record = ? WHERE agent_id = 'a'")
                .bind(&text)
                .execute(&mut c)
                .await
                .unwrap();
        }
        (None, Some(url)) => {
            use sqlx::Connection;
            let mut c = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::query("UPDATE agents SET record = $1 WHERE agent_id = 'a'")
                .bind(&text)
                .execute(&mut c)
                .await
                .unwrap();
        }
        _ => unreachable!(),
    }
    let scan = s.scan_agents().await.unwrap();
    assert_eq!(scan[0].1.as_ref().unwrap().partition, "by-hand");
}

fn record(id: &str, version: u64, seq: u64) -> AgentRecord {
    let m = Measurements {
        agent_binary: HexBytes([1; 32]),
        policy: PolicyMeasurement::from_files(vec![]),
        platform: Platform {
            tee: TeeKind::None,
            tpm_present: false,
            kernel_cmdline_sha256: None,
            lockdown: None,
        },
        workloads: None,
        ebpf: None,
    };
    let sk = guest_agent::signer::KeySigner::generate_ed25519().unwrap();
    AgentRecord {
        agent_id: id.into(),
        partition: "default".into(),
        tier: Tier::Software,
        key: guest_agent::signer::Signer::public_key(&sk).clone(),
        registered_at_ns: 1,
        last_seen_ns: 1,
        sequence: seq,
        chain_head: HexBytes([0; 32]),
        heartbeat_interval_ms: 1000,
        lkg: m.clone(),
        current: m,
        expected: Default::default(),
        blinded: false,
        last_replay_ns: None,
        last_desync_ns: None,
        attestation: None,
        image_red: Vec::new(),
        disabled: None,
        enrollment_chain: Vec::new(),
        ever_tdx: false,
        allowed_tier: None,
        stale_replays_refused: 0,
        requote_failed: None,
        health: None,
        health_at_ns: None,
        bad_signatures_ns: Vec::new(),
        compromised: None,
        previous_key: None,
        seen: None,
        version,
    }
}

fn write(
    rec: AgentRecord,
    expected: Option<u64>,
    nonce: Option<&str>,
    alerts: usize,
) -> AgentWrite {
    AgentWrite {
        alerts: (0..alerts)
            .map(|_| Alert::new(UnixNanos(5), &rec.agent_id, AlertKind::Replay, "x"))
            .collect(),
        record: rec,
        expected_version: expected,
        nonce: nonce.map(str::to_string),
        chain_only: false,
        changes: Vec::new(),
    }
}

async fn cas_conflict_and_duplicate_nonce_leave_no_trace(b: Backend) {
    let s = &b.store;
    s.write_agent(write(record("a", 0, 0), None, None, 0))
        .await
        .unwrap();
    // A second insert of the same agent is a conflict.
    assert!(matches!(
        s.write_agent(write(record("a", 0, 0), None, None, 0)).await,
        Err(StoreError::Conflict)
    ));
    for alerts in [0, 1] {
        let cur = s.get_agent("a").await.unwrap().unwrap();
        let v = cur.version;
        let n = format!("n{alerts}");
        // Stale version with a fresh nonce: Conflict, and the nonce is not consumed.
        let stale = write(record("a", v + 1, 9), Some(v + 7), Some(&n), alerts);
        assert!(matches!(
            s.write_agent(stale).await,
            Err(StoreError::Conflict)
        ));
        assert_eq!(s.get_agent("a").await.unwrap().unwrap(), cur);
        assert!(!s.nonce_seen("a", &n).await.unwrap());
        s.write_agent(write(
            record("a", v + 1, cur.sequence + 1),
            Some(v),
            Some(&n),
            alerts,
        ))
        .await
        .unwrap();
        assert!(s.nonce_seen("a", &n).await.unwrap());
        // The same nonce again: DuplicateNonce, record unchanged.
        let now = s.get_agent("a").await.unwrap().unwrap();
        let dup = write(record("a", v + 2, 99), Some(v + 1), Some(&n), alerts);
        assert!(matches!(
            s.write_agent(dup).await,
            Err(StoreError::DuplicateNonce)
        ));
        assert_eq!(s.get_agent("a").await.unwrap().unwrap(), now);
    }
    // A chain-only write keeps the stored record and moves the hot columns.
    let cur = s.get_agent("a").await.unwrap().unwrap();
    let mut next = cur.clone();
    next.sequence += 1;
    next.chain_head = HexBytes([9; 32]);
    next.version += 1;
    next.blinded = true;
    next.last_seen_ns = 77;
    next.lkg.agent_binary = HexBytes([0xee; 32]); // must NOT be written
    let mut w = write(next.clone(), Some(cur.version), Some("chain"), 0);
    w.chain_only = true;
    s.write_agent(w).await.unwrap();
    let got = s.get_agent("a").await.unwrap().unwrap();
    assert_eq!(
        (
            got.sequence,
            got.chain_head,
            got.version,
            got.blinded,
            got.last_seen_ns
        ),
        (next.sequence, next.chain_head, next.version, true, 77)
    );
    assert_eq!(got.lkg, cur.lkg);
    // Only the alerts of successful writes were stored.
    assert_eq!(s.list_alerts(None, 100).await.unwrap().len(), 1);
    // A new agent needs its full record.
    let mut w = write(record("b", 0, 0), None, None, 0);
    w.chain_only = true;
    assert!(matches!(
        s.write_agent(w).await,
        Err(StoreError::Corrupt(_))
    ));
    assert!(s.get_agent("b").await.unwrap().is_none());
}

/// Many writers race on one version (and on one nonce): exactly one wins.
async fn racing_writers_one_wins(b: Backend) {
    let s = &b.store;
    s.write_agent(write(record("r", 0, 0), None, None, 0))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                s.write_agent(write(record("r", 1, i), Some(0), Some(&format!("n{i}")), 1))
                    .await
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => ok += 1,
            Err(StoreError::Conflict) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(ok, 1);
    assert_eq!(s.list_alerts(Some("r"), 100).await.unwrap().len(), 1);
    // One nonce, many writers at the right version: one wins, the others see the
    // nonce taken or the version moved on.
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                s.write_agent(write(record("r", 2, 10 + i), Some(1), Some("same"), 0))
                    .await
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => ok += 1,
            Err(StoreError::Conflict | StoreError::DuplicateNonce) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(ok, 1);
    assert_eq!(s.get_agent("r").await.unwrap().unwrap().version, 2);
}

async fn challenges_are_single_use_and_expire(b: Backend) {
    let s = &b.store;
    s.put_challenge("c1", UnixNanos(100)).await.unwrap();
    s.put_challenge("c2", UnixNanos(100)).await.unwrap();
    assert!(s.take_challenge("c1", UnixNanos(100)).await.unwrap());
    assert!(!s.take_challenge("c1", UnixNanos(50)).await.unwrap());
    assert!(!s.take_challenge("c2", UnixNanos(101)).await.unwrap());
    assert!(!s.take_challenge("nope", UnixNanos(0)).await.unwrap());
    // Concurrent takers of one challenge: one succeeds.
    s.put_challenge("c3", UnixNanos(100)).await.unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.take_challenge("c3", UnixNanos(1)).await.unwrap() })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        won += usize::from(t.await.unwrap());
    }
    assert_eq!(won, 1);
    // Expired challenges are pruned.
    s.put_challenge("c4", UnixNanos(10)).await.unwrap();
    s.prune(UnixNanos(11), UnixNanos(0)).await.unwrap();
    assert!(!s.take_challenge("c4", UnixNanos(0)).await.unwrap());
}

async fn alerts_newest_first_by_agent(b: Backend) {
    let s = &b.store;
    let mut all = Vec::new();
    for (i, agent) in (0u64..).zip(["x", "y", "x", "x"]) {
        all.push(Alert::new(
            UnixNanos(10 + i),
            agent,
            AlertKind::BadSignature,
            format!("d{i}"),
        ));
    }
    s.insert_alerts(&all).await.unwrap();
    let got = s.list_alerts(None, 10).await.unwrap();
    assert_eq!(
        got.iter().map(|a| a.at_ns).collect::<Vec<_>>(),
        [13, 12, 11, 10]
    );
    assert_eq!(got[0], all[3]);
    let x = s.list_alerts(Some("x"), 2).await.unwrap();
    assert_eq!(
        x.iter().map(|a| a.detail.as_str()).collect::<Vec<_>>(),
        ["d3", "d2"]
    );
    // A batch with a duplicate id is refused whole.
    let dup = vec![
        Alert::new(UnixNanos(20), "z", AlertKind::Replay, "new"),
        all[0].clone(),
    ];
    assert!(s.insert_alerts(&dup).await.is_err());
    assert!(s.list_alerts(Some("z"), 10).await.unwrap().is_empty());
    assert!(s.prune_alerts(UnixNanos(12)).await.unwrap() > 0);
    assert_eq!(s.list_alerts(None, 10).await.unwrap().len(), 2);
    assert_eq!(s.prune_alerts(UnixNanos(12)).await.unwrap(), 0);
}

async fn alerts_acknowledged_once_filtered_and_counted(b: Backend) {
    let s = &b.store;
    // Severities 1 (Blinded), 2 (BadSignature), 3 (ClockDesync), 4 (Registered).
    let kinds = [
        AlertKind::Blinded,
        AlertKind::BadSignature,
        AlertKind::ClockDesync,
        AlertKind::Registered,
        AlertKind::Blinded,
    ];
    let all: Vec<Alert> = (0u64..)
        .zip(kinds)
        .map(|(i, k)| {
            Alert::new(
                UnixNanos(100 + i),
                if i % 2 == 0 { "a" } else { "b" },
                k,
                format!("d{i}"),
            )
        })
        .collect();
    s.insert_alerts(&all).await.unwrap();
    assert_eq!(s.open_alert_counts().await.unwrap(), [2, 1, 1]);

    let ack = Ack {
        at_ns: 200,
        by: "alice (operator token)".into(),
        note: "rebooted the node".into(),
    };
    let audit = vec![Alert::new(
        UnixNanos(200),
        "a",
        AlertKind::AlertAcknowledged,
        "audit",
    )];
    assert!(s.ack_alert(&all[0].id, &ack, &audit).await.unwrap());
    // Once only: a second acknowledgement changes nothing and writes no audit.
    let again = Ack {
        by: "bob".into(),
        ..ack.clone()
    };
    let audit2 = vec![Alert::new(
        UnixNanos(201),
        "a",
        AlertKind::AlertAcknowledged,
        "audit2",
    )];
    assert!(!s.ack_alert(&all[0].id, &again, &audit2).await.unwrap());
    assert!(!s.ack_alert("no-such-alert", &again, &audit2).await.unwrap());
    assert_eq!(s.get_alert(&audit2[0].id).await.unwrap(), None);

    let got = s.get_alert(&all[0].id).await.unwrap().unwrap();
    assert_eq!(got.ack.as_ref(), Some(&ack));
    assert!(!got.is_open());
    assert_eq!(s.get_alert(&audit[0].id).await.unwrap().unwrap(), audit[0]);
    // The acknowledged alert left the open count (informational ones never count).
    assert_eq!(s.open_alert_counts().await.unwrap(), [1, 1, 1]);

    let q = |f: AlertFilter| async move { s.query_alerts(&f).await.unwrap() };
    let ids = |v: Vec<Alert>| v.into_iter().map(|a| a.detail).collect::<Vec<_>>();
    let f = AlertFilter {
        limit: 100,
        ..AlertFilter::default()
    };
    assert_eq!(
        ids(q(AlertFilter {
            open: Some(true),
            ..f.clone()
        })
        .await),
        ["d4", "d2", "d1"]
    );
    assert_eq!(
        ids(q(AlertFilter {
            open: Some(false),
            ..f.clone()
        })
        .await),
        ["d0"]
    );
    assert_eq!(
        ids(q(AlertFilter {
            severities: vec![1, 4],
            ..f.clone()
        })
        .await),
        ["audit", "d4", "d3", "d0"]
    );
    assert_eq!(
        ids(q(AlertFilter {
            agent: Some("b".into()),
            ..f.clone()
        })
        .await),
        ["d3", "d1"]
    );
    // Pages: newest first, then older than the last id of the page.
    let p1 = q(AlertFilter {
        limit: 2,
        ..f.clone()
    })
    .await;
    assert_eq!(ids(p1.clone()), ["audit", "d4"]);
    let p2 = q(AlertFilter {
        limit: 2,
        before: Some(p1[1].id.clone()),
        ..f.clone()
    })
    .await;
    assert_eq!(ids(p2), ["d3", "d2"]);
}

async fn tombstones_delete_and_consume_nonces(b: Backend) {
    let s = &b.store;
    s.write_agent(write(record("d", 0, 0), None, None, 0))
        .await
        .unwrap();
    s.write_agent(write(record("d", 1, 1), Some(0), Some("p1"), 0))
        .await
        .unwrap();
    let tomb = Tombstone {
        agent_id: "d".into(),
        key_fingerprint: format!("sha256:{}", "ab".repeat(32)),
        at_ns: 42,
        reason: "decommissioned".into(),
    };
    let alert = Alert::new(UnixNanos(42), "d", AlertKind::AgentDeleted, "bye");
    assert!(matches!(
        s.delete_agent(&tomb, 0, std::slice::from_ref(&alert)).await,
        Err(StoreError::Conflict)
    ));
    assert!(s.get_tombstone("d").await.unwrap().is_none());
    assert!(s.list_alerts(Some("d"), 10).await.unwrap().is_empty());
    s.delete_agent(&tomb, 1, std::slice::from_ref(&alert))
        .await
        .unwrap();
    assert!(s.get_agent("d").await.unwrap().is_none());
    assert_eq!(s.get_tombstone("d").await.unwrap(), Some(tomb.clone()));
    assert!(!s.nonce_seen("d", "p1").await.unwrap());
    assert_eq!(s.list_alerts(Some("d"), 10).await.unwrap(), vec![alert]);
    // Deleted again after re-registering: the tombstone is replaced.
    s.write_agent(write(record("d", 0, 0), None, None, 0))
        .await
        .unwrap();
    let t2 = Tombstone {
        reason: "again".into(),
        at_ns: 43,
        ..tomb
    };
    s.delete_agent(&t2, 0, &[]).await.unwrap();
    assert_eq!(s.get_tombstone("d").await.unwrap(), Some(t2));
}

async fn withdrawals_once_per_build(b: Backend) {
    let s = &b.store;
    let w = |id: &str, kind, digest: &str, at| Withdrawal {
        id: id.into(),
        kind,
        digest: digest.into(),
        reason: "cve".into(),
        at_ns: at,
        source: "api".into(),
    };
    let a = || vec![Alert::new(UnixNanos(1), "", AlertKind::BuildWithdrawn, "w")];
    assert!(s
        .put_withdrawal(&w("wd-1", BuildKind::Mrtd, "aa", 2), &a())
        .await
        .unwrap());
    assert!(s
        .put_withdrawal(&w("wd-2", BuildKind::AgentBinary, "aa", 1), &a())
        .await
        .unwrap());
    // The same build again (another id): refused, its alert not written.
    assert!(!s
        .put_withdrawal(&w("wd-3", BuildKind::Mrtd, "aa", 3), &a())
        .await
        .unwrap());
    let got = s.list_withdrawals().await.unwrap();
    assert_eq!(
        got.iter().map(|w| w.id.as_str()).collect::<Vec<_>>(),
        ["wd-2", "wd-1"]
    );
    assert_eq!(got[1], w("wd-1", BuildKind::Mrtd, "aa", 2));
    assert_eq!(s.list_alerts(None, 10).await.unwrap().len(), 2);
    assert!(s.delete_withdrawal("wd-1", &a()).await.unwrap());
    assert!(!s.delete_withdrawal("wd-1", &a()).await.unwrap());
    assert_eq!(s.list_withdrawals().await.unwrap().len(), 1);
    assert_eq!(s.list_alerts(None, 10).await.unwrap().len(), 3);
}

async fn cache_round_trips_replaces_and_prunes(b: Backend) {
    let s = &b.store;
    assert_eq!(s.get_cached("k").await.unwrap(), None);
    s.put_cached("k", b"{}", UnixSecs(100)).await.unwrap();
    assert_eq!(
        s.get_cached("k").await.unwrap(),
        Some((b"{}".to_vec(), UnixSecs(100)))
    );
    s.put_cached("k", b"[1]", UnixSecs(200)).await.unwrap();
    s.put_cached("old", b"[0]", UnixSecs(50)).await.unwrap();
    s.put_cached("bin", &[0, 255, 1], UnixSecs(300))
        .await
        .unwrap();
    assert_eq!(
        s.get_cached("k").await.unwrap(),
        Some((b"[1]".to_vec(), UnixSecs(200)))
    );
    s.prune(UnixSecs(100).nanos(), UnixNanos(0)).await.unwrap();
    assert_eq!(s.get_cached("old").await.unwrap(), None);
    assert!(s.get_cached("k").await.unwrap().is_some());
    assert_eq!(
        s.get_cached("bin").await.unwrap().unwrap().0,
        vec![0, 255, 1]
    );
}

async fn outbox_due_retry_done_and_pruned_with_alerts(b: Backend) {
    let s = &b.store;
    // Off: nothing queued.
    s.insert_alerts(&[Alert::new(UnixNanos(1), "o", AlertKind::Blinded, "off")])
        .await
        .unwrap();
    assert_eq!(s.outbox_len().await.unwrap(), 0);
    s.set_webhook_outbox(true);
    let hi = Alert::new(UnixNanos(10), "o", AlertKind::Blinded, "sev1");
    let lo = Alert::new(UnixNanos(11), "o", AlertKind::Recovered, "low");
    assert!(lo.severity > 2, "a low-severity kind");
    let late = Alert::new(UnixNanos(30), "o", AlertKind::Compromised, "late");
    s.insert_alerts(&[hi.clone(), lo, late.clone()])
        .await
        .unwrap();
    assert_eq!(s.outbox_len().await.unwrap(), 2);
    let due = s.outbox_due(UnixNanos(20), 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!((due[0].alert.clone(), due[0].attempts), (hi.clone(), 0));
    assert!(due[0].delivered.is_empty());
    s.outbox_retry(&hi.id, &["hook-a".into()], 1, UnixNanos(40))
        .await
        .unwrap();
    let due = s.outbox_due(UnixNanos(40), 10).await.unwrap();
    assert_eq!(
        due.iter().map(|d| d.alert.id.clone()).collect::<Vec<_>>(),
        [late.id.clone(), hi.id.clone()]
    );
    assert_eq!(
        (due[1].attempts, due[1].delivered.clone()),
        (1, vec!["hook-a".to_string()])
    );
    s.outbox_done(&late.id).await.unwrap();
    assert_eq!(s.outbox_len().await.unwrap(), 1);
    // Pruning the alert takes its outbox entry with it.
    s.prune_alerts(UnixNanos(11)).await.unwrap();
    assert_eq!(s.outbox_len().await.unwrap(), 0);
}

async fn prune_drops_old_nonces_only(b: Backend) {
    let s = &b.store;
    let mut r = record("p", 0, 0);
    s.write_agent(write(r.clone(), None, None, 0))
        .await
        .unwrap();
    for (i, at) in [(1u64, 100u64), (2, 200)] {
        r.version = i;
        r.last_seen_ns = at;
        s.write_agent(write(r.clone(), Some(i - 1), Some(&format!("n{at}")), 0))
            .await
            .unwrap();
    }
    s.prune(UnixNanos(0), UnixNanos(150)).await.unwrap();
    assert!(!s.nonce_seen("p", "n100").await.unwrap());
    assert!(s.nonce_seen("p", "n200").await.unwrap());
    assert_eq!(s.get_agent("p").await.unwrap().unwrap().version, 2);
}

async fn probe_write_and_scan(b: Backend) {
    let s = &b.store;
    s.probe_write(UnixNanos(1)).await.unwrap();
    s.probe_write(UnixNanos(2)).await.unwrap();
    for id in ["m2", "m1"] {
        s.write_agent(write(record(id, 0, 0), None, None, 0))
            .await
            .unwrap();
    }
    let ids: Vec<_> = s
        .list_agents()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.agent_id)
        .collect();
    assert_eq!(ids, ["m1", "m2"]);
    let scan = s.scan_agents().await.unwrap();
    assert_eq!(scan.len(), 2);
    assert!(scan.iter().all(|(_, r)| r.is_ok()));
    // A second replica's store on the same PostgreSQL database sees the same fleet.
    if let Some(url) = &b.url {
        let other = PgStore::connect(&PgTarget::parse(url, None).unwrap())
            .await
            .unwrap();
        assert_eq!(other.list_agents().await.unwrap().len(), 2);
        assert!(matches!(
            other
                .write_agent(write(record("m1", 0, 0), None, None, 0))
                .await,
            Err(StoreError::Conflict)
        ));
    }
}

/// An unreachable server is `Unavailable` within the acquire timeout, and the
/// error does not show the password.
#[tokio::test]
async fn postgres_unreachable_is_unavailable_without_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let t = PgTarget::parse(&format!("postgres://u:sekrit@127.0.0.1:{port}/db"), None).unwrap();
    let t0 = std::time::Instant::now();
    let e = PgStore::connect(&t).await.unwrap_err();
    assert!(t0.elapsed() < std::time::Duration::from_secs(30));
    assert!(matches!(e, StoreError::Unavailable(_)), "{e}");
    assert!(!e.to_string().contains("sekrit"), "{e}");
}

/// An undecodable record is `Corrupt` for itself, not for the scan.
#[tokio::test]
async fn postgres_corrupt_row_is_corrupt() {
    let b = postgres().await;
    b.store
        .write_agent(write(record("ok", 0, 0), None, None, 0))
        .await
        .unwrap();
    pg::PgCluster::exec(
        b.url.as_deref().unwrap(),
        "INSERT INTO agents VALUES ('bad', 0, 0, false, 0, 'zz', '{')",
    )
    .await;
    assert!(matches!(
        b.store.get_agent("bad").await,
        Err(StoreError::Corrupt(_))
    ));
    let scan = b.store.scan_agents().await.unwrap();
    assert!(scan.iter().any(|(id, r)| id == "bad" && r.is_err()));
    assert!(scan.iter().any(|(id, r)| id == "ok" && r.is_ok()));
}

/// `store = "postgres://..."` in the config: checked at load time with the reason,
/// the password file must be private, and the password never shows in `Debug`.
#[test]
fn config_store_url_and_password_file() {
    use cp_verifier::config::CpConfig;
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let load = |body: &str| {
        let p = dir.path().join("cp.toml");
        std::fs::write(&p, format!("data_dir = \"/x\"\n{body}")).unwrap();
        CpConfig::load(&p)
    };
    // Default: the embedded store.
    assert!(load("").unwrap().store_target().unwrap().is_none());
    // A URL with its password: accepted, never shown.
    let c = load("store = \"postgres://u:pa55word@db:5432/fleet\"\n").unwrap();
    assert!(!format!("{c:?}").contains("pa55word"));
    let t = c.store_target().unwrap().unwrap();
    assert!(!format!("{t:?} {t}").contains("pa55word"));
    // The password in a file: private, else refused at load time.
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "filesecret\n").unwrap();
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o640)).unwrap();
    let body = format!(
        "store = \"postgres://u@db/fleet\"\nstore_password_file = \"{}\"\n",
        pw.display()
    );
    let e = load(&body).unwrap_err();
    assert!(format!("{e:#}").contains("store_password_file"), "{e:#}");
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    let c = load(&body).unwrap();
    let t = c.store_target().unwrap().unwrap();
    assert!(!format!("{t:?} {c:?}").contains("filesecret"));
    // Refused: another scheme, two passwords, a password file without a store,
    // a missing file.
    for bad in [
        "store = \"mysql://u@db/fleet\"\n".to_string(),
        format!(
            "store = \"postgres://u:p@db/fleet\"\nstore_password_file = \"{}\"\n",
            pw.display()
        ),
        format!("store_password_file = \"{}\"\n", pw.display()),
        "store = \"postgres://u@db/fleet\"\nstore_password_file = \"/nonexistent/pw\"\n".into(),
        "store = \"postgres://u@db:notaport/fleet\"\n".into(),
    ] {
        assert!(load(&bad).is_err(), "accepted: {bad}");
    }
}

/// `cp-verifier migrate-store --config FILE` applies the schema and exits 0 (twice:
/// it is idempotent); with no PostgreSQL store configured it fails with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_store_subcommand() {
    let url = pg::shared().fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cp.toml");
    let run = |cfg: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_cp-verifier"))
            .args(["migrate-store", "--config"])
            .arg(cfg)
            .output()
            .unwrap()
    };
    std::fs::write(
        &cfg,
        format!(
            "data_dir = \"{}\"\nstore = \"{url}\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    for _ in 0..2 {
        let out = run(&cfg);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The schema is there: a store that does not migrate can use it.
    let s = PgStore::connect_only(&PgTarget::parse(&url, None).unwrap())
        .await
        .unwrap();
    s.probe_write(UnixNanos(1)).await.unwrap();
    assert_eq!(s.outbox_len().await.unwrap(), 0);
    std::fs::write(&cfg, format!("data_dir = \"{}\"\n", dir.path().display())).unwrap();
    let out = run(&cfg);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no store"));
}

/// Every pooled session has the statement timeout and the application name.
#[tokio::test]
async fn postgres_sessions_have_a_statement_timeout() {
    let b = postgres().await;
    let url = b.url.unwrap();
    let s = PgStore::connect(&PgTarget::parse(&url, None).unwrap())
        .await
        .unwrap();
    let (timeout, app): (String, String) = sqlx::query_as(
        "SELECT current_setting('statement_timeout'), current_setting('application_name')",
    )
    .fetch_one(s.pool())
    .await
    .unwrap();
    assert_eq!((timeout.as_str(), app.as_str()), ("10s", "cp-verifier"));
}
