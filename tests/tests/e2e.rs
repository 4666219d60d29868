//! End to end, with real processes: a `cp-verifier serve` on embedded SQLite and a
//! `guest-agent run` in software mode, talking over loopback HTTP; a real webhook
//! receiver; and an attacker replaying and skewing pulses with the agent's key.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use evidence::report::HexBytes;
use evidence::{Envelope, Pulse, PULSE_PAYLOAD_TYPE};
use guest_agent::agent::sign_payload;
use guest_agent::signer::KeySigner;
use provenant_tests::{alerts_of, free_port, wait_for, Http, Proc};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_and_control_plane_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let http = Http::new();

    // A webhook receiver that records every alert it is sent.
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let sink = received.clone();
    let hook = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push(v);
                "ok"
            }
        }),
    );
    let hl = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/hook", hl.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(hl, hook).await });

    // The node's identity key, made by the agent's own CLI.
    let key = root.join("node.key");
    let out = std::process::Command::new(provenant_tests::binary("guest-agent"))
        .args(["keygen", "--out", key.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let fingerprint = stdout
        .lines()
        .find_map(|l| l.strip_prefix("fingerprint: "))
        .expect("keygen prints the fingerprint")
        .to_string();
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "private key must be owner-only");

    let cp_port = free_port();
    let agent_port = free_port();
    let cp = format!("http://127.0.0.1:{cp_port}");
    let agent_api = format!("http://127.0.0.1:{agent_port}");
    let policy = root.join("policy.toml");
    std::fs::write(&policy, "allow = [\"registry.example/app\"]\n").unwrap();

    std::fs::write(
        root.join("cp.toml"),
        format!(
            r#"listen = "127.0.0.1:{cp_port}"
data_dir = "{data}"
max_clock_skew = "5s"
heartbeat_interval = "30s"
sweep_interval = "200ms"
alert_cooldown = "0s"
audit_log = "{audit}"
webhooks = ["{hook_url}"]

[policy]
allow_software_tier = true
missed_heartbeats = 3

[[enrollment.keys]]
agent_id = "node-e2e"
fingerprint = "{fingerprint}"
"#,
            data = root.join("cp-data").display(),
            audit = root.join("audit.jsonl").display(),
        ),
    )
    .unwrap();
    let agent_cfg = root.join("agent.toml");
    std::fs::write(
        &agent_cfg,
        format!(
            r#"agent_id = "node-e2e"
control_plane = "{cp}"
insecure_http = true
heartbeat_interval = "500ms"
max_backoff = "1s"
listen = "127.0.0.1:{agent_port}"
key_file = "{key}"
policy_files = ["{policy}"]
collect_workloads = false
"#,
            key = key.display(),
            policy = policy.display(),
        ),
    )
    .unwrap();

    // The one-shot report CLI prints a signed envelope that verifies under the key.
    let out = std::process::Command::new(provenant_tests::binary("guest-agent"))
        .args([
            "report",
            "--config",
            agent_cfg.to_str().unwrap(),
            "--nonce",
            &"ab".repeat(32),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let env = Envelope::from_json(&out.stdout).unwrap();
    let signer = KeySigner::load(&key).unwrap();
    let report = env
        .open::<evidence::Report>(guest_agent::signer::Signer::public_key(&signer))
        .unwrap();
    assert_eq!(report.nonce.to_hex(), "ab".repeat(32));
    assert_eq!(report.tier.as_str(), "software");

    // Agent first, control plane down: the agent waits and retries, it does not die.
    let mut agent = Proc::spawn(
        "guest-agent",
        &["run", "--config", agent_cfg.to_str().unwrap()],
        root,
    );
    let health: Value = wait_for(10, "agent /health", || async {
        http.get(&format!("{agent_api}/health")).await.map(|r| r.1)
    })
    .await;
    assert_eq!(health["tier"], "software");
    assert_eq!(health["verdict"]["status"], "unknown");
    let (s, _) = http
        .get(&format!("{agent_api}/api/v1/verify"))
        .await
        .unwrap();
    assert_eq!(s, 503, "no verdict yet: start-up gating must say no");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        agent.is_running(),
        "agent must survive an absent control plane"
    );
    // Between retries the agent reports the control plane as unreachable (it passes
    // through "registering" for the instant of each attempt).
    wait_for(5, "agent reports the control plane unreachable", || async {
        let (_, h) = http.get(&format!("{agent_api}/health")).await?;
        (h["state"] == "unreachable" && h["last_error"].as_str()?.contains("unreachable"))
            .then_some(())
    })
    .await;

    let _cp_proc = Proc::spawn(
        "cp-verifier",
        &["serve", "--config", root.join("cp.toml").to_str().unwrap()],
        root,
    );

    // Registration, then pulses accepted.
    let v: Value = wait_for(20, "agent registered and pulsing", || async {
        let (s, v) = http.get(&format!("{cp}/api/v1/agents/node-e2e")).await?;
        (s == 200 && v["sequence"].as_u64()? >= 3).then_some(v)
    })
    .await;
    assert_eq!(v["tier"], "software");
    assert_eq!(v["badge"], "yellow");
    // The first pulse after the registration carried the node's health, read from
    // this machine's kernel by the real agent.
    assert!(v["health"]["uptime_s"].as_u64().unwrap() > 0, "{v}");
    assert!(v["health"]["mem_total_kib"].as_u64().unwrap() > 0, "{v}");
    assert!(v["health"]["clock"]["synchronised"].is_boolean(), "{v}");
    assert_eq!(v["health"]["disks"][0]["mount"], "/", "{v}");
    let (_, list) = http.get(&format!("{cp}/api/v1/agents")).await.unwrap();
    assert_eq!(list["agents"][0]["agent_id"], "node-e2e");
    let h: Value = wait_for(5, "agent sees a verdict", || async {
        let (_, h) = http.get(&format!("{agent_api}/health")).await?;
        (h["verdict"]["status"] == "warn").then_some(h)
    })
    .await;
    assert_eq!(h["state"], "pulsing");
    assert_eq!(
        http.get(&format!("{agent_api}/api/v1/verify"))
            .await
            .unwrap()
            .0,
        200
    );

    // A changed policy file raises an alert, reaches the webhook, and turns the
    // agent's own start-up gate red.
    std::fs::write(
        &policy,
        "allow = [\"registry.example/app\", \"evil.example/miner\"]\n",
    )
    .unwrap();
    let a: Vec<Value> = wait_for(10, "PolicyChanged alert", || async {
        let a = alerts_of(&http, &cp, "PolicyChanged").await;
        (!a.is_empty()).then_some(a)
    })
    .await;
    assert!(
        a[0]["detail"].as_str().unwrap().contains("policy.toml"),
        "{}",
        a[0]
    );
    assert_eq!(a[0]["severity"], 2);
    wait_for(10, "PolicyChanged webhook", || async {
        received
            .lock()
            .unwrap()
            .iter()
            .any(|v| v["kind"] == "PolicyChanged")
            .then_some(())
    })
    .await;
    wait_for(5, "agent gate closes", || async {
        let (s, _) = http.get(&format!("{agent_api}/api/v1/verify")).await?;
        (s == 503).then_some(())
    })
    .await;

    // A pulse for a sequence already used, signed with the real key (as a captured
    // one would be: pulses travel in clear, though the agent's /api/v1/status no
    // longer serves them), is refused as Replay.
    let (_, view) = http
        .get(&format!("{cp}/api/v1/agents/node-e2e"))
        .await
        .unwrap();
    let old = Pulse {
        version: 1,
        agent_id: "node-e2e".into(),
        partition: "default".into(),
        sequence: view["sequence"].as_u64().unwrap(),
        issued_at_ns: u64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos(),
        )
        .unwrap(),
        nonce: HexBytes(rand::random()),
        previous: HexBytes([0; 32]),
        measurements: Some(serde_json::from_value(view["measurements"].clone()).unwrap()),
        measurements_digest: None,
        health: None,
    };
    let captured: Envelope = sign_payload(&signer, PULSE_PAYLOAD_TYPE, &old).unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (s, v) = http
        .post(&format!("{cp}/api/v1/heartbeat"), captured.to_json())
        .await;
    assert_eq!(
        (s, v["error"]["kind"].as_str()),
        (409, Some("Replay")),
        "{v}"
    );
    // A fork, though, is red: a second pulse the agent's key signed for a used
    // sequence, inside the skew window (only the key holder can make one).
    let mut p: Pulse = captured.peek().unwrap();
    p.nonce = HexBytes(rand::random());
    let fork = sign_payload(&signer, PULSE_PAYLOAD_TYPE, &p).unwrap();
    let (s, v) = http
        .post(&format!("{cp}/api/v1/heartbeat"), fork.to_json())
        .await;
    assert_eq!(
        (s, v["error"]["kind"].as_str()),
        (409, Some("Replay")),
        "{v}"
    );

    // A pulse with a skewed clock, signed with the real key, is ClockDesync.
    let mut p: Pulse = captured.peek().unwrap();
    p.sequence += 1_000;
    p.nonce = HexBytes(rand::random());
    p.issued_at_ns += 60_000_000_000;
    let skewed = sign_payload(&signer, PULSE_PAYLOAD_TYPE, &p).unwrap();
    let (s, v) = http
        .post(&format!("{cp}/api/v1/heartbeat"), skewed.to_json())
        .await;
    assert_eq!(
        (s, v["error"]["kind"].as_str()),
        (422, Some("ClockDesync")),
        "{v}"
    );
    assert!(v["error"]["detail"].as_str().unwrap().contains("ahead of"));

    // The real agent was not disturbed by any of that.
    let before = http
        .get(&format!("{cp}/api/v1/agents/node-e2e"))
        .await
        .unwrap()
        .1["sequence"]
        .as_u64()
        .unwrap();
    wait_for(5, "pulses continue", || async {
        let (_, v) = http.get(&format!("{cp}/api/v1/agents/node-e2e")).await?;
        (v["sequence"].as_u64()? > before + 1).then_some(())
    })
    .await;

    // Kill the agent: within missed_heartbeats x interval it turns Blinded.
    agent.kill();
    let killed_at = Instant::now();
    let b: Vec<Value> = wait_for(10, "Blinded alert", || async {
        let a = alerts_of(&http, &cp, "Blinded").await;
        (!a.is_empty()).then_some(a)
    })
    .await;
    // The last pulse was at most one interval (500 ms) before the kill, and Blinded
    // needs 3 x 500 ms of silence, so it cannot come sooner than ~1 s after the kill.
    assert!(
        killed_at.elapsed() >= Duration::from_millis(950),
        "blinded too early"
    );
    assert_eq!(b[0]["severity"], 1);
    let (_, v) = http
        .get(&format!("{cp}/api/v1/agents/node-e2e"))
        .await
        .unwrap();
    assert_eq!(v["state"], "blinded");
    assert_eq!(v["badge"], "red");
    wait_for(10, "Blinded webhook", || async {
        received
            .lock()
            .unwrap()
            .iter()
            .any(|v| v["kind"] == "Blinded")
            .then_some(())
    })
    .await;

    // The audit log holds the same story.
    let audit = std::fs::read_to_string(root.join("audit.jsonl")).unwrap();
    for k in [
        "Registered",
        "PolicyChanged",
        "Replay",
        "ClockDesync",
        "Blinded",
    ] {
        assert!(
            audit.contains(&format!("\"kind\":\"{k}\"")),
            "audit log lacks {k}:\n{audit}"
        );
    }
    // The dashboard renders the agent.
    let page = http
        .c
        .get(format!("{cp}/agents"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("node-e2e") && page.contains("data-badge=\"red\""),
        "{page}"
    );
}

/// With no key configured the agent says so, serves `/health` as disabled, keeps its
/// start-up gate closed, and sends the control plane nothing at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_without_a_key_is_a_visible_no_op() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let http = Http::new();
    // A stand-in control plane that counts every request it receives.
    let hits: Arc<Mutex<Vec<String>>> = Arc::default();
    let h = hits.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let h = h.clone();
        async move {
            h.lock().unwrap().push(uri.to_string());
            (axum::http::StatusCode::NOT_FOUND, "")
        }
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cp = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });

    let agent_port = free_port();
    let cfg = root.join("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            "agent_id = \"keyless\"\ncontrol_plane = \"{cp}\"\ninsecure_http = true\nheartbeat_interval = \"200ms\"\nlisten = \"127.0.0.1:{agent_port}\"\n"
        ),
    )
    .unwrap();
    let mut agent = Proc::spawn(
        "guest-agent",
        &["run", "--config", cfg.to_str().unwrap()],
        root,
    );
    let api = format!("http://127.0.0.1:{agent_port}");
    let h: Value = wait_for(10, "agent /health", || async {
        http.get(&format!("{api}/health")).await.map(|r| r.1)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(agent.is_running());
    assert_eq!(h["attestation"], "disabled");
    assert_eq!(h["state"], "disabled");
    assert_eq!(h["verdict"]["status"], "unknown");
    assert_eq!(
        http.get(&format!("{api}/api/v1/verify")).await.unwrap().0,
        503
    );
    assert!(
        hits.lock().unwrap().is_empty(),
        "sent {:?}",
        hits.lock().unwrap()
    );
    let log = agent.log_text();
    assert_eq!(log.matches("attestation disabled").count(), 1, "{log}");

    // The one-shot report refuses clearly rather than printing something unsigned.
    let out = std::process::Command::new(provenant_tests::binary("guest-agent"))
        .args(["report", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("attestation is disabled"));
    assert!(out.stdout.is_empty());
}
