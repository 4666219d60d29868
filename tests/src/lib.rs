//! Helpers for Provenant's end-to-end tests: locating the built binaries and
//! supervising the processes a test starts.
#![forbid(unsafe_code)]

pub mod bpf;
pub mod chromium;
pub mod fleet;
pub mod oci_servers;
pub mod podman;
pub mod registry;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Path of a workspace binary built next to this test (`target/<profile>/NAME`).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test-binary> -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("test binary lives in target/<profile>/deps");
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} not found: build the workspace binaries first (cargo build --workspace --bins)",
        p.display()
    );
    p
}

/// A child process killed when dropped, with its stderr kept in a file for failures.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
    pub name: String,
}

/// The read token every e2e control plane accepts (see [`Proc::spawn`]); [`Http`]
/// sends it on every request and the Chromium helpers open pages with it.
pub const VIEWER_TOKEN: &str = "provenant-e2e-viewer-token";

/// The operator token of control planes started with [`fleet::CpSpec::operator`].
pub const OPERATOR_TOKEN: &str = "provenant-e2e-operator-token";

/// `url` with `?token=` [`VIEWER_TOKEN`] (a browser's first visit).
pub fn with_token(url: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}token={VIEWER_TOKEN}")
}

/// Gives a `cp-verifier serve --config FILE` whose config names no
/// `viewer_token_file` the shared [`VIEWER_TOKEN`]: written (mode 0600) beside the
/// config and named at its top. Read access is always authenticated.
fn ensure_viewer_token(config: &std::path::Path) {
    let text = std::fs::read_to_string(config).expect("control plane config");
    if text.contains("viewer_token_file") {
        return;
    }
    let token = config.with_extension("viewer-token");
    provenant_base::fsutil::write_private(&token, VIEWER_TOKEN.as_bytes()).expect("viewer token");
    std::fs::write(
        config,
        format!("viewer_token_file = \"{}\"\n{text}", token.display()),
    )
    .expect("control plane config");
}

impl Proc {
    pub fn spawn(name: &str, args: &[&str], log_dir: &std::path::Path) -> Proc {
        if name == "cp-verifier" && args.first() == Some(&"serve") {
            if let Some(c) = args
                .iter()
                .position(|a| *a == "--config" || *a == "-c")
                .and_then(|i| args.get(i + 1))
            {
                ensure_viewer_token(std::path::Path::new(c));
            }
        }
        let mut cmd = Command::new(binary(name));
        cmd.args(args).env("RUST_LOG", "info");
        Proc::spawn_cmd(name, cmd, log_dir)
    }

    /// Starts any program (a system service such as `docker-registry`), logging to
    /// `log_dir/NAME.log`.
    pub fn spawn_cmd(name: &str, mut cmd: Command, log_dir: &std::path::Path) -> Proc {
        let log = log_dir.join(format!("{name}.log"));
        let f = std::fs::File::create(&log).expect("log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(f.try_clone().expect("dup log"))
            .stderr(f)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc {
            child,
            log,
            name: name.to_string(),
        }
    }

    /// Kills the process (SIGKILL): the agent gets no chance to say goodbye.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("---- {} log ----\n{}", self.name, self.log_text());
        }
    }
}

/// A free loopback port (bound, then released for the child to take).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// A JSON-over-HTTP client for tests.
pub struct Http {
    pub c: reqwest::Client,
}

impl Default for Http {
    fn default() -> Http {
        Http::new()
    }
}

impl Http {
    pub fn new() -> Http {
        Http {
            c: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .default_headers(reqwest::header::HeaderMap::from_iter([(
                    reqwest::header::AUTHORIZATION,
                    reqwest::header::HeaderValue::from_str(&format!("Bearer {VIEWER_TOKEN}"))
                        .unwrap(),
                )]))
                .build()
                .unwrap(),
        }
    }

    pub async fn get(&self, url: &str) -> Option<(u16, Value)> {
        let r = self.c.get(url).send().await.ok()?;
        let s = r.status().as_u16();
        Some((s, r.json().await.unwrap_or(Value::Null)))
    }
    pub async fn post(&self, url: &str, body: Vec<u8>) -> (u16, Value) {
        let r = self
            .c
            .post(url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("post");
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(Value::Null))
    }
}

/// Polls `f` until it returns Some, or fails after `secs` with `what`.
pub async fn wait_for<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The control plane's alerts of one kind.
pub async fn alerts_of(http: &Http, cp: &str, kind: &str) -> Vec<Value> {
    let Some((_, v)) = http.get(&format!("{cp}/api/v1/alerts?limit=1000")).await else {
        return Vec::new();
    };
    v["alerts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a["kind"] == kind)
        .collect()
}

/// Simulated TDX guests for end-to-end tests: tdx-sim plays configfs-tsm and the RTMR
/// device, and a real `guest-agent` runs against them.
pub mod tdx {
    use std::path::{Path, PathBuf};

    use guest_agent::signer::{KeySigner, Signer};
    use tdx_sim::{Behaviour, ConfigfsKernel, RtmrBehaviour, RtmrDevice, TdReport};

    use crate::{free_port, Proc};

    /// One simulated TD: its kernel interfaces and the agent running in it.
    pub struct Td {
        pub id: &'static str,
        pub api: String,
        pub rtmr: RtmrDevice,
        pub kernel: ConfigfsKernel,
        pub event_log: PathBuf,
        pub policy: PathBuf,
        pub fingerprint: String,
        pub config: PathBuf,
    }

    /// Sets up a simulated TD (its kernel interfaces playing, the agent's key and config
    /// written) whose quotes carry `body`'s measurements. The agent is not started.
    pub fn td_with(
        root: &Path,
        cp: &str,
        id: &'static str,
        b: Behaviour,
        r: RtmrBehaviour,
        body: TdReport,
    ) -> Td {
        let dir = root.join(id);
        let (tsm, meas) = (dir.join("tsm/report"), dir.join("measurements"));
        for d in [&tsm, &meas] {
            std::fs::create_dir_all(d).unwrap();
        }
        let rtmr = RtmrDevice::start(&meas, r).unwrap();
        let kernel = ConfigfsKernel::start_with_body(&tsm, b, Some(&rtmr), body).unwrap();
        let signer = KeySigner::generate_ed25519().unwrap();
        let key = dir.join("node.key");
        provenant_base::fsutil::write_private(&key, signer.to_pkcs8_pem().unwrap().as_bytes())
            .unwrap();
        let policy = dir.join("policy.toml");
        std::fs::write(&policy, "allow = [\"registry.example/app\"]\n").unwrap();
        let port = free_port();
        let event_log = dir.join("run/rtmr3.jsonl");
        let config = dir.join("agent.toml");
        std::fs::write(
            &config,
            format!(
                r#"agent_id = "{id}"
    control_plane = "{cp}"
    insecure_http = true
    heartbeat_interval = "500ms"
    max_backoff = "1s"
    listen = "127.0.0.1:{port}"
    key_file = "{key}"
    policy_files = ["{policy}"]
    quote_provider = "configfs-tsm"
    tsm_report_dir = "{tsm}"
    rtmr_dir = "{meas}"
    event_log_file = "{log}"
    requote_interval = "2s"
    # The host's BPF programs are not this test's: keep them out of the event log.
    collect_ebpf = false
    # No podman here unless a test sets one up (then it turns this on).
    collect_workloads = false
    "#,
                key = key.display(),
                policy = policy.display(),
                tsm = tsm.display(),
                meas = meas.display(),
                log = event_log.display(),
            ),
        )
        .unwrap();
        Td {
            id,
            api: format!("http://127.0.0.1:{port}"),
            rtmr,
            kernel,
            event_log,
            policy,
            fingerprint: signer.public_key().fingerprint(),
            config,
        }
    }

    /// Waits until the TD's agent reports a control-plane refusal of `kind`, checks it
    /// was a 403 and that the control plane did not register the agent, and returns
    /// the agent's error text.
    pub async fn refused(http: &crate::Http, cp: &str, t: &Td, kind: &str) -> String {
        let err: String = crate::wait_for(30, &format!("{} refused with {kind}", t.id), || async {
            let (_, h) = http.get(&format!("{}/health", t.api)).await?;
            let e = h["last_error"].as_str()?.to_string();
            e.contains(kind).then_some(e)
        })
        .await;
        assert!(err.contains("(403)"), "{}: {err}", t.id);
        let (s, _) = http
            .get(&format!("{cp}/api/v1/agents/{}", t.id))
            .await
            .expect("control plane answers");
        assert_eq!(s, 404, "{} must not be registered", t.id);
        err
    }

    /// [`td_with`] the simulator's default measurements.
    pub fn td(root: &Path, cp: &str, id: &'static str, b: Behaviour, r: RtmrBehaviour) -> Td {
        td_with(root, cp, id, b, r, TdReport::default())
    }

    /// `[[enrollment.keys]]` entries for these TDs' keys.
    pub fn enrollment(tds: &[Td]) -> String {
        tds.iter()
            .map(|t| {
                format!(
                    "[[enrollment.keys]]\nagent_id = \"{}\"\nfingerprint = \"{}\"\n",
                    t.id, t.fingerprint
                )
            })
            .collect()
    }

    /// Starts each TD's agent (its log goes to the TD's directory).
    pub fn start_agents(root: &Path, tds: &[Td]) -> Vec<Proc> {
        tds.iter()
            .map(|t| {
                Proc::spawn(
                    "guest-agent",
                    &["run", "--config", t.config.to_str().unwrap_or_default()],
                    &root.join(t.id),
                )
            })
            .collect()
    }
}
