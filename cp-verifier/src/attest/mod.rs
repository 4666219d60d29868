//! TDX evidence at registration: everything between "the report's signature verifies"
//! and "this agent may register in tier `tdx`".
//!
//! Trust boundary: the quote, the event log and the report all come from the network.
//! The quote is verified by DCAP (signatures, PCK chain to the configured root,
//! collateral at `now`) before any of its fields is believed; only then does the policy
//! judge its contents (TCB status, TUD bits, REPORTDATA binding, allowlists, RTMR3
//! replay). A TDREPORT (tier `tdx-report`) cannot be verified remotely: its fields are
//! checked for consistency with the report and recorded as claims, never as verified.
//! Every refusal is an [`AttestError`] with a typed kind; the HTTP edge answers it
//! 403 (`crate::http::error`).

pub mod collateral;
pub mod dcap;
pub mod error;
pub mod explain;
pub mod provenance;

use evidence::eventlog::{self, EventLogState};
use evidence::tdx::TdReport;
use policy::tdx::{evaluate_tdx, TdxFacts, TdxPolicy};
use policy::{Reason, ReasonCode, Status};
use provenant_base::clock::{UnixNanos, UnixSecs};

use crate::attest::collateral::{
    quote_collateral_key, CollateralSource, OfflineConfig, PcsConfig, SharedCache,
};
use crate::attest::dcap::{
    check_sept_ve, verify_quote_with, verify_signatures, BindingRules, QuoteVerifyError,
};
use crate::config::TdxConfig;
use crate::model::{TdxAttestation, TdxFreshness};
pub use error::AttestError;

/// Largest root CA or PCS key file read.
const MAX_TRUST_FILE_BYTES: u64 = 64 * 1024;

/// The RTMR3 event log as a registration presents it: the JSON lines, from which
/// event on (`event_log_from`), and the prefix the control plane holds for the agent.
#[derive(Debug, Clone, Copy, Default)]
pub struct EventLogInput<'a> {
    /// The JSON lines as sent, if any.
    pub text: Option<&'a str>,
    /// The first event's `seq` (0 or absent: the whole log).
    pub from: Option<u64>,
    /// What this control plane replayed at the agent's last registration.
    pub held: Option<&'a EventLogState>,
    /// The log accepted at the agent's last registration, where it is kept: a
    /// refused RTMR3 is explained against it.
    pub accepted: Option<&'a explain::AcceptedLog>,
}

impl<'a> From<Option<&'a str>> for EventLogInput<'a> {
    /// The whole log.
    fn from(text: Option<&'a str>) -> Self {
        EventLogInput {
            text,
            from: None,
            held: None,
            accepted: None,
        }
    }
}

/// The measurement the report itself gives for an event kind; `None` where the
/// report has none to compare (a list its collector could not read).
fn reported_value(kind: &str, m: &evidence::Measurements) -> Option<String> {
    match kind {
        eventlog::KIND_AGENT_BINARY => Some(m.agent_binary.to_hex()),
        eventlog::KIND_POLICY => Some(m.policy.digest.to_hex()),
        eventlog::KIND_WORKLOAD_SET => m
            .workloads
            .as_ref()
            .filter(|w| w.digest.is_some())
            .and_then(|w| w.items.as_deref())
            .map(eventlog::workload_set_value),
        eventlog::KIND_EBPF => m.ebpf.as_ref().and_then(|e| e.digest).map(|d| d.to_hex()),
        _ => None,
    }
}

/// Ties the replayed RTMR3 log to the report: the last bound value of each kind the
/// report measures must be the report's own value (a log saying `agent_binary=aa`
/// beside a report saying `bb` is refused), and a log with any bound event must bind
/// the agent binary and the policy. Refusal: 403 `EventLogMismatch`.
pub fn check_event_log_matches(
    a: &TdxAttestation,
    m: &evidence::Measurements,
) -> Result<(), AttestError> {
    let Some(state) = &a.event_log_state else {
        return Ok(());
    };
    if state.bound == 0 {
        return Ok(());
    }
    for kind in eventlog::BOUND_KINDS {
        let logged = state.last.get(kind);
        let reported = reported_value(kind, m);
        match (logged, reported) {
            (Some(l), Some(r)) if *l != r => {
                return Err(AttestError::refused(
                    "EventLogMismatch",
                    format!("the RTMR3 log's last bound {kind} is {l}, but the report says {r}"),
                ))
            }
            (None, _) if kind == eventlog::KIND_AGENT_BINARY || kind == eventlog::KIND_POLICY => {
                return Err(AttestError::refused(
                    "EventLogMismatch",
                    format!("the RTMR3 log binds events but never the {kind}"),
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

/// The reasons `a` gives at `now` because it aged: collateral past `nextUpdate`,
/// PCK past `notAfter`, a quote older than `3 x requote_interval`, provenance not
/// confirmed again. The verdict adds them to the stored ones on every evaluation.
pub fn age_reasons(
    a: &TdxAttestation,
    now: UnixNanos,
    policy: &policy::TrustPolicy,
) -> Vec<Reason> {
    policy::tdx::age_reasons(&policy.tdx, policy.requote_interval, &a.age(), now.secs())
}

/// What DCAP (and provenance) established about a quote.
struct Checked {
    verified: crate::attest::dcap::VerifiedQuote,
    fmspc: String,
    collateral_next_update: u64,
    pck_not_after: u64,
    provenance: Option<crate::model::MrtdProvenance>,
}

/// Verifies TDX evidence for registrations.
pub struct TdxVerifier {
    /// `None`: Intel's SGX Root CA (embedded). Another root only by explicit config.
    root_ca_der: Option<Vec<u8>>,
    /// Where collateral comes from. `None`: every quote is refused with
    /// `CollateralUnavailable`, since a TCB status that cannot be established is
    /// unknown, never a pass.
    collateral: Option<CollateralSource>,
    policy: TdxPolicy,
    provenance: Option<crate::attest::provenance::ProvenanceChecker>,
}

fn quote_error(e: QuoteVerifyError) -> AttestError {
    AttestError::refused(e.kind(), e.to_string())
}

impl TdxVerifier {
    /// A verifier trusting `root_ca_der` (`None`: Intel's SGX Root CA), fetching
    /// collateral from `collateral` (`None`: every quote is `CollateralUnavailable`),
    /// judging by `policy`.
    pub fn new(
        root_ca_der: Option<Vec<u8>>,
        collateral: Option<CollateralSource>,
        policy: TdxPolicy,
    ) -> Self {
        TdxVerifier {
            root_ca_der,
            collateral,
            policy,
            provenance: None,
        }
    }

    /// Requires MRTD to be attested by build provenance.
    pub fn with_provenance(mut self, p: crate::attest::provenance::ProvenanceChecker) -> Self {
        self.provenance = Some(p);
        self
    }

    /// Builds the verifier from `[tdx]`; fetched collateral is cached under
    /// `data_dir/collateral`.
    pub fn from_config(
        cfg: &TdxConfig,
        data_dir: &std::path::Path,
        policy: TdxPolicy,
        shared: Option<std::sync::Arc<dyn SharedCache>>,
    ) -> anyhow::Result<TdxVerifier> {
        use anyhow::Context;
        let read = |p: &std::path::Path| {
            provenant_base::fsutil::read_bounded(p, MAX_TRUST_FILE_BYTES)
                .with_context(|| format!("cannot read {}", p.display()))
        };
        let root_ca_der = match &cfg.root_ca_file {
            None => None,
            Some(p) => {
                let bytes = read(p)?;
                let der = if bytes.starts_with(b"-----BEGIN") {
                    x509_cert::der::pem::decode_vec(&bytes)
                        .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?
                        .1
                } else {
                    bytes
                };
                use x509_cert::der::Decode;
                x509_cert::Certificate::from_der(&der)
                    .map_err(|e| anyhow::anyhow!("{} is not a certificate: {e}", p.display()))?;
                tracing::warn!(root = %p.display(),
                    "TDX quotes are verified against a configured root CA instead of Intel's");
                Some(der)
            }
        };
        let collateral = if let Some(url) = &cfg.pcs_url {
            let mut pcs = if url == "intel" {
                let key = match &cfg.pcs_api_key_file {
                    Some(p) => Some(String::from_utf8(read(p)?)?.trim().to_string()),
                    None => None,
                };
                PcsConfig::intel(key)
            } else {
                PcsConfig::pccs(url.clone())
            };
            pcs.cache_dir = Some(data_dir.join("collateral"));
            pcs.root_ca_der = root_ca_der.clone();
            if let Some(p) = &cfg.pccs_tls_roots_file {
                pcs.tls_roots_pem = Some(read(p)?);
            }
            let source = CollateralSource::pcs(pcs)?;
            Some(match shared {
                Some(s) => source.with_shared_cache(s),
                None => source,
            })
        } else if cfg.collateral_dir.is_some() || cfg.collateral_file.is_some() {
            Some(CollateralSource::offline(OfflineConfig::new(
                cfg.collateral_dir.clone(),
                cfg.collateral_file.clone(),
            ))?)
        } else {
            None
        };
        Ok(TdxVerifier::new(root_ca_der, collateral, policy))
    }

    /// Verifies a quote bound to a report whose binding is `expected_report_data`,
    /// with the agent's RTMR3 event log, at `now`.
    pub async fn verify_quote<'a>(
        &self,
        raw: &[u8],
        event_log: impl Into<EventLogInput<'a>>,
        expected_report_data: [u8; 64],
        now: UnixNanos,
    ) -> Result<TdxAttestation, AttestError> {
        let c = self.check_quote(raw, now.secs()).await?;
        let facts = Facts {
            body: &c.verified.quote().body,
            tcb_status: Some(c.verified.tcb_status().as_str().to_string()),
            advisory_ids: c.verified.advisory_ids().to_vec(),
            fmspc: Some(c.fmspc.clone()),
            verified: true,
            rtmrs_attested: self.rtmrs_attested(c.provenance.is_some()),
            provenance: c.provenance.clone(),
        };
        let mut a = self.judge(facts, event_log, expected_report_data, now)?;
        use base64::Engine;
        a.freshness = TdxFreshness {
            collateral_next_update: Some(c.collateral_next_update),
            pck_not_after: Some(c.pck_not_after),
            quote: Some(base64::engine::general_purpose::STANDARD.encode(raw)),
            ..TdxFreshness::default()
        };
        Ok(a)
    }

    /// Which of RTMR0..2 provenance pinned, given that it attested this TD.
    fn rtmrs_attested(&self, attested: bool) -> [bool; 3] {
        match &self.provenance {
            Some(p) if attested => p.pins_rtmrs(),
            _ => [false; 3],
        }
    }

    /// DCAP verification of `raw` at `now` against the current collateral, then
    /// build provenance of its MRTD.
    async fn check_quote(&self, raw: &[u8], now: UnixSecs) -> Result<Checked, AttestError> {
        let root = self.root_ca_der.as_deref();
        // Our own check of the signatures and the PCK chain first: it also gives the
        // FMSPC and PCK CA that select the collateral. dcap-qvl then checks it all
        // again, with the collateral.
        let signed = verify_signatures(raw, now, root).map_err(quote_error)?;
        // The body is now known to come from a genuine QE. A debuggable TD is refused
        // here with its own reason: dcap-qvl would refuse it too, but only as a generic
        // verification failure.
        let tud = signed.quote().body.tud_bits();
        if tud != 0 {
            return Err(AttestError::refused(
                "DebugTd",
                format!("TDATTRIBUTES TUD bits set ({tud:#04x}): the TD is debuggable"),
            ));
        }
        // Service-TD binding and migration attributes: refused by the policy with
        // their own reason before any collateral is fetched (dcap-qvl would refuse
        // them too, as a generic verification failure).
        let binding = td_binding(&signed.quote().body);
        if let Some(r) = policy::tdx::binding_reasons(&self.policy, &binding)
            .into_iter()
            .find(|r| r.status == Status::Fail)
        {
            return Err(AttestError::refused(r.code.as_str(), r.detail));
        }
        // SEPT_VE_DISABLE clear: refused with its own reason too, before any
        // collateral is fetched. No policy can accept it: dcap-qvl refuses it
        // unconditionally (see `dcap::check_sept_ve`).
        if let Err(e) = check_sept_ve(&signed.quote().body) {
            return Err(AttestError::refused(
                ReasonCode::SeptVeNotDisabled.as_str(),
                e.to_string(),
            ));
        }
        let (fmspc, ca) = quote_collateral_key(raw)
            .map_err(|e| AttestError::refused("QuoteVerificationFailed", e.to_string()))?;
        let collateral = match &self.collateral {
            Some(s) => s
                .get(fmspc, ca, now)
                .await
                .map_err(|e| AttestError::unavailable("CollateralUnavailable", e.to_string()))?,
            None => {
                return Err(AttestError::refused(
                    "CollateralUnavailable",
                    "no collateral source is configured ([tdx] pccs_url or collateral_dir): \
                     the TCB status cannot be established",
                ))
            }
        };
        let rules = BindingRules::from_policy(&self.policy);
        let verified = verify_quote_with(raw, collateral.collateral(), now, root, &rules)
            .map_err(quote_error)?;
        let body = &verified.quote().body;
        let provenance = match &self.provenance {
            Some(p) => {
                let rtmrs = [
                    body.rtmrs[0].0,
                    body.rtmrs[1].0,
                    body.rtmrs[2].0,
                    body.rtmrs[3].0,
                ];
                Some(p.check(&body.mrtd.0, &rtmrs, now).await?)
            }
            None => None,
        };
        Ok(Checked {
            verified,
            fmspc: fmspc.to_hex(),
            collateral_next_update: collateral.expires_at(),
            pck_not_after: signed.pck_not_after(),
            provenance,
        })
    }

    /// Verifies the quote kept in `a` again at `now`, against the collateral (and
    /// provenance) current then, and returns the attestation updated: TCB status,
    /// advisories, dates, provenance, and the TCB status's reason under the policy.
    /// A quote that is now refused (revoked, no matching TCB level, MRTD no longer
    /// attested) gets a failing `ReattestRefused` reason. `Err` only when the
    /// verifier could not decide (collateral or provenance unavailable): the caller
    /// keeps the old evidence, which then ages.
    pub async fn reattest(
        &self,
        a: &TdxAttestation,
        now: UnixNanos,
    ) -> Result<TdxAttestation, AttestError> {
        use base64::Engine;
        let b64 = a
            .freshness
            .quote
            .as_deref()
            .filter(|_| a.verified)
            .ok_or_else(|| AttestError::Internal("no verified quote kept to re-attest".into()))?;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| AttestError::Internal(format!("stored quote: {e}")))?;
        let mut next = a.clone();
        next.freshness.reattest_tried_ns = Some(now.get());
        let outcome = self.check_quote(&raw, now.secs()).await;
        next.reasons
            .retain(|r| !matches!(r.code, ReasonCode::TcbStatus | ReasonCode::ReattestRefused));
        match outcome {
            Err(e) if e.undecided() => return Err(e),
            Err(e) => {
                next.freshness.reattested_at_ns = Some(now.get());
                next.reasons.push(Reason {
                code: ReasonCode::ReattestRefused,
                status: Status::Fail,
                detail: format!(
                    "the stored quote, verified again against current collateral, is refused: {}: {}",
                    e.kind(),
                    e
                )});
            }
            Ok(c) => {
                let status = c.verified.tcb_status().as_str().to_string();
                let advisories = c.verified.advisory_ids().to_vec();
                if let Some(mut r) =
                    policy::tdx::tcb_reason(&self.policy, Some(&status), &advisories)
                {
                    if a.tcb_status.as_deref() != Some(status.as_str()) {
                        r.detail = format!(
                            "{} (re-attested; was {} at registration)",
                            r.detail,
                            a.tcb_status.as_deref().unwrap_or("none")
                        );
                    }
                    next.reasons.push(r);
                }
                next.tcb_status = Some(status);
                next.advisory_ids = advisories;
                next.provenance = c.provenance.or(next.provenance);
                next.freshness.collateral_next_update = Some(c.collateral_next_update);
                next.freshness.pck_not_after = Some(c.pck_not_after);
                next.freshness.reattested_at_ns = Some(now.get());
            }
        }
        next.freshness.reattest_error = None;
        Ok(next)
    }

    /// Checks a TDREPORT (tier `tdx-report`) for consistency with its report. Its
    /// fields are recorded as claims.
    pub fn check_tdreport<'a>(
        &self,
        raw: &[u8],
        event_log: impl Into<EventLogInput<'a>>,
        expected_report_data: [u8; 64],
        now: UnixNanos,
    ) -> Result<TdxAttestation, AttestError> {
        let body = evidence::tdreport::parse_tdreport(raw)
            .map_err(|e| AttestError::refused("MalformedQuote", format!("TDREPORT: {e}")))?;
        let facts = Facts {
            body: &body,
            tcb_status: None,
            advisory_ids: Vec::new(),
            fmspc: None,
            verified: false,
            rtmrs_attested: [false; 3],
            provenance: None,
        };
        self.judge(facts, event_log, expected_report_data, now)
    }

    fn judge<'a>(
        &self,
        f: Facts<'_>,
        event_log: impl Into<EventLogInput<'a>>,
        expected_report_data: [u8; 64],
        now: UnixNanos,
    ) -> Result<TdxAttestation, AttestError> {
        let input: EventLogInput<'a> = event_log.into();
        let from = input.from.unwrap_or(0);
        let base = if from == 0 {
            EventLogState::default()
        } else {
            match input.held {
                Some(h) if h.count == from => h.clone(),
                held => {
                    return Err(AttestError::EventLogPrefix {
                        kind: "EventLogPrefixUnknown",
                        detail: format!(
                            "the registration continues an RTMR3 log after {from} events, but this \
                             control plane holds {}; send the whole log",
                            held.map_or("none".to_string(), |h| format!("{} events", h.count))
                        ),
                    })
                }
            }
        };
        let events = eventlog::parse_jsonl_from(input.text.unwrap_or("").as_bytes(), from)
            .map_err(|e| AttestError::refused("MalformedEventLog", e.to_string()))?;
        let state = base.extend(&events);
        let b = f.body;
        if from > 0 && state.rtmr3.0 != b.rtmrs[3].0 {
            // The prefix held here is not this TD's (it restarted, or the record is
            // from another life): the whole log decides, strictly.
            return Err(AttestError::EventLogPrefix {
                kind: "EventLogPrefixMismatch",
                detail: format!(
                    "the {from} events held here and the {} sent do not replay to the quoted \
                     RTMR3; send the whole log",
                    events.len()
                ),
            });
        }
        let rtmrs = [b.rtmrs[0].0, b.rtmrs[1].0, b.rtmrs[2].0, b.rtmrs[3].0];
        let verdict = evaluate_tdx(
            &self.policy,
            &TdxFacts {
                tcb_status: f.tcb_status.clone(),
                advisory_ids: f.advisory_ids.clone(),
                td_attributes: b.td_attributes.0,
                report_data: b.report_data.0,
                expected_report_data,
                mrtd: b.mrtd.0,
                rtmrs,
                rtmr3_replayed: state.rtmr3.0,
                mrtd_attested: f.provenance.is_some(),
                rtmrs_attested: f.rtmrs_attested,
                binding: td_binding(b),
            },
        );
        let failed: Vec<&Reason> = verdict
            .reasons
            .iter()
            .filter(|r| r.status == Status::Fail)
            .collect();
        if let Some(first) = failed.first() {
            // The first reason is the refusal's kind, said once (the wire and the
            // alert put the kind before the detail); any others name their own.
            let detail = std::iter::once(first.detail.clone())
                .chain(
                    failed
                        .iter()
                        .skip(1)
                        .map(|r| format!("{}: {}", r.code.as_str(), r.detail)),
                )
                .collect::<Vec<_>>()
                .join("; ");
            let mut refusal = AttestError::refused(first.code.as_str(), detail);
            // A quoted RTMR3 the log does not replay to: what was compared, and
            // where they part (the whole log was sent: a continued one that does not
            // replay is EventLogPrefixMismatch above).
            if failed.iter().any(|r| r.code == ReasonCode::Rtmr3Mismatch) && from == 0 {
                refusal = refusal.with_explanation(explain::rtmr3(
                    &b.rtmrs[3].0,
                    &events,
                    input.accepted,
                ));
            }
            // A refusal for the TCB status carries the advisory ids, as a list.
            return Err(if failed.iter().any(|r| r.code == ReasonCode::TcbStatus) {
                refusal.with_advisories(&f.advisory_ids)
            } else {
                refusal
            });
        }
        Ok(TdxAttestation {
            verified: f.verified,
            tcb_status: f.tcb_status,
            advisory_ids: f.advisory_ids,
            fmspc: f.fmspc,
            mrtd: b.mrtd,
            rtmrs: b.rtmrs,
            td_attributes: b.td_attributes,
            event_log_events: usize::try_from(state.count).unwrap_or(usize::MAX),
            event_log_bound: usize::try_from(state.bound).unwrap_or(usize::MAX),
            verified_at_ns: now.get(),
            provenance: f.provenance,
            reasons: verdict.reasons,
            freshness: TdxFreshness::default(),
            event_log_state: Some(state),
        })
    }
}

/// The service-TD binding and migration attributes of a quote or TDREPORT body.
fn td_binding(b: &TdReport) -> policy::tdx::TdBinding {
    policy::tdx::TdBinding {
        mrservicetd: b.service_td().map(|m| m.0),
        migratable: b.migratable(),
        servtd_ext: b.servtd_ext(),
    }
}

struct Facts<'a> {
    body: &'a TdReport,
    tcb_status: Option<String>,
    advisory_ids: Vec<String>,
    fmspc: Option<String>,
    verified: bool,
    rtmrs_attested: [bool; 3],
    provenance: Option<crate::model::MrtdProvenance>,
}
