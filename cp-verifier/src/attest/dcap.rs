//! DCAP verification of TDX quotes, wrapping `dcap-qvl`.
//!
//! dcap-qvl (MIT, pure Rust, no network) checks the quote signature, the QE report
//! and its binding of the attestation key, the PCK chain to the root, and the
//! collateral (TCB info, QE identity, CRLs and their chains) at a given `now`, and
//! returns the TCB status. What this wrapper adds, and why:
//! - bounded inputs with typed errors (dcap-qvl's errors are strings);
//! - our own panic-free parse of the quote (`evidence::tdx`), cross-checked against
//!   dcap-qvl's: if the two parsers disagree on any measured field the quote is
//!   refused, so a divergence can never let one parser's view through unverified;
//! - every byte of the quote pinned: the PCK chain must be canonical PEM and end at
//!   the trusted root (dcap-qvl reads neither the quote's copy of the root nor the
//!   bytes around the certificates), and a PCK chain in the collateral, which
//!   dcap-qvl would verify instead of the quote's, must be the quote's;
//! - the TCB status as a type, and [`VerifiedQuote`], which only [`verify_quote`]
//!   builds. Whether a status is acceptable is policy's decision, not this module's.
//!
//! Intel's SGX Root CA is the default trust anchor (embedded by dcap-qvl); another
//! root is used only when a caller passes one explicitly.

use dcap_qvl::verify::QuoteVerifier;
use dcap_qvl::QuoteCollateralV3;
use evidence::tdx::{Quote, QuoteError};
use provenant_base::clock::UnixSecs;

/// Largest collateral JSON accepted (real collateral with CRLs is 15–20 KiB).
pub const MAX_COLLATERAL_BYTES: usize = 1024 * 1024;

/// A TCB status as Intel's TCB info defines it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum TcbStatus {
    /// The platform's TCB is at the latest level Intel lists.
    UpToDate,
    /// The TCB is current, but software mitigations for listed advisories are needed.
    SWHardeningNeeded,
    /// The TCB is current, but the platform needs configuration (e.g. BIOS settings).
    ConfigurationNeeded,
    /// Both `ConfigurationNeeded` and `SWHardeningNeeded`.
    ConfigurationAndSWHardeningNeeded,
    /// The TCB is below the latest level: updates exist for listed advisories.
    OutOfDate,
    /// `OutOfDate`, and the platform also needs configuration.
    OutOfDateConfigurationNeeded,
    /// Intel revoked the platform's TCB level.
    Revoked,
    /// A status string this version does not know; never treated as good.
    Other(String),
}

impl TcbStatus {
    fn parse(s: &str) -> TcbStatus {
        match s {
            "UpToDate" => TcbStatus::UpToDate,
            "SWHardeningNeeded" => TcbStatus::SWHardeningNeeded,
            "ConfigurationNeeded" => TcbStatus::ConfigurationNeeded,
            "ConfigurationAndSWHardeningNeeded" => TcbStatus::ConfigurationAndSWHardeningNeeded,
            "OutOfDate" => TcbStatus::OutOfDate,
            "OutOfDateConfigurationNeeded" => TcbStatus::OutOfDateConfigurationNeeded,
            "Revoked" => TcbStatus::Revoked,
            other => TcbStatus::Other(other.to_string()),
        }
    }

    /// The name in Intel's TCB info (`UpToDate`, ...; `Other` as given).
    pub fn as_str(&self) -> &str {
        match self {
            TcbStatus::UpToDate => "UpToDate",
            TcbStatus::SWHardeningNeeded => "SWHardeningNeeded",
            TcbStatus::ConfigurationNeeded => "ConfigurationNeeded",
            TcbStatus::ConfigurationAndSWHardeningNeeded => "ConfigurationAndSWHardeningNeeded",
            TcbStatus::OutOfDate => "OutOfDate",
            TcbStatus::OutOfDateConfigurationNeeded => "OutOfDateConfigurationNeeded",
            TcbStatus::Revoked => "Revoked",
            TcbStatus::Other(s) => s,
        }
    }
}

/// Why a quote is refused; [`QuoteVerifyError::kind`] is its stable name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuoteVerifyError {
    /// The quote cannot be parsed (`evidence::tdx`).
    #[error("malformed quote: {0}")]
    Parse(#[from] QuoteError),
    /// The collateral cannot be parsed, is over [`MAX_COLLATERAL_BYTES`], or carries a
    /// PCK chain other than the quote's.
    #[error("malformed collateral: {0}")]
    Collateral(String),
    /// The platform's TCB matches no level in the TCB info: not a known-good state.
    #[error("no TCB level in the collateral matches this platform")]
    NoMatchingTcbLevel,
    /// A signature, chain, CRL or validity-window check failed.
    #[error("quote verification failed: {0}")]
    Verification(String),
    /// The TD is bound to a service TD (TD 1.5 MRSERVICETD non-zero) that the rules
    /// do not allow.
    #[error("the TD is bound to service TD MRSERVICETD {mrservicetd}, which is not allowed")]
    ServiceTdBound {
        /// The MRSERVICETD, lowercase hex.
        mrservicetd: String,
    },
    /// The TD is migratable (TDATTRIBUTES MIGRATABLE). dcap-qvl refuses every
    /// migratable TD; there is no switch for it.
    #[error("the TD is migratable (TDATTRIBUTES MIGRATABLE): a migration TD can move its state")]
    MigratableTd,
    /// TDATTRIBUTES SERVTD_EXT is set and not allowed (or set on a TD 1.0 body, which
    /// DCAP never accepts).
    #[error("TDATTRIBUTES SERVTD_EXT is set: {0}")]
    ServTdExt(&'static str),
    /// TDATTRIBUTES SEPT_VE_DISABLE (bit 28) is clear. dcap-qvl refuses every such
    /// TD; there is no switch for it (see [`check_sept_ve`]).
    #[error(
        "TDATTRIBUTES SEPT_VE_DISABLE (bit 28) is clear: the host's VMM can inject #VE on EPT \
         violations into the guest, which Intel's and dcap-qvl's TD attribute policy refuses \
         (the default of Azure's paravisor TDs)"
    )]
    SeptVeNotDisabled,
    /// `evidence::tdx` and dcap-qvl read different values for `field`.
    #[error("parsers disagree on {field}; refusing the quote")]
    ParserMismatch {
        /// The field they disagree on (`mrtd`, `rtmr0`, ..., or `body type`).
        field: &'static str,
    },
}

impl QuoteVerifyError {
    /// A stable name for logs and API answers.
    pub fn kind(&self) -> &'static str {
        match self {
            QuoteVerifyError::Parse(_) => "MalformedQuote",
            QuoteVerifyError::Collateral(_) => "MalformedCollateral",
            QuoteVerifyError::NoMatchingTcbLevel => "NoMatchingTcbLevel",
            QuoteVerifyError::Verification(_) => "QuoteVerificationFailed",
            QuoteVerifyError::ParserMismatch { .. } => "ParserMismatch",
            QuoteVerifyError::ServiceTdBound { .. } => "ServiceTdBound",
            QuoteVerifyError::MigratableTd => "MigratableTd",
            QuoteVerifyError::ServTdExt(_) => "ServTdExt",
            QuoteVerifyError::SeptVeNotDisabled => "SeptVeNotDisabled",
        }
    }
}

/// A quote whose signatures, chain and collateral verified at a given time.
#[derive(Debug, Clone)]
pub struct VerifiedQuote {
    quote: Quote,
    tcb_status: TcbStatus,
    advisory_ids: Vec<String>,
    verified_at: u64,
}

impl VerifiedQuote {
    /// The parsed quote.
    pub fn quote(&self) -> &Quote {
        &self.quote
    }
    /// The TCB status DCAP gave.
    pub fn tcb_status(&self) -> &TcbStatus {
        &self.tcb_status
    }
    /// The advisory ids that came with the TCB status (`INTEL-SA-...`).
    pub fn advisory_ids(&self) -> &[String] {
        &self.advisory_ids
    }
    /// The time it was verified at, Unix seconds.
    pub fn verified_at(&self) -> u64 {
        self.verified_at
    }
}

/// Parses dcap-qvl's QuoteCollateralV3 JSON, bounded.
pub fn parse_collateral(json: &[u8]) -> Result<QuoteCollateralV3, QuoteVerifyError> {
    if json.len() > MAX_COLLATERAL_BYTES {
        return Err(QuoteVerifyError::Collateral(format!(
            "{} bytes, over the limit of {MAX_COLLATERAL_BYTES}",
            json.len()
        )));
    }
    serde_json::from_slice(json).map_err(|e| QuoteVerifyError::Collateral(e.to_string()))
}

/// Which service-TD bindings a quote may carry. The default allows none: a TD 1.5
/// bound to a service TD, or a TD with SERVTD_EXT, is refused. Migratable TDs are
/// always refused (dcap-qvl has no switch for them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BindingRules {
    /// MRSERVICETDs a TD may be bound to.
    pub allowed_mrservicetd: Vec<[u8; 48]>,
    /// Accept TDATTRIBUTES SERVTD_EXT on a TD 1.5 body.
    pub allow_servtd_ext: bool,
}

impl BindingRules {
    /// The rules `[policy.tdx]` gives: allowed and trusted MRSERVICETDs, and
    /// `allow_servtd_ext`.
    pub fn from_policy(p: &policy::tdx::TdxPolicy) -> BindingRules {
        BindingRules {
            allowed_mrservicetd: p
                .allowed_mrservicetd
                .iter()
                .chain(&p.trusted_mrservicetd)
                .map(|m| m.0)
                .collect(),
            allow_servtd_ext: p.allow_servtd_ext,
        }
    }

    /// The typed refusal of `body` under these rules, if any, and else whether
    /// dcap-qvl must be told to allow a service TD (`allow_service_td`, which covers
    /// both a non-zero MRSERVICETD and SERVTD_EXT on a TD 1.5 body). Only a body
    /// whose signatures verified may be believed.
    pub fn check(&self, body: &evidence::tdx::TdReport) -> Result<bool, QuoteVerifyError> {
        use evidence::tdx::BodyKind;
        if body.migratable() {
            return Err(QuoteVerifyError::MigratableTd);
        }
        if body.servtd_ext() {
            if body.kind == BodyKind::Td10 {
                return Err(QuoteVerifyError::ServTdExt(
                    "a TD 1.0 body cannot carry it (a TD with service TDs gets a TD 1.5 body)",
                ));
            }
            if !self.allow_servtd_ext {
                return Err(QuoteVerifyError::ServTdExt("not allowed"));
            }
        }
        if let Some(m) = body.service_td() {
            if !self.allowed_mrservicetd.contains(&m.0) {
                return Err(QuoteVerifyError::ServiceTdBound {
                    mrservicetd: m.to_hex(),
                });
            }
        }
        Ok(body.servtd_ext() || body.service_td().is_some())
    }
}

/// `SeptVeNotDisabled` unless `body` has TDATTRIBUTES SEPT_VE_DISABLE set. Only a
/// body whose signatures verified may be believed.
///
/// Always refused, whatever the policy: dcap-qvl (0.7.1 in Cargo.lock) refuses a TD
/// with SEPT_VE_DISABLE clear unconditionally (`validate_td10`, also reached for TD
/// 1.5 bodies) and offers no option to accept it. Accepting such TDs (Azure's
/// paravisor TDs among them) would need that option upstream first; this check only
/// names the refusal, before dcap-qvl runs, instead of its generic verification
/// failure.
pub fn check_sept_ve(body: &evidence::tdx::TdReport) -> Result<(), QuoteVerifyError> {
    if body.sept_ve_disabled() {
        Ok(())
    } else {
        Err(QuoteVerifyError::SeptVeNotDisabled)
    }
}

/// Verifies `raw` against `collateral` at `now`, allowing no service-TD binding.
/// `root_ca_der` overrides Intel's root; pass `None` in production.
pub fn verify_quote(
    raw: &[u8],
    collateral: &QuoteCollateralV3,
    now: UnixSecs,
    root_ca_der: Option<&[u8]>,
) -> Result<VerifiedQuote, QuoteVerifyError> {
    verify_quote_with(raw, collateral, now, root_ca_der, &BindingRules::default())
}

/// [`verify_quote`] under `rules`. A quote whose binding the rules refuse gets its
/// typed refusal (`ServiceTdBound`, `MigratableTd`, `ServTdExt`), and one with
/// SEPT_VE_DISABLE clear gets `SeptVeNotDisabled` ([`check_sept_ve`]), only once its
/// signatures and PCK chain verified at `now`: a forged body gets the signature
/// failure instead, never a statement about its binding or attributes.
pub fn verify_quote_with(
    raw: &[u8],
    collateral: &QuoteCollateralV3,
    now: UnixSecs,
    root_ca_der: Option<&[u8]>,
    rules: &BindingRules,
) -> Result<VerifiedQuote, QuoteVerifyError> {
    let quote = Quote::parse(raw)?;
    let typed = rules.check(&quote.body).and_then(|allow| {
        check_sept_ve(&quote.body)?;
        Ok(allow)
    });
    let allow_service_td = match typed {
        Ok(allow) => allow,
        Err(refusal) => {
            verify_signatures(raw, now, root_ca_der)?;
            return Err(refusal);
        }
    };
    // dcap-qvl builds the PCK path from the leaf to its own copy of the root and never
    // looks at the root the quote carries, nor at the bytes around the certificates:
    // pin those here, so that no byte of the quote goes unchecked.
    let chain = pck_chain(&quote, root_ca_der)?;
    // dcap-qvl verifies the collateral's PCK chain instead of the quote's when the
    // collateral has one; it must then be the quote's.
    if let Some(pem) = &collateral.pck_certificate_chain {
        let theirs = x509_cert::Certificate::load_pem_chain(pem.as_bytes())
            .map_err(|e| QuoteVerifyError::Collateral(format!("PCK chain: {e}")))?;
        if theirs != chain {
            return Err(QuoteVerifyError::Collateral(
                "PCK chain differs from the quote's".into(),
            ));
        }
    }
    let verifier = match root_ca_der {
        Some(der) => QuoteVerifier::new(der.to_vec()),
        None => QuoteVerifier::new_prod(),
    }
    .allow_service_td(allow_service_td);
    let report = verifier
        .verify(raw, collateral, now.unsigned())
        .map_err(|e| {
            let msg = format!("{e:#}");
            if msg.contains("No matching TCB level") {
                QuoteVerifyError::NoMatchingTcbLevel
            } else {
                QuoteVerifyError::Verification(msg)
            }
        })?;
    cross_check(&quote, &report.report)?;
    Ok(VerifiedQuote {
        quote,
        tcb_status: TcbStatus::parse(&report.status),
        advisory_ids: report.advisory_ids,
        verified_at: now.unsigned(),
    })
}

fn cross_check(ours: &Quote, theirs: &dcap_qvl::quote::Report) -> Result<(), QuoteVerifyError> {
    use dcap_qvl::quote::Report;
    let b = &ours.body;
    let (td10, mrservicetd) = match theirs {
        Report::TD10(r) => (r, None),
        Report::TD15(r) => (&r.base, Some(r.mr_service_td)),
        _ => return Err(QuoteVerifyError::ParserMismatch { field: "body type" }),
    };
    // dcap-qvl's allow_service_td decision rests on our reading of MRSERVICETD: the
    // two must agree on it as on every measured field.
    if b.mrservicetd.map(|m| m.0) != mrservicetd {
        return Err(QuoteVerifyError::ParserMismatch {
            field: "mrservicetd",
        });
    }
    let pairs: [(&'static str, &[u8], &[u8]); 8] = [
        ("mrtd", &b.mrtd.0, &td10.mr_td),
        ("rtmr0", &b.rtmrs[0].0, &td10.rt_mr0),
        ("rtmr1", &b.rtmrs[1].0, &td10.rt_mr1),
        ("rtmr2", &b.rtmrs[2].0, &td10.rt_mr2),
        ("rtmr3", &b.rtmrs[3].0, &td10.rt_mr3),
        ("report_data", &b.report_data.0, &td10.report_data),
        ("td_attributes", &b.td_attributes.0, &td10.td_attributes),
        ("mrseam", &b.mrseam.0, &td10.mr_seam),
    ];
    for (field, a, z) in pairs {
        if a != z {
            return Err(QuoteVerifyError::ParserMismatch { field });
        }
    }
    Ok(())
}

/// Intel SGX Root CA (DER), the anchor of every PCK chain. SHA-256
/// 44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3 (the same
/// certificate dcap-qvl embeds; checked in a test).
pub const INTEL_SGX_ROOT_CA_DER: &[u8] = include_bytes!("intel_sgx_root_ca.der");

/// Most certificates accepted in a PCK chain (Intel's is leaf, platform CA, root).
const MAX_PCK_CHAIN_CERTS: usize = 5;

/// A quote whose signatures and PCK chain verified, without collateral: no TCB
/// status, no revocation check. Only [`verify_signatures`] builds one.
#[derive(Debug, Clone)]
pub struct SignedQuote {
    quote: Quote,
    fmspc: Option<[u8; 6]>,
    pck_not_after: u64,
}

impl SignedQuote {
    /// The parsed quote.
    pub fn quote(&self) -> &Quote {
        &self.quote
    }
    /// FMSPC from the PCK leaf's SGX extension.
    pub fn fmspc(&self) -> Option<[u8; 6]> {
        self.fmspc
    }
    /// The earliest `notAfter` of the PCK chain (Unix seconds): from then on the
    /// quote no longer verifies.
    pub fn pck_not_after(&self) -> u64 {
        self.pck_not_after
    }
}

fn vfail(s: impl Into<String>) -> QuoteVerifyError {
    QuoteVerifyError::Verification(s.into())
}

fn p256_key(sec1: &[u8], what: &str) -> Result<p256::ecdsa::VerifyingKey, QuoteVerifyError> {
    p256::ecdsa::VerifyingKey::from_sec1_bytes(sec1)
        .map_err(|_| vfail(format!("{what} is not a valid P-256 point")))
}

fn verify_raw_sig(
    key: &p256::ecdsa::VerifyingKey,
    msg: &[u8],
    rs: &[u8; 64],
    what: &str,
) -> Result<(), QuoteVerifyError> {
    use p256::ecdsa::signature::Verifier;
    let sig = p256::ecdsa::Signature::from_slice(rs)
        .map_err(|_| vfail(format!("{what}: malformed signature")))?;
    key.verify(msg, &sig)
        .map_err(|_| vfail(format!("{what} does not verify")))
}

/// Checks the quote signature, the QE report signature by the PCK leaf, the QE report's
/// binding of the attestation key, and the PCK chain up to `root_ca_der` (Intel's by
/// default), each certificate valid at `now`. Collateral checks (TCB status,
/// CRLs) need [`verify_quote`].
pub fn verify_signatures(
    raw: &[u8],
    now: UnixSecs,
    root_ca_der: Option<&[u8]>,
) -> Result<SignedQuote, QuoteVerifyError> {
    use sha2::{Digest, Sha256};
    use x509_cert::der::Encode;

    let quote = Quote::parse(raw)?;
    let sig = &quote.signature;

    // 1. Attestation key over header + body.
    let mut att = [0u8; 65];
    att[0] = 0x04;
    att[1..].copy_from_slice(&sig.attestation_key);
    let att_key = p256_key(&att, "attestation key")?;
    let signed = quote
        .signed_bytes(raw)
        .ok_or_else(|| vfail("quote shorter than its signed part"))?;
    verify_raw_sig(&att_key, signed, &sig.signature, "quote signature")?;

    // 2. The QE report binds the attestation key: SHA-256(key || auth data), zero padded.
    let mut h = Sha256::new();
    h.update(sig.attestation_key);
    h.update(&sig.qe_auth_data);
    let want: [u8; 32] = h.finalize().into();
    let rd = quote.qe_report_data();
    if rd.get(..32) != Some(&want[..]) || rd.get(32..).is_none_or(|z| z.iter().any(|&b| b != 0)) {
        return Err(vfail("QE report data does not bind the attestation key"));
    }

    // 3. PCK chain, leaf first, to the root.
    let chain = pck_chain(&quote, root_ca_der)?;
    let now_secs = now.unsigned();
    let now = std::time::Duration::from_secs(now_secs);
    let mut pck_not_after = u64::MAX;
    for (i, cert) in chain.iter().enumerate() {
        let v = &cert.tbs_certificate.validity;
        pck_not_after = pck_not_after.min(v.not_after.to_unix_duration().as_secs());
        if now < v.not_before.to_unix_duration() || now > v.not_after.to_unix_duration() {
            return Err(vfail(format!(
                "PCK chain certificate {i} is not valid at {now_secs}"
            )));
        }
        let issuer = chain.get(i + 1).unwrap_or(cert); // the root signs itself
        if i + 1 < chain.len() && !is_ca(issuer) {
            return Err(vfail(format!(
                "PCK chain certificate {} is not a CA",
                i + 1
            )));
        }
        const ECDSA_SHA256: x509_cert::der::oid::ObjectIdentifier =
            x509_cert::der::oid::ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
        if cert.signature_algorithm.oid != ECDSA_SHA256 {
            return Err(vfail(format!(
                "PCK chain certificate {i} is not signed with ECDSA-SHA256"
            )));
        }
        let key_bits = issuer
            .tbs_certificate
            .subject_public_key_info
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| vfail("issuer key bit string"))?;
        let key = p256_key(key_bits, "PCK chain issuer key")?;
        let tbs = cert
            .tbs_certificate
            .to_der()
            .map_err(|e| vfail(e.to_string()))?;
        let s = cert
            .signature
            .as_bytes()
            .ok_or_else(|| vfail("signature bit string"))?;
        let s = p256::ecdsa::Signature::from_der(s)
            .map_err(|_| vfail("malformed certificate signature"))?;
        use p256::ecdsa::signature::Verifier;
        key.verify(&tbs, &s).map_err(|_| {
            vfail(format!(
                "PCK chain certificate {i} signature does not verify"
            ))
        })?;
    }

    // 4. The PCK leaf signed the QE report.
    let leaf = &chain[0];
    let leaf_key = p256_key(
        leaf.tbs_certificate
            .subject_public_key_info
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| vfail("PCK key bit string"))?,
        "PCK leaf key",
    )?;
    verify_raw_sig(
        &leaf_key,
        &sig.qe_report,
        &sig.qe_report_signature,
        "QE report signature",
    )?;

    let fmspc = pck_fmspc(leaf).ok();
    Ok(SignedQuote {
        quote,
        fmspc,
        pck_not_after,
    })
}

/// The PCK chain of a quote, parsed, and refused unless it ends at the trusted root
/// (`root_ca_der`, Intel's by default) and its bytes are exactly the
/// canonical PEM encoding of its certificates (64-column base64, LF line ends),
/// followed by nothing but NUL padding (QE libraries pass the chain as a C string).
///
/// The chain's bytes are not signed; only the certificates are. A lenient PEM
/// decoder accepts variants of the same certificates (a stray byte after the last
/// block, a changed padding character), and a quote carrying such a variant would
/// verify although its bytes were altered. Requiring the canonical form makes every
/// byte of the certification data either part of a signed certificate or padding.
/// The quotes of Intel's, Google's and trustee's test data (three different quote
/// generation stacks) are all in this form.
fn pck_chain(
    quote: &Quote,
    root_ca_der: Option<&[u8]>,
) -> Result<Vec<x509_cert::Certificate>, QuoteVerifyError> {
    use x509_cert::der::{pem::LineEnding, Encode, EncodePem};
    let pem = &quote.signature.pck_chain_pem;
    let end = pem.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let body = pem.get(..end).unwrap_or_default();
    let chain = x509_cert::Certificate::load_pem_chain(body)
        .map_err(|e| vfail(format!("PCK chain: {e}")))?;
    if chain.len() < 2 || chain.len() > MAX_PCK_CHAIN_CERTS {
        return Err(vfail(format!("PCK chain has {} certificates", chain.len())));
    }
    let mut canonical = Vec::with_capacity(body.len());
    for cert in &chain {
        let pem = cert
            .to_pem(LineEnding::LF)
            .map_err(|e| vfail(format!("PCK chain: {e}")))?;
        canonical.extend_from_slice(pem.as_bytes());
    }
    if canonical != body {
        return Err(vfail(
            "PCK chain is not canonical PEM (bytes outside its certificates)",
        ));
    }
    let root = root_ca_der.unwrap_or(INTEL_SGX_ROOT_CA_DER);
    let last = chain
        .last()
        .and_then(|c| c.to_der().ok())
        .unwrap_or_default();
    if last != root {
        return Err(vfail("PCK chain does not end at the trusted root CA"));
    }
    Ok(chain)
}

fn is_ca(cert: &x509_cert::Certificate) -> bool {
    use x509_cert::ext::pkix::BasicConstraints;
    matches!(cert.tbs_certificate.get::<BasicConstraints>(), Ok(Some((_, bc))) if bc.ca)
}

/// FMSPC from a PCK certificate: inside Intel's SGX extension
/// (1.2.840.113741.1.13.1), OID 1.2.840.113741.1.13.1.4 followed by a 6-byte OCTET
/// STRING.
pub(crate) fn pck_fmspc(leaf: &x509_cert::Certificate) -> Result<[u8; 6], String> {
    use x509_cert::der::oid::ObjectIdentifier;
    const SGX_EXTENSION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113741.1.13.1");
    const FMSPC_TLV: [u8; 14] = [
        0x06, 0x0a, 0x2a, 0x86, 0x48, 0x86, 0xf8, 0x4d, 0x01, 0x0d, 0x01, 0x04, 0x04, 0x06,
    ];
    let ext = leaf
        .tbs_certificate
        .extensions
        .iter()
        .flatten()
        .find(|e| e.extn_id == SGX_EXTENSION)
        .ok_or("PCK certificate has no SGX extension")?;
    let v = ext.extn_value.as_bytes();
    v.windows(FMSPC_TLV.len())
        .position(|w| w == FMSPC_TLV)
        .and_then(|at| v.get(at + FMSPC_TLV.len()..at + FMSPC_TLV.len() + 6))
        .and_then(|b| <[u8; 6]>::try_from(b).ok())
        .ok_or_else(|| "PCK certificate has no FMSPC".to_string())
}
