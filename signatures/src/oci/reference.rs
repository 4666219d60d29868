//! Image references: `registry[:port]/path[:tag][@sha256:hex]`, validated with the
//! grammar of distribution's `reference` package, and normalised as Docker does
//! (`busybox` is `docker.io/library/busybox`).

use std::fmt;

use super::digest::Sha256Digest;
use super::{clip, RegistryError};

/// Longest reference accepted, whole (distribution bounds the name at 255 characters;
/// a tag is at most 128 and a digest 71).
pub const MAX_REFERENCE_LEN: usize = 512;
/// Longest repository name (`registry/path`), as distribution's `NameTotalLengthMax`.
pub const MAX_NAME_LEN: usize = 255;
/// Longest tag, as distribution's grammar (`[\w][\w.-]{0,127}`).
pub const MAX_TAG_LEN: usize = 128;

/// Docker Hub's canonical registry name in references.
pub const DOCKER_HUB: &str = "docker.io";
/// Where Docker Hub's registry API actually answers.
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    path: String,
    tag: Option<String>,
    digest: Option<Sha256Digest>,
}

impl Reference {
    /// Parses `registry[:port]/path[:tag][@sha256:hex]`. The first path component is
    /// the registry when it contains `.` or `:` or is `localhost`; otherwise the
    /// reference is on Docker Hub (and one-component paths are under `library/`).
    /// Only sha256 digests are accepted (the only algorithm the project signs with).
    pub fn parse(s: &str) -> Result<Reference, RegistryError> {
        let bad = |why: &str| RegistryError::InvalidReference(format!("{}: {why}", clip(s)));
        if s.is_empty() {
            return Err(bad("empty"));
        }
        if s.len() > MAX_REFERENCE_LEN {
            return Err(bad("too long"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (
                r,
                Some(Sha256Digest::parse(d).map_err(|e| bad(&e.to_string()))?),
            ),
            None => (s, None),
        };
        // The tag is after the last ':' that follows the last '/' (a ':' before it
        // is a port).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let at = last_slash + i;
                (&rest[..at], Some(&rest[at + 1..]))
            }
            None => (rest, None),
        };
        if let Some(t) = tag {
            if !valid_tag(t) {
                return Err(bad("invalid tag"));
            }
        }
        if name.is_empty() {
            return Err(bad("empty name"));
        }
        let (mut registry, path) = match name.split_once('/') {
            Some((first, rest)) if is_registry(first) => {
                if !valid_domain(first) {
                    return Err(bad("invalid registry host"));
                }
                (first.to_string(), rest.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        if registry == "index.docker.io" {
            registry = DOCKER_HUB.to_string();
        }
        let path = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        if path.is_empty() || !path.split('/').all(valid_path_component) {
            return Err(bad(
                "invalid repository path (lowercase a-z0-9 separated by . _ __ -)",
            ));
        }
        if registry.len() + 1 + path.len() > MAX_NAME_LEN {
            return Err(bad("repository name longer than 255 characters"));
        }
        Ok(Reference {
            registry,
            path,
            tag: tag.map(str::to_string),
            digest,
        })
    }

    /// `registry[:port]` as written in references (`docker.io` for Docker Hub).
    pub fn registry(&self) -> &str {
        &self.registry
    }
    /// The host the registry API answers on (`registry-1.docker.io` for Docker Hub).
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API_HOST
        } else {
            &self.registry
        }
    }
    /// The repository path inside the registry (`library/busybox`).
    pub fn path(&self) -> &str {
        &self.path
    }
    /// `registry/path`: what the image policy's `rule_for` takes.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.registry, self.path)
    }
    /// The tag, if one was written.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }
    /// The digest (`sha256:<64 lowercase hex>`), if one was written.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_ref().map(Sha256Digest::as_str)
    }
    /// This repository at `digest` (tag dropped).
    pub fn with_digest(&self, digest: &str) -> Result<Reference, RegistryError> {
        let d = Sha256Digest::parse(digest)?;
        Ok(Reference {
            registry: self.registry.clone(),
            path: self.path.clone(),
            tag: None,
            digest: Some(d),
        })
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.path)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// Docker's rule: the first component of a name is a registry (`ghcr.io`,
/// `127.0.0.1:5000`, `localhost`) when it contains `.` or `:` or is `localhost`;
/// otherwise the name is on Docker Hub.
fn is_registry(first: &str) -> bool {
    first.contains('.') || first.contains(':') || first == "localhost"
}

/// A trust scope (`registry[:port]/path`, covering the repositories equal to it or
/// under it on whole path segments) written so that it compares with
/// [`Reference::repository`]:
///
/// - a scope that starts with a registry (or is one) is kept as written, but for
///   `index.docker.io`, which is `docker.io`. This is what the image policy's
///   `rule_for` compares repositories with, so a rule's scope check agrees with the
///   rule's selection; `docker.io/myorg` is the Docker Hub namespace `myorg`;
/// - a Docker Hub short name is qualified as a reference would be: `myorg/app` is
///   `docker.io/myorg/app`, and a single component is an official image, `alpine`
///   is `docker.io/library/alpine` (write `docker.io/myorg` for a namespace).
pub(crate) fn normalise_scope(scope: &str) -> String {
    let (registry, path) = match scope.split_once('/') {
        Some((first, rest)) if is_registry(first) => (first, Some(rest.to_owned())),
        None if is_registry(scope) => (scope, None),
        Some(_) => (DOCKER_HUB, Some(scope.to_owned())),
        None => (DOCKER_HUB, Some(format!("library/{scope}"))),
    };
    let registry = if registry == "index.docker.io" {
        DOCKER_HUB
    } else {
        registry
    };
    match path {
        Some(p) => format!("{registry}/{p}"),
        None => registry.to_owned(),
    }
}

/// `[\w][\w.-]{0,127}`.
fn valid_tag(t: &str) -> bool {
    let w = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_TAG_LEN
        && w(b[0])
        && b[1..].iter().all(|&c| w(c) || c == b'.' || c == b'-')
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or "-"+.
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `host[:port]` where host is dot-separated `[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?`
/// labels (IPv4 addresses included), or a bracketed IPv6 address.
fn valid_domain(d: &str) -> bool {
    let (host, port) = if let Some(rest) = d.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after {
            "" => return true,
            p => match p.strip_prefix(':') {
                Some(p) => return valid_port(p),
                None => return false,
            },
        }
    } else {
        match d.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (d, None),
        }
    };
    if let Some(p) = port {
        if !valid_port(p) {
            return false;
        }
    }
    !host.is_empty()
        && host.split('.').all(|l| {
            let b = l.as_bytes();
            !b.is_empty()
                && b.len() <= 63
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'-')
        })
}

fn valid_port(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 5
        && p.bytes().all(|b| b.is_ascii_digit())
        && p.parse::<u16>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn docker_hub_normalisation() {
        let r = Reference::parse("busybox").unwrap();
        assert_eq!(r.repository(), "docker.io/library/busybox");
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert_eq!(r.tag(), None);
        let r = Reference::parse("index.docker.io/foo/bar:1.0").unwrap();
        assert_eq!(r.repository(), "docker.io/foo/bar");
        assert_eq!(r.tag(), Some("1.0"));
        assert_eq!(
            Reference::parse("docker.io/alpine").unwrap().repository(),
            "docker.io/library/alpine"
        );
    }

    #[test]
    fn registries_ports_tags_digests() {
        let r = Reference::parse(&format!("127.0.0.1:5000/a/b-c:v1.2@{D}")).unwrap();
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.path(), "a/b-c");
        assert_eq!(r.repository(), "127.0.0.1:5000/a/b-c");
        assert_eq!(r.tag(), Some("v1.2"));
        assert_eq!(r.digest(), Some(D));
        assert_eq!(r.to_string(), format!("127.0.0.1:5000/a/b-c:v1.2@{D}"));
        let pinned = Reference::parse("127.0.0.1:5000/a/b-c:v1.2")
            .unwrap()
            .with_digest(D)
            .unwrap();
        assert_eq!(pinned.to_string(), format!("127.0.0.1:5000/a/b-c@{D}"));
        assert_eq!(
            r.with_digest("sha256:00").unwrap_err().kind(),
            "InvalidReference"
        );
        let r = Reference::parse("localhost/app").unwrap();
        assert_eq!(r.repository(), "localhost/app");
        let r = Reference::parse("localhost:5000/app:latest").unwrap();
        assert_eq!((r.registry(), r.tag()), ("localhost:5000", Some("latest")));
        let r = Reference::parse("ghcr.io/o/r__x.y").unwrap();
        assert_eq!(r.repository(), "ghcr.io/o/r__x.y");
        let r = Reference::parse(&format!("[::1]:5000/app@{D}")).unwrap();
        assert_eq!(r.registry(), "[::1]:5000");
        // A lowercase-only first component without '.'/':' is a Docker Hub namespace.
        assert_eq!(
            Reference::parse("myorg/app").unwrap().repository(),
            "docker.io/myorg/app"
        );
    }

    #[test]
    fn invalid_references() {
        let long_name = format!("r.io/{}", "a".repeat(300));
        let long = "a".repeat(MAX_REFERENCE_LEN + 1);
        let bad_tag = format!("r.io/a:{}", "t".repeat(129));
        for bad in [
            "",
            "Busybox",
            "r.io/A",
            "r.io/a:",
            "r.io/a:-x",
            "r.io/a@sha256:00",
            "r.io/a@sha512:00",
            &format!("r.io/a@{}", D.to_uppercase()),
            "r.io/a//b",
            "r.io/a/",
            "r.io/",
            "r.io:99999/a",
            "r.io:/a",
            "-r.io/a",
            "r.io/a..b",
            "r.io/a___b",
            "r.io/a b",
            "r.io/a:b:c",
            "[zz]:5/a",
            long_name.as_str(),
            long.as_str(),
            bad_tag.as_str(),
        ] {
            let e = Reference::parse(bad).unwrap_err();
            assert_eq!(e.kind(), "InvalidReference", "{bad}");
        }
    }

    /// Arbitrary strings over the grammar's alphabet (and some multi-byte characters)
    /// never panic, and whatever parses prints back to something that parses the same.
    #[test]
    fn arbitrary_input_never_panics() {
        let alphabet: Vec<char> = "aZ09._-:/@[]sha256:é€ ".chars().collect();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            let mut s = String::new();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = usize::try_from(x % 40).unwrap();
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                s.push(
                    alphabet[usize::try_from(x % u64::try_from(alphabet.len()).unwrap()).unwrap()],
                );
            }
            if let Ok(r) = Reference::parse(&s) {
                assert_eq!(Reference::parse(&r.to_string()).unwrap(), r, "{s}");
            }
        }
    }
}
