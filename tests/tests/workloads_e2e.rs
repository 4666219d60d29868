//! Issue 5 end to end, with every part real: Debian's `docker-registry` on
//! 127.0.0.1, podman as root (a "builder" that builds and pushes, a "guest" that only
//! pulls and runs), cosign-format signatures made by the project's TEST signer
//! (keyless: TEST Fulcio leaf for a GitHub workflow identity, TEST Rekor SET) and
//! stored in the registry by our OCI client, the `policy` renderer, `guest-agent
//! pull`, a `cp-verifier serve`, two `guest-agent run`s (a simulated TDX guest via
//! tdx-sim, and a software-tier node), a real BPF program (clang, bpftool) and
//! headless Chromium.
//!
//! 1. A signed and an unsigned image are pushed.
//! 2. Podman, under the rendered policy, refuses the unsigned image; `guest-agent
//!    pull` refuses it too (ImageUnsigned) and pulls the signed one by digest,
//!    recording the signer in the TD's RTMR3 log; the unsigned one is then pulled
//!    under a permissive policy (a bypass).
//! 3. Both run. The agents report both digests; the control plane judges the signed
//!    one green on the TDX guest and yellow on the software node (never green there),
//!    the unsigned one red, and a workload it cannot judge while the registry is
//!    stopped unknown. The fleet pages show all three, screenshotted.
//! 4. A BPF program loaded before the node agent started is in its report with its
//!    hash; replacing it with a changed program raises `EbpfChanged`.
//!
//! Run as root (podman, bpffs, bpf()). Needs: podman, runc, docker-registry,
//! busybox-static, clang, bpftool, chromium; the workspace binaries built.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use provenant_tests::bpf::BpfFs;
use provenant_tests::chromium::{artifacts_dir, dump_dom, row, screenshot};
use provenant_tests::podman::Podman;
use provenant_tests::registry::Registry;
use provenant_tests::tdx::{enrollment, td, Td};
use provenant_tests::{alerts_of, binary, free_port, wait_for, Http, Proc};
use serde_json::Value;
use signatures::oci::{RegistryClient, RegistryConfig};
use sigstore_testsign::cosign::CosignOptions;
use sigstore_testsign::{Identity, TestSigstore};
use tdx_sim::{Behaviour, RtmrBehaviour, TestPki};

const WORKFLOW: &str = ".github/workflows/release.yml";
const REPO: &str = "provenant/provenant";

fn now_unix() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

/// `guest-agent pull --config CFG IMAGE` against the guest podman; (exit code, JSON).
fn gate(cfg: &Path, guest: &Podman, image: &str) -> (i32, Value) {
    let out = Command::new(binary("guest-agent"))
        .args(["pull", "--config"])
        .arg(cfg)
        .arg(image)
        .env("CONTAINERS_CONF", &guest.conf)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "pull {image}: not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), v)
}

/// The control plane's badge for `workload` on `agent`: (badge, reason codes).
async fn badge(
    http: &Http,
    cp: &str,
    agent: &str,
    workload: &str,
) -> Option<(String, Vec<String>)> {
    let (s, v) = http.get(&format!("{cp}/api/v1/agents/{agent}")).await?;
    if s != 200 {
        return None;
    }
    let w = v["workloads"]
        .as_array()?
        .iter()
        .find(|w| w["name"] == workload)?
        .clone();
    let status = w["status"].as_str()?;
    let badge = match status {
        "pass" => "green",
        "warn" => "yellow",
        "fail" => "red",
        _ => "unknown",
    };
    let codes = w["reasons"]
        .as_array()?
        .iter()
        .filter_map(|r| r["code"].as_str().map(str::to_owned))
        .collect();
    Some((badge.to_owned(), codes))
}

async fn wait_badge(http: &Http, cp: &str, agent: &str, workload: &str, want: &str) -> Vec<String> {
    wait_for(60, &format!("{agent}/{workload} to be {want}"), || async {
        let (b, codes) = badge(http, cp, agent, workload).await?;
        (b == want).then_some(codes)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_unsigned_and_unjudged_workloads_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let http = Http::new();

    // --- 1. Images: a signed `app`, an unsigned `rogue`, a signed `batch` (run later).
    let mut reg = Registry::start(root, root);
    let host = reg.host.clone();
    let builder = Podman::new(root, "builder", root);
    let mut digests = BTreeMap::new();
    for name in ["app", "rogue", "batch"] {
        builder.build_scratch(&format!("localhost/{name}:1"), name);
        let d = builder.push(
            &format!("localhost/{name}:1"),
            &format!("{host}/provenant/{name}:1"),
        );
        digests.insert(name, d);
    }
    let client = RegistryClient::new(&[RegistryConfig {
        host: host.clone(),
        insecure: true,
        ca_file: None,
        username: None,
        password_file: None,
        token_file: None,
    }])
    .unwrap();
    let identity = Identity::github(REPO, WORKFLOW, "refs/heads/main");
    let ts = TestSigstore::load().unwrap();
    for name in ["app", "batch"] {
        let repo = format!("{host}/provenant/{name}");
        let sig = ts
            .sign_image_keyless(
                &identity,
                &repo,
                &digests[name],
                &CosignOptions::at(now_unix() - 60),
            )
            .unwrap();
        client
            .push_signature(&repo, &digests[name], &sig)
            .await
            .unwrap();
    }

    // The image policy: keyless, the release workflow of provenant/provenant, TEST
    // Sigstore root. The same file drives the podman render, the pull gate and the
    // control plane.
    let trusted_root = root.join("trusted_root.json");
    std::fs::write(&trusted_root, sigstore_testsign::keys::trusted_root_json()).unwrap();
    let image_policy = root.join("image-policy.toml");
    std::fs::write(
        &image_policy,
        format!(
            r#"[[trust]]
scope = "{host}/provenant"
[trust.keyless]
trusted_root = "{tr}"
issuer = "https://token.actions.githubusercontent.com"
san = "{san}"
source_repository = "https://github.com/{REPO}"
source_ref = "refs/heads/main"
"#,
            tr = trusted_root.display(),
            san = identity.san(),
        ),
    )
    .unwrap();

    // --- 2. Podman's layer: the rendered policy (a workflow identity podman cannot
    // pin, so the scope is rejected outright: podman alone admits nothing there).
    let rendered = root.join("rendered");
    let out = Command::new(binary("policy"))
        .args(["render-podman", "--reject-unpinnable", "--config"])
        .arg(&image_policy)
        .arg("--out-dir")
        .arg(&rendered)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let podman_policy = rendered.join("containers-policy.json");
    assert!(podman_policy.exists());

    let mut guest = Podman::new(root, "guest", root);
    let rogue_ref = format!("{host}/provenant/rogue:1");
    let refused = guest.try_run(&[
        "pull",
        "--tls-verify=false",
        "--signature-policy",
        podman_policy.to_str().unwrap(),
        &rogue_ref,
    ]);
    assert!(
        !refused.status.success(),
        "podman must refuse the unsigned image"
    );
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(
        why.contains("rejected") || why.contains("signature"),
        "{why}"
    );

    // The agents: a simulated TDX guest and a software-tier node, both seeing the
    // guest podman. A BPF program is loaded before they start.
    let bpf = BpfFs::new();
    let prog0 = bpf.compile(0);
    let pin = bpf.load(&prog0, "provenant_e2e");
    let sock = guest.start_service();
    let cp_port = free_port();
    let cp = format!("http://127.0.0.1:{cp_port}");
    let tds: Vec<Td> = vec![td(
        root,
        &cp,
        "td-1",
        Behaviour::Honest,
        RtmrBehaviour::Honest,
    )];
    let pull_keys = format!(
        "podman_socket = \"{sock}\"\nimage_policy_file = \"{policy}\"\npodman_policy_file = \"{pp}\"\npodman_command = {argv:?}\n\n[[registry]]\nhost = \"{host}\"\ninsecure = true\n",
        sock = sock.display(),
        policy = image_policy.display(),
        pp = podman_policy.display(),
        argv = guest.argv(),
    );
    let td_cfg = std::fs::read_to_string(&tds[0].config).unwrap();
    std::fs::write(
        &tds[0].config,
        td_cfg.replace("collect_workloads = false", "collect_workloads = true") + &pull_keys,
    )
    .unwrap();
    let node_key = root.join("node.key");
    let signer = guest_agent::signer::KeySigner::generate_ed25519().unwrap();
    provenant_base::fsutil::write_private(&node_key, signer.to_pkcs8_pem().unwrap().as_bytes())
        .unwrap();
    let node_port = free_port();
    let node_cfg = root.join("node.toml");
    std::fs::write(
        &node_cfg,
        format!(
            r#"agent_id = "node-1"
control_plane = "{cp}"
insecure_http = true
heartbeat_interval = "500ms"
max_backoff = "1s"
listen = "127.0.0.1:{node_port}"
key_file = "{key}"
quote_provider = "none"
bpffs_dirs = ["{bpffs}"]
event_log_file = "{root}/node-run/rtmr3.jsonl"
{pull_keys}"#,
            key = node_key.display(),
            bpffs = bpf.mnt.display(),
            root = root.display(),
        ),
    )
    .unwrap();

    // The pull gate: the unsigned image is refused with a typed reason, nothing pulled.
    let (code, v) = gate(&node_cfg, &guest, &rogue_ref);
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["pulled"], false);
    assert_eq!(v["error"]["kind"], "ImageUnsigned", "{v}");
    assert!(!guest
        .try_run(&["image", "exists", &rogue_ref])
        .status
        .success());
    // A tag that does not exist: the gate cannot resolve it (could not run: exit 2).
    let (code, v) = gate(&node_cfg, &guest, &format!("{host}/provenant/app:nope"));
    assert_eq!(code, 2, "{v}");
    // The signed image goes through, by digest.
    let (code, v) = gate(&node_cfg, &guest, &format!("{host}/provenant/app:1"));
    assert_eq!(code, 0, "{v}");
    let app_ref = format!("{host}/provenant/app@{}", digests["app"]);
    assert_eq!(v["reference"], app_ref.as_str());
    assert_eq!(v["signer"]["signer"], identity.san().as_str());
    assert_eq!(v["signer"]["keyless"], true);
    // `batch` too (it runs later, while the registry is down).
    let (code, v) = gate(&node_cfg, &guest, &format!("{host}/provenant/batch:1"));
    assert_eq!(code, 0, "{v}");
    let batch_ref = format!("{host}/provenant/batch@{}", digests["batch"]);
    // The bypass: someone pulls the unsigned image with a permissive policy.
    let permissive = root.join("permissive.json");
    std::fs::write(
        &permissive,
        r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
    )
    .unwrap();
    guest.run(&[
        "pull",
        "-q",
        "--tls-verify=false",
        "--signature-policy",
        permissive.to_str().unwrap(),
        &rogue_ref,
    ]);
    guest.run(&["run", "-d", "--name", "app", "--network", "none", &app_ref]);
    guest.run(&[
        "run",
        "-d",
        "--name",
        "rogue",
        "--network",
        "none",
        &rogue_ref,
    ]);

    // --- 3. The control plane judges what the agents report.
    let cp_cfg = root.join("cp.toml");
    std::fs::write(
        &cp_cfg,
        format!(
            r#"listen = "127.0.0.1:{cp_port}"
data_dir = "{data}"
heartbeat_interval = "30s"
sweep_interval = "200ms"
alert_cooldown = "0s"

[policy]
allow_software_tier = true
# The test host runs no NTP daemon: its kernel reports the clock unsynchronised,
# which would turn every agent yellow (ClockUnsynchronised; judged in cp-verifier's api tests).
clock_unsynchronised = "ignore"

[policy.tdx]
mrtd_allowlist = ["{mrtd}"]
rtmr_allowlists = [[], ["{rtmr1}"], ["{rtmr2}"]]

[tdx]
root_ca_file = "{root_ca}"
collateral_file = "{collateral}"

[images]
cache_ttl = "8s"
retry_after = "500ms"

[[images.trust]]
scope = "{host}/provenant"
[images.trust.keyless]
trusted_root = "{tr}"
issuer = "https://token.actions.githubusercontent.com"
san = "{san}"
source_repository = "https://github.com/{REPO}"
source_ref = "refs/heads/main"

[[images.registry]]
host = "{host}"
insecure = true

{enrolled}
[[enrollment.keys]]
agent_id = "node-1"
fingerprint = "{node_fp}"
"#,
            data = root.join("cp-data").display(),
            root_ca = TestPki::root_ca_der_path().display(),
            collateral = TestPki::collateral_path().display(),
            mrtd = hex::encode(tdx_sim::TdReport::default().mrtd),
            rtmr1 = hex::encode(tdx_sim::TdReport::default().rtmrs[1]),
            rtmr2 = hex::encode(tdx_sim::TdReport::default().rtmrs[2]),
            tr = trusted_root.display(),
            san = identity.san(),
            enrolled = enrollment(&tds),
            node_fp = guest_agent::signer::Signer::public_key(&signer).fingerprint(),
        ),
    )
    .unwrap();
    let _cp = Proc::spawn(
        "cp-verifier",
        &["serve", "--config", cp_cfg.to_str().unwrap()],
        root,
    );
    let _agents = provenant_tests::tdx::start_agents(root, &tds);
    let _node = Proc::spawn(
        "guest-agent",
        &["run", "--config", node_cfg.to_str().unwrap()],
        root,
    );

    // The signed image: green on the TDX guest, yellow (never green) on the software
    // node; the unsigned one red on both.
    let codes = wait_badge(&http, &cp, "td-1", "app", "green").await;
    assert!(codes.is_empty(), "{codes:?}");
    let codes = wait_badge(&http, &cp, "node-1", "app", "yellow").await;
    assert!(codes.contains(&"SoftwareTier".to_owned()), "{codes:?}");
    for agent in ["td-1", "node-1"] {
        let codes = wait_badge(&http, &cp, agent, "rogue", "red").await;
        assert!(
            codes.contains(&"ImageUnsigned".to_owned()),
            "{agent}: {codes:?}"
        );
    }
    // The agents reported both digests, as the registry serves them.
    let (_, v) = http.get(&format!("{cp}/api/v1/agents/td-1")).await.unwrap();
    let reported: Vec<&str> = v["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w["image_digest"].as_str())
        .collect();
    assert!(reported.contains(&digests["app"].as_str()), "{v}");
    assert!(reported.contains(&digests["rogue"].as_str()), "{v}");
    // The guest's own /health shows the control plane's badges.
    let td_api = tds[0].api.clone();
    wait_for(30, "td-1 /health to show app green", || async {
        let (_, h) = http.get(&format!("{td_api}/health")).await?;
        let d = h["deployments"].as_array()?;
        let app = d.iter().find(|x| x["name"] == "app")?;
        let rogue = d.iter().find(|x| x["name"] == "rogue")?;
        (app["attestation_status"] == "green"
            && app["image_digest"] == digests["app"].as_str()
            && !app["verified_at"].is_null()
            && rogue["attestation_status"] == "red")
            .then_some(())
    })
    .await;

    // The pull gate records the signer in the TD's RTMR3 log; the agent re-quotes,
    // and the control plane still finds the log consistent with the register.
    let (code, v) = gate(&tds[0].config, &guest, &app_ref);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["event"]["kind"], "workload_image", "{v}");
    assert_eq!(v["event"]["bound"], true, "{v}");
    let value = v["event"]["value"].as_str().unwrap();
    assert!(
        value.starts_with(&app_ref) && value.contains(&identity.san()),
        "{value}"
    );
    let log = std::fs::read_to_string(&tds[0].event_log).unwrap();
    assert!(log.contains("workload_image"));
    // The log replays to the register, which counts one extension per bound event.
    let events = evidence::eventlog::parse_jsonl(log.as_bytes()).unwrap();
    assert_eq!(
        evidence::eventlog::replay(&events),
        tds[0].rtmr.current_rtmr3(),
        "{log}"
    );
    wait_for(30, "td-1 to re-register with the pull event", || async {
        let (_, v) = http.get(&format!("{cp}/api/v1/agents/td-1")).await?;
        let n = v["attestation"]["event_log_events"].as_u64()?;
        let expected = u64::try_from(log.lines().count()).ok()?;
        (n >= expected && v["verdict"]["status"] == "pass").then_some(())
    })
    .await;

    // The registry goes away. Cached verdicts stand until they expire; a workload
    // first seen now cannot be judged: unknown, never green.
    reg.stop();
    guest.run(&[
        "run",
        "-d",
        "--name",
        "batch",
        "--network",
        "none",
        &batch_ref,
    ]);
    let codes = wait_badge(&http, &cp, "td-1", "batch", "unknown").await;
    assert!(codes.contains(&"ImageUnverifiable".to_owned()), "{codes:?}");
    assert_eq!(badge(&http, &cp, "td-1", "app").await.unwrap().0, "green");
    assert_eq!(badge(&http, &cp, "td-1", "rogue").await.unwrap().0, "red");

    // The fleet pages in Chromium: green, yellow, red and unknown, screenshotted.
    let dom = dump_dom(&format!("{cp}/agent/td-1"));
    assert!(row(&dom, "app").contains("data-badge=\"green\""), "{dom}");
    assert!(row(&dom, "rogue").contains("data-badge=\"red\""), "{dom}");
    assert!(row(&dom, "rogue").contains("ImageUnsigned"), "{dom}");
    assert!(
        row(&dom, "batch").contains("data-badge=\"unknown\""),
        "{dom}"
    );
    let dom = dump_dom(&format!("{cp}/agent/node-1"));
    assert!(row(&dom, "app").contains("data-badge=\"yellow\""), "{dom}");
    let shots = artifacts_dir();
    for (page, file) in [
        ("agents", "e2e-fleet-agents.png"),
        ("agent/td-1", "e2e-fleet-td-1.png"),
        ("agent/node-1", "e2e-fleet-node-1.png"),
    ] {
        let png = shots.join(file);
        screenshot(&format!("{cp}/{page}"), &png);
        assert!(std::fs::metadata(&png).unwrap().len() > 1000);
        eprintln!("screenshot: {}", png.display());
    }

    // Once the cached verdict expires, the signed image is unknown too while the
    // registry is down, and green again when it is back.
    wait_badge(&http, &cp, "td-1", "app", "unknown").await;
    reg.restart();
    wait_badge(&http, &cp, "td-1", "app", "green").await;
    wait_badge(&http, &cp, "td-1", "batch", "green").await;

    // --- 4. eBPF: the program loaded before the node agent started is in its report,
    // with its hash; a changed program raises EbpfChanged.
    let (_, v) = http
        .get(&format!("{cp}/api/v1/agents/node-1"))
        .await
        .unwrap();
    let pin_s = pin.display().to_string();
    let items = v["measurements"]["ebpf"]["items"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let ours = items
        .iter()
        .find(|p| {
            p["pinned"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == pin_s.as_str()))
        })
        .unwrap_or_else(|| panic!("{pin_s} not in node-1's eBPF list: {v}"));
    assert_eq!(ours["name"], "provenant_test");
    assert_eq!(ours["sha256"], bpf.bpftool_hash(&pin).to_hex().as_str());
    std::fs::remove_file(&pin).unwrap();
    let prog1 = bpf.compile(1);
    let _pin1 = bpf.load(&prog1, "provenant_e2e_v2");
    let alert = wait_for(60, "an EbpfChanged alert for node-1", || async {
        alerts_of(&http, &cp, "EbpfChanged")
            .await
            .into_iter()
            .find(|a| a["agent_id"] == "node-1")
    })
    .await;
    assert!(
        alert["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("provenant_test"),
        "{alert}"
    );
    wait_badge(&http, &cp, "node-1", "app", "red").await;
    tokio::time::sleep(Duration::from_millis(10)).await;
}
