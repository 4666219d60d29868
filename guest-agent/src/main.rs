//! `guest-agent`: the Provenant guest agent's command line.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use evidence::report::HexBytes;
use guest_agent::agent::Agent;
use guest_agent::config::AgentConfig;
use guest_agent::signer::{KeySigner, Signer};
use provenant_base::clock::{Clock as _, SystemClock, UnixSecs};

/// Measures this node, signs what it finds, and keeps the Provenant control plane
/// informed with signed heartbeats.
#[derive(Parser)]
#[command(name = "guest-agent", version, about)]
struct Cli {
    /// Log as JSON lines instead of text.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the agent: register, pulse, serve the local API.
    Run {
        /// The agent's TOML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print one signed report envelope (JSON) to stdout and exit.
    Report {
        #[arg(long, short)]
        config: PathBuf,
        /// The 32-byte challenge to answer, as 64 hex digits (random if omitted).
        #[arg(long)]
        nonce: Option<String>,
    },
    /// The verifying pull gate: resolve IMAGE's digest, verify its signature under
    /// the image policy (`image_policy_file`), pull it by digest through podman, and
    /// record the signer in the RTMR3 event log. Prints JSON; exit 0 pulled,
    /// 1 refused (typed reason), 2 could not run.
    Pull {
        #[arg(long, short)]
        config: PathBuf,
        /// `registry/repo[:tag][@sha256:..]`.
        image: String,
        /// Verify at this time (unix seconds) instead of now.
        #[arg(long)]
        at: Option<i64>,
        /// Verify only: print what would be pulled, pull nothing.
        #[arg(long)]
        verify_only: bool,
    },
    /// Generate an ed25519 identity key (PKCS#8 PEM, mode 0600).
    Keygen {
        /// Where to write the private key.
        #[arg(long, short)]
        out: PathBuf,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Print the public key and fingerprint of a private key file (for enrollment).
    Pubkey {
        #[arg(long, short)]
        key: PathBuf,
    },
}

fn load_signer(cfg: &AgentConfig) -> Result<Option<Arc<dyn Signer>>> {
    match &cfg.key_file {
        None => Ok(None),
        Some(p) => {
            let s = KeySigner::load(p)?;
            Ok(Some(Arc::new(s)))
        }
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    provenant_base::logging::init(cli.log_json, "info");
    match cli.cmd {
        Cmd::Run { config } => {
            let cfg = AgentConfig::load(&config)?;
            let signer = load_signer(&cfg)?;
            let listen = cfg.listen;
            let quote = guest_agent::quote::select(&cfg)?;
            let agent = Arc::new(Agent::new(cfg, signer, quote, Arc::new(SystemClock))?);
            let app = guest_agent::api::router(agent.state(), agent.clock());
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            tracing::info!(%listen, "local API listening");
            let server = axum::serve(listener, app)
                .with_graceful_shutdown(provenant_base::logging::shutdown_signal());
            tokio::select! {
                r = server => r.context("local API failed")?,
                _ = agent.run() => {}
            }
            Ok(())
        }
        Cmd::Report { config, nonce } => {
            let cfg = AgentConfig::load(&config)?;
            let Some(signer) = load_signer(&cfg)? else {
                bail!(
                    "attestation is disabled: {} has no key_file",
                    config.display()
                );
            };
            let nonce = match nonce {
                Some(h) => HexBytes::from_hex(&h).context("--nonce must be 64 hex digits")?,
                None => HexBytes(rand::random()),
            };
            let quote = guest_agent::quote::select(&cfg)?;
            let agent = Agent::new(cfg, Some(signer), quote, Arc::new(SystemClock))?;
            let m = agent.measure().await?;
            let (env, _ev) = agent.build_report(nonce, m, None)?;
            println!("{}", String::from_utf8_lossy(&env.to_json()));
            Ok(())
        }
        Cmd::Pull {
            config,
            image,
            at,
            verify_only,
        } => {
            let cfg = AgentConfig::load(&config)?;
            let now = at.map_or_else(|| SystemClock.now().secs(), UnixSecs);
            use guest_agent::pull;
            let result = if verify_only {
                match pull::verifier(&cfg) {
                    Ok(v) => pull::verify(&v, &image, now)
                        .await
                        .map(|(repo, digest, signer)| {
                            serde_json::json!({
                                "verified": true,
                                "reference": format!("{repo}@{digest}"),
                                "digest": digest,
                                "signer": signer,
                            })
                        }),
                    Err(e) => Err(e),
                }
            } else {
                pull::pull(&cfg, &image, now)
                    .await
                    .map(|p| serde_json::to_value(p).unwrap_or_default())
            };
            match result {
                Ok(v) => {
                    println!("{v}");
                    Ok(())
                }
                Err(e) => {
                    tracing::warn!(image = %image, kind = e.kind(), error = %e, "pull refused");
                    println!(
                        "{}",
                        serde_json::json!({
                            "pulled": false,
                            "error": {
                                "kind": e.kind(),
                                "detail_kind": e.detail_kind(),
                                "detail": e.to_string(),
                            }
                        })
                    );
                    std::process::exit(if e.is_refusal() { 1 } else { 2 });
                }
            }
        }
        Cmd::Keygen { out, force } => {
            let s = KeySigner::generate_ed25519().map_err(anyhow::Error::msg)?;
            let pem = s.to_pkcs8_pem().map_err(anyhow::Error::msg)?;
            write_private(&out, pem.as_bytes(), force)?;
            print_public(&s);
            Ok(())
        }
        Cmd::Pubkey { key } => {
            print_public(&KeySigner::load(&key)?);
            Ok(())
        }
    }
}

fn print_public(s: &KeySigner) {
    use base64::Engine;
    let pk = s.public_key();
    println!("fingerprint: {}", pk.fingerprint());
    println!("algorithm: {}", pk.algorithm().as_str());
    println!(
        "spki: {}",
        base64::engine::general_purpose::STANDARD.encode(pk.spki_der())
    );
}

fn write_private(path: &std::path::Path, bytes: &[u8], force: bool) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).mode(0o600);
    if force {
        o.create(true).truncate(true);
    } else {
        o.create_new(true);
    }
    let mut f = o.open(path).with_context(|| {
        format!(
            "cannot create {} (use --force to overwrite)",
            path.display()
        )
    })?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}
