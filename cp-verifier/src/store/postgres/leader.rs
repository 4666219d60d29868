//! Leader election among the replicas sharing one PostgreSQL store.
//!
//! Some background jobs must run once per fleet, not once per replica: the liveness
//! sweep (blinding silent agents, pruning nonces, challenges and alerts, re-attesting
//! aging evidence) and webhook outbox delivery (two replicas reading the same due
//! entry would each post it). Compare-and-swap already keeps two sweeps from writing
//! two `Blinded` transitions, but it does not stop double webhook posts or doubled
//! re-attestation work, so one replica, the leader, runs them.
//!
//! The leader is whoever holds a session-level advisory lock
//! (`pg_try_advisory_lock`) on its own dedicated connection, outside the pool:
//!
//! - the lock lives exactly as long as that session: if the leader process dies,
//!   crashes or loses its connection, PostgreSQL ends the session and releases the
//!   lock, and the next replica to ask takes it over; nothing has to expire;
//! - it is re-checked before every round: the leader pings its session (a failed
//!   ping means the lock may be gone, so it steps down and drops the session, and
//!   only leads again once it holds the lock on a fresh one); a follower tries the
//!   lock again on its own session;
//! - `pg_try_advisory_lock` never waits, so a follower's round costs one query;
//! - while a dead leader's session is not yet noticed by the server, nobody leads:
//!   rounds are skipped, never doubled (liveness is delayed, safety is kept).

use sqlx::{Connection, PgConnection};
use std::time::Duration;
use tokio::sync::Mutex;

use super::target::PgTarget;

/// The advisory lock key: "provenant-sweeper" as an arbitrary fixed 64-bit number.
/// Every replica of one fleet uses the same key on the same database.
pub const LEADER_LOCK_KEY: i64 = 0x7072_6f76_7377_6570;

/// How long a leadership check may take before it counts as "not the leader".
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

struct Session {
    conn: PgConnection,
    /// This session holds the lock (taken once; it is re-entrant, so it is not
    /// taken again while held).
    held: bool,
}

/// One replica's side of the election.
pub(super) struct Leadership {
    target: PgTarget,
    session: Mutex<Option<Session>>,
}

impl Leadership {
    pub(super) fn new(target: PgTarget) -> Leadership {
        Leadership {
            target,
            session: Mutex::new(None),
        }
    }

    /// Whether this replica leads now (see the module doc). Errors count as "no".
    pub(super) async fn check(&self) -> bool {
        let mut g = self.session.lock().await;
        match tokio::time::timeout(CHECK_TIMEOUT, Self::round(&self.target, &mut g)).await {
            Ok(Ok(leads)) => leads,
            Ok(Err(e)) => {
                tracing::warn!(error = %self.target.redact(&e.to_string()), "leader election: session lost; not leading");
                *g = None;
                false
            }
            Err(_) => {
                tracing::warn!("leader election: check timed out; not leading");
                *g = None;
                false
            }
        }
    }

    async fn round(target: &PgTarget, g: &mut Option<Session>) -> Result<bool, sqlx::Error> {
        if g.is_none() {
            let conn = PgConnection::connect_with(&target.options()).await?;
            *g = Some(Session { conn, held: false });
        }
        let Some(s) = g.as_mut() else {
            return Ok(false);
        };
        if s.held {
            // The lock is ours while the session lives: a ping proves it does.
            sqlx::query("SELECT 1").execute(&mut s.conn).await?;
            return Ok(true);
        }
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(LEADER_LOCK_KEY)
            .fetch_one(&mut s.conn)
            .await?;
        if got {
            tracing::info!("leader election: this replica now runs the fleet-wide jobs");
        }
        s.held = got;
        Ok(got)
    }

    /// Gives up leadership (closes the session, which releases the lock).
    pub(super) async fn resign(&self) {
        if let Some(s) = self.session.lock().await.take() {
            let _ = s.conn.close().await;
        }
    }

    /// The backend pid of this replica's election session, if it has one (tests).
    pub(super) async fn backend_pid(&self) -> Option<i32> {
        let mut g = self.session.lock().await;
        let s = g.as_mut()?;
        sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut s.conn)
            .await
            .ok()
    }
}
