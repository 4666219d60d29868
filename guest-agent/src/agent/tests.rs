//! Unit tests of the agent loop.

use super::*;

fn lists() -> Measurements {
    let mut m = Collector::new(vec![]).collect().unwrap();
    let w = vec![evidence::Workload {
        name: "app".into(),
        id: "ab".repeat(32),
        state: "running".into(),
        image: "reg/app:1".into(),
        image_id: "sha256:11".into(),
        image_digest: None,
    }];
    m.workloads = Some(evidence::Workloads::full(w, ()));
    m.ebpf = Some(evidence::Ebpf::full(
        vec![],
        evidence::EbpfExtra {
            lsm_active: Some(true),
        },
    ));
    m
}

#[test]
fn pulses_carry_a_list_only_when_its_digest_changed() {
    let m = lists();
    // Nothing sent yet (first pulse after registration): everything goes.
    assert_eq!(SentLists::default().strip(&m), m);
    let sent = SentLists::after(&m);
    let p = sent.strip(&m);
    let (w, e) = (p.workloads.unwrap(), p.ebpf.unwrap());
    assert!(w.items.is_none() && e.items.is_none());
    assert_eq!(w.digest, m.workloads.as_ref().unwrap().digest);
    assert_eq!(e.digest, m.ebpf.as_ref().unwrap().digest);
    assert_eq!(e.extra.lsm_active, Some(true));
    // Only the changed list travels.
    let mut changed = m.clone();
    let cw = changed.workloads.as_mut().unwrap();
    cw.items.as_mut().unwrap()[0].state = "exited".into();
    cw.digest = Some(evidence::Workloads::digest_of(cw.items.as_ref().unwrap()));
    let p = sent.strip(&changed);
    assert!(p.workloads.unwrap().items.is_some());
    assert!(p.ebpf.unwrap().items.is_none());
    // A list that could not be read has no digest and no items either way.
    let mut unknown = m.clone();
    unknown.workloads = Some(evidence::Workloads {
        state: evidence::CollectorState::Unknown,
        reason: Some("podman down".into()),
        extra: (),
        digest: None,
        items: None,
    });
    let p = sent.strip(&unknown);
    assert_eq!(p.workloads, unknown.workloads);
}

#[test]
fn pulses_carry_the_policy_file_list_only_when_it_changed() {
    let file = |path: &str, b: u8| evidence::FileMeasurement {
        path: path.into(),
        sha256: evidence::report::HexBytes([b; 32]),
    };
    let mut m = lists();
    m.policy = evidence::PolicyMeasurement::from_files(
        (0..200)
            .map(|i| file(&format!("/etc/p/{i}.toml"), 1))
            .collect(),
    );
    assert_eq!(SentLists::default().strip(&m).policy.files.len(), 200);
    let sent = SentLists::after(&m);
    let p = sent.strip(&m);
    assert!(p.policy.files.is_empty() && p.policy.omitted());
    assert_eq!(p.policy.digest, m.policy.digest);
    let steady = serde_json::to_string(&p).unwrap();
    assert!(!steady.contains("files"), "{steady}");
    // One file changed: the whole list travels, and hashes to its digest.
    let mut changed = m.clone();
    changed.policy = evidence::PolicyMeasurement::from_files(
        (0..200)
            .map(|i| file(&format!("/etc/p/{i}.toml"), if i == 7 { 2 } else { 1 }))
            .collect(),
    );
    let p = sent.strip(&changed);
    assert_eq!(p.policy.files.len(), 200);
    assert!(p.policy.is_consistent() && p.policy.digest != m.policy.digest);
}

#[test]
fn backoff_grows_caps_and_jitters() {
    let cap = Duration::from_secs(60);
    for n in 1..40 {
        let d = backoff(n, cap);
        let base = Duration::from_millis(500)
            .saturating_mul(1 << (n - 1).min(20))
            .min(cap);
        assert!(d >= base / 2 && d <= base, "n={n} d={d:?} base={base:?}");
    }
    assert!(backoff(30, cap) <= cap);
}
