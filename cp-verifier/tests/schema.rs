//! Schema versions at start: both stores record their migrations in
//! `_sqlx_migrations`, adopt a SQLite database created before versioned migrations,
//! and refuse, changing nothing, a database whose schema is newer than the binary's
//! or whose applied migration differs. `serve` on such a database exits non-zero
//! with the reason. Real SQLite files and a real PostgreSQL (`harness/pg.rs`).

#[path = "harness/pg.rs"]
mod pg;

use std::path::Path;
use std::str::FromStr;

use cp_verifier::model::{Alert, AlertKind};
use cp_verifier::store::postgres::{PgStore, PgTarget};
use cp_verifier::store::schema::SchemaError;
use cp_verifier::store::sqlite::SqliteStore;
use cp_verifier::store::{Store, StoreError};
use provenant_base::clock::UnixNanos;
use sqlx::Connection;

/// The schema version this cp-verifier knows (its newest migration).
const KNOWN: i64 = 3;
const NEWER: &str =
    "database schema version 99 is newer than this cp-verifier (knows up to 3); upgrade cp-verifier";

/// The statements releases before versioned migrations ran at start (verbatim).
const OLD_SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS agents (
        agent_id TEXT PRIMARY KEY,
        version BIGINT NOT NULL,
        last_seen_ns BIGINT NOT NULL,
        blinded INTEGER NOT NULL,
        sequence BIGINT NOT NULL,
        chain_head TEXT NOT NULL,
        record TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS challenges (
        nonce TEXT PRIMARY KEY,
        expires_at_ns BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS pulse_nonces (
        agent_id TEXT NOT NULL,
        nonce TEXT NOT NULL,
        seen_at_ns BIGINT NOT NULL,
        PRIMARY KEY (agent_id, nonce))",
    "CREATE INDEX IF NOT EXISTS pulse_nonces_seen ON pulse_nonces (seen_at_ns)",
    "CREATE TABLE IF NOT EXISTS alerts (
        id TEXT PRIMARY KEY,
        at_ns BIGINT NOT NULL,
        agent_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        severity INTEGER NOT NULL,
        detail TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS alerts_agent ON alerts (agent_id, at_ns)",
    "CREATE INDEX IF NOT EXISTS alerts_at ON alerts (at_ns)",
    "CREATE TABLE IF NOT EXISTS cache (
        key TEXT PRIMARY KEY,
        expires_at BIGINT NOT NULL,
        json BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS deleted_agents (
        agent_id TEXT PRIMARY KEY,
        key_fingerprint TEXT NOT NULL,
        at_ns BIGINT NOT NULL,
        reason TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS withdrawals (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        digest TEXT NOT NULL,
        reason TEXT NOT NULL,
        at_ns BIGINT NOT NULL,
        UNIQUE (kind, digest))",
    "CREATE TABLE IF NOT EXISTS webhook_outbox (
        alert_id TEXT PRIMARY KEY,
        at_ns BIGINT NOT NULL,
        attempts INTEGER NOT NULL,
        next_at_ns BIGINT NOT NULL,
        delivered TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS webhook_outbox_due ON webhook_outbox (next_at_ns)",
    "CREATE TABLE IF NOT EXISTS health (
        id INTEGER PRIMARY KEY,
        at_ns BIGINT NOT NULL)",
];

async fn sqlite_conn(dir: &Path) -> sqlx::SqliteConnection {
    let opts = sqlx::sqlite::SqliteConnectOptions::from_str(&format!(
        "sqlite://{}",
        dir.join("provenant.db").display()
    ))
    .unwrap()
    .create_if_missing(true);
    sqlx::SqliteConnection::connect_with(&opts).await.unwrap()
}

async fn count_sqlite(dir: &Path, table: &str) -> i64 {
    let mut c = sqlite_conn(dir).await;
    let n = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
    n
}

async fn exec_sqlite(dir: &Path, sql: &str) {
    let mut c = sqlite_conn(dir).await;
    sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
    c.close().await.unwrap();
}

async fn count_pg(url: &str, table: &str) -> i64 {
    let mut c = sqlx::PgConnection::connect(url).await.unwrap();
    let n = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
    n
}

fn alert(id: &str) -> Alert {
    let mut a = Alert::new(UnixNanos(5), "node-1", AlertKind::Replay, "x");
    a.id = id.into();
    a
}

#[tokio::test]
async fn sqlite_adopts_a_database_from_before_migrations() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = sqlite_conn(dir.path()).await;
    for s in OLD_SCHEMA {
        sqlx::query(s).execute(&mut c).await.unwrap();
    }
    sqlx::query(
        "INSERT INTO alerts VALUES ('old-1', 5, 'node-1', 'Replay', 2, 'from the old release')",
    )
    .execute(&mut c)
    .await
    .unwrap();
    c.close().await.unwrap();

    // Read-only (as `cp-verifier migrate` opens its source): readable, unchanged.
    let ro = SqliteStore::open_read_only(dir.path()).await.unwrap();
    assert_eq!(ro.list_alerts(None, 10).await.unwrap().len(), 1);
    drop(ro);
    for _ in 0..2 {
        let s = SqliteStore::open(dir.path()).await.unwrap();
        let a = s.list_alerts(None, 10).await.unwrap();
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].detail, "from the old release");
        drop(s);
    }
    let mut c = sqlite_conn(dir.path()).await;
    let rows: Vec<(i64, bool)> = sqlx::query_as("SELECT version, success FROM _sqlx_migrations")
        .fetch_all(&mut c)
        .await
        .unwrap();
    assert_eq!(rows, (1..=KNOWN).map(|v| (v, true)).collect::<Vec<_>>());
}

#[tokio::test]
async fn sqlite_refuses_a_newer_or_modified_schema_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(dir.path()).await.unwrap();
    s.insert_alerts(&[alert("a-1")]).await.unwrap();
    drop(s);
    exec_sqlite(
        dir.path(),
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99, 'from a newer cp-verifier', 1, x'00', 0)",
    )
    .await;
    let e = SqliteStore::open(dir.path()).await.err().expect("refused");
    assert!(
        matches!(
            &e,
            StoreError::Schema {
                why: SchemaError::Newer {
                    found: 99,
                    known: KNOWN
                },
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains(NEWER), "{e}");
    assert_eq!(
        cp_verifier::store::sqlite::MIGRATOR.iter().count(),
        usize::try_from(KNOWN).unwrap()
    );
    assert!(SqliteStore::open_read_only(dir.path()).await.is_err());
    assert_eq!(
        count_sqlite(dir.path(), "_sqlx_migrations").await,
        KNOWN + 1
    );
    assert_eq!(count_sqlite(dir.path(), "alerts").await, 1);

    // Back to version 1, but its checksum altered: refused too.
    exec_sqlite(
        dir.path(),
        "DELETE FROM _sqlx_migrations WHERE version = 99; \
         UPDATE _sqlx_migrations SET checksum = x'0102' WHERE version = 1",
    )
    .await;
    let e = SqliteStore::open(dir.path()).await.err().expect("refused");
    assert!(
        matches!(
            &e,
            StoreError::Schema {
                why: SchemaError::Modified { version: 1 },
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(count_sqlite(dir.path(), "_sqlx_migrations").await, KNOWN);
    assert_eq!(count_sqlite(dir.path(), "alerts").await, 1);
}

#[tokio::test]
async fn postgres_refuses_a_newer_or_modified_schema_untouched() {
    let url = pg::shared().fresh_database().await;
    let t = PgTarget::parse(&url, None).unwrap();
    let s = PgStore::connect(&t).await.unwrap();
    s.insert_alerts(&[alert("a-1")]).await.unwrap();
    let applied = s.applied_migrations().await.unwrap();
    let versions: Vec<i64> = applied.iter().map(|a| a.version).collect();
    assert_eq!(versions, (1..=KNOWN).collect::<Vec<_>>());
    drop(s);
    pg::PgCluster::exec(
        &url,
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99, 'from a newer cp-verifier', true, '\\x00', 0)",
    )
    .await;
    let e = PgStore::connect(&t).await.expect_err("refused");
    assert!(
        matches!(
            &e,
            StoreError::Schema {
                why: SchemaError::Newer {
                    found: 99,
                    known: KNOWN
                },
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains(NEWER), "{e}");
    // `migrate-store` takes the same path.
    let only = PgStore::connect_only(&t).await.unwrap();
    assert!(matches!(
        only.migrate().await,
        Err(StoreError::Schema { .. })
    ));
    assert_eq!(count_pg(&url, "_sqlx_migrations").await, KNOWN + 1);
    assert_eq!(count_pg(&url, "alerts").await, 1);

    pg::PgCluster::exec(
        &url,
        "DELETE FROM _sqlx_migrations WHERE version = 99; \
         UPDATE _sqlx_migrations SET checksum = '\\x0102' WHERE version = 1",
    )
    .await;
    let e = PgStore::connect(&t).await.expect_err("refused");
    assert!(
        matches!(
            &e,
            StoreError::Schema {
                why: SchemaError::Modified { version: 1 },
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(count_pg(&url, "_sqlx_migrations").await, KNOWN);
    assert_eq!(count_pg(&url, "alerts").await, 1);
}

#[tokio::test]
async fn serve_exits_non_zero_on_a_newer_schema() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    drop(SqliteStore::open(&data).await.unwrap());
    exec_sqlite(
        &data,
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99, 'from a newer cp-verifier', 1, x'00', 0)",
    )
    .await;
    let cfg = dir.path().join("cp.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n",
            data.display()
        ),
    )
    .unwrap();
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_cp-verifier"))
            .args(["serve", "--config", cfg.to_str().unwrap()])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("serve did not exit")
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains(NEWER), "{err}");
    // Ours and the newer one, nothing more.
    assert_eq!(count_sqlite(&data, "_sqlx_migrations").await, KNOWN + 1);
}
