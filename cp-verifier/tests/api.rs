//! The control plane's API against a real server on loopback, a real SQLite store
//! and real signatures; only the clock is pinned, so time-based checks are exact.

pub(crate) mod harness;
use harness::*;

use std::sync::Arc;
use std::time::Duration;

use cp_verifier::config::EnrolledKey;
use evidence::api::{RegisterEvidence, RegisterRequest};
use evidence::report::HexBytes;
use evidence::{Envelope, Pulse, Report, Tier, PULSE_PAYLOAD_TYPE, REPORT_PAYLOAD_TYPE};
use guest_agent::agent::sign_payload;
use guest_agent::signer::KeySigner;

#[tokio::test]
async fn register_then_pulse_software_tier_is_yellow() {
    let mut a = TestAgent::new("node-1");
    let cp = start(|c| c.enrollment.keys.push(a.enroll())).await;
    let (s, v) = cp.register(&mut a, measurements(1, 1)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["tier"], "software");
    assert_eq!(v["verdict"]["status"], "warn");
    for _ in 0..3 {
        cp.clock.advance(Duration::from_secs(1));
        let env = a.next_pulse(cp.now(), measurements(1, 1));
        let (s, v) = cp.pulse(&env).await;
        assert_eq!(s, 200, "{v}");
        a.accepted(&env);
        assert_eq!(v["sequence"], a.seq);
    }
    let (s, v) = cp.get("/api/v1/agents/node-1").await;
    assert_eq!(s, 200);
    assert_eq!(v["tier"], "software");
    assert_eq!(v["badge"], "yellow");
    assert_eq!(v["sequence"], 3);
    let (_, list) = cp.get("/api/v1/agents").await;
    assert_eq!(list["agents"].as_array().unwrap().len(), 1);
    // The audit log has the registration.
    let audit = std::fs::read_to_string(cp.dir.path().join("audit.jsonl")).unwrap();
    assert!(
        audit.lines().any(|l| l.contains("\"Registered\"")),
        "{audit}"
    );
}

#[tokio::test]
async fn enrollment_binds_key_to_agent_id() {
    let mut enrolled = TestAgent::new("node-1");
    let cp = start(|c| c.enrollment.keys.push(enrolled.enroll())).await;

    let mut stranger = TestAgent::new("node-1");
    let (s, v) = cp.register(&mut stranger, measurements(1, 1)).await;
    assert_eq!((s, kind(&v)), (403, "Unenrolled"), "{v}");

    // The enrolled key cannot speak for another agent id.
    let mut other_id = TestAgent::new("node-2");
    other_id.signer = KeySigner::from_pem(&enrolled.signer.to_pkcs8_pem().unwrap()).unwrap();
    let (s, v) = cp.register(&mut other_id, measurements(1, 1)).await;
    assert_eq!((s, kind(&v)), (403, "Unenrolled"), "{v}");
    assert_eq!(cp.alerts("Unenrolled").await.len(), 2);

    let (s, _) = cp.register(&mut enrolled, measurements(1, 1)).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn challenges_are_single_use_and_expire() {
    let a = TestAgent::new("node-1");
    let cp = start(|c| c.enrollment.keys.push(a.enroll())).await;
    let nonce = cp.challenge().await;
    let env = a.report(nonce, cp.now(), measurements(1, 1));
    assert_eq!(cp.register_env(&env).await.0, 200);
    let (s, v) = cp.register_env(&env).await;
    assert_eq!((s, kind(&v)), (403, "BadChallenge"), "{v}");

    let made_up = a.report(HexBytes([9; 32]), cp.now(), measurements(1, 1));
    assert_eq!(kind(&cp.register_env(&made_up).await.1), "BadChallenge");

    let nonce = cp.challenge().await;
    cp.clock.advance(Duration::from_secs(121));
    let env = a.report(nonce, cp.now(), measurements(1, 1));
    let (s, v) = cp.register_env(&env).await;
    assert_eq!((s, kind(&v)), (403, "BadChallenge"), "{v}");
}

#[tokio::test]
async fn refused_tiers_and_intervals() {
    let a = TestAgent::new("node-1");
    let cp = start(|c| {
        c.enrollment.keys.push(a.enroll());
        c.policy.allow_software_tier = false;
    })
    .await;
    let nonce = cp.challenge().await;
    let env = a.report(nonce, cp.now(), measurements(1, 1));
    let (s, v) = cp.register_env(&env).await;
    assert_eq!((s, kind(&v)), (403, "TierNotAllowed"), "{v}");

    // A TDX-tier claim without its quote is refused, never waved through; so is a
    // tier this control plane cannot verify at all.
    let cp = start(|c| c.enrollment.keys.push(a.enroll())).await;
    let nonce = cp.challenge().await;
    let mut r: Report = a
        .report(nonce, cp.now(), measurements(1, 1))
        .peek()
        .unwrap();
    r.tier = Tier::Tdx;
    let env = sign_payload(&a.signer, REPORT_PAYLOAD_TYPE, &r).unwrap();
    let (s, v) = cp.register_env(&env).await;
    assert_eq!((s, kind(&v)), (403, "MissingQuote"), "{v}");
    r.tier = Tier::Tpm;
    let env = sign_payload(&a.signer, REPORT_PAYLOAD_TYPE, &r).unwrap();
    let (s, v) = cp.register_env(&env).await;
    assert_eq!((s, kind(&v)), (403, "TierNotAllowed"), "{v}");

    r.tier = Tier::Software;
    r.heartbeat_interval_ms = 31_000;
    // The refused TDX claim used up its challenge (taken before any check that writes).
    r.nonce = cp.challenge().await;
    let env = sign_payload(&a.signer, REPORT_PAYLOAD_TYPE, &r).unwrap();
    let (s, v) = cp.register_env(&env).await;
    assert_eq!((s, kind(&v)), (403, "IntervalTooLong"), "{v}");
}

/// Each malformed or hostile request gets a typed 4xx, and none of them disturbs the
/// agent's stored state: the next valid pulse is accepted.
#[tokio::test]
async fn bad_input_gets_typed_errors_and_loses_nothing() {
    let mut a = TestAgent::new("node-1");
    let cp = start(|c| c.enrollment.keys.push(a.enroll())).await;
    assert_eq!(cp.register(&mut a, measurements(1, 1)).await.0, 200);
    let good = a.next_pulse(cp.now(), measurements(1, 1));
    assert_eq!(cp.pulse(&good).await.0, 200);
    a.accepted(&good);

    let mut cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("not json", b"{not json".to_vec(), 400, "MalformedJson"),
        ("empty", Vec::new(), 400, "MalformedJson"),
        ("oversized", vec![b' '; 200 * 1024], 413, "TooLarge"),
        (
            "bad base64",
            br#"{"payload":"%%%","payloadType":"application/vnd.provenant.pulse.v1+json","signatures":[{"sig":"AA=="}]}"#.to_vec(),
            400,
            "BadBase64",
        ),
        (
            "no signatures",
            br#"{"payload":"e30=","payloadType":"application/vnd.provenant.pulse.v1+json","signatures":[]}"#.to_vec(),
            400,
            "NoSignature",
        ),
    ];
    // Wrong payloadType: a report envelope sent as a pulse.
    let nonce = cp.challenge().await;
    cases.push((
        "report as pulse",
        a.report(nonce, cp.now(), measurements(1, 1)).to_json(),
        400,
        "WrongPayloadType",
    ));
    // Forged signature: valid pulse, signature bytes flipped.
    let mut forged = a.next_pulse(cp.now(), measurements(1, 1));
    forged.signatures[0].sig[5] ^= 0x40;
    cases.push(("forged", forged.to_json(), 403, "BadSignature"));
    // Signed by another key.
    let mallory = TestAgent::new("node-1");
    let m = mallory.pulse_at(a.seq + 1, a.head, cp.now(), measurements(1, 1));
    cases.push(("wrong key", m.to_json(), 403, "BadSignature"));
    // Replay of the accepted pulse.
    cases.push(("replay", good.to_json(), 409, "Replay"));
    // Skewed clock, ahead and behind.
    cases.push((
        "ahead",
        a.next_pulse(cp.now() + 31 * SEC, measurements(1, 1))
            .to_json(),
        422,
        "ClockDesync",
    ));
    cases.push((
        "behind",
        a.next_pulse(cp.now() - 31 * SEC, measurements(1, 1))
            .to_json(),
        422,
        "ClockDesync",
    ));
    // Out of chain.
    cases.push((
        "gap",
        a.pulse_at(a.seq + 2, a.head, cp.now(), measurements(1, 1))
            .to_json(),
        409,
        "Replay",
    ));
    cases.push((
        "fork",
        a.pulse_at(a.seq + 1, HexBytes([7; 32]), cp.now(), measurements(1, 1))
            .to_json(),
        409,
        "Replay",
    ));
    // Unknown agent.
    let ghost = TestAgent::new("ghost");
    cases.push((
        "unknown",
        ghost.next_pulse(cp.now(), measurements(1, 1)).to_json(),
        404,
        "UnknownAgent",
    ));
    // Invalid fields inside a well-signed payload.
    let mut p: Pulse = a.next_pulse(cp.now(), measurements(1, 1)).peek().unwrap();
    p.agent_id = "../etc".into();
    let bad_id = Envelope::sign::<()>(
        PULSE_PAYLOAD_TYPE,
        serde_json::to_vec(&p).unwrap(),
        "",
        |_| Ok(vec![0; 64]),
    )
    .unwrap();
    cases.push(("bad id", bad_id.to_json(), 400, "InvalidField"));

    for (name, body, status, k) in cases {
        let (s, v) = cp.post_raw("/api/v1/heartbeat", body).await;
        assert_eq!((s, kind(&v)), (status, k), "case {name}: {v}");
        assert!(
            v["error"]["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "case {name}"
        );
    }
    for (path, body) in [
        ("/api/v1/register", b"[]".to_vec()),
        ("/api/v1/register", vec![b'x'; 600 * 1024]),
    ] {
        let (s, v) = cp.post_raw(path, body).await;
        assert!(s == 400 || s == 413, "{path}: {s} {v}");
        assert!(v["error"]["kind"].is_string());
    }
    let (s, v) = cp.get("/api/v1/nope").await;
    assert_eq!((s, kind(&v)), (404, "NotFound"));

    // Nothing was lost: the chain continues from the last accepted pulse.
    let env = a.next_pulse(cp.now(), measurements(1, 1));
    let (s, v) = cp.pulse(&env).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["sequence"], 2);
    assert!(!cp.alerts("Replay").await.is_empty());
    assert!(!cp.alerts("ClockDesync").await.is_empty());
    assert!(!cp.alerts("BadSignature").await.is_empty());
    // The refusals show in the verdict while they are recent.
    let (_, v) = cp.get("/api/v1/agents/node-1").await;
    let codes: Vec<&str> = v["verdict"]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap())
        .collect();
    assert!(
        codes.contains(&"ReplayDetected") && codes.contains(&"ClockDesync"),
        "{codes:?}"
    );
}

#[tokio::test]
async fn binary_change_is_severity_1_until_announced() {
    let mut a = TestAgent::new("node-1");
    let cp = start(|c| c.enrollment.keys.push(a.enroll())).await;
    assert_eq!(cp.register(&mut a, measurements(1, 1)).await.0, 200);

    let env = a.next_pulse(cp.now(), measurements(2, 1));
    let (s, v) = cp.pulse(&env).await;
    assert_eq!(s, 200);
    a.accepted(&env);
    assert_eq!(v["verdict"]["status"], "fail");
    let alerts = cp.alerts("BinaryChanged").await;
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["severity"], 1);
    // Same change again: no second alert, still failing.
    let env = a.next_pulse(cp.now(), measurements(2, 1));
    assert_eq!(cp.pulse(&env).await.1["verdict"]["status"], "fail");
    a.accepted(&env);
    assert_eq!(cp.alerts("BinaryChanged").await.len(), 1);

    // Operator endpoint needs the token.
    let url = format!("{}/api/v1/agents/node-1/expect", cp.base);
    let body = serde_json::json!({"agent_binary": hex::encode([3u8; 32])});
    let r = cp.http.post(&url).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = cp
        .http
        .post(&url)
        .bearer_auth("wrong-token-wrong-token")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = cp
        .http
        .post(&url)
        .bearer_auth("0123456789abcdef-operator")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // The announced binary arrives: it becomes last-known-good.
    let env = a.next_pulse(cp.now(), measurements(3, 1));
    let (_, v) = cp.pulse(&env).await;
    a.accepted(&env);
    assert_eq!(v["verdict"]["status"], "warn", "{v}");
    assert_eq!(cp.alerts("ExpectedUpdateApplied").await.len(), 1);
    let (_, v) = cp.get("/api/v1/agents/node-1").await;
    assert_eq!(v["last_known_good"]["agent_binary"], hex::encode([3u8; 32]));
}

#[tokio::test]
async fn policy_change_alerts_and_reregistration_does_not_launder_it() {
    let mut a = TestAgent::new("node-1");
    let cp = start(|c| c.enrollment.keys.push(a.enroll())).await;
    assert_eq!(cp.register(&mut a, measurements(1, 1)).await.0, 200);
    let env = a.next_pulse(cp.now(), measurements(1, 2));
    assert_eq!(cp.pulse(&env).await.0, 200);
    let alerts = cp.alerts("PolicyChanged").await;
    assert_eq!(alerts.len(), 1);
    assert!(alerts[0]["detail"]
        .as_str()
        .unwrap()
        .contains("/etc/provenant/policy.toml"));
    // Registering again with the changed policy keeps the old baseline.
    let (s, v) = cp.register(&mut a, measurements(1, 2)).await;
    assert_eq!(s, 200);
    assert_eq!(v["verdict"]["status"], "fail", "{v}");
}

#[tokio::test]
async fn silent_agent_turns_blinded_and_recovers() {
    let mut a = TestAgent::new("node-1");
    let cp = start(|c| c.enrollment.keys.push(a.enroll())).await;
    assert_eq!(cp.register(&mut a, measurements(1, 1)).await.0, 200);
    // Interval 1 s, 3 missed: at 3 s still fine, past it blinded.
    cp.clock.advance(Duration::from_millis(3000));
    assert_eq!(cp.cp.sweep().await.unwrap(), 0);
    cp.clock.advance(Duration::from_millis(1));
    assert_eq!(cp.cp.sweep().await.unwrap(), 1);
    assert_eq!(
        cp.cp.sweep().await.unwrap(),
        0,
        "blinded once, not every sweep"
    );
    let (_, v) = cp.get("/api/v1/agents/node-1").await;
    assert_eq!(v["state"], "blinded");
    assert_eq!(v["badge"], "red");
    let b = cp.alerts("Blinded").await;
    assert_eq!(b.len(), 1);
    assert_eq!(b[0]["severity"], 1);

    let env = a.next_pulse(cp.now(), measurements(1, 1));
    assert_eq!(cp.pulse(&env).await.0, 200);
    assert_eq!(cp.alerts("Recovered").await.len(), 1);
    let (_, v) = cp.get("/api/v1/agents/node-1").await;
    assert_eq!(v["state"], "attested-with-warnings");
}

#[tokio::test]
async fn state_survives_a_restart() {
    let mut a = TestAgent::new("node-1");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let enrolled = a.enroll();
    let cp = start_with(dir, None, |c| c.enrollment.keys.push(enrolled.clone())).await;
    assert_eq!(cp.register(&mut a, measurements(1, 1)).await.0, 200);
    let env = a.next_pulse(cp.now(), measurements(1, 1));
    assert_eq!(cp.pulse(&env).await.0, 200);
    a.accepted(&env);
    let Cp { dir, .. } = cp;

    // A second control plane on the same database continues the chain and still
    // refuses the old pulse.
    let cp2 = start_with(dir, None, |c| {
        c.enrollment.keys.push(enrolled);
        c.data_dir = path.join("db");
    })
    .await;
    assert_eq!(cp2.pulse(&env).await.0, 409);
    let env = a.next_pulse(cp2.now(), measurements(1, 1));
    let (s, v) = cp2.pulse(&env).await;
    assert_eq!(s, 200, "{v}");
}

#[tokio::test]
async fn concurrent_agents_are_group_committed_correctly() {
    let mut agents: Vec<TestAgent> = (0..20)
        .map(|i| TestAgent::new(&format!("node-{i}")))
        .collect();
    let keys: Vec<EnrolledKey> = agents.iter().map(|a| a.enroll()).collect();
    let cp = Arc::new(start(|c| c.enrollment.keys = keys).await);
    for a in agents.iter_mut() {
        assert_eq!(cp.register(a, measurements(1, 1)).await.0, 200);
    }
    for _round in 0..5 {
        let mut tasks = Vec::new();
        for a in agents.iter() {
            let env = a.next_pulse(cp.now(), measurements(1, 1));
            let cp = cp.clone();
            // Each pulse sent twice at once: exactly one may win.
            tasks.push(tokio::spawn(async move {
                let e2 = env.clone();
                let (r1, r2) = tokio::join!(cp.pulse(&env), cp.pulse(&e2));
                (env, r1.0, r2.0)
            }));
        }
        for (a, t) in agents.iter_mut().zip(tasks) {
            let (env, s1, s2) = t.await.unwrap();
            let mut s = [s1, s2];
            s.sort();
            assert_eq!(s, [200, 409]);
            a.accepted(&env);
        }
    }
    let (_, v) = cp.get("/api/v1/agents").await;
    for a in v["agents"].as_array().unwrap() {
        assert_eq!(a["sequence"], 5);
    }
}

#[tokio::test]
async fn x509_enrollment_with_a_ca() {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    };
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Provenant test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();

    let leaf_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let leaf_for = |names: Vec<String>, days: i64| {
        let mut p = CertificateParams::new(names).unwrap();
        p.distinguished_name.push(DnType::CommonName, "node-x509");
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let now =
            time::OffsetDateTime::from_unix_timestamp(i64::try_from(T0 / SEC).unwrap()).unwrap();
        p.not_before = now - time::Duration::days(1);
        p.not_after = now + time::Duration::days(days);
        p.signed_by(&leaf_key, &ca, &ca_key).unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, ca.pem()).unwrap();
    let cp = start(|c| c.enrollment.ca_file = Some(ca_path)).await;

    let mut a = TestAgent::new("node-x509");
    a.signer = KeySigner::from_pem(&leaf_key.serialize_pem()).unwrap();
    let try_chain = |chain: Vec<String>, id: &str| {
        let mut r = RegisterRequest {
            envelope: a.report(HexBytes([0; 32]), 0, measurements(1, 1)),
            evidence: RegisterEvidence {
                certificate_chain: chain,
                ..RegisterEvidence::default()
            },
        };
        let id = id.to_string();
        let a = &a;
        let cp = &cp;
        async move {
            let nonce = cp.challenge().await;
            let mut rep: Report = r.envelope.peek().unwrap();
            rep.nonce = nonce;
            rep.issued_at_ns = cp.now();
            rep.agent_id = id;
            r.envelope = sign_payload(&a.signer, REPORT_PAYLOAD_TYPE, &rep).unwrap();
            cp.post_raw("/api/v1/register", serde_json::to_vec(&r).unwrap())
                .await
        }
    };
    // No chain: unenrolled.
    let (s, v) = try_chain(vec![], "node-x509").await;
    assert_eq!((s, kind(&v)), (403, "Unenrolled"), "{v}");
    // Valid chain naming the agent by CN.
    let (s, v) = try_chain(vec![leaf_for(vec![], 30).pem()], "node-x509").await;
    assert_eq!(s, 200, "{v}");
    // By DNS SAN.
    let (s, v) = try_chain(
        vec![leaf_for(vec!["node-san".into()], 30).pem()],
        "node-san",
    )
    .await;
    assert_eq!(s, 200, "{v}");
    // A name the certificate does not carry.
    let (s, v) = try_chain(vec![leaf_for(vec![], 30).pem()], "node-other").await;
    assert_eq!((s, kind(&v)), (403, "Unenrolled"), "{v}");
    // Expired at `now`.
    cp.clock.advance(Duration::from_secs(3 * 86400));
    let (s, v) = try_chain(vec![leaf_for(vec![], 2).pem()], "node-x509").await;
    assert_eq!((s, kind(&v)), (403, "Unenrolled"), "{v}");
    assert!(
        v["error"]["detail"].as_str().unwrap().contains("Expired"),
        "{v}"
    );
    // A self-made CA is not the configured one.
    let rogue_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut rp = CertificateParams::new(Vec::<String>::new()).unwrap();
    rp.distinguished_name.push(DnType::CommonName, "node-x509");
    let rogue = rp.self_signed(&rogue_key).unwrap();
    let (s, v) = try_chain(vec![rogue.pem()], "node-x509").await;
    assert_eq!((s, kind(&v)), (403, "Unenrolled"), "{v}");
    // Garbage PEM: typed 400.
    let (s, v) = try_chain(
        vec!["-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into()],
        "node-x509",
    )
    .await;
    assert_eq!(s, 400, "{v}");
}

/// The policy file list rides in a pulse only when its digest changes: a pulse with
/// the digest alone is judged against the stored list; a new digest without its
/// files, files that do not hash to the digest, and a report without files are
/// refused (`InconsistentInventory`), nothing recorded.
#[tokio::test]
async fn policy_file_list_rides_only_when_it_changes() {
    let digest_only = |m: &evidence::Measurements| {
        let mut m = m.clone();
        m.policy.files.clear();
        assert!(m.policy.omitted());
        m
    };
    let mut a = TestAgent::new("node-1");
    let cp = start(|c| c.enrollment.keys.push(a.enroll())).await;
    let (s, v) = cp.register(&mut a, digest_only(&measurements(1, 1))).await;
    assert_eq!((s, kind(&v)), (400, "InconsistentInventory"), "{v}");
    assert_eq!(cp.register(&mut a, measurements(1, 1)).await.0, 200);

    // Same digest, no files: accepted, judged green, the stored list kept whole.
    let env = a.next_pulse(cp.now(), digest_only(&measurements(1, 1)));
    let (s, v) = cp.pulse(&env).await;
    assert_eq!(s, 200, "{v}");
    a.accepted(&env);
    let (_, v) = cp.get("/api/v1/agents/node-1").await;
    assert_eq!(
        v["measurements"]["policy"]["files"][0]["path"],
        "/etc/provenant/policy.toml"
    );
    assert!(cp.alerts("PolicyChanged").await.is_empty());

    // A changed policy without its files: refused, nothing recorded.
    let env = a.next_pulse(cp.now(), digest_only(&measurements(1, 2)));
    let (s, v) = cp.pulse(&env).await;
    assert_eq!((s, kind(&v)), (400, "InconsistentInventory"), "{v}");
    assert!(
        v["error"]["detail"]
            .as_str()
            .unwrap()
            .contains("register again"),
        "{v}"
    );
    // Files that do not hash to the digest: refused.
    let mut lying = measurements(1, 2);
    lying.policy.digest = measurements(1, 1).policy.digest;
    let env = a.next_pulse(cp.now(), lying);
    let (s, v) = cp.pulse(&env).await;
    assert_eq!((s, kind(&v)), (400, "InconsistentInventory"), "{v}");
    assert!(cp.alerts("PolicyChanged").await.is_empty());

    // The change with its files: accepted, and named.
    let env = a.next_pulse(cp.now(), measurements(1, 2));
    assert_eq!(cp.pulse(&env).await.0, 200);
    a.accepted(&env);
    assert_eq!(cp.alerts("PolicyChanged").await.len(), 1);
}

/// A steady-state pulse carries `measurements_digest` alone (and no key id):
/// accepted and judged as the stored measurements when the digest is theirs;
/// a digest that is not (the agent's view and the control plane's differ) is refused
/// `InconsistentInventory`, nothing recorded; a full pulse whose digest disagrees
/// with its own measurements is refused too.
#[tokio::test]
async fn steady_state_pulse_is_the_measurements_digest_alone() {
    let mut a = TestAgent::new("node-1");
    let cp = start(|c| c.enrollment.keys.push(a.enroll())).await;
    let m = measurements(1, 1);
    assert_eq!(cp.register(&mut a, m.clone()).await.0, 200);
    let env = a.next_steady_pulse(cp.now(), m.digest().unwrap());
    assert!(env.signatures[0].keyid.is_empty());
    let (s, v) = cp.pulse(&env).await;
    assert_eq!(s, 200, "{v}");
    // Judged unchanged: the software tier's own warning is the only reason.
    let reasons = v["verdict"]["reasons"].as_array().unwrap();
    assert_eq!(reasons.len(), 1, "{v}");
    assert_eq!(reasons[0]["code"], "SoftwareTier", "{v}");
    a.accepted(&env);
    let (_, v) = cp.get("/api/v1/agents/node-1").await;
    assert_eq!(v["sequence"], 1);
    assert_eq!(
        v["measurements"]["policy"]["files"][0]["path"],
        "/etc/provenant/policy.toml"
    );

    // "Nothing changed", but the control plane holds other measurements.
    let env = a.next_steady_pulse(cp.now(), measurements(1, 2).digest().unwrap());
    let (s, v) = cp.pulse(&env).await;
    assert_eq!((s, kind(&v)), (400, "InconsistentInventory"), "{v}");
    assert!(
        v["error"]["detail"]
            .as_str()
            .unwrap()
            .contains("register again"),
        "{v}"
    );
    let (_, v) = cp.get("/api/v1/agents/node-1").await;
    assert_eq!(v["sequence"], 1);

    // Measurements and a digest that is not theirs.
    let mut p: Pulse =
        serde_json::from_slice(&a.next_pulse(cp.now(), measurements(1, 2)).payload).unwrap();
    p.measurements_digest = Some(m.digest().unwrap());
    let env = sign_payload(&a.signer, PULSE_PAYLOAD_TYPE, &p).unwrap();
    let (s, v) = cp.pulse(&env).await;
    assert_eq!((s, kind(&v)), (400, "InconsistentInventory"), "{v}");

    // A pulse naming another partition than the registered one is refused.
    p.measurements_digest = None;
    p.partition = "other".into();
    let env = sign_payload(&a.signer, PULSE_PAYLOAD_TYPE, &p).unwrap();
    let (s, v) = cp.pulse(&env).await;
    assert_eq!((s, kind(&v)), (400, "InvalidField"), "{v}");

    // The steady pulse goes on after a refused one: the chain did not move.
    let env = a.next_steady_pulse(cp.now(), m.digest().unwrap());
    assert_eq!(cp.pulse(&env).await.0, 200);
}

fn health(synchronised: bool) -> evidence::Health {
    evidence::Health {
        uptime_s: 7200,
        load_avg: [0.5, 0.25, 0.125],
        mem_total_kib: 8 << 20,
        mem_available_kib: 4 << 20,
        disks: vec![evidence::DiskFree {
            mount: "/".into(),
            total_bytes: 100 << 30,
            free_bytes: 40 << 30,
        }],
        agent_rss_kib: 20 << 10,
        agent_cpu_ms: 1500,
        clock: Some(evidence::ClockSync {
            synchronised,
            est_error_us: 250,
            max_error_us: 16_000_000,
        }),
        last_error: (!synchronised).then(|| "pulse refused: ClockDesync".to_string()),
    }
}

/// Health rides in pulses (signed with the state hashes): the API and the agent page
/// show the last one; a pulse without health leaves it standing; a clock the node's
/// kernel reports unsynchronised is yellow `ClockUnsynchronised`, and goes when it
/// is synchronised again. Health is bounded on the wire.
#[tokio::test]
async fn health_in_the_pulse_is_shown_and_the_clock_judged() {
    let mut a = TestAgent::new("node-1");
    let cp = start(|c| c.enrollment.keys.push(a.enroll())).await;
    assert_eq!(cp.register(&mut a, measurements(1, 1)).await.0, 200);
    let codes = |v: &serde_json::Value| -> Vec<String> {
        v["verdict"]["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["code"].as_str().unwrap().to_string())
            .collect()
    };

    let env = a.next_pulse_with_health(cp.now(), measurements(1, 1), health(false));
    let (s, v) = cp.pulse(&env).await;
    assert_eq!(s, 200, "{v}");
    a.accepted(&env);
    assert!(
        codes(&v).contains(&"ClockUnsynchronised".to_string()),
        "{v}"
    );
    let (_, v) = cp.get("/api/v1/agents/node-1").await;
    assert_eq!(v["health"]["uptime_s"], 7200);
    assert_eq!(v["health"]["clock"]["synchronised"], false);
    assert_eq!(v["health"]["disks"][0]["mount"], "/");
    assert_eq!(v["health"]["last_error"], "pulse refused: ClockDesync");
    assert!(v["health_at_ns"].as_u64().is_some());
    let r = v["verdict"]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["code"] == "ClockUnsynchronised")
        .unwrap()
        .clone();
    assert_eq!(r["status"], "warn");
    assert!(r["detail"].as_str().unwrap().contains("NTP"), "{r}");
    let page = cp
        .http
        .get(format!("{}/agent/node-1", cp.base))
        .bearer_auth(VIEWER_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("<h2>Health</h2>") && page.contains("unsynchronised"),
        "{page}"
    );
    let fleet = cp
        .http
        .get(format!("{}/agents", cp.base))
        .bearer_auth(VIEWER_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        fleet.contains("up 2 h · load 0.50 · mem 50% free · <b>clock unsynchronised</b>"),
        "{fleet}"
    );

    // No health in this pulse: the last one stands.
    let env = a.next_pulse(cp.now(), measurements(1, 1));
    let (_, v) = cp.pulse(&env).await;
    a.accepted(&env);
    assert!(
        codes(&v).contains(&"ClockUnsynchronised".to_string()),
        "{v}"
    );

    // Synchronised again: the reason goes.
    let env = a.next_pulse_with_health(cp.now(), measurements(1, 1), health(true));
    let (_, v) = cp.pulse(&env).await;
    a.accepted(&env);
    assert!(
        !codes(&v).contains(&"ClockUnsynchronised".to_string()),
        "{v}"
    );

    // Bounded: too many mounts, or a load average that is not a number, is refused.
    let mut big = health(true);
    big.disks = (0..17)
        .map(|i| evidence::DiskFree {
            mount: format!("/m{i}"),
            total_bytes: 1,
            free_bytes: 1,
        })
        .collect();
    let env = a.next_pulse_with_health(cp.now(), measurements(1, 1), big);
    let (s, v) = cp.pulse(&env).await;
    assert_eq!((s, kind(&v)), (400, "InvalidField"), "{v}");
    let mut bad = health(true);
    bad.load_avg[1] = -1.0;
    let env = a.next_pulse_with_health(cp.now(), measurements(1, 1), bad);
    let (s, v) = cp.pulse(&env).await;
    assert_eq!((s, kind(&v)), (400, "InvalidField"), "{v}");
}

/// `GET /api/v1/agents` filters (badge, tier, partition, id substring) on the server
/// and pages by agent id (`after` = the previous page's `next`), with the total of
/// matching agents; bad filters are refused with a reason.
#[tokio::test]
async fn agents_listing_filters_and_pages() {
    let mut agents: Vec<TestAgent> = (0..5)
        .map(|i| TestAgent::new(&format!("node-{i}")))
        .collect();
    let keys: Vec<EnrolledKey> = agents.iter().map(TestAgent::enroll).collect();
    let cp = start(|c| c.enrollment.keys.extend(keys)).await;
    for a in agents.iter_mut() {
        assert_eq!(cp.register(a, measurements(1, 1)).await.0, 200);
    }
    // node-3's binary changes: red.
    let p = agents[3].next_pulse(cp.now(), measurements(2, 1));
    assert_eq!(cp.pulse(&p).await.0, 200);

    let ids = |v: &serde_json::Value| -> Vec<String> {
        v["agents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["agent_id"].as_str().unwrap().to_string())
            .collect()
    };
    let (s, v) = cp.get("/api/v1/agents").await;
    assert_eq!(s, 200);
    assert_eq!(v["total"], 5);
    assert_eq!(v["next"], serde_json::Value::Null);
    let (_, v) = cp.get("/api/v1/agents?badge=red").await;
    assert_eq!(ids(&v), ["node-3"]);
    let (_, v) = cp.get("/api/v1/agents?badge=yellow&tier=software").await;
    assert_eq!(v["total"], 4);
    let (_, v) = cp.get("/api/v1/agents?q=de-4").await;
    assert_eq!(ids(&v), ["node-4"]);
    let (_, v) = cp.get("/api/v1/agents?partition=other").await;
    assert_eq!(v["total"], 0);

    // Pages of two: 0,1 | 2,3 | 4.
    let mut seen = Vec::new();
    let mut after = String::new();
    for _ in 0..4 {
        let (_, v) = cp
            .get(&format!("/api/v1/agents?limit=2&after={after}"))
            .await;
        assert_eq!(v["total"], 5);
        seen.extend(ids(&v));
        match v["next"].as_str() {
            Some(n) => after = n.to_string(),
            None => break,
        }
    }
    assert_eq!(seen, ["node-0", "node-1", "node-2", "node-3", "node-4"]);

    for bad in ["badge=purple", "limit=0", "limit=1001", "limit=x"] {
        let (s, v) = cp.get(&format!("/api/v1/agents?{bad}")).await;
        assert_eq!(s, 400, "{bad}: {v}");
        assert_eq!(v["error"]["kind"], "BadQuery", "{bad}");
    }
}
