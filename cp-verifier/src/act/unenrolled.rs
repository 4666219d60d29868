//! Unenrolled registrations, aggregated by source (IPv4 address or IPv6 /64): one
//! alert per source and cooldown window, with a count and a sample of claimed agent
//! ids, so a flood cannot flood the alert channel.

use crate::model::{Alert, AlertKind};
use crate::plane::ControlPlane;
use provenant_base::clock::UnixNanos;
use std::net::IpAddr;

/// Sources whose unenrolled registrations are aggregated at most; past it new sources
/// share one bucket (still one alert per window).
pub(crate) const MAX_UNENROLLED_SOURCES: usize = 10_000;

/// Claimed agent ids kept as a sample per source and window.
pub(crate) const UNENROLLED_SAMPLE: usize = 5;

/// The bucket of sources past [`MAX_UNENROLLED_SOURCES`].
pub(crate) const OTHER_SOURCES: &str = "(other sources)";

/// Unenrolled registrations from one source in the current alert window.
#[derive(Debug, Clone)]
pub(crate) struct SourceWindow {
    start: UnixNanos,
    /// Attempts since the window's alert, not yet reported.
    suppressed: u64,
    /// A few of the agent ids those attempts claimed.
    sample: Vec<String>,
}

/// The aggregation key of a peer address, as text: the source the transport counts
/// connections and rate limits by ([`crate::model::source_addr`]: the IPv4
/// address, or the IPv6 /64).
pub fn source_key(ip: Option<IpAddr>) -> String {
    match ip.map(crate::model::source_addr) {
        Some(IpAddr::V6(net)) => format!("{net}/64"),
        Some(v4) => v4.to_string(),
        None => "unknown".into(),
    }
}

impl ControlPlane {
    /// An unenrolled registration from `source`: at most one alert per source per
    /// `alert_cooldown`, the attempts in between counted with a sample of the agent
    /// ids they claimed (reported when the window closes, see
    /// [`ControlPlane::flush_unenrolled`]).
    pub(crate) async fn note_unenrolled(
        &self,
        source: &str,
        agent_id: &str,
        now: UnixNanos,
        e: &str,
    ) {
        let cooldown = self.cfg.alert_cooldown;
        let alert = {
            let mut m = self.unenrolled.lock().unwrap_or_else(|e| e.into_inner());
            let key = if m.len() >= MAX_UNENROLLED_SOURCES && !m.contains_key(source) {
                OTHER_SOURCES
            } else {
                source
            };
            match m.get_mut(key) {
                Some(w) if now.since(w.start) < cooldown => {
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
                            start: now,
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
    pub(crate) async fn flush_unenrolled(&self, now: UnixNanos) {
        let cooldown = self.cfg.alert_cooldown;
        let mut alerts = Vec::new();
        {
            let mut m = self.unenrolled.lock().unwrap_or_else(|e| e.into_inner());
            m.retain(|source, w| {
                if now.since(w.start) < cooldown {
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
                        now.since(w.start).as_secs_f64(),
                        w.sample.join(", ")
                    ),
                ));
                *w = SourceWindow {
                    start: now,
                    suppressed: 0,
                    sample: Vec::new()};
                true
            });
        }
        if !alerts.is_empty() {
            self.store_alerts(alerts).await;
        }
    }
}
