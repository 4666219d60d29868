//! The control plane's decisions: registration, pulse verification, operator
//! expectations and the liveness sweep. HTTP lives in `server`; this module takes
//! parsed input and `now` (through the clock) and returns typed results.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use evidence::api::{
    Challenge, HeartbeatResponse, RegisterRequest, RegisterResponse, WorkloadBadge,
};
use evidence::report::HexBytes;
use evidence::{Digest32, Envelope, Pulse, Report, Tier};
use guest_agent::clock::Clock;
use policy::{AgentFacts, Verdict};
use serde::{Deserialize, Serialize};

use crate::alert::{Alert, AlertKind, AlertSink};
use crate::attest::{TdxAttestation, TdxVerifier};
use crate::config::CpConfig;
use crate::enroll::Enroller;
use crate::error::ApiError;
use crate::images::{ImageChecker, ImageService};
use crate::judge::{inventory_reasons, judge, resolve_inventory, standing};
use crate::store::{AgentRecord, AgentWrite, Expectations, Store, StoreError};

/// Upper bound on remembered alert cooldowns; past it the table is cleared (at worst
/// a repeated alert is raised early).
const MAX_COOLDOWNS: usize = 100_000;

pub struct ControlPlane {
    pub cfg: CpConfig,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    enroller: Enroller,
    tdx: TdxVerifier,
    alerts: AlertSink,
    operator_token: Option<Vec<u8>>,
    cache: Mutex<HashMap<String, AgentRecord>>,
    cooldowns: Mutex<HashMap<(String, AlertKind), u64>>,
    image_policy: policy::image::ImagePolicy,
    images: ImageService,
}

/// An agent as the API and dashboard show it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentView {
    pub agent_id: String,
    pub partition: String,
    pub tier: Tier,
    pub key_fingerprint: String,
    pub state: String,
    pub badge: String,
    pub verdict: Verdict,
    pub registered_at_ns: u64,
    pub last_seen_ns: u64,
    pub last_seen_age_ms: u64,
    pub sequence: u64,
    pub heartbeat_interval_ms: u64,
    pub blinded: bool,
    pub measurements: evidence::Measurements,
    pub last_known_good: evidence::Measurements,
    pub expected: Expectations,
    /// TDX evidence from the last registration (TDX tiers).
    pub attestation: Option<TdxAttestation>,
    /// The badge of each reported workload.
    pub workloads: Vec<WorkloadBadge>,
    /// The workloads collector's state (`ok`, `unknown`, `unavailable`) and why;
    /// `None` when the agent does not run it.
    pub workloads_state: Option<CollectorView>,
    /// The eBPF collector's state, and the loaded programs (in `measurements.ebpf`).
    pub ebpf_state: Option<CollectorView>,
}

/// A collector's state as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CollectorView {
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The key under which a red workload image is remembered: its digest, or for an
/// image without one, its reference.
pub fn image_key(b: &WorkloadBadge) -> String {
    match &b.image_digest {
        Some(d) => d.clone(),
        None => format!("no-digest:{}", b.image),
    }
}

/// Whether the badge is red because of the image itself (not the agent).
fn image_red(b: &WorkloadBadge) -> bool {
    b.reasons.iter().any(|r| {
        r.status == policy::Status::Fail
            && matches!(
                r.code,
                policy::ReasonCode::ImageUnsigned
                    | policy::ReasonCode::ImageSignatureInvalid
                    | policy::ReasonCode::ImageDigestMismatch
                    | policy::ReasonCode::ImageIdentityMismatch
                    | policy::ReasonCode::ImageNotCovered
                    | policy::ReasonCode::ImageNoDigest
            )
    })
}

fn inventory_err(e: crate::judge::InventoryError) -> ApiError {
    ApiError::bad_request("InconsistentInventory", e.0)
}

/// Body of `POST /api/v1/agents/{id}/expect`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectRequest {
    /// The agent binary digest a coordinated update will bring.
    #[serde(default)]
    pub agent_binary: Option<Digest32>,
    /// The policy digest a coordinated change will bring.
    #[serde(default)]
    pub policy_digest: Option<Digest32>,
    /// Accept everything the agent reports now as last-known-good.
    #[serde(default)]
    pub accept_current: bool,
}

fn store_err(e: StoreError) -> ApiError {
    match e {
        StoreError::Unavailable(d) => ApiError::StoreUnavailable(d),
        other => ApiError::Internal(other.to_string()),
    }
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl ControlPlane {
    pub fn new(
        cfg: CpConfig,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<ControlPlane> {
        ControlPlane::with_image_checker(cfg, store, clock, None)
    }

    /// [`ControlPlane::new`] with the image signature verifier to use. `None`: the
    /// fail-closed [`crate::images::PolicyChecker`] (no registry access).
    pub fn with_image_checker(
        cfg: CpConfig,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        checker: Option<Arc<dyn ImageChecker>>,
    ) -> anyhow::Result<ControlPlane> {
        cfg.check()?;
        let image_policy = cfg.images.as_ref().map(|i| i.policy()).unwrap_or_default();
        let checker: Arc<dyn ImageChecker> = match (checker, &cfg.images) {
            (Some(c), _) => c,
            // An image policy: verify against the registries it names. Keys and roots
            // are loaded now, so a bad file stops start-up rather than a workload.
            (None, Some(i)) => Arc::new(crate::images::RegistryChecker(
                signatures::verifier::ImageVerifier::new(
                    &i.policy(),
                    std::path::Path::new(""),
                    &i.registry,
                )
                .map_err(|e| anyhow::anyhow!("[images]: {e}"))?,
            )),
            (None, None) => Arc::new(crate::images::PolicyChecker::new(None)),
        };
        let images = ImageService::start(
            cfg.images.as_ref().map(|i| i.service()).unwrap_or_default(),
            checker,
            Some(store.clone()),
            clock.clone(),
        );
        let enroller = Enroller::new(&cfg.enrollment)?;
        let mut tdx = TdxVerifier::from_config(
            &cfg.tdx,
            &cfg.data_dir,
            cfg.policy.tdx.clone(),
            Some(Arc::new(crate::store::StoreCollateralCache(store.clone()))),
        )?;
        if let Some(p) = &cfg.provenance {
            tdx = tdx.with_provenance(crate::provenance::ProvenanceChecker::new(
                p.clone(),
                Some(store.clone()),
            )?);
        }
        let alerts = AlertSink::new(cfg.audit_log.clone(), cfg.webhooks.clone())?;
        let operator_token = match &cfg.operator_token_file {
            Some(p) => {
                let t = crate::server::read_token(p, "operator_token_file")?;
                anyhow::ensure!(
                    t.len() >= 16,
                    "operator token in {} must be at least 16 characters",
                    p.display()
                );
                Some(t)
            }
            None => None,
        };
        Ok(ControlPlane {
            cfg,
            store,
            clock,
            enroller,
            tdx,
            alerts,
            operator_token,
            cache: Mutex::new(HashMap::new()),
            cooldowns: Mutex::new(HashMap::new()),
            image_policy,
            images,
        })
    }

    /// The image verification service (for metrics and tests).
    pub fn image_service(&self) -> &ImageService {
        &self.images
    }

    pub fn now_ns(&self) -> u64 {
        self.clock.now_ns()
    }

    /// Issues a single-use registration challenge.
    pub async fn challenge(&self) -> Result<Challenge, ApiError> {
        let nonce: Digest32 = HexBytes(rand::random());
        let expires_at_ns = self.now_ns().saturating_add(ns(self.cfg.challenge_ttl));
        self.store
            .put_challenge(&nonce.to_hex(), expires_at_ns)
            .await
            .map_err(store_err)?;
        Ok(Challenge {
            nonce,
            expires_at_ns,
        })
    }

    fn check_skew(&self, issued_at_ns: u64, now: u64, what: &str) -> Result<(), ApiError> {
        let skew = now.abs_diff(issued_at_ns);
        if skew > ns(self.cfg.max_clock_skew) {
            let dir = if issued_at_ns > now {
                "ahead of"
            } else {
                "behind"
            };
            return Err(ApiError::ClockDesync(format!(
                "{what} timestamp is {:.3}s {dir} the control plane's clock (allowed skew {}s); check the node's time sync",
                Duration::from_nanos(skew).as_secs_f64(),
                self.cfg.max_clock_skew.as_secs_f64()
            )));
        }
        Ok(())
    }

    /// Registration: the report's signature, its tier's evidence, enrollment, time,
    /// and the single-use challenge.
    pub async fn register(&self, req: RegisterRequest) -> Result<RegisterResponse, ApiError> {
        let now = self.now_ns();
        let env = req.envelope;
        // The report names its own key; signing with it proves possession. Whether the
        // key may speak for this agent id is enrollment's question, asked next.
        let claimed: Report = env.peek()?;
        let report = env.open::<Report>(&claimed.heartbeat_key)?;
        let key = report.heartbeat_key.clone();

        match report.tier {
            Tier::Software | Tier::TdxReport if !self.cfg.policy.allow_software_tier => {
                return Err(ApiError::TierNotAllowed(format!(
                    "policy does not accept the {} tier (allow_software_tier = false)",
                    report.tier.as_str()
                )));
            }
            Tier::Software => {
                if req.evidence.quote.is_some() || req.evidence.event_log.is_some() {
                    return Err(ApiError::bad_request(
                        "InvalidField",
                        "a software-tier report carries no quote or event log",
                    ));
                }
            }
            Tier::Tdx | Tier::TdxReport => {}
            other => {
                // Fail closed: a hardware tier this control plane cannot verify is refused,
                // never downgraded or waved through.
                return Err(ApiError::TierNotAllowed(format!(
                    "tier {} cannot be verified by this control plane",
                    other.as_str()
                )));
            }
        }

        if let Err(e) =
            self.enroller
                .check(&report.agent_id, &key, &req.evidence.certificate_chain, now)
        {
            if matches!(e, ApiError::Unenrolled(_)) {
                self.alert_with_cooldown(
                    &report.agent_id,
                    AlertKind::Unenrolled,
                    now,
                    &e.to_string(),
                )
                .await;
            }
            return Err(e);
        }
        self.check_skew(report.issued_at_ns, now, "report")?;
        // After enrollment: an unenrolled key learns nothing more about the checks.
        let measurements =
            resolve_inventory(None, report.measurements.clone(), true).map_err(inventory_err)?;
        let interval_ms = report.heartbeat_interval_ms;
        let max_ms = u64::try_from(self.cfg.heartbeat_interval.as_millis()).unwrap_or(u64::MAX);
        if interval_ms == 0 || interval_ms > max_ms {
            return Err(ApiError::IntervalTooLong(format!(
                "agent declares a heartbeat interval of {interval_ms} ms; policy allows 1..={max_ms} ms"
            )));
        }
        // The hardware evidence last among the report checks: it is the costly one
        // (collateral may be fetched), and it needs the report to be otherwise sound.
        let attestation = match report.tier {
            Tier::Tdx | Tier::TdxReport => {
                let raw = decode_platform_evidence(&req.evidence)?;
                let log = req.evidence.event_log.as_deref();
                let binding = evidence::report_data(&env);
                let checked = if report.tier == Tier::Tdx {
                    self.tdx.verify_quote(&raw, log, binding, now).await
                } else {
                    self.tdx.check_tdreport(&raw, log, binding, now)
                };
                match checked {
                    Ok(a) => Some(a),
                    Err(e) => {
                        self.alert_with_cooldown(
                            &report.agent_id,
                            AlertKind::AttestationRefused,
                            now,
                            &e.to_string(),
                        )
                        .await;
                        return Err(e);
                    }
                }
            }
            _ => None,
        };
        if !self
            .store
            .take_challenge(&report.nonce.to_hex(), now)
            .await
            .map_err(store_err)?
        {
            return Err(ApiError::BadChallenge(
                "the report's nonce is not an open challenge (unknown, already used or expired)"
                    .into(),
            ));
        }

        let existing = self
            .store
            .get_agent(&report.agent_id)
            .await
            .map_err(store_err)?;
        let head = HexBytes(report.digest());
        let mut alerts = Vec::new();
        let record = match &existing {
            Some(old) => {
                // Re-registration keeps the baseline: registering again must not launder
                // a changed binary into last-known-good.
                let j = judge(&old.lkg, &old.expected, Some(&old.current), &measurements);
                alerts.extend(
                    j.alerts
                        .iter()
                        .map(|(k, d)| Alert::new(now, &report.agent_id, *k, d)),
                );
                if old.key != key {
                    alerts.push(Alert::new(
                        now,
                        &report.agent_id,
                        AlertKind::Registered,
                        format!(
                            "key rotated from {} to {}",
                            old.key.fingerprint(),
                            key.fingerprint()
                        ),
                    ));
                }
                AgentRecord {
                    lkg: j.lkg,
                    expected: j.expected,
                    last_replay_ns: old.last_replay_ns,
                    last_desync_ns: old.last_desync_ns,
                    image_red: old.image_red.clone(),
                    version: old.version + 1,
                    ..new_record(&report, &measurements, &key, head, now, attestation.clone())
                }
            }
            None => {
                let j = judge(&measurements, &Default::default(), None, &measurements);
                AgentRecord {
                    lkg: j.lkg,
                    ..new_record(&report, &measurements, &key, head, now, attestation.clone())
                }
            }
        };
        let verdict = self.verdict(&record, now);
        let badges = self.badges(&record, &verdict);
        let mut record = record;
        alerts.extend(self.image_transitions(&mut record, &badges, now));
        alerts.push(Alert::new(
            now,
            &report.agent_id,
            AlertKind::Registered,
            match &attestation {
                Some(a) => format!(
                    "registered: tier {}, key {}, agent binary {}, MRTD {}, TCB status {}, {} RTMR3 events",
                    report.tier.as_str(),
                    key.fingerprint(),
                    report.measurements.agent_binary,
                    a.mrtd,
                    a.tcb_status.as_deref().unwrap_or("none (TDREPORT)"),
                    a.event_log_events
                ),
                None => format!(
                    "registered: tier {}, key {}, agent binary {}",
                    report.tier.as_str(),
                    key.fingerprint(),
                    report.measurements.agent_binary
                ),
            },
        ));
        self.persist(AgentWrite {
            record: record.clone(),
            expected_version: existing.as_ref().map(|o| o.version),
            nonce: None,
            alerts,
            chain_only: false,
        })
        .await
        .map_err(|e| match e {
            StoreError::Conflict => {
                ApiError::Replay("a concurrent registration for this agent won; retry".into())
            }
            other => store_err(other),
        })?;
        Ok(RegisterResponse {
            agent_id: record.agent_id.clone(),
            tier: record.tier,
            key_fingerprint: key.fingerprint(),
            verdict,
            chain_head: head,
            workloads: badges,
        })
    }

    async fn load(&self, agent_id: &str, fresh: bool) -> Result<Option<AgentRecord>, ApiError> {
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
        let r = self.store.get_agent(agent_id).await.map_err(store_err)?;
        if let Some(r) = &r {
            self.cache
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(agent_id.to_string(), r.clone());
        }
        Ok(r)
    }

    /// Writes a state change; on success the cache follows and alerts go out.
    async fn persist(&self, w: AgentWrite) -> Result<(), StoreError> {
        let rec = w.record.clone();
        let alerts = w.alerts.clone();
        match self.store.write_agent(w).await {
            Ok(()) => {
                self.cache
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(rec.agent_id.clone(), rec);
                self.alerts.emit(&alerts);
                Ok(())
            }
            Err(e) => {
                if matches!(e, StoreError::Conflict) {
                    self.cache
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&rec.agent_id);
                }
                Err(e)
            }
        }
    }

    /// Verifies and records one pulse.
    pub async fn heartbeat(&self, env: Envelope) -> Result<HeartbeatResponse, ApiError> {
        let claimed = env.decode::<Pulse>()?;
        let agent_id = claimed.claimed().agent_id.clone();
        let Some(rec) = self.load(&agent_id, false).await? else {
            return Err(ApiError::UnknownAgent(format!(
                "agent {agent_id:?} is not registered; register first"
            )));
        };
        let first_key = rec.key.clone();
        let mut verified = Some(match claimed.verify(&rec.key) {
            Ok(p) => p,
            Err(e) => {
                let e = ApiError::from(e);
                if matches!(e, ApiError::BadSignature(_)) {
                    self.alert_with_cooldown(
                        &agent_id,
                        AlertKind::BadSignature,
                        self.now_ns(),
                        &e.to_string(),
                    )
                    .await;
                }
                return Err(e);
            }
        });
        // One retry covers a concurrent write to the same record (the sweeper).
        for attempt in 0..2 {
            let now = self.now_ns();
            let rec = if attempt == 0 {
                rec.clone()
            } else {
                match self.load(&agent_id, true).await? {
                    Some(r) => r,
                    None => {
                        return Err(ApiError::UnknownAgent(format!(
                            "agent {agent_id:?} is not registered"
                        )))
                    }
                }
            };
            // A re-registration with a new key between attempts: verify again under it.
            let pulse = match verified.take() {
                Some(v) if rec.key == first_key => v,
                _ => env.open::<Pulse>(&rec.key)?,
            };
            let digest = HexBytes(pulse.digest());
            if pulse.partition != rec.partition {
                return Err(ApiError::bad_request(
                    "InvalidField",
                    format!(
                        "pulse names partition {:?}, agent registered in {:?}",
                        pulse.partition, rec.partition
                    ),
                ));
            }
            // Order matters: a pulse that reuses an old sequence is a replay whatever its
            // timestamp; only a pulse that could be the next one is judged on its clock.
            if digest == rec.chain_head || pulse.sequence <= rec.sequence {
                let why = if digest == rec.chain_head {
                    "this exact pulse was already accepted".to_string()
                } else {
                    format!(
                        "sequence {} was already used (last accepted {})",
                        pulse.sequence, rec.sequence
                    )
                };
                return Err(self.refuse_replay(&rec, now, why).await);
            }
            if let Err(e) = self.check_skew(pulse.issued_at_ns, now, "pulse") {
                self.note_refusal(&rec, AlertKind::ClockDesync, now, &e.to_string())
                    .await;
                return Err(e);
            }
            if pulse.sequence != rec.sequence + 1 || pulse.previous != rec.chain_head {
                let why = format!(
                    "pulse {} does not continue the chain (expected sequence {} after {})",
                    pulse.sequence,
                    rec.sequence + 1,
                    &rec.chain_head.to_hex()[..16]
                );
                return Err(self.refuse_replay(&rec, now, why).await);
            }

            let measurements =
                resolve_inventory(Some(&rec.current), pulse.measurements.clone(), false)
                    .map_err(inventory_err)?;
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
                last_seen_ns: now,
                sequence: pulse.sequence,
                chain_head: digest,
                lkg: j.lkg,
                expected: j.expected,
                current: measurements,
                blinded: false,
                version: rec.version + 1,
                ..rec.clone()
            };
            let verdict = self.verdict(&next, now);
            let badges = self.badges(&next, &verdict);
            alerts.extend(self.image_transitions(&mut next, &badges, now));
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
            match self
                .persist(AgentWrite {
                    record: next.clone(),
                    expected_version: Some(rec.version),
                    nonce: Some(pulse.nonce.to_hex()),
                    alerts,
                    chain_only,
                })
                .await
            {
                Ok(()) => {
                    return Ok(HeartbeatResponse {
                        accepted: true,
                        sequence: next.sequence,
                        verdict,
                        commands: Vec::new(),
                        workloads: badges,
                    })
                }
                Err(StoreError::DuplicateNonce) => {
                    return Err(self
                        .refuse_replay(&rec, now, "the pulse nonce was already used".into())
                        .await)
                }
                Err(StoreError::Conflict) if attempt == 0 => continue,
                Err(StoreError::Conflict) => {
                    return Err(ApiError::Replay(
                        "the agent's chain moved concurrently; this pulse lost".into(),
                    ))
                }
                Err(e) => return Err(store_err(e)),
            }
        }
        Err(ApiError::Internal("unreachable retry exit".into()))
    }

    async fn refuse_replay(&self, rec: &AgentRecord, now: u64, why: String) -> ApiError {
        self.note_refusal(rec, AlertKind::Replay, now, &why).await;
        ApiError::Replay(why)
    }

    /// Records a refused pulse on the agent (for the verdict) and alerts, at most once
    /// per cooldown per kind so a flood of bad pulses cannot flood storage or webhooks.
    async fn note_refusal(&self, rec: &AgentRecord, kind: AlertKind, now: u64, detail: &str) {
        if !self.cooldown_passed(&rec.agent_id, kind, now) {
            return;
        }
        let mut next = rec.clone();
        match kind {
            AlertKind::Replay => next.last_replay_ns = Some(now),
            AlertKind::ClockDesync => next.last_desync_ns = Some(now),
            _ => {}
        }
        next.version = rec.version + 1;
        let w = AgentWrite {
            record: next,
            expected_version: Some(rec.version),
            nonce: None,
            alerts: vec![Alert::new(now, &rec.agent_id, kind, detail)],
            chain_only: false,
        };
        if let Err(e) = self.persist(w).await {
            tracing::warn!(agent_id = %rec.agent_id, error = %e, "could not record a refused pulse");
        }
    }

    fn cooldown_passed(&self, agent_id: &str, kind: AlertKind, now: u64) -> bool {
        let mut c = self.cooldowns.lock().unwrap_or_else(|e| e.into_inner());
        if c.len() > MAX_COOLDOWNS {
            c.clear();
        }
        let key = (agent_id.to_string(), kind);
        match c.get(&key) {
            Some(&t) if now.saturating_sub(t) < ns(self.cfg.alert_cooldown) => false,
            _ => {
                c.insert(key, now);
                true
            }
        }
    }

    async fn alert_with_cooldown(&self, agent_id: &str, kind: AlertKind, now: u64, detail: &str) {
        if !self.cooldown_passed(agent_id, kind, now) {
            return;
        }
        let a = vec![Alert::new(now, agent_id, kind, detail)];
        match self.store.insert_alerts(&a).await {
            Ok(()) => self.alerts.emit(&a),
            Err(e) => tracing::error!(error = %e, "could not store an alert"),
        }
    }

    /// The verdict for a record at `now`.
    pub fn verdict(&self, rec: &AgentRecord, now: u64) -> Verdict {
        let (binary_changed, policy_changed, platform_changed) = standing(&rec.lkg, &rec.current);
        let facts = AgentFacts {
            tier: rec.tier,
            interval: Duration::from_millis(rec.heartbeat_interval_ms),
            since_last_pulse: Duration::from_nanos(now.saturating_sub(rec.last_seen_ns)),
            binary_changed,
            policy_changed,
            platform_changed,
            since_replay: rec
                .last_replay_ns
                .map(|t| Duration::from_nanos(now.saturating_sub(t))),
            since_clock_desync: rec
                .last_desync_ns
                .map(|t| Duration::from_nanos(now.saturating_sub(t))),
        };
        let v = policy::evaluate(&self.cfg.policy, &facts);
        let mut reasons = v.reasons;
        if let Some(a) = &rec.attestation {
            reasons.extend(a.reasons.iter().cloned());
        }
        reasons.extend(inventory_reasons(&rec.lkg, &rec.current));
        Verdict::from_reasons(reasons)
    }

    /// The badge of each workload the agent reports, under `agent` (its verdict).
    /// Digests without a fresh result are queued for verification and shown
    /// `unknown` meanwhile.
    pub fn badges(&self, rec: &AgentRecord, agent: &Verdict) -> Vec<WorkloadBadge> {
        let Some(items) = rec
            .current
            .workloads
            .as_ref()
            .and_then(|w| w.items.as_ref())
        else {
            return Vec::new();
        };
        items
            .iter()
            .map(|w| {
                let check = match (&w.image_digest, crate::images::repository_of(&w.image)) {
                    (None, _) => policy::image::ImageCheck::Pending,
                    (Some(_), None) => policy::image::ImageCheck::Refused {
                        code: policy::ReasonCode::ImageNotCovered,
                        detail: "the image reference names no repository".into(),
                    },
                    // Only repositories the policy covers reach the verifier (and so a
                    // registry): an agent cannot make the control plane contact
                    // registries of its choosing.
                    (Some(_), Some(repo)) if self.image_policy.rule_for(&repo).is_none() => {
                        policy::image::ImageCheck::Refused {
                            code: policy::ReasonCode::ImageNotCovered,
                            detail: if self.cfg.images.is_none() {
                                format!("no [images] policy is configured, so no signer is trusted for {repo}")
                            } else {
                                format!("no [[images.trust]] rule covers {repo}")
                            },
                        }
                    }
                    (Some(d), Some(repo)) => self.images.lookup(&repo, d),
                };
                let v = policy::image::workload_badge(&self.image_policy, agent, w, &check);
                let (signer, verified_at_ns) = match &check {
                    policy::image::ImageCheck::Verified {
                        signer,
                        verified_at_ns,
                        ..
                    } => (Some(signer.clone()), Some(*verified_at_ns)),
                    _ => (None, None),
                };
                WorkloadBadge {
                    name: w.name.clone(),
                    id: w.id.clone(),
                    image: w.image.clone(),
                    image_digest: w.image_digest.clone(),
                    status: v.status,
                    reasons: v.reasons,
                    signer,
                    verified_at_ns,
                }
            })
            .collect()
    }

    /// Updates the record's set of red images and returns an `ImageRefused` alert
    /// for each image that turned red.
    fn image_transitions(
        &self,
        rec: &mut AgentRecord,
        badges: &[WorkloadBadge],
        now: u64,
    ) -> Vec<Alert> {
        let mut red: Vec<String> = Vec::new();
        let mut alerts = Vec::new();
        for b in badges.iter().filter(|b| image_red(b)) {
            let k = image_key(b);
            if red.contains(&k) {
                continue;
            }
            if !rec.image_red.contains(&k) {
                let why = b
                    .reasons
                    .iter()
                    .filter(|r| r.status == policy::Status::Fail)
                    .map(|r| format!("{}: {}", r.code.as_str(), r.detail))
                    .collect::<Vec<_>>()
                    .join("; ");
                alerts.push(Alert::new(
                    now,
                    &rec.agent_id,
                    AlertKind::ImageRefused,
                    format!(
                        "workload {} runs image {} ({}) that is red: {why}",
                        b.name,
                        b.image,
                        b.image_digest.as_deref().unwrap_or("no digest")
                    ),
                ));
            }
            red.push(k);
        }
        // An image that was red and is only being verified again (its result
        // expired, or the registry is away) stays remembered as red, so the
        // re-verification does not raise the alert a second time.
        for b in badges.iter().filter(|b| !image_red(b)) {
            let k = image_key(b);
            let undecided = b
                .reasons
                .iter()
                .any(|r| r.code == policy::ReasonCode::ImageUnverifiable);
            if undecided && rec.image_red.contains(&k) && !red.contains(&k) {
                red.push(k);
            }
        }
        red.sort();
        rec.image_red = red;
        alerts
    }

    pub fn view(&self, rec: &AgentRecord, now: u64) -> AgentView {
        let verdict = self.verdict(rec, now);
        let workloads = self.badges(rec, &verdict);
        let cv = |state, reason: &Option<String>| CollectorView {
            state: crate::judge::state_str(state).to_string(),
            reason: reason.clone(),
        };
        let state = if rec.blinded
            || verdict
                .reasons
                .iter()
                .any(|r| r.code == policy::ReasonCode::Blinded)
        {
            "blinded"
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
            last_seen_age_ms: now.saturating_sub(rec.last_seen_ns) / 1_000_000,
            sequence: rec.sequence,
            heartbeat_interval_ms: rec.heartbeat_interval_ms,
            blinded: rec.blinded,
            measurements: rec.current.clone(),
            last_known_good: rec.lkg.clone(),
            expected: rec.expected.clone(),
            attestation: rec.attestation.clone(),
            workloads,
            workloads_state: rec
                .current
                .workloads
                .as_ref()
                .map(|w| cv(w.state, &w.reason)),
            ebpf_state: rec.current.ebpf.as_ref().map(|e| cv(e.state, &e.reason)),
        }
    }

    pub async fn agents(&self) -> Result<Vec<AgentView>, ApiError> {
        let now = self.now_ns();
        Ok(self
            .store
            .list_agents()
            .await
            .map_err(store_err)?
            .iter()
            .map(|r| self.view(r, now))
            .collect())
    }

    pub async fn agent(&self, id: &str) -> Result<AgentView, ApiError> {
        let now = self.now_ns();
        match self.store.get_agent(id).await.map_err(store_err)? {
            Some(r) => Ok(self.view(&r, now)),
            None => Err(ApiError::NotFound(format!("no agent {id:?}"))),
        }
    }

    pub async fn alerts(&self, agent: Option<&str>, limit: u32) -> Result<Vec<Alert>, ApiError> {
        self.store
            .list_alerts(agent, limit.min(1000))
            .await
            .map_err(store_err)
    }

    /// Checks an operator bearer token in constant time.
    pub fn authorize(&self, presented: Option<&str>) -> Result<(), ApiError> {
        use subtle::ConstantTimeEq;
        let Some(want) = &self.operator_token else {
            return Err(ApiError::Unauthorized(
                "operator endpoints are disabled: no operator_token_file is configured".into(),
            ));
        };
        let got = presented.unwrap_or("").as_bytes();
        if got.len() == want.len() && bool::from(got.ct_eq(want)) {
            Ok(())
        } else {
            Err(ApiError::Unauthorized(
                "missing or wrong bearer token".into(),
            ))
        }
    }

    /// Announces a coordinated update (or accepts the current state as baseline).
    pub async fn expect(&self, id: &str, req: ExpectRequest) -> Result<AgentView, ApiError> {
        for _ in 0..3 {
            let now = self.now_ns();
            let Some(rec) = self.load(id, true).await? else {
                return Err(ApiError::NotFound(format!("no agent {id:?}")));
            };
            let mut next = rec.clone();
            let mut alerts = Vec::new();
            if req.accept_current {
                next.lkg = rec.current.clone();
                next.expected = Expectations::default();
                alerts.push(Alert::new(
                    now,
                    id,
                    AlertKind::BaselineAccepted,
                    "operator accepted the current measurements as last-known-good",
                ));
            } else {
                if let Some(b) = req.agent_binary {
                    next.expected.agent_binary = Some(b);
                }
                if let Some(p) = req.policy_digest {
                    next.expected.policy_digest = Some(p);
                }
                // The expected state may already be here.
                let j = judge(&next.lkg, &next.expected, None, &next.current);
                let applied: Vec<_> = j
                    .alerts
                    .iter()
                    .filter(|(k, _)| *k == AlertKind::ExpectedUpdateApplied)
                    .map(|(k, d)| Alert::new(now, id, *k, d))
                    .collect();
                if !applied.is_empty() {
                    next.lkg = j.lkg;
                    next.expected = j.expected;
                }
                alerts.extend(applied);
            }
            next.version = rec.version + 1;
            match self
                .persist(AgentWrite {
                    record: next.clone(),
                    expected_version: Some(rec.version),
                    nonce: None,
                    alerts,
                    chain_only: false,
                })
                .await
            {
                Ok(()) => return Ok(self.view(&next, now)),
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(store_err(e)),
            }
        }
        Err(ApiError::StoreUnavailable(
            "agent record kept changing; retry".into(),
        ))
    }

    /// Marks agents with no valid pulse for `missed_heartbeats` intervals as blinded
    /// and prunes expired challenges and old nonces. Returns how many were blinded.
    pub async fn sweep(&self) -> Result<usize, ApiError> {
        let now = self.now_ns();
        let mut blinded = 0;
        for rec in self.store.list_agents().await.map_err(store_err)? {
            if rec.blinded {
                continue;
            }
            let window = ns(Duration::from_millis(rec.heartbeat_interval_ms))
                .saturating_mul(u64::from(self.cfg.policy.missed_heartbeats));
            let silent = now.saturating_sub(rec.last_seen_ns);
            if silent <= window {
                continue;
            }
            let mut next = rec.clone();
            next.blinded = true;
            next.version = rec.version + 1;
            let detail = format!(
                "no valid pulse for {:.1}s ({} missed heartbeats of {} ms): agent killed, blocked or blinded",
                Duration::from_nanos(silent).as_secs_f64(),
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
                })
                .await
            {
                Ok(()) => blinded += 1,
                // A pulse arrived meanwhile: not blinded after all.
                Err(StoreError::Conflict) => {}
                Err(e) => return Err(store_err(e)),
            }
        }
        // Pulses older than the skew window are refused on time anyway, and any replay
        // of them also fails the sequence check, so their nonces need not be kept.
        let cutoff = now.saturating_sub(ns(self.cfg.max_clock_skew).saturating_mul(4));
        self.store.prune(now, cutoff).await.map_err(store_err)?;
        Ok(blinded)
    }

    /// Runs [`ControlPlane::sweep`] every `sweep_interval` until the task is dropped.
    pub async fn run_sweeper(self: Arc<Self>) {
        let mut t = tokio::time::interval(self.cfg.sweep_interval);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            t.tick().await;
            if let Err(e) = self.sweep().await {
                tracing::error!(error = %e, "liveness sweep failed");
            }
        }
    }
}

/// The quote or TDREPORT of a TDX-tier registration, base64-decoded. The request
/// body limit bounds it; the parsers bound it again.
fn decode_platform_evidence(ev: &evidence::api::RegisterEvidence) -> Result<Vec<u8>, ApiError> {
    use base64::Engine;
    let b64 = ev.quote.as_deref().ok_or_else(|| ApiError::Attestation {
        kind: "MissingQuote",
        detail: "a TDX-tier report must come with its quote (or TDREPORT)".into(),
    })?;
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| ApiError::bad_request("BadBase64", format!("evidence.quote: {e}")))
}

fn new_record(
    report: &evidence::Verified<Report>,
    measurements: &evidence::Measurements,
    key: &evidence::PublicKey,
    head: Digest32,
    now: u64,
    attestation: Option<TdxAttestation>,
) -> AgentRecord {
    AgentRecord {
        agent_id: report.agent_id.clone(),
        partition: report.partition.clone(),
        tier: report.tier,
        key: key.clone(),
        registered_at_ns: now,
        last_seen_ns: now,
        sequence: 0,
        chain_head: head,
        heartbeat_interval_ms: report.heartbeat_interval_ms,
        lkg: measurements.clone(),
        current: measurements.clone(),
        expected: Expectations::default(),
        blinded: false,
        last_replay_ns: None,
        last_desync_ns: None,
        attestation,
        image_red: Vec::new(),
        version: 0,
    }
}
