//! `/metrics` as a Prometheus scraper sees it: read access needed, counters that
//! follow real registrations and pulses (accepted and refused by kind), the
//! registration and store-write histograms, and the agents-by-badge gauge.

mod harness;

use harness::{measurements, start, TestAgent, VIEWER_TOKEN};

async fn scrape(cp: &harness::Cp, token: Option<&str>) -> (u16, String, String) {
    let mut r = cp.http.get(format!("{}/metrics", cp.base));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let r = r.send().await.unwrap();
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    (r.status().as_u16(), ct, r.text().await.unwrap())
}

/// The value of the sample whose line starts with `series` (name and labels).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn metrics_count_what_the_control_plane_did() {
    let mut a = TestAgent::new("node-1");
    let cp = start(|c| c.enrollment.keys.push(a.enroll())).await;
    assert_eq!(scrape(&cp, None).await.0, 401);

    assert_eq!(cp.register(&mut a, measurements(1, 1)).await.0, 200);
    let mut last = None;
    for _ in 0..3 {
        let p = a.next_pulse(cp.now(), measurements(1, 1));
        assert_eq!(cp.pulse(&p).await.0, 200);
        a.accepted(&p);
        last = Some(p);
    }
    // The last pulse again: refused as a duplicate replay.
    let (st, v) = cp.pulse(&last.unwrap()).await;
    assert_eq!(st, 409, "{v}");
    // An unknown agent's registration attempt.
    let mut stranger = TestAgent::new("node-9");
    assert_eq!(cp.register(&mut stranger, measurements(1, 1)).await.0, 403);

    let (st, ct, t) = scrape(&cp, Some(VIEWER_TOKEN)).await;
    assert_eq!(st, 200, "{t}");
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    assert_eq!(
        sample(&t, "provenant_pulses_total{result=\"accepted\"}"),
        Some(3.0),
        "{t}"
    );
    assert_eq!(
        sample(&t, "provenant_pulses_total{result=\"Replay\"}"),
        Some(1.0),
        "{t}"
    );
    assert_eq!(
        sample(&t, "provenant_registrations_total{result=\"accepted\"}"),
        Some(1.0),
        "{t}"
    );
    assert_eq!(
        sample(&t, "provenant_registrations_total{result=\"Unenrolled\"}"),
        Some(1.0),
        "{t}"
    );
    assert_eq!(
        sample(&t, "provenant_registration_seconds_count"),
        Some(2.0),
        "{t}"
    );
    // One registration and three pulses were written.
    assert!(
        sample(&t, "provenant_store_write_seconds_count").unwrap() >= 4.0,
        "{t}"
    );
    assert_eq!(
        sample(&t, "provenant_agents{badge=\"yellow\",tier=\"software\"}"),
        Some(1.0),
        "{t}"
    );
    assert_eq!(
        sample(&t, "provenant_queue_depth{queue=\"webhook_outbox\"}"),
        Some(0.0),
        "{t}"
    );
    assert!(t.ends_with("# EOF\n"));
}

/// Reads the event stream until `want` returns true on the text so far, within 10 s.
async fn read_until(r: &mut reqwest::Response, want: impl Fn(&str) -> bool) -> String {
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !want(&text) {
        let chunk = tokio::time::timeout_at(deadline, r.chunk())
            .await
            .unwrap_or_else(|_| panic!("no such event within 10 s; got:\n{text}"))
            .unwrap()
            .expect("the stream ended");
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    text
}

/// `/api/v1/events` (Server-Sent Events): a registration announces the agent's first
/// badge and its `Registered` alert; a pulse that changes the binary announces the
/// turn to red (previous yellow, with the reason) and the `BinaryChanged` alert; a
/// pulse that changes nothing announces nothing.
#[tokio::test]
async fn events_stream_verdict_changes_and_alerts() {
    let mut a = TestAgent::new("node-1");
    let cp = start(|c| c.enrollment.keys.push(a.enroll())).await;
    let r = cp
        .http
        .get(format!("{}/api/v1/events", cp.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let mut r = cp
        .http
        .get(format!("{}/api/v1/events", cp.base))
        .bearer_auth(VIEWER_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");

    assert_eq!(cp.register(&mut a, measurements(1, 1)).await.0, 200);
    let t = read_until(&mut r, |t| {
        t.contains("event: verdict") && t.contains("\"kind\":\"Registered\"")
    })
    .await;
    assert!(
        t.contains(r#""type":"verdict","agent_id":"node-1","badge":"yellow","previous":null"#),
        "{t}"
    );

    let p = a.next_pulse(cp.now(), measurements(1, 1));
    assert_eq!(cp.pulse(&p).await.0, 200);
    a.accepted(&p);
    let p = a.next_pulse(cp.now(), measurements(2, 1));
    assert_eq!(cp.pulse(&p).await.0, 200);
    let t = read_until(&mut r, |t| {
        t.contains("\"kind\":\"BinaryChanged\"") && t.contains("\"badge\":\"red\"")
    })
    .await;
    // The unchanged pulse announced nothing: the only verdict event is the turn to red.
    let verdicts: Vec<&str> = t
        .lines()
        .filter(|l| l.contains("\"type\":\"verdict\""))
        .collect();
    assert_eq!(verdicts.len(), 1, "{t}");
    assert!(
        verdicts[0].contains(r#""badge":"red","previous":"yellow""#),
        "{t}"
    );
    assert!(verdicts[0].contains("\"BinaryChanged\""), "{t}");
}
