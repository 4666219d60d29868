//! What every bundle goes through before `sigstore-verify` sees it, keyless or
//! managed-key alike: the size bound, the media-type policy, protobuf-JSON base64,
//! parsing, the log-ID and inclusion-proof requirements, and the statement. And the
//! two steps after it: the artifact handed to `sigstore-verify`, and the signing
//! times checked against `now`.

use provenant_base::clock::UnixSecs;
use sigstore_verify::types::bundle::VerificationMaterialContent as Vm;
use sigstore_verify::types::{Bundle, KindVersion, SignatureContent};
use sigstore_verify::VerificationResult;

use super::{
    check_media_type, parse_statement, protojson, Artifact, ArtifactDigest, DigestAlgorithm,
    Instance, Statement, TimeSource, TrustRoot, VerifyError, IN_TOTO_PAYLOAD_TYPE,
    MAX_BUNDLE_BYTES, MEDIA_TYPE_V0_1,
};

/// Which verification material the caller verifies against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Material {
    /// A Fulcio certificate (and the identity policy).
    Keyless,
    /// A public key the caller trusts (the bundle carries only a hint).
    ManagedKey,
}

/// A bundle that passed the checks every path shares.
pub(super) struct Prepared {
    pub(super) media_type: String,
    pub(super) parsed: Bundle,
    pub(super) statement: Option<Statement>,
}

pub(super) fn prepare(
    bundle: &[u8],
    root: &TrustRoot,
    material: Material,
) -> Result<Prepared, VerifyError> {
    if bundle.len() > MAX_BUNDLE_BYTES {
        return Err(VerifyError::BundleTooLarge {
            max: MAX_BUNDLE_BYTES,
        });
    }
    let media_type = check_media_type(bundle)?;
    let normalized = protojson::normalize(bundle)?;
    let text = std::str::from_utf8(&normalized)
        .map_err(|_| VerifyError::MalformedBundle("not UTF-8".into()))?;
    let parsed = Bundle::from_json(text).map_err(parse_error)?;

    match (&parsed.verification_material.content, material) {
        (Vm::Certificate(_) | Vm::X509CertificateChain { .. }, Material::Keyless) => {}
        (Vm::PublicKey(_), Material::ManagedKey) => {}
        (Vm::PublicKey(_), Material::Keyless) => return Err(VerifyError::NotKeyless),
        (Vm::Certificate(_) | Vm::X509CertificateChain { .. }, Material::ManagedKey) => {
            return Err(VerifyError::NotManagedKey)
        }
        _ => {
            return Err(VerifyError::MissingVerificationMaterial(
                "no certificate or public key".into(),
            ))
        }
    }
    if let Vm::X509CertificateChain { certificates } = &parsed.verification_material.content {
        if certificates.is_empty() {
            return Err(VerifyError::MissingVerificationMaterial(
                "empty certificate chain".into(),
            ));
        }
        // Gap wrapped: the bundle spec says the chain MUST NOT carry the root (the
        // trust anchor comes from the trusted root alone). sigstore-verify does not
        // look for one: it hands the extra certificates to webpki as candidate
        // intermediates. We refuse a chain with a self-issued certificate.
        for (i, c) in certificates.iter().enumerate() {
            use der::Decode as _;
            let cert = x509_cert::Certificate::from_der(c.raw_bytes.as_bytes())
                .map_err(|e| VerifyError::MalformedCertificate(format!("certificate {i}: {e}")))?;
            if cert.tbs_certificate.subject == cert.tbs_certificate.issuer {
                return Err(VerifyError::CertificateChain(format!(
                    "certificate {i} of the bundle's chain is a root (self-issued: {}); \
                     the trust anchor must come from the trusted root only",
                    cert.tbs_certificate.subject
                )));
            }
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
    for (i, entry) in tlog_entries.iter().enumerate() {
        // Gap wrapped: sigstore-bundle's structural validation refuses a proof
        // without a checkpoint before the proof itself is computed, so a proof that
        // does not even reach its own root hash was reported as a missing checkpoint.
        // The Merkle path is checked here first (with the crate's own function; it
        // checks it again later), so such a bundle is refused for what is wrong
        // with it. The checkpoint is still required below.
        if let Some(proof) = &entry.inclusion_proof {
            let (index, size, root_hash) = if entry.kind_version == KindVersion::HashedRekordV002 {
                // Rekor v2: the signed checkpoint's size and root are the proof's
                // (the proof's own copies are unauthenticated), as sigstore-verify does.
                let Some(cp) = proof.checkpoint.checkpoint() else {
                    return Err(VerifyError::Checkpoint(format!(
                        "log entry {i}: inclusion proof has no checkpoint"
                    )));
                };
                (entry.log_index.get(), cp.tree_size(), *cp.root_hash())
            } else {
                (proof.log_index.get(), proof.tree_size, proof.root_hash)
            };
            let leaf = sigstore_merkle::hash_leaf(entry.canonicalized_body.as_bytes());
            sigstore_merkle::verify_inclusion_proof(&leaf, index, size, &proof.hashes, &root_hash)
                .map_err(|e| VerifyError::InclusionProof(format!("log entry {i}: {e}")))?;
        }
    }

    if root.instance == Instance::File {
        // Gap wrapped: with a TSA timestamp and no log entry, sigstore-verify's
        // structural check would let a v0.2 bundle through. A Rekor-backed
        // instance must show the signature in its log (gh: tlog threshold 1).
        if tlog_entries.is_empty() {
            return Err(VerifyError::NoTransparencyLogEntry);
        }
        // Gap wrapped: sigstore-bundle requires an inclusion proof on *some* entry
        // (v0.2, v0.3) or none at all (v0.1, where a SET suffices). We require one,
        // with its checkpoint, on every entry of every version: that is what makes a
        // v0.1 bundle acceptable (see the README), and an entry without one proves
        // nothing about the log.
        for (i, entry) in tlog_entries.iter().enumerate() {
            let Some(proof) = &entry.inclusion_proof else {
                return Err(if media_type == MEDIA_TYPE_V0_1 {
                    VerifyError::UnsupportedBundleVersion(format!(
                        "{media_type} with only a signed entry timestamp (log entry {i} has \
                         no inclusion proof; v0.1 is accepted only with one and a checkpoint)"
                    ))
                } else {
                    VerifyError::InclusionProof(format!("log entry {i} has no inclusion proof"))
                });
            };
            if proof.checkpoint.checkpoint().is_none() {
                return Err(VerifyError::Checkpoint(format!(
                    "log entry {i}: inclusion proof has no checkpoint"
                )));
            }
        }
    } else if media_type == MEDIA_TYPE_V0_1 {
        // GitHub's instance has no log, and v0.1 predates it: a v0.1 bundle could only
        // be SET-backed here, which this verifier does not accept.
        return Err(VerifyError::UnsupportedBundleVersion(format!(
            "{media_type} without a transparency log"
        )));
    }

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
    Ok(Prepared {
        media_type,
        parsed,
        statement,
    })
}

/// `sigstore-types` parses the checkpoint note while it deserializes the bundle and
/// reports a malformed one as a JSON error; name it as the checkpoint it is.
fn parse_error(e: sigstore_verify::types::Error) -> VerifyError {
    let s = e.to_string();
    if s.contains("Invalid checkpoint format") {
        VerifyError::Checkpoint(s)
    } else {
        VerifyError::MalformedBundle(s)
    }
}

/// What `sigstore-verify` binds the bundle to.
pub(super) fn sigstore_artifact<'a>(
    artifact: Artifact<'a>,
    statement: Option<&Statement>,
) -> Result<sigstore_verify::types::Artifact<'a>, VerifyError> {
    Ok(match artifact {
        Artifact::Bytes(b) => sigstore_verify::types::Artifact::Blob(b),
        Artifact::Digest(d) => sigstore_verify::types::Artifact::Digest(d.to_sigstore()?),
        Artifact::StatementSubjects => {
            let st = statement.ok_or(VerifyError::ArtifactRequired)?;
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
    })
}

/// The verified signing times with their sources, each checked against `now`.
///
/// sigstore-verify lists the RFC 3161 times (one per token, in order) and the
/// SET-authenticated integrated times: TSA first on the keyless path, Rekor first on
/// the managed-key path (`tsa_first`).
///
/// Gap wrapped: sigstore-verify compares times with the wall clock
/// (`jiff::Timestamp::now()`), not a caller-supplied time. We take `now`
/// explicitly and refuse a signature verified as made after it.
pub(super) fn signing_times(
    result: &VerificationResult,
    parsed: &Bundle,
    tsa_first: bool,
    now: UnixSecs,
) -> Result<Vec<(i64, TimeSource)>, VerifyError> {
    let all = result.verified_timestamps();
    let n_tsa = parsed
        .verification_material
        .timestamp_verification_data
        .rfc3161_timestamps
        .len()
        .min(all.len());
    let n_first = if tsa_first { n_tsa } else { all.len() - n_tsa };
    let (first, second) = if tsa_first {
        (TimeSource::Rfc3161, TimeSource::Rekor)
    } else {
        (TimeSource::Rekor, TimeSource::Rfc3161)
    };
    let times: Vec<(i64, TimeSource)> = all
        .iter()
        .enumerate()
        .map(|(i, t)| (t.as_second(), if i < n_first { first } else { second }))
        .collect();
    for (t, _) in &times {
        if *t > now.get() {
            return Err(VerifyError::SignedAfterNow {
                signed_at: *t,
                now: now.get(),
            });
        }
    }
    Ok(times)
}
