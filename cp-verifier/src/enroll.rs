//! Software-tier enrollment: which keys may speak for which agent ids.
//!
//! Two ways in, both explicit:
//! - an allowlist binding a key fingerprint to an agent id; or
//! - an X.509 chain (leaf first) to a configured CA, verified with rustls-webpki at
//!   `now` for client authentication, whose leaf names the agent id (DNS SAN or
//!   subject CN) and certifies exactly the key that signed the report.
//!
//! A key enrolled for one agent id never enrolls another.

use std::path::Path;
use std::time::Duration;

use evidence::PublicKey;
use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use x509_cert::der::{Decode, Encode};

use crate::config::Enrollment;
use crate::error::ApiError;

/// Largest certificate accepted (same bound rustls uses for a whole chain message is
/// far larger; single mTLS certificates are a few KiB).
const MAX_CERT_BYTES: usize = 16 * 1024;

pub struct Enroller {
    keys: Vec<(String, String)>,
    anchors: Vec<TrustAnchor<'static>>,
}

impl Enroller {
    pub fn new(cfg: &Enrollment) -> anyhow::Result<Enroller> {
        let mut anchors = Vec::new();
        if let Some(p) = &cfg.ca_file {
            for der in read_pem_certs(p)? {
                let cd = CertificateDer::from(der);
                let a = webpki::anchor_from_trusted_cert(&cd)
                    .map_err(|e| anyhow::anyhow!("CA in {}: {e:?}", p.display()))?
                    .to_owned();
                anchors.push(a);
            }
            anyhow::ensure!(!anchors.is_empty(), "no CA certificate in {}", p.display());
        }
        Ok(Enroller {
            keys: cfg
                .keys
                .iter()
                .map(|k| (k.agent_id.clone(), k.fingerprint.to_ascii_lowercase()))
                .collect(),
            anchors,
        })
    }

    /// Decides whether `key` may register as `agent_id` at `now_ns`.
    pub fn check(
        &self,
        agent_id: &str,
        key: &PublicKey,
        chain_pem: &[String],
        now_ns: u64,
    ) -> Result<EnrolledBy, ApiError> {
        let fp = key.fingerprint();
        if self.keys.iter().any(|(id, f)| id == agent_id && *f == fp) {
            return Ok(EnrolledBy::Allowlist);
        }
        if chain_pem.is_empty() {
            return Err(ApiError::Unenrolled(format!(
                "key {fp} is not enrolled for agent {agent_id:?} and no certificate chain was presented"
            )));
        }
        if self.anchors.is_empty() {
            return Err(ApiError::Unenrolled(format!(
                "key {fp} is not enrolled for agent {agent_id:?}, and no enrollment CA is configured"
            )));
        }
        if chain_pem.len() > evidence::api::MAX_CHAIN_CERTS {
            return Err(ApiError::bad_request(
                "InvalidField",
                format!("more than {} certificates", evidence::api::MAX_CHAIN_CERTS),
            ));
        }
        let mut ders = Vec::with_capacity(chain_pem.len());
        for pem in chain_pem {
            ders.push(pem_to_der(pem).map_err(|d| ApiError::bad_request("BadCertificate", d))?);
        }
        let leaf = CertificateDer::from(ders[0].clone());
        let intermediates: Vec<CertificateDer<'_>> = ders[1..]
            .iter()
            .map(|d| CertificateDer::from(d.clone()))
            .collect();
        let ee = webpki::EndEntityCert::try_from(&leaf)
            .map_err(|e| ApiError::bad_request("BadCertificate", format!("leaf: {e:?}")))?;
        let time = UnixTime::since_unix_epoch(Duration::from_nanos(now_ns));
        ee.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &self.anchors,
            &intermediates,
            time,
            webpki::KeyUsage::client_auth(),
            None,
            None,
        )
        .map_err(|e| {
            ApiError::Unenrolled(format!(
                "certificate chain does not verify to the enrollment CA: {e:?}"
            ))
        })?;

        let cert = x509_cert::Certificate::from_der(&ders[0])
            .map_err(|e| ApiError::bad_request("BadCertificate", e.to_string()))?;
        let spki = cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(|e| ApiError::bad_request("BadCertificate", e.to_string()))?;
        if spki != key.spki_der() {
            return Err(ApiError::Unenrolled(
                "the certificate's key is not the key that signed the report".into(),
            ));
        }
        let names = cert_names(&cert);
        if !names.iter().any(|n| n == agent_id) {
            return Err(ApiError::Unenrolled(format!(
                "certificate names {names:?}, not agent {agent_id:?}"
            )));
        }
        Ok(EnrolledBy::Certificate)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnrolledBy {
    Allowlist,
    Certificate,
}

/// Subject CNs and DNS SANs of a certificate.
fn cert_names(cert: &x509_cert::Certificate) -> Vec<String> {
    use x509_cert::ext::pkix::name::GeneralName;
    use x509_cert::ext::pkix::SubjectAltName;
    const CN: x509_cert::der::oid::ObjectIdentifier =
        x509_cert::der::oid::ObjectIdentifier::new_unwrap("2.5.4.3");
    let mut out = Vec::new();
    for rdn in cert.tbs_certificate.subject.0.iter() {
        for atv in rdn.0.iter() {
            if atv.oid == CN {
                if let Ok(s) = atv
                    .value
                    .decode_as::<x509_cert::der::asn1::Utf8StringRef<'_>>()
                {
                    out.push(s.as_str().to_string());
                } else if let Ok(s) = atv
                    .value
                    .decode_as::<x509_cert::der::asn1::PrintableStringRef<'_>>()
                {
                    out.push(s.as_str().to_string());
                }
            }
        }
    }
    if let Ok(Some((_, san))) = cert.tbs_certificate.get::<SubjectAltName>() {
        for n in san.0 {
            if let GeneralName::DnsName(d) = n {
                out.push(d.as_str().to_string());
            }
        }
    }
    out
}

fn pem_to_der(pem: &str) -> Result<Vec<u8>, String> {
    if pem.len() > MAX_CERT_BYTES * 2 {
        return Err(format!("certificate larger than {MAX_CERT_BYTES} bytes"));
    }
    let (label, der) = x509_cert::der::pem::decode_vec(pem.trim().as_bytes())
        .map_err(|e| format!("malformed PEM certificate: {e}"))?;
    if label != "CERTIFICATE" {
        return Err(format!("PEM block {label:?} is not a CERTIFICATE"));
    }
    Ok(der)
}

/// Largest CA bundle read.
const MAX_CA_FILE_BYTES: u64 = 1024 * 1024;

fn read_pem_certs(p: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let text = guest_agent::fsutil::read_text_bounded(p, MAX_CA_FILE_BYTES)
        .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
    guest_agent::fsutil::split_pem_certificates(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?
        .iter()
        .map(|c| pem_to_der(c).map_err(anyhow::Error::msg))
        .collect()
}
