//! Stage 3, register: a single-use challenge ([`ControlPlane::challenge`]), then
//! `/register`: the report's signature and challenge, the enrollment of its key
//! ([`enroll`]), revocation and withdrawn builds ([`revoke`]), the platform evidence
//! through [`crate::attest`], and the first judgement of the measurements. A
//! re-registration keeps the agent's chain and may not lower its tier unless an
//! operator allowed it.

pub mod enroll;
pub mod error;
mod kept_log;
pub mod revoke;

use crate::act::unenrolled::source_key;
use crate::attest::{check_event_log_matches, AttestError, EventLogInput};
use crate::judge::baseline::{judge, resolve_inventory};
use crate::model::TdxAttestation;
use crate::model::{AgentRecord, Expectations, RequoteFailure};
use crate::model::{Alert, AlertKind};
use crate::plane::ControlPlane;
use crate::register::error::{ClockSkew, RegisterError};
use crate::store::{AgentWrite, StoreError};
use evidence::api::{Challenge, RegisterRequest, RegisterResponse};
use evidence::report::HexBytes;
use evidence::{Digest32, Report, Tier};
use provenant_base::clock::UnixNanos;
use std::net::IpAddr;

/// Orders tiers by the strength of their evidence: a re-registration on a lower one
/// is a downgrade.
pub(crate) fn tier_rank(t: Tier) -> u8 {
    match t {
        Tier::Tdx | Tier::Tpm => 2,
        Tier::TdxReport => 1,
        _ => 0,
    }
}

/// The quote or TDREPORT of a TDX-tier registration, base64-decoded. The request
/// body limit bounds it; the parsers bound it again.
pub(crate) fn decode_platform_evidence(
    ev: &evidence::api::RegisterEvidence,
) -> Result<Vec<u8>, RegisterError> {
    use base64::Engine;
    let b64 = ev.quote.as_deref().ok_or_else(|| {
        AttestError::refused(
            "MissingQuote",
            "a TDX-tier report must come with its quote (or TDREPORT)",
        )
    })?;
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| RegisterError::bad_field("BadBase64", format!("evidence.quote: {e}")))
}

pub(crate) fn new_record(
    report: &evidence::Verified<Report>,
    measurements: &evidence::Measurements,
    key: &evidence::PublicKey,
    head: Digest32,
    now: UnixNanos,
    attestation: Option<TdxAttestation>,
) -> AgentRecord {
    AgentRecord {
        agent_id: report.agent_id.clone(),
        partition: report.partition.clone(),
        tier: report.tier,
        key: key.clone(),
        registered_at_ns: now.get(),
        last_seen_ns: now.get(),
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
        health: None,
        health_at_ns: None,
        bad_signatures_ns: Vec::new(),
        compromised: None,
        previous_key: None,
        seen: None,
        version: 0,
    }
}

impl ControlPlane {
    /// Issues a single-use registration challenge.
    pub async fn challenge(&self) -> Result<Challenge, StoreError> {
        let nonce: Digest32 = HexBytes(rand::random());
        let expires_at = self.now().saturating_add(self.cfg.challenge_ttl);
        self.store
            .put_challenge(&nonce.to_hex(), expires_at)
            .await?;
        Ok(Challenge {
            nonce,
            expires_at_ns: expires_at.get(),
        })
    }

    /// Whether `issued_at_ns` (a report's or pulse's, named by `what`) lies within
    /// `max_clock_skew` of `now`.
    pub(crate) fn check_skew(
        &self,
        issued_at_ns: u64,
        now: UnixNanos,
        what: &'static str,
    ) -> Result<(), ClockSkew> {
        let issued = UnixNanos(issued_at_ns);
        let skew = now.since(issued).max(issued.since(now));
        if skew > self.cfg.max_clock_skew {
            return Err(ClockSkew {
                what,
                skew,
                ahead: issued > now,
                allowed: self.cfg.max_clock_skew,
            });
        }
        Ok(())
    }

    /// Registration: the report's signature, its tier's evidence, enrollment, time,
    /// and the single-use challenge.
    pub async fn register(&self, req: RegisterRequest) -> Result<RegisterResponse, RegisterError> {
        self.register_from(req, None).await
    }

    /// [`ControlPlane::register`] from the peer `source` (for aggregating refused
    /// registrations by source).
    pub async fn register_from(
        &self,
        req: RegisterRequest,
        source: Option<IpAddr>,
    ) -> Result<RegisterResponse, RegisterError> {
        let now = self.now();
        let env = req.envelope;
        // The report names its own key; signing with it proves possession. Whether the
        // key may speak for this agent id is enrollment's question, asked next.
        let claimed: Report = env.peek()?;
        let report = env.open::<Report>(&claimed.heartbeat_key)?;
        let key = report.heartbeat_key.clone();

        match report.tier {
            Tier::Software | Tier::TdxReport if !self.cfg.policy.allow_software_tier => {
                return Err(RegisterError::TierNotAllowed(format!(
                    "policy does not accept the {} tier (allow_software_tier = false)",
                    report.tier.as_str()
                )));
            }
            Tier::Software => {
                if req.evidence.quote.is_some() || req.evidence.event_log.is_some() {
                    return Err(RegisterError::bad_field(
                        "InvalidField",
                        "a software-tier report carries no quote or event log",
                    ));
                }
            }
            Tier::Tdx | Tier::TdxReport => {}
            other => {
                // Fail closed: a hardware tier this control plane cannot verify is refused,
                // never downgraded or waved through.
                return Err(RegisterError::TierNotAllowed(format!(
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
            .await?
        {
            return Err(RegisterError::BadChallenge(
                "the report's nonce is not an open challenge (unknown, already used or expired)"
                    .into(),
            ));
        }
        if let Err(e) =
            self.enroller
                .check(&report.agent_id, &key, &req.evidence.certificate_chain, now)
        {
            if e.is_unenrolled() {
                self.note_unenrolled(
                    &source_key(source),
                    &report.agent_id,
                    now,
                    &format!("Unenrolled: {e}"),
                )
                .await;
            }
            return Err(e.into());
        }
        self.check_skew(report.issued_at_ns, now, "report")?;
        // After enrollment: an unenrolled key learns nothing more about the checks.
        let measurements = resolve_inventory(None, report.measurements.clone(), true)?;
        let interval_ms = report.heartbeat_interval_ms;
        let max_ms = u64::try_from(self.cfg.heartbeat_interval.as_millis()).unwrap_or(u64::MAX);
        if interval_ms == 0 || interval_ms > max_ms {
            return Err(RegisterError::IntervalTooLong(format!(
                "agent declares a heartbeat interval of {interval_ms} ms; policy allows 1..={max_ms} ms"
            )));
        }
        // The hardware evidence last among the report checks: it is the costly one
        // (collateral may be fetched), and it needs the report to be otherwise sound.
        // A known TDX agent: its record holds the RTMR3 log prefix this registration
        // may continue, and an upstream outage keeps its current registration.
        let prior = match report.tier {
            Tier::Tdx | Tier::TdxReport => self.store.get_agent(&report.agent_id).await?,
            _ => None,
        };
        let held = prior
            .as_ref()
            .and_then(|p| p.attestation.as_ref())
            .and_then(|a| a.event_log_state.as_ref());
        let accepted = match report.tier {
            Tier::Tdx | Tier::TdxReport => self.accepted_log(&report.agent_id, held).await,
            _ => None,
        };
        let attestation = match report.tier {
            Tier::Tdx | Tier::TdxReport => {
                let raw = decode_platform_evidence(&req.evidence)?;
                let log = EventLogInput {
                    text: req.evidence.event_log.as_deref(),
                    from: req.evidence.event_log_from,
                    held,
                    accepted: accepted.as_ref(),
                };
                let binding = evidence::report_data(&env);
                let checked = if report.tier == Tier::Tdx {
                    let started = std::time::Instant::now();
                    let r = self.tdx.verify_quote(&raw, log, binding, now).await;
                    self.metrics.verified("quote", started.elapsed());
                    r
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
                    Err(e @ AttestError::EventLogPrefix { .. }) => return Err(e.into()),
                    // An upstream outage is not a judgement: a known agent keeps its
                    // registration.
                    Err(AttestError::Unavailable { kind, detail }) if prior.is_some() => {
                        let Some(old) = prior.as_ref() else {
                            return Err(AttestError::Unavailable { kind, detail }.into());
                        };
                        return Err(self.requote_failed(old, kind, detail, now).await);
                    }
                    Err(e) => {
                        self.alert_with_cooldown_explained(
                            &report.agent_id,
                            AlertKind::AttestationRefused,
                            now,
                            &e.to_string(),
                            e.explanation().cloned(),
                        )
                        .await;
                        return Err(e.into());
                    }
                }
            }
            _ => None,
        };

        let existing = self.store.get_agent(&report.agent_id).await?;
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
                    return Err(RegisterError::TierDowngrade(why));
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
                    // A compromise mark outlives a registration: only an operator
                    // clears it. The replaced key stays known, so a pulse it signed
                    // that arrives late is not counted as a bad signature.
                    bad_signatures_ns: old.bad_signatures_ns.clone(),
                    compromised: old.compromised.clone(),
                    previous_key: if old.key != key {
                        Some(old.key.clone())
                    } else {
                        old.previous_key.clone()
                    },
                    // The badges last recorded: a re-registration's change is
                    // relative to them (the timeline goes on).
                    seen: old.seen.clone(),
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
        alerts.extend(self.required_program_alerts(
            &report.agent_id,
            existing.as_ref().map(|o| &o.current),
            &record.current,
            now,
        ));
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
                )},
        ));
        self.persist(AgentWrite {
            record: record.clone(),
            expected_version: existing.as_ref().map(|o| o.version),
            nonce: None,
            alerts,
            chain_only: false,
            changes: Vec::new(),
        })
        .await
        .map_err(|e| match e {
            StoreError::Conflict => RegisterError::LostRace,
            other => RegisterError::Store(other),
        })?;
        if let Some(state) = record
            .attestation
            .as_ref()
            .and_then(|a| a.event_log_state.as_ref())
        {
            self.keep_log(
                &record.agent_id,
                accepted,
                req.evidence.event_log.as_deref(),
                req.evidence.event_log_from,
                state,
                now,
            )
            .await;
        }
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
    pub(crate) async fn requote_failed(
        &self,
        old: &AgentRecord,
        upstream: &'static str,
        detail: String,
        now: UnixNanos,
    ) -> RegisterError {
        let out = RegisterError::UpstreamUnavailable {
            upstream,
            detail: detail.clone(),
        };
        // `register` consumed the report's challenge before any check: only a report
        // answering an open challenge gets here, so a replayed report cannot mark an agent.
        let reason = format!("{upstream}: {detail}");
        let mut next = old.clone();
        next.requote_failed = Some(RequoteFailure {
            at_ns: old.requote_failed.as_ref().map_or(now.get(), |r| r.at_ns),
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
                changes: Vec::new(),
            })
            .await
        {
            tracing::warn!(agent_id = %old.agent_id, error = %err, "could not record a failed re-quote");
        }
        out
    }
}
