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
    /// Compute a TD's launch measurements offline from the files QEMU is given and
    /// print the measurement manifest (the predicate CI attests). MRTD always;
    /// RTMR1 and RTMR2 with --kernel (direct boot); RTMR0 never (it depends on
    /// ACPI tables and a TD HOB the VMM builds): it is null, with the reason.
    /// Exit 0 manifest, 1 malformed input (error JSON on stdout), 2 usage error.
    Measure {
        /// The TDVF/OVMF firmware image (QEMU -bios), e.g. /usr/share/ovmf/OVMF.fd.
        #[arg(long)]
        firmware: PathBuf,
        /// The kernel for QEMU direct boot (-kernel): adds RTMR1 and RTMR2.
        #[arg(long)]
        kernel: Option<PathBuf>,
        /// The initrd (-initrd). Needs --kernel, and --memory unless
        /// --kernel-setup raw.
        #[arg(long, requires = "kernel")]
        initrd: Option<PathBuf>,
        /// The kernel command line (-append), ASCII; default empty, as QEMU's.
        #[arg(long, requires = "kernel")]
        cmdline: Option<String>,
        /// Guest RAM as QEMU's -m takes it: 4G, 2048M, 2048 (MiB). Decides where
        /// QEMU puts the initrd, which the patched kernel header records.
        #[arg(long)]
        memory: Option<String>,
        /// Page-add order: single-pass (QEMU >= 9, upstream KVM) or two-pass
        /// (QEMU 8.x).
        #[arg(long, value_enum, default_value_t = cp_verifier::offline::measure::Layout::SinglePass)]
        layout: cp_verifier::offline::measure::Layout,
        /// Which kernel bytes the firmware measures: qemu-patched (QEMU's
        /// setup-header edits) or raw (newer OVMF loading QEMU's unpatched copy).
        #[arg(long, value_enum, default_value_t = cp_verifier::offline::measure::KernelSetup::QemuPatched)]
        kernel_setup: cp_verifier::offline::measure::KernelSetup,
    },
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
    /// Verify a container image signature offline: a cosign simple-signing
    /// signature (containers/image's stored file or cosign's layer JSON) or a
    /// Sigstore bundle, for an image digest, with a cosign key or keyless.
    /// Exit 0 verified, 1 refused (error JSON on stdout), 2 usage error.
    Image {
        /// The image manifest; its SHA-256 is the digest verified.
        #[arg(long, conflicts_with = "digest", required_unless_present = "digest")]
        manifest: Option<PathBuf>,
        /// The image manifest digest, sha256:HEX.
        #[arg(long)]
        digest: Option<String>,
        /// The signature: `0x00 "sigstore-json" LF {..}`, a cosign layer JSON, or a
        /// Sigstore bundle.
        #[arg(long)]
        signature: PathBuf,
        /// A cosign public key (PEM); repeatable.
        #[arg(long)]
        key: Vec<PathBuf>,
        /// Keyless: a `trusted_root.json` (Fulcio CAs, Rekor keys).
        #[arg(long)]
        trusted_root: Option<PathBuf>,
        /// Keyless: Fulcio CA certificates (PEM), with --rekor-key.
        #[arg(long)]
        fulcio_ca: Option<PathBuf>,
        /// Rekor public key (PEM): the SET is then required (always for keyless).
        #[arg(long)]
        rekor_key: Option<PathBuf>,
        /// Required email SAN, exact.
        #[arg(long, conflicts_with_all = ["san", "san_regex"])]
        identity_email: Option<String>,
        /// Required URI SAN, exact.
        #[arg(long, conflicts_with = "san_regex")]
        san: Option<String>,
        /// Required SAN, a regex matched against the whole SAN.
        #[arg(long)]
        san_regex: Option<String>,
        /// Required OIDC issuer (keyless).
        #[arg(long)]
        issuer: Option<String>,
        /// Required Fulcio source repository (OWNER/NAME or https://github.com/OWNER/NAME).
        #[arg(long)]
        source_repository: Option<String>,
        /// Required Fulcio source ref, e.g. refs/heads/main.
        #[arg(long)]
        source_ref: Option<String>,
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
        Cmd::Verify(VerifyCmd::Quote {
            quote,
            collateral,
            at,
            root_ca,
        }) => {
            let at = at.unwrap_or_else(|| {
                provenant_base::clock::Clock::now_ns(&SystemClock) / 1_000_000_000
            });
            let o = cp_verifier::offline::verify::verify_quote_cmd(
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
            let at = at.unwrap_or_else(|| {
                provenant_base::clock::Clock::now_ns(&SystemClock) / 1_000_000_000
            });
            let o = cp_verifier::offline::verify::verify_bundle_cmd(
                &cp_verifier::offline::verify::BundleArgs {
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
                },
            );
            println!("{}", o.json);
            std::process::exit(o.code);
        }
        Cmd::Verify(VerifyCmd::Image {
            manifest,
            digest,
            signature,
            key,
            trusted_root,
            fulcio_ca,
            rekor_key,
            identity_email,
            san,
            san_regex,
            issuer,
            source_repository,
            source_ref,
            at,
        }) => {
            let at = at.unwrap_or_else(|| {
                provenant_base::clock::Clock::now_ns(&SystemClock) / 1_000_000_000
            });
            let o = cp_verifier::offline::verify::verify_image_cmd(
                &cp_verifier::offline::verify::ImageArgs {
                    manifest,
                    digest,
                    signature,
                    keys: key,
                    trusted_root,
                    fulcio_ca,
                    rekor_key,
                    identity_email,
                    san,
                    san_regex,
                    issuer,
                    source_repository,
                    source_ref,
                    at,
                },
            );
            println!("{}", o.json);
            std::process::exit(o.code);
        }
        Cmd::Measure {
            firmware,
            kernel,
            initrd,
            cmdline,
            memory,
            layout,
            kernel_setup,
        } => {
            let o = cp_verifier::offline::measure::measure_cmd(
                &cp_verifier::offline::measure::MeasureArgs {
                    firmware: Some(&firmware),
                    kernel: kernel.as_deref(),
                    initrd: initrd.as_deref(),
                    cmdline: cmdline.as_deref(),
                    memory: memory.as_deref(),
                    layout,
                    kernel_setup,
                },
            );
            println!("{}", o.json);
            std::process::exit(o.code);
        }
        #[cfg(feature = "demo")]
        Cmd::Demo { listen } => {
            // Quieter by default so the printed URLs stand out; RUST_LOG overrides.
            provenant_base::logging::init(cli.log_json, "warn");
            cp_verifier::demo::run(listen).await
        }
    }
}
