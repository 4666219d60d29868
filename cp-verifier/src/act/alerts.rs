//! Alerts: stored with the state change that caused them, appended to a JSON-lines
//! audit log, and POSTed to every configured webhook.
//!
//! Webhooks have two lanes. Severity 1-2 alerts are written to the store's outbox in
//! the same transaction as the alert itself, and a supervised sender delivers them
//! with bounded exponential backoff until every webhook acknowledged them, across
//! restarts (at-least-once: each POST carries the alert `id`, also as the
//! `Provenant-Alert-Id` header, so receivers deduplicate). Severity 3-4 alerts are
//! best-effort: a bounded queue, dropped (and counted) when it is full.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use provenant_base::clock::Clock;
use serde::Serialize;

use crate::config::redact_url;
use crate::model::Alert;
use crate::store::Store;
use crate::supervise::Tasks;

/// Alerts of this severity or more severe (1 = critical) are delivered through the
/// durable outbox; the others are best-effort.
pub const DURABLE_SEVERITY: u8 = 2;

/// Depth of the best-effort webhook queue (severity 3-4). Past it, alerts still
/// reach the store and the audit log, and the drop is counted.
const WEBHOOK_QUEUE: usize = 4096;
/// Outbox entries taken per delivery round.
const OUTBOX_BATCH: u32 = 32;
/// How often the outbox is polled for entries whose retry time came.
const OUTBOX_POLL: Duration = Duration::from_millis(500);
/// First and longest wait before an outbox entry is tried again.
const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(300);
/// One webhook POST at most.
const POST_TIMEOUT: Duration = Duration::from_secs(5);

/// The key under which the outbox remembers that a webhook acknowledged an alert: a
/// digest of its URL, so the URL itself is not copied into the database.
pub fn webhook_key(url: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(url.as_bytes())[..16])
}

/// Wait before retry number `attempts` (1-based) of an outbox entry.
fn retry_delay(attempts: u32) -> Duration {
    let exp = attempts.saturating_sub(1).min(16);
    RETRY_MIN.saturating_mul(1u32 << exp).min(RETRY_MAX)
}

/// Webhook queue figures for `/healthz`.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct WebhookStats {
    /// Severity 3-4 alerts waiting in the best-effort queue.
    pub best_effort_queued: usize,
    /// Severity 3-4 alerts dropped because that queue was full.
    pub best_effort_dropped: u64,
}

/// Fans alerts out to the audit log and webhooks.
pub struct AlertSink {
    audit: Option<Mutex<std::fs::File>>,
    audit_path: Option<PathBuf>,
    best_effort: Option<tokio::sync::mpsc::Sender<Alert>>,
    dropped: AtomicU64,
    outbox_wake: Option<Arc<tokio::sync::Notify>>,
}

impl AlertSink {
    /// Opens the audit log (append) and starts the supervised webhook senders (needs
    /// a Tokio runtime).
    pub fn new(
        audit_log: Option<PathBuf>,
        webhooks: Vec<String>,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        tasks: &Tasks,
    ) -> anyhow::Result<AlertSink> {
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
        store.set_webhook_outbox(!webhooks.is_empty());
        let (best_effort, outbox_wake) = if webhooks.is_empty() {
            (None, None)
        } else {
            let http = reqwest::Client::builder()
                .timeout(POST_TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|e| anyhow::anyhow!("cannot build the webhook client: {e}"))?;
            let urls = Arc::new(webhooks);
            let (tx, rx) = tokio::sync::mpsc::channel(WEBHOOK_QUEUE);
            let rx = Arc::new(tokio::sync::Mutex::new(rx));
            {
                let (http, urls) = (http.clone(), urls.clone());
                tasks.spawn("webhook-best-effort", move || {
                    deliver_best_effort(rx.clone(), http.clone(), urls.clone())
                });
            }
            let wake = Arc::new(tokio::sync::Notify::new());
            {
                let wake = wake.clone();
                tasks.spawn("webhook-outbox", move || {
                    deliver_outbox(
                        store.clone(),
                        clock.clone(),
                        wake.clone(),
                        http.clone(),
                        urls.clone(),
                    )
                });
            }
            (Some(tx), Some(wake))
        };
        Ok(AlertSink {
            audit,
            audit_path: audit_log,
            best_effort,
            dropped: AtomicU64::new(0),
            outbox_wake,
        })
    }

    /// Emits alerts: durable ones (severity 1-2 ones are in the store's webhook outbox
    /// too), or ones the store could not take (an outage of the store must not silence
    /// alerts; see `ControlPlane::persist`).
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
            if a.severity <= DURABLE_SEVERITY {
                if let Some(w) = &self.outbox_wake {
                    w.notify_one();
                }
            } else if let Some(tx) = &self.best_effort {
                if tx.try_send(a.clone()).is_err() {
                    let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                    tracing::warn!(alert = %a.id, severity = a.severity, dropped = n, "best-effort webhook queue full; alert not sent to webhooks (it is in the store and audit log)");
                }
            }
        }
    }

    /// Emits alerts the store could not take: as [`AlertSink::emit`], and the durable
    /// ones (severity 1-2), which have no outbox entry to be delivered from, are sent
    /// to the webhooks at once through the best-effort lane. When the store takes them
    /// later (under the same id) the durable lane may deliver them again: receivers
    /// deduplicate by alert id (at-least-once).
    pub fn emit_unstored(&self, alerts: &[Alert]) {
        self.emit(alerts);
        for a in alerts.iter().filter(|a| a.severity <= DURABLE_SEVERITY) {
            if let Some(tx) = &self.best_effort {
                if tx.try_send(a.clone()).is_err() {
                    let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                    tracing::warn!(alert = %a.id, severity = a.severity, dropped = n, "webhook queue full; an alert the store could not take was not sent to webhooks (it is in the audit log)");
                }
            }
        }
    }

    /// The best-effort webhook queue's current depth and drop count.
    pub fn stats(&self) -> WebhookStats {
        WebhookStats {
            best_effort_queued: self
                .best_effort
                .as_ref()
                .map(|t| t.max_capacity() - t.capacity())
                .unwrap_or(0),
            best_effort_dropped: self.dropped.load(Ordering::Relaxed),
        }
    }
}

/// POSTs one alert; `Ok` when the webhook answered 2xx.
async fn post(http: &reqwest::Client, url: &str, alert: &Alert) -> Result<(), String> {
    match http
        .post(url)
        .header("Provenant-Alert-Id", &alert.id)
        .json(alert)
        .send()
        .await
    {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(format!("answered {}", r.status())),
        Err(e) => Err(provenant_base::errors::chain(&e.without_url())),
    }
}

/// The durable lane: delivers outbox entries until every webhook acknowledged them.
async fn deliver_outbox(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    wake: Arc<tokio::sync::Notify>,
    http: reqwest::Client,
    urls: Arc<Vec<String>>,
) {
    loop {
        let now = clock.now();
        // Only the fleet leader delivers (with replicas on a shared store, two
        // replicas reading the same due entry would post it twice).
        let due = if !store.fleet_leader().await {
            Vec::new()
        } else {
            match store.outbox_due(now, OUTBOX_BATCH).await {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the webhook outbox");
                    Vec::new()
                }
            }
        };
        let full = u32::try_from(due.len()).is_ok_and(|n| n >= OUTBOX_BATCH);
        for item in due {
            let mut delivered = item.delivered.clone();
            let mut failed = Vec::new();
            for url in urls.iter() {
                let k = webhook_key(url);
                if delivered.contains(&k) {
                    continue;
                }
                match post(&http, url, &item.alert).await {
                    Ok(()) => delivered.push(k),
                    Err(why) => failed.push((redact_url(url), why)),
                }
            }
            let r = if failed.is_empty() {
                store.outbox_done(&item.alert.id).await
            } else {
                let attempts = item.attempts.saturating_add(1);
                let delay = retry_delay(attempts);
                for (url, why) in &failed {
                    tracing::warn!(webhook = %url, alert = %item.alert.id, attempts, retry_in_s = delay.as_secs(), error = %why, "webhook delivery failed; will retry");
                }
                let next = clock.now().saturating_add(delay);
                store
                    .outbox_retry(&item.alert.id, &delivered, attempts, next)
                    .await
            };
            if let Err(e) = r {
                tracing::warn!(alert = %item.alert.id, error = %e, "cannot update the webhook outbox");
            }
        }
        if !full {
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(OUTBOX_POLL) => {}
            }
        }
    }
}

/// The best-effort lane: each alert to each webhook, one quick retry.
async fn deliver_best_effort(
    rx: Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<Alert>>>,
    http: reqwest::Client,
    urls: Arc<Vec<String>>,
) {
    let mut rx = rx.lock().await;
    while let Some(alert) = rx.recv().await {
        for url in urls.iter() {
            for attempt in 1..=2 {
                match post(&http, url, &alert).await {
                    Ok(()) => break,
                    Err(why) if attempt == 2 => {
                        tracing::warn!(webhook = %redact_url(url), alert = %alert.id, error = %why, "best-effort webhook delivery failed; not retried")
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AlertKind;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);
    impl Write for Captured {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Failed deliveries on both lanes are logged with the webhook's scheme and host
    /// only: the path (here a secret token) never reaches the log.
    #[tokio::test]
    async fn finding09_webhook_urls_never_logged_in_full() {
        let logs = Captured::default();
        let w = logs.clone();
        let sub = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || w.clone())
            .finish();
        let _g = tracing::subscriber::set_default(sub);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}/hook/SECRET-TOKEN?key=SECRET-KEY");
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(
            crate::store::sqlite::SqliteStore::open(dir.path())
                .await
                .unwrap(),
        );
        let tasks = Tasks::default();
        let clock: Arc<dyn Clock> = Arc::new(provenant_base::clock::SystemClock);
        let sink = AlertSink::new(None, vec![url], store.clone(), clock.clone(), &tasks).unwrap();
        let now = clock.now();
        let a = vec![
            Alert::new(now, "node-1", AlertKind::Blinded, "x"),
            Alert::new(now, "node-1", AlertKind::Recovered, "y"),
        ];
        store.insert_alerts(&a).await.unwrap();
        sink.emit(&a);
        let text = || String::from_utf8_lossy(&logs.0.lock().unwrap()).to_string();
        for _ in 0..100 {
            let t = text();
            if t.contains("will retry") && t.contains("not retried") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let t = text();
        assert!(
            t.contains("will retry") && t.contains("not retried"),
            "both lanes failed and logged: {t}"
        );
        assert!(t.contains(&format!("http://127.0.0.1:{port}")), "{t}");
        assert!(!t.contains("SECRET"), "{t}");
        tasks.shutdown();
    }

    #[test]
    fn webhook_urls_are_logged_as_scheme_and_host_only() {
        assert_eq!(
            redact_url("https://user:pw@hooks.example:8443/services/T0/B1/SECRET?token=x"),
            "https://hooks.example:8443"
        );
        assert_eq!(
            redact_url("http://127.0.0.1/hook/SECRET"),
            "http://127.0.0.1"
        );
        assert!(!redact_url("not a url SECRET").contains("SECRET"));
        assert_ne!(webhook_key("http://a/1"), webhook_key("http://a/2"));
        assert_eq!(retry_delay(1), Duration::from_secs(1));
        assert_eq!(retry_delay(3), Duration::from_secs(4));
        assert_eq!(retry_delay(40), RETRY_MAX);
    }
}
