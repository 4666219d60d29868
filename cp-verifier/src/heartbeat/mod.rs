//! Stage 4, heartbeat: `/heartbeat` verifies a pulse (signature with the
//! registered key, sequence and chain, nonce, clock skew, revocation), judges its
//! measurements and stores the new chain head with the alerts it raises in one write.
//! Replays and clock drift are refused with their own reasons; [`liveness`] notices
//! the agents that stopped pulsing.

pub mod error;
pub mod liveness;

use crate::heartbeat::error::{PulseError, ReplayKind};
use crate::judge::baseline::{judge, resolve_inventory, InventoryError};
use crate::model::AgentRecord;
use crate::model::{Alert, AlertKind};
use crate::plane::ControlPlane;
use crate::plane::MAX_UNSTORED;
use crate::store::{AgentWrite, StoreError};
use evidence::api::HeartbeatResponse;
use evidence::report::HexBytes;
use evidence::{Envelope, Measurements, Pulse};
use provenant_base::clock::UnixNanos;

/// Agents with stale-replay counts not yet written to their record, at most.
pub(crate) const MAX_STALE_PENDING: usize = 100_000;

/// The full measurements a pulse stands for: its own (lists restored from `stored`
/// where it sent only their digests), or, when it says nothing changed, `stored`
/// itself, if its digest is the one the pulse names. A digest that does not match
/// is refused (`InconsistentInventory`): the agent registers again.
pub(crate) fn pulse_measurements(
    stored: &Measurements,
    pulse: &Pulse,
) -> Result<Measurements, InventoryError> {
    let digest_of = |m: &Measurements| {
        m.digest()
            .map_err(|e| InventoryError(format!("measurements cannot be digested: {e}")))
    };
    let resolved = match &pulse.measurements {
        Some(m) => resolve_inventory(Some(stored), m.clone(), false)?,
        None => stored.clone(),
    };
    if let Some(named) = pulse.measurements_digest {
        let have = digest_of(&resolved)?;
        if have != named {
            return Err(InventoryError(if pulse.measurements.is_some() {
                format!("the measurements hash to {have}, but measurements_digest says {named}")
            } else {
                format!(
                    "pulse says nothing changed (measurements digest {named}), but the last accepted measurements have digest {have}; register again"
                )
            }));
        }
    }
    Ok(resolved)
}

impl ControlPlane {
    /// When the agent was last seen alive: its last stored pulse, or a later verified
    /// pulse the store could not record.
    pub(crate) fn last_alive(&self, rec: &AgentRecord) -> UnixNanos {
        let u = self
            .unrecorded_seen
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        UnixNanos(
            u.get(&rec.agent_id)
                .map_or(rec.last_seen_ns, |&t| t.max(rec.last_seen_ns)),
        )
    }

    /// Verifies and records one pulse that arrived over a connection authenticated
    /// as nobody in particular (plain HTTP, TLS without an agent certificate).
    pub async fn heartbeat(&self, env: Envelope) -> Result<HeartbeatResponse, PulseError> {
        self.heartbeat_from(env, &[]).await
    }

    /// Verifies and records one pulse. `channel` holds the names (CN, DNS SANs) of
    /// the connection's verified agent certificate, if any: a pulse that fails its
    /// signature counts toward `Compromised` only when they name its agent.
    pub async fn heartbeat_from(
        &self,
        env: Envelope,
        channel: &[String],
    ) -> Result<HeartbeatResponse, PulseError> {
        let claimed = env.decode::<Pulse>()?;
        let agent_id = claimed.claimed().agent_id.clone();
        let Some(rec) = self.load(&agent_id, false).await? else {
            return Err(self.unknown_agent(&agent_id).await.into());
        };
        // Every pulse naming a known agent is counted, accepted or refused (the
        // agent page's pulses over time).
        let r = self.pulse_of_known(&env, channel, claimed, rec).await;
        self.pulses.count(&agent_id, self.now(), r.is_ok());
        r
    }

    /// [`ControlPlane::heartbeat_from`] once the pulse names a known agent.
    async fn pulse_of_known(
        &self,
        env: &Envelope,
        channel: &[String],
        claimed: evidence::dsse::Unverified<'_, Pulse>,
        rec: AgentRecord,
    ) -> Result<HeartbeatResponse, PulseError> {
        let agent_id = rec.agent_id.clone();
        let first_key = rec.key.clone();
        let mut verified = Some(match claimed.verify(&rec.key) {
            Ok(p) => p,
            Err(e) => {
                if matches!(e, evidence::EvidenceError::BadSignature { .. }) {
                    let authenticated = channel.contains(&agent_id);
                    let late = rec
                        .previous_key
                        .as_ref()
                        .is_some_and(|k| env.open::<Pulse>(k).is_ok());
                    self.bad_signature(&rec, authenticated, late, &e.to_string())
                        .await;
                }
                return Err(e.into());
            }
        });
        // Deleted, disabled, unenrolled or withdrawn: 403 Revoked.
        self.check_pulse_revocation(&rec, self.now()).await?;
        // One retry covers a concurrent write to the same record (the sweeper).
        for attempt in 0..2 {
            let now = self.now();
            let rec = if attempt == 0 {
                rec.clone()
            } else {
                match self.load(&agent_id, true).await? {
                    Some(r) => r,
                    None => return Err(self.unknown_agent(&agent_id).await.into()),
                }
            };
            // A re-registration with a new key between attempts: verify again under it.
            let pulse = match verified.take() {
                Some(v) if rec.key == first_key => v,
                _ => env.open::<Pulse>(&rec.key)?,
            };
            let digest = HexBytes(pulse.digest());
            if pulse.partition != rec.partition {
                return Err(PulseError::WrongPartition(format!(
                    "pulse names partition {:?}, agent registered in {:?}",
                    pulse.partition, rec.partition
                )));
            }
            // Pulses travel in clear, so anyone may re-post an old one: that must not
            // turn the agent red. The exact accepted pulse again is a retry; a pulse
            // issued outside the skew window is an old capture (counted, quiet); an
            // already accepted pulse inside it is a retry too. Only a pulse the key
            // signed for a used sequence, never accepted, inside the window is a fork:
            // red (`Replay`).
            if digest == rec.chain_head {
                return Err(PulseError::replay(
                    ReplayKind::Duplicate,
                    "this exact pulse was already accepted (a duplicate; nothing recorded)",
                ));
            }
            if pulse.sequence <= rec.sequence {
                if self.check_skew(pulse.issued_at_ns, now, "pulse").is_err() {
                    let n = self.count_stale_replay(&rec);
                    return Err(PulseError::replay(ReplayKind::OldCapture, format!(
                        "sequence {} was already used (last accepted {}) and the pulse was issued outside the allowed skew: an old pulse re-posted, refused and counted ({n} so far)",
                        pulse.sequence, rec.sequence
                    )));
                }
                if pulse.sequence < rec.sequence
                    && self
                        .store
                        .nonce_seen(&agent_id, &pulse.nonce.to_hex())
                        .await?
                {
                    return Err(PulseError::replay(
                        ReplayKind::Duplicate,
                        format!(
                            "pulse {} was already accepted (a duplicate; nothing recorded)",
                            pulse.sequence
                        ),
                    ));
                }
                let why = format!(
                    "a second pulse for sequence {} (last accepted {}), signed by the agent's key inside the skew window: a forked chain",
                    pulse.sequence, rec.sequence
                );
                return Err(self.refuse_replay(&rec, now, ReplayKind::Fork, why).await);
            }
            if let Err(e) = self.check_skew(pulse.issued_at_ns, now, "pulse") {
                self.note_refusal(
                    &rec,
                    AlertKind::ClockDesync,
                    now,
                    &format!("ClockDesync: {e}"),
                )
                .await;
                return Err(e.into());
            }
            if pulse.sequence != rec.sequence + 1 || pulse.previous != rec.chain_head {
                let why = format!(
                    "pulse {} does not continue the chain (expected sequence {} after {})",
                    pulse.sequence,
                    rec.sequence + 1,
                    &rec.chain_head.to_hex()[..16]
                );
                return Err(self
                    .refuse_replay(&rec, now, ReplayKind::ChainBroken, why)
                    .await);
            }

            let measurements = pulse_measurements(&rec.current, &pulse)?;
            let j = judge(&rec.lkg, &rec.expected, Some(&rec.current), &measurements);
            let mut alerts: Vec<Alert> = j
                .alerts
                .iter()
                .map(|(k, d)| Alert::new(now, &agent_id, *k, d))
                .collect();
            if rec.blinded {
                alerts.push(Alert::new(
                    now,
                    &agent_id,
                    AlertKind::Recovered,
                    "valid pulses again after being blinded",
                ));
            }
            let mut next = AgentRecord {
                last_seen_ns: now.get(),
                sequence: pulse.sequence,
                chain_head: digest,
                lkg: j.lkg,
                expected: j.expected,
                current: measurements,
                blinded: false,
                version: rec.version + 1,
                ..rec.clone()
            };
            if let Some(h) = &pulse.health {
                next.health = Some(h.clone());
                next.health_at_ns = Some(now.get());
            }
            // Stale replays counted meanwhile are written with this pulse.
            let stale = self
                .stale_pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&agent_id)
                .unwrap_or(0);
            next.stale_replays_refused = next.stale_replays_refused.saturating_add(stale);
            let verdict = self.verdict(&next, now);
            let badges = self.badges(&next, &verdict);
            alerts.extend(self.image_transitions(&mut next, &badges, now));
            alerts.extend(self.required_program_alerts(
                &agent_id,
                Some(&rec.current),
                &next.current,
                now,
            ));
            // Most pulses only advance the chain; tell the store so it can skip
            // rewriting the unchanged rest of the record.
            let chain_only = AgentRecord {
                last_seen_ns: rec.last_seen_ns,
                sequence: rec.sequence,
                chain_head: rec.chain_head,
                blinded: rec.blinded,
                version: rec.version,
                ..next.clone()
            } == rec;
            let written = self
                .persist_judged(
                    AgentWrite {
                        record: next.clone(),
                        expected_version: Some(rec.version),
                        nonce: Some(pulse.nonce.to_hex()),
                        alerts,
                        chain_only,
                        changes: Vec::new(),
                    },
                    Some((&verdict, &badges)),
                )
                .await;
            if written.is_err() && stale > 0 {
                *self
                    .stale_pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(agent_id.clone())
                    .or_default() += stale;
            }
            match written {
                Ok(()) => {
                    self.events.verdict(&agent_id, &verdict, now.get());
                    return Ok(HeartbeatResponse {
                        accepted: true,
                        sequence: next.sequence,
                        verdict,
                        commands: Vec::new(),
                        workloads: badges,
                    });
                }
                Err(StoreError::DuplicateNonce) => {
                    return Err(self
                        .refuse_replay(
                            &rec,
                            now,
                            ReplayKind::NonceReused,
                            "the pulse nonce was already used".into(),
                        )
                        .await)
                }
                Err(StoreError::Conflict) if attempt == 0 => continue,
                Err(StoreError::Conflict) => {
                    return Err(PulseError::replay(
                        ReplayKind::LostRace,
                        "the agent's chain moved concurrently; this pulse lost",
                    ))
                }
                Err(e) => {
                    if matches!(e, StoreError::Unavailable(_)) {
                        // Verified, but not recorded: the agent is alive, the store is
                        // not. The sweeper must not call it silent.
                        let mut u = self
                            .unrecorded_seen
                            .lock()
                            .unwrap_or_else(|e| e.into_inner());
                        if u.len() > MAX_UNSTORED {
                            u.clear();
                        }
                        let t = u.entry(agent_id.clone()).or_insert(0);
                        *t = (*t).max(pulse.issued_at_ns.min(now.get()));
                    }
                    return Err(e.into());
                }
            }
        }
        // The loop returns on every path of its last attempt.
        Err(PulseError::replay(
            ReplayKind::LostRace,
            "the agent's chain moved concurrently; this pulse lost",
        ))
    }

    /// Counts an old pulse re-posted for `rec`'s agent; returns the agent's total.
    pub(crate) fn count_stale_replay(&self, rec: &AgentRecord) -> u64 {
        let mut p = self.stale_pending.lock().unwrap_or_else(|e| e.into_inner());
        if p.len() >= MAX_STALE_PENDING && !p.contains_key(&rec.agent_id) {
            // Shown counts may lag; nothing else depends on them.
            return rec.stale_replays_refused;
        }
        let n = p.entry(rec.agent_id.clone()).or_default();
        *n = n.saturating_add(1);
        rec.stale_replays_refused.saturating_add(*n)
    }

    pub(crate) async fn refuse_replay(
        &self,
        rec: &AgentRecord,
        now: UnixNanos,
        kind: ReplayKind,
        why: String,
    ) -> PulseError {
        self.note_refusal(rec, AlertKind::Replay, now, &why).await;
        PulseError::replay(kind, why)
    }

    /// A pulse naming `rec`'s agent failed its signature. Over a connection whose
    /// agent certificate names the agent (`authenticated`), it is counted: at
    /// `[policy] bad_signatures_threshold` within `bad_signatures_window` the agent is
    /// marked `Compromised` (red, severity 1) until an operator clears it. Anyone can
    /// post a pulse naming any agent, so without that channel binding it only raises
    /// `BadSignature` (cooldown-limited) and changes no verdict; nor does one signed
    /// by the key the agent's last registration replaced (`late`: sent before it
    /// registered again).
    async fn bad_signature(&self, rec: &AgentRecord, authenticated: bool, late: bool, e: &str) {
        let now = self.now();
        // Already marked: nothing more to count; the alert stays cooldown-limited.
        if late || !authenticated || rec.compromised.is_some() {
            let why = if rec.compromised.is_some() && authenticated && !late {
                "over a connection authenticated as this agent, which is already marked \
                 Compromised"
            } else if late {
                "signed by the key this agent's last registration replaced (a pulse sent \
                 before it registered again); not counted toward Compromised"
            } else {
                "the connection's client certificate does not name this agent, so the \
                 sender is unauthenticated; not counted toward Compromised"
            };
            self.alert_with_cooldown(
                &rec.agent_id,
                AlertKind::BadSignature,
                now,
                &format!("BadSignature: {e}; {why}"),
            )
            .await;
            return;
        }
        let policy = &self.cfg.policy;
        // One retry covers a concurrent write to the same record.
        for attempt in 0..2 {
            let rec = if attempt == 0 {
                rec.clone()
            } else {
                match self.load(&rec.agent_id, true).await {
                    Ok(Some(r)) => r,
                    _ => return,
                }
            };
            let mut next = rec.clone();
            let since = now.saturating_sub(policy.bad_signatures_window).get();
            next.bad_signatures_ns.retain(|&t| t > since);
            next.bad_signatures_ns.push(now.get());
            let keep = usize::try_from(policy.bad_signatures_threshold).unwrap_or(usize::MAX);
            let excess = next.bad_signatures_ns.len().saturating_sub(keep);
            next.bad_signatures_ns.drain(..excess);
            let count = next.bad_signatures_ns.len();
            let mut alerts = vec![Alert::new(
                now,
                &rec.agent_id,
                AlertKind::BadSignature,
                format!(
                    "BadSignature: {e}; over a connection authenticated as this agent \
                     ({count} of {} within {})",
                    policy.bad_signatures_threshold,
                    humantime::format_duration(policy.bad_signatures_window)
                ),
            )];
            if count >= keep && next.compromised.is_none() {
                let detail = format!(
                    "{count} pulse(s) sent over a connection authenticated as this agent \
                     (its mTLS certificate) failed signature verification under its \
                     registered key within {}; the last: {e}. Whoever holds the agent's \
                     transport identity signs with another key: investigate the node, \
                     then clear the mark (POST /api/v1/agents/{}/expect \
                     {{\"clear_compromised\": true}})",
                    humantime::format_duration(policy.bad_signatures_window),
                    rec.agent_id
                );
                alerts.push(Alert::new(
                    now,
                    &rec.agent_id,
                    AlertKind::Compromised,
                    &detail,
                ));
                next.compromised = Some(crate::model::Compromise {
                    at_ns: now.get(),
                    detail,
                });
            }
            next.version = rec.version + 1;
            let w = AgentWrite {
                record: next,
                expected_version: Some(rec.version),
                nonce: None,
                alerts,
                chain_only: false,
                changes: Vec::new(),
            };
            match self.persist(w).await {
                Ok(()) => return,
                Err(StoreError::Conflict) if attempt == 0 => continue,
                Err(e) => {
                    tracing::warn!(agent_id = %rec.agent_id, error = %e, "could not record a bad signature");
                    return;
                }
            }
        }
    }

    /// Records a refused pulse on the agent (for the verdict) and alerts, at most once
    /// per cooldown per kind so a flood of bad pulses cannot flood storage or webhooks.
    pub(crate) async fn note_refusal(
        &self,
        rec: &AgentRecord,
        kind: AlertKind,
        now: UnixNanos,
        detail: &str,
    ) {
        if !self.cooldown_passed(&rec.agent_id, kind, now) {
            return;
        }
        let mut next = rec.clone();
        match kind {
            AlertKind::Replay => next.last_replay_ns = Some(now.get()),
            AlertKind::ClockDesync => next.last_desync_ns = Some(now.get()),
            _ => {}
        }
        next.version = rec.version + 1;
        let w = AgentWrite {
            record: next,
            expected_version: Some(rec.version),
            nonce: None,
            alerts: vec![Alert::new(now, &rec.agent_id, kind, detail)],
            chain_only: false,
            changes: Vec::new(),
        };
        if let Err(e) = self.persist(w).await {
            tracing::warn!(agent_id = %rec.agent_id, error = %e, "could not record a refused pulse");
        }
    }
}
