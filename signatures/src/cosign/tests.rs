use super::keys::pem_blocks;
use super::*;

#[test]
fn trust_and_results_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<ImageTrust>();
    send_sync::<VerifiedImageSignature>();
    send_sync::<ImageSigError>();
}

#[test]
fn references_and_scopes() {
    assert_eq!(reference_repository("a.b:5000/x/y:tag"), "a.b:5000/x/y");
    assert_eq!(reference_repository("a.b:5000/x/y"), "a.b:5000/x/y");
    assert_eq!(
        reference_repository("a.b:5000/x/y@sha256:00"),
        "a.b:5000/x/y"
    );
    assert_eq!(
        reference_repository("a.b:5000/x/y:t@sha256:00"),
        "a.b:5000/x/y"
    );
    assert!(policy::image::scope_covers("a.b:5000/x", "a.b:5000/x/y"));
    assert!(policy::image::scope_covers("a.b:5000/x", "a.b:5000/x"));
    assert!(!policy::image::scope_covers("a.b:5000/x", "a.b:5000/xy"));
    assert!(!policy::image::scope_covers("a.b:5000/x", "a.b:5000"));
}

#[test]
fn digests_are_strict() {
    let h = "AB".repeat(32);
    assert_eq!(
        normalise_digest(&format!("sha256:{h}")).unwrap(),
        format!("sha256:{}", h.to_ascii_lowercase())
    );
    for bad in [
        "",
        "sha256:",
        "sha512:00",
        "sha256:zz",
        &format!("sha256:{h}0"),
    ] {
        assert_eq!(normalise_digest(bad).unwrap_err().kind(), "InvalidDigest");
    }
}

#[test]
fn pem_blocks_are_bounded() {
    assert!(pem_blocks(b"", "CERTIFICATE").is_err());
    assert!(pem_blocks(b"-----BEGIN CERTIFICATE-----\nAAAA", "CERTIFICATE").is_err());
    let one = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    assert_eq!(
        pem_blocks(one.as_bytes(), "CERTIFICATE").unwrap(),
        vec![vec![0, 0, 0]]
    );
    let many = one.repeat(MAX_CHAIN_CERTS + 1);
    assert!(pem_blocks(many.as_bytes(), "CERTIFICATE").is_err());
}

const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// Old (`reference_repository`, a string split) against new (`oci::Reference`) on the
/// repository a signed docker reference names: input, old, new (`None`: refused).
#[test]
fn reference_repository_old_and_new() {
    let d = format!("sha256:{HEX}");
    let upper = format!("sha256:{}", HEX.to_ascii_uppercase());
    let sha512 = format!("sha512:{HEX}{HEX}");
    let owned = [
        (
            format!("ghcr.io/o/r@{d}"),
            "ghcr.io/o/r",
            Some("ghcr.io/o/r"),
        ),
        (
            format!("ghcr.io/o/r:v1@{d}"),
            "ghcr.io/o/r",
            Some("ghcr.io/o/r"),
        ),
        (format!("ghcr.io/o/r@{upper}"), "ghcr.io/o/r", None),
        (format!("ghcr.io/o/r@{sha512}"), "ghcr.io/o/r", None),
    ];
    let rows: &[(&str, &str, Option<&str>)] = &[
        ("alpine", "alpine", Some("docker.io/library/alpine")),
        ("alpine:3.19", "alpine", Some("docker.io/library/alpine")),
        (
            "library/alpine",
            "library/alpine",
            Some("docker.io/library/alpine"),
        ),
        (
            "docker.io/alpine",
            "docker.io/alpine",
            Some("docker.io/library/alpine"),
        ),
        (
            "docker.io/library/alpine",
            "docker.io/library/alpine",
            Some("docker.io/library/alpine"),
        ),
        (
            "index.docker.io/library/alpine",
            "index.docker.io/library/alpine",
            Some("docker.io/library/alpine"),
        ),
        ("myorg/app:1", "myorg/app", Some("docker.io/myorg/app")),
        ("localhost/app", "localhost/app", Some("localhost/app")),
        (
            "localhost:5000/a/b:tag",
            "localhost:5000/a/b",
            Some("localhost:5000/a/b"),
        ),
        (
            "127.0.0.1:5000/a",
            "127.0.0.1:5000/a",
            Some("127.0.0.1:5000/a"),
        ),
        ("[::1]:5000/a:t", "[::1]:5000/a", Some("[::1]:5000/a")),
        ("GHCR.IO/o/r", "GHCR.IO/o/r", Some("GHCR.IO/o/r")),
        ("ghcr.io/o/r@sha256:00", "ghcr.io/o/r", None),
        ("a.b:5000/x/y:t@sha256:00", "a.b:5000/x/y", None),
        ("ghcr.io/Owner/Repo", "ghcr.io/Owner/Repo", None),
        ("ghcr.io/o/r:", "ghcr.io/o/r", None),
        ("ghcr.io/o/r ", "ghcr.io/o/r ", None),
        ("", "", None),
        ("ghcr.io", "ghcr.io", Some("docker.io/library/ghcr.io")),
        (
            "localhost:5000",
            "localhost",
            Some("docker.io/library/localhost"),
        ),
    ];
    let all = owned
        .iter()
        .map(|(i, o, n)| (i.as_str(), *o, *n))
        .chain(rows.iter().copied());
    for (input, old, new) in all {
        assert_eq!(reference_repository(input), old, "old: {input:?}");
        assert_eq!(
            crate::oci::Reference::parse(input)
                .ok()
                .map(|r| r.repository())
                .as_deref(),
            new,
            "new: {input:?}"
        );
    }
}

/// The scope check, old (`scope_covers(scope, reference_repository(reference))`)
/// against new (normalised scope, `Reference`-normalised repository): scope as
/// written, signed reference, old, new.
#[test]
fn scope_check_old_and_new() {
    let d = format!("sha256:{HEX}");
    let upper = format!("sha256:{}", HEX.to_ascii_uppercase());
    let sha512 = format!("sha512:{HEX}{HEX}");
    let owned = [
        ("ghcr.io/o", format!("ghcr.io/o/r@{d}"), true, true),
        ("ghcr.io/o", format!("ghcr.io/o/r:t@{d}"), true, true),
        ("ghcr.io/o", format!("ghcr.io/o/r@{upper}"), true, false),
        ("ghcr.io/o", format!("ghcr.io/o/r@{sha512}"), true, false),
    ];
    let rows: &[(&str, &str, bool, bool)] = &[
        // Fully qualified scopes, as the image policy writes them.
        ("docker.io/library", "alpine", false, true),
        ("docker.io/library/alpine", "alpine:3.19", false, true),
        (
            "docker.io/library/alpine",
            "index.docker.io/library/alpine",
            false,
            true,
        ),
        (
            "docker.io/library/alpine",
            "docker.io/library/alpine:3",
            true,
            true,
        ),
        ("docker.io/myorg", "myorg/app", false, true),
        ("docker.io/alpine", "docker.io/alpine/x", true, true),
        ("docker.io/alpine", "docker.io/alpine", true, false),
        (
            "index.docker.io/library",
            "index.docker.io/library/alpine",
            true,
            true,
        ),
        ("localhost:5000/a", "localhost:5000/a/b:tag", true, true),
        (
            "192.168.64.2:5000",
            "192.168.64.2:5000/cosign-signed/key-1",
            true,
            true,
        ),
        ("[::1]:5000", "[::1]:5000/app:t", true, true),
        ("ghcr.io/o", "ghcr.io/ox", false, false),
        ("ghcr.io/o", "ghcr.io/O/r", false, false),
        ("ghcr.io/O", "ghcr.io/O/r", true, false),
        ("ghcr.io/o", "ghcr.io/o/r@sha256:00", true, false),
        ("ghcr.io/o", "ghcr.io/o/r:", true, false),
        ("ghcr.io/o", "", false, false),
        ("ghcr.io", "ghcr.io", true, false),
        // Docker Hub short names.
        ("alpine", "alpine", true, true),
        ("alpine", "alpine:3.19", true, true),
        ("alpine", "library/alpine", false, true),
        ("alpine", "docker.io/library/alpine", false, true),
        ("alpine", "alpine/evil", true, false),
        ("library/alpine", "alpine", false, true),
        ("myorg/app", "myorg/app:1", true, true),
        ("myorg/app", "myorg/app/sub", true, true),
        ("myorg", "myorg/app", true, false),
    ];
    let all = owned
        .iter()
        .map(|(s, r, o, n)| (*s, r.as_str(), *o, *n))
        .chain(rows.iter().copied());
    for (scope, reference, old, new) in all {
        assert_eq!(
            policy::image::scope_covers(scope, reference_repository(reference)),
            old,
            "old: {scope:?} / {reference:?}"
        );
        assert_eq!(
            super::trust::scope_covers_reference(&crate::oci::normalise_scope(scope), reference),
            new,
            "new: {scope:?} / {reference:?}"
        );
    }
}

/// The three digest checks (`cosign::normalise_digest`, `oci::reference::parse_digest`
/// and `hex_of` through it) against `Sha256Digest`: input, normalise_digest,
/// parse_digest, `Sha256Digest::parse`, `Sha256Digest::parse_ignore_case`.
#[test]
fn digest_checks_old_and_new() {
    use crate::oci::Sha256Digest;
    let lower = format!("sha256:{HEX}");
    let upper = format!("sha256:{}", HEX.to_ascii_uppercase());
    let mixed = format!("sha256:{}{}", &HEX[..32], HEX[32..].to_ascii_uppercase());
    let mixed_lower = format!("sha256:{HEX}");
    let none: Option<&str> = None;
    let rows: Vec<(String, Option<&str>, bool, Option<&str>, Option<&str>)> = vec![
        (
            lower.clone(),
            Some(&lower),
            true,
            Some(&lower),
            Some(&lower),
        ),
        (upper.clone(), Some(&lower), false, none, Some(&lower)),
        (
            mixed.clone(),
            Some(&mixed_lower),
            false,
            none,
            Some(&mixed_lower),
        ),
        (format!("SHA256:{HEX}"), none, false, none, none),
        (HEX.to_owned(), none, false, none, none),
        (format!("sha256:{}", &HEX[..63]), none, false, none, none),
        (format!("sha256:{HEX}0"), none, false, none, none),
        (
            format!("sha256:{}", "zz".repeat(32)),
            none,
            false,
            none,
            none,
        ),
        (format!("sha512:{HEX}{HEX}"), none, false, none, none),
        (format!(" sha256:{HEX}"), none, false, none, none),
        (format!("sha256:{HEX}\n"), none, false, none, none),
        (format!("sha256:{}é", &HEX[..62]), none, false, none, none),
        ("sha256:".to_owned(), none, false, none, none),
        (String::new(), none, false, none, none),
    ];
    for (input, norm, strict_ok, new_strict, new_any) in rows {
        assert_eq!(
            normalise_digest(&input).ok().as_deref(),
            norm,
            "normalise_digest {input:?}"
        );
        assert_eq!(
            crate::oci::parse_digest(&input).is_ok(),
            strict_ok,
            "parse_digest {input:?}"
        );
        let s = Sha256Digest::parse(&input);
        assert_eq!(
            s.as_ref().ok().map(|d| d.as_str()),
            new_strict,
            "parse {input:?}"
        );
        if let Ok(d) = &s {
            assert_eq!(d.hex(), &input["sha256:".len()..], "hex_of {input:?}");
            assert_eq!(d.to_string(), input);
        }
        assert_eq!(
            Sha256Digest::parse_ignore_case(&input)
                .ok()
                .map(Sha256Digest::into_string)
                .as_deref(),
            new_any,
            "parse_ignore_case {input:?}"
        );
        if let Err(e) = &s {
            assert_eq!(
                Some(e.to_string()),
                crate::oci::parse_digest(&input).err(),
                "same message {input:?}"
            );
        }
    }
}
