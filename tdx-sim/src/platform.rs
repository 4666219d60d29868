//! The simulated platform's identity and TCB, shared by the PKI generator (which puts
//! them in the PCK certificate and the collateral) and the quote builder (which puts
//! them in quotes). Changing a value here requires regenerating `pki/`.

use sha2::{Digest, Sha384};

/// FMSPC of the simulated platform (PCK leaf SGX extension and TCB info `fmspc`).
pub const FMSPC: [u8; 6] = [0x7e, 0x57, 0x00, 0x00, 0x00, 0x01];
/// PCE ID (PCK leaf and TCB info `pceId`).
pub const PCE_ID: [u8; 2] = [0x00, 0x00];
/// PCE SVN in the PCK leaf; also the quote header's `pce_svn`.
pub const PCE_SVN: u16 = 13;
/// CPU SVN in the PCK leaf: SGX TCB components 01..16.
pub const CPU_SVN: [u8; 16] = [3, 3, 2, 2, 3, 1, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0];
/// SGX type in the PCK leaf (1 = Scalable, what TDX platforms report).
pub const SGX_TYPE: u8 = 1;

/// TEE_TCB_SVN of the default TD report: TDX module ISVSVN 6, module version 1
/// (identity `TDX_01` in the TCB info), TDX late microcode SVN 3. Matches the
/// `UpToDate` TCB level.
pub const UP_TO_DATE_TEE_TCB_SVN: [u8; 16] = [6, 1, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
/// A TEE_TCB_SVN below the `UpToDate` level (late microcode SVN 2): the quote still
/// verifies, with status `OutOfDate` and advisory `TEST-SA-00001`.
pub const OUT_OF_DATE_TEE_TCB_SVN: [u8; 16] = [6, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
/// A TEE_TCB_SVN whose TDX module ISVSVN (3) is below the module identity's
/// `UpToDate` level: status `OutOfDate` with advisory `TEST-SA-00002`.
pub const OUT_OF_DATE_MODULE_TEE_TCB_SVN: [u8; 16] =
    [3, 1, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
/// Advisory of the platform `OutOfDate` TCB level.
pub const OUT_OF_DATE_ADVISORY: &str = "TEST-SA-00001";
/// Advisory of the TDX module `OutOfDate` level.
pub const OUT_OF_DATE_MODULE_ADVISORY: &str = "TEST-SA-00002";
/// MRSIGNERSEAM the TCB info expects (Intel-signed modules report zeros).
pub const MRSIGNERSEAM: [u8; 48] = [0; 48];
/// SEAMATTRIBUTES the TCB info expects.
pub const SEAM_ATTRIBUTES: [u8; 8] = [0; 8];

/// The quoting enclave's ISVPRODID (TD_QE identity `isvprodid`).
pub const QE_ISV_PROD_ID: u16 = 2;
/// The quoting enclave's ISVSVN: matches the TD_QE identity's `UpToDate` level; also
/// the quote header's `qe_svn`.
pub const QE_ISV_SVN: u16 = 4;
/// QE ATTRIBUTES (INIT | MODE64BIT, not DEBUG).
pub const QE_ATTRIBUTES: [u8; 16] = [0x11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
/// QE MISCSELECT.
pub const QE_MISCSELECT: u32 = 0;
/// QE auth data: dcap-qvl requires exactly 32 bytes (real QEs send 0..=31).
pub const QE_AUTH_DATA: [u8; 32] = [
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25,
    26, 27, 28, 29, 30, 31,
];

/// Issue date of every certificate, CRL and collateral document.
pub const ISSUE_DATE: &str = "2025-01-01T00:00:00Z";
/// notAfter / nextUpdate of every certificate, CRL and collateral document. The last
/// second UTCTime can express, so certificates stay in the encoding Intel uses.
pub const NEXT_UPDATE: &str = "2049-12-31T23:59:59Z";
/// [`ISSUE_DATE`] as Unix seconds: the earliest `now` the test collateral verifies at.
pub const VALID_FROM_UNIX: u64 = 1_735_689_600;
/// The latest `now` the test collateral verifies at: one second before
/// [`NEXT_UPDATE`] (webpki treats a CRL as expired at its nextUpdate).
pub const VALID_UNTIL_UNIX: u64 = 2_524_607_998;

/// The Intel QE vendor id that dcap-qvl requires in the quote header.
pub const INTEL_QE_VENDOR_ID: [u8; 16] = [
    0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07,
];

/// A labelled test value: the first `N` (≤ 48) bytes of SHA-384(`label`).
pub fn derived<const N: usize>(label: &str) -> [u8; N] {
    let h = Sha384::digest(label.as_bytes());
    let mut out = [0u8; N];
    for (o, b) in out.iter_mut().zip(h.iter()) {
        *o = *b;
    }
    out
}

/// The quoting enclave's MRSIGNER (TD_QE identity `mrsigner`).
pub fn qe_mrsigner() -> [u8; 32] {
    derived("tdx-sim TEST quoting enclave MRSIGNER")
}

/// The quoting enclave's MRENCLAVE (not checked by DCAP; reported in the QE report).
pub fn qe_mrenclave() -> [u8; 32] {
    derived("tdx-sim TEST quoting enclave MRENCLAVE")
}

/// PPID in the PCK leaf.
pub fn ppid() -> [u8; 16] {
    derived("tdx-sim TEST PPID")
}

/// Platform instance id in the PCK leaf.
pub fn platform_instance_id() -> [u8; 16] {
    derived("tdx-sim TEST platform instance id")
}
