//! Sigstore bundle verification: [`verify_bundle`] and the [`VerifiedBundle`] it returns.
//! The guarantees are listed in the crate doc.

mod artifact;
mod error;
mod statement;
mod trust_root;
use provenant_base::clock::UnixSecs;
use std::path::Path;

use policy::identity::{IdentityClaims, IdentityPolicy};
use sigstore_verify::types::{Bundle, SignatureContent};
use sigstore_verify::VerificationPolicy;

pub use artifact::{Artifact, ArtifactDigest, DigestAlgorithm};
use error::map_sigstore_error;
pub use error::VerifyError;
use statement::parse_statement;
pub use statement::{Statement, Subject, IN_TOTO_PAYLOAD_TYPE, MAX_SUBJECTS};
pub use trust_root::{Instance, TrustRoot, TrustRootError, MAX_TRUSTED_ROOT_BYTES};

/// Largest bundle accepted. Real GitHub attestation bundles are 5–20 KiB; the SLSA
/// predicate is the variable part and stays far below this. The bound is checked
/// before any parsing, so a hostile server cannot make us parse megabytes of JSON.
pub const MAX_BUNDLE_BYTES: usize = 2 * 1024 * 1024;

/// Bundle v0.1 media type (refused as unsupported).
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
        MEDIA_TYPE_V0_2 | MEDIA_TYPE_V0_3 | MEDIA_TYPE_V0_3_ALT if !has_key_material => Err(
            VerifyError::MissingVerificationMaterial("no certificate or public key".into()),
        ),
        MEDIA_TYPE_V0_2 | MEDIA_TYPE_V0_3 | MEDIA_TYPE_V0_3_ALT => Ok(mt),
        MEDIA_TYPE_V0_1 => Err(VerifyError::UnsupportedBundleVersion(mt)),
        _ => Err(VerifyError::UnknownMediaType(
            mt.chars().take(200).collect(),
        )),
    }
}

/// Verify one Sigstore bundle offline at `now`.
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
    if bundle.len() > MAX_BUNDLE_BYTES {
        return Err(VerifyError::BundleTooLarge {
            max: MAX_BUNDLE_BYTES,
        });
    }
    let media_type = check_media_type(bundle)?;
    let text = std::str::from_utf8(bundle)
        .map_err(|_| VerifyError::MalformedBundle("not UTF-8".into()))?;
    let parsed =
        Bundle::from_json(text).map_err(|e| VerifyError::MalformedBundle(e.to_string()))?;

    use sigstore_verify::types::bundle::VerificationMaterialContent as Vm;
    match &parsed.verification_material.content {
        Vm::Certificate(_) | Vm::X509CertificateChain { .. } => {}
        Vm::PublicKey(_) => return Err(VerifyError::NotKeyless),
        _ => {
            return Err(VerifyError::MissingVerificationMaterial(
                "no certificate".into(),
            ))
        }
    }
    if let Vm::X509CertificateChain { certificates } = &parsed.verification_material.content {
        if certificates.is_empty() {
            return Err(VerifyError::MissingVerificationMaterial(
                "empty certificate chain".into(),
            ));
        }
    }

    let tlog_entries = &parsed.verification_material.tlog_entries;
    // Gap wrapped: sigstore-verify looks a SET's key up by log ID and reports an
    // unknown ID as an inclusion-promise failure, and an entry with only an inclusion
    // proof is matched by the checkpoint's key hint, never by its log ID. We require
    // every entry's log ID to name a log of the trusted root, and say so.
    for entry in tlog_entries {
        let id = entry.log_id.key_id.as_bytes();
        if !root.tlog_ids.iter().any(|t| t.as_slice() == id) {
            return Err(VerifyError::UnknownLog(hex::encode(id)));
        }
    }
    let sigstore_policy = match root.instance {
        Instance::File => {
            // Gap wrapped: with a TSA timestamp and no log entry, sigstore-verify's
            // structural check would let a v0.2 bundle through. A Rekor-backed
            // instance must show the signature in its log (gh: tlog threshold 1).
            if tlog_entries.is_empty() {
                return Err(VerifyError::NoTransparencyLogEntry);
            }
            VerificationPolicy::any_identity()
        }
        // GitHub's instance has neither Rekor nor a CT log (gh does the same).
        Instance::GitHub => VerificationPolicy::any_identity()
            .skip_tlog_unsafe()
            .skip_sct(),
    };

    let statement = match &parsed.content {
        SignatureContent::DsseEnvelope(env) => {
            if env.payload_type != IN_TOTO_PAYLOAD_TYPE {
                return Err(VerifyError::UnsupportedBundle(format!(
                    "DSSE payload type {:?} is not an in-toto statement",
                    env.payload_type.chars().take(200).collect::<String>()
                )));
            }
            Some(parse_statement(env.payload.as_bytes())?)
        }
        SignatureContent::MessageSignature(_) => None,
        _ => {
            return Err(VerifyError::MissingVerificationMaterial(
                "no signature content".into(),
            ))
        }
    };

    let owned_digest;
    let ss_artifact = match artifact {
        Artifact::Bytes(b) => sigstore_verify::types::Artifact::Blob(b),
        Artifact::Digest(d) => {
            owned_digest = d.to_sigstore()?;
            sigstore_verify::types::Artifact::Digest(owned_digest)
        }
        Artifact::StatementSubjects => {
            let st = statement.as_ref().ok_or(VerifyError::ArtifactRequired)?;
            let d = st
                .subjects
                .iter()
                .find_map(|s| {
                    [DigestAlgorithm::Sha256, DigestAlgorithm::Sha512]
                        .into_iter()
                        .find_map(|alg| {
                            let h = s.digest.get(alg.as_str())?;
                            ArtifactDigest::new(alg, &hex::decode(h).ok()?).ok()
                        })
                })
                .ok_or_else(|| {
                    VerifyError::InvalidStatement("no subject with a sha256/sha512 digest".into())
                })?;
            sigstore_verify::types::Artifact::Digest(d.to_sigstore()?)
        }
    };

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

    // Signing times: sigstore-verify returns the TSA times first (one per token, in
    // order), then the SET-authenticated integrated times.
    let n_tsa = parsed
        .verification_material
        .timestamp_verification_data
        .rfc3161_timestamps
        .len();
    let times: Vec<(i64, TimeSource)> = result
        .verified_timestamps()
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let src = if i < n_tsa {
                TimeSource::Rfc3161
            } else {
                TimeSource::Rekor
            };
            (t.as_second(), src)
        })
        .collect();
    // Gap wrapped: sigstore-verify compares times with the wall clock
    // (`jiff::Timestamp::now()`), not a caller-supplied time. We take `now`
    // explicitly and refuse a signature verified as made after it.
    for (t, _) in &times {
        if *t > now.get() {
            return Err(VerifyError::SignedAfterNow {
                signed_at: *t,
                now: now.get(),
            });
        }
    }
    let (signed_at, time_source) = times
        .iter()
        .copied()
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The gaps this crate wraps are real: sigstore-verify on its own accepts a v0.1
    /// bundle, and does so whatever the caller's notion of `now` is.
    #[test]
    fn sigstore_verify_alone_accepts_what_we_refuse() {
        let root = TrustRoot::from_json(include_bytes!(
            "../../tests/data/public-good.sigstore-python-2025.json"
        ))
        .unwrap();
        let v01 = include_str!("../../tests/data/sigstore-js-2.1.0-bundle-v0.1.json");
        let bundle = Bundle::from_json(v01).unwrap();
        let digest = ArtifactDigest::parse(concat!(
            "sha512:90f223f992e4c88dd068cd2a5fc57f9d2b30798343dd6e38f29c240e04ba090e",
            "f831f84490847c4e82b9232c78e8a258463b1e55c0f7469f730265008fa6633f"
        ))
        .unwrap();
        let r = root.verifier.verify(
            sigstore_verify::types::Artifact::Digest(digest.to_sigstore().unwrap()),
            &bundle,
            &VerificationPolicy::any_identity(),
        );
        assert!(r.is_ok(), "{r:?}");
        let policy = IdentityPolicy::builder()
            .source_repository("sigstore/sigstore-js")
            .build()
            .unwrap();
        let ours = verify_bundle(
            v01.as_bytes(),
            Artifact::Digest(&digest),
            &root,
            &policy,
            UnixSecs(1693323623),
        );
        assert_eq!(ours.unwrap_err().kind(), "UnsupportedBundleVersion");
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
        assert_eq!(
            mt(MEDIA_TYPE_V0_1).unwrap_err().kind(),
            "UnsupportedBundleVersion"
        );
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
