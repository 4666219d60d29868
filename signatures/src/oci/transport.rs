//! Requests to a registry: per-host HTTP clients, the auth retry, redirects (only blob
//! downloads may leave the registry's host, never with credentials), typed HTTP errors
//! and size-bounded bodies.

use std::time::Duration;

use reqwest::header::{
    HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE,
};
use reqwest::{Method, StatusCode, Url};

use super::challenge::{parse_challenge, AuthMode, Challenge, Creds};
use super::{
    len64, net, Reference, RegistryClient, RegistryError, CONNECT_TIMEOUT, MAX_ERROR_BODY_BYTES,
    MAX_REDIRECTS,
};

#[derive(Debug)]
pub(super) struct HostEntry {
    pub(super) scheme: &'static str,
    pub(super) client: reqwest::Client,
    /// For hosts other than the registry's own (token realms, blob redirects): it
    /// connects only to addresses [`net::GuardedResolver`] found public.
    pub(super) guarded: reqwest::Client,
    pub(super) creds: Creds,
}

pub(super) fn build_http(
    ca_pem: Option<&[u8]>,
    timeout: Duration,
    guarded: bool,
) -> Result<reqwest::Client, RegistryError> {
    let mut b = reqwest::Client::builder();
    if guarded {
        b = net::guarded(b);
    }
    let mut b = b
        .use_rustls_tls()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(timeout)
        .user_agent(concat!("provenant-signatures/", env!("CARGO_PKG_VERSION")));
    if let Some(pem) = ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| RegistryError::Config(format!("ca_file: {e}")))?;
        if certs.is_empty() {
            return Err(RegistryError::Config("ca_file holds no certificate".into()));
        }
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    b.build()
        .map_err(|e| RegistryError::Config(format!("HTTP client: {e}")))
}

/// Whether two URLs share scheme, host and port.
pub(super) fn same_origin(a: &Url, b: &str) -> bool {
    Url::parse(b).is_ok_and(|b| {
        a.scheme() == b.scheme()
            && a.host_str() == b.host_str()
            && a.port_or_known_default() == b.port_or_known_default()
    })
}

/// The host part of `host[:port]` (brackets of an IPv6 literal removed), lowercased.
fn host_part(registry: &str) -> String {
    match registry.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => registry.split(':').next().unwrap_or(registry),
    }
    .to_ascii_lowercase()
}

/// Whether `url` is on one of the registry's own hosts (the configured `host[:port]`
/// or its API host), whatever the port: the only place an internal address is
/// reached, because the operator named it.
pub(super) fn own_host(url: &Url, own: &[&str]) -> bool {
    let Some(h) = url.host_str() else {
        return false;
    };
    let h = h.trim_start_matches('[').trim_end_matches(']');
    own.iter().any(|o| host_part(o) == h.to_ascii_lowercase())
}

pub(super) enum Body<'a> {
    Empty,
    Bytes(&'a [u8], &'a str),
}

/// What kind of request: only blob downloads may be redirected to another host.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Redirects {
    SameHost,
    AnyHostNoAuth,
}

impl RegistryClient {
    pub(super) fn transport_error(host: &str, e: reqwest::Error) -> RegistryError {
        if e.is_timeout() {
            RegistryError::Timeout {
                host: host.to_string(),
            }
        } else {
            // The full chain: rustls' certificate errors sit under reqwest's.
            let mut reason = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                reason.push_str(": ");
                reason.push_str(&s.to_string());
                src = s.source();
            }
            RegistryError::Unreachable {
                host: host.to_string(),
                reason,
            }
        }
    }

    /// Sends one request with auth and redirect handling; returns the final response
    /// (any status; 401 only when auth could not help).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn send(
        &self,
        r: &Reference,
        method: Method,
        url: &str,
        headers: &HeaderMap,
        body: Body<'_>,
        push: bool,
        redirects: Redirects,
    ) -> Result<reqwest::Response, RegistryError> {
        let host = r.registry().to_string();
        let entry = self.entry(&host);
        let scope = format!(
            "repository:{}:{}",
            r.path(),
            if push { "pull,push" } else { "pull" }
        );
        let mut tried_auth = false;
        // A token just fetched is used for the retry whatever its announced lifetime
        // (one shorter than the refresh margin is good for this one request).
        let mut fresh: Option<HeaderValue> = None;
        loop {
            let auth = fresh
                .take()
                .or_else(|| self.auth_header(&host, &scope, entry));
            let resp = self
                .send_following(
                    entry,
                    &host,
                    method.clone(),
                    url,
                    headers,
                    &body,
                    auth,
                    redirects,
                )
                .await?;
            if resp.status() != StatusCode::UNAUTHORIZED {
                return Ok(resp);
            }
            // Only the registry itself may ask for credentials: a 401 from a host a blob
            // was redirected to is not answered (its challenge would send the
            // configured credentials to a realm of its choosing).
            if !same_origin(resp.url(), url) {
                return Err(RegistryError::Unauthorized {
                    host,
                    reason: format!(
                        "{} (a redirect target) asked for credentials; they go to the registry only",
                        super::clip(resp.url().host_str().unwrap_or_default())
                    )});
            }
            if tried_auth {
                return Err(RegistryError::Unauthorized {
                    host,
                    reason: "credentials refused".into(),
                });
            }
            tried_auth = true;
            let challenge = match resp.headers().get(WWW_AUTHENTICATE) {
                Some(v) => parse_challenge(v.to_str().map_err(|_| {
                    RegistryError::Malformed("WWW-Authenticate is not ASCII".into())
                })?)?,
                None => {
                    return Err(RegistryError::Unauthorized {
                        host,
                        reason: "401 without a WWW-Authenticate challenge".into(),
                    })
                }
            };
            match (&entry.creds, challenge) {
                (Creds::Bearer(_), _) => {
                    return Err(RegistryError::Unauthorized {
                        host,
                        reason: "static bearer token refused".into(),
                    })
                }
                (Creds::Basic { .. }, Challenge::Basic) => {
                    self.set_mode(&host, AuthMode::Basic);
                }
                (Creds::None, Challenge::Basic) => {
                    return Err(RegistryError::Unauthorized {
                        host,
                        reason: "registry asks for Basic credentials and none are configured"
                            .into(),
                    })
                }
                (
                    creds,
                    Challenge::Bearer {
                        realm,
                        service,
                        scope: asked,
                    },
                ) => {
                    let token = self
                        .fetch_token(
                            entry,
                            &host,
                            creds,
                            &realm,
                            service.as_deref(),
                            asked.as_deref().unwrap_or(&scope),
                        )
                        .await?;
                    let mut h = HeaderValue::from_str(&format!("Bearer {}", token.token.0))
                        .map_err(|_| {
                            RegistryError::Malformed("token is not a valid header value".into())
                        })?;
                    h.set_sensitive(true);
                    fresh = Some(h);
                    self.tokens
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert((host.clone(), scope.clone()), token);
                    self.set_mode(&host, AuthMode::Token);
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn send_following(
        &self,
        entry: &HostEntry,
        host: &str,
        method: Method,
        url: &str,
        headers: &HeaderMap,
        body: &Body<'_>,
        auth: Option<HeaderValue>,
        redirects: Redirects,
    ) -> Result<reqwest::Response, RegistryError> {
        let mut url = Url::parse(url)
            .map_err(|e| RegistryError::InvalidReference(format!("URL {url}: {e}")))?;
        let origin = (
            url.scheme().to_string(),
            url.host_str().map(str::to_string),
            url.port_or_known_default(),
        );
        let origin_host = url.host_str().unwrap_or_default().to_string();
        let mut hops = 0;
        loop {
            let same_origin = (
                url.scheme().to_string(),
                url.host_str().map(str::to_string),
                url.port_or_known_default(),
            ) == origin;
            // Hosts other than the registry's own (a blob's CDN): https unless the
            // registry is plain http, and public addresses only.
            let external = !same_origin && !own_host(&url, &[host, &origin_host]);
            if external {
                if url.scheme() != "https" && entry.scheme != "http" {
                    return Err(RegistryError::Redirect(format!(
                        "plain http redirect target {} for an https registry refused",
                        super::clip(url.host_str().unwrap_or_default())
                    )));
                }
                net::check_literal(&url).map_err(|e| {
                    RegistryError::Redirect(format!("redirect target refused: {e}"))
                })?;
            }
            let client = if external {
                &entry.guarded
            } else {
                &entry.client
            };
            let mut req = client
                .request(method.clone(), url.clone())
                .headers(headers.clone());
            if same_origin {
                if let Some(a) = &auth {
                    req = req.header(AUTHORIZATION, a.clone());
                }
            }
            if let Body::Bytes(b, ct) = body {
                req = req.header(CONTENT_TYPE, *ct).body(b.to_vec());
            } else if method == Method::PUT || method == Method::POST {
                req = req.header(reqwest::header::CONTENT_LENGTH, "0");
            }
            let resp = req.send().await.map_err(|e| {
                if let Some(i) = net::internal_in(&e) {
                    return RegistryError::Redirect(format!("redirect target refused: {i}"));
                }
                let shown = match (url.host_str(), url.port_or_known_default()) {
                    (Some(h), Some(p)) if !same_origin => format!("{h}:{p}"),
                    _ => host.to_string(),
                };
                Self::transport_error(&shown, e)
            })?;
            if !resp.status().is_redirection() || resp.status() == StatusCode::NOT_MODIFIED {
                return Ok(resp);
            }
            hops += 1;
            if hops > MAX_REDIRECTS {
                return Err(RegistryError::Redirect(format!(
                    "more than {MAX_REDIRECTS} redirects"
                )));
            }
            let loc = resp
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| RegistryError::Redirect("redirect without a Location".into()))?;
            let next = url.join(loc).map_err(|e| {
                RegistryError::Redirect(format!("Location {:?}: {e}", super::clip(loc)))
            })?;
            if !matches!(next.scheme(), "http" | "https") {
                return Err(RegistryError::Redirect("Location is not http(s)".into()));
            }
            let next_origin = (
                next.scheme().to_string(),
                next.host_str().map(str::to_string),
                next.port_or_known_default(),
            );
            if redirects == Redirects::SameHost && next_origin != origin {
                return Err(RegistryError::Redirect(format!(
                    "redirect to another host ({}:{}) refused",
                    next.host_str().unwrap_or_default(),
                    next.port_or_known_default().unwrap_or_default()
                )));
            }
            url = next;
        }
    }

    /// Reads an error response into a typed error.
    pub(super) async fn http_error(
        resp: reqwest::Response,
        what: &str,
        host: &str,
    ) -> RegistryError {
        let status = resp.status().as_u16();
        let code = match read_body(resp, MAX_ERROR_BODY_BYTES, "error body", host).await {
            Ok(b) => serde_json::from_slice::<serde_json::Value>(&b)
                .ok()
                .and_then(|v| v["errors"][0]["code"].as_str().map(super::clip)),
            Err(_) => None,
        };
        if status == 403 {
            return RegistryError::Unauthorized {
                host: host.to_string(),
                reason: format!("403 for {what}"),
            };
        }
        RegistryError::Http {
            status,
            what: what.to_string(),
            code,
        }
    }
}

/// Reads a body, refusing it as soon as it exceeds `max` (whatever the
/// `Content-Length` says, or without one).
pub(super) async fn read_body(
    mut resp: reqwest::Response,
    max: usize,
    what: &str,
    host: &str,
) -> Result<Vec<u8>, RegistryError> {
    let too_large = || RegistryError::TooLarge {
        what: what.to_string(),
        max,
    };
    if resp.content_length().is_some_and(|l| l > len64(max)) {
        return Err(too_large());
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| RegistryClient::transport_error(host, e))?
    {
        if out.len() + chunk.len() > max {
            return Err(too_large());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}
