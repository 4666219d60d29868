//! The PostgreSQL store's writes that change more than one row: each is one
//! transaction, and a logical failure (compare-and-swap lost, nonce reused) rolls
//! the whole of it back.

use sqlx::{PgPool, Postgres, Transaction};

use super::unavailable;
use crate::model::{Ack, Alert, Tombstone, Withdrawal};
use crate::store::{to_i64, AgentWrite, StoreError};

type Tx<'a> = Transaction<'a, Postgres>;

/// PostgreSQL's SQLSTATEs for a lost serialisation race and a deadlock: the other
/// writer won, as with a failed compare-and-swap.
fn conflict_or_unavailable(e: sqlx::Error) -> StoreError {
    match e.as_database_error().and_then(|d| d.code()) {
        Some(c) if c == "40001" || c == "40P01" => StoreError::Conflict,
        _ => unavailable(e),
    }
}

/// The statements of one [`AgentWrite`]; the caller commits or rolls back.
async fn write_in(tx: &mut Tx<'_>, w: &AgentWrite, outbox: bool) -> Result<(), StoreError> {
    let rec = &w.record;
    if let Some(nonce) = &w.nonce {
        // The primary key (agent_id, nonce) is the replay guard across replicas: of two
        // transactions inserting the same nonce, the second waits for the first and,
        // once it commits, inserts nothing.
        let n = sqlx::query(
            "INSERT INTO pulse_nonces (agent_id, nonce, seen_at_ns) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(&rec.agent_id)
        .bind(nonce)
        .bind(to_i64(rec.last_seen_ns))
        .execute(&mut **tx)
        .await
        .map_err(conflict_or_unavailable)?
        .rows_affected();
        if n != 1 {
            return Err(StoreError::DuplicateNonce);
        }
    }
    let head = rec.chain_head.to_hex();
    let json = if w.chain_only {
        None
    } else {
        Some(serde_json::to_string(rec).map_err(|e| StoreError::Corrupt(e.to_string()))?)
    };
    let q = match (w.expected_version, &json) {
        (None, None) => {
            return Err(StoreError::Corrupt(
                "a new agent needs its full record".into(),
            ))
        }
        (None, Some(json)) => sqlx::query(
            "INSERT INTO agents (agent_id, version, last_seen_ns, blinded, sequence, chain_head, record) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        )
        .bind(&rec.agent_id)
        .bind(to_i64(rec.version))
        .bind(to_i64(rec.last_seen_ns))
        .bind(rec.blinded)
        .bind(to_i64(rec.sequence))
        .bind(&head)
        .bind(json),
        // Compare-and-swap: a concurrent writer's committed change makes the WHERE
        // false (READ COMMITTED re-checks it on the newest row version).
        (Some(v), Some(json)) => sqlx::query(
            "UPDATE agents SET version = $1, last_seen_ns = $2, blinded = $3, sequence = $4, chain_head = $5, record = $6 \
             WHERE agent_id = $7 AND version = $8",
        )
        .bind(to_i64(rec.version))
        .bind(to_i64(rec.last_seen_ns))
        .bind(rec.blinded)
        .bind(to_i64(rec.sequence))
        .bind(&head)
        .bind(json)
        .bind(&rec.agent_id)
        .bind(to_i64(v)),
        (Some(v), None) => sqlx::query(
            "UPDATE agents SET version = $1, last_seen_ns = $2, blinded = $3, sequence = $4, chain_head = $5 \
             WHERE agent_id = $6 AND version = $7",
        )
        .bind(to_i64(rec.version))
        .bind(to_i64(rec.last_seen_ns))
        .bind(rec.blinded)
        .bind(to_i64(rec.sequence))
        .bind(&head)
        .bind(&rec.agent_id)
        .bind(to_i64(v)),
    };
    let n = q
        .execute(&mut **tx)
        .await
        .map_err(conflict_or_unavailable)?
        .rows_affected();
    if n != 1 {
        return Err(StoreError::Conflict);
    }
    insert_alerts(tx, &w.alerts, outbox).await?;
    insert_changes(tx, &w.changes).await
}

/// Records badge changes (in the transaction of the write that made them).
async fn insert_changes(
    tx: &mut Tx<'_>,
    changes: &[crate::model::VerdictChange],
) -> Result<(), StoreError> {
    for c in changes {
        sqlx::query("INSERT INTO verdict_changes (agent_id, at_ns, body) VALUES ($1, $2, $3)")
            .bind(&c.agent_id)
            .bind(to_i64(c.at_ns))
            .bind(crate::store::rows::change_json(c)?)
            .execute(&mut **tx)
            .await
            .map_err(unavailable)?;
    }
    Ok(())
}

/// One [`AgentWrite`], in one transaction: all of it or nothing.
pub(super) async fn write_agent(
    pool: &PgPool,
    w: &AgentWrite,
    outbox: bool,
) -> Result<(), StoreError> {
    let mut tx = pool.begin().await.map_err(unavailable)?;
    // On error the transaction is dropped, which rolls it back: the consumed nonce
    // and anything else this write did go with it.
    write_in(&mut tx, w, outbox).await?;
    tx.commit().await.map_err(conflict_or_unavailable)
}

pub(super) async fn insert_alerts(
    tx: &mut Tx<'_>,
    alerts: &[Alert],
    outbox: bool,
) -> Result<(), StoreError> {
    for a in alerts {
        if outbox && a.severity <= crate::act::alerts::DURABLE_SEVERITY {
            sqlx::query(
                "INSERT INTO webhook_outbox (alert_id, at_ns, attempts, next_at_ns, delivered) VALUES ($1, $2, 0, $3, '[]') ON CONFLICT DO NOTHING",
            )
            .bind(&a.id)
            .bind(to_i64(a.at_ns))
            .bind(to_i64(a.at_ns))
            .execute(&mut **tx)
            .await
            .map_err(unavailable)?;
        }
        sqlx::query(
            "INSERT INTO alerts (id, at_ns, agent_id, kind, severity, detail, explain) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&a.id)
        .bind(to_i64(a.at_ns))
        .bind(&a.agent_id)
        .bind(a.kind.as_str())
        .bind(i64::from(a.severity))
        .bind(&a.detail)
        .bind(crate::store::rows::explain_json(a))
        .execute(&mut **tx)
        .await
        .map_err(unavailable)?;
    }
    Ok(())
}

/// Acknowledges alert `id` with the audit alerts, in one transaction; false (nothing
/// written) if there is no such alert or it is already acknowledged.
pub(super) async fn ack_alert(
    pool: &PgPool,
    id: &str,
    ack: &Ack,
    audit: &[Alert],
    outbox: bool,
) -> Result<bool, StoreError> {
    let mut tx = pool.begin().await.map_err(unavailable)?;
    let n = sqlx::query(crate::store::rows::ack_sql(true))
        .bind(to_i64(ack.at_ns))
        .bind(&ack.by)
        .bind(&ack.note)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?
        .rows_affected();
    if n != 1 {
        return Ok(false);
    }
    insert_alerts(&mut tx, audit, outbox).await?;
    tx.commit().await.map_err(conflict_or_unavailable)?;
    Ok(true)
}

pub(super) async fn prune(pool: &PgPool, now: u64, cutoff: u64) -> Result<(), StoreError> {
    let mut tx = pool.begin().await.map_err(unavailable)?;
    sqlx::query("DELETE FROM challenges WHERE expires_at_ns < $1")
        .bind(to_i64(now))
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
    sqlx::query("DELETE FROM pulse_nonces WHERE seen_at_ns < $1")
        .bind(to_i64(cutoff))
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
    sqlx::query("DELETE FROM cache WHERE expires_at <= $1")
        .bind(to_i64(now / 1_000_000_000))
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
    tx.commit().await.map_err(unavailable)
}

pub(super) async fn delete_agent(
    pool: &PgPool,
    t: &Tombstone,
    version: u64,
    alerts: &[Alert],
    outbox: bool,
) -> Result<(), StoreError> {
    let mut tx = pool.begin().await.map_err(unavailable)?;
    let n = sqlx::query("DELETE FROM agents WHERE agent_id = $1 AND version = $2")
        .bind(&t.agent_id)
        .bind(to_i64(version))
        .execute(&mut *tx)
        .await
        .map_err(conflict_or_unavailable)?
        .rows_affected();
    if n != 1 {
        return Err(StoreError::Conflict);
    }
    sqlx::query(
        "INSERT INTO deleted_agents (agent_id, key_fingerprint, at_ns, reason) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (agent_id) DO UPDATE SET key_fingerprint = excluded.key_fingerprint, at_ns = excluded.at_ns, reason = excluded.reason",
    )
    .bind(&t.agent_id)
    .bind(&t.key_fingerprint)
    .bind(to_i64(t.at_ns))
    .bind(&t.reason)
    .execute(&mut *tx)
    .await
    .map_err(unavailable)?;
    sqlx::query("DELETE FROM pulse_nonces WHERE agent_id = $1")
        .bind(&t.agent_id)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
    insert_alerts(&mut tx, alerts, outbox).await?;
    tx.commit().await.map_err(conflict_or_unavailable)
}

pub(super) async fn put_withdrawal(
    pool: &PgPool,
    w: &Withdrawal,
    alerts: &[Alert],
    outbox: bool,
) -> Result<bool, StoreError> {
    let mut tx = pool.begin().await.map_err(unavailable)?;
    let n = sqlx::query(
        "INSERT INTO withdrawals (id, kind, digest, reason, at_ns) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
    )
    .bind(&w.id)
    .bind(w.kind.as_str())
    .bind(&w.digest)
    .bind(&w.reason)
    .bind(to_i64(w.at_ns))
    .execute(&mut *tx)
    .await
    .map_err(unavailable)?
    .rows_affected();
    if n == 1 {
        insert_alerts(&mut tx, alerts, outbox).await?;
    }
    tx.commit().await.map_err(unavailable)?;
    Ok(n == 1)
}

pub(super) async fn delete_withdrawal(
    pool: &PgPool,
    id: &str,
    alerts: &[Alert],
    outbox: bool,
) -> Result<bool, StoreError> {
    let mut tx = pool.begin().await.map_err(unavailable)?;
    let n = sqlx::query("DELETE FROM withdrawals WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?
        .rows_affected();
    if n == 1 {
        insert_alerts(&mut tx, alerts, outbox).await?;
    }
    tx.commit().await.map_err(unavailable)?;
    Ok(n == 1)
}

pub(super) async fn prune_alerts(pool: &PgPool, before: u64) -> Result<u64, StoreError> {
    let mut tx = pool.begin().await.map_err(unavailable)?;
    sqlx::query("DELETE FROM webhook_outbox WHERE at_ns < $1")
        .bind(to_i64(before))
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
    let n = sqlx::query("DELETE FROM alerts WHERE at_ns < $1")
        .bind(to_i64(before))
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?
        .rows_affected();
    sqlx::query("DELETE FROM verdict_changes WHERE at_ns < $1")
        .bind(to_i64(before))
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
    sqlx::query("DELETE FROM pulse_counts WHERE minute < $1")
        .bind(to_i64(before / 60_000_000_000))
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
    tx.commit().await.map_err(unavailable)?;
    Ok(n)
}

/// Adds pulse counts to the stored ones, in one statement (additive: replicas each
/// add their own).
pub(super) async fn add_pulse_counts(
    pool: &PgPool,
    counts: &[(String, crate::model::PulseCount)],
) -> Result<(), StoreError> {
    if counts.is_empty() {
        return Ok(());
    }
    // A batch may name one (agent, minute) twice only if the caller merged badly;
    // ON CONFLICT cannot touch one row twice in a statement, so merge here.
    let mut merged: std::collections::BTreeMap<(&str, u64), (u64, u64)> = Default::default();
    for (a, p) in counts {
        let e = merged.entry((a.as_str(), p.minute)).or_default();
        e.0 = e.0.saturating_add(p.accepted);
        e.1 = e.1.saturating_add(p.refused);
    }
    sqlx::query(
        "INSERT INTO pulse_counts (agent_id, minute, accepted, refused) \
         SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::bigint[]) \
         ON CONFLICT (agent_id, minute) DO UPDATE SET accepted = pulse_counts.accepted + excluded.accepted, \
         refused = pulse_counts.refused + excluded.refused",
    )
    .bind(merged.keys().map(|k| k.0).collect::<Vec<_>>())
    .bind(merged.keys().map(|k| to_i64(k.1)).collect::<Vec<_>>())
    .bind(merged.values().map(|v| to_i64(v.0)).collect::<Vec<_>>())
    .bind(merged.values().map(|v| to_i64(v.1)).collect::<Vec<_>>())
    .execute(pool)
    .await
    .map_err(unavailable)?;
    Ok(())
}
