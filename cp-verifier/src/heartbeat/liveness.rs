//! The sweeper: marks agents that missed `missed_heartbeats` pulses as blinded (one
//! `Blinded` alert per silence), flushes aggregated unenrolled alerts, and re-attests
//! stored TDX evidence against current collateral when it ages. It runs supervised
//! (restarted after a panic) and reports its last run on `/healthz`.

use crate::act::cooldown::MAX_COOLDOWNS;
use crate::model::{Alert, AlertKind};
use crate::plane::ControlPlane;
use crate::store::{AgentWrite, StoreError};
use provenant_base::clock::UnixNanos;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

#[cfg(test)]
pub(crate) static INJECT_SWEEPER_PANIC: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// The sweeper loop; ends when the control plane is dropped.
async fn sweeper_loop(cp: Weak<ControlPlane>) {
    let Some(interval) = cp.upgrade().map(|c| c.cfg.sweep_interval) else {
        return;
    };
    let mut t = tokio::time::interval(interval);
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        t.tick().await;
        let Some(cp) = cp.upgrade() else { return };
        #[cfg(test)]
        if INJECT_SWEEPER_PANIC.swap(false, Ordering::SeqCst) {
            panic!("injected sweeper panic");
        }
        // With replicas on one shared store, only the elected leader sweeps (see
        // `store::postgres::leader`): the sweep blinds agents, prunes shared state and
        // re-attests, which must happen once per fleet. Followers still flush their
        // own in-memory aggregates and reload revocations.
        if cp.store.fleet_leader().await {
            if let Err(e) = cp.sweep().await {
                tracing::error!(error = %e, "liveness sweep failed");
            }
        } else {
            cp.follower_round().await;
        }
        // Every replica adds its own pulse counts.
        cp.flush_pulses(false).await;
    }
}

/// How often a replica adds its pulse counts to the store: what a crash can lose.
pub(crate) const PULSE_FLUSH: Duration = Duration::from_secs(5);

impl ControlPlane {
    /// Adds the pulses counted since the last flush to the store, at most every
    /// [`PULSE_FLUSH`] unless `force`. On failure the counts are kept for the next.
    pub async fn flush_pulses(&self, force: bool) {
        let now = self.now();
        let last = UnixNanos(self.pulses_flushed_ns.load(Ordering::Relaxed));
        if !force && now.since(last) < PULSE_FLUSH {
            return;
        }
        self.pulses_flushed_ns.store(now.get(), Ordering::Relaxed);
        let dropped = self.pulses.take_dropped();
        if dropped > 0 {
            tracing::warn!(dropped, "pulse tally full between flushes: these pulses are missing from the agents' pulse charts");
        }
        let counts = self.pulses.take();
        if counts.is_empty() {
            return;
        }
        if let Err(e) = self.store.add_pulse_counts(&counts).await {
            tracing::warn!(error = %e, slots = counts.len(), "cannot store pulse counts; keeping them for the next flush");
            self.pulses.restore(counts);
        }
    }

    /// Starts the supervised liveness sweeper (the webhook senders and image workers
    /// start with the control plane).
    pub fn spawn_sweeper(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        self.tasks
            .spawn("sweeper", move || sweeper_loop(weak.clone()));
    }

    /// A sweeper round on a replica that is not the fleet leader: only what is this
    /// replica's own (revocations it caches, unenrolled alerts it aggregates).
    pub async fn follower_round(&self) {
        let now = self.now();
        if let Err(e) = self.load_revocations().await {
            tracing::warn!(error = %e, "cannot reload revocations");
        }
        self.flush_unenrolled(now).await;
        self.last_sweep_ns.store(now.get(), Ordering::SeqCst);
    }

    /// Marks agents with no valid pulse for `missed_heartbeats` intervals as blinded
    /// and prunes expired challenges and old nonces. Returns how many were blinded.
    pub async fn sweep(&self) -> Result<usize, StoreError> {
        let now = self.now();
        let mut blinded = 0;
        let mut failed = None;
        self.load_revocations().await?;
        for (id, rec) in self.store.scan_agents().await? {
            // One undecodable record is skipped (and alerted once), not the sweep.
            let rec = match rec {
                Ok(r) => r,
                Err(e) => {
                    // Fail closed: no pulse is judged on a cached copy of it either.
                    self.cache
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&id);
                    let first = {
                        let mut c = self.corrupt_seen.lock().unwrap_or_else(|e| e.into_inner());
                        if c.len() > MAX_COOLDOWNS {
                            c.clear();
                        }
                        c.insert(id.clone())
                    };
                    if first {
                        tracing::error!(agent_id = %id, error = %e, "agent record cannot be decoded; skipped");
                        self.store_alerts(vec![Alert::new(
                            now,
                            &id,
                            AlertKind::RecordCorrupt,
                            format!("the stored record cannot be decoded ({e}); the agent is neither judged nor blinded, and its pulses are refused, until an operator repairs or deletes the record"),
                        )])
                        .await;
                    }
                    continue;
                }
            };
            let window = Duration::from_millis(rec.heartbeat_interval_ms)
                .saturating_mul(self.cfg.policy.missed_heartbeats);
            let silent = now.since(self.last_alive(&rec));
            // A revoked agent is red for its own reason; its refused pulses do not
            // also make it Blinded.
            let revoked = !self.revocation_reasons(&rec, now).is_empty();
            if rec.blinded || revoked || silent <= window {
                // Not blinded now: a badge that moved with time alone (a pulse late,
                // evidence aged, a withdrawal) is recorded here. A lost race means a
                // write came first, which recorded it.
                if let Some(w) = self.time_change(&rec, now) {
                    match self.persist(w).await {
                        Ok(()) | Err(StoreError::Conflict) => {}
                        Err(e) => {
                            failed.get_or_insert(e);
                        }
                    }
                }
                continue;
            }
            let mut next = rec.clone();
            next.blinded = true;
            next.version = rec.version + 1;
            let detail = format!(
                "no valid pulse for {:.1}s ({} missed heartbeats of {} ms): agent killed, blocked or blinded",
                silent.as_secs_f64(),
                self.cfg.policy.missed_heartbeats,
                rec.heartbeat_interval_ms
            );
            match self
                .persist(AgentWrite {
                    record: next,
                    expected_version: Some(rec.version),
                    nonce: None,
                    alerts: vec![Alert::new(now, &rec.agent_id, AlertKind::Blinded, detail)],
                    chain_only: true,
                    changes: Vec::new(),
                })
                .await
            {
                Ok(()) => blinded += 1,
                // A pulse arrived meanwhile: not blinded after all.
                Err(StoreError::Conflict) => {}
                // The alert went out all the same (`persist`); the other agents are
                // still checked.
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        // Pulses older than the skew window are refused on time anyway, and any replay
        // of them also fails the sequence check, so their nonces need not be kept.
        let cutoff = now.saturating_sub(self.cfg.max_clock_skew.saturating_mul(4));
        self.store.prune(now, cutoff).await?;
        self.flush_unenrolled(now).await;
        // Alert retention (their pending webhook deliveries go with them).
        let before = now.saturating_sub(self.cfg.alert_retention);
        self.store.prune_alerts(before).await?;
        self.last_sweep_ns.store(now.get(), Ordering::SeqCst);
        self.reattest(now).await;
        match failed {
            Some(e) => Err(e),
            None => Ok(blinded),
        }
    }

    /// Verifies the stored quote of each TDX agent that is due (every
    /// `[tdx] reattest_interval`, and once its collateral's `nextUpdate` has passed)
    /// again at `now` against the current collateral and provenance, stores the
    /// updated evidence, and raises `AttestationChanged` when the TCB status or the
    /// evidence's standing changed. When the verifier cannot decide (collateral or
    /// provenance unavailable) the old evidence is kept, to age, and the failure is
    /// logged and recorded on it. Returns how many agents were re-attested.
    pub async fn reattest(&self, now: UnixNanos) -> usize {
        let every = self.cfg.tdx.reattest_every();
        // An upstream that keeps failing is not asked more than once a minute per agent
        // (or once per interval, when that is shorter).
        let retry = every.min(Duration::from_secs(60));
        // The sweeper runs every second; the fleet is scanned for due agents at most
        // once per `retry`.
        let last_scan = UnixNanos(
            self.last_reattest_scan
                .load(std::sync::atomic::Ordering::Relaxed),
        );
        if last_scan.get() != 0 && now.since(last_scan) < retry {
            return 0;
        }
        self.last_reattest_scan
            .store(now.get().max(1), std::sync::atomic::Ordering::Relaxed);
        // Every decodable record: one corrupt record (alerted by the sweep) must not
        // stop the fleet's re-attestation.
        let agents: Vec<_> = match self.store.scan_agents().await {
            Ok(a) => a.into_iter().filter_map(|(_, r)| r.ok()).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "re-attestation: cannot list agents");
                return 0;
            }
        };
        let mut done = 0;
        for rec in agents {
            let Some(a) = rec.attestation.as_ref().filter(|a| a.verified) else {
                continue;
            };
            if a.freshness.quote.is_none() {
                continue; // an older record: the agent's next requote brings one
            }
            let f = &a.freshness;
            let last_decided = UnixNanos(f.reattested_at_ns.unwrap_or(a.verified_at_ns));
            let expired = f
                .collateral_next_update
                .is_some_and(|t| now.secs().unsigned() >= t);
            let due = now.since(last_decided) >= every || expired;
            // A try that could not decide since the last decision: wait `retry`.
            let backing_off = f
                .reattest_tried_ns
                .is_some_and(|t| UnixNanos(t) > last_decided && now.since(UnixNanos(t)) < retry);
            if !due || backing_off {
                continue;
            }
            let (next, alert) = match self.tdx.reattest(a, now).await {
                Ok(next) => {
                    let was = policy::Verdict::from_reasons(a.reasons.clone()).status;
                    let is = policy::Verdict::from_reasons(next.reasons.clone()).status;
                    let alert = (next.tcb_status != a.tcb_status || was != is).then(|| {
                        let why: Vec<String> = next
                            .reasons
                            .iter()
                            .filter(|r| r.status != policy::Status::Pass)
                            .map(|r| format!("{}: {}", r.code.as_str(), r.detail))
                            .collect();
                        Alert::new(
                            now,
                            &rec.agent_id,
                            AlertKind::AttestationChanged,
                            format!(
                                "re-attested against current collateral: TCB status {} -> {}, evidence {} -> {}{}",
                                a.tcb_status.as_deref().unwrap_or("none"),
                                next.tcb_status.as_deref().unwrap_or("none"),
                                was.badge(),
                                is.badge(),
                                if why.is_empty() { String::new() } else { format!(" ({})", why.join("; ")) }
                            ),
                        )
                    });
                    (next, alert)
                }
                Err(e) => {
                    tracing::warn!(agent_id = %rec.agent_id, error = %e,
                        "re-attestation could not decide; the stored evidence is kept and ages");
                    let mut next = a.clone();
                    next.freshness.reattest_tried_ns = Some(now.get());
                    next.freshness.reattest_error = Some(format!("{}: {e}", e.kind()));
                    (next, None)
                }
            };
            let mut record = rec.clone();
            record.attestation = Some(next);
            record.version = rec.version + 1;
            match self
                .persist(AgentWrite {
                    record,
                    expected_version: Some(rec.version),
                    nonce: None,
                    alerts: alert.into_iter().collect(),
                    chain_only: false,
                    changes: Vec::new(),
                })
                .await
            {
                Ok(()) => done += 1,
                // A pulse or registration won: the next sweep tries again.
                Err(StoreError::Conflict) => {}
                Err(e) => tracing::warn!(agent_id = %rec.agent_id, error = %e,
                    "could not store re-attested evidence"),
            }
        }
        done
    }

    /// Runs [`ControlPlane::sweep`] every `sweep_interval` until the task is dropped.
    /// Prefer [`ControlPlane::spawn_sweeper`], which restarts it after a panic.
    pub async fn run_sweeper(self: Arc<Self>) {
        sweeper_loop(Arc::downgrade(&self)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CpConfig;

    /// The sweeper panics once (a hook compiled only in tests): it is restarted after
    /// a short backoff, sweeps again, and `/healthz` shows the restart.
    #[tokio::test]
    async fn supervised_sweeper_restarts_after_panic() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = CpConfig::with_data_dir(dir.path());
        cfg.sweep_interval = Duration::from_millis(20);
        let store = Arc::new(
            crate::store::sqlite::SqliteStore::open(dir.path())
                .await
                .unwrap(),
        );
        let cp = Arc::new(
            ControlPlane::new(cfg, store, Arc::new(provenant_base::clock::SystemClock)).unwrap(),
        );
        INJECT_SWEEPER_PANIC.store(true, Ordering::SeqCst);
        cp.spawn_sweeper();
        let sweeper = |cp: &ControlPlane| {
            cp.tasks()
                .into_iter()
                .find(|t| t.name == "sweeper")
                .unwrap()
        };
        let mut swept_after = 0;
        for _ in 0..200 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if sweeper(&cp).restarts == 1 && cp.last_sweep_ns.load(Ordering::SeqCst) != 0 {
                swept_after = cp.last_sweep_ns.load(Ordering::SeqCst);
                break;
            }
        }
        assert_ne!(
            swept_after,
            0,
            "the sweeper did not come back: {:?}",
            cp.tasks()
        );
        let t = sweeper(&cp);
        assert!(t.running);
        assert_eq!(t.last_panic.as_deref(), Some("injected sweeper panic"));
        let (ok, h) = cp.health().await;
        assert!(ok, "{h}");
        let shown = h["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == "sweeper")
            .cloned()
            .unwrap();
        assert_eq!(shown["restarts"], 1, "{h}");
        assert!(h["last_sweep_ns"].as_u64().unwrap() >= swept_after);
        cp.shutdown();
    }
}
