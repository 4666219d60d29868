//! `trusted_root.json`: the Fulcio CA certificates and the SET-signing Rekor key
//! podman's `fulcio` requirement needs, taken from a Sigstore trusted root.
//!
//! A reading of its own, not `signatures::TrustRoot`: that type keeps the parsed root
//! private (it only verifies bundles), and podman needs the raw CA and log-key DER,
//! with each left-out log named in a warning.

use std::collections::BTreeSet;
use std::path::Path;

use base64::Engine as _;
use serde::Deserialize;

use crate::pem::{check_certificate, check_spki, pem_encode};
use crate::RenderError;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TrustedRoot {
    media_type: String,
    #[serde(default)]
    tlogs: Vec<Tlog>,
    #[serde(default)]
    certificate_authorities: Vec<CertificateAuthority>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Tlog {
    #[serde(default)]
    base_url: String,
    public_key: TlogKey,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TlogKey {
    raw_bytes: String,
    #[serde(default)]
    key_details: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CertificateAuthority {
    cert_chain: CertChain,
}

#[derive(Deserialize)]
struct CertChain {
    certificates: Vec<RawBytes>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawBytes {
    raw_bytes: String,
}

/// Fulcio CA PEM bundle, Rekor key PEM, and the log keys left out.
pub(crate) type RootMaterial = (Vec<u8>, Vec<u8>, Vec<String>);

/// From a `trusted_root.json`: every Fulcio CA certificate (all chains, as one PEM
/// bundle: podman's `caPath`), the one SET-signing (ECDSA, Rekor v1) Rekor key, and a
/// description of each log key left out (Rekor v2 logs sign no SETs).
pub(crate) fn from_trusted_root(path: &Path, data: &[u8]) -> Result<RootMaterial, RenderError> {
    let bad = |detail: String| RenderError::BadTrustedRoot {
        path: path.display().to_string(),
        detail,
    };
    let root: TrustedRoot = serde_json::from_slice(data).map_err(|e| bad(e.to_string()))?;
    if !root
        .media_type
        .starts_with("application/vnd.dev.sigstore.trustedroot")
    {
        return Err(bad(format!("unexpected mediaType {:?}", root.media_type)));
    }
    let b64 = |s: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .map_err(|e| bad(format!("bad base64: {e}")))
    };
    let mut ca = String::new();
    let mut seen = BTreeSet::new();
    for authority in &root.certificate_authorities {
        for c in &authority.cert_chain.certificates {
            let der = b64(&c.raw_bytes)?;
            check_certificate(&der).map_err(|e| bad(format!("certificate authority: {e}")))?;
            if seen.insert(der.clone()) {
                ca.push_str(&pem_encode("CERTIFICATE", &der));
            }
        }
    }
    if ca.is_empty() {
        return Err(bad("no certificate authorities (Fulcio)".into()));
    }
    let mut rekor: Vec<(String, Vec<u8>)> = Vec::new();
    let mut skipped = Vec::new();
    for t in &root.tlogs {
        let der = b64(&t.public_key.raw_bytes)?;
        if t.public_key.key_details.starts_with("PKIX_ECDSA") {
            check_spki(&der).map_err(|e| bad(format!("Rekor key of {}: {e}", t.base_url)))?;
            if !rekor.iter().any(|(_, d)| d == &der) {
                rekor.push((t.base_url.clone(), der));
            }
        } else {
            skipped.push(format!(
                "the {} key of log {}",
                if t.public_key.key_details.is_empty() {
                    "unspecified"
                } else {
                    &t.public_key.key_details
                },
                t.base_url
            ));
        }
    }
    match rekor.as_slice() {
        [(_, der)] => Ok((
            ca.into_bytes(),
            pem_encode("PUBLIC KEY", der).into_bytes(),
            skipped,
        )),
        [] => Err(bad("no ECDSA (SET-signing) Rekor key in tlogs".into())),
        several => Err(bad(format!(
            "{} ECDSA Rekor keys ({}); podman's rekorPublicKeyPath takes one: give fulcio_ca and rekor_key instead",
            several.len(),
            several
                .iter()
                .map(|(u, _)| u.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}
