//! The harness the API integration tests share: a real control plane on loopback
//! (real SQLite store, real HTTP), a pinned clock, and agents whose reports and
//! pulses are signed with the agent's own code.
//!
//! Test crates whose name ends in `_pg` (e.g. `api_pg`, which includes `api.rs`'s
//! tests) get control planes on PostgreSQL instead: a throwaway cluster per test
//! process ([`pg`]), a database per test directory.
#![allow(dead_code)]

pub(crate) mod pg;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cp_verifier::config::{CpConfig, EnrolledKey};
use cp_verifier::judge::images::ImageChecker;
use cp_verifier::plane::ControlPlane;
use cp_verifier::store::sqlite::SqliteStore;
use evidence::api::{Challenge, RegisterEvidence, RegisterRequest};
use evidence::report::HexBytes;
use evidence::{
    Digest32, Envelope, FileMeasurement, Measurements, Platform, PolicyMeasurement, Pulse, Report,
    TeeKind, Tier, PULSE_PAYLOAD_TYPE, REPORT_PAYLOAD_TYPE,
};
use guest_agent::agent::sign_payload;
use guest_agent::signer::{KeySigner, Signer};
use provenant_base::clock::Clock;
use serde_json::Value;

pub(crate) const T0: u64 = 1_800_000_000_000_000_000;
pub(crate) const SEC: u64 = 1_000_000_000;
pub(crate) const OPERATOR_TOKEN: &str = "0123456789abcdef-operator";
pub(crate) const VIEWER_TOKEN: &str = "0123456789abcdef-viewer";

pub(crate) struct ManualClock(pub(crate) AtomicU64);
impl Clock for ManualClock {
    fn now(&self) -> provenant_base::clock::UnixNanos {
        provenant_base::clock::UnixNanos(self.0.load(Ordering::SeqCst))
    }
}
impl ManualClock {
    pub(crate) fn advance(&self, d: Duration) {
        self.0
            .fetch_add(u64::try_from(d.as_nanos()).unwrap(), Ordering::SeqCst);
    }
}

pub(crate) struct Cp {
    pub base: String,
    pub cp: Arc<ControlPlane>,
    pub clock: Arc<ManualClock>,
    pub http: reqwest::Client,
    pub dir: tempfile::TempDir,
}

/// The tokens and limits every test control plane gets: operator and viewer token
/// files (0600) in `dir`, and rate limits far above what the tests send.
pub(crate) fn test_access(cfg: &mut CpConfig, dir: &std::path::Path) {
    let token = dir.join("token");
    provenant_base::fsutil::write_private(&token, OPERATOR_TOKEN.as_bytes()).unwrap();
    cfg.operator_token_file = Some(token);
    let viewer = dir.join("viewer.token");
    provenant_base::fsutil::write_private(&viewer, VIEWER_TOKEN.as_bytes()).unwrap();
    cfg.viewer_token_file = Some(viewer);
    // The API tests register far faster than any fleet; the rate limit has its own test.
    cfg.limits.challenge_rate = 1e6;
    cfg.limits.challenge_burst = 1_000_000;
    cfg.limits.register_rate = 1e6;
    cfg.limits.register_burst = 1_000_000;
}

/// Serves `cp` on a loopback port through the product's transport (plain HTTP).
pub(crate) async fn serve(
    cp: Arc<ControlPlane>,
    clock: Arc<ManualClock>,
    dir: tempfile::TempDir,
) -> Cp {
    let app = cp_verifier::http::router::router(cp.clone()).unwrap();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    let limits = cp.cfg.limits.clone();
    tokio::spawn(cp_verifier::http::transport::serve(
        l,
        app,
        None,
        limits,
        std::future::pending(),
    ));
    Cp {
        base,
        cp,
        clock,
        http: reqwest::Client::new(),
        dir,
    }
}

pub(crate) async fn start_with(
    dir: tempfile::TempDir,
    checker: Option<Arc<dyn ImageChecker>>,
    f: impl FnOnce(&mut CpConfig),
) -> Cp {
    let mut cfg = test_config(&dir, f);
    let clock = Arc::new(ManualClock(AtomicU64::new(T0)));
    let store: Arc<dyn cp_verifier::store::Store> = if on_postgres() {
        // One database per test directory, so a second control plane started on the
        // same directory (a restart) finds the same state.
        let marker = dir.path().join("pg.url");
        let url = match std::fs::read_to_string(&marker) {
            Ok(u) => u,
            Err(_) => {
                let u = pg::shared().fresh_database().await;
                std::fs::write(&marker, &u).unwrap();
                u
            }
        };
        cfg.store = Some(cp_verifier::store::postgres::target::StoreUrl(url));
        cp_verifier::wiring::open_store(&cfg).await.unwrap()
    } else {
        Arc::new(SqliteStore::open(&cfg.data_dir).await.unwrap())
    };
    let cp =
        Arc::new(ControlPlane::with_image_checker(cfg, store, clock.clone(), checker).unwrap());
    serve(cp, clock, dir).await
}

/// The test control plane's config in `dir`, adjusted by `f`.
pub(crate) fn test_config(dir: &tempfile::TempDir, f: impl FnOnce(&mut CpConfig)) -> CpConfig {
    let mut cfg = CpConfig::with_data_dir(&dir.path().join("db"));
    cfg.audit_log = Some(dir.path().join("audit.jsonl"));
    cfg.alert_cooldown = Duration::from_secs(0);
    test_access(&mut cfg, dir.path());
    f(&mut cfg);
    cfg
}

/// A control plane on a store the test opened itself (replicas of one shared store).
pub(crate) async fn start_on_store(
    store: Arc<dyn cp_verifier::store::Store>,
    f: impl FnOnce(&mut CpConfig),
) -> Cp {
    let dir = tempfile::tempdir().unwrap();
    let cfg = test_config(&dir, f);
    let clock = Arc::new(ManualClock(AtomicU64::new(T0)));
    let cp = Arc::new(ControlPlane::new(cfg, store, clock.clone()).unwrap());
    serve(cp, clock, dir).await
}

/// Whether this test crate runs its control planes on PostgreSQL (its name ends in
/// `_pg`; the harness module path starts with the crate name).
pub(crate) fn on_postgres() -> bool {
    module_path!()
        .split("::")
        .next()
        .is_some_and(|c| c.ends_with("_pg"))
}

pub(crate) async fn start(f: impl FnOnce(&mut CpConfig)) -> Cp {
    start_with(tempfile::tempdir().unwrap(), None, f).await
}

pub(crate) fn measurements(bin: u8, pol: u8) -> Measurements {
    Measurements {
        agent_binary: HexBytes([bin; 32]),
        policy: PolicyMeasurement::from_files(vec![FileMeasurement {
            path: "/etc/provenant/policy.toml".into(),
            sha256: HexBytes([pol; 32]),
        }]),
        platform: Platform {
            tee: TeeKind::None,
            tpm_present: false,
            kernel_cmdline_sha256: None,
            lockdown: None,
        },
        workloads: None,
        ebpf: None,
    }
}

pub(crate) struct TestAgent {
    pub id: String,
    pub signer: KeySigner,
    pub seq: u64,
    pub head: Digest32,
}

impl TestAgent {
    pub(crate) fn new(id: &str) -> TestAgent {
        TestAgent {
            id: id.into(),
            signer: KeySigner::generate_ed25519().unwrap(),
            seq: 0,
            head: HexBytes([0; 32]),
        }
    }
    pub(crate) fn enroll(&self) -> EnrolledKey {
        EnrolledKey {
            agent_id: self.id.clone(),
            fingerprint: self.signer.public_key().fingerprint(),
        }
    }
    pub(crate) fn report(&self, nonce: Digest32, at: u64, m: Measurements) -> Envelope {
        let r = Report {
            version: 1,
            agent_id: self.id.clone(),
            partition: "default".into(),
            tier: Tier::Software,
            issued_at_ns: at,
            nonce,
            sequence: 0,
            previous_pulse: None,
            heartbeat_key: self.signer.public_key().clone(),
            heartbeat_interval_ms: 1000,
            agent_version: "test".into(),
            measurements: m,
        };
        sign_payload(&self.signer, REPORT_PAYLOAD_TYPE, &r).unwrap()
    }
    pub(crate) fn pulse_at(&self, seq: u64, prev: Digest32, at: u64, m: Measurements) -> Envelope {
        let p = Pulse {
            version: 1,
            agent_id: self.id.clone(),
            partition: "default".into(),
            sequence: seq,
            issued_at_ns: at,
            nonce: HexBytes(rand::random()),
            previous: prev,
            measurements: Some(m),
            measurements_digest: None,
            health: None,
        };
        sign_payload(&self.signer, PULSE_PAYLOAD_TYPE, &p).unwrap()
    }
    pub(crate) fn next_pulse(&self, at: u64, m: Measurements) -> Envelope {
        self.pulse_at(self.seq + 1, self.head, at, m)
    }
    /// The next pulse, carrying the node's `health`.
    pub(crate) fn next_pulse_with_health(
        &self,
        at: u64,
        m: Measurements,
        health: evidence::Health,
    ) -> Envelope {
        let mut p: Pulse = serde_json::from_slice(&self.next_pulse(at, m).payload).unwrap();
        p.health = Some(health);
        sign_payload(&self.signer, PULSE_PAYLOAD_TYPE, &p).unwrap()
    }
    /// The next pulse as the agent sends it at steady state: no key id, and
    /// `measurements_digest` in place of the measurements.
    pub(crate) fn next_steady_pulse(&self, at: u64, digest: Digest32) -> Envelope {
        let p = Pulse {
            version: 1,
            agent_id: self.id.clone(),
            partition: "default".into(),
            sequence: self.seq + 1,
            issued_at_ns: at,
            nonce: HexBytes(rand::random()),
            previous: self.head,
            measurements: None,
            measurements_digest: Some(digest),
            health: None,
        };
        let payload = serde_json::to_vec(&p).unwrap();
        Envelope::sign::<guest_agent::signer::SignerError>(PULSE_PAYLOAD_TYPE, payload, "", |m| {
            guest_agent::signer::Signer::sign(&self.signer, m)
        })
        .unwrap()
    }
    pub(crate) fn accepted(&mut self, env: &Envelope) {
        self.seq += 1;
        self.head = HexBytes(env.digest());
    }
}

impl Cp {
    pub(crate) fn now(&self) -> u64 {
        self.clock.now().get()
    }
    /// GET with the viewer token.
    pub(crate) async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(VIEWER_TOKEN)
            .send()
            .await
            .unwrap();
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(Value::Null))
    }
    pub(crate) async fn post_raw(&self, path: &str, body: Vec<u8>) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(Value::Null))
    }
    pub(crate) async fn challenge(&self) -> Digest32 {
        let (s, v) = self.get("/api/v1/challenge").await;
        assert_eq!(s, 200);
        serde_json::from_value::<Challenge>(v).unwrap().nonce
    }
    pub(crate) async fn register_env(&self, env: &Envelope) -> (u16, Value) {
        let req = RegisterRequest {
            envelope: env.clone(),
            evidence: RegisterEvidence::default(),
        };
        self.post_raw("/api/v1/register", serde_json::to_vec(&req).unwrap())
            .await
    }
    pub(crate) async fn register(&self, a: &mut TestAgent, m: Measurements) -> (u16, Value) {
        let nonce = self.challenge().await;
        let env = a.report(nonce, self.now(), m);
        let r = self.register_env(&env).await;
        if r.0 == 200 {
            a.seq = 0;
            a.head = HexBytes(env.digest());
        }
        r
    }
    pub(crate) async fn pulse(&self, env: &Envelope) -> (u16, Value) {
        self.post_raw("/api/v1/heartbeat", env.to_json()).await
    }
    pub(crate) async fn alerts(&self, kind: &str) -> Vec<Value> {
        let (_, v) = self.get("/api/v1/alerts?limit=1000").await;
        v["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["kind"] == kind)
            .cloned()
            .collect()
    }
}

pub(crate) fn kind(v: &Value) -> &str {
    v["error"]["kind"].as_str().unwrap_or("<no typed error>")
}
