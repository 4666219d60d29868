//! The control plane's decisions: registration, pulse verification, operator
//! expectations and the liveness sweep. HTTP lives in `server`; this module takes
//! parsed input and `now` (through the clock) and returns typed results.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use evidence::api::{
    Challenge, HeartbeatResponse, RegisterRequest, RegisterResponse, WorkloadBadge,
};
use evidence::report::HexBytes;
use evidence::{Digest32, Envelope, Pulse, Report, Tier};
use policy::{AgentFacts, Verdict};
use provenant_base::clock::Clock;
use serde::{Deserialize, Serialize};

use crate::alert::{Alert, AlertKind, AlertSink};
use crate::attest::{check_event_log_matches, EventLogInput, TdxAttestation, TdxVerifier};
use crate::config::CpConfig;
use crate::enroll::Enroller;
use crate::error::ApiError;
use crate::images::{ImageChecker, ImageService};
use crate::judge::{inventory_reasons, judge, resolve_inventory, standing};
use crate::store::{AgentRecord, AgentWrite, Expectations, RequoteFailure, Store, StoreError};
use crate::supervise::Tasks;

#[path = "revoke.rs"]
pub mod revoke;

/// Upper bound on remembered alert cooldowns; past it the table is cleared (at worst
/// a repeated alert is raised early).
const MAX_COOLDOWNS: usize = 100_000;
/// Sources whose unenrolled registrations are aggregated at most; past it new sources
/// share one bucket (still one alert per window).
const MAX_UNENROLLED_SOURCES: usize = 10_000;
/// Claimed agent ids kept as a sample per source and window.
const UNENROLLED_SAMPLE: usize = 5;
/// The bucket of sources past [`MAX_UNENROLLED_SOURCES`].
const OTHER_SOURCES: &str = "(other sources)";
/// Agents with stale-replay counts not yet written to their record, at most.
const MAX_STALE_PENDING: usize = 100_000;
/// How long a `/healthz` store probe result is reused (the probe is a real,
/// fsynced write).
const PROBE_REUSE: Duration = Duration::from_secs(1);

/// Unenrolled registrations from one source in the current alert window.
#[derive(Debug, Clone)]
struct SourceWindow {
    start_ns: u64,
    /// Attempts since the window's alert, not yet reported.
    suppressed: u64,
    /// A few of the agent ids those attempts claimed.
    sample: Vec<String>,
}

/// The aggregation key of a peer address, as text: the source the transport counts
/// connections and rate limits by ([`crate::transport::source_key`]: the IPv4
/// address, or the IPv6 /64).
pub fn source_key(ip: Option<IpAddr>) -> String {
    match ip.map(crate::transport::source_key) {
        Some(IpAddr::V6(net)) => format!("{net}/64"),
        Some(v4) => v4.to_string(),
        None => "unknown".into(),
    }
}

/// Orders tiers by the strength of their evidence: a re-registration on a lower one
/// is a downgrade.
fn tier_rank(t: Tier) -> u8 {
    match t {
        Tier::Tdx | Tier::Tpm => 2,
        Tier::TdxReport => 1,
        _ => 0,
    }
}

#[cfg(test)]
static INJECT_SWEEPER_PANIC: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);
/// Upper bound on alerts announced while the store could not take them, and on
/// agents seen pulsing then; past it the table is cleared (at worst an alert is
/// announced twice, or an agent is judged on its stored last pulse).
const MAX_UNSTORED: usize = 10_000;

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
    /// Alerts announced (log, audit log, webhooks) although the store could not take
    /// them, by agent and kind: the agent's next stored write stores them, under the
    /// id they were announced with, and they are not announced again.
    unstored: Mutex<HashMap<String, Vec<Alert>>>,
    /// When each agent last sent a fully verified pulse the store could not record
    /// (`StoreUnavailable`): an agent pulsing into a store outage is not silent.
    unrecorded_seen: Mutex<HashMap<String, u64>>,
    image_policy: policy::image::ImagePolicy,
    images: ImageService,
    revocation: revoke::Revocations,
    /// Unenrolled registrations by source (see [`source_key`]).
    unenrolled: Mutex<HashMap<String, SourceWindow>>,
    /// Stale replays counted since the agent's record was last written.
    stale_pending: Mutex<HashMap<String, u64>>,
    /// Agents whose undecodable record was already alerted.
    corrupt_seen: Mutex<HashSet<String>>,
    /// When the last sweep completed (clock ns; 0: never).
    last_sweep_ns: AtomicU64,
    /// The last `/healthz` store probe and when it ran.
    probe: Mutex<Option<(std::time::Instant, Result<(), String>)>>,
    /// The supervised background tasks (dropped last: stops them).
    tasks: Tasks,
    /// When the sweeper last looked for TDX evidence to re-attest (UTC ns; 0: never).
    last_reattest_scan: std::sync::atomic::AtomicU64,
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
    /// Allow the agent's next registration on this tier (one-shot), e.g. a planned
    /// move of a once-`tdx` agent to `software`, which is refused otherwise.
    #[serde(default)]
    pub tier: Option<Tier>,
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
        let tasks = Tasks::default();
        let images = ImageService::start_supervised(
            cfg.images.as_ref().map(|i| i.service()).unwrap_or_default(),
            checker,
            Some(store.clone()),
            clock.clone(),
            &tasks,
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
        let alerts = AlertSink::new(
            cfg.audit_log.clone(),
            cfg.webhooks.clone(),
            store.clone(),
            clock.clone(),
            &tasks,
        )?;
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
        let revocation = revoke::Revocations::new(&cfg)?;
        Ok(ControlPlane {
            revocation,
            cfg,
            store,
            clock,
            enroller,
            tdx,
            alerts,
            operator_token,
            cache: Mutex::new(HashMap::new()),
            cooldowns: Mutex::new(HashMap::new()),
            unstored: Mutex::new(HashMap::new()),
            unrecorded_seen: Mutex::new(HashMap::new()),
            image_policy,
            images,
            unenrolled: Mutex::new(HashMap::new()),
            stale_pending: Mutex::new(HashMap::new()),
            corrupt_seen: Mutex::new(HashSet::new()),
            last_sweep_ns: AtomicU64::new(0),
            probe: Mutex::new(None),
            tasks,
            last_reattest_scan: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Starts the supervised liveness sweeper (the webhook senders and image workers
    /// start with the control plane).
    pub fn spawn_sweeper(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        self.tasks
            .spawn("sweeper", move || sweeper_loop(weak.clone()));
    }

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
        let now = self.now_ns();
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
            "last_sweep_age_ms": (last != 0).then(|| now.saturating_sub(last) / 1_000_000),
            "tasks": tasks,
        });
        (writable, body)
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
        self.register_from(req, None).await
    }

    /// [`ControlPlane::register`] from the peer `source` (for aggregating refused
    /// registrations by source).
    pub async fn register_from(
        &self,
        req: RegisterRequest,
        source: Option<IpAddr>,
    ) -> Result<RegisterResponse, ApiError> {
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

        // The single-use challenge before anything that writes (the enrollment alert
        // included): a request that answers no open challenge leaves no trace.
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
        if let Err(e) =
            self.enroller
                .check(&report.agent_id, &key, &req.evidence.certificate_chain, now)
        {
            if matches!(e, ApiError::Unenrolled(_)) {
                self.note_unenrolled(&source_key(source), &report.agent_id, now, &e)
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
        // A known TDX agent: its record holds the RTMR3 log prefix this registration
        // may continue, and an upstream outage keeps its current registration.
        let prior = match report.tier {
            Tier::Tdx | Tier::TdxReport => self
                .store
                .get_agent(&report.agent_id)
                .await
                .map_err(store_err)?,
            _ => None,
        };
        let attestation = match report.tier {
            Tier::Tdx | Tier::TdxReport => {
                let raw = decode_platform_evidence(&req.evidence)?;
                let log = EventLogInput {
                    text: req.evidence.event_log.as_deref(),
                    from: req.evidence.event_log_from,
                    held: prior
                        .as_ref()
                        .and_then(|p| p.attestation.as_ref())
                        .and_then(|a| a.event_log_state.as_ref()),
                };
                let binding = evidence::report_data(&env);
                let checked = if report.tier == Tier::Tdx {
                    self.tdx.verify_quote(&raw, log, binding, now).await
                } else {
                    self.tdx.check_tdreport(&raw, log, binding, now)
                };
                // The log must say what the report says, not only what RTMR3 says.
                let checked = checked.and_then(|a| {
                    check_event_log_matches(&a, &measurements)?;
                    Ok(a)
                });
                match checked {
                    Ok(a) => Some(a),
                    // A protocol step, not a refusal: the agent sends its whole log.
                    Err(e @ ApiError::EventLogPrefix { .. }) => return Err(e),
                    Err(e) if prior.is_some() && upstream_kind(&e).is_some() => {
                        let old = prior.as_ref().ok_or_else(|| e.clone())?;
                        return Err(self.requote_failed(old, &e, now).await);
                    }
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

        let existing = self
            .store
            .get_agent(&report.agent_id)
            .await
            .map_err(store_err)?;
        self.check_register_revocation(&report, attestation.as_ref(), existing.as_ref())
            .await?;
        let head = HexBytes(report.digest());
        let mut alerts = Vec::new();
        if let Some(old) = &existing {
            let ever_tdx = old.ever_tdx || old.tier == Tier::Tdx;
            let lowered = tier_rank(report.tier) < tier_rank(old.tier);
            if lowered || (ever_tdx && report.tier != Tier::Tdx) {
                let expected = old.allowed_tier == Some(report.tier);
                let what = format!(
                    "re-registration on tier {} (was {}{})",
                    report.tier.as_str(),
                    old.tier.as_str(),
                    if ever_tdx && old.tier != Tier::Tdx {
                        ", and tdx before"
                    } else {
                        ""
                    }
                );
                if ever_tdx && !expected {
                    let why = format!(
                        "{what} refused: the agent has registered on tdx; an operator must expect the change (POST /api/v1/agents/{}/expect {{\"tier\":\"{}\"}})",
                        report.agent_id,
                        report.tier.as_str()
                    );
                    self.alert_with_cooldown(&report.agent_id, AlertKind::TierChanged, now, &why)
                        .await;
                    return Err(ApiError::Attestation {
                        kind: "TierDowngrade",
                        detail: why,
                    });
                }
                alerts.push(Alert::new(
                    now,
                    &report.agent_id,
                    AlertKind::TierChanged,
                    if expected {
                        format!("{what}, as an operator expected")
                    } else {
                        what
                    },
                ));
            }
        }
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
                        AlertKind::KeyChanged,
                        format!(
                            "re-registered with a different key: {} replaces {} (tier {})",
                            key.fingerprint(),
                            old.key.fingerprint(),
                            report.tier.as_str()
                        ),
                    ));
                }
                AgentRecord {
                    lkg: j.lkg,
                    expected: j.expected,
                    last_replay_ns: old.last_replay_ns,
                    last_desync_ns: old.last_desync_ns,
                    image_red: old.image_red.clone(),
                    ever_tdx: old.ever_tdx || old.tier == Tier::Tdx || report.tier == Tier::Tdx,
                    // The operator's allowance is one-shot: this registration used it.
                    allowed_tier: None,
                    stale_replays_refused: old.stale_replays_refused,
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
        // Kept so enrollment (expiry, CRL) is re-checked on every pulse.
        record.enrollment_chain = req.evidence.certificate_chain.clone();
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
            event_log_events: attestation
                .as_ref()
                .and_then(|a| a.event_log_state.as_ref())
                .map(|s| s.count),
        })
    }

    /// A known agent's re-registration that an upstream outage kept from being
    /// verified: recorded on the agent (`RequoteFailed`, yellow, until a registration
    /// succeeds), which keeps its key and chain; answered 503 `UpstreamUnavailable`.
    async fn requote_failed(&self, old: &AgentRecord, e: &ApiError, now: u64) -> ApiError {
        let upstream = upstream_kind(e).unwrap_or("Upstream").to_string();
        let detail = match e {
            ApiError::Attestation { detail, .. } => detail.clone(),
            other => other.to_string(),
        };
        let out = ApiError::UpstreamUnavailable {
            upstream: upstream.clone(),
            detail: detail.clone(),
        };
        // `register` consumed the report's challenge before any check: only a report
        // answering an open challenge gets here, so a replayed report cannot mark an agent.
        let reason = format!("{upstream}: {detail}");
        let mut next = old.clone();
        next.requote_failed = Some(RequoteFailure {
            at_ns: old.requote_failed.as_ref().map_or(now, |r| r.at_ns),
            reason: reason.clone(),
        });
        next.version = old.version + 1;
        let alerts = if self.cooldown_passed(&old.agent_id, AlertKind::AttestationRefused, now) {
            vec![Alert::new(
                now,
                &old.agent_id,
                AlertKind::AttestationRefused,
                format!("re-quote not verified, upstream unavailable (agent keeps its registration): {reason}"),
            )]
        } else {
            Vec::new()
        };
        if let Err(err) = self
            .persist(AgentWrite {
                record: next,
                expected_version: Some(old.version),
                nonce: None,
                alerts,
                chain_only: false,
            })
            .await
        {
            tracing::warn!(agent_id = %old.agent_id, error = %err, "could not record a failed re-quote");
        }
        out
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

    /// Writes a state change; on success the cache follows and alerts go out. When
    /// the store cannot take it, its alerts go out all the same (log, audit log,
    /// webhooks: an outage of the store must not silence them), once per agent and
    /// kind, and are stored with the agent's next write that succeeds.
    async fn persist(&self, mut w: AgentWrite) -> Result<(), StoreError> {
        let announced = self.with_unstored(&mut w);
        let rec = w.record.clone();
        let alerts = w.alerts.clone();
        let fresh = |alerts: &[Alert]| -> Vec<Alert> {
            alerts
                .iter()
                .filter(|a| !announced.contains(&a.id))
                .cloned()
                .collect()
        };
        match self.store.write_agent(w).await {
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
    fn with_unstored(&self, w: &mut AgentWrite) -> Vec<String> {
        let u = self.unstored.lock().unwrap_or_else(|e| e.into_inner());
        let agent = &w.record.agent_id;
        let mut announced = Vec::new();
        for a in u.get(agent).into_iter().flatten() {
            w.alerts.retain(|x| x.kind != a.kind);
            w.alerts.insert(0, a.clone());
            announced.push(a.id.clone());
            if a.kind == AlertKind::Blinded && w.nonce.is_some() && !w.record.blinded {
                w.alerts.push(Alert::new(
                    w.record.last_seen_ns,
                    agent,
                    AlertKind::Recovered,
                    "valid pulses again after being announced blinded while the store was unavailable",
                ));
            }
        }
        announced
    }

    /// When the agent was last seen alive: its last stored pulse, or a later verified
    /// pulse the store could not record.
    fn last_alive_ns(&self, rec: &AgentRecord) -> u64 {
        let u = self
            .unrecorded_seen
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        u.get(&rec.agent_id)
            .map_or(rec.last_seen_ns, |&t| t.max(rec.last_seen_ns))
    }

    /// Verifies and records one pulse.
    pub async fn heartbeat(&self, env: Envelope) -> Result<HeartbeatResponse, ApiError> {
        let claimed = env.decode::<Pulse>()?;
        let agent_id = claimed.claimed().agent_id.clone();
        let Some(rec) = self.load(&agent_id, false).await? else {
            return Err(self.unknown_agent(&agent_id).await);
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
        // Deleted, disabled, unenrolled or withdrawn: 403 Revoked.
        self.check_pulse_revocation(&rec, self.now_ns()).await?;
        // One retry covers a concurrent write to the same record (the sweeper).
        for attempt in 0..2 {
            let now = self.now_ns();
            let rec = if attempt == 0 {
                rec.clone()
            } else {
                match self.load(&agent_id, true).await? {
                    Some(r) => r,
                    None => return Err(self.unknown_agent(&agent_id).await),
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
            // Pulses travel in clear, so anyone may re-post an old one: that must not
            // turn the agent red. The exact accepted pulse again is a retry; a pulse
            // issued outside the skew window is an old capture (counted, quiet); an
            // already accepted pulse inside it is a retry too. Only a pulse the key
            // signed for a used sequence, never accepted, inside the window is a fork:
            // red (`Replay`).
            if digest == rec.chain_head {
                return Err(ApiError::Replay(
                    "this exact pulse was already accepted (a duplicate; nothing recorded)".into(),
                ));
            }
            if pulse.sequence <= rec.sequence {
                if self.check_skew(pulse.issued_at_ns, now, "pulse").is_err() {
                    let n = self.count_stale_replay(&rec);
                    return Err(ApiError::Replay(format!(
                        "sequence {} was already used (last accepted {}) and the pulse was issued outside the allowed skew: an old pulse re-posted, refused and counted ({n} so far)",
                        pulse.sequence, rec.sequence
                    )));
                }
                if pulse.sequence < rec.sequence
                    && self
                        .store
                        .nonce_seen(&agent_id, &pulse.nonce.to_hex())
                        .await
                        .map_err(store_err)?
                {
                    return Err(ApiError::Replay(format!(
                        "pulse {} was already accepted (a duplicate; nothing recorded)",
                        pulse.sequence
                    )));
                }
                let why = format!(
                    "a second pulse for sequence {} (last accepted {}), signed by the agent's key inside the skew window: a forked chain",
                    pulse.sequence, rec.sequence
                );
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
                .persist(AgentWrite {
                    record: next.clone(),
                    expected_version: Some(rec.version),
                    nonce: Some(pulse.nonce.to_hex()),
                    alerts,
                    chain_only,
                })
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
                        *t = (*t).max(pulse.issued_at_ns.min(now));
                    }
                    return Err(store_err(e));
                }
            }
        }
        Err(ApiError::Internal("unreachable retry exit".into()))
    }

    /// Counts an old pulse re-posted for `rec`'s agent; returns the agent's total.
    fn count_stale_replay(&self, rec: &AgentRecord) -> u64 {
        let mut p = self.stale_pending.lock().unwrap_or_else(|e| e.into_inner());
        if p.len() >= MAX_STALE_PENDING && !p.contains_key(&rec.agent_id) {
            // Shown counts may lag; nothing else depends on them.
            return rec.stale_replays_refused;
        }
        let n = p.entry(rec.agent_id.clone()).or_default();
        *n = n.saturating_add(1);
        rec.stale_replays_refused.saturating_add(*n)
    }

    /// An unenrolled registration from `source`: at most one alert per source per
    /// `alert_cooldown`, the attempts in between counted with a sample of the agent
    /// ids they claimed (reported when the window closes, see
    /// [`ControlPlane::flush_unenrolled`]).
    async fn note_unenrolled(&self, source: &str, agent_id: &str, now: u64, e: &ApiError) {
        let cooldown = ns(self.cfg.alert_cooldown);
        let alert = {
            let mut m = self.unenrolled.lock().unwrap_or_else(|e| e.into_inner());
            let key = if m.len() >= MAX_UNENROLLED_SOURCES && !m.contains_key(source) {
                OTHER_SOURCES
            } else {
                source
            };
            match m.get_mut(key) {
                Some(w) if now.saturating_sub(w.start_ns) < cooldown => {
                    w.suppressed = w.suppressed.saturating_add(1);
                    if w.sample.len() < UNENROLLED_SAMPLE && !w.sample.iter().any(|s| s == agent_id)
                    {
                        w.sample.push(agent_id.to_string());
                    }
                    None
                }
                _ => {
                    m.insert(
                        key.to_string(),
                        SourceWindow {
                            start_ns: now,
                            suppressed: 0,
                            sample: Vec::new(),
                        },
                    );
                    Some(Alert::new(
                        now,
                        agent_id,
                        AlertKind::Unenrolled,
                        format!(
                            "registration from {key} refused: {e}; further unenrolled registrations from {key} are counted for {}s",
                            self.cfg.alert_cooldown.as_secs()
                        ),
                    ))
                }
            }
        };
        if let Some(a) = alert {
            self.store_alerts(vec![a]).await;
        }
    }

    /// Closes the unenrolled-registration windows that ended by `now`: one summary
    /// alert for each that counted attempts (which opens the next window).
    async fn flush_unenrolled(&self, now: u64) {
        let cooldown = ns(self.cfg.alert_cooldown);
        let mut alerts = Vec::new();
        {
            let mut m = self.unenrolled.lock().unwrap_or_else(|e| e.into_inner());
            m.retain(|source, w| {
                if now.saturating_sub(w.start_ns) < cooldown {
                    return true;
                }
                if w.suppressed == 0 {
                    return false;
                }
                alerts.push(Alert::new(
                    now,
                    w.sample.first().map(String::as_str).unwrap_or(""),
                    AlertKind::Unenrolled,
                    format!(
                        "{} more unenrolled registration(s) from {source} in the last {:.0}s, claiming e.g. {}",
                        w.suppressed,
                        Duration::from_nanos(now.saturating_sub(w.start_ns)).as_secs_f64(),
                        w.sample.join(", ")
                    ),
                ));
                *w = SourceWindow {
                    start_ns: now,
                    suppressed: 0,
                    sample: Vec::new(),
                };
                true
            });
        }
        if !alerts.is_empty() {
            self.store_alerts(alerts).await;
        }
    }

    async fn store_alerts(&self, a: Vec<Alert>) {
        // An outage of the store must not silence alerts: they go out all the same.
        match self.store.insert_alerts(&a).await {
            Ok(()) => self.alerts.emit(&a),
            Err(e) => {
                tracing::error!(error = %e, "could not store an alert; announcing it anyway");
                self.alerts.emit_unstored(&a);
            }
        }
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
        self.store_alerts(vec![Alert::new(now, agent_id, kind, detail)])
            .await;
    }

    /// The verdict for a record at `now`.
    pub fn verdict(&self, rec: &AgentRecord, now: u64) -> Verdict {
        let (binary_changed, policy_changed, platform_changed) = standing(&rec.lkg, &rec.current);
        let facts = AgentFacts {
            tier: rec.tier,
            interval: Duration::from_millis(rec.heartbeat_interval_ms),
            since_last_pulse: Duration::from_nanos(now.saturating_sub(self.last_alive_ns(rec))),
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
            // Evidence ages: collateral, PCK chain, quote and provenance judged at `now`.
            reasons.extend(crate::attest::age_reasons(a, now, &self.cfg.policy));
        }
        if let Some(f) = &rec.requote_failed {
            reasons.push(policy::Reason {
                code: policy::ReasonCode::RequoteFailed,
                status: policy::Status::Warn,
                detail: format!(
                    "the control plane cannot verify this agent's fresh quote for {}s (the agent \
                     is alive and pulsing on its last verified registration): {}",
                    now.saturating_sub(f.at_ns) / 1_000_000_000,
                    f.reason
                ),
            });
        }
        reasons.extend(inventory_reasons(&rec.lkg, &rec.current));
        reasons.extend(self.revocation_reasons(rec, now));
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
            last_seen_age_ms: now.saturating_sub(rec.last_seen_ns) / 1_000_000,
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

    pub async fn agents(&self) -> Result<Vec<AgentView>, ApiError> {
        let now = self.now_ns();
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
        let Some(want) = &self.operator_token else {
            return Err(ApiError::Unauthorized(
                "operator endpoints are disabled: no operator_token_file is configured".into(),
            ));
        };
        let got = presented.unwrap_or("").as_bytes();
        if crate::server::token_eq(want, got) {
            Ok(())
        } else {
            Err(ApiError::Unauthorized(
                "missing or wrong bearer token".into(),
            ))
        }
    }

    /// Announces a coordinated update (or accepts the current state as baseline).
    pub async fn expect(&self, id: &str, req: ExpectRequest) -> Result<AgentView, ApiError> {
        self.operator_edit(id, |rec, now| {
            let mut next = rec.clone();
            let mut alerts = Vec::new();
            if let Some(t) = req.tier {
                next.allowed_tier = Some(t);
                alerts.push(Alert::new(
                    now,
                    id,
                    AlertKind::TierExpected,
                    format!(
                        "operator allows the next registration on tier {} (now {}; one-shot)",
                        t.as_str(),
                        rec.tier.as_str()
                    ),
                ));
            }
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
            Some((next, alerts))
        })
        .await
    }

    /// An operator's change to an agent's record, written under compare-and-swap and
    /// retried when a pulse or the sweeper wrote the record meanwhile. `change` gets
    /// the current record and `now` and returns the next record with its alerts, or
    /// `None` when there is nothing to write (the current view is returned).
    pub(crate) async fn operator_edit(
        &self,
        id: &str,
        mut change: impl FnMut(&AgentRecord, u64) -> Option<(AgentRecord, Vec<Alert>)>,
    ) -> Result<AgentView, ApiError> {
        for _ in 0..3 {
            let now = self.now_ns();
            let Some(rec) = self.load(id, true).await? else {
                return Err(ApiError::NotFound(format!("no agent {id:?}")));
            };
            let Some((mut next, alerts)) = change(&rec, now) else {
                return Ok(self.view(&rec, now));
            };
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
        let mut failed = None;
        self.load_revocations().await?;
        for (id, rec) in self.store.scan_agents().await.map_err(store_err)? {
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
            // A revoked agent is red for its own reason; its refused pulses do not
            // also make it Blinded.
            if rec.blinded || !self.revocation_reasons(&rec, now).is_empty() {
                continue;
            }
            let window = ns(Duration::from_millis(rec.heartbeat_interval_ms))
                .saturating_mul(u64::from(self.cfg.policy.missed_heartbeats));
            let silent = now.saturating_sub(self.last_alive_ns(&rec));
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
                // The alert went out all the same (`persist`); the other agents are
                // still checked.
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        // Pulses older than the skew window are refused on time anyway, and any replay
        // of them also fails the sequence check, so their nonces need not be kept.
        let cutoff = now.saturating_sub(ns(self.cfg.max_clock_skew).saturating_mul(4));
        self.store.prune(now, cutoff).await.map_err(store_err)?;
        self.flush_unenrolled(now).await;
        // Alert retention (their pending webhook deliveries go with them).
        let before = now.saturating_sub(ns(self.cfg.alert_retention));
        self.store.prune_alerts(before).await.map_err(store_err)?;
        self.last_sweep_ns.store(now, Ordering::SeqCst);
        self.reattest(now).await;
        match failed {
            Some(e) => Err(store_err(e)),
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
    pub async fn reattest(&self, now: u64) -> usize {
        let every = ns(self.cfg.tdx.reattest_every());
        // An upstream that keeps failing is not asked more than once a minute per agent
        // (or once per interval, when that is shorter).
        let retry = every.min(60 * 1_000_000_000);
        // The sweeper runs every second; the fleet is scanned for due agents at most
        // once per `retry`.
        let last_scan = self
            .last_reattest_scan
            .load(std::sync::atomic::Ordering::Relaxed);
        if last_scan != 0 && now.saturating_sub(last_scan) < retry {
            return 0;
        }
        self.last_reattest_scan
            .store(now.max(1), std::sync::atomic::Ordering::Relaxed);
        let agents = match self.store.list_agents().await {
            Ok(a) => a,
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
            let last_decided = f.reattested_at_ns.unwrap_or(a.verified_at_ns);
            let expired = f
                .collateral_next_update
                .is_some_and(|t| now / 1_000_000_000 >= t);
            let due = now.saturating_sub(last_decided) >= every || expired;
            // A try that could not decide since the last decision: wait `retry`.
            let backing_off = f
                .reattest_tried_ns
                .is_some_and(|t| t > last_decided && now.saturating_sub(t) < retry);
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
                    next.freshness.reattest_tried_ns = Some(now);
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
        if let Err(e) = cp.sweep().await {
            tracing::error!(error = %e, "liveness sweep failed");
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
        disabled: None,
        enrollment_chain: Vec::new(),
        ever_tdx: report.tier == Tier::Tdx,
        allowed_tier: None,
        stale_replays_refused: 0,
        requote_failed: None,
        version: 0,
    }
}

/// The upstream whose outage made a verification fail, if that is why it failed:
/// collateral (PCS/PCCS), provenance (GitHub) or the store. Anything else is a
/// judgement of the evidence.
fn upstream_kind(e: &ApiError) -> Option<&'static str> {
    match e {
        ApiError::Attestation { kind, .. }
            if matches!(*kind, "CollateralUnavailable" | "ProvenanceUnavailable") =>
        {
            Some(kind)
        }
        ApiError::StoreUnavailable(_) => Some("StoreUnavailable"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
