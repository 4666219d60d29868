//! Sigstore bundle verification: [`verify_bundle`] and the [`VerifiedBundle`] it returns.
//! The guarantees are listed in the crate doc.

mod artifact;
mod error;
mod managed_key;
mod prepare;
mod protojson;
mod statement;
mod trust_root;
use provenant_base::clock::UnixSecs;
use std::path::Path;

use policy::identity::{IdentityClaims, IdentityPolicy};
use sigstore_verify::VerificationPolicy;

pub use artifact::{Artifact, ArtifactDigest, DigestAlgorithm};
use error::map_sigstore_error;
pub use error::VerifyError;
pub use managed_key::{verify_bundle_with_key, ManagedKey, VerifiedKeyBundle, MAX_KEY_BYTES};
use prepare::{prepare, signing_times, sigstore_artifact, Material, Prepared};
use statement::parse_statement;
pub use statement::{Statement, Subject, IN_TOTO_PAYLOAD_TYPE, MAX_SUBJECTS};
pub use trust_root::{Instance, TrustRoot, TrustRootError, MAX_TRUSTED_ROOT_BYTES};

/// Largest bundle accepted. Real GitHub attestation bundles are 5–20 KiB; the SLSA
/// predicate is the variable part and stays far below this. The bound is checked
/// before any parsing, so a hostile server cannot make us parse megabytes of JSON.
pub const MAX_BUNDLE_BYTES: usize = 2 * 1024 * 1024;

/// Bundle v0.1 media type (accepted only with inclusion proofs and checkpoints).
pub const MEDIA_TYPE_V0_1: &str = "application/vnd.dev.sigstore.bundle+json;version=0.1";
/// Bundle v0.2 media type.
pub const MEDIA_TYPE_V0_2: &str = "application/vnd.dev.sigstore.bundle+json;version=0.2";
/// Bundle v0.3 media type.
pub const MEDIA_TYPE_V0_3: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// The alternative spelling of v0.3 that sigstore-go and sigstore-rust also accept.
const MEDIA_TYPE_V0_3_ALT: &str = "application/vnd.dev.sigstore.bundle+json;version=0.3";

pub(crate) use provenant_base::fsutil::ReadError as ReadBoundedError;

/// Reads at most `max` bytes of `path` ([`provenant_base::fsutil::read_bounded`]).
pub(crate) fn read_bounded(path: &Path, max: usize) -> Result<Vec<u8>, ReadBoundedError> {
    provenant_base::fsutil::read_bounded(path, u64::try_from(max).unwrap_or(u64::MAX))
}

/// Read a bundle file (one bundle or JSON Lines), bounded by `max` bytes.
pub fn read_bundle_file(path: &Path, max: usize) -> Result<Vec<u8>, VerifyError> {
    read_bounded(path, max).map_err(|e| match e {
        ReadBoundedError::TooLarge { .. } => VerifyError::BundleTooLarge { max },
        ReadBoundedError::Io(e) => {
            VerifyError::MalformedBundle(format!("cannot read {}: {e}", path.display()))
        }
    })
}

/// Where the signing time came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimeSource {
    /// A Rekor v1 integrated time, authenticated by its signed entry timestamp.
    Rekor,
    /// An RFC 3161 timestamp from a TSA of the trusted root.
    Rfc3161,
}

impl TimeSource {
    /// `rekor` or `rfc3161`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rekor => "rekor",
            Self::Rfc3161 => "rfc3161",
        }
    }
}

/// The Fulcio certificate extensions (OID arc `1.3.6.1.4.1.57264.1`) of a verified
/// certificate. Absent extensions are `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FulcioClaims {
    /// `.9` build signer URI (the signer workflow, with its `@ref`).
    pub build_signer_uri: Option<String>,
    /// `.10` build signer digest.
    pub build_signer_digest: Option<String>,
    /// `.11` runner environment.
    pub runner_environment: Option<String>,
    /// `.12` source repository URI.
    pub source_repository_uri: Option<String>,
    /// `.13` source repository digest (commit).
    pub source_repository_digest: Option<String>,
    /// `.14` source repository ref.
    pub source_repository_ref: Option<String>,
    /// `.15` source repository identifier.
    pub source_repository_identifier: Option<String>,
    /// `.16` source repository owner URI.
    pub source_repository_owner_uri: Option<String>,
    /// `.18` build config URI (the calling workflow).
    pub build_config_uri: Option<String>,
    /// `.20` build trigger.
    pub build_trigger: Option<String>,
    /// `.21` run invocation URI.
    pub run_invocation_uri: Option<String>,
}

/// A bundle that verified under a trusted root and an identity policy. Only
/// [`verify_bundle`] constructs one.
#[derive(Debug, Clone)]
pub struct VerifiedBundle {
    media_type: String,
    san: String,
    issuer: String,
    fulcio: FulcioClaims,
    signed_at: i64,
    time_source: TimeSource,
    certificate_not_before: i64,
    certificate_not_after: i64,
    statement: Option<Statement>,
    log_indexes: Vec<u64>,
}

impl VerifiedBundle {
    /// The bundle's media type.
    pub fn media_type(&self) -> &str {
        &self.media_type
    }
    /// The certificate SAN (URI or email).
    pub fn san(&self) -> &str {
        &self.san
    }
    /// The OIDC issuer extension.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }
    /// The Fulcio extensions.
    pub fn fulcio(&self) -> &FulcioClaims {
        &self.fulcio
    }
    /// The earliest verified signing time, unix seconds.
    pub fn signed_at(&self) -> i64 {
        self.signed_at
    }
    /// Where [`Self::signed_at`] came from.
    pub fn time_source(&self) -> TimeSource {
        self.time_source
    }
    /// The signed time as RFC 3339 (UTC).
    pub fn signed_at_rfc3339(&self) -> String {
        rfc3339(self.signed_at)
    }
    /// The certificate's validity window, unix seconds.
    pub fn certificate_validity(&self) -> (i64, i64) {
        (self.certificate_not_before, self.certificate_not_after)
    }
    /// The in-toto statement (DSSE bundles), `None` for message signatures.
    pub fn statement(&self) -> Option<&Statement> {
        self.statement.as_ref()
    }
    /// The transparency-log index of each of the bundle's log entries (verified
    /// with the bundle on a Rekor-backed instance; none on GitHub's, which has no
    /// log).
    pub fn log_indexes(&self) -> &[u64] {
        &self.log_indexes
    }
    /// The predicate type, if a statement.
    pub fn predicate_type(&self) -> Option<&str> {
        self.statement.as_ref().map(|s| s.predicate_type.as_str())
    }
    /// The predicate, if a statement.
    pub fn predicate(&self) -> Option<&serde_json::Value> {
        self.statement.as_ref().map(|s| &s.predicate)
    }
    /// The subjects, empty for message signatures.
    pub fn subjects(&self) -> &[Subject] {
        self.statement
            .as_ref()
            .map_or(&[], |s| s.subjects.as_slice())
    }
}

/// Unix seconds → `YYYY-MM-DDTHH:MM:SSZ` (proleptic Gregorian, UTC).
fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Check the media type before anything else parses the bundle.
///
/// Gap wrapped: `sigstore-types` accepts v0.1 (and treats a missing `mediaType` as
/// v0.1), and `sigstore-verify` then verifies it. Provenant, like `gh` and
/// sigstore-go, refuses v0.1 as unsupported and a missing media type outright.
fn check_media_type(bundle: &[u8]) -> Result<String, VerifyError> {
    #[derive(serde::Deserialize)]
    struct Head {
        #[serde(rename = "mediaType")]
        media_type: Option<serde_json::Value>,
        #[serde(rename = "verificationMaterial")]
        verification_material: Option<serde_json::Map<String, serde_json::Value>>,
    }
    let head: Head = serde_json::from_slice(bundle)
        .map_err(|e| VerifyError::MalformedBundle(format!("not a JSON bundle: {e}")))?;
    // Missing verification material would otherwise surface as a serde error from
    // sigstore-types; name it.
    let has_key_material = head.verification_material.as_ref().is_some_and(|vm| {
        ["certificate", "x509CertificateChain", "publicKey"]
            .iter()
            .any(|k| vm.get(*k).is_some_and(|v| !v.is_null()))
    });
    let mt = match head.media_type {
        None | Some(serde_json::Value::Null) => return Err(VerifyError::MissingMediaType),
        Some(serde_json::Value::String(s)) => s,
        Some(_) => {
            return Err(VerifyError::MalformedBundle(
                "mediaType is not a string".into(),
            ))
        }
    };
    match mt.as_str() {
        MEDIA_TYPE_V0_1 | MEDIA_TYPE_V0_2 | MEDIA_TYPE_V0_3 | MEDIA_TYPE_V0_3_ALT
            if !has_key_material =>
        {
            Err(VerifyError::MissingVerificationMaterial(
                "no certificate or public key".into(),
            ))
        }
        // v0.1 goes on to `prepare`, which accepts it only with an inclusion proof
        // and a checkpoint on every log entry.
        MEDIA_TYPE_V0_1 | MEDIA_TYPE_V0_2 | MEDIA_TYPE_V0_3 | MEDIA_TYPE_V0_3_ALT => Ok(mt),
        _ => Err(VerifyError::UnknownMediaType(
            mt.chars().take(200).collect(),
        )),
    }
}

/// Verify one Sigstore bundle offline at `now` (unix seconds).
///
/// See the crate doc for every check. `now` is the verification time: every
/// verified signing time must lie at or before it (the certificate itself is
/// checked at the signing time, as Sigstore defines it, not at `now`).
pub fn verify_bundle(
    bundle: &[u8],
    artifact: Artifact<'_>,
    root: &TrustRoot,
    policy: &IdentityPolicy,
    now: UnixSecs,
) -> Result<VerifiedBundle, VerifyError> {
    let Prepared {
        media_type,
        parsed,
        statement,
    } = prepare(bundle, root, Material::Keyless)?;
    let sigstore_policy = match root.instance {
        Instance::File => VerificationPolicy::any_identity(),
        // GitHub's instance has neither Rekor nor a CT log (gh does the same).
        Instance::GitHub => VerificationPolicy::any_identity()
            .skip_tlog_unsafe()
            .skip_sct(),
    };
    let ss_artifact = sigstore_artifact(artifact, statement.as_ref())?;
    let result = root
        .verifier
        .verify(ss_artifact, &parsed, &sigstore_policy)
        .map_err(map_sigstore_error)?;

    // Fail closed on what sigstore-verify reports it did.
    if !result.certificate_verified() {
        return Err(VerifyError::CertificateChain(
            "certificate not verified".into(),
        ));
    }
    if root.instance == Instance::File && !(result.tlog_verified() && result.sct_verified()) {
        return Err(VerifyError::Other(
            "transparency log or SCT verification did not run".into(),
        ));
    }
    let (signed_at, time_source) = signing_times(&result, &parsed, true, now)?
        .into_iter()
        .min_by_key(|(t, _)| *t)
        .ok_or_else(|| VerifyError::NoVerifiedTime("no verified timestamp".into()))?;

    let cert = result
        .certificate()
        .ok_or_else(|| VerifyError::MissingVerificationMaterial("no certificate".into()))?;
    let san = result
        .identity()
        .map(|s| s.as_str().to_string())
        .ok_or_else(|| VerifyError::MalformedCertificate("certificate has no SAN".into()))?;
    let issuer = result.issuer().map(str::to_string).ok_or_else(|| {
        VerifyError::MalformedCertificate("certificate has no OIDC issuer extension".into())
    })?;
    let ci = &cert.ci_claims;
    let fulcio = FulcioClaims {
        build_signer_uri: ci.build_signer_uri.clone(),
        build_signer_digest: ci.build_signer_digest.clone(),
        runner_environment: ci.runner_environment.clone(),
        source_repository_uri: ci.source_repository_uri.clone(),
        source_repository_digest: ci.source_repository_digest.clone(),
        source_repository_ref: ci.source_repository_ref.clone(),
        source_repository_identifier: ci.source_repository_identifier.clone(),
        source_repository_owner_uri: ci.source_repository_owner_uri.clone(),
        build_config_uri: ci.build_config_uri.clone(),
        build_trigger: ci.build_trigger.clone(),
        run_invocation_uri: ci.run_invocation_uri.clone(),
    };

    // The identity policy: sigstore-verify checks only SAN and issuer, and was given
    // none here; every constraint is evaluated in one place, `policy::identity`.
    let claims = IdentityClaims {
        issuer: Some(&issuer),
        san: Some(&san),
        source_repository_uri: fulcio.source_repository_uri.as_deref(),
        source_repository_ref: fulcio.source_repository_ref.as_deref(),
        runner_environment: fulcio.runner_environment.as_deref(),
        build_signer_uri: fulcio.build_signer_uri.as_deref(),
        predicate_type: statement.as_ref().map(|s| s.predicate_type.as_str()),
        subject_digests: statement
            .as_ref()
            .map(|s| s.subjects.iter().map(|x| &x.digest).collect())
            .unwrap_or_default(),
    };
    policy.evaluate(&claims)?;

    Ok(VerifiedBundle {
        media_type,
        san,
        issuer,
        fulcio,
        signed_at,
        time_source,
        certificate_not_before: cert.not_before.as_second(),
        certificate_not_after: cert.not_after.as_second(),
        statement,
        log_indexes: parsed
            .verification_material
            .tlog_entries
            .iter()
            .map(|e| e.log_index.get())
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The gaps this crate wraps are real: sigstore-verify on its own accepts a v0.1
    /// bundle with only a SET (no inclusion proof), and does so whatever the caller's
    /// notion of `now` is. We accept the same signature's v0.1 bundle only with its
    /// inclusion proof and checkpoint.
    #[test]
    fn sigstore_verify_alone_accepts_what_we_refuse() {
        use sigstore_verify::types::Bundle;
        let root = TrustRoot::from_json(include_bytes!(
            "../../tests/data/public-good.sigstore-python-2025.json"
        ))
        .unwrap();
        let v01 = include_str!("../../tests/data/sigstore-js-2.1.0-bundle-v0.1.json");
        let mut set_only: serde_json::Value = serde_json::from_str(v01).unwrap();
        set_only["verificationMaterial"]["tlogEntries"][0]
            .as_object_mut()
            .unwrap()
            .remove("inclusionProof");
        let set_only = serde_json::to_string(&set_only).unwrap();
        let digest = ArtifactDigest::parse(concat!(
            "sha512:90f223f992e4c88dd068cd2a5fc57f9d2b30798343dd6e38f29c240e04ba090e",
            "f831f84490847c4e82b9232c78e8a258463b1e55c0f7469f730265008fa6633f"
        ))
        .unwrap();
        let r = root.verifier.verify(
            sigstore_verify::types::Artifact::Digest(digest.to_sigstore().unwrap()),
            &Bundle::from_json(&set_only).unwrap(),
            &VerificationPolicy::any_identity(),
        );
        assert!(r.is_ok(), "{r:?}");
        let policy = IdentityPolicy::builder()
            .source_repository("sigstore/sigstore-js")
            .build()
            .unwrap();
        let ours = |b: &str| {
            verify_bundle(
                b.as_bytes(),
                Artifact::Digest(&digest),
                &root,
                &policy,
                UnixSecs(1693323623),
            )
        };
        assert_eq!(
            ours(&set_only).unwrap_err().kind(),
            "UnsupportedBundleVersion"
        );
        let v = ours(v01).unwrap();
        assert_eq!(v.media_type(), MEDIA_TYPE_V0_1);
        assert_eq!(v.signed_at(), 1693323623);
    }

    #[test]
    fn rfc3339_formats_known_times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1693323623), "2023-08-29T15:40:23Z");
        assert_eq!(rfc3339(1716578064), "2024-05-24T19:14:24Z");
        assert_eq!(rfc3339(951782400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn media_types() {
        let mt = |m: &str| {
            check_media_type(
                format!(r#"{{"mediaType":"{m}","verificationMaterial":{{"certificate":{{}}}}}}"#)
                    .as_bytes(),
            )
        };
        assert!(mt(MEDIA_TYPE_V0_2).is_ok());
        assert!(mt(MEDIA_TYPE_V0_3).is_ok());
        // v0.1 passes the media-type check; `prepare` then requires proofs.
        assert!(mt(MEDIA_TYPE_V0_1).is_ok());
        assert_eq!(
            mt("application/json").unwrap_err().kind(),
            "UnknownMediaType"
        );
        assert_eq!(
            check_media_type(b"{}").unwrap_err().kind(),
            "MissingMediaType"
        );
        assert_eq!(
            check_media_type(format!(r#"{{"mediaType":"{MEDIA_TYPE_V0_3}"}}"#).as_bytes())
                .unwrap_err()
                .kind(),
            "MissingVerificationMaterial"
        );
        assert_eq!(
            check_media_type(b"[").unwrap_err().kind(),
            "MalformedBundle"
        );
        assert_eq!(
            check_media_type(br#"{"mediaType":3}"#).unwrap_err().kind(),
            "MalformedBundle"
        );
    }
}
