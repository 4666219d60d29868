//! The guest agent's own loop (`guest_agent::agent::Agent::run`) against a real
//! control plane in-process (real HTTP on loopback, real SQLite store), in tier `tdx`
//! on tdx-sim's configfs-tsm and RTMR device, or in the software tier. Issue 10,
//! findings 2 (a refusal closes the gate), 3 (no envelope on `/api/v1/status`) and 6
//! (an upstream outage does not end the pulse loop).

mod harness;
use harness::*;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use guest_agent::agent::Agent;
use guest_agent::config::AgentConfig;
use guest_agent::signer::{KeySigner, Signer};
use serde_json::Value;
use tdx_sim::{Behaviour, ConfigfsKernel, RtmrBehaviour, RtmrDevice, TdReport, TestPki};

struct Node {
    api: String,
    fingerprint: String,
    _dir: tempfile::TempDir,
    _rtmr: Option<RtmrDevice>,
    _kernel: Option<ConfigfsKernel>,
}

/// Starts an agent for `id` against `cp` (in tier `tdx` when `tdx`), on its own
/// pinned clock, and serves its local API. The key is made first so the control
/// plane can enroll it: `enroll` receives the fingerprint before the agent starts.
async fn node(id: &str, tdx: bool, cp_base: &str, clock: Arc<ManualClock>, key: KeySigner) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let (tsm, meas) = (dir.path().join("tsm/report"), dir.path().join("meas"));
    std::fs::create_dir_all(&tsm).unwrap();
    std::fs::create_dir_all(&meas).unwrap();
    let (rtmr, kernel) = if tdx {
        let rtmr = RtmrDevice::start(&meas, RtmrBehaviour::Honest).unwrap();
        let kernel = ConfigfsKernel::start(&tsm, Behaviour::Honest, Some(&rtmr)).unwrap();
        (Some(rtmr), Some(kernel))
    } else {
        (None, None)
    };
    let key_file = dir.path().join("node.key");
    provenant_base::fsutil::write_private(&key_file, key.to_pkcs8_pem().unwrap().as_bytes())
        .unwrap();
    let cfg = dir.path().join("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"agent_id = "{id}"
control_plane = "{cp_base}"
heartbeat_interval = "200ms"
max_backoff = "500ms"
key_file = "{key}"
quote_provider = "{provider}"
tsm_report_dir = "{tsm}"
rtmr_dir = "{meas}"
event_log_file = "{log}"
requote_interval = "1s"
collect_ebpf = false
collect_workloads = false
insecure_http = true
"#,
            key = key_file.display(),
            provider = if tdx { "configfs-tsm" } else { "none" },
            tsm = tsm.display(),
            meas = meas.display(),
            log = dir.path().join("run/rtmr3.jsonl").display(),
        ),
    )
    .unwrap();
    let cfg = AgentConfig::load(&cfg).unwrap();
    let quote = guest_agent::quote::select(&cfg).unwrap();
    let fingerprint = key.public_key().fingerprint();
    let agent = Arc::new(Agent::new(cfg, Some(Arc::new(key)), quote, clock).unwrap());
    let app = guest_agent::api::router(agent.state(), agent.clock());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });
    tokio::spawn(agent.run());
    Node {
        api,
        fingerprint,
        _dir: dir,
        _rtmr: rtmr,
        _kernel: kernel,
    }
}

async fn get(http: &reqwest::Client, url: &str) -> (u16, String) {
    match http.get(url).send().await {
        Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
        Err(e) => (0, e.to_string()),
    }
}

fn json(t: &str) -> Value {
    serde_json::from_str(t).unwrap_or(Value::Null)
}

/// Polls `f` every 100 ms until it gives `Some`, for at most `secs`.
async fn until<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let end = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(std::time::Instant::now() < end, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn has_reason(v: &Value, code: &str) -> bool {
    v["verdict"]["reasons"]
        .as_array()
        .is_some_and(|r| r.iter().any(|r| r["code"] == code))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding06_agent_keeps_pulsing_while_the_requote_cannot_be_verified() {
    let key = KeySigner::generate_ed25519().unwrap();
    let enrolled = cp_verifier::config::EnrolledKey {
        agent_id: "node-loop".into(),
        fingerprint: key.public_key().fingerprint(),
    };
    // The collateral the control plane reads (offline, re-read on each use): moving it
    // away is the upstream outage.
    let files = tempfile::tempdir().unwrap();
    let collateral = files.path().join("collateral.json");
    std::fs::copy(TestPki::collateral_path(), &collateral).unwrap();
    let cp = start(|c| {
        c.enrollment.keys.push(enrolled);
        // The real agent reports this host's kernel clock, which runs no NTP daemon
        // here: unjudged, so the verdict is about the requote alone.
        c.policy.clock_unsynchronised = policy::ClockUnsynchronised::Ignore;
        c.tdx.root_ca_file = Some(TestPki::root_ca_der_path());
        c.tdx.collateral_file = Some(collateral.clone());
        c.policy.tdx = toml::from_str(&format!(
            "mrtd_allowlist = [\"{}\"]\nrtmr_allowlists = [[], [\"{}\"], [\"{}\"]]",
            hex::encode(TdReport::default().mrtd),
            hex::encode(TdReport::default().rtmrs[1]),
            hex::encode(TdReport::default().rtmrs[2])
        ))
        .unwrap();
    })
    .await;
    let clock = Arc::new(ManualClock(AtomicU64::new(T0)));
    let n = node("node-loop", true, &cp.base, clock, key).await;
    let http = reqwest::Client::new();
    let agent_url = format!("{}/api/v1/agents/node-loop", cp.base);

    let view: Value = until(45, "registered in tier tdx, green", || async {
        let (s, v) = cp.get("/api/v1/agents/node-loop").await;
        (s == 200 && v["sequence"].as_u64()? >= 2 && v["badge"] == "green").then_some(v)
    })
    .await;
    assert_eq!(view["tier"], "tdx");
    assert_eq!(view["attestation"]["event_log_events"], 2, "{view}");
    let (s, _) = get(&http, &format!("{}/api/v1/verify", n.api)).await;
    assert_eq!(s, 200);

    // The collateral goes away: every re-quote from now on cannot be verified.
    std::fs::rename(&collateral, files.path().join("elsewhere.json")).unwrap();
    let health: Value = until(45, "the agent sees its re-quote unverified", || async {
        let (_, h) = get(&http, &format!("{}/health", n.api)).await;
        let h = json(&h);
        (!h["requote_failed"].is_null()).then_some(h)
    })
    .await;
    assert!(
        health["requote_failed"]["error"]
            .as_str()
            .unwrap()
            .contains("UpstreamUnavailable"),
        "{health}"
    );
    // It keeps pulsing on its registration, which the control plane keeps.
    let seq = cp.get("/api/v1/agents/node-loop").await.1["sequence"]
        .as_u64()
        .unwrap();
    let view: Value = until(45, "pulses still accepted", || async {
        let (_, v) = cp.get("/api/v1/agents/node-loop").await;
        (v["sequence"].as_u64()? >= seq + 5).then_some(v)
    })
    .await;
    // "The control plane cannot verify", never "the agent is silent".
    assert_eq!(view["state"], "requote-failed", "{view}");
    assert_eq!(view["badge"], "yellow", "{view}");
    assert!(has_reason(&view, "RequoteFailed"), "{view}");
    assert!(!has_reason(&view, "Blinded") && !has_reason(&view, "PulseLate"));
    assert!(cp.alerts("Blinded").await.is_empty());
    let (_, h) = get(&http, &format!("{}/health", n.api)).await;
    let h = json(&h);
    assert_eq!(h["state"], "pulsing", "{h}");
    assert!(has_reason(&h, "RequoteFailed"), "{h}");
    // Yellow does not open a tdx node's gate by default.
    let (s, _) = get(&http, &format!("{}/api/v1/verify", n.api)).await;
    assert_eq!(s, 503);

    // The upstream returns: the retried re-quote succeeds and clears it.
    std::fs::rename(files.path().join("elsewhere.json"), &collateral).unwrap();
    let view: Value = until(45, "re-quoted after the outage", || async {
        let (_, v) = cp.get("/api/v1/agents/node-loop").await;
        (v["state"] == "attested").then_some(v)
    })
    .await;
    assert_eq!(view["badge"], "green", "{view}");
    until(30, "the agent's gate open again", || async {
        let (s, _) = get(&http, &format!("{}/api/v1/verify", n.api)).await;
        let (_, h) = get(&http, &format!("{}/health", n.api)).await;
        (s == 200 && json(&h)["requote_failed"].is_null()).then_some(())
    })
    .await;
    drop(n);
    let _ = agent_url;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding02_a_refused_pulse_closes_the_gate_at_once() {
    let key = KeySigner::generate_ed25519().unwrap();
    let enrolled = cp_verifier::config::EnrolledKey {
        agent_id: "node-sw".into(),
        fingerprint: key.public_key().fingerprint(),
    };
    let cp = start(|c| {
        c.enrollment.keys.push(enrolled);
        c.max_clock_skew = Duration::from_secs(5);
    })
    .await;
    // The agent's own clock never moves: its verdict cannot expire in this test.
    let clock = Arc::new(ManualClock(AtomicU64::new(T0)));
    let n = node("node-sw", false, &cp.base, clock.clone(), key).await;
    let http = reqwest::Client::new();
    until(
        20,
        "software agent's gate open (yellow accepted there)",
        || async {
            let (s, _) = get(&http, &format!("{}/api/v1/verify", n.api)).await;
            (s == 200).then_some(())
        },
    )
    .await;
    let (_, v) = get(&http, &format!("{}/api/v1/verify", n.api)).await;
    assert_eq!(json(&v)["verdict"]["badge"], "yellow", "{v}");

    // The control plane's clock jumps: it refuses every pulse (422 ClockDesync).
    cp.clock.advance(Duration::from_secs(600));
    let v: Value = until(30, "gate closed by the refusal", || async {
        let (s, v) = get(&http, &format!("{}/api/v1/verify", n.api)).await;
        (s == 503).then(|| json(&v))
    })
    .await;
    assert_eq!(v["verdict"]["reasons"][0]["code"], "NoVerdict", "{v}");
    assert!(v["verdict"]["reasons"][0]["detail"]
        .as_str()
        .unwrap()
        .contains("ClockDesync"));
    // Back in sync: pulses are accepted again and the gate reopens.
    clock.advance(Duration::from_secs(600));
    until(30, "gate open again", || async {
        let (s, _) = get(&http, &format!("{}/api/v1/verify", n.api)).await;
        (s == 200).then_some(())
    })
    .await;
    let _ = n.fingerprint;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding03_status_serves_no_envelope() {
    let key = KeySigner::generate_ed25519().unwrap();
    let enrolled = cp_verifier::config::EnrolledKey {
        agent_id: "node-status".into(),
        fingerprint: key.public_key().fingerprint(),
    };
    let cp = start(|c| c.enrollment.keys.push(enrolled)).await;
    let clock = Arc::new(ManualClock(AtomicU64::new(T0)));
    let n = node("node-status", false, &cp.base, clock, key).await;
    let http = reqwest::Client::new();
    let status: String = until(45, "a few pulses accepted", || async {
        let (s, t) = get(&http, &format!("{}/api/v1/status", n.api)).await;
        (s == 200 && json(&t)["pulses_accepted"].as_u64()? >= 2).then_some(t)
    })
    .await;
    // The pulse's position is shown; the signed pulse (replayable by anyone on the
    // node) is not.
    assert!(json(&status)["last_pulse"]["sequence"].as_u64().is_some());
    for leak in [
        "last_pulse_envelope",
        "payloadType",
        "signatures",
        "\"payload\"",
    ] {
        assert!(!status.contains(leak), "{leak} in {status}");
    }
}
