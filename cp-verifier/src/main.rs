//! `cp-verifier`: the Provenant control plane's command line.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use cp_verifier::config::CpConfig;
use provenant_base::clock::SystemClock;

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
    /// Apply the PostgreSQL store's schema migrations (`store = "postgres://..."`)
    /// and exit. `serve` also migrates at start-up; this is for doing it ahead.
    MigrateStore {
        /// The control plane's TOML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Move a fleet from the embedded SQLite store to PostgreSQL: agents with their
    /// chains and baselines, tombstones, withdrawals, alerts, the webhook outbox,
    /// pulse nonces and valid cache entries, in one transaction, checked, and
    /// printed as one JSON summary. The source is only read (stop the cp-verifier
    /// using it first); a target already holding a fleet is refused unless
    /// --replace. Exit 0 copied, 1 refused or failed (error JSON on stdout), 2 usage.
    Migrate {
        /// The source: `sqlite:<data_dir>` or `sqlite:<path to provenant.db>`.
        #[arg(long)]
        from: String,
        /// The target: `postgres://user@host/db` (keep the password out of it: it
        /// would show in the process list; use --to-password-file).
        #[arg(long)]
        to: String,
        /// A file (mode 0600) holding the target's password.
        #[arg(long)]
        to_password_file: Option<PathBuf>,
        /// Delete whatever fleet state the target holds, in the same transaction.
        #[arg(long)]
        replace: bool,
    },
    /// Run a control plane on a temporary SQLite database with one software-tier
    /// agent, registered and pulsing every 2 s, and print the URLs.
    #[cfg(feature = "demo")]
    Demo {
        /// Address for the control plane (port 0 picks a free port).
        #[arg(long, default_value = "127.0.0.1:7400")]
        listen: std::net::SocketAddr,
    },
    /// Verify evidence offline and print the result as one JSON object.
    #[command(subcommand)]
    Verify(VerifyCmd),
    /// Intel DCAP collateral for offline use.
    #[command(subcommand)]
    Collateral(CollateralCmd),
    /// Compute a TD's launch measurements offline from the files QEMU is given and
    /// print the measurement manifest (the predicate CI attests). MRTD always;
    /// RTMR1 and RTMR2 with --kernel (direct boot); RTMR0 never (it depends on
    /// ACPI tables and a TD HOB the VMM builds): it is null, with the reason.
    /// Exit 0 manifest, 1 malformed input (error JSON on stdout), 2 usage error.
    Measure(cp_verifier::offline::measure::MeasureArgs),
    /// Measure a control plane (or replicas): register simulated software-tier
    /// agents, send their signed pulse chains, print pulses/s and latency
    /// percentiles as JSON. The agents' keys follow --seed; enroll them first
    /// (--print-enrollment) and allow the software tier. Exit 0 every pulse
    /// accepted, 1 some refused or lost, 2 usage error.
    Loadgen(LoadgenArgs),
}

#[derive(clap::Args)]
struct LoadgenArgs {
    /// Control-plane base URL; repeat for replicas (agent i uses URL i mod n and
    /// moves to the next on a transport error).
    #[arg(long = "url", required = true)]
    urls: Vec<String>,
    /// Simulated agents, all sending at once.
    #[arg(long, default_value_t = 64)]
    agents: usize,
    /// Pulses per agent.
    #[arg(long, default_value_t = 100)]
    pulses: usize,
    /// Names the agents' keys: the same seed, the same keys.
    #[arg(long, default_value = "loadgen")]
    seed: String,
    /// The heartbeat interval the agents declare (at most the control plane's
    /// `heartbeat_interval`).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    interval: std::time::Duration,
    /// Agent ids are PREFIX-0, PREFIX-1, ...
    #[arg(long, default_value = "loadgen")]
    prefix: String,
    /// Extra trusted root (PEM) for an HTTPS control plane with its own CA.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Stop sending after this long (then the rest counts as not sent).
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    max_duration: std::time::Duration,
    /// Print the agents' `[[enrollment.keys]]` TOML and exit.
    #[arg(long)]
    print_enrollment: bool,
}

#[derive(Subcommand)]
enum VerifyCmd {
    /// Verify a TDX quote: signatures and PCK chain, plus TCB status with collateral.
    /// Exit 0 verified, 1 refused (error JSON on stdout), 2 usage error.
    Quote(cp_verifier::offline::verify::QuoteArgs),
    /// Verify Sigstore bundles offline under a trusted root and an identity policy.
    /// Exit 0 all verified, 1 refused (error JSON on stdout), 2 usage error.
    Bundle(cp_verifier::offline::verify::BundleArgs),
    /// Verify a container image signature offline: a cosign simple-signing
    /// signature (containers/image's stored file or cosign's layer JSON) or a
    /// Sigstore bundle, for an image digest, with a cosign key or keyless.
    /// Exit 0 verified, 1 refused (error JSON on stdout), 2 usage error.
    Image(cp_verifier::offline::verify::ImageArgs),
}

#[derive(Subcommand)]
enum CollateralCmd {
    /// Turn raw Intel PCS / PCCS responses (TCB info and QE identity bodies as
    /// served, issuer chains URL-encoded or PEM, CRLs DER, PEM or hex) into the
    /// collateral JSON `verify quote --collateral` and `[tdx] collateral_dir` read,
    /// after checking every signature to the root. Exit 0 written, 1 refused (error
    /// JSON on stdout, nothing written), 2 usage error.
    Import(cp_verifier::offline::collateral::ImportArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Serve { config } => {
            provenant_base::logging::init(cli.log_json, "info");
            let cfg = CpConfig::load(&config)?;
            let insecure = cfg.insecure_http && cfg.tls.is_none();
            let bound = cp_verifier::bind(cfg, Arc::new(SystemClock)).await?;
            let cp = bound.cp.clone();
            cp.set_config_path(config.clone());
            // SIGHUP re-reads the enrollment rules (allowlist, CA, CRL) and the
            // [[withdrawn]] builds; a bad file is logged and the rules in force stay.
            let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                .map_err(|e| anyhow::anyhow!("cannot install the SIGHUP handler: {e}"))?;
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    match cp.reload() {
                        Ok(()) => tracing::info!(config = %config.display(), "reloaded on SIGHUP"),
                        Err(e) => {
                            tracing::error!(config = %config.display(), error = %format!("{e:#}"), "reload on SIGHUP failed; the previous rules stay in force")
                        }
                    }
                }
            });
            match &bound.tls {
                Some(t) => tracing::info!(
                    listen = %bound.addr,
                    mtls = t.mtls,
                    pin = %t.pin,
                    "control plane listening (HTTPS; agents may pin this key with control_plane_pin)"
                ),
                None if insecure => tracing::warn!(
                    listen = %bound.addr,
                    "control plane listening on PLAIN HTTP (insecure_http = true): everything travels in clear"
                ),
                None => {
                    tracing::info!(listen = %bound.addr, "control plane listening (plain HTTP, loopback only)")
                }
            }
            bound
                .serve(provenant_base::logging::shutdown_signal())
                .await?;
            Ok(())
        }
        Cmd::Verify(cmd) => {
            let now = provenant_base::clock::Clock::now(&SystemClock).secs();
            let o = match cmd {
                VerifyCmd::Quote(a) => cp_verifier::offline::verify::verify_quote_cmd(&a, now),
                VerifyCmd::Bundle(a) => cp_verifier::offline::verify::verify_bundle_cmd(&a, now),
                VerifyCmd::Image(a) => cp_verifier::offline::verify::verify_image_cmd(&a, now),
            };
            println!("{}", o.json);
            std::process::exit(o.code);
        }
        Cmd::Collateral(CollateralCmd::Import(a)) => {
            let now = provenant_base::clock::Clock::now(&SystemClock).secs();
            let o = cp_verifier::offline::collateral::import_cmd(&a, now);
            println!("{}", o.json);
            std::process::exit(o.code);
        }
        Cmd::MigrateStore { config } => {
            provenant_base::logging::init(cli.log_json, "info");
            let cfg = CpConfig::load(&config)?;
            cp_verifier::wiring::migrate_store(&cfg).await
        }
        Cmd::Migrate {
            from,
            to,
            to_password_file,
            replace,
        } => {
            provenant_base::logging::init(cli.log_json, "warn");
            let (code, json) = cp_verifier::wiring::migrate_fleet(
                &from,
                &to,
                to_password_file.as_deref(),
                replace,
            )
            .await;
            println!("{json}");
            std::process::exit(code);
        }
        Cmd::Measure(a) => {
            let o = cp_verifier::offline::measure::measure_cmd(&a);
            println!("{}", o.json);
            std::process::exit(o.code);
        }
        Cmd::Loadgen(a) => {
            let code = loadgen_cmd(a).await;
            std::process::exit(code);
        }
        #[cfg(feature = "demo")]
        Cmd::Demo { listen } => {
            // Quieter by default so the printed URLs stand out; RUST_LOG overrides.
            provenant_base::logging::init(cli.log_json, "warn");
            cp_verifier::demo::run(listen).await
        }
    }
}

/// `cp-verifier loadgen`: exit 0 all accepted, 1 otherwise (the report or the error as
/// JSON on stdout), 2 bad plan.
async fn loadgen_cmd(a: LoadgenArgs) -> i32 {
    use cp_verifier::loadgen::{self, LoadAgent, MAX_PULSES};
    use provenant_base::clock::Clock;
    let fail = |code: i32, e: &dyn std::fmt::Display| {
        println!("{}", serde_json::json!({ "error": e.to_string() }));
        code
    };
    if a.agents.saturating_mul(a.pulses) > MAX_PULSES || a.pulses == 0 {
        return fail(2, &format!("agents x pulses must be 1..={MAX_PULSES}"));
    }
    let mut fleet = match LoadAgent::fleet(&a.seed, &a.prefix, a.agents) {
        Ok(f) => f,
        Err(e) => return fail(2, &e),
    };
    let interval_ms = u64::try_from(a.interval.as_millis()).unwrap_or(u64::MAX);
    for agent in &mut fleet {
        agent.interval_ms = interval_ms;
    }
    if a.print_enrollment {
        print!("{}", loadgen::enrollment_toml(&fleet));
        return 0;
    }
    let ca = match &a.ca_file {
        Some(p) => match provenant_base::fsutil::read_bounded(p, 64 * 1024) {
            Ok(b) => Some(b),
            Err(e) => return fail(2, &format!("{}: {e}", p.display())),
        },
        None => None,
    };
    let client = match loadgen::client(a.agents, ca.as_deref()) {
        Ok(c) => c,
        Err(e) => return fail(2, &e),
    };
    let urls: Vec<String> = a
        .urls
        .iter()
        .map(|u| u.trim_end_matches('/').to_string())
        .collect();
    let now = SystemClock.now().get();
    let mut chains = Vec::with_capacity(fleet.len());
    for (i, agent) in fleet.iter().enumerate() {
        let head = match agent.register(&client, &urls[i % urls.len()], now).await {
            Ok(h) => h,
            Err(e) => return fail(1, &format!("registering {}: {e}", agent.id)),
        };
        match agent.chain(head, a.pulses, now) {
            Ok(c) => chains.push(c),
            Err(e) => return fail(1, &e),
        }
    }
    let r = loadgen::fire(&client, &urls, "/api/v1/heartbeat", chains, a.max_duration).await;
    println!("{}", serde_json::to_string(&r).unwrap_or_default());
    if r.accepted == r.planned {
        0
    } else {
        1
    }
}
