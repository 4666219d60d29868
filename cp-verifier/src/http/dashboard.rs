//! Server-rendered fleet pages (`/agents`, `/agent/{id}`): no JavaScript, no build
//! step. Every value from agents is HTML-escaped.

use crate::http::views::AgentView;
use crate::model::Alert;

/// HTML-escapes `s` (`&`, `<`, `>`, `"`, `'`) for text and attribute values.
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
code{{font-size:.85em;word-break:break-all}}.signer{{font-size:.85em;word-break:break-all}}.wl{{display:inline-block;margin:0 .2rem .2rem 0;padding:0 .4rem;border-radius:.3rem;font-size:.8em;color:#fff}}\
.muted{{color:#6e7781}}</style></head><body><p><a href=\"/agents\">Fleet</a> · <a href=\"/alerts?state=open\">Alerts</a></p><h1>{t}</h1>{body}</body></html>",
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
    reason_list(&a.verdict.reasons, "all checks passed")
}

fn reason_list(rs: &[evidence::verdict::Reason], none: &str) -> String {
    if rs.is_empty() {
        return none.into();
    }
    rs.iter()
        .map(|r| {
            format!(
                "<span data-reason=\"{c}\">{c}</span>: {}",
                esc(&r.detail),
                c = esc(r.code.as_str())
            )
        })
        .collect::<Vec<_>>()
        .join("<br>")
}

fn ns_utc(ns: u64) -> String {
    crate::http::when::rfc3339(ns).unwrap_or_else(|| format!("{ns} ns"))
}

/// The node's health from the last pulse that carried it.
fn health_section(a: &AgentView) -> String {
    let Some(h) = &a.health else {
        return "<h2>Health</h2><p>No pulse has carried the node's health yet.</p>".into();
    };
    let mib = |kib: u64| kib / 1024;
    let gib = |b: u64| b / (1024 * 1024 * 1024);
    let mut s = format!(
        "<h2>Health</h2><p>as of {}</p><table>",
        a.health_at_ns.map_or_else(|| "unknown".into(), ns_utc)
    );
    let clock = match h.clock {
        Some(c) if c.synchronised => format!(
            "synchronised (estimated error {} us, maximum {} us)",
            c.est_error_us, c.max_error_us
        ),
        Some(c) => format!(
            "<b>unsynchronised</b> (estimated error {} us, maximum {} us)",
            c.est_error_us, c.max_error_us
        ),
        None => "unknown (adjtimex unreadable)".into(),
    };
    let rows = [
        (
            "uptime",
            format!("{} h {} min", h.uptime_s / 3600, (h.uptime_s % 3600) / 60),
        ),
        (
            "load (1, 5, 15 min)",
            format!(
                "{:.2} {:.2} {:.2}",
                h.load_avg[0], h.load_avg[1], h.load_avg[2]
            ),
        ),
        (
            "memory available",
            format!(
                "{} of {} MiB",
                mib(h.mem_available_kib),
                mib(h.mem_total_kib)
            ),
        ),
        (
            "agent",
            format!(
                "RSS {} MiB, CPU {} s",
                mib(h.agent_rss_kib),
                h.agent_cpu_ms / 1000
            ),
        ),
        ("clock", clock),
        (
            "last error",
            h.last_error.as_deref().map_or_else(|| "none".into(), esc),
        ),
    ];
    for (k, v) in rows {
        s.push_str(&format!("<tr><td>{k}</td><td>{v}</td></tr>"));
    }
    for d in &h.disks {
        s.push_str(&format!(
            "<tr><td>disk {}</td><td>{} of {} GiB free</td></tr>",
            esc(&d.mount),
            gib(d.free_bytes),
            gib(d.total_bytes)
        ));
    }
    s.push_str("</table>");
    s
}

fn workloads_section(a: &AgentView) -> String {
    let mut s = String::from("<h2>Workloads</h2>");
    match &a.workloads_state {
        None => {
            s.push_str("<p class=\"muted\">The agent does not report workloads.</p>");
            return s;
        }
        Some(st) => s.push_str(&format!(
            "<p>collector: <b data-collector=\"workloads\">{}</b>{}</p>",
            esc(&st.state),
            st.reason
                .as_deref()
                .map(|r| format!(" ({})", esc(r)))
                .unwrap_or_default()
        )),
    }
    s.push_str("<table><tr><th>name</th><th>image</th><th>digest</th><th>state</th><th>badge</th><th>reasons</th><th>signer</th><th>verified at</th></tr>");
    for w in &a.workloads {
        let b = w.status.badge();
        let state = a
            .measurements
            .workloads
            .as_ref()
            .and_then(|l| l.items.as_ref())
            .and_then(|i| i.iter().find(|x| x.id == w.id))
            .map(|x| x.state.clone())
            .unwrap_or_default();
        s.push_str(&format!(
            "<tr data-workload=\"{name}\"><td>{name}</td><td><code>{}</code></td><td><code>{}</code></td><td>{}</td>\
<td><span class=\"badge {b}\" data-badge=\"{b}\">{b}</span></td><td>{}</td><td class=\"signer\">{}</td><td>{}</td></tr>",
            esc(w.image.split('@').next().unwrap_or_default()),
            w.image_digest.as_deref().map_or_else(
                || "none".to_owned(),
                |d| format!(
                    "<span title=\"{}\">{}…</span>",
                    esc(d),
                    esc(d.get(..19).unwrap_or(d))
                )
            ),
            esc(&state),
            reason_list(&w.reasons, "signed under the image policy"),
            esc(w.signer.as_deref().unwrap_or("")),
            w.verified_at_ns.map(ns_utc).unwrap_or_default(),
            name = esc(&w.name),
        ));
    }
    s.push_str("</table>");
    s
}

fn ebpf_section(a: &AgentView) -> String {
    let mut s = String::from("<h2>eBPF programs</h2>");
    let Some(e) = &a.measurements.ebpf else {
        s.push_str("<p class=\"muted\">The agent does not report eBPF programs.</p>");
        return s;
    };
    s.push_str(&format!(
        "<p>collector: <b data-collector=\"ebpf\">{}</b>{} · BPF LSM active: <b data-lsm=\"{lsm}\">{lsm}</b></p>",
        crate::judge::baseline::state_str(e.state),
        e.reason
            .as_deref()
            .map(|r| format!(" ({})", esc(r)))
            .unwrap_or_default(),
        lsm = match e.extra.lsm_active {
            Some(true) => "yes",
            Some(false) => "no",
            None => "unknown",
        }
    ));
    let lkg: Vec<evidence::Digest32> = a
        .last_known_good
        .ebpf
        .as_ref()
        .and_then(|l| l.items.as_ref())
        .map(|i| i.iter().map(|p| p.sha256).collect())
        .unwrap_or_default();
    s.push_str("<table><tr><th>id</th><th>name</th><th>type</th><th>tag</th><th>sha256</th><th>pinned</th><th>at last-known-good</th></tr>");
    for p in e.items.as_deref().unwrap_or_default() {
        s.push_str(&format!(
            "<tr data-prog=\"{name}\"><td>{}</td><td>{name}</td><td>{}</td><td><code>{}</code></td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
            p.id,
            esc(&p.prog_type),
            esc(&p.tag),
            p.sha256,
            p.pinned.iter().map(|x| esc(x)).collect::<Vec<_>>().join("<br>"),
            if lkg.contains(&p.sha256) { "yes" } else { "<b>no</b>" },
            name = esc(&p.name),
        ));
    }
    s.push_str("</table>");
    s
}

fn alerts_table(alerts: &[Alert], now: u64) -> String {
    let mut s = String::from("<h2>Recent alerts</h2><p><a href=\"/alerts\">All alerts</a></p><table><tr><th>when (UTC)</th><th>agent</th><th>kind</th><th>sev</th><th>detail</th><th>state</th></tr>");
    for a in alerts {
        let w = crate::http::when::When::at(a.at_ns, now);
        let state = match &a.ack {
            Some(k) => format!("acknowledged by {}", esc(&k.by)),
            None if a.is_open() => "<b>open</b>".into(),
            None => "record".into(),
        };
        s.push_str(&format!(
            "<tr data-alert=\"{}\"><td><time datetime=\"{}\">{}</time> <span class=\"muted\">{}</span></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{state}</td></tr>",
            esc(&a.id),
            w.iso,
            w.utc,
            w.rel,
            esc(&a.agent_id),
            a.kind.as_str(),
            a.severity,
            esc(&a.detail)
        ));
    }
    s.push_str("</table>");
    s
}

/// One agent's page: verdict, measurements against last-known-good, workloads, eBPF,
/// TDX evidence and its alerts.
pub fn agent(a: &AgentView, alerts: &[Alert], now: u64) -> String {
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
    s.push_str(&workloads_section(a));
    s.push_str(&ebpf_section(a));
    s.push_str(&health_section(a));
    if let Some(t) = &a.attestation {
        s.push_str(&attestation_table(t));
    }
    s.push_str(&alerts_table(alerts, now));
    page(&format!("Agent {}", a.agent_id), &s)
}

/// The TDX evidence of the last registration. A TDREPORT's fields are labelled as
/// claims: nothing remote verified them.
fn attestation_table(t: &crate::model::TdxAttestation) -> String {
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
