//! Revocation: operators delete, disable and enable agents and withdraw builds
//! fleet-wide; enrollment (allowlist, CA, CRL, certificate expiry) is re-checked on
//! every pulse; [`ControlPlane::reload`] (SIGHUP) re-reads the enrollment rules and the
//! configured withdrawals without a restart.
//!
//! Refusals: a pulse from an agent that may no longer speak gets 403 `Revoked`
//! (whatever the cause: deleted, disabled, enrollment gone, withdrawn build), its
//! detail starting with the typed cause (`AgentDeleted`, `AgentDisabled`,
//! `NotEnrolled`, `CertificateExpired`, `CertificateRevoked`, `CrlStale`,
//! `CrlUnusable`, `Withdrawn`, ...). A registration of a withdrawn build gets 403
//! `Withdrawn`; of a disabled agent 403 `Revoked`.
//!
//! It adds its methods to [`crate::plane::ControlPlane`], whose state it works on.

use provenant_base::clock::UnixNanos;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use evidence::Report;
use policy::{Reason, ReasonCode, Status};

use crate::config::{CpConfig, WithdrawnBuild};
use crate::http::error::ApiError;
use crate::model::TdxAttestation;
use crate::model::{AgentRecord, BuildKind, Disabled, Tombstone, Withdrawal};
use crate::model::{Alert, AlertKind};
use crate::plane::ControlPlane;
use crate::register::error::Revocation;
use crate::store::StoreError;

use crate::config::MAX_REASON;
/// Agents named in a `BuildWithdrawn` alert at most.
const MAX_NAMED: usize = 20;

/// Withdrawals and the config file to reload from.
pub struct Revocations {
    config_path: Mutex<Option<PathBuf>>,
    /// From `[[withdrawn]]`; replaced on reload.
    configured: RwLock<Vec<Withdrawal>>,
    /// From the store (`POST /api/v1/withdrawals`).
    stored: RwLock<Vec<Withdrawal>>,
    /// Both, by build.
    index: RwLock<Arc<HashMap<(BuildKind, String), Withdrawal>>>,
    loaded: tokio::sync::OnceCell<()>,
    /// Serialises withdrawal writes with the in-memory list.
    writes: tokio::sync::Mutex<()>,
}

impl Revocations {
    /// The `[[withdrawn]]` builds of `cfg` (validated); stored withdrawals are loaded
    /// later ([`ControlPlane::load_revocations`]).
    pub fn new(cfg: &CpConfig) -> anyhow::Result<Revocations> {
        let r = Revocations {
            config_path: Mutex::new(None),
            configured: RwLock::new(configured(cfg)?),
            stored: RwLock::new(Vec::new()),
            index: RwLock::new(Arc::new(HashMap::new())),
            loaded: tokio::sync::OnceCell::new(),
            writes: tokio::sync::Mutex::new(()),
        };
        r.reindex();
        Ok(r)
    }

    fn reindex(&self) {
        let mut m = HashMap::new();
        for w in self
            .stored
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .chain(
                self.configured
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .iter(),
            )
        {
            m.entry((w.kind, w.digest.clone()))
                .or_insert_with(|| w.clone());
        }
        *self.index.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(m);
    }

    fn find(&self, kind: BuildKind, digest: &str) -> Option<Withdrawal> {
        self.index
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(kind, digest.to_string()))
            .cloned()
    }

    fn all(&self) -> Vec<Withdrawal> {
        let mut v: Vec<Withdrawal> = self
            .configured
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        v.extend(
            self.stored
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .cloned(),
        );
        v
    }
}

fn configured(cfg: &CpConfig) -> anyhow::Result<Vec<Withdrawal>> {
    cfg.withdrawn
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let (kind, digest) = w
                .target()
                .map_err(|e| anyhow::anyhow!("[[withdrawn]] #{}: {e}", i + 1))?;
            Ok(Withdrawal {
                id: format!("config-{}-{}", kind.as_str(), &digest[..16]),
                kind,
                digest,
                reason: w.reason.trim().to_string(),
                at_ns: 0,
                source: "config".into(),
            })
        })
        .collect()
}

/// An optional operator reason, bounded.
fn reason_or(r: Option<String>, default: &str) -> Result<String, ApiError> {
    let r = r.map(|s| s.trim().to_string()).unwrap_or_default();
    if r.chars().count() > MAX_REASON {
        return Err(ApiError::bad_request(
            "InvalidField",
            format!("reason longer than {MAX_REASON} characters"),
        ));
    }
    Ok(if r.is_empty() { default.to_string() } else { r })
}

fn at(t: UnixNanos) -> String {
    time::OffsetDateTime::from_unix_timestamp(t.secs().get())
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| t.to_string())
}

fn store_err(e: StoreError) -> ApiError {
    crate::plane::store_err(e)
}

fn withdrawn_detail(w: &Withdrawal, what: &str) -> String {
    format!(
        "Withdrawn: {what} {} {} was withdrawn fleet-wide ({}{}): {}",
        w.kind.as_str(),
        w.digest,
        if w.source == "config" {
            "[[withdrawn]] in the config".to_string()
        } else {
            format!("by an operator at {}", at(UnixNanos(w.at_ns)))
        },
        if w.source == "config" {
            String::new()
        } else {
            format!(", id {}", w.id)
        },
        w.reason
    )
}

impl ControlPlane {
    /// The config file [`ControlPlane::reload`] re-reads (`serve` sets it).
    pub fn set_config_path(&self, p: PathBuf) {
        *self
            .revocation
            .config_path
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(p);
    }

    /// Re-reads the config file and applies its enrollment rules (allowlist, CA,
    /// CRL) and `[[withdrawn]]` builds. Other settings need a restart. On any error
    /// nothing changes and the rules in force stay.
    pub fn reload(&self) -> anyhow::Result<()> {
        let p = self
            .revocation
            .config_path
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| anyhow::anyhow!("no config file to reload from"))?;
        let cfg = CpConfig::load(&p)?;
        self.reload_from(&cfg)
    }

    /// [`ControlPlane::reload`] from a config already read. Every cached enrollment
    /// decision is dropped.
    pub fn reload_from(&self, cfg: &CpConfig) -> anyhow::Result<()> {
        cfg.check()?;
        let wd = configured(cfg)?;
        self.enroller.reload(&cfg.enrollment)?;
        *self
            .revocation
            .configured
            .write()
            .unwrap_or_else(|e| e.into_inner()) = wd;
        self.revocation.reindex();
        tracing::info!(
            allowlisted = cfg.enrollment.keys.len(),
            ca = cfg.enrollment.ca_file.is_some(),
            crl = cfg.enrollment.crl_file.is_some(),
            withdrawn = cfg.withdrawn.len(),
            "enrollment and withdrawals reloaded"
        );
        Ok(())
    }

    /// Loads the stored withdrawals (once; `start` calls it, the checks below call
    /// it too so no path sees an unloaded list).
    pub async fn load_revocations(&self) -> Result<(), StoreError> {
        self.revocation
            .loaded
            .get_or_try_init(|| async {
                let v = self.store.list_withdrawals().await?;
                *self
                    .revocation
                    .stored
                    .write()
                    .unwrap_or_else(|e| e.into_inner()) = v;
                self.revocation.reindex();
                Ok::<(), StoreError>(())
            })
            .await
            .map(|_| ())
    }

    /// Why the agent may no longer speak, at `now`: disabled, enrollment no longer
    /// holding, or a withdrawn build. Empty: nothing revokes it. Part of the verdict.
    pub(crate) fn revocation_reasons(&self, rec: &AgentRecord, now: UnixNanos) -> Vec<Reason> {
        let mut out = Vec::new();
        if let Some(d) = &rec.disabled {
            out.push(Reason {
                code: ReasonCode::Revoked,
                status: Status::Fail,
                detail: format!(
                    "AgentDisabled: disabled by an operator at {}: {}; POST /api/v1/agents/{}/enable allows it again",
                    at(UnixNanos(d.at_ns)),
                    d.reason,
                    rec.agent_id
                ),
            });
        }
        if let Err(e) = self
            .enroller
            .recheck(&rec.agent_id, &rec.key, &rec.enrollment_chain, now)
        {
            out.push(Reason {
                code: ReasonCode::Revoked,
                status: Status::Fail,
                detail: format!("{e} (enrollment re-checked at {})", at(now)),
            });
        }
        if let Some(w) = self
            .revocation
            .find(BuildKind::AgentBinary, &rec.current.agent_binary.to_hex())
        {
            out.push(Reason {
                code: ReasonCode::Withdrawn,
                status: Status::Fail,
                detail: withdrawn_detail(&w, "it runs"),
            });
        }
        if let Some(a) = &rec.attestation {
            if let Some(w) = self.revocation.find(BuildKind::Mrtd, &a.mrtd.to_hex()) {
                out.push(Reason {
                    code: ReasonCode::Withdrawn,
                    status: Status::Fail,
                    detail: withdrawn_detail(&w, "it booted"),
                });
            }
        }
        out
    }

    /// The pulse pre-check: a revoked agent's pulse is refused 403 `Revoked` (and an
    /// `AgentRevoked` alert raised, at most once per cooldown).
    pub(crate) async fn check_pulse_revocation(
        &self,
        rec: &AgentRecord,
        now: UnixNanos,
    ) -> Result<(), Revocation> {
        self.load_revocations().await?;
        let reasons = self.revocation_reasons(rec, now);
        if reasons.is_empty() {
            return Ok(());
        }
        let detail = reasons
            .iter()
            .map(|r| r.detail.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        self.alert_with_cooldown(
            &rec.agent_id,
            AlertKind::AgentRevoked,
            now,
            &format!("pulse refused: {detail}"),
        )
        .await;
        Err(Revocation::Revoked(detail))
    }

    /// The registration check, after the evidence is verified: a disabled agent is
    /// refused `Revoked`, a withdrawn agent binary or MRTD `Withdrawn`.
    pub(crate) async fn check_register_revocation(
        &self,
        report: &Report,
        attestation: Option<&TdxAttestation>,
        existing: Option<&AgentRecord>,
    ) -> Result<(), Revocation> {
        self.load_revocations().await?;
        if let Some(d) = existing.and_then(|r| r.disabled.as_ref()) {
            return Err(Revocation::Revoked(format!(
                "AgentDisabled: agent {:?} was disabled by an operator at {}: {}; POST /api/v1/agents/{}/enable allows it again",
                report.agent_id,
                at(UnixNanos(d.at_ns)),
                d.reason,
                report.agent_id
            )));
        }
        let mut found = Vec::new();
        if let Some(w) = self.revocation.find(
            BuildKind::AgentBinary,
            &report.measurements.agent_binary.to_hex(),
        ) {
            found.push(withdrawn_detail(&w, "the agent binary is"));
        }
        if let Some(a) = attestation {
            if let Some(w) = self.revocation.find(BuildKind::Mrtd, &a.mrtd.to_hex()) {
                found.push(withdrawn_detail(&w, "the TD's firmware is"));
            }
        }
        if found.is_empty() {
            Ok(())
        } else {
            Err(Revocation::Withdrawn(found.join("; ")))
        }
    }

    /// The refusal of a pulse for an agent without a record: `Revoked` if an
    /// operator deleted it, else `UnknownAgent`.
    pub(crate) async fn unknown_agent(&self, agent_id: &str) -> Revocation {
        match self.store.get_tombstone(agent_id).await {
            Ok(Some(t)) => Revocation::Revoked(format!(
                "AgentDeleted: agent {agent_id:?} (key {}) was deleted by an operator at {}: {}; it must register (and be enrolled) again",
                t.key_fingerprint,
                at(UnixNanos(t.at_ns)),
                t.reason
            )),
            Ok(None) => Revocation::UnknownAgent(format!(
                "agent {agent_id:?} is not registered; register first"
            )),
            Err(e) => Revocation::Store(e),
        }
    }

    /// `DELETE /api/v1/agents/{id}`: removes the agent. Its key can no longer pulse
    /// (403 `Revoked`); a new registration needs enrollment as usual.
    pub async fn delete_agent(
        &self,
        id: &str,
        reason: Option<String>,
    ) -> Result<Tombstone, ApiError> {
        let reason = reason_or(reason, "no reason given")?;
        for _ in 0..3 {
            let now = self.now();
            let Some(rec) = self.load(id, true).await? else {
                return Err(ApiError::NotFound(format!("no agent {id:?}")));
            };
            let tomb = Tombstone {
                agent_id: id.to_string(),
                key_fingerprint: rec.key.fingerprint(),
                at_ns: now.get(),
                reason: reason.clone(),
            };
            let alerts = vec![Alert::new(
                now,
                id,
                AlertKind::AgentDeleted,
                format!(
                    "operator DELETE /api/v1/agents/{id}: agent removed (tier {}, key {}); its pulses are refused from now on: {reason}",
                    rec.tier.as_str(),
                    tomb.key_fingerprint
                ),
            )];
            match self.store.delete_agent(&tomb, rec.version, &alerts).await {
                Ok(()) => {
                    self.cache
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(id);
                    self.alerts.emit(&alerts);
                    return Ok(tomb);
                }
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(store_err(e)),
            }
        }
        Err(ApiError::StoreUnavailable(
            "agent record kept changing; retry".into(),
        ))
    }

    /// `POST /api/v1/agents/{id}/disable` (`disable = true`) and `/enable`.
    pub async fn set_disabled(
        &self,
        id: &str,
        disable: bool,
        reason: Option<String>,
    ) -> Result<crate::http::views::AgentView, ApiError> {
        let reason = reason_or(reason, "no reason given")?;
        self.operator_edit(id, |rec, now| {
            if rec.disabled.is_some() == disable {
                // Already so: nothing to write or audit.
                return None;
            }
            let mut next = rec.clone();
            let (kind, detail) = if disable {
                next.disabled = Some(Disabled {
                    at_ns: now.get(),
                    reason: reason.clone(),
                });
                (
                    AlertKind::AgentDisabled,
                    format!("operator POST /api/v1/agents/{id}/disable: pulses and registrations refused until enabled: {reason}"),
                )
            } else {
                next.disabled = None;
                (
                    AlertKind::AgentEnabled,
                    format!("operator POST /api/v1/agents/{id}/enable: the agent may pulse and register again: {reason}"),
                )
            };
            Some((next, vec![Alert::new(now, id, kind, detail)]))
        })
        .await
    }

    /// `POST /api/v1/withdrawals`: withdraws a build fleet-wide. Agents running it
    /// turn red at once and their next pulse is refused; it can no longer register.
    /// Withdrawing a build already withdrawn returns the existing withdrawal.
    pub async fn withdraw(&self, req: WithdrawnBuild) -> Result<Withdrawal, ApiError> {
        let (kind, digest) = req
            .target()
            .map_err(|e| ApiError::bad_request("InvalidField", e))?;
        self.load_revocations().await?;
        let _w = self.revocation.writes.lock().await;
        if let Some(w) = self.revocation.find(kind, &digest) {
            return Ok(w);
        }
        let now = self.now();
        let w = Withdrawal {
            id: format!("wd-{}", hex::encode(rand::random::<[u8; 8]>())),
            kind,
            digest,
            reason: req.reason.trim().to_string(),
            at_ns: now.get(),
            source: "api".into(),
        };
        // Every decodable record: one corrupt record (alerted by the sweep, its pulses
        // refused) must not keep an operator from withdrawing a build fleet-wide.
        let affected: Vec<String> = self
            .store
            .scan_agents()
            .await
            .map_err(store_err)?
            .into_iter()
            .filter_map(|(_, r)| r.ok())
            .filter(|r| match kind {
                BuildKind::AgentBinary => r.current.agent_binary.to_hex() == w.digest,
                BuildKind::Mrtd => r
                    .attestation
                    .as_ref()
                    .is_some_and(|a| a.mrtd.to_hex() == w.digest),
            })
            .map(|r| r.agent_id)
            .collect();
        let mut named = affected
            .iter()
            .take(MAX_NAMED)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        if affected.len() > MAX_NAMED {
            named.push_str(", ...");
        }
        let alerts = vec![Alert::new(
            now,
            "*",
            AlertKind::BuildWithdrawn,
            format!(
                "operator POST /api/v1/withdrawals: {} {} withdrawn fleet-wide (id {}): {}; {} agent(s) run it and are refused from now on{}",
                kind.as_str(),
                w.digest,
                w.id,
                w.reason,
                affected.len(),
                if named.is_empty() { String::new() } else { format!(": {named}") }
            ),
        )];
        let fresh = self
            .store
            .put_withdrawal(&w, &alerts)
            .await
            .map_err(store_err)?;
        // Re-read: another control plane sharing the store may have withdrawn it too.
        let stored = self.store.list_withdrawals().await.map_err(store_err)?;
        *self
            .revocation
            .stored
            .write()
            .unwrap_or_else(|e| e.into_inner()) = stored;
        self.revocation.reindex();
        if fresh {
            self.alerts.emit(&alerts);
        }
        self.revocation.find(kind, &w.digest).ok_or_else(|| {
            ApiError::Internal("a stored withdrawal is missing when read back".into())
        })
    }

    /// `GET /api/v1/withdrawals`: configured ones first, then stored, oldest first.
    pub async fn withdrawals(&self) -> Result<Vec<Withdrawal>, ApiError> {
        self.load_revocations().await?;
        Ok(self.revocation.all())
    }

    /// `DELETE /api/v1/withdrawals/{id}`: takes back a stored withdrawal (a
    /// configured one is removed from the config file and reloaded).
    pub async fn remove_withdrawal(&self, id: &str) -> Result<Withdrawal, ApiError> {
        self.load_revocations().await?;
        let _w = self.revocation.writes.lock().await;
        let Some(w) = self
            .revocation
            .stored
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|w| w.id == id)
            .cloned()
        else {
            return Err(ApiError::NotFound(format!(
                "no stored withdrawal {id:?} (configured ones are removed from [[withdrawn]] and reloaded)"
            )));
        };
        let now = self.now();
        let alerts = vec![Alert::new(
            now,
            "*",
            AlertKind::BuildWithdrawn,
            format!(
                "operator DELETE /api/v1/withdrawals/{id}: {} {} may register again",
                w.kind.as_str(),
                w.digest
            ),
        )];
        self.store
            .delete_withdrawal(id, &alerts)
            .await
            .map_err(store_err)?;
        self.revocation
            .stored
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|x| x.id != id);
        self.revocation.reindex();
        self.alerts.emit(&alerts);
        Ok(w)
    }
}
