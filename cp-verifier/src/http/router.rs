//! HTTP routes (the handlers are in [`crate::http::handlers`], documented in
//! `/openapi.json`). Every body is read as bytes under an explicit limit and parsed by
//! our own bounded decoders, so every refusal is a typed `{"error":{kind,detail}}`.
//!
//! Access: only the agents' endpoints (`/api/v1/challenge`, `/register`,
//! `/heartbeat`), `/healthz`, `/.well-known/jwks.json` and `/openapi.json` are open; every other route (the fleet pages,
//! `/api/v1/agents*`, `/api/v1/alerts`, anything added later) needs read access: the
//! viewer or operator bearer token, the `provenant_token` cookie a browser gets from
//! opening a page once with `?token=`, or a client certificate from `[tls]
//! operator_ca_file`. Writes check the operator token themselves. `/challenge` and
//! `/register` are rate-limited per source; every request body must arrive within
//! `[limits] body_timeout`; no response may be cached.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header::{
    AUTHORIZATION, CACHE_CONTROL, COOKIE, REFERRER_POLICY, RETRY_AFTER, SET_COOKIE,
    WWW_AUTHENTICATE, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use evidence::api::{ErrorBody, ErrorInfo, MAX_HEARTBEAT_BODY, MAX_REGISTER_BODY};

use crate::config::CpConfig;
use crate::http::error::ApiError;
use crate::http::handlers::{self as h, MAX_OPERATOR_BODY};
pub use crate::http::ratelimit::RateLimiter;
use crate::http::transport::Peer;
use crate::plane::ControlPlane;

/// The cookie a browser keeps its token in (HttpOnly, Secure, SameSite=Strict).
pub const TOKEN_COOKIE: &str = "provenant_token";
/// How long the browser keeps the token cookie.
const COOKIE_MAX_AGE_SECS: u64 = 12 * 3600;

/// Who may read: the viewer and operator tokens, and whether an operator CA is set.
pub struct Access {
    viewer: Option<Vec<u8>>,
    operator: Option<Vec<u8>>,
    operator_ca: bool,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Tokens are never shown.
        f.debug_struct("Access")
            .field("viewer", &self.viewer.as_ref().map(|_| "<set>"))
            .field("operator", &self.operator.as_ref().map(|_| "<set>"))
            .field("operator_ca", &self.operator_ca)
            .finish()
    }
}

impl Access {
    /// Reads the viewer and operator token files `cfg` names, and notes whether an
    /// operator CA is configured.
    pub fn load(cfg: &CpConfig) -> anyhow::Result<Access> {
        Ok(Access {
            viewer: cfg
                .viewer_token_file
                .as_deref()
                .map(|p| crate::http::auth::read_token(p, "viewer_token_file"))
                .transpose()?,
            operator: cfg
                .operator_token_file
                .as_deref()
                .map(|p| crate::http::auth::read_token(p, "operator_token_file"))
                .transpose()?,
            operator_ca: cfg
                .tls
                .as_ref()
                .is_some_and(|t| t.operator_ca_file.is_some()),
        })
    }

    /// Whether any way to read is configured.
    pub fn readable(&self) -> bool {
        self.viewer.is_some() || self.operator.is_some() || self.operator_ca
    }

    fn token_grants_read(&self, t: &[u8]) -> bool {
        let eq = |want: &Option<Vec<u8>>| {
            want.as_deref()
                .is_some_and(|w| crate::http::auth::token_eq(w, t))
        };
        // Both compared, whatever the first says.
        let v = eq(&self.viewer);
        let o = eq(&self.operator);
        v | o
    }
}

/// The router's own state for access, limits and body deadlines.
struct Gate {
    access: Access,
    challenge: RateLimiter,
    register: RateLimiter,
    body_timeout: Duration,
}

type Cp = Arc<ControlPlane>;

/// The control plane's routes, with access checks, rate limits, body deadlines and
/// response headers. Fails when a token file cannot be read or is not private.
pub fn router(cp: Cp) -> anyhow::Result<Router> {
    let access = Access::load(&cp.cfg)?;
    if !access.readable() {
        tracing::warn!(
            "no viewer_token_file, operator_token_file or [tls] operator_ca_file: the fleet \
             pages and read API refuse every request"
        );
    }
    let l = &cp.cfg.limits;
    let gate = Arc::new(Gate {
        access,
        challenge: RateLimiter::new(l.challenge_rate, l.challenge_burst),
        register: RateLimiter::new(l.register_rate, l.register_burst),
        body_timeout: l.body_timeout,
    });
    Ok(Router::new()
        .route("/", get(h::root))
        .route("/openapi.json", get(crate::http::openapi::serve))
        .route("/healthz", get(h::healthz))
        .route("/agents", get(crate::http::pages::fleet))
        .route("/alerts", get(crate::http::pages::alerts))
        .route(
            "/alerts/{id}/ack",
            post(crate::http::pages::ack_form).layer(DefaultBodyLimit::max(MAX_OPERATOR_BODY)),
        )
        .route("/agent/{id}", get(crate::http::agent_page::page))
        .route(
            "/api/v1/challenge",
            get(h::challenge).route_layer(from_fn_with_state(gate.clone(), limit_challenge)),
        )
        .route(
            "/api/v1/register",
            post(h::register)
                .layer(DefaultBodyLimit::max(MAX_REGISTER_BODY))
                .route_layer(from_fn_with_state(gate.clone(), limit_register)),
        )
        .route(
            "/api/v1/heartbeat",
            post(h::heartbeat).layer(DefaultBodyLimit::max(MAX_HEARTBEAT_BODY)),
        )
        .route("/metrics", get(h::metrics))
        .route("/api/v1/events", get(h::events))
        .route("/api/v1/agents", get(h::agents))
        .route("/api/v1/agents/{id}", get(h::agent))
        .route("/api/v1/agents/{id}/history", get(h::agent_history))
        .route(
            "/api/v1/agents/{id}/expect",
            post(h::expect).layer(DefaultBodyLimit::max(MAX_OPERATOR_BODY)),
        )
        .route("/api/v1/alerts", get(h::alerts))
        .route(
            "/api/v1/alerts/{id}/ack",
            post(h::ack_alert).layer(DefaultBodyLimit::max(MAX_OPERATOR_BODY)),
        )
        // Revocation (operator token for every change).
        .route("/api/v1/agents/{id}", delete(h::delete_agent))
        .route(
            "/api/v1/agents/{id}/disable",
            post(h::disable_agent).layer(DefaultBodyLimit::max(MAX_OPERATOR_BODY)),
        )
        .route(
            "/api/v1/agents/{id}/enable",
            post(h::enable_agent).layer(DefaultBodyLimit::max(MAX_OPERATOR_BODY)),
        )
        .route(
            "/api/v1/withdrawals",
            get(h::withdrawals)
                .post(h::withdraw)
                .layer(DefaultBodyLimit::max(MAX_OPERATOR_BODY)),
        )
        .route("/api/v1/withdrawals/{id}", delete(h::remove_withdrawal))
        .merge(crate::http::ear::routes())
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .method_not_allowed_fallback(|| async {
            ApiError::bad_request("MethodNotAllowed", "method not allowed on this endpoint")
        })
        .with_state(cp)
        .layer(from_fn_with_state(gate, guard))
        // Outermost: a refusal by the guard has an id too.
        .layer(axum::middleware::from_fn(crate::http::reqid::request_id)))
}

/// Paths anyone may call: the agents' protocol, the liveness probe, the EAR
/// verification key and the API description. `/openapi.json` is public: it describes
/// the routes and shapes (all in the published source), no fleet state and no secret.
fn is_public(path: &str) -> bool {
    matches!(
        path,
        "/" | "/healthz"
            | "/openapi.json"
            | "/api/v1/challenge"
            | "/api/v1/register"
            | "/api/v1/heartbeat"
            | "/.well-known/jwks.json"
    )
}

fn peer_ip(req: &Request) -> IpAddr {
    // Without the transport's `Peer` (a router served some other way) every request
    // shares one bucket: limited, never unlimited.
    req.extensions()
        .get::<Peer>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |p| p.addr.ip())
}

fn rate_limited(what: &str, wait: Duration) -> Response {
    let secs = wait
        .as_secs()
        .saturating_add(u64::from(wait.subsec_nanos() > 0))
        .max(1);
    let body = ErrorBody {
        error: ErrorInfo {
            kind: "RateLimited".into(),
            detail: format!("too many {what} requests from this source; retry in {secs} s"),
            advisories: Vec::new(),
        },
    };
    let mut r = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
    r.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
    r
}

async fn limit_challenge(State(g): State<Arc<Gate>>, req: Request, next: Next) -> Response {
    match g.challenge.check(peer_ip(&req), Instant::now()) {
        Ok(()) => next.run(req).await,
        Err(wait) => rate_limited("challenge", wait),
    }
}

async fn limit_register(State(g): State<Arc<Gate>>, req: Request, next: Next) -> Response {
    match g.register.check(peer_ip(&req), Instant::now()) {
        Ok(()) => next.run(req).await,
        Err(wait) => rate_limited("register", wait),
    }
}

/// A request body that must be complete by a deadline.
struct Deadline {
    inner: Body,
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
    after: Duration,
}

impl http_body::Body for Deadline {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        use std::future::Future;
        use std::task::Poll;
        let this = &mut *self;
        if let Poll::Ready(f) = std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(f);
        }
        if this.sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(axum::Error::new(format!(
                "request body not received within {}",
                humantime::format_duration(this.after)
            )))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The token a request presents: the bearer header, else the cookie.
fn presented_token(h: &HeaderMap) -> Option<String> {
    if let Some(t) = h
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        return Some(t.trim().to_owned());
    }
    h.get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(TOKEN_COOKIE)?.strip_prefix('='))
        .and_then(|hex_token| {
            // The cookie holds the token hex-encoded (cookie-safe whatever its text).
            let t = hex::decode(hex_token).ok()?;
            String::from_utf8(t).ok()
        })
}

/// The `token` query parameter, if any.
fn query_token(q: Option<&str>) -> Option<String> {
    q?.split('&').find_map(|kv| {
        let v = kv.strip_prefix("token=")?;
        percent_decode(v)
    })
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let h = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(h, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// HTML-escapes `s` (`&`, `<`, `>`, `"`, `'`) for the sign-in page (the only page
/// not rendered by the template engine).
fn esc(s: &str) -> String {
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

fn unauthorized(path: &str, detail: &str) -> Response {
    let mut r = if path.starts_with("/api/") {
        ApiError::Unauthorized(detail.into()).into_response()
    } else {
        (
            StatusCode::UNAUTHORIZED,
            Html(format!(
                "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Sign in · Provenant</title></head>\
<body style=\"font-family:system-ui,sans-serif;margin:2rem\"><h1>Read access needed</h1><p>{}</p>\
<p>Open this page once as <code>{}?token=&lt;viewer token&gt;</code> (the browser then keeps it in a \
private cookie), send <code>Authorization: Bearer &lt;token&gt;</code>, or present an operator client certificate.</p></body></html>",
                esc(detail),
                esc(path)
            )),
        )
            .into_response()
    };
    r.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"provenant\""),
    );
    r
}

/// Read access for every non-public route, body deadlines, and response headers.
async fn guard(State(g): State<Arc<Gate>>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    let mut resp = if is_public(&path) {
        run_with_deadline(&g, req, next).await
    } else {
        let operator_cert = req
            .extensions()
            .get::<Peer>()
            .is_some_and(|p| p.operator_cert);
        let token_ok = presented_token(req.headers())
            .is_some_and(|t| g.access.token_grants_read(t.as_bytes()));
        let q = query_token(req.uri().query());
        if let Some(t) = q.filter(|_| req.method() == Method::GET && !path.starts_with("/api/")) {
            // A browser opening a page with ?token=: keep the token in a private
            // cookie and take it out of the address bar.
            if !g.access.token_grants_read(t.as_bytes()) {
                return finish(unauthorized(&path, "wrong token"));
            }
            // Back to the same page with the rest of its query (filters, page).
            let rest: Vec<&str> = req
                .uri()
                .query()
                .unwrap_or("")
                .split('&')
                .filter(|kv| !kv.is_empty() && !kv.starts_with("token="))
                .collect();
            // Only a path on this host: `//host/…` (or a backslash, which browsers
            // read as a slash) would send the browser to another site.
            let local = path.starts_with('/') && !path.starts_with("//") && !path.contains('\\');
            let to = if !local {
                "/".to_owned()
            } else if rest.is_empty() {
                path.clone()
            } else {
                format!("{path}?{}", rest.join("&"))
            };
            let mut r = Redirect::to(&to).into_response();
            if let Ok(v) = HeaderValue::from_str(&format!(
                "{TOKEN_COOKIE}={}; Path=/; Max-Age={COOKIE_MAX_AGE_SECS}; HttpOnly; Secure; SameSite=Strict",
                hex::encode(t.as_bytes())
            )) {
                r.headers_mut().insert(SET_COOKIE, v);
            }
            return finish(r);
        }
        if !(token_ok || operator_cert) {
            let detail = if g.access.readable() {
                "read access needs a viewer or operator bearer token, or an operator client certificate"
            } else {
                "read access is disabled: no viewer_token_file, operator_token_file or [tls] operator_ca_file is configured"
            };
            return finish(unauthorized(&path, detail));
        }
        run_with_deadline(&g, req, next).await
    };
    resp = finish(resp);
    resp
}

async fn run_with_deadline(g: &Gate, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let body = Body::new(Deadline {
        inner: body,
        sleep: Box::pin(tokio::time::sleep(g.body_timeout)),
        after: g.body_timeout,
    });
    next.run(Request::from_parts(parts, body)).await
}

/// Headers on every response: never cached (challenges, fleet state, tokens), not
/// framed, not sniffed, no referrer (a `?token=` URL must not leak).
fn finish(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    r
}
