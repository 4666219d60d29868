//! `[policy.ebpf] required` against real BPF programs (run as root): two socket
//! filters named like the signed-heartbeat PRD's "Shield" and "Sentinel", compiled
//! from `tests/bpf/socket_filter.c` and loaded and pinned with `bpftool` on a fresh
//! bpffs; the guest agent's eBPF collector reads the kernel; a real `cp-verifier
//! serve` judges the pulses. The test then moves the pin, unloads one program and
//! replaces the other, and checks each turns the agent red with a reason naming it
//! and one severity-1 `RequiredProgram` alert.
//! Needs: clang, bpftool, linux-libc-dev; root (CAP_SYS_ADMIN) for bpf() and mount.

use std::path::Path;

use guest_agent::ebpf::EbpfCollector;
use provenant_tests::bpf::BpfFs;
use provenant_tests::fleet::{Answer, CpClient, CpProcess, CpSpec, SimAgent};
use serde_json::Value;

/// `/proc/self` belongs to the process's effective uid.
fn is_root() -> bool {
    std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()) == 0
}

/// The `Required*` reasons of a verdict, as `CODE detail`.
fn required(body: &Value) -> Vec<String> {
    body["verdict"]["reasons"]
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
}

/// Measures the kernel's programs again and sends them in the next pulse.
async fn pulse(agent: &mut SimAgent, c: &mut EbpfCollector, cp: &CpClient) -> Value {
    agent.ebpf = Some(c.collect());
    let p = agent.next_pulse();
    match cp.heartbeat(&p).await {
        Answer::Status(200, body) => {
            agent.acknowledged(&p);
            body
        }
        other => panic!("pulse refused: {other:?}"),
    }
}

async fn required_alerts(cp: &CpClient) -> Vec<Value> {
    cp.alerts()
        .await
        .into_iter()
        .filter(|a| a["kind"] == "RequiredProgram")
        .collect()
}

#[tokio::test]
async fn required_programs_are_judged_on_real_programs() {
    assert!(
        is_root(),
        "this test loads BPF programs and mounts bpffs: run it as root"
    );
    let fs = BpfFs::new();
    let shield = fs.load(&fs.compile_named(0, "prov_shield"), "shield");
    let sentinel = fs.load(&fs.compile_named(0, "prov_sentinel"), "sentinel");
    let sentinel_hash = fs.bpftool_hash(&sentinel);
    let mut collector = EbpfCollector::new(vec![fs.mnt.clone()], "/sys/kernel/security/lsm".into());

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut agent = SimAgent::new("bpf-node", 1000);
    let mut spec = CpSpec::new(&root.join("cp-data"), &root.join("audit.jsonl"));
    spec.enrolled = vec![agent.enrollment()];
    spec.heartbeat_interval = "60s";
    spec.extra = format!(
        "\n[[policy.ebpf.required]]\nname = \"prov_shield\"\ntype = \"socket_filter\"\npinned_at = \"{}\"\n\
         \n[[policy.ebpf.required]]\nname = \"prov_sentinel\"\ntype = \"socket_filter\"\ndigest = \"{}\"\n",
        shield.display(),
        sentinel_hash.to_hex()
    );
    let cp = CpProcess::start(&spec, &root.join("cp.toml"), root).await;
    let client = cp.client.clone();

    // Both loaded, pinned and as pinned: no required-program reason.
    agent.ebpf = Some(collector.collect());
    agent.register(&client).await.expect("registration");
    let v = client.agent("bpf-node").await.unwrap();
    assert!(required(&v).is_empty(), "{v}");
    assert!(required_alerts(&client).await.is_empty());

    // Shield still loaded, but pinned elsewhere only.
    let elsewhere = fs.mnt.join("shield-moved");
    fs.pin_again(&shield, &elsewhere);
    std::fs::remove_file(&shield).unwrap();
    let v = pulse(&mut agent, &mut collector, &client).await;
    let r = required(&v);
    assert_eq!(r.len(), 1, "{v}");
    assert!(
        r[0].starts_with("RequiredProgramUnpinned") && r[0].contains("prov_shield"),
        "{r:?}"
    );
    assert!(r[0].contains(&elsewhere.display().to_string()), "{r:?}");
    assert_eq!(v["verdict"]["status"], "fail", "{v}");
    let alerts = required_alerts(&client).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["severity"], 1);
    // The same state again: no second alert.
    pulse(&mut agent, &mut collector, &client).await;
    assert_eq!(required_alerts(&client).await.len(), 1);

    // Its last pin removed, the kernel unloads it: missing.
    std::fs::remove_file(&elsewhere).unwrap();
    let v = pulse(&mut agent, &mut collector, &client).await;
    let r = required(&v);
    assert!(
        r.iter()
            .any(|r| r.starts_with("RequiredProgramMissing") && r.contains("prov_shield")),
        "{r:?}"
    );
    assert_eq!(required_alerts(&client).await.len(), 2);

    // Sentinel replaced by other instructions at the same pin: changed.
    std::fs::remove_file(&sentinel).unwrap();
    let replaced = fs.load(&fs.compile_named(1, "prov_sentinel"), "sentinel");
    assert_eq!(replaced, sentinel);
    assert_ne!(fs.bpftool_hash(&sentinel), sentinel_hash);
    let v = pulse(&mut agent, &mut collector, &client).await;
    let r = required(&v);
    assert!(
        r.iter()
            .any(|r| r.starts_with("RequiredProgramChanged") && r.contains("prov_sentinel")),
        "{r:?}"
    );
    let alerts = required_alerts(&client).await;
    assert_eq!(alerts.len(), 3, "{alerts:?}");
    assert!(alerts
        .iter()
        .all(|a| a["severity"] == 1 && a["agent_id"] == "bpf-node"));

    // Both back as required: the reasons go.
    std::fs::remove_file(&sentinel).unwrap();
    fs.load(&fs.compile_named(0, "prov_sentinel"), "sentinel");
    fs.load(&fs.compile_named(0, "prov_shield"), "shield");
    assert!(Path::new(&shield).exists());
    let v = pulse(&mut agent, &mut collector, &client).await;
    assert!(required(&v).is_empty(), "{v}");
}
