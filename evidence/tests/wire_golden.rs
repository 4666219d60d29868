//! Golden bytes of the signed wire format. A report and a pulse with non-empty
//! workload and eBPF inventories must serialise to exactly these bytes, parse back to
//! the same values, and their inventory digests (which agents sign and the control
//! plane recomputes) must be exactly these hashes. A refactor of the types must leave
//! every constant here unchanged; a deliberate format change needs a new version.

use ed25519_dalek::pkcs8::EncodePublicKey;
use ed25519_dalek::Signer;
use evidence::report::HexBytes;
use evidence::{
    BpfProgram, CollectorState, Ebpf, EbpfExtra, Envelope, FileMeasurement, Measurements, Platform,
    PolicyMeasurement, PublicKey, Pulse, Report, TeeKind, Tier, Workload, Workloads,
    PULSE_PAYLOAD_TYPE, REPORT_PAYLOAD_TYPE,
};

const WORKLOADS_DIGEST: &str = "1c2c9fd0b3f40cf4e748a30571c2647927b7edc2e7b91d0eacf26eb350c0a742";
const EBPF_DIGEST: &str = "38130f5eeeae9a9020ead7560bb13670d7af16b5baf9f4e3f85e62926c10d7b1";
/// [`EBPF_DIGEST`] of the first program alone (the pulse's list).
const EBPF_FIRST_DIGEST: &str = "abb34dcfc960a477f5845badc97255b492b11a32b78146c0746350554b8e3d85";
/// SHA-256 of nothing: an empty list of either kind.
const EMPTY_LIST_DIGEST: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// `eventlog::workload_set_value` of the workloads: the RTMR3 `workload_set` value.
const WORKLOAD_SET_VALUE: &str = "7ca81af37b62d79c5f1e2fecdc3c01be29cfdbc79814f1289139eacca2020633";
const REPORT_JSON: &str = concat!(
    r#"{"version":1,"agent_id":"node-1","partition":"default","tier":"tdx","issued_at_ns":1700000000123456789,"nonce":"0808080808080808080808080808080808080808080808080808080808080808","sequence":0,"previous_pulse":null,"heartbeat_key":{"alg":"ed25519","spki":"MCowBQYDK2VwAyEA6kpsY+KcUgq+9VB7Ey7F+ZVHdq6+vnuSQh7qaRRG0iw="},"heartbeat_interval_ms":10000,"agent_version":"0.1.0""#,
    r#","measurements":{"agent_binary":"0101010101010101010101010101010101010101010101010101010101010101","policy":{"digest":"974f8048cd41dfeee1b8389c77d1434ba957f6f8e3c624ec190b61de99541ba6","files":["#,
    r#"{"path":"/etc/containers/policy.json","sha256":"0303030303030303030303030303030303030303030303030303030303030303"},"#,
    r#"{"path":"/etc/provenant/agent.toml","sha256":"0202020202020202020202020202020202020202020202020202020202020202"}]}"#,
    r#","platform":{"tee":"tdx","tpm_present":false,"kernel_cmdline_sha256":"0404040404040404040404040404040404040404040404040404040404040404","lockdown":"integrity"}"#,
    r#","workloads":{"state":"ok","digest":"1c2c9fd0b3f40cf4e748a30571c2647927b7edc2e7b91d0eacf26eb350c0a742","items":["#,
    r#"{"name":"web","id":"abababababababababababababababababababababababababababababababab","state":"running","image":"ghcr.io/example/web:1.2","image_id":"sha256:1111111111111111111111111111111111111111111111111111111111111111","image_digest":"sha256:2222222222222222222222222222222222222222222222222222222222222222"},"#,
    r#"{"name":"local-build","id":"cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd","state":"exited","image":"localhost/tool:dev","image_id":"sha256:3333333333333333333333333333333333333333333333333333333333333333","image_digest":null}]}"#,
    r#","ebpf":{"state":"ok","lsm_active":true,"digest":"38130f5eeeae9a9020ead7560bb13670d7af16b5baf9f4e3f85e62926c10d7b1","items":["#,
    r#"{"id":42,"name":"restrict_fs","prog_type":"lsm","tag":"0123456789abcdef","sha256":"4444444444444444444444444444444444444444444444444444444444444444","pinned":["/sys/fs/bpf/provenant/restrict_fs"]},"#,
    r#"{"id":7,"name":"sd_devices","prog_type":"cgroup_device","tag":"fedcba9876543210","sha256":"5555555555555555555555555555555555555555555555555555555555555555","pinned":[]}]}}}"#,
);
/// `Envelope::digest` (SHA-256 of the PAE) of the report: what the first pulse chains to.
const REPORT_ENVELOPE_DIGEST: &str =
    "94522d3a186839475e0ac03beb639d78cd31be48df280bab212a4d836057a1f8";
const PULSE_JSON: &str = concat!(
    r#"{"agent_id":"node-1","partition":"default","sequence":3,"issued_at_ns":1700000030000000000,"nonce":"09090909090909090909090909090909","previous":"0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a""#,
    r#","measurements":{"agent_binary":"0101010101010101010101010101010101010101010101010101010101010101","policy":{"digest":"974f8048cd41dfeee1b8389c77d1434ba957f6f8e3c624ec190b61de99541ba6","files":["#,
    r#"{"path":"/etc/containers/policy.json","sha256":"0303030303030303030303030303030303030303030303030303030303030303"},"#,
    r#"{"path":"/etc/provenant/agent.toml","sha256":"0202020202020202020202020202020202020202020202020202020202020202"}]}"#,
    r#","platform":{"tee":"tdx","tpm_present":false,"kernel_cmdline_sha256":"0404040404040404040404040404040404040404040404040404040404040404","lockdown":"integrity"}"#,
    r#","workloads":{"state":"ok","digest":"1c2c9fd0b3f40cf4e748a30571c2647927b7edc2e7b91d0eacf26eb350c0a742"}"#,
    r#","ebpf":{"state":"ok","lsm_active":null,"digest":"abb34dcfc960a477f5845badc97255b492b11a32b78146c0746350554b8e3d85","items":["#,
    r#"{"id":42,"name":"restrict_fs","prog_type":"lsm","tag":"0123456789abcdef","sha256":"4444444444444444444444444444444444444444444444444444444444444444","pinned":["/sys/fs/bpf/provenant/restrict_fs"]}]}}}"#,
);
const PULSE_ENVELOPE_DIGEST: &str =
    "66bda98fe8d2f3b9e9867aaf520821f10f5683003201b0488476c2764006d1a9";

fn workloads() -> Vec<Workload> {
    vec![
        Workload {
            name: "web".into(),
            id: "ab".repeat(32),
            state: "running".into(),
            image: "ghcr.io/example/web:1.2".into(),
            image_id: format!("sha256:{}", "11".repeat(32)),
            image_digest: Some(format!("sha256:{}", "22".repeat(32))),
        },
        Workload {
            name: "local-build".into(),
            id: "cd".repeat(32),
            state: "exited".into(),
            image: "localhost/tool:dev".into(),
            image_id: format!("sha256:{}", "33".repeat(32)),
            image_digest: None,
        },
    ]
}

fn programs() -> Vec<BpfProgram> {
    vec![
        BpfProgram {
            id: 42,
            name: "restrict_fs".into(),
            prog_type: "lsm".into(),
            tag: "0123456789abcdef".into(),
            sha256: HexBytes([0x44; 32]),
            pinned: vec!["/sys/fs/bpf/provenant/restrict_fs".into()],
        },
        BpfProgram {
            id: 7,
            name: "sd_devices".into(),
            prog_type: "cgroup_device".into(),
            tag: "fedcba9876543210".into(),
            sha256: HexBytes([0x55; 32]),
            pinned: vec![],
        },
    ]
}

fn base_measurements() -> Measurements {
    Measurements {
        agent_binary: HexBytes([1; 32]),
        policy: PolicyMeasurement::from_files(vec![
            FileMeasurement {
                path: "/etc/provenant/agent.toml".into(),
                sha256: HexBytes([2; 32]),
            },
            FileMeasurement {
                path: "/etc/containers/policy.json".into(),
                sha256: HexBytes([3; 32]),
            },
        ]),
        platform: Platform {
            tee: TeeKind::Tdx,
            tpm_present: false,
            kernel_cmdline_sha256: Some(HexBytes([4; 32])),
            lockdown: Some("integrity".into()),
        },
        workloads: None,
        ebpf: None,
    }
}

fn key() -> (ed25519_dalek::SigningKey, PublicKey) {
    let sk = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let der = sk.verifying_key().to_public_key_der().unwrap();
    (sk, PublicKey::from_spki_der(der.as_bytes()).unwrap())
}

/// A report with both inventories complete.
fn report() -> Report {
    let (w, p) = (workloads(), programs());
    let mut m = base_measurements();
    m.workloads = Some(Workloads {
        state: CollectorState::Ok,
        reason: None,
        extra: (),
        digest: Some(Workloads::digest_of(&w)),
        items: Some(w),
    });
    m.ebpf = Some(Ebpf {
        state: CollectorState::Ok,
        reason: None,
        extra: EbpfExtra {
            lsm_active: Some(true),
        },
        digest: Some(Ebpf::digest_of(&p)),
        items: Some(p),
    });
    Report {
        version: 1,
        agent_id: "node-1".into(),
        partition: "default".into(),
        tier: Tier::Tdx,
        issued_at_ns: 1_700_000_000_123_456_789,
        nonce: HexBytes([8; 32]),
        sequence: 0,
        previous_pulse: None,
        heartbeat_key: key().1,
        heartbeat_interval_ms: 10_000,
        agent_version: "0.1.0".into(),
        measurements: m,
    }
}

/// A pulse whose workload list is unchanged (digest only), whose eBPF list changed
/// (carried in full), plus the shape of a collector that could not look.
fn pulse() -> Pulse {
    let (w, p) = (workloads(), programs());
    let mut m = base_measurements();
    m.workloads = Some(Workloads {
        state: CollectorState::Ok,
        reason: None,
        extra: (),
        digest: Some(Workloads::digest_of(&w)),
        items: None,
    });
    m.ebpf = Some(Ebpf {
        state: CollectorState::Ok,
        reason: None,
        extra: EbpfExtra { lsm_active: None },
        digest: Some(Ebpf::digest_of(&p[..1])),
        items: Some(p[..1].to_vec()),
    });
    Pulse {
        version: 1,
        agent_id: "node-1".into(),
        partition: "default".into(),
        sequence: 3,
        issued_at_ns: 1_700_000_030_000_000_000,
        nonce: HexBytes([9; 16]),
        previous: HexBytes([10; 32]),
        measurements: Some(m),
        measurements_digest: None,
        health: None,
    }
}

fn envelope(payload_type: &str, json: &[u8]) -> Envelope {
    let (sk, _) = key();
    Envelope::sign::<()>(payload_type, json.to_vec(), "", |m| {
        Ok(sk.sign(m).to_bytes().to_vec())
    })
    .unwrap()
}

#[test]
fn inventory_digests_are_pinned() {
    assert_eq!(
        Workloads::digest_of(&workloads()).to_hex(),
        WORKLOADS_DIGEST
    );
    assert_eq!(Ebpf::digest_of(&programs()).to_hex(), EBPF_DIGEST);
    assert_eq!(
        Ebpf::digest_of(&programs()[..1]).to_hex(),
        EBPF_FIRST_DIGEST
    );
    // Order-independent.
    let (mut w, mut p) = (workloads(), programs());
    w.reverse();
    p.reverse();
    assert_eq!(Workloads::digest_of(&w).to_hex(), WORKLOADS_DIGEST);
    assert_eq!(Ebpf::digest_of(&p).to_hex(), EBPF_DIGEST);
    assert_eq!(Workloads::digest_of(&[]).to_hex(), EMPTY_LIST_DIGEST);
    assert_eq!(Ebpf::digest_of(&[]).to_hex(), EMPTY_LIST_DIGEST);
    assert_eq!(
        evidence::eventlog::workload_set_value(&workloads()),
        WORKLOAD_SET_VALUE
    );
}

#[test]
fn report_bytes_are_pinned() {
    let json = serde_json::to_vec(&report()).unwrap();
    assert_eq!(String::from_utf8(json.clone()).unwrap(), REPORT_JSON);
    let back: Report = serde_json::from_str(REPORT_JSON).unwrap();
    assert_eq!(back, report());
    let env = envelope(REPORT_PAYLOAD_TYPE, &json);
    assert_eq!(hex::encode(env.digest()), REPORT_ENVELOPE_DIGEST);
    let v = env.open::<Report>(&key().1).unwrap();
    assert_eq!(v.value(), &report());
}

#[test]
fn pulse_bytes_are_pinned() {
    let json = serde_json::to_vec(&pulse()).unwrap();
    assert_eq!(String::from_utf8(json.clone()).unwrap(), PULSE_JSON);
    let back: Pulse = serde_json::from_str(PULSE_JSON).unwrap();
    assert_eq!(back, pulse());
    let env = envelope(PULSE_PAYLOAD_TYPE, &json);
    assert_eq!(hex::encode(env.digest()), PULSE_ENVELOPE_DIGEST);
    let v = env.open::<Pulse>(&key().1).unwrap();
    assert_eq!(v.value(), &pulse());
}

/// A pulse from an agent before the version moved into the payload type alone
/// (`"version":1` in the JSON) is still read, and one saying any other version is
/// refused, so a control plane upgraded first keeps its fleet pulsing.
#[test]
fn a_pulse_that_names_its_version_is_read_and_only_version_1_passes() {
    let old = PULSE_JSON.replacen('{', r#"{"version":1,"#, 1);
    let back: Pulse = serde_json::from_str(&old).unwrap();
    assert_eq!(back, pulse());
    let env = envelope(PULSE_PAYLOAD_TYPE, old.as_bytes());
    assert_eq!(env.open::<Pulse>(&key().1).unwrap().value(), &pulse());

    let v2 = PULSE_JSON.replacen('{', r#"{"version":2,"#, 1);
    let env = envelope(PULSE_PAYLOAD_TYPE, v2.as_bytes());
    assert_eq!(
        env.open::<Pulse>(&key().1).unwrap_err().kind(),
        "UnsupportedVersion"
    );
}

/// What the decoder accepts for an inventory, beyond what the agent produces: fields
/// in any order, optional fields absent, unknown fields ignored, and a collector that
/// could not look (no digest, no items).
#[test]
fn inventory_decoding_is_pinned() {
    let e: Ebpf = serde_json::from_str(
        r#"{"items":[],"digest":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","future":{"x":[1,2]},"state":"ok"}"#,
    )
    .unwrap();
    assert_eq!(e.state, CollectorState::Ok);
    assert_eq!(e.extra.lsm_active, None);
    assert_eq!(e.reason, None);
    assert_eq!(e.items, Some(vec![]));
    assert_eq!(e.digest.unwrap().to_hex(), EMPTY_LIST_DIGEST);

    let e: Ebpf =
        serde_json::from_str(r#"{"state":"unavailable","reason":"no CAP_BPF","lsm_active":false}"#)
            .unwrap();
    assert_eq!(e.extra.lsm_active, Some(false));
    assert_eq!(
        serde_json::to_string(&e).unwrap(),
        r#"{"state":"unavailable","reason":"no CAP_BPF","lsm_active":false}"#
    );
    let e: Ebpf = serde_json::from_str(r#"{"state":"unknown"}"#).unwrap();
    assert_eq!(
        serde_json::to_string(&e).unwrap(),
        r#"{"state":"unknown","lsm_active":null}"#
    );

    // A workloads list never carries `lsm_active`; one that does is not an error.
    let w: Workloads =
        serde_json::from_str(r#"{"state":"unknown","reason":"podman down","lsm_active":"x"}"#)
            .unwrap();
    assert_eq!(
        serde_json::to_string(&w).unwrap(),
        r#"{"state":"unknown","reason":"podman down"}"#
    );

    // Refused: a missing state, a wrong type, a duplicate field, a bad digest.
    for bad in [
        r#"{"reason":"x"}"#,
        r#"{"state":"ok","lsm_active":"yes"}"#,
        r#"{"state":"ok","state":"ok"}"#,
        r#"{"state":"ok","lsm_active":true,"lsm_active":true}"#,
        r#"{"state":"ok","digest":"00"}"#,
        r#"{"state":"maybe"}"#,
    ] {
        assert!(serde_json::from_str::<Ebpf>(bad).is_err(), "{bad}");
    }
    assert!(serde_json::from_str::<Workloads>(r#"{"state":"ok","items":[{}]}"#).is_err());
}

/// The field each out-of-bounds inventory value is refused under (part of the
/// control plane's error answer).
#[test]
fn inventory_validation_fields_are_pinned() {
    use evidence::dsse::Payload;
    // `validate` directly: a list at its count limit is larger than a payload may be.
    let refused = |r: Report| -> &'static str {
        match r.validate().unwrap_err() {
            evidence::EvidenceError::InvalidField { field, .. } => field,
            e => panic!("{e}"),
        }
    };
    let with = |f: &dyn Fn(&mut Measurements)| {
        let mut r = report();
        f(&mut r.measurements);
        r
    };
    let w = |m: &mut Measurements| m.workloads.as_mut().unwrap().items.as_mut().unwrap()[0].clone();
    let cases: Vec<(Report, &str)> = vec![
        (
            with(&|m| m.workloads.as_mut().unwrap().reason = Some("a\nb".into())),
            "measurements.workloads.reason",
        ),
        (
            with(&|m| {
                let one = w(m);
                m.workloads.as_mut().unwrap().items = Some(vec![one; 1025]);
            }),
            "measurements.workloads.items",
        ),
        (
            with(&|m| {
                m.workloads.as_mut().unwrap().items.as_mut().unwrap()[1].name = "\u{7}".into()
            }),
            "measurements.workloads.name",
        ),
        (
            with(&|m| {
                m.workloads.as_mut().unwrap().items.as_mut().unwrap()[1].image = "i".repeat(1025)
            }),
            "measurements.workloads.image",
        ),
        (
            with(&|m| {
                m.workloads.as_mut().unwrap().items.as_mut().unwrap()[0].image_digest =
                    Some("d".repeat(257))
            }),
            "measurements.workloads.image_digest",
        ),
        (
            with(&|m| m.ebpf.as_mut().unwrap().reason = Some("\u{0}".into())),
            "measurements.ebpf.reason",
        ),
        (
            with(&|m| {
                let p = m.ebpf.as_mut().unwrap().items.as_ref().unwrap()[0].clone();
                m.ebpf.as_mut().unwrap().items = Some(vec![p; 4097]);
            }),
            "measurements.ebpf.items",
        ),
        (
            with(&|m| m.ebpf.as_mut().unwrap().items.as_mut().unwrap()[0].tag = "t".repeat(257)),
            "measurements.ebpf.tag",
        ),
        (
            with(&|m| {
                m.ebpf.as_mut().unwrap().items.as_mut().unwrap()[0].pinned = vec!["p".into(); 17]
            }),
            "measurements.ebpf.pinned",
        ),
        (
            with(&|m| {
                m.ebpf.as_mut().unwrap().items.as_mut().unwrap()[1].pinned = vec!["\n".into()]
            }),
            "measurements.ebpf.pinned",
        ),
        // Workloads are checked before eBPF.
        (
            with(&|m| {
                m.workloads.as_mut().unwrap().reason = Some("\n".into());
                m.ebpf.as_mut().unwrap().reason = Some("\n".into());
            }),
            "measurements.workloads.reason",
        ),
    ];
    for (r, field) in cases {
        assert_eq!(refused(r), field);
    }
}

/// The policy file list's digest, pinned like the inventory digests.
const POLICY_DIGEST: &str = "974f8048cd41dfeee1b8389c77d1434ba957f6f8e3c624ec190b61de99541ba6";
/// A pulse whose measurements changed but whose lists did not: every list by digest
/// only (the policy file list too), so its size does not grow with the number of
/// watched files or containers.
const LISTS_BY_DIGEST_PULSE_JSON: &str = concat!(
    r#"{"agent_id":"node-1","partition":"default","sequence":4,"issued_at_ns":1700000040000000000,"nonce":"0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b","previous":"0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c""#,
    r#","measurements":{"agent_binary":"0101010101010101010101010101010101010101010101010101010101010101","policy":{"digest":"974f8048cd41dfeee1b8389c77d1434ba957f6f8e3c624ec190b61de99541ba6"}"#,
    r#","platform":{"tee":"tdx","tpm_present":false,"kernel_cmdline_sha256":"0404040404040404040404040404040404040404040404040404040404040404","lockdown":"integrity"}"#,
    r#","workloads":{"state":"ok","digest":"1c2c9fd0b3f40cf4e748a30571c2647927b7edc2e7b91d0eacf26eb350c0a742"}"#,
    r#","ebpf":{"state":"ok","lsm_active":true,"digest":"38130f5eeeae9a9020ead7560bb13670d7af16b5baf9f4e3f85e62926c10d7b1"}}}"#,
);
const LISTS_BY_DIGEST_PULSE_ENVELOPE_DIGEST: &str =
    "1013b2882cb5339eba59381a848f2916e8e840a3f0adfcc075ce167a424751b5";

fn lists_by_digest_pulse() -> Pulse {
    let mut m = base_measurements();
    m.policy.files.clear();
    m.workloads = Some(Workloads {
        state: CollectorState::Ok,
        reason: None,
        extra: (),
        digest: Some(Workloads::digest_of(&workloads())),
        items: None,
    });
    m.ebpf = Some(Ebpf {
        state: CollectorState::Ok,
        reason: None,
        extra: EbpfExtra {
            lsm_active: Some(true),
        },
        digest: Some(Ebpf::digest_of(&programs())),
        items: None,
    });
    Pulse {
        version: 1,
        agent_id: "node-1".into(),
        partition: "default".into(),
        sequence: 4,
        issued_at_ns: 1_700_000_040_000_000_000,
        nonce: HexBytes([11; 16]),
        previous: HexBytes([12; 32]),
        measurements: Some(m),
        measurements_digest: None,
        health: None,
    }
}

#[test]
fn steady_state_pulse_bytes_are_pinned() {
    let full = base_measurements().policy;
    assert_eq!(full.digest.to_hex(), POLICY_DIGEST);
    assert!(full.is_consistent() && !full.omitted());
    // Order-independent, like the inventories.
    let mut files = full.files.clone();
    files.reverse();
    assert_eq!(PolicyMeasurement::digest_of(&files).to_hex(), POLICY_DIGEST);
    // No files under the empty list's digest is an empty list, not an omission.
    let empty = PolicyMeasurement::from_files(vec![]);
    assert_eq!(empty.digest.to_hex(), EMPTY_LIST_DIGEST);
    assert!(!empty.omitted() && empty.is_consistent());

    let p = lists_by_digest_pulse();
    assert!(p.measurements.as_ref().unwrap().policy.omitted());
    let json = serde_json::to_vec(&p).unwrap();
    assert_eq!(
        String::from_utf8(json.clone()).unwrap(),
        LISTS_BY_DIGEST_PULSE_JSON
    );
    let back: Pulse = serde_json::from_str(LISTS_BY_DIGEST_PULSE_JSON).unwrap();
    assert_eq!(back, p);
    let env = envelope(PULSE_PAYLOAD_TYPE, &json);
    assert_eq!(
        hex::encode(env.digest()),
        LISTS_BY_DIGEST_PULSE_ENVELOPE_DIGEST
    );
    assert_eq!(env.open::<Pulse>(&key().1).unwrap().value(), &p);

    // Nothing changed: the measurements' digest alone. It names the measurements
    // with their lists reduced to digests, so the full report's measurements, the
    // lists-by-digest pulse's and the steady one's all have the same digest.
    let full = report().measurements;
    let d = full.digest().unwrap();
    assert_eq!(d.to_hex(), MEASUREMENTS_DIGEST);
    let mut by_digest = lists_by_digest_pulse().measurements.unwrap();
    by_digest.ebpf = full.ebpf.clone().map(|mut e| {
        e.items = None;
        e
    });
    assert_eq!(by_digest.digest().unwrap(), d);
    let mut changed = full.clone();
    changed.platform.lockdown = Some("none".into());
    assert_ne!(changed.digest().unwrap(), d);
    let mut p = lists_by_digest_pulse();
    p.measurements = None;
    p.measurements_digest = Some(d);
    let json = serde_json::to_vec(&p).unwrap();
    assert_eq!(String::from_utf8(json.clone()).unwrap(), STEADY_PULSE_JSON);
    let back: Pulse = serde_json::from_str(STEADY_PULSE_JSON).unwrap();
    assert_eq!(back, p);
    let env = envelope(PULSE_PAYLOAD_TYPE, &json);
    assert_eq!(hex::encode(env.digest()), STEADY_PULSE_ENVELOPE_DIGEST);
    assert_eq!(env.open::<Pulse>(&key().1).unwrap().value(), &p);
}

/// [`Measurements::digest`] of the report's measurements.
const MEASUREMENTS_DIGEST: &str =
    "f9ddc3c88d3d9a8156bc60a2f724e2da5a7fc8a9f2093e8552138906e4c0bfc0";
/// A steady-state pulse: nothing changed, so the measurements' digest alone.
const STEADY_PULSE_JSON: &str = concat!(
    r#"{"agent_id":"node-1","partition":"default","sequence":4,"issued_at_ns":1700000040000000000,"nonce":"0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b","previous":"0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c""#,
    r#","measurements_digest":"f9ddc3c88d3d9a8156bc60a2f724e2da5a7fc8a9f2093e8552138906e4c0bfc0"}"#,
);
const STEADY_PULSE_ENVELOPE_DIGEST: &str =
    "84a5d4eb4dad838e46bc3a9f551ae8e7539368e83158da99ebebc5a9377092ea";
