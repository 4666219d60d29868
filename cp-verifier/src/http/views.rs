//! What the API and dashboard show of an agent ([`AgentView`]), the read endpoints
//! behind them, and the bearer-token check for reads and operator writes.

use crate::http::error::ApiError;
use crate::model::Alert;
use crate::model::TdxAttestation;
use crate::model::{AgentRecord, Expectations};
use crate::plane::{store_err, ControlPlane};
use evidence::api::WorkloadBadge;
use evidence::Tier;
use policy::Verdict;
use provenant_base::clock::UnixNanos;
use serde::{Deserialize, Serialize};

/// Minutes of pulse counts an agent's history covers.
pub const HISTORY_MINUTES: u64 = 60;
/// Most badge changes one history answer carries.
pub const MAX_HISTORY: u32 = 1000;

/// An agent's past: its badge changes and its pulses per minute.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AgentHistory {
    /// The agent.
    pub agent_id: String,
    /// Its badge changes and each workload's, newest first.
    pub changes: Vec<crate::model::VerdictChange>,
    /// Pulses accepted and refused per minute, oldest first; minutes without a
    /// pulse are left out.
    pub pulses: Vec<crate::model::PulseCount>,
    /// The first minute covered (minutes since the Unix epoch, UTC).
    pub since_minute: u64,
    /// The current minute.
    pub now_minute: u64,
}

/// An agent as the API and dashboard show it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AgentView {
    /// The agent's id.
    pub agent_id: String,
    /// Its partition.
    pub partition: String,
    /// The tier of its last registration.
    pub tier: Tier,
    /// `sha256:<hex>` fingerprint of its pulse-signing key.
    pub key_fingerprint: String,
    /// `blinded`, `requote-failed`, `attested`, `attested-with-warnings`, `failing` or
    /// `unknown`.
    pub state: String,
    /// The verdict's badge: `green`, `yellow`, `red` or `unknown`.
    pub badge: String,
    /// The verdict at the time of the view, with its reasons.
    pub verdict: Verdict,
    /// When it last registered, UTC ns.
    pub registered_at_ns: u64,
    /// Its last valid pulse (or registration), UTC ns.
    pub last_seen_ns: u64,
    /// Milliseconds from `last_seen_ns` to the time of the view.
    pub last_seen_age_ms: u64,
    /// Sequence number of its last accepted pulse.
    pub sequence: u64,
    /// The pulse interval it announced, in milliseconds.
    pub heartbeat_interval_ms: u64,
    /// Marked blinded by the liveness sweep.
    pub blinded: bool,
    /// The measurements it last reported.
    pub measurements: evidence::Measurements,
    /// Its last-known-good measurements.
    pub last_known_good: evidence::Measurements,
    /// Updates an operator announced.
    pub expected: Expectations,
    /// TDX evidence from the last registration (TDX tiers).
    pub attestation: Option<TdxAttestation>,
    /// Old pulses (issued outside the skew window) re-posted and refused; they do
    /// not count against the agent's verdict.
    #[serde(default)]
    pub stale_replays_refused: u64,
    /// The agent has registered on the `tdx` tier: a lower tier is refused unless
    /// an operator expects it.
    #[serde(default)]
    pub ever_tdx: bool,
    /// The tier an operator allowed for the next registration (one-shot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_tier: Option<Tier>,
    /// The badge of each reported workload.
    pub workloads: Vec<WorkloadBadge>,
    /// The workloads collector's state (`ok`, `unknown`, `unavailable`) and why;
    /// `None` when the agent does not run it.
    pub workloads_state: Option<CollectorView>,
    /// The eBPF collector's state, and the loaded programs (in `measurements.ebpf`).
    pub ebpf_state: Option<CollectorView>,
    /// The node's health from the last pulse that carried it (uptime, load, memory,
    /// disks, the agent's RSS and CPU, the kernel's clock state, the last error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<evidence::Health>,
    /// When that health arrived (UTC ns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_at_ns: Option<u64>,
}

/// A collector's state as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CollectorView {
    /// `ok`, `unknown` or `unavailable`.
    pub state: String,
    /// Why, when the collector gave a reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl ControlPlane {
    /// The view of `rec` at `now` (UTC ns). The stored quote is left out.
    pub fn view(&self, rec: &AgentRecord, now: UnixNanos) -> AgentView {
        let verdict = self.verdict(rec, now);
        let workloads = self.badges(rec, &verdict);
        let cv = |state, reason: &Option<String>| CollectorView {
            state: crate::judge::baseline::state_str(state).to_string(),
            reason: reason.clone(),
        };
        let state = if rec.blinded
            || verdict
                .reasons
                .iter()
                .any(|r| r.code == policy::ReasonCode::Blinded)
        {
            "blinded"
        } else if rec.requote_failed.is_some() && verdict.status != policy::Status::Fail {
            // Alive and pulsing; the control plane cannot renew its evidence.
            "requote-failed"
        } else {
            match verdict.status {
                policy::Status::Pass => "attested",
                policy::Status::Warn => "attested-with-warnings",
                policy::Status::Fail => "failing",
                policy::Status::Unknown => "unknown",
            }
        };
        AgentView {
            agent_id: rec.agent_id.clone(),
            partition: rec.partition.clone(),
            tier: rec.tier,
            key_fingerprint: rec.key.fingerprint(),
            state: state.to_string(),
            badge: verdict.status.badge().to_string(),
            verdict,
            registered_at_ns: rec.registered_at_ns,
            last_seen_ns: rec.last_seen_ns,
            last_seen_age_ms: u64::try_from(now.since(UnixNanos(rec.last_seen_ns)).as_millis())
                .unwrap_or(u64::MAX),
            sequence: rec.sequence,
            heartbeat_interval_ms: rec.heartbeat_interval_ms,
            blinded: rec.blinded,
            measurements: rec.current.clone(),
            last_known_good: rec.lkg.clone(),
            expected: rec.expected.clone(),
            // The kept quote is for re-attestation, not for the API.
            attestation: rec.attestation.clone().map(|mut a| {
                a.freshness.quote = None;
                a
            }),
            health: rec.health.clone(),
            health_at_ns: rec.health_at_ns,
            stale_replays_refused: rec.stale_replays_refused.saturating_add(
                self.stale_pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&rec.agent_id)
                    .copied()
                    .unwrap_or(0),
            ),
            ever_tdx: rec.ever_tdx || rec.tier == Tier::Tdx,
            allowed_tier: rec.allowed_tier,
            workloads,
            workloads_state: rec
                .current
                .workloads
                .as_ref()
                .map(|w| cv(w.state, &w.reason)),
            ebpf_state: rec.current.ebpf.as_ref().map(|e| cv(e.state, &e.reason)),
        }
    }

    /// Views of every agent; a record that cannot be decoded is logged and left out.
    pub async fn agents(&self) -> Result<Vec<AgentView>, ApiError> {
        let now = self.now();
        // One undecodable record does not hide the fleet (the sweeper alerts on it).
        Ok(self
            .store
            .scan_agents()
            .await
            .map_err(store_err)?
            .into_iter()
            .filter_map(|(id, r)| match r {
                Ok(r) => Some(self.view(&r, now)),
                Err(e) => {
                    tracing::warn!(agent_id = %id, error = %e, "agent record cannot be decoded; not listed");
                    None
                }
            })
            .collect())
    }

    /// `/metrics`: the counters and histograms, with the agents-by-badge and queue
    /// gauges read now.
    pub async fn metrics_text(&self) -> Result<String, ApiError> {
        use crate::http::metrics::{Queue, Standing};
        let agents = self.agents().await?;
        let m = &self.metrics;
        m.agents.clear();
        for a in &agents {
            let badge = match a.verdict.status {
                policy::Status::Pass => "green",
                policy::Status::Warn => "yellow",
                policy::Status::Fail => "red",
                policy::Status::Unknown => "unknown",
            };
            m.agents
                .get_or_create(&Standing {
                    badge,
                    tier: a.tier.as_str(),
                })
                .inc();
        }
        let hooks = self.alerts.stats();
        let depth = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let outbox = self.store.outbox_len().await.map_err(store_err)?;
        for (queue, n) in [
            ("webhook_outbox", depth(outbox)),
            (
                "webhook_best_effort",
                depth(u64::try_from(hooks.best_effort_queued).unwrap_or(u64::MAX)),
            ),
            (
                "image_verifications",
                depth(u64::try_from(self.images.queue_depth()).unwrap_or(u64::MAX)),
            ),
        ] {
            m.queues.get_or_create(&Queue { queue }).set(n);
        }
        Ok(m.encode())
    }

    /// The view of agent `id`; `NotFound` when there is none.
    pub async fn agent(&self, id: &str) -> Result<AgentView, ApiError> {
        let now = self.now();
        match self.store.get_agent(id).await.map_err(store_err)? {
            Some(r) => Ok(self.view(&r, now)),
            None => Err(ApiError::NotFound(format!("no agent {id:?}"))),
        }
    }

    /// Agent `id`'s badge changes (newest first, at most `limit`) and its pulses per
    /// minute over the last [`HISTORY_MINUTES`] (this replica's counts not yet
    /// flushed included); `NotFound` when there is no such agent.
    pub async fn history(&self, id: &str, limit: u32) -> Result<AgentHistory, ApiError> {
        if self.store.get_agent(id).await.map_err(store_err)?.is_none() {
            return Err(ApiError::NotFound(format!("no agent {id:?}")));
        }
        let changes = self
            .store
            .verdict_history(id, limit.clamp(1, MAX_HISTORY))
            .await
            .map_err(store_err)?;
        let now_minute = self.now().get() / 60_000_000_000;
        let since_minute = now_minute.saturating_sub(HISTORY_MINUTES - 1);
        let mut pulses = self
            .store
            .pulse_history(id, since_minute)
            .await
            .map_err(store_err)?;
        for p in self.pulses.pending(id) {
            if p.minute < since_minute {
                continue;
            }
            match pulses.iter_mut().find(|q| q.minute == p.minute) {
                Some(q) => {
                    q.accepted = q.accepted.saturating_add(p.accepted);
                    q.refused = q.refused.saturating_add(p.refused);
                }
                None => pulses.push(p),
            }
        }
        pulses.sort_by_key(|p| p.minute);
        Ok(AgentHistory {
            agent_id: id.to_string(),
            changes,
            pulses,
            since_minute,
            now_minute,
        })
    }

    /// The newest alerts first, of one agent or all, at most `limit` (capped at 1000).
    pub async fn alerts(&self, agent: Option<&str>, limit: u32) -> Result<Vec<Alert>, ApiError> {
        self.store
            .list_alerts(agent, limit.min(1000))
            .await
            .map_err(store_err)
    }

    /// One page of the alerts `f` selects, with the fleet's open counts.
    pub async fn alert_list(&self, f: &crate::store::AlertFilter) -> Result<AlertList, ApiError> {
        let mut f = f.clone();
        f.limit = f.limit.clamp(1, 1000);
        let alerts = self.store.query_alerts(&f).await.map_err(store_err)?;
        let next = if alerts.len() == usize::try_from(f.limit).unwrap_or(usize::MAX) {
            alerts.last().map(|a| a.id.clone())
        } else {
            None
        };
        let open = self.store.open_alert_counts().await.map_err(store_err)?;
        Ok(AlertList { alerts, next, open })
    }

    /// Open alerts (not acknowledged, severity 1-3) by severity.
    pub async fn open_alerts(&self) -> Result<[u64; 3], ApiError> {
        self.store.open_alert_counts().await.map_err(store_err)
    }

    /// Checks an operator bearer token in constant time.
    pub fn authorize(&self, presented: Option<&str>) -> Result<(), ApiError> {
        let Some(want) = &self.operator_token else {
            return Err(ApiError::Unauthorized(
                "operator endpoints are disabled: no operator_token_file is configured".into(),
            ));
        };
        let got = presented.unwrap_or("").as_bytes();
        if crate::http::auth::token_eq(want, got) {
            Ok(())
        } else {
            Err(ApiError::Unauthorized(
                "missing or wrong bearer token".into(),
            ))
        }
    }
}

/// `GET /api/v1/agents`: one page of agents, sorted by id.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AgentPage {
    /// The agents on this page.
    pub agents: Vec<AgentView>,
    /// How many agents match the filters, over all pages.
    pub total: usize,
    /// The last agent id of this page when more follow (pass it as `after`); null on
    /// the last page.
    pub next: Option<String>,
}

/// `GET /api/v1/alerts`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AlertList {
    /// Newest first.
    pub alerts: Vec<Alert>,
    /// The last alert id of this page when more may follow (pass it as `before`).
    pub next: Option<String>,
    /// Open alerts (not acknowledged, severity 1-3) in the whole fleet, by severity:
    /// `[critical, high, warning]`.
    pub open: [u64; 3],
}

/// `GET /api/v1/withdrawals`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct WithdrawalList {
    /// The withdrawn builds, from the API and the config.
    pub withdrawals: Vec<crate::model::Withdrawal>,
}

/// `DELETE /api/v1/agents/{id}`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Deleted {
    /// What is kept of the deleted agent (its key may no longer speak).
    pub deleted: crate::model::Tombstone,
}

/// `DELETE /api/v1/withdrawals/{id}`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Removed {
    /// The withdrawal removed.
    pub removed: crate::model::Withdrawal,
}
