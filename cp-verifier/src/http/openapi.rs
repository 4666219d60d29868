//! The control plane's OpenAPI 3.1 document, generated from the handlers'
//! `#[utoipa::path]` attributes and the bodies' `ToSchema` derives, served at
//! `GET /openapi.json` (public: it describes routes and shapes, no fleet state).
//! `tests/openapi.rs` checks it against real answers and against the routes the
//! router serves.

use axum::response::{IntoResponse, Response};
use axum::Json;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::OpenApi;

use crate::http::{ear, handlers};

/// The document's root.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Provenant control plane",
        description = "Registration and pulses of the guest agents (public), the fleet's \
            read API (viewer or operator bearer token, or an operator client certificate), \
            operator writes (operator bearer token), EAR attestation results and the fleet \
            pages. Every refusal is `{\"error\":{\"kind\",\"detail\"}}` with a stable `kind`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    paths(
        handlers::root,
        handlers::healthz,
        crate::http::pages::fleet,
        crate::http::pages::alerts,
        crate::http::pages::ack_form,
        crate::http::agent_page::page,
        handlers::challenge,
        handlers::register,
        handlers::heartbeat,
        handlers::metrics,
        handlers::events,
        handlers::agents,
        handlers::agent,
        handlers::agent_history,
        handlers::expect,
        handlers::alerts,
        handlers::ack_alert,
        handlers::delete_agent,
        handlers::disable_agent,
        handlers::enable_agent,
        handlers::withdrawals,
        handlers::withdraw,
        handlers::remove_withdrawal,
        ear::jwks,
        ear::agent_ear,
        ear::workload_ear,
        serve,
    ),
    components(schemas(evidence::api::ErrorBody)),
    modifiers(&Security),
    tags(
        (name = "agent protocol", description = "What the guest agents call: public, rate-limited"),
        (name = "read", description = "The fleet's state: read access"),
        (name = "operator", description = "Changes: the operator bearer token"),
        (name = "attestation results", description = "EAR tokens (IETF RATS EAR, AR4SI) and their key"),
        (name = "operations", description = "Probes, metrics and this document"),
        (name = "pages", description = "The fleet pages (HTML)"),
    )
)]
pub struct ApiDoc;

/// The security schemes the paths name: two bearer tokens and the operator's client
/// certificate (`[tls] operator_ca_file`).
struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let c = doc.components.get_or_insert_with(Default::default);
        let bearer = |d: &str| {
            let mut h = Http::new(HttpAuthScheme::Bearer);
            h.description = Some(d.into());
            SecurityScheme::Http(h)
        };
        c.add_security_scheme(
            "viewer_token",
            bearer("`viewer_token_file`: read access (a browser may keep it in the `provenant_token` cookie, set by opening a page once with `?token=`)"),
        );
        c.add_security_scheme(
            "operator_token",
            bearer("`operator_token_file`: read access and every operator change"),
        );
        c.add_security_scheme(
            "operator_cert",
            SecurityScheme::MutualTls {
                description: Some(
                    "A client certificate issued by `[tls] operator_ca_file`: read access".into(),
                ),
                extensions: None,
            },
        );
    }
}

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut d = ApiDoc::openapi();
    d.info.version = env!("CARGO_PKG_VERSION").into();
    d
}

/// `GET /openapi.json`.
#[utoipa::path(
    get, path = "/openapi.json", tag = "operations",
    summary = "This document (OpenAPI 3.1)",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json", body = Object)),
    security(())
)]
pub(crate) async fn serve() -> Response {
    Json(document()).into_response()
}
