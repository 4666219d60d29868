//! Request ids: every request runs in a tracing span named `request` carrying a
//! `request_id`, so each log line a request causes (a refused pulse, a store error)
//! names it, and every response carries it back in `x-request-id`. A caller's own
//! `x-request-id` (a load balancer's, an operator's `curl -H`) is kept when it is a
//! short token of safe characters; anything else is replaced, so a client can
//! neither forge log structure nor make the header unbounded.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use rand::RngCore;
use tracing::Instrument;

use crate::http::error::RefusalKind;

/// The header a request id travels in, both ways.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The longest caller-chosen id kept.
const MAX_ID_LEN: usize = 64;

/// The caller's id if it is 1..=64 characters of `[A-Za-z0-9._:-]`.
fn acceptable(v: &HeaderValue) -> Option<String> {
    let b = v.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= MAX_ID_LEN
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b':' | b'-'));
    // Checked above: ASCII only, so this is valid UTF-8.
    ok.then(|| String::from_utf8_lossy(b).into_owned())
}

/// A fresh id: 128 random bits in hex.
fn fresh() -> String {
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// The outermost layer: picks the id, runs the request in its span, logs the outcome
/// (refusals at `info`, server errors at `warn`, the rest at `debug` so a busy fleet's
/// pulses do not flood the log) and returns the id in the response.
pub async fn request_id(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(acceptable)
        .unwrap_or_else(fresh);
    if let Ok(v) = HeaderValue::from_str(&id) {
        // The handlers (and anything forwarding the request) see the id chosen.
        req.headers_mut().insert(REQUEST_ID, v);
    }
    let method = req.method().clone();
    // The path only: a query may hold a `?token=`.
    let path = req.uri().path().to_owned();
    let span = tracing::info_span!("request", request_id = %id, method = %method, path = %path);
    let started = std::time::Instant::now();
    let mut resp = next.run(req).instrument(span.clone()).await;
    let status = resp.status().as_u16();
    let ms = started.elapsed().as_secs_f64() * 1e3;
    let kind = resp.extensions().get::<RefusalKind>().map_or("", |k| k.0);
    span.in_scope(|| {
        if status >= 500 {
            tracing::warn!(status, kind, ms, "answered");
        } else if status >= 400 {
            tracing::info!(status, kind, ms, "answered");
        } else {
            tracing::debug!(status, ms, "answered");
        }
    });
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_safe_ids_are_kept() {
        let keep = |s: &str| acceptable(&HeaderValue::from_str(s).unwrap());
        assert_eq!(keep("lb-7f3a:01.x_y").as_deref(), Some("lb-7f3a:01.x_y"));
        assert_eq!(keep(&"a".repeat(64)).as_deref(), Some(&*"a".repeat(64)));
        for bad in ["", " ", "a b", "a\"b", "{\"x\":1}", "a/b", "ü"] {
            let v = HeaderValue::from_bytes(bad.as_bytes()).unwrap();
            assert_eq!(acceptable(&v), None, "{bad:?}");
        }
        assert_eq!(keep(&"a".repeat(65)), None);
        let f = fresh();
        assert_eq!(f.len(), 32);
        assert!(acceptable(&HeaderValue::from_str(&f).unwrap()).is_some());
        assert_ne!(f, fresh());
    }
}
