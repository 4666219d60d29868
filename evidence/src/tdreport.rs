//! The TDREPORT (`TDREPORT_STRUCT`, 1024 bytes) that `/dev/tdx_guest`'s
//! `TDX_CMD_GET_REPORT0` returns where no quote can be had.
//!
//! A TDREPORT is MACed with a key only the same platform holds, so a remote verifier
//! cannot check it: its fields are the guest's *claims*. The `tdx-report` evidence
//! tier says exactly that, and the control plane treats it as weaker than a quote.
//!
//! Layout (Intel TDX module ABI): REPORTMACSTRUCT at 0 (REPORTDATA at 128, MAC at
//! 224), TEE_TCB_INFO at 256 (TEE_TCB_SVN at 264, MRSEAM at 280, MRSIGNERSEAM at 328,
//! SEAM attributes at 376), TDINFO at 512 (TDATTRIBUTES 512, XFAM 520, MRTD 528,
//! MRCONFIGID 576, MROWNER 624, MROWNERCONFIG 672, RTMR0-3 at 720/768/816/864).

use crate::codec::Reader;
use crate::report::HexBytes;
use crate::tdx::{BodyKind, Mr, QuoteError, TdReport};

/// Size of `TDREPORT_STRUCT`.
pub const TDREPORT_LEN: usize = 1024;

/// REPORTTYPE.type of a TDX report (byte 0 of REPORTMACSTRUCT).
const REPORT_TYPE_TDX: u8 = 0x81;

/// Reads the fields a TDREPORT shares with a quote's TD 1.0 body. The input must be
/// exactly [`TDREPORT_LEN`] bytes and of report type TDX.
pub fn parse_tdreport(bytes: &[u8]) -> Result<TdReport, QuoteError> {
    if bytes.len() != TDREPORT_LEN {
        return Err(QuoteError::Length {
            field: "tdreport",
            declared: TDREPORT_LEN,
            available: bytes.len(),
        });
    }
    let at = |offset: usize, len: usize, field: &'static str| -> Result<Reader<'_>, QuoteError> {
        let mut r = Reader::new(bytes);
        r.take(offset, "tdreport")?;
        Ok(r.sub(len, field)?)
    };
    let mr = |offset: usize, field: &'static str| -> Result<Mr, QuoteError> {
        Ok(HexBytes(at(offset, 48, field)?.array::<48>(field)?))
    };
    let report_type = at(0, 1, "report_type")?.array::<1>("report_type")?[0];
    if report_type != REPORT_TYPE_TDX {
        return Err(QuoteError::NotTdx(u32::from(report_type)));
    }
    Ok(TdReport {
        kind: BodyKind::Td10,
        tee_tcb_svn: HexBytes(at(264, 16, "tee_tcb_svn")?.array("tee_tcb_svn")?),
        mrseam: mr(280, "mrseam")?,
        mrsignerseam: mr(328, "mrsignerseam")?,
        seam_attributes: HexBytes(at(376, 8, "seam_attributes")?.array("seam_attributes")?),
        td_attributes: HexBytes(at(512, 8, "td_attributes")?.array("td_attributes")?),
        xfam: HexBytes(at(520, 8, "xfam")?.array("xfam")?),
        mrtd: mr(528, "mrtd")?,
        mrconfigid: mr(576, "mrconfigid")?,
        mrowner: mr(624, "mrowner")?,
        mrownerconfig: mr(672, "mrownerconfig")?,
        rtmrs: [
            mr(720, "rtmr0")?,
            mr(768, "rtmr1")?,
            mr(816, "rtmr2")?,
            mr(864, "rtmr3")?,
        ],
        report_data: HexBytes(at(128, 64, "report_data")?.array("report_data")?),
        tee_tcb_svn2: None,
        mrservicetd: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut t = vec![0u8; TDREPORT_LEN];
        t[0] = REPORT_TYPE_TDX;
        t[128..192].copy_from_slice(&[0x11; 64]);
        t[264..280].copy_from_slice(&[0x22; 16]);
        t[512] = 0x01; // DEBUG
        t[528..576].copy_from_slice(&[0x33; 48]);
        for i in 0..4u8 {
            let o = 720 + 48 * usize::from(i);
            t[o..o + 48].copy_from_slice(&[0x40 + i; 48]);
        }
        t
    }

    #[test]
    fn fields_come_from_their_offsets() {
        let r = parse_tdreport(&sample()).unwrap();
        assert_eq!(r.report_data.0, [0x11; 64]);
        assert_eq!(r.tee_tcb_svn.0, [0x22; 16]);
        assert!(r.debug());
        assert_eq!(r.mrtd.0, [0x33; 48]);
        assert_eq!(r.rtmrs[0].0, [0x40; 48]);
        assert_eq!(r.rtmrs[3].0, [0x43; 48]);
        assert_eq!(r.mrconfigid.0, [0; 48]);
    }

    #[test]
    fn wrong_size_or_type_is_refused() {
        for n in [0, 1, 1023, 1025] {
            assert!(matches!(
                parse_tdreport(&vec![0x81; n]).unwrap_err(),
                QuoteError::Length { .. }
            ));
        }
        let mut t = sample();
        t[0] = 0x00; // SGX
        assert_eq!(parse_tdreport(&t).unwrap_err(), QuoteError::NotTdx(0));
    }
}
