//! Sending the signed chains and measuring what comes back.
//!
//! Each agent sends its pulses one after another (a pulse names the one before, so an
//! agent never has two in flight); all agents run concurrently. A request that fails
//! in transport (the replica died, the connection reset) is sent again, the same
//! bytes, to the next URL after a short pause, at most [`MAX_ATTEMPTS`] times. If the
//! lost answer was an acceptance, the resent pulse is refused as a replay (409): that
//! is counted apart (`replay_after_lost_answer`), and the chain goes on, because the
//! next pulse tells whether the control plane holds it. Any other refusal ends that
//! agent's chain (every later pulse would name a pulse the control plane never
//! accepted), and the rest of the chain is counted as not sent.
#![allow(clippy::as_conversions)] // counts and durations in statistics

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;

/// Most sends of one pulse (the first try plus resends after transport errors).
pub const MAX_ATTEMPTS: u32 = 8;
/// Pause before resending after a transport error.
const RESEND_PAUSE: Duration = Duration::from_millis(100);
/// Most bytes of an answer read.
const MAX_ANSWER: usize = 64 * 1024;

/// What became of one pulse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx.
    Accepted,
    /// 409 on a resend after a transport error: most likely accepted the first time.
    ReplayAfterLostAnswer,
    /// Any other status.
    Refused(u16),
    /// Every attempt failed in transport.
    Lost,
}

/// Latency percentiles in milliseconds, over every answered request.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Latencies {
    /// Answered requests measured.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
}

impl Latencies {
    /// Percentiles (nearest rank) of `micros`.
    pub fn of(mut micros: Vec<u32>) -> Latencies {
        if micros.is_empty() {
            return Latencies::default();
        }
        micros.sort_unstable();
        let n = micros.len();
        let at = |q: f64| {
            let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
            f64::from(micros[rank - 1]) / 1000.0
        };
        Latencies {
            count: n as u64,
            p50_ms: at(0.50),
            p90_ms: at(0.90),
            p99_ms: at(0.99),
            max_ms: f64::from(micros[n - 1]) / 1000.0,
        }
    }
}

/// The result of one run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadReport {
    /// Pulses the plan held.
    pub planned: u64,
    /// Answered 2xx.
    pub accepted: u64,
    /// Refused on a resend after a lost answer (see the module docs).
    pub replay_after_lost_answer: u64,
    /// Other refusals, by status.
    pub refused: BTreeMap<u16, u64>,
    /// Pulses lost to transport errors on every attempt.
    pub lost: u64,
    /// Pulses never sent: the agent's chain was broken, or the run hit its deadline.
    pub not_sent: u64,
    /// Transport errors, each followed by a resend to the next URL.
    pub transport_errors: u64,
    /// From the first request to the last answer.
    pub elapsed_s: f64,
    /// `accepted / elapsed_s`.
    pub accepted_per_s: f64,
    /// Per answered request.
    pub latency: Latencies,
    /// Per agent: the sequence of its last acknowledged pulse (0: none).
    #[serde(skip)]
    pub last_acked: Vec<u64>,
}

#[derive(Default)]
struct AgentRun {
    accepted: u64,
    replay_after_lost_answer: u64,
    refused: BTreeMap<u16, u64>,
    lost: u64,
    not_sent: u64,
    transport_errors: u64,
    micros: Vec<u32>,
    last_acked: u64,
}

/// Sends `chains[i]` (agent `i`'s bodies, in order) by POST to `path` on
/// `targets[i % targets.len()]`, all agents at once, and stops sending at `deadline`
/// after the start. Panics on no target.
pub async fn fire(
    client: &reqwest::Client,
    targets: &[String],
    path: &str,
    chains: Vec<Vec<Vec<u8>>>,
    deadline: Duration,
) -> LoadReport {
    assert!(!targets.is_empty(), "no control-plane URL");
    let planned = chains.iter().map(|c| c.len() as u64).sum();
    let urls: Vec<String> = targets.iter().map(|t| format!("{t}{path}")).collect();
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(chains.len());
    for (i, chain) in chains.into_iter().enumerate() {
        let client = client.clone();
        let urls = urls.clone();
        tasks.push(tokio::spawn(async move {
            run_agent(&client, &urls, i % urls.len(), chain, start + deadline).await
        }));
    }
    let mut r = LoadReport {
        planned,
        ..LoadReport::default()
    };
    let mut micros = Vec::new();
    for t in tasks {
        // A panicked agent task is a bug in this module; its pulses count as lost.
        let a = t.await.unwrap_or_default();
        r.accepted += a.accepted;
        r.replay_after_lost_answer += a.replay_after_lost_answer;
        for (s, n) in a.refused {
            *r.refused.entry(s).or_default() += n;
        }
        r.lost += a.lost;
        r.not_sent += a.not_sent;
        r.transport_errors += a.transport_errors;
        r.last_acked.push(a.last_acked);
        micros.extend(a.micros);
    }
    r.elapsed_s = start.elapsed().as_secs_f64();
    r.accepted_per_s = r.accepted as f64 / r.elapsed_s.max(1e-9);
    r.latency = Latencies::of(micros);
    r
}

async fn run_agent(
    client: &reqwest::Client,
    urls: &[String],
    mut target: usize,
    chain: Vec<Vec<u8>>,
    deadline: Instant,
) -> AgentRun {
    let mut a = AgentRun {
        micros: Vec::with_capacity(chain.len()),
        ..AgentRun::default()
    };
    let total = chain.len() as u64;
    for (i, body) in chain.into_iter().enumerate() {
        if Instant::now() >= deadline {
            a.not_sent = total - i as u64;
            break;
        }
        let mut outcome = Outcome::Lost;
        let mut resent = false;
        for _ in 0..MAX_ATTEMPTS {
            let t0 = Instant::now();
            match send(client, &urls[target], body.clone()).await {
                Ok(status) => {
                    a.micros
                        .push(u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX));
                    outcome = match status {
                        200..=299 => Outcome::Accepted,
                        409 if resent => Outcome::ReplayAfterLostAnswer,
                        s => Outcome::Refused(s),
                    };
                    break;
                }
                Err(_) => {
                    a.transport_errors += 1;
                    resent = true;
                    target = (target + 1) % urls.len();
                    tokio::time::sleep(RESEND_PAUSE).await;
                }
            }
        }
        match outcome {
            Outcome::Accepted => {
                a.accepted += 1;
                a.last_acked = i as u64 + 1;
            }
            Outcome::ReplayAfterLostAnswer => a.replay_after_lost_answer += 1,
            Outcome::Refused(s) => {
                *a.refused.entry(s).or_default() += 1;
                a.not_sent = total - i as u64 - 1;
                break;
            }
            Outcome::Lost => {
                a.lost += 1;
                a.not_sent = total - i as u64 - 1;
                break;
            }
        }
    }
    a
}

/// One POST; the status once the whole answer is read.
async fn send(client: &reqwest::Client, url: &str, body: Vec<u8>) -> Result<u16, reqwest::Error> {
    let mut r = client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await?;
    let status = r.status().as_u16();
    let mut read = 0usize;
    while let Some(c) = r.chunk().await? {
        read += c.len();
        if read > MAX_ANSWER {
            break;
        }
    }
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let l = Latencies::of((1..=100).map(|v| v * 1000).collect());
        assert_eq!(l.count, 100);
        assert_eq!(l.p50_ms, 50.0);
        assert_eq!(l.p90_ms, 90.0);
        assert_eq!(l.p99_ms, 99.0);
        assert_eq!(l.max_ms, 100.0);
        let one = Latencies::of(vec![2500]);
        assert_eq!((one.p50_ms, one.p99_ms), (2.5, 2.5));
        assert_eq!(Latencies::of(Vec::new()).count, 0);
    }
}
