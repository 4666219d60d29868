//! Registry authentication: configured credentials, `WWW-Authenticate` challenges, the
//! token flow (with its SSRF rules for the token realm) and the token cache.
use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderValue, AUTHORIZATION};
use reqwest::{StatusCode, Url};
use serde::Deserialize;

use super::challenge::{AuthMode, CachedToken, Creds, Secret};
use super::transport::{own_host, read_body, HostEntry};
use super::{
    net, read_bounded_file, RegistryClient, RegistryError, DEFAULT_TOKEN_LIFETIME,
    MAX_SECRET_FILE_BYTES, MAX_TOKEN_LIFETIME, MAX_TOKEN_RESPONSE_BYTES, TOKEN_EXPIRY_MARGIN,
};

pub(super) fn read_secret(p: &Path, what: &str) -> Result<Secret, RegistryError> {
    let b = read_bounded_file(p, MAX_SECRET_FILE_BYTES, what)?;
    let s = String::from_utf8(b)
        .map_err(|_| RegistryError::Config(format!("{what} {} is not UTF-8", p.display())))?;
    let s = s.trim_end_matches(['\n', '\r']).to_string();
    if s.is_empty() {
        return Err(RegistryError::Config(format!(
            "{what} {} is empty",
            p.display()
        )));
    }
    Ok(Secret(s))
}

impl RegistryClient {
    pub(super) fn set_mode(&self, host: &str, m: AuthMode) {
        self.modes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(host.to_string(), m);
    }

    pub(super) fn auth_header(
        &self,
        host: &str,
        scope: &str,
        entry: &HostEntry,
    ) -> Option<HeaderValue> {
        let mode = *self
            .modes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(host)
            .unwrap_or(&AuthMode::Unknown);
        let v = match (&entry.creds, mode) {
            (Creds::Bearer(t), _) => format!("Bearer {}", t.0),
            (Creds::Basic { user, password }, AuthMode::Basic) => basic(user, &password.0),
            (_, AuthMode::Token) => {
                let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
                let key = (host.to_string(), scope.to_string());
                match tokens.get(&key) {
                    Some(t) if t.until > Instant::now() => format!("Bearer {}", t.token.0),
                    Some(_) => {
                        tokens.remove(&key);
                        return None;
                    }
                    None => return None,
                }
            }
            _ => return None,
        };
        let mut h = HeaderValue::from_str(&v).ok()?;
        h.set_sensitive(true);
        Some(h)
    }

    pub(super) async fn fetch_token(
        &self,
        entry: &HostEntry,
        host: &str,
        creds: &Creds,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<CachedToken, RegistryError> {
        let mut url = Url::parse(realm).map_err(|e| {
            RegistryError::Malformed(format!("token realm {:?}: {e}", super::clip(realm)))
        })?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(RegistryError::Malformed(format!(
                "token realm {:?} is not http(s)",
                super::clip(realm)
            )));
        }
        // A registry names its token server, which may be another host (Docker Hub's
        // is). It may not point us at internal addresses it does not itself live on:
        // another host is reached over https (unless the registry itself is plain
        // http), and only at addresses that are public once resolved.
        let external = !own_host(&url, &[host]);
        let refuse = |why: String| RegistryError::Unauthorized {
            host: host.to_string(),
            reason: format!("token realm {:?} refused: {why}", super::clip(realm)),
        };
        if external {
            if url.scheme() != "https" && entry.scheme != "http" {
                return Err(refuse(
                    "plain http on another host than an https registry's".into(),
                ));
            }
            net::check_literal(&url).map_err(|e| refuse(e.to_string()))?;
        }
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            q.append_pair("scope", scope);
        }
        let mut req = if external {
            entry.guarded.get(url.clone())
        } else {
            entry.client.get(url.clone())
        };
        if let Creds::Basic { user, password } = creds {
            // Credentials travel in clear only where the registry itself is plain http.
            if url.scheme() == "https" || entry.scheme == "http" {
                let mut h = HeaderValue::from_str(&basic(user, &password.0))
                    .map_err(|_| RegistryError::Config("username is not a valid header".into()))?;
                h.set_sensitive(true);
                req = req.header(AUTHORIZATION, h);
            } else {
                return Err(RegistryError::Unauthorized {
                    host: host.to_string(),
                    reason: "token realm is plain http for an https registry: credentials not sent"
                        .into(),
                });
            }
        }
        let realm_host = url.host_str().unwrap_or_default().to_string();
        let resp = req.send().await.map_err(|e| match net::internal_in(&e) {
            Some(i) => refuse(i.to_string()),
            None => Self::transport_error(&realm_host, e),
        })?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(RegistryError::Unauthorized {
                host: host.to_string(),
                reason: format!("token server answered {}", status.as_u16()),
            });
        }
        if !status.is_success() {
            return Err(RegistryError::Http {
                status: status.as_u16(),
                what: "token".into(),
                code: None,
            });
        }
        let body = read_body(
            resp,
            MAX_TOKEN_RESPONSE_BYTES,
            "token response",
            &realm_host,
        )
        .await?;
        #[derive(Deserialize)]
        struct TokenResponse {
            #[serde(default)]
            token: Option<String>,
            #[serde(default)]
            access_token: Option<String>,
            #[serde(default)]
            expires_in: Option<u64>,
        }
        let t: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| RegistryError::Malformed(format!("token response: {e}")))?;
        let token = t
            .token
            .filter(|s| !s.is_empty())
            .or(t.access_token.filter(|s| !s.is_empty()))
            .ok_or_else(|| RegistryError::Malformed("token response without a token".into()))?;
        if HeaderValue::from_str(&format!("Bearer {token}")).is_err() {
            return Err(RegistryError::Malformed(
                "token is not a valid header value".into(),
            ));
        }
        let life = t
            .expires_in
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_TOKEN_LIFETIME)
            .min(MAX_TOKEN_LIFETIME);
        Ok(CachedToken {
            token: Secret(token),
            until: Instant::now() + life.saturating_sub(TOKEN_EXPIRY_MARGIN),
        })
    }
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}
