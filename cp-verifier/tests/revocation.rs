//! Revocation against a real server on loopback and a real SQLite store, with a
//! pinned clock: operator delete/disable/enable, enrollment re-checked on every pulse
//! (allowlist reload, certificate expiry, CRL), and fleet-wide build withdrawals.

mod harness;
use harness::*;

use std::sync::Arc;
use std::time::Duration;

use cp_verifier::config::CpConfig;
use cp_verifier::plane::ControlPlane;
use cp_verifier::store::sqlite::SqliteStore;
use evidence::api::{RegisterEvidence, RegisterRequest};
use evidence::report::HexBytes;
use guest_agent::signer::KeySigner;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams,
    SerialNumber,
};
use serde_json::Value;

const TOKEN: &str = "0123456789abcdef-operator";

impl Cp {
    async fn op(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(TOKEN);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().await.unwrap();
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    async fn register_chain(
        &self,
        a: &mut TestAgent,
        chain: Vec<String>,
        m: evidence::Measurements,
    ) -> (u16, Value) {
        let nonce = self.challenge().await;
        let env = a.report(nonce, self.now(), m);
        let req = RegisterRequest {
            envelope: env.clone(),
            evidence: RegisterEvidence {
                certificate_chain: chain,
                ..RegisterEvidence::default()
            },
        };
        let r = self
            .post_raw("/api/v1/register", serde_json::to_vec(&req).unwrap())
            .await;
        if r.0 == 200 {
            a.seq = 0;
            a.head = HexBytes(env.digest());
        }
        r
    }

    /// Sends the agent's next pulse at `now`; on 200 the agent advances.
    async fn beat(&self, a: &mut TestAgent, bin: u8) -> (u16, Value) {
        let env = a.next_pulse(self.now(), measurements(bin, 1));
        let r = self.pulse(&env).await;
        if r.0 == 200 {
            a.accepted(&env);
        }
        r
    }
}

fn detail(v: &Value) -> &str {
    v["error"]["detail"].as_str().unwrap_or("")
}

fn audit_kinds(cp: &Cp) -> Vec<Value> {
    std::fs::read_to_string(cp.dir.path().join("audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn utc(ns: u64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(i64::try_from(ns / SEC).unwrap()).unwrap()
}

/// A test enrollment CA and a leaf for `name` over `leaf_key`.
struct Pki {
    ca: rcgen::Certificate,
    ca_key: KeyPair,
}

impl Pki {
    fn new(cn: &str) -> Pki {
        let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p.distinguished_name.push(DnType::CommonName, cn);
        let ca = p.self_signed(&ca_key).unwrap();
        Pki { ca, ca_key }
    }

    fn leaf(&self, name: &str, key: &KeyPair, serial: u64, not_after_ns: u64) -> String {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.serial_number = Some(SerialNumber::from(serial));
        p.not_before = utc(T0) - time::Duration::days(1);
        p.not_after = utc(not_after_ns);
        p.signed_by(key, &self.ca, &self.ca_key).unwrap().pem()
    }

    fn crl(&self, revoked: &[u64], next_update_ns: u64) -> String {
        CertificateRevocationListParams {
            this_update: utc(T0) - time::Duration::hours(1),
            next_update: utc(next_update_ns),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from(*s),
                    revocation_time: utc(T0),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&self.ca, &self.ca_key)
        .unwrap()
        .pem()
        .unwrap()
    }
}

/// A certificate-enrolled agent: its signer is the leaf key.
fn cert_agent(id: &str) -> (TestAgent, KeyPair) {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut a = TestAgent::new(id);
    a.signer = KeySigner::from_pem(&key.serialize_pem()).unwrap();
    (a, key)
}

#[tokio::test]
async fn revocation_delete_refuses_the_next_pulse() {
    let mut a = TestAgent::new("node-del");
    let cp = start(|c| c.enrollment.keys.push(a.enroll())).await;
    assert_eq!(cp.register(&mut a, measurements(1, 1)).await.0, 200);
    cp.clock.advance(Duration::from_secs(1));
    assert_eq!(cp.beat(&mut a, 1).await.0, 200);

    // Operator token required.
    let r = cp
        .http
        .delete(format!("{}/api/v1/agents/node-del", cp.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let (s, v) = cp
        .op(
            reqwest::Method::DELETE,
            "/api/v1/agents/node-del",
            Some(serde_json::json!({"reason": "node decommissioned"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["deleted"]["agent_id"], "node-del");
    let (s, _) = cp.get("/api/v1/agents/node-del").await;
    assert_eq!(s, 404);

    // Its key can no longer pulse: 403 Revoked, naming the deletion.
    cp.clock.advance(Duration::from_secs(1));
    let (s, v) = cp.beat(&mut a, 1).await;
    assert_eq!((s, kind(&v)), (403, "Revoked"), "{v}");
    assert!(detail(&v).starts_with("AgentDeleted:"), "{v}");
    assert!(detail(&v).contains("node decommissioned"), "{v}");

    // Audited: an alert row and an audit line, severity 2, naming the action.
    let al = cp.alerts("AgentDeleted").await;
    assert_eq!(al.len(), 1);
    assert_eq!(al[0]["severity"], 2);
    assert!(al[0]["detail"]
        .as_str()
        .unwrap()
        .contains("operator DELETE /api/v1/agents/node-del"));
    assert!(audit_kinds(&cp)
        .iter()
        .any(|l| l["kind"] == "AgentDeleted" && l["agent_id"] == "node-del"));

    // Deleting again: 404. A new registration needs enrollment as usual (the key is
    // still on the allowlist here), and then pulses are accepted again.
    let (s, _) = cp
        .op(reqwest::Method::DELETE, "/api/v1/agents/node-del", None)
        .await;
    assert_eq!(s, 404);
    assert_eq!(cp.register(&mut a, measurements(1, 1)).await.0, 200);
    cp.clock.advance(Duration::from_secs(1));
    assert_eq!(cp.beat(&mut a, 1).await.0, 200);
}

#[tokio::test]
async fn revocation_disable_refuses_pulses_and_registration_until_enabled() {
    let mut a = TestAgent::new("node-dis");
    let cp = start(|c| c.enrollment.keys.push(a.enroll())).await;
    assert_eq!(cp.register(&mut a, measurements(1, 1)).await.0, 200);
    cp.clock.advance(Duration::from_secs(1));
    assert_eq!(cp.beat(&mut a, 1).await.0, 200);

    let r = cp
        .http
        .post(format!("{}/api/v1/agents/node-dis/disable", cp.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let (s, v) = cp
        .op(
            reqwest::Method::POST,
            "/api/v1/agents/node-dis/disable",
            Some(serde_json::json!({"reason": "suspected compromise"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    // The record stays, red, with the reason.
    assert_eq!(v["badge"], "red", "{v}");
    assert!(v["verdict"]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["code"] == "Revoked" && r["detail"].as_str().unwrap().contains("suspected")));

    cp.clock.advance(Duration::from_secs(1));
    let (s, v) = cp.beat(&mut a, 1).await;
    assert_eq!((s, kind(&v)), (403, "Revoked"), "{v}");
    assert!(detail(&v).starts_with("AgentDisabled:"), "{v}");
    let (s, v) = cp.register(&mut a, measurements(1, 1)).await;
    assert_eq!((s, kind(&v)), (403, "Revoked"), "{v}");

    // Silent while disabled: red for its own reason, not also Blinded.
    cp.clock.advance(Duration::from_secs(30));
    cp.cp.sweep().await.unwrap();
    assert!(cp.alerts("Blinded").await.is_empty());
    assert_eq!(cp.alerts("AgentDisabled").await.len(), 1);
    assert_eq!(cp.alerts("AgentRevoked").await[0]["severity"], 2);

    let (s, v) = cp
        .op(
            reqwest::Method::POST,
            "/api/v1/agents/node-dis/enable",
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(cp.alerts("AgentEnabled").await.len(), 1);
    assert_eq!(cp.register(&mut a, measurements(1, 1)).await.0, 200);
    cp.clock.advance(Duration::from_secs(1));
    let (s, v) = cp.beat(&mut a, 1).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["verdict"]["status"], "warn", "{v}");
    // Unknown agents: 404.
    let (s, _) = cp
        .op(reqwest::Method::POST, "/api/v1/agents/nobody/disable", None)
        .await;
    assert_eq!(s, 404);
}

fn write_config(path: &std::path::Path, data_dir: &std::path::Path, extra: &str) {
    std::fs::write(
        path,
        format!("data_dir = {:?}\n{extra}", data_dir.display().to_string()),
    )
    .unwrap();
}

#[tokio::test]
async fn revocation_allowlist_change_and_reload_refuse_the_next_pulse() {
    let mut a = TestAgent::new("node-al");
    let mut b = TestAgent::new("node-keep");
    let entry = |t: &TestAgent| {
        format!(
            "[[enrollment.keys]]\nagent_id = \"{}\"\nfingerprint = \"{}\"\n",
            t.id,
            t.enroll().fingerprint
        )
    };
    let cp = start(|c| {
        c.enrollment.keys.push(a.enroll());
        c.enrollment.keys.push(b.enroll());
    })
    .await;
    let file = cp.dir.path().join("cp.toml");
    cp.cp.set_config_path(file.clone());
    let data = cp.dir.path().join("db");
    for t in [&mut a, &mut b] {
        assert_eq!(cp.register(t, measurements(1, 1)).await.0, 200);
    }
    cp.clock.advance(Duration::from_secs(1));
    assert_eq!(cp.beat(&mut a, 1).await.0, 200);

    // A broken file: the reload fails and the rules in force stay.
    write_config(&file, &data, "[enrollment]\nkeys = 7\n");
    assert!(cp.cp.reload().is_err());
    cp.clock.advance(Duration::from_secs(1));
    assert_eq!(cp.beat(&mut a, 1).await.0, 200);

    // node-al's key removed from the allowlist, then SIGHUP's reload.
    write_config(&file, &data, &entry(&b));
    cp.cp.reload().unwrap();
    cp.clock.advance(Duration::from_secs(1));
    let (s, v) = cp.beat(&mut a, 1).await;
    assert_eq!((s, kind(&v)), (403, "Revoked"), "{v}");
    assert!(detail(&v).starts_with("NotEnrolled:"), "{v}");
    let (_, v) = cp.get("/api/v1/agents/node-al").await;
    assert_eq!(v["badge"], "red", "{v}");
    // The other agent is untouched.
    assert_eq!(cp.beat(&mut b, 1).await.0, 200);
    // It cannot register again either.
    let (s, v) = cp.register(&mut a, measurements(1, 1)).await;
    assert_eq!((s, kind(&v)), (403, "Unenrolled"), "{v}");

    // Back on the allowlist: accepted again after the next reload.
    write_config(&file, &data, &format!("{}{}", entry(&a), entry(&b)));
    cp.cp.reload().unwrap();
    cp.clock.advance(Duration::from_secs(1));
    assert_eq!(cp.beat(&mut a, 1).await.0, 200);
}

#[tokio::test]
async fn revocation_expired_client_certificate_is_refused_at_pulse_time() {
    let pki = Pki::new("Provenant enrollment CA");
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, pki.ca.pem()).unwrap();
    let cp = start(|c| c.enrollment.ca_file = Some(ca)).await;
    let (mut a, key) = cert_agent("node-cert");
    // Valid for one more hour.
    let leaf = pki.leaf("node-cert", &key, 7, T0 + 3600 * SEC);
    let (s, v) = cp
        .register_chain(&mut a, vec![leaf.clone()], measurements(1, 1))
        .await;
    assert_eq!(s, 200, "{v}");
    cp.clock.advance(Duration::from_secs(1));
    assert_eq!(cp.beat(&mut a, 1).await.0, 200);
    // Still valid 30 minutes later (the cached check holds until notAfter).
    cp.clock.advance(Duration::from_secs(1800));
    assert_eq!(cp.beat(&mut a, 1).await.0, 200);
    // Past notAfter: the next pulse is refused, with the certificate's expiry.
    cp.clock.advance(Duration::from_secs(1800));
    let (s, v) = cp.beat(&mut a, 1).await;
    assert_eq!((s, kind(&v)), (403, "Revoked"), "{v}");
    assert!(detail(&v).starts_with("CertificateExpired:"), "{v}");
    let (_, v) = cp.get("/api/v1/agents/node-cert").await;
    assert_eq!(v["badge"], "red", "{v}");
}

#[tokio::test]
async fn revocation_crl_listing_the_serial_refuses_pulses_and_registration() {
    let pki = Pki::new("Provenant enrollment CA");
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let crl = dir.path().join("enroll.crl");
    std::fs::write(&ca, pki.ca.pem()).unwrap();
    std::fs::write(&crl, pki.crl(&[1000], T0 + 7 * 86400 * SEC)).unwrap();
    let (ca2, crl2) = (ca.clone(), crl.clone());
    let cp = start(move |c| {
        c.enrollment.ca_file = Some(ca2);
        c.enrollment.crl_file = Some(crl2);
    })
    .await;
    let (mut a, key) = cert_agent("node-crl");
    let leaf = pki.leaf("node-crl", &key, 42, T0 + 30 * 86400 * SEC);
    let (s, v) = cp
        .register_chain(&mut a, vec![leaf.clone()], measurements(1, 1))
        .await;
    assert_eq!(s, 200, "{v}");
    cp.clock.advance(Duration::from_secs(1));
    assert_eq!(cp.beat(&mut a, 1).await.0, 200);

    // The CA revokes serial 42; the new CRL is installed (DER this time) and reloaded.
    let der =
        x509_cert::der::pem::decode_vec(pki.crl(&[1000, 42], T0 + 7 * 86400 * SEC).as_bytes())
            .unwrap()
            .1;
    std::fs::write(&crl, der).unwrap();
    let mut cfg = CpConfig::with_data_dir(&cp.dir.path().join("db"));
    cfg.enrollment.ca_file = Some(ca.clone());
    cfg.enrollment.crl_file = Some(crl.clone());
    cp.cp.reload_from(&cfg).unwrap();
    cp.clock.advance(Duration::from_secs(1));
    let (s, v) = cp.beat(&mut a, 1).await;
    assert_eq!((s, kind(&v)), (403, "Revoked"), "{v}");
    assert!(detail(&v).starts_with("CertificateRevoked:"), "{v}");
    let (s, v) = cp
        .register_chain(&mut a, vec![leaf], measurements(1, 1))
        .await;
    assert_eq!((s, kind(&v)), (403, "Revoked"), "{v}");
    assert!(detail(&v).starts_with("CertificateRevoked:"), "{v}");
    // Another certificate of the same CA is fine.
    let (mut b, kb) = cert_agent("node-ok");
    let (s, v) = cp
        .register_chain(
            &mut b,
            vec![pki.leaf("node-ok", &kb, 43, T0 + 30 * 86400 * SEC)],
            measurements(1, 1),
        )
        .await;
    assert_eq!(s, 200, "{v}");
}

#[tokio::test]
async fn revocation_stale_or_forged_crl_fails_closed_with_its_reason() {
    let pki = Pki::new("Provenant enrollment CA");
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let crl = dir.path().join("enroll.crl.pem");
    std::fs::write(&ca, pki.ca.pem()).unwrap();
    // Due for renewal in two hours.
    std::fs::write(&crl, pki.crl(&[], T0 + 2 * 3600 * SEC)).unwrap();
    let (ca2, crl2) = (ca.clone(), crl.clone());
    let cp = start(move |c| {
        c.enrollment.ca_file = Some(ca2);
        c.enrollment.crl_file = Some(crl2);
    })
    .await;
    let (mut a, key) = cert_agent("node-stale");
    let leaf = pki.leaf("node-stale", &key, 9, T0 + 30 * 86400 * SEC);
    assert_eq!(
        cp.register_chain(&mut a, vec![leaf.clone()], measurements(1, 1))
            .await
            .0,
        200
    );
    cp.clock.advance(Duration::from_secs(1));
    assert_eq!(cp.beat(&mut a, 1).await.0, 200);

    // Past nextUpdate with no fresh CRL: refused, naming the stale CRL.
    cp.clock.advance(Duration::from_secs(2 * 3600));
    let (s, v) = cp.beat(&mut a, 1).await;
    assert_eq!((s, kind(&v)), (403, "Revoked"), "{v}");
    assert!(detail(&v).starts_with("CrlStale:"), "{v}");
    assert!(detail(&v).contains("Provenant enrollment CA"), "{v}");
    let (s, v) = cp
        .register_chain(&mut a, vec![leaf.clone()], measurements(1, 1))
        .await;
    assert_eq!((s, kind(&v)), (403, "Revoked"), "{v}");
    assert!(detail(&v).starts_with("CrlStale:"), "{v}");

    // A "fresh" CRL under the CA's name but signed by another key: its signature is
    // checked against the enrollment CA, so it is unusable and enrollment fails closed.
    let forger = Pki::new("Provenant enrollment CA");
    std::fs::write(&crl, forger.crl(&[], T0 + 7 * 86400 * SEC)).unwrap();
    let mut cfg = CpConfig::with_data_dir(&cp.dir.path().join("db"));
    cfg.enrollment.ca_file = Some(ca.clone());
    cfg.enrollment.crl_file = Some(crl.clone());
    cp.cp.reload_from(&cfg).unwrap();
    let (s, v) = cp
        .register_chain(&mut a, vec![leaf.clone()], measurements(1, 1))
        .await;
    assert_eq!((s, kind(&v)), (403, "Revoked"), "{v}");
    assert!(detail(&v).starts_with("CrlUnusable:"), "{v}");

    // The real fresh CRL: accepted again.
    std::fs::write(&crl, pki.crl(&[], T0 + 7 * 86400 * SEC)).unwrap();
    cp.cp.reload_from(&cfg).unwrap();
    let (s, v) = cp
        .register_chain(&mut a, vec![leaf], measurements(1, 1))
        .await;
    assert_eq!(s, 200, "{v}");

    // A CRL from another issuer, or one without nextUpdate, is refused at load.
    let other = Pki::new("Someone else's CA");
    std::fs::write(&crl, other.crl(&[], T0 + 7 * 86400 * SEC)).unwrap();
    let e = cp.cp.reload_from(&cfg).unwrap_err().to_string();
    assert!(e.contains("not an enrollment CA"), "{e}");
    std::fs::write(&crl, "not a CRL").unwrap();
    assert!(cp.cp.reload_from(&cfg).is_err());
}

#[tokio::test]
async fn revocation_withdrawn_agent_binary_turns_red_and_is_refused() {
    let mut a = TestAgent::new("node-old");
    let mut b = TestAgent::new("node-new");
    let mut c = TestAgent::new("node-late");
    let cp = start(|cfg| {
        for t in [&a, &b, &c] {
            cfg.enrollment.keys.push(t.enroll());
        }
    })
    .await;
    assert_eq!(cp.register(&mut a, measurements(1, 1)).await.0, 200);
    assert_eq!(cp.register(&mut b, measurements(2, 1)).await.0, 200);
    cp.clock.advance(Duration::from_secs(1));
    assert_eq!(cp.beat(&mut a, 1).await.0, 200);

    let old = hex::encode([1u8; 32]);
    // Operator only; bodies validated.
    let (s, _) = cp
        .post_raw(
            "/api/v1/withdrawals",
            serde_json::to_vec(&serde_json::json!({"agent_binary": old, "reason": "x"})).unwrap(),
        )
        .await;
    assert_eq!(s, 401);
    for bad in [
        serde_json::json!({"agent_binary": old}),
        serde_json::json!({"agent_binary": "abcd", "reason": "r"}),
        serde_json::json!({"agent_binary": old, "mrtd": hex::encode([0u8; 48]), "reason": "r"}),
        serde_json::json!({"reason": "r"}),
        serde_json::json!({"agent_binary": old, "reason": "r", "extra": 1}),
    ] {
        let (s, v) = cp
            .op(
                reqwest::Method::POST,
                "/api/v1/withdrawals",
                Some(bad.clone()),
            )
            .await;
        assert_eq!(s, 400, "{bad} -> {v}");
    }
    let (s, w) = cp
        .op(
            reqwest::Method::POST,
            "/api/v1/withdrawals",
            Some(serde_json::json!({"agent_binary": old, "reason": "CVE-2031-0001 in agent 1.2"})),
        )
        .await;
    assert_eq!(s, 200, "{w}");
    assert_eq!(w["kind"], "agent_binary");

    // The running agent is red at once, with the reason.
    let (_, v) = cp.get("/api/v1/agents/node-old").await;
    assert_eq!(v["badge"], "red", "{v}");
    assert!(v["verdict"]["reasons"].as_array().unwrap().iter().any(
        |r| r["code"] == "Withdrawn" && r["detail"].as_str().unwrap().contains("CVE-2031-0001")
    ));
    // Its next pulse is refused Revoked (detail: Withdrawn ...).
    cp.clock.advance(Duration::from_secs(1));
    let (s, v) = cp.beat(&mut a, 1).await;
    assert_eq!((s, kind(&v)), (403, "Revoked"), "{v}");
    assert!(detail(&v).starts_with("Withdrawn:"), "{v}");
    // Other builds are untouched.
    assert_eq!(cp.beat(&mut b, 2).await.0, 200);
    // The withdrawn build cannot register, neither again nor anew.
    let (s, v) = cp.register(&mut a, measurements(1, 1)).await;
    assert_eq!((s, kind(&v)), (403, "Withdrawn"), "{v}");
    let (s, v) = cp.register(&mut c, measurements(1, 1)).await;
    assert_eq!((s, kind(&v)), (403, "Withdrawn"), "{v}");
    // An updated agent registers fine.
    assert_eq!(cp.register(&mut c, measurements(2, 1)).await.0, 200);

    // Audited and listed; withdrawing again returns the same withdrawal.
    let al = cp.alerts("BuildWithdrawn").await;
    assert_eq!(al.len(), 1);
    assert!(
        al[0]["detail"].as_str().unwrap().contains("node-old"),
        "{al:?}"
    );
    let (s, again) = cp
        .op(
            reqwest::Method::POST,
            "/api/v1/withdrawals",
            Some(serde_json::json!({"agent_binary": old, "reason": "again"})),
        )
        .await;
    assert_eq!((s, &again["id"]), (200, &w["id"]));
    let (s, l) = cp.get("/api/v1/withdrawals").await;
    assert_eq!(s, 200);
    assert_eq!(l["withdrawals"].as_array().unwrap().len(), 1);

    // Persisted: a control plane restarted on the same store still refuses it.
    let mut cfg = CpConfig::with_data_dir(&cp.dir.path().join("db"));
    for t in [&a, &b, &c] {
        cfg.enrollment.keys.push(t.enroll());
    }
    let store = Arc::new(SqliteStore::open(&cfg.data_dir).await.unwrap());
    let cp2 = ControlPlane::new(cfg, store, cp.clock.clone()).unwrap();
    cp2.load_revocations().await.unwrap();
    let v = cp2.agent("node-old").await.unwrap();
    assert_eq!(v.badge, "red");
    assert!(v
        .verdict
        .reasons
        .iter()
        .any(|r| r.code == policy::ReasonCode::Withdrawn));
    assert_eq!(cp2.withdrawals().await.unwrap().len(), 1);

    // Taken back: the agent may register again.
    let (s, v) = cp
        .op(
            reqwest::Method::DELETE,
            &format!("/api/v1/withdrawals/{}", w["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(cp.register(&mut a, measurements(1, 1)).await.0, 200);
}

#[tokio::test]
async fn revocation_withdrawn_in_config_applies_on_reload() {
    let mut a = TestAgent::new("node-cfg");
    let cp = start(|c| c.enrollment.keys.push(a.enroll())).await;
    assert_eq!(cp.register(&mut a, measurements(3, 1)).await.0, 200);
    let mut cfg = CpConfig::with_data_dir(&cp.dir.path().join("db"));
    cfg.enrollment.keys.push(a.enroll());
    let text = format!(
        "data_dir = \"/x\"\n[[withdrawn]]\nagent_binary = \"{}\"\nreason = \"retired build\"\n",
        hex::encode([3u8; 32])
    );
    cfg.withdrawn = toml::from_str::<CpConfig>(&text).unwrap().withdrawn;
    cp.cp.reload_from(&cfg).unwrap();
    cp.clock.advance(Duration::from_secs(1));
    let (s, v) = cp.beat(&mut a, 3).await;
    assert_eq!((s, kind(&v)), (403, "Revoked"), "{v}");
    assert!(detail(&v).contains("retired build"), "{v}");
    let (_, l) = cp.get("/api/v1/withdrawals").await;
    assert_eq!(l["withdrawals"][0]["source"], "config");
    // Malformed entries are refused at load.
    for bad in [
        "data_dir = \"/x\"\n[[withdrawn]]\nagent_binary = \"abcd\"\nreason = \"r\"\n",
        "data_dir = \"/x\"\n[[withdrawn]]\nreason = \"r\"\n",
        "data_dir = \"/x\"\n[[withdrawn]]\nmrtd = \"00\"\nreason = \"\"\n",
    ] {
        let c: CpConfig = toml::from_str(bad).unwrap();
        assert!(c.check().is_err(), "{bad}");
    }
}

/// A TDX-tier registration of `a` with a simulated quote of `td`.
async fn register_tdx(cp: &Cp, a: &mut TestAgent, td: tdx_sim::TdReport) -> (u16, Value) {
    use base64::Engine;
    use evidence::{Report, Tier, REPORT_PAYLOAD_TYPE};
    let nonce = cp.challenge().await;
    let mut r: Report = a
        .report(nonce, cp.now(), measurements(1, 1))
        .peek()
        .unwrap();
    r.tier = Tier::Tdx;
    let env = guest_agent::agent::sign_payload(&a.signer, REPORT_PAYLOAD_TYPE, &r).unwrap();
    let quote = td.with_report_data(evidence::report_data(&env)).quote_v4();
    let req = RegisterRequest {
        envelope: env.clone(),
        evidence: RegisterEvidence {
            quote: Some(base64::engine::general_purpose::STANDARD.encode(quote)),
            ..Default::default()
        },
    };
    let res = cp
        .post_raw("/api/v1/register", serde_json::to_vec(&req).unwrap())
        .await;
    if res.0 == 200 {
        a.seq = 0;
        a.head = HexBytes(env.digest());
    }
    res
}

#[tokio::test]
async fn revocation_withdrawn_mrtd_turns_red_and_is_refused() {
    use tdx_sim::{TdReport, TestPki};
    let mut a = TestAgent::new("node-tdx");
    let mut b = TestAgent::new("node-tdx-2");
    let old = TdReport::default().with_mrtd([0x11; 48]);
    let new = TdReport::default().with_mrtd([0x22; 48]);
    let cp = start(|c| {
        c.enrollment.keys.push(a.enroll());
        c.enrollment.keys.push(b.enroll());
        c.tdx.root_ca_file = Some(TestPki::root_ca_der_path());
        c.tdx.collateral_file = Some(TestPki::collateral_path());
        c.policy.tdx = toml::from_str(&format!(
            "mrtd_allowlist = [\"{}\", \"{}\"]\nrtmr_allowlists = [[], [\"{}\"], [\"{}\"]]",
            hex::encode([0x11; 48]),
            hex::encode([0x22; 48]),
            hex::encode(TdReport::default().rtmrs[1]),
            hex::encode(TdReport::default().rtmrs[2])
        ))
        .unwrap();
    })
    .await;
    let (s, v) = register_tdx(&cp, &mut a, old.clone()).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["verdict"]["status"], "pass", "{v}");
    cp.clock.advance(Duration::from_secs(1));
    assert_eq!(cp.beat(&mut a, 1).await.0, 200);

    let (s, w) = cp
        .op(
            reqwest::Method::POST,
            "/api/v1/withdrawals",
            Some(serde_json::json!({"mrtd": hex::encode([0x11; 48]), "reason": "firmware 2031.1 retired"})),
        )
        .await;
    assert_eq!(s, 200, "{w}");
    assert_eq!(w["kind"], "mrtd");
    let (_, v) = cp.get("/api/v1/agents/node-tdx").await;
    assert_eq!(v["badge"], "red", "{v}");
    cp.clock.advance(Duration::from_secs(1));
    let (s, v) = cp.beat(&mut a, 1).await;
    assert_eq!((s, kind(&v)), (403, "Revoked"), "{v}");
    assert!(detail(&v).contains("firmware 2031.1 retired"), "{v}");
    // The withdrawn firmware cannot register; the new one can.
    let (s, v) = register_tdx(&cp, &mut b, old).await;
    assert_eq!((s, kind(&v)), (403, "Withdrawn"), "{v}");
    let (s, v) = register_tdx(&cp, &mut b, new).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["verdict"]["status"], "pass", "{v}");
}

/// A corrupted agent row does not block a fleet-wide withdrawal (a security action):
/// the build is withdrawn and the decodable agents running it are named and red.
#[tokio::test]
async fn a_corrupt_record_does_not_block_a_withdrawal() {
    let mut a = TestAgent::new("node-1");
    let mut b = TestAgent::new("node-2");
    let cp = start(|c| {
        c.enrollment.keys.push(a.enroll());
        c.enrollment.keys.push(b.enroll());
    })
    .await;
    assert_eq!(cp.register(&mut a, measurements(1, 1)).await.0, 200);
    assert_eq!(cp.register(&mut b, measurements(1, 1)).await.0, 200);
    let db = cp.dir.path().join("db").join("provenant.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query("UPDATE agents SET record = '{\"agent_id\": 7' WHERE agent_id = 'node-1'")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let (s, w) = cp
        .op(
            reqwest::Method::POST,
            "/api/v1/withdrawals",
            Some(serde_json::json!({"agent_binary": hex::encode([1u8; 32]), "reason": "CVE-2031-0002"})),
        )
        .await;
    assert_eq!(s, 200, "{w}");
    let bw = cp.alerts("BuildWithdrawn").await;
    assert_eq!(bw.len(), 1, "{bw:?}");
    assert!(
        bw[0]["detail"].as_str().unwrap().contains("node-2"),
        "{bw:?}"
    );
    let (_, v) = cp.get("/api/v1/agents/node-2").await;
    assert_eq!(v["badge"], "red", "{v}");
}
