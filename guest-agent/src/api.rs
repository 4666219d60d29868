//! The agent's local HTTP API: `/health`, `/api/v1/verify`, `/api/v1/status`.
//!
//! Read-only and meant for the node itself (it listens on loopback by default): other
//! services gate their start-up on `/api/v1/verify`.

use std::sync::{Arc, RwLock};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::agent::AgentState;

type Shared = Arc<RwLock<AgentState>>;

pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/api/v1/verify", get(verify))
        .route("/api/v1/status", get(status))
        .with_state(state)
}

fn snapshot(s: &Shared) -> AgentState {
    s.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// The verdict as shown locally: the control plane's, or `unknown` when it has none.
fn verdict_json(s: &AgentState) -> serde_json::Value {
    match &s.verdict {
        Some(v) => json!({"status": v.status, "badge": v.status.badge(), "reasons": v.reasons}),
        None => json!({"status": "unknown", "badge": "unknown", "reasons": []}),
    }
}

async fn health(State(s): State<Shared>) -> Json<serde_json::Value> {
    let s = snapshot(&s);
    Json(json!({
        "agent_id": s.agent_id,
        "state": s.phase,
        "tier": s.tier,
        "event_log": s.event_log,
        "attestation": if s.key_fingerprint.is_some() { "enabled" } else { "disabled" },
        "last_pulse": s.last_pulse,
        "verdict": verdict_json(&s),
        "last_error": s.last_error,
    }))
}

async fn verify(State(s): State<Shared>) -> Response {
    let s = snapshot(&s);
    let ok = s.verdict.as_ref().is_some_and(|v| v.status.acceptable());
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(json!({"acceptable": ok, "verdict": verdict_json(&s)})),
    )
        .into_response()
}

async fn status(State(s): State<Shared>) -> Json<AgentState> {
    Json(snapshot(&s))
}
