//! Alerts: stored with the state change that caused them, appended to a JSON-lines
//! audit log, and POSTed to every configured webhook.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum AlertKind {
    /// No valid pulse for `missed_heartbeats` intervals: killed or blinded.
    Blinded,
    /// The agent binary changed without a coordinated update.
    BinaryChanged,
    /// A measured policy/config file changed.
    PolicyChanged,
    /// Platform facts changed.
    PlatformChanged,
    /// A replayed or out-of-chain pulse.
    Replay,
    /// A pulse outside the allowed clock skew.
    ClockDesync,
    /// A pulse for a known agent that does not verify under its key.
    BadSignature,
    /// A registration with a key not enrolled for the agent id.
    Unenrolled,
    /// An operator-announced update was observed and became last-known-good.
    ExpectedUpdateApplied,
    /// An operator accepted the current measurements as last-known-good.
    BaselineAccepted,
    /// An agent registered (or registered again).
    Registered,
    /// A blinded agent is pulsing again.
    Recovered,
    /// A registration whose TDX evidence was refused (bad quote, debug TD, REPORTDATA
    /// or RTMR3 mismatch, TCB status not allowed, ...).
    AttestationRefused,
    /// The loaded eBPF programs differ from the last-known-good (like a changed binary).
    EbpfChanged,
    /// The set of running workloads changed (informational).
    WorkloadsChanged,
    /// A workload's image turned red: unsigned, wrongly signed, not covered by the
    /// image policy, or without a registry digest.
    ImageRefused,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Blinded => "Blinded",
            AlertKind::BinaryChanged => "BinaryChanged",
            AlertKind::PolicyChanged => "PolicyChanged",
            AlertKind::PlatformChanged => "PlatformChanged",
            AlertKind::Replay => "Replay",
            AlertKind::ClockDesync => "ClockDesync",
            AlertKind::BadSignature => "BadSignature",
            AlertKind::Unenrolled => "Unenrolled",
            AlertKind::ExpectedUpdateApplied => "ExpectedUpdateApplied",
            AlertKind::BaselineAccepted => "BaselineAccepted",
            AlertKind::Registered => "Registered",
            AlertKind::Recovered => "Recovered",
            AlertKind::AttestationRefused => "AttestationRefused",
            AlertKind::EbpfChanged => "EbpfChanged",
            AlertKind::WorkloadsChanged => "WorkloadsChanged",
            AlertKind::ImageRefused => "ImageRefused",
        }
    }

    pub fn parse(s: &str) -> Option<AlertKind> {
        serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
    }

    /// 1 = critical (page someone), 2 = high, 3 = warning, 4 = informational.
    pub fn severity(self) -> u8 {
        match self {
            AlertKind::Blinded | AlertKind::BinaryChanged | AlertKind::EbpfChanged => 1,
            AlertKind::PolicyChanged
            | AlertKind::PlatformChanged
            | AlertKind::Replay
            | AlertKind::BadSignature
            | AlertKind::Unenrolled
            | AlertKind::AttestationRefused
            | AlertKind::ImageRefused => 2,
            AlertKind::ClockDesync | AlertKind::Recovered => 3,
            AlertKind::ExpectedUpdateApplied
            | AlertKind::BaselineAccepted
            | AlertKind::Registered
            | AlertKind::WorkloadsChanged => 4,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    pub id: String,
    pub at_ns: u64,
    pub agent_id: String,
    pub kind: AlertKind,
    pub severity: u8,
    pub detail: String,
}

impl Alert {
    pub fn new(at_ns: u64, agent_id: &str, kind: AlertKind, detail: impl Into<String>) -> Alert {
        let r: [u8; 8] = rand::random();
        Alert {
            id: format!("{at_ns:020}-{}", hex::encode(r)),
            at_ns,
            agent_id: agent_id.to_string(),
            kind,
            severity: kind.severity(),
            detail: detail.into(),
        }
    }
}

/// Depth of the webhook queue. Past it, alerts still reach the store and the audit
/// log, and the drop is logged; a slow webhook must not stall verification.
const WEBHOOK_QUEUE: usize = 4096;

/// Fans alerts out to the audit log and webhooks.
pub struct AlertSink {
    audit: Option<Mutex<std::fs::File>>,
    audit_path: Option<PathBuf>,
    webhook_tx: Option<tokio::sync::mpsc::Sender<Alert>>,
}

impl AlertSink {
    /// Opens the audit log (append) and starts the webhook sender.
    pub fn new(audit_log: Option<PathBuf>, webhooks: Vec<String>) -> anyhow::Result<AlertSink> {
        let audit = match &audit_log {
            Some(p) => {
                if let Some(dir) = p.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                Some(Mutex::new(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(p)?,
                ))
            }
            None => None,
        };
        let webhook_tx = if webhooks.is_empty() {
            None
        } else {
            let (tx, rx) = tokio::sync::mpsc::channel(WEBHOOK_QUEUE);
            tokio::spawn(deliver(rx, webhooks));
            Some(tx)
        };
        Ok(AlertSink {
            audit,
            audit_path: audit_log,
            webhook_tx,
        })
    }

    /// Emits alerts: stored ones, or ones the store could not take (an outage of the
    /// store must not silence alerts; see `ControlPlane::persist`).
    pub fn emit(&self, alerts: &[Alert]) {
        for a in alerts {
            match a.severity {
                1 | 2 => {
                    tracing::error!(agent_id = %a.agent_id, kind = a.kind.as_str(), severity = a.severity, detail = %a.detail, "alert")
                }
                3 => {
                    tracing::warn!(agent_id = %a.agent_id, kind = a.kind.as_str(), severity = a.severity, detail = %a.detail, "alert")
                }
                _ => {
                    tracing::info!(agent_id = %a.agent_id, kind = a.kind.as_str(), severity = a.severity, detail = %a.detail, "alert")
                }
            }
            if let Some(f) = &self.audit {
                let mut line = serde_json::to_vec(a).unwrap_or_default();
                line.push(b'\n');
                let mut f = f.lock().unwrap_or_else(|e| e.into_inner());
                if let Err(e) = f.write_all(&line) {
                    tracing::error!(path = ?self.audit_path, error = %e, "cannot write the audit log");
                }
            }
            if let Some(tx) = &self.webhook_tx {
                if tx.try_send(a.clone()).is_err() {
                    tracing::error!(alert = %a.id, "webhook queue full; alert not delivered to webhooks (it is in the store and audit log)");
                }
            }
        }
    }
}

/// Delivers each alert to each webhook, retrying with backoff a few times.
async fn deliver(mut rx: tokio::sync::mpsc::Receiver<Alert>, urls: Vec<String>) {
    let http = match reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the webhook client; webhooks disabled");
            return;
        }
    };
    while let Some(alert) = rx.recv().await {
        for url in &urls {
            let mut delay = Duration::from_millis(200);
            for attempt in 1..=4 {
                match http.post(url).json(&alert).send().await {
                    Ok(r) if r.status().is_success() => break,
                    Ok(r) => {
                        tracing::warn!(%url, status = %r.status(), attempt, "webhook refused alert")
                    }
                    Err(e) => {
                        tracing::warn!(%url, error = %e.without_url(), attempt, "webhook unreachable")
                    }
                }
                if attempt == 4 {
                    tracing::error!(%url, alert = %alert.id, "giving up on webhook delivery");
                } else {
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
        }
    }
}
