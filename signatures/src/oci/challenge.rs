//! Registry credentials and the `WWW-Authenticate` challenge: plain data and its
//! parser, shared by the transport (which meets a challenge) and the token client
//! (which answers it).

use std::collections::BTreeMap;
use std::time::Instant;

use super::{clip, RegistryError, MAX_CHALLENGE_LEN};

/// A secret that never prints.
#[derive(Clone)]
pub(super) struct Secret(pub(super) String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, Clone)]
pub(super) enum Creds {
    None,
    Basic { user: String, password: Secret },
    Bearer(Secret),
}

/// A cached bearer token for (host, scope).
#[derive(Debug)]
pub(super) struct CachedToken {
    pub(super) token: Secret,
    pub(super) until: Instant,
}

/// What the registry asked for last time, per host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AuthMode {
    Unknown,
    Basic,
    Token,
}

/// One parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parses `Basic realm=".."` or `Bearer realm="..",service="..",scope=".."`.
pub(super) fn parse_challenge(h: &str) -> Result<Challenge, RegistryError> {
    let bad = |why: &str| RegistryError::Malformed(format!("WWW-Authenticate: {why}"));
    if h.len() > MAX_CHALLENGE_LEN {
        return Err(bad("too long"));
    }
    let h = h.trim();
    let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
    let mut params = BTreeMap::new();
    let mut s = rest.trim();
    while !s.is_empty() {
        let (k, after) = s
            .split_once('=')
            .ok_or_else(|| bad("parameter without '='"))?;
        let k = k.trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (v, rest) = if let Some(q) = after.strip_prefix('"') {
            // Quoted string with backslash escapes.
            let mut v = String::new();
            let mut chars = q.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            v.push(n);
                        }
                    }
                    '"' => {
                        end = Some(i);
                        break;
                    }
                    c => v.push(c),
                }
            }
            let end = end.ok_or_else(|| bad("unterminated quoted string"))?;
            (v, &q[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        params.insert(k, v);
        s = rest.trim_start();
        s = s.strip_prefix(',').unwrap_or(s).trim_start();
    }
    if scheme.eq_ignore_ascii_case("basic") {
        Ok(Challenge::Basic)
    } else if scheme.eq_ignore_ascii_case("bearer") {
        let realm = params
            .remove("realm")
            .ok_or_else(|| bad("Bearer without realm"))?;
        Ok(Challenge::Bearer {
            realm,
            service: params.remove("service"),
            scope: params.remove("scope"),
        })
    } else {
        Err(bad(&format!("unsupported scheme {:?}", clip(scheme))))
    }
}
