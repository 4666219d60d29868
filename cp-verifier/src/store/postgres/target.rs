//! Where the shared store lives: a `postgres://` URL from the config, with the
//! password either in the URL or (better) in a private file. Nothing here shows the
//! password: `Debug`, `Display` and the errors use the URL without it.
//!
//! A leaf module (std and sqlx only), so the config can use it without an import
//! circle through the store.

use std::path::Path;
use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;

/// Largest password file read.
const MAX_PASSWORD_FILE_BYTES: u64 = 4096;
/// Server-side bound on any one statement (and on waiting for a row lock), ms.
pub const STATEMENT_TIMEOUT_MS: u64 = 10_000;

/// Why a store URL or password file is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PgTargetError {
    /// Not a `postgres://` or `postgresql://` URL.
    #[error("store: {0:?} is not a postgres:// URL")]
    Scheme(String),
    /// The URL does not parse (shown without its password).
    #[error("store: cannot parse {url}: {why}")]
    Url {
        /// The URL, password removed.
        url: String,
        /// What is wrong.
        why: String,
    },
    /// The password is given twice.
    #[error(
        "store: the URL carries a password and store_password_file is set; keep only the file"
    )]
    TwoPasswords,
    /// The password file cannot be used.
    #[error("store_password_file: {0}")]
    PasswordFile(String),
}

/// The config's `store` value: a `postgres://` URL. Its `Debug` hides the password.
#[derive(Clone, serde::Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct StoreUrl(pub String);

impl std::fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoreUrl({:?})", without_password(&self.0))
    }
}

/// The store the config names: `None` for the embedded SQLite database, else the
/// PostgreSQL target, its password read from `password_file` (mode 0600) if given.
/// With `read_file` false the file is not read (a syntax check only).
pub fn target_from(
    url: Option<&StoreUrl>,
    password_file: Option<&Path>,
    read_file: bool,
) -> Result<Option<PgTarget>, PgTargetError> {
    let Some(url) = url else {
        return match password_file {
            Some(_) => Err(PgTargetError::PasswordFile(
                "set, but no `store = \"postgres://...\"` to use it with".into(),
            )),
            None => Ok(None),
        };
    };
    let password = match password_file {
        Some(p) if read_file => Some(read_password_file(p)?),
        Some(_) => Some(String::new()),
        None => None,
    };
    PgTarget::parse(&url.0, password).map(Some)
}

/// A PostgreSQL connection target.
#[derive(Clone)]
pub struct PgTarget {
    /// The URL without its password (for messages).
    shown: String,
    password: Option<String>,
    options: PgConnectOptions,
}

impl std::fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTarget")
            .field("url", &self.shown)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl std::fmt::Display for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

/// Whether `url` names a PostgreSQL server (rather than the embedded store).
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// `url` with the password (if any) replaced by `***`, and without its query
/// string (which may carry `password=`; it is shown as `?…`).
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<unparsable store URL>".into();
    };
    let (rest, query) = match rest.split_once('?') {
        Some((r, _)) => (r, "?…"),
        None => (rest, ""),
    };
    let (auth, host) = match rest.rsplit_once('@') {
        Some((a, h)) if !a.contains('/') => (Some(a), h),
        _ => (None, rest),
    };
    match auth.map(|a| a.split_once(':')) {
        Some(Some((user, _))) => format!("{scheme}://{user}:***@{host}{query}"),
        Some(None) => format!("{scheme}://{}@{host}{query}", auth.unwrap_or_default()),
        None => format!("{scheme}://{host}{query}"),
    }
}

impl PgTarget {
    /// Parses `url`; `password` (from a password file) is used if the URL has none.
    pub fn parse(url: &str, password: Option<String>) -> Result<PgTarget, PgTargetError> {
        if !is_postgres_url(url) {
            let shown: String = url.chars().take(40).collect();
            return Err(PgTargetError::Scheme(if url.contains('@') {
                "<hidden>".into()
            } else {
                shown
            }));
        }
        let shown = without_password(url);
        let mut options = PgConnectOptions::from_str(url).map_err(|e| PgTargetError::Url {
            url: shown.clone(),
            why: redact_url_password(&e.to_string(), url),
        })?;
        let in_url = url_password(url);
        if in_url.is_some() && password.is_some() {
            return Err(PgTargetError::TwoPasswords);
        }
        if let Some(p) = &password {
            options = options.password(p);
        }
        options = options
            .application_name("cp-verifier")
            .options([("statement_timeout", STATEMENT_TIMEOUT_MS.to_string())]);
        Ok(PgTarget {
            shown,
            password: password.or(in_url),
            options,
        })
    }

    /// Connection options (with the statement timeout and application name).
    pub fn options(&self) -> PgConnectOptions {
        self.options.clone()
    }

    /// `msg` with the password, if it occurs, replaced by `***`.
    pub fn redact(&self, msg: &str) -> String {
        redact_text(msg, self.password.as_deref())
    }
}

/// The password the URL carries, in its userinfo or as a `password=` parameter.
fn url_password(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let from_query = query.and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("password="))
            .filter(|p| !p.is_empty())
    });
    let from_auth = rest
        .rsplit_once('@')
        .filter(|(a, _)| !a.contains('/'))
        .and_then(|(a, _)| a.split_once(':'))
        .map(|(_, p)| p)
        .filter(|p| !p.is_empty());
    from_query.or(from_auth).map(percent_decode)
}

/// `%XX` escapes decoded (as the URL parser does); invalid escapes kept as they are.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| char::from(c).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn redact_text(msg: &str, password: Option<&str>) -> String {
    match password {
        Some(p) if !p.is_empty() => msg.replace(p, "***"),
        _ => msg.to_string(),
    }
}

/// `msg` with `url`'s password, decoded or as written in the URL, replaced.
fn redact_url_password(msg: &str, url: &str) -> String {
    let decoded = url_password(url);
    let once = redact_text(msg, decoded.as_deref());
    // As written (percent-encoded), if that differs.
    let raw = url
        .split_once("://")
        .map(|(_, r)| r)
        .and_then(|r| r.rsplit_once('@'))
        .and_then(|(a, _)| a.split_once(':'))
        .map(|(_, p)| p.to_string());
    redact_text(&once, raw.as_deref())
}

/// Reads the store password from `path`: private to its owner (mode 0600), at most
/// 4 KiB, UTF-8, surrounding whitespace trimmed, not empty.
pub fn read_password_file(path: &Path) -> Result<String, PgTargetError> {
    let b = provenant_base::fsutil::read_secret(path, MAX_PASSWORD_FILE_BYTES)
        .map_err(|e| PgTargetError::PasswordFile(e.to_string()))?;
    let s = String::from_utf8(b)
        .map_err(|_| PgTargetError::PasswordFile(format!("{} is not UTF-8", path.display())))?;
    let p = s.trim();
    if p.is_empty() || p.chars().any(char::is_control) {
        return Err(PgTargetError::PasswordFile(format!(
            "{}: empty, or not one line of text",
            path.display()
        )));
    }
    Ok(p.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_never_shown() {
        let t = PgTarget::parse("postgres://u:s3cret@db.example:5432/fleet", None).unwrap();
        assert!(!format!("{t:?}").contains("s3cret"));
        assert!(!t.to_string().contains("s3cret"));
        assert_eq!(t.to_string(), "postgres://u:***@db.example:5432/fleet");
        assert_eq!(t.redact("auth failed for s3cret"), "auth failed for ***");
        let t = PgTarget::parse("postgres://u@db/fleet", Some("filepw".into())).unwrap();
        assert!(!format!("{t:?}").contains("filepw"));
        assert_eq!(t.to_string(), "postgres://u@db/fleet");
        // As a query parameter, percent-encoded: hidden too, and counted.
        let t = PgTarget::parse(
            "postgres://u@db/fleet?password=p%40ss&sslmode=require",
            None,
        )
        .unwrap();
        assert_eq!(t.to_string(), "postgres://u@db/fleet?…");
        assert_eq!(t.redact("x p@ss y"), "x *** y");
        assert!(matches!(
            PgTarget::parse("postgres://u@db/f?password=x", Some("y".into())),
            Err(PgTargetError::TwoPasswords)
        ));
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%e2%82%ac%zz"), "€%zz");
    }

    #[test]
    fn bad_targets_are_typed_errors() {
        assert!(matches!(
            PgTarget::parse("mysql://u@h/db", None),
            Err(PgTargetError::Scheme(_))
        ));
        assert!(matches!(
            PgTarget::parse("postgres://u:p@h/db", Some("q".into())),
            Err(PgTargetError::TwoPasswords)
        ));
        for weird in [
            "postgres://",
            "postgres://@",
            "postgres://:@/",
            "postgres://u:p@h:99999/db",
        ] {
            // Refused or accepted, never a panic, and never the password in the error.
            if let Err(e) = PgTarget::parse(weird, None) {
                assert!(!e.to_string().contains(":p@"));
            }
        }
    }

    #[test]
    fn password_file_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pw");
        std::fs::write(&p, "hunter2\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            read_password_file(&p),
            Err(PgTargetError::PasswordFile(_))
        ));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_password_file(&p).unwrap(), "hunter2");
        std::fs::write(&p, "\n").unwrap();
        assert!(read_password_file(&p).is_err());
    }
}
