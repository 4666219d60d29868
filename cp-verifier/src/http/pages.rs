//! The fleet page (`/agents`) and the alerts page (`/alerts`, with the
//! acknowledgement form), rendered from the templates in `cp-verifier/templates/`
//! (minijinja, HTML auto-escaped: every value from agents and operators is escaped
//! by the engine, not by hand). Filters, search and pages are server-side
//! ([`crate::http::fleet_query`]); times are UTC with the relative time beside them;
//! the pages follow the event stream (`/api/v1/events`) and fall back to polling.
//! Nothing is fetched from outside the control plane.

use std::sync::{Arc, OnceLock};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use minijinja::Environment;
use serde::Serialize;

use crate::http::error::ApiError;
use crate::http::fleet_query::{self, FleetCounts, FleetFilter};
use crate::http::views::AgentView;
use crate::http::when::When;
use crate::model::Alert;
use crate::plane::ControlPlane;
use crate::store::AlertFilter;

type Cp = Arc<ControlPlane>;

/// Agents per fleet page unless `limit` says otherwise.
pub const FLEET_PAGE: usize = 100;
/// Alerts per alerts page.
pub const ALERTS_PAGE: u32 = 100;
/// Longest query string the pages read.
const MAX_QUERY: usize = 4096;

static TEMPLATES: OnceLock<Result<Environment<'static>, String>> = OnceLock::new();

fn templates() -> Result<&'static Environment<'static>, ApiError> {
    TEMPLATES
        .get_or_init(|| {
            let mut env = Environment::new();
            // Names ending in .html are auto-escaped (minijinja's default).
            for (name, src) in [
                ("base.html", include_str!("../../templates/base.html")),
                ("fleet.html", include_str!("../../templates/fleet.html")),
                ("alerts.html", include_str!("../../templates/alerts.html")),
                (
                    "alert_rows.html",
                    include_str!("../../templates/alert_rows.html"),
                ),
                ("explain.html", include_str!("../../templates/explain.html")),
                (
                    "explained.html",
                    include_str!("../../templates/explained.html"),
                ),
                ("agent.html", include_str!("../../templates/agent.html")),
            ] {
                env.add_template(name, src)
                    .map_err(|e| format!("template {name}: {e}"))?;
            }
            Ok(env)
        })
        .as_ref()
        .map_err(|e| ApiError::Internal(e.clone()))
}

/// Renders template `name` with `ctx`.
pub fn render(name: &str, ctx: impl Serialize) -> Result<String, ApiError> {
    templates()?
        .get_template(name)
        .and_then(|t| t.render(ctx))
        .map_err(|e| ApiError::Internal(format!("rendering {name}: {e:#}")))
}

/// `key=value` pairs of a query string, bounded.
fn query_pairs(raw: Option<&str>) -> Result<Vec<(String, String)>, ApiError> {
    let raw = raw.unwrap_or("");
    if raw.len() > MAX_QUERY {
        return Err(ApiError::bad_request(
            "BadQuery",
            format!("query string over {MAX_QUERY} bytes"),
        ));
    }
    Ok(form_urlencoded::parse(raw.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect())
}

fn first(pairs: &[(String, String)], key: &str) -> Option<String> {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
}

/// `path?k=v&...` with the non-empty pairs, encoded.
fn href(path: &str, pairs: &[(&str, Option<&str>)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            s.append_pair(k, v);
        }
    }
    let q = s.finish();
    if q.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{q}")
    }
}

pub(crate) fn badge_class(b: &str) -> &'static str {
    match b {
        "green" => "green",
        "yellow" => "yellow",
        "red" => "red",
        _ => "unknown",
    }
}

fn severity_name(s: u8) -> &'static str {
    match s {
        1 => "critical",
        2 => "high",
        3 => "warning",
        _ => "info",
    }
}

#[derive(Serialize)]
pub(crate) struct Header {
    title: String,
    nav: &'static str,
    open_total: u64,
    generated: When,
    /// Whether the page reloads itself on changes: never for the answer to a POST
    /// (a reload would post the form again).
    pub(crate) live: bool,
}

impl Header {
    pub(crate) fn new(title: &str, nav: &'static str, open: [u64; 3], now: u64) -> Header {
        Header {
            title: title.to_owned(),
            nav,
            open_total: open.iter().sum(),
            generated: When::at(now, now),
            live: true,
        }
    }
}

#[derive(Serialize)]
struct CountLink {
    key: String,
    class: &'static str,
    n: usize,
    href: String,
}

#[derive(Serialize)]
struct Counts {
    total: usize,
    by_badge: Vec<CountLink>,
    by_tier: Vec<CountLink>,
    by_partition: Vec<CountLink>,
}

impl Counts {
    fn of(c: &FleetCounts) -> Counts {
        let links = |m: &std::collections::BTreeMap<String, usize>, key: &str| {
            m.iter()
                .map(|(k, n)| CountLink {
                    key: k.clone(),
                    class: badge_class(k),
                    n: *n,
                    href: href("/agents", &[(key, Some(k))]),
                })
                .collect()
        };
        // Badges in order of concern, each shown even at zero.
        let by_badge = ["red", "yellow", "unknown", "green"]
            .iter()
            .map(|b| CountLink {
                key: (*b).to_owned(),
                class: badge_class(b),
                n: c.by_badge.get(*b).copied().unwrap_or(0),
                href: href("/agents", &[("badge", Some(b))]),
            })
            .collect();
        Counts {
            total: c.total,
            by_badge,
            by_tier: links(&c.by_tier, "tier"),
            by_partition: links(&c.by_partition, "partition"),
        }
    }
}

#[derive(Serialize)]
struct Reason {
    code: String,
    detail: String,
}

#[derive(Serialize)]
struct WorkloadChip {
    name: String,
    badge: &'static str,
    title: String,
}

#[derive(Serialize)]
struct Row {
    id: String,
    badge: String,
    badge_class: &'static str,
    state: String,
    tier: &'static str,
    partition: String,
    last_pulse: When,
    sequence: u64,
    health: String,
    clock: &'static str,
    clock_warn: bool,
    workloads: Vec<WorkloadChip>,
    workloads_note: String,
    reasons: Vec<Reason>,
}

/// The fleet row's health summary, as text: uptime, load and memory; then the
/// clock's state and whether it is a warning.
fn health_text(a: &AgentView) -> (String, &'static str, bool) {
    let Some(h) = &a.health else {
        return ("not reported".into(), "", false);
    };
    let (clock, warn) = match h.clock {
        Some(c) if c.synchronised => ("clock synced", false),
        Some(_) => ("clock unsynchronised", true),
        None => ("clock unknown", false),
    };
    let text = format!(
        "up {} h · load {:.2} · mem {}% free",
        h.uptime_s / 3600,
        h.load_avg[0],
        h.mem_available_kib
            .saturating_mul(100)
            .checked_div(h.mem_total_kib)
            .unwrap_or(0)
    );
    (text, clock, warn)
}

fn row(a: &AgentView, now: u64) -> Row {
    let (health, clock, clock_warn) = health_text(a);
    Row {
        id: a.agent_id.clone(),
        badge: a.badge.clone(),
        badge_class: badge_class(&a.badge),
        state: a.state.clone(),
        tier: a.tier.as_str(),
        partition: a.partition.clone(),
        last_pulse: When::at(a.last_seen_ns, now),
        sequence: a.sequence,
        health,
        clock,
        clock_warn,
        workloads: a
            .workloads
            .iter()
            .map(|w| WorkloadChip {
                name: w.name.clone(),
                badge: w.status.badge(),
                title: format!(
                    "{} · {} · {}",
                    w.name,
                    w.image,
                    w.reasons
                        .iter()
                        .map(|r| r.code.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })
            .collect(),
        workloads_note: match &a.workloads_state {
            Some(w) if w.state != "ok" => format!("workloads {}", w.state),
            Some(_) => "none".into(),
            None => "not reported".into(),
        },
        reasons: a
            .verdict
            .reasons
            .iter()
            .map(|r| Reason {
                code: r.code.as_str().to_owned(),
                detail: r.detail.clone(),
            })
            .collect(),
    }
}

#[derive(Serialize)]
struct AckRow {
    by: String,
    at: When,
    note: String,
}

#[derive(Serialize)]
pub(crate) struct AlertRow {
    id: String,
    at: When,
    agent: String,
    kind: &'static str,
    severity: u8,
    severity_name: &'static str,
    detail: String,
    open: bool,
    state: &'static str,
    ack: Option<AckRow>,
    explain: Option<crate::model::Explanation>,
}

pub(crate) fn alert_rows(alerts: &[Alert], now: u64) -> Vec<AlertRow> {
    alerts
        .iter()
        .map(|a| AlertRow {
            id: a.id.clone(),
            at: When::at(a.at_ns, now),
            agent: a.agent_id.clone(),
            kind: a.kind.as_str(),
            severity: a.severity,
            severity_name: severity_name(a.severity),
            detail: a.detail.clone(),
            open: a.is_open(),
            state: if a.ack.is_some() {
                "acked"
            } else if a.is_open() {
                "open"
            } else {
                "record"
            },
            ack: a.ack.as_ref().map(|k| AckRow {
                by: k.by.clone(),
                at: When::at(k.at_ns, now),
                note: k.note.clone(),
            }),
            explain: a.explain.as_deref().cloned(),
        })
        .collect()
}

#[derive(Serialize)]
struct FleetPage {
    #[serde(flatten)]
    header: Header,
    counts: Counts,
    tiers: Vec<String>,
    partitions: Vec<String>,
    filter: FleetFilter,
    filtered: bool,
    matched: usize,
    first: usize,
    last: usize,
    rows: Vec<Row>,
    after: Option<String>,
    first_href: String,
    next_href: Option<String>,
    json_href: String,
    alerts: Vec<AlertRow>,
    ack_forms: bool,
    back: String,
}

/// Renders the fleet page for `all` agents (the whole fleet) at `now`, filtered by
/// `f`, the page after `after`.
#[allow(clippy::too_many_arguments)]
pub fn render_fleet(
    all: Vec<AgentView>,
    f: &FleetFilter,
    after: Option<&str>,
    limit: usize,
    alerts: &[Alert],
    open: [u64; 3],
    now: u64,
) -> Result<String, ApiError> {
    let counts = FleetCounts::of(&all);
    let fleet_query::Page {
        agents,
        matched,
        offset,
        next,
    } = fleet_query::page(all, f, after, limit);
    let filters = |after: Option<&str>| {
        href(
            "/agents",
            &[
                ("q", f.q.as_deref()),
                ("badge", f.badge.as_deref()),
                ("tier", f.tier.as_deref()),
                ("partition", f.partition.as_deref()),
                (
                    "limit",
                    (limit != FLEET_PAGE).then(|| limit.to_string()).as_deref(),
                ),
                ("after", after),
            ],
        )
    };
    let json_href = href(
        "/api/v1/agents",
        &[
            ("q", f.q.as_deref()),
            ("badge", f.badge.as_deref()),
            ("tier", f.tier.as_deref()),
            ("partition", f.partition.as_deref()),
        ],
    );
    let ctx = FleetPage {
        header: Header::new("Fleet", "fleet", open, now),
        tiers: counts.by_tier.keys().cloned().collect(),
        partitions: counts.by_partition.keys().cloned().collect(),
        counts: Counts::of(&counts),
        filter: f.clone(),
        filtered: !f.is_empty(),
        matched,
        first: offset + 1,
        last: offset + agents.len(),
        rows: agents.iter().map(|a| row(a, now)).collect(),
        after: after.map(str::to_owned),
        first_href: filters(None),
        next_href: next.as_deref().map(|n| filters(Some(n))),
        json_href,
        alerts: alert_rows(alerts, now),
        ack_forms: false,
        back: "/alerts".into(),
    };
    render("fleet.html", ctx)
}

#[utoipa::path(
    get, path = "/agents", tag = "pages",
    summary = "The fleet page (HTML): counts, filters, search, pages",
    params(
        ("q" = Option<String>, Query, description = "Search: agent id, image, MRTD or reason (case-insensitive substring)"),
        ("badge" = Option<String>, Query, description = "green, yellow, red or unknown"),
        ("tier" = Option<String>, Query, description = "Tier"),
        ("partition" = Option<String>, Query, description = "Partition"),
        ("after" = Option<String>, Query, description = "The page after this agent id"),
        ("limit" = Option<usize>, Query, description = "Agents per page, 1 to 1000 (default 100)"),
    ),
    responses(
        (status = 200, description = "The page", content_type = "text/html", body = String),
        (status = 303, description = "Opened with `?token=`: the token is kept in a private cookie and the browser sent back here"),
        (status = 400, description = "`BadQuery`", body = evidence::api::ErrorBody),
        (status = 401, description = "No read access (an HTML page saying how to sign in)", content_type = "text/html", body = String),
        (status = 500, description = "`Internal`", body = evidence::api::ErrorBody),
        (status = 503, description = "`StoreUnavailable`", body = evidence::api::ErrorBody),
    ),
    security(("viewer_token" = []), ("operator_token" = []), ("operator_cert" = []))
)]
pub(crate) async fn fleet(
    State(cp): State<Cp>,
    RawQuery(raw): RawQuery,
) -> Result<Html<String>, ApiError> {
    let p = query_pairs(raw.as_deref())?;
    let f = FleetFilter {
        badge: first(&p, "badge"),
        tier: first(&p, "tier"),
        partition: first(&p, "partition"),
        q: first(&p, "q"),
    }
    .normalised()?;
    // A limit that is not a number is out of range like any other (0 is).
    let limit = fleet_query::page_limit(
        first(&p, "limit")
            .filter(|l| !l.is_empty())
            .map(|l| l.parse::<usize>().unwrap_or(0)),
        FLEET_PAGE,
    )?;
    let after = first(&p, "after").filter(|a| !a.is_empty());
    let all = cp.agents().await?;
    let alerts = cp.alerts(None, 20).await?;
    let open = cp.open_alerts().await?;
    let now = cp.now().get();
    Ok(Html(render_fleet(
        all,
        &f,
        after.as_deref(),
        limit,
        &alerts,
        open,
        now,
    )?))
}

#[derive(Serialize)]
struct SeverityBox {
    severity: u8,
    name: &'static str,
    checked: bool,
    n: u64,
}

#[derive(Serialize)]
struct ErrorView {
    kind: &'static str,
    detail: String,
}

#[derive(Serialize)]
struct AlertsPage {
    #[serde(flatten)]
    header: Header,
    open: Vec<SeverityBox>,
    severities: Vec<SeverityBox>,
    state: &'static str,
    agent: Option<String>,
    alerts: Vec<AlertRow>,
    before: Option<String>,
    first_href: String,
    next_href: Option<String>,
    ack_forms: bool,
    back: String,
    error: Option<ErrorView>,
}

/// The alerts page's filter from its query string (`severity` may repeat).
fn alert_filter(p: &[(String, String)]) -> Result<AlertFilter, ApiError> {
    let severity = p
        .iter()
        .filter(|(k, _)| k == "severity")
        .map(|(_, v)| v.as_str())
        .collect::<Vec<_>>()
        .join(",");
    crate::http::handlers::AlertQuery {
        agent: first(p, "agent"),
        severity: Some(severity),
        state: first(p, "state"),
        before: first(p, "before"),
        limit: Some(ALERTS_PAGE),
    }
    .filter()
}

async fn alerts_page(
    cp: &ControlPlane,
    f: &AlertFilter,
    back: String,
    error: Option<ErrorView>,
) -> Result<String, ApiError> {
    let list = cp.alert_list(f).await?;
    let now = cp.now().get();
    let state = match f.open {
        Some(true) => "open",
        Some(false) => "acked",
        None => "all",
    };
    let sev: Vec<String> = f.severities.iter().map(u8::to_string).collect();
    let page = |before: Option<&str>| {
        let mut pairs: Vec<(&str, Option<&str>)> =
            sev.iter().map(|s| ("severity", Some(s.as_str()))).collect();
        pairs.push(("state", Some(state)));
        pairs.push(("agent", f.agent.as_deref()));
        pairs.push(("before", before));
        href("/alerts", &pairs)
    };
    let live = error.is_none();
    let ctx = AlertsPage {
        header: Header {
            live,
            ..Header::new("Alerts", "alerts", list.open, now)
        },
        open: (1..=3u8)
            .map(|s| SeverityBox {
                severity: s,
                name: severity_name(s),
                checked: false,
                n: list.open[usize::from(s - 1)],
            })
            .collect(),
        severities: (1..=4u8)
            .map(|s| SeverityBox {
                severity: s,
                name: severity_name(s),
                checked: f.severities.contains(&s),
                n: 0,
            })
            .collect(),
        state,
        agent: f.agent.clone(),
        alerts: alert_rows(&list.alerts, now),
        before: f.before.clone(),
        first_href: page(None),
        next_href: list.next.as_deref().map(|n| page(Some(n))),
        ack_forms: true,
        back,
        error,
    };
    render("alerts.html", ctx)
}

#[utoipa::path(
    get, path = "/alerts", tag = "pages",
    summary = "The alerts page (HTML): open counts, severity and state filters, acknowledgement",
    params(
        ("severity" = Option<Vec<u8>>, Query, description = "Only these severities (repeatable), 1 critical .. 4 informational"),
        ("state" = Option<String>, Query, description = "open, acked or all (default)"),
        ("agent" = Option<String>, Query, description = "Only this agent's alerts"),
        ("before" = Option<String>, Query, description = "Alerts older than this alert id"),
    ),
    responses(
        (status = 200, description = "The page", content_type = "text/html", body = String),
        (status = 400, description = "`BadQuery`", body = evidence::api::ErrorBody),
        (status = 401, description = "No read access (an HTML page saying how to sign in)", content_type = "text/html", body = String),
        (status = 503, description = "`StoreUnavailable`", body = evidence::api::ErrorBody),
    ),
    security(("viewer_token" = []), ("operator_token" = []), ("operator_cert" = []))
)]
pub(crate) async fn alerts(
    State(cp): State<Cp>,
    RawQuery(raw): RawQuery,
) -> Result<Html<String>, ApiError> {
    let p = query_pairs(raw.as_deref())?;
    let f = alert_filter(&p)?;
    let back = match raw.as_deref() {
        Some(q) if !q.is_empty() => format!("/alerts?{q}"),
        _ => "/alerts".into(),
    };
    Ok(Html(alerts_page(&cp, &f, back, None).await?))
}

/// Where the acknowledgement form may send the browser back to: an alerts page of
/// this control plane only.
fn back_to(back: Option<String>) -> String {
    match back {
        Some(b)
            if (b == "/alerts" || b.starts_with("/alerts?"))
                && b.len() <= MAX_QUERY + "/alerts?".len()
                && !b.chars().any(char::is_control) =>
        {
            b
        }
        _ => "/alerts".into(),
    }
}

#[utoipa::path(
    post, path = "/alerts/{id}/ack", tag = "pages",
    summary = "The alerts page's acknowledgement form (`token`, `by`, `note`, `back` form fields): the operator token is in the form, so another site cannot submit it",
    params(("id" = String, Path, description = "The alert's id")),
    responses(
        (status = 303, description = "Acknowledged: back to the alerts page"),
        (status = 401, description = "Wrong or missing operator token: the alerts page with the error", content_type = "text/html", body = String),
        (status = 404, description = "No such alert: the alerts page with the error", content_type = "text/html", body = String),
        (status = 409, description = "Already acknowledged: the alerts page with the error", content_type = "text/html", body = String),
    ),
    security(("viewer_token" = []), ("operator_token" = []), ("operator_cert" = []))
)]
pub(crate) async fn ack_form(
    State(cp): State<Cp>,
    Path(id): Path<String>,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let b = b.map_err(|e| ApiError::bad_request("BadBody", e.body_text()))?;
    let fields: Vec<(String, String)> = form_urlencoded::parse(&b)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let back = back_to(first(&fields, "back"));
    let token = first(&fields, "token").unwrap_or_default();
    let done = match cp.authorize(Some(token.trim())) {
        Ok(()) => {
            cp.ack_alert(
                &id,
                &first(&fields, "by").unwrap_or_default(),
                "operator token, alerts page",
                &first(&fields, "note").unwrap_or_default(),
            )
            .await
        }
        Err(e) => Err(e),
    };
    match done {
        Ok(_) => Ok(Redirect::to(&back).into_response()),
        Err(e @ (ApiError::StoreUnavailable(_) | ApiError::Internal(_))) => Err(e),
        Err(e) => {
            let status = e.status();
            let view = ErrorView {
                kind: e.kind(),
                detail: format!("alert {id}: {}", e.public_detail()),
            };
            let f = AlertFilter {
                limit: ALERTS_PAGE,
                ..AlertFilter::default()
            };
            let html = alerts_page(&cp, &f, back, Some(view)).await?;
            let mut r = (
                if status.is_client_error() {
                    status
                } else {
                    StatusCode::BAD_REQUEST
                },
                Html(html),
            )
                .into_response();
            // Logged with its kind, like every API refusal (token guessing shows).
            r.extensions_mut()
                .insert(crate::http::error::RefusalKind(e.kind()));
            Ok(r)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_parses() {
        let env = templates().unwrap();
        for t in ["base.html", "fleet.html", "alerts.html", "alert_rows.html"] {
            env.get_template(t).unwrap();
        }
    }

    #[test]
    fn back_stays_on_the_alerts_page() {
        assert_eq!(
            back_to(Some("/alerts?state=open".into())),
            "/alerts?state=open"
        );
        assert_eq!(back_to(Some("https://evil.example/".into())), "/alerts");
        assert_eq!(back_to(Some("/alertsx".into())), "/alerts");
        assert_eq!(back_to(Some("//evil.example/alerts".into())), "/alerts");
        assert_eq!(back_to(Some("/alerts?\r\nSet-Cookie: x".into())), "/alerts");
        assert_eq!(back_to(None), "/alerts");
    }

    #[test]
    fn hrefs_encode_and_skip_empty() {
        assert_eq!(
            href(
                "/agents",
                &[("q", Some("a b&c")), ("badge", None), ("tier", Some(""))]
            ),
            "/agents?q=a+b%26c"
        );
        assert_eq!(href("/agents", &[]), "/agents");
    }
}
