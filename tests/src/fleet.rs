//! What the fault tests (`tests/tests/faults.rs`) are built from: a control plane as a
//! real `cp-verifier serve` process that can be killed and restarted, software-tier
//! agents simulated in the test process (real keys, reports and pulses signed with the
//! agent's own code), one client for the control plane's API, and a size-capped
//! filesystem.
//!
//! Everything that depends on how the control plane is configured or reached (its
//! config file, TLS, tokens) lives here, in [`CpSpec::write`] and [`CpClient`], so a
//! change there is made once.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use evidence::report::HexBytes;
use evidence::{
    Digest32, Envelope, FileMeasurement, Measurements, Platform, PolicyMeasurement, Pulse, Report,
    TeeKind, Tier, PULSE_PAYLOAD_TYPE, REPORT_PAYLOAD_TYPE,
};
use guest_agent::agent::sign_payload;
use guest_agent::signer::{KeySigner, Signer};
use provenant_base::clock::{Clock, SystemClock};
use serde_json::Value;

use crate::{binary, free_port, Proc};

/// What a control plane's config says, for the parts the fault tests vary.
pub struct CpSpec {
    pub port: u16,
    pub data_dir: PathBuf,
    pub audit_log: PathBuf,
    pub webhooks: Vec<String>,
    /// Longest heartbeat interval an agent may declare (`heartbeat_interval`).
    pub heartbeat_interval: &'static str,
    pub missed_heartbeats: u32,
    pub sweep_interval: &'static str,
    pub alert_cooldown: &'static str,
    /// `(agent_id, fingerprint)` enrolled by allowlist.
    pub enrolled: Vec<(String, String)>,
    /// TOML appended to the config (further tables, e.g. `[policy.ebpf]`).
    pub extra: String,
    /// Start the process with `--log-json` (one JSON object per log line).
    pub json_logs: bool,
    /// Also write [`crate::OPERATOR_TOKEN`] beside the config and name it as
    /// `operator_token_file` (operator endpoints enabled).
    pub operator: bool,
}

impl CpSpec {
    /// A spec with a free port and the fault tests' defaults: software tier allowed,
    /// 1 s heartbeats, 3 missed heartbeats, a 200 ms sweep.
    pub fn new(data_dir: &Path, audit_log: &Path) -> CpSpec {
        CpSpec {
            port: free_port(),
            data_dir: data_dir.to_path_buf(),
            audit_log: audit_log.to_path_buf(),
            webhooks: Vec::new(),
            heartbeat_interval: "1s",
            missed_heartbeats: 3,
            sweep_interval: "200ms",
            alert_cooldown: "0s",
            enrolled: Vec::new(),
            extra: String::new(),
            json_logs: false,
            operator: false,
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Writes the config file `path` says.
    pub fn write(&self, path: &Path) {
        let viewer = path.with_extension("viewer-token");
        provenant_base::fsutil::write_private(&viewer, crate::VIEWER_TOKEN.as_bytes())
            .expect("viewer token");
        let operator = if self.operator {
            let p = path.with_extension("operator-token");
            provenant_base::fsutil::write_private(&p, crate::OPERATOR_TOKEN.as_bytes())
                .expect("operator token");
            format!("operator_token_file = \"{}\"\n", p.display())
        } else {
            String::new()
        };
        let mut s = format!(
            r#"{operator}listen = "127.0.0.1:{port}"
data_dir = "{data}"
heartbeat_interval = "{hb}"
sweep_interval = "{sweep}"
alert_cooldown = "{cool}"
audit_log = "{audit}"
webhooks = [{hooks}]
viewer_token_file = "{viewer}"

[policy]
allow_software_tier = true
missed_heartbeats = {missed}

[limits]
# A whole fleet re-registers at once after a restart, from one loopback address.
challenge_rate = 100000.0
challenge_burst = 100000
register_rate = 100000.0
register_burst = 100000
"#,
            viewer = viewer.display(),
            port = self.port,
            data = self.data_dir.display(),
            hb = self.heartbeat_interval,
            sweep = self.sweep_interval,
            cool = self.alert_cooldown,
            audit = self.audit_log.display(),
            hooks = self
                .webhooks
                .iter()
                .map(|w| format!("\"{w}\""))
                .collect::<Vec<_>>()
                .join(", "),
            missed = self.missed_heartbeats,
        );
        for (id, fp) in &self.enrolled {
            s.push_str(&format!(
                "\n[[enrollment.keys]]\nagent_id = \"{id}\"\nfingerprint = \"{fp}\"\n"
            ));
        }
        s.push_str(&self.extra);
        std::fs::write(path, s).expect("write the control plane's config");
    }
}

/// A `cp-verifier serve` process that can be SIGKILLed and started again on the same
/// config (same port, same data directory). Each start logs to its own file.
pub struct CpProcess {
    pub config: PathBuf,
    pub log_dir: PathBuf,
    pub client: CpClient,
    proc: Option<Proc>,
    dead: Vec<Proc>,
    starts: u32,
    json_logs: bool,
}

impl CpProcess {
    /// Starts the control plane on `config` and waits until it answers (up to 30 s).
    pub async fn start(spec: &CpSpec, config: &Path, log_dir: &Path) -> CpProcess {
        spec.write(config);
        let mut cp = CpProcess {
            config: config.to_path_buf(),
            log_dir: log_dir.to_path_buf(),
            client: CpClient::new(&spec.base_url()),
            proc: None,
            dead: Vec::new(),
            starts: 0,
            json_logs: spec.json_logs,
        };
        cp.restart().await;
        cp
    }

    /// Starts the process (again) and returns how long it took until `/healthz`
    /// answered.
    pub async fn restart(&mut self) -> Duration {
        assert!(self.proc.is_none(), "the control plane is still running");
        self.starts += 1;
        let t = Instant::now();
        let mut cmd = Command::new(binary("cp-verifier"));
        if self.json_logs {
            cmd.arg("--log-json");
        }
        cmd.args(["serve", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "info");
        let mut p = Proc::spawn_cmd(&format!("cp-verifier-{}", self.starts), cmd, &self.log_dir);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.client.healthy().await {
                break;
            }
            assert!(
                p.is_running(),
                "the control plane exited at start:\n{}",
                p.log_text()
            );
            assert!(
                Instant::now() < deadline,
                "the control plane did not answer within 30 s:\n{}",
                p.log_text()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.proc = Some(p);
        t.elapsed()
    }

    /// `kill -9`: SIGKILL to the process's pid, then reaps it. The control plane gets
    /// no chance to flush, answer or close anything.
    pub fn kill9(&mut self) {
        let mut p = self.proc.take().expect("the control plane is running");
        let pid = p.child.id().to_string();
        let st = Command::new("kill")
            .args(["-9", &pid])
            .status()
            .expect("run kill");
        assert!(st.success(), "kill -9 {pid} failed");
        let status = p.child.wait().expect("reap the control plane");
        assert!(!status.success(), "killed process reported success");
        // Kept for its log on failure; it is reaped, so its drop signals nothing.
        self.dead.push(p);
    }

    pub fn is_running(&mut self) -> bool {
        self.proc.as_mut().is_some_and(|p| p.is_running())
    }

    /// The current process's log.
    pub fn log_text(&self) -> String {
        self.proc.as_ref().map(|p| p.log_text()).unwrap_or_default()
    }

    /// Every start's log, concatenated.
    pub fn all_logs(&self) -> String {
        (1..=self.starts)
            .map(|n| {
                std::fs::read_to_string(self.log_dir.join(format!("cp-verifier-{n}.log")))
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// What the control plane said to one request: a status and its JSON body, or nothing
/// (refused connection, reset, timeout).
#[derive(Debug, Clone)]
pub enum Answer {
    Status(u16, Value),
    NoAnswer(String),
}

impl Answer {
    pub fn status(&self) -> Option<u16> {
        match self {
            Answer::Status(s, _) => Some(*s),
            Answer::NoAnswer(_) => None,
        }
    }
    /// The typed refusal's `error.kind`, if there is one.
    pub fn kind(&self) -> Option<&str> {
        match self {
            Answer::Status(_, v) => v["error"]["kind"].as_str(),
            Answer::NoAnswer(_) => None,
        }
    }
    pub fn body(&self) -> &Value {
        static NULL: Value = Value::Null;
        match self {
            Answer::Status(_, v) => v,
            Answer::NoAnswer(_) => &NULL,
        }
    }
}

/// The control plane's API as agents and operators reach it.
#[derive(Clone)]
pub struct CpClient {
    pub base: String,
    http: reqwest::Client,
}

impl CpClient {
    pub fn new(base: &str) -> CpClient {
        CpClient {
            base: base.to_string(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("http client"),
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Answer {
        match req.bearer_auth(crate::VIEWER_TOKEN).send().await {
            Ok(r) => {
                let s = r.status().as_u16();
                // The status line is the answer: a 200 means the state change was
                // committed, even if the body is then cut off.
                Answer::Status(s, r.json().await.unwrap_or(Value::Null))
            }
            Err(e) => Answer::NoAnswer(crate::fleet::chain(&e)),
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    pub async fn post(&self, path: &str, body: Vec<u8>) -> Answer {
        self.send(
            self.http
                .post(format!("{}{path}", self.base))
                .header("content-type", "application/json")
                .body(body),
        )
        .await
    }

    pub async fn healthy(&self) -> bool {
        self.get("/healthz").await.status() == Some(200)
    }

    pub async fn challenge(&self) -> Result<Digest32, Answer> {
        match self.get("/api/v1/challenge").await {
            Answer::Status(200, v) => serde_json::from_value::<evidence::api::Challenge>(v.clone())
                .map(|c| c.nonce)
                .map_err(|e| Answer::Status(200, Value::String(e.to_string()))),
            other => Err(other),
        }
    }

    pub async fn register(&self, report: &Envelope) -> Answer {
        let req = evidence::api::RegisterRequest {
            envelope: report.clone(),
            evidence: evidence::api::RegisterEvidence::default(),
        };
        self.post(
            "/api/v1/register",
            serde_json::to_vec(&req).expect("register request"),
        )
        .await
    }

    pub async fn heartbeat(&self, pulse: &Envelope) -> Answer {
        self.post("/api/v1/heartbeat", pulse.to_json()).await
    }

    /// The agent as the API shows it (`None`: no 200).
    pub async fn agent(&self, id: &str) -> Option<Value> {
        match self.get(&format!("/api/v1/agents/{id}")).await {
            Answer::Status(200, v) => Some(v),
            _ => None,
        }
    }

    /// The newest alerts (up to 1000), all kinds.
    pub async fn alerts(&self) -> Vec<Value> {
        self.get("/api/v1/alerts?limit=1000").await.body()["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// A software-tier agent simulated in the test process: its own ed25519 key, reports
/// and pulses built like `guest-agent`'s and signed with its `sign_payload`. It keeps
/// the chain position the control plane last ACKNOWLEDGED.
pub struct SimAgent {
    pub id: String,
    pub signer: KeySigner,
    pub interval_ms: u64,
    /// Sequence and head of the last acknowledged registration (0, report digest) or
    /// pulse.
    pub seq: u64,
    pub head: Digest32,
    /// Whether a registration was ever acknowledged (the report carries the last
    /// acknowledged pulse, as the agent's does).
    pub registered: bool,
    /// The eBPF list its reports and pulses carry (none by default).
    pub ebpf: Option<evidence::Ebpf>,
}

impl SimAgent {
    pub fn new(id: &str, interval_ms: u64) -> SimAgent {
        SimAgent {
            id: id.to_string(),
            signer: KeySigner::generate_ed25519().expect("key"),
            interval_ms,
            seq: 0,
            head: HexBytes([0; 32]),
            registered: false,
            ebpf: None,
        }
    }

    pub fn fingerprint(&self) -> String {
        self.signer.public_key().fingerprint()
    }

    pub fn enrollment(&self) -> (String, String) {
        (self.id.clone(), self.fingerprint())
    }

    /// What a software-tier node measures (fixed, but for [`SimAgent::ebpf`]).
    pub fn measurements(&self) -> Measurements {
        Measurements {
            agent_binary: HexBytes([0x11; 32]),
            policy: PolicyMeasurement::from_files(vec![FileMeasurement {
                path: "/etc/provenant/policy.toml".into(),
                sha256: HexBytes([0x22; 32]),
            }]),
            platform: Platform {
                tee: TeeKind::None,
                tpm_present: false,
                kernel_cmdline_sha256: None,
                lockdown: None,
            },
            workloads: None,
            ebpf: self.ebpf.clone(),
        }
    }

    /// A signed report answering `nonce`, carrying the last acknowledged pulse as
    /// `guest-agent`'s `build_report` does.
    pub fn report(&self, nonce: Digest32) -> Envelope {
        let r = Report {
            version: 1,
            agent_id: self.id.clone(),
            partition: "default".into(),
            tier: Tier::Software,
            issued_at_ns: SystemClock.now().get(),
            nonce,
            sequence: if self.registered { self.seq } else { 0 },
            previous_pulse: self.registered.then_some(self.head),
            heartbeat_key: self.signer.public_key().clone(),
            heartbeat_interval_ms: self.interval_ms,
            agent_version: "fault-test".into(),
            measurements: self.measurements(),
        };
        sign_payload(&self.signer, REPORT_PAYLOAD_TYPE, &r).expect("sign report")
    }

    /// The signed pulse after the last acknowledged one (fresh nonce, now).
    pub fn next_pulse(&self) -> Envelope {
        let p = Pulse {
            version: 1,
            agent_id: self.id.clone(),
            partition: "default".into(),
            sequence: self.seq + 1,
            issued_at_ns: SystemClock.now().get(),
            nonce: HexBytes(rand::random()),
            previous: self.head,
            measurements: Some(self.measurements()),
            measurements_digest: None,
            health: None,
        };
        sign_payload(&self.signer, PULSE_PAYLOAD_TYPE, &p).expect("sign pulse")
    }

    /// The control plane acknowledged `report` (200): the chain starts again at it.
    pub fn registered(&mut self, report: &Envelope) {
        self.seq = 0;
        self.head = HexBytes(report.digest());
        self.registered = true;
    }

    /// The control plane acknowledged `pulse` (200).
    pub fn acknowledged(&mut self, pulse: &Envelope) {
        self.seq += 1;
        self.head = HexBytes(pulse.digest());
    }

    /// Challenge, report, register: the agent's registration. `Ok` when acknowledged.
    pub async fn register(&mut self, cp: &CpClient) -> Result<Envelope, Answer> {
        let nonce = cp.challenge().await?;
        let report = self.report(nonce);
        match cp.register(&report).await {
            Answer::Status(200, _) => {
                self.registered(&report);
                Ok(report)
            }
            other => Err(other),
        }
    }
}

/// A filesystem of a fixed size mounted at a directory (tmpfs, or if mounting tmpfs
/// is not permitted, an ext4 image on a loop device), unmounted on drop.
pub struct SmallFs {
    pub dir: PathBuf,
    pub kind: &'static str,
}

impl SmallFs {
    /// Mounts `size_kib` KiB at `dir` (created). Panics with what was tried when
    /// neither tmpfs nor a loop device can be mounted: never skips silently.
    pub fn mount(dir: &Path, size_kib: u64) -> SmallFs {
        std::fs::create_dir_all(dir).expect("mount point");
        let tmpfs = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size_kib}k,mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .output();
        let tmpfs_err = match tmpfs {
            Ok(o) if o.status.success() => {
                return SmallFs {
                    dir: dir.to_path_buf(),
                    kind: "tmpfs",
                }
            }
            Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
            Err(e) => e.to_string(),
        };
        let image = dir.with_extension("img");
        let made = std::fs::File::create(&image)
            .and_then(|f| f.set_len(size_kib * 1024))
            .map_err(|e| e.to_string())
            .and_then(|()| run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&image)))
            .and_then(|()| {
                run(Command::new("mount")
                    .args(["-o", "loop"])
                    .arg(&image)
                    .arg(dir))
            });
        match made {
            Ok(()) => SmallFs {
                dir: dir.to_path_buf(),
                kind: "ext4 on a loop device",
            },
            Err(loop_err) => panic!(
                "cannot mount a small filesystem at {} for the disk-full test (run the tests as root): \
                 tmpfs: {}; loop device: {loop_err}",
                dir.display(),
                tmpfs_err.trim()
            ),
        }
    }

    /// Fills the filesystem with `name` until a write fails (ENOSPC).
    pub fn fill(&self, name: &str) -> u64 {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(name))
            .expect("filler file");
        let block = vec![0xA5u8; 4096];
        let mut n = 0u64;
        // Whole blocks, then single bytes for the last partial block.
        while f.write_all(&block).and_then(|()| f.sync_all()).is_ok() {
            n += 4096;
        }
        while f.write_all(&[0xA5]).and_then(|()| f.sync_all()).is_ok() {
            n += 1;
        }
        n
    }

    /// Free bytes, as `statvfs` reports them (through `df`).
    pub fn free_bytes(&self) -> u64 {
        let out = Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(&self.dir)
            .output()
            .expect("df");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or(0)
    }
}

fn run(cmd: &mut Command) -> Result<(), String> {
    match cmd.output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(String::from_utf8_lossy(&o.stderr).trim().to_string()),
        Err(e) => Err(e.to_string()),
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Something still holds it open: detach it now, freed when released.
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
        let _ = std::fs::remove_file(self.dir.with_extension("img"));
    }
}

/// A real `guest-agent run` on the software tier, reaching the control plane at
/// `cp_url`: its key (mode 0600), policy file and config written under `dir`.
pub struct RealAgent {
    pub id: String,
    pub fingerprint: String,
    pub api: String,
    pub config: PathBuf,
    pub dir: PathBuf,
}

impl RealAgent {
    pub fn setup(dir: &Path, id: &str, cp_url: &str, heartbeat: &str) -> RealAgent {
        std::fs::create_dir_all(dir).expect("agent dir");
        let signer = KeySigner::generate_ed25519().expect("key");
        let key = dir.join("node.key");
        provenant_base::fsutil::write_private(&key, signer.to_pkcs8_pem().expect("pem").as_bytes())
            .expect("key file");
        let policy = dir.join("policy.toml");
        std::fs::write(&policy, "allow = [\"registry.example/app\"]\n").expect("policy");
        let port = free_port();
        let config = dir.join("agent.toml");
        std::fs::write(
            &config,
            format!(
                r#"agent_id = "{id}"
control_plane = "{cp_url}"
heartbeat_interval = "{heartbeat}"
max_backoff = "1s"
listen = "127.0.0.1:{port}"
key_file = "{key}"
policy_files = ["{policy}"]
quote_provider = "none"
collect_workloads = false
collect_ebpf = false
insecure_http = true                  # the test's control plane: plain http on loopback
"#,
                key = key.display(),
                policy = policy.display(),
            ),
        )
        .expect("agent config");
        RealAgent {
            id: id.to_string(),
            fingerprint: signer.public_key().fingerprint(),
            api: format!("http://127.0.0.1:{port}"),
            config,
            dir: dir.to_path_buf(),
        }
    }

    pub fn enrollment(&self) -> (String, String) {
        (self.id.clone(), self.fingerprint.clone())
    }

    pub fn start(&self) -> Proc {
        Proc::spawn(
            "guest-agent",
            &["run", "--config", self.config.to_str().expect("utf-8 path")],
            &self.dir,
        )
    }
}
