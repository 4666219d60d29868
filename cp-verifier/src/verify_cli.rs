//! `cp-verifier verify quote` and `verify bundle`: offline verification for operators.
//!
//! `verify quote` contract (keep it stable; scripts depend on it): stdout carries one JSON object,
//! the quote's fields on success or `{"error":{"kind","detail"}}` on failure. Exit 0:
//! signatures and PCK chain valid at `--at`, and with collateral the TCB status is
//! allowed by the default policy (UpToDate). Exit 1: any verification failure.
//! Exit 2: usage errors (bad arguments, unreadable files).

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::tdx::{
    parse_collateral, verify_quote, verify_signatures, TcbStatus, MAX_COLLATERAL_BYTES,
};

/// Exit status and the JSON object to print.
pub struct Outcome {
    pub code: i32,
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
    use guest_agent::fsutil::ReadError;
    guest_agent::fsutil::read_bounded(path, max).map_err(|e| match e {
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

pub fn verify_quote_cmd(
    quote_path: &Path,
    collateral_path: Option<&Path>,
    at: u64,
    root_ca_path: Option<&Path>,
) -> Outcome {
    match run(quote_path, collateral_path, at, root_ca_path) {
        Ok(o) | Err(o) => o,
    }
}

fn run(
    quote_path: &Path,
    collateral_path: Option<&Path>,
    at: u64,
    root_ca_path: Option<&Path>,
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
    let (tcb_status, advisories) = match &collateral {
        Some(c) => {
            let v = verify_quote(&raw, c, at, root.as_deref())
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
        "fmspc": signed.fmspc().map(hex::encode),
        "tcb_status": tcb_status.as_ref().map(|s| s.as_str().to_string()),
        "advisory_ids": advisories,
        "collateral": if collateral.is_some() { "verified" } else { "absent" },
    });
    match tcb_status {
        Some(TcbStatus::UpToDate) | None => Ok(Outcome { code: 0, json: out }),
        Some(other) => Err(error(
            1,
            "TcbStatusNotAllowed",
            format!(
                "TCB status {} is not allowed by the default policy (UpToDate); advisories: {:?}",
                other.as_str(),
                out["advisory_ids"]
            ),
        )),
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

/// Arguments of `cp-verifier verify bundle` (see the stable contract).
#[derive(Debug, Clone, Default)]
pub struct BundleArgs {
    pub bundle: PathBuf,
    pub trusted_root: PathBuf,
    pub digest: Option<String>,
    pub artifact: Option<PathBuf>,
    pub issuer: Option<String>,
    pub san: Option<String>,
    pub san_regex: Option<String>,
    pub source_repo: Option<String>,
    pub source_ref: Option<String>,
    pub signer_workflow: Option<String>,
    pub predicate_type: Option<String>,
    pub at: u64,
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
pub fn verify_bundle_cmd(args: &BundleArgs) -> Outcome {
    match run_bundle(args) {
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

fn run_bundle(args: &BundleArgs) -> Result<Outcome, Outcome> {
    if args.digest.is_some() && args.artifact.is_some() {
        return Err(error(2, "Usage", "give --digest or --artifact, not both"));
    }
    let policy = build_policy(args)?;
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
        let v = signatures::verify_bundle(b, artifact, &root, &policy, args.at).map_err(|e| {
            let detail = if many {
                format!("bundle on line {}: {e}", i + 1)
            } else {
                e.to_string()
            };
            error(1, e.kind(), detail)
        })?;
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
