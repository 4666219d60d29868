//! The operator's fleet and alerts pages in headless Chromium, against a real
//! `cp-verifier serve` holding a 1,000-agent fleet registered through the public API
//! (seed-derived software-tier agents, as `cp-verifier loadgen` makes them): the
//! counts, a search narrowing the fleet, human-readable times, and an alert raised by
//! real missed heartbeats acknowledged through the page's form with the operator
//! token. Screenshots go to `target/test-artifacts/`.
//!
//! Needs: `chromium` (Debian package), and the workspace binaries built.

use cp_verifier::loadgen::{enrollment_toml, LoadAgent};
use provenant_base::clock::{Clock, SystemClock};
use provenant_tests::chromium::{artifacts_dir, dump_dom, elements_with, screenshot};
use provenant_tests::fleet::{CpProcess, CpSpec};
use provenant_tests::{wait_for, Http, OPERATOR_TOKEN, VIEWER_TOKEN};

const CORE: usize = 990;
const EDGE: usize = 10;

/// The `<tr data-agent=...>` rows of a page.
fn agent_rows(dom: &str) -> Vec<&str> {
    elements_with(dom, "<tr data-agent=\"")
}

/// The address of the page's "next page" link.
fn next_href(dom: &str) -> String {
    let i = dom.find("rel=\"next\"").expect("a next page link");
    let h = dom[..i].rfind("href=\"").unwrap() + 6;
    dom[h..h + dom[h..].find('"').unwrap()].replace("&amp;", "&")
}

fn attr<'a>(dom: &'a str, name: &str) -> &'a str {
    let key = format!("{name}=\"");
    let i = dom
        .find(&key)
        .unwrap_or_else(|| panic!("no {name} in the page"))
        + key.len();
    &dom[i..i + dom[i..].find('"').unwrap()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_page_counts_filters_and_acknowledges_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // 990 agents that declare 60 s heartbeats and 10 that declare 1 s and then fall
    // silent: those are blinded (a real critical alert each) within seconds.
    let core = LoadAgent::fleet("fleet-page", "core", CORE).unwrap();
    let mut edge = LoadAgent::fleet("fleet-page-edge", "edge", EDGE).unwrap();
    for a in &mut edge {
        a.interval_ms = 1000;
    }
    let mut spec = CpSpec::new(&root.join("cp-data"), &root.join("audit.jsonl"));
    spec.heartbeat_interval = "60s";
    spec.operator = true;
    spec.extra = format!("\n{}{}", enrollment_toml(&core), enrollment_toml(&edge));
    let _cp = CpProcess::start(&spec, &root.join("cp.toml"), root).await;
    let base = spec.base_url();

    // Registered through the public API, 16 at a time.
    let client = reqwest::Client::new();
    let now = SystemClock.now().get();
    let agents = std::sync::Arc::new(core.into_iter().chain(edge).collect::<Vec<_>>());
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (agents, next, client, base) =
            (agents.clone(), next.clone(), client.clone(), base.clone());
        workers.spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(a) = agents.get(i) else { break };
                if let Err(e) = a.register(&client, &base, now).await {
                    panic!("registering {}: {e}", a.id);
                }
            }
        });
    }
    while let Some(r) = workers.join_next().await {
        r.unwrap();
    }

    let http = Http::new();
    wait_for(60, "the edge agents to be blinded", || async {
        let (_, v) = http
            .get(&format!("{base}/api/v1/alerts?state=open&severity=1"))
            .await?;
        let n = v["alerts"]
            .as_array()?
            .iter()
            .filter(|a| a["kind"] == "Blinded")
            .count();
        (n == EDGE).then_some(())
    })
    .await;

    // The whole fleet: counts by badge, tier and partition, and the first page.
    let fleet = dump_dom(&format!("{base}/agents"));
    assert_eq!(attr(&fleet, "data-count-total"), "1000", "{fleet}");
    let tier = elements_with(&fleet, "data-count-tier=\"software\"");
    assert_eq!(tier.len(), 1, "{fleet}");
    let by_badge = |dom: &str, b: &str| -> usize {
        let e = elements_with(dom, &format!("data-count-badge=\"{b}\""));
        assert_eq!(e.len(), 1, "{b}");
        let i = dom.find(&format!("data-count-badge=\"{b}\"")).unwrap();
        let n = &dom[i..];
        let n = &n[n.find("class=\"n\">").unwrap() + 10..];
        n[..n.find('<').unwrap()].parse().unwrap()
    };
    let red = by_badge(&fleet, "red");
    let sum: usize = ["red", "yellow", "unknown", "green"]
        .iter()
        .map(|b| by_badge(&fleet, b))
        .sum();
    assert_eq!(sum, 1000, "{fleet}");
    assert!(red >= EDGE, "every blinded agent is red: {red}");
    assert_eq!(attr(&fleet, "data-matched"), "1000");
    assert_eq!(agent_rows(&fleet).len(), 100, "one page of 100");
    assert!(fleet.contains("Showing 1–100 of 1000"), "{fleet}");
    assert!(fleet.contains("data-next"), "a next page link");
    // Times for people: UTC and relative, never raw nanoseconds.
    assert!(fleet.contains(" UTC</time>"), "{fleet}");
    assert!(fleet.contains(" s ago</time>"), "{fleet}");
    assert!(!fleet.contains("when (ns)"));

    // A search narrows the fleet server-side: 10 of 1,000.
    let edge_dom = dump_dom(&format!("{base}/agents?q=EDGE-"));
    assert_eq!(attr(&edge_dom, "data-matched"), "10", "{edge_dom}");
    let rows = agent_rows(&edge_dom);
    assert_eq!(rows.len(), EDGE, "{edge_dom}");
    assert!(
        rows.iter().all(|r| r.contains("data-agent=\"edge-")),
        "{rows:?}"
    );
    assert!(edge_dom.contains("(of 1000)"), "{edge_dom}");
    // The badge filter agrees with the count.
    let red_dom = dump_dom(&format!("{base}/agents?badge=red&limit=1000"));
    assert_eq!(attr(&red_dom, "data-matched"), red.to_string());
    assert_eq!(agent_rows(&red_dom).len(), red);
    // The second page continues where the first stopped.
    let p2 = dump_dom(&format!("{base}{}", next_href(&fleet)));
    assert!(p2.contains("Showing 101–200 of 1000"), "{p2}");
    assert_eq!(agent_rows(&p2).len(), 100);
    assert!(agent_rows(&p2)
        .iter()
        .all(|r| !agent_rows(&fleet).contains(r)));

    // The alerts page: the open critical alerts, each with the acknowledgement form.
    let alerts = dump_dom(&format!("{base}/alerts?state=open&severity=1"));
    let open_before: u64 = attr(&alerts, "data-open-alerts").parse().unwrap();
    assert!(open_before >= u64::try_from(EDGE).unwrap(), "{alerts}");
    let blinded = elements_with(&alerts, "data-alert=\"");
    assert_eq!(blinded.len(), EDGE, "{alerts}");
    assert_eq!(
        alerts.matches("action=\"/alerts/").count(),
        EDGE,
        "one form per open alert"
    );
    let id = attr(blinded[0], "data-alert").to_owned();

    // The form, as the browser posts it: read access (the viewer token) plus the
    // operator token in the form. A wrong token is refused and nothing changes.
    let c = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let post = |token: &str| {
        c.post(format!("{base}/alerts/{id}/ack"))
            .bearer_auth(VIEWER_TOKEN)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "token={token}&by=alice&note=node+rebooted%2C+agent+back&back=%2Falerts%3Fstate%3Dall"
            ))
            .send()
    };
    let r = post("wrong-token").await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let page = r.text().await.unwrap();
    assert!(page.contains("data-error=\"Unauthorized\""), "{page}");
    // The answer to a POST never reloads itself (that would post the form again).
    assert!(
        !page.contains("EventSource") && !page.contains("http-equiv"),
        "{page}"
    );
    let r = post(VIEWER_TOKEN).await.unwrap();
    assert_eq!(
        r.status().as_u16(),
        401,
        "the viewer token cannot acknowledge"
    );
    let r = post(OPERATOR_TOKEN).await.unwrap();
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(r.headers()["location"], "/alerts?state=all");
    let r = post(OPERATOR_TOKEN).await.unwrap();
    assert_eq!(r.status().as_u16(), 409, "once only");

    // Acknowledged: still in the history, with who and why, out of the open count,
    // and audited.
    let all = dump_dom(&format!("{base}/alerts?state=all"));
    let row = {
        let i = all
            .find(&format!("data-alert=\"{id}\""))
            .expect("the acknowledged alert stays in the history");
        &all[i..i + all[i..].find("</tr>").unwrap()]
    };
    assert!(row.contains("data-state=\"acked\""), "{row}");
    assert!(
        row.contains("acknowledged by alice (operator token, alerts page)"),
        "{row}"
    );
    assert!(row.contains("node rebooted, agent back"), "{row}");
    let open_after: u64 = attr(&all, "data-open-alerts").parse().unwrap();
    assert_eq!(open_after, open_before - 1);
    let open = dump_dom(&format!("{base}/alerts?state=open&severity=1"));
    assert_eq!(elements_with(&open, "data-alert=\"").len(), EDGE - 1);
    assert!(all.contains("AlertAcknowledged"), "audited");

    // Hostile text from an operator is text, not markup.
    let r = c
        .post(format!("{base}/api/v1/alerts/{}/ack", {
            let i = elements_with(&open, "data-alert=\"")[0];
            attr(i, "data-alert").to_owned()
        }))
        .bearer_auth(OPERATOR_TOKEN)
        .json(&serde_json::json!({"by": "<b>mallory</b>", "note": "<script>x()</script>"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let all = dump_dom(&format!("{base}/alerts?state=acked"));
    assert!(all.contains("&lt;b&gt;mallory&lt;/b&gt;"), "{all}");
    assert!(!all.contains("<b>mallory</b>"));

    let out = artifacts_dir();
    for (name, url) in [
        ("fleet-1000-agents.png", format!("{base}/agents")),
        ("fleet-search-edge.png", format!("{base}/agents?q=edge-")),
        (
            "alerts-acknowledged.png",
            format!("{base}/alerts?state=all"),
        ),
    ] {
        let png = out.join(name);
        screenshot(&url, &png);
        println!("screenshot: {}", png.display());
    }
}
