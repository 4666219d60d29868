//! Collateral from raw Intel PCS / PCCS responses, as an operator caches them: the
//! TCB info and QE identity bodies (`{"tcbInfo":{..},"signature":".."}`), the issuer
//! chains of their `*-Issuer-Chain` headers (URL-encoded PEM, or plain PEM), and the
//! PCK and root CA CRLs (DER, PEM or a PCCS's hex).
//!
//! The signed JSON (`tcbInfo`, `enclaveIdentity`) is kept as the exact bytes of the
//! file: the signature covers those bytes, and re-serialising them would break it.
//! [`import`] checks every signature to the trusted root before it returns anything;
//! [`assemble`] only converts (a `collateral_dir` entry, which DCAP verifies at use,
//! as it does a JSON file).

use super::pcs::{crl_der, percent_decode, signed_json};
use super::verify::{chain_leaf, crl_signed_by, raw_signature};
use super::*;

/// One raw file of the collateral, named as the `collateral import` option and the
/// file in a raw `collateral_dir` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawPart {
    /// The TCB info response body.
    TcbInfo,
    /// The TCB info issuer chain (`TCB-Info-Issuer-Chain` header).
    TcbInfoChain,
    /// The QE identity response body.
    QeIdentity,
    /// The QE identity issuer chain (`SGX-Enclave-Identity-Issuer-Chain` header).
    QeIdentityChain,
    /// The PCK CRL.
    PckCrl,
    /// The PCK CRL issuer chain (`SGX-PCK-CRL-Issuer-Chain` header).
    PckCrlChain,
    /// The root CA CRL.
    RootCaCrl,
}

impl RawPart {
    /// Every part, in the order of [`RawCollateral`].
    pub const ALL: [RawPart; 7] = [
        RawPart::TcbInfo,
        RawPart::TcbInfoChain,
        RawPart::QeIdentity,
        RawPart::QeIdentityChain,
        RawPart::PckCrl,
        RawPart::PckCrlChain,
        RawPart::RootCaCrl,
    ];

    /// The option and file name: `tcb-info`, `tcb-info-chain`, ...
    pub fn name(self) -> &'static str {
        match self {
            RawPart::TcbInfo => "tcb-info",
            RawPart::TcbInfoChain => "tcb-info-chain",
            RawPart::QeIdentity => "qe-identity",
            RawPart::QeIdentityChain => "qe-identity-chain",
            RawPart::PckCrl => "pck-crl",
            RawPart::PckCrlChain => "pck-crl-chain",
            RawPart::RootCaCrl => "root-ca-crl",
        }
    }

    /// The largest file accepted for this part.
    pub fn max_bytes(self) -> usize {
        match self {
            RawPart::TcbInfo | RawPart::QeIdentity => MAX_JSON_BODY_BYTES,
            RawPart::TcbInfoChain | RawPart::QeIdentityChain | RawPart::PckCrlChain => {
                MAX_ISSUER_CHAIN_BYTES
            }
            // PEM is 4/3 of the DER plus line ends; a PCCS's hex is 2x.
            RawPart::PckCrl | RawPart::RootCaCrl => 2 * MAX_CRL_BODY_BYTES,
        }
    }
}

impl std::fmt::Display for RawPart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why raw collateral was refused; [`RawCollateralError::kind`] is its stable name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RawCollateralError {
    /// A file is over its part's size limit.
    #[error("{part}: over {limit} bytes")]
    TooLarge {
        /// The part.
        part: RawPart,
        /// The limit.
        limit: usize,
    },
    /// A file is not what its part must be (JSON body, PEM chain, CRL).
    #[error("{part}: {detail}")]
    Malformed {
        /// The part.
        part: RawPart,
        /// What is wrong.
        detail: String,
    },
    /// A signature or a chain does not verify to the trusted root.
    #[error("{part} does not verify: {detail}")]
    Unverified {
        /// The part whose signature or chain failed.
        part: RawPart,
        /// Which check failed.
        detail: String,
    },
}

impl RawCollateralError {
    /// A stable name for output and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            RawCollateralError::TooLarge { .. } => "CollateralTooLarge",
            RawCollateralError::Malformed { .. } => "CollateralMalformed",
            RawCollateralError::Unverified { .. } => "CollateralUnverified",
        }
    }
    /// The part at fault.
    pub fn part(&self) -> RawPart {
        match self {
            RawCollateralError::TooLarge { part, .. }
            | RawCollateralError::Malformed { part, .. }
            | RawCollateralError::Unverified { part, .. } => *part,
        }
    }
}

/// The seven raw files, as read.
#[derive(Debug, Clone, Default)]
pub struct RawCollateral {
    /// `{"tcbInfo":{..},"signature":"<hex>"}`.
    pub tcb_info: Vec<u8>,
    /// URL-encoded or plain PEM.
    pub tcb_info_chain: Vec<u8>,
    /// `{"enclaveIdentity":{..},"signature":"<hex>"}`.
    pub qe_identity: Vec<u8>,
    /// URL-encoded or plain PEM.
    pub qe_identity_chain: Vec<u8>,
    /// DER, PEM or hex.
    pub pck_crl: Vec<u8>,
    /// URL-encoded or plain PEM.
    pub pck_crl_chain: Vec<u8>,
    /// DER, PEM or hex.
    pub root_ca_crl: Vec<u8>,
}

impl RawCollateral {
    /// The bytes of `part`.
    pub fn part(&self, part: RawPart) -> &[u8] {
        match part {
            RawPart::TcbInfo => &self.tcb_info,
            RawPart::TcbInfoChain => &self.tcb_info_chain,
            RawPart::QeIdentity => &self.qe_identity,
            RawPart::QeIdentityChain => &self.qe_identity_chain,
            RawPart::PckCrl => &self.pck_crl,
            RawPart::PckCrlChain => &self.pck_crl_chain,
            RawPart::RootCaCrl => &self.root_ca_crl,
        }
    }

    /// The slot for `part`.
    pub fn part_mut(&mut self, part: RawPart) -> &mut Vec<u8> {
        match part {
            RawPart::TcbInfo => &mut self.tcb_info,
            RawPart::TcbInfoChain => &mut self.tcb_info_chain,
            RawPart::QeIdentity => &mut self.qe_identity,
            RawPart::QeIdentityChain => &mut self.qe_identity_chain,
            RawPart::PckCrl => &mut self.pck_crl,
            RawPart::PckCrlChain => &mut self.pck_crl_chain,
            RawPart::RootCaCrl => &mut self.root_ca_crl,
        }
    }

    /// Reads the parts from a directory holding one file per part, named
    /// [`RawPart::name`]. `Ok(None)` if the directory does not exist.
    pub fn read_dir(dir: &Path) -> Result<Option<RawCollateral>, CollateralError> {
        use provenant_base::fsutil::{read_bounded, ReadError};
        if !dir.is_dir() {
            return Ok(None);
        }
        let mut raw = RawCollateral::default();
        for part in RawPart::ALL {
            let path = dir.join(part.name());
            let max = u64::try_from(part.max_bytes()).unwrap_or(u64::MAX);
            *raw.part_mut(part) = read_bounded(&path, max).map_err(|e| {
                let detail = match e {
                    ReadError::TooLarge { max } => format!("over {max} bytes"),
                    ReadError::Io(e) => e.to_string(),
                };
                CollateralError::OfflineUnreadable {
                    path: path.display().to_string(),
                    detail,
                }
            })?;
        }
        Ok(Some(raw))
    }
}

fn malformed(part: RawPart) -> impl Fn(String) -> RawCollateralError {
    move |detail| RawCollateralError::Malformed { part, detail }
}

/// A signed JSON body: the signed object's exact bytes and the 64-byte signature.
fn body(raw: &RawCollateral, part: RawPart) -> Result<(String, Vec<u8>), RawCollateralError> {
    let (endpoint, field) = match part {
        RawPart::TcbInfo => (Endpoint::TcbInfo, "tcbInfo"),
        _ => (Endpoint::QeIdentity, "enclaveIdentity"),
    };
    signed_json(endpoint, raw.part(part), field).map_err(|e| match e {
        CollateralError::MalformedBody { detail, .. } => malformed(part)(detail),
        e => malformed(part)(e.to_string()),
    })
}

/// An issuer chain: plain PEM, or URL-encoded PEM as in the response header.
fn chain(raw: &RawCollateral, part: RawPart) -> Result<String, RawCollateralError> {
    let bad = malformed(part);
    let text = std::str::from_utf8(raw.part(part)).map_err(|_| bad("not UTF-8 text".into()))?;
    // PEM has no `%` (base64 and its armour lines): any `%` means URL-encoded, as
    // in the header (`-----BEGIN%20CERTIFICATE-----%0A...`).
    let pem = if text.contains('%') {
        percent_decode(text.trim_ascii()).map_err(&bad)?
    } else {
        text.to_string()
    };
    check_chain(&pem).map_err(&bad)?;
    Ok(pem)
}

/// A CRL: DER, PEM (`X509 CRL`) or hex text.
fn crl(raw: &RawCollateral, part: RawPart) -> Result<Vec<u8>, RawCollateralError> {
    let bad = malformed(part);
    let bytes = raw.part(part);
    if bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
        let (label, der) =
            x509_cert::der::pem::decode_vec(bytes.trim_ascii()).map_err(|e| bad(e.to_string()))?;
        if label != "X509 CRL" {
            return Err(bad(format!("PEM label {label:?}, not \"X509 CRL\"")));
        }
        return Ok(der);
    }
    crl_der(bytes).map_err(bad)
}

/// Converts raw responses into the collateral dcap-qvl takes, checking each part's
/// format and reading its dates and FMSPC. Signatures are not checked: see
/// [`import`].
pub fn assemble(raw: &RawCollateral) -> Result<FetchedCollateral, RawCollateralError> {
    for part in RawPart::ALL {
        if raw.part(part).len() > part.max_bytes() {
            return Err(RawCollateralError::TooLarge {
                part,
                limit: part.max_bytes(),
            });
        }
    }
    let (tcb_info, tcb_info_signature) = body(raw, RawPart::TcbInfo)?;
    let (qe_identity, qe_identity_signature) = body(raw, RawPart::QeIdentity)?;
    let collateral = QuoteCollateralV3 {
        tcb_info_issuer_chain: chain(raw, RawPart::TcbInfoChain)?,
        tcb_info,
        tcb_info_signature,
        qe_identity_issuer_chain: chain(raw, RawPart::QeIdentityChain)?,
        qe_identity,
        qe_identity_signature,
        pck_crl_issuer_chain: chain(raw, RawPart::PckCrlChain)?,
        pck_crl: crl(raw, RawPart::PckCrl)?,
        root_ca_crl: crl(raw, RawPart::RootCaCrl)?,
        pck_certificate_chain: None,
    };
    FetchedCollateral::from_collateral(collateral).map_err(|e| match e {
        CollateralError::MalformedBody { endpoint, detail } => {
            let part = match endpoint {
                Endpoint::TcbInfo => RawPart::TcbInfo,
                Endpoint::QeIdentity => RawPart::QeIdentity,
                Endpoint::PckCrl => RawPart::PckCrl,
                Endpoint::RootCaCrl => RawPart::RootCaCrl,
            };
            malformed(part)(detail)
        }
        e => malformed(RawPart::TcbInfo)(e.to_string()),
    })
}

/// [`assemble`], then every signature checked to `root_der` (DER): each issuer
/// chain ends at the root, each certificate signed by the next; the TCB info and QE
/// identity signed over their exact bytes by their chain's leaf; the PCK CRL by its
/// chain's leaf; the root CA CRL by the root. Nothing unverified is returned.
/// Validity windows are not judged here: DCAP judges them at verification time.
pub fn import(
    raw: &RawCollateral,
    root_der: &[u8],
) -> Result<FetchedCollateral, RawCollateralError> {
    use x509_cert::der::Decode;
    let fc = assemble(raw)?;
    let c = fc.collateral();
    let unverified = |part| move |detail| RawCollateralError::Unverified { part, detail };
    let root = x509_cert::Certificate::from_der(root_der)
        .map_err(|e| unverified(RawPart::RootCaCrl)(format!("trusted root: {e}")))?;
    let leaf = chain_leaf(&c.tcb_info_issuer_chain, root_der)
        .map_err(unverified(RawPart::TcbInfoChain))?;
    raw_signature(&leaf, c.tcb_info.as_bytes(), &c.tcb_info_signature)
        .map_err(unverified(RawPart::TcbInfo))?;
    let leaf = chain_leaf(&c.qe_identity_issuer_chain, root_der)
        .map_err(unverified(RawPart::QeIdentityChain))?;
    raw_signature(&leaf, c.qe_identity.as_bytes(), &c.qe_identity_signature)
        .map_err(unverified(RawPart::QeIdentity))?;
    let leaf =
        chain_leaf(&c.pck_crl_issuer_chain, root_der).map_err(unverified(RawPart::PckCrlChain))?;
    crl_signed_by(&c.pck_crl, &leaf).map_err(unverified(RawPart::PckCrl))?;
    crl_signed_by(&c.root_ca_crl, &root).map_err(unverified(RawPart::RootCaCrl))?;
    // The whole, once more, as every cached entry is checked.
    verify_collateral(c, root_der).map_err(|e| unverified(RawPart::TcbInfo)(e.to_string()))?;
    Ok(fc)
}

/// The PCK CA whose CRL this collateral carries, from the CRL's issuer name.
pub fn pck_crl_ca(fc: &FetchedCollateral) -> Option<PckCa> {
    use x509_cert::der::Decode;
    let crl = x509_cert::crl::CertificateList::from_der(&fc.collateral().pck_crl).ok()?;
    let issuer = crl.tbs_cert_list.issuer.to_string();
    if issuer.contains("PCK Platform CA") {
        Some(PckCa::Platform)
    } else if issuer.contains("PCK Processor CA") {
        Some(PckCa::Processor)
    } else {
        None
    }
}
