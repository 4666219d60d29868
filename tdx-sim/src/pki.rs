//! The checked-in TEST PKI and collateral (`tdx-sim/pki/`, made by `gen-test-pki`).
//!
//! Everything here is embedded at compile time, so tests never regenerate it. The
//! paths point at the same files, for tests that configure a process "by path".

use std::path::PathBuf;

/// File names inside [`TestPki::dir`].
pub mod files {
    /// TEST root CA certificate, DER (plays Intel's SGX Root CA).
    pub const ROOT_CA_DER: &str = "root_ca.der";
    /// TEST root CA certificate, PEM.
    pub const ROOT_CA_PEM: &str = "root_ca.pem";
    /// "PCK Platform CA" intermediate certificate (issued by the root), PEM.
    pub const PCK_PLATFORM_CA_PEM: &str = "pck_platform_ca.pem";
    /// PCK leaf certificate (issued by the platform CA, with Intel's SGX extension), PEM.
    pub const PCK_LEAF_PEM: &str = "pck_leaf.pem";
    /// PCK chain every simulated quote carries: leaf, platform CA, root (PEM).
    pub const PCK_CHAIN_PEM: &str = "pck_chain.pem";
    /// TCB signing certificate (issued by the root), PEM.
    pub const TCB_SIGNING_PEM: &str = "tcb_signing.pem";
    /// Root CA CRL (signed by the root, no revocations), DER.
    pub const ROOT_CA_CRL_DER: &str = "root_ca_crl.der";
    /// PCK platform CRL (signed by the platform CA, no revocations), DER.
    pub const PCK_CRL_DER: &str = "pck_platform_crl.der";
    /// PCK leaf private key (signs QE reports), PKCS#8 PEM.
    pub const PCK_LEAF_KEY: &str = "pck_leaf.key.pem";
    /// TCB signing private key (signs TCB info and QE identity), PKCS#8 PEM.
    pub const TCB_SIGNING_KEY: &str = "tcb_signing.key.pem";
    /// QE attestation private key (signs quotes), PKCS#8 PEM.
    pub const QE_ATTESTATION_KEY: &str = "qe_attestation.key.pem";
    /// Signed TDX TCB info document: the exact bytes that were signed.
    pub const TCB_INFO_JSON: &str = "tdx_tcb_info.json";
    /// Signed TD_QE identity document: the exact bytes that were signed.
    pub const QE_IDENTITY_JSON: &str = "td_qe_identity.json";
    /// Collateral in dcap-qvl's `QuoteCollateralV3` JSON (TCB info, QE identity, chains, CRLs).
    pub const COLLATERAL_JSON: &str = "collateral.json";
}

const ROOT_CA_DER: &[u8] = include_bytes!("../pki/root_ca.der");
const ROOT_CA_PEM: &str = include_str!("../pki/root_ca.pem");
const PCK_CHAIN_PEM: &str = include_str!("../pki/pck_chain.pem");
const PCK_LEAF_KEY: &str = include_str!("../pki/pck_leaf.key.pem");
const TCB_SIGNING_KEY: &str = include_str!("../pki/tcb_signing.key.pem");
const QE_ATTESTATION_KEY: &str = include_str!("../pki/qe_attestation.key.pem");
const COLLATERAL_JSON: &[u8] = include_bytes!("../pki/collateral.json");

/// The TEST PKI: a root CA that is NOT Intel's, a PCK chain under it, and collateral
/// signed by a TCB signing key under it. Production never trusts this root; a verifier
/// accepts it only when it is passed (or configured by path) explicitly.
#[derive(Debug, Clone, Copy)]
pub struct TestPki;

impl TestPki {
    /// The checked-in directory (`tdx-sim/pki`).
    pub fn dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("pki")
    }

    /// The TEST root CA certificate, DER.
    pub fn root_ca_der() -> &'static [u8] {
        ROOT_CA_DER
    }

    /// Path of the checked-in DER root CA, for configuring a verifier by path.
    pub fn root_ca_der_path() -> PathBuf {
        Self::dir().join(files::ROOT_CA_DER)
    }

    /// The TEST root CA certificate, PEM.
    pub fn root_ca_pem() -> &'static str {
        ROOT_CA_PEM
    }

    /// Path of the checked-in PEM root CA.
    pub fn root_ca_pem_path() -> PathBuf {
        Self::dir().join(files::ROOT_CA_PEM)
    }

    /// The PCK chain every simulated quote carries: leaf, platform CA, root (PEM).
    pub fn pck_chain_pem() -> &'static str {
        PCK_CHAIN_PEM
    }

    /// Collateral for simulated quotes, in dcap-qvl's `QuoteCollateralV3` JSON.
    pub fn collateral_json() -> &'static [u8] {
        COLLATERAL_JSON
    }

    /// Path of the checked-in collateral JSON.
    pub fn collateral_path() -> PathBuf {
        Self::dir().join(files::COLLATERAL_JSON)
    }

    /// The PCK leaf's private key (signs QE reports), PKCS#8 PEM.
    pub fn pck_leaf_key_pem() -> &'static str {
        PCK_LEAF_KEY
    }

    /// The TCB signing key (signs TCB info and QE identity), PKCS#8 PEM: lets a test
    /// sign its own variant of the collateral.
    pub fn tcb_signing_key_pem() -> &'static str {
        TCB_SIGNING_KEY
    }

    /// The QE attestation key (signs quotes), PKCS#8 PEM.
    pub fn qe_attestation_key_pem() -> &'static str {
        QE_ATTESTATION_KEY
    }
}
