//! The agent's workloads collector against real podman (Debian's podman 4.3 as root,
//! its API service) and a real registry (`docker-registry`), then the agent binary end
//! to end with a real `cp-verifier`: `/health` lists the deployments.
//!
//! Images are built by a "builder" podman, pushed, and pulled by a separate "guest"
//! podman, so the guest's digests are the ones the registry serves (FACTS.md: a
//! pushed image is recompressed, and its registry digest differs from the local one).
//! Needs: podman, runc, busybox-static, docker-registry; root.

use std::time::Duration;

use evidence::CollectorState;
use guest_agent::workloads::WorkloadsCollector;
use provenant_tests::podman::Podman;
use provenant_tests::registry::Registry;
use provenant_tests::{free_port, wait_for, Http, Proc};
use serde_json::Value;

fn digest_file_push(p: &Podman, extra: &[&str], local: &str, remote: &str) -> String {
    let f = p.dir.join("push-digest-extra");
    let mut args = vec!["push", "-q", "--tls-verify=false"];
    args.extend_from_slice(extra);
    let fs = f.to_str().unwrap().to_string();
    args.extend_from_slice(&["--digestfile", &fs, local, remote]);
    p.run(&args);
    std::fs::read_to_string(&f).unwrap().trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workloads_from_real_podman_and_the_agent_health() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let reg = Registry::start(root, root);
    let builder = Podman::new(root, "builder", root);
    builder.build_scratch("localhost/wl:1", "workload");
    let remote = format!("{}/wl/app:1", reg.host);
    let digest = builder.push("localhost/wl:1", &remote);
    // The same image under a second tag with a different manifest (Docker v2s2): the
    // guest's image then holds two registry digests for one repository.
    let remote2 = format!("{}/wl/app:2", reg.host);
    let digest2 = digest_file_push(&builder, &["--format", "v2s2"], "localhost/wl:1", &remote2);
    assert_ne!(digest, digest2);

    let mut guest = Podman::new(root, "guest", root);
    guest.run(&["pull", "-q", "--tls-verify=false", &remote]);
    guest.run(&["pull", "-q", "--tls-verify=false", &remote2]);
    let pinned_ref = format!("{}/wl/app@{digest}", reg.host);
    guest.run(&["run", "-d", "--name", "app", "--network", "none", &remote]);
    guest.run(&["run", "-d", "--name", "app2", "--network", "none", &remote2]);
    guest.run(&["create", "--name", "idle", "--network", "none", &pinned_ref]);
    guest.run(&[
        "run",
        "--name",
        "done",
        "--network",
        "none",
        &remote,
        "true",
    ]);
    guest.build_scratch("localhost/local:1", "never pushed");
    guest.run(&[
        "create",
        "--name",
        "local",
        "--network",
        "none",
        "localhost/local:1",
    ]);
    let sock = guest.start_service();

    let inspect = |name: &str, fmt: &str| guest.run(&["inspect", name, "--format", fmt]);
    let c = WorkloadsCollector::new(sock.clone(), Duration::from_secs(20));
    let w = c.collect().await;
    assert_eq!(w.state, CollectorState::Ok, "{:?}", w.reason);
    let items = w.items.clone().unwrap();
    assert_eq!(w.digest, Some(evidence::Workloads::digest_of(&items)));
    let names: Vec<&str> = items.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(
        names,
        ["app", "app2", "done", "idle", "local"],
        "sorted by name"
    );
    let by = |n: &str| items.iter().find(|i| i.name == n).unwrap();
    let image_id = inspect("app", "{{.Image}}");

    let app = by("app");
    assert_eq!(app.id, inspect("app", "{{.Id}}"));
    assert_eq!(app.state, "running");
    assert_eq!(app.image, remote);
    assert!(
        app.image_id.ends_with(&image_id),
        "{} vs {image_id}",
        app.image_id
    );
    assert_eq!(app.image_digest.as_deref(), Some(digest.as_str()));
    // Same image, other tag: the image holds both registry digests for the
    // repository, and podman's `ImageDigest` for the container decides (podman 4.3
    // records one digest per image, not per tag: either manifest names this image's
    // config and layers, so either is a true statement of what runs).
    let app2 = by("app2");
    assert_eq!(app2.image_id, app.image_id);
    let rd = inspect("app2", "{{.ImageDigest}}");
    let repo_digests = guest.run(&["image", "inspect", &remote2, "--format", "{{.RepoDigests}}"]);
    assert!(
        repo_digests.contains(&digest) && repo_digests.contains(&digest2),
        "{repo_digests}"
    );
    assert!(rd == digest || rd == digest2, "{rd}");
    assert_eq!(app2.image_digest.as_deref(), Some(rd.as_str()));
    let idle = by("idle");
    assert_eq!(idle.state, "created");
    assert_eq!(idle.image, pinned_ref);
    assert_eq!(idle.image_digest.as_deref(), Some(digest.as_str()));
    assert_eq!(by("done").state, "exited");
    // Never came from a registry: no digest, never a borrowed one.
    let local = by("local");
    assert_eq!(local.image_digest, None);
    assert!(local.image.contains("localhost/local"), "{}", local.image);

    // A removed container changes the digest.
    guest.run(&["rm", "-f", "done"]);
    let w2 = c.collect().await;
    assert_eq!(w2.items.as_ref().unwrap().len(), 4);
    assert_ne!(w2.digest, w.digest);

    // The agent binary, with both collectors, against a real control plane.
    agent_health(root, &sock, &digest, &mut guest).await;

    // Podman's API gone: unknown with the reason, never an empty ok list.
    guest.stop_service();
    let gone = c.collect().await;
    assert_eq!(gone.state, CollectorState::Unknown);
    assert!(gone.items.is_none() && gone.digest.is_none());
    let reason = gone.reason.unwrap();
    assert!(reason.contains("unreachable"), "{reason}");
}

async fn agent_health(
    root: &std::path::Path,
    sock: &std::path::Path,
    digest: &str,
    guest: &mut Podman,
) {
    let http = Http::new();
    let key = root.join("node.key");
    let out = std::process::Command::new(provenant_tests::binary("guest-agent"))
        .args(["keygen", "--out", key.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let fingerprint = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("fingerprint: ").map(str::to_string))
        .unwrap();
    let (cp_port, agent_port) = (free_port(), free_port());
    let cp = format!("http://127.0.0.1:{cp_port}");
    let api = format!("http://127.0.0.1:{agent_port}");
    std::fs::write(
        root.join("cp.toml"),
        format!(
            r#"listen = "127.0.0.1:{cp_port}"
data_dir = "{data}"
heartbeat_interval = "30s"

[policy]
allow_software_tier = true

[[enrollment.keys]]
agent_id = "node-wl"
fingerprint = "{fingerprint}"
"#,
            data = root.join("cp-data").display(),
        ),
    )
    .unwrap();
    let agent_cfg = root.join("agent.toml");
    std::fs::write(
        &agent_cfg,
        format!(
            r#"agent_id = "node-wl"
control_plane = "{cp}"
insecure_http = true
heartbeat_interval = "500ms"
max_backoff = "1s"
listen = "127.0.0.1:{agent_port}"
key_file = "{key}"
quote_provider = "none"
podman_socket = "{sock}"
collect_ebpf = true
"#,
            key = key.display(),
            sock = sock.display(),
        ),
    )
    .unwrap();
    let _cp = Proc::spawn(
        "cp-verifier",
        &["serve", "--config", root.join("cp.toml").to_str().unwrap()],
        root,
    );
    let _agent = Proc::spawn(
        "guest-agent",
        &["run", "--config", agent_cfg.to_str().unwrap()],
        root,
    );
    let h: Value = wait_for(30, "agent pulsing with deployments", || async {
        let (_, h) = http.get(&format!("{api}/health")).await?;
        (h["state"] == "pulsing" && h["last_pulse"]["sequence"].as_u64()? >= 2).then_some(h)
    })
    .await;
    let d = h["deployments"].as_array().expect("deployments list");
    assert_eq!(d.len(), 4, "{d:#?}");
    let app = d.iter().find(|x| x["name"] == "app").unwrap();
    assert_eq!(app["state"], "running");
    assert!(app["image"].as_str().unwrap().ends_with("/wl/app:1"));
    assert_eq!(app["image_digest"], digest);
    let status = app["attestation_status"].as_str().unwrap();
    assert!(
        ["green", "yellow", "red", "unknown"].contains(&status),
        "{status}"
    );
    assert!(app["reasons"].is_array());
    assert!(app["verified_at"].is_null() || app["verified_at"].is_string());
    if status == "unknown" {
        assert!(!app["reasons"].as_array().unwrap().is_empty());
    }
    let local = d.iter().find(|x| x["name"] == "local").unwrap();
    assert!(local["image_digest"].is_null());
    assert_eq!(h["collectors"]["workloads"]["state"], "ok");
    assert_eq!(h["collectors"]["workloads"]["count"], 4);
    assert_eq!(
        h["collectors"]["ebpf"]["state"], "ok",
        "{}",
        h["collectors"]
    );
    assert!(h["collectors"]["ebpf"]["programs"].is_array());

    // Pulses keep flowing; the status page shows their position, never the signed
    // pulse (issue 10, finding 3). That pulses after the first carry the lists'
    // digests only is `agent::tests::pulses_carry_a_list_only_when_its_digest_changed`.
    let (_, st) = http.get(&format!("{api}/api/v1/status")).await.unwrap();
    assert!(st["last_pulse"]["sequence"].as_u64().unwrap() >= 2, "{st}");
    assert!(st.get("last_pulse_envelope").is_none(), "{st}");

    // The control plane got the lists: the report carried them in full.
    let (s, v) = http
        .get(&format!("{cp}/api/v1/agents/node-wl"))
        .await
        .expect("control plane answers");
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["workloads_state"]["state"], "ok", "{v}");

    // Podman's API goes away under the running agent (issue 10's outage faults): the
    // agent keeps pulsing, its workloads collector is `unknown` on the node and at the
    // control plane (never an empty `ok` list), no workload is green, and everything
    // comes back when podman does.
    guest.stop_service();
    let v: Value = wait_for(20, "workloads unknown at the control plane", || async {
        let (_, v) = http.get(&format!("{cp}/api/v1/agents/node-wl")).await?;
        (v["workloads_state"]["state"] == "unknown").then_some(v)
    })
    .await;
    assert_ne!(v["badge"], "green", "{v}");
    assert!(
        v["workloads"]
            .as_array()
            .unwrap()
            .iter()
            .all(|w| w["status"] != "pass"),
        "{v}"
    );
    let (_, h) = http.get(&format!("{api}/health")).await.unwrap();
    assert_eq!(h["state"], "pulsing", "{h}");
    assert_eq!(h["collectors"]["workloads"]["state"], "unknown", "{h}");
    assert_ne!(h["verdict"]["badge"], "green", "{h}");
    guest.start_service();
    wait_for(30, "workloads ok again once podman is back", || async {
        let (_, v) = http.get(&format!("{cp}/api/v1/agents/node-wl")).await?;
        (v["workloads_state"]["state"] == "ok" && v["workloads"].as_array()?.len() == 4)
            .then_some(())
    })
    .await;
}
