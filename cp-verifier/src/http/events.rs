//! The fleet's event stream (`GET /api/v1/events`, Server-Sent Events, read access):
//! `verdict` when an agent's badge changes (with the previous badge and the reason
//! codes), and `alert` for every alert stored. Dashboards keep a live view without
//! polling the whole fleet.
//!
//! Bounded: each subscriber has a queue of [`QUEUE`] events; one that falls behind
//! gets a `lagged` event (refetch `/api/v1/agents`) instead of blocking the control
//! plane, and at most [`MAX_SUBSCRIBERS`] streams are open at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::broadcast;

use crate::model::Alert;

/// Events queued per subscriber before it is told it lagged.
pub const QUEUE: usize = 1024;
/// Open event streams at most.
pub const MAX_SUBSCRIBERS: usize = 64;
/// Agents whose last announced badge is remembered; past it the memory is cleared
/// (at worst a badge is announced again).
const MAX_TRACKED: usize = 200_000;

/// One event.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum FleetEvent {
    /// An agent's badge changed (or was first seen).
    Verdict {
        /// The agent.
        agent_id: String,
        /// `green`, `yellow`, `red` or `unknown`.
        badge: &'static str,
        /// The badge announced before, if any.
        previous: Option<&'static str>,
        /// The verdict's reason codes.
        reasons: Vec<&'static str>,
        /// When, UTC ns.
        at_ns: u64,
    },
    /// An alert was stored.
    Alert {
        /// The alert.
        #[serde(flatten)]
        alert: Alert,
    },
}

impl FleetEvent {
    /// The SSE event name.
    pub fn name(&self) -> &'static str {
        match self {
            FleetEvent::Verdict { .. } => "verdict",
            FleetEvent::Alert { .. } => "alert",
        }
    }
}

/// The broadcaster and the last badge announced per agent.
pub struct Events {
    tx: broadcast::Sender<FleetEvent>,
    last: Mutex<HashMap<String, &'static str>>,
    open: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("subscribers", &self.open.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

impl Default for Events {
    fn default() -> Self {
        Events::new()
    }
}

/// An open subscription; gives its slot back when dropped.
pub struct Subscription {
    /// The events.
    pub rx: broadcast::Receiver<FleetEvent>,
    open: Arc<AtomicUsize>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Events {
    /// No subscribers yet.
    pub fn new() -> Events {
        Events {
            tx: broadcast::channel(QUEUE).0,
            last: Mutex::new(HashMap::new()),
            open: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// A new subscription, or `None` when [`MAX_SUBSCRIBERS`] are open.
    pub fn subscribe(&self) -> Option<Subscription> {
        let taken = self
            .open
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < MAX_SUBSCRIBERS).then_some(n + 1)
            })
            .is_ok();
        taken.then(|| Subscription {
            rx: self.tx.subscribe(),
            open: self.open.clone(),
        })
    }

    /// Announces `agent_id`'s verdict if its badge differs from the last announced.
    pub fn verdict(&self, agent_id: &str, v: &policy::Verdict, at_ns: u64) {
        let badge = v.status.badge();
        let previous = {
            let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
            if last.get(agent_id) == Some(&badge) {
                return;
            }
            if last.len() >= MAX_TRACKED {
                last.clear();
            }
            last.insert(agent_id.to_string(), badge)
        };
        // No subscriber: nothing to send (the badge is remembered all the same).
        let _ = self.tx.send(FleetEvent::Verdict {
            agent_id: agent_id.to_string(),
            badge,
            previous,
            reasons: v.reasons.iter().map(|r| r.code.as_str()).collect(),
            at_ns,
        });
    }

    /// Announces stored alerts.
    pub fn alerts(&self, alerts: &[Alert]) {
        for a in alerts {
            let _ = self.tx.send(FleetEvent::Alert { alert: a.clone() });
        }
    }

    /// Forgets a deleted agent's badge.
    pub fn forget(&self, agent_id: &str) {
        self.last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(agent_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use policy::{Reason, ReasonCode, Status, Verdict};

    #[test]
    fn only_badge_changes_are_announced_and_subscribers_are_bounded() {
        let e = Events::new();
        let mut s = e.subscribe().unwrap();
        let yellow = Verdict::from_reasons(vec![Reason::new(
            ReasonCode::SoftwareTier,
            Status::Warn,
            "s",
        )]);
        e.verdict("a", &yellow, 1);
        e.verdict("a", &yellow, 2);
        let red = Verdict::from_reasons(vec![Reason::new(
            ReasonCode::BinaryChanged,
            Status::Fail,
            "b",
        )]);
        e.verdict("a", &red, 3);
        let first = s.rx.try_recv().unwrap();
        assert!(matches!(
            first,
            FleetEvent::Verdict {
                badge: "yellow",
                previous: None,
                ..
            }
        ));
        let second = s.rx.try_recv().unwrap();
        assert!(matches!(
            second,
            FleetEvent::Verdict {
                badge: "red",
                previous: Some("yellow"),
                ..
            }
        ));
        assert!(s.rx.try_recv().is_err());

        let mut held: Vec<_> = (1..MAX_SUBSCRIBERS)
            .map(|_| e.subscribe().unwrap())
            .collect();
        assert!(e.subscribe().is_none());
        held.pop();
        assert!(e.subscribe().is_some());
    }
}
