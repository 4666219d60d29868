//! Checks collateral before it is used or cached: every signature chains to the
//! Intel SGX Root CA, and the validity windows are read from the signed bodies.

use super::*;

/// Checks the collateral's signatures to `root_der` (DER), as DCAP will: the TCB
/// info and QE identity signed (raw r‖s over their exact bytes) by the leaf of their
/// issuer chains, the PCK CRL by the leaf of its chain, the root CA CRL by the root,
/// and every chain ending at the root with each certificate signed by the next.
/// Validity windows are DCAP's business at verification time (the collateral's own
/// window is [`FetchedCollateral`]'s); this only decides whether bytes may be cached.
pub fn verify_collateral(c: &QuoteCollateralV3, root_der: &[u8]) -> Result<(), CollateralError> {
    use x509_cert::der::Decode;
    let bad = |what: &str, e: String| CollateralError::Invalid(format!("{what}: {e}"));
    let root = x509_cert::Certificate::from_der(root_der)
        .map_err(|e| bad("trusted root", e.to_string()))?;
    let tcb = chain_leaf(&c.tcb_info_issuer_chain, root_der)
        .map_err(|e| bad("TCB info issuer chain", e))?;
    raw_signature(&tcb, c.tcb_info.as_bytes(), &c.tcb_info_signature)
        .map_err(|e| bad("TCB info", e))?;
    let qe = chain_leaf(&c.qe_identity_issuer_chain, root_der)
        .map_err(|e| bad("QE identity issuer chain", e))?;
    raw_signature(&qe, c.qe_identity.as_bytes(), &c.qe_identity_signature)
        .map_err(|e| bad("QE identity", e))?;
    let pck = chain_leaf(&c.pck_crl_issuer_chain, root_der)
        .map_err(|e| bad("PCK CRL issuer chain", e))?;
    crl_signed_by(&c.pck_crl, &pck).map_err(|e| bad("PCK CRL", e))?;
    crl_signed_by(&c.root_ca_crl, &root).map_err(|e| bad("root CA CRL", e))?;
    Ok(())
}

pub(super) fn cert_key(cert: &x509_cert::Certificate) -> Result<p256::ecdsa::VerifyingKey, String> {
    let bits = cert
        .tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .as_bytes()
        .ok_or("key bit string")?;
    p256::ecdsa::VerifyingKey::from_sec1_bytes(bits).map_err(|_| "not a P-256 key".to_string())
}

/// ECDSA-SHA256 (DER signature) of `issuer` over `tbs`.
pub(super) fn der_signature(
    issuer: &x509_cert::Certificate,
    alg: &x509_cert::spki::AlgorithmIdentifierOwned,
    tbs: &[u8],
    sig: &x509_cert::der::asn1::BitString,
) -> Result<(), String> {
    use p256::ecdsa::signature::Verifier;
    const ECDSA_SHA256: x509_cert::der::oid::ObjectIdentifier =
        x509_cert::der::oid::ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
    if alg.oid != ECDSA_SHA256 {
        return Err("not signed with ECDSA-SHA256".into());
    }
    let s = p256::ecdsa::Signature::from_der(sig.as_bytes().ok_or("signature bit string")?)
        .map_err(|_| "malformed signature".to_string())?;
    cert_key(issuer)?
        .verify(tbs, &s)
        .map_err(|_| "signature does not verify".to_string())
}

/// The first certificate of a PEM chain that ends at `root_der`, each certificate
/// signed by the next (and each issuer a CA).
pub(super) fn chain_leaf(pem: &str, root_der: &[u8]) -> Result<x509_cert::Certificate, String> {
    use x509_cert::der::Encode;
    use x509_cert::ext::pkix::BasicConstraints;
    let chain =
        x509_cert::Certificate::load_pem_chain(pem.as_bytes()).map_err(|e| e.to_string())?;
    if chain.is_empty() || chain.len() > 5 {
        return Err(format!("{} certificates", chain.len()));
    }
    let last = chain
        .last()
        .and_then(|c| c.to_der().ok())
        .unwrap_or_default();
    if last != root_der {
        return Err("does not end at the trusted root CA".into());
    }
    for (cert, issuer) in chain.iter().zip(chain.iter().skip(1)) {
        if !matches!(issuer.tbs_certificate.get::<BasicConstraints>(), Ok(Some((_, bc))) if bc.ca) {
            return Err(format!("{} is not a CA", issuer.tbs_certificate.subject));
        }
        let tbs = cert.tbs_certificate.to_der().map_err(|e| e.to_string())?;
        der_signature(issuer, &cert.signature_algorithm, &tbs, &cert.signature)
            .map_err(|e| format!("{}: {e}", cert.tbs_certificate.subject))?;
    }
    chain.into_iter().next().ok_or_else(|| "empty chain".into())
}

/// Intel's raw r‖s ECDSA-SHA256 signature of `signer` over `msg`.
pub(super) fn raw_signature(
    signer: &x509_cert::Certificate,
    msg: &[u8],
    rs: &[u8],
) -> Result<(), String> {
    use p256::ecdsa::signature::Verifier;
    let s =
        p256::ecdsa::Signature::from_slice(rs).map_err(|_| "malformed signature".to_string())?;
    cert_key(signer)?
        .verify(msg, &s)
        .map_err(|_| "signature does not verify".to_string())
}

/// A DER CRL issued and signed by `issuer`.
pub(super) fn crl_signed_by(der: &[u8], issuer: &x509_cert::Certificate) -> Result<(), String> {
    use x509_cert::der::{Decode, Encode};
    let crl = x509_cert::crl::CertificateList::from_der(der).map_err(|e| e.to_string())?;
    if crl.tbs_cert_list.issuer != issuer.tbs_certificate.subject {
        return Err(format!(
            "issued by {}, not {}",
            crl.tbs_cert_list.issuer, issuer.tbs_certificate.subject
        ));
    }
    let tbs = crl.tbs_cert_list.to_der().map_err(|e| e.to_string())?;
    der_signature(issuer, &crl.signature_algorithm, &tbs, &crl.signature)
}

pub(super) fn rfc3339_secs(s: &str) -> Result<u64, String> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("date {s:?}: {e}"))?;
    u64::try_from(t.unix_timestamp()).map_err(|_| format!("date {s:?} is before 1970"))
}

/// The FMSPC and (issueDate, nextUpdate) of a TDX TCB info.
pub(super) fn tcb_info_fields(json: &str) -> Result<(Fmspc, (u64, u64)), String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Fields {
        id: String,
        fmspc: String,
        issue_date: String,
        next_update: String,
    }
    let f: Fields = serde_json::from_str(json).map_err(|e| e.to_string())?;
    if f.id != "TDX" {
        return Err(format!("id is {:?}, not \"TDX\"", f.id));
    }
    let fmspc = Fmspc::from_hex(&f.fmspc).ok_or_else(|| format!("FMSPC {:?}", f.fmspc))?;
    Ok((
        fmspc,
        (rfc3339_secs(&f.issue_date)?, rfc3339_secs(&f.next_update)?),
    ))
}

/// (issueDate, nextUpdate) of a TD QE identity.
pub(super) fn qe_identity_window(json: &str) -> Result<(u64, u64), String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Fields {
        id: String,
        issue_date: String,
        next_update: String,
    }
    let f: Fields = serde_json::from_str(json).map_err(|e| e.to_string())?;
    if f.id != "TD_QE" {
        return Err(format!("id is {:?}, not \"TD_QE\"", f.id));
    }
    Ok((rfc3339_secs(&f.issue_date)?, rfc3339_secs(&f.next_update)?))
}

/// (thisUpdate, nextUpdate) of a DER CRL. A CRL without nextUpdate is refused: it
/// would give the collateral no expiry.
pub(super) fn crl_window(der: &[u8]) -> Result<(u64, u64), String> {
    use x509_cert::der::Decode;
    let crl = x509_cert::crl::CertificateList::from_der(der).map_err(|e| format!("CRL: {e}"))?;
    let tbs = &crl.tbs_cert_list;
    let next = tbs.next_update.ok_or("CRL has no nextUpdate")?;
    Ok((
        tbs.this_update.to_unix_duration().as_secs(),
        next.to_unix_duration().as_secs(),
    ))
}
