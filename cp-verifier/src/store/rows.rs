//! Row decoding shared by the SQLite and PostgreSQL stores: both select the same
//! columns in the same order, so one decoder per kind of row serves both (generic
//! over sqlx's [`Row`]). Column types that differ between the two (SQLite's integer
//! `blinded`, PostgreSQL's boolean) are decoded by the caller.

use sqlx::{ColumnIndex, Decode, Row, Type};

use super::{to_u64, StoreError};
use crate::model::{AgentRecord, Alert, AlertKind, BuildKind, Tombstone, Withdrawal};

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
    })
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
    rec.version = to_u64(r.try_get(1).map_err(corrupt)?);
    rec.last_seen_ns = to_u64(r.try_get(2).map_err(corrupt)?);
    rec.blinded = blinded;
    rec.sequence = to_u64(r.try_get(4).map_err(corrupt)?);
    rec.chain_head =
        evidence::Digest32::from_hex(r.try_get::<&str, _>(5).map_err(corrupt)?).map_err(corrupt)?;
    Ok(rec)
}
