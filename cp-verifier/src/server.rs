//! HTTP routes. Every body is read as bytes under an explicit limit and parsed by our
//! own bounded decoders, so every refusal is a typed `{"error":{kind,detail}}`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::header::AUTHORIZATION;
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use evidence::api::{RegisterRequest, MAX_HEARTBEAT_BODY, MAX_REGISTER_BODY};
use evidence::Envelope;
use serde::Deserialize;

use crate::dashboard;
use crate::error::ApiError;
use crate::service::{ControlPlane, ExpectRequest};

/// Largest body on operator endpoints.
const MAX_OPERATOR_BODY: usize = 16 * 1024;

type Cp = Arc<ControlPlane>;

pub fn router(cp: Cp) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/agents") }))
        .route("/healthz", get(healthz))
        .route("/agents", get(dashboard_agents))
        .route("/agent/{id}", get(dashboard_agent))
        .route("/api/v1/challenge", get(challenge))
        .route(
            "/api/v1/register",
            post(register).layer(DefaultBodyLimit::max(MAX_REGISTER_BODY)),
        )
        .route(
            "/api/v1/heartbeat",
            post(heartbeat).layer(DefaultBodyLimit::max(MAX_HEARTBEAT_BODY)),
        )
        .route("/api/v1/agents", get(agents))
        .route("/api/v1/agents/{id}", get(agent))
        .route(
            "/api/v1/agents/{id}/expect",
            post(expect).layer(DefaultBodyLimit::max(MAX_OPERATOR_BODY)),
        )
        .route("/api/v1/alerts", get(alerts))
        // Revocation (operator token for every change).
        .route("/api/v1/agents/{id}", delete(delete_agent))
        .route(
            "/api/v1/agents/{id}/disable",
            post(disable_agent).layer(DefaultBodyLimit::max(MAX_OPERATOR_BODY)),
        )
        .route(
            "/api/v1/agents/{id}/enable",
            post(enable_agent).layer(DefaultBodyLimit::max(MAX_OPERATOR_BODY)),
        )
        .route(
            "/api/v1/withdrawals",
            get(withdrawals)
                .post(withdraw)
                .layer(DefaultBodyLimit::max(MAX_OPERATOR_BODY)),
        )
        .route("/api/v1/withdrawals/{id}", delete(remove_withdrawal))
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .method_not_allowed_fallback(|| async {
            ApiError::bad_request("MethodNotAllowed", "method not allowed on this endpoint")
        })
        .with_state(cp)
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

async fn challenge(State(cp): State<Cp>) -> Result<Response, ApiError> {
    Ok(Json(cp.challenge().await?).into_response())
}

/// `/healthz`: JSON (store writability, queue depths, last sweep, background
/// tasks); 503 when the store does not take a write.
async fn healthz(State(cp): State<Cp>) -> Response {
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

/// The peer address, where the server was started with
/// `into_make_service_with_connect_info::<SocketAddr>()`.
type Peer = Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>;

async fn register(
    State(cp): State<Cp>,
    peer: Peer,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let b = body(b, MAX_REGISTER_BODY)?;
    let req: RegisterRequest = json(&b)?;
    let source = peer.map(|axum::Extension(axum::extract::ConnectInfo(a))| a.ip());
    Ok(Json(cp.register_from(req, source).await?).into_response())
}

async fn heartbeat(
    State(cp): State<Cp>,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let b = body(b, MAX_HEARTBEAT_BODY)?;
    let env = Envelope::from_json(&b)?;
    Ok(Json(cp.heartbeat(env).await?).into_response())
}

async fn agents(State(cp): State<Cp>) -> Result<Response, ApiError> {
    Ok(Json(serde_json::json!({ "agents": cp.agents().await? })).into_response())
}

async fn agent(State(cp): State<Cp>, Path(id): Path<String>) -> Result<Response, ApiError> {
    Ok(Json(cp.agent(&id).await?).into_response())
}

async fn expect(
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

#[derive(Deserialize)]
struct AlertQuery {
    agent: Option<String>,
    limit: Option<u32>,
}

async fn alerts(
    State(cp): State<Cp>,
    q: Result<Query<AlertQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request("BadQuery", e.body_text()))?;
    let a = cp
        .alerts(q.agent.as_deref(), q.limit.unwrap_or(100))
        .await?;
    Ok(Json(serde_json::json!({ "alerts": a })).into_response())
}

async fn dashboard_agents(State(cp): State<Cp>) -> Result<Html<String>, ApiError> {
    let agents = cp.agents().await?;
    let alerts = cp.alerts(None, 20).await?;
    Ok(Html(dashboard::fleet(&agents, &alerts)))
}

async fn dashboard_agent(
    State(cp): State<Cp>,
    Path(id): Path<String>,
) -> Result<Html<String>, ApiError> {
    let a = cp.agent(&id).await?;
    let alerts = cp.alerts(Some(&id), 50).await?;
    Ok(Html(dashboard::agent(&a, &alerts)))
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
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ActionBody {
    #[serde(default)]
    reason: Option<String>,
}

fn action_body(b: Result<Bytes, BytesRejection>) -> Result<ActionBody, ApiError> {
    let b = body(b, MAX_OPERATOR_BODY)?;
    if b.iter().all(u8::is_ascii_whitespace) {
        return Ok(ActionBody::default());
    }
    json(&b)
}

async fn delete_agent(
    State(cp): State<Cp>,
    Path(id): Path<String>,
    headers: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    operator(&cp, &headers)?;
    let a = action_body(b)?;
    Ok(
        Json(serde_json::json!({ "deleted": cp.delete_agent(&id, a.reason).await? }))
            .into_response(),
    )
}

async fn disable_agent(
    State(cp): State<Cp>,
    Path(id): Path<String>,
    headers: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    operator(&cp, &headers)?;
    let a = action_body(b)?;
    Ok(Json(cp.set_disabled(&id, true, a.reason).await?).into_response())
}

async fn enable_agent(
    State(cp): State<Cp>,
    Path(id): Path<String>,
    headers: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    operator(&cp, &headers)?;
    let a = action_body(b)?;
    Ok(Json(cp.set_disabled(&id, false, a.reason).await?).into_response())
}

async fn withdraw(
    State(cp): State<Cp>,
    headers: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    operator(&cp, &headers)?;
    let b = body(b, MAX_OPERATOR_BODY)?;
    let req: crate::config::WithdrawnBuild = json(&b)?;
    Ok(Json(cp.withdraw(req).await?).into_response())
}

async fn withdrawals(State(cp): State<Cp>) -> Result<Response, ApiError> {
    Ok(Json(serde_json::json!({ "withdrawals": cp.withdrawals().await? })).into_response())
}

async fn remove_withdrawal(
    State(cp): State<Cp>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    operator(&cp, &headers)?;
    Ok(Json(serde_json::json!({ "removed": cp.remove_withdrawal(&id).await? })).into_response())
}
