//! `policy`: operator tooling for the image policy.
//!
//! - `policy check --config F`: parse and validate the image policy, and load and
//!   parse every key, certificate and trusted root it names.
//! - `policy render-podman --config F [--out-dir D] [--install-dir DIR]
//!   [--reject-unpinnable]`: write podman's `containers-policy.json`,
//!   `registries.d/provenant.yaml` and the key material (`keys/`) into D. The policy
//!   refers to the keys under DIR (default: D, made absolute), where the files will
//!   live on the guest. Warnings go to stderr.
//!
//! Exit status: 0 done, 1 the policy is invalid or cannot be rendered, 2 usage or I/O.
//! Paths in the policy are relative to the policy file's directory.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use podman_policy::{RenderInputs, Unpinnable};
use policy::image::ImagePolicy;

/// The largest policy file read.
const MAX_POLICY: u64 = 1 << 20;

#[derive(Parser)]
#[command(name = "policy", version, about = "Provenant image policy tooling")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Validate an image policy and the key material it names.
    Check {
        /// The image policy (TOML).
        #[arg(long)]
        config: PathBuf,
    },
    /// Render podman's containers-policy.json and registries.d file.
    RenderPodman {
        /// The image policy (TOML).
        #[arg(long)]
        config: PathBuf,
        /// Where to write the files.
        #[arg(long, default_value = ".")]
        out_dir: PathBuf,
        /// Absolute directory the files will be installed in on the guest (the
        /// policy's key paths point there). Default: the output directory.
        #[arg(long)]
        install_dir: Option<String>,
        /// Render a keyless rule whose identity podman cannot pin (a GitHub workflow
        /// SAN, a SAN regex, a source repository or ref) as `reject` for its scope,
        /// instead of failing. Images there must then come through `guest-agent pull`.
        #[arg(long)]
        reject_unpinnable: bool,
    },
}

/// A failure and its exit status.
struct Fail(u8, String);

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail(code, msg)) => {
            eprintln!("policy: {msg}");
            ExitCode::from(code)
        }
    }
}

fn run(cmd: Cmd) -> Result<(), Fail> {
    match cmd {
        Cmd::Check { config } => {
            let (policy, inputs) = load(&config, "/".into(), Unpinnable::Reject)?;
            let rendered = podman_policy::render(&policy, &inputs)
                .map_err(|e| Fail(1, format!("{} [{}]", e, e.kind())))?;
            for w in &rendered.warnings {
                eprintln!("warning (podman): {w}");
            }
            println!(
                "ok: {} trust rule(s) in {}",
                policy.trust.len(),
                config.display()
            );
            Ok(())
        }
        Cmd::RenderPodman {
            config,
            out_dir,
            install_dir,
            reject_unpinnable,
        } => {
            let install_dir = match install_dir {
                Some(d) => d,
                None => std::path::absolute(&out_dir)
                    .map_err(|e| Fail(2, format!("{}: {e}", out_dir.display())))?
                    .to_str()
                    .ok_or_else(|| Fail(2, "the output directory is not UTF-8".into()))?
                    .to_owned(),
            };
            let unpinnable = if reject_unpinnable {
                Unpinnable::Reject
            } else {
                Unpinnable::Refuse
            };
            let (policy, inputs) = load(&config, install_dir, unpinnable)?;
            let rendered = podman_policy::render(&policy, &inputs)
                .map_err(|e| Fail(1, format!("{} [{}]", e, e.kind())))?;
            for w in &rendered.warnings {
                eprintln!("warning: {w}");
            }
            // Key material first, the policy last: a policy never names a missing key.
            for (rel, data) in &rendered.files {
                write(&out_dir.join(rel), data)?;
            }
            write(
                &out_dir.join(podman_policy::REGISTRIES_D_FILE),
                rendered.registries_d.as_bytes(),
            )?;
            let policy_path = out_dir.join(podman_policy::POLICY_FILE);
            write(&policy_path, rendered.policy_json.as_bytes())?;
            println!("{}", policy_path.display());
            Ok(())
        }
    }
}

/// Reads and parses the policy, and reads every file it names.
fn load(
    config: &Path,
    install_dir: String,
    unpinnable: Unpinnable,
) -> Result<(ImagePolicy, RenderInputs), Fail> {
    let text = read_bounded(config, MAX_POLICY)?;
    let text =
        String::from_utf8(text).map_err(|_| Fail(1, format!("{}: not UTF-8", config.display())))?;
    let policy: ImagePolicy = toml::from_str(&text).map_err(|e| {
        Fail(
            1,
            format!("{}: invalid image policy: {e}", config.display()),
        )
    })?;
    policy
        .validate()
        .map_err(|e| Fail(1, format!("{}: {e}", config.display())))?;
    let base = config.parent().unwrap_or(Path::new("."));
    let mut named = Vec::new();
    for r in &policy.trust {
        named.extend(r.keys.iter().cloned());
        named.extend(r.rekor_key.iter().cloned());
        if let Some(k) = &r.keyless {
            named.extend(k.trusted_root.iter().cloned());
            named.extend(k.fulcio_ca.iter().cloned());
        }
    }
    let mut files = BTreeMap::new();
    for p in named {
        if files.contains_key(&p) {
            continue;
        }
        let data = read_bounded(
            &base.join(&p),
            u64::try_from(podman_policy::MAX_INPUT_FILE).unwrap_or(u64::MAX),
        )?;
        files.insert(p, data);
    }
    Ok((
        policy,
        RenderInputs {
            install_dir,
            files,
            unpinnable,
        },
    ))
}

/// [`provenant_base::fsutil::read_bounded`], its two failures as exit codes: an I/O
/// error is 2, an oversized file (a usage mistake) 1.
fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, Fail> {
    use provenant_base::fsutil::ReadError;
    provenant_base::fsutil::read_bounded(path, max).map_err(|e| match e {
        ReadError::Io(e) => Fail(2, format!("{}: {e}", path.display())),
        ReadError::TooLarge { max } => {
            Fail(1, format!("{}: larger than {max} bytes", path.display()))
        }
    })
}

/// Writes through a temporary file and a rename, so a reader never sees half a file.
fn write(path: &Path, data: &[u8]) -> Result<(), Fail> {
    let io = |e: std::io::Error| Fail(2, format!("{}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = path.with_extension("tmp-policy-render");
    std::fs::write(&tmp, data).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}
