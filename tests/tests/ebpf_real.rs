//! The eBPF collector against the real kernel (run as root): a socket filter compiled
//! with Debian's clang from `tests/bpf/socket_filter.c` (helpers in `provenant_tests::bpf`), loaded and pinned with
//! `bpftool` on a fresh bpffs mounted under the test's directory. Only programs this
//! test pinned are looked at, so other BPF programs on the host do not matter.
//! Needs: clang, bpftool, linux-libc-dev; root (CAP_SYS_ADMIN) for bpf() and mount.

use std::path::Path;
use std::process::Command;

use evidence::{BpfProgram, CollectorState};
use guest_agent::ebpf::EbpfCollector;
use provenant_tests::bpf::{run, BpfFs};
use serde_json::Value;

/// The list digest over this test's programs only (those pinned under its bpffs).
fn ours(e: &evidence::Ebpf, fs: &BpfFs) -> evidence::Digest32 {
    let mine: Vec<BpfProgram> = e
        .items
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter(|p| p.pinned.iter().any(|x| Path::new(x).starts_with(&fs.mnt)))
        .cloned()
        .collect();
    evidence::Ebpf::digest_of(&mine)
}

fn find<'a>(items: &'a [BpfProgram], pin: &Path) -> &'a BpfProgram {
    let p = pin.display().to_string();
    items
        .iter()
        .find(|i| i.pinned.contains(&p))
        .unwrap_or_else(|| panic!("no program pinned at {p} in {items:#?}"))
}

#[test]
fn real_programs_are_listed_hashed_and_survive_a_reload() {
    assert!(
        is_root(),
        "this test loads BPF programs and mounts bpffs: run it as root"
    );
    let fs = BpfFs::new();
    let obj = fs.compile(0);
    let a = fs.load(&obj, "provenant_test");
    let mut c = EbpfCollector::new(vec![fs.mnt.clone()], "/sys/kernel/security/lsm".into());

    let e = c.collect();
    assert_eq!(e.state, CollectorState::Ok, "{:?}", e.reason);
    let items = e.items.clone().unwrap();
    assert_eq!(e.digest, Some(evidence::Ebpf::digest_of(&items)));
    let p = find(&items, &a);
    let show = fs.show(&a);
    assert_eq!(u64::from(p.id), show["id"].as_u64().unwrap());
    assert_eq!(p.name, show["name"].as_str().unwrap());
    assert_eq!(p.name, "provenant_test");
    assert_eq!(p.prog_type, show["type"].as_str().unwrap());
    assert_eq!(p.prog_type, "socket_filter");
    assert_eq!(p.tag, show["tag"].as_str().unwrap());
    assert_eq!(p.pinned, vec![a.display().to_string()]);
    // Our hash of the kernel's translated instructions equals the same hash over
    // bpftool's dump of them.
    assert_eq!(p.sha256, fs.bpftool_hash(&a));
    assert!(c.hashed_last >= 1);
    let first = p.clone();

    // Only programs not seen before are hashed (other programs on the host may come
    // and go meanwhile; ours is served from the cache).
    let again = c.collect();
    let before: Vec<u32> = items.iter().map(|i| i.id).collect();
    let new = again
        .items
        .as_ref()
        .unwrap()
        .iter()
        .filter(|i| !before.contains(&i.id))
        .count();
    assert_eq!(c.hashed_last, new);
    assert_eq!(ours(&again, &fs), ours(&e, &fs));

    // The same program loaded again gets a new id and a new map (whose id the
    // translated code embeds), and the same hash.
    let b = fs.load(&obj, "provenant_test_again");
    let e2 = c.collect();
    let items2 = e2.items.clone().unwrap();
    let q = find(&items2, &b);
    assert_ne!(q.id, first.id);
    assert_eq!(q.sha256, first.sha256, "a reload must hash the same");
    assert_ne!(
        ours(&e2, &fs),
        ours(&e, &fs),
        "a new pinned program changes the digest"
    );
    let (qm, fm): (Vec<u64>, Vec<u64>) = (
        fs.show(&b)["map_ids"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_u64)
            .collect(),
        show["map_ids"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_u64)
            .collect(),
    );
    assert_ne!(qm, fm, "each load has its own map");

    // A modified program hashes differently.
    let m = fs.load(&fs.compile(1), "provenant_test_mod");
    let e3 = c.collect();
    let r = find(e3.items.as_ref().unwrap(), &m);
    assert_ne!(r.sha256, first.sha256);
    assert_ne!(r.tag, first.tag);

    // Unpinned (and so unloaded), a program leaves the list.
    std::fs::remove_file(&m).unwrap();
    let e4 = c.collect();
    assert!(e4.items.as_ref().unwrap().iter().all(|i| i.id != r.id));
    assert_eq!(ours(&e4, &fs), ours(&e2, &fs));

    if let Ok(lsm) = std::fs::read_to_string("/sys/kernel/security/lsm") {
        assert_eq!(
            e.extra.lsm_active,
            Some(lsm.trim().split(',').any(|l| l == "bpf"))
        );
    } else {
        assert_eq!(e.extra.lsm_active, None);
    }
}

/// Without privilege the collector says `unavailable` with the reason: the agent's
/// one-shot report, run as `nobody` with no capabilities (util-linux `setpriv`).
#[test]
fn without_privilege_ebpf_is_unavailable() {
    assert!(is_root(), "run as root (the test drops to nobody)");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let exe = &provenant_tests::binary("guest-agent");
    let key = d.join("node.key");
    run(Command::new(exe).args(["keygen", "--out"]).arg(&key));
    run(Command::new("chown").arg("65534").arg(&key));
    let cfg = d.join("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            "agent_id = \"n1\"\ncontrol_plane = \"http://127.0.0.1:1\"\ninsecure_http = true\nkey_file = \"{}\"\nquote_provider = \"none\"\ncollect_workloads = false\n",
            key.display()
        ),
    )
    .unwrap();
    let out = run(Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ])
        .arg(exe)
        .args(["report", "--config"])
        .arg(&cfg)
        .args(["--nonce", &"ab".repeat(32)]));
    let env = evidence::Envelope::from_json(out.as_bytes()).unwrap();
    let report: Value = serde_json::from_slice(&env.payload).unwrap();
    let ebpf = &report["measurements"]["ebpf"];
    assert_eq!(ebpf["state"], "unavailable", "{ebpf}");
    assert!(ebpf["items"].is_null());
    assert!(ebpf["digest"].is_null());
    let reason = ebpf["reason"].as_str().unwrap();
    assert!(reason.contains("privilege"), "{reason}");
    assert!(report["measurements"].get("workloads").is_none());
}

/// `/proc/self` belongs to the process's effective uid.
fn is_root() -> bool {
    std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()) == 0
}

/// For a TDX tier, a changed eBPF list is a measurement change: the agent extends
/// RTMR3 (tdx-sim plays the kernel's register) with an `ebpf` event naming the new
/// digest, and the log replays to the register.
#[tokio::test]
async fn an_ebpf_change_is_an_rtmr3_event() {
    use std::sync::Arc;
    use tdx_sim::{Behaviour, ConfigfsKernel, RtmrBehaviour, RtmrDevice};

    assert!(is_root(), "run as root");
    let fs = BpfFs::new();
    let dir = tempfile::tempdir().unwrap();
    let (tsm, meas) = (
        dir.path().join("tsm/report"),
        dir.path().join("measurements"),
    );
    std::fs::create_dir_all(&tsm).unwrap();
    let rtmr = RtmrDevice::start(&meas, RtmrBehaviour::Honest).unwrap();
    let _kernel = ConfigfsKernel::start(&tsm, Behaviour::Honest, Some(&rtmr)).unwrap();
    let log = dir.path().join("run/rtmr3.jsonl");
    let cfg_path = dir.path().join("agent.toml");
    std::fs::write(
        &cfg_path,
        format!(
            "agent_id = \"n1\"\ncontrol_plane = \"http://127.0.0.1:1\"\ninsecure_http = true\nquote_provider = \"configfs-tsm\"\n\
             tsm_report_dir = \"{}\"\nrtmr_dir = \"{}\"\nevent_log_file = \"{}\"\n\
             collect_workloads = false\nbpffs_dirs = [\"{}\"]\n",
            tsm.display(),
            meas.display(),
            log.display(),
            fs.mnt.display()
        ),
    )
    .unwrap();
    let cfg = guest_agent::config::AgentConfig::load(&cfg_path).unwrap();
    let quote = guest_agent::quote::select(&cfg).unwrap();
    let agent = guest_agent::agent::Agent::new(
        cfg,
        None,
        quote,
        Arc::new(provenant_base::clock::SystemClock),
    )
    .unwrap();
    let events = || evidence::eventlog::parse_jsonl(&std::fs::read(&log).unwrap()).unwrap();
    let ebpf_values = || -> Vec<String> {
        events()
            .into_iter()
            .filter(|e| e.kind == "ebpf")
            .map(|e| e.value)
            .collect()
    };

    let m1 = agent.measure().await.unwrap();
    assert!(m1.workloads.is_none(), "workloads collector disabled");
    let d1 = m1.ebpf.as_ref().unwrap().digest.unwrap().to_hex();
    assert_eq!(ebpf_values().last(), Some(&d1));
    assert!(events().iter().all(|e| e.kind != "workloads"));

    let pin = fs.load(&fs.compile(0), "provenant_rtmr");
    let m2 = agent.measure().await.unwrap();
    let e2 = m2.ebpf.as_ref().unwrap();
    assert!(e2
        .items
        .as_ref()
        .unwrap()
        .iter()
        .any(|p| p.pinned == vec![pin.display().to_string()]));
    let d2 = e2.digest.unwrap().to_hex();
    assert_ne!(d1, d2);
    let values = ebpf_values();
    assert!(
        values.contains(&d1) && values.last() == Some(&d2),
        "{values:?}"
    );
    let all = events();
    assert!(all.iter().all(|e| e.bound));
    assert_eq!(evidence::eventlog::replay(&all), rtmr.current_rtmr3());

    // Unchanged: no new event.
    let n = all.len();
    let m3 = agent.measure().await.unwrap();
    if m3.ebpf.as_ref().unwrap().digest == e2.digest {
        assert_eq!(events().len(), n);
    }
}
