//! `cp-verifier demo`: a control plane on embedded SQLite in a temporary directory,
//! plus one agent in software mode with a fresh key, enrolled, registered and
//! pulsing every 2 s. Everything is real: the agent signs, the control plane
//! verifies and stores; only the key and the data directory are throwaway.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use guest_agent::agent::{Agent, Phase};
use guest_agent::clock::SystemClock;
use guest_agent::config::AgentConfig;
use guest_agent::quote::NoTee;
use guest_agent::signer::{KeySigner, Signer};

use crate::config::{CpConfig, EnrolledKey};

pub const DEMO_AGENT: &str = "demo-agent";

fn write_private(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

pub async fn run(listen: SocketAddr) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("provenant-demo-")
        .tempdir()?;
    let root = dir.path();

    let signer = KeySigner::generate_ed25519().map_err(anyhow::Error::msg)?;
    let fingerprint = signer.public_key().fingerprint();
    let key_path = root.join("agent.key");
    write_private(
        &key_path,
        &signer.to_pkcs8_pem().map_err(anyhow::Error::msg)?,
    )?;
    let token: [u8; 24] = rand::random();
    let token_path = root.join("operator.token");
    write_private(&token_path, &hex::encode(token))?;
    let policy_path = root.join("workload-policy.toml");
    std::fs::write(
        &policy_path,
        "# an example policy file the agent measures\nallow = [\"demo\"]\n",
    )?;

    let mut cfg = CpConfig::with_data_dir(&root.join("cp"));
    cfg.listen = listen;
    cfg.audit_log = Some(root.join("audit.jsonl"));
    cfg.operator_token_file = Some(token_path.clone());
    // The demo agent has no TEE: the software tier must be allowed (a config file
    // refuses it unless it says `allow_software_tier = true`).
    cfg.policy.allow_software_tier = true;
    cfg.enrollment.keys.push(EnrolledKey {
        agent_id: DEMO_AGENT.into(),
        fingerprint: fingerprint.clone(),
    });
    let (_cp, router) = crate::start(cfg, Arc::new(SystemClock)).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (try --listen 127.0.0.1:0)"))?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });

    let agent_cfg_path = root.join("agent.toml");
    std::fs::write(
        &agent_cfg_path,
        format!(
            "agent_id = \"{DEMO_AGENT}\"\ncontrol_plane = \"http://{addr}\"\nheartbeat_interval = \"2s\"\n\
             listen = \"127.0.0.1:0\"\nkey_file = \"{}\"\npolicy_files = [\"{}\"]\n\
             collect_workloads = {}\n",
            key_path.display(),
            policy_path.display(),
            // Workloads only where podman's API is there; otherwise the demo agent would
            // (rightly) say its workloads are unknown.
            std::path::Path::new("/run/podman/podman.sock").exists(),
        ),
    )?;
    let agent_cfg = AgentConfig::load(&agent_cfg_path)?;
    let agent = Arc::new(Agent::new(
        agent_cfg,
        Some(Arc::new(signer)),
        Arc::new(NoTee),
        Arc::new(SystemClock),
    )?);
    let agent_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let agent_addr = agent_listener.local_addr()?;
    let agent_api = agent.router();
    tokio::spawn(async move { axum::serve(agent_listener, agent_api).await });
    let state = agent.state();
    tokio::spawn(agent.run());

    // Wait for the first accepted pulse so the printed URLs show a live agent.
    for _ in 0..100 {
        let s = state.read().unwrap_or_else(|e| e.into_inner()).clone();
        if s.phase == Phase::Pulsing && s.last_pulse.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "Provenant demo: control plane on embedded SQLite + one software-tier agent"
    )?;
    writeln!(out, "  control plane   http://{addr}/")?;
    writeln!(out, "  dashboard       http://{addr}/agents")?;
    writeln!(out, "  agents (JSON)   http://{addr}/api/v1/agents")?;
    writeln!(out, "  alerts (JSON)   http://{addr}/api/v1/alerts")?;
    writeln!(out, "  agent /health   http://{agent_addr}/health")?;
    writeln!(out, "  agent id        {DEMO_AGENT} (key {fingerprint})")?;
    writeln!(
        out,
        "  policy          allow_software_tier = true (demo only: no TEE here, so the agent is yellow)"
    )?;
    writeln!(
        out,
        "  policy file     {} (edit it to see a PolicyChanged alert)",
        policy_path.display()
    )?;
    writeln!(out, "  operator token  {}", token_path.display())?;
    writeln!(
        out,
        "  audit log       {}",
        root.join("audit.jsonl").display()
    )?;
    writeln!(
        out,
        "Press Ctrl-C to stop; the temporary directory is removed on exit."
    )?;
    out.flush()?;
    drop(out);

    guest_agent::logging::shutdown_signal().await;
    drop(dir);
    Ok(())
}
