//! PEM and DER: the key and certificate files the policy names, checked and
//! re-encoded so the rendered material is canonical.
//!
//! A reader of its own: `signatures` parses PEM and SPKI only inside its cosign
//! verifier and exposes neither.

use std::path::Path;

use base64::Engine as _;

use crate::RenderError;

/// The PEM blocks in `data`: (label, DER). Text outside blocks is ignored, as
/// RFC 7468 allows.
pub(crate) fn pem_blocks(data: &[u8]) -> Result<Vec<(String, Vec<u8>)>, String> {
    let text = std::str::from_utf8(data).map_err(|_| "not UTF-8 text (PEM expected)")?;
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let after = &rest[start + 11..];
        let label_end = after.find("-----").ok_or("unterminated PEM header")?;
        let label = &after[..label_end];
        let body_start = &after[label_end + 5..];
        let end_marker = format!("-----END {label}-----");
        let body_end = body_start
            .find(&end_marker)
            .ok_or_else(|| format!("no {end_marker:?}"))?;
        let b64: String = body_start[..body_end]
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(b64.as_bytes())
            .map_err(|e| format!("bad base64 in the {label} block: {e}"))?;
        blocks.push((label.to_owned(), der));
        rest = &body_start[body_end + end_marker.len()..];
    }
    Ok(blocks)
}

pub(crate) fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        s.push_str(&String::from_utf8_lossy(chunk));
        s.push('\n');
    }
    s.push_str(&format!("-----END {label}-----\n"));
    s
}

const OID_EC: &str = "1.2.840.10045.2.1";
const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_ED25519: &str = "1.3.101.112";

/// Checks DER is a SubjectPublicKeyInfo of a kind cosign and podman use.
pub(crate) fn check_spki(der: &[u8]) -> Result<(), String> {
    use der::Decode as _;
    let spki = spki::SubjectPublicKeyInfoRef::from_der(der)
        .map_err(|e| format!("not a SubjectPublicKeyInfo: {e}"))?;
    let oid = spki.algorithm.oid.to_string();
    if ![OID_EC, OID_RSA, OID_ED25519].contains(&oid.as_str()) {
        return Err(format!(
            "unsupported public key algorithm {oid} (ECDSA, RSA or Ed25519 expected)"
        ));
    }
    Ok(())
}

/// One `PUBLIC KEY` PEM block, checked and re-encoded.
pub(crate) fn public_key_pem(path: &Path, data: &[u8]) -> Result<Vec<u8>, RenderError> {
    let bad = |detail: String| RenderError::BadKey {
        path: path.display().to_string(),
        detail,
    };
    let blocks = pem_blocks(data).map_err(bad)?;
    let keys: Vec<_> = blocks.iter().filter(|(l, _)| l == "PUBLIC KEY").collect();
    match keys.as_slice() {
        [(_, der)] => {
            check_spki(der).map_err(bad)?;
            Ok(pem_encode("PUBLIC KEY", der).into_bytes())
        }
        [] => Err(bad(
            "no PEM \"PUBLIC KEY\" block (a cosign public key expected)".into(),
        )),
        _ => Err(bad(
            "several PUBLIC KEY blocks; give each key its own file".into()
        )),
    }
}

pub(crate) fn check_certificate(der: &[u8]) -> Result<(), String> {
    use der::Decode as _;
    x509_cert::Certificate::from_der(der)
        .map(|_| ())
        .map_err(|e| format!("not an X.509 certificate: {e}"))
}

/// Every `CERTIFICATE` block, checked and re-encoded (at least one).
pub(crate) fn certificates_pem(path: &Path, data: &[u8]) -> Result<Vec<u8>, RenderError> {
    let bad = |detail: String| RenderError::BadCertificate {
        path: path.display().to_string(),
        detail,
    };
    let mut pem = String::new();
    for (label, der) in pem_blocks(data).map_err(bad)? {
        if label == "CERTIFICATE" {
            check_certificate(&der).map_err(bad)?;
            pem.push_str(&pem_encode("CERTIFICATE", &der));
        }
    }
    if pem.is_empty() {
        return Err(bad("no PEM CERTIFICATE block".into()));
    }
    Ok(pem.into_bytes())
}
