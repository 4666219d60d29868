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

    /// Whether the database has table `name` (a `migrate` source may predate it).
    async fn has_table(&self, name: &str) -> Result<bool, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?",
        )
        .bind(name)
        .fetch_one(&self.reads)
        .await
        .map_err(unavailable)?;
        Ok(n > 0)
    }

    /// Every badge change, oldest first (none on a database from before them).
    pub async fn list_changes(&self) -> Result<Vec<crate::model::VerdictChange>, StoreError> {
        if !self.has_table("verdict_changes").await? {
            return Ok(Vec::new());
        }
        let bodies: Vec<String> =
            sqlx::query_scalar("SELECT body FROM verdict_changes ORDER BY at_ns, id")
                .fetch_all(&self.reads)
                .await
                .map_err(unavailable)?;
        let changes = decode::changes(&bodies);
        if changes.len() != bodies.len() {
            return Err(StoreError::Corrupt(format!(
                "{} badge change rows cannot be decoded",
                bodies.len() - changes.len()
            )));
        }
        Ok(changes)
    }

    /// Every pulse count row (none on a database from before them).
    pub async fn list_pulse_counts(
        &self,
    ) -> Result<Vec<(String, crate::model::PulseCount)>, StoreError> {
        if !self.has_table("pulse_counts").await? {
            return Ok(Vec::new());
        }
        let rows: Vec<(String, i64, i64, i64)> = sqlx::query_as(
            "SELECT agent_id, minute, accepted, refused FROM pulse_counts ORDER BY agent_id, minute",
        )
        .fetch_all(&self.reads)
        .await
        .map_err(unavailable)?;
        Ok(rows
            .into_iter()
            .map(|(a, m, acc, r)| {
                (
                    a,
                    crate::model::PulseCount {
                        minute: to_u64(m),
                        accepted: to_u64(acc),
                        refused: to_u64(r),
                    },
                )
            })
            .collect())
    }
}
