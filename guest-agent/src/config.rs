//! The agent's single TOML config file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use provenant_base::fsutil::{read_text_bounded, ReadError};

/// Largest config file read.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// The agent's config, as read from its TOML file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// This node's id, as enrolled at the control plane.
    pub agent_id: String,
    /// The partition this node registers in. Default: `default`.
    #[serde(default = "default_partition")]
    pub partition: String,
    /// Base URL of the control plane, e.g. `https://cp.example:7400`.
    pub control_plane: String,
    /// Time between pulses (humantime, e.g. `30s`); at least 100 ms. Default: 30 s.
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// Heartbeat intervals without an accepted pulse after which the local verdict
    /// (`/api/v1/verify`) expires and the gate answers 503, like the control plane's
    /// `missed_heartbeats`.
    #[serde(default = "default_missed_heartbeats")]
    pub missed_heartbeats: u32,
    /// Which control-plane verdicts open the start-up gate (`/api/v1/verify` 200):
    /// `["green"]` or `["green", "yellow"]`. Default: `["green"]` on the `tdx` tier,
    /// `["green", "yellow"]` on the software and `tdx-report` tiers (whose verdict is
    /// never better than yellow).
    #[serde(default)]
    pub gate_accepts: Option<Vec<GateBadge>>,
    /// Where the local API (`/health`, `/api/v1/*`) listens.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Policy and config files to measure. The agent's own config file is always
    /// measured too.
    #[serde(default)]
    pub policy_files: Vec<PathBuf>,
    /// The node identity key (PEM). Absent: attestation is disabled, visibly.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Optional certificate chain (PEM, leaf first) for the identity key, sent at
    /// registration for CA-based enrollment, and presented as the agent's TLS client
    /// certificate (mTLS) on an https:// control plane.
    #[serde(default)]
    pub certificate_file: Option<PathBuf>,
    /// PEM CA certificate(s) the control plane's TLS certificate must chain to
    /// (instead of the public web roots).
    #[serde(default)]
    pub control_plane_ca_file: Option<PathBuf>,
    /// `sha256:<hex>` of the control plane's TLS public key (SubjectPublicKeyInfo,
    /// as `cp-verifier serve` logs it): only a server holding that key is accepted.
    /// Without `control_plane_ca_file` the certificate's issuer, names and dates are
    /// not checked: the pin is the trust.
    #[serde(default)]
    pub control_plane_pin: Option<String>,
    /// Allow an `http://` control plane: pulses then travel in clear, readable and
    /// replayable by anyone on the path. Off by default; for loopback tests.
    #[serde(default)]
    pub insecure_http: bool,
    /// Quote provider: `auto` (detect: configfs-tsm, then `/dev/tdx_guest`, else the
    /// software tier), `configfs-tsm`, `tdx-guest` or `none`. A provider named
    /// explicitly that is not there stops the agent; it never falls back.
    #[serde(default)]
    pub quote_provider: QuoteProviderKind,
    /// configfs-tsm's report directory.
    #[serde(default = "default_tsm_report_dir")]
    pub tsm_report_dir: PathBuf,
    /// The TDX guest device (TDREPORT only).
    #[serde(default = "default_tdx_guest_device")]
    pub tdx_guest_device: PathBuf,
    /// The kernel's TDX measurements directory (holds `rtmr3:sha384`).
    #[serde(default = "default_rtmr_dir")]
    pub rtmr_dir: PathBuf,
    /// Where the RTMR3 event log persists across agent restarts. Keep it on a file
    /// system that ends with the TD (like `/run`), as RTMR3 does.
    #[serde(default = "default_event_log_file")]
    pub event_log_file: PathBuf,
    /// A fresh quote (re-registration) at least this often; also at once when a
    /// measurement changes. TDX tiers only.
    #[serde(default = "default_requote_interval", with = "humantime_serde")]
    pub requote_interval: Duration,
    /// Cap on the reconnect backoff.
    #[serde(default = "default_max_backoff", with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Timeout for each request to the control plane.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Whether to list podman's containers (`workloads` in reports and pulses).
    #[serde(default = "default_true")]
    pub collect_workloads: bool,
    /// podman's REST API socket (`podman system service`).
    #[serde(default = "default_podman_socket")]
    pub podman_socket: PathBuf,
    /// Bound on one listing of the containers; beyond it the workloads are `unknown`.
    #[serde(default = "default_podman_timeout", with = "humantime_serde")]
    pub podman_timeout: Duration,
    /// Whether to list the loaded eBPF programs (`ebpf` in reports and pulses).
    #[serde(default = "default_true")]
    pub collect_ebpf: bool,
    /// bpffs directories walked for pinned programs.
    #[serde(default = "default_bpffs_dirs")]
    pub bpffs_dirs: Vec<PathBuf>,
    /// The active-LSM list (`bpf` in it: the BPF LSM is active).
    #[serde(default = "default_lsm_file")]
    pub lsm_file: PathBuf,
    /// Mounts whose free space the pulse's `health` reports (at most 16).
    #[serde(default = "default_health_mounts")]
    pub health_mounts: Vec<PathBuf>,
    /// A pulse carries `health` on the first pulse after a registration, every
    /// `health_every` pulses, and whenever the clock state or the last error changed.
    #[serde(default = "default_health_every")]
    pub health_every: u64,
    /// The image policy (`policy::image::ImagePolicy` TOML, as `policy render-podman`
    /// reads) that `guest-agent pull` verifies against. Paths inside it are relative
    /// to its own directory. Absent: `pull` refuses everything.
    #[serde(default)]
    pub image_policy_file: Option<PathBuf>,
    /// How `guest-agent pull` reaches registries (`[[registry]]`: host, insecure,
    /// ca_file, credentials).
    #[serde(default)]
    pub registry: Vec<signatures::oci::RegistryConfig>,
    /// The podman command `guest-agent pull` runs (argv prefix; e.g. add `--root`).
    #[serde(default = "default_podman_command")]
    pub podman_command: Vec<String>,
    /// podman's own signature policy, extended per pull by exactly the verified
    /// digest. Missing file: `default: reject` plus that digest.
    #[serde(default = "default_podman_policy")]
    pub podman_policy_file: PathBuf,
}

fn default_podman_command() -> Vec<String> {
    vec!["podman".into()]
}
fn default_podman_policy() -> PathBuf {
    "/etc/containers/policy.json".into()
}

fn default_true() -> bool {
    true
}
fn default_podman_socket() -> PathBuf {
    "/run/podman/podman.sock".into()
}
fn default_podman_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_bpffs_dirs() -> Vec<PathBuf> {
    vec!["/sys/fs/bpf".into(), "/sys/fs/bpf/provenant".into()]
}
fn default_health_mounts() -> Vec<PathBuf> {
    vec!["/".into()]
}
fn default_health_every() -> u64 {
    10
}
fn default_lsm_file() -> PathBuf {
    "/sys/kernel/security/lsm".into()
}

/// A verdict colour the start-up gate may accept. `red` and `unknown` never open it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum GateBadge {
    /// A passing verdict (`Status::Pass`).
    Green,
    /// A verdict with warnings (`Status::Warn`).
    Yellow,
}

impl GateBadge {
    /// Whether a verdict of `status` is this colour.
    pub fn matches(self, status: evidence::verdict::Status) -> bool {
        use evidence::verdict::Status;
        matches!(
            (self, status),
            (GateBadge::Green, Status::Pass) | (GateBadge::Yellow, Status::Warn)
        )
    }

    /// The default for a tier: green only where the verdict can be green on hardware
    /// evidence (`tdx`); green and yellow where it never gets better than yellow.
    pub fn default_for(tier: evidence::Tier) -> Vec<GateBadge> {
        match tier {
            evidence::Tier::Tdx => vec![GateBadge::Green],
            _ => vec![GateBadge::Green, GateBadge::Yellow],
        }
    }
}

/// Which quote provider the agent uses (`quote_provider` in the config).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QuoteProviderKind {
    /// Detect: configfs-tsm, then `/dev/tdx_guest`, else the software tier.
    #[default]
    Auto,
    /// The kernel's configfs-tsm report interface (`tsm_report_dir`).
    ConfigfsTsm,
    /// The `/dev/tdx_guest` device's ioctl (`tdx_guest_device`).
    TdxGuest,
    /// No TEE: the software tier.
    None,
}

fn default_tsm_report_dir() -> PathBuf {
    "/sys/kernel/config/tsm/report".into()
}
fn default_tdx_guest_device() -> PathBuf {
    "/dev/tdx_guest".into()
}
fn default_rtmr_dir() -> PathBuf {
    "/sys/class/misc/tdx_guest/measurements".into()
}
fn default_event_log_file() -> PathBuf {
    "/run/provenant/rtmr3.jsonl".into()
}
fn default_requote_interval() -> Duration {
    Duration::from_secs(3600)
}

fn default_partition() -> String {
    "default".into()
}
fn default_missed_heartbeats() -> u32 {
    3
}
fn default_interval() -> Duration {
    Duration::from_secs(30)
}
fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7401))
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(60)
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// Why the config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Io {
        /// The config file's path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_CONFIG_BYTES`].
    #[error("config {path} is larger than {MAX_CONFIG_BYTES} bytes")]
    TooLarge {
        /// The config file's path.
        path: String,
    },
    /// The file is not valid TOML, has unknown fields, or a value fails a check.
    #[error("config {path}: {detail}")]
    Invalid {
        /// The config file's path.
        path: String,
        /// What is wrong.
        detail: String,
    },
}

impl AgentConfig {
    /// Reads and checks a config file. The file's own path is added to the measured
    /// policy files.
    pub fn load(path: &Path) -> Result<AgentConfig, ConfigError> {
        let p = path.display().to_string();
        let text = read_text_bounded(path, MAX_CONFIG_BYTES).map_err(|e| match e {
            ReadError::Io(source) => ConfigError::Io {
                path: p.clone(),
                source,
            },
            ReadError::TooLarge { .. } => ConfigError::TooLarge { path: p.clone() },
        })?;
        let mut cfg: AgentConfig = toml::from_str(&text).map_err(|e| ConfigError::Invalid {
            path: p.clone(),
            detail: e.to_string(),
        })?;
        let invalid = |detail: String| ConfigError::Invalid {
            path: p.clone(),
            detail,
        };
        if cfg.heartbeat_interval < Duration::from_millis(100) {
            return Err(invalid("heartbeat_interval must be at least 100ms".into()));
        }
        if cfg.missed_heartbeats == 0 {
            return Err(invalid("missed_heartbeats must be at least 1".into()));
        }
        if cfg.gate_accepts.as_ref().is_some_and(Vec::is_empty) {
            return Err(invalid(
                "gate_accepts must name at least \"green\" (an empty list never opens the gate)"
                    .into(),
            ));
        }
        if cfg.requote_interval < cfg.heartbeat_interval {
            return Err(invalid(
                "requote_interval must be at least heartbeat_interval".into(),
            ));
        }
        if !(cfg.control_plane.starts_with("http://") || cfg.control_plane.starts_with("https://"))
        {
            return Err(invalid(
                "control_plane must be an http:// or https:// URL".into(),
            ));
        }
        if cfg.control_plane.starts_with("http://") {
            if !cfg.insecure_http {
                return Err(invalid(format!(
                    "control_plane {} is plain http://: pulses would travel in clear. Use an \
                     https:// control plane, or set insecure_http = true to accept that",
                    cfg.control_plane
                )));
            }
            if cfg.control_plane_ca_file.is_some() || cfg.control_plane_pin.is_some() {
                return Err(invalid(
                    "control_plane_ca_file and control_plane_pin need an https:// control_plane"
                        .into(),
                ));
            }
        }
        if let Some(pin) = &cfg.control_plane_pin {
            let ok = pin
                .strip_prefix("sha256:")
                .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
            if !ok {
                return Err(invalid(
                    "control_plane_pin must be \"sha256:<64 hex digits>\"".into(),
                ));
            }
        }
        cfg.control_plane = cfg.control_plane.trim_end_matches('/').to_string();
        let own = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        if !cfg.policy_files.contains(&own) {
            cfg.policy_files.push(own);
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_config_gets_defaults_and_measures_itself() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("agent.toml");
        std::fs::write(
            &p,
            "agent_id = \"n1\"\ncontrol_plane = \"http://127.0.0.1:1/\"\ninsecure_http = true\n",
        )
        .unwrap();
        let c = AgentConfig::load(&p).unwrap();
        assert_eq!(c.heartbeat_interval, Duration::from_secs(30));
        assert_eq!(c.missed_heartbeats, 3);
        assert_eq!(c.gate_accepts, None);
        assert_eq!(c.control_plane, "http://127.0.0.1:1");
        assert_eq!(c.policy_files, vec![std::fs::canonicalize(&p).unwrap()]);
        assert!(c.key_file.is_none());
        assert_eq!(c.quote_provider, QuoteProviderKind::Auto);
        assert_eq!(c.requote_interval, Duration::from_secs(3600));
        assert!(c.collect_workloads && c.collect_ebpf);
        assert_eq!(c.podman_socket, PathBuf::from("/run/podman/podman.sock"));
        assert_eq!(
            c.bpffs_dirs,
            vec![
                PathBuf::from("/sys/fs/bpf"),
                PathBuf::from("/sys/fs/bpf/provenant")
            ]
        );
        assert_eq!(c.lsm_file, PathBuf::from("/sys/kernel/security/lsm"));
        assert_eq!(c.health_mounts, vec![PathBuf::from("/")]);
        assert_eq!(c.health_every, 10);
        assert_eq!(
            c.tsm_report_dir,
            PathBuf::from("/sys/kernel/config/tsm/report")
        );
        std::fs::write(
            &p,
            "agent_id = \"n1\"\ncontrol_plane = \"http://x\"\ninsecure_http = true\nquote_provider = \"configfs-tsm\"\n",
        )
        .unwrap();
        let c = AgentConfig::load(&p).unwrap();
        assert_eq!(c.quote_provider, QuoteProviderKind::ConfigfsTsm);
    }

    #[test]
    fn typos_and_bad_values_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("agent.toml");
        for (text, want) in [
            (
                "agent_id = \"n1\"\ncontrol_plane = \"http://x\"\ninsecure_http = true\nheartbeat_intervall = \"1s\"\n",
                "unknown field",
            ),
            (
                "agent_id = \"n1\"\ncontrol_plane = \"ftp://x\"\n",
                "http://",
            ),
            (
                "agent_id = \"n1\"\ncontrol_plane = \"http://cp:7400\"\n",
                "insecure_http = true",
            ),
            (
                "agent_id = \"n1\"\ncontrol_plane = \"https://cp:7400\"\ncontrol_plane_pin = \"sha256:abc\"\n",
                "control_plane_pin",
            ),
            (
                "agent_id = \"n1\"\ncontrol_plane = \"http://cp\"\ninsecure_http = true\ncontrol_plane_ca_file = \"/ca.pem\"\n",
                "https://",
            ),
            (
                "agent_id = \"n1\"\ncontrol_plane = \"http://x\"\ninsecure_http = true\nheartbeat_interval = \"1ms\"\n",
                "at least",
            ),
            (
                "agent_id = \"n1\"\ncontrol_plane = \"http://x\"\ninsecure_http = true\nquote_provider = \"sev\"\n",
                "unknown variant",
            ),
            (
                "agent_id = \"n1\"\ncontrol_plane = \"http://x\"\ninsecure_http = true\nrequote_interval = \"1s\"\n",
                "requote_interval",
            ),
            (
                "agent_id = \"n1\"\ncontrol_plane = \"http://x\"\nmissed_heartbeats = 0\n",
                "missed_heartbeats",
            ),
            (
                "agent_id = \"n1\"\ncontrol_plane = \"http://x\"\ngate_accepts = [\"red\"]\n",
                "unknown variant",
            ),
            (
                "agent_id = \"n1\"\ncontrol_plane = \"http://x\"\ngate_accepts = []\n",
                "gate_accepts",
            ),
        ] {
            std::fs::write(&p, text).unwrap();
            let e = AgentConfig::load(&p).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
    }
}
