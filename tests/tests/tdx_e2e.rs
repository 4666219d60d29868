//! End to end in tier `tdx`, without TDX hardware: real `guest-agent run` processes
//! whose configfs-tsm and RTMR directories are played by tdx-sim (a thread that acts
//! as the kernel and signs real quotes with a TEST PCK chain), and a real
//! `cp-verifier serve` that trusts that TEST root only because its config names it by
//! path, with the TEST collateral as an offline file.
//!
//! One honest agent registers in tier `tdx` (green), extends RTMR3 for every change and
//! takes a fresh quote. Three broken platforms are each refused with 403 and their
//! typed reason: a quote whose REPORTDATA is not the report's binding, a DEBUG TD, and
//! an RTMR3 extended behind the event log's back.

use provenant_tests::tdx::td;
use provenant_tests::{alerts_of, free_port, wait_for, Http, Proc};
use serde_json::Value;
use tdx_sim::{Behaviour, RtmrBehaviour, TestPki};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tdx_tier_end_to_end_with_a_simulated_platform() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let http = Http::new();
    let cp_port = free_port();
    let cp = format!("http://127.0.0.1:{cp_port}");

    let tds = [
        td(
            root,
            &cp,
            "node-tdx",
            Behaviour::Honest,
            RtmrBehaviour::Honest,
        ),
        td(
            root,
            &cp,
            "node-tampered",
            Behaviour::TamperReportData,
            RtmrBehaviour::Honest,
        ),
        td(
            root,
            &cp,
            "node-debug",
            Behaviour::Debug,
            RtmrBehaviour::Honest,
        ),
        td(
            root,
            &cp,
            "node-rtmr3",
            Behaviour::Honest,
            RtmrBehaviour::ExtraExtension,
        ),
    ];
    let enrolled = provenant_tests::tdx::enrollment(&tds);
    let cp_cfg = root.join("cp.toml");
    std::fs::write(
        &cp_cfg,
        format!(
            r#"listen = "127.0.0.1:{cp_port}"
data_dir = "{data}"
heartbeat_interval = "30s"
sweep_interval = "200ms"
alert_cooldown = "0s"

# The test host runs no NTP daemon: its kernel reports the clock unsynchronised,
# which would turn every agent yellow (ClockUnsynchronised; judged in cp-verifier's api tests).
[policy]
clock_unsynchronised = "ignore"

[policy.tdx]
mrtd_allowlist = ["{mrtd}"]
rtmr_allowlists = [[], ["{rtmr1}"], ["{rtmr2}"]]

[tdx]
root_ca_file = "{root_ca}"
collateral_file = "{collateral}"

{enrolled}"#,
            data = root.join("cp-data").display(),
            root_ca = TestPki::root_ca_der_path().display(),
            collateral = TestPki::collateral_path().display(),
            mrtd = hex::encode(tdx_sim::TdReport::default().mrtd),
            rtmr1 = hex::encode(tdx_sim::TdReport::default().rtmrs[1]),
            rtmr2 = hex::encode(tdx_sim::TdReport::default().rtmrs[2]),
        ),
    )
    .unwrap();
    let _cp = Proc::spawn(
        "cp-verifier",
        &["serve", "--config", cp_cfg.to_str().unwrap()],
        root,
    );
    let agents = provenant_tests::tdx::start_agents(root, &tds);

    // The honest TD registers in tier tdx: its quote verified under the TEST root with
    // the TEST collateral, its event log replayed to the quoted RTMR3.
    let good = &tds[0];
    let v: Value = wait_for(30, "node-tdx registered and pulsing", || async {
        let (s, v) = http.get(&format!("{cp}/api/v1/agents/node-tdx")).await?;
        (s == 200 && v["sequence"].as_u64()? >= 2).then_some(v)
    })
    .await;
    assert_eq!(v["tier"], "tdx", "{v}");
    assert_eq!(v["badge"], "green", "{v}");
    let a = &v["attestation"];
    assert_eq!(a["verified"], true, "{v}");
    assert_eq!(a["tcb_status"], "UpToDate");
    assert_eq!(a["fmspc"], hex::encode(tdx_sim::platform::FMSPC));
    assert_eq!(a["mrtd"], hex::encode(good.kernel.body().mrtd));
    assert_eq!(a["event_log_events"], 2, "agent binary and policy digest");
    assert_eq!(a["event_log_bound"], 2);
    assert_eq!(v["measurements"]["platform"]["tee"], "tdx");

    // The agent's own view agrees, and its log really explains the register.
    let (_, h) = http.get(&format!("{}/health", good.api)).await.unwrap();
    assert_eq!(h["tier"], "tdx");
    assert_eq!(h["verdict"]["badge"], "green", "{h}");
    assert_eq!(h["event_log"]["events"], 2);
    assert_eq!(h["event_log"]["bound"], true);
    let log = evidence::eventlog::parse_jsonl(&std::fs::read(&good.event_log).unwrap()).unwrap();
    assert_eq!(evidence::eventlog::replay(&log), good.rtmr.current_rtmr3());
    assert_eq!(good.rtmr.extensions(), 2);

    // The dashboard shows the evidence, labelled as verified.
    let page = http
        .c
        .get(format!("{cp}/agent/node-tdx"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("DCAP-verified quote"), "{page}");
    assert!(
        page.contains("UpToDate") && page.contains("2 events, 2 bound"),
        "{page}"
    );

    // With nothing changed, a fresh quote still comes every requote_interval.
    let (q0, t0) = (
        good.kernel.quotes_served(),
        a["verified_at_ns"].as_u64().unwrap(),
    );
    let v: Value = wait_for(15, "a fresh quote after requote_interval", || async {
        let (_, v) = http.get(&format!("{cp}/api/v1/agents/node-tdx")).await?;
        (v["attestation"]["verified_at_ns"].as_u64()? > t0).then_some(v)
    })
    .await;
    assert!(good.kernel.quotes_served() > q0);
    assert_eq!(
        v["attestation"]["event_log_events"], 2,
        "no change, no new event"
    );
    assert_eq!(v["badge"], "green", "{v}");

    // A changed policy file: a new RTMR3 event, a fresh quote carrying it, and the
    // change itself still judged against the last-known-good.
    let quotes_before = good.kernel.quotes_served();
    std::fs::write(&good.policy, "allow = [\"evil.example/miner\"]\n").unwrap();
    let v: Value = wait_for(20, "re-quoted after the policy change", || async {
        let (_, v) = http.get(&format!("{cp}/api/v1/agents/node-tdx")).await?;
        (v["attestation"]["event_log_events"] == 3).then_some(v)
    })
    .await;
    assert_eq!(v["attestation"]["event_log_bound"], 3);
    assert!(good.kernel.quotes_served() > quotes_before);
    assert_eq!(good.rtmr.extensions(), 3);
    assert_eq!(
        v["badge"], "red",
        "an unannounced policy change stays red: {v}"
    );
    assert!(!alerts_of(&http, &cp, "PolicyChanged").await.is_empty());

    // Each broken platform: refused with 403 and its typed reason, never registered.
    for (t, want) in [
        (&tds[1], "ReportDataMismatch"),
        (&tds[2], "DebugTd"),
        (&tds[3], "Rtmr3Mismatch"),
    ] {
        provenant_tests::tdx::refused(&http, &cp, t, want).await;
        let refused = alerts_of(&http, &cp, "AttestationRefused").await;
        assert!(
            refused
                .iter()
                .any(|a| a["agent_id"] == t.id && a["detail"].as_str().unwrap_or("").contains(want)),
            "{}: {refused:?}",
            t.id
        );
    }
    drop(agents);
}
