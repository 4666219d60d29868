//! The fleet pages in a real browser: a `cp-verifier serve` process, agents whose
//! signed reports (made with the agent's own signing code) carry workloads and eBPF
//! programs, and Debian's headless Chromium rendering `/agents` and `/agent/{id}`.
//! Screenshots are kept under `target/test-artifacts/`.
//!
//! Needs: `chromium` (Debian package), and the workspace binaries built
//! (`cargo build -p cp-verifier --bins`).

use evidence::api::{Challenge, RegisterEvidence, RegisterRequest};
use evidence::report::HexBytes;
use evidence::{
    BpfProgram, CollectorState, Digest32, Ebpf, EbpfExtra, FileMeasurement, Measurements, Platform,
    PolicyMeasurement, Pulse, Report, TeeKind, Tier, Workload, Workloads, PULSE_PAYLOAD_TYPE,
    REPORT_PAYLOAD_TYPE,
};
use guest_agent::agent::sign_payload;
use guest_agent::signer::{KeySigner, Signer};
use provenant_base::clock::{Clock, SystemClock};
use provenant_tests::chromium::{artifacts_dir, dump_dom, elements_with, row, screenshot};
use provenant_tests::{free_port, wait_for, Http, Proc};
use serde_json::Value;

fn digest(n: u8) -> String {
    format!("sha256:{}", hex::encode([n; 32]))
}

fn container(name: &str, n: u8, image: &str, d: Option<u8>) -> Workload {
    Workload {
        name: name.into(),
        id: hex::encode([n; 32]),
        state: "running".into(),
        image: image.into(),
        image_id: digest(0xe0 + n),
        image_digest: d.map(digest),
    }
}

fn base(bin: u8) -> Measurements {
    Measurements {
        agent_binary: HexBytes([bin; 32]),
        policy: PolicyMeasurement::from_files(vec![FileMeasurement {
            path: "/etc/provenant/policy.toml".into(),
            sha256: HexBytes([7; 32]),
        }]),
        platform: Platform {
            tee: TeeKind::None,
            tpm_present: false,
            kernel_cmdline_sha256: None,
            lockdown: Some("integrity".into()),
        },
        workloads: None,
        ebpf: None,
    }
}

struct Agent {
    id: &'static str,
    signer: KeySigner,
}

impl Agent {
    async fn register(&self, http: &Http, cp: &str, m: Measurements) -> (Value, Digest32) {
        let (s, v) = http
            .get(&format!("{cp}/api/v1/challenge"))
            .await
            .expect("challenge");
        assert_eq!(s, 200, "{v}");
        let ch: Challenge = serde_json::from_value(v).unwrap();
        let r = Report {
            version: 1,
            agent_id: self.id.into(),
            partition: "default".into(),
            tier: Tier::Software,
            issued_at_ns: SystemClock.now().get(),
            nonce: ch.nonce,
            sequence: 0,
            previous_pulse: None,
            heartbeat_key: self.signer.public_key().clone(),
            // Long enough that the agent stays fresh for the whole test without pulses.
            heartbeat_interval_ms: 60_000,
            agent_version: "dashboard-test".into(),
            measurements: m,
        };
        let env = sign_payload(&self.signer, REPORT_PAYLOAD_TYPE, &r).unwrap();
        let req = RegisterRequest {
            envelope: env.clone(),
            evidence: RegisterEvidence::default(),
        };
        let (s, v) = http
            .post(
                &format!("{cp}/api/v1/register"),
                serde_json::to_vec(&req).unwrap(),
            )
            .await;
        assert_eq!(s, 200, "{}: {v}", self.id);
        (v, HexBytes(env.digest()))
    }

    async fn pulse(
        &self,
        http: &Http,
        cp: &str,
        prev: Digest32,
        mut m: Measurements,
    ) -> (u16, Value) {
        // Nothing changed since the report: digests only, as the agent sends them.
        if let Some(w) = m.workloads.as_mut() {
            w.items = None;
        }
        if let Some(e) = m.ebpf.as_mut() {
            e.items = None;
        }
        let p = Pulse {
            version: 1,
            agent_id: self.id.into(),
            partition: "default".into(),
            sequence: 1,
            issued_at_ns: SystemClock.now().get(),
            nonce: HexBytes(rand::random()),
            previous: prev,
            measurements: Some(m),
            measurements_digest: None,
            health: None,
        };
        let env = sign_payload(&self.signer, PULSE_PAYLOAD_TYPE, &p).unwrap();
        http.post(&format!("{cp}/api/v1/heartbeat"), env.to_json())
            .await
    }
}

/// `<tr data-workload="NAME" ...>...</tr>` in a rendered DOM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_pages_render_workload_badges_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let http = Http::new();
    let shop = Agent {
        id: "shop-node",
        signer: KeySigner::generate_ed25519().unwrap(),
    };
    let edge = Agent {
        id: "edge-node",
        signer: KeySigner::generate_ed25519().unwrap(),
    };
    let port = free_port();
    let cp = format!("http://127.0.0.1:{port}");
    // The rule's key must exist: the control plane loads every rule at start-up.
    std::fs::write(
        root.join("cosign.pub"),
        sigstore_testsign::cosign::CosignKey::test_key().public_key_pem(),
    )
    .unwrap();
    std::fs::write(
        root.join("cp.toml"),
        format!(
            r#"listen = "127.0.0.1:{port}"
data_dir = "{data}"
heartbeat_interval = "60s"

[policy]
allow_software_tier = true

[images]
prefer_keyless = true
cache_ttl = "1h"
retry_after = "30s"

[[images.trust]]
scope = "127.0.0.1:5000/provenant"
keys = ["{root}/cosign.pub"]
require_rekor = false

[[enrollment.keys]]
agent_id = "{a}"
fingerprint = "{af}"

[[enrollment.keys]]
agent_id = "{b}"
fingerprint = "{bf}"
"#,
            data = root.join("cp-data").display(),
            root = root.display(),
            a = shop.id,
            af = shop.signer.public_key().fingerprint(),
            b = edge.id,
            bf = edge.signer.public_key().fingerprint(),
        ),
    )
    .unwrap();
    let _server = Proc::spawn(
        "cp-verifier",
        &["serve", "--config", root.join("cp.toml").to_str().unwrap()],
        root,
    );
    wait_for(30, "cp-verifier to listen", || async {
        http.get(&format!("{cp}/api/v1/agents")).await.map(|_| ())
    })
    .await;

    // shop-node runs three containers: one from a repository the image policy covers
    // (its registry, 127.0.0.1:5000, is not running, so it stays undecided: unknown), one from
    // a repository no rule covers (red, ImageNotCovered), and one built locally with
    // no registry digest (red, ImageNoDigest). Two eBPF programs are loaded.
    let items = vec![
        container("shop", 1, "127.0.0.1:5000/provenant/shop:1.4", Some(1)),
        container("metrics", 2, "docker.io/library/alpine:3.20", Some(2)),
        container("scratch", 3, "localhost/scratch-built:latest", None),
    ];
    let progs = vec![
        BpfProgram {
            id: 41,
            name: "provenant_exec".into(),
            prog_type: "lsm".into(),
            tag: "a1b2c3d4e5f60718".into(),
            sha256: HexBytes([0x5a; 32]),
            pinned: vec!["/sys/fs/bpf/provenant/exec".into()],
        },
        BpfProgram {
            id: 42,
            name: "<b>sock</b>".into(),
            prog_type: "socket_filter".into(),
            tag: "0f1e2d3c4b5a6978".into(),
            sha256: HexBytes([0x6b; 32]),
            pinned: vec![],
        },
    ];
    let shop_m = Measurements {
        workloads: Some(Workloads::full(items, ())),
        ebpf: Some(Ebpf::full(
            progs,
            EbpfExtra {
                lsm_active: Some(true),
            },
        )),
        ..base(1)
    };
    let (v, head) = shop.register(&http, &cp, shop_m.clone()).await;
    // Right after registration nothing is judged yet: unknown, except the local
    // image, which cannot carry a signature at all.
    let badges = v["workloads"].as_array().unwrap();
    assert_eq!(badges.len(), 3, "{v}");
    let (s, v) = shop.pulse(&http, &cp, head, shop_m).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["workloads"].as_array().unwrap().len(), 3, "{v}");

    // edge-node cannot see its workloads (podman down) nor its eBPF programs.
    let edge_m = Measurements {
        workloads: Some(Workloads {
            state: CollectorState::Unknown,
            reason: Some("podman API /run/podman/podman.sock: connection refused".into()),
            extra: (),
            digest: None,
            items: None,
        }),
        ebpf: Some(Ebpf {
            state: CollectorState::Unavailable,
            reason: Some("bpf(BPF_PROG_GET_NEXT_ID): operation not permitted".into()),
            extra: EbpfExtra { lsm_active: None },
            digest: None,
            items: None,
        }),
        ..base(2)
    };
    edge.register(&http, &cp, edge_m).await;

    // The background image check judges the uncovered image.
    wait_for(30, "the uncovered image to be judged", || async {
        let (_, v) = http.get(&format!("{cp}/api/v1/agents/shop-node")).await?;
        let w = v["workloads"].as_array()?;
        w.iter()
            .any(|b| b["name"] == "metrics" && b["status"] == "fail")
            .then_some(())
    })
    .await;

    // The fleet page, as the browser renders it.
    let fleet = dump_dom(&format!("{cp}/agents"));
    let shop_row = {
        let s = fleet
            .find("<tr data-agent=\"shop-node\"")
            .expect("shop-node row");
        &fleet[s..s + fleet[s..].find("</tr>").unwrap()]
    };
    assert!(shop_row.contains("software"), "{shop_row}");
    assert!(shop_row.contains(" s ago</time>"), "{shop_row}");
    assert!(shop_row.contains("seq 1"), "{shop_row}");
    let compact = |name: &str| {
        let e = elements_with(shop_row, &format!("data-workload=\"{name}\""));
        assert_eq!(e.len(), 1, "{name}: {shop_row}");
        e[0].to_string()
    };
    assert!(compact("shop").contains("data-badge=\"unknown\""));
    assert!(compact("metrics").contains("data-badge=\"red\""));
    assert!(compact("metrics").contains("ImageNotCovered"));
    assert!(compact("scratch").contains("data-badge=\"red\""));
    assert!(compact("scratch").contains("ImageNoDigest"));
    let edge_row = {
        let s = fleet
            .find("<tr data-agent=\"edge-node\"")
            .expect("edge-node row");
        &fleet[s..s + fleet[s..].find("</tr>").unwrap()]
    };
    assert!(edge_row.contains("workloads unknown"), "{edge_row}");
    assert!(edge_row.contains("WorkloadsUnknown"), "{edge_row}");
    // An agent whose workloads cannot be seen is never shown green.
    assert!(!edge_row.contains("data-badge=\"green\""), "{edge_row}");

    // The agent page: every workload with its badge, reasons and digest; the eBPF
    // programs; the collector states.
    let page = dump_dom(&format!("{cp}/agent/shop-node"));
    let r = row(&page, "metrics");
    assert!(r.contains("data-badge=\"red\""), "{r}");
    assert!(r.contains("ImageNotCovered"), "{r}");
    assert!(r.contains(&digest(2)), "{r}");
    assert!(r.contains("docker.io/library/alpine:3.20"), "{r}");
    let r = row(&page, "scratch");
    assert!(r.contains("data-badge=\"red\""), "{r}");
    assert!(r.contains("ImageNoDigest"), "{r}");
    let r = row(&page, "shop");
    assert!(r.contains("data-badge=\"unknown\""), "{r}");
    assert!(r.contains("ImageUnverifiable"), "{r}");
    assert!(r.contains("unreachable"), "{r}");
    assert!(page.contains("data-collector=\"workloads\">ok"));
    assert!(page.contains("data-collector=\"ebpf\">ok"));
    assert!(page.contains("data-lsm=\"yes\""));
    assert!(page.contains("provenant_exec"));
    assert!(page.contains(&hex::encode([0x5a; 32])));
    assert!(page.contains("/sys/fs/bpf/provenant/exec"));
    // The hostile program name is text, not markup.
    assert!(page.contains("&lt;b&gt;sock&lt;/b&gt;"), "{page}");
    assert!(!page.contains("<b>sock</b>"));
    let edge_page = dump_dom(&format!("{cp}/agent/edge-node"));
    assert!(edge_page.contains("data-collector=\"workloads\">unknown"));
    assert!(edge_page.contains("connection refused"));
    assert!(edge_page.contains("data-collector=\"ebpf\">unavailable"));

    let out = artifacts_dir();
    for (name, url) in [
        ("fleet-agents.png", format!("{cp}/agents")),
        ("fleet-agent-shop-node.png", format!("{cp}/agent/shop-node")),
    ] {
        let png = out.join(name);
        screenshot(&url, &png);
        println!("screenshot: {}", png.display());
    }
}
