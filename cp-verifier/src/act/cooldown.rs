//! Alert storage and cooldowns: the same kind of alert for the same agent is raised
//! at most once per `alert_cooldown`.

use crate::model::{Alert, AlertKind};
use crate::plane::ControlPlane;
use provenant_base::clock::UnixNanos;

/// Upper bound on remembered alert cooldowns; past it the table is cleared (at worst
/// a repeated alert is raised early).
pub(crate) const MAX_COOLDOWNS: usize = 100_000;

impl ControlPlane {
    pub(crate) async fn store_alerts(&self, a: Vec<Alert>) {
        // An outage of the store must not silence alerts: they go out all the same.
        match self.store.insert_alerts(&a).await {
            Ok(()) => self.alerts.emit(&a),
            Err(e) => {
                tracing::error!(error = %e, "could not store an alert; announcing it anyway");
                self.alerts.emit_unstored(&a);
            }
        }
    }

    pub(crate) fn cooldown_passed(&self, agent_id: &str, kind: AlertKind, now: UnixNanos) -> bool {
        let mut c = self.cooldowns.lock().unwrap_or_else(|e| e.into_inner());
        if c.len() > MAX_COOLDOWNS {
            c.clear();
        }
        let key = (agent_id.to_string(), kind);
        match c.get(&key) {
            Some(&t) if now.since(t) < self.cfg.alert_cooldown => false,
            _ => {
                c.insert(key, now);
                true
            }
        }
    }

    pub(crate) async fn alert_with_cooldown(
        &self,
        agent_id: &str,
        kind: AlertKind,
        now: UnixNanos,
        detail: &str,
    ) {
        self.alert_with_cooldown_explained(agent_id, kind, now, detail, None)
            .await
    }

    /// [`ControlPlane::alert_with_cooldown`] with the refusal's explanation kept on
    /// the alert.
    pub(crate) async fn alert_with_cooldown_explained(
        &self,
        agent_id: &str,
        kind: AlertKind,
        now: UnixNanos,
        detail: &str,
        explain: Option<crate::model::Explanation>,
    ) {
        if !self.cooldown_passed(agent_id, kind, now) {
            return;
        }
        let mut a = Alert::new(now, agent_id, kind, detail);
        a.explain = explain.map(Box::new);
        self.store_alerts(vec![a]).await;
    }
}
