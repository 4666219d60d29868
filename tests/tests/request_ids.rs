//! Request ids, end to end: a real `cp-verifier serve --log-json` answers every
//! request with an `x-request-id`, keeps a caller's well-formed id, replaces a
//! malformed one, and names the id in the JSON log line of every refusal, so an
//! operator can go from a client's error to the control plane's log.

use provenant_tests::fleet::{CpProcess, CpSpec};
use serde_json::Value;

/// The JSON log lines whose `request_id` (in the `request` span) is `id`.
fn lines_for(log: &str, id: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["span"]["request_id"] == id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_has_a_request_id_and_refusals_are_logged_under_it() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let mut spec = CpSpec::new(&root.join("cp-data"), &root.join("audit.jsonl"));
    spec.json_logs = true;
    let cp = CpProcess::start(&spec, &root.join("cp.toml"), root).await;
    let http = reqwest::Client::new();
    let base = spec.base_url();

    // A fresh id on a plain success.
    let r = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let fresh = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(fresh.len(), 32, "{fresh}");
    assert!(fresh.bytes().all(|c| c.is_ascii_hexdigit()), "{fresh}");
    let r = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_ne!(r.headers()["x-request-id"].to_str().unwrap(), fresh);

    // A caller's id is kept: a refused pulse (not JSON) ...
    let r = http
        .post(format!("{base}/api/v1/heartbeat"))
        .header("x-request-id", "lb-7f3a:0001")
        .header("content-type", "application/json")
        .body("not a pulse")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["x-request-id"], "lb-7f3a:0001");
    let kind = r.json::<Value>().await.unwrap()["error"]["kind"]
        .as_str()
        .unwrap()
        .to_owned();

    // ... and so is one on a read refused by the access guard (no token).
    let r = http
        .get(format!("{base}/api/v1/agents?token=secret-in-query"))
        .header("x-request-id", "op-curl-42")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["x-request-id"], "op-curl-42");

    // A malformed id (too long, or characters that could forge log structure) is
    // replaced by a fresh one.
    for bad in ["x".repeat(65), "a\"} {\"b".to_owned()] {
        let r = http
            .get(format!("{base}/healthz"))
            .header("x-request-id", &bad)
            .send()
            .await
            .unwrap();
        let got = r.headers()["x-request-id"].to_str().unwrap();
        assert_ne!(got, bad);
        assert_eq!(got.len(), 32);
    }

    // The log: one JSON object per line, the refusals logged under their ids with
    // status and kind; the query (which may carry a token) is never logged.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let log = cp.log_text();
    let pulse = lines_for(&log, "lb-7f3a:0001");
    let answered = pulse
        .iter()
        .find(|v| v["fields"]["message"] == "answered")
        .unwrap_or_else(|| panic!("no answered line for the pulse in:\n{log}"));
    assert_eq!(answered["fields"]["status"], 400, "{answered}");
    assert_eq!(answered["fields"]["kind"], kind.as_str(), "{answered}");
    assert_eq!(answered["span"]["path"], "/api/v1/heartbeat", "{answered}");
    assert_eq!(answered["span"]["method"], "POST", "{answered}");
    let read = lines_for(&log, "op-curl-42");
    let answered = read
        .iter()
        .find(|v| v["fields"]["message"] == "answered")
        .unwrap_or_else(|| panic!("no answered line for the read in:\n{log}"));
    assert_eq!(answered["fields"]["status"], 401, "{answered}");
    assert_eq!(answered["fields"]["kind"], "Unauthorized", "{answered}");
    assert!(
        !log.contains("secret-in-query"),
        "a query reached the log:\n{log}"
    );
    // Successes are not logged at the default level (a fleet's pulses would flood it).
    assert!(lines_for(&log, &fresh).is_empty(), "{log}");
}
