//! The GitHub attestations API client: which Sigstore bundles a repository published
//! for a subject digest.
//!
//! `GET {api}/repos/{owner}/{repo}/attestations/{alg}:{hex}`, paged with `per_page`
//! and the `Link: <..>; rel="next"` cursor. Each attestation carries its bundle inline
//! (`bundle`) or at `bundle_url` (snappy-compressed JSON, served from another host).
//!
//! Trust boundary: nothing here is trusted. The API only *finds* bundles; each one is
//! verified offline against the configured trusted root and identity policy before any
//! claim in it counts. So this module bounds every response, follows only `next`
//! links on the API's own origin (the token never leaves it), never sends the token to
//! `bundle_url` hosts, and turns every failure into a typed [`GithubError`]. A failed
//! lookup is "could not decide", never "not attested" and never a pass.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue};
use serde::Deserialize;
use serde_json::value::RawValue;

/// The public API.
pub const GITHUB_API_URL: &str = "https://api.github.com";
/// Attestations asked for per page (GitHub's maximum is 100).
pub const PER_PAGE: u8 = 100;
/// Pages followed at most. A subject digest with more than this many attestations is
/// not something a release pipeline produces.
pub const MAX_PAGES: usize = 10;
/// Largest page body read. A page of 100 attestations with inline bundles (about
/// 10 KiB each) is about 1 MiB.
pub const MAX_PAGE_BYTES: usize = 8 * 1024 * 1024;
/// Largest bundle accepted, compressed or not (real ones are 5–15 KiB).
pub const MAX_BUNDLE_BYTES: usize = 1024 * 1024;
/// Default per-request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a lookup failed: the provenance could not be decided.
/// [`GithubError::kind`] is its stable name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GithubError {
    /// The client or the lookup is misconfigured (API URL, token, repository, digest).
    #[error("configuration: {0}")]
    Config(String),
    /// HTTP 429, or 403 with `x-ratelimit-remaining: 0`.
    #[error("{url}: rate limited; resets at {reset_at:?} (Unix seconds)")]
    RateLimited {
        /// The URL asked.
        url: String,
        /// `x-ratelimit-reset`, Unix seconds, if given.
        reset_at: Option<u64>,
    },
    /// Any other non-2xx status.
    #[error("{url}: HTTP {status}")]
    Status {
        /// The URL asked.
        url: String,
        /// The HTTP status code.
        status: u16,
    },
    /// No answer within the client's per-request timeout.
    #[error("{url}: no answer within {secs}s")]
    Timeout {
        /// The URL asked.
        url: String,
        /// The timeout, in seconds.
        secs: u64,
    },
    /// Connecting, TLS or reading the response failed.
    #[error("{url}: {detail}")]
    Transport {
        /// The URL asked.
        url: String,
        /// The error chain.
        detail: String,
    },
    /// A response body is over its cap.
    #[error("{url}: body over {max} bytes")]
    TooLarge {
        /// The URL asked.
        url: String,
        /// The cap, in bytes.
        max: usize,
    },
    /// A response cannot be used: bad JSON, snappy or link, an entry without a bundle,
    /// or a `bundle_url` refused by the SSRF guard.
    #[error("{url}: {detail}")]
    Malformed {
        /// The URL asked (or the page that linked it).
        url: String,
        /// What is wrong.
        detail: String,
    },
    /// More than [`MAX_PAGES`] pages.
    #[error("more than {MAX_PAGES} pages of attestations")]
    TooManyPages,
}

impl GithubError {
    /// A stable name for logs and API answers.
    pub fn kind(&self) -> &'static str {
        match self {
            GithubError::Config(_) => "GithubConfig",
            GithubError::RateLimited { .. } => "GithubRateLimited",
            GithubError::Status { .. } => "GithubStatus",
            GithubError::Timeout { .. } => "GithubTimeout",
            GithubError::Transport { .. } => "GithubUnreachable",
            GithubError::TooLarge { .. } => "GithubTooLarge",
            GithubError::Malformed { .. } => "GithubMalformed",
            GithubError::TooManyPages => "GithubTooManyPages",
        }
    }
}

/// One attestation as the API returned it: the bundle JSON, unverified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundBundle {
    /// The bundle JSON (decompressed when it came from `bundle_url`).
    pub bundle: Vec<u8>,
    /// Where it came from (the page URL, or the `bundle_url`), for error messages.
    pub source: String,
}

#[derive(Deserialize)]
struct Page<'a> {
    #[serde(borrow)]
    attestations: Vec<Entry<'a>>,
}

#[derive(Deserialize)]
struct Entry<'a> {
    #[serde(borrow, default)]
    bundle: Option<&'a RawValue>,
    #[serde(default)]
    bundle_url: Option<String>,
}

/// Client of the GitHub attestations API (see the module doc). The token, if any, is
/// sent to the API's origin only.
pub struct GithubClient {
    base: reqwest::Url,
    token: Option<HeaderValue>,
    client: reqwest::Client,
    /// For `bundle_url` hosts other than the API's: connects only to addresses
    /// [`signatures::oci::net::GuardedResolver`] found public (no SSRF).
    guarded: reqwest::Client,
    timeout: Duration,
}

impl std::fmt::Debug for GithubClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is never shown.
        f.debug_struct("GithubClient")
            .field("base", &self.base.as_str())
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .finish_non_exhaustive()
    }
}

impl GithubClient {
    /// `base`: the API root (`https://api.github.com`, or a GitHub Enterprise / test
    /// server). `token`: optional; public repositories need none.
    pub fn new(
        base: &str,
        token: Option<&str>,
        timeout: Duration,
    ) -> Result<GithubClient, GithubError> {
        let base = reqwest::Url::parse(base.trim_end_matches('/'))
            .map_err(|e| GithubError::Config(format!("API URL {base:?}: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
            return Err(GithubError::Config(format!(
                "API URL {base} must be http(s) with a host"
            )));
        }
        let token = match token {
            Some(t) => {
                let mut v = HeaderValue::from_str(&format!("Bearer {}", t.trim()))
                    .map_err(|_| GithubError::Config("token is not a valid header".into()))?;
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };
        let mut headers = HeaderMap::new();
        headers.insert(
            "accept",
            HeaderValue::from_static("application/vnd.github+json"),
        );
        headers.insert(
            "x-github-api-version",
            HeaderValue::from_static("2022-11-28"),
        );
        let build = |guarded: bool| {
            let b = reqwest::Client::builder();
            let b = if guarded {
                signatures::oci::net::guarded(b)
            } else {
                b
            };
            b.timeout(timeout)
                .connect_timeout(timeout)
                // Links are followed by hand, on the API's origin only.
                .redirect(reqwest::redirect::Policy::none())
                .default_headers(headers.clone())
                .user_agent(concat!("provenant-cp-verifier/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| GithubError::Config(format!("HTTP client: {e}")))
        };
        Ok(GithubClient {
            base,
            token,
            client: build(false)?,
            guarded: build(true)?,
            timeout,
        })
    }

    /// Every attestation bundle `repo` (`owner/name`) published for `digest`
    /// (`sha256:<hex>`). None found is an empty list.
    pub async fn attestations(
        &self,
        repo: &str,
        digest: &str,
    ) -> Result<Vec<FoundBundle>, GithubError> {
        let (owner, name) = repo
            .split_once('/')
            .filter(|(o, n)| valid_segment(o) && valid_segment(n))
            .ok_or_else(|| GithubError::Config(format!("repository {repo:?} is not owner/name")))?;
        let valid_digest = digest.split_once(':').is_some_and(|(alg, hex)| {
            matches!(alg, "sha256" | "sha512") && hex.bytes().all(|b| b.is_ascii_hexdigit())
        });
        if !valid_digest {
            return Err(GithubError::Config(format!(
                "subject digest {digest:?} is not sha256:<hex> or sha512:<hex>"
            )));
        }
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|_| GithubError::Config("API URL cannot have a path".into()))?
            .extend(["repos", owner, name, "attestations", digest]);
        url.query_pairs_mut()
            .append_pair("per_page", &PER_PAGE.to_string());

        let mut found = Vec::new();
        let mut next = Some(url);
        let mut pages = 0;
        while let Some(url) = next.take() {
            pages += 1;
            if pages > MAX_PAGES {
                return Err(GithubError::TooManyPages);
            }
            let (status, headers, body) = self.get(&url, true, MAX_PAGE_BYTES, false).await?;
            if status == 404 {
                // No attestation for this digest (or no such repository): nothing found.
                break;
            }
            check_status(&url, status, &headers)?;
            let shown = url.to_string();
            let page: Page<'_> =
                serde_json::from_slice(&body).map_err(|e| GithubError::Malformed {
                    url: shown.clone(),
                    detail: format!("attestations page: {e}"),
                })?;
            for e in page.attestations {
                match (e.bundle, e.bundle_url) {
                    (Some(b), _) if b.get() != "null" => {
                        if b.get().len() > MAX_BUNDLE_BYTES {
                            return Err(GithubError::TooLarge {
                                url: shown.clone(),
                                max: MAX_BUNDLE_BYTES,
                            });
                        }
                        found.push(FoundBundle {
                            bundle: b.get().as_bytes().to_vec(),
                            source: shown.clone(),
                        });
                    }
                    (_, Some(u)) => found.push(self.fetch_bundle_url(&u).await?),
                    _ => {
                        return Err(GithubError::Malformed {
                            url: shown.clone(),
                            detail: "an attestation has neither bundle nor bundle_url".into(),
                        })
                    }
                }
            }
            next = next_link(&headers)
                .map(|l| self.same_origin(&url, &l))
                .transpose()?;
        }
        Ok(found)
    }

    /// A `next` link must stay on the API's origin: the token goes with it.
    fn same_origin(&self, page: &reqwest::Url, link: &str) -> Result<reqwest::Url, GithubError> {
        let u = page.join(link).map_err(|e| GithubError::Malformed {
            url: page.to_string(),
            detail: format!("Link {link:?}: {e}"),
        })?;
        if u.origin() != self.base.origin() {
            return Err(GithubError::Malformed {
                url: page.to_string(),
                detail: format!("Link leads off the API's origin: {u}"),
            });
        }
        Ok(u)
    }

    /// `bundle_url`: snappy-compressed bundle JSON, fetched without the token.
    async fn fetch_bundle_url(&self, u: &str) -> Result<FoundBundle, GithubError> {
        let url = reqwest::Url::parse(u).map_err(|e| GithubError::Malformed {
            url: u.to_string(),
            detail: format!("bundle_url: {e}"),
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(GithubError::Malformed {
                url: u.to_string(),
                detail: "bundle_url is not http(s)".into(),
            });
        }
        // Another host than the API's (GitHub's is a blob store): https unless the API
        // itself is plain http, and public addresses only, checked after resolution.
        let external = url.host_str() != self.base.host_str();
        if external {
            let refuse = |detail: String| GithubError::Malformed {
                url: u.to_string(),
                detail: format!("bundle_url refused: {detail}"),
            };
            if url.scheme() != "https" && self.base.scheme() == "https" {
                return Err(refuse("plain http for an https API".into()));
            }
            signatures::oci::net::check_literal(&url).map_err(|e| refuse(e.to_string()))?;
        }
        let (status, headers, body) = self.get(&url, false, MAX_BUNDLE_BYTES, external).await?;
        check_status(&url, status, &headers)?;
        let malformed = |detail: String| GithubError::Malformed {
            url: u.to_string(),
            detail,
        };
        let len =
            snap::raw::decompress_len(&body).map_err(|e| malformed(format!("not snappy: {e}")))?;
        if len > MAX_BUNDLE_BYTES {
            return Err(GithubError::TooLarge {
                url: u.to_string(),
                max: MAX_BUNDLE_BYTES,
            });
        }
        let bundle = snap::raw::Decoder::new()
            .decompress_vec(&body)
            .map_err(|e| malformed(format!("not snappy: {e}")))?;
        Ok(FoundBundle {
            bundle,
            source: u.to_string(),
        })
    }

    async fn get(
        &self,
        url: &reqwest::Url,
        with_token: bool,
        max: usize,
        external: bool,
    ) -> Result<(u16, HeaderMap, Vec<u8>), GithubError> {
        let shown = url.to_string();
        let err = |e: reqwest::Error| {
            if let Some(i) = signatures::oci::net::internal_in(&e) {
                GithubError::Malformed {
                    url: shown.clone(),
                    detail: format!("bundle_url refused: {i}"),
                }
            } else if e.is_timeout() {
                GithubError::Timeout {
                    url: shown.clone(),
                    secs: self.timeout.as_secs(),
                }
            } else {
                GithubError::Transport {
                    url: shown.clone(),
                    detail: provenant_base::errors::chain(&e),
                }
            }
        };
        let client = if external {
            &self.guarded
        } else {
            &self.client
        };
        let mut req = client.get(url.clone());
        if let (true, Some(t)) = (with_token, &self.token) {
            req = req.header("authorization", t.clone());
        }
        let mut resp = req.send().await.map_err(err)?;
        let too_large = || GithubError::TooLarge {
            url: shown.clone(),
            max,
        };
        if resp
            .content_length()
            .is_some_and(|n| usize::try_from(n).map_or(true, |n| n > max))
        {
            return Err(too_large());
        }
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(err)? {
            if body.len() + chunk.len() > max {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, headers, body))
    }
}

fn valid_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn check_status(url: &reqwest::Url, status: u16, h: &HeaderMap) -> Result<(), GithubError> {
    if (200..300).contains(&status) {
        return Ok(());
    }
    let header = |n: &str| h.get(n).and_then(|v| v.to_str().ok());
    let exhausted = header("x-ratelimit-remaining") == Some("0");
    if status == 429 || (status == 403 && exhausted) {
        return Err(GithubError::RateLimited {
            url: url.to_string(),
            reset_at: header("x-ratelimit-reset").and_then(|v| v.parse().ok()),
        });
    }
    Err(GithubError::Status {
        url: url.to_string(),
        status,
    })
}

/// The `rel="next"` target of a `Link` header.
fn next_link(h: &HeaderMap) -> Option<String> {
    let link = h.get("link")?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let is_next = params
            .split(';')
            .any(|p| p.trim().replace(' ', "") == "rel=\"next\"");
        let t = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        is_next.then(|| t.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            "link",
            HeaderValue::from_static(
                "<https://api.github.com/x?after=abc&per_page=100>; rel=\"next\", <https://api.github.com/x?before=z>; rel=\"prev\"",
            ),
        );
        assert_eq!(
            next_link(&h).as_deref(),
            Some("https://api.github.com/x?after=abc&per_page=100")
        );
        h.insert(
            "link",
            HeaderValue::from_static("<https://api.github.com/x?before=z>; rel=\"prev\""),
        );
        assert_eq!(next_link(&h), None);
        assert_eq!(next_link(&HeaderMap::new()), None);
    }

    #[test]
    fn repository_and_digest_are_checked_before_any_request() {
        let c = GithubClient::new("http://127.0.0.1:1", None, DEFAULT_TIMEOUT).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        for (repo, digest) in [
            ("noslash", "sha256:00"),
            ("a/b/c", "sha256:00"),
            ("../x", "sha256:00"),
            ("a/b", "md5:00"),
            ("a/b", "sha256:zz"),
            ("a/b", "sha256"),
        ] {
            let e = rt.block_on(c.attestations(repo, digest)).unwrap_err();
            assert!(matches!(e, GithubError::Config(_)), "{repo} {digest}: {e}");
        }
        assert!(GithubClient::new("ftp://x", None, DEFAULT_TIMEOUT).is_err());
        let shown = format!(
            "{:?}",
            GithubClient::new("https://x", Some("secret-token"), DEFAULT_TIMEOUT).unwrap()
        );
        assert!(shown.contains("<set>") && !shown.contains("secret-token"));
    }
}
