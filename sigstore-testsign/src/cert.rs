//! Fulcio-style leaf certificates with an embedded SCT.

use der::{Decode as _, Encode as _};
use ring::rand::SystemRandom;
use ring::signature::EcdsaKeyPair;
use sha2::{Digest, Sha256};
use x509_cert::Certificate;

use crate::der::{extension, octets, oid, seq, time, tlv, uint, utf8};
use crate::{Error, Identity};

/// Fulcio's OID arc, 1.3.6.1.4.1.57264.1.
const FULCIO: [u64; 8] = [1, 3, 6, 1, 4, 1, 57264, 1];
const ECDSA_WITH_SHA384: [u64; 7] = [1, 2, 840, 10045, 4, 3, 3];
const CT_PRECERT_SCTS: [u64; 10] = [1, 3, 6, 1, 4, 1, 11129, 2, 4, 2];

/// SPKI DER of an uncompressed P-256 point.
pub(crate) fn p256_spki(point: &[u8]) -> Vec<u8> {
    let mut out =
        hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200").unwrap_or_default();
    out.extend_from_slice(point);
    out
}

pub(crate) struct LeafRequest<'a> {
    pub(crate) issuer_der: &'a [u8],
    pub(crate) issuer_key: &'a EcdsaKeyPair,
    /// The CT log's key and SPKI DER, when an SCT is to be embedded.
    pub(crate) ctlog: Option<(&'a EcdsaKeyPair, &'a [u8])>,
    pub(crate) public_key: &'a [u8],
    pub(crate) serial: &'a [u8],
    pub(crate) not_before: i64,
    pub(crate) not_after: i64,
    pub(crate) identity: &'a Identity,
    pub(crate) rng: &'a SystemRandom,
}

fn fulcio_oid(n: u64) -> Vec<u64> {
    let mut arcs = FULCIO.to_vec();
    arcs.push(n);
    arcs
}

/// The Fulcio extensions for a GitHub Actions token, in Fulcio's order: the legacy
/// raw-string `.1`–`.6`, then `.8`–`.22` as DER UTF8String.
fn fulcio_extensions(id: &Identity) -> Vec<Vec<u8>> {
    let legacy: [(u64, &str); 6] = [
        (1, &id.issuer),
        (2, &id.event_name),
        (3, &id.sha),
        (4, &id.workflow_name),
        (5, &id.repository),
        (6, &id.git_ref),
    ];
    let mut out: Vec<Vec<u8>> = legacy
        .iter()
        .map(|(n, v)| extension(&fulcio_oid(*n), false, v.as_bytes()))
        .collect();
    let owner_id = id.owner_id.clone();
    let v2: [(u64, String); 15] = [
        (8, id.issuer.clone()),
        (9, id.san()),
        (10, id.signer_sha().to_string()),
        (11, id.runner_environment.clone()),
        (12, id.source_repository_uri()),
        (13, id.sha.clone()),
        (14, id.git_ref.clone()),
        (15, id.repository_id.clone()),
        (16, id.owner_uri()),
        (17, owner_id),
        (18, id.build_config_uri()),
        (19, id.sha.clone()),
        (20, id.event_name.clone()),
        (21, id.run_invocation_uri()),
        (22, id.visibility.clone()),
    ];
    out.extend(
        v2.iter()
            .map(|(n, v)| extension(&fulcio_oid(*n), false, &utf8(v))),
    );
    out
}

fn tbs(req: &LeafRequest<'_>, issuer: &Certificate, exts: &[Vec<u8>]) -> Result<Vec<u8>, Error> {
    let issuer_name = issuer
        .tbs_certificate
        .subject
        .to_der()
        .map_err(|e| Error::Key(format!("issuer name: {e}")))?;
    let validity = seq(&[time(req.not_before)?, time(req.not_after)?]);
    Ok(seq(&[
        tlv(0xa0, &uint(&[2])),
        uint(req.serial),
        seq(&[oid(&ECDSA_WITH_SHA384)]),
        issuer_name,
        validity,
        seq(&[]),
        p256_spki(req.public_key),
        tlv(0xa3, &seq(exts)),
    ]))
}

/// The issuer's subject key identifier, for the leaf's authority key identifier.
fn issuer_ski(issuer: &Certificate) -> Result<Vec<u8>, Error> {
    use x509_cert::ext::pkix::SubjectKeyIdentifier;
    match issuer.tbs_certificate.get::<SubjectKeyIdentifier>() {
        Ok(Some((_, ski))) => Ok(ski.0.as_bytes().to_vec()),
        _ => Err(Error::Key(
            "Fulcio intermediate has no subject key identifier".into(),
        )),
    }
}

/// Issues the leaf: builds the precertificate TBS (every extension but the SCT list),
/// has the CT key sign it (RFC 6962 `precert_entry`), appends the SCT list and signs
/// the final TBS with the intermediate (ecdsa-with-SHA384).
pub(crate) fn issue_leaf(req: &LeafRequest<'_>) -> Result<Vec<u8>, Error> {
    let issuer = Certificate::from_der(req.issuer_der)
        .map_err(|e| Error::Key(format!("Fulcio intermediate: {e}")))?;
    let issuer_spki = issuer
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|e| Error::Key(format!("issuer SPKI: {e}")))?;

    let ski = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, req.public_key);
    let san = seq(&[tlv(0x86, req.identity.san().as_bytes())]);
    let mut exts = vec![
        // keyUsage: digitalSignature, critical.
        extension(&[2, 5, 29, 15], true, &[0x03, 0x02, 0x07, 0x80]),
        // extKeyUsage: codeSigning.
        extension(
            &[2, 5, 29, 37],
            false,
            &seq(&[oid(&[1, 3, 6, 1, 5, 5, 7, 3, 3])]),
        ),
        extension(&[2, 5, 29, 14], false, &octets(ski.as_ref())),
        extension(
            &[2, 5, 29, 35],
            false,
            &seq(&[tlv(0x80, &issuer_ski(&issuer)?)]),
        ),
        // subjectAltName, critical (the subject is empty).
        extension(&[2, 5, 29, 17], true, &san),
    ];
    exts.extend(fulcio_extensions(req.identity));

    if let Some((ct_key, ct_spki)) = req.ctlog {
        let precert_tbs = tbs(req, &issuer, &exts)?;
        let timestamp_ms = u64::try_from(req.not_before)
            .map_err(|e| Error::Time(e.to_string()))?
            .saturating_mul(1000);
        let issuer_key_hash = Sha256::digest(&issuer_spki);
        let tbs_len = u32::try_from(precert_tbs.len()).map_err(|e| Error::Key(e.to_string()))?;
        // digitally-signed struct (RFC 6962 §3.2).
        let mut signed = vec![0u8, 0u8]; // v1, certificate_timestamp
        signed.extend(timestamp_ms.to_be_bytes());
        signed.extend([0u8, 1u8]); // precert_entry
        signed.extend(issuer_key_hash);
        signed.extend(&tbs_len.to_be_bytes()[1..]);
        signed.extend(&precert_tbs);
        signed.extend([0u8, 0u8]); // no extensions
        let sig = ct_key
            .sign(req.rng, &signed)
            .map_err(|e| Error::Crypto(e.to_string()))?;
        let sig = sig.as_ref();

        let mut sct = vec![0u8]; // v1
        sct.extend(Sha256::digest(ct_spki));
        sct.extend(timestamp_ms.to_be_bytes());
        sct.extend([0u8, 0u8]); // extensions
        sct.extend([4u8, 3u8]); // sha256, ecdsa
        let sig_len = u16::try_from(sig.len()).map_err(|e| Error::Crypto(e.to_string()))?;
        sct.extend(sig_len.to_be_bytes());
        sct.extend(sig);
        let sct_len = u16::try_from(sct.len()).map_err(|e| Error::Crypto(e.to_string()))?;
        let mut list = (sct_len + 2).to_be_bytes().to_vec();
        list.extend(sct_len.to_be_bytes());
        list.extend(sct);
        exts.push(extension(&CT_PRECERT_SCTS, false, &octets(&list)));
    }

    let tbs = tbs(req, &issuer, &exts)?;
    let sig = req
        .issuer_key
        .sign(req.rng, &tbs)
        .map_err(|e| Error::Crypto(e.to_string()))?;
    let mut bits = vec![0u8];
    bits.extend_from_slice(sig.as_ref());
    Ok(seq(&[
        tbs,
        seq(&[oid(&ECDSA_WITH_SHA384)]),
        tlv(0x03, &bits),
    ]))
}
