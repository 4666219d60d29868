//! The control plane's state: [`ControlPlane`] holds the config, the store, the
//! clock, the verifiers and the in-memory caches every stage reads and writes. The
//! stages add their methods to it in their own modules (`register`, `heartbeat`,
//! `judge::verdict`, `act`, `http::views`); this module keeps what they share: the
//! record cache, [`ControlPlane::persist`] (one atomic write, alerts announced once)
//! and `/healthz`. It is built by [`crate::wiring`].

use crate::act::alerts::AlertSink;
use crate::act::unenrolled::SourceWindow;
use crate::attest::TdxVerifier;
use crate::config::CpConfig;
use crate::http::error::ApiError;
use crate::judge::images::ImageService;
use crate::model::AgentRecord;
use crate::model::{Alert, AlertKind};
use crate::register::enroll::Enroller;
use crate::store::{AgentWrite, Store, StoreError};
use crate::supervise::Tasks;
use provenant_base::clock::{Clock, UnixNanos};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a `/healthz` store probe result is reused (the probe is a real,
/// fsynced write).
pub(crate) const PROBE_REUSE: Duration = Duration::from_secs(1);

/// Upper bound on alerts announced while the store could not take them, and on
/// agents seen pulsing then; past it the table is cleared (at worst an alert is
/// announced twice, or an agent is judged on its stored last pulse).
pub(crate) const MAX_UNSTORED: usize = 10_000;

/// The control plane: config, store, clock, verifiers, alert sink, and the in-memory
/// state the HTTP handlers and the sweeper share (built in [`crate::wiring`]).
pub struct ControlPlane {
    /// The config it was built from.
    pub cfg: CpConfig,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) enroller: Enroller,
    pub(crate) tdx: TdxVerifier,
    pub(crate) alerts: AlertSink,
    pub(crate) operator_token: Option<Vec<u8>>,
    pub(crate) cache: Mutex<HashMap<String, AgentRecord>>,
    pub(crate) cooldowns: Mutex<HashMap<(String, AlertKind), UnixNanos>>,
    /// Alerts announced (log, audit log, webhooks) although the store could not take
    /// them, by agent and kind: the agent's next stored write stores them, under the
    /// id they were announced with, and they are not announced again.
    pub(crate) unstored: Mutex<HashMap<String, Vec<Alert>>>,
    /// When each agent last sent a fully verified pulse the store could not record
    /// (`StoreUnavailable`): an agent pulsing into a store outage is not silent.
    pub(crate) unrecorded_seen: Mutex<HashMap<String, u64>>,
    pub(crate) image_policy: policy::image::ImagePolicy,
    pub(crate) images: ImageService,
    pub(crate) revocation: crate::register::revoke::Revocations,
    /// Unenrolled registrations by source (see [`source_key`]).
    pub(crate) unenrolled: Mutex<HashMap<String, SourceWindow>>,
    /// Stale replays counted since the agent's record was last written.
    pub(crate) stale_pending: Mutex<HashMap<String, u64>>,
    /// Agents whose undecodable record was already alerted.
    pub(crate) corrupt_seen: Mutex<HashSet<String>>,
    /// When the last sweep completed (clock ns; 0: never).
    pub(crate) last_sweep_ns: AtomicU64,
    /// The last `/healthz` store probe and when it ran.
    pub(crate) probe: Mutex<Option<(std::time::Instant, Result<(), String>)>>,
    /// The supervised background tasks (dropped last: stops them).
    pub(crate) tasks: Tasks,
    /// When the sweeper last looked for TDX evidence to re-attest (UTC ns; 0: never).
    pub(crate) last_reattest_scan: std::sync::atomic::AtomicU64,
    /// Signs EAT Attestation Results (`[ear]`); `None`: not configured.
    pub(crate) ear: Option<crate::judge::ear::EarIssuer>,
    /// Prometheus metrics (`/metrics`).
    pub(crate) metrics: crate::http::metrics::Metrics,
    /// The fleet's event stream (`/api/v1/events`).
    pub(crate) events: crate::http::events::Events,
    /// Pulses accepted and refused per agent and minute, not yet added to the store.
    pub(crate) pulses: crate::judge::history::PulseTally,
    /// When the pulse tally was last added to the store (clock ns).
    pub(crate) pulses_flushed_ns: AtomicU64,
}

pub(crate) fn store_err(e: StoreError) -> ApiError {
    ApiError::from(e)
}

impl ControlPlane {
    /// Stops every background task (sweeper, webhook senders, image workers); for
    /// tests that restart a control plane in one process.
    pub fn shutdown(&self) {
        self.tasks.shutdown();
    }

    /// The supervised tasks, with their restarts.
    pub fn tasks(&self) -> Vec<crate::supervise::TaskView> {
        self.tasks.snapshot()
    }

    /// `/healthz`: whether the store takes a (real, committed) write, queue depths,
    /// the last sweep and each background task. `false`: the store is not writable.
    pub async fn health(&self) -> (bool, serde_json::Value) {
        let now = self.now();
        let cached = self
            .probe
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .filter(|(at, _)| at.elapsed() < PROBE_REUSE)
            .map(|(_, r)| r.clone());
        let probe = match cached {
            Some(r) => r,
            None => {
                let r = tokio::time::timeout(Duration::from_secs(5), self.store.probe_write(now))
                    .await
                    .map_err(|_| "the write probe took over 5s".to_string())
                    .and_then(|r| r.map_err(|e| e.to_string()));
                *self.probe.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some((std::time::Instant::now(), r.clone()));
                r
            }
        };
        let writable = probe.is_ok();
        let outbox = self.store.outbox_len().await.ok();
        let hooks = self.alerts.stats();
        let last = self.last_sweep_ns.load(Ordering::SeqCst);
        let tasks = self.tasks.snapshot();
        let all_running = tasks.iter().all(|t| t.running);
        let body = serde_json::json!({
            "status": if !writable { "unavailable" } else if all_running { "ok" } else { "degraded" },
            "store": { "writable": writable, "error": probe.err() },
            "queues": {
                "webhook_outbox": outbox,
                "webhook_best_effort": hooks.best_effort_queued,
                "webhook_best_effort_dropped": hooks.best_effort_dropped,
                "image_verifications": self.images.queue_depth(),
                "image_queue_full": self.images.queue_full_count(),
            },
            "last_sweep_ns": (last != 0).then_some(last),
            "last_sweep_age_ms": (last != 0).then(|| u64::try_from(now.since(UnixNanos(last)).as_millis()).unwrap_or(u64::MAX)),
            "tasks": tasks,
        });
        (writable, body)
    }

    /// The image verification service (for metrics and tests).
    pub fn image_service(&self) -> &ImageService {
        &self.images
    }

    /// The injected clock's time.
    pub fn now(&self) -> UnixNanos {
        self.clock.now()
    }

    pub(crate) async fn load(
        &self,
        agent_id: &str,
        fresh: bool,
    ) -> Result<Option<AgentRecord>, StoreError> {
        if !fresh {
            if let Some(r) = self
                .cache
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(agent_id)
            {
                return Ok(Some(r.clone()));
            }
        }
        let r = self.store.get_agent(agent_id).await?;
        if let Some(r) = &r {
            self.cache
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(agent_id.to_string(), r.clone());
        }
        Ok(r)
    }

    /// Writes a state change; on success the cache follows and alerts go out. When
    /// the store cannot take it, its alerts go out all the same (log, audit log,
    /// webhooks: an outage of the store must not silence them), once per agent and
    /// kind, and are stored with the agent's next write that succeeds.
    pub(crate) async fn persist(&self, w: AgentWrite) -> Result<(), StoreError> {
        self.persist_judged(w, None).await
    }

    /// [`ControlPlane::persist`] of a record the caller already judged (its verdict
    /// and workload badges at the write's time): the badge changes are recorded from
    /// that judgement instead of a second one.
    pub(crate) async fn persist_judged(
        &self,
        mut w: AgentWrite,
        judged: Option<(&policy::Verdict, &[evidence::api::WorkloadBadge])>,
    ) -> Result<(), StoreError> {
        let announced = self.with_unstored(&mut w);
        self.note_changes(&mut w, judged, self.now());
        let changed = !w.changes.is_empty();
        let rec = w.record.clone();
        let alerts = w.alerts.clone();
        let fresh = |alerts: &[Alert]| -> Vec<Alert> {
            alerts
                .iter()
                .filter(|a| !announced.contains(&a.id))
                .cloned()
                .collect()
        };
        let started = std::time::Instant::now();
        let written = self.store.write_agent(w).await;
        self.metrics
            .store_write_seconds
            .observe(started.elapsed().as_secs_f64());
        match written {
            Ok(()) => {
                self.cache
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(rec.agent_id.clone(), rec.clone());
                if !announced.is_empty() {
                    // All of them went into this write: stored now.
                    self.unstored
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&rec.agent_id);
                }
                self.alerts.emit(&fresh(&alerts));
                if !alerts.is_empty() || changed {
                    // Something worth an alert happened: the badge may have moved
                    // (pulses announce theirs from the verdict they already hold).
                    self.events.alerts(&alerts);
                    let now = self.now();
                    self.events
                        .verdict(&rec.agent_id, &self.verdict(&rec, now), now.get());
                }
                Ok(())
            }
            Err(e) => {
                match &e {
                    StoreError::Conflict => {
                        self.cache
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(&rec.agent_id);
                    }
                    StoreError::DuplicateNonce => {}
                    other => {
                        let new = fresh(&alerts);
                        if !new.is_empty() {
                            tracing::error!(agent_id = %rec.agent_id, error = %other, alerts = new.len(), "the store cannot take these alerts; announcing them anyway, to be stored with the agent's next write");
                            {
                                let mut u = self.unstored.lock().unwrap_or_else(|e| e.into_inner());
                                if u.len() > MAX_UNSTORED {
                                    u.clear();
                                }
                                let mine = u.entry(rec.agent_id.clone()).or_default();
                                for a in &new {
                                    if !mine.iter().any(|m| m.kind == a.kind) {
                                        mine.push(a.clone());
                                    }
                                }
                            }
                            self.alerts.emit_unstored(&new);
                        }
                    }
                }
                Err(e)
            }
        }
    }

    /// Puts the alerts announced for this agent while the store was down into `w`
    /// (an alert of the same kind in `w` is the same observation: the announced one,
    /// with its id, replaces it). A pulse after an announced `Blinded` adds
    /// `Recovered`. Returns the ids already announced.
    pub(crate) fn with_unstored(&self, w: &mut AgentWrite) -> Vec<String> {
        let u = self.unstored.lock().unwrap_or_else(|e| e.into_inner());
        let agent = &w.record.agent_id;
        let mut announced = Vec::new();
        for a in u.get(agent).into_iter().flatten() {
            w.alerts.retain(|x| x.kind != a.kind);
            w.alerts.insert(0, a.clone());
            announced.push(a.id.clone());
            if a.kind == AlertKind::Blinded && w.nonce.is_some() && !w.record.blinded {
                w.alerts.push(Alert::new(
                    UnixNanos(w.record.last_seen_ns),
                    agent,
                    AlertKind::Recovered,
                    "valid pulses again after being announced blinded while the store was unavailable",
                ));
            }
        }
        announced
    }
}
