//! The RTMR3 log an agent's registration was accepted with, kept (in the store's
//! shared cache) so that a later refused RTMR3 can be explained entry by entry
//! against it ([`crate::attest::explain::rtmr3`]).
//!
//! The kept log is only used while it is the one the agent's record describes (same
//! count, replays to the same RTMR3): a stale or foreign copy is ignored, never
//! trusted.

use evidence::eventlog::{self, EventLogState};
use provenant_base::clock::{UnixNanos, UnixSecs};

use crate::attest::explain::AcceptedLog;
use crate::plane::ControlPlane;

/// How long a kept log stays in the cache (renewed by every registration).
const KEEP_FOR_SECS: u64 = 400 * 24 * 3600;
/// Largest kept log (JSON); a longer one is not kept, and its refusals are explained
/// without it.
const MAX_KEPT_BYTES: usize = 2 * eventlog::MAX_LOG_BYTES;

fn key(agent_id: &str) -> String {
    format!("eventlog:{agent_id}")
}

impl ControlPlane {
    /// The log accepted at the agent's last registration, if kept and still the one
    /// `held` (the record's replayed state) describes.
    pub(crate) async fn accepted_log(
        &self,
        agent_id: &str,
        held: Option<&EventLogState>,
    ) -> Option<AcceptedLog> {
        let held = held?;
        let (json, _) = match self.store.get_cached(&key(agent_id)).await {
            Ok(v) => v?,
            Err(e) => {
                tracing::warn!(%agent_id, error = %e, "cannot read the kept RTMR3 log");
                return None;
            }
        };
        let log: AcceptedLog = serde_json::from_slice(&json).ok()?;
        let count = u64::try_from(log.events.len()).ok()?;
        (count == held.count && eventlog::replay(&log.events) == held.rtmr3.0).then_some(log)
    }

    /// Keeps the log a registration was just accepted with: the sent text, after the
    /// `prior` kept log when the registration continued it (`from` > 0). Kept only if
    /// it is exactly what `state` replayed.
    pub(crate) async fn keep_log(
        &self,
        agent_id: &str,
        prior: Option<AcceptedLog>,
        text: Option<&str>,
        from: Option<u64>,
        state: &EventLogState,
        now: UnixNanos,
    ) {
        let from = from.unwrap_or(0);
        let Ok(sent) = eventlog::parse_jsonl_from(text.unwrap_or("").as_bytes(), from) else {
            return;
        };
        let mut events = if from == 0 {
            Vec::new()
        } else {
            match prior {
                Some(p) if u64::try_from(p.events.len()).ok() == Some(from) => p.events,
                _ => return,
            }
        };
        events.extend(sent);
        if u64::try_from(events.len()).ok() != Some(state.count)
            || eventlog::replay(&events) != state.rtmr3.0
        {
            return;
        }
        let log = AcceptedLog {
            at_ns: now.get(),
            events,
        };
        let Ok(json) = serde_json::to_vec(&log) else {
            return;
        };
        if json.len() > MAX_KEPT_BYTES {
            tracing::debug!(%agent_id, bytes = json.len(), "RTMR3 log too long to keep for explanations");
            return;
        }
        let until = UnixSecs::from_unsigned(now.secs().unsigned().saturating_add(KEEP_FOR_SECS));
        if let Err(e) = self.store.put_cached(&key(agent_id), &json, until).await {
            tracing::warn!(%agent_id, error = %e, "cannot keep the accepted RTMR3 log; a later refusal is explained without it");
        }
    }
}
