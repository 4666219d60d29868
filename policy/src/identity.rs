//! Who may have signed: the identity policy for Sigstore (Fulcio) signatures.
//!
//! A keyless Sigstore signature proves only that *some* OIDC identity held the key
//! for ten minutes. Which identity is acceptable is the relying party's decision, and
//! this module holds it. It knows nothing about Sigstore types: the `signatures`
//! crate verifies a bundle cryptographically and hands the certificate's claims to
//! [`IdentityPolicy::evaluate`] as plain strings ([`IdentityClaims`]).
//!
//! Like `cosign verify` and `gh attestation verify`, a policy must pin at least one
//! identity constraint (SAN exact, SAN regex, source repository or signer workflow);
//! an issuer alone would accept any repository on GitHub. Building a policy without
//! one fails with [`IdentityPolicyError::NoIdentityConstraint`].
//!
//! Field semantics, all compared byte for byte (no case folding, no normalisation):
//! - issuer: the Fulcio OIDC issuer extension (`1.3.6.1.4.1.57264.1.8`, or the
//!   deprecated `.1`), exact. Default [`GITHUB_ACTIONS_ISSUER`].
//! - SAN exact: the certificate's URI/email SAN, exact.
//! - SAN regex: **anchored**, the whole SAN must match: the pattern `P` is compiled
//!   as `^(?:P)$`. (gh anchors only the start; full anchoring is stricter and means
//!   a pattern never matches a longer identity by accident.)
//! - source repository: `owner/name` (or a full `https://github.com/owner/name`),
//!   compared with the source repository URI extension (`.12`) as
//!   `https://github.com/owner/name`.
//! - signer workflow: `owner/repo/path/to/workflow.yml` (optionally with an
//!   `https://github.com/` prefix), compared with the build signer URI (`.9`) up to
//!   its `@ref`: the signer is that workflow file at any ref. This is the reusable
//!   workflow that called Fulcio, which for `actions/attest-build-provenance` via a
//!   reusable workflow differs from the caller's repository.
//! - source ref (optional): the source repository ref extension (`.14`), exact.
//! - runner environment: the runner environment extension (`.11`); by default it
//!   must be `github-hosted`, since a self-hosted runner is controlled by the
//!   repository owner. [`RunnerEnvironment::Any`] lifts the constraint.
//! - predicate type (optional): the in-toto statement's `predicateType`, exact.
//! - subject digest (optional): some subject of the statement has this digest.

use std::collections::BTreeMap;
use std::fmt;

/// GitHub Actions' OIDC issuer, the default.
pub const GITHUB_ACTIONS_ISSUER: &str = "https://token.actions.githubusercontent.com";
/// The runner environment value of GitHub's own runners.
pub const GITHUB_HOSTED: &str = "github-hosted";
/// Where `owner/name` repositories live.
pub const GITHUB_URL: &str = "https://github.com";

/// Longest accepted SAN regex source. Policies come from operators, not attackers,
/// but a bound keeps a typo'd multi-megabyte value from reaching the regex compiler.
pub const MAX_SAN_REGEX_LEN: usize = 1024;
/// Compiled-size limit for the SAN regex (bytes of the compiled program). The regex
/// crate guarantees linear-time matching; this bounds its memory too.
const SAN_REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Longest accepted value for any other string constraint (URIs, refs, names).
pub const MAX_CONSTRAINT_LEN: usize = 2048;

/// Why a policy could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityPolicyError {
    /// No SAN, SAN regex, source repository or signer workflow: the policy would
    /// accept any identity of the issuer.
    #[error(
        "an identity constraint is required: SAN, SAN regex, source repository or signer workflow"
    )]
    NoIdentityConstraint,
    /// Both an exact SAN and a SAN regex were given.
    #[error("give either an exact SAN or a SAN regex, not both")]
    ConflictingSan,
    /// The SAN regex does not compile (or is too long / too large).
    #[error("invalid SAN regex: {0}")]
    InvalidSanRegex(String),
    /// A repository is not `owner/name`.
    #[error("invalid repository {0:?}: expected owner/name")]
    InvalidRepository(String),
    /// A signer workflow is not `owner/repo/path/to/workflow`.
    #[error("invalid signer workflow {0:?}: expected owner/repo/.github/workflows/FILE")]
    InvalidSignerWorkflow(String),
    /// A subject digest is not `sha256:HEX64` or `sha512:HEX128`.
    #[error("invalid subject digest {0:?}: expected sha256:HEX or sha512:HEX")]
    InvalidSubjectDigest(String),
    /// A string constraint is empty or longer than [`MAX_CONSTRAINT_LEN`].
    #[error("invalid value for {field}: empty or longer than {MAX_CONSTRAINT_LEN} bytes")]
    InvalidValue {
        /// Which field.
        field: IdentityField,
    },
}

impl IdentityPolicyError {
    /// Stable machine-readable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NoIdentityConstraint => "NoIdentityConstraint",
            Self::ConflictingSan => "ConflictingSan",
            Self::InvalidSanRegex(_) => "InvalidSanRegex",
            Self::InvalidRepository(_) => "InvalidRepository",
            Self::InvalidSignerWorkflow(_) => "InvalidSignerWorkflow",
            Self::InvalidSubjectDigest(_) => "InvalidSubjectDigest",
            Self::InvalidValue { .. } => "InvalidValue",
        }
    }
}

/// A claim the policy constrains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IdentityField {
    /// OIDC issuer.
    Issuer,
    /// Certificate subject alternative name.
    San,
    /// Source repository URI.
    SourceRepository,
    /// Build signer URI (signer workflow).
    SignerWorkflow,
    /// Source repository ref.
    SourceRef,
    /// Runner environment.
    RunnerEnvironment,
    /// In-toto predicate type.
    PredicateType,
    /// In-toto subject digest.
    SubjectDigest,
}

impl IdentityField {
    /// Stable name, used in JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Issuer => "issuer",
            Self::San => "san",
            Self::SourceRepository => "source_repository",
            Self::SignerWorkflow => "signer_workflow",
            Self::SourceRef => "source_ref",
            Self::RunnerEnvironment => "runner_environment",
            Self::PredicateType => "predicate_type",
            Self::SubjectDigest => "subject_digest",
        }
    }
}

impl fmt::Display for IdentityField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One constraint the claims did not meet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityMismatch {
    /// The field.
    pub field: IdentityField,
    /// What the policy wants (a human-readable description: a value or `/regex/`).
    pub wanted: String,
    /// What the certificate or statement says (`None`: the claim is absent).
    pub got: Option<String>,
}

impl fmt::Display for IdentityMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: wanted {}, got {}",
            self.field,
            self.wanted,
            self.got.as_deref().unwrap_or("(absent)")
        )
    }
}

/// The claims failed the policy; at least one mismatch, in policy field order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("identity policy not met: {}", .mismatches.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct IdentityViolation {
    /// Every constraint that failed.
    pub mismatches: Vec<IdentityMismatch>,
}

impl IdentityViolation {
    /// Stable machine-readable kind.
    pub fn kind(&self) -> &'static str {
        "IdentityMismatch"
    }

    /// The first failed field.
    pub fn first_field(&self) -> Option<IdentityField> {
        self.mismatches.first().map(|m| m.field)
    }
}

/// How the SAN is matched.
#[derive(Debug, Clone)]
pub enum SanMatcher {
    /// Exact string equality.
    Exact(String),
    /// Anchored regex (`^(?:P)$`); the source is kept for display.
    Regex {
        /// The pattern as given.
        source: String,
        /// The compiled anchored pattern.
        regex: regex::Regex,
    },
}

impl SanMatcher {
    fn matches(&self, san: &str) -> bool {
        match self {
            Self::Exact(want) => want == san,
            Self::Regex { regex, .. } => regex.is_match(san),
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Exact(s) => s.clone(),
            Self::Regex { source, .. } => format!("/^(?:{source})$/"),
        }
    }
}

/// What the runner environment must be.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RunnerEnvironment {
    /// `github-hosted` (the default).
    #[default]
    GithubHosted,
    /// Exactly this value.
    Exact(String),
    /// No constraint (self-hosted runners accepted).
    Any,
}

/// A subject digest the statement must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectDigest {
    algorithm: String,
    hex: String,
}

impl SubjectDigest {
    /// Parse `sha256:HEX64` or `sha512:HEX128` (hex case-insensitive, kept lowercase).
    pub fn parse(s: &str) -> Result<Self, IdentityPolicyError> {
        let bad = || IdentityPolicyError::InvalidSubjectDigest(truncate(s));
        let (alg, hex) = s.split_once(':').ok_or_else(bad)?;
        let len = match alg {
            "sha256" => 64,
            "sha512" => 128,
            _ => return Err(bad()),
        };
        if hex.len() != len || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        Ok(Self {
            algorithm: alg.to_string(),
            hex: hex.to_ascii_lowercase(),
        })
    }

    /// `sha256` or `sha512`.
    pub fn algorithm(&self) -> &str {
        &self.algorithm
    }

    /// Lowercase hex.
    pub fn hex(&self) -> &str {
        &self.hex
    }
}

impl fmt::Display for SubjectDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm, self.hex)
    }
}

/// The verified claims of one signature, as plain strings. The `signatures` crate
/// fills this from a verified certificate and DSSE statement; nothing here is
/// trusted unless it came from there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentityClaims<'a> {
    /// OIDC issuer extension.
    pub issuer: Option<&'a str>,
    /// Certificate SAN.
    pub san: Option<&'a str>,
    /// Source repository URI extension.
    pub source_repository_uri: Option<&'a str>,
    /// Source repository ref extension.
    pub source_repository_ref: Option<&'a str>,
    /// Runner environment extension.
    pub runner_environment: Option<&'a str>,
    /// Build signer URI extension.
    pub build_signer_uri: Option<&'a str>,
    /// In-toto predicate type (`None` for a plain message signature).
    pub predicate_type: Option<&'a str>,
    /// In-toto subjects' digests: algorithm → lowercase hex, one map per subject.
    pub subject_digests: Vec<&'a BTreeMap<String, String>>,
}

/// The identity policy. Build it with [`IdentityPolicy::builder`].
#[derive(Debug, Clone)]
pub struct IdentityPolicy {
    issuer: String,
    san: Option<SanMatcher>,
    source_repository_uri: Option<String>,
    signer_workflow: Option<String>,
    source_ref: Option<String>,
    runner_environment: RunnerEnvironment,
    predicate_type: Option<String>,
    subject_digest: Option<SubjectDigest>,
}

/// Builder for [`IdentityPolicy`]; see the module doc for each field's semantics.
#[derive(Debug, Clone, Default)]
pub struct IdentityPolicyBuilder {
    issuer: Option<String>,
    san: Option<String>,
    san_regex: Option<String>,
    source_repo: Option<String>,
    signer_workflow: Option<String>,
    source_ref: Option<String>,
    runner_environment: RunnerEnvironment,
    predicate_type: Option<String>,
    subject_digest: Option<String>,
}

fn truncate(s: &str) -> String {
    s.chars().take(200).collect()
}

fn check_value(field: IdentityField, v: &str) -> Result<(), IdentityPolicyError> {
    if v.is_empty() || v.len() > MAX_CONSTRAINT_LEN {
        return Err(IdentityPolicyError::InvalidValue { field });
    }
    Ok(())
}

fn valid_segment(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// `owner/name` or `https://github.com/owner/name` → `https://github.com/owner/name`.
pub fn repository_uri(repo: &str) -> Result<String, IdentityPolicyError> {
    let bad = || IdentityPolicyError::InvalidRepository(truncate(repo));
    let rest = repo
        .strip_prefix("https://github.com/")
        .unwrap_or(repo)
        .trim_end_matches('/');
    let (owner, name) = rest.split_once('/').ok_or_else(bad)?;
    if !valid_segment(owner) || !valid_segment(name) {
        return Err(bad());
    }
    Ok(format!("{GITHUB_URL}/{owner}/{name}"))
}

/// `owner/repo/path/to/workflow.yml` (optionally `https://github.com/...`, no `@ref`)
/// → `https://github.com/owner/repo/path/to/workflow.yml`.
pub fn signer_workflow_uri(workflow: &str) -> Result<String, IdentityPolicyError> {
    let bad = || IdentityPolicyError::InvalidSignerWorkflow(truncate(workflow));
    let rest = workflow
        .strip_prefix("https://github.com/")
        .unwrap_or(workflow);
    if rest.contains('@') {
        return Err(bad());
    }
    let parts: Vec<&str> = rest.split('/').collect();
    // owner, repo, and at least one path segment (the workflow file).
    if parts.len() < 3 || !parts.iter().all(|p| valid_segment(p)) {
        return Err(bad());
    }
    Ok(format!("{GITHUB_URL}/{rest}"))
}

impl IdentityPolicyBuilder {
    /// OIDC issuer (default [`GITHUB_ACTIONS_ISSUER`]).
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }
    /// Exact SAN.
    pub fn san(mut self, san: impl Into<String>) -> Self {
        self.san = Some(san.into());
        self
    }
    /// Anchored SAN regex.
    pub fn san_regex(mut self, re: impl Into<String>) -> Self {
        self.san_regex = Some(re.into());
        self
    }
    /// Source repository, `owner/name`.
    pub fn source_repository(mut self, repo: impl Into<String>) -> Self {
        self.source_repo = Some(repo.into());
        self
    }
    /// Signer workflow, `owner/repo/.github/workflows/FILE`.
    pub fn signer_workflow(mut self, wf: impl Into<String>) -> Self {
        self.signer_workflow = Some(wf.into());
        self
    }
    /// Source ref, e.g. `refs/heads/main`.
    pub fn source_ref(mut self, r: impl Into<String>) -> Self {
        self.source_ref = Some(r.into());
        self
    }
    /// Runner environment (default `github-hosted`).
    pub fn runner_environment(mut self, env: RunnerEnvironment) -> Self {
        self.runner_environment = env;
        self
    }
    /// In-toto predicate type.
    pub fn predicate_type(mut self, t: impl Into<String>) -> Self {
        self.predicate_type = Some(t.into());
        self
    }
    /// Subject digest, `sha256:HEX` or `sha512:HEX`.
    pub fn subject_digest(mut self, d: impl Into<String>) -> Self {
        self.subject_digest = Some(d.into());
        self
    }

    /// Validate and build.
    pub fn build(self) -> Result<IdentityPolicy, IdentityPolicyError> {
        let issuer = self
            .issuer
            .unwrap_or_else(|| GITHUB_ACTIONS_ISSUER.to_string());
        check_value(IdentityField::Issuer, &issuer)?;
        let san = match (self.san, self.san_regex) {
            (Some(_), Some(_)) => return Err(IdentityPolicyError::ConflictingSan),
            (Some(s), None) => {
                check_value(IdentityField::San, &s)?;
                Some(SanMatcher::Exact(s))
            }
            (None, Some(source)) => {
                if source.is_empty() || source.len() > MAX_SAN_REGEX_LEN {
                    return Err(IdentityPolicyError::InvalidSanRegex(format!(
                        "empty or longer than {MAX_SAN_REGEX_LEN} bytes"
                    )));
                }
                let regex = regex::RegexBuilder::new(&format!("^(?:{source})$"))
                    .size_limit(SAN_REGEX_SIZE_LIMIT)
                    .build()
                    .map_err(|e| IdentityPolicyError::InvalidSanRegex(e.to_string()))?;
                Some(SanMatcher::Regex { source, regex })
            }
            (None, None) => None,
        };
        let source_repository_uri = self
            .source_repo
            .as_deref()
            .map(repository_uri)
            .transpose()?;
        let signer_workflow = self
            .signer_workflow
            .as_deref()
            .map(signer_workflow_uri)
            .transpose()?;
        if san.is_none() && source_repository_uri.is_none() && signer_workflow.is_none() {
            return Err(IdentityPolicyError::NoIdentityConstraint);
        }
        if let Some(r) = &self.source_ref {
            check_value(IdentityField::SourceRef, r)?;
        }
        if let RunnerEnvironment::Exact(e) = &self.runner_environment {
            check_value(IdentityField::RunnerEnvironment, e)?;
        }
        if let Some(p) = &self.predicate_type {
            check_value(IdentityField::PredicateType, p)?;
        }
        let subject_digest = self
            .subject_digest
            .as_deref()
            .map(SubjectDigest::parse)
            .transpose()?;
        Ok(IdentityPolicy {
            issuer,
            san,
            source_repository_uri,
            signer_workflow,
            source_ref: self.source_ref,
            runner_environment: self.runner_environment,
            predicate_type: self.predicate_type,
            subject_digest,
        })
    }
}

impl IdentityPolicy {
    /// Start a policy (issuer defaults to GitHub Actions, runner to github-hosted).
    pub fn builder() -> IdentityPolicyBuilder {
        IdentityPolicyBuilder::default()
    }

    /// The required OIDC issuer.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }
    /// The SAN matcher, if any.
    pub fn san(&self) -> Option<&SanMatcher> {
        self.san.as_ref()
    }
    /// The required source repository URI, if any.
    pub fn source_repository_uri(&self) -> Option<&str> {
        self.source_repository_uri.as_deref()
    }
    /// The required signer workflow URI (without `@ref`), if any.
    pub fn signer_workflow_uri(&self) -> Option<&str> {
        self.signer_workflow.as_deref()
    }
    /// The required source ref, if any.
    pub fn source_ref(&self) -> Option<&str> {
        self.source_ref.as_deref()
    }
    /// The runner environment constraint.
    pub fn runner_environment(&self) -> &RunnerEnvironment {
        &self.runner_environment
    }
    /// The required predicate type, if any.
    pub fn predicate_type(&self) -> Option<&str> {
        self.predicate_type.as_deref()
    }
    /// The required subject digest, if any.
    pub fn subject_digest(&self) -> Option<&SubjectDigest> {
        self.subject_digest.as_ref()
    }

    /// Check every constraint; `Err` lists each one that failed.
    pub fn evaluate(&self, claims: &IdentityClaims<'_>) -> Result<(), IdentityViolation> {
        let mut mismatches = Vec::new();
        let mut push = |field, wanted: String, got: Option<&str>| {
            mismatches.push(IdentityMismatch {
                field,
                wanted,
                got: got.map(str::to_string),
            })
        };
        if claims.issuer != Some(self.issuer.as_str()) {
            push(IdentityField::Issuer, self.issuer.clone(), claims.issuer);
        }
        if let Some(m) = &self.san {
            if !claims.san.is_some_and(|s| m.matches(s)) {
                push(IdentityField::San, m.describe(), claims.san);
            }
        }
        if let Some(want) = &self.source_repository_uri {
            if claims.source_repository_uri != Some(want.as_str()) {
                push(
                    IdentityField::SourceRepository,
                    want.clone(),
                    claims.source_repository_uri,
                );
            }
        }
        if let Some(want) = &self.signer_workflow {
            let ok = claims
                .build_signer_uri
                .and_then(|u| u.split_once('@'))
                .is_some_and(|(path, r)| path == want && !r.is_empty());
            if !ok {
                push(
                    IdentityField::SignerWorkflow,
                    format!("{want}@*"),
                    claims.build_signer_uri,
                );
            }
        }
        if let Some(want) = &self.source_ref {
            if claims.source_repository_ref != Some(want.as_str()) {
                push(
                    IdentityField::SourceRef,
                    want.clone(),
                    claims.source_repository_ref,
                );
            }
        }
        let runner_want = match &self.runner_environment {
            RunnerEnvironment::GithubHosted => Some(GITHUB_HOSTED),
            RunnerEnvironment::Exact(e) => Some(e.as_str()),
            RunnerEnvironment::Any => None,
        };
        if let Some(want) = runner_want {
            if claims.runner_environment != Some(want) {
                push(
                    IdentityField::RunnerEnvironment,
                    want.to_string(),
                    claims.runner_environment,
                );
            }
        }
        if let Some(want) = &self.predicate_type {
            if claims.predicate_type != Some(want.as_str()) {
                push(
                    IdentityField::PredicateType,
                    want.clone(),
                    claims.predicate_type,
                );
            }
        }
        if let Some(want) = &self.subject_digest {
            let ok = claims.subject_digests.iter().any(|d| {
                d.get(want.algorithm())
                    .is_some_and(|h| h.eq_ignore_ascii_case(want.hex()))
            });
            if !ok {
                let got: Vec<String> = claims
                    .subject_digests
                    .iter()
                    .flat_map(|d| d.iter().map(|(a, h)| format!("{a}:{h}")))
                    .collect();
                let got = (!got.is_empty()).then(|| got.join(","));
                push(
                    IdentityField::SubjectDigest,
                    want.to_string(),
                    got.as_deref(),
                );
            }
        }
        if mismatches.is_empty() {
            Ok(())
        } else {
            Err(IdentityViolation { mismatches })
        }
    }
}

#[cfg(test)]
mod tests;
