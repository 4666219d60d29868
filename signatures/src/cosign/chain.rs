//! Keyless: the Fulcio leaf's chain to a trusted CA at the integrated time, and the
//! claims (SAN, issuer, Fulcio extensions) it carries.

use std::collections::BTreeMap;
use std::time::Duration;

use der::Decode as _;
use rustls_pki_types::{CertificateDer, UnixTime};

use super::trust::FulcioCa;
use super::ImageSigError;

/// id-kp-codeSigning (1.3.6.1.5.5.7.3.3), DER value bytes.
const EKU_CODE_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03];

pub(super) fn verify_chain(
    leaf_der: &[u8],
    chain: &[Vec<u8>],
    cas: &[FulcioCa],
    at: i64,
) -> Result<(), ImageSigError> {
    let leaf = CertificateDer::from(leaf_der);
    let ee = webpki::EndEntityCert::try_from(&leaf)
        .map_err(|e| ImageSigError::MalformedCertificate(format!("{e:?}")))?;
    let secs = u64::try_from(at)
        .map_err(|_| ImageSigError::InvalidRekorSet(format!("integrated time {at} before 1970")))?;
    let time = UnixTime::since_unix_epoch(Duration::from_secs(secs));
    let mut last: Option<ImageSigError> = None;
    let mut any_ca = false;
    for ca in cas {
        if let Some((start, end)) = ca.valid_for {
            if at < start || end.is_some_and(|e| at > e) {
                continue;
            }
        }
        any_ca = true;
        let anchor_cd = CertificateDer::from(ca.anchor_der.as_slice());
        let Ok(anchor) = webpki::anchor_from_trusted_cert(&anchor_cd) else {
            continue;
        };
        let intermediates: Vec<CertificateDer<'_>> = ca
            .intermediates
            .iter()
            .chain(chain.iter())
            .filter(|d| d.as_slice() != leaf_der)
            .map(|d| CertificateDer::from(d.as_slice()))
            .collect();
        match ee.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &[anchor],
            &intermediates,
            time,
            webpki::KeyUsage::required(EKU_CODE_SIGNING),
            None,
            None,
        ) {
            Ok(_) => return Ok(()),
            Err(
                e @ (webpki::Error::CertExpired { .. } | webpki::Error::CertNotValidYet { .. }),
            ) => {
                last = Some(ImageSigError::CertificateNotValidAtSigningTime {
                    signed_at: at,
                    detail: format!("{e:?}"),
                });
            }
            Err(e) => {
                if last.is_none() {
                    last = Some(ImageSigError::CertificateChain(format!("{e:?}")));
                }
            }
        }
    }
    if !any_ca {
        return Err(ImageSigError::CertificateChain(format!(
            "no trusted Fulcio CA is valid at the signing time {at}"
        )));
    }
    Err(last.unwrap_or_else(|| ImageSigError::CertificateChain("no usable trust anchor".into())))
}

pub(super) struct CertClaims {
    pub(super) san: String,
    pub(super) issuer: Option<String>,
    pub(super) source_repository: Option<String>,
    pub(super) source_ref: Option<String>,
    pub(super) runner_environment: Option<String>,
    pub(super) build_signer_uri: Option<String>,
}

/// The SAN (exactly one email or URI) and the Fulcio extensions of a leaf.
pub(super) fn cert_claims(cert: &x509_cert::Certificate) -> Result<CertClaims, ImageSigError> {
    use x509_cert::ext::pkix::name::GeneralName;
    use x509_cert::ext::pkix::SubjectAltName;
    let malformed = |d: String| ImageSigError::MalformedCertificate(d);
    let san = match cert.tbs_certificate.get::<SubjectAltName>() {
        Ok(Some((_, san))) => san,
        Ok(None) => return Err(malformed("no subjectAltName".into())),
        Err(e) => return Err(malformed(format!("subjectAltName: {e}"))),
    };
    let names: Vec<String> = san
        .0
        .iter()
        .filter_map(|g| match g {
            GeneralName::Rfc822Name(s) => Some(s.to_string()),
            GeneralName::UniformResourceIdentifier(s) => Some(s.to_string()),
            _ => None,
        })
        .collect();
    let [san] = names.as_slice() else {
        return Err(malformed(format!(
            "{} email/URI SANs (exactly one required)",
            names.len()
        )));
    };
    let mut ext = BTreeMap::<u32, Vec<u8>>::new();
    for e in cert.tbs_certificate.extensions.iter().flatten() {
        let arcs: Vec<u32> = e.extn_id.arcs().collect();
        if let [1, 3, 6, 1, 4, 1, 57264, 1, n] = arcs.as_slice() {
            if ext.insert(*n, e.extn_value.as_bytes().to_vec()).is_some() {
                return Err(malformed(format!("duplicate Fulcio extension .{n}")));
            }
        }
    }
    let utf8 = |n: u32| -> Result<Option<String>, ImageSigError> {
        match ext.get(&n) {
            None => Ok(None),
            Some(b) => der::asn1::Utf8StringRef::from_der(b)
                .map(|s| Some(s.as_str().to_owned()))
                .map_err(|e| malformed(format!("Fulcio extension .{n}: {e}"))),
        }
    };
    let issuer = match utf8(8)? {
        Some(i) => Some(i),
        None => match ext.get(&1) {
            Some(b) => Some(
                String::from_utf8(b.clone())
                    .map_err(|_| malformed("Fulcio issuer (.1) is not UTF-8".into()))?,
            ),
            None => None,
        },
    };
    Ok(CertClaims {
        san: san.clone(),
        issuer,
        source_repository: utf8(12)?,
        source_ref: utf8(14)?,
        runner_environment: utf8(11)?,
        build_signer_uri: utf8(9)?,
    })
}

/// A verified signing certificate: its DER and its public key (SPKI DER).
pub(super) struct Leaf {
    pub(super) der: Vec<u8>,
    pub(super) spki_der: Vec<u8>,
}
