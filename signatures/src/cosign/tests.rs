use super::keys::pem_blocks;
use super::trust::check_scope;
use super::*;
use crate::oci::Reference;

#[test]
fn trust_and_results_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<ImageTrust>();
    send_sync::<VerifiedImageSignature>();
    send_sync::<ImageSigError>();
}

#[test]
fn scopes_cover_whole_segments() {
    assert!(policy::image::scope_covers("a.b:5000/x", "a.b:5000/x/y"));
    assert!(policy::image::scope_covers("a.b:5000/x", "a.b:5000/x"));
    assert!(!policy::image::scope_covers("a.b:5000/x", "a.b:5000/xy"));
    assert!(!policy::image::scope_covers("a.b:5000/x", "a.b:5000"));
}

#[test]
fn digests_are_strict() {
    let h = "AB".repeat(32);
    assert_eq!(
        image_digest(&format!("sha256:{h}")).unwrap().as_str(),
        format!("sha256:{}", h.to_ascii_lowercase())
    );
    for bad in [
        "",
        "sha256:",
        "sha512:00",
        "sha256:zz",
        &format!("sha256:{h}0"),
    ] {
        assert_eq!(image_digest(bad).unwrap_err().kind(), "InvalidDigest");
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

/// The repository a signed docker reference names, as the scope check sees it:
/// input, what `cosign::reference_repository` (a string split, removed) returned, and
/// what [`Reference::repository`] gives (`None`: not a reference, never covered).
/// `check_scope`'s doc says why each difference is what we want.
#[test]
fn signed_reference_repositories() {
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
    for (input, _old, new) in all {
        assert_eq!(
            Reference::parse(input)
                .ok()
                .map(|r| r.repository())
                .as_deref(),
            new,
            "new: {input:?}"
        );
    }
}

/// A key trust scoped to `scope` (its key is never used here).
fn scoped(scope: &str) -> ImageTrust {
    ImageTrust::from_parts(ImageTrustParts {
        keys: vec![include_bytes!("../../tests/data/cosign/containers-image/cosign2.pub").to_vec()],
        scope: Some(scope.into()),
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn scopes_are_normalised_like_references() {
    for (written, compared) in [
        ("ghcr.io/o/", "ghcr.io/o"),
        ("ghcr.io", "ghcr.io"),
        ("localhost:5000", "localhost:5000"),
        ("localhost", "localhost"),
        ("[::1]:5000/a", "[::1]:5000/a"),
        ("docker.io", "docker.io"),
        ("docker.io/alpine", "docker.io/alpine"),
        ("index.docker.io/library", "docker.io/library"),
        ("index.docker.io", "docker.io"),
        ("alpine", "docker.io/library/alpine"),
        ("library/alpine", "docker.io/library/alpine"),
        ("myorg/app", "docker.io/myorg/app"),
    ] {
        assert_eq!(scoped(written).scope(), Some(compared), "{written}");
    }
    assert_eq!(scoped("/").scope(), None);
}

/// The scope check: scope as written, signed reference, whether the old check
/// (`scope_covers(scope, reference_repository(reference))`, no normalisation) covered
/// it, and whether `check_scope` covers it now. `check_scope`'s doc lists the
/// decisions.
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
    for (scope, reference, _old, new) in all {
        let trust = scoped(scope);
        assert_eq!(
            check_scope(&trust, reference).is_ok(),
            new,
            "{scope:?} / {reference:?}"
        );
        if !new {
            let e = check_scope(&trust, reference).unwrap_err();
            assert_eq!(e.kind(), "ReferenceNotCovered");
        }
    }
}
