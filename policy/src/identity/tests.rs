//! Unit tests of the identity policy.

use super::*;

const SAN: &str =
    "https://github.com/sigstore/sigstore-js/.github/workflows/release.yml@refs/heads/main";

fn digests() -> BTreeMap<String, String> {
    [("sha512".to_string(), "ab".repeat(64))].into()
}

fn claims(d: &BTreeMap<String, String>) -> IdentityClaims<'_> {
    IdentityClaims {
        issuer: Some(GITHUB_ACTIONS_ISSUER),
        san: Some(SAN),
        source_repository_uri: Some("https://github.com/sigstore/sigstore-js"),
        source_repository_ref: Some("refs/heads/main"),
        runner_environment: Some("github-hosted"),
        build_signer_uri: Some(SAN),
        predicate_type: Some("https://slsa.dev/provenance/v1"),
        subject_digests: vec![d],
    }
}

#[test]
fn an_identity_constraint_is_required() {
    let e = IdentityPolicy::builder().build().unwrap_err();
    assert_eq!(e.kind(), "NoIdentityConstraint");
    let e = IdentityPolicy::builder()
        .source_ref("refs/heads/main")
        .predicate_type("x")
        .subject_digest(format!("sha256:{}", "0".repeat(64)))
        .build()
        .unwrap_err();
    assert_eq!(e, IdentityPolicyError::NoIdentityConstraint);
    for b in [
        IdentityPolicy::builder().san(SAN),
        IdentityPolicy::builder().san_regex(".*"),
        IdentityPolicy::builder().source_repository("a/b"),
        IdentityPolicy::builder().signer_workflow("a/b/.github/workflows/c.yml"),
    ] {
        b.build().unwrap();
    }
}

#[test]
fn bad_inputs_are_typed() {
    let cases: Vec<(IdentityPolicyBuilder, &str)> = vec![
        (
            IdentityPolicy::builder().san("a").san_regex("b"),
            "ConflictingSan",
        ),
        (IdentityPolicy::builder().san_regex("("), "InvalidSanRegex"),
        (
            IdentityPolicy::builder().san_regex("a".repeat(MAX_SAN_REGEX_LEN + 1)),
            "InvalidSanRegex",
        ),
        (
            IdentityPolicy::builder().source_repository("justowner"),
            "InvalidRepository",
        ),
        (
            IdentityPolicy::builder().source_repository("a/b/c"),
            "InvalidRepository",
        ),
        (
            IdentityPolicy::builder().signer_workflow("a/b@refs/heads/main"),
            "InvalidSignerWorkflow",
        ),
        (
            IdentityPolicy::builder().san("x").subject_digest("md5:00"),
            "InvalidSubjectDigest",
        ),
        (
            IdentityPolicy::builder()
                .san("x")
                .subject_digest("sha256:00"),
            "InvalidSubjectDigest",
        ),
        (
            IdentityPolicy::builder().san("x").issuer(""),
            "InvalidValue",
        ),
    ];
    for (b, kind) in cases {
        assert_eq!(b.build().unwrap_err().kind(), kind);
    }
}

#[test]
fn matching_claims_pass() {
    let d = digests();
    let p = IdentityPolicy::builder()
        .san(SAN)
        .source_repository("sigstore/sigstore-js")
        .signer_workflow("sigstore/sigstore-js/.github/workflows/release.yml")
        .source_ref("refs/heads/main")
        .predicate_type("https://slsa.dev/provenance/v1")
        .subject_digest(format!("sha512:{}", "AB".repeat(64)))
        .build()
        .unwrap();
    p.evaluate(&claims(&d)).unwrap();
}

#[test]
fn each_field_mismatch_is_named() {
    let d = digests();
    let base = claims(&d);
    let policy = |b: IdentityPolicyBuilder| b.build().unwrap();
    let cases: Vec<(IdentityPolicy, IdentityField)> = vec![
        (
            policy(IdentityPolicy::builder().san(SAN).issuer("https://other")),
            IdentityField::Issuer,
        ),
        (
            policy(IdentityPolicy::builder().san(format!("{SAN}x"))),
            IdentityField::San,
        ),
        (
            policy(IdentityPolicy::builder().source_repository("fakeowner/fakerepo")),
            IdentityField::SourceRepository,
        ),
        (
            policy(
                IdentityPolicy::builder().signer_workflow("foo/bar/.github/workflows/attest.yml"),
            ),
            IdentityField::SignerWorkflow,
        ),
        (
            policy(
                IdentityPolicy::builder()
                    .san(SAN)
                    .source_ref("refs/heads/dev"),
            ),
            IdentityField::SourceRef,
        ),
        (
            policy(
                IdentityPolicy::builder()
                    .san(SAN)
                    .predicate_type("https://x"),
            ),
            IdentityField::PredicateType,
        ),
        (
            policy(
                IdentityPolicy::builder()
                    .san(SAN)
                    .subject_digest(format!("sha512:{}", "cd".repeat(64))),
            ),
            IdentityField::SubjectDigest,
        ),
        (
            policy(
                IdentityPolicy::builder()
                    .san(SAN)
                    .subject_digest(format!("sha256:{}", "ab".repeat(32))),
            ),
            IdentityField::SubjectDigest,
        ),
    ];
    for (p, field) in cases {
        let v = p.evaluate(&base).unwrap_err();
        assert_eq!(v.mismatches.len(), 1, "{v}");
        assert_eq!(v.first_field(), Some(field), "{v}");
        assert_eq!(v.kind(), "IdentityMismatch");
    }
}

#[test]
fn san_regex_is_anchored() {
    let d = digests();
    let c = claims(&d);
    let ok = IdentityPolicy::builder()
        .san_regex(r"https://github\.com/sigstore/.*@refs/heads/main")
        .build()
        .unwrap();
    ok.evaluate(&c).unwrap();
    // A prefix alone does not match: the whole SAN must.
    let prefix = IdentityPolicy::builder()
        .san_regex(r"https://github\.com/sigstore/")
        .build()
        .unwrap();
    assert_eq!(
        prefix.evaluate(&c).unwrap_err().first_field(),
        Some(IdentityField::San)
    );
    // An alternation cannot escape the anchors.
    let alt = IdentityPolicy::builder()
        .san_regex(r"nope|https://github\.com/")
        .build()
        .unwrap();
    assert!(alt.evaluate(&c).is_err());
}

#[test]
fn runner_environment_defaults_to_github_hosted() {
    let d = digests();
    let mut c = claims(&d);
    c.runner_environment = Some("self-hosted");
    let p = IdentityPolicy::builder().san(SAN).build().unwrap();
    let v = p.evaluate(&c).unwrap_err();
    assert_eq!(v.mismatches[0].field, IdentityField::RunnerEnvironment);
    assert_eq!(v.mismatches[0].wanted, "github-hosted");
    assert_eq!(v.mismatches[0].got.as_deref(), Some("self-hosted"));
    c.runner_environment = None;
    assert!(p.evaluate(&c).is_err());
    let any = IdentityPolicy::builder()
        .san(SAN)
        .runner_environment(RunnerEnvironment::Any)
        .build()
        .unwrap();
    any.evaluate(&c).unwrap();
}

#[test]
fn absent_claims_fail_closed() {
    let p = IdentityPolicy::builder()
        .source_repository("sigstore/sigstore-js")
        .signer_workflow("sigstore/sigstore-js/.github/workflows/release.yml")
        .build()
        .unwrap();
    let v = p.evaluate(&IdentityClaims::default()).unwrap_err();
    let fields: Vec<_> = v.mismatches.iter().map(|m| m.field).collect();
    assert_eq!(
        fields,
        vec![
            IdentityField::Issuer,
            IdentityField::SourceRepository,
            IdentityField::SignerWorkflow,
            IdentityField::RunnerEnvironment
        ]
    );
    assert!(v.mismatches.iter().all(|m| m.got.is_none()));
}

#[test]
fn repository_forms() {
    assert_eq!(repository_uri("a/b").unwrap(), "https://github.com/a/b");
    assert_eq!(
        repository_uri("https://github.com/a/b").unwrap(),
        "https://github.com/a/b"
    );
    assert!(repository_uri("a/..").is_err());
    assert!(repository_uri("/b").is_err());
}
