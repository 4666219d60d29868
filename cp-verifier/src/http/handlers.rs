//! The control plane's HTTP handlers, each with the `#[utoipa::path]` that documents
//! it in `/openapi.json` ([`crate::http::openapi`]): the agents' protocol
//! (`/api/v1/challenge`, `/register`, `/heartbeat`), the read API, the operator
//! writes and the fleet pages. Access checks, rate limits and response headers are
//! the router's ([`crate::http::router`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use evidence::api::{ErrorBody, RegisterRequest, MAX_HEARTBEAT_BODY, MAX_REGISTER_BODY};
use evidence::Envelope;
use serde::Deserialize;

use crate::act::operator::ExpectRequest;
use crate::http::error::ApiError;
use crate::http::fleet_query::{self, FleetFilter};
use crate::http::transport::Peer;
use crate::plane::ControlPlane;

/// Largest body on operator endpoints.
pub(crate) const MAX_OPERATOR_BODY: usize = 16 * 1024;

type Cp = Arc<ControlPlane>;

/// The body of `/healthz` as [`ControlPlane::health`] writes it (a JSON value there);
/// documentation only, checked against real answers by `tests/openapi.rs`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct HealthzBody {
    /// `ok`, `degraded` (a background task is not running) or `unavailable` (the
    /// store does not take a write).
    #[schema(pattern = "^(ok|degraded|unavailable)$")]
    status: String,
    store: HealthzStore,
    queues: HealthzQueues,
    /// When the liveness sweep last ran, UTC ns; null before the first.
    last_sweep_ns: Option<u64>,
    /// Milliseconds since then.
    last_sweep_age_ms: Option<u64>,
    /// The supervised background tasks.
    tasks: Vec<crate::supervise::TaskView>,
}

/// `/healthz` `store`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct HealthzStore {
    /// Whether a real, committed write succeeded.
    writable: bool,
    /// Why not.
    error: Option<String>,
}

/// `/healthz` `queues`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct HealthzQueues {
    /// Durable webhook deliveries waiting; null when the store cannot say.
    webhook_outbox: Option<u64>,
    /// Best-effort webhook deliveries waiting.
    webhook_best_effort: u64,
    /// Best-effort deliveries dropped since start (queue full).
    webhook_best_effort_dropped: u64,
    /// Image signature verifications waiting.
    image_verifications: u64,
    /// Verifications not queued since start (queue full).
    image_queue_full: u64,
}

#[utoipa::path(
    get, path = "/", tag = "pages",
    summary = "Redirects to the fleet page",
    responses((status = 303, description = "To `/agents`")),
    security(())
)]
pub(crate) async fn root() -> Redirect {
    Redirect::to("/agents")
}

fn body(b: Result<Bytes, BytesRejection>, limit: usize) -> Result<Bytes, ApiError> {
    b.map_err(|e| {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(format!("request body over the limit of {limit} bytes"))
        } else {
            ApiError::bad_request("BadBody", e.body_text())
        }
    })
}

fn json<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(b).map_err(|e| {
        let kind = if e.is_data() {
            "InvalidField"
        } else {
            "MalformedJson"
        };
        ApiError::bad_request(kind, e.to_string())
    })
}

#[utoipa::path(
    get, path = "/api/v1/challenge", tag = "agent protocol",
    summary = "A single-use nonce for the next registration",
    responses(
        (status = 200, description = "The nonce and its expiry", body = evidence::api::Challenge),
        (status = 429, description = "`RateLimited`: too many challenges from this source", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "`StoreUnavailable`: storage is unavailable, nothing was recorded; retry", body = ErrorBody), (status = 500, description = "`Internal`: a failure of the control plane itself (logged, never echoed)", body = ErrorBody),
    ),
    security(())
)]
pub(crate) async fn challenge(State(cp): State<Cp>) -> Result<Response, ApiError> {
    Ok(Json(cp.challenge().await?).into_response())
}

/// `/healthz`: JSON (store writability, queue depths, last sweep, background
/// tasks); 503 when the store does not take a write.
#[utoipa::path(
    get, path = "/healthz", tag = "operations",
    summary = "Liveness and readiness: store writability, queues, last sweep, tasks",
    responses(
        (status = 200, description = "The store takes writes", body = HealthzBody),
        (status = 503, description = "The store does not take a write (`status` is `unavailable`)", body = HealthzBody),
    ),
    security(())
)]
pub(crate) async fn healthz(State(cp): State<Cp>) -> Response {
    let (writable, body) = cp.health().await;
    let status = if writable {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        [(axum::http::header::CACHE_CONTROL, "no-store")],
        Json(body),
    )
        .into_response()
}

#[utoipa::path(
    post, path = "/api/v1/register", tag = "agent protocol",
    summary = "Register an agent: a signed report with its platform evidence",
    request_body = evidence::api::RegisterRequest,
    responses(
        (status = 200, description = "Registered", body = evidence::api::RegisterResponse),
        (status = 400, description = "Malformed request: `MalformedJson`, `InvalidField`, `BadBase64`, `BadCertificate`, `InconsistentInventory`, `BadBody`, or another envelope or report decoding kind", body = ErrorBody),
        (status = 403, description = "Refused: `BadSignature`, `BadChallenge`, `Unenrolled`, `TierNotAllowed`, `IntervalTooLong`, `Revoked`, `Withdrawn`, or an attestation check (`QuoteVerificationFailed`, `DebugTd`, `Rtmr3Mismatch`, `TcbStatus`, `TierDowngrade`, ...; `advisories` lists Intel SA ids for a TCB status refusal)", body = ErrorBody),
        (status = 409, description = "`EventLogPrefixUnknown` or `EventLogPrefixMismatch` (send the whole event log), or `Replay` (a concurrent registration won)", body = ErrorBody),
        (status = 413, description = "`TooLarge`: the body is over the endpoint's limit", body = ErrorBody),
        (status = 422, description = "`ClockDesync`: the report's timestamp is outside the allowed skew", body = ErrorBody),
        (status = 429, description = "`RateLimited`: too many registrations from this source", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "`StoreUnavailable` or `UpstreamUnavailable` (collateral or provenance cannot be fetched now); retry", body = ErrorBody),
        (status = 500, description = "`Internal`: a failure of the control plane itself (logged, never echoed)", body = ErrorBody),
    ),
    security(())
)]
pub(crate) async fn register(
    State(cp): State<Cp>,
    peer: Option<axum::Extension<Peer>>,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let b = body(b, MAX_REGISTER_BODY)?;
    let req: RegisterRequest = json(&b)?;
    // The transport's peer address aggregates refused registrations by source.
    let source = peer.map(|axum::Extension(p)| p.addr.ip());
    let started = Instant::now();
    let r = cp.register_from(req, source).await.map_err(ApiError::from);
    let result = r.as_ref().map_or_else(ApiError::kind, |_| "accepted");
    cp.metrics.registration(result, started.elapsed());
    Ok(Json(r?).into_response())
}

#[utoipa::path(
    post, path = "/api/v1/heartbeat", tag = "agent protocol",
    summary = "A signed pulse (the body is the pulse's DSSE envelope)",
    request_body(content = evidence::Envelope, description = "A DSSE envelope whose payload is a pulse (`application/vnd.provenant.pulse.v1+json`)"),
    responses(
        (status = 200, description = "Accepted", body = evidence::api::HeartbeatResponse),
        (status = 400, description = "Malformed pulse (`MalformedJson`, `InvalidField`, `BadBase64`, `InconsistentInventory`, ...)", body = ErrorBody),
        (status = 403, description = "`BadSignature`, `Revoked` or `Withdrawn`", body = ErrorBody),
        (status = 404, description = "`UnknownAgent`: no agent registered under this id", body = ErrorBody),
        (status = 409, description = "`Replay`: seen before, or not continuing the agent's chain", body = ErrorBody),
        (status = 413, description = "`TooLarge`: the body is over the endpoint's limit", body = ErrorBody),
        (status = 422, description = "`ClockDesync`: the pulse's timestamp is outside the allowed skew", body = ErrorBody),
        (status = 503, description = "`StoreUnavailable`: storage is unavailable, nothing was recorded; retry", body = ErrorBody), (status = 500, description = "`Internal`: a failure of the control plane itself (logged, never echoed)", body = ErrorBody),
    ),
    security(())
)]
pub(crate) async fn heartbeat(
    State(cp): State<Cp>,
    peer: Option<axum::Extension<Peer>>,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let b = body(b, MAX_HEARTBEAT_BODY)?;
    let env = Envelope::from_json(&b)?;
    // Who the connection's agent certificate names: a bad signature counts toward
    // `Compromised` only when it names the pulse's agent.
    let names = peer
        .map(|axum::Extension(p)| p.agent_names)
        .unwrap_or_default();
    let r = cp.heartbeat_from(env, &names).await.map_err(ApiError::from);
    cp.metrics
        .pulse(r.as_ref().map_or_else(ApiError::kind, |_| "accepted"));
    Ok(Json(r?).into_response())
}

/// `GET /api/v1/events`: Server-Sent Events of verdict changes and alerts, with a
/// keep-alive comment every 15 s (an idle stream would otherwise be cut off by the
/// transport's idle timeout).
#[utoipa::path(
    get, path = "/api/v1/events", tag = "read",
    summary = "Server-Sent Events of verdict changes and alerts",
    responses(
        (status = 200, description = "An event stream (`verdict`, `alert`, `lagged` events; a keep-alive comment every 15 s)", content_type = "text/event-stream", body = String),
        (status = 401, description = "`Unauthorized`: no read access (viewer or operator bearer token, or operator client certificate)", body = ErrorBody),
        (status = 503, description = "`Busy`: every event stream slot is in use", body = ErrorBody),
    ),
    security(("viewer_token" = []), ("operator_token" = []), ("operator_cert" = []))
)]
pub(crate) async fn events(State(cp): State<Cp>) -> Result<Response, ApiError> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use tokio::sync::broadcast::error::RecvError;
    let Some(sub) = cp.events.subscribe() else {
        return Err(ApiError::Busy(format!(
            "{} event streams are open already; try again later",
            crate::http::events::MAX_SUBSCRIBERS
        )));
    };
    let stream = futures_util::stream::unfold(sub, |mut sub| async move {
        let ev = match sub.rx.recv().await {
            Ok(e) => Event::default()
                .event(e.name())
                .json_data(&e)
                .unwrap_or_else(|_| Event::default().event("error")),
            Err(RecvError::Lagged(n)) => Event::default()
                .event("lagged")
                .data(format!("{n} events were dropped: refetch /api/v1/agents")),
            Err(RecvError::Closed) => return None,
        };
        Some((Ok::<_, std::convert::Infallible>(ev), sub))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

#[utoipa::path(
    get, path = "/metrics", tag = "operations",
    summary = "Prometheus metrics (OpenMetrics text)",
    responses(
        (status = 200, description = "The metrics", content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8", body = String),
        (status = 401, description = "`Unauthorized`: no read access (viewer or operator bearer token, or operator client certificate)", body = ErrorBody), (status = 503, description = "`StoreUnavailable`: storage is unavailable, nothing was recorded; retry", body = ErrorBody), (status = 500, description = "`Internal`: a failure of the control plane itself (logged, never echoed)", body = ErrorBody),
    ),
    security(("viewer_token" = []), ("operator_token" = []), ("operator_cert" = []))
)]
pub(crate) async fn metrics(State(cp): State<Cp>) -> Result<Response, ApiError> {
    Ok((
        [(CONTENT_TYPE, crate::http::metrics::CONTENT_TYPE)],
        cp.metrics_text().await?,
    )
        .into_response())
}

/// `GET /api/v1/agents` filters and page.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AgentQuery {
    /// Only agents with this badge: `green`, `yellow`, `red` or `unknown`.
    badge: Option<String>,
    /// Only agents on this tier (`tdx`, `tdx-report`, `tpm`, `software`).
    tier: Option<String>,
    /// Only agents in this partition.
    partition: Option<String>,
    /// A case-insensitive substring of the agent id, a workload's image, name or
    /// digest, the MRTD (hex), or a reason code.
    q: Option<String>,
    /// Agents after this id (the previous page's `next`).
    after: Option<String>,
    /// Page size, 1 to 1000 (default 1000).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

#[utoipa::path(
    get, path = "/api/v1/agents", tag = "read",
    summary = "The fleet, filtered and paginated by agent id",
    params(AgentQuery),
    responses(
        (status = 200, description = "One page of agents", body = crate::http::views::AgentPage),
        (status = 400, description = "`BadQuery`: a filter or the limit is invalid", body = ErrorBody),
        (status = 401, description = "`Unauthorized`: no read access (viewer or operator bearer token, or operator client certificate)", body = ErrorBody), (status = 503, description = "`StoreUnavailable`: storage is unavailable, nothing was recorded; retry", body = ErrorBody), (status = 500, description = "`Internal`: a failure of the control plane itself (logged, never echoed)", body = ErrorBody),
    ),
    security(("viewer_token" = []), ("operator_token" = []), ("operator_cert" = []))
)]
pub(crate) async fn agents(
    State(cp): State<Cp>,
    q: Result<Query<AgentQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request("BadQuery", e.body_text()))?;
    let limit = fleet_query::page_limit(q.limit, fleet_query::MAX_PAGE)?;
    let f = FleetFilter {
        badge: q.badge,
        tier: q.tier,
        partition: q.partition,
        q: q.q,
    }
    .normalised()?;
    let fleet_query::Page {
        agents: page,
        matched: total,
        next,
        ..
    } = fleet_query::page(cp.agents().await?, &f, q.after.as_deref(), limit);
    Ok(Json(crate::http::views::AgentPage {
        agents: page,
        total,
        next,
    })
    .into_response())
}

#[utoipa::path(
    get, path = "/api/v1/agents/{id}", tag = "read",
    summary = "One agent",
    params(("id" = String, Path, description = "The agent's id")),
    responses(
        (status = 200, description = "The agent", body = crate::http::views::AgentView),
        (status = 401, description = "`Unauthorized`: no read access (viewer or operator bearer token, or operator client certificate)", body = ErrorBody), (status = 404, description = "`NotFound`: no such agent", body = ErrorBody), (status = 503, description = "`StoreUnavailable`: storage is unavailable, nothing was recorded; retry", body = ErrorBody), (status = 500, description = "`Internal`: a failure of the control plane itself (logged, never echoed)", body = ErrorBody),
    ),
    security(("viewer_token" = []), ("operator_token" = []), ("operator_cert" = []))
)]
pub(crate) async fn agent(
    State(cp): State<Cp>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(cp.agent(&id).await?).into_response())
}

/// `GET /api/v1/agents/{id}/history` query.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct HistoryQuery {
    /// Most badge changes returned (default 200, at most 1000).
    limit: Option<u32>,
}

#[utoipa::path(
    get, path = "/api/v1/agents/{id}/history", tag = "read",
    summary = "One agent's verdict timeline and pulses per minute",
    params(("id" = String, Path, description = "The agent's id"), HistoryQuery),
    responses(
        (status = 200, description = "Its badge changes (agent and workloads, newest first, each with its cause) and its pulses accepted and refused per minute over the last hour", body = crate::http::views::AgentHistory),
        (status = 400, description = "`BadQuery`: an unknown or malformed query parameter", body = ErrorBody),
        (status = 401, description = "`Unauthorized`: no read access", body = ErrorBody), (status = 404, description = "`NotFound`: no such agent", body = ErrorBody), (status = 503, description = "`StoreUnavailable`: storage is unavailable; retry", body = ErrorBody),
    ),
    security(("viewer_token" = []), ("operator_token" = []), ("operator_cert" = []))
)]
pub(crate) async fn agent_history(
    State(cp): State<Cp>,
    Path(id): Path<String>,
    q: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request("BadQuery", e.body_text()))?;
    Ok(Json(cp.history(&id, q.limit.unwrap_or(200)).await?).into_response())
}

#[utoipa::path(
    post, path = "/api/v1/agents/{id}/expect", tag = "operator",
    summary = "Announce a coordinated update, accept the current measurements, allow a tier, or clear `Compromised`",
    params(("id" = String, Path, description = "The agent's id")),
    request_body = ExpectRequest,
    responses(
        (status = 200, description = "The agent after the change", body = crate::http::views::AgentView),
        (status = 400, description = "The body is not JSON (`MalformedJson`, `BadBody`) or a field is wrong (`InvalidField`)", body = ErrorBody), (status = 401, description = "`Unauthorized`: the operator bearer token is missing or wrong, or no operator token is configured", body = ErrorBody), (status = 404, description = "`NotFound`: no such agent", body = ErrorBody), (status = 413, description = "`TooLarge`: the body is over the endpoint's limit", body = ErrorBody), (status = 503, description = "`StoreUnavailable`: storage is unavailable, nothing was recorded; retry", body = ErrorBody), (status = 500, description = "`Internal`: a failure of the control plane itself (logged, never echoed)", body = ErrorBody),
    ),
    security(("operator_token" = []))
)]
pub(crate) async fn expect(
    State(cp): State<Cp>,
    Path(id): Path<String>,
    headers: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let token = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    cp.authorize(token)?;
    let b = body(b, MAX_OPERATOR_BODY)?;
    let req: ExpectRequest = json(&b)?;
    Ok(Json(cp.expect(&id, req).await?).into_response())
}

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AlertQuery {
    /// Only this agent's alerts.
    pub(crate) agent: Option<String>,
    /// Only these severities, comma-separated (`1` critical .. `4` informational),
    /// e.g. `1,2`.
    pub(crate) severity: Option<String>,
    /// `open` (not acknowledged, severity 1-3), `acked`, or `all` (the default).
    pub(crate) state: Option<String>,
    /// Only alerts older than this alert id (the previous page's `next`).
    pub(crate) before: Option<String>,
    /// At most this many (default 100, capped at 1000).
    pub(crate) limit: Option<u32>,
}

impl AlertQuery {
    /// The store filter this query asks for.
    pub(crate) fn filter(&self) -> Result<crate::store::AlertFilter, ApiError> {
        let bad = |d: String| ApiError::bad_request("BadQuery", d);
        let mut severities = Vec::new();
        for s in self.severity.as_deref().unwrap_or("").split(',') {
            let s = s.trim();
            if s.is_empty() {
                continue;
            }
            match s.parse::<u8>() {
                Ok(n @ 1..=4) if !severities.contains(&n) => severities.push(n),
                Ok(1..=4) => {}
                _ => return Err(bad(format!("severity must be 1 to 4, not {s:?}"))),
            }
        }
        let open = match self.state.as_deref().map(str::trim).unwrap_or("") {
            "" | "all" => None,
            "open" => Some(true),
            "acked" => Some(false),
            other => {
                return Err(bad(format!(
                    "state must be open, acked or all, not {other:?}"
                )))
            }
        };
        Ok(crate::store::AlertFilter {
            agent: self
                .agent
                .as_deref()
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(str::to_owned),
            severities,
            open,
            before: self
                .before
                .as_deref()
                .filter(|b| !b.is_empty())
                .map(str::to_owned),
            limit: self.limit.unwrap_or(100).clamp(1, 1000),
        })
    }
}

#[utoipa::path(
    get, path = "/api/v1/alerts", tag = "read",
    summary = "The newest alerts first, filtered by agent, severity and state, paginated",
    params(AlertQuery),
    responses(
        (status = 200, description = "The alerts", body = crate::http::views::AlertList),
        (status = 400, description = "`BadQuery`", body = ErrorBody),
        (status = 401, description = "`Unauthorized`: no read access (viewer or operator bearer token, or operator client certificate)", body = ErrorBody), (status = 503, description = "`StoreUnavailable`: storage is unavailable, nothing was recorded; retry", body = ErrorBody), (status = 500, description = "`Internal`: a failure of the control plane itself (logged, never echoed)", body = ErrorBody),
    ),
    security(("viewer_token" = []), ("operator_token" = []), ("operator_cert" = []))
)]
pub(crate) async fn alerts(
    State(cp): State<Cp>,
    q: Result<Query<AlertQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request("BadQuery", e.body_text()))?;
    let f = q.filter()?;
    Ok(Json(cp.alert_list(&f).await?).into_response())
}

/// Body of `POST /api/v1/alerts/{id}/ack`.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AckBody {
    /// Who acknowledges (free text, at most 64 characters; recorded with how they
    /// were authenticated).
    #[serde(default)]
    by: String,
    /// Why (at most 512 characters).
    #[serde(default)]
    note: String,
}

#[utoipa::path(
    post, path = "/api/v1/alerts/{id}/ack", tag = "operator",
    summary = "Acknowledge an alert: it stays in the history but leaves the open count (audited as `AlertAcknowledged`)",
    params(("id" = String, Path, description = "The alert's id")),
    request_body(content = Option<AckBody>, description = "Optional: who and why"),
    responses(
        (status = 200, description = "The alert, acknowledged", body = crate::model::Alert),
        (status = 400, description = "The body is not JSON (`MalformedJson`, `BadBody`) or a field is wrong (`InvalidField`)", body = ErrorBody), (status = 401, description = "`Unauthorized`: the operator bearer token is missing or wrong, or no operator token is configured", body = ErrorBody),
        (status = 404, description = "`NotFound`: no such alert", body = ErrorBody),
        (status = 409, description = "`AlreadyAcknowledged`: acknowledged before (by whom and when in the detail)", body = ErrorBody),
        (status = 413, description = "`TooLarge`: the body is over the endpoint's limit", body = ErrorBody), (status = 503, description = "`StoreUnavailable`: storage is unavailable, nothing was recorded; retry", body = ErrorBody), (status = 500, description = "`Internal`: a failure of the control plane itself (logged, never echoed)", body = ErrorBody),
    ),
    security(("operator_token" = []))
)]
pub(crate) async fn ack_alert(
    State(cp): State<Cp>,
    Path(id): Path<String>,
    headers: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    operator(&cp, &headers)?;
    let a: AckBody = optional_body(b)?;
    Ok(Json(cp.ack_alert(&id, &a.by, "operator token", &a.note).await?).into_response())
}

fn operator(cp: &ControlPlane, headers: &HeaderMap) -> Result<(), ApiError> {
    cp.authorize(
        headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ")),
    )
}

/// Optional body of the revocation actions: why (kept in the audit trail).
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ActionBody {
    /// Why, for the audit trail.
    #[serde(default)]
    reason: Option<String>,
}

/// An operator endpoint's optional JSON body: empty (or blank) means the default.
fn optional_body<T: serde::de::DeserializeOwned + Default>(
    b: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let b = body(b, MAX_OPERATOR_BODY)?;
    if b.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    json(&b)
}

fn action_body(b: Result<Bytes, BytesRejection>) -> Result<ActionBody, ApiError> {
    optional_body(b)
}

#[utoipa::path(
    delete, path = "/api/v1/agents/{id}", tag = "operator",
    summary = "Delete an agent: its key may no longer speak (a tombstone stays)",
    params(("id" = String, Path, description = "The agent's id")),
    request_body(content = Option<ActionBody>, description = "Optional: why (kept in the audit trail)"),
    responses(
        (status = 200, description = "Deleted", body = crate::http::views::Deleted),
        (status = 400, description = "The body is not JSON (`MalformedJson`, `BadBody`) or a field is wrong (`InvalidField`)", body = ErrorBody), (status = 401, description = "`Unauthorized`: the operator bearer token is missing or wrong, or no operator token is configured", body = ErrorBody), (status = 404, description = "`NotFound` or `UnknownAgent`: no such agent", body = ErrorBody), (status = 413, description = "`TooLarge`: the body is over the endpoint's limit", body = ErrorBody), (status = 503, description = "`StoreUnavailable`: storage is unavailable, nothing was recorded; retry", body = ErrorBody), (status = 500, description = "`Internal`: a failure of the control plane itself (logged, never echoed)", body = ErrorBody),
    ),
    security(("operator_token" = []))
)]
pub(crate) async fn delete_agent(
    State(cp): State<Cp>,
    Path(id): Path<String>,
    headers: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    operator(&cp, &headers)?;
    let a = action_body(b)?;
    Ok(Json(crate::http::views::Deleted {
        deleted: cp.delete_agent(&id, a.reason).await?,
    })
    .into_response())
}

#[utoipa::path(
    post, path = "/api/v1/agents/{id}/disable", tag = "operator",
    summary = "Disable an agent: its pulses and registrations are refused `Revoked`",
    params(("id" = String, Path, description = "The agent's id")),
    request_body(content = Option<ActionBody>, description = "Optional: why (kept in the audit trail)"),
    responses(
        (status = 200, description = "The agent after the change", body = crate::http::views::AgentView),
        (status = 400, description = "The body is not JSON (`MalformedJson`, `BadBody`) or a field is wrong (`InvalidField`)", body = ErrorBody), (status = 401, description = "`Unauthorized`: the operator bearer token is missing or wrong, or no operator token is configured", body = ErrorBody), (status = 404, description = "`NotFound` or `UnknownAgent`: no such agent", body = ErrorBody), (status = 413, description = "`TooLarge`: the body is over the endpoint's limit", body = ErrorBody), (status = 503, description = "`StoreUnavailable`: storage is unavailable, nothing was recorded; retry", body = ErrorBody), (status = 500, description = "`Internal`: a failure of the control plane itself (logged, never echoed)", body = ErrorBody),
    ),
    security(("operator_token" = []))
)]
pub(crate) async fn disable_agent(
    State(cp): State<Cp>,
    Path(id): Path<String>,
    headers: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    operator(&cp, &headers)?;
    let a = action_body(b)?;
    Ok(Json(cp.set_disabled(&id, true, a.reason).await?).into_response())
}

#[utoipa::path(
    post, path = "/api/v1/agents/{id}/enable", tag = "operator",
    summary = "Enable a disabled agent again",
    params(("id" = String, Path, description = "The agent's id")),
    request_body(content = Option<ActionBody>, description = "Optional: why (kept in the audit trail)"),
    responses(
        (status = 200, description = "The agent after the change", body = crate::http::views::AgentView),
        (status = 400, description = "The body is not JSON (`MalformedJson`, `BadBody`) or a field is wrong (`InvalidField`)", body = ErrorBody), (status = 401, description = "`Unauthorized`: the operator bearer token is missing or wrong, or no operator token is configured", body = ErrorBody), (status = 404, description = "`NotFound` or `UnknownAgent`: no such agent", body = ErrorBody), (status = 413, description = "`TooLarge`: the body is over the endpoint's limit", body = ErrorBody), (status = 503, description = "`StoreUnavailable`: storage is unavailable, nothing was recorded; retry", body = ErrorBody), (status = 500, description = "`Internal`: a failure of the control plane itself (logged, never echoed)", body = ErrorBody),
    ),
    security(("operator_token" = []))
)]
pub(crate) async fn enable_agent(
    State(cp): State<Cp>,
    Path(id): Path<String>,
    headers: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    operator(&cp, &headers)?;
    let a = action_body(b)?;
    Ok(Json(cp.set_disabled(&id, false, a.reason).await?).into_response())
}

#[utoipa::path(
    post, path = "/api/v1/withdrawals", tag = "operator",
    summary = "Withdraw a build (MRTD or agent binary) fleet-wide",
    request_body = crate::config::WithdrawnBuild,
    responses(
        (status = 200, description = "The withdrawal", body = crate::model::Withdrawal),
        (status = 400, description = "The body is not JSON (`MalformedJson`, `BadBody`) or a field is wrong (`InvalidField`)", body = ErrorBody), (status = 401, description = "`Unauthorized`: the operator bearer token is missing or wrong, or no operator token is configured", body = ErrorBody), (status = 413, description = "`TooLarge`: the body is over the endpoint's limit", body = ErrorBody), (status = 503, description = "`StoreUnavailable`: storage is unavailable, nothing was recorded; retry", body = ErrorBody), (status = 500, description = "`Internal`: a failure of the control plane itself (logged, never echoed)", body = ErrorBody),
    ),
    security(("operator_token" = []))
)]
pub(crate) async fn withdraw(
    State(cp): State<Cp>,
    headers: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    operator(&cp, &headers)?;
    let b = body(b, MAX_OPERATOR_BODY)?;
    let req: crate::config::WithdrawnBuild = json(&b)?;
    Ok(Json(cp.withdraw(req).await?).into_response())
}

#[utoipa::path(
    get, path = "/api/v1/withdrawals", tag = "read",
    summary = "The withdrawn builds (API and config)",
    responses(
        (status = 200, description = "The withdrawals", body = crate::http::views::WithdrawalList),
        (status = 401, description = "`Unauthorized`: no read access (viewer or operator bearer token, or operator client certificate)", body = ErrorBody), (status = 503, description = "`StoreUnavailable`: storage is unavailable, nothing was recorded; retry", body = ErrorBody), (status = 500, description = "`Internal`: a failure of the control plane itself (logged, never echoed)", body = ErrorBody),
    ),
    security(("viewer_token" = []), ("operator_token" = []), ("operator_cert" = []))
)]
pub(crate) async fn withdrawals(State(cp): State<Cp>) -> Result<Response, ApiError> {
    Ok(Json(crate::http::views::WithdrawalList {
        withdrawals: cp.withdrawals().await?,
    })
    .into_response())
}

#[utoipa::path(
    delete, path = "/api/v1/withdrawals/{id}", tag = "operator",
    summary = "Remove a stored withdrawal",
    params(("id" = String, Path, description = "The withdrawal's id (`wd-...`)")),
    responses(
        (status = 200, description = "Removed", body = crate::http::views::Removed),
        (status = 401, description = "`Unauthorized`: the operator bearer token is missing or wrong, or no operator token is configured", body = ErrorBody), (status = 404, description = "`NotFound`: no such stored withdrawal", body = ErrorBody), (status = 503, description = "`StoreUnavailable`: storage is unavailable, nothing was recorded; retry", body = ErrorBody), (status = 500, description = "`Internal`: a failure of the control plane itself (logged, never echoed)", body = ErrorBody),
    ),
    security(("operator_token" = []))
)]
pub(crate) async fn remove_withdrawal(
    State(cp): State<Cp>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    operator(&cp, &headers)?;
    Ok(Json(crate::http::views::Removed {
        removed: cp.remove_withdrawal(&id).await?,
    })
    .into_response())
}
