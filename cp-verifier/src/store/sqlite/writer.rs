//! The single writer task: takes every write waiting in its queue, applies each in
//! its own savepoint, commits the batch once (one fsync) and only then answers each
//! caller.

use super::*;

pub(super) enum Op {
    Write(Box<AgentWrite>),
    Alerts(Vec<Alert>),
    PutChallenge(String, u64),
    TakeChallenge(String, u64),
    Prune(u64, u64),
    PutCached(String, Vec<u8>, u64),
    DeleteAgent(Box<Tombstone>, u64, Vec<Alert>),
    PutWithdrawal(Box<Withdrawal>, Vec<Alert>),
    DeleteWithdrawal(String, Vec<Alert>),
    PruneAlerts(u64),
    OutboxRetry(String, String, u32, u64),
    OutboxDone(String),
    Probe(u64),
    AckAlert(String, Box<Ack>, Vec<Alert>),
    PulseCounts(Vec<(String, crate::model::PulseCount)>),
}

pub(super) type Reply = oneshot::Sender<Result<bool, StoreError>>;

pub(super) async fn writer_loop(
    opts: SqliteConnectOptions,
    conn: SqliteConnection,
    mut rx: mpsc::Receiver<(Op, Reply)>,
    outbox: Arc<AtomicBool>,
) {
    let mut conn = Some(conn);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        if conn.is_none() {
            match SqliteConnection::connect_with(&opts).await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    tracing::error!(error = %e, "cannot reopen the store; nothing in this batch was recorded");
                    for (_, reply) in batch.drain(..) {
                        let _ = reply.send(Err(unavailable(&e)));
                    }
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let outbox = outbox.load(Ordering::Relaxed);
        match apply_batch(c, &batch, outbox).await {
            Ok(results) => {
                for ((_, reply), r) in batch.drain(..).zip(results) {
                    let _ = reply.send(r);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "store batch failed; nothing in it was recorded");
                for (_, reply) in batch.drain(..) {
                    let _ = reply.send(Err(unavailable(&e)));
                }
                // After a failed batch the connection's transaction state cannot be
                // trusted: SQLite may have rolled the transaction back itself (disk full,
                // I/O error) or kept it open after a failed COMMIT, and sqlx's count of
                // open transactions follows neither. Its later "commits" would then be
                // savepoint releases inside a transaction that never commits: writes
                // acknowledged and lost. The next batch gets a fresh connection (closing
                // this one rolls back whatever it still holds).
                if let Some(c) = conn.take() {
                    match tokio::time::timeout(Duration::from_secs(5), c.close()).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            tracing::warn!(error = %e, "closing the failed store connection")
                        }
                        Err(_) => tracing::warn!("closing the failed store connection timed out"),
                    }
                }
            }
        }
    }
}

/// Applies every op, then commits once.
///
/// An op's logical failure (compare-and-swap lost, nonce reused) must leave nothing
/// behind. Pulses, the hot path, are written so that each failure path undoes what
/// the op wrote (see [`apply`]), which spares two statements per pulse; ops that also
/// insert alerts run inside a savepoint. A database error in an op without a savepoint
/// aborts the whole batch, so a half-applied op is never committed.
pub(super) async fn apply_batch(
    conn: &mut SqliteConnection,
    batch: &[(Op, Reply)],
    outbox: bool,
) -> Result<Vec<Result<bool, StoreError>>, sqlx::Error> {
    let mut tx = conn.begin().await?;
    let mut results = Vec::with_capacity(batch.len());
    let mut i = 0;
    while i < batch.len() {
        // A run of plain pulses for distinct agents goes in multi-row statements.
        let run = pulse_run(&batch[i..]);
        if run.len() >= 2 {
            i += run.len();
            results.extend(apply_pulses(&mut tx, &run).await?);
            continue;
        }
        let op = &batch[i].0;
        i += 1;
        let needs_savepoint = match op {
            Op::Write(w) => !w.alerts.is_empty() || !w.changes.is_empty(),
            Op::Alerts(_)
            | Op::Prune(..)
            | Op::PruneAlerts(_)
            | Op::DeleteAgent(..)
            | Op::PutWithdrawal(..)
            | Op::DeleteWithdrawal(..)
            | Op::AckAlert(..)
            | Op::PulseCounts(_) => true,
            Op::PutChallenge(..) | Op::TakeChallenge(..) | Op::PutCached(..) => false,
            Op::OutboxRetry(..) | Op::OutboxDone(_) | Op::Probe(_) => false,
        };
        if needs_savepoint {
            let mut sp = tx.begin().await?;
            match apply(&mut sp, op, outbox).await {
                Ok(v) => {
                    sp.commit().await?;
                    results.push(Ok(v));
                }
                Err(e) => {
                    sp.rollback().await?;
                    results.push(Err(e));
                }
            }
        } else {
            match apply(&mut tx, op, outbox).await {
                Err(StoreError::Unavailable(d)) => {
                    return Err(sqlx::Error::Protocol(format!("op failed mid-batch: {d}")))
                }
                r => results.push(r),
            }
        }
    }
    tx.commit().await?;
    Ok(results)
}

/// Most pulses one multi-row statement carries (7 parameters each: far below
/// SQLite's limit of 32766).
const MAX_RUN: usize = 128;

/// A plain pulse: consumes a nonce and advances the chain of an existing record,
/// raising nothing. Most of the writer's work.
fn plain_pulse(op: &Op) -> Option<&AgentWrite> {
    match op {
        Op::Write(w)
            if w.chain_only
                && w.alerts.is_empty()
                && w.changes.is_empty()
                && w.nonce.is_some()
                && w.expected_version.is_some() =>
        {
            Some(w.as_ref())
        }
        _ => None,
    }
}

/// The plain pulses at the head of `ops`, for distinct agents (a second write for
/// one agent must see the first: it ends the run), at most [`MAX_RUN`].
fn pulse_run(ops: &[(Op, Reply)]) -> Vec<&AgentWrite> {
    let mut run: Vec<&AgentWrite> = Vec::new();
    for (op, _) in ops.iter().take(MAX_RUN) {
        match plain_pulse(op) {
            Some(w) if !run.iter().any(|r| r.record.agent_id == w.record.agent_id) => run.push(w),
            _ => break,
        }
    }
    run
}

/// `n` rows of `k` placeholders: `(?, ?), (?, ?)`.
fn placeholders(n: usize, k: usize) -> String {
    let row = format!("({})", vec!["?"; k].join(", "));
    vec![row; n].join(", ")
}

/// Writes a run of plain pulses (distinct agents) in at most three statements
/// instead of two or three each, with each op's outcome what [`apply`] would give
/// it alone: the nonces are inserted together and a reused one is not
/// (`DuplicateNonce`, nothing written); the records whose nonce was fresh are
/// compare-and-swapped together (`UPDATE ... FROM (VALUES ...)`), and a record whose
/// version moved is not (`Conflict`), its nonce then deleted again, so a lost op
/// leaves no trace. A database error fails the whole batch, as for any op without a
/// savepoint.
async fn apply_pulses(
    c: &mut SqliteConnection,
    run: &[&AgentWrite],
) -> Result<Vec<Result<bool, StoreError>>, sqlx::Error> {
    use std::collections::HashSet;
    let sql = format!(
        "INSERT INTO pulse_nonces (agent_id, nonce, seen_at_ns) VALUES {} ON CONFLICT DO NOTHING RETURNING agent_id",
        placeholders(run.len(), 3)
    );
    let mut q = sqlx::query_scalar::<_, String>(&sql);
    for w in run {
        q = q
            .bind(&w.record.agent_id)
            .bind(w.nonce.as_deref())
            .bind(to_i64(w.record.last_seen_ns));
    }
    let fresh: HashSet<String> = q.fetch_all(&mut *c).await?.into_iter().collect();
    let live: Vec<&AgentWrite> = run
        .iter()
        .copied()
        .filter(|w| fresh.contains(&w.record.agent_id))
        .collect();
    let mut moved = HashSet::new();
    if !live.is_empty() {
        let sql = format!(
            "UPDATE agents SET version = v.column3, last_seen_ns = v.column4, blinded = v.column5, \
             sequence = v.column6, chain_head = v.column7 FROM (VALUES {}) AS v \
             WHERE agents.agent_id = v.column1 AND agents.version = v.column2 RETURNING agents.agent_id",
            placeholders(live.len(), 7)
        );
        let mut q = sqlx::query_scalar::<_, String>(&sql);
        for w in &live {
            let rec = &w.record;
            q = q
                .bind(&rec.agent_id)
                .bind(to_i64(w.expected_version.unwrap_or(u64::MAX)))
                .bind(to_i64(rec.version))
                .bind(to_i64(rec.last_seen_ns))
                .bind(i64::from(rec.blinded))
                .bind(to_i64(rec.sequence))
                .bind(rec.chain_head.to_hex());
        }
        moved = q.fetch_all(&mut *c).await?.into_iter().collect();
    }
    // Lost compare-and-swaps: give their nonces back.
    for w in live.iter().filter(|w| !moved.contains(&w.record.agent_id)) {
        sqlx::query("DELETE FROM pulse_nonces WHERE agent_id = ? AND nonce = ?")
            .bind(&w.record.agent_id)
            .bind(w.nonce.as_deref())
            .execute(&mut *c)
            .await?;
    }
    Ok(run
        .iter()
        .map(|w| {
            if !fresh.contains(&w.record.agent_id) {
                Err(StoreError::DuplicateNonce)
            } else if !moved.contains(&w.record.agent_id) {
                Err(StoreError::Conflict)
            } else {
                Ok(true)
            }
        })
        .collect())
}

async fn apply(c: &mut SqliteConnection, op: &Op, outbox: bool) -> Result<bool, StoreError> {
    match op {
        Op::Write(w) => {
            let rec = &w.record;
            // A pulse that only advances the chain rewrites the hot columns, not the
            // record: the writer task is the serial part of the pulse path.
            let json = if w.chain_only {
                None
            } else {
                Some(serde_json::to_string(rec).map_err(|e| StoreError::Corrupt(e.to_string()))?)
            };
            if let Some(nonce) = &w.nonce {
                // ON CONFLICT DO NOTHING (portable to PostgreSQL): a reused nonce writes
                // nothing and is reported, with nothing to undo.
                let n = sqlx::query(
                    "INSERT INTO pulse_nonces (agent_id, nonce, seen_at_ns) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                )
                .bind(&rec.agent_id)
                .bind(nonce)
                .bind(to_i64(rec.last_seen_ns))
                .execute(&mut *c)
                .await
                .map_err(unavailable)?
                .rows_affected();
                if n != 1 {
                    return Err(StoreError::DuplicateNonce);
                }
            }
            let head = rec.chain_head.to_hex();
            let n = match (w.expected_version, &json) {
                (None, None) => return Err(StoreError::Corrupt("a new agent needs its full record".into())),
                (None, Some(json)) => sqlx::query(
                    "INSERT INTO agents (agent_id, version, last_seen_ns, blinded, sequence, chain_head, record) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                )
                .bind(&rec.agent_id)
                .bind(to_i64(rec.version))
                .bind(to_i64(rec.last_seen_ns))
                .bind(i64::from(rec.blinded))
                .bind(to_i64(rec.sequence))
                .bind(&head)
                .bind(json)
                .execute(&mut *c)
                .await
                .map_err(unavailable)?
                .rows_affected(),
                (Some(v), Some(json)) => sqlx::query(
                    "UPDATE agents SET version = ?, last_seen_ns = ?, blinded = ?, sequence = ?, chain_head = ?, record = ? WHERE agent_id = ? AND version = ?",
                )
                .bind(to_i64(rec.version))
                .bind(to_i64(rec.last_seen_ns))
                .bind(i64::from(rec.blinded))
                .bind(to_i64(rec.sequence))
                .bind(&head)
                .bind(json)
                .bind(&rec.agent_id)
                .bind(to_i64(v))
                .execute(&mut *c)
                .await
                .map_err(unavailable)?
                .rows_affected(),
                (Some(v), None) => sqlx::query(
                    "UPDATE agents SET version = ?, last_seen_ns = ?, blinded = ?, sequence = ?, chain_head = ? WHERE agent_id = ? AND version = ?",
                )
                .bind(to_i64(rec.version))
                .bind(to_i64(rec.last_seen_ns))
                .bind(i64::from(rec.blinded))
                .bind(to_i64(rec.sequence))
                .bind(&head)
                .bind(&rec.agent_id)
                .bind(to_i64(v))
                .execute(&mut *c)
                .await
                .map_err(unavailable)?
                .rows_affected(),
            };
            if n != 1 {
                // Undo the nonce this op consumed, so a lost race leaves no trace.
                if let Some(nonce) = &w.nonce {
                    sqlx::query("DELETE FROM pulse_nonces WHERE agent_id = ? AND nonce = ?")
                        .bind(&rec.agent_id)
                        .bind(nonce)
                        .execute(&mut *c)
                        .await
                        .map_err(unavailable)?;
                }
                return Err(StoreError::Conflict);
            }
            insert_alerts(c, &w.alerts, outbox).await?;
            for ch in &w.changes {
                sqlx::query("INSERT INTO verdict_changes (agent_id, at_ns, body) VALUES (?, ?, ?)")
                    .bind(&ch.agent_id)
                    .bind(to_i64(ch.at_ns))
                    .bind(decode::change_json(ch)?)
                    .execute(&mut *c)
                    .await
                    .map_err(unavailable)?;
            }
            Ok(true)
        }
        Op::Alerts(a) => {
            insert_alerts(c, a, outbox).await?;
            Ok(true)
        }
        Op::AckAlert(id, ack, audit) => {
            let n = sqlx::query(decode::ack_sql(false))
                .bind(to_i64(ack.at_ns))
                .bind(&ack.by)
                .bind(&ack.note)
                .bind(id)
                .execute(&mut *c)
                .await
                .map_err(unavailable)?
                .rows_affected();
            if n != 1 {
                return Ok(false);
            }
            insert_alerts(c, audit, outbox).await?;
            Ok(true)
        }
        Op::PutChallenge(nonce, exp) => {
            sqlx::query("INSERT INTO challenges (nonce, expires_at_ns) VALUES (?, ?)")
                .bind(nonce)
                .bind(to_i64(*exp))
                .execute(&mut *c)
                .await
                .map_err(unavailable)?;
            Ok(true)
        }
        Op::TakeChallenge(nonce, now) => {
            let n = sqlx::query("DELETE FROM challenges WHERE nonce = ? AND expires_at_ns >= ?")
                .bind(nonce)
                .bind(to_i64(*now))
                .execute(&mut *c)
                .await
                .map_err(unavailable)?
                .rows_affected();
            Ok(n == 1)
        }
        Op::Prune(now, cutoff) => {
            sqlx::query("DELETE FROM challenges WHERE expires_at_ns < ?")
                .bind(to_i64(*now))
                .execute(&mut *c)
                .await
                .map_err(unavailable)?;
            sqlx::query("DELETE FROM pulse_nonces WHERE seen_at_ns < ?")
                .bind(to_i64(*cutoff))
                .execute(&mut *c)
                .await
                .map_err(unavailable)?;
            sqlx::query("DELETE FROM cache WHERE expires_at <= ?")
                .bind(to_i64(*now / 1_000_000_000))
                .execute(&mut *c)
                .await
                .map_err(unavailable)?;
            Ok(true)
        }
        Op::PutCached(key, json, exp) => {
            sqlx::query(
                "INSERT INTO cache (key, expires_at, json) VALUES (?, ?, ?) \
                 ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at, json = excluded.json",
            )
            .bind(key)
            .bind(to_i64(*exp))
            .bind(json)
            .execute(&mut *c)
            .await
            .map_err(unavailable)?;
            Ok(true)
        }
        Op::DeleteAgent(t, version, alerts) => {
            let n = sqlx::query("DELETE FROM agents WHERE agent_id = ? AND version = ?")
                .bind(&t.agent_id)
                .bind(to_i64(*version))
                .execute(&mut *c)
                .await
                .map_err(unavailable)?
                .rows_affected();
            if n != 1 {
                return Err(StoreError::Conflict);
            }
            sqlx::query(
                "INSERT INTO deleted_agents (agent_id, key_fingerprint, at_ns, reason) VALUES (?, ?, ?, ?) \
                 ON CONFLICT (agent_id) DO UPDATE SET key_fingerprint = excluded.key_fingerprint, at_ns = excluded.at_ns, reason = excluded.reason",
            )
            .bind(&t.agent_id)
            .bind(&t.key_fingerprint)
            .bind(to_i64(t.at_ns))
            .bind(&t.reason)
            .execute(&mut *c)
            .await
            .map_err(unavailable)?;
            sqlx::query("DELETE FROM pulse_nonces WHERE agent_id = ?")
                .bind(&t.agent_id)
                .execute(&mut *c)
                .await
                .map_err(unavailable)?;
            insert_alerts(c, alerts, outbox).await?;
            Ok(true)
        }
        Op::PutWithdrawal(w, alerts) => {
            let n = sqlx::query(
                "INSERT INTO withdrawals (id, kind, digest, reason, at_ns) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            )
            .bind(&w.id)
            .bind(w.kind.as_str())
            .bind(&w.digest)
            .bind(&w.reason)
            .bind(to_i64(w.at_ns))
            .execute(&mut *c)
            .await
            .map_err(unavailable)?
            .rows_affected();
            if n == 1 {
                insert_alerts(c, alerts, outbox).await?;
            }
            Ok(n == 1)
        }
        Op::DeleteWithdrawal(id, alerts) => {
            let n = sqlx::query("DELETE FROM withdrawals WHERE id = ?")
                .bind(id)
                .execute(&mut *c)
                .await
                .map_err(unavailable)?
                .rows_affected();
            if n == 1 {
                insert_alerts(c, alerts, outbox).await?;
            }
            Ok(n == 1)
        }
        Op::PruneAlerts(before) => {
            sqlx::query("DELETE FROM webhook_outbox WHERE at_ns < ?")
                .bind(to_i64(*before))
                .execute(&mut *c)
                .await
                .map_err(unavailable)?;
            let n = sqlx::query("DELETE FROM alerts WHERE at_ns < ?")
                .bind(to_i64(*before))
                .execute(&mut *c)
                .await
                .map_err(unavailable)?
                .rows_affected();
            sqlx::query("DELETE FROM verdict_changes WHERE at_ns < ?")
                .bind(to_i64(*before))
                .execute(&mut *c)
                .await
                .map_err(unavailable)?;
            sqlx::query("DELETE FROM pulse_counts WHERE minute < ?")
                .bind(to_i64(*before / 60_000_000_000))
                .execute(&mut *c)
                .await
                .map_err(unavailable)?;
            Ok(n > 0)
        }
        Op::PulseCounts(counts) => {
            for (agent, p) in counts {
                sqlx::query(
                    "INSERT INTO pulse_counts (agent_id, minute, accepted, refused) VALUES (?, ?, ?, ?) \
                     ON CONFLICT (agent_id, minute) DO UPDATE SET accepted = accepted + excluded.accepted, \
                     refused = refused + excluded.refused",
                )
                .bind(agent)
                .bind(to_i64(p.minute))
                .bind(to_i64(p.accepted))
                .bind(to_i64(p.refused))
                .execute(&mut *c)
                .await
                .map_err(unavailable)?;
            }
            Ok(true)
        }
        Op::OutboxRetry(id, delivered, attempts, next) => {
            sqlx::query(
                "UPDATE webhook_outbox SET delivered = ?, attempts = ?, next_at_ns = ? WHERE alert_id = ?",
            )
            .bind(delivered)
            .bind(i64::from(*attempts))
            .bind(to_i64(*next))
            .bind(id)
            .execute(&mut *c)
            .await
            .map_err(unavailable)?;
            Ok(true)
        }
        Op::OutboxDone(id) => {
            sqlx::query("DELETE FROM webhook_outbox WHERE alert_id = ?")
                .bind(id)
                .execute(&mut *c)
                .await
                .map_err(unavailable)?;
            Ok(true)
        }
        Op::Probe(now) => {
            sqlx::query(
                "INSERT INTO health (id, at_ns) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET at_ns = excluded.at_ns",
            )
            .bind(to_i64(*now))
            .execute(&mut *c)
            .await
            .map_err(unavailable)?;
            Ok(true)
        }
    }
}

async fn insert_alerts(
    c: &mut SqliteConnection,
    alerts: &[Alert],
    outbox: bool,
) -> Result<(), StoreError> {
    for a in alerts {
        if outbox && a.severity <= crate::act::alerts::DURABLE_SEVERITY {
            sqlx::query(
                "INSERT INTO webhook_outbox (alert_id, at_ns, attempts, next_at_ns, delivered) VALUES (?, ?, 0, ?, '[]') ON CONFLICT DO NOTHING",
            )
            .bind(&a.id)
            .bind(to_i64(a.at_ns))
            .bind(to_i64(a.at_ns))
            .execute(&mut *c)
            .await
            .map_err(unavailable)?;
        }
        sqlx::query(
            "INSERT INTO alerts (id, at_ns, agent_id, kind, severity, detail, explain) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&a.id)
        .bind(to_i64(a.at_ns))
        .bind(&a.agent_id)
        .bind(a.kind.as_str())
        .bind(i64::from(a.severity))
        .bind(&a.detail)
        .bind(decode::explain_json(a))
        .execute(&mut *c)
        .await
        .map_err(unavailable)?;
    }
    Ok(())
}
