//! Bulk load of a whole fleet (`cp-verifier migrate`): one transaction that locks the
//! fleet's tables against concurrent writers, checks the target holds no fleet state
//! (unless told to replace it), inserts every row with multi-row `UNNEST` inserts,
//! and counts what it wrote before committing. Any failure rolls all of it back.

use sqlx::{Postgres, Transaction};

use super::{unavailable, PgStore};
use crate::store::fleet::{FleetCounts, FleetSnapshot, ImportError};
use crate::store::{to_i64, to_u64};

type Tx<'a> = Transaction<'a, Postgres>;

/// Rows per insert statement (each statement stays well inside the statement timeout).
const CHUNK: usize = 1000;

/// Every table of fleet state; locked for the whole import.
const TABLES: &str =
    "agents, deleted_agents, withdrawals, alerts, webhook_outbox, cache, pulse_nonces, health, challenges, verdict_changes, pulse_counts";

impl PgStore {
    /// Loads `f` into this (migrated) database in one transaction and returns the row
    /// counts it wrote. A target holding fleet state (agents, tombstones, withdrawals,
    /// alerts, outbox entries or nonces) is refused with
    /// [`ImportError::TargetNotEmpty`], nothing changed, unless `replace`: then all of
    /// it is deleted first, in the same transaction. The target's cache and health
    /// probe rows (which a replica writes on its own) are always replaced by `f`'s.
    pub async fn import_fleet(
        &self,
        f: &FleetSnapshot,
        replace: bool,
    ) -> Result<FleetCounts, ImportError> {
        let mut tx = self.pool().begin().await.map_err(unavailable)?;
        // EXCLUSIVE lets readers read and makes every writer (a replica started too
        // early) wait for the commit, so the emptiness check holds until then.
        sqlx::query(&format!("LOCK TABLE {TABLES} IN EXCLUSIVE MODE"))
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        let before = count_all(&mut tx).await?;
        if before.has_fleet_state() && !replace {
            return Err(ImportError::TargetNotEmpty(Box::new(before)));
        }
        let wipe: &[&str] = if replace {
            &[
                "webhook_outbox",
                "alerts",
                "verdict_changes",
                "pulse_counts",
                "pulse_nonces",
                "agents",
                "deleted_agents",
                "withdrawals",
                "challenges",
                "cache",
                "health",
            ]
        } else {
            &["cache", "health"]
        };
        for t in wipe {
            sqlx::query(&format!("DELETE FROM {t}"))
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
        }
        insert_agents(&mut tx, f).await?;
        insert_rest(&mut tx, f).await?;
        let after = count_all(&mut tx).await?;
        let expected = f.counts();
        if after != expected {
            return Err(ImportError::CountMismatch {
                expected: Box::new(expected),
                found: Box::new(after),
            });
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(after)
    }

    /// Row counts of every kind of fleet state.
    pub async fn fleet_counts(&self) -> Result<FleetCounts, ImportError> {
        let mut tx = self.pool().begin().await.map_err(unavailable)?;
        let c = count_all(&mut tx).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(c)
    }
}

async fn count_all(tx: &mut Tx<'_>) -> Result<FleetCounts, ImportError> {
    let r: (i64, i64, i64, i64, i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM agents), (SELECT COUNT(*) FROM deleted_agents), \
         (SELECT COUNT(*) FROM withdrawals), (SELECT COUNT(*) FROM alerts), \
         (SELECT COUNT(*) FROM webhook_outbox), (SELECT COUNT(*) FROM cache), \
         (SELECT COUNT(*) FROM pulse_nonces), (SELECT COUNT(*) FROM health)",
    )
    .fetch_one(&mut **tx)
    .await
    .map_err(unavailable)?;
    let h: (i64, i64) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM verdict_changes), (SELECT COUNT(*) FROM pulse_counts)",
    )
    .fetch_one(&mut **tx)
    .await
    .map_err(unavailable)?;
    Ok(FleetCounts {
        agents: to_u64(r.0),
        tombstones: to_u64(r.1),
        withdrawals: to_u64(r.2),
        alerts: to_u64(r.3),
        outbox: to_u64(r.4),
        cache: to_u64(r.5),
        nonces: to_u64(r.6),
        health: to_u64(r.7),
        changes: to_u64(h.0),
        pulses: to_u64(h.1),
    })
}

async fn insert_agents(tx: &mut Tx<'_>, f: &FleetSnapshot) -> Result<(), ImportError> {
    for chunk in f.agents.chunks(CHUNK) {
        let mut json = Vec::with_capacity(chunk.len());
        for r in chunk {
            json.push(serde_json::to_string(r).map_err(|e| {
                ImportError::Store(crate::store::StoreError::Corrupt(format!(
                    "agent {}: {e}",
                    r.agent_id
                )))
            })?);
        }
        sqlx::query(
            "INSERT INTO agents (agent_id, version, last_seen_ns, blinded, sequence, chain_head, record) \
             SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::bool[], $5::bigint[], $6::text[], $7::text[])",
        )
        .bind(chunk.iter().map(|r| r.agent_id.as_str()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| to_i64(r.version)).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| to_i64(r.last_seen_ns)).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.blinded).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| to_i64(r.sequence)).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.chain_head.to_hex()).collect::<Vec<_>>())
        .bind(json)
        .execute(&mut **tx)
        .await
        .map_err(unavailable)?;
    }
    Ok(())
}

/// Everything but the agents.
async fn insert_rest(tx: &mut Tx<'_>, f: &FleetSnapshot) -> Result<(), ImportError> {
    for c in f.tombstones.chunks(CHUNK) {
        sqlx::query(
            "INSERT INTO deleted_agents (agent_id, key_fingerprint, at_ns, reason) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[])",
        )
        .bind(c.iter().map(|t| t.agent_id.as_str()).collect::<Vec<_>>())
        .bind(
            c.iter()
                .map(|t| t.key_fingerprint.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(c.iter().map(|t| to_i64(t.at_ns)).collect::<Vec<_>>())
        .bind(c.iter().map(|t| t.reason.as_str()).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await
        .map_err(unavailable)?;
    }
    for c in f.withdrawals.chunks(CHUNK) {
        sqlx::query(
            "INSERT INTO withdrawals (id, kind, digest, reason, at_ns) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[])",
        )
        .bind(c.iter().map(|w| w.id.as_str()).collect::<Vec<_>>())
        .bind(c.iter().map(|w| w.kind.as_str()).collect::<Vec<_>>())
        .bind(c.iter().map(|w| w.digest.as_str()).collect::<Vec<_>>())
        .bind(c.iter().map(|w| w.reason.as_str()).collect::<Vec<_>>())
        .bind(c.iter().map(|w| to_i64(w.at_ns)).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await
        .map_err(unavailable)?;
    }
    for c in f.alerts.chunks(CHUNK) {
        sqlx::query(
            "INSERT INTO alerts (id, at_ns, agent_id, kind, severity, detail, acked_at_ns, acked_by, ack_note, explain) \
             SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::bigint[], $8::text[], $9::text[], $10::text[])",
        )
        .bind(c.iter().map(|a| a.id.as_str()).collect::<Vec<_>>())
        .bind(c.iter().map(|a| to_i64(a.at_ns)).collect::<Vec<_>>())
        .bind(c.iter().map(|a| a.agent_id.as_str()).collect::<Vec<_>>())
        .bind(c.iter().map(|a| a.kind.as_str()).collect::<Vec<_>>())
        .bind(c.iter().map(|a| i64::from(a.severity)).collect::<Vec<_>>())
        .bind(c.iter().map(|a| a.detail.as_str()).collect::<Vec<_>>())
        .bind(
            c.iter()
                .map(|a| a.ack.as_ref().map(|k| to_i64(k.at_ns)))
                .collect::<Vec<_>>(),
        )
        .bind(
            c.iter()
                .map(|a| a.ack.as_ref().map(|k| k.by.as_str()))
                .collect::<Vec<_>>(),
        )
        .bind(
            c.iter()
                .map(|a| a.ack.as_ref().map(|k| k.note.as_str()))
                .collect::<Vec<_>>(),
        )
        .bind(
            c.iter()
                .map(crate::store::rows::explain_json)
                .collect::<Vec<_>>(),
        )
        .execute(&mut **tx)
        .await
        .map_err(unavailable)?;
    }
    for c in f.changes.chunks(CHUNK) {
        let bodies = c
            .iter()
            .map(crate::store::rows::change_json)
            .collect::<Result<Vec<_>, _>>()?;
        sqlx::query(
            "INSERT INTO verdict_changes (agent_id, at_ns, body) \
             SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::text[])",
        )
        .bind(c.iter().map(|x| x.agent_id.as_str()).collect::<Vec<_>>())
        .bind(c.iter().map(|x| to_i64(x.at_ns)).collect::<Vec<_>>())
        .bind(bodies)
        .execute(&mut **tx)
        .await
        .map_err(unavailable)?;
    }
    for c in f.pulses.chunks(CHUNK) {
        sqlx::query(
            "INSERT INTO pulse_counts (agent_id, minute, accepted, refused) \
             SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::bigint[])",
        )
        .bind(c.iter().map(|x| x.0.as_str()).collect::<Vec<_>>())
        .bind(c.iter().map(|x| to_i64(x.1.minute)).collect::<Vec<_>>())
        .bind(c.iter().map(|x| to_i64(x.1.accepted)).collect::<Vec<_>>())
        .bind(c.iter().map(|x| to_i64(x.1.refused)).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await
        .map_err(unavailable)?;
    }
    for c in f.outbox.chunks(CHUNK) {
        sqlx::query(
            "INSERT INTO webhook_outbox (alert_id, at_ns, attempts, next_at_ns, delivered) \
             SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::text[])",
        )
        .bind(c.iter().map(|o| o.alert_id.as_str()).collect::<Vec<_>>())
        .bind(c.iter().map(|o| to_i64(o.at_ns)).collect::<Vec<_>>())
        .bind(c.iter().map(|o| i64::from(o.attempts)).collect::<Vec<_>>())
        .bind(c.iter().map(|o| to_i64(o.next_at_ns)).collect::<Vec<_>>())
        .bind(c.iter().map(|o| o.delivered.as_str()).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await
        .map_err(unavailable)?;
    }
    for c in f.cache.chunks(CHUNK) {
        sqlx::query(
            "INSERT INTO cache (key, expires_at, json) \
             SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bytea[])",
        )
        .bind(c.iter().map(|r| r.key.as_str()).collect::<Vec<_>>())
        .bind(c.iter().map(|r| r.expires_at).collect::<Vec<_>>())
        .bind(c.iter().map(|r| r.json.as_slice()).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await
        .map_err(unavailable)?;
    }
    for c in f.nonces.chunks(CHUNK) {
        sqlx::query(
            "INSERT INTO pulse_nonces (agent_id, nonce, seen_at_ns) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[])",
        )
        .bind(c.iter().map(|n| n.agent_id.as_str()).collect::<Vec<_>>())
        .bind(c.iter().map(|n| n.nonce.as_str()).collect::<Vec<_>>())
        .bind(c.iter().map(|n| to_i64(n.seen_at_ns)).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await
        .map_err(unavailable)?;
    }
    for c in f.health.chunks(CHUNK) {
        sqlx::query(
            "INSERT INTO health (id, at_ns) SELECT * FROM UNNEST($1::bigint[], $2::bigint[])",
        )
        .bind(c.iter().map(|h| h.0).collect::<Vec<_>>())
        .bind(c.iter().map(|h| to_i64(h.1)).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await
        .map_err(unavailable)?;
    }
    Ok(())
}
