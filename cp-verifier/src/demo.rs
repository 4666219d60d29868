//! `cp-verifier demo`: a control plane on embedded SQLite in a temporary directory,
//! plus one agent in software mode with a fresh key, enrolled, registered and
//! pulsing every 2 s. Everything is real: the agent signs, the control plane
//! verifies and stores; only the key and the data directory are throwaway.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use guest_agent::agent::Agent;
use guest_agent::config::AgentConfig;
use guest_agent::quote::NoTee;
use guest_agent::signer::{KeySigner, Signer};
use guest_agent::state::Phase;
use provenant_base::clock::SystemClock;

use crate::config::{CpConfig, EnrolledKey};

/// The demo agent's id.
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

/// A throwaway CA and a server certificate it signs for `localhost`, 127.0.0.1, ::1
/// and `ip`: `(ca.pem, server cert PEM, server key PEM)`.
pub fn throwaway_tls(ip: std::net::IpAddr) -> anyhow::Result<(String, String, String)> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose, SanType,
    };
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name
        .push(DnType::CommonName, "Provenant demo CA (throwaway)");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key)?;
    let key = KeyPair::generate()?;
    let mut p = CertificateParams::new(vec!["localhost".to_string()])?;
    p.distinguished_name
        .push(DnType::CommonName, "Provenant demo control plane");
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let mut ips = vec![
        std::net::IpAddr::from([127, 0, 0, 1]),
        std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
    ];
    if !ip.is_unspecified() && !ips.contains(&ip) {
        ips.push(ip);
    }
    p.subject_alt_names
        .extend(ips.into_iter().map(SanType::IpAddress));
    let cert = p.signed_by(&key, &ca_cert, &ca_key)?;
    Ok((ca_cert.pem(), cert.pem(), key.serialize_pem()))
}

/// Runs the demo on `listen` until Ctrl-C (or SIGTERM), printing its URLs and paths;
/// the temporary directory is removed on exit.
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
    let viewer: [u8; 24] = rand::random();
    let viewer = hex::encode(viewer);
    let viewer_path = root.join("viewer.token");
    write_private(&viewer_path, &viewer)?;
    let (ca_pem, cert_pem, tls_key_pem) = throwaway_tls(listen.ip())?;
    let ca_path = root.join("ca.pem");
    std::fs::write(&ca_path, &ca_pem)?;
    let cert_path = root.join("cp-cert.pem");
    std::fs::write(&cert_path, &cert_pem)?;
    let tls_key_path = root.join("cp-key.pem");
    write_private(&tls_key_path, &tls_key_pem)?;
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
    cfg.viewer_token_file = Some(viewer_path.clone());
    cfg.tls = Some(crate::config::TlsConfig {
        cert_file: cert_path,
        key_file: tls_key_path,
        client_ca_file: None,
        operator_ca_file: None,
    });
    // A throwaway EAR signing key, so relying parties' tokens work in the demo too.
    let ear_key = root.join("ear.key");
    {
        use p256::pkcs8::EncodePrivateKey;
        let k =
            p256::ecdsa::SigningKey::from_slice(&rand::random::<[u8; 32]>()).context("EAR key")?;
        let pem = k
            .to_pkcs8_pem(p256::pkcs8::LineEnding::LF)
            .context("EAR key PEM")?;
        write_private(&ear_key, &pem)?;
    }
    cfg.ear = Some(crate::judge::ear::EarConfig {
        signing_key_file: ear_key,
        ttl: Duration::from_secs(300),
    });
    cfg.enrollment.keys.push(EnrolledKey {
        agent_id: DEMO_AGENT.into(),
        fingerprint: fingerprint.clone(),
    });
    let bound = crate::bind(cfg, Arc::new(SystemClock))
        .await
        .with_context(|| format!("control plane on {listen} (try --listen 127.0.0.1:0)"))?;
    let addr = bound.addr;
    tokio::spawn(bound.serve(std::future::pending()));
    // Names the certificate carries: an unspecified listen address is reached as
    // 127.0.0.1.
    let host = if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    };

    let agent_cfg_path = root.join("agent.toml");
    std::fs::write(
        &agent_cfg_path,
        format!(
            "agent_id = \"{DEMO_AGENT}\"\ncontrol_plane = \"https://{host}\"\n\
             control_plane_ca_file = \"{}\"\nheartbeat_interval = \"2s\"\n\
             listen = \"127.0.0.1:0\"\nkey_file = \"{}\"\npolicy_files = [\"{}\"]\n\
             collect_workloads = {}\n",
            ca_path.display(),
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
    let agent_api = guest_agent::api::router(agent.state(), agent.clock());
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
    writeln!(
        out,
        "  control plane   https://{host}/ (TLS from a throwaway CA: {})",
        ca_path.display()
    )?;
    writeln!(
        out,
        "  dashboard       https://{host}/agents?token={viewer}"
    )?;
    writeln!(
        out,
        "                  (the browser warns about the throwaway CA unless you import ca.pem; the \
         token then lives in a private cookie)"
    )?;
    writeln!(out, "  agents (JSON)   https://{host}/api/v1/agents")?;
    writeln!(out, "  alerts (JSON)   https://{host}/api/v1/alerts")?;
    writeln!(
        out,
        "  EAR token       https://{host}/api/v1/agents/{DEMO_AGENT}/ear (JWT; key at /.well-known/jwks.json)"
    )?;
    writeln!(
        out,
        "  curl            curl --cacert {} -H 'Authorization: Bearer {viewer}' https://{host}/api/v1/agents",
        ca_path.display()
    )?;
    writeln!(
        out,
        "  viewer token    {} (read access; the operator token also reads)",
        viewer_path.display()
    )?;
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

    provenant_base::logging::shutdown_signal().await;
    drop(dir);
    Ok(())
}
