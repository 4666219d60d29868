//! EAT Attestation Results over HTTP: `GET /api/v1/agents/{id}/ear`,
//! `GET /api/v1/agents/{id}/workloads/{workload}/ear` (read access, like the rest of
//! the read API) and `GET /.well-known/jwks.json` (public: the key that verifies
//! them). Tokens are `application/jwt`; `?nonce=` binds one to the relying party's
//! request.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use evidence::api::ErrorBody;
use serde::Deserialize;

use crate::http::error::ApiError;
use crate::judge::ear::{node_submod, policy_id, workload_submod, EarIssuer, EarNonce, Submod};
use crate::plane::{store_err, ControlPlane};

type Cp = Arc<ControlPlane>;

/// The EAR routes, merged into the control plane's router.
pub(crate) fn routes() -> Router<Cp> {
    Router::new()
        .route("/.well-known/jwks.json", get(jwks))
        .route("/api/v1/agents/{id}/ear", get(agent_ear))
        .route(
            "/api/v1/agents/{id}/workloads/{workload}/ear",
            get(workload_ear),
        )
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct EarQuery {
    /// The relying party's nonce, echoed in the token's `eat_nonce`.
    nonce: Option<String>,
}

/// `/.well-known/jwks.json` (a JSON value in [`EarIssuer::jwks`]); documentation only,
/// checked against real answers by `tests/openapi.rs`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct Jwks {
    /// The one key tokens are signed with.
    keys: Vec<Jwk>,
}

/// The EAR signing key's public half.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct Jwk {
    /// `EC`.
    kty: String,
    /// `P-256`.
    crv: String,
    /// The x coordinate, base64url.
    x: String,
    /// The y coordinate, base64url.
    y: String,
    /// `ES256`.
    alg: String,
    /// `sig`.
    #[serde(rename = "use")]
    use_: String,
    /// The key id tokens name (its JWK thumbprint).
    kid: String,
}

const NO_EAR: &str = "`NotFound`: no such agent (or workload), or EAR tokens are not configured";

impl ControlPlane {
    fn ear_issuer(&self) -> Result<&EarIssuer, ApiError> {
        self.ear.as_ref().ok_or_else(|| {
            ApiError::NotFound(
                "EAR tokens are not configured: add [ear] signing_key_file to the control \
                 plane's config"
                    .into(),
            )
        })
    }

    /// A signed EAR for agent `id` at the clock's now: the node and every workload, or
    /// only the workload whose container id or name is `workload`.
    pub async fn ear(
        &self,
        id: &str,
        workload: Option<&str>,
        nonce: Option<&EarNonce>,
    ) -> Result<String, ApiError> {
        let issuer = self.ear_issuer()?;
        let now = self.now();
        let Some(rec) = self.store.get_agent(id).await.map_err(store_err)? else {
            return Err(ApiError::NotFound(format!("no agent {id:?}")));
        };
        let view = self.view(&rec, now);
        let mut submods: Vec<(String, Submod)> = Vec::new();
        match workload {
            None => {
                submods.push((
                    "node".into(),
                    node_submod(&rec.agent_id, rec.tier, &view.verdict),
                ));
                for b in &view.workloads {
                    submods.push((format!("workload:{}", b.name), workload_submod(b)));
                }
            }
            Some(w) => {
                let Some(b) = view.workloads.iter().find(|b| b.id == w || b.name == w) else {
                    return Err(ApiError::NotFound(format!(
                        "agent {id:?} reports no workload with container id or name {w:?}"
                    )));
                };
                submods.push((format!("workload:{}", b.name), workload_submod(b)));
            }
        }
        Ok(issuer.issue(now, nonce, &policy_id(&self.cfg.policy), &submods))
    }
}

fn nonce(q: Result<Query<EarQuery>, QueryRejection>) -> Result<Option<EarNonce>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request("BadQuery", e.body_text()))?;
    q.nonce
        .as_deref()
        .map(EarNonce::parse)
        .transpose()
        .map_err(|e| ApiError::bad_request("BadNonce", e))
}

fn jwt(token: String) -> Response {
    ([(CONTENT_TYPE, "application/jwt")], token).into_response()
}

#[utoipa::path(
    get, path = "/.well-known/jwks.json", tag = "attestation results",
    summary = "The key that verifies EAR tokens",
    responses(
        (status = 200, description = "The JWK set", body = Jwks),
        (status = 404, description = "`NotFound`: EAR tokens are not configured", body = ErrorBody),
    ),
    security(())
)]
pub(crate) async fn jwks(State(cp): State<Cp>) -> Result<Response, ApiError> {
    Ok(Json(cp.ear_issuer()?.jwks()).into_response())
}

#[utoipa::path(
    get, path = "/api/v1/agents/{id}/ear", tag = "attestation results",
    summary = "A signed EAR (EAT Attestation Result, ES256 JWT) for the node and its workloads",
    params(("id" = String, Path, description = "The agent's id"), EarQuery),
    responses(
        (status = 200, description = "The token (compact JWS)", content_type = "application/jwt", body = String),
        (status = 400, description = "`BadQuery` or `BadNonce`", body = ErrorBody),
        (status = 401, description = "`Unauthorized`: no read access", body = ErrorBody),
        (status = 404, description = NO_EAR, body = ErrorBody),
        (status = 503, description = "`StoreUnavailable`", body = ErrorBody),
    ),
    security(("viewer_token" = []), ("operator_token" = []), ("operator_cert" = []))
)]
pub(crate) async fn agent_ear(
    State(cp): State<Cp>,
    Path(id): Path<String>,
    q: Result<Query<EarQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let n = nonce(q)?;
    Ok(jwt(cp.ear(&id, None, n.as_ref()).await?))
}

#[utoipa::path(
    get, path = "/api/v1/agents/{id}/workloads/{workload}/ear", tag = "attestation results",
    summary = "A signed EAR for one workload of an agent",
    params(
        ("id" = String, Path, description = "The agent's id"),
        ("workload" = String, Path, description = "The workload's container id or name"),
        EarQuery
    ),
    responses(
        (status = 200, description = "The token (compact JWS)", content_type = "application/jwt", body = String),
        (status = 400, description = "`BadQuery` or `BadNonce`", body = ErrorBody),
        (status = 401, description = "`Unauthorized`: no read access", body = ErrorBody),
        (status = 404, description = NO_EAR, body = ErrorBody),
        (status = 503, description = "`StoreUnavailable`", body = ErrorBody),
    ),
    security(("viewer_token" = []), ("operator_token" = []), ("operator_cert" = []))
)]
pub(crate) async fn workload_ear(
    State(cp): State<Cp>,
    Path((id, workload)): Path<(String, String)>,
    q: Result<Query<EarQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let n = nonce(q)?;
    Ok(jwt(cp.ear(&id, Some(&workload), n.as_ref()).await?))
}
