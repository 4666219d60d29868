//! The agent's life: register, then pulse; back off and re-register when the control
//! plane is away or refuses; never crash for it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use base64::Engine;
use evidence::api::{RegisterEvidence, RegisterRequest};
use evidence::eventlog;
use evidence::limits::MAX_PULSE_PAYLOAD_BYTES;
use evidence::report::{HexBytes, Nonce16};
use evidence::{
    report_data, Digest32, Envelope, Measurements, Pulse, Report, Tier, PULSE_PAYLOAD_TYPE,
    REPORT_PAYLOAD_TYPE,
};
use rand::Rng;
use serde::Serialize;

use crate::client::{Client, ClientError};
use crate::collect::{CollectError, Collector};
use crate::config::{AgentConfig, GateBadge};
use crate::quote::{PlatformEvidence, QuoteError, QuoteProvider};
use crate::rtmr::{Consistency, EventLog, RtmrError};
use crate::signer::{Signer, SignerError};
use crate::state::{AgentState, EventLogInfo, GateConfig, Phase, PulseInfo, RequoteFailed};
use crate::workloads::WorkloadsCollector;
use provenant_base::clock::Clock;

/// Largest certificate chain file read.
const MAX_CHAIN_FILE_BYTES: u64 = 256 * 1024;

/// Why an agent step (set-up, registration, pulse) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// No `key_file` is configured: nothing can be signed.
    #[error("attestation is disabled: no key_file is configured")]
    NoKey,
    /// A measurement could not be taken.
    #[error(transparent)]
    Collect(#[from] CollectError),
    /// Signing failed.
    #[error(transparent)]
    Sign(#[from] SignerError),
    /// The quote provider gave no evidence.
    #[error(transparent)]
    Quote(#[from] QuoteError),
    /// The control plane could not be reached or refused the request.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The RTMR3 event log could not be opened, read or extended.
    #[error(transparent)]
    EventLog(#[from] RtmrError),
    /// The configured certificate chain file cannot be read or parsed.
    #[error("certificate chain {path}: {detail}")]
    Chain {
        /// The certificate chain file.
        path: String,
        /// What is wrong.
        detail: String,
    },
}

impl AgentError {
    /// A definitive refusal by the control plane: any 4xx but 429 (slow down) and
    /// the 409 `EventLogPrefix*` answers (send the whole log). It clears the local
    /// verdict and ends the chain.
    pub fn is_refusal(&self) -> bool {
        match self {
            AgentError::Client(ClientError::Rejected { status, kind, .. }) => {
                (400..500).contains(status) && *status != 429 && !kind.starts_with("EventLogPrefix")
            }
            _ => false,
        }
    }

    /// The control plane (or an upstream it needs) is unavailable, and certainly did
    /// not act on the request: nothing was sent (connection failed), or it answered
    /// 429 or 5xx. A re-quote that fails this way keeps the current chain. A timeout
    /// or garbled answer is not: the registration may have gone through.
    pub fn is_unavailable(&self) -> bool {
        match self {
            AgentError::Client(ClientError::Unsent(_)) => true,
            AgentError::Client(ClientError::Rejected { status, .. }) => {
                *status == 429 || (500..600).contains(status)
            }
            _ => false,
        }
    }
}

/// The agent: collects measurements, registers with the control plane and sends
/// signed pulses, keeping [`AgentState`] current for the local API.
pub struct Agent {
    cfg: AgentConfig,
    signer: Option<Arc<dyn Signer>>,
    quote: Arc<dyn QuoteProvider>,
    clock: Arc<dyn Clock>,
    collector: Arc<Mutex<Collector>>,
    client: Client,
    state: Arc<RwLock<AgentState>>,
    /// The RTMR3 event log, for TDX tiers.
    events: Option<Arc<Mutex<EventLog>>>,
    /// A measurement changed since the last quote: take a fresh one.
    requote: AtomicBool,
    /// The containers collector, when configured (async: it talks to podman).
    workloads: Option<WorkloadsCollector>,
    /// The list digests the control plane last received in full.
    sent: Mutex<SentLists>,
    /// A pulse could not carry a changed list (too large): register again, so the
    /// report carries it.
    reregister: AtomicBool,
    /// How many RTMR3 events the control plane said it holds after our last
    /// registration: the next one sends only the events after them. `None`: send the
    /// whole log (new process, or the control plane lost them).
    cp_events: Mutex<Option<u64>>,
    /// The clock state and last error of the `health` last accepted in a pulse;
    /// `None` after a registration (the next pulse carries health).
    health_sent: Mutex<Option<HealthKey>>,
}

/// What makes a pulse carry `health` before its turn: the clock's synchronisation
/// state and the agent's last error.
type HealthKey = (Option<bool>, Option<String>);

fn health_key(h: &evidence::Health) -> HealthKey {
    (h.clock.map(|c| c.synchronised), h.last_error.clone())
}

/// The chain position after the last accepted statement.
#[derive(Debug, Clone, Copy)]
struct Chain {
    sequence: u64,
    head: Digest32,
}

impl Agent {
    /// Builds the agent from its config: the control-plane client, the collectors
    /// the config enables and, on TDX tiers, the RTMR3 event log (checked against
    /// the register). `signer` is `None` when no key is configured.
    pub fn new(
        cfg: AgentConfig,
        signer: Option<Arc<dyn Signer>>,
        quote: Arc<dyn QuoteProvider>,
        clock: Arc<dyn Clock>,
    ) -> Result<Agent, AgentError> {
        let client = Client::new(
            &cfg.control_plane,
            cfg.request_timeout,
            &crate::client::TlsOptions::from_config(&cfg),
        )?;
        let mut collector = Collector::new(cfg.policy_files.clone());
        if cfg.collect_ebpf {
            collector.ebpf = Some(crate::ebpf::EbpfCollector::new(
                cfg.bpffs_dirs.clone(),
                cfg.lsm_file.clone(),
            ));
        }
        let workloads = cfg
            .collect_workloads
            .then(|| WorkloadsCollector::new(cfg.podman_socket.clone(), cfg.podman_timeout));
        let tdx = matches!(quote.tier(), Tier::Tdx | Tier::TdxReport);
        let events = if tdx {
            collector.tee = Some(evidence::TeeKind::Tdx);
            let log = EventLog::open(Some(cfg.event_log_file.clone()), Some(&cfg.rtmr_dir))?;
            match log.consistency() {
                Consistency::Matches => {}
                Consistency::NoRegister => tracing::warn!(
                    dir = %cfg.rtmr_dir.display(),
                    "RTMR3 cannot be extended here (kernel < 6.16?): runtime events are logged unbound"
                ),
                Consistency::Mismatch { register, replayed } => tracing::error!(
                    %register, %replayed,
                    "RTMR3 does not match the event log (extended by another process, or the log was lost): \
                     the control plane will refuse registration until the TD restarts"
                ),
            }
            Some(Arc::new(Mutex::new(log)))
        } else {
            None
        };
        let gate = GateConfig {
            accepts: cfg
                .gate_accepts
                .clone()
                .unwrap_or_else(|| GateBadge::default_for(quote.tier())),
            expires_after_ms: u64::try_from(
                cfg.heartbeat_interval
                    .saturating_mul(cfg.missed_heartbeats)
                    .as_millis(),
            )
            .unwrap_or(u64::MAX),
        };
        let state = AgentState {
            agent_id: cfg.agent_id.clone(),
            partition: cfg.partition.clone(),
            phase: Phase::Starting,
            tier: quote.tier(),
            key_fingerprint: signer.as_ref().map(|s| s.public_key().fingerprint()),
            registered_at_ns: None,
            last_pulse: None,
            verdict: None,
            verdict_at_ns: None,
            gate,
            requote_failed: None,
            last_error: None,
            pulses_accepted: 0,
            pulses_refused: 0,
            measurements: None,
            workload_badges: Vec::new(),
            event_log: None,
            collect_us: Default::default(),
        };
        Ok(Agent {
            cfg,
            signer,
            quote,
            clock,
            collector: Arc::new(Mutex::new(collector)),
            client,
            state: Arc::new(RwLock::new(state)),
            events,
            requote: AtomicBool::new(false),
            workloads,
            sent: Mutex::new(SentLists::default()),
            reregister: AtomicBool::new(false),
            cp_events: Mutex::new(None),
            health_sent: Mutex::new(None),
        })
    }

    /// The shared state the local API reads.
    pub fn state(&self) -> Arc<RwLock<AgentState>> {
        self.state.clone()
    }

    /// The clock the agent (and its gate) reads.
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    fn update(&self, f: impl FnOnce(&mut AgentState)) {
        // A poisoned lock only means another task panicked mid-update; the state is
        // plain data, so keep serving it rather than propagating the panic.
        let mut g = self.state.write().unwrap_or_else(|e| e.into_inner());
        f(&mut g);
    }

    fn signer(&self) -> Result<&Arc<dyn Signer>, AgentError> {
        self.signer.as_ref().ok_or(AgentError::NoKey)
    }

    /// Measures everything (blocking file I/O, run off the async threads). For TDX
    /// tiers, a changed measurement is extended into RTMR3 and logged, and marks a
    /// fresh quote as due.
    pub async fn measure(&self) -> Result<Measurements, AgentError> {
        let c = self.collector.clone();
        let events = self.events.clone();
        let started = std::time::Instant::now();
        let workloads = match &self.workloads {
            Some(w) => Some(w.collect().await),
            None => None,
        };
        let workloads_took = started.elapsed();
        let (m, added, info) = tokio::task::spawn_blocking(move || {
            let mut m = c.lock().unwrap_or_else(|e| e.into_inner()).collect()?;
            m.workloads = workloads;
            let Some(events) = events else {
                return Ok::<_, AgentError>((m, false, None));
            };
            let mut log = events.lock().unwrap_or_else(|e| e.into_inner());
            // `guest-agent pull` appends verified pulls to the same log; an event we
            // had not seen is a change the control plane must get a fresh quote for.
            let mut added = log.refresh()?;
            // The lists are logged by digest when complete; a list that could not be
            // read is no measurement (its state still reaches the control plane).
            // The workloads are logged as the set of their images, so container
            // restarts and re-creations do not grow the log; a changed image set does.
            let lists = [
                (
                    eventlog::KIND_WORKLOAD_SET,
                    m.workloads
                        .as_ref()
                        .filter(|w| w.digest.is_some())
                        .and_then(|w| w.items.as_deref())
                        .map(eventlog::workload_set_value),
                ),
                (
                    eventlog::KIND_EBPF,
                    m.ebpf.as_ref().and_then(|e| e.digest).map(|d| d.to_hex()),
                ),
            ];
            for (kind, value) in [
                (eventlog::KIND_AGENT_BINARY, m.agent_binary.to_hex()),
                (eventlog::KIND_POLICY, m.policy.digest.to_hex()),
            ]
            .into_iter()
            .chain(lists.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))))
            {
                match log.record(kind, &value) {
                    Ok(a) => added |= a,
                    // A full log stops extending; the change still reaches the control
                    // plane in every pulse.
                    Err(e @ RtmrError::Full) => {
                        tracing::error!(error = %e, "RTMR3 event not recorded")
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            let info = EventLogInfo {
                events: log.events().len(),
                bound: log.has_register(),
            };
            Ok((m, added, Some(info)))
        })
        .await
        .map_err(|e| {
            AgentError::Collect(CollectError {
                path: "(collector task)".into(),
                source: std::io::Error::other(e.to_string()),
            })
        })??;
        if added {
            self.requote.store(true, Ordering::SeqCst);
        }
        let files_took = started.elapsed().saturating_sub(workloads_took);
        let has_workloads = self.workloads.is_some();
        let us = |d: std::time::Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.update(|s| {
            if info.is_some() {
                s.event_log = info;
            }
            if has_workloads {
                s.collect_us.insert("workloads", us(workloads_took));
            }
            s.collect_us.insert("files", us(files_took));
        });
        Ok(m)
    }

    /// The RTMR3 event log as sent at registration (TDX tiers): the events after
    /// those the control plane holds, with where they start, or the whole log.
    fn event_log_jsonl(&self) -> Option<(String, Option<u64>)> {
        let held = *self.cp_events.lock().unwrap_or_else(|e| e.into_inner());
        self.events.as_ref().map(|l| {
            let mut log = l.lock().unwrap_or_else(|e| e.into_inner());
            // Another process (`guest-agent pull`) may have extended RTMR3 and logged
            // it since the last measurement: the quote will show it, so must the log.
            if let Err(e) = log.refresh() {
                tracing::error!(error = %e, "cannot re-read the RTMR3 event log");
            }
            match held {
                Some(n) if n > 0 => match usize::try_from(n) {
                    Ok(k) if k <= log.events().len() => (log.to_jsonl_from(k), Some(n)),
                    _ => (log.to_jsonl(), None),
                },
                _ => (log.to_jsonl(), None),
            }
        })
    }

    /// Builds and signs a registration report answering `nonce`, plus the platform
    /// evidence binding it.
    pub fn build_report(
        &self,
        nonce: Digest32,
        measurements: Measurements,
        last: Option<(u64, Digest32)>,
    ) -> Result<(Envelope, PlatformEvidence), AgentError> {
        let signer = self.signer()?;
        let report = Report {
            version: 1,
            agent_id: self.cfg.agent_id.clone(),
            partition: self.cfg.partition.clone(),
            tier: self.quote.tier(),
            issued_at_ns: self.clock.now().get(),
            nonce,
            sequence: last.map(|l| l.0).unwrap_or(0),
            previous_pulse: last.map(|l| l.1),
            heartbeat_key: signer.public_key().clone(),
            heartbeat_interval_ms: u64::try_from(self.cfg.heartbeat_interval.as_millis())
                .unwrap_or(u64::MAX),
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            measurements,
        };
        let env = sign_payload(signer.as_ref(), REPORT_PAYLOAD_TYPE, &report)?;
        let evidence = self.quote.evidence(&report_data(&env))?;
        Ok((env, evidence))
    }

    /// Builds and signs the pulse that follows `sequence`/`previous`: a fresh nonce,
    /// the current time, and the given measurements.
    pub fn build_pulse(
        &self,
        sequence: u64,
        previous: Digest32,
        body: PulseBody,
        health: Option<evidence::Health>,
    ) -> Result<Envelope, AgentError> {
        let (measurements, measurements_digest) = match body {
            PulseBody::Changed(m) => (Some(*m), None),
            PulseBody::Unchanged(d) => (None, Some(d)),
        };
        let signer = self.signer()?;
        let nonce: Nonce16 = HexBytes(rand::thread_rng().gen());
        // Signed without a key id: it is an unauthenticated DSSE hint, and the control
        // plane verifies a pulse with the key registered for its agent id. That, and
        // the digests-only body, keeps a steady-state pulse near 600 bytes.
        let pulse = Pulse {
            version: 1,
            agent_id: self.cfg.agent_id.clone(),
            partition: self.cfg.partition.clone(),
            sequence: sequence + 1,
            issued_at_ns: self.clock.now().get(),
            nonce,
            previous,
            measurements,
            measurements_digest,
            health,
        };
        let payload = serde_json::to_vec(&pulse).map_err(|e| SignerError::Sign(e.to_string()))?;
        Ok(Envelope::sign(PULSE_PAYLOAD_TYPE, payload, "", |m| {
            signer.sign(m)
        })?)
    }

    fn certificate_chain(&self) -> Result<Vec<String>, AgentError> {
        let Some(path) = &self.cfg.certificate_file else {
            return Ok(Vec::new());
        };
        let p = path.display().to_string();
        let err = |detail: String| AgentError::Chain {
            path: p.clone(),
            detail,
        };
        let text = provenant_base::fsutil::read_text_bounded(path, MAX_CHAIN_FILE_BYTES)
            .map_err(|e| err(e.to_string()))?;
        let certs = provenant_base::pem::certificates(&text).map_err(|e| err(e.to_string()))?;
        if certs.is_empty() {
            return Err(err("no CERTIFICATE blocks".into()));
        }
        Ok(certs)
    }

    /// Registers (a fresh quote). Sends only the RTMR3 events the control plane does
    /// not hold; when it does not hold the ones we assumed, sends the whole log.
    async fn register(&self) -> Result<Chain, AgentError> {
        match self.register_once().await {
            Err(AgentError::Client(ClientError::Rejected { kind, detail, .. }))
                if kind.starts_with("EventLogPrefix") =>
            {
                tracing::info!(%kind, %detail, "the control plane does not hold our RTMR3 log prefix; sending the whole log");
                *self.cp_events.lock().unwrap_or_else(|e| e.into_inner()) = None;
                self.register_once().await
            }
            r => r,
        }
    }

    async fn register_once(&self) -> Result<Chain, AgentError> {
        if self.state.read().unwrap_or_else(|e| e.into_inner()).phase != Phase::Pulsing {
            self.update(|s| s.phase = Phase::Registering);
        }
        let challenge = self.client.challenge().await?;
        let measurements = self.measure().await?;
        // The quote taken below covers every event logged so far.
        self.requote.store(false, Ordering::SeqCst);
        let last = {
            let s = self.state.read().unwrap_or_else(|e| e.into_inner());
            s.last_pulse.as_ref().map(|p| (p.sequence, p.digest))
        };
        let (env, ev) = self.build_report(challenge.nonce, measurements.clone(), last)?;
        if let (Some(q), Tier::Tdx) = (&ev.quote, ev.tier) {
            // The control plane is the judge; this only makes a broken platform visible
            // on the node as well.
            let bound = evidence::tdx::Quote::parse(q)
                .is_ok_and(|p| p.body.report_data.0 == report_data(&env));
            if !bound {
                tracing::error!(
                    "the platform returned a quote that does not carry this report's REPORTDATA"
                );
            }
        }
        let (event_log, event_log_from) = match self.event_log_jsonl() {
            Some((log, from)) => (Some(log), from),
            None => (None, None),
        };
        let req = RegisterRequest {
            envelope: env.clone(),
            evidence: RegisterEvidence {
                quote: ev
                    .quote
                    .map(|q| base64::engine::general_purpose::STANDARD.encode(q)),
                certificate_chain: self.certificate_chain()?,
                event_log,
                event_log_from,
            },
        };
        let resp = self.client.register(&req).await?;
        let head = HexBytes(env.digest());
        if resp.chain_head != head {
            return Err(ClientError::Protocol(format!(
                "control plane names chain head {} but our report is {}",
                resp.chain_head, head
            ))
            .into());
        }
        tracing::info!(
            agent_id = %resp.agent_id,
            tier = resp.tier.as_str(),
            key = %resp.key_fingerprint,
            verdict = resp.verdict.status.badge(),
            "registered with the control plane"
        );
        let now = self.clock.now().get();
        // The first pulse after a registration carries the full lists again.
        *self.sent.lock().unwrap_or_else(|e| e.into_inner()) = SentLists::default();
        *self.cp_events.lock().unwrap_or_else(|e| e.into_inner()) = resp.event_log_events;
        *self.health_sent.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.reregister.store(false, Ordering::SeqCst);
        self.update(|s| {
            s.phase = Phase::Pulsing;
            s.registered_at_ns = Some(now);
            s.verdict = Some(resp.verdict.clone());
            s.verdict_at_ns = Some(now);
            s.requote_failed = None;
            s.last_error = None;
            s.measurements = Some(measurements);
            s.workload_badges = resp.workloads;
        });
        Ok(Chain { sequence: 0, head })
    }

    /// The node's health, if the pulse after `sequence` carries it: the first pulse
    /// after a registration, every `health_every` pulses, and whenever the clock's
    /// synchronisation state or the last error changed since the last one sent.
    fn due_health(&self, sequence: u64) -> Option<evidence::Health> {
        let last_error = self
            .state
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .last_error
            .clone();
        let h = crate::health::collect(&self.cfg.health_mounts, last_error.as_deref());
        let every = self.cfg.health_every.max(1);
        let due = match &*self.health_sent.lock().unwrap_or_else(|e| e.into_inner()) {
            None => true,
            Some(k) => *k != health_key(&h) || (sequence + 1) % every == 0,
        };
        due.then_some(h)
    }

    /// Sends one pulse after `chain`. Returns the new chain position when accepted,
    /// `Ok(None)` when the pulse was refused for the agent's clock (the chain stays
    /// where it was; the next pulse may get through), or an error that calls for a
    /// fresh registration.
    async fn pulse_once(&self, chain: Chain) -> Result<Option<Chain>, AgentError> {
        let measurements = self.measure().await?;
        let sent = *self.sent.lock().unwrap_or_else(|e| e.into_inner());
        let health = self.due_health(chain.sequence);
        let mut env = self.build_pulse(
            chain.sequence,
            chain.head,
            sent.body(&measurements),
            health.clone(),
        )?;
        let mut now_sent = SentLists::after(&measurements);
        if env.payload.len() > MAX_PULSE_PAYLOAD_BYTES {
            // The changed lists do not fit a pulse: send the digests only, and register
            // again so the report carries the lists.
            tracing::warn!(
                bytes = env.payload.len(),
                "changed lists too large for a pulse; registering again to report them"
            );
            let everything = SentLists::after(&measurements);
            env = self.build_pulse(
                chain.sequence,
                chain.head,
                PulseBody::Changed(Box::new(everything.strip(&measurements))),
                health.clone(),
            )?;
            now_sent = sent;
            self.reregister.store(true, Ordering::SeqCst);
        }
        let pulse_time = self.clock.now().get();
        match self.client.heartbeat(&env).await {
            Ok(resp) => {
                let digest = HexBytes(env.digest());
                if let Some(h) = &health {
                    *self.health_sent.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some(health_key(h));
                }
                self.update(|s| {
                    s.phase = Phase::Pulsing;
                    s.last_pulse = Some(PulseInfo {
                        sequence: resp.sequence,
                        issued_at_ns: pulse_time,
                        digest,
                    });
                    s.verdict = Some(resp.verdict);
                    s.verdict_at_ns = Some(pulse_time);
                    s.last_error = None;
                    s.pulses_accepted += 1;
                    s.measurements = Some(measurements);
                    s.workload_badges = resp.workloads;
                });
                *self.sent.lock().unwrap_or_else(|e| e.into_inner()) = now_sent;
                Ok(Some(Chain {
                    sequence: chain.sequence + 1,
                    head: digest,
                }))
            }
            Err(e) if e.kind() == Some("ClockDesync") => {
                tracing::warn!(error = %e, "pulse refused: this node's clock is out of sync with the control plane; check NTP");
                // A refusal: the gate closes until a pulse is accepted again.
                self.update(|s| {
                    s.last_error = Some(e.to_string());
                    s.pulses_refused += 1;
                    s.verdict = None;
                    s.verdict_at_ns = None;
                });
                Ok(None)
            }
            // The control plane verified nothing into its store ("nothing was
            // recorded"): the chain stays where it was and the next tick tries again,
            // so the control plane keeps seeing this agent alive through its outage.
            Err(e) if e.kind() == Some("StoreUnavailable") => {
                tracing::warn!(error = %e, "pulse not recorded: the control plane's store is unavailable; retrying on the same chain");
                self.update(|s| {
                    s.last_error = Some(e.to_string());
                    s.pulses_refused += 1;
                });
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Runs until the process ends. Never returns an error for the control plane
    /// being away: it backs off (exponential, with jitter) and registers again.
    pub async fn run(self: Arc<Self>) {
        if self.signer.is_none() {
            tracing::warn!(
                "attestation disabled: no key_file configured. The agent will not register \
                 or send pulses; /health reports phase \"disabled\" and /api/v1/verify answers 503"
            );
            self.update(|s| s.phase = Phase::Disabled);
            std::future::pending::<()>().await;
        }
        let mut failures: u32 = 0;
        loop {
            match self.register().await {
                Ok(chain) => {
                    failures = 0;
                    if let Err(e) = self.pulse_loop(chain).await {
                        self.note_failure(&e);
                    }
                }
                Err(e) => {
                    self.note_failure(&e);
                    failures = failures.saturating_add(1);
                    let delay = backoff(failures, self.cfg.max_backoff);
                    tracing::info!(retry_in_ms = delay.as_millis(), "retrying registration");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// Pulses on `chain`, taking a fresh quote (re-registering) when one is due.
    /// Returns the error that ended the chain: a pulse that failed, or a re-quote the
    /// control plane refused. A re-quote it could not verify for an upstream outage
    /// (or could not be sent) does not end it: the agent keeps pulsing on the
    /// current registration, which stays valid, and retries with backoff.
    async fn pulse_loop(&self, mut chain: Chain) -> Result<(), AgentError> {
        let mut registered = tokio::time::Instant::now();
        let mut requote_failures: u32 = 0;
        let mut requote_not_before = tokio::time::Instant::now();
        let mut ticker = tokio::time::interval(self.cfg.heartbeat_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if let Some(next) = self.pulse_once(chain).await? {
                chain = next;
            }
            let why = if self.reregister.load(Ordering::SeqCst) {
                "a changed list did not fit a pulse"
            } else if self.events.is_some() && self.requote.load(Ordering::SeqCst) {
                "a measurement changed"
            } else if self.events.is_some() && registered.elapsed() >= self.cfg.requote_interval {
                "requote_interval elapsed"
            } else {
                continue;
            };
            if tokio::time::Instant::now() < requote_not_before {
                continue;
            }
            tracing::info!(why, "taking a fresh quote: registering again");
            match self.register().await {
                Ok(next) => {
                    chain = next;
                    registered = tokio::time::Instant::now();
                    requote_failures = 0;
                }
                Err(e) if e.is_unavailable() => {
                    requote_failures = requote_failures.saturating_add(1);
                    let delay = backoff(requote_failures, self.cfg.max_backoff);
                    requote_not_before = tokio::time::Instant::now() + delay;
                    // Still due: the quote the control plane holds is the old one.
                    self.requote.store(true, Ordering::SeqCst);
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis(),
                        "fresh quote not verified (control plane or an upstream unavailable); \
                         pulsing on the current registration");
                    let now = self.clock.now().get();
                    self.update(|s| {
                        s.phase = Phase::Pulsing;
                        s.last_error = Some(e.to_string());
                        let since_ns = s.requote_failed.as_ref().map_or(now, |r| r.since_ns);
                        s.requote_failed = Some(RequoteFailed {
                            since_ns,
                            attempts: requote_failures,
                            error: e.to_string(),
                        });
                    });
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn note_failure(&self, e: &AgentError) {
        let phase = match e {
            AgentError::Client(ClientError::Transport(_) | ClientError::Unsent(_)) => {
                Phase::Unreachable
            }
            _ => Phase::Refused,
        };
        let refused = e.is_refusal();
        tracing::warn!(error = %e, refused, "lost the control plane; will register again");
        self.update(|s| {
            s.phase = phase;
            s.last_error = Some(e.to_string());
            if matches!(e, AgentError::Client(ClientError::Rejected { .. })) {
                s.pulses_refused += 1;
            }
            // Refused (e.g. revoked, unenrolled, evidence refused): the gate closes at
            // once. Otherwise the verdict stands until it expires.
            if refused {
                s.verdict = None;
                s.verdict_at_ns = None;
            }
        });
    }
}

/// Exponential backoff with jitter: 500 ms x 2^(n-1), capped, then a uniform draw in
/// [d/2, d] so a fleet does not reconnect in lockstep after an outage.
pub fn backoff(failures: u32, cap: Duration) -> Duration {
    let exp = failures.saturating_sub(1).min(20);
    let base = Duration::from_millis(500)
        .saturating_mul(1u32 << exp)
        .min(cap);
    let half = base / 2;
    half + half.mul_f64(rand::thread_rng().gen::<f64>())
}

/// Serialises and signs a payload into a DSSE envelope.
pub fn sign_payload<T: Serialize>(
    signer: &dyn Signer,
    payload_type: &str,
    value: &T,
) -> Result<Envelope, SignerError> {
    let payload = serde_json::to_vec(value).map_err(|e| SignerError::Sign(e.to_string()))?;
    let keyid = signer.public_key().fingerprint();
    Envelope::sign(payload_type, payload, &keyid, |m| signer.sign(m))
}

mod sent;
pub use sent::{PulseBody, SentLists};

#[cfg(test)]
mod tests;
