//! Workloads, eBPF and per-workload badges through the control plane's real HTTP
//! API (real server on loopback, real SQLite store, reports and pulses signed with
//! the agent's own code). Only the clock is pinned, and an in-test image checker
//! drives the verification cache where the real one would need a registry.

mod harness;
use harness::*;
use provenant_base::clock::UnixNanos;

use std::sync::Arc;
use std::time::Duration;

use cp_verifier::config::{CpConfig, ImagesConfig};
use cp_verifier::judge::images::ImageChecker;
use evidence::api::{RegisterEvidence, RegisterRequest};
use evidence::report::HexBytes;
use evidence::{BpfProgram, CollectorState, Ebpf, EbpfExtra, Workload, Workloads};
use evidence::{Measurements, Report, Tier, REPORT_PAYLOAD_TYPE};
use guest_agent::agent::sign_payload;
use policy::image::ImageCheck;
use policy::ReasonCode;
use serde_json::Value;
use std::sync::Mutex;

fn digest(n: u8) -> String {
    format!("sha256:{}", hex::encode([n; 32]))
}

fn container(name: &str, image: &str, d: Option<u8>) -> Workload {
    Workload {
        name: name.into(),
        id: hex::encode(sha2_like(name)),
        state: "running".into(),
        image: image.into(),
        image_id: digest(0xee),
        image_digest: d.map(digest),
    }
}

/// A stable 32-byte container id per name.
fn sha2_like(name: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(name.as_bytes()).into()
}

fn workloads(items: Vec<Workload>) -> Workloads {
    Workloads::full(items, ())
}

fn program(name: &str, sha: u8) -> BpfProgram {
    BpfProgram {
        id: u32::from(sha) + 10,
        name: name.into(),
        prog_type: "kprobe".into(),
        tag: "0123456789abcdef".into(),
        sha256: HexBytes([sha; 32]),
        pinned: vec![format!("/sys/fs/bpf/provenant/{name}")],
    }
}

fn ebpf(items: Vec<BpfProgram>) -> Ebpf {
    Ebpf::full(
        items,
        EbpfExtra {
            lsm_active: Some(false),
        },
    )
}

fn with(w: Option<Workloads>, e: Option<Ebpf>) -> Measurements {
    Measurements {
        workloads: w,
        ebpf: e,
        ..measurements(1, 1)
    }
}

/// The same measurements as a pulse carries them when nothing changed: digests only.
fn digests_only(m: &Measurements) -> Measurements {
    let mut m = m.clone();
    if let Some(w) = m.workloads.as_mut() {
        w.items = None;
    }
    if let Some(e) = m.ebpf.as_mut() {
        e.items = None;
    }
    m
}

fn default_set() -> Vec<Workload> {
    vec![
        container("web", "127.0.0.1:5000/provenant/web:1", Some(1)),
        container("db", "127.0.0.1:5000/vendor/db:2", Some(2)),
        container("local", "localhost/built-here:latest", None),
    ]
}

fn badge<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["workloads"]
        .as_array()
        .unwrap_or_else(|| panic!("no workloads in {v}"))
        .iter()
        .find(|b| b["name"] == name)
        .unwrap_or_else(|| panic!("no badge for {name} in {v}"))
}

fn codes(b: &Value) -> Vec<String> {
    b["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap().to_string())
        .collect()
}

impl Cp {
    /// Polls the agent's API view until `pred` holds for it (the image service
    /// works in the background); fails after a generous bound.
    async fn agent_until(&self, id: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let mut last = Value::Null;
        for _ in 0..500 {
            let (s, v) = self.get(&format!("/api/v1/agents/{id}")).await;
            assert_eq!(s, 200, "{v}");
            if pred(&v) {
                return v;
            }
            last = v;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("agent {id}: never {what}: {}", last["workloads"]);
    }
    async fn send(&self, a: &mut TestAgent, m: Measurements) -> (u16, Value) {
        let env = a.next_pulse(self.now(), m);
        let r = self.pulse(&env).await;
        if r.0 == 200 {
            a.accepted(&env);
        }
        r
    }
}

#[tokio::test]
async fn lists_are_kept_from_reports_and_pulses_and_inconsistent_pulses_are_refused() {
    let mut a = TestAgent::new("node-1");
    let cp = start(|c| c.enrollment.keys.push(a.enroll())).await;
    let full = with(
        Some(workloads(default_set())),
        Some(ebpf(vec![program("probe_a", 1), program("probe_b", 2)])),
    );

    // A report without its lists is refused.
    let (s, v) = cp.register(&mut a, digests_only(&full)).await;
    assert_eq!((s, kind(&v)), (400, "InconsistentInventory"), "{v}");

    let (s, v) = cp.register(&mut a, full.clone()).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["workloads"].as_array().unwrap().len(), 3, "{v}");

    let (_, v) = cp.get("/api/v1/agents/node-1").await;
    assert_eq!(v["workloads_state"]["state"], "ok");
    assert_eq!(v["ebpf_state"]["state"], "ok");
    assert_eq!(
        v["measurements"]["workloads"]["items"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        v["measurements"]["ebpf"]["items"][1]["pinned"][0],
        "/sys/fs/bpf/provenant/probe_b"
    );

    // Same digests, no items: accepted, and the lists are still the full ones.
    cp.clock.advance(Duration::from_millis(500));
    let (s, v) = cp.send(&mut a, digests_only(&full)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["workloads"].as_array().unwrap().len(), 3, "{v}");
    let (_, v) = cp.get("/api/v1/agents/node-1").await;
    assert_eq!(
        v["measurements"]["workloads"]["items"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(v["verdict"]["status"], "warn", "{v}");

    // A new digest without the items: refused, nothing recorded.
    let mut changed = default_set();
    changed.pop();
    let mut m = with(
        Some(workloads(changed)),
        Some(ebpf(vec![program("probe_a", 1), program("probe_b", 2)])),
    );
    let seq_before = a.seq;
    let (s, v) = cp.send(&mut a, digests_only(&m)).await;
    assert_eq!((s, kind(&v)), (400, "InconsistentInventory"), "{v}");
    assert!(
        v["error"]["detail"]
            .as_str()
            .unwrap()
            .contains("without its items"),
        "{v}"
    );
    // Items that do not hash to the digest: refused too.
    m.workloads.as_mut().unwrap().items = Some(default_set());
    let (s, v) = cp.send(&mut a, m.clone()).await;
    assert_eq!((s, kind(&v)), (400, "InconsistentInventory"), "{v}");
    let (_, v) = cp.get("/api/v1/agents/node-1").await;
    assert_eq!(v["sequence"], seq_before);
    assert_eq!(
        v["measurements"]["workloads"]["items"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    // The eBPF list likewise.
    let mut e = digests_only(&full);
    e.ebpf.as_mut().unwrap().digest = Some(HexBytes([7; 32]));
    let (s, v) = cp.send(&mut a, e).await;
    assert_eq!((s, kind(&v)), (400, "InconsistentInventory"), "{v}");
    // The agent's answer to the refusal is a fresh registration with full lists.
    let (s, v) = cp.register(&mut a, full.clone()).await;
    assert_eq!(s, 200, "{v}");
    let (s, _) = cp.send(&mut a, digests_only(&full)).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn ebpf_change_is_red_with_an_alert_naming_the_programs() {
    let mut a = TestAgent::new("node-1");
    let cp = start(|c| c.enrollment.keys.push(a.enroll())).await;
    let base = with(
        Some(workloads(vec![])),
        Some(ebpf(vec![program("probe_a", 1), program("probe_b", 2)])),
    );
    assert_eq!(cp.register(&mut a, base.clone()).await.0, 200);
    let (s, v) = cp.send(&mut a, digests_only(&base)).await;
    assert_eq!(s, 200);
    assert_eq!(v["verdict"]["status"], "warn", "{v}");
    assert!(cp.alerts("EbpfChanged").await.is_empty());

    // probe_b's code changes and probe_c appears; probe_a is gone.
    let changed = with(
        Some(workloads(vec![])),
        Some(ebpf(vec![program("probe_b", 3), program("probe_c", 4)])),
    );
    let (s, v) = cp.send(&mut a, changed.clone()).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["verdict"]["status"], "fail", "{v}");
    assert!(v["verdict"]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["code"] == "EbpfChanged" && r["status"] == "fail"));
    let alerts = cp.alerts("EbpfChanged").await;
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["severity"], 1);
    let d = alerts[0]["detail"].as_str().unwrap();
    for want in [
        "added: probe_c (kprobe",
        &hex::encode([4u8; 32]),
        "removed: probe_a (kprobe",
        "changed: probe_b (kprobe",
        &format!("-> sha256 {}", hex::encode([3u8; 32])),
    ] {
        assert!(d.contains(want), "{want} not in {d}");
    }
    // Repeating the change raises no second alert; it stays red, and a pulse with
    // digests only keeps it so.
    let (_, v) = cp.send(&mut a, digests_only(&changed)).await;
    assert_eq!(v["verdict"]["status"], "fail");
    assert_eq!(cp.alerts("EbpfChanged").await.len(), 1);
    // Re-registering does not launder it.
    let (s, v) = cp.register(&mut a, changed.clone()).await;
    assert_eq!(s, 200);
    assert_eq!(v["verdict"]["status"], "fail", "{v}");

    // The operator accepts the new programs: yellow again (software tier).
    let r = cp
        .http
        .post(format!("{}/api/v1/agents/node-1/expect", cp.base))
        .bearer_auth("0123456789abcdef-operator")
        .json(&serde_json::json!({"accept_current": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, v) = cp.send(&mut a, digests_only(&changed)).await;
    assert_eq!(v["verdict"]["status"], "warn", "{v}");

    // Losing sight of the programs after having seen them is red too.
    let blind = with(
        Some(workloads(vec![])),
        Some(Ebpf {
            state: CollectorState::Unavailable,
            reason: Some("no CAP_BPF".into()),
            extra: EbpfExtra { lsm_active: None },
            digest: None,
            items: None,
        }),
    );
    let (s, v) = cp.send(&mut a, blind).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["verdict"]["status"], "fail", "{v}");
    assert!(v["verdict"]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["code"] == "EbpfUnavailable" && r["status"] == "fail"));
}

#[tokio::test]
async fn collector_states_are_never_green() {
    let mut a = TestAgent::new("node-1");
    let mut b = TestAgent::new("node-2");
    let cp = start(|c| {
        c.enrollment.keys.push(a.enroll());
        c.enrollment.keys.push(b.enroll());
    })
    .await;
    let unknown = with(
        Some(Workloads {
            state: CollectorState::Unknown,
            reason: Some("podman socket /run/podman/podman.sock: connection refused".into()),
            extra: (),
            digest: None,
            items: None,
        }),
        Some(Ebpf {
            state: CollectorState::Unavailable,
            reason: Some("operation not permitted".into()),
            extra: EbpfExtra { lsm_active: None },
            digest: None,
            items: None,
        }),
    );
    let (s, v) = cp.register(&mut a, unknown.clone()).await;
    assert_eq!(s, 200, "{v}");
    // Workloads unknown: the agent is unknown (not acceptable), and no badges.
    assert_eq!(v["verdict"]["status"], "unknown", "{v}");
    assert_eq!(v["workloads"].as_array().unwrap().len(), 0);
    let (_, v) = cp.get("/api/v1/agents/node-1").await;
    assert_eq!(v["workloads_state"]["state"], "unknown");
    assert!(v["workloads_state"]["reason"]
        .as_str()
        .unwrap()
        .contains("connection refused"));
    assert_eq!(v["ebpf_state"]["state"], "unavailable");
    let reasons = v["verdict"]["reasons"].as_array().unwrap();
    assert!(reasons
        .iter()
        .any(|r| r["code"] == "WorkloadsUnknown" && r["status"] == "unknown"));
    assert!(reasons
        .iter()
        .any(|r| r["code"] == "EbpfUnavailable" && r["status"] == "warn"));

    // eBPF unavailable from the start (never seen) is yellow, not red.
    let only_ebpf = with(Some(workloads(vec![])), unknown.ebpf.clone());
    let (s, v) = cp.register(&mut b, only_ebpf).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["verdict"]["status"], "warn", "{v}");
}

#[tokio::test]
async fn workload_changes_are_informational() {
    let mut a = TestAgent::new("node-1");
    let cp = start(|c| c.enrollment.keys.push(a.enroll())).await;
    let one = with(
        Some(workloads(vec![container(
            "web",
            "127.0.0.1:5000/provenant/web:1",
            Some(1),
        )])),
        None,
    );
    assert_eq!(cp.register(&mut a, one).await.0, 200);
    let two = with(
        Some(workloads(vec![
            container("web", "127.0.0.1:5000/provenant/web:1", Some(1)),
            container("cache", "127.0.0.1:5000/provenant/cache:7", Some(5)),
        ])),
        None,
    );
    let (s, v) = cp.send(&mut a, two.clone()).await;
    assert_eq!(s, 200, "{v}");
    assert!(!v["verdict"]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["code"] == "WorkloadsChanged"));
    assert_eq!(v["workloads"].as_array().unwrap().len(), 2);
    let alerts = cp.alerts("WorkloadsChanged").await;
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["severity"], 4);
    let d = alerts[0]["detail"].as_str().unwrap();
    assert!(
        d.contains("added: cache (127.0.0.1:5000/provenant/cache:7"),
        "{d}"
    );
    // Unchanged: no new alert.
    let (s, _) = cp.send(&mut a, digests_only(&two)).await;
    assert_eq!(s, 200);
    assert_eq!(cp.alerts("WorkloadsChanged").await.len(), 1);
}

#[tokio::test]
async fn badges_fail_closed_without_an_image_policy_and_alert_once() {
    let mut a = TestAgent::new("node-1");
    let cp = start(|c| c.enrollment.keys.push(a.enroll())).await;
    let m = with(Some(workloads(default_set())), None);
    let (s, v) = cp.register(&mut a, m.clone()).await;
    assert_eq!(s, 200, "{v}");
    // Locally built, or from a repository no rule covers (here: none, as there is
    // no [images] section): red at once, without asking any registry.
    let local = badge(&v, "local");
    assert_eq!(local["status"], "fail");
    assert_eq!(codes(local)[0], "ImageNoDigest");
    let web = badge(&v, "web");
    assert_eq!(web["status"], "fail", "{v}");
    assert_eq!(codes(web)[0], "ImageNotCovered");
    assert!(web.get("signer").is_none());
    assert_eq!(cp.cp.image_service().verifications_started(), 0);
    // The heartbeat response carries the same badges.
    let (s, v) = cp.send(&mut a, digests_only(&m)).await;
    assert_eq!(s, 200);
    for n in ["web", "db", "local"] {
        assert_eq!(badge(&v, n)["status"], "fail", "{n}: {v}");
    }
    assert_eq!(codes(badge(&v, "db"))[0], "ImageNotCovered");
    // One ImageRefused alert per red image, raised once.
    let alerts = cp.alerts("ImageRefused").await;
    assert_eq!(alerts.len(), 3, "{alerts:?}");
    let (s, _) = cp.send(&mut a, digests_only(&m)).await;
    assert_eq!(s, 200);
    assert_eq!(cp.alerts("ImageRefused").await.len(), 3);
    assert!(alerts.iter().all(|a| a["severity"] == 2));
    assert!(alerts
        .iter()
        .any(|a| a["detail"].as_str().unwrap().contains("ImageNoDigest")));
    // The image stops running, then runs again: a new transition, a new alert.
    let without_db = with(
        Some(workloads(vec![
            container("web", "127.0.0.1:5000/provenant/web:1", Some(1)),
            container("local", "localhost/built-here:latest", None),
        ])),
        None,
    );
    assert_eq!(cp.send(&mut a, without_db).await.0, 200);
    assert_eq!(cp.send(&mut a, m.clone()).await.0, 200);
    assert_eq!(cp.alerts("ImageRefused").await.len(), 4);
}

/// Answers from a script per digest, counting calls.
#[derive(Default)]
struct Scripted {
    answers: Mutex<std::collections::HashMap<String, ImageCheck>>,
    calls: Mutex<Vec<(String, String, UnixNanos)>>,
}

#[async_trait::async_trait]
impl ImageChecker for Scripted {
    async fn check(&self, repository: &str, digest: &str, now: UnixNanos) -> ImageCheck {
        self.calls
            .lock()
            .unwrap()
            .push((repository.into(), digest.into(), now));
        self.answers
            .lock()
            .unwrap()
            .get(digest)
            .cloned()
            .unwrap_or(ImageCheck::Undecided {
                detail: "registry unreachable".into(),
            })
    }
}

impl Scripted {
    fn answer(&self, d: &str, c: ImageCheck) {
        self.answers.lock().unwrap().insert(d.into(), c);
    }
    fn calls_for(&self, d: &str) -> usize {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.1 == d)
            .count()
    }
}

fn images_cfg(c: &mut CpConfig) {
    c.images = Some(
        toml::from_str::<ImagesConfig>(
            r#"prefer_keyless = true
cache_ttl = "1h"
retry_after = "30s"
[[trust]]
scope = "127.0.0.1:5000/provenant"
keys = ["cosign.pub"]
require_rekor = false
"#,
        )
        .unwrap(),
    );
}

#[tokio::test]
async fn verification_is_cached_expires_and_retries_undecided() {
    let mut a = TestAgent::new("node-1");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let checker = Arc::new(Scripted::default());
    let signed = digest(1);
    let undecided = digest(2);
    checker.answer(
        &signed,
        ImageCheck::Verified {
            keyless: true,
            signer: "https://github.com/provenant/provenant/.github/workflows/release.yml@refs/heads/main".into(),
            verified_at_ns: T0,
            rekor_log_index: None,
        },
    );
    let enrolled = a.enroll();
    let cp = start_with(dir, Some(checker.clone()), |c| {
        c.enrollment.keys.push(enrolled.clone());
        images_cfg(c);
    })
    .await;
    let m = with(
        Some(workloads(vec![
            container("web", "127.0.0.1:5000/provenant/web:1", Some(1)),
            container("api", "127.0.0.1:5000/provenant/api:1", Some(2)),
        ])),
        None,
    );
    let (s, v) = cp.register(&mut a, m.clone()).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(badge(&v, "web")["status"], "unknown");
    let v = cp
        .agent_until("node-1", "verified", |v| {
            badge(v, "web")["status"] != "unknown"
        })
        .await;
    // Signed, but the agent is software tier: yellow, never green.
    let web = badge(&v, "web");
    assert_eq!(web["status"], "warn", "{v}");
    assert_eq!(codes(web), ["SoftwareTier"]);
    assert!(web["signer"].as_str().unwrap().contains("release.yml"));
    assert_eq!(web["verified_at_ns"], T0);
    {
        let calls = checker.calls.lock().unwrap();
        let c = calls.iter().find(|c| c.1 == signed).unwrap();
        assert_eq!(c.0, "127.0.0.1:5000/provenant/web");
        assert_eq!(c.2, UnixNanos(T0));
    }
    cp.agent_until("node-1", "undecided", |v| {
        badge(v, "api")["reasons"][0]["detail"] == "registry unreachable"
    })
    .await;
    assert_eq!(badge(&v, "api")["status"], "unknown");

    // Many heartbeats within the TTL: no new verification.
    for _ in 0..5 {
        cp.clock.advance(Duration::from_millis(900));
        let (s, v) = cp.send(&mut a, digests_only(&m)).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(badge(&v, "web")["status"], "warn");
        assert_eq!(badge(&v, "web")["signer"], web["signer"]);
    }
    assert_eq!(checker.calls_for(&signed), 1);
    assert_eq!(checker.calls_for(&undecided), 1);

    // Undecided is retried after retry_after, and its new answer shows.
    checker.answer(
        &undecided,
        ImageCheck::Refused {
            code: ReasonCode::ImageUnsigned,
            detail: "no signature for this digest".into(),
        },
    );
    cp.clock.advance(Duration::from_secs(30));
    assert_eq!(cp.send(&mut a, digests_only(&m)).await.0, 200);
    let v = cp
        .agent_until("node-1", "refused after retry", |v| {
            codes(badge(v, "api")).contains(&"ImageUnsigned".to_string())
        })
        .await;
    assert_eq!(badge(&v, "api")["status"], "fail");
    // The next pulse records the turn to red: one ImageRefused alert.
    assert_eq!(cp.send(&mut a, digests_only(&m)).await.0, 200);
    assert_eq!(cp.alerts("ImageRefused").await.len(), 1);
    assert_eq!(
        checker.calls_for(&undecided),
        2,
        "{:?}",
        checker.calls.lock().unwrap()
    );
    assert_eq!(checker.calls_for(&signed), 1);

    // A restart on the same store: results come from the shared cache, no checks.
    let Cp { dir, .. } = cp;
    let checker2 = Arc::new(Scripted::default());
    let cp2 = start_with(dir, Some(checker2.clone()), |c| {
        c.enrollment.keys.push(enrolled.clone());
        images_cfg(c);
        c.data_dir = path.join("db");
    })
    .await;
    // (The new control plane's clock starts where the first one's did.)
    cp2.clock.advance(Duration::from_secs(40));
    let (s, v) = cp2.send(&mut a, digests_only(&m)).await;
    assert_eq!(s, 200, "{v}");
    let v = cp2
        .agent_until("node-1", "loaded from the store", |v| {
            badge(v, "web")["status"] == "warn" && badge(v, "api")["status"] == "fail"
        })
        .await;
    assert_eq!(codes(badge(&v, "api"))[0], "ImageUnsigned");
    assert_eq!(checker2.calls.lock().unwrap().len(), 0);
    // It was unknown at this control plane's first pulse (not loaded yet) and is red
    // again now: the same red image, no second alert.
    assert_eq!(cp2.send(&mut a, digests_only(&m)).await.0, 200);
    assert_eq!(cp2.alerts("ImageRefused").await.len(), 1);

    // Past cache_ttl the result is verified again (unknown meanwhile).
    checker2.answer(
        &signed,
        ImageCheck::Verified {
            keyless: false,
            signer: "sha256:keyfingerprint".into(),
            verified_at_ns: T0 + 3700 * SEC,
            rekor_log_index: None,
        },
    );
    cp2.clock.advance(Duration::from_secs(3600));
    assert_eq!(cp2.send(&mut a, digests_only(&m)).await.0, 200);
    let v = cp2
        .agent_until("node-1", "re-verified", |v| {
            badge(v, "web")["signer"] == "sha256:keyfingerprint"
        })
        .await;
    assert_eq!(checker2.calls_for(&signed), 1);
    // The refused image was verified again after expiry (unknown meanwhile, then
    // undecided): the same red image raised no second alert across the restart.
    assert_eq!(cp2.send(&mut a, digests_only(&m)).await.0, 200);
    assert_eq!(cp2.alerts("ImageRefused").await.len(), 1);
    // Key-signed where keyless is preferred: yellow with ImageKeySigned.
    assert_eq!(badge(&v, "web")["status"], "warn", "{v}");
    assert!(codes(badge(&v, "web")).contains(&"ImageKeySigned".to_string()));

    // A changed image policy never reuses a stored answer (the cache key carries the
    // policy's fingerprint): the same digest is verified again.
    let Cp { dir, .. } = cp2;
    let checker3 = Arc::new(Scripted::default());
    let cp3 = start_with(dir, Some(checker3.clone()), |c| {
        c.enrollment.keys.push(enrolled);
        images_cfg(c);
        c.images.as_mut().unwrap().prefer_keyless = false;
        c.data_dir = path.join("db");
    })
    .await;
    cp3.clock.advance(Duration::from_secs(3700));
    assert_eq!(cp3.send(&mut a, digests_only(&m)).await.0, 200);
    for _ in 0..200 {
        if checker3.calls_for(&signed) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        checker3.calls_for(&signed),
        1,
        "the old policy's answer was reused"
    );
}

/// A checker that panics or never answers must not wedge the queue.
struct Broken;
#[async_trait::async_trait]
impl ImageChecker for Broken {
    async fn check(&self, repository: &str, _digest: &str, _now: UnixNanos) -> ImageCheck {
        if repository.ends_with("/panics") {
            panic!("checker bug");
        }
        ImageCheck::Refused {
            code: ReasonCode::ImageSignatureInvalid,
            detail: "bad signature".into(),
        }
    }
}

#[tokio::test]
async fn a_panicking_checker_does_not_wedge_verification() {
    let mut a = TestAgent::new("node-1");
    let cp = start_with(tempfile::tempdir().unwrap(), Some(Arc::new(Broken)), |c| {
        c.enrollment.keys.push(a.enroll());
        images_cfg(c);
    })
    .await;
    let m = with(
        Some(workloads(vec![
            container("p", "127.0.0.1:5000/provenant/panics:1", Some(1)),
            container("ok", "127.0.0.1:5000/provenant/ok:1", Some(2)),
        ])),
        None,
    );
    assert_eq!(cp.register(&mut a, m).await.0, 200);
    let v = cp
        .agent_until("node-1", "judged", |v| badge(v, "ok")["status"] == "fail")
        .await;
    assert_eq!(codes(badge(&v, "ok"))[0], "ImageSignatureInvalid");
    // The panicking one is undecided (unknown, never green), and tried again after
    // retry_after, not on every lookup.
    let v = cp
        .agent_until("node-1", "undecided", |v| {
            badge(v, "p")["reasons"][0]["detail"] == "the signature verifier failed internally"
        })
        .await;
    assert_eq!(badge(&v, "p")["status"], "unknown");
    let started = cp.cp.image_service().verifications_started();
    assert_eq!(started, 2);
    for _ in 0..5 {
        cp.get("/api/v1/agents/node-1").await;
    }
    assert_eq!(cp.cp.image_service().verifications_started(), 2);
    cp.clock.advance(Duration::from_secs(31));
    cp.agent_until("node-1", "retried", |_| {
        cp.cp.image_service().verifications_started() > started
    })
    .await;
}

#[tokio::test]
async fn fleet_pages_show_workloads_and_escape_hostile_names() {
    let mut a = TestAgent::new("node-1");
    let cp = start(|c| c.enrollment.keys.push(a.enroll())).await;
    let hostile = "<script>alert(1)</script>";
    let mut p = program("<img src=x onerror=alert(2)>", 1);
    p.pinned = vec!["/sys/fs/bpf/\"><b>pin".into()];
    let m = with(
        Some(workloads(vec![
            container(hostile, "127.0.0.1:5000/x\"onmouseover=\"y:1", Some(1)),
            container("plain", "localhost/plain:1", None),
        ])),
        Some(ebpf(vec![p])),
    );
    assert_eq!(cp.register(&mut a, m).await.0, 200);
    let page = |path: &str| {
        let url = format!("{}{path}", cp.base);
        let http = cp.http.clone();
        async move {
            let r = http
                .get(url)
                .bearer_auth(harness::VIEWER_TOKEN)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.text().await.unwrap()
        }
    };
    for html in [page("/agents").await, page("/agent/node-1").await] {
        for raw in [
            "<script>alert",
            "<img src=x",
            "\"onmouseover=\"",
            "\"><b>pin",
        ] {
            assert!(!html.contains(raw), "unescaped {raw:?} in {html}");
        }
        // Escaped, not dropped (the templates also escape `/`, as `&#x2f;`).
        assert!(html.contains("&lt;script&gt;alert(1)&lt;"), "{html}");
        assert!(html.contains("data-badge=\"red\""), "{html}");
    }
    let detail = page("/agent/node-1").await;
    for want in [
        "data-workload=\"plain\"",
        "ImageNoDigest",
        "data-collector=\"workloads\">ok",
        "data-collector=\"ebpf\">ok",
        "&lt;img src=x onerror=alert(2)&gt;",
        &hex::encode([1u8; 32]),
        "0123456789abcdef",
        "data-lsm=\"no\"",
    ] {
        assert!(detail.contains(want), "{want} not in {detail}");
    }
}

/// Green needs both: the image signed under the policy *and* a green agent. Here the
/// agent is in tier `tdx` with a quote from tdx-sim (a TEST PCK chain, trusted only
/// because the config names its root), MRTD on the allowlist.
#[tokio::test]
async fn green_only_for_a_signed_image_on_a_green_tdx_agent() {
    use base64::Engine;
    use tdx_sim::{TdReport, TestPki};

    let mut a = TestAgent::new("node-tdx");
    let checker = Arc::new(Scripted::default());
    let keyless = digest(1);
    let keyed = digest(2);
    checker.answer(
        &keyless,
        ImageCheck::Verified {
            keyless: true,
            signer: "https://github.com/provenant/provenant/.github/workflows/release.yml@refs/heads/main".into(),
            verified_at_ns: T0,
            rekor_log_index: None,
        },
    );
    checker.answer(
        &keyed,
        ImageCheck::Verified {
            keyless: false,
            signer: "sha256:cosignkey".into(),
            verified_at_ns: T0,
            rekor_log_index: None,
        },
    );
    let cp = start_with(tempfile::tempdir().unwrap(), Some(checker.clone()), |c| {
        c.enrollment.keys.push(a.enroll());
        images_cfg(c);
        c.tdx.root_ca_file = Some(TestPki::root_ca_der_path());
        c.tdx.collateral_file = Some(TestPki::collateral_path());
        c.policy.tdx = toml::from_str(&format!(
            "mrtd_allowlist = [\"{}\"]\nrtmr_allowlists = [[], [\"{}\"], [\"{}\"]]",
            hex::encode(TdReport::default().mrtd),
            hex::encode(TdReport::default().rtmrs[1]),
            hex::encode(TdReport::default().rtmrs[2])
        ))
        .unwrap();
    })
    .await;
    let m = with(
        Some(workloads(vec![
            container("web", "127.0.0.1:5000/provenant/web:1", Some(1)),
            container("vendor", "127.0.0.1:5000/provenant/vendor:1", Some(2)),
            container("other", "127.0.0.1:5000/elsewhere/x:1", Some(3)),
        ])),
        None,
    );
    let nonce = cp.challenge().await;
    let mut r: Report = a.report(nonce, cp.now(), m.clone()).peek().unwrap();
    r.tier = Tier::Tdx;
    let env = sign_payload(&a.signer, REPORT_PAYLOAD_TYPE, &r).unwrap();
    let quote = TdReport::default()
        .with_report_data(evidence::report_data(&env))
        .quote_v4();
    let req = RegisterRequest {
        envelope: env.clone(),
        evidence: RegisterEvidence {
            quote: Some(base64::engine::general_purpose::STANDARD.encode(quote)),
            ..Default::default()
        },
    };
    let (s, v) = cp
        .post_raw("/api/v1/register", serde_json::to_vec(&req).unwrap())
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["tier"], "tdx");
    assert_eq!(v["verdict"]["status"], "pass", "{v}");
    a.seq = 0;
    a.head = HexBytes(env.digest());
    // Before the signatures are checked: unknown, even on a green agent.
    assert_eq!(badge(&v, "web")["status"], "unknown");
    cp.agent_until("node-tdx", "judged", |v| {
        badge(v, "web")["status"] != "unknown" && badge(v, "vendor")["status"] != "unknown"
    })
    .await;
    let (s, v) = cp.send(&mut a, digests_only(&m)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["verdict"]["status"], "pass", "{v}");
    let web = badge(&v, "web");
    assert_eq!(web["status"], "pass", "{v}");
    assert_eq!(codes(web), Vec::<String>::new());
    assert!(web["signer"]
        .as_str()
        .unwrap()
        .ends_with("@refs/heads/main"));
    // Key-signed where keyless is preferred: yellow.
    let vendor = badge(&v, "vendor");
    assert_eq!(vendor["status"], "warn");
    assert_eq!(codes(vendor), ["ImageKeySigned"]);
    // Not covered: red, and never asked about.
    let other = badge(&v, "other");
    assert_eq!(other["status"], "fail");
    assert_eq!(codes(other), ["ImageNotCovered"]);
    assert_eq!(checker.calls_for(&digest(3)), 0);
    // The same image on an agent that has gone silent is red.
    cp.clock.advance(Duration::from_secs(4));
    let (_, v) = cp.get("/api/v1/agents/node-tdx").await;
    assert_eq!(badge(&v, "web")["status"], "fail", "{v}");
    assert!(codes(badge(&v, "web")).contains(&"Blinded".to_string()));
}

/// `[policy.ebpf] required`: a node that never loaded a required program is red from
/// its first report (a last-known-good comparison could not tell); one that loses a
/// program, or pins or changes it elsewhere, turns red naming it, with one
/// severity-1 `RequiredProgram` alert per newly failing requirement, not one per
/// pulse; restoring it turns the node back.
#[tokio::test]
async fn required_ebpf_programs_are_judged_against_the_current_list() {
    let mut a = TestAgent::new("node-1");
    let mut b = TestAgent::new("node-2");
    let cp = start(|c| {
        c.enrollment.keys.push(a.enroll());
        c.enrollment.keys.push(b.enroll());
        c.policy.ebpf = toml::from_str(&format!(
            "[[required]]\nname = \"shield\"\ntype = \"kprobe\"\npinned_at = \"/sys/fs/bpf/provenant/shield\"\n\
             [[required]]\nname = \"sentinel\"\ntype = \"kprobe\"\ndigest = \"{}\"\n",
            hex::encode([2u8; 32])
        ))
        .unwrap();
    })
    .await;
    let reasons = |v: &Value| -> Vec<String> {
        v["verdict"]["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["code"].as_str().unwrap().starts_with("Required"))
            .map(|r| {
                format!(
                    "{} {}",
                    r["code"].as_str().unwrap(),
                    r["detail"].as_str().unwrap()
                )
            })
            .collect()
    };
    let both = with(
        None,
        Some(ebpf(vec![program("shield", 1), program("sentinel", 2)])),
    );

    // node-2 never had the programs: red from its first report, alerted.
    let (s, v) = cp
        .register(&mut b, with(None, Some(ebpf(vec![program("other", 9)]))))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["verdict"]["status"], "fail", "{v}");
    assert_eq!(reasons(&v).len(), 2, "{v}");
    assert_eq!(cp.alerts("RequiredProgram").await.len(), 2);

    let (s, v) = cp.register(&mut a, both.clone()).await;
    assert_eq!(s, 200, "{v}");
    assert!(reasons(&v).is_empty(), "{v}");
    assert_eq!(cp.alerts("RequiredProgram").await.len(), 2);

    // Sentinel replaced by other instructions: red, named, alerted once.
    let changed = with(
        None,
        Some(ebpf(vec![program("shield", 1), program("sentinel", 3)])),
    );
    for _ in 0..2 {
        cp.clock.advance(Duration::from_millis(500));
        let env = a.next_pulse(cp.now(), changed.clone());
        let (s, v) = cp.pulse(&env).await;
        assert_eq!(s, 200, "{v}");
        a.accepted(&env);
        assert_eq!(v["verdict"]["status"], "fail", "{v}");
        let r = reasons(&v);
        assert_eq!(r.len(), 1, "{v}");
        assert!(
            r[0].starts_with("RequiredProgramChanged") && r[0].contains("sentinel"),
            "{r:?}"
        );
    }
    let alerts = cp.alerts("RequiredProgram").await;
    assert_eq!(alerts.len(), 3);
    assert_eq!(alerts[0]["severity"], 1);
    assert!(
        alerts[0]["detail"].as_str().unwrap().contains("sentinel"),
        "{alerts:?}"
    );

    // Shield unloaded: a second requirement fails, a second alert.
    cp.clock.advance(Duration::from_millis(500));
    let env = a.next_pulse(
        cp.now(),
        with(None, Some(ebpf(vec![program("sentinel", 3)]))),
    );
    let (_, v) = cp.pulse(&env).await;
    a.accepted(&env);
    let r = reasons(&v);
    assert!(
        r.iter()
            .any(|r| r.starts_with("RequiredProgramMissing") && r.contains("shield")),
        "{r:?}"
    );
    assert_eq!(cp.alerts("RequiredProgram").await.len(), 4);

    // Restored: no required-program reason; last-known-good still holds the other
    // differences, which are the inventory rule's business, not this one's.
    cp.clock.advance(Duration::from_millis(500));
    let env = a.next_pulse(cp.now(), both.clone());
    let (_, v) = cp.pulse(&env).await;
    a.accepted(&env);
    assert!(reasons(&v).is_empty(), "{v}");
    assert_eq!(cp.alerts("RequiredProgram").await.len(), 4);
}
