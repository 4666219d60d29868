//! The control plane's TOML config.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use policy::TrustPolicy;

use crate::model::BuildKind;

/// The longest reason an operator may give for a withdrawal.
pub const MAX_REASON: usize = 1024;
use serde::Deserialize;

/// Largest config file read, in bytes.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;
/// Largest `[policy] bad_signatures_threshold`: the agent record keeps one timestamp
/// per counted bad signature.
pub const MAX_BAD_SIGNATURES_THRESHOLD: u32 = 1000;

/// The whole config file. Durations are humantime strings (`30s`, `1h`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpConfig {
    /// Address to serve on. Default `127.0.0.1:7400`.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Directory for the embedded SQLite database (`provenant.db`) and local files.
    pub data_dir: PathBuf,
    /// Fleet state shared by replicas: `postgres://user@host/db`. Unset: the
    /// embedded SQLite database in `data_dir`.
    #[serde(default)]
    pub store: Option<crate::store::postgres::target::StoreUrl>,
    /// The PostgreSQL password, in a file private to its owner (mode 0600).
    #[serde(default)]
    pub store_password_file: Option<PathBuf>,
    /// How far a pulse's timestamp may be from the control plane's clock.
    #[serde(default = "default_skew", with = "humantime_serde")]
    pub max_clock_skew: Duration,
    /// The longest heartbeat interval an agent may declare. Liveness is judged on
    /// the agent's declared interval, which may be shorter.
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// How long a registration challenge stays valid.
    #[serde(default = "default_challenge_ttl", with = "humantime_serde")]
    pub challenge_ttl: Duration,
    /// How often the liveness sweeper runs.
    #[serde(default = "default_sweep", with = "humantime_serde")]
    pub sweep_interval: Duration,
    /// Repeated alerts of one kind for one agent are raised at most this often.
    #[serde(default = "default_cooldown", with = "humantime_serde")]
    pub alert_cooldown: Duration,
    /// Alerts older than this are deleted by the sweeper (with any webhook delivery
    /// still pending for them).
    #[serde(default = "default_alert_retention", with = "humantime_serde")]
    pub alert_retention: Duration,
    /// JSON-lines audit log of every alert.
    #[serde(default)]
    pub audit_log: Option<PathBuf>,
    /// URLs that receive every alert as a JSON POST.
    #[serde(default)]
    pub webhooks: Vec<String>,
    /// File holding the bearer token for operator endpoints (`/expect`). Without
    /// it those endpoints refuse every request.
    #[serde(default)]
    pub operator_token_file: Option<PathBuf>,
    /// In a config file `allow_software_tier` defaults to false (unlike
    /// `TrustPolicy::default()`): software-tier agents must be allowed explicitly.
    #[serde(default = "serve_policy", deserialize_with = "serve_policy_de")]
    pub policy: TrustPolicy,
    /// `[enrollment]`: which keys may register as which agents.
    #[serde(default)]
    pub enrollment: Enrollment,
    /// `[tdx]`: how TDX quotes are verified.
    #[serde(default)]
    pub tdx: TdxConfig,
    /// Build provenance for MRTD (`[provenance]`); absent: MRTD is pinned only by
    /// `[policy.tdx] mrtd_allowlist`, if at all.
    #[serde(default)]
    pub provenance: Option<crate::attest::provenance::ProvenanceConfig>,
    /// Image signature policy for reported workloads (`[images]`); absent: no
    /// repository is covered, so every workload with a digest is red
    /// (`ImageNotCovered`).
    #[serde(default)]
    pub images: Option<ImagesConfig>,
    /// Builds withdrawn fleet-wide (`[[withdrawn]]`), beside those withdrawn through
    /// `POST /api/v1/withdrawals`. Reloaded on SIGHUP.
    #[serde(default)]
    pub withdrawn: Vec<WithdrawnBuild>,
    /// `[tls]`: serve HTTPS (and mTLS with `client_ca_file`). Without it `serve`
    /// listens on a loopback address only, unless `insecure_http = true`.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// `[ear]`: sign EAT Attestation Results (`/api/v1/agents/{id}/ear`).
    #[serde(default)]
    pub ear: Option<crate::judge::ear::EarConfig>,
    /// Serve plain HTTP on a non-loopback address. Everything (pulses, tokens,
    /// the dashboard) then travels in clear: for a TLS-terminating proxy only.
    #[serde(default)]
    pub insecure_http: bool,
    /// File holding the bearer token for read access (fleet pages,
    /// `/api/v1/agents*`, `/api/v1/alerts`). The operator token grants read too.
    #[serde(default)]
    pub viewer_token_file: Option<PathBuf>,
    /// `[limits]`: server timeouts, connection caps and per-source rate limits.
    #[serde(default)]
    pub limits: Limits,
}

/// A withdrawn build: exactly one of `mrtd` (96 hex digits) or `agent_binary` (64 hex
/// digits), and why. Also the body of `POST /api/v1/withdrawals`.
#[derive(Debug, Clone, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WithdrawnBuild {
    /// MRTD to withdraw, 96 hex digits.
    #[serde(default)]
    pub mrtd: Option<String>,
    /// Agent binary SHA-256 to withdraw, 64 hex digits.
    #[serde(default)]
    pub agent_binary: Option<String>,
    /// Why, 1..=[`MAX_REASON`] characters.
    pub reason: String,
}

impl WithdrawnBuild {
    /// The build a withdrawal names, validated: exactly one of `mrtd` (48 bytes) or
    /// `agent_binary` (32 bytes) in hex, and a reason of 1..=1024 characters.
    pub fn target(&self) -> Result<(BuildKind, String), String> {
        let (kind, hex_in, len) = match (&self.mrtd, &self.agent_binary) {
            (Some(m), None) => (BuildKind::Mrtd, m, 48),
            (None, Some(b)) => (BuildKind::AgentBinary, b, 32),
            _ => return Err("name exactly one of \"mrtd\" or \"agent_binary\"".into()),
        };
        let h = hex_in.trim().to_ascii_lowercase();
        let h = h.strip_prefix("sha256:").unwrap_or(&h).to_string();
        match hex::decode(&h) {
            Ok(b) if b.len() == len => {}
            _ => {
                return Err(format!(
                    "{} must be {} hex digits, got {hex_in:?}",
                    kind.as_str(),
                    len * 2
                ))
            }
        }
        let reason = self.reason.trim();
        if reason.is_empty() || reason.chars().count() > MAX_REASON {
            return Err(format!("reason must be 1..={MAX_REASON} characters"));
        }
        Ok((kind, h))
    }
}

/// `[tls]`: the control plane's certificate and which client certificates it asks for.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, SEC1 or PKCS#1); must be mode 0600 (or stricter).
    pub key_file: PathBuf,
    /// PEM CA(s) for agents' client certificates. Set: every connection must present
    /// a certificate chaining to it (or to `operator_ca_file`): mTLS.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    /// PEM CA(s) for operators' client certificates: a connection presenting one gets
    /// read access without a token.
    #[serde(default)]
    pub operator_ca_file: Option<PathBuf>,
}

/// `[limits]`: what one client may hold or ask of the server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Time to receive a request's headers; also how long an idle keep-alive
    /// connection waits for its next request.
    #[serde(default = "default_header_timeout", with = "humantime_serde")]
    pub header_timeout: Duration,
    /// Time to receive a whole request body.
    #[serde(default = "default_body_timeout", with = "humantime_serde")]
    pub body_timeout: Duration,
    /// A connection that neither reads nor writes for this long is closed.
    #[serde(default = "default_idle_timeout", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Time for a TLS handshake.
    #[serde(default = "default_handshake_timeout", with = "humantime_serde")]
    pub tls_handshake_timeout: Duration,
    /// Open connections at once; further clients wait in the listen backlog.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Open connections from one source address (IPv6: one /64).
    #[serde(default = "default_max_connections_per_ip")]
    pub max_connections_per_ip: usize,
    /// `/api/v1/challenge` requests per second per source (token bucket refill).
    #[serde(default = "default_rate")]
    pub challenge_rate: f64,
    /// `/api/v1/challenge` burst per source (bucket size).
    #[serde(default = "default_burst")]
    pub challenge_burst: u32,
    /// `/api/v1/register` requests per second per source.
    #[serde(default = "default_rate")]
    pub register_rate: f64,
    /// `/api/v1/register` burst per source.
    #[serde(default = "default_burst")]
    pub register_burst: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            header_timeout: default_header_timeout(),
            body_timeout: default_body_timeout(),
            idle_timeout: default_idle_timeout(),
            tls_handshake_timeout: default_handshake_timeout(),
            max_connections: default_max_connections(),
            max_connections_per_ip: default_max_connections_per_ip(),
            challenge_rate: default_rate(),
            challenge_burst: default_burst(),
            register_rate: default_rate(),
            register_burst: default_burst(),
        }
    }
}

fn default_header_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_body_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_idle_timeout() -> Duration {
    Duration::from_secs(120)
}
fn default_handshake_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_max_connections() -> usize {
    4096
}
fn default_max_connections_per_ip() -> usize {
    256
}
fn default_rate() -> f64 {
    10.0
}
fn default_burst() -> u32 {
    200
}

/// `[images]`: the image policy (`prefer_keyless`, `[[images.trust]]`, as
/// `policy::image::ImagePolicy`) and how its results are cached.
/// `[[images.registry]]` entries say how to reach a registry (plain http, extra CA,
/// credentials); registries not listed are reached over https anonymously. Key and
/// root paths in the rules are used as given (relative to the working directory).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImagesConfig {
    /// Show a key-signed image yellow (`ImageKeySigned`), not green: only a keyless
    /// signature names the workflow that built the image.
    #[serde(default)]
    pub prefer_keyless: bool,
    /// `[[images.trust]]`: the rules; for a repository the rule with the longest
    /// matching scope applies.
    #[serde(default)]
    pub trust: Vec<policy::image::ImageRule>,
    /// `[[images.registry]]`: how to reach a registry.
    #[serde(default)]
    pub registry: Vec<signatures::oci::RegistryConfig>,
    /// How long a verified or refused result is kept (memory and store).
    #[serde(default = "default_image_ttl", with = "humantime_serde")]
    pub cache_ttl: Duration,
    /// When an undecided result (registry unreachable, ...) is tried again.
    #[serde(default = "default_image_retry", with = "humantime_serde")]
    pub retry_after: Duration,
    /// Verifications running at once.
    #[serde(default = "default_image_concurrency")]
    pub max_concurrent: usize,
}

impl ImagesConfig {
    /// The image policy these settings describe.
    pub fn policy(&self) -> policy::image::ImagePolicy {
        policy::image::ImagePolicy {
            prefer_keyless: self.prefer_keyless,
            trust: self.trust.clone(),
        }
    }

    /// The image service settings, with this policy's [`ImagesConfig::fingerprint`].
    pub fn service(&self) -> crate::judge::images::ImageServiceConfig {
        crate::judge::images::ImageServiceConfig {
            cache_ttl: self.cache_ttl,
            retry_after: self.retry_after,
            max_concurrent: self.max_concurrent,
            policy_fingerprint: self.fingerprint(),
            ..Default::default()
        }
    }

    /// SHA-256 over the policy (rules, identities, preferences) and the bytes of every
    /// key and root file it names: what a cached image verdict depends on.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(serde_json::to_vec(&self.policy()).unwrap_or_default());
        for r in &self.trust {
            let k = r.keyless.as_ref();
            let files = r
                .keys
                .iter()
                .chain(&r.rekor_key)
                .chain(k.and_then(|k| k.trusted_root.as_ref()))
                .chain(k.and_then(|k| k.fulcio_ca.as_ref()));
            for f in files {
                h.update(f.as_os_str().as_encoded_bytes());
                h.update([0]);
                match provenant_base::fsutil::read_bounded(f, MAX_TRUST_FILE_BYTES) {
                    Ok(b) => h.update(Sha256::digest(&b)),
                    Err(e) => h.update(format!("unreadable: {e}").as_bytes()),
                }
            }
        }
        hex::encode(h.finalize())
    }
}

/// Largest key or root file hashed into the image policy's fingerprint (the
/// verifier's own bound on a trusted root is 1 MiB).
const MAX_TRUST_FILE_BYTES: u64 = 2 * 1024 * 1024;

fn default_image_ttl() -> Duration {
    Duration::from_secs(3600)
}
fn default_image_retry() -> Duration {
    Duration::from_secs(30)
}
fn default_image_concurrency() -> usize {
    4
}

/// How TDX quotes are verified (`[tdx]`). The TDX policy itself (TCB statuses,
/// allowlists) is `[policy.tdx]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TdxConfig {
    /// Root CA (DER or PEM) that PCK chains must end at. Absent: Intel's SGX Root CA,
    /// embedded. Set it only for a test PKI: it replaces Intel's root.
    #[serde(default)]
    pub root_ca_file: Option<PathBuf>,
    /// Offline collateral: a directory of `<fmspc>-<ca>.json` or `<fmspc>.json` files
    /// (dcap-qvl QuoteCollateralV3 JSON).
    #[serde(default)]
    pub collateral_dir: Option<PathBuf>,
    /// Offline collateral: one file for every FMSPC (its FMSPC must still match).
    #[serde(default)]
    pub collateral_file: Option<PathBuf>,
    /// Online collateral: `"intel"` (Intel PCS) or a PCCS base URL. Fetched
    /// collateral is cached in memory and under `data_dir/collateral` until its
    /// earliest `nextUpdate`.
    #[serde(default)]
    pub pcs_url: Option<String>,
    /// File holding the Intel PCS API key (`Ocp-Apim-Subscription-Key`).
    #[serde(default)]
    pub pcs_api_key_file: Option<PathBuf>,
    /// Extra TLS roots (PEM) for a PCCS with a private certificate.
    #[serde(default)]
    pub pccs_tls_roots_file: Option<PathBuf>,
    /// How often the sweeper verifies each TDX agent's stored quote again against
    /// the current collateral (and provenance); also as soon as its collateral's
    /// `nextUpdate` has passed. Default 1h.
    #[serde(default, with = "humantime_serde")]
    pub reattest_interval: Option<Duration>,
}

impl TdxConfig {
    /// `reattest_interval`, 1h when not set.
    pub fn reattest_every(&self) -> Duration {
        self.reattest_interval.unwrap_or(Duration::from_secs(3600))
    }
}

/// Which keys may register as which agents.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Enrollment {
    /// Explicit allowlist: key fingerprint per agent id.
    #[serde(default)]
    pub keys: Vec<EnrolledKey>,
    /// PEM CA certificate(s): a presented chain to one of these whose leaf names the
    /// agent id (DNS SAN or CN) and carries the report key enrolls the agent.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// X.509 CRL file(s) (PEM, one or more `X509 CRL` blocks, or one DER CRL) issued
    /// by the enrollment CA. Checked at registration and on every pulse of a
    /// certificate-enrolled agent: a listed serial is `CertificateRevoked`, a CRL past
    /// its nextUpdate refuses every certificate enrollment (`CrlStale`) until a fresh
    /// one is installed and the control plane reloaded (SIGHUP).
    #[serde(default)]
    pub crl_file: Option<PathBuf>,
}

/// One `[[enrollment.keys]]` entry: the key allowed to register as an agent id.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrolledKey {
    /// The agent id.
    pub agent_id: String,
    /// `sha256:<hex>` of the key's SubjectPublicKeyInfo, as `guest-agent pubkey` prints.
    pub fingerprint: String,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7400))
}
fn default_skew() -> Duration {
    Duration::from_secs(30)
}
fn default_interval() -> Duration {
    Duration::from_secs(30)
}
fn default_challenge_ttl() -> Duration {
    Duration::from_secs(120)
}
fn default_sweep() -> Duration {
    Duration::from_secs(1)
}
fn default_cooldown() -> Duration {
    Duration::from_secs(60)
}
fn default_alert_retention() -> Duration {
    Duration::from_secs(30 * 86400)
}

/// `[policy]` absent from a config file: the defaults, software tier refused.
fn serve_policy() -> TrustPolicy {
    TrustPolicy {
        allow_software_tier: false,
        ..TrustPolicy::default()
    }
}

/// `[policy]` as written, with `allow_software_tier = false` unless it says so.
fn serve_policy_de<'de, D: serde::Deserializer<'de>>(d: D) -> Result<TrustPolicy, D::Error> {
    use serde::de::Error;
    let mut v = toml::Value::deserialize(d)?;
    if let Some(t) = v.as_table_mut() {
        t.entry("allow_software_tier")
            .or_insert(toml::Value::Boolean(false));
    }
    v.try_into().map_err(D::Error::custom)
}

impl CpConfig {
    /// Reads (at most [`MAX_CONFIG_BYTES`]), parses and [`CpConfig::check`]s the file.
    pub fn load(path: &Path) -> anyhow::Result<CpConfig> {
        use anyhow::Context;
        let text = provenant_base::fsutil::read_text_bounded(path, MAX_CONFIG_BYTES)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        let cfg: CpConfig =
            toml::from_str(&text).with_context(|| format!("config {}", path.display()))?;
        cfg.check()?;
        // The password file is read now, so a bad one stops start-up with its reason.
        cfg.store_target()?;
        Ok(cfg)
    }

    /// The PostgreSQL store target (its password file read), or `None` for SQLite.
    pub fn store_target(
        &self,
    ) -> Result<
        Option<crate::store::postgres::target::PgTarget>,
        crate::store::postgres::target::PgTargetError,
    > {
        crate::store::postgres::target::target_from(
            self.store.as_ref(),
            self.store_password_file.as_deref(),
            true,
        )
    }

    /// Checks values serde cannot: bounds, exclusive options, withdrawals, webhook URLs.
    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.policy.missed_heartbeats >= 1,
            "policy.missed_heartbeats must be at least 1"
        );
        anyhow::ensure!(
            self.max_clock_skew >= Duration::from_millis(100),
            "max_clock_skew must be at least 100ms"
        );
        anyhow::ensure!(
            !self.sweep_interval.is_zero(),
            "sweep_interval must be positive"
        );
        crate::store::postgres::target::target_from(
            self.store.as_ref(),
            self.store_password_file.as_deref(),
            false,
        )?;
        for k in &self.enrollment.keys {
            // Lower-case hex, as fingerprints are computed: any other spelling could
            // never match, and the agent would be refused `Unenrolled` without a hint.
            let hex_ok = k.fingerprint.strip_prefix("sha256:").is_some_and(|h| {
                h.len() == 64
                    && h.bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            });
            anyhow::ensure!(
                hex_ok,
                "enrollment key for {} must be \"sha256:<64 lower-case hex digits>\", got {:?}",
                k.agent_id,
                k.fingerprint
            );
        }
        anyhow::ensure!(
            self.tdx.pcs_url.is_none()
                || (self.tdx.collateral_dir.is_none() && self.tdx.collateral_file.is_none()),
            "[tdx]: pcs_url and offline collateral (collateral_dir, collateral_file) exclude each other"
        );
        // dcap-qvl refuses every migratable TD and has no switch for it: the policy
        // could not be honoured, so it is refused here instead of failing later.
        anyhow::ensure!(
            !self.policy.tdx.allow_migratable,
            "[policy.tdx] allow_migratable = true is not supported: DCAP verification \
             (dcap-qvl) refuses every migratable TD"
        );
        if let Some(p) = &self.provenance {
            p.validate()?;
        }
        anyhow::ensure!(
            self.tdx.reattest_every() >= Duration::from_secs(1),
            "[tdx] reattest_interval must be at least 1s"
        );
        anyhow::ensure!(
            self.policy.requote_interval >= Duration::from_secs(1),
            "[policy] requote_interval must be at least 1s"
        );
        anyhow::ensure!(
            (1..=MAX_BAD_SIGNATURES_THRESHOLD).contains(&self.policy.bad_signatures_threshold),
            "[policy] bad_signatures_threshold must be 1 to {MAX_BAD_SIGNATURES_THRESHOLD}, not {}",
            self.policy.bad_signatures_threshold
        );
        if let Some(e) = &self.ear {
            e.validate()?;
        }
        anyhow::ensure!(
            self.policy.bad_signatures_window >= Duration::from_secs(1),
            "[policy] bad_signatures_window must be at least 1s"
        );
        if let Some(i) = &self.images {
            i.policy()
                .validate()
                .map_err(|e| anyhow::anyhow!("[images]: {e}"))?;
            anyhow::ensure!(
                !i.cache_ttl.is_zero() && !i.retry_after.is_zero(),
                "[images]: cache_ttl and retry_after must be positive"
            );
            anyhow::ensure!(
                (1..=64).contains(&i.max_concurrent),
                "[images]: max_concurrent must be 1..=64"
            );
        }
        anyhow::ensure!(
            self.enrollment.crl_file.is_none() || self.enrollment.ca_file.is_some(),
            "[enrollment] crl_file needs ca_file: a CRL is checked against the enrollment CA"
        );
        for w in &self.withdrawn {
            w.target()
                .map_err(|e| anyhow::anyhow!("[[withdrawn]]: {e}"))?;
        }
        anyhow::ensure!(
            self.alert_retention >= Duration::from_secs(3600),
            "alert_retention must be at least 1h"
        );
        let l = &self.limits;
        for (name, d) in [
            ("header_timeout", l.header_timeout),
            ("body_timeout", l.body_timeout),
            ("idle_timeout", l.idle_timeout),
            ("tls_handshake_timeout", l.tls_handshake_timeout),
        ] {
            anyhow::ensure!(!d.is_zero(), "[limits] {name} must be positive");
        }
        anyhow::ensure!(
            l.max_connections >= 1 && l.max_connections_per_ip >= 1,
            "[limits] max_connections and max_connections_per_ip must be at least 1"
        );
        for (name, rate, burst) in [
            ("challenge", l.challenge_rate, l.challenge_burst),
            ("register", l.register_rate, l.register_burst),
        ] {
            anyhow::ensure!(
                rate.is_finite() && rate > 0.0 && burst >= 1,
                "[limits] {name}_rate must be a positive number and {name}_burst at least 1"
            );
        }
        for (i, w) in self.webhooks.iter().enumerate() {
            // The URL itself is not echoed: it often carries a secret token.
            anyhow::ensure!(
                (w.starts_with("http://") || w.starts_with("https://"))
                    && reqwest::Url::parse(w).is_ok_and(|u| u.host_str().is_some()),
                "webhooks[{i}] ({}) must be an http(s) URL with a host",
                redact_url(w)
            );
        }
        Ok(())
    }

    /// A config for tests and the demo: everything default, data in `dir`.
    pub fn with_data_dir(dir: &Path) -> CpConfig {
        CpConfig {
            listen: default_listen(),
            data_dir: dir.to_path_buf(),
            store: None,
            store_password_file: None,
            max_clock_skew: default_skew(),
            heartbeat_interval: default_interval(),
            challenge_ttl: default_challenge_ttl(),
            sweep_interval: default_sweep(),
            alert_cooldown: default_cooldown(),
            alert_retention: default_alert_retention(),
            audit_log: None,
            webhooks: Vec::new(),
            operator_token_file: None,
            policy: TrustPolicy::default(),
            enrollment: Enrollment::default(),
            tdx: TdxConfig::default(),
            provenance: None,
            images: None,
            withdrawn: Vec::new(),
            tls: None,
            ear: None,
            insecure_http: false,
            viewer_token_file: None,
            limits: Limits::default(),
        }
    }
}

/// A webhook URL as logs may show it: `scheme://host[:port]`, never the path, query
/// or credentials (which often carry a secret token).
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => match (u.host_str(), u.port()) {
            (Some(h), Some(p)) => format!("{}://{h}:{p}", u.scheme()),
            (Some(h), None) => format!("{}://{h}", u.scheme()),
            (None, _) => format!("{}://", u.scheme()),
        },
        Err(_) => "<unparsable webhook URL>".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enrollment_fingerprints_must_be_lower_case_hex() {
        let cfg = |fp: &str| {
            let c: CpConfig = toml::from_str(&format!(
                "data_dir = \"/tmp/x\"\n[[enrollment.keys]]\nagent_id = \"n1\"\nfingerprint = \"{fp}\"\n"
            ))
            .unwrap();
            c.check()
        };
        assert!(cfg(&format!("sha256:{}", "ab".repeat(32))).is_ok());
        for bad in [
            format!("sha256:{}", "AB".repeat(32)),
            format!("sha256:{}", "zz".repeat(32)),
            format!("sha256:{}", "ab".repeat(31)),
            format!("sha384:{}", "ab".repeat(32)),
        ] {
            let e = cfg(&bad).unwrap_err().to_string();
            assert!(
                e.contains("lower-case hex") && e.contains("n1"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn tdx_sections_parse_and_conflicts_are_refused() {
        let text = format!(
            r#"data_dir = "/tmp/x"
[policy.tdx]
allowed_tcb_statuses = ["UpToDate"]
warn_tcb_statuses = ["SWHardeningNeeded"]
mrtd_allowlist = ["{mrtd}"]
rtmr_allowlists = [[], ["{mrtd}"], []]

[tdx]
pcs_url = "https://pccs.example:8081"
"#,
            mrtd = "ab".repeat(48)
        );
        let cfg: CpConfig = toml::from_str(&text).unwrap();
        cfg.check().unwrap();
        assert_eq!(cfg.policy.tdx.warn_tcb_statuses, ["SWHardeningNeeded"]);
        assert_eq!(cfg.policy.tdx.mrtd_allowlist[0].0, [0xab; 48]);
        assert_eq!(cfg.policy.tdx.rtmr_allowlists[1].len(), 1);
        assert_eq!(
            cfg.tdx.pcs_url.as_deref(),
            Some("https://pccs.example:8081")
        );

        let both = text.replace(
            "[tdx]\n",
            "[tdx]\ncollateral_file = \"/etc/provenant/c.json\"\n",
        );
        let cfg: CpConfig = toml::from_str(&both).unwrap();
        assert!(cfg.check().unwrap_err().to_string().contains("exclude"));

        let bound = text.replace(
            "[policy.tdx]\n",
            &format!(
                "[policy.tdx]\nallowed_mrservicetd = [\"{s}\"]\ntrusted_mrservicetd = [\"{s}\"]\nallow_servtd_ext = true\n",
                s = "cd".repeat(48)
            ),
        );
        let cfg: CpConfig = toml::from_str(&bound).unwrap();
        cfg.check().unwrap();
        assert_eq!(cfg.policy.tdx.allowed_mrservicetd[0].0, [0xcd; 48]);
        assert_eq!(cfg.policy.tdx.trusted_mrservicetd[0].0, [0xcd; 48]);
        assert!(cfg.policy.tdx.allow_servtd_ext && !cfg.policy.tdx.allow_migratable);
        let migratable = text.replace("[policy.tdx]\n", "[policy.tdx]\nallow_migratable = true\n");
        let cfg: CpConfig = toml::from_str(&migratable).unwrap();
        assert!(cfg
            .check()
            .unwrap_err()
            .to_string()
            .contains("allow_migratable"));

        let imgs = r#"data_dir = "/x"
[images]
prefer_keyless = true
cache_ttl = "10m"
[[images.trust]]
scope = "127.0.0.1:5000/provenant"
keys = ["cosign.pub"]
rekor_key = "rekor.pub"
"#;
        let cfg: CpConfig = toml::from_str(imgs).unwrap();
        cfg.check().unwrap();
        let i = cfg.images.as_ref().unwrap();
        assert!(i.policy().prefer_keyless);
        assert_eq!(i.cache_ttl, Duration::from_secs(600));
        assert_eq!(i.retry_after, Duration::from_secs(30));
        // Validation names the rule.
        let bad_rule = imgs.replace("rekor_key = \"rekor.pub\"\n", "");
        let cfg: CpConfig = toml::from_str(&bad_rule).unwrap();
        let e = cfg.check().unwrap_err().to_string();
        assert!(
            e.contains("[images]")
                && e.contains("127.0.0.1:5000/provenant")
                && e.contains("rekor_key"),
            "{e}"
        );
        assert!(toml::from_str::<CpConfig>(&imgs.replace("cache_ttl", "cache_tll")).is_err());

        // A config file refuses the software tier unless it says otherwise.
        let cfg: CpConfig = toml::from_str("data_dir = \"/x\"\n").unwrap();
        assert!(!cfg.policy.allow_software_tier);
        assert_eq!(cfg.policy.missed_heartbeats, 3);
        assert_eq!(cfg.alert_retention, Duration::from_secs(30 * 86400));
        let cfg: CpConfig =
            toml::from_str("data_dir = \"/x\"\n[policy]\nmissed_heartbeats = 5\n").unwrap();
        assert!(!cfg.policy.allow_software_tier);
        assert_eq!(cfg.policy.missed_heartbeats, 5);
        let cfg: CpConfig =
            toml::from_str("data_dir = \"/x\"\n[policy]\nallow_software_tier = true\n").unwrap();
        assert!(cfg.policy.allow_software_tier);
        assert!(toml::from_str::<CpConfig>(
            "data_dir = \"/x\"\n[policy]\nallow_sofware_tier = true\n"
        )
        .is_err());
        // A webhook URL is not echoed in full when refused.
        let mut cfg = CpConfig::with_data_dir(Path::new("/x"));
        cfg.webhooks = vec!["ftp://hooks.example/SECRET".into()];
        let e = cfg.check().unwrap_err().to_string();
        assert!(
            !e.contains("SECRET") && e.contains("ftp://hooks.example"),
            "{e}"
        );

        for bad in [
            "data_dir = \"/x\"\n[tdx]\npcs = \"intel\"\n",
            "data_dir = \"/x\"\n[policy.tdx]\nmrtd_allowlist = [\"abcd\"]\n",
        ] {
            assert!(toml::from_str::<CpConfig>(bad).is_err(), "{bad}");
        }
    }
}
