//! One agent's page (`/agent/{id}`), rendered from `templates/agent.html`: the
//! verdict with the policy rule behind each reason, the verdict timeline (badge
//! over time for the agent and each workload, every change with its cause), pulses
//! accepted and refused per minute, and the evidence as a **why chain**: quote →
//! TCB status and collateral window; MRTD → the bundle that attested it; RTMR0–2
//! against the attested values; RTMR3 → the event-log entries that replay to it;
//! each image → signer and Rekor entry. Refusals carry their explanation (expected
//! and found values, where they part). An agent whose registrations were all
//! refused has a page too: its refusals and their explanations.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Html;
use serde::Serialize;

use crate::http::error::ApiError;
use crate::http::pages::{alert_rows, badge_class, render, AlertRow, Header};
use crate::http::views::{AgentHistory, AgentView};
use crate::http::when::When;
use crate::model::history::AGENT_SUBJECT;
use crate::model::{Alert, TdxAttestation, VerdictChange};
use crate::plane::ControlPlane;

/// Alerts shown on an agent's page.
const PAGE_ALERTS: u32 = 50;
/// Badge changes shown (the timeline and its list).
const PAGE_CHANGES: u32 = 200;
/// Width of the timeline and pulse charts (SVG user units).
const CHART_W: f64 = 1000.0;
/// Entries of the kept RTMR3 log shown (the newest).
const LOG_SHOWN: usize = 48;

/// A count or a time as a chart coordinate: the charts need no precision beyond
/// a pixel, so the lossy conversion is what is wanted.
#[allow(clippy::as_conversions, clippy::cast_precision_loss)]
fn fl(v: u64) -> f64 {
    v as f64
}

#[derive(Serialize)]
struct ReasonRow {
    code: &'static str,
    badge: &'static str,
    detail: String,
    setting: &'static str,
    says: &'static str,
}

fn reason_rows(rs: &[policy::Reason]) -> Vec<ReasonRow> {
    rs.iter()
        .map(|r| {
            let rule = policy::rules::rule_for(r.code);
            ReasonRow {
                code: r.code.as_str(),
                badge: r.status.badge(),
                detail: r.detail.clone(),
                setting: rule.setting,
                says: rule.says,
            }
        })
        .collect()
}

#[derive(Serialize)]
struct Segment {
    x: f64,
    w: f64,
    class: &'static str,
    title: String,
}

#[derive(Serialize)]
struct Mark {
    x: f64,
    n: usize,
    title: String,
}

#[derive(Serialize)]
struct Strip {
    label: String,
    y: u32,
    segments: Vec<Segment>,
    marks: Vec<Mark>,
}

#[derive(Serialize)]
struct ChangeRow {
    n: usize,
    at: When,
    subject: String,
    previous: Option<String>,
    badge: String,
    class: &'static str,
    cause: String,
    alerts: Vec<String>,
}

#[derive(Serialize)]
struct Timeline {
    strips: Vec<Strip>,
    height: u32,
    from: Option<When>,
    to: When,
    changes: Vec<ChangeRow>,
}

/// Badge over time, from the changes (newest first) up to `now`.
fn timeline(changes: &[VerdictChange], now: u64) -> Timeline {
    let chrono: Vec<&VerdictChange> = changes.iter().rev().collect();
    let t0 = chrono.first().map_or(now, |c| c.at_ns.min(now));
    let span = fl(now.saturating_sub(t0).max(1));
    let x = |t: u64| CHART_W * fl(t.saturating_sub(t0).min(now - t0)) / span;
    let mut subjects: Vec<&str> = vec![AGENT_SUBJECT];
    for c in &chrono {
        if !subjects.contains(&c.subject.as_str()) {
            subjects.push(&c.subject);
        }
    }
    let strips = subjects
        .iter()
        .enumerate()
        .map(|(row, subject)| {
            let mine: Vec<(usize, &VerdictChange)> = chrono
                .iter()
                .enumerate()
                .filter(|(_, c)| c.subject == *subject)
                .map(|(i, c)| (i + 1, *c))
                .collect();
            let segments = mine
                .iter()
                .enumerate()
                .map(|(k, (_, c))| {
                    let end = mine.get(k + 1).map_or(now, |(_, n)| n.at_ns);
                    Segment {
                        x: x(c.at_ns),
                        w: (x(end) - x(c.at_ns)).max(1.0),
                        class: badge_class(&c.badge),
                        title: format!("{}: {}", c.badge, c.cause),
                    }
                })
                .collect();
            let marks = mine
                .iter()
                .map(|(n, c)| Mark {
                    x: x(c.at_ns),
                    n: *n,
                    title: format!(
                        "{n}: {} → {}: {}",
                        c.previous.as_deref().unwrap_or("none"),
                        c.badge,
                        c.cause
                    ),
                })
                .collect();
            Strip {
                label: if subject.is_empty() {
                    "agent".to_string()
                } else {
                    format!("workload {subject}")
                },
                y: u32::try_from(row).unwrap_or(0) * 26 + 4,
                segments,
                marks,
            }
        })
        .collect::<Vec<_>>();
    let height = u32::try_from(strips.len()).unwrap_or(1) * 26 + 22;
    Timeline {
        strips,
        height,
        from: chrono.first().map(|c| When::at(c.at_ns, now)),
        to: When::at(now, now),
        changes: chrono
            .iter()
            .enumerate()
            .rev()
            .map(|(i, c)| ChangeRow {
                n: i + 1,
                at: When::at(c.at_ns, now),
                subject: if c.subject.is_empty() {
                    "agent".into()
                } else {
                    format!("workload {}", c.subject)
                },
                previous: c.previous.clone(),
                badge: c.badge.clone(),
                class: badge_class(&c.badge),
                cause: c.cause.clone(),
                alerts: c.alerts.clone(),
            })
            .collect(),
    }
}

#[derive(Serialize)]
struct Bar {
    x: f64,
    accepted_y: f64,
    accepted_h: f64,
    refused_y: f64,
    refused_h: f64,
    title: String,
}

#[derive(Serialize)]
struct Pulses {
    bars: Vec<Bar>,
    accepted: u64,
    refused: u64,
    max: u64,
    minutes: u64,
    from: When,
}

/// Pulses accepted and refused per minute over the history's window.
fn pulses(h: &AgentHistory, now: u64) -> Pulses {
    let minutes = h.now_minute.saturating_sub(h.since_minute) + 1;
    let max = h
        .pulses
        .iter()
        .map(|p| p.accepted + p.refused)
        .max()
        .unwrap_or(0)
        .max(1);
    let w = CHART_W / fl(minutes);
    let height = 60.0;
    let bars = h
        .pulses
        .iter()
        .map(|p| {
            let ah = height * fl(p.accepted) / fl(max);
            let rh = height * fl(p.refused) / fl(max);
            Bar {
                x: w * fl(p.minute.saturating_sub(h.since_minute)),
                accepted_y: height - ah,
                accepted_h: ah,
                refused_y: height - ah - rh,
                refused_h: rh,
                title: format!(
                    "{}: {} accepted, {} refused",
                    When::at(p.minute * 60_000_000_000, now).utc,
                    p.accepted,
                    p.refused
                ),
            }
        })
        .collect();
    Pulses {
        bars,
        accepted: h.pulses.iter().map(|p| p.accepted).sum(),
        refused: h.pulses.iter().map(|p| p.refused).sum(),
        max,
        minutes,
        from: When::at(h.since_minute * 60_000_000_000, now),
    }
}

/// One link of a why chain: a labelled value, with `why` naming it for tests and
/// scripts (`data-why`).
#[derive(Serialize)]
struct Link {
    why: &'static str,
    label: String,
    value: String,
    note: String,
}

fn link(why: &'static str, label: &str, value: impl Into<String>, note: impl Into<String>) -> Link {
    Link {
        why,
        label: label.into(),
        value: value.into(),
        note: note.into(),
    }
}

#[derive(Serialize)]
struct LogRow {
    seq: u64,
    kind: String,
    value: String,
    bound: bool,
    running: String,
}

#[derive(Serialize)]
struct Chain {
    verified: bool,
    quote: Vec<Link>,
    mrtd: Vec<Link>,
    rtmrs: Vec<Link>,
    rtmr3: Vec<Link>,
    log: Vec<LogRow>,
    log_omitted: usize,
}

fn secs_when(secs: Option<u64>, now: u64) -> (String, String) {
    match secs {
        Some(s) => {
            let w = When::at(s.saturating_mul(1_000_000_000), now);
            (w.utc, w.rel)
        }
        None => ("unknown".into(), String::new()),
    }
}

/// The TDX evidence as a chain, with the kept RTMR3 log (if any).
fn chain(t: &TdxAttestation, log: Option<&crate::attest::explain::AcceptedLog>, now: u64) -> Chain {
    let f = &t.freshness;
    let (coll, coll_rel) = secs_when(f.collateral_next_update, now);
    let (pck, pck_rel) = secs_when(f.pck_not_after, now);
    let verified_at = When::at(t.verified_at_ns, now);
    let mut quote = vec![
        link(
            "evidence",
            "evidence",
            if t.verified {
                "DCAP-verified quote"
            } else {
                "TDREPORT: unverified claims"
            },
            format!("checked {} ({})", verified_at.utc, verified_at.rel),
        ),
        link(
            "tcb",
            "TCB status",
            t.tcb_status.clone().unwrap_or_else(|| "none".into()),
            if t.advisory_ids.is_empty() {
                "no advisories".to_string()
            } else {
                format!("advisories: {}", t.advisory_ids.join(", "))
            },
        ),
        link(
            "fmspc",
            "FMSPC",
            t.fmspc.clone().unwrap_or_default(),
            "the platform (from the PCK certificate)",
        ),
        link(
            "collateral",
            "collateral valid until",
            coll,
            format!("{coll_rel}; the earliest nextUpdate of TCB info, QE identity and CRLs"),
        ),
        link("pck", "PCK chain valid until", pck, pck_rel),
    ];
    if let Some(at) = f.reattested_at_ns {
        let w = When::at(at, now);
        quote.push(link(
            "reattested",
            "re-attested against current collateral",
            w.utc,
            w.rel,
        ));
    }
    if let Some(e) = &f.reattest_error {
        quote.push(link(
            "reattest-error",
            "last re-attestation could not decide",
            e.clone(),
            "",
        ));
    }
    let mut mrtd = vec![link("mrtd", "MRTD", t.mrtd.to_hex(), "")];
    match &t.provenance {
        Some(p) => {
            mrtd.push(link(
                "repository",
                "attested by repository",
                p.repository.clone(),
                "",
            ));
            mrtd.push(link(
                "workflow",
                "workflow",
                crate::attest::provenance::workflow_of(&p.san),
                p.san.clone(),
            ));
            mrtd.push(link(
                "ref",
                "ref",
                p.source_ref.clone().unwrap_or_else(|| "none".into()),
                "",
            ));
            mrtd.push(link(
                "signer",
                "build signer",
                p.signer.clone().unwrap_or_else(|| "none".into()),
                "",
            ));
            mrtd.push(link("signed", "signed at", p.signed_at.clone(), ""));
            mrtd.push(link(
                "log-index",
                "transparency log index",
                p.log_index.map_or_else(|| "none".into(), |i| i.to_string()),
                if p.log_index.is_some() {
                    "the bundle's Rekor entry"
                } else {
                    "this Sigstore instance keeps no log"
                },
            ));
            mrtd.push(link(
                "bundle",
                "bundle found at",
                p.bundle_source.clone(),
                "",
            ));
        }
        None => mrtd.push(link(
            "provenance",
            "build provenance",
            "not checked",
            "no [provenance] is configured, or the MRTD is pinned by [policy.tdx] mrtd_allowlist",
        )),
    }
    let rtmrs = (0..3)
        .map(|i| {
            let attested = t
                .provenance
                .as_ref()
                .and_then(|p| p.rtmrs.get(i).cloned().flatten());
            let quoted = &t.rtmrs[i];
            let note = match attested {
                Some(a) if a == *quoted => "equals the attested value".to_string(),
                Some(a) => format!("the attestation says {}", a.to_hex()),
                None => "not attested".to_string(),
            };
            Link {
                why: ["rtmr0", "rtmr1", "rtmr2"][i],
                label: format!("RTMR{i}"),
                value: quoted.to_hex(),
                note,
            }
        })
        .collect();
    let replayed = t.event_log_state.as_ref().map(|s| s.rtmr3);
    let mut rtmr3 = vec![
        link("rtmr3", "RTMR3 (quoted)", t.rtmrs[3].to_hex(), ""),
        link(
            "event-log",
            "RTMR3 event log",
            format!("{} events, {} bound", t.event_log_events, t.event_log_bound),
            match replayed {
                Some(r) if r == t.rtmrs[3] => "replays to the quoted RTMR3".to_string(),
                Some(r) => format!("replays to {}", r.to_hex()),
                None => "no log".to_string(),
            },
        ),
    ];
    if let Some(s) = &t.event_log_state {
        for (k, v) in &s.last {
            rtmr3.push(link(
                "last-bound",
                &format!("last bound {k}"),
                v.clone(),
                "",
            ));
        }
    }
    let (log_rows, omitted) = match log {
        Some(l) => {
            let mut v = [0u8; 48];
            let rows: Vec<LogRow> = l
                .events
                .iter()
                .map(|e| {
                    if e.bound {
                        v = evidence::eventlog::extend(&v, &e.digest.0);
                    }
                    LogRow {
                        seq: e.seq,
                        kind: e.kind.clone(),
                        value: e.value.clone(),
                        bound: e.bound,
                        running: hex::encode(v),
                    }
                })
                .collect();
            let omitted = rows.len().saturating_sub(LOG_SHOWN);
            (rows.into_iter().skip(omitted).collect(), omitted)
        }
        None => (Vec::new(), 0),
    };
    Chain {
        verified: t.verified,
        quote,
        mrtd,
        rtmrs,
        rtmr3,
        log: log_rows,
        log_omitted: omitted,
    }
}

#[derive(Serialize)]
struct WorkloadRow {
    name: String,
    image: String,
    digest: Option<String>,
    state: String,
    badge: &'static str,
    reasons: Vec<ReasonRow>,
    signer: Option<String>,
    rekor: Option<u64>,
    verified_at: Option<When>,
}

#[derive(Serialize)]
struct ProgRow {
    id: u32,
    name: String,
    prog_type: String,
    tag: String,
    sha256: String,
    pinned: Vec<String>,
    at_lkg: bool,
}

#[derive(Serialize)]
struct Page {
    #[serde(flatten)]
    header: Header,
    id: String,
    registered: bool,
    a: Option<AgentView>,
    badge_class: &'static str,
    registered_at: Option<When>,
    last_seen: Option<When>,
    reasons: Vec<ReasonRow>,
    timeline: Timeline,
    pulses: Option<Pulses>,
    chain: Option<Chain>,
    workloads: Vec<WorkloadRow>,
    ebpf: Vec<ProgRow>,
    lsm: &'static str,
    ebpf_state: String,
    health_at: Option<When>,
    /// The newest refusal with an explanation, shown in full.
    explained: Option<Explained>,
    alerts: Vec<AlertRow>,
}

#[derive(Serialize)]
struct Explained {
    at: When,
    detail: String,
    explain: crate::model::Explanation,
}

fn workload_rows(a: &AgentView, now: u64) -> Vec<WorkloadRow> {
    a.workloads
        .iter()
        .map(|w| WorkloadRow {
            name: w.name.clone(),
            image: w.image.split('@').next().unwrap_or_default().to_string(),
            digest: w.image_digest.clone(),
            state: a
                .measurements
                .workloads
                .as_ref()
                .and_then(|l| l.items.as_ref())
                .and_then(|i| i.iter().find(|x| x.id == w.id))
                .map(|x| x.state.clone())
                .unwrap_or_default(),
            badge: w.status.badge(),
            reasons: reason_rows(&w.reasons),
            signer: w.signer.clone(),
            rekor: w.rekor_log_index,
            verified_at: w.verified_at_ns.map(|t| When::at(t, now)),
        })
        .collect()
}

fn ebpf_rows(a: &AgentView) -> (Vec<ProgRow>, &'static str, String) {
    let Some(e) = &a.measurements.ebpf else {
        return (Vec::new(), "unknown", String::new());
    };
    let lkg: Vec<evidence::Digest32> = a
        .last_known_good
        .ebpf
        .as_ref()
        .and_then(|l| l.items.as_ref())
        .map(|i| i.iter().map(|p| p.sha256).collect())
        .unwrap_or_default();
    let rows = e
        .items
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|p| ProgRow {
            id: p.id,
            name: p.name.clone(),
            prog_type: p.prog_type.clone(),
            tag: p.tag.clone(),
            sha256: p.sha256.to_hex(),
            pinned: p.pinned.clone(),
            at_lkg: lkg.contains(&p.sha256),
        })
        .collect();
    let lsm = match e.extra.lsm_active {
        Some(true) => "yes",
        Some(false) => "no",
        None => "unknown",
    };
    let state = format!(
        "{}{}",
        crate::judge::baseline::state_str(e.state),
        e.reason
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default()
    );
    (rows, lsm, state)
}

/// The HTML of agent `id`'s page; `NotFound` when the control plane knows nothing
/// of it (no record and no alert). A function of the page, not a method of the
/// control plane: the plane does not depend on its pages.
pub async fn agent_page(cp: &ControlPlane, id: &str) -> Result<String, ApiError> {
    let now = cp.now().get();
    let open = cp.open_alerts().await?;
    let alerts: Vec<Alert> = cp.alerts(Some(id), PAGE_ALERTS).await?;
    let a = match cp.agent(id).await {
        Ok(a) => Some(a),
        Err(ApiError::NotFound(_)) if !alerts.is_empty() => None,
        Err(e) => return Err(e),
    };
    let history = match &a {
        Some(_) => Some(cp.history(id, PAGE_CHANGES).await?),
        None => None,
    };
    let log = match a.as_ref().and_then(|a| a.attestation.as_ref()) {
        Some(t) => cp.accepted_log(id, t.event_log_state.as_ref()).await,
        None => None,
    };
    let title = format!("Agent {id}");
    let mut header = Header::new(&title, "fleet", open, now);
    if a.is_none() {
        header.live = false;
    }
    let (ebpf, lsm, ebpf_state) = a
        .as_ref()
        .map_or((Vec::new(), "unknown", String::new()), ebpf_rows);
    let page = Page {
        header,
        id: id.to_string(),
        registered: a.is_some(),
        badge_class: badge_class(a.as_ref().map_or("unknown", |a| &a.badge)),
        registered_at: a.as_ref().map(|a| When::at(a.registered_at_ns, now)),
        last_seen: a.as_ref().map(|a| When::at(a.last_seen_ns, now)),
        reasons: a
            .as_ref()
            .map(|a| reason_rows(&a.verdict.reasons))
            .unwrap_or_default(),
        timeline: timeline(history.as_ref().map_or(&[], |h| &h.changes), now),
        pulses: history.as_ref().map(|h| pulses(h, now)),
        chain: a
            .as_ref()
            .and_then(|a| a.attestation.as_ref())
            .map(|t| chain(t, log.as_ref(), now)),
        workloads: a
            .as_ref()
            .map(|a| workload_rows(a, now))
            .unwrap_or_default(),
        ebpf,
        lsm,
        ebpf_state,
        health_at: a
            .as_ref()
            .and_then(|a| a.health_at_ns)
            .map(|t| When::at(t, now)),
        explained: alerts.iter().find_map(|al| {
            al.explain.as_deref().map(|e| Explained {
                at: When::at(al.at_ns, now),
                detail: al.detail.clone(),
                explain: e.clone(),
            })
        }),
        alerts: alert_rows(&alerts, now),
        a,
    };
    render("agent.html", &page)
}

#[utoipa::path(
    get, path = "/agent/{id}", tag = "pages",
    summary = "One agent's page (HTML)",
    params(("id" = String, Path, description = "The agent's id")),
    responses(
        (status = 200, description = "The page", content_type = "text/html", body = String),
        (status = 303, description = "Opened with `?token=`: the token is kept in a private cookie and the browser sent back here"),
        (status = 401, description = "No read access (an HTML page saying how to sign in)", content_type = "text/html", body = String),
        (status = 404, description = "`NotFound`: no such agent", body = evidence::api::ErrorBody),
        (status = 503, description = "`StoreUnavailable`", body = evidence::api::ErrorBody),
    ),
    security(("viewer_token" = []), ("operator_token" = []), ("operator_cert" = []))
)]
pub(crate) async fn page(
    State(cp): State<Arc<ControlPlane>>,
    Path(id): Path<String>,
) -> Result<Html<String>, ApiError> {
    Ok(Html(agent_page(&cp, &id).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(subject: &str, at: u64, badge: &str, prev: Option<&str>) -> VerdictChange {
        VerdictChange {
            agent_id: "a".into(),
            subject: subject.into(),
            at_ns: at,
            badge: badge.into(),
            previous: prev.map(str::to_owned),
            cause: format!("to {badge}"),
            alerts: vec![],
            reasons: vec![],
            appeared: vec![],
            gone: vec![],
        }
    }

    #[test]
    fn the_timeline_lays_segments_end_to_end_per_subject() {
        // Newest first, as the store returns them.
        let changes = vec![
            change("", 300, "green", Some("red")),
            change("web", 200, "red", None),
            change("", 100, "red", Some("green")),
            change("", 0, "green", None),
        ];
        let t = timeline(&changes, 400);
        assert_eq!(t.strips.len(), 2);
        let agent = &t.strips[0];
        let xs: Vec<(f64, f64, &str)> =
            agent.segments.iter().map(|s| (s.x, s.w, s.class)).collect();
        assert_eq!(
            xs,
            vec![
                (0.0, 250.0, "green"),
                (250.0, 500.0, "red"),
                (750.0, 250.0, "green")
            ]
        );
        assert_eq!(t.strips[1].label, "workload web");
        assert_eq!(t.strips[1].segments[0].x, 500.0);
        // The list is newest first, numbered in time order.
        assert_eq!(t.changes[0].n, 4);
        assert_eq!(t.changes[0].previous.as_deref(), Some("red"));
    }
}
