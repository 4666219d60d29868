//! The control plane's Prometheus metrics (`GET /metrics`, read access), in the
//! OpenMetrics text format of the Prometheus project's own client library:
//! - `provenant_pulses_total{result}`: pulses by outcome (`accepted` or the refusal's
//!   wire kind, e.g. `Replay`, `BadSignature`, `ClockDesync`);
//! - `provenant_registrations_total{result}` and `provenant_registration_seconds`:
//!   registrations by outcome and how long each took, verification included;
//! - `provenant_verify_seconds{verifier}`: time in each verifier (`quote`, `images`);
//! - `provenant_store_write_seconds`: one atomic state change, commit included;
//! - `provenant_agents{badge,tier}`, `provenant_queue_depth{queue}`: read at scrape.
//!
//! Labels take values from closed sets (outcome kinds, verifier names, badges,
//! tiers, queue names): nothing an agent sends becomes a label.

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// The content type of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// An outcome label: `accepted`, or the refusal's wire kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    /// The outcome.
    pub result: &'static str,
}

/// A verifier label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Verifier {
    /// `quote` or `images`.
    pub verifier: &'static str,
}

/// An agents-gauge label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Standing {
    /// green, yellow, red, unknown.
    pub badge: &'static str,
    /// The registration tier.
    pub tier: &'static str,
}

/// A queue label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Queue {
    /// The queue's name, as `/healthz` shows it.
    pub queue: &'static str,
}

type Timings<L> = Family<L, Histogram, fn() -> Histogram>;

/// 0.25 ms to about 8 s, doubling.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

/// The metrics and their registry.
pub struct Metrics {
    registry: Mutex<Registry>,
    /// Pulses by outcome.
    pub pulses: Family<Outcome, Counter>,
    /// Registrations by outcome.
    pub registrations: Family<Outcome, Counter>,
    /// Registration latency.
    pub registration_seconds: Histogram,
    /// Time per verifier.
    pub verify_seconds: Timings<Verifier>,
    /// One state change's write, commit included.
    pub store_write_seconds: Histogram,
    /// Agents by badge and tier (set at scrape).
    pub agents: Family<Standing, Gauge>,
    /// Queue depths (set at scrape).
    pub queues: Family<Queue, Gauge>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Every metric, registered.
    pub fn new() -> Metrics {
        let mut r = Registry::with_prefix("provenant");
        let m = Metrics {
            registry: Mutex::new(Registry::default()),
            pulses: Family::default(),
            registrations: Family::default(),
            registration_seconds: latency(),
            verify_seconds: Family::new_with_constructor(latency),
            store_write_seconds: latency(),
            agents: Family::default(),
            queues: Family::default(),
        };
        r.register("pulses", "Pulses by outcome", m.pulses.clone());
        r.register(
            "registrations",
            "Registrations by outcome",
            m.registrations.clone(),
        );
        r.register(
            "registration_seconds",
            "Time to answer a registration, verification included",
            m.registration_seconds.clone(),
        );
        r.register(
            "verify_seconds",
            "Time spent in each verifier",
            m.verify_seconds.clone(),
        );
        r.register(
            "store_write_seconds",
            "Time to write one state change, commit included",
            m.store_write_seconds.clone(),
        );
        r.register("agents", "Agents by badge and tier", m.agents.clone());
        r.register("queue_depth", "Entries waiting per queue", m.queues.clone());
        *m.registry.lock().unwrap_or_else(|e| e.into_inner()) = r;
        m
    }

    /// Counts a pulse's outcome.
    pub fn pulse(&self, result: &'static str) {
        self.pulses.get_or_create(&Outcome { result }).inc();
    }

    /// Counts a registration's outcome and its time.
    pub fn registration(&self, result: &'static str, took: Duration) {
        self.registrations.get_or_create(&Outcome { result }).inc();
        self.registration_seconds.observe(took.as_secs_f64());
    }

    /// Records time spent in `verifier`.
    pub fn verified(&self, verifier: &'static str, took: Duration) {
        self.verify_seconds
            .get_or_create(&Verifier { verifier })
            .observe(took.as_secs_f64());
    }

    /// The OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let r = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &r);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_histograms_and_gauges_are_exposed() {
        let m = Metrics::new();
        m.pulse("accepted");
        m.pulse("accepted");
        m.pulse("Replay");
        m.registration("accepted", Duration::from_millis(3));
        m.verified("quote", Duration::from_millis(1));
        m.agents
            .get_or_create(&Standing {
                badge: "yellow",
                tier: "software",
            })
            .set(4);
        let t = m.encode();
        assert!(
            t.contains("provenant_pulses_total{result=\"accepted\"} 2"),
            "{t}"
        );
        assert!(
            t.contains("provenant_pulses_total{result=\"Replay\"} 1"),
            "{t}"
        );
        assert!(t.contains("provenant_registration_seconds_count 1"), "{t}");
        assert!(
            t.contains("provenant_verify_seconds_count{verifier=\"quote\"} 1"),
            "{t}"
        );
        assert!(
            t.contains("provenant_agents{badge=\"yellow\",tier=\"software\"} 4"),
            "{t}"
        );
        assert!(t.ends_with("# EOF\n"), "{t}");
    }
}
