//! The agent's local HTTP API: `/health`, `/api/v1/verify`, `/api/v1/status`,
//! `/metrics`, and its OpenAPI 3.1 description at `/openapi.json` ([`ApiDoc`]).
//!
//! Read-only and meant for the node itself (it listens on loopback by default): other
//! services gate their start-up on `/api/v1/verify`.
//!
//! The gate fails closed, over time too: it opens only on a verdict the control plane
//! confirmed (an accepted registration or pulse) within the last `missed_heartbeats x
//! heartbeat_interval`, checked against the clock at each request, whose colour is in
//! `gate_accepts`. A refusal by the control plane clears the verdict at once. The
//! status page never serves a signed pulse (anyone on the node could replay it).

use std::sync::{Arc, RwLock};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use evidence::verdict::{Status, Verdict};

use crate::state::AgentState;
use provenant_base::clock::{Clock, UnixNanos};

#[derive(Clone)]
struct Local {
    state: Arc<RwLock<AgentState>>,
    clock: Arc<dyn Clock>,
}

/// The local API's routes (`/health`, `/api/v1/verify`, `/api/v1/status`, `/metrics`,
/// `/openapi.json`) over the shared agent state; `clock` dates the verdict's expiry.
pub fn router(state: Arc<RwLock<AgentState>>, clock: Arc<dyn Clock>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/api/v1/verify", get(verify))
        .route("/api/v1/status", get(status))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .with_state(Local { state, clock })
}

/// The local API's OpenAPI document, generated from the handlers below.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Provenant guest agent (local API)",
        description = "Read-only, for the node itself (loopback by default, no \
            authentication): other services gate their start-up on `/api/v1/verify`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    paths(health, verify, status, metrics, openapi)
)]
pub struct ApiDoc;

/// The document, versioned like the agent.
pub fn document() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi;
    let mut d = ApiDoc::openapi();
    d.info.version = env!("CARGO_PKG_VERSION").into();
    d
}

#[utoipa::path(
    get, path = "/openapi.json",
    summary = "This document (OpenAPI 3.1)",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json", body = Object))
)]
async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(document())
}

/// `/metrics` (OpenMetrics text, like the control plane's): pulses accepted and
/// refused, whether the start-up gate is open, the local verdict's badge, the age of
/// the last accepted pulse, and the last measurement's time per collector.
#[utoipa::path(
    get, path = "/metrics",
    summary = "Prometheus metrics (OpenMetrics text)",
    responses((status = 200, description = "The metrics", content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8", body = String))
)]
async fn metrics(State(l): State<Local>) -> Response {
    use prometheus_client::encoding::EncodeLabelSet;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::metrics::gauge::Gauge;
    use prometheus_client::registry::Registry;
    #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct L {
        result: &'static str,
    }
    #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct B {
        badge: &'static str,
    }
    #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct C {
        collector: &'static str,
    }
    let (s, now) = snapshot(&l);
    let mut r = Registry::with_prefix("provenant_agent");
    let pulses = Family::<L, Counter>::default();
    pulses
        .get_or_create(&L { result: "accepted" })
        .inc_by(s.pulses_accepted);
    pulses
        .get_or_create(&L { result: "refused" })
        .inc_by(s.pulses_refused);
    r.register("pulses", "Pulses by the control plane's answer", pulses);
    let (open, _) = gate(&s, now);
    let g = Gauge::<i64>::default();
    g.set(i64::from(open));
    r.register("gate_open", "1 while the start-up gate is open", g);
    let badge = Family::<B, Gauge>::default();
    let b = local_verdict(&s, now).map_or("unknown", |v| v.status.badge());
    badge.get_or_create(&B { badge: b }).set(1);
    r.register(
        "verdict",
        "The local verdict's badge (1 on the current one)",
        badge,
    );
    if let Some(p) = &s.last_pulse {
        let age = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        age.set(now.since(UnixNanos(p.issued_at_ns)).as_secs_f64());
        r.register(
            "last_pulse_age_seconds",
            "Time since the last accepted pulse was sent",
            age,
        );
    }
    let took = Family::<C, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    for (c, us) in &s.collect_us {
        // Microseconds as f64: exact below 2^53.
        let secs = std::time::Duration::from_micros(*us).as_secs_f64();
        took.get_or_create(&C { collector: c }).set(secs);
    }
    r.register(
        "collect_seconds",
        "How long the last measurement took per collector",
        took,
    );
    let mut text = String::new();
    let _ = prometheus_client::encoding::text::encode(&mut text, &r);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

fn snapshot(l: &Local) -> (AgentState, UnixNanos) {
    let s = l.state.read().unwrap_or_else(|e| e.into_inner()).clone();
    (s, l.clock.now())
}

/// The verdict as the node may rely on it at `now`: the control plane's while it
/// stands; `unknown` when there is none (never given, or cleared by a refusal) or it
/// expired (no accepted pulse for `gate.expires_after_ms`).
pub fn local_verdict(s: &AgentState, now: UnixNanos) -> Result<&Verdict, &'static str> {
    let Some(v) = &s.verdict else {
        return Err("NoVerdict");
    };
    let Some(at) = s.verdict_at_ns else {
        return Err("NoVerdict");
    };
    let window = std::time::Duration::from_millis(s.gate.expires_after_ms);
    if now.since(UnixNanos(at)) > window {
        return Err("VerdictExpired");
    }
    Ok(v)
}

/// Whether the start-up gate is open at `now`, and the verdict shown with it.
pub fn gate(s: &AgentState, now: UnixNanos) -> (bool, serde_json::Value) {
    let v = local_verdict(s, now);
    let open = v
        .as_ref()
        .is_ok_and(|v| s.gate.accepts.iter().any(|b| b.matches(v.status)));
    (open, verdict_json(s, now))
}

/// The verdict as shown locally (see [`local_verdict`]).
fn verdict_json(s: &AgentState, now: UnixNanos) -> serde_json::Value {
    match local_verdict(s, now) {
        Ok(v) => json!({"status": v.status, "badge": v.status.badge(), "reasons": v.reasons}),
        Err(code) => {
            let detail = match code {
                "VerdictExpired" => format!(
                    "no pulse accepted by the control plane for more than {} ms \
                     (missed_heartbeats x heartbeat_interval); last error: {}",
                    s.gate.expires_after_ms,
                    s.last_error.as_deref().unwrap_or("none")
                ),
                _ => format!(
                    "the control plane has not given a standing verdict; last error: {}",
                    s.last_error.as_deref().unwrap_or("none")
                ),
            };
            json!({"status": "unknown", "badge": "unknown", "reasons": [
                {"code": code, "status": "unknown", "detail": detail}
            ]})
        }
    }
}

#[utoipa::path(
    get, path = "/health",
    summary = "The agent's state, local verdict, gate, workloads and collectors",
    responses((status = 200, description = "The agent's health", body = crate::api_schema::HealthBody))
)]
async fn health(State(l): State<Local>) -> Json<serde_json::Value> {
    let (s, now) = snapshot(&l);
    Json(json!({
        "agent_id": s.agent_id,
        "state": s.phase,
        "tier": s.tier,
        "event_log": s.event_log,
        "attestation": if s.key_fingerprint.is_some() { "enabled" } else { "disabled" },
        "last_pulse": s.last_pulse,
        "verdict": verdict_json(&s, now),
        "gate": {"open": gate(&s, now).0, "accepts": s.gate.accepts, "expires_after_ms": s.gate.expires_after_ms},
        "requote_failed": s.requote_failed,
        "last_error": s.last_error,
        "deployments": deployments(&s),
        "collectors": collectors(&s),
    }))
}

/// One entry per reported workload, with the control plane's last judgement of it:
/// matched by container id and image digest, so a badge for another image (the
/// container was recreated, or its digest changed) is not shown for this one.
/// `unknown` with a reason where the control plane has not judged it (yet).
pub fn deployments(s: &AgentState) -> serde_json::Value {
    let items = s
        .measurements
        .as_ref()
        .and_then(|m| m.workloads.as_ref())
        .and_then(|w| w.items.as_deref())
        .unwrap_or_default();
    let list: Vec<serde_json::Value> = items
        .iter()
        .map(|w| {
            let badge = s
                .workload_badges
                .iter()
                .find(|b| b.id == w.id && b.image_digest == w.image_digest);
            let (status, reasons, verified_at, signer) = match badge {
                Some(b) => (
                    b.status,
                    b.reasons
                        .iter()
                        .map(|r| json!({"code": r.code, "status": r.status, "detail": r.detail}))
                        .collect::<Vec<_>>(),
                    b.verified_at_ns.map(rfc3339),
                    b.signer.clone(),
                ),
                None => (
                    Status::Unknown,
                    vec![json!({
                        "code": "NotJudged",
                        "status": "unknown",
                        "detail": "the control plane has not judged this workload yet",
                    })],
                    None,
                    None,
                ),
            };
            json!({
                "name": w.name,
                "id": w.id,
                "state": w.state,
                "image": w.image,
                "image_digest": w.image_digest,
                "attestation_status": status.badge(),
                "reasons": reasons,
                "verified_at": verified_at,
                "signer": signer,
            })
        })
        .collect();
    serde_json::Value::Array(list)
}

/// The collectors' states, and a summary of the eBPF list.
fn collectors(s: &AgentState) -> serde_json::Value {
    let m = s.measurements.as_ref();
    let workloads = m.and_then(|m| m.workloads.as_ref()).map(|w| {
        json!({
            "state": w.state,
            "reason": w.reason,
            "digest": w.digest,
            "count": w.items.as_ref().map(Vec::len),
        })
    });
    let ebpf = m.and_then(|m| m.ebpf.as_ref()).map(|e| {
        let programs: Vec<serde_json::Value> = e
            .items
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|p| {
                json!({
                    "id": p.id,
                    "name": p.name,
                    "type": p.prog_type,
                    "tag": p.tag,
                    "sha256": p.sha256,
                    "pinned": p.pinned,
                })
            })
            .collect();
        json!({
            "state": e.state,
            "reason": e.reason,
            "lsm_active": e.extra.lsm_active,
            "digest": e.digest,
            "count": e.items.as_ref().map(Vec::len),
            "programs": programs,
        })
    });
    json!({"workloads": workloads, "ebpf": ebpf})
}

/// UTC nanoseconds since the epoch as RFC 3339 (`2026-11-24T18:15:22.123456789Z`).
pub fn rfc3339(ns: u64) -> String {
    let (secs, nanos) = (ns / 1_000_000_000, ns % 1_000_000_000);
    time::OffsetDateTime::from_unix_timestamp(i64::try_from(secs).unwrap_or(i64::MAX))
        .map(|t| {
            format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            )
        })
        .unwrap_or_else(|_| format!("{ns} ns"))
}

#[utoipa::path(
    get, path = "/api/v1/verify",
    summary = "The start-up gate: 200 while open, 503 while closed",
    responses(
        (status = 200, description = "Open: a confirmed, unexpired verdict whose colour the gate accepts", body = crate::api_schema::VerifyBody),
        (status = 503, description = "Closed: no standing verdict, expired, or a colour the gate does not accept", body = crate::api_schema::VerifyBody),
    )
)]
async fn verify(State(l): State<Local>) -> Response {
    let (s, now) = snapshot(&l);
    let (ok, verdict) = gate(&s, now);
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(json!({"acceptable": ok, "accepts": s.gate.accepts, "verdict": verdict})),
    )
        .into_response()
}

#[utoipa::path(
    get, path = "/api/v1/status",
    summary = "The agent's full state (never a signed pulse)",
    responses((status = 200, description = "The state", body = crate::state::AgentState))
)]
async fn status(State(l): State<Local>) -> Json<AgentState> {
    Json(snapshot(&l).0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use evidence::api::WorkloadBadge;
    use evidence::verdict::{Reason, ReasonCode};
    use evidence::{Workload, Workloads};

    #[test]
    fn rfc3339_known_values() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            rfc3339(1_700_000_000_123_456_789),
            "2023-11-14T22:13:20.123456789Z"
        );
        assert_eq!(
            rfc3339(951_782_400_000_000_000),
            "2000-02-29T00:00:00.000000000Z"
        );
    }

    fn workload(id: &str, digest: Option<&str>) -> Workload {
        Workload {
            name: format!("c-{id}"),
            id: id.into(),
            state: "running".into(),
            image: "reg/app:1".into(),
            image_id: "sha256:11".into(),
            image_digest: digest.map(str::to_string),
        }
    }

    #[test]
    fn deployments_match_badges_by_id_and_digest() {
        let items = vec![
            workload("a", Some("sha256:aa")),
            workload("b", Some("sha256:bb")),
            workload("c", None),
        ];
        let mut s = AgentState {
            agent_id: "n".into(),
            partition: "default".into(),
            phase: crate::state::Phase::Pulsing,
            tier: evidence::Tier::Software,
            key_fingerprint: None,
            registered_at_ns: None,
            last_pulse: None,
            verdict: None,
            verdict_at_ns: None,
            gate: crate::state::GateConfig {
                accepts: vec![crate::config::GateBadge::Green],
                expires_after_ms: 3000,
            },
            requote_failed: None,
            last_error: None,
            pulses_accepted: 0,
            pulses_refused: 0,
            measurements: None,
            workload_badges: vec![
                WorkloadBadge {
                    name: "c-a".into(),
                    id: "a".into(),
                    image: "reg/app:1".into(),
                    image_digest: Some("sha256:aa".into()),
                    status: Status::Warn,
                    reasons: vec![Reason {
                        code: ReasonCode::SoftwareTier,
                        status: Status::Warn,
                        detail: "software".into(),
                    }],
                    signer: Some("key".into()),
                    verified_at_ns: Some(0),
                    rekor_log_index: None,
                },
                // Judged for another digest: not this workload's badge.
                WorkloadBadge {
                    name: "c-b".into(),
                    id: "b".into(),
                    image: "reg/app:1".into(),
                    image_digest: Some("sha256:old".into()),
                    status: Status::Pass,
                    reasons: vec![],
                    signer: None,
                    verified_at_ns: Some(0),
                    rekor_log_index: None,
                },
            ],
            event_log: None,
            collect_us: Default::default(),
        };
        assert_eq!(deployments(&s), json!([]));
        let mut m = crate::collect::Collector::new(vec![]).collect().unwrap();
        m.workloads = Some(Workloads::full(items, ()));
        s.measurements = Some(m);
        let d = deployments(&s);
        assert_eq!(d[0]["attestation_status"], "yellow");
        assert_eq!(d[0]["reasons"][0]["code"], "SoftwareTier");
        assert_eq!(d[0]["verified_at"], "1970-01-01T00:00:00.000000000Z");
        assert_eq!(d[1]["attestation_status"], "unknown");
        assert_eq!(d[1]["reasons"][0]["code"], "NotJudged");
        assert_eq!(d[1]["verified_at"], serde_json::Value::Null);
        assert_eq!(d[2]["attestation_status"], "unknown");
        assert_eq!(d[2]["image_digest"], serde_json::Value::Null);
    }

    /// A clock the test moves by hand.
    struct ManualClock(std::sync::atomic::AtomicU64);
    impl Clock for ManualClock {
        fn now(&self) -> UnixNanos {
            UnixNanos(self.0.load(std::sync::atomic::Ordering::SeqCst))
        }
    }
    impl ManualClock {
        fn set(&self, ns: u64) {
            self.0.store(ns, std::sync::atomic::Ordering::SeqCst)
        }
    }

    const T: u64 = 1_800_000_000_000_000_000;
    const MS: u64 = 1_000_000;

    fn state(status: Status, accepts: Vec<crate::config::GateBadge>) -> AgentState {
        AgentState {
            agent_id: "n".into(),
            partition: "default".into(),
            phase: crate::state::Phase::Pulsing,
            tier: evidence::Tier::Tdx,
            key_fingerprint: Some("k".into()),
            registered_at_ns: Some(T),
            last_pulse: None,
            verdict: Some(Verdict {
                status,
                reasons: vec![],
            }),
            verdict_at_ns: Some(T),
            // missed_heartbeats 3 x heartbeat_interval 1s
            gate: crate::state::GateConfig {
                accepts,
                expires_after_ms: 3000,
            },
            requote_failed: None,
            last_error: None,
            pulses_accepted: 1,
            pulses_refused: 0,
            measurements: None,
            workload_badges: vec![],
            event_log: None,
            collect_us: Default::default(),
        }
    }

    /// Serves the local API over `state` and `clock` on loopback.
    async fn serve(state: Arc<RwLock<AgentState>>, clock: Arc<ManualClock>) -> String {
        let app = router(state, clock);
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", l.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(l, app).await });
        base
    }

    async fn verify_at(base: &str) -> (u16, serde_json::Value) {
        let r = reqwest::get(format!("{base}/api/v1/verify")).await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    #[tokio::test]
    async fn finding02_gate_expires_at_request_time() {
        use crate::config::GateBadge::Green;
        let clock = Arc::new(ManualClock(T.into()));
        let shared = Arc::new(RwLock::new(state(Status::Pass, vec![Green])));
        // Nothing updates the state below (no agent loop runs): only the clock moves.
        let base = serve(shared.clone(), clock.clone()).await;
        let (s, v) = verify_at(&base).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["verdict"]["badge"], "green");
        clock.set(T + 3000 * MS);
        assert_eq!(verify_at(&base).await.0, 200, "the window's last instant");
        // Past missed_heartbeats x heartbeat_interval without an accepted pulse.
        clock.set(T + 3000 * MS + 1);
        let (s, v) = verify_at(&base).await;
        assert_eq!(s, 503, "{v}");
        assert_eq!(v["acceptable"], false);
        assert_eq!(v["verdict"]["badge"], "unknown");
        assert_eq!(v["verdict"]["reasons"][0]["code"], "VerdictExpired");
        let h: serde_json::Value = reqwest::get(format!("{base}/health"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(h["verdict"]["badge"], "unknown", "{h}");
        assert_eq!(h["gate"]["open"], false, "{h}");
        // An accepted pulse confirms the verdict again.
        shared.write().unwrap().verdict_at_ns = Some(T + 3500 * MS);
        clock.set(T + 4000 * MS);
        assert_eq!(verify_at(&base).await.0, 200);
    }

    #[tokio::test]
    async fn finding02_gate_waits_past_the_expiry_on_a_real_clock() {
        use crate::config::GateBadge::Green;
        let now = provenant_base::clock::SystemClock.now().get();
        let mut st = state(Status::Pass, vec![Green]);
        st.verdict_at_ns = Some(now);
        st.gate.expires_after_ms = 300;
        let app = router(
            Arc::new(RwLock::new(st)),
            Arc::new(provenant_base::clock::SystemClock),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", l.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(l, app).await });
        assert_eq!(verify_at(&base).await.0, 200);
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        let (s, v) = verify_at(&base).await;
        assert_eq!(s, 503, "{v}");
        assert_eq!(v["verdict"]["reasons"][0]["code"], "VerdictExpired");
    }

    #[tokio::test]
    async fn finding02_yellow_opens_only_when_configured_and_refusal_closes() {
        use crate::config::GateBadge::{Green, Yellow};
        let clock = Arc::new(ManualClock(T.into()));
        let yellow_green_only = serve(
            Arc::new(RwLock::new(state(Status::Warn, vec![Green]))),
            clock.clone(),
        )
        .await;
        assert_eq!(verify_at(&yellow_green_only).await.0, 503);
        let yellow_ok = serve(
            Arc::new(RwLock::new(state(Status::Warn, vec![Green, Yellow]))),
            clock.clone(),
        )
        .await;
        assert_eq!(verify_at(&yellow_ok).await.0, 200);
        // Red and unknown never open it.
        for st in [Status::Fail, Status::Unknown] {
            let b = serve(
                Arc::new(RwLock::new(state(st, vec![Green, Yellow]))),
                clock.clone(),
            )
            .await;
            assert_eq!(verify_at(&b).await.0, 503);
        }
        // The defaults: green only on tdx, green and yellow where the verdict is
        // never better than yellow.
        assert_eq!(
            crate::config::GateBadge::default_for(evidence::Tier::Tdx),
            vec![Green]
        );
        assert_eq!(
            crate::config::GateBadge::default_for(evidence::Tier::Software),
            vec![Green, Yellow]
        );
        // A refusal clears the verdict: closed at once, within the window.
        let shared = Arc::new(RwLock::new(state(Status::Pass, vec![Green])));
        let b = serve(shared.clone(), clock.clone()).await;
        assert_eq!(verify_at(&b).await.0, 200);
        shared.write().unwrap().verdict = None;
        let (s, v) = verify_at(&b).await;
        assert_eq!(s, 503);
        assert_eq!(v["verdict"]["reasons"][0]["code"], "NoVerdict");
    }

    /// `/metrics` reports the state the agent keeps, and its gate and verdict as
    /// `/api/v1/verify` judges them at request time.
    #[tokio::test]
    async fn metrics_follow_the_state_and_the_gate_expiry() {
        use crate::config::GateBadge::Green;
        let clock = Arc::new(ManualClock(T.into()));
        let mut st = state(Status::Pass, vec![Green]);
        st.pulses_accepted = 7;
        st.pulses_refused = 2;
        st.collect_us.insert("workloads", 1_500);
        st.collect_us.insert("files", 250);
        let base = serve(Arc::new(RwLock::new(st)), clock.clone()).await;
        let get = |base: String| async move {
            let r = reqwest::get(format!("{base}/metrics")).await.unwrap();
            assert_eq!(r.status(), 200);
            assert!(r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/openmetrics-text"));
            r.text().await.unwrap()
        };
        let m = get(base.clone()).await;
        for want in [
            "provenant_agent_pulses_total{result=\"accepted\"} 7",
            "provenant_agent_pulses_total{result=\"refused\"} 2",
            "provenant_agent_gate_open 1",
            "provenant_agent_verdict{badge=\"green\"} 1",
            "provenant_agent_collect_seconds{collector=\"workloads\"} 0.0015",
            "provenant_agent_collect_seconds{collector=\"files\"} 0.00025",
            "# EOF",
        ] {
            assert!(m.lines().any(|l| l == want), "missing {want:?} in:\n{m}");
        }
        assert!(!m.contains("last_pulse_age"), "no pulse yet:\n{m}");
        // Past the gate's window the same state reads as closed and unknown.
        clock.set(T + 3000 * MS + 1);
        let m = get(base).await;
        assert!(m.lines().any(|l| l == "provenant_agent_gate_open 0"), "{m}");
        assert!(
            m.lines()
                .any(|l| l == "provenant_agent_verdict{badge=\"unknown\"} 1"),
            "{m}"
        );
    }
}
