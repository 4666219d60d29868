//! `cp-verifier loadgen`, as an operator runs it: print the simulated agents'
//! enrollment, add it to a real `cp-verifier serve`'s config, run the load, read the
//! JSON report. A load against a control plane that did not enroll the agents fails
//! with a readable error, and a plan outside the bounds is a usage error.

use std::process::Command;

use provenant_tests::binary;
use provenant_tests::fleet::{CpProcess, CpSpec};
use serde_json::Value;

/// Runs `cp-verifier loadgen ARGS`: exit code and stdout.
fn loadgen(args: &[&str]) -> (i32, String) {
    let out = Command::new(binary("cp-verifier"))
        .arg("loadgen")
        .args(args)
        .output()
        .expect("run cp-verifier loadgen");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadgen_measures_a_real_control_plane_and_says_why_it_cannot() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();

    let (code, toml) = loadgen(&[
        "--url",
        "http://127.0.0.1:9",
        "--agents",
        "8",
        "--seed",
        "e2e",
        "--print-enrollment",
    ]);
    assert_eq!(code, 0, "{toml}");
    assert_eq!(toml.matches("[[enrollment.keys]]").count(), 8, "{toml}");
    assert!(toml.contains("agent_id = \"loadgen-7\""), "{toml}");

    let mut spec = CpSpec::new(&root.join("cp-data"), &root.join("audit.jsonl"));
    spec.extra = format!("\n{toml}");
    let cp = CpProcess::start(&spec, &root.join("cp.toml"), root).await;
    let base = spec.base_url();

    let run = |seed: &'static str| {
        let base = base.clone();
        tokio::task::spawn_blocking(move || {
            loadgen(&[
                "--url",
                &base,
                "--agents",
                "8",
                "--pulses",
                "25",
                "--seed",
                seed,
                "--interval",
                "1s",
            ])
        })
    };
    let (code, out) = run("e2e").await.unwrap();
    assert_eq!(code, 0, "{out}\n{}", cp.log_text());
    let r: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(r["planned"], 200, "{r}");
    assert_eq!(r["accepted"], 200, "{r}");
    assert_eq!(r["lost"], 0, "{r}");
    assert_eq!(r["latency"]["count"], 200, "{r}");
    let (p50, p99) = (
        r["latency"]["p50_ms"].as_f64().unwrap(),
        r["latency"]["p99_ms"].as_f64().unwrap(),
    );
    assert!(p50 > 0.0 && p50 <= p99, "{r}");
    assert!(r["accepted_per_s"].as_f64().unwrap() > 0.0, "{r}");
    // The control plane holds every chain whole.
    for i in [0, 7] {
        let a = cp.client.agent(&format!("loadgen-{i}")).await.unwrap();
        assert_eq!(a["sequence"], 25, "{a}");
    }

    // Keys this control plane never enrolled: exit 1, and the error says where.
    let (code, out) = run("not-enrolled").await.unwrap();
    assert_eq!(code, 1, "{out}");
    let e: Value = serde_json::from_str(out.trim()).unwrap();
    let msg = e["error"].as_str().unwrap();
    assert!(msg.contains("registering loadgen-0"), "{msg}");
    assert!(msg.contains("403"), "{msg}");

    // Outside the bounds: a usage error before any request.
    let (code, out) = loadgen(&["--url", &base, "--agents", "0"]);
    assert_eq!(code, 2, "{out}");
    let (code, out) = loadgen(&["--url", &base, "--agents", "2000", "--pulses", "1000"]);
    assert_eq!(code, 2, "{out}");
}
