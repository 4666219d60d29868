//! PEM and DER: the key and certificate files the policy names, checked and
//! re-encoded so the rendered material is canonical.
//!
//! A reader of its own: `signatures` parses PEM and SPKI only inside its cosign
//! verifier and exposes neither.

use std::path::Path;

use crate::RenderError;

/// The PEM blocks in `data`: (label, DER), through [`provenant_base::pem`]. Text
/// outside blocks is ignored, as RFC 7468 allows.
pub(crate) fn pem_blocks(data: &[u8]) -> Result<Vec<(String, Vec<u8>)>, String> {
    provenant_base::pem::blocks_in(data)
        .and_then(|bs| {
            bs.iter()
                .map(|b| Ok((b.label.to_owned(), b.der()?)))
                .collect()
        })
        .map_err(|e| e.to_string())
}

pub(crate) use provenant_base::pem::encode as pem_encode;

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
