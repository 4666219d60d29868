//! The checked-in TEST key set (`sigstore-testsign/keys/`, made by `gen-test-sigstore`).
//!
//! Everything is embedded at compile time, so tests never regenerate it. The paths point
//! at the same files, for tests that configure a verifier (or sigstore-python) by path.

use std::path::PathBuf;

use crate::Error;

/// File names inside [`dir`].
pub mod files {
    /// TEST Fulcio root CA certificate (P-384, self-signed), PEM.
    pub const FULCIO_ROOT_PEM: &str = "fulcio_root.pem";
    /// TEST Fulcio root CA private key, PKCS#8 PEM.
    pub const FULCIO_ROOT_KEY: &str = "fulcio_root.key.pem";
    /// TEST Fulcio intermediate CA certificate (P-384, issued by the root), PEM.
    pub const FULCIO_INTERMEDIATE_PEM: &str = "fulcio_intermediate.pem";
    /// TEST Fulcio intermediate CA private key, PKCS#8 PEM: issues the leaf certificates.
    pub const FULCIO_INTERMEDIATE_KEY: &str = "fulcio_intermediate.key.pem";
    /// TEST Rekor log public key (P-256), SPKI PEM.
    pub const REKOR_PUB: &str = "rekor.pub.pem";
    /// TEST Rekor log private key, PKCS#8 PEM: signs checkpoints and SETs.
    pub const REKOR_KEY: &str = "rekor.key.pem";
    /// TEST CT log public key (P-256), SPKI PEM.
    pub const CTLOG_PUB: &str = "ctlog.pub.pem";
    /// TEST CT log private key, PKCS#8 PEM: signs the embedded SCTs.
    pub const CTLOG_KEY: &str = "ctlog.key.pem";
    /// Sigstore `TrustedRoot` (v0.1) naming the three above.
    pub const TRUSTED_ROOT_JSON: &str = "trusted_root.json";
    /// Sigstore `ClientTrustConfig` (v0.1): the trusted root plus a signing config, as
    /// sigstore-python's `--trust-config` takes it.
    pub const TRUST_CONFIG_JSON: &str = "trust_config.json";
}

pub(crate) const FULCIO_INTERMEDIATE_PEM: &str = include_str!("../keys/fulcio_intermediate.pem");
pub(crate) const FULCIO_INTERMEDIATE_KEY: &str =
    include_str!("../keys/fulcio_intermediate.key.pem");
pub(crate) const REKOR_KEY: &str = include_str!("../keys/rekor.key.pem");
pub(crate) const CTLOG_KEY: &str = include_str!("../keys/ctlog.key.pem");
const TRUSTED_ROOT_JSON: &str = include_str!("../keys/trusted_root.json");
const TRUST_CONFIG_JSON: &str = include_str!("../keys/trust_config.json");

/// The checked-in directory (`sigstore-testsign/keys`).
pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("keys")
}

/// The TEST `trusted_root.json` (Fulcio CA, Rekor log, CT log).
pub fn trusted_root_json() -> &'static str {
    TRUSTED_ROOT_JSON
}

/// Path of the checked-in `trusted_root.json`.
pub fn trusted_root_path() -> PathBuf {
    dir().join(files::TRUSTED_ROOT_JSON)
}

/// The TEST client trust config (sigstore-python `--trust-config`).
pub fn trust_config_json() -> &'static str {
    TRUST_CONFIG_JSON
}

/// Path of the checked-in client trust config.
pub fn trust_config_path() -> PathBuf {
    dir().join(files::TRUST_CONFIG_JSON)
}

/// The DER contents of the first PEM block labelled `label`.
pub fn pem_to_der(pem: &str, label: &str) -> Result<Vec<u8>, Error> {
    let blocks = provenant_base::pem::blocks(pem).map_err(|e| Error::Key(e.to_string()))?;
    let b = blocks
        .iter()
        .find(|b| b.label == label)
        .ok_or_else(|| Error::Key(format!("no {label} PEM block")))?;
    b.der().map_err(|e| Error::Key(e.to_string()))
}

/// PEM-encodes `der` under `label` (64-character lines, trailing newline).
pub fn der_to_pem(der: &[u8], label: &str) -> String {
    provenant_base::pem::encode(label, der)
}
