//! Issue 10, finding 2, with real processes: the agent's start-up gate
//! (`/api/v1/verify`) fails closed when the control plane goes away. A real
//! `cp-verifier serve` and a real `guest-agent run` (software tier) on loopback; the
//! control plane is killed with SIGKILL, and the gate must go 503 within
//! `missed_heartbeats x heartbeat_interval`, then come back when the control plane
//! is restarted on the same store.

use std::time::{Duration, Instant};

use provenant_tests::{free_port, wait_for, Http, Proc};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding02_gate_closes_when_the_control_plane_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let http = Http::new();

    let key = root.join("node.key");
    let out = std::process::Command::new(provenant_tests::binary("guest-agent"))
        .args(["keygen", "--out", key.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let fingerprint = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("fingerprint: ").map(str::to_string))
        .expect("keygen prints the fingerprint");

    let (cp_port, agent_port) = (free_port(), free_port());
    let cp = format!("http://127.0.0.1:{cp_port}");
    let gate = format!("http://127.0.0.1:{agent_port}/api/v1/verify");
    let cp_cfg = root.join("cp.toml");
    std::fs::write(
        &cp_cfg,
        format!(
            r#"listen = "127.0.0.1:{cp_port}"
data_dir = "{data}"
heartbeat_interval = "30s"
sweep_interval = "200ms"

[policy]
allow_software_tier = true

[[enrollment.keys]]
agent_id = "node-gate"
fingerprint = "{fingerprint}"
"#,
            data = root.join("cp-data").display(),
        ),
    )
    .unwrap();
    let agent_cfg = root.join("agent.toml");
    // The gate expires after missed_heartbeats (default 3) x heartbeat_interval = 1.5 s.
    std::fs::write(
        &agent_cfg,
        format!(
            r#"agent_id = "node-gate"
control_plane = "{cp}"
heartbeat_interval = "500ms"
max_backoff = "1s"
request_timeout = "1s"
listen = "127.0.0.1:{agent_port}"
key_file = "{key}"
collect_workloads = false
collect_ebpf = false
insecure_http = true
"#,
            key = key.display(),
        ),
    )
    .unwrap();
    let serve = |log: &std::path::Path| {
        std::fs::create_dir_all(log).unwrap();
        Proc::spawn(
            "cp-verifier",
            &["serve", "--config", cp_cfg.to_str().unwrap()],
            log,
        )
    };
    let mut control = serve(&root.join("cp-1"));
    let _agent = Proc::spawn(
        "guest-agent",
        &["run", "--config", agent_cfg.to_str().unwrap()],
        root,
    );

    // Registered and pulsing: the software tier is yellow, which opens the gate there
    // by default.
    wait_for(30, "gate open", || async {
        let (s, v) = http.get(&gate).await?;
        (s == 200 && v["verdict"]["badge"] == "yellow").then_some(())
    })
    .await;

    // kill -9 the control plane: no more accepted pulses. The gate goes 503 within
    // the expiry (plus one heartbeat and a request timeout of slack).
    control.kill();
    let killed = Instant::now();
    let v = wait_for(10, "gate closed after the control plane died", || async {
        let (s, v) = http.get(&gate).await?;
        (s == 503).then_some(v)
    })
    .await;
    let took = killed.elapsed();
    assert!(
        took <= Duration::from_millis(1500 + 500 + 1000),
        "gate closed after {took:?}"
    );
    assert_eq!(v["acceptable"], false);
    assert_eq!(v["verdict"]["badge"], "unknown", "{v}");
    assert_eq!(v["verdict"]["reasons"][0]["code"], "VerdictExpired", "{v}");
    // And it stays closed while the control plane is away.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(http.get(&gate).await.map(|r| r.0), Some(503));

    // Restarted on the same store: the agent registers again and the gate reopens.
    let _control = serve(&root.join("cp-2"));
    wait_for(30, "gate open again after the restart", || async {
        let (s, _) = http.get(&gate).await?;
        (s == 200).then_some(())
    })
    .await;
}
