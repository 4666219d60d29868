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
