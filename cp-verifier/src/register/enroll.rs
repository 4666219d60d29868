//! Software-tier enrollment: which keys may speak for which agent ids.
//!
//! Two ways in, both explicit:
//! - an allowlist binding a key fingerprint to an agent id; or
//! - an X.509 chain (leaf first) to a configured CA, verified with rustls-webpki at
//!   `now` for client authentication, whose leaf names the agent id (DNS SAN or
//!   subject CN) and certifies exactly the key that signed the report.
//!
//! A key enrolled for one agent id never enrolls another.

use provenant_base::clock::UnixNanos;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use evidence::PublicKey;
use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use sha2::{Digest, Sha256};
use x509_cert::der::{Decode, Encode};

use crate::config::Enrollment;

/// Largest certificate accepted (same bound rustls uses for a whole chain message is
/// far larger; single mTLS certificates are a few KiB).
const MAX_CERT_BYTES: usize = 16 * 1024;
/// Largest CRL file read (a CRL with ~100k entries is a few MiB).
const MAX_CRL_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// Remembered positive re-checks at most; past it the cache is cleared (at worst a
/// pulse re-verifies its chain).
const MAX_RECHECK_CACHE: usize = 100_000;

/// The enrollment rules in force. [`Enroller::reload`] swaps them whole, which also
/// drops every cached re-check made under the old rules.
pub struct Enroller {
    state: RwLock<Arc<EnrollState>>,
}

struct EnrollState {
    /// (agent id, `sha256:` fingerprint) pairs.
    keys: HashSet<(String, String)>,
    anchors: Vec<TrustAnchor<'static>>,
    crls: Vec<Crl>,
    /// Positive certificate re-checks: (agent id, key fingerprint, chain digest) ->
    /// valid for `checked_at..until`.
    rechecks: Mutex<HashMap<RecheckKey, (UnixNanos, UnixNanos)>>,
}

/// (agent id, key fingerprint, SHA-256 over the chain's certificates).
type RecheckKey = (String, String, [u8; 32]);

struct Crl {
    list: webpki::CertRevocationList<'static>,
    issuer: String,
    next_update: UnixNanos,
}

/// Why enrollment does not hold. The names are stable and start the refusal's
/// detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The key is not on the allowlist for the agent id, and no usable chain was shown.
    NotEnrolled,
    /// The chain does not verify to the enrollment CA.
    ChainInvalid,
    /// The leaf (or a CA in the chain) is past its notAfter.
    CertificateExpired,
    /// The leaf (or a CA in the chain) is before its notBefore.
    CertificateNotYetValid,
    /// The configured CRL lists the certificate's serial.
    CertificateRevoked,
    /// The configured CRL is past its nextUpdate: revocation status is unknown, so
    /// certificate enrollment fails closed.
    CrlStale,
    /// The configured CRL cannot be used for the certificate (bad signature, wrong
    /// issuer, unsupported form): fails closed.
    CrlUnusable,
    /// The certificate names neither the agent id (CN or DNS SAN).
    NameMismatch,
    /// The certificate certifies another key than the one that signed the report.
    KeyMismatch,
    /// The certificate could not be parsed.
    BadCertificate,
    /// More certificates than a chain may hold.
    TooManyCertificates,
}

impl Refusal {
    /// The typed reason as the wire and alerts name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::NotEnrolled => "NotEnrolled",
            Refusal::ChainInvalid => "ChainInvalid",
            Refusal::CertificateExpired => "CertificateExpired",
            Refusal::CertificateNotYetValid => "CertificateNotYetValid",
            Refusal::CertificateRevoked => "CertificateRevoked",
            Refusal::CrlStale => "CrlStale",
            Refusal::CrlUnusable => "CrlUnusable",
            Refusal::NameMismatch => "NameMismatch",
            Refusal::KeyMismatch => "KeyMismatch",
            Refusal::BadCertificate => "BadCertificate",
            Refusal::TooManyCertificates => "TooManyCertificates",
        }
    }
}

/// A refused enrollment: the typed reason and what a person needs to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollError {
    /// The typed reason.
    pub reason: Refusal,
    /// What a person needs to fix it.
    pub detail: String,
}

impl std::fmt::Display for EnrollError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.reason.as_str(), self.detail)
    }
}

impl std::error::Error for EnrollError {}

impl EnrollError {
    /// Whether the key is simply not enrolled (as opposed to a malformed, revoked or
    /// unverifiable certificate): such refusals are aggregated per source.
    pub fn is_unenrolled(&self) -> bool {
        !matches!(
            self.reason,
            Refusal::BadCertificate
                | Refusal::TooManyCertificates
                | Refusal::CertificateRevoked
                | Refusal::CrlStale
                | Refusal::CrlUnusable
        )
    }

    fn new(reason: Refusal, detail: impl Into<String>) -> EnrollError {
        EnrollError {
            reason,
            detail: detail.into(),
        }
    }
}

impl Enroller {
    /// Loads the allowlist, CA and CRL files the config names.
    pub fn new(cfg: &Enrollment) -> anyhow::Result<Enroller> {
        Ok(Enroller {
            state: RwLock::new(Arc::new(EnrollState::load(cfg)?)),
        })
    }

    /// Re-reads the allowlist, CA and CRL files. On error the rules in force stay.
    pub fn reload(&self, cfg: &Enrollment) -> anyhow::Result<()> {
        let next = Arc::new(EnrollState::load(cfg)?);
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = next;
        Ok(())
    }

    fn current(&self) -> Arc<EnrollState> {
        self.state.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Decides whether `key` may register as `agent_id` at `now`.
    pub fn check(
        &self,
        agent_id: &str,
        key: &PublicKey,
        chain_pem: &[String],
        now: UnixNanos,
    ) -> Result<EnrolledBy, EnrollError> {
        self.current()
            .decide(agent_id, key, chain_pem, now)
            .map(|(by, _)| by)
    }

    /// Re-checks an enrolled agent at `now` (every pulse): the allowlist is a hash
    /// lookup; a certificate enrollment is verified once and then remembered until
    /// its earliest notAfter or the CRL's nextUpdate, whichever comes first, and
    /// until the next [`Enroller::reload`].
    pub fn recheck(
        &self,
        agent_id: &str,
        key: &PublicKey,
        chain_pem: &[String],
        now: UnixNanos,
    ) -> Result<EnrolledBy, EnrollError> {
        let st = self.current();
        let fp = key.fingerprint();
        if st.keys.contains(&(agent_id.to_string(), fp.clone())) {
            return Ok(EnrolledBy::Allowlist);
        }
        let mut h = Sha256::new();
        for c in chain_pem {
            h.update(Sha256::digest(c.as_bytes()));
        }
        let ck = (agent_id.to_string(), fp, <[u8; 32]>::from(h.finalize()));
        if let Some(&(from, until)) = st
            .rechecks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&ck)
        {
            if from <= now && now < until {
                return Ok(EnrolledBy::Certificate);
            }
        }
        let (by, until) = st.decide(agent_id, key, chain_pem, now)?;
        let mut c = st.rechecks.lock().unwrap_or_else(|e| e.into_inner());
        if c.len() >= MAX_RECHECK_CACHE {
            c.clear();
        }
        c.insert(ck, (now, until));
        Ok(by)
    }
}

impl EnrollState {
    fn load(cfg: &Enrollment) -> anyhow::Result<EnrollState> {
        let mut anchors = Vec::new();
        let mut ca_subjects = Vec::new();
        if let Some(p) = &cfg.ca_file {
            for der in read_pem_certs(p)? {
                let c = x509_cert::Certificate::from_der(&der)
                    .map_err(|e| anyhow::anyhow!("CA in {}: {e}", p.display()))?;
                ca_subjects.push(c.tbs_certificate.subject);
                let cd = CertificateDer::from(der);
                let a = webpki::anchor_from_trusted_cert(&cd)
                    .map_err(|e| anyhow::anyhow!("CA in {}: {e:?}", p.display()))?
                    .to_owned();
                anchors.push(a);
            }
            anyhow::ensure!(!anchors.is_empty(), "no CA certificate in {}", p.display());
        }
        let mut crls = Vec::new();
        if let Some(p) = &cfg.crl_file {
            anyhow::ensure!(
                !anchors.is_empty(),
                "[enrollment] crl_file {} needs ca_file",
                p.display()
            );
            for der in read_crls(p)? {
                crls.push(
                    parse_crl(&der, &ca_subjects)
                        .map_err(|e| anyhow::anyhow!("CRL in {}: {e}", p.display()))?,
                );
            }
            anyhow::ensure!(!crls.is_empty(), "no X509 CRL in {}", p.display());
        }
        Ok(EnrollState {
            keys: cfg
                .keys
                .iter()
                .map(|k| (k.agent_id.clone(), k.fingerprint.to_ascii_lowercase()))
                .collect(),
            anchors,
            crls,
            rechecks: Mutex::new(HashMap::new()),
        })
    }

    /// The decision and until when it holds (the end of time for the allowlist).
    fn decide(
        &self,
        agent_id: &str,
        key: &PublicKey,
        chain_pem: &[String],
        now: UnixNanos,
    ) -> Result<(EnrolledBy, UnixNanos), EnrollError> {
        let fp = key.fingerprint();
        if self.keys.contains(&(agent_id.to_string(), fp.clone())) {
            return Ok((EnrolledBy::Allowlist, UnixNanos(u64::MAX)));
        }
        if chain_pem.is_empty() {
            return Err(EnrollError::new(
                Refusal::NotEnrolled,
                format!(
                    "key {fp} is not enrolled for agent {agent_id:?} and no certificate chain was presented"
                ),
            ));
        }
        if self.anchors.is_empty() {
            return Err(EnrollError::new(
                Refusal::NotEnrolled,
                format!(
                    "key {fp} is not enrolled for agent {agent_id:?}, and no enrollment CA is configured"
                ),
            ));
        }
        if chain_pem.len() > evidence::api::MAX_CHAIN_CERTS {
            return Err(EnrollError::new(
                Refusal::TooManyCertificates,
                format!("more than {} certificates", evidence::api::MAX_CHAIN_CERTS),
            ));
        }
        let mut ders = Vec::with_capacity(chain_pem.len());
        for pem in chain_pem {
            ders.push(pem_to_der(pem).map_err(|d| EnrollError::new(Refusal::BadCertificate, d))?);
        }
        let leaf = CertificateDer::from(ders[0].clone());
        let intermediates: Vec<CertificateDer<'_>> = ders[1..]
            .iter()
            .map(|d| CertificateDer::from(d.clone()))
            .collect();
        let ee = webpki::EndEntityCert::try_from(&leaf)
            .map_err(|e| EnrollError::new(Refusal::BadCertificate, format!("leaf: {e:?}")))?;
        let time = UnixTime::since_unix_epoch(Duration::from_nanos(now.get()));
        let crl_refs: Vec<&webpki::CertRevocationList<'static>> =
            self.crls.iter().map(|c| &c.list).collect();
        // Only the leaf is checked against the CRL, and a leaf whose issuer has no
        // CRL in the file is refused (its status is unknown): fail closed.
        let revocation = webpki::RevocationOptionsBuilder::new(&crl_refs)
            .ok()
            .map(|b| {
                b.with_depth(webpki::RevocationCheckDepth::EndEntity)
                    .with_status_policy(webpki::UnknownStatusPolicy::Deny)
                    .with_expiration_policy(webpki::ExpirationPolicy::Enforce)
                    .build()
            });
        ee.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &self.anchors,
            &intermediates,
            time,
            webpki::KeyUsage::client_auth(),
            revocation,
            None,
        )
        .map_err(|e| self.chain_refusal(e))?;

        let mut until = self
            .crls
            .iter()
            .map(|c| c.next_update)
            .min()
            .unwrap_or(UnixNanos(u64::MAX));
        let mut certs = Vec::with_capacity(ders.len());
        for d in &ders {
            let c = x509_cert::Certificate::from_der(d)
                .map_err(|e| EnrollError::new(Refusal::BadCertificate, e.to_string()))?;
            until = until.min(time_ns(&c.tbs_certificate.validity.not_after));
            certs.push(c);
        }
        let cert = &certs[0];
        let spki = cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(|e| EnrollError::new(Refusal::BadCertificate, e.to_string()))?;
        if spki != key.spki_der() {
            return Err(EnrollError::new(
                Refusal::KeyMismatch,
                "the certificate's key is not the key that signed the report",
            ));
        }
        let names = cert_names(cert);
        if !names.iter().any(|n| n == agent_id) {
            return Err(EnrollError::new(
                Refusal::NameMismatch,
                format!("certificate names {names:?}, not agent {agent_id:?}"),
            ));
        }
        Ok((EnrolledBy::Certificate, until))
    }

    fn chain_refusal(&self, e: webpki::Error) -> EnrollError {
        use webpki::Error as E;
        match e {
            E::CertExpired { time, not_after } => EnrollError::new(
                Refusal::CertificateExpired,
                format!(
                    "a certificate in the chain expired at {} (now {}); issue a new one",
                    rfc3339(not_after.as_secs()),
                    rfc3339(time.as_secs())
                ),
            ),
            E::CertNotValidYet { time, not_before } => EnrollError::new(
                Refusal::CertificateNotYetValid,
                format!(
                    "a certificate in the chain is valid only from {} (now {})",
                    rfc3339(not_before.as_secs()),
                    rfc3339(time.as_secs())
                ),
            ),
            E::CertRevoked => EnrollError::new(
                Refusal::CertificateRevoked,
                "the certificate's serial is listed in the enrollment CRL",
            ),
            E::CrlExpired { time, next_update } => EnrollError::new(
                Refusal::CrlStale,
                format!(
                    "the enrollment CRL ({}) was due for renewal at {} (now {}); install a fresh CRL and reload (SIGHUP)",
                    self.crl_issuers(),
                    rfc3339(next_update.as_secs()),
                    rfc3339(time.as_secs())
                ),
            ),
            E::InvalidCrlSignatureForPublicKey
            | E::UnknownRevocationStatus
            | E::IssuerNotCrlSigner
            | E::InvalidCrlNumber
            | E::UnsupportedCrlVersion
            | E::UnsupportedDeltaCrl
            | E::UnsupportedIndirectCrl
            | E::UnsupportedCrlIssuingDistributionPoint
            | E::UnsupportedRevocationReason
            | E::UnsupportedRevocationReasonsPartitioning
            | E::UnsupportedCrlSignatureAlgorithmContext(_)
            | E::UnsupportedCrlSignatureAlgorithmForPublicKeyContext(_) => EnrollError::new(
                Refusal::CrlUnusable,
                format!(
                    "the enrollment CRL ({}) cannot establish the certificate's status: {e:?}",
                    self.crl_issuers()
                ),
            ),
            other => EnrollError::new(
                Refusal::ChainInvalid,
                format!("certificate chain does not verify to the enrollment CA: {other:?}"),
            ),
        }
    }

    fn crl_issuers(&self) -> String {
        self.crls
            .iter()
            .map(|c| c.issuer.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// How an agent's key is enrolled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnrolledBy {
    /// The key's fingerprint is listed for the agent id.
    Allowlist,
    /// A certificate chaining to the enrollment CA names the agent id.
    Certificate,
}

/// Subject CNs and DNS SANs of a DER certificate (none when it does not parse).
pub(crate) fn der_cert_names(der: &[u8]) -> Vec<String> {
    use x509_cert::der::Decode;
    x509_cert::Certificate::from_der(der)
        .map(|c| cert_names(&c))
        .unwrap_or_default()
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
    let blocks =
        provenant_base::pem::blocks(pem).map_err(|e| format!("malformed PEM certificate: {e}"))?;
    match blocks.as_slice() {
        [b] if b.label == "CERTIFICATE" => b
            .der()
            .map_err(|e| format!("malformed PEM certificate: {e}")),
        [b] => Err(format!("PEM block {:?} is not a CERTIFICATE", b.label)),
        _ => Err(format!(
            "malformed PEM certificate: expected one PEM block, found {}",
            blocks.len()
        )),
    }
}

/// A Unix time in seconds as RFC 3339.
fn rfc3339(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{secs}s after the epoch"))
}

fn time_ns(t: &x509_cert::time::Time) -> UnixNanos {
    UnixNanos(u64::try_from(t.to_unix_duration().as_nanos()).unwrap_or(u64::MAX))
}

/// The DER CRLs in a file: PEM `X509 CRL` blocks, or one DER CRL.
fn read_crls(p: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    const BEGIN: &str = "-----BEGIN X509 CRL-----";
    const END: &str = "-----END X509 CRL-----";
    let bytes = provenant_base::fsutil::read_bounded(p, MAX_CRL_FILE_BYTES)
        .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
    if bytes.first() == Some(&0x30) {
        return Ok(vec![bytes]);
    }
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| anyhow::anyhow!("{}: neither DER nor PEM text", p.display()))?;
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(s) = rest.find(BEGIN) {
        let e = rest[s..].find(END).ok_or_else(|| {
            anyhow::anyhow!("{}: CRL {} has no END line", p.display(), out.len() + 1)
        })?;
        let block = &rest[s..s + e + END.len()];
        let (label, der) = x509_cert::der::pem::decode_vec(block.as_bytes())
            .map_err(|e| anyhow::anyhow!("{}: malformed PEM CRL: {e}", p.display()))?;
        anyhow::ensure!(label == "X509 CRL", "{}: PEM block {label:?}", p.display());
        out.push(der);
        rest = &rest[s + e + END.len()..];
    }
    Ok(out)
}

/// Parses one CRL (x509-cert for its fields, webpki for use). It must be issued by
/// one of the enrollment CAs and carry a nextUpdate; its signature is checked
/// against that CA's key on every use (rustls-webpki), and its nextUpdate enforced.
fn parse_crl(der: &[u8], ca_subjects: &[x509_cert::name::Name]) -> Result<Crl, String> {
    let parsed = x509_cert::crl::CertificateList::from_der(der).map_err(|e| e.to_string())?;
    let tbs = &parsed.tbs_cert_list;
    let issuer = tbs.issuer.to_string();
    if !ca_subjects.contains(&tbs.issuer) {
        return Err(format!(
            "issued by {issuer:?}, which is not an enrollment CA"
        ));
    }
    let next_update = tbs.next_update.as_ref().map(time_ns).ok_or_else(|| {
        format!("the CRL from {issuer:?} has no nextUpdate, so it could never go stale")
    })?;
    let list = webpki::OwnedCertRevocationList::from_der(der).map_err(|e| format!("{e:?}"))?;
    Ok(Crl {
        list: list.into(),
        issuer,
        next_update,
    })
}

/// Largest CA bundle read.
const MAX_CA_FILE_BYTES: u64 = 1024 * 1024;

fn read_pem_certs(p: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let text = provenant_base::fsutil::read_text_bounded(p, MAX_CA_FILE_BYTES)
        .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
    provenant_base::pem::certificates(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?
        .iter()
        .map(|c| pem_to_der(c).map_err(anyhow::Error::msg))
        .collect()
}
