//! End to end, build provenance for MRTD: real `cp-verifier serve` and `guest-agent run`
//! processes on simulated TDs (tdx-sim), a local server playing the GitHub
//! attestations API, and bundles made with the checked-in TEST Sigstore key set
//! (sigstore-testsign), exactly as CI's `actions/attest` makes them for a measurement
//! manifest.
//!
//! A TD whose MRTD the trusted workflow attested registers green with its provenance;
//! a TD whose MRTD nobody attested, and one whose MRTD was attested by another
//! workflow, are refused with 403 `MrtdNotAttested`.

#[path = "support/publish.rs"]
mod support;

use provenant_tests::tdx::{enrollment, start_agents, td_with};
use provenant_tests::{alerts_of, free_port, wait_for, Http, Proc};
use serde_json::Value;
use sigstore_testsign::github_api::GithubApi;
use sigstore_testsign::Identity;
use tdx_sim::{Behaviour, RtmrBehaviour, TdReport, TestPki};

const REPO: &str = "acme/guest-image";
const WORKFLOW: &str = ".github/workflows/release.yml";

fn publish(api: &GithubApi, mrtd: &[u8; 48], identity: &Identity) {
    support::publish(api, REPO, mrtd, identity);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mrtd_attested_by_the_trusted_workflow_or_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let http = Http::new();
    let api = GithubApi::start().await.unwrap();
    let cp_port = free_port();
    let cp = format!("http://127.0.0.1:{cp_port}");

    let release = TdReport::default().with_mrtd([0x11; 48]);
    let unattested = TdReport::default().with_mrtd([0x22; 48]);
    let nightly = TdReport::default().with_mrtd([0x33; 48]);
    publish(
        &api,
        &release.mrtd,
        &Identity::github(REPO, WORKFLOW, "refs/heads/main"),
    );
    publish(
        &api,
        &nightly.mrtd,
        &Identity::github(REPO, ".github/workflows/nightly.yml", "refs/heads/main"),
    );

    let (b, r) = (Behaviour::Honest, RtmrBehaviour::Honest);
    let tds = [
        td_with(root, &cp, "node-release", b, r, release.clone()),
        td_with(root, &cp, "node-unattested", b, r, unattested),
        td_with(root, &cp, "node-nightly", b, r, nightly),
    ];
    let cp_cfg = root.join("cp.toml");
    std::fs::write(
        &cp_cfg,
        format!(
            r#"listen = "127.0.0.1:{cp_port}"
data_dir = "{data}"
alert_cooldown = "0s"

# The test host runs no NTP daemon: its kernel reports the clock unsynchronised,
# which would turn every agent yellow (ClockUnsynchronised; judged in cp-verifier's api tests).
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
    let _agents = start_agents(root, &tds);

    // The released image: registered in tier tdx, green, with its provenance.
    let v: Value = wait_for(30, "node-release registered", || async {
        let (s, v) = http
            .get(&format!("{cp}/api/v1/agents/node-release"))
            .await?;
        (s == 200 && v["sequence"].as_u64()? >= 1).then_some(v)
    })
    .await;
    assert_eq!(v["tier"], "tdx", "{v}");
    assert_eq!(v["badge"], "green", "{v}");
    let p = &v["attestation"]["provenance"];
    assert_eq!(p["repository"], REPO, "{v}");
    assert_eq!(
        p["san"],
        format!("https://github.com/{REPO}/{WORKFLOW}@refs/heads/main")
    );
    assert_eq!(v["attestation"]["mrtd"], hex::encode(release.mrtd));

    // Not attested at all, and attested by the wrong workflow: 403 MrtdNotAttested,
    // naming what was tried.
    for (id, want) in [
        ("node-unattested", "no attestation found"),
        ("node-nightly", "signer_workflow"),
    ] {
        let t = tds.iter().find(|t| t.id == id).unwrap();
        let err = provenant_tests::tdx::refused(&http, &cp, t, "MrtdNotAttested").await;
        assert!(err.contains(want), "{id}: {err}");
    }
    let refused = alerts_of(&http, &cp, "AttestationRefused").await;
    assert!(refused.iter().any(|a| a["agent_id"] == "node-nightly"));
}
