//! TDX evidence at registration (`cp_verifier::attest`), on a real quote with its real
//! collateral at its recorded time: the success path, and each refusal with its kind.

mod harness;

use provenant_base::clock::UnixNanos;
use std::path::PathBuf;
use std::time::Duration;

use cp_verifier::attest::collateral::{CollateralSource, OfflineConfig};
use cp_verifier::attest::TdxVerifier;
use cp_verifier::http::error::ApiError;
use evidence::eventlog::Rtmr3Event;
use policy::tdx::TdxPolicy;
use policy::{ReasonCode, Status};

fn data_path(name: &str) -> PathBuf {
    format!(
        "{}/../evidence/tests/data/tdx/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
    .into()
}

/// expected.json: UpToDate at this time.
const AT_NS: u64 = 1_752_919_234 * 1_000_000_000;

fn quote() -> Vec<u8> {
    std::fs::read(data_path("tdx_quote")).unwrap()
}

fn report_data(q: &[u8]) -> [u8; 64] {
    evidence::tdx::Quote::parse(q).unwrap().body.report_data.0
}

/// The default policy with this quote's MRTD and RTMR1/RTMR2 allowlisted (pinned).
fn pinned() -> TdxPolicy {
    let body = evidence::tdx::Quote::parse(&quote()).unwrap().body;
    TdxPolicy {
        mrtd_allowlist: vec![body.mrtd],
        rtmr_allowlists: [vec![], vec![body.rtmrs[1]], vec![body.rtmrs[2]]],
        ..TdxPolicy::default()
    }
}

fn verifier(policy: TdxPolicy) -> TdxVerifier {
    let source = CollateralSource::offline(OfflineConfig::new(
        None,
        Some(data_path("tdx_quote_collateral.json")),
    ))
    .unwrap();
    TdxVerifier::new(None, Some(source), policy)
}

/// The refusal's kind, as the wire shows it (403).
fn kind(r: Result<cp_verifier::model::TdxAttestation, cp_verifier::attest::AttestError>) -> String {
    let e = ApiError::from(r.unwrap_err());
    assert_eq!(e.status(), 403, "{e}");
    e.kind().to_string()
}

#[tokio::test]
async fn a_bound_up_to_date_quote_is_accepted() {
    let q = quote();
    let a = verifier(pinned())
        .verify_quote(&q, None, report_data(&q), UnixNanos(AT_NS))
        .await
        .unwrap();
    assert!(a.verified);
    assert_eq!(a.tcb_status.as_deref(), Some("UpToDate"));
    assert_eq!(
        a.mrtd.to_hex(),
        "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7"
    );
    assert!(a.fmspc.is_some());
    assert_eq!(a.event_log_events, 0);
    assert!(a.reasons.is_empty(), "{:?}", a.reasons);
    assert_eq!(a.verified_at_ns, AT_NS);
    // Not pinned by anything: accepted, with warnings.
    let a = verifier(TdxPolicy::default())
        .verify_quote(&q, None, report_data(&q), UnixNanos(AT_NS))
        .await
        .unwrap();
    assert_eq!(
        a.reasons.iter().map(|r| r.code).collect::<Vec<_>>(),
        [
            policy::ReasonCode::MrtdUnpinned,
            policy::ReasonCode::RtmrsUnpinned
        ]
    );
}

#[tokio::test]
async fn each_failed_check_is_a_typed_403() {
    let q = quote();
    let rd = report_data(&q);
    let v = verifier(TdxPolicy::default());

    // The quote binds some other report.
    let mut other = rd;
    other[0] ^= 1;
    assert_eq!(
        kind(v.verify_quote(&q, None, other, UnixNanos(AT_NS)).await),
        "ReportDataMismatch"
    );

    // The event log claims a bound event the quoted RTMR3 (all zero) never saw.
    let log = format!(
        "{}\n",
        serde_json::to_string(&Rtmr3Event::new(0, "agent_binary", &"aa".repeat(32), true)).unwrap()
    );
    assert_eq!(
        kind(
            v.verify_quote(&q, Some(log.as_str()), rd, UnixNanos(AT_NS))
                .await
        ),
        "Rtmr3Mismatch"
    );
    // The same event unbound replays to zero: accepted.
    let unbound = log.replace("\"bound\":true", "\"bound\":false");
    let a = v
        .verify_quote(&q, Some(unbound.as_str()), rd, UnixNanos(AT_NS))
        .await
        .unwrap();
    assert_eq!((a.event_log_events, a.event_log_bound), (1, 0));
    assert_eq!(
        kind(
            v.verify_quote(&q, Some("{not json"), rd, UnixNanos(AT_NS))
                .await
        ),
        "MalformedEventLog"
    );

    // A byte of the body flipped: the quote signature fails.
    let mut bad = q.clone();
    bad[48 + 136] ^= 1;
    assert_eq!(
        kind(v.verify_quote(&bad, None, rd, UnixNanos(AT_NS)).await),
        "QuoteVerificationFailed"
    );
    assert_eq!(
        kind(v.verify_quote(&q[..100], None, rd, UnixNanos(AT_NS)).await),
        "MalformedQuote"
    );

    // Outside the collateral's window the TCB status is unknown: refused.
    let late = AT_NS + 86_400 * 1_000_000_000;
    assert_eq!(
        kind(v.verify_quote(&q, None, rd, UnixNanos(late)).await),
        "CollateralUnavailable"
    );
    // No collateral source at all: refused, never waved through.
    let none = TdxVerifier::new(None, None, TdxPolicy::default());
    assert_eq!(
        kind(none.verify_quote(&q, None, rd, UnixNanos(AT_NS)).await),
        "CollateralUnavailable"
    );

    // A policy that allows only another MRTD.
    let p = TdxPolicy {
        mrtd_allowlist: vec![evidence::report::HexBytes([7; 48])],
        ..TdxPolicy::default()
    };
    assert_eq!(
        kind(
            verifier(p)
                .verify_quote(&q, None, rd, UnixNanos(AT_NS))
                .await
        ),
        "MeasurementNotAllowed"
    );
    // A policy that does not accept UpToDate (a stricter list than the quote meets).
    let p = TdxPolicy {
        allowed_tcb_statuses: vec![],
        ..TdxPolicy::default()
    };
    assert_eq!(
        kind(
            verifier(p)
                .verify_quote(&q, None, rd, UnixNanos(AT_NS))
                .await
        ),
        "TcbStatus"
    );
    // Allowed with a warning: accepted, and the warning is kept for the verdict.
    let p = TdxPolicy {
        allowed_tcb_statuses: vec![],
        warn_tcb_statuses: vec!["UpToDate".into()],
        ..pinned()
    };
    let a = verifier(p)
        .verify_quote(&q, None, rd, UnixNanos(AT_NS))
        .await
        .unwrap();
    assert_eq!(a.reasons.len(), 1);
    assert_eq!(a.reasons[0].code, policy::ReasonCode::TcbStatus);
}

#[tokio::test]
async fn a_configured_root_replaces_intels() {
    let q = quote();
    // Any other root (here a fresh self-signed one) refuses Intel-signed quotes.
    let other = rcgen::generate_simple_self_signed(vec!["x".into()]).unwrap();
    let source = CollateralSource::offline(OfflineConfig::new(
        None,
        Some(data_path("tdx_quote_collateral.json")),
    ))
    .unwrap();
    let v = TdxVerifier::new(
        Some(other.cert.der().to_vec()),
        Some(source),
        TdxPolicy::default(),
    );
    assert_eq!(
        kind(
            v.verify_quote(&q, None, report_data(&q), UnixNanos(AT_NS))
                .await
        ),
        "QuoteVerificationFailed"
    );
}

#[test]
fn a_tdreport_is_checked_for_consistency_and_kept_as_claims() {
    let mut t = vec![0u8; evidence::tdreport::TDREPORT_LEN];
    t[0] = 0x81;
    t[128..192].copy_from_slice(&[9; 64]);
    t[528..576].copy_from_slice(&[3; 48]);
    let v = verifier(TdxPolicy::default());
    let a = v
        .check_tdreport(&t, None, [9; 64], UnixNanos(AT_NS))
        .unwrap();
    assert!(!a.verified);
    assert_eq!(a.tcb_status, None);
    assert_eq!(a.mrtd.0, [3; 48]);
    assert_eq!(a.reasons[0].code, policy::ReasonCode::TdReportOnly);
    assert_eq!(
        kind(v.check_tdreport(&t, None, [8; 64], UnixNanos(AT_NS))),
        "ReportDataMismatch"
    );
    t[512] = 1; // DEBUG
    assert_eq!(
        kind(v.check_tdreport(&t, None, [9; 64], UnixNanos(AT_NS))),
        "DebugTd"
    );
    assert_eq!(
        kind(v.check_tdreport(&t[..1000], None, [9; 64], UnixNanos(AT_NS))),
        "MalformedQuote"
    );
}

#[tokio::test]
async fn finding10_unpinned_rtmrs_are_yellow() {
    let q = quote();
    let body = evidence::tdx::Quote::parse(&q).unwrap().body;
    // MRTD pinned, the kernel (RTMR1) and command line/initrd (RTMR2) not: yellow.
    let mrtd_only = TdxPolicy {
        mrtd_allowlist: vec![body.mrtd],
        ..TdxPolicy::default()
    };
    let a = verifier(mrtd_only.clone())
        .verify_quote(&q, None, report_data(&q), UnixNanos(AT_NS))
        .await
        .unwrap();
    let v = policy::Verdict::from_reasons(a.reasons.clone());
    assert_eq!(v.status, Status::Warn, "{v:?}");
    assert_eq!(v.reasons.len(), 1, "{v:?}");
    assert_eq!(v.reasons[0].code, ReasonCode::RtmrsUnpinned);
    assert!(v.reasons[0].detail.contains("RTMR1 and RTMR2"), "{v:?}");
    // RTMR1 alone pinned: still yellow, naming RTMR2.
    let one = TdxPolicy {
        rtmr_allowlists: [vec![], vec![body.rtmrs[1]], vec![]],
        ..mrtd_only
    };
    let a = verifier(one)
        .verify_quote(&q, None, report_data(&q), UnixNanos(AT_NS))
        .await
        .unwrap();
    assert_eq!(a.reasons[0].code, ReasonCode::RtmrsUnpinned);
    assert!(a.reasons[0].detail.starts_with("RTMR2 "), "{:?}", a.reasons);
    // Both pinned: green.
    let a = verifier(pinned())
        .verify_quote(&q, None, report_data(&q), UnixNanos(AT_NS))
        .await
        .unwrap();
    assert!(a.reasons.is_empty(), "{:?}", a.reasons);
}

/// The real quote verified inside its collateral's window; its collateral's earliest
/// nextUpdate is one second after the recorded time.
#[tokio::test]
async fn finding05_evidence_ages_past_next_update_pck_and_requote() {
    let q = quote();
    let a = verifier(pinned())
        .verify_quote(&q, None, report_data(&q), UnixNanos(AT_NS))
        .await
        .unwrap();
    let f = &a.freshness;
    let next_update = f.collateral_next_update.unwrap();
    assert_eq!(next_update, AT_NS / SEC + 1);
    let pck = f.pck_not_after.unwrap();
    assert!(pck > next_update);
    assert!(f.quote.is_some());
    let p = policy::TrustPolicy::default();
    let codes = |now_ns: u64| {
        cp_verifier::attest::age_reasons(&a, UnixNanos(now_ns), &p)
            .into_iter()
            .map(|r| (r.code, r.status))
            .collect::<Vec<_>>()
    };
    // Inside the window: nothing.
    assert_eq!(codes(AT_NS), []);
    // Past nextUpdate: red by default (the TCB status can no longer be established).
    assert_eq!(
        codes(next_update * SEC),
        [(ReasonCode::CollateralExpired, Status::Fail)]
    );
    let yellow = policy::TrustPolicy {
        tdx: TdxPolicy {
            expired_collateral: policy::tdx::AgedStatus::Yellow,
            ..TdxPolicy::default()
        },
        ..policy::TrustPolicy::default()
    };
    let r = cp_verifier::attest::age_reasons(&a, UnixNanos(next_update * SEC), &yellow);
    assert_eq!(
        (r[0].code, r[0].status),
        (ReasonCode::CollateralExpired, Status::Warn)
    );
    assert!(r[0].detail.contains("nextUpdate"), "{r:?}");
    // A quote older than 3 x requote_interval (1h by default) is stale.
    assert!(!codes(AT_NS + 3 * 3600 * SEC).contains(&(ReasonCode::QuoteStale, Status::Warn)));
    assert!(codes(AT_NS + (3 * 3600 + 1) * SEC).contains(&(ReasonCode::QuoteStale, Status::Warn)));
    // Past the PCK chain's notAfter: red.
    assert!(codes((pck + 1) * SEC).contains(&(ReasonCode::PckExpired, Status::Fail)));
    // The old record format (no freshness) still loads and ages by its quote time.
    let mut json = serde_json::to_value(&a).unwrap();
    json.as_object_mut().unwrap().remove("freshness");
    let old: cp_verifier::model::TdxAttestation = serde_json::from_value(json).unwrap();
    assert_eq!(old.freshness, Default::default());
    assert_eq!(
        cp_verifier::attest::age_reasons(&old, UnixNanos(AT_NS + 4 * 3600 * SEC), &p)
            .iter()
            .map(|r| r.code)
            .collect::<Vec<_>>(),
        [ReasonCode::QuoteStale]
    );
}

const SEC: u64 = 1_000_000_000;

/// The TEST platform's collateral with its TCB levels' `UpToDate` replaced by
/// `status` and its TCB info `nextUpdate` set, re-signed with the TEST TCB signing key.
fn sim_collateral(status: &str, next_update: &str) -> Vec<u8> {
    use p256::ecdsa::signature::Signer;
    use p256::pkcs8::DecodePrivateKey;
    let mut c: serde_json::Value =
        serde_json::from_slice(tdx_sim::TestPki::collateral_json()).unwrap();
    let tcb = c["tcb_info"]
        .as_str()
        .unwrap()
        .replace(
            "\"tcbStatus\":\"UpToDate\"",
            &format!("\"tcbStatus\":\"{status}\""),
        )
        .replace(
            "\"nextUpdate\":\"2049-12-31T23:59:59Z\"",
            &format!("\"nextUpdate\":\"{next_update}\""),
        );
    let key =
        p256::ecdsa::SigningKey::from_pkcs8_pem(tdx_sim::TestPki::tcb_signing_key_pem()).unwrap();
    let sig: p256::ecdsa::Signature = key.sign(tcb.as_bytes());
    c["tcb_info"] = tcb.into();
    c["tcb_info_signature"] = hex::encode(sig.to_bytes()).into();
    serde_json::to_vec(&c).unwrap()
}

/// The harness's clock start (2027-01-15T08:00:00Z) plus two hours.
const T0_PLUS_2H: &str = "2027-01-15T10:00:00Z";

/// A control plane verifying tdx-sim quotes (TEST root) with collateral from the file
/// `collateral`, MRTD and RTMR1/2 pinned, and a TDX agent registered on it.
async fn tdx_agent(collateral: &[u8]) -> (harness::Cp, harness::TestAgent, PathBuf) {
    use base64::Engine;
    use evidence::{Report, Tier, REPORT_PAYLOAD_TYPE};
    use tdx_sim::{TdReport, TestPki};
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("collateral.json");
    std::fs::write(&file, collateral).unwrap();
    let mut a = harness::TestAgent::new("td-aging");
    let td = TdReport::default();
    let cp = harness::start_with(dir, None, |c| {
        c.enrollment.keys.push(a.enroll());
        c.tdx.root_ca_file = Some(TestPki::root_ca_der_path());
        c.tdx.collateral_file = Some(file.clone());
        c.policy.tdx = toml::from_str(&format!(
            "mrtd_allowlist = [\"{}\"]\nrtmr_allowlists = [[], [\"{}\"], [\"{}\"]]",
            hex::encode(td.mrtd),
            hex::encode(td.rtmrs[1]),
            hex::encode(td.rtmrs[2])
        ))
        .unwrap();
    })
    .await;
    let m = harness::measurements(1, 1);
    let nonce = cp.challenge().await;
    let mut r: Report = a.report(nonce, cp.now(), m).peek().unwrap();
    r.tier = Tier::Tdx;
    let env = guest_agent::agent::sign_payload(&a.signer, REPORT_PAYLOAD_TYPE, &r).unwrap();
    let quote = td.with_report_data(evidence::report_data(&env)).quote_v4();
    let req = evidence::api::RegisterRequest {
        envelope: env.clone(),
        evidence: evidence::api::RegisterEvidence {
            quote: Some(base64::engine::general_purpose::STANDARD.encode(quote)),
            ..Default::default()
        },
    };
    let (s, v) = cp
        .post_raw("/api/v1/register", serde_json::to_vec(&req).unwrap())
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["verdict"]["status"], "pass", "{v}");
    a.seq = 0;
    a.head = evidence::report::HexBytes(env.digest());
    let file = cp.dir.path().join("collateral.json");
    (cp, a, file)
}

/// Advances the clock, keeps the agent pulsing (so liveness stays green), and
/// returns its view.
async fn pulse_after(
    cp: &harness::Cp,
    a: &mut harness::TestAgent,
    d: Duration,
) -> serde_json::Value {
    cp.clock.advance(d);
    let env = a.next_pulse(cp.now(), harness::measurements(1, 1));
    let (s, v) = cp.pulse(&env).await;
    assert_eq!(s, 200, "{v}");
    a.accepted(&env);
    cp.get("/api/v1/agents/td-aging").await.1
}

fn verdict_codes(v: &serde_json::Value) -> Vec<(String, String)> {
    v["verdict"]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["code"].as_str().unwrap().to_string(),
                r["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn finding05_verdict_ages_collateral_and_quote_at_now() {
    // Collateral whose TCB info expires two hours after registration.
    let (cp, mut a, _) = tdx_agent(&sim_collateral("UpToDate", T0_PLUS_2H)).await;
    let v = cp.get("/api/v1/agents/td-aging").await.1;
    assert_eq!(v["badge"], "green", "{v}");
    // The kept quote is not served by the API.
    assert!(v["attestation"]["freshness"].get("quote").is_none(), "{v}");
    assert!(
        v["attestation"]["freshness"]["collateral_next_update"].is_u64(),
        "{v}"
    );
    // Still inside the window an hour later.
    let v = pulse_after(&cp, &mut a, Duration::from_secs(3600)).await;
    assert_eq!(v["badge"], "green", "{v}");
    // Past nextUpdate, nothing confirmed it (the file still holds the old collateral,
    // so re-attestation cannot decide): red, CollateralExpired.
    let v = pulse_after(&cp, &mut a, Duration::from_secs(3600)).await;
    cp.cp.sweep().await.unwrap();
    let v2 = cp.get("/api/v1/agents/td-aging").await.1;
    for v in [&v, &v2] {
        assert_eq!(v["badge"], "red", "{v}");
        assert!(
            verdict_codes(v).contains(&("CollateralExpired".into(), "fail".into())),
            "{v}"
        );
    }
    // An hour more: the quote (not renewed by a re-registration) is 3h old... and at
    // 3h + 1s stale.
    let v = pulse_after(&cp, &mut a, Duration::from_secs(3600 + 1)).await;
    assert!(
        verdict_codes(&v).contains(&("QuoteStale".into(), "warn".into())),
        "{v}"
    );
}

#[tokio::test]
async fn finding05_reattest_flips_the_tcb_status_with_current_collateral() {
    let (cp, mut a, file) = tdx_agent(&sim_collateral("UpToDate", "2049-12-31T23:59:59Z")).await;
    // Not due yet: nothing re-attested.
    assert_eq!(cp.cp.reattest(UnixNanos(cp.now())).await, 0);
    // Intel publishes new TCB info: this platform's level is now OutOfDate.
    std::fs::write(&file, sim_collateral("OutOfDate", "2049-12-31T23:59:59Z")).unwrap();
    let v = pulse_after(&cp, &mut a, Duration::from_secs(3600)).await;
    assert_eq!(
        v["badge"], "green",
        "judged once at registration until re-attested: {v}"
    );
    cp.cp.sweep().await.unwrap();
    let v = cp.get("/api/v1/agents/td-aging").await.1;
    assert_eq!(v["attestation"]["tcb_status"], "OutOfDate", "{v}");
    assert_eq!(v["badge"], "red", "{v}");
    let tcb = v["verdict"]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["code"] == "TcbStatus")
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(tcb["status"], "fail");
    let d = tcb["detail"].as_str().unwrap();
    assert!(d.contains("OutOfDate") && d.contains("was UpToDate"), "{d}");
    let alerts = cp.alerts("AttestationChanged").await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let d = alerts[0]["detail"].as_str().unwrap();
    assert!(d.contains("UpToDate -> OutOfDate"), "{d}");
    assert_eq!(alerts[0]["severity"], 2);

    // Fixed again (the platform's TCB recovered): green, and one more alert.
    std::fs::write(&file, sim_collateral("UpToDate", "2049-12-31T23:59:59Z")).unwrap();
    pulse_after(&cp, &mut a, Duration::from_secs(3600)).await;
    cp.cp.sweep().await.unwrap();
    let v = cp.get("/api/v1/agents/td-aging").await.1;
    assert_eq!(v["attestation"]["tcb_status"], "UpToDate", "{v}");
    assert_eq!(v["badge"], "green", "{v}");
    assert_eq!(cp.alerts("AttestationChanged").await.len(), 2);
    // No change: no alert.
    pulse_after(&cp, &mut a, Duration::from_secs(3600)).await;
    cp.cp.sweep().await.unwrap();
    assert_eq!(cp.alerts("AttestationChanged").await.len(), 2);
}

#[tokio::test]
async fn finding05_an_upstream_failure_while_reattesting_keeps_the_old_evidence() {
    let (cp, mut a, file) = tdx_agent(&sim_collateral("UpToDate", T0_PLUS_2H)).await;
    // The collateral source fails (offline file gone: the same as PCS down).
    std::fs::remove_file(&file).unwrap();
    pulse_after(&cp, &mut a, Duration::from_secs(3600)).await;
    cp.cp.sweep().await.unwrap();
    let v = cp.get("/api/v1/agents/td-aging").await.1;
    // Neither red nor changed: the old evidence stands, with why it was not renewed.
    assert_eq!(v["badge"], "green", "{v}");
    assert_eq!(v["attestation"]["tcb_status"], "UpToDate", "{v}");
    let err = v["attestation"]["freshness"]["reattest_error"]
        .as_str()
        .unwrap();
    assert!(err.starts_with("CollateralUnavailable"), "{err}");
    assert!(cp.alerts("AttestationChanged").await.is_empty());
    // It ages: past its nextUpdate it is red, CollateralExpired.
    let v = pulse_after(&cp, &mut a, Duration::from_secs(3600)).await;
    assert_eq!(v["badge"], "red", "{v}");
    assert!(
        verdict_codes(&v).contains(&("CollateralExpired".into(), "fail".into())),
        "{v}"
    );
    // Collateral back (fresh, published later): confirmed green again.
    std::fs::write(&file, sim_collateral("UpToDate", "2049-12-31T23:59:59Z")).unwrap();
    cp.clock.advance(Duration::from_secs(61));
    cp.cp.sweep().await.unwrap();
    let v = pulse_after(&cp, &mut a, Duration::from_secs(1)).await;
    assert_eq!(v["badge"], "green", "{v}");
    assert!(
        v["attestation"]["freshness"]["reattest_error"].is_null(),
        "{v}"
    );
}
