//! `cp-verifier`: the Provenant control plane's command line.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use cp_verifier::config::CpConfig;
use guest_agent::clock::SystemClock;

/// Verifies what Provenant agents report and keeps the fleet's state.
#[derive(Parser)]
#[command(name = "cp-verifier", version, about)]
struct Cli {
    /// Log as JSON lines instead of text.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

// Parsed once at start-up; boxing the `verify bundle` arguments would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Cmd {
    /// Serve the control plane's API and dashboard.
    Serve {
        /// The control plane's TOML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run a control plane on a temporary SQLite database with one software-tier
    /// agent, registered and pulsing every 2 s, and print the URLs.
    Demo {
        /// Address for the control plane (port 0 picks a free port).
        #[arg(long, default_value = "127.0.0.1:7400")]
        listen: SocketAddr,
    },
    /// Verify evidence offline and print the result as one JSON object.
    #[command(subcommand)]
    Verify(VerifyCmd),
}

#[derive(Subcommand)]
enum VerifyCmd {
    /// Verify a TDX quote: signatures and PCK chain, plus TCB status with collateral.
    /// Exit 0 verified, 1 refused (error JSON on stdout), 2 usage error.
    Quote {
        /// The quote: raw binary or hex text (with or without 0x).
        #[arg(long)]
        quote: PathBuf,
        /// dcap-qvl QuoteCollateralV3 JSON. Without it only signatures and the PCK
        /// chain are checked, and the output says "collateral":"absent".
        #[arg(long)]
        collateral: Option<PathBuf>,
        /// Verification time, Unix seconds (default: now).
        #[arg(long)]
        at: Option<u64>,
        /// Trust this root CA (DER) instead of Intel's SGX Root CA.
        #[arg(long)]
        root_ca: Option<PathBuf>,
    },
    /// Verify Sigstore bundles offline under a trusted root and an identity policy.
    /// Exit 0 all verified, 1 refused (error JSON on stdout), 2 usage error.
    Bundle {
        /// One JSON bundle, or JSON Lines (one bundle per line; every line must verify).
        #[arg(long)]
        bundle: PathBuf,
        /// `trusted_root.json` (e.g. Sigstore public-good).
        #[arg(long)]
        trusted_root: PathBuf,
        /// The artifact's digest, sha256:HEX or sha512:HEX.
        #[arg(long, conflicts_with = "artifact")]
        digest: Option<String>,
        /// The artifact file.
        #[arg(long)]
        artifact: Option<PathBuf>,
        /// Required OIDC issuer.
        #[arg(long, default_value = policy::identity::GITHUB_ACTIONS_ISSUER)]
        issuer: String,
        /// Required certificate SAN, exact.
        #[arg(long, conflicts_with = "san_regex")]
        san: Option<String>,
        /// Required certificate SAN, a regex matched against the whole SAN.
        #[arg(long)]
        san_regex: Option<String>,
        /// Required source repository, OWNER/NAME.
        #[arg(long)]
        source_repo: Option<String>,
        /// Required source ref, e.g. refs/heads/main.
        #[arg(long)]
        source_ref: Option<String>,
        /// Required signer workflow, OWNER/REPO/.github/workflows/FILE.
        #[arg(long)]
        signer_workflow: Option<String>,
        /// Required in-toto predicate type.
        #[arg(long)]
        predicate_type: Option<String>,
        /// Verification time, Unix seconds (default: now).
        #[arg(long)]
        at: Option<u64>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Serve { config } => {
            guest_agent::logging::init(cli.log_json, "info");
            let cfg = CpConfig::load(&config)?;
            let listen = cfg.listen;
            let (_cp, router) = cp_verifier::start(cfg, Arc::new(SystemClock)).await?;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            tracing::info!(listen = %listener.local_addr()?, "control plane listening");
            axum::serve(listener, router)
                .with_graceful_shutdown(guest_agent::logging::shutdown_signal())
                .await?;
            Ok(())
        }
        Cmd::Verify(VerifyCmd::Quote {
            quote,
            collateral,
            at,
            root_ca,
        }) => {
            let at = at
                .unwrap_or_else(|| guest_agent::clock::Clock::now_ns(&SystemClock) / 1_000_000_000);
            let o = cp_verifier::verify_cli::verify_quote_cmd(
                &quote,
                collateral.as_deref(),
                at,
                root_ca.as_deref(),
            );
            println!("{}", o.json);
            std::process::exit(o.code);
        }
        Cmd::Verify(VerifyCmd::Bundle {
            bundle,
            trusted_root,
            digest,
            artifact,
            issuer,
            san,
            san_regex,
            source_repo,
            source_ref,
            signer_workflow,
            predicate_type,
            at,
        }) => {
            let at = at
                .unwrap_or_else(|| guest_agent::clock::Clock::now_ns(&SystemClock) / 1_000_000_000);
            let o =
                cp_verifier::verify_cli::verify_bundle_cmd(&cp_verifier::verify_cli::BundleArgs {
                    bundle,
                    trusted_root,
                    digest,
                    artifact,
                    issuer: Some(issuer),
                    san,
                    san_regex,
                    source_repo,
                    source_ref,
                    signer_workflow,
                    predicate_type,
                    at,
                });
            println!("{}", o.json);
            std::process::exit(o.code);
        }
        Cmd::Demo { listen } => {
            // Quieter by default so the printed URLs stand out; RUST_LOG overrides.
            guest_agent::logging::init(cli.log_json, "warn");
            cp_verifier::demo::run(listen).await
        }
    }
}
