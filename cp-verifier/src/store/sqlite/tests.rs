//! Unit tests of the SQLite store.

use super::*;
use crate::model::AlertKind;
use evidence::report::HexBytes;
use evidence::{Measurements, Platform, PolicyMeasurement, TeeKind, Tier};
use provenant_base::clock::{UnixNanos, UnixSecs};

fn record(version: u64, seq: u64) -> AgentRecord {
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
        agent_id: "a".into(),
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

#[tokio::test]
async fn finding09_db_created_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let _s = SqliteStore::open(&data).await.unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("provenant.db")), 0o600);
    // An existing world-readable database and directory are tightened.
    let old = dir.path().join("old");
    std::fs::create_dir(&old).unwrap();
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(old.join("provenant.db"), b"").unwrap();
    std::fs::set_permissions(
        old.join("provenant.db"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let _s = SqliteStore::open(&old).await.unwrap();
    assert_eq!(mode(&old), 0o750);
    assert_eq!(mode(&old.join("provenant.db")), 0o600);
}

#[tokio::test]
async fn cache_round_trips_replaces_and_prunes() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(dir.path()).await.unwrap();
    assert_eq!(s.get_cached("k").await.unwrap(), None);
    s.put_cached("k", b"{}", UnixSecs(100)).await.unwrap();
    assert_eq!(
        s.get_cached("k").await.unwrap(),
        Some((b"{}".to_vec(), UnixSecs(100)))
    );
    s.put_cached("k", b"[1]", UnixSecs(200)).await.unwrap();
    s.put_cached("old", b"[0]", UnixSecs(50)).await.unwrap();
    assert_eq!(
        s.get_cached("k").await.unwrap(),
        Some((b"[1]".to_vec(), UnixSecs(200)))
    );
    // At t = 100 s the entry expiring at 50 goes, the one at 200 stays.
    s.prune(UnixSecs(100).nanos(), UnixNanos(0)).await.unwrap();
    assert_eq!(s.get_cached("old").await.unwrap(), None);
    assert!(s.get_cached("k").await.unwrap().is_some());
    // It survives a restart.
    drop(s);
    let s = SqliteStore::open(dir.path()).await.unwrap();
    assert!(s.get_cached("k").await.unwrap().is_some());
}

/// A lost compare-and-swap or a reused nonce leaves nothing behind, with and
/// without the savepoint path.
#[tokio::test]
async fn failed_writes_leave_no_trace() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(dir.path()).await.unwrap();
    s.write_agent(write(record(0, 0), None, None, 0))
        .await
        .unwrap();
    assert!(matches!(
        s.write_agent(write(record(0, 0), None, None, 0)).await,
        Err(StoreError::Conflict)
    ));
    for alerts in [0, 1] {
        let cur = s.get_agent("a").await.unwrap().unwrap();
        let v = cur.version;
        // Stale version with a fresh nonce: Conflict, and the nonce is not consumed.
        let stale = write(
            record(v + 1, 9),
            Some(v + 7),
            Some(&format!("n{alerts}")),
            alerts,
        );
        assert!(matches!(
            s.write_agent(stale).await,
            Err(StoreError::Conflict)
        ));
        assert_eq!(s.get_agent("a").await.unwrap().unwrap(), cur);
        let ok = write(
            record(v + 1, cur.sequence + 1),
            Some(v),
            Some(&format!("n{alerts}")),
            alerts,
        );
        s.write_agent(ok).await.unwrap();
        // The same nonce again: DuplicateNonce, record unchanged.
        let now = s.get_agent("a").await.unwrap().unwrap();
        let dup = write(
            record(v + 2, 99),
            Some(v + 1),
            Some(&format!("n{alerts}")),
            alerts,
        );
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
    next.lkg.agent_binary = HexBytes([0xee; 32]); // must NOT be written
    let mut w = write(next.clone(), Some(cur.version), Some("chain"), 0);
    w.chain_only = true;
    s.write_agent(w).await.unwrap();
    let got = s.get_agent("a").await.unwrap().unwrap();
    assert_eq!(got.sequence, next.sequence);
    assert_eq!(got.chain_head, next.chain_head);
    assert_eq!(got.version, next.version);
    assert_eq!(got.lkg, cur.lkg);
    // Only the alerts of successful writes were stored.
    assert_eq!(s.list_alerts(None, 100).await.unwrap().len(), 1);
}

/// A batch whose plain pulses go through the multi-row path (`apply_pulses`): each op
/// gets the outcome it would get alone, and a lost one leaves no trace.
#[tokio::test]
async fn a_run_of_pulses_in_one_batch_keeps_each_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(dir.path()).await.unwrap();
    let rec = |id: &str, version: u64, seq: u64| {
        let mut r = record(version, seq);
        r.agent_id = id.into();
        r
    };
    for id in ["a0", "a1", "a2", "a3"] {
        s.write_agent(write(rec(id, 1, 0), None, None, 0))
            .await
            .unwrap();
    }
    // a2 already consumed nonce "dup".
    let mut w = write(rec("a2", 2, 1), Some(1), Some("dup"), 0);
    w.chain_only = true;
    s.write_agent(w).await.unwrap();

    let pulse = |id: &str, expected: u64, nonce: &str| {
        let mut w = write(
            rec(id, expected + 1, expected),
            Some(expected),
            Some(nonce),
            0,
        );
        w.chain_only = true;
        let (tx, _rx) = tokio::sync::oneshot::channel();
        (writer::Op::Write(Box::new(w)), tx)
    };
    let batch = vec![
        pulse("a0", 1, "x0"),  // fine
        pulse("a1", 7, "x1"),  // stale version: Conflict
        pulse("a2", 2, "dup"), // reused nonce: DuplicateNonce
        pulse("a3", 1, "x3"),  // fine
        pulse("a0", 2, "y0"),  // a0 again: a second run, which sees the first
    ];
    let opts = SqliteConnectOptions::new().filename(dir.path().join("provenant.db"));
    let mut c = SqliteConnection::connect_with(&opts).await.unwrap();
    let out = writer::apply_batch(&mut c, &batch, false).await.unwrap();
    c.close().await.unwrap();
    let kinds: Vec<String> = out
        .iter()
        .map(|r| match r {
            Ok(_) => "ok".to_string(),
            Err(e) => format!("{e:?}"),
        })
        .collect();
    assert_eq!(kinds, ["ok", "Conflict", "DuplicateNonce", "ok", "ok"]);
    let got = |id: &'static str| {
        let s = &s;
        async move { s.get_agent(id).await.unwrap().unwrap() }
    };
    assert_eq!((got("a0").await.version, got("a0").await.sequence), (3, 2));
    assert_eq!(got("a1").await.version, 1);
    assert_eq!(got("a2").await.version, 2);
    assert_eq!((got("a3").await.version, got("a3").await.sequence), (2, 1));
    assert!(s.nonce_seen("a0", "x0").await.unwrap());
    assert!(s.nonce_seen("a0", "y0").await.unwrap());
    assert!(s.nonce_seen("a3", "x3").await.unwrap());
    assert!(
        !s.nonce_seen("a1", "x1").await.unwrap(),
        "a lost compare-and-swap left its nonce"
    );
}
