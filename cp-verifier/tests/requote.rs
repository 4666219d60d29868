//! Issue 10, findings 6, 7 and 8 through the control plane's real HTTP API (real
//! server on loopback, real SQLite store, simulated TDX quotes from tdx-sim under its
//! TEST root, RTMR3 event logs kept by the agent's own `EventLog` on tdx-sim's RTMR
//! device). Only the clock is pinned.

mod harness;
use harness::*;

use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use base64::Engine;
use cp_verifier::config::CpConfig;
use cp_verifier::plane::ControlPlane;
use cp_verifier::store::sqlite::SqliteStore;
use evidence::api::{RegisterEvidence, RegisterRequest};
use evidence::eventlog::{self, workload_set_value};
use evidence::report::HexBytes;
use evidence::{Envelope, REPORT_PAYLOAD_TYPE};
use evidence::{Measurements, Report, Tier, Workload, Workloads};
use guest_agent::agent::sign_payload;
use guest_agent::rtmr::EventLog;
use serde_json::Value;
use tdx_sim::{RtmrBehaviour, RtmrDevice, TdReport, TestPki};

/// The control plane's TDX settings: the TEST root and collateral, the simulator's
/// MRTD allowlisted.
fn tdx(c: &mut CpConfig) {
    c.tdx.root_ca_file = Some(TestPki::root_ca_der_path());
    c.tdx.collateral_file = Some(TestPki::collateral_path());
    c.policy.tdx = toml::from_str(&format!(
        "mrtd_allowlist = [\"{}\"]\nrtmr_allowlists = [[], [\"{}\"], [\"{}\"]]",
        hex::encode(TdReport::default().mrtd),
        hex::encode(TdReport::default().rtmrs[1]),
        hex::encode(TdReport::default().rtmrs[2])
    ))
    .unwrap();
}

/// A simulated TD at the wire: its RTMR3 device, the agent's own event log bound to
/// it, and the agent's key.
struct Td {
    a: TestAgent,
    _dir: tempfile::TempDir,
    rtmr: RtmrDevice,
    log: EventLog,
    /// RTMR3 events the control plane said it holds.
    held: Option<u64>,
}

impl Td {
    fn new(id: &str) -> Td {
        let dir = tempfile::tempdir().unwrap();
        let rtmr = RtmrDevice::start(dir.path(), RtmrBehaviour::Honest).unwrap();
        let mut log = EventLog::open(None, Some(dir.path())).unwrap();
        log.settle = std::time::Duration::from_secs(5);
        Td {
            a: TestAgent::new(id),
            _dir: dir,
            rtmr,
            log,
            held: None,
        }
    }

    /// Logs the measurements as the agent does (each kind only when it changed).
    fn measure(&mut self, m: &Measurements) -> usize {
        let before = self.log.events().len();
        self.log
            .record(eventlog::KIND_AGENT_BINARY, &m.agent_binary.to_hex())
            .unwrap();
        self.log
            .record(eventlog::KIND_POLICY, &m.policy.digest.to_hex())
            .unwrap();
        if let Some(items) = m.workloads.as_ref().and_then(|w| w.items.as_deref()) {
            self.log
                .record(eventlog::KIND_WORKLOAD_SET, &workload_set_value(items))
                .unwrap();
        }
        self.log.events().len() - before
    }

    fn report(&self, nonce: evidence::Digest32, at: u64, m: Measurements) -> Envelope {
        let mut r: Report = self.a.report(nonce, at, m).peek().unwrap();
        r.tier = Tier::Tdx;
        sign_payload(&self.a.signer, REPORT_PAYLOAD_TYPE, &r).unwrap()
    }

    /// Registers with a fresh quote of the current RTMR3, sending the events the
    /// control plane does not hold (all of them when `whole`). Returns the status, the
    /// answer and the request body's size.
    async fn register(&mut self, cp: &Cp, m: &Measurements, whole: bool) -> (u16, Value, usize) {
        let nonce = cp.challenge().await;
        let env = self.report(nonce, cp.now(), m.clone());
        let quote = TdReport::default()
            .with_rtmr(3, self.rtmr.current_rtmr3())
            .with_report_data(evidence::report_data(&env))
            .quote_v4();
        let from = if whole {
            None
        } else {
            self.held.filter(|n| *n > 0)
        };
        let req = RegisterRequest {
            envelope: env.clone(),
            evidence: RegisterEvidence {
                quote: Some(base64::engine::general_purpose::STANDARD.encode(quote)),
                event_log: Some(
                    self.log
                        .to_jsonl_from(usize::try_from(from.unwrap_or(0)).unwrap()),
                ),
                event_log_from: from,
                ..Default::default()
            },
        };
        let body = serde_json::to_vec(&req).unwrap();
        let size = body.len();
        let (s, v) = cp.post_raw("/api/v1/register", body).await;
        if s == 200 {
            self.a.seq = 0;
            self.a.head = HexBytes(env.digest());
            self.held = v["event_log_events"].as_u64();
        }
        (s, v, size)
    }
}

fn container(name: &str, id: u32, state: &str, image_version: u32) -> Workload {
    Workload {
        name: name.into(),
        id: format!("{id:064x}"),
        state: state.into(),
        image: format!("registry.example/app/{name}:{image_version}"),
        image_id: format!("sha256:{:064x}", image_version),
        image_digest: Some(format!("sha256:{:064x}", 0x1000 + image_version)),
    }
}

fn with_workloads(items: Vec<Workload>) -> Measurements {
    Measurements {
        workloads: Some(Workloads::full(items, ())),
        ..measurements(1, 1)
    }
}

/// A control plane on `data`, with `f` applied to its TDX config.
async fn cp_at(data: &Path, a: &TestAgent, f: impl FnOnce(&mut CpConfig)) -> Cp {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = CpConfig::with_data_dir(data);
    cfg.alert_cooldown = std::time::Duration::from_secs(0);
    cfg.enrollment.keys.push(a.enroll());
    test_access(&mut cfg, dir.path());
    tdx(&mut cfg);
    f(&mut cfg);
    let clock = Arc::new(ManualClock(AtomicU64::new(T0)));
    let store = Arc::new(SqliteStore::open(&cfg.data_dir).await.unwrap());
    let cp = Arc::new(ControlPlane::new(cfg, store, clock.clone()).unwrap());
    serve(cp, clock, dir).await
}

fn reason<'a>(v: &'a Value, code: &str) -> Option<&'a Value> {
    v["verdict"]["reasons"]
        .as_array()?
        .iter()
        .find(|r| r["code"] == code)
}

#[tokio::test]
async fn finding08_event_log_must_match_report() {
    let mut td = Td::new("node-tied");
    let cp = start(|c| {
        c.enrollment.keys.push(td.a.enroll());
        tdx(c);
    })
    .await;

    // The log binds agent_binary = aa (and the report's policy), RTMR3 agrees, but the
    // report says the agent binary is bb: refused, typed.
    td.log
        .record(eventlog::KIND_AGENT_BINARY, &"aa".repeat(32))
        .unwrap();
    let m = measurements(0xbb, 1);
    td.log
        .record(eventlog::KIND_POLICY, &m.policy.digest.to_hex())
        .unwrap();
    let (s, v, _) = td.register(&cp, &m, true).await;
    assert_eq!((s, kind(&v)), (403, "EventLogMismatch"), "{v}");
    assert!(v["error"]["detail"]
        .as_str()
        .unwrap()
        .contains("agent_binary"));
    let (s, _) = cp.get("/api/v1/agents/node-tied").await;
    assert_eq!(s, 404, "a mismatched log registers nothing");

    // The same for the workload set: the log names one set, the report another.
    let key = same_key(&td.a);
    let mut td = Td::new("node-tied");
    td.a.signer = key;
    let m = with_workloads(vec![container("web", 1, "running", 1)]);
    td.measure(&m);
    let lying = with_workloads(vec![container("web", 1, "running", 2)]);
    let (s, v, _) = td.register(&cp, &lying, true).await;
    assert_eq!((s, kind(&v)), (403, "EventLogMismatch"), "{v}");
    assert!(v["error"]["detail"]
        .as_str()
        .unwrap()
        .contains("workload_set"));

    // A log with bound events that never binds the agent binary proves nothing of it.
    let mut td2 = Td::new("node-tied");
    td2.a.signer = same_key(&td.a);
    td2.log
        .record(eventlog::KIND_POLICY, &m.policy.digest.to_hex())
        .unwrap();
    let (s, v, _) = td2.register(&cp, &m, true).await;
    assert_eq!((s, kind(&v)), (403, "EventLogMismatch"), "{v}");

    // The honest log: accepted, and each bound kind is what the report says.
    let (s, v, _) = td.register(&cp, &m, true).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["event_log_events"], 3);
    let (_, view) = cp.get("/api/v1/agents/node-tied").await;
    let state = &view["attestation"]["event_log_state"];
    assert_eq!(state["last"]["agent_binary"], m.agent_binary.to_hex());
    assert_eq!(
        state["last"]["workload_set"],
        workload_set_value(m.workloads.as_ref().unwrap().items.as_ref().unwrap())
    );
}

#[tokio::test]
async fn finding07_ten_thousand_workload_changes() {
    let mut td = Td::new("node-churn");
    let cp = start(|c| {
        c.enrollment.keys.push(td.a.enroll());
        tdx(c);
    })
    .await;
    let mut m = with_workloads(vec![
        container("web", 0, "running", 1),
        container("db", 1, "running", 1),
    ]);
    td.measure(&m);
    let (s, v, first) = td.register(&cp, &m, true).await;
    assert_eq!(s, 200, "{v}");

    // 10,000 workload changes: containers restarted and re-created (new ids, states)
    // all the time, a new web image version every 1,000 changes. The agent takes a
    // fresh quote after each batch of 100 changes (as it would on a busy node).
    let (mut largest, mut registrations, mut version) = (0usize, 1u32, 1u32);
    for change in 1..=10_000u32 {
        if change % 1_000 == 0 {
            version += 1;
        }
        let state = if change % 2 == 0 { "running" } else { "exited" };
        let items = vec![
            container("web", change * 2, state, version),
            container("db", change * 2 + 1, "running", 1),
        ];
        m = with_workloads(items);
        td.measure(&m);
        if change % 100 == 0 {
            let (s, v, size) = td.register(&cp, &m, false).await;
            assert_eq!(s, 200, "change {change}: {v}");
            assert_eq!(v["verdict"]["status"], "pass", "change {change}: {v}");
            largest = largest.max(size);
            registrations += 1;
        }
    }
    // Only the changed image set was logged: agent binary, policy, the first set and
    // ten new versions of web.
    assert_eq!(td.log.events().len(), 3 + 10);
    assert_eq!(td.held, Some(13));
    assert_eq!(registrations, 101);
    // After the first registration, only the events the control plane had not seen
    // travel: bodies stay as small as a report.
    assert!(largest <= first + 512, "largest {largest}, first {first}");
    assert!(largest < 32 * 1024, "{largest}");
    let (_, view) = cp.get("/api/v1/agents/node-churn").await;
    assert_eq!(view["attestation"]["event_log_events"], 13);
    assert_eq!(view["attestation"]["event_log_bound"], 13);
    assert_eq!(view["badge"], "green", "{view}");

    // The whole log always fits a registration: the agent's log fills up (and stops
    // extending) before its body could pass the limit, even with values that JSON
    // escaping doubles.
    let mut full = EventLog::open(None, None).unwrap();
    let value = "\"".repeat(1000);
    let err = loop {
        if let Err(e) = full.record_always("workload_image", &value) {
            break e;
        }
    };
    assert!(matches!(err, guest_agent::rtmr::RtmrError::Full), "{err}");
    let nonce = cp.challenge().await;
    let req = RegisterRequest {
        envelope: td.report(nonce, cp.now(), m.clone()),
        evidence: RegisterEvidence {
            quote: Some(base64::engine::general_purpose::STANDARD.encode(vec![0u8; 8 * 1024])),
            event_log: Some(full.to_jsonl()),
            ..Default::default()
        },
    };
    let body = serde_json::to_vec(&req).unwrap().len();
    assert!(body < evidence::api::MAX_REGISTER_BODY, "{body}");
}

#[tokio::test]
async fn finding07_a_lost_prefix_or_new_td_sends_the_whole_log() {
    let mut td = Td::new("node-prefix");
    let data = tempfile::tempdir().unwrap();
    let cp = cp_at(&data.path().join("db"), &td.a, |_| {}).await;
    let m = measurements(1, 1);
    td.measure(&m);
    let (s, v, _) = td.register(&cp, &m, true).await;
    assert_eq!((s, v["event_log_events"].as_u64()), (200, Some(2)), "{v}");

    // The agent claims the control plane holds more than it does: 409, typed.
    td.held = Some(5);
    let (s, v, _) = td.register(&cp, &m, false).await;
    assert_eq!((s, kind(&v)), (409, "EventLogPrefixUnknown"), "{v}");

    // A new TD (RTMR3 reset, a new log as long as the prefix held): the prefix does
    // not lead to the quoted RTMR3. 409, and the whole log then registers.
    let mut fresh = Td::new("node-prefix");
    fresh.a.signer = same_key(&td.a);
    let m2 = measurements(2, 1);
    fresh.measure(&m2);
    fresh.held = Some(2);
    let (s, v, _) = fresh.register(&cp, &m2, false).await;
    assert_eq!((s, kind(&v)), (409, "EventLogPrefixMismatch"), "{v}");
    let (s, v, _) = fresh.register(&cp, &m2, true).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["event_log_events"], 2);
}

fn same_key(a: &TestAgent) -> guest_agent::signer::KeySigner {
    guest_agent::signer::KeySigner::from_pem(&a.signer.to_pkcs8_pem().unwrap()).unwrap()
}

#[tokio::test]
async fn finding06_unreachable_pcs_answers_503_and_marks_requote_failed() {
    let mut td = Td::new("node-outage");
    let data = tempfile::tempdir().unwrap();
    let db = data.path().join("db");
    // Registered while collateral was at hand.
    let up = cp_at(&db, &td.a, |_| {}).await;
    let m = measurements(1, 1);
    td.measure(&m);
    let (s, v, _) = td.register(&up, &m, true).await;
    assert_eq!(s, 200, "{v}");

    // The same store behind a control plane whose PCCS cannot be reached.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let pccs = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let down = cp_at(&db, &td.a, |c| {
        c.tdx.collateral_file = None;
        c.tdx.pcs_url = Some(pccs.clone());
    })
    .await;
    let (s, v, _) = td.register(&down, &m, false).await;
    assert_eq!((s, kind(&v)), (503, "UpstreamUnavailable"), "{v}");
    assert!(
        v["error"]["detail"]
            .as_str()
            .unwrap()
            .contains("CollateralUnavailable"),
        "{v}"
    );

    // The agent keeps its registration: its chain still pulses, and its verdict says
    // the control plane cannot verify it, not that it is silent.
    let env = td.a.next_pulse(down.now(), m.clone());
    let (s, p) = down.pulse(&env).await;
    assert_eq!(s, 200, "{p}");
    td.a.accepted(&env);
    assert_eq!(p["verdict"]["status"], "warn", "{p}");
    let (_, view) = down.get("/api/v1/agents/node-outage").await;
    assert_eq!(view["state"], "requote-failed", "{view}");
    assert_eq!(view["badge"], "yellow", "{view}");
    let r = reason(&view, "RequoteFailed").expect("RequoteFailed reason");
    assert_eq!(r["status"], "warn");
    assert!(r["detail"]
        .as_str()
        .unwrap()
        .contains("CollateralUnavailable"));
    assert!(reason(&view, "Blinded").is_none() && reason(&view, "PulseLate").is_none());

    // An agent the control plane does not know gets the plain refusal (403).
    let mut stranger = Td::new("node-outage");
    stranger.a.signer = same_key(&td.a);
    stranger.measure(&m);
    let other = cp_at(&data.path().join("db2"), &stranger.a, |c| {
        c.tdx.collateral_file = None;
        c.tdx.pcs_url = Some(pccs.clone());
    })
    .await;
    let (s, v, _) = stranger.register(&other, &m, true).await;
    assert_eq!((s, kind(&v)), (403, "CollateralUnavailable"), "{v}");

    // Upstream back: the next registration succeeds and clears it.
    let (s, v, _) = td.register(&up, &m, false).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["verdict"]["status"], "pass", "{v}");
    let (_, view) = up.get("/api/v1/agents/node-outage").await;
    assert_eq!(view["state"], "attested", "{view}");
    assert!(reason(&view, "RequoteFailed").is_none());
}

/// A PCS/PCCS that answers every request with `status` (and `Retry-After` on 429),
/// on loopback.
async fn failing_pcs(status: u16) -> String {
    let app = axum::Router::new().fallback(move || async move {
        let code = axum::http::StatusCode::from_u16(status).unwrap();
        (code, [("retry-after", "30")], "upstream trouble")
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });
    url
}

/// Finding 6 with a PCS that answers, badly: 500 and 429 are outages (the control
/// plane cannot verify), not verdicts on the agent. Its re-quote is answered 503
/// `UpstreamUnavailable`, it keeps pulsing, it is yellow `RequoteFailed`, never
/// blinded and never green.
#[tokio::test(flavor = "multi_thread")]
async fn finding06_pcs_answering_500_or_429_is_an_outage_not_a_verdict() {
    for status in [500u16, 429] {
        let mut td = Td::new("node-pcs");
        let data = tempfile::tempdir().unwrap();
        let db = data.path().join("db");
        let up = cp_at(&db, &td.a, |_| {}).await;
        let m = measurements(1, 1);
        td.measure(&m);
        let (s, v, _) = td.register(&up, &m, true).await;
        assert_eq!(s, 200, "{v}");

        let pcs = failing_pcs(status).await;
        let down = cp_at(&db, &td.a, |c| {
            c.tdx.collateral_file = None;
            c.tdx.pcs_url = Some(pcs.clone());
        })
        .await;
        let (s, v, _) = td.register(&down, &m, false).await;
        assert_eq!(
            (s, kind(&v)),
            (503, "UpstreamUnavailable"),
            "PCS {status}: {v}"
        );
        let env = td.a.next_pulse(down.now(), m.clone());
        let (s, p) = down.pulse(&env).await;
        assert_eq!(s, 200, "PCS {status}: {p}");
        td.a.accepted(&env);
        let (_, view) = down.get("/api/v1/agents/node-pcs").await;
        assert_eq!(view["badge"], "yellow", "PCS {status}: {view}");
        assert!(reason(&view, "RequoteFailed").is_some(), "{view}");
        assert!(reason(&view, "Blinded").is_none(), "{view}");
    }
}
