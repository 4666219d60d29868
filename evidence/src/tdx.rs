//! TDX quote parsing (DCAP quote v4 and v5; TD 1.0 and TD 1.5 report bodies).
//!
//! Parsing only: this module extracts typed fields and the byte ranges the signatures
//! cover. It verifies nothing. Verification (quote signature, QE report, PCK chain,
//! collateral) belongs to the control plane, which must never act on a parsed quote
//! it has not verified.
//!
//! Every read goes through [`Reader`], which returns an error naming the field and
//! offset on a short input and never panics or indexes out of bounds. Every length the
//! quote declares is checked against what follows it and, for the PCK chain, against
//! [`MAX_PCK_CHAIN_BYTES`]; the signature data and the certification data must be
//! exactly their fields. Bytes after the signature data are tolerated (real quotes
//! carry padding) and counted in [`Quote::trailing_bytes`].

use serde::Serialize;

use crate::codec::{CodecError, Reader};
use crate::report::HexBytes;

/// Largest quote accepted. The kernel's configfs-tsm buffer is 128 KiB; a quote with a
/// full PCK chain is about 5 KiB.
pub const MAX_QUOTE_BYTES: usize = 128 * 1024;

/// Largest PCK certificate chain accepted in the certification data. Intel's chain
/// (PCK leaf, platform or processor CA, root) is about 3.7 KiB of PEM; eight times
/// that is still a chain of a handful of certificates, and anything larger is not
/// what a QE produces.
pub const MAX_PCK_CHAIN_BYTES: usize = 32 * 1024;

/// TEE type of TDX in the quote header.
pub const TEE_TYPE_TDX: u32 = 0x81;
/// ECDSA-256 with P-256, the only attestation key type DCAP defines for TDX.
pub const ATT_KEY_ECDSA_P256: u16 = 2;

const HEADER_LEN: usize = 48;
const TD10_LEN: usize = 584;
const TD15_LEN: usize = 648;
const QE_REPORT_LEN: usize = 384;
/// Certification data type 6: QE report certification data.
const CERT_QE_REPORT: u16 = 6;
/// Certification data type 5: PCK certificate chain (PEM).
const CERT_PCK_CHAIN: u16 = 5;

/// Why a quote (or TDREPORT) could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuoteError {
    /// The input ends inside a field.
    #[error("quote truncated: {field} needs {need} bytes at offset {offset}, {have} left")]
    Truncated {
        /// The field.
        field: &'static str,
        /// Its offset (within its length-prefixed structure).
        offset: usize,
        /// Its size.
        need: usize,
        /// The bytes left from `offset`.
        have: usize,
    },
    /// A quote over [`MAX_QUOTE_BYTES`].
    #[error("quote is {len} bytes, over the limit of {MAX_QUOTE_BYTES}")]
    TooLarge {
        /// Its size.
        len: usize,
    },
    /// A quote version other than 4 or 5.
    #[error("unsupported quote version {0} (4 and 5 are supported)")]
    UnsupportedVersion(u16),
    /// A TEE type other than TDX (or, for a TDREPORT, a report type other than TDX).
    #[error("TEE type {0:#x} is not TDX (0x81)")]
    NotTdx(u32),
    /// An attestation key type other than ECDSA P-256.
    #[error("attestation key type {0} is not ECDSA P-256 (2)")]
    UnsupportedKeyType(u16),
    /// A v5 body type other than TD 1.0 or TD 1.5.
    #[error("unsupported v5 body type {0} (2 = TD 1.0, 3 = TD 1.5)")]
    UnsupportedBodyType(u16),
    /// A v5 body whose declared size is not its type's.
    #[error("v5 body of type {body_type} declares {declared} bytes, expected {expected}")]
    BodySize {
        /// The body type.
        body_type: u16,
        /// The declared size.
        declared: u32,
        /// The type's size.
        expected: usize,
    },
    /// Certification data of an unexpected type.
    #[error("certification data type {got} where {expected} was expected")]
    CertDataType {
        /// The type required here.
        expected: u16,
        /// The type found.
        got: u16,
    },
    /// A declared length larger than what follows it (or, for a TDREPORT, an input
    /// of the wrong size).
    #[error("{field} declares {declared} bytes but only {available} follow")]
    Length {
        /// The field.
        field: &'static str,
        /// The declared length.
        declared: usize,
        /// The bytes that follow.
        available: usize,
    },
    /// A declared length over its named limit.
    #[error("{field} declares {declared} bytes, over the limit of {max}")]
    TooLong {
        /// The field.
        field: &'static str,
        /// The declared length.
        declared: usize,
        /// The limit.
        max: usize,
    },
    /// A length-prefixed structure whose declared length is larger than its
    /// contents: the extra bytes would be covered by no check.
    #[error("{field} has {extra} bytes after its last field")]
    Unconsumed {
        /// The structure.
        field: &'static str,
        /// The bytes after its last field.
        extra: usize,
    },
}

impl From<CodecError> for QuoteError {
    fn from(e: CodecError) -> QuoteError {
        match e {
            CodecError::Truncated {
                field,
                offset,
                need,
                have,
            } => QuoteError::Truncated {
                field,
                offset,
                need,
                have,
            },
            CodecError::Length {
                field,
                declared,
                available,
                ..
            } => QuoteError::Length {
                field,
                declared,
                available,
            },
            CodecError::TooLarge { what, len, max } => QuoteError::TooLong {
                field: what,
                declared: len,
                max,
            },
        }
    }
}

fn usize_from(v: u32) -> usize {
    // u32 always fits in usize on the 32/64-bit targets Provenant supports.
    usize::try_from(v).unwrap_or(usize::MAX)
}

/// A 48-byte (SHA-384) measurement register.
pub type Mr = HexBytes<48>;

/// The quote header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuoteHeader {
    /// Quote format version (4 or 5).
    pub version: u16,
    /// Attestation key type ([`ATT_KEY_ECDSA_P256`]).
    pub att_key_type: u16,
    /// TEE type ([`TEE_TYPE_TDX`]).
    pub tee_type: u32,
    /// The quoting enclave's SVN.
    pub qe_svn: u16,
    /// The provisioning certification enclave's SVN.
    pub pce_svn: u16,
    /// The QE vendor (Intel's UUID for Intel's QE).
    pub qe_vendor_id: HexBytes<16>,
    /// QE-defined data (Intel's QE puts a QE identifier in the first 16 bytes).
    pub user_data: HexBytes<20>,
}

/// Which TD report body the quote carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum BodyKind {
    /// TD 1.0 (584 bytes).
    #[serde(rename = "td10")]
    Td10,
    /// TD 1.5 (648 bytes: TEE_TCB_SVN2 and MRSERVICETD added).
    #[serde(rename = "td15")]
    Td15,
}

/// The TD report body: what the TD measured and asked to be bound.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TdReport {
    /// TD 1.0 or TD 1.5 layout.
    pub kind: BodyKind,
    /// The TDX module's TCB SVN.
    pub tee_tcb_svn: HexBytes<16>,
    /// Measurement of the TDX module.
    pub mrseam: Mr,
    /// Signer of the TDX module (zero for Intel's).
    pub mrsignerseam: Mr,
    /// The TDX module's attributes.
    pub seam_attributes: HexBytes<8>,
    /// TDATTRIBUTES (bit 0: DEBUG).
    pub td_attributes: HexBytes<8>,
    /// The TD's extended features (XSAVE) mask.
    pub xfam: HexBytes<8>,
    /// Measurement of the initial TD contents (the firmware).
    pub mrtd: Mr,
    /// Software-defined configuration id, set by the host at TD creation.
    pub mrconfigid: Mr,
    /// Software-defined owner id, set by the host at TD creation.
    pub mrowner: Mr,
    /// Software-defined owner configuration, set by the host at TD creation.
    pub mrownerconfig: Mr,
    /// RTMR0–3, extended at run time.
    pub rtmrs: [Mr; 4],
    /// The 64 bytes the TD asked to be bound ([`crate::report_data`]).
    pub report_data: HexBytes<64>,
    /// TD 1.5 only.
    pub tee_tcb_svn2: Option<HexBytes<16>>,
    /// TD 1.5 only.
    pub mrservicetd: Option<Mr>,
}

impl TdReport {
    /// TDATTRIBUTES bit 0: the TD is debuggable, so its memory is not confidential.
    pub fn debug(&self) -> bool {
        self.td_attributes.0[0] & 1 != 0
    }
    /// Any bit of the TUD group (TDATTRIBUTES bits 0–7).
    pub fn tud_bits(&self) -> u8 {
        self.td_attributes.0[0]
    }
    /// TDATTRIBUTES bit 17, SERVTD_EXT: service TDs may be bound after launch.
    pub fn servtd_ext(&self) -> bool {
        self.td_attributes.0[2] & 0x02 != 0
    }
    /// TDATTRIBUTES bit 28, SEPT_VE_DISABLE: EPT violations on pending pages are not
    /// turned into #VE in the guest. Clear, the host's VMM can inject them.
    pub fn sept_ve_disabled(&self) -> bool {
        self.td_attributes.0[3] & 0x10 != 0
    }
    /// TDATTRIBUTES bit 29, MIGRATABLE: a migration TD may move the TD's state.
    pub fn migratable(&self) -> bool {
        self.td_attributes.0[3] & 0x20 != 0
    }
    /// The MRSERVICETD of a TD 1.5 body bound to a service TD (non-zero); `None` for
    /// a TD 1.0 body or an unbound TD (all zero).
    pub fn service_td(&self) -> Option<&Mr> {
        self.mrservicetd.as_ref().filter(|m| m.0 != [0u8; 48])
    }
}

/// ECDSA quote signature data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteSignature {
    /// r‖s over header + body.
    pub signature: [u8; 64],
    /// Attestation public key x‖y.
    pub attestation_key: [u8; 64],
    /// The QE's SGX report.
    pub qe_report: [u8; QE_REPORT_LEN],
    /// r‖s over the QE report, by the PCK leaf key.
    pub qe_report_signature: [u8; 64],
    /// QE authentication data, hashed with the attestation key into the QE report.
    pub qe_auth_data: Vec<u8>,
    /// PEM PCK certificate chain (leaf, intermediate, root).
    pub pck_chain_pem: Vec<u8>,
}

/// A parsed TDX quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    /// The header.
    pub header: QuoteHeader,
    /// The TD report body.
    pub body: TdReport,
    /// The signature data.
    pub signature: QuoteSignature,
    /// Length of header + body: the bytes the attestation key signed.
    pub signed_len: usize,
    /// Bytes after the signature data.
    pub trailing_bytes: usize,
}

fn mr(r: &mut Reader<'_>, f: &'static str) -> Result<Mr, QuoteError> {
    Ok(HexBytes(r.array::<48>(f)?))
}

fn parse_body(r: &mut Reader<'_>, kind: BodyKind) -> Result<TdReport, QuoteError> {
    let mut b = TdReport {
        kind,
        tee_tcb_svn: HexBytes(r.array("tee_tcb_svn")?),
        mrseam: mr(r, "mrseam")?,
        mrsignerseam: mr(r, "mrsignerseam")?,
        seam_attributes: HexBytes(r.array("seam_attributes")?),
        td_attributes: HexBytes(r.array("td_attributes")?),
        xfam: HexBytes(r.array("xfam")?),
        mrtd: mr(r, "mrtd")?,
        mrconfigid: mr(r, "mrconfigid")?,
        mrowner: mr(r, "mrowner")?,
        mrownerconfig: mr(r, "mrownerconfig")?,
        rtmrs: [
            mr(r, "rtmr0")?,
            mr(r, "rtmr1")?,
            mr(r, "rtmr2")?,
            mr(r, "rtmr3")?,
        ],
        report_data: HexBytes(r.array("report_data")?),
        tee_tcb_svn2: None,
        mrservicetd: None,
    };
    if kind == BodyKind::Td15 {
        b.tee_tcb_svn2 = Some(HexBytes(r.array("tee_tcb_svn2")?));
        b.mrservicetd = Some(mr(r, "mrservicetd")?);
    }
    Ok(b)
}

impl Quote {
    /// Parses a quote. Accepts only TDX quotes with an ECDSA P-256 attestation key.
    pub fn parse(bytes: &[u8]) -> Result<Quote, QuoteError> {
        if bytes.len() > MAX_QUOTE_BYTES {
            return Err(QuoteError::TooLarge { len: bytes.len() });
        }
        let mut r = Reader::new(bytes);
        let version = r.u16("version")?;
        let att_key_type = r.u16("att_key_type")?;
        let tee_type = r.u32("tee_type")?;
        let qe_svn = r.u16("qe_svn")?;
        let pce_svn = r.u16("pce_svn")?;
        let qe_vendor_id = HexBytes(r.array("qe_vendor_id")?);
        let user_data = HexBytes(r.array("user_data")?);
        if !(version == 4 || version == 5) {
            return Err(QuoteError::UnsupportedVersion(version));
        }
        if tee_type != TEE_TYPE_TDX {
            return Err(QuoteError::NotTdx(tee_type));
        }
        if att_key_type != ATT_KEY_ECDSA_P256 {
            return Err(QuoteError::UnsupportedKeyType(att_key_type));
        }
        debug_assert_eq!(r.offset(), HEADER_LEN);
        let header = QuoteHeader {
            version,
            att_key_type,
            tee_type,
            qe_svn,
            pce_svn,
            qe_vendor_id,
            user_data,
        };
        let body = if version == 4 {
            parse_body(&mut r, BodyKind::Td10)?
        } else {
            let body_type = r.u16("body_type")?;
            let size = r.u32("body_size")?;
            let (kind, expected) = match body_type {
                2 => (BodyKind::Td10, TD10_LEN),
                3 => (BodyKind::Td15, TD15_LEN),
                other => return Err(QuoteError::UnsupportedBodyType(other)),
            };
            if usize_from(size) != expected {
                return Err(QuoteError::BodySize {
                    body_type,
                    declared: size,
                    expected,
                });
            }
            parse_body(&mut r, kind)?
        };
        let signed_len = r.offset();

        let sig_len = usize_from(r.u32("signature_data_len")?);
        let mut s = r.sub(sig_len, "signature_data")?;
        let signature = s.array::<64>("quote_signature")?;
        let attestation_key = s.array::<64>("attestation_key")?;
        let cert_type = s.u16("certification_data_type")?;
        if cert_type != CERT_QE_REPORT {
            return Err(QuoteError::CertDataType {
                expected: CERT_QE_REPORT,
                got: cert_type,
            });
        }
        let cert_len = usize_from(s.u32("certification_data_len")?);
        let mut c = s.sub(cert_len, "certification_data")?;
        let qe_report = c.array::<QE_REPORT_LEN>("qe_report")?;
        let qe_report_signature = c.array::<64>("qe_report_signature")?;
        let auth_len = usize::from(c.u16("qe_auth_data_len")?);
        let qe_auth_data = c
            .sub(auth_len, "qe_auth_data")?
            .take(auth_len, "qe_auth_data")?
            .to_vec();
        let inner_type = c.u16("pck_certification_data_type")?;
        if inner_type != CERT_PCK_CHAIN {
            return Err(QuoteError::CertDataType {
                expected: CERT_PCK_CHAIN,
                got: inner_type,
            });
        }
        let chain_len = usize_from(c.u32("pck_chain_len")?);
        if chain_len > MAX_PCK_CHAIN_BYTES {
            return Err(QuoteError::TooLong {
                field: "pck_chain",
                declared: chain_len,
                max: MAX_PCK_CHAIN_BYTES,
            });
        }
        let pck_chain_pem = c
            .sub(chain_len, "pck_chain")?
            .take(chain_len, "pck_chain")?
            .to_vec();
        // The signature data and the QE report certification data are exactly their
        // fields: a declared length with room to spare would let bytes ride along
        // unchecked (and let a flipped length byte go unnoticed).
        for (field, rest) in [
            ("certification_data", c.remaining()),
            ("signature_data", s.remaining()),
        ] {
            if rest != 0 {
                return Err(QuoteError::Unconsumed { field, extra: rest });
            }
        }

        Ok(Quote {
            header,
            body,
            signature: QuoteSignature {
                signature,
                attestation_key,
                qe_report,
                qe_report_signature,
                qe_auth_data,
                pck_chain_pem,
            },
            signed_len,
            trailing_bytes: r.remaining(),
        })
    }

    /// The bytes the attestation key signed (header + body).
    pub fn signed_bytes<'a>(&self, raw: &'a [u8]) -> Option<&'a [u8]> {
        raw.get(..self.signed_len)
    }

    /// The QE report's REPORTDATA (offset 320 of the SGX report), which must hold
    /// SHA-256(attestation key ‖ QE auth data) in its first 32 bytes.
    pub fn qe_report_data(&self) -> &[u8] {
        self.signature.qe_report.get(320..384).unwrap_or(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn td_attribute_bits_and_service_td() {
        let mut b = TdReport {
            kind: BodyKind::Td15,
            tee_tcb_svn: HexBytes([0; 16]),
            mrseam: HexBytes([0; 48]),
            mrsignerseam: HexBytes([0; 48]),
            seam_attributes: HexBytes([0; 8]),
            td_attributes: HexBytes([0, 0, 0, 0x10, 0, 0, 0, 0]),
            xfam: HexBytes([0; 8]),
            mrtd: HexBytes([0; 48]),
            mrconfigid: HexBytes([0; 48]),
            mrowner: HexBytes([0; 48]),
            mrownerconfig: HexBytes([0; 48]),
            rtmrs: [HexBytes([0; 48]); 4],
            report_data: HexBytes([0; 64]),
            tee_tcb_svn2: Some(HexBytes([0; 16])),
            mrservicetd: Some(HexBytes([0; 48])),
        };
        assert!(!b.servtd_ext() && !b.migratable() && b.service_td().is_none());
        assert!(b.sept_ve_disabled());
        // Bit 17 and bit 29 of the little-endian u64.
        b.td_attributes = HexBytes((1u64 << 17 | 1 << 28).to_le_bytes());
        assert!(b.servtd_ext() && !b.migratable() && b.sept_ve_disabled());
        b.td_attributes = HexBytes((1u64 << 29 | 1 << 28).to_le_bytes());
        assert!(!b.servtd_ext() && b.migratable() && b.sept_ve_disabled());
        // Bit 28 clear: all zero, or every other bit set.
        for v in [0, !(1u64 << 28)] {
            b.td_attributes = HexBytes(v.to_le_bytes());
            assert!(!b.sept_ve_disabled(), "{v:#x}");
        }
        b.mrservicetd = Some(HexBytes([7; 48]));
        assert_eq!(b.service_td().map(|m| m.0), Some([7; 48]));
        b.kind = BodyKind::Td10;
        b.mrservicetd = None;
        assert!(b.service_td().is_none());
    }

    #[test]
    fn short_reads_name_the_field_and_offset() {
        assert_eq!(
            Quote::parse(&[4, 0, 2]).unwrap_err(),
            QuoteError::Truncated {
                field: "att_key_type",
                offset: 2,
                need: 2,
                have: 1
            }
        );
    }

    #[test]
    fn header_checks() {
        let mut q = vec![0u8; 48];
        q[0] = 3;
        assert_eq!(
            Quote::parse(&q).unwrap_err(),
            QuoteError::UnsupportedVersion(3)
        );
        q[0] = 4;
        q[2] = 2;
        assert_eq!(Quote::parse(&q).unwrap_err(), QuoteError::NotTdx(0));
        q[4] = 0x81;
        q[2] = 3;
        assert_eq!(
            Quote::parse(&q).unwrap_err(),
            QuoteError::UnsupportedKeyType(3)
        );
        q[2] = 2;
        assert!(matches!(
            Quote::parse(&q).unwrap_err(),
            QuoteError::Truncated {
                field: "tee_tcb_svn",
                offset: 48,
                ..
            }
        ));
        assert!(matches!(
            Quote::parse(&vec![0; MAX_QUOTE_BYTES + 1]).unwrap_err(),
            QuoteError::TooLarge { .. }
        ));
    }
}
