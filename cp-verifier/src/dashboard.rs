//! Server-rendered fleet pages (`/agents`, `/agent/{id}`): no JavaScript, no build
//! step. Every value from agents is HTML-escaped.

use crate::alert::Alert;
use crate::service::AgentView;

pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta http-equiv=\"refresh\" content=\"5\"><title>{t} · Provenant</title><style>\
body{{font-family:system-ui,sans-serif;margin:2rem;color:#222}}table{{border-collapse:collapse;width:100%}}\
td,th{{border-bottom:1px solid #ddd;padding:.4rem .6rem;text-align:left;vertical-align:top}}\
.badge{{display:inline-block;padding:.1rem .6rem;border-radius:1rem;font-weight:600;color:#fff}}\
.green{{background:#1a7f37}}.yellow{{background:#b08800}}.red{{background:#cf222e}}.unknown{{background:#6e7781}}\
code{{font-size:.85em}}</style></head><body><h1>{t}</h1>{body}</body></html>",
        t = esc(title)
    )
}

fn badge(b: &str) -> String {
    let class = match b {
        "green" | "yellow" | "red" => b,
        _ => "unknown",
    };
    format!(
        "<span class=\"badge {class}\" data-badge=\"{class}\">{}</span>",
        esc(b)
    )
}

fn reasons(a: &AgentView) -> String {
    if a.verdict.reasons.is_empty() {
        return "all checks passed".into();
    }
    a.verdict
        .reasons
        .iter()
        .map(|r| format!("{}: {}", esc(&format!("{:?}", r.code)), esc(&r.detail)))
        .collect::<Vec<_>>()
        .join("<br>")
}

fn alerts_table(alerts: &[Alert]) -> String {
    let mut s = String::from("<h2>Recent alerts</h2><table><tr><th>when (ns)</th><th>agent</th><th>kind</th><th>sev</th><th>detail</th></tr>");
    for a in alerts {
        s.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            a.at_ns,
            esc(&a.agent_id),
            a.kind.as_str(),
            a.severity,
            esc(&a.detail)
        ));
    }
    s.push_str("</table>");
    s
}

pub fn fleet(agents: &[AgentView], alerts: &[Alert]) -> String {
    let mut s = format!(
        "<p>{} agent(s). JSON: <a href=\"/api/v1/agents\">/api/v1/agents</a></p>",
        agents.len()
    );
    s.push_str("<table><tr><th>agent</th><th>badge</th><th>state</th><th>tier</th><th>last pulse</th><th>reasons</th></tr>");
    for a in agents {
        s.push_str(&format!(
            "<tr data-agent=\"{id}\"><td><a href=\"/agent/{id}\">{id}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}.{}s ago (seq {})</td><td>{}</td></tr>",
            badge(&a.badge),
            esc(&a.state),
            a.tier.as_str(),
            a.last_seen_age_ms / 1000,
            (a.last_seen_age_ms % 1000) / 100,
            a.sequence,
            reasons(a),
            id = esc(&a.agent_id),
        ));
    }
    s.push_str("</table>");
    s.push_str(&alerts_table(alerts));
    page("Fleet", &s)
}

pub fn agent(a: &AgentView, alerts: &[Alert]) -> String {
    let mut s = format!(
        "<p>{} <b>{}</b> · tier {} · key <code>{}</code></p><p>{}</p>",
        badge(&a.badge),
        esc(&a.state),
        a.tier.as_str(),
        esc(&a.key_fingerprint),
        reasons(a)
    );
    s.push_str("<h2>Measurements</h2><table><tr><th>what</th><th>reported</th><th>last-known-good</th></tr>");
    s.push_str(&format!(
        "<tr><td>agent binary</td><td><code>{}</code></td><td><code>{}</code></td></tr>",
        a.measurements.agent_binary, a.last_known_good.agent_binary
    ));
    s.push_str(&format!(
        "<tr><td>policy digest</td><td><code>{}</code></td><td><code>{}</code></td></tr>",
        a.measurements.policy.digest, a.last_known_good.policy.digest
    ));
    for f in &a.measurements.policy.files {
        s.push_str(&format!(
            "<tr><td>{}</td><td><code>{}</code></td><td></td></tr>",
            esc(&f.path),
            f.sha256
        ));
    }
    s.push_str("</table>");
    if let Some(t) = &a.attestation {
        s.push_str(&attestation_table(t));
    }
    s.push_str(&alerts_table(alerts));
    page(&format!("Agent {}", a.agent_id), &s)
}

/// The TDX evidence of the last registration. A TDREPORT's fields are labelled as
/// claims: nothing remote verified them.
fn attestation_table(t: &crate::attest::TdxAttestation) -> String {
    let mut s = format!(
        "<h2>TDX evidence ({})</h2><table>",
        if t.verified {
            "DCAP-verified quote"
        } else {
            "TDREPORT: unverified claims"
        }
    );
    let mut row = |k: &str, v: String| {
        s.push_str(&format!(
            "<tr><td>{k}</td><td><code>{}</code></td></tr>",
            esc(&v)
        ))
    };
    row(
        "TCB status",
        t.tcb_status.clone().unwrap_or_else(|| "none".into()),
    );
    row("advisories", t.advisory_ids.join(", "));
    row("FMSPC", t.fmspc.clone().unwrap_or_default());
    row("MRTD", t.mrtd.to_hex());
    for (i, r) in t.rtmrs.iter().enumerate() {
        row(&format!("RTMR{i}"), r.to_hex());
    }
    row("TDATTRIBUTES", t.td_attributes.to_hex());
    row(
        "RTMR3 event log",
        format!("{} events, {} bound", t.event_log_events, t.event_log_bound),
    );
    s.push_str("</table>");
    s
}
