//! Row decoding shared by the SQLite and PostgreSQL stores: both select the same
//! columns in the same order, so one decoder per kind of row serves both (generic
//! over sqlx's [`Row`]). Column types that differ between the two (SQLite's integer
//! `blinded`, PostgreSQL's boolean) are decoded by the caller.

use sqlx::{ColumnIndex, Decode, Row, Type};

use super::AlertFilter;
use super::{to_u64, StoreError};
use crate::model::{
    Ack, AgentRecord, Alert, AlertKind, BuildKind, Tombstone, Withdrawal, MAX_OPEN_SEVERITY,
};

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// An alert from `id, at_ns, agent_id, kind, severity, detail` (columns 0-5).
pub(crate) fn alert<R>(r: &R) -> Result<Alert, StoreError>
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'a> String: Decode<'a, R::Database> + Type<R::Database>,
    for<'a> i64: Decode<'a, R::Database> + Type<R::Database>,
{
    let kind: String = r.try_get(3).map_err(corrupt)?;
    Ok(Alert {
        id: r.try_get(0).map_err(corrupt)?,
        at_ns: to_u64(r.try_get(1).map_err(corrupt)?),
        agent_id: r.try_get(2).map_err(corrupt)?,
        kind: AlertKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("alert kind {kind:?}")))?,
        severity: u8::try_from(r.try_get::<i64, _>(4).map_err(corrupt)?).unwrap_or(0),
        detail: r.try_get(5).map_err(corrupt)?,
        ack: None,
        explain: None,
    })
}

/// Which of the later alert columns a database has: all of them when opened for
/// writing (migrated at open); a database opened read-only as a `migrate` source may
/// be older, and its missing columns read as NULL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AlertCols {
    /// The acknowledgement columns (migration 2).
    pub(crate) acks: bool,
    /// The explanation column (migration 3).
    pub(crate) explain: bool,
}

impl AlertCols {
    /// A database at the current schema.
    pub(crate) const ALL: AlertCols = AlertCols {
        acks: true,
        explain: true,
    };
}

/// The columns [`alert_with_ack`] reads, in its order, with NULLs in place of the
/// columns the database lacks.
pub(crate) fn alert_columns(cols: AlertCols) -> String {
    format!(
        "id, at_ns, agent_id, kind, severity, detail, {}, {}",
        if cols.acks {
            "acked_at_ns, acked_by, ack_note"
        } else {
            "CAST(NULL AS BIGINT), CAST(NULL AS TEXT), CAST(NULL AS TEXT)"
        },
        if cols.explain {
            "explain"
        } else {
            "CAST(NULL AS TEXT)"
        }
    )
}

/// The SQL for "not acknowledged".
fn unacked(acks: bool) -> &'static str {
    if acks {
        "acked_at_ns IS NULL"
    } else {
        "TRUE"
    }
}

/// An alert's explanation as stored (JSON text), or `None`.
pub(crate) fn explain_json(a: &Alert) -> Option<String> {
    a.explain
        .as_ref()
        .and_then(|e| serde_json::to_string(e).ok())
}

/// An alert from [`alert_columns`]: [`alert`] plus its acknowledgement (columns 6-8)
/// and explanation (column 9; one that no longer decodes is left out, not fatal).
pub(crate) fn alert_with_ack<R>(r: &R) -> Result<Alert, StoreError>
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'a> String: Decode<'a, R::Database> + Type<R::Database>,
    for<'a> i64: Decode<'a, R::Database> + Type<R::Database>,
    for<'a> Option<String>: Decode<'a, R::Database> + Type<R::Database>,
    for<'a> Option<i64>: Decode<'a, R::Database> + Type<R::Database>,
{
    let mut a = alert(r)?;
    let at: Option<i64> = r.try_get(6).map_err(corrupt)?;
    if let Some(at) = at {
        a.ack = Some(Ack {
            at_ns: to_u64(at),
            by: r
                .try_get::<Option<String>, _>(7)
                .map_err(corrupt)?
                .unwrap_or_default(),
            note: r
                .try_get::<Option<String>, _>(8)
                .map_err(corrupt)?
                .unwrap_or_default(),
        });
    }
    if let Some(text) = r.try_get::<Option<String>, _>(9).map_err(corrupt)? {
        a.explain = serde_json::from_str(&text).ok();
    }
    Ok(a)
}

/// A badge change as stored (the `body` column).
pub(crate) fn change_json(c: &crate::model::VerdictChange) -> Result<String, StoreError> {
    serde_json::to_string(c).map_err(corrupt)
}

/// Badge changes from `body` texts; one that no longer decodes is left out.
pub(crate) fn changes(bodies: &[String]) -> Vec<crate::model::VerdictChange> {
    bodies
        .iter()
        .filter_map(|b| serde_json::from_str(b).ok())
        .collect()
}

/// Pulse counts from `(minute, accepted, refused)` rows.
pub(crate) fn pulse_counts(rows: &[(i64, i64, i64)]) -> Vec<crate::model::PulseCount> {
    rows.iter()
        .map(|&(m, a, r)| crate::model::PulseCount {
            minute: to_u64(m),
            accepted: to_u64(a),
            refused: to_u64(r),
        })
        .collect()
}

/// `SELECT` of the alerts `f` selects, newest first, for either store (the SQL is
/// the same; the builder writes each store's placeholders).
pub(crate) fn alerts_query<'a, DB>(
    f: &'a AlertFilter,
    cols: AlertCols,
) -> sqlx::QueryBuilder<'a, DB>
where
    DB: sqlx::Database,
    &'a str: sqlx::Encode<'a, DB> + Type<DB>,
    i64: sqlx::Encode<'a, DB> + Type<DB>,
{
    let mut q = sqlx::QueryBuilder::new(format!(
        "SELECT {} FROM alerts WHERE TRUE",
        alert_columns(cols)
    ));
    let acks = cols.acks;
    if let Some(agent) = &f.agent {
        q.push(" AND agent_id = ").push_bind(agent.as_str());
    }
    if !f.severities.is_empty() {
        q.push(" AND severity IN (");
        let mut sep = q.separated(", ");
        for s in &f.severities {
            sep.push_bind(i64::from(*s));
        }
        q.push(")");
    }
    match f.open {
        Some(true) => {
            q.push(format_args!(" AND {} AND severity <= ", unacked(acks)))
                .push_bind(i64::from(MAX_OPEN_SEVERITY));
        }
        Some(false) => {
            q.push(if acks {
                " AND acked_at_ns IS NOT NULL"
            } else {
                " AND FALSE"
            });
        }
        None => {}
    }
    if let Some(before) = &f.before {
        q.push(" AND id < ").push_bind(before.as_str());
    }
    q.push(" ORDER BY at_ns DESC, id DESC LIMIT ")
        .push_bind(i64::from(f.limit));
    q
}

/// Open alerts by severity from `(severity, count)` rows.
pub(crate) fn open_counts(rows: &[(i64, i64)]) -> [u64; 3] {
    let mut out = [0; 3];
    for (sev, n) in rows {
        if let Some(slot) = sev
            .checked_sub(1)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| out.get_mut(i))
        {
            *slot = to_u64(*n);
        }
    }
    out
}

/// The open-alert count query (see [`open_counts`]).
pub(crate) fn open_counts_sql(acks: bool) -> &'static str {
    if acks {
        "SELECT severity, COUNT(*) FROM alerts \
         WHERE acked_at_ns IS NULL AND severity <= 3 GROUP BY severity"
    } else {
        "SELECT severity, COUNT(*) FROM alerts WHERE severity <= 3 GROUP BY severity"
    }
}

/// The acknowledgement update: binds `at_ns, by, note, id`; touches one row or none.
pub(crate) fn ack_sql(pg: bool) -> &'static str {
    if pg {
        "UPDATE alerts SET acked_at_ns = $1, acked_by = $2, ack_note = $3 WHERE id = $4 AND acked_at_ns IS NULL"
    } else {
        "UPDATE alerts SET acked_at_ns = ?, acked_by = ?, ack_note = ? WHERE id = ? AND acked_at_ns IS NULL"
    }
}

/// A tombstone from `agent_id, key_fingerprint, at_ns, reason`.
pub(crate) fn tombstone<R>(r: &R) -> Result<Tombstone, StoreError>
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'a> String: Decode<'a, R::Database> + Type<R::Database>,
    for<'a> i64: Decode<'a, R::Database> + Type<R::Database>,
{
    Ok(Tombstone {
        agent_id: r.try_get(0).map_err(corrupt)?,
        key_fingerprint: r.try_get(1).map_err(corrupt)?,
        at_ns: to_u64(r.try_get(2).map_err(corrupt)?),
        reason: r.try_get(3).map_err(corrupt)?,
    })
}

/// A withdrawal from `id, kind, digest, reason, at_ns`.
pub(crate) fn withdrawal<R>(r: &R) -> Result<Withdrawal, StoreError>
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'a> String: Decode<'a, R::Database> + Type<R::Database>,
    for<'a> i64: Decode<'a, R::Database> + Type<R::Database>,
{
    let kind: String = r.try_get(1).map_err(corrupt)?;
    Ok(Withdrawal {
        id: r.try_get(0).map_err(corrupt)?,
        kind: BuildKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("withdrawal kind {kind:?}")))?,
        digest: r.try_get(2).map_err(corrupt)?,
        reason: r.try_get(3).map_err(corrupt)?,
        at_ns: to_u64(r.try_get(4).map_err(corrupt)?),
        source: "api".into(),
    })
}

/// An agent record from `record, version, last_seen_ns, blinded, sequence,
/// chain_head`: the record JSON, with the hot columns (written on every pulse) laid
/// over it. `blinded` (column 3) is decoded by the caller.
pub(crate) fn record<R>(r: &R, blinded: bool) -> Result<AgentRecord, StoreError>
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'a> &'a str: Decode<'a, R::Database> + Type<R::Database>,
    for<'a> i64: Decode<'a, R::Database> + Type<R::Database>,
{
    let mut rec: AgentRecord =
        serde_json::from_str(r.try_get::<&str, _>(0).map_err(corrupt)?).map_err(corrupt)?;
    hot_columns(&mut rec, r, blinded)?;
    Ok(rec)
}

/// Lays the hot columns (1, 2, 4, 5; `blinded` decoded by the caller) over `rec`.
fn hot_columns<R>(rec: &mut AgentRecord, r: &R, blinded: bool) -> Result<(), StoreError>
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'a> &'a str: Decode<'a, R::Database> + Type<R::Database>,
    for<'a> i64: Decode<'a, R::Database> + Type<R::Database>,
{
    rec.version = to_u64(r.try_get(1).map_err(corrupt)?);
    rec.last_seen_ns = to_u64(r.try_get(2).map_err(corrupt)?);
    rec.blinded = blinded;
    rec.sequence = to_u64(r.try_get(4).map_err(corrupt)?);
    rec.chain_head =
        evidence::Digest32::from_hex(r.try_get::<&str, _>(5).map_err(corrupt)?).map_err(corrupt)?;
    Ok(())
}

/// Most records a [`ScanCache`] keeps (beyond, the rest are decoded every scan).
const MAX_SCAN_CACHE: usize = 100_000;

/// Decoded agent records from the last full scan, by a keyed hash and the length of
/// their stored JSON text. A pulse rewrites only the hot columns, not the text, so
/// across scans (the liveness sweep, the fleet pages and listings, every few hundred
/// milliseconds) almost every record is reused instead of parsed again (JSON, hex, the
/// key's point decompression): at 10,000 agents the parse was most of a scan. The
/// hash is SipHash under a per-process random key, so an agent cannot craft a record
/// text that collides with another's; the hot columns are always read fresh.
#[derive(Default)]
pub(crate) struct ScanCache {
    keys: std::hash::RandomState,
    map: std::sync::Mutex<std::collections::HashMap<(u64, usize), AgentRecord>>,
}

impl ScanCache {
    /// Every row's record (see [`record`]; column 6 is the agent id), reusing the records of the previous scan
    /// whose text is unchanged; then keeps this scan's records for the next one.
    pub(crate) fn records<R>(
        &self,
        rows: &[R],
        blinded: impl Fn(&R) -> Result<bool, StoreError>,
    ) -> Vec<Result<AgentRecord, StoreError>>
    where
        R: Row,
        usize: ColumnIndex<R>,
        for<'a> &'a str: Decode<'a, R::Database> + Type<R::Database>,
        for<'a> i64: Decode<'a, R::Database> + Type<R::Database>,
    {
        use std::hash::BuildHasher;
        // Taken, not locked through the scan: a concurrent scan decodes on its own.
        let mut old = std::mem::take(&mut *self.map.lock().unwrap_or_else(|e| e.into_inner()));
        let mut new = std::collections::HashMap::with_capacity(rows.len().min(MAX_SCAN_CACHE));
        let out = rows
            .iter()
            .map(|r| {
                let text: &str = r.try_get(0).map_err(corrupt)?;
                let key = (self.keys.hash_one(text), text.len());
                // A reused record must be this row's agent (column 6): a defence
                // against a hash collision, however unlikely.
                let id: &str = r.try_get(6).map_err(corrupt)?;
                let mut rec = match old.remove(&key).filter(|rec| rec.agent_id == id) {
                    Some(rec) => rec,
                    None => serde_json::from_str::<AgentRecord>(text).map_err(corrupt)?,
                };
                if new.len() < MAX_SCAN_CACHE {
                    new.insert(key, rec.clone());
                }
                hot_columns(&mut rec, r, blinded(r)?)?;
                Ok(rec)
            })
            .collect();
        *self.map.lock().unwrap_or_else(|e| e.into_inner()) = new;
        out
    }
}
