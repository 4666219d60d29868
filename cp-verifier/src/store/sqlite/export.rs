//! Listings the [`Store`] trait has no call for, used to move a fleet out of the
//! embedded store (`cp-verifier migrate`). Reads only.

use super::*;
use crate::store::fleet::{CacheRow, NonceRow, OutboxRow};

impl SqliteStore {
    /// Every tombstone, by agent id.
    pub async fn list_tombstones(&self) -> Result<Vec<Tombstone>, StoreError> {
        let rows: Vec<(String, String, i64, String)> = sqlx::query_as(
            "SELECT agent_id, key_fingerprint, at_ns, reason FROM deleted_agents ORDER BY agent_id",
        )
        .fetch_all(&self.reads)
        .await
        .map_err(unavailable)?;
        Ok(rows
            .into_iter()
            .map(|(agent_id, key_fingerprint, at_ns, reason)| Tombstone {
                agent_id,
                key_fingerprint,
                at_ns: to_u64(at_ns),
                reason,
            })
            .collect())
    }

    /// Every pulse nonce still kept (the sweeper prunes those past the window).
    pub async fn list_nonces(&self) -> Result<Vec<NonceRow>, StoreError> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT agent_id, nonce, seen_at_ns FROM pulse_nonces ORDER BY agent_id, nonce",
        )
        .fetch_all(&self.reads)
        .await
        .map_err(unavailable)?;
        Ok(rows
            .into_iter()
            .map(|(agent_id, nonce, seen)| NonceRow {
                agent_id,
                nonce,
                seen_at_ns: to_u64(seen),
            })
            .collect())
    }

    /// Cache entries still valid at `now` (expiring after it).
    pub async fn list_cached(&self, now: UnixSecs) -> Result<Vec<CacheRow>, StoreError> {
        let rows: Vec<(String, Vec<u8>, i64)> = sqlx::query_as(
            "SELECT key, json, expires_at FROM cache WHERE expires_at > ? ORDER BY key",
        )
        .bind(now.0)
        .fetch_all(&self.reads)
        .await
        .map_err(unavailable)?;
        Ok(rows
            .into_iter()
            .map(|(key, json, expires_at)| CacheRow {
                key,
                json,
                expires_at,
            })
            .collect())
    }

    /// Every webhook outbox entry, as stored.
    pub async fn list_outbox(&self) -> Result<Vec<OutboxRow>, StoreError> {
        let rows: Vec<(String, i64, i64, i64, String)> = sqlx::query_as(
            "SELECT alert_id, at_ns, attempts, next_at_ns, delivered FROM webhook_outbox ORDER BY alert_id",
        )
        .fetch_all(&self.reads)
        .await
        .map_err(unavailable)?;
        Ok(rows
            .into_iter()
            .map(|(alert_id, at_ns, attempts, next, delivered)| OutboxRow {
                alert_id,
                at_ns: to_u64(at_ns),
                attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                next_at_ns: to_u64(next),
                delivered,
            })
            .collect())
    }

    /// The health probe rows `(id, at_ns)`.
    pub async fn list_health(&self) -> Result<Vec<(i64, u64)>, StoreError> {
        let rows: Vec<(i64, i64)> = sqlx::query_as("SELECT id, at_ns FROM health ORDER BY id")
            .fetch_all(&self.reads)
            .await
            .map_err(unavailable)?;
        Ok(rows.into_iter().map(|(id, at)| (id, to_u64(at))).collect())
    }
}
