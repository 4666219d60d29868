//! TD report bodies and real, signed DCAP quotes (v4 and v5) over them.
//!
//! A quote made here is signed exactly as a TDX quoting enclave signs one: the
//! attestation key signs header + body; the QE report binds the attestation key
//! (REPORTDATA = SHA-256(attestation key ‖ QE auth data), zero padded) and is signed by
//! the PCK leaf key; the PCK chain (leaf, platform CA, TEST root) rides along in
//! certification data type 5. Only the trust anchor differs from a real platform.

use std::sync::OnceLock;

use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::DecodePrivateKey;
use sha2::{Digest, Sha256};

use crate::pki::TestPki;
use crate::platform;

/// Byte offsets in a v4 quote made by this crate (v5 adds 6 bytes after the header).
pub mod layout {
    /// Quote header length.
    pub const HEADER_LEN: usize = 48;
    /// TD 1.0 report body length.
    pub const TD10_BODY_LEN: usize = 584;
    /// QE report length.
    pub const QE_REPORT_LEN: usize = 384;
    /// v4: where the body starts.
    pub const V4_BODY: usize = HEADER_LEN;
    /// v4: MRTD.
    pub const V4_MRTD: usize = V4_BODY + 136;
    /// v4: RTMR3.
    pub const V4_RTMR3: usize = V4_BODY + 472;
    /// v4: REPORTDATA.
    pub const V4_REPORT_DATA: usize = V4_BODY + 520;
    /// v4: the u32 signature data length.
    pub const V4_SIG_DATA_LEN: usize = V4_BODY + TD10_BODY_LEN;
    /// v4: the quote signature (r‖s over header + body).
    pub const V4_SIGNATURE: usize = V4_SIG_DATA_LEN + 4;
    /// v4: the attestation public key (x‖y).
    pub const V4_ATTESTATION_KEY: usize = V4_SIGNATURE + 64;
    /// v4: the QE report (after the type-6 certification data header).
    pub const V4_QE_REPORT: usize = V4_ATTESTATION_KEY + 64 + 2 + 4;
    /// v4: the QE report signature.
    pub const V4_QE_REPORT_SIGNATURE: usize = V4_QE_REPORT + QE_REPORT_LEN;
}

/// A TD 1.0 report body. The defaults are consistent with the test collateral
/// (TEE_TCB_SVN, MRSIGNERSEAM, SEAMATTRIBUTES) and pass dcap-qvl's attribute checks
/// (SEPT_VE_DISABLE set, no TUD bits); MRTD, MRSEAM and RTMR0–2 are labelled test
/// values, RTMR3 and REPORTDATA are zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdReport {
    /// TEE_TCB_SVN: byte 0 TDX module ISVSVN, byte 1 module version, byte 2 late
    /// microcode SVN (see [`platform::UP_TO_DATE_TEE_TCB_SVN`]).
    pub tee_tcb_svn: [u8; 16],
    /// MRSEAM: measurement of the TDX module.
    pub mrseam: [u8; 48],
    /// MRSIGNERSEAM: signer of the TDX module (zero for Intel-signed modules).
    pub mrsignerseam: [u8; 48],
    /// SEAMATTRIBUTES of the TDX module.
    pub seam_attributes: [u8; 8],
    /// TDATTRIBUTES, little-endian (bit 0 DEBUG, bit 28 SEPT_VE_DISABLE).
    pub td_attributes: [u8; 8],
    /// XFAM: the extended CPU features the TD may use, little-endian.
    pub xfam: [u8; 8],
    /// MRTD: measurement of the TD's initial contents (firmware).
    pub mrtd: [u8; 48],
    /// MRCONFIGID: software-defined TD configuration id set by the host.
    pub mrconfigid: [u8; 48],
    /// MROWNER: software-defined id of the TD's owner.
    pub mrowner: [u8; 48],
    /// MROWNERCONFIG: software-defined owner configuration.
    pub mrownerconfig: [u8; 48],
    /// RTMR0–3, in order.
    pub rtmrs: [[u8; 48]; 4],
    /// REPORTDATA: 64 bytes chosen by the requester (e.g. a nonce binding).
    pub report_data: [u8; 64],
}

/// TDATTRIBUTES bit 28, SEPT_VE_DISABLE, as the 8 little-endian bytes of the field.
pub const TD_ATTRIBUTES_SEPT_VE_DISABLE: [u8; 8] = [0, 0, 0, 0x10, 0, 0, 0, 0];
/// A typical XFAM (x87, SSE, AVX, AVX-512, PK, ...), as in real quotes.
pub const DEFAULT_XFAM: [u8; 8] = [0xe7, 0x02, 0x06, 0, 0, 0, 0, 0];

/// The default RTMR0–2 (also what [`crate::RtmrDevice`] exposes) and RTMR3 (zero).
pub fn default_rtmrs() -> [[u8; 48]; 4] {
    [
        platform::derived("tdx-sim TEST RTMR0"),
        platform::derived("tdx-sim TEST RTMR1"),
        platform::derived("tdx-sim TEST RTMR2"),
        [0; 48],
    ]
}

impl Default for TdReport {
    fn default() -> Self {
        TdReport {
            tee_tcb_svn: platform::UP_TO_DATE_TEE_TCB_SVN,
            mrseam: platform::derived("tdx-sim TEST MRSEAM"),
            mrsignerseam: platform::MRSIGNERSEAM,
            seam_attributes: platform::SEAM_ATTRIBUTES,
            td_attributes: TD_ATTRIBUTES_SEPT_VE_DISABLE,
            xfam: DEFAULT_XFAM,
            mrtd: platform::derived("tdx-sim TEST MRTD"),
            mrconfigid: [0; 48],
            mrowner: [0; 48],
            mrownerconfig: [0; 48],
            rtmrs: default_rtmrs(),
            report_data: [0; 64],
        }
    }
}

impl TdReport {
    /// The defaults (same as `Default`).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets MRTD.
    pub fn with_mrtd(mut self, mrtd: [u8; 48]) -> Self {
        self.mrtd = mrtd;
        self
    }

    /// Sets RTMR `index`; an index above 3 is ignored.
    pub fn with_rtmr(mut self, index: usize, value: [u8; 48]) -> Self {
        if let Some(r) = self.rtmrs.get_mut(index) {
            *r = value;
        }
        self
    }

    /// Sets all four RTMRs.
    pub fn with_rtmrs(mut self, rtmrs: [[u8; 48]; 4]) -> Self {
        self.rtmrs = rtmrs;
        self
    }

    /// Sets REPORTDATA.
    pub fn with_report_data(mut self, report_data: [u8; 64]) -> Self {
        self.report_data = report_data;
        self
    }

    /// Sets MRCONFIGID.
    pub fn with_mrconfigid(mut self, v: [u8; 48]) -> Self {
        self.mrconfigid = v;
        self
    }

    /// Sets MROWNER.
    pub fn with_mrowner(mut self, v: [u8; 48]) -> Self {
        self.mrowner = v;
        self
    }

    /// Sets MROWNERCONFIG.
    pub fn with_mrownerconfig(mut self, v: [u8; 48]) -> Self {
        self.mrownerconfig = v;
        self
    }

    /// Sets MRSEAM.
    pub fn with_mrseam(mut self, v: [u8; 48]) -> Self {
        self.mrseam = v;
        self
    }

    /// Sets XFAM.
    pub fn with_xfam(mut self, v: [u8; 8]) -> Self {
        self.xfam = v;
        self
    }

    /// Sets TDATTRIBUTES (all 8 bytes; see also [`TdReport::with_debug`]).
    pub fn with_td_attributes(mut self, v: [u8; 8]) -> Self {
        self.td_attributes = v;
        self
    }

    /// Sets or clears TDATTRIBUTES bit 0 (DEBUG).
    pub fn with_debug(mut self, debug: bool) -> Self {
        if debug {
            self.td_attributes[0] |= 1;
        } else {
            self.td_attributes[0] &= !1;
        }
        self
    }

    /// Sets TEE_TCB_SVN (see [`TdReport::out_of_date`] and `platform::*_TEE_TCB_SVN`).
    pub fn with_tee_tcb_svn(mut self, v: [u8; 16]) -> Self {
        self.tee_tcb_svn = v;
        self
    }

    /// TEE_TCB_SVN below the test collateral's `UpToDate` level: the quote verifies
    /// with status `OutOfDate`.
    pub fn out_of_date(self) -> Self {
        self.with_tee_tcb_svn(platform::OUT_OF_DATE_TEE_TCB_SVN)
    }

    /// The 584-byte body, in quote order.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(layout::TD10_BODY_LEN);
        b.extend_from_slice(&self.tee_tcb_svn);
        b.extend_from_slice(&self.mrseam);
        b.extend_from_slice(&self.mrsignerseam);
        b.extend_from_slice(&self.seam_attributes);
        b.extend_from_slice(&self.td_attributes);
        b.extend_from_slice(&self.xfam);
        b.extend_from_slice(&self.mrtd);
        b.extend_from_slice(&self.mrconfigid);
        b.extend_from_slice(&self.mrowner);
        b.extend_from_slice(&self.mrownerconfig);
        for r in &self.rtmrs {
            b.extend_from_slice(r);
        }
        b.extend_from_slice(&self.report_data);
        debug_assert_eq!(b.len(), layout::TD10_BODY_LEN);
        b
    }

    /// A signed v4 quote over this body (see [`build_quote_v4`]).
    pub fn quote_v4(&self) -> Vec<u8> {
        build_quote_v4(self)
    }

    /// A signed v5 quote over this body (see [`build_quote_v5`]).
    pub fn quote_v5(&self) -> Vec<u8> {
        build_quote_v5(self)
    }

    /// A signed v5 quote with a TD 1.5 body over this one (see
    /// [`build_quote_v5_td15`]).
    pub fn quote_v5_td15(&self, mrservicetd: [u8; 48]) -> Vec<u8> {
        build_quote_v5_td15(self, mrservicetd)
    }
}

struct Keys {
    attestation: SigningKey,
    pck_leaf: SigningKey,
}

/// The checked-in keys, parsed once. They are the crate's own data, made by
/// `gen-test-pki` and exercised by its tests, so a failure here is a broken checkout.
fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys {
        attestation: SigningKey::from_pkcs8_pem(TestPki::qe_attestation_key_pem())
            .expect("tdx-sim/pki/qe_attestation.key.pem is a P-256 PKCS#8 key"),
        pck_leaf: SigningKey::from_pkcs8_pem(TestPki::pck_leaf_key_pem())
            .expect("tdx-sim/pki/pck_leaf.key.pem is a P-256 PKCS#8 key"),
    })
}

/// Parses the keys now, so that a thread that builds quotes later cannot fail on them.
pub(crate) fn preload_keys() {
    let _ = keys();
}

fn u16_le(v: usize) -> [u8; 2] {
    u16::try_from(v).unwrap_or(u16::MAX).to_le_bytes()
}

fn u32_le(v: usize) -> [u8; 4] {
    u32::try_from(v).unwrap_or(u32::MAX).to_le_bytes()
}

fn header(version: u16) -> Vec<u8> {
    let mut h = Vec::with_capacity(layout::HEADER_LEN);
    h.extend_from_slice(&version.to_le_bytes());
    h.extend_from_slice(&2u16.to_le_bytes()); // ECDSA-256 with P-256
    h.extend_from_slice(&0x81u32.to_le_bytes()); // TDX
    h.extend_from_slice(&platform::QE_ISV_SVN.to_le_bytes());
    h.extend_from_slice(&platform::PCE_SVN.to_le_bytes());
    h.extend_from_slice(&platform::INTEL_QE_VENDOR_ID);
    // User data: the QE id (16 bytes), then zeros.
    h.extend_from_slice(&platform::derived::<16>("tdx-sim TEST QE id"));
    h.extend_from_slice(&[0; 4]);
    debug_assert_eq!(h.len(), layout::HEADER_LEN);
    h
}

/// The QE's SGX report (384 bytes) binding `attestation_key` (x‖y).
fn qe_report(attestation_key: &[u8; 64]) -> Vec<u8> {
    let mut r = Vec::with_capacity(layout::QE_REPORT_LEN);
    r.extend_from_slice(&platform::CPU_SVN);
    r.extend_from_slice(&platform::QE_MISCSELECT.to_le_bytes());
    r.extend_from_slice(&[0; 28]);
    r.extend_from_slice(&platform::QE_ATTRIBUTES);
    r.extend_from_slice(&platform::qe_mrenclave());
    r.extend_from_slice(&[0; 32]);
    r.extend_from_slice(&platform::qe_mrsigner());
    r.extend_from_slice(&[0; 96]);
    r.extend_from_slice(&platform::QE_ISV_PROD_ID.to_le_bytes());
    r.extend_from_slice(&platform::QE_ISV_SVN.to_le_bytes());
    r.extend_from_slice(&[0; 60]);
    let mut h = Sha256::new();
    h.update(attestation_key);
    h.update(platform::QE_AUTH_DATA);
    r.extend_from_slice(&h.finalize());
    r.extend_from_slice(&[0; 32]);
    debug_assert_eq!(r.len(), layout::QE_REPORT_LEN);
    r
}

fn sign(key: &SigningKey, msg: &[u8]) -> [u8; 64] {
    let sig: Signature = key.sign(msg);
    sig.to_bytes().into()
}

/// Appends the signature data (u32 length, then the data) for `signed` = header + body.
fn append_signature_data(quote: &mut Vec<u8>) {
    let k = keys();
    let point = k.attestation.verifying_key().to_encoded_point(false);
    let mut att_key = [0u8; 64];
    // An uncompressed SEC1 point is 0x04 ‖ x ‖ y.
    if let Some(xy) = point.as_bytes().get(1..65) {
        att_key.copy_from_slice(xy);
    }
    let quote_sig = sign(&k.attestation, quote);
    let qe_report = qe_report(&att_key);
    let qe_report_sig = sign(&k.pck_leaf, &qe_report);
    let chain = TestPki::pck_chain_pem().as_bytes();

    let mut cert6 = Vec::new();
    cert6.extend_from_slice(&qe_report);
    cert6.extend_from_slice(&qe_report_sig);
    cert6.extend_from_slice(&u16_le(platform::QE_AUTH_DATA.len()));
    cert6.extend_from_slice(&platform::QE_AUTH_DATA);
    cert6.extend_from_slice(&5u16.to_le_bytes());
    cert6.extend_from_slice(&u32_le(chain.len()));
    cert6.extend_from_slice(chain);

    let mut sig = Vec::new();
    sig.extend_from_slice(&quote_sig);
    sig.extend_from_slice(&att_key);
    sig.extend_from_slice(&6u16.to_le_bytes());
    sig.extend_from_slice(&u32_le(cert6.len()));
    sig.extend_from_slice(&cert6);

    quote.extend_from_slice(&u32_le(sig.len()));
    quote.extend_from_slice(&sig);
}

/// A signed DCAP v4 TDX quote over `body`: header (version 4, ECDSA P-256, TEE 0x81,
/// Intel's QE vendor id), the 584-byte body, and signature data (quote signature,
/// attestation key, certification data type 6 with the QE report, its PCK signature,
/// 32 bytes of QE auth data and certification data type 5 with the PEM PCK chain).
pub fn build_quote_v4(body: &TdReport) -> Vec<u8> {
    let mut q = header(4);
    q.extend_from_slice(&body.to_bytes());
    append_signature_data(&mut q);
    q
}

/// A signed DCAP v5 TDX quote: as [`build_quote_v4`], with body type 2 (TD 1.0) and
/// body size 584 between the header and the body.
pub fn build_quote_v5(body: &TdReport) -> Vec<u8> {
    let mut q = header(5);
    q.extend_from_slice(&2u16.to_le_bytes());
    q.extend_from_slice(&u32_le(layout::TD10_BODY_LEN));
    q.extend_from_slice(&body.to_bytes());
    append_signature_data(&mut q);
    q
}

/// TD 1.5 report body length (TD 1.0 + TEE_TCB_SVN2 + MRSERVICETD).
pub const TD15_BODY_LEN: usize = layout::TD10_BODY_LEN + 16 + 48;

/// A signed DCAP v5 TDX quote with body type 3 (TD 1.5, 648 bytes): `body`, then
/// TEE_TCB_SVN2 (equal to TEE_TCB_SVN: no TD-preserving module update happened) and
/// `mrservicetd` (non-zero: the TD is bound to that service TD).
pub fn build_quote_v5_td15(body: &TdReport, mrservicetd: [u8; 48]) -> Vec<u8> {
    let mut q = header(5);
    q.extend_from_slice(&3u16.to_le_bytes());
    q.extend_from_slice(&u32_le(TD15_BODY_LEN));
    q.extend_from_slice(&body.to_bytes());
    q.extend_from_slice(&body.tee_tcb_svn);
    q.extend_from_slice(&mrservicetd);
    append_signature_data(&mut q);
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_layout_matches_the_offsets() {
        let body = TdReport::new()
            .with_report_data([0xab; 64])
            .with_mrtd([0xcd; 48]);
        let q = build_quote_v4(&body);
        assert_eq!(&q[0..2], &4u16.to_le_bytes());
        assert_eq!(
            &q[layout::V4_REPORT_DATA..layout::V4_REPORT_DATA + 64],
            &[0xab; 64][..]
        );
        assert_eq!(&q[layout::V4_MRTD..layout::V4_MRTD + 48], &[0xcd; 48][..]);
        let sig_len = u32::from_le_bytes(
            q[layout::V4_SIG_DATA_LEN..layout::V4_SIGNATURE]
                .try_into()
                .unwrap(),
        );
        assert_eq!(
            usize::try_from(sig_len).unwrap(),
            q.len() - layout::V4_SIGNATURE
        );
        assert_eq!(
            &q[layout::V4_QE_REPORT - 6..layout::V4_QE_REPORT - 4],
            &6u16.to_le_bytes()
        );
    }

    #[test]
    fn debug_setter_touches_only_bit_0() {
        let r = TdReport::new().with_debug(true);
        assert_eq!(r.td_attributes, [1, 0, 0, 0x10, 0, 0, 0, 0]);
        assert_eq!(
            r.with_debug(false).td_attributes,
            TD_ATTRIBUTES_SEPT_VE_DISABLE
        );
    }
}
