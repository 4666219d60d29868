//! `cp-verifier migrate --from sqlite:… --to postgres://…`: moves a fleet from the
//! embedded SQLite store to a shared PostgreSQL store without losing its baselines.
//!
//! 1. The source is opened read-only (nothing in it changes) and its schema checked.
//! 2. Its whole state is read: agents (record, version, chain head, sequence,
//!    baselines) through the [`Store`] trait, alerts and withdrawals likewise, and
//!    tombstones, pulse nonces, still-valid cache entries, the webhook outbox and the
//!    health probe through the SQLite store's own listings. Then the agents' versions
//!    and the other counts are read again: if anything moved, a cp-verifier is still
//!    writing to the source and the migration stops.
//! 3. The target is migrated to the current schema (refused if newer), and the fleet
//!    loaded in one transaction ([`PgStore::import_fleet`]): refused if the target
//!    already holds fleet state (unless `replace`), counts checked before commit.
//! 4. After the commit, the agents, alerts, withdrawals and tombstones are read back
//!    through the [`Store`] trait and compared with what was read.

use std::path::{Path, PathBuf};

use provenant_base::clock::UnixNanos;

use super::fleet::{FleetCounts, FleetSnapshot, ImportError};
use super::postgres::{PgStore, PgTarget};
use super::sqlite::SqliteStore;
use super::{Store, StoreError};

/// Why a migration stopped. Nothing was written to the target (except, for
/// [`FleetMigrateError::Verify`], a committed copy that read back differently).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FleetMigrateError {
    /// `--from` is not `sqlite:<path>`.
    #[error("--from: {0}")]
    From(String),
    /// The source store cannot be opened or read.
    #[error("source: {0}")]
    Source(StoreError),
    /// A source agent record cannot be decoded.
    #[error("source: agent {agent_id:?} cannot be decoded ({why}); repair or delete it before migrating")]
    SourceCorrupt {
        /// The agent.
        agent_id: String,
        /// Why.
        why: String,
    },
    /// The source changed while it was read.
    #[error(
        "source: changed while it was read; stop the cp-verifier using it, then migrate again"
    )]
    SourceChanged,
    /// The target store cannot be opened or migrated.
    #[error("target: {0}")]
    Target(StoreError),
    /// Loading into the target failed (or was refused); rolled back.
    #[error("target: {0}")]
    Import(#[from] ImportError),
    /// The committed copy does not read back as the source.
    #[error("target: read back after commit differs from the source: {0}")]
    Verify(String),
}

impl FleetMigrateError {
    /// A stable short name for scripts (`error` in the JSON output).
    pub fn kind(&self) -> &'static str {
        match self {
            FleetMigrateError::From(_) => "BadSource",
            FleetMigrateError::Source(StoreError::Schema { .. })
            | FleetMigrateError::Target(StoreError::Schema { .. }) => "SchemaRefused",
            FleetMigrateError::Source(_) => "SourceUnavailable",
            FleetMigrateError::SourceCorrupt { .. } => "SourceCorrupt",
            FleetMigrateError::SourceChanged => "SourceChanged",
            FleetMigrateError::Target(_) => "TargetUnavailable",
            FleetMigrateError::Import(ImportError::TargetNotEmpty(_)) => "TargetNotEmpty",
            FleetMigrateError::Import(ImportError::CountMismatch { .. }) => "CountMismatch",
            FleetMigrateError::Import(_) => "TargetUnavailable",
            FleetMigrateError::Verify(_) => "VerifyFailed",
        }
    }
}

/// What a migration did (printed as JSON by the command).
#[derive(Debug, Clone, serde::Serialize)]
pub struct MigrateSummary {
    /// The source database file.
    pub from: String,
    /// The target (URL without its password).
    pub to: String,
    /// Whether the target's previous fleet state was replaced.
    pub replaced: bool,
    /// Rows copied, per kind (equal in source and target: checked).
    pub copied: FleetCounts,
    /// Whether the read-back after commit matched the source.
    pub verified: bool,
    /// The target's schema version.
    pub schema_version: i64,
}

/// The database path in `sqlite:<path>` (or `sqlite://<path>`): a data directory or
/// the database file itself.
pub fn parse_source(from: &str) -> Result<PathBuf, FleetMigrateError> {
    let p = from
        .strip_prefix("sqlite://")
        .or_else(|| from.strip_prefix("sqlite:"))
        .ok_or_else(|| {
            FleetMigrateError::From(format!(
                "{:?} is not sqlite:<data_dir or database file>",
                from.chars().take(60).collect::<String>()
            ))
        })?;
    if p.is_empty() {
        return Err(FleetMigrateError::From("empty path after sqlite:".into()));
    }
    Ok(PathBuf::from(p))
}

/// Moves the fleet in the SQLite database at `from` into the PostgreSQL database
/// `to` (see the module doc). `now` decides which cache entries are still valid.
pub async fn migrate(
    from: &Path,
    to: &PgTarget,
    replace: bool,
    now: UnixNanos,
) -> Result<MigrateSummary, FleetMigrateError> {
    let src = SqliteStore::open_read_only(from)
        .await
        .map_err(FleetMigrateError::Source)?;
    let snap = export(&src, now).await?;
    let dst = PgStore::connect(to)
        .await
        .map_err(FleetMigrateError::Target)?;
    let copied = dst.import_fleet(&snap, replace).await?;
    verify(&snap, &dst).await?;
    let schema_version = super::schema::known_version(&super::postgres::MIGRATOR);
    Ok(MigrateSummary {
        from: from.display().to_string(),
        to: to.to_string(),
        replaced: replace,
        copied,
        verified: true,
        schema_version,
    })
}

/// What changes when a cp-verifier writes: agents' versions, and row counts.
#[derive(PartialEq, Eq)]
struct Fingerprint {
    agents: Vec<(String, u64)>,
    newest_alert: Option<String>,
    tombstones: usize,
    withdrawals: usize,
    outbox: u64,
    nonces: usize,
}

async fn fingerprint(s: &SqliteStore) -> Result<Fingerprint, StoreError> {
    let agents = s
        .scan_agents()
        .await?
        .into_iter()
        .map(|(id, r)| {
            let v = r.map(|r| r.version).unwrap_or(u64::MAX);
            (id, v)
        })
        .collect();
    Ok(Fingerprint {
        agents,
        newest_alert: s.list_alerts(None, 1).await?.pop().map(|a| a.id),
        tombstones: s.list_tombstones().await?.len(),
        withdrawals: s.list_withdrawals().await?.len(),
        outbox: s.outbox_len().await?,
        nonces: s.list_nonces().await?.len(),
    })
}

/// Reads the whole fleet from `src`, checking nothing moved meanwhile.
pub async fn export(src: &SqliteStore, now: UnixNanos) -> Result<FleetSnapshot, FleetMigrateError> {
    let source = FleetMigrateError::Source;
    let before = fingerprint(src).await.map_err(source)?;
    let mut agents = Vec::new();
    for (agent_id, r) in src.scan_agents().await.map_err(source)? {
        match r {
            Ok(r) => agents.push(r),
            Err(e) => {
                return Err(FleetMigrateError::SourceCorrupt {
                    agent_id,
                    why: e.to_string(),
                })
            }
        }
    }
    let snap = FleetSnapshot {
        agents,
        tombstones: src.list_tombstones().await.map_err(source)?,
        withdrawals: src.list_withdrawals().await.map_err(source)?,
        alerts: src.list_alerts(None, u32::MAX).await.map_err(source)?,
        outbox: src.list_outbox().await.map_err(source)?,
        cache: src.list_cached(now.secs()).await.map_err(source)?,
        nonces: src.list_nonces().await.map_err(source)?,
        health: src.list_health().await.map_err(source)?,
        changes: src.list_changes().await.map_err(source)?,
        pulses: src.list_pulse_counts().await.map_err(source)?,
    };
    if fingerprint(src).await.map_err(source)? != before {
        return Err(FleetMigrateError::SourceChanged);
    }
    Ok(snap)
}

/// Reads the target back through the [`Store`] trait and compares.
async fn verify(snap: &FleetSnapshot, dst: &PgStore) -> Result<(), FleetMigrateError> {
    let target = FleetMigrateError::Target;
    let differs = |what: &str| FleetMigrateError::Verify(what.to_string());
    let mut want = snap.agents.clone();
    want.sort_by(|a, b| a.agent_id.cmp(&b.agent_id));
    let mut got = dst.list_agents().await.map_err(target)?;
    got.sort_by(|a, b| a.agent_id.cmp(&b.agent_id));
    if got != want {
        return Err(differs("agents"));
    }
    let mut want = snap.alerts.clone();
    want.sort_by(|a, b| a.id.cmp(&b.id));
    let mut got = dst.list_alerts(None, u32::MAX).await.map_err(target)?;
    got.sort_by(|a, b| a.id.cmp(&b.id));
    if got != want {
        return Err(differs("alerts"));
    }
    let mut want = snap.withdrawals.clone();
    want.sort_by(|a, b| a.id.cmp(&b.id));
    let mut got = dst.list_withdrawals().await.map_err(target)?;
    got.sort_by(|a, b| a.id.cmp(&b.id));
    if got != want {
        return Err(differs("withdrawals"));
    }
    for t in &snap.tombstones {
        if dst
            .get_tombstone(&t.agent_id)
            .await
            .map_err(target)?
            .as_ref()
            != Some(t)
        {
            return Err(differs("tombstones"));
        }
    }
    let mut agents_with_history: Vec<&str> =
        snap.changes.iter().map(|c| c.agent_id.as_str()).collect();
    agents_with_history.sort_unstable();
    agents_with_history.dedup();
    for a in agents_with_history.iter().take(1000) {
        let mut want: Vec<_> = snap
            .changes
            .iter()
            .filter(|c| c.agent_id == *a)
            .cloned()
            .collect();
        want.reverse();
        let got = dst.verdict_history(a, u32::MAX).await.map_err(target)?;
        if got.len() != want.len() || got.iter().zip(&want).any(|(g, w)| g != w) {
            return Err(differs("badge changes"));
        }
    }
    if dst.outbox_len().await.map_err(target)? != snap.counts().outbox {
        return Err(differs("webhook outbox"));
    }
    for n in snap.nonces.iter().take(1000) {
        if !dst
            .nonce_seen(&n.agent_id, &n.nonce)
            .await
            .map_err(target)?
        {
            return Err(differs("pulse nonces"));
        }
    }
    Ok(())
}
