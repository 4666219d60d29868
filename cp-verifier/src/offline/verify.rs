//! `cp-verifier verify quote`, `verify bundle` and `verify image`: offline verification
//! for operators.
//!
//! `verify quote` contract (keep it stable; scripts depend on it): stdout carries one JSON object,
//! the quote's fields on success or `{"error":{"kind","detail"}}` on failure. Exit 0:
//! signatures and PCK chain valid at `--at`, and with collateral the TCB status is
//! allowed by the default policy (UpToDate). Exit 1: any verification failure.
//! Exit 2: usage errors (bad arguments, unreadable files).

use provenant_base::clock::UnixSecs;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::attest::dcap::{
    parse_collateral, verify_quote_with, verify_signatures, BindingRules, TcbStatus,
    MAX_COLLATERAL_BYTES,
};

/// Exit status and the JSON object to print.
pub struct Outcome {
    /// The process exit code: 0 verified, 1 refused, 2 usage error.
    pub code: i32,
    /// The one JSON object printed on stdout.
    pub json: Value,
}

fn error(code: i32, kind: &str, detail: impl Into<String>) -> Outcome {
    Outcome {
        code,
        json: json!({"error": {"kind": kind, "detail": detail.into()}}),
    }
}

/// Raw binary, or hex text with or without `0x` (whitespace ignored).
pub fn decode_quote_input(bytes: &[u8]) -> Vec<u8> {
    let text: Vec<u8> = bytes
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let body = text
        .strip_prefix(b"0x")
        .or_else(|| text.strip_prefix(b"0X"))
        .unwrap_or(&text);
    if !body.is_empty() && body.len() % 2 == 0 && body.iter().all(u8::is_ascii_hexdigit) {
        if let Ok(v) = hex::decode(body) {
            return v;
        }
    }
    bytes.to_vec()
}

fn read_bounded(path: &Path, max: u64, what: &str) -> Result<Vec<u8>, Outcome> {
    use provenant_base::fsutil::ReadError;
    provenant_base::fsutil::read_bounded(path, max).map_err(|e| match e {
        ReadError::TooLarge { max } => {
            error(1, "TooLarge", format!("{what} is larger than {max} bytes"))
        }
        ReadError::Io(e) => error(
            2,
            "Usage",
            format!("cannot read {what} {}: {e}", path.display()),
        ),
    })
}

/// `cp-verifier verify quote` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct QuoteArgs {
    /// The quote: raw binary or hex text (with or without 0x).
    #[arg(long)]
    pub quote: PathBuf,
    /// dcap-qvl QuoteCollateralV3 JSON. Without it only signatures and the PCK
    /// chain are checked, and the output says "collateral":"absent".
    #[arg(long)]
    pub collateral: Option<PathBuf>,
    /// Verification time, Unix seconds (default: now).
    #[arg(long)]
    pub at: Option<u64>,
    /// Trust this root CA (DER) instead of Intel's SGX Root CA.
    #[arg(long)]
    pub root_ca: Option<PathBuf>,
    /// Accept a TD 1.5 bound to the service TD with this MRSERVICETD (96 hex
    /// digits). Repeatable. Without it a TD bound to any service TD is refused
    /// (`ServiceTdBound`).
    #[arg(long = "allow-mrservicetd", value_name = "HEX")]
    pub allow_mrservicetd: Vec<String>,
}

/// `cp-verifier verify quote` at `args.at`, or `now` when unset.
pub fn verify_quote_cmd(args: &QuoteArgs, now: UnixSecs) -> Outcome {
    let at = args.at.map_or(now, UnixSecs::from_unsigned);
    let mut rules = BindingRules::default();
    for h in &args.allow_mrservicetd {
        let mut m = [0u8; 48];
        let digits = h.trim();
        let digits = digits.strip_prefix("0x").unwrap_or(digits);
        if hex::decode_to_slice(digits, &mut m).is_err() {
            return error(
                2,
                "Usage",
                format!("--allow-mrservicetd {h:?} is not 96 hex digits"),
            );
        }
        rules.allowed_mrservicetd.push(m);
    }
    match run(
        &args.quote,
        args.collateral.as_deref(),
        at,
        args.root_ca.as_deref(),
        &rules,
    ) {
        Ok(o) | Err(o) => o,
    }
}

fn run(
    quote_path: &Path,
    collateral_path: Option<&Path>,
    at: UnixSecs,
    root_ca_path: Option<&Path>,
    rules: &BindingRules,
) -> Result<Outcome, Outcome> {
    let max_quote = u64::try_from(evidence::tdx::MAX_QUOTE_BYTES * 2 + 64).unwrap_or(u64::MAX);
    let raw = decode_quote_input(&read_bounded(quote_path, max_quote, "quote")?);
    let root = match root_ca_path {
        Some(p) => Some(read_bounded(p, 64 * 1024, "root CA")?),
        None => None,
    };
    let collateral = match collateral_path {
        Some(p) => {
            let b = read_bounded(
                p,
                u64::try_from(MAX_COLLATERAL_BYTES).unwrap_or(u64::MAX),
                "collateral",
            )?;
            Some(parse_collateral(&b).map_err(|e| error(1, e.kind(), e.to_string()))?)
        }
        None => None,
    };
    let signed = verify_signatures(&raw, at, root.as_deref())
        .map_err(|e| error(1, e.kind(), e.to_string()))?;
    // The body is signed: its service-TD binding is judged with or without collateral.
    rules
        .check(&signed.quote().body)
        .map_err(|e| error(1, e.kind(), e.to_string()))?;
    let (tcb_status, advisories) = match &collateral {
        Some(c) => {
            let v = verify_quote_with(&raw, c, at, root.as_deref(), rules)
                .map_err(|e| error(1, e.kind(), e.to_string()))?;
            (Some(v.tcb_status().clone()), v.advisory_ids().to_vec())
        }
        None => (None, Vec::new()),
    };
    let q = signed.quote();
    let b = &q.body;
    let out = json!({
        "version": q.header.version,
        "tee": "tdx",
        "body": b.kind,
        "mrtd": b.mrtd.to_hex(),
        "rtmrs": b.rtmrs.iter().map(|r| r.to_hex()).collect::<Vec<_>>(),
        "report_data": b.report_data.to_hex(),
        "td_attributes": b.td_attributes.to_hex(),
        "mrservicetd": b.mrservicetd.as_ref().map(|m| m.to_hex()),
        "fmspc": signed.fmspc().map(hex::encode),
        "tcb_status": tcb_status.as_ref().map(|s| s.as_str().to_string()),
        "advisory_ids": advisories,
        "collateral": if collateral.is_some() { "verified" } else { "absent" },
    });
    match tcb_status {
        Some(TcbStatus::UpToDate) | None => Ok(Outcome { code: 0, json: out }),
        Some(other) => Err(Outcome {
            code: 1,
            json: json!({"error": {
                "kind": "TcbStatusNotAllowed",
                "detail": format!(
                    "TCB status {} is not allowed by the default policy (UpToDate); advisories: {}",
                    other.as_str(),
                    policy::tdx::advisory_list(&advisories)
                ),
                "advisories": advisories,
            }}),
        }),
    }
}

/// Largest `--bundle` file: up to [`MAX_BUNDLES_PER_FILE`] typical bundles as JSON
/// Lines, with room; a single bundle is still bounded by
/// [`signatures::MAX_BUNDLE_BYTES`].
pub const MAX_BUNDLE_FILE_BYTES: usize = 16 * 1024 * 1024;
/// Most bundles in one JSON Lines file: one page of GitHub's attestations API
/// (`per_page` ≤ 100).
pub const MAX_BUNDLES_PER_FILE: usize = 100;
/// Largest `--artifact` read into memory. Bigger artifacts: pass `--digest`.
pub const MAX_ARTIFACT_BYTES: usize = 256 * 1024 * 1024;

/// `cp-verifier verify bundle` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct BundleArgs {
    /// One JSON bundle, or JSON Lines (one bundle per line; every line must verify).
    #[arg(long)]
    pub bundle: PathBuf,
    /// `trusted_root.json` (e.g. Sigstore public-good).
    #[arg(long)]
    pub trusted_root: PathBuf,
    /// The artifact's digest, sha256:HEX or sha512:HEX.
    #[arg(long, conflicts_with = "artifact")]
    pub digest: Option<String>,
    /// The artifact file.
    #[arg(long)]
    pub artifact: Option<PathBuf>,
    /// Required OIDC issuer (default: https://token.actions.githubusercontent.com).
    #[arg(long)]
    pub issuer: Option<String>,
    /// Required certificate SAN, exact.
    #[arg(long, conflicts_with = "san_regex")]
    pub san: Option<String>,
    /// Required certificate SAN, a regex matched against the whole SAN.
    #[arg(long)]
    pub san_regex: Option<String>,
    /// Required source repository, OWNER/NAME.
    #[arg(long)]
    pub source_repo: Option<String>,
    /// Required source ref, e.g. refs/heads/main.
    #[arg(long)]
    pub source_ref: Option<String>,
    /// Required signer workflow, OWNER/REPO/.github/workflows/FILE.
    #[arg(long)]
    pub signer_workflow: Option<String>,
    /// Required in-toto predicate type.
    #[arg(long)]
    pub predicate_type: Option<String>,
    /// A managed public key (`PUBLIC KEY` PEM): verify bundles signed with this key
    /// (no certificate) instead of a Fulcio identity; excludes the identity flags.
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// Verification time, Unix seconds (default: now).
    #[arg(long)]
    pub at: Option<u64>,
}

/// `cp-verifier verify bundle`.
///
/// Contract (stable): stdout carries one JSON object. Exit 0 with
/// `{"verified":true,"bundles":[{"media_type","san","issuer","source_repo",
/// "source_ref","runner_environment","predicate_type","subjects":[{"name","digest"}],
/// "signed_at"}]}` when every bundle in `--bundle` (one JSON bundle, or JSON Lines
/// with one per line) verifies under the trusted root and the identity policy at
/// `--at`. Exit 1 with `{"error":{"kind","detail"}}` when any does not (the detail
/// names the line). Exit 2 for usage errors, including a policy with no identity
/// constraint (`kind` `NoIdentityConstraint`), unreadable files and bad digests.
///
/// With `--key` (a managed key instead of an identity), each verified bundle is
/// `{"media_type","key","predicate_type","subjects","signed_at"}`: `key` the
/// key's `sha256:` SPKI fingerprint, `signed_at` null when the bundle carries no
/// verified time; the log checks are the keyless path's.
pub fn verify_bundle_cmd(args: &BundleArgs, now: UnixSecs) -> Outcome {
    match run_bundle(args, args.at.map_or(now, UnixSecs::from_unsigned)) {
        Ok(o) | Err(o) => o,
    }
}

fn build_policy(args: &BundleArgs) -> Result<policy::identity::IdentityPolicy, Outcome> {
    let mut b = policy::identity::IdentityPolicy::builder();
    if let Some(v) = &args.issuer {
        b = b.issuer(v);
    }
    if let Some(v) = &args.san {
        b = b.san(v);
    }
    if let Some(v) = &args.san_regex {
        b = b.san_regex(v);
    }
    if let Some(v) = &args.source_repo {
        b = b.source_repository(v);
    }
    if let Some(v) = &args.source_ref {
        b = b.source_ref(v);
    }
    if let Some(v) = &args.signer_workflow {
        b = b.signer_workflow(v);
    }
    if let Some(v) = &args.predicate_type {
        b = b.predicate_type(v);
    }
    b.build().map_err(|e| error(2, e.kind(), e.to_string()))
}

/// One bundle, or JSON Lines (blank lines ignored).
fn split_bundles(bytes: &[u8]) -> Result<Vec<&[u8]>, Outcome> {
    if serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok() {
        return Ok(vec![bytes]);
    }
    let lines: Vec<&[u8]> = bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .collect();
    if lines.is_empty() {
        return Err(error(1, "MalformedBundle", "no bundle in --bundle"));
    }
    if lines.len() > MAX_BUNDLES_PER_FILE {
        return Err(error(
            1,
            "TooManyBundles",
            format!("more than {MAX_BUNDLES_PER_FILE} bundles in one file"),
        ));
    }
    Ok(lines)
}

/// What bundles are verified against: an identity policy, or a managed key.
enum Signer {
    Identity(policy::identity::IdentityPolicy),
    Key(signatures::ManagedKey),
}

fn signer(args: &BundleArgs) -> Result<Signer, Outcome> {
    let Some(path) = &args.key else {
        return build_policy(args).map(Signer::Identity);
    };
    let identity_flags = [
        &args.issuer,
        &args.san,
        &args.san_regex,
        &args.source_repo,
        &args.source_ref,
        &args.signer_workflow,
        &args.predicate_type,
    ];
    if identity_flags.iter().any(|f| f.is_some()) {
        return Err(error(
            2,
            "Usage",
            "--key excludes --issuer, --san, --san-regex, --source-repo, --source-ref, \
             --signer-workflow and --predicate-type",
        ));
    }
    let pem = read_bounded(
        path,
        u64::try_from(signatures::MAX_KEY_BYTES).unwrap_or(u64::MAX),
        "key",
    )?;
    signatures::ManagedKey::from_pem(&pem)
        .map(Signer::Key)
        .map_err(|e| error(1, e.kind(), e.to_string()))
}

fn run_bundle(args: &BundleArgs, at: UnixSecs) -> Result<Outcome, Outcome> {
    if args.digest.is_some() && args.artifact.is_some() {
        return Err(error(2, "Usage", "give --digest or --artifact, not both"));
    }
    let signer = signer(args)?;
    let digest = match &args.digest {
        Some(d) => Some(
            signatures::ArtifactDigest::parse(d).map_err(|e| error(2, e.kind(), e.to_string()))?,
        ),
        None => None,
    };
    let artifact_bytes = match &args.artifact {
        Some(p) => Some(read_bounded(
            p,
            u64::try_from(MAX_ARTIFACT_BYTES).unwrap_or(u64::MAX),
            "artifact",
        )?),
        None => None,
    };
    let root = signatures::TrustRoot::from_file(&args.trusted_root).map_err(|e| {
        let code = match e {
            signatures::TrustRootError::Io(_) => 2,
            _ => 1,
        };
        error(code, e.kind(), e.to_string())
    })?;
    let file = read_bounded(
        &args.bundle,
        u64::try_from(MAX_BUNDLE_FILE_BYTES).unwrap_or(u64::MAX),
        "bundle",
    )?;
    let artifact = match (&digest, &artifact_bytes) {
        (Some(d), _) => signatures::Artifact::Digest(d),
        (None, Some(b)) => signatures::Artifact::Bytes(b),
        (None, None) => signatures::Artifact::StatementSubjects,
    };
    let bundles = split_bundles(&file)?;
    let many = bundles.len() > 1;
    let mut out = Vec::with_capacity(bundles.len());
    for (i, b) in bundles.into_iter().enumerate() {
        let refused = |e: signatures::VerifyError| {
            let detail = if many {
                format!("bundle on line {}: {e}", i + 1)
            } else {
                e.to_string()
            };
            error(1, e.kind(), detail)
        };
        let policy = match &signer {
            Signer::Identity(p) => p,
            Signer::Key(key) => {
                let v = signatures::verify_bundle_with_key(b, artifact, &root, key, at)
                    .map_err(refused)?;
                out.push(json!({
                    "media_type": v.media_type(),
                    "key": v.key_fingerprint(),
                    "predicate_type": v.predicate_type(),
                    "subjects": v.subjects(),
                    "signed_at": v.signed_at_rfc3339(),
                }));
                continue;
            }
        };
        let v = signatures::verify_bundle(b, artifact, &root, policy, at).map_err(refused)?;
        out.push(json!({
            "media_type": v.media_type(),
            "san": v.san(),
            "issuer": v.issuer(),
            "source_repo": v.fulcio().source_repository_uri,
            "source_ref": v.fulcio().source_repository_ref,
            "runner_environment": v.fulcio().runner_environment,
            "predicate_type": v.predicate_type(),
            "subjects": v.subjects(),
            "signed_at": v.signed_at_rfc3339(),
        }));
    }
    Ok(Outcome {
        code: 0,
        json: json!({"verified": true, "bundles": out}),
    })
}

/// Largest `--manifest` read: registries refuse manifests over 4 MiB.
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// `cp-verifier verify image` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ImageArgs {
    /// The image manifest; its SHA-256 is the digest verified.
    #[arg(long, conflicts_with = "digest", required_unless_present = "digest")]
    pub manifest: Option<PathBuf>,
    /// The image manifest digest, sha256:HEX.
    #[arg(long)]
    pub digest: Option<String>,
    /// The signature: `0x00 "sigstore-json" LF {..}`, a cosign layer JSON, or a
    /// Sigstore bundle.
    #[arg(long)]
    pub signature: PathBuf,
    /// A cosign public key (PEM); repeatable.
    #[arg(long = "key")]
    pub keys: Vec<PathBuf>,
    /// Keyless: a `trusted_root.json` (Fulcio CAs, Rekor keys).
    #[arg(long)]
    pub trusted_root: Option<PathBuf>,
    /// Keyless: Fulcio CA certificates (PEM), with --rekor-key.
    #[arg(long)]
    pub fulcio_ca: Option<PathBuf>,
    /// Rekor public key (PEM): the SET is then required (always for keyless).
    #[arg(long)]
    pub rekor_key: Option<PathBuf>,
    /// Required email SAN, exact.
    #[arg(long, conflicts_with_all = ["san", "san_regex"])]
    pub identity_email: Option<String>,
    /// Required URI SAN, exact.
    #[arg(long, conflicts_with = "san_regex")]
    pub san: Option<String>,
    /// Required SAN, a regex matched against the whole SAN.
    #[arg(long)]
    pub san_regex: Option<String>,
    /// Required OIDC issuer (keyless).
    #[arg(long)]
    pub issuer: Option<String>,
    /// Required Fulcio source repository (OWNER/NAME or https://github.com/OWNER/NAME).
    #[arg(long)]
    pub source_repository: Option<String>,
    /// Required Fulcio source ref, e.g. refs/heads/main.
    #[arg(long)]
    pub source_ref: Option<String>,
    /// Verification time, Unix seconds (default: now).
    #[arg(long)]
    pub at: Option<u64>,
}

/// `cp-verifier verify image`.
///
/// Contract (stable): stdout carries one JSON object. Exit 0 with
/// `{"verified":true,"digest","docker_reference","signer":{"keyless","identity",
/// "issuer","source_repository","source_ref"},"integrated_time"}` when the signature
/// verifies for the digest (`--digest`, or SHA-256 of `--manifest`) at `--at`: with
/// `--key` (a Rekor SET is then required only with `--rekor-key`), or keyless with
/// `--trusted-root` or `--fulcio-ca` + `--rekor-key` and an identity (`--issuer` and
/// one of `--identity-email`, `--san`, `--san-regex`, `--source-repository`).
/// Exit 1 with `{"error":{"kind","detail","reason"}}` when it is refused (`reason`
/// is the verdict reason code, e.g. `ImageDigestMismatch`). Exit 2 for usage errors
/// and unreadable files.
pub fn verify_image_cmd(args: &ImageArgs, now: UnixSecs) -> Outcome {
    match run_image(args, now) {
        Ok(o) | Err(o) => o,
    }
}

fn image_error(e: &signatures::ImageSigError) -> Outcome {
    Outcome {
        code: 1,
        json: json!({"error": {
            "kind": e.kind(),
            "detail": e.to_string(),
            "reason": e.reason_code().as_str(),
        }}),
    }
}

fn run_image(args: &ImageArgs, now: UnixSecs) -> Result<Outcome, Outcome> {
    use signatures::{ImageTrust, ImageTrustError, ImageTrustParts, KeylessIdentity};
    let digest = match (&args.manifest, &args.digest) {
        (Some(_), Some(_)) => {
            return Err(error(2, "Usage", "give --manifest or --digest, not both"))
        }
        (None, None) => return Err(error(2, "Usage", "give --manifest or --digest")),
        (Some(m), None) => {
            let b = read_bounded(
                m,
                u64::try_from(MAX_MANIFEST_BYTES).unwrap_or(u64::MAX),
                "manifest",
            )?;
            format!(
                "sha256:{}",
                hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&b))
            )
        }
        (None, Some(d)) => {
            let ok = d
                .strip_prefix("sha256:")
                .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
            if !ok {
                return Err(error(
                    2,
                    "InvalidDigest",
                    format!("--digest {d:?}: expected sha256:<64 hex>"),
                ));
            }
            d.to_ascii_lowercase()
        }
    };
    let keyless_flags = args.identity_email.is_some()
        || args.san.is_some()
        || args.san_regex.is_some()
        || args.issuer.is_some()
        || args.source_repository.is_some()
        || args.source_ref.is_some();
    let read_trust = |p: &Path, what: &str| {
        read_bounded(
            p,
            u64::try_from(signatures::cosign::MAX_TRUST_FILE_BYTES).unwrap_or(u64::MAX),
            what,
        )
    };
    let mut parts = ImageTrustParts::default();
    if let Some(r) = &args.rekor_key {
        parts.rekor_keys.push(read_trust(r, "Rekor key")?);
    }
    if !args.keys.is_empty() {
        if args.trusted_root.is_some() || args.fulcio_ca.is_some() || keyless_flags {
            return Err(error(
                2,
                "Usage",
                "--key excludes --trusted-root, --fulcio-ca and the identity flags",
            ));
        }
        for k in &args.keys {
            parts.keys.push(read_trust(k, "key")?);
        }
        parts.require_rekor = args.rekor_key.is_some();
    } else {
        match (&args.trusted_root, &args.fulcio_ca, &args.rekor_key) {
            (Some(_), Some(_), _) => {
                return Err(error(
                    2,
                    "Usage",
                    "give --trusted-root or --fulcio-ca, not both",
                ))
            }
            (Some(t), None, _) => {
                parts.trusted_root = Some(read_bounded(
                    t,
                    u64::try_from(signatures::MAX_TRUSTED_ROOT_BYTES).unwrap_or(u64::MAX),
                    "trusted root",
                )?)
            }
            (None, Some(c), Some(_)) => parts.fulcio_ca = Some(read_trust(c, "Fulcio CA")?),
            (None, Some(_), None) => {
                return Err(error(2, "Usage", "--fulcio-ca needs --rekor-key"))
            }
            (None, None, _) => {
                return Err(error(
                    2,
                    "Usage",
                    "give --key, --trusted-root, or --fulcio-ca with --rekor-key",
                ))
            }
        }
        let Some(issuer) = args.issuer.clone() else {
            return Err(error(2, "Usage", "keyless verification needs --issuer"));
        };
        parts.keyless = Some(KeylessIdentity {
            issuer,
            subject_email: args.identity_email.clone(),
            san: args.san.clone(),
            san_regex: args.san_regex.clone(),
            source_repository: args.source_repository.clone(),
            source_ref: args.source_ref.clone(),
        });
        parts.require_rekor = true;
    }
    let trust = ImageTrust::from_parts(parts).map_err(|e| {
        let code = match e {
            ImageTrustError::Io { .. }
            | ImageTrustError::Identity(_)
            | ImageTrustError::InvalidRule(_) => 2,
            _ => 1,
        };
        error(code, e.kind(), e.to_string())
    })?;
    let file = read_bounded(
        &args.signature,
        u64::try_from(signatures::cosign::MAX_SIGNATURE_FILE_BYTES).unwrap_or(u64::MAX),
        "signature",
    )?;
    let sig = signatures::parse_signature_file(&file).map_err(|e| image_error(&e))?;
    let at = args.at.map_or(now, UnixSecs::from_unsigned);
    let v = signatures::verify_image_signature(&sig, &digest, &trust, at)
        .map_err(|e| image_error(&e))?;
    Ok(Outcome {
        code: 0,
        json: json!({
            "verified": true,
            "digest": v.digest,
            "docker_reference": v.docker_reference,
            "signer": {
                "keyless": v.keyless,
                "identity": v.signer,
                "issuer": v.issuer,
                "source_repository": v.source_repository,
                "source_ref": v.source_ref,
            },
            "integrated_time": v.integrated_time,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_detection() {
        assert_eq!(decode_quote_input(b"0x0400\n"), vec![4, 0]);
        assert_eq!(decode_quote_input(b"04 00"), vec![4, 0]);
        assert_eq!(decode_quote_input(&[4, 0, 2, 0]), vec![4, 0, 2, 0]);
        assert_eq!(decode_quote_input(b"abc"), b"abc".to_vec());
    }
}
