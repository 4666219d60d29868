//! The agent page in a real browser: why each badge is what it is, over time.
//!
//! A real `cp-verifier serve` with `[provenance]` (a local server playing the GitHub
//! attestations API, bundles signed with the checked-in TEST Sigstore), real
//! `guest-agent run` processes on simulated TDs (tdx-sim), and Debian's headless
//! Chromium rendering `/agent/{id}`:
//! - the verdict timeline shows a green → red change caused by an unannounced policy
//!   change (`PolicyChanged`) and the red → green change an operator's baseline
//!   acceptance caused (`BaselineAccepted`);
//! - the why chain of an attested TD reaches the bundle's workflow, ref and Rekor log
//!   index, the TCB status and the collateral window, and the RTMR3 log entries;
//! - a tampered RTMR3 log (an accepted entry rewritten while the agent was down) is
//!   explained: the quoted and replayed RTMR3, and the first entry that differs from
//!   the log accepted before, with both values;
//! - an MRTD nobody attested is compared with the attested one (the nearest);
//! - a TD whose RTMR3 holds an extension its log lacks gets a page though it never
//!   registered, saying replay cannot place the divergence.
//!
//! Screenshots go to `target/test-artifacts/`.

#[path = "support/publish.rs"]
mod support;

use evidence::eventlog::{self, Rtmr3Event};
use provenant_tests::chromium::{artifacts_dir, dump_dom, screenshot};
use provenant_tests::tdx::{enrollment, td_with, Td};
use provenant_tests::{alerts_of, free_port, wait_for, Http, Proc, OPERATOR_TOKEN};
use serde_json::{json, Value};
use sigstore_testsign::github_api::GithubApi;
use sigstore_testsign::Identity;
use tdx_sim::{Behaviour, RtmrBehaviour, TdReport, TestPki};

const REPO: &str = "acme/guest-image";
const WORKFLOW: &str = ".github/workflows/release.yml";

fn agent(root: &std::path::Path, t: &Td) -> Proc {
    Proc::spawn(
        "guest-agent",
        &["run", "--config", t.config.to_str().unwrap()],
        &root.join(t.id),
    )
}

/// The `<tr ...>` rows of `dom` whose start tag contains all of `attrs`.
fn rows_with<'a>(dom: &'a str, attrs: &[&str]) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = dom[from..].find("<tr") {
        let start = from + i;
        let end = dom[start..].find("</tr>").map_or(dom.len(), |j| start + j);
        let tag_end = dom[start..].find('>').map_or(end, |j| start + j);
        let tag = &dom[start..tag_end];
        if attrs.iter().all(|a| tag.contains(a)) {
            out.push(&dom[start..end]);
        }
        from = end.max(start + 3);
    }
    out
}

async fn badge(http: &Http, cp: &str, id: &str) -> Option<String> {
    let (s, v) = http.get(&format!("{cp}/api/v1/agents/{id}")).await?;
    (s == 200).then(|| v["badge"].as_str().unwrap_or_default().to_string())
}

/// The newest alert of `agent` with an explanation that satisfies `ok`.
async fn explained(http: &Http, cp: &str, agent: &str, ok: impl Fn(&Value) -> bool) -> Value {
    wait_for(60, &format!("an explained refusal of {agent}"), || async {
        let (_, v) = http
            .get(&format!(
                "{cp}/api/v1/alerts?agent={agent}&state=all&limit=100"
            ))
            .await?;
        v["alerts"]
            .as_array()?
            .iter()
            .find(|a| a["kind"] == "AttestationRefused" && ok(&a["explain"]))
            .cloned()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_page_explains_badges_over_time() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let http = Http::new();
    let api = GithubApi::start().await.unwrap();
    let cp_port = free_port();
    let cp = format!("http://127.0.0.1:{cp_port}");
    let release = TdReport::default().with_mrtd([0x11; 48]);
    let mut unattested_mrtd = [0x11; 48];
    unattested_mrtd[7] = 0x99;
    unattested_mrtd[40] = 0x98;
    support::publish(
        &api,
        REPO,
        &release.mrtd,
        &Identity::github(REPO, WORKFLOW, "refs/heads/main"),
    );

    let good = td_with(
        root,
        &cp,
        "node-release",
        Behaviour::Honest,
        RtmrBehaviour::Honest,
        release.clone(),
    );
    let unlogged = td_with(
        root,
        &cp,
        "node-unlogged",
        Behaviour::Honest,
        RtmrBehaviour::ExtraExtension,
        release.clone(),
    );
    let unattested = td_with(
        root,
        &cp,
        "node-unattested",
        Behaviour::Honest,
        RtmrBehaviour::Honest,
        TdReport::default().with_mrtd(unattested_mrtd),
    );
    let tds = [good, unlogged, unattested];
    let operator = root.join("operator.token");
    provenant_base::fsutil::write_private(&operator, OPERATOR_TOKEN.as_bytes()).unwrap();
    let cp_cfg = root.join("cp.toml");
    std::fs::write(
        &cp_cfg,
        format!(
            r#"listen = "127.0.0.1:{cp_port}"
data_dir = "{data}"
alert_cooldown = "0s"
sweep_interval = "200ms"
operator_token_file = "{operator}"

[policy]
clock_unsynchronised = "ignore"

[tdx]
root_ca_file = "{root_ca}"
collateral_file = "{collateral}"

[provenance]
repository = "{REPO}"
signer_workflow = "{REPO}/{WORKFLOW}"
source_ref = "refs/heads/main"
trusted_root_file = "{trusted_root}"
github_api = "{github}"
match_rtmrs = [1, 2]

{enrolled}"#,
            data = root.join("cp-data").display(),
            operator = operator.display(),
            root_ca = TestPki::root_ca_der_path().display(),
            collateral = TestPki::collateral_path().display(),
            trusted_root = sigstore_testsign::keys::trusted_root_path().display(),
            github = api.base(),
            enrolled = enrollment(&tds),
        ),
    )
    .unwrap();
    let _cp = Proc::spawn(
        "cp-verifier",
        &["serve", "--config", cp_cfg.to_str().unwrap()],
        root,
    );
    let mut good_agent = agent(root, &tds[0]);

    // 1. Registered green, attested by the release workflow.
    wait_for(30, "node-release green", || async {
        let (s, v) = http
            .get(&format!("{cp}/api/v1/agents/node-release"))
            .await?;
        (s == 200 && v["sequence"].as_u64()? >= 1 && v["badge"] == "green").then_some(())
    })
    .await;
    // The nodes that will be refused start once an MRTD was verified (so the refused
    // MRTD has an attested one to be compared with).
    let _others = [agent(root, &tds[1]), agent(root, &tds[2])];

    // 2. Red, then green again: an unannounced policy change, then the operator's
    // acceptance.
    std::fs::write(&tds[0].policy, "allow = [\"evil.example/miner\"]\n").unwrap();
    wait_for(30, "node-release red after the policy change", || async {
        (badge(&http, &cp, "node-release").await? == "red").then_some(())
    })
    .await;
    assert!(!alerts_of(&http, &cp, "PolicyChanged").await.is_empty());
    let r = http
        .c
        .post(format!("{cp}/api/v1/agents/node-release/expect"))
        .bearer_auth(OPERATOR_TOKEN)
        .json(&json!({"accept_current": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    wait_for(30, "node-release green after the acceptance", || async {
        (badge(&http, &cp, "node-release").await? == "green").then_some(())
    })
    .await;
    let (_, hist) = http
        .get(&format!("{cp}/api/v1/agents/node-release/history"))
        .await
        .unwrap();
    let changes = hist["changes"].as_array().unwrap();
    let to_red = changes
        .iter()
        .find(|c| c["subject"] == "" && c["badge"] == "red" && c["previous"] == "green")
        .unwrap_or_else(|| panic!("no green -> red change: {hist}"));
    assert!(
        to_red["cause"].as_str().unwrap().contains("PolicyChanged"),
        "{to_red}"
    );
    let to_green = changes
        .iter()
        .find(|c| c["subject"] == "" && c["badge"] == "green" && c["previous"] == "red")
        .unwrap_or_else(|| panic!("no red -> green change: {hist}"));
    let cause = to_green["cause"].as_str().unwrap();
    assert!(
        cause.contains("BaselineAccepted") && cause.contains("gone: PolicyChanged"),
        "{to_green}"
    );
    assert!(hist["pulses"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["accepted"].as_u64() > Some(0)));

    // The page shows the same: the timeline and its causes, the pulses, the chain.
    let page = dump_dom(&format!("{cp}/agent/node-release"));
    let red = rows_with(&page, &["data-to=\"red\"", "data-from=\"green\""]);
    assert!(
        red.iter().any(|r| r.contains("PolicyChanged")),
        "no green -> red row naming PolicyChanged in {page}"
    );
    let green = rows_with(&page, &["data-to=\"green\"", "data-from=\"red\""]);
    assert!(
        green.iter().any(|r| r.contains("BaselineAccepted")),
        "no red -> green row naming BaselineAccepted in {page}"
    );
    assert!(page.contains("<svg class=\"timeline\""), "{page}");
    assert!(page.contains("data-mark="), "{page}");
    assert!(!page.contains("data-pulses-accepted=\"0\""), "{page}");
    let why = |k: &str| {
        rows_with(&page, &[&format!("data-why=\"{k}\"")])
            .first()
            .map(|r| r.to_string())
            .unwrap_or_else(|| panic!("no why-chain link {k} in {page}"))
    };
    assert!(why("workflow").contains(WORKFLOW), "{}", why("workflow"));
    assert!(why("repository").contains(REPO));
    assert!(why("ref").contains("refs/heads/main"));
    let log_index = why("log-index");
    assert!(
        log_index.chars().any(|c| c.is_ascii_digit()) && !log_index.contains(">none<"),
        "the TEST Sigstore logs every bundle: {log_index}"
    );
    assert!(why("tcb").contains("UpToDate"));
    assert!(why("collateral").contains("UTC"), "{}", why("collateral"));
    assert!(why("event-log").contains("replays to the quoted RTMR3"));
    assert!(why("rtmr1").contains("equals the attested value"));
    assert!(page.contains("data-log-entry=\"0\""), "{page}");
    assert!(page.contains("data-rule=") || page.contains("data-reasons=\"none\""));
    let shots = artifacts_dir();
    let shot = |name: &str, url: String| {
        let png = shots.join(name);
        screenshot(&url, &png);
        println!("screenshot: {}", png.display());
    };
    shot(
        "agent-timeline-why-chain.png",
        format!("{cp}/agent/node-release"),
    );

    // 3. A tampered log: an accepted entry rewritten while the agent was down. The
    // restarted agent sends its whole log; RTMR3 does not replay; the explanation
    // names the entry against the log accepted before.
    good_agent.kill();
    let text = std::fs::read(&tds[0].event_log).unwrap();
    let mut events = eventlog::parse_jsonl(&text).unwrap();
    let (i, e) = events
        .iter()
        .enumerate()
        .find(|(_, e)| e.kind == eventlog::KIND_POLICY && e.bound)
        .map(|(i, e)| (i, e.clone()))
        .expect("a bound policy event");
    events[i] = Rtmr3Event::new(e.seq, &e.kind, &"ab".repeat(32), true);
    let mut tampered = String::new();
    for e in &events {
        tampered.push_str(&serde_json::to_string(e).unwrap());
        tampered.push('\n');
    }
    std::fs::write(&tds[0].event_log, tampered).unwrap();
    let _good_again = agent(root, &tds[0]);
    let a = explained(&http, &cp, "node-release", |x| {
        x["subject"] == "RTMR3" && x["divergence"].is_string()
    })
    .await;
    let x = &a["explain"];
    let d = x["divergence"].as_str().unwrap();
    assert!(
        d.starts_with(&format!("entry {} (policy)", e.seq)) && d.contains(&e.value),
        "{x}"
    );
    assert_eq!(x["found"], hex::encode(eventlog::replay(&events)), "{x}");
    assert_eq!(
        x["expected"],
        hex::encode(tds[0].rtmr.current_rtmr3()),
        "{x}"
    );
    let page = dump_dom(&format!("{cp}/agent/node-release"));
    // One row per explained refusal (the agent keeps retrying), each the same entry.
    let first = rows_with(&page, &["data-first-divergent"]);
    assert!(!first.is_empty(), "{page}");
    assert!(
        first[0].contains(&format!("data-entry=\"{}\"", e.seq)),
        "{}",
        first[0]
    );
    assert!(
        first[0].contains("differs from the accepted entry"),
        "{}",
        first[0]
    );
    assert!(
        page.contains(&hex::encode(tds[0].rtmr.current_rtmr3())),
        "{page}"
    );
    assert!(page.contains("data-divergence"), "{page}");
    shot(
        "agent-rtmr3-explained.png",
        format!("{cp}/agent/node-release"),
    );

    // 4. An MRTD nobody attested: compared with the attested one, nearest first.
    let a = explained(&http, &cp, "node-unattested", |x| {
        x["subject"] == "MRTD" && !x["candidates"].as_array().is_none_or(Vec::is_empty)
    })
    .await;
    let c = &a["explain"]["candidates"][0];
    assert_eq!(c["value"], hex::encode(release.mrtd), "{a}");
    assert_eq!(
        (
            c["differing_bytes"].as_u64(),
            c["first_difference"].as_u64()
        ),
        (Some(2), Some(7))
    );
    assert!(c["attested_by"].as_str().unwrap().contains(WORKFLOW), "{c}");
    let page = dump_dom(&format!("{cp}/agent/node-unattested"));
    assert!(page.contains("data-registered=\"no\""), "{page}");
    let nearest = rows_with(&page, &["data-nearest"]);
    assert!(
        nearest
            .first()
            .is_some_and(|r| r.contains(&hex::encode(release.mrtd))),
        "{page}"
    );

    // 5. An extension the log never had: the page of a TD that never registered.
    explained(&http, &cp, "node-unlogged", |x| x["subject"] == "RTMR3").await;
    let page = dump_dom(&format!("{cp}/agent/node-unlogged"));
    assert!(page.contains("data-registered=\"no\""), "{page}");
    assert!(page.contains("data-explain=\"RTMR3\""), "{page}");
    assert!(page.contains("replay alone cannot say where"), "{page}");
    shot(
        "agent-unregistered-explained.png",
        format!("{cp}/agent/node-unlogged"),
    );
    shot(
        "alerts-explained.png",
        format!("{cp}/alerts?state=all&agent=node-unattested"),
    );
}
