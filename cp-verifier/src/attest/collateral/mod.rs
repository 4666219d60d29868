//! Where the control plane gets DCAP collateral for a TDX quote: the TDX TCB info for
//! the quote's FMSPC, the TD_QE identity, the PCK CRL of the quote's PCK CA and the
//! root CA CRL, each with its issuer chain, as one [`QuoteCollateralV3`].
//!
//! Trust boundary: collateral is untrusted input, whether it comes from Intel PCS, a
//! PCCS, a cache file or an operator's offline file. Its signatures and chains are
//! checked by dcap-qvl during verification ([`crate::attest::dcap::verify_quote`]), against
//! the trusted root. A PCS source also checks them itself ([`verify_collateral`])
//! *before* it caches anything, in memory, on disk or in the shared store, and checks
//! again what it reads back from disk or the store (evicting an entry that fails): a
//! forged or corrupted answer is never kept, and never served to another quote or
//! replica. It never re-serialises the signed JSON (`tcbInfo`, `enclaveIdentity`):
//! those are kept as the exact bytes the server sent, so the signature check sees
//! what Intel signed.
//!
//! What it does decide is whether it *has* collateral for a given `now`. A fetch
//! failure, collateral past its `nextUpdate`, collateral issued after `now`, or
//! collateral for another FMSPC is a typed [`CollateralError`]: the verifier could not
//! decide (`unknown`), never a pass and never a failed quote. An expired cache entry
//! is never served: past its expiry the entry is refetched, and if that fails the
//! error is returned.
//!
//! Keys come from the quote, so callers should take them from a quote whose PCK
//! chain verified ([`crate::attest::dcap::verify_signatures`]): that bounds the set of FMSPCs
//! to genuine Intel platforms.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dcap_qvl::QuoteCollateralV3;
use serde_json::value::RawValue;

use crate::attest::dcap::{parse_collateral, MAX_COLLATERAL_BYTES};

/// Intel's Provisioning Certification Service (PCS).
pub const INTEL_PCS_URL: &str = "https://api.trustedservices.intel.com";

/// Where Intel publishes the SGX Root CA's CRL: the CRL distribution point of the
/// Intel SGX Root CA certificate (checked against [`crate::attest::dcap::INTEL_SGX_ROOT_CA_DER`]
/// in a test). Intel PCS has no root CRL endpoint of its own; a PCCS does.
pub const INTEL_ROOT_CA_CRL_URL: &str =
    "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der";

/// Default time allowed for one request, connection included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest TCB info or QE identity response. Intel's TDX TCB info is about 3 KiB
/// today and grows by about 0.5 KiB per TCB level; 64 KiB leaves 20x headroom while
/// a hostile or broken server cannot make us buffer more.
pub const MAX_JSON_BODY_BYTES: usize = 64 * 1024;

/// Largest CRL response (DER, or hex text from a PCCS). Intel's platform CA CRL is
/// about 2.6 KiB and the root CA CRL 0.3 KiB; 128 KiB holds thousands of revoked
/// entries.
pub const MAX_CRL_BODY_BYTES: usize = 128 * 1024;

/// Largest issuer-chain header, URL-encoded. Intel's two-certificate chains are
/// about 2.6 KiB encoded.
pub const MAX_ISSUER_CHAIN_BYTES: usize = 16 * 1024;

/// Most (FMSPC, CA) keys kept in memory. A fleet has a handful of FMSPCs; at the cap,
/// keys without a fresh entry are dropped first.
const MAX_MEMORY_KEYS: usize = 256;

// What the bounds above can add up to, serialised as QuoteCollateralV3 JSON (strings
// escaped at most 2x, bytes hex-encoded 2x), must be readable back by
// `parse_collateral`, or a disk cache entry could be written that can never be read.
const _: () = assert!(
    2 * 2 * MAX_JSON_BODY_BYTES
        + 2 * 2 * MAX_CRL_BODY_BYTES
        + 3 * 2 * MAX_ISSUER_CHAIN_BYTES
        + 4096
        <= MAX_COLLATERAL_BYTES
);

const API_KEY_HEADER: &str = "Ocp-Apim-Subscription-Key";
const TCB_INFO_CHAIN_HEADERS: [&str; 2] = ["TCB-Info-Issuer-Chain", "SGX-TCB-Info-Issuer-Chain"];
const QE_IDENTITY_CHAIN_HEADERS: [&str; 2] = [
    "SGX-Enclave-Identity-Issuer-Chain",
    "Enclave-Identity-Issuer-Chain",
];
const PCK_CRL_CHAIN_HEADERS: [&str; 1] = ["SGX-PCK-CRL-Issuer-Chain"];

/// A platform's FMSPC (family-model-stepping-platform-custom SKU), from its PCK
/// certificate. Displayed as lowercase hex.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fmspc(pub [u8; 6]);

impl Fmspc {
    /// Parses 12 hex digits, either case.
    pub fn from_hex(s: &str) -> Option<Fmspc> {
        let mut out = [0u8; 6];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Fmspc(out))
    }
    /// Lowercase hex, as in file names.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl std::fmt::Display for Fmspc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// The Intel CA that issued a PCK certificate; its CRL is part of the collateral.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PckCa {
    Platform,
    Processor,
}

impl PckCa {
    /// The PCS `ca` parameter.
    pub fn as_str(self) -> &'static str {
        match self {
            PckCa::Platform => "platform",
            PckCa::Processor => "processor",
        }
    }
}

impl std::fmt::Display for PckCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One piece of the collateral and the endpoint that serves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    TcbInfo,
    QeIdentity,
    PckCrl,
    RootCaCrl,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Endpoint::TcbInfo => "TDX TCB info",
            Endpoint::QeIdentity => "TD QE identity",
            Endpoint::PckCrl => "PCK CRL",
            Endpoint::RootCaCrl => "root CA CRL",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CollateralError {
    /// The TCB info endpoint answered 404: the service knows no such FMSPC.
    #[error("{endpoint}: no collateral for FMSPC {fmspc} (HTTP 404)")]
    UnknownFmspc { endpoint: Endpoint, fmspc: Fmspc },
    #[error("{endpoint}: HTTP {status}")]
    HttpStatus { endpoint: Endpoint, status: u16 },
    #[error("{endpoint}: no complete answer within {timeout:?}")]
    Timeout {
        endpoint: Endpoint,
        timeout: Duration,
    },
    #[error("{endpoint}: {detail}")]
    Transport { endpoint: Endpoint, detail: String },
    #[error("{endpoint}: response body over {limit} bytes")]
    Oversized { endpoint: Endpoint, limit: usize },
    #[error("{endpoint}: missing header {header}")]
    MissingHeader {
        endpoint: Endpoint,
        header: &'static str,
    },
    #[error("{endpoint}: malformed header {header}: {detail}")]
    MalformedHeader {
        endpoint: Endpoint,
        header: &'static str,
        detail: String,
    },
    #[error("{endpoint}: malformed response: {detail}")]
    MalformedBody { endpoint: Endpoint, detail: String },
    #[error("collateral is for FMSPC {got}, not {want}")]
    FmspcMismatch { want: Fmspc, got: Fmspc },
    #[error("collateral for FMSPC {fmspc} expired at {expires_at} (now {now})")]
    Expired {
        fmspc: Fmspc,
        expires_at: u64,
        now: u64,
    },
    #[error("collateral for FMSPC {fmspc} is not valid before {issued_at} (now {now})")]
    NotYetValid {
        fmspc: Fmspc,
        issued_at: u64,
        now: u64,
    },
    #[error("no offline collateral for FMSPC {fmspc} ({ca} CA) in {searched}")]
    OfflineNotFound {
        fmspc: Fmspc,
        ca: PckCa,
        searched: String,
    },
    #[error("offline collateral {path}: {detail}")]
    OfflineUnreadable { path: String, detail: String },
    #[error("offline collateral {path}: {detail}")]
    OfflineMalformed { path: String, detail: String },
    /// The quote does not say which collateral it needs.
    #[error("quote: {0}")]
    Quote(String),
    #[error("collateral source configuration: {0}")]
    Config(String),
    /// A signature or issuer chain of the collateral does not verify to the root.
    #[error("collateral does not verify: {0}")]
    Invalid(String),
}

impl CollateralError {
    /// A stable name for logs and API answers.
    pub fn kind(&self) -> &'static str {
        match self {
            CollateralError::UnknownFmspc { .. } => "CollateralUnknownFmspc",
            CollateralError::HttpStatus { .. } => "CollateralHttpStatus",
            CollateralError::Timeout { .. } => "CollateralTimeout",
            CollateralError::Transport { .. } => "CollateralUnreachable",
            CollateralError::Oversized { .. } => "CollateralOversized",
            CollateralError::MissingHeader { .. } => "CollateralMissingHeader",
            CollateralError::MalformedHeader { .. } => "CollateralMalformedHeader",
            CollateralError::MalformedBody { .. } => "CollateralMalformed",
            CollateralError::FmspcMismatch { .. } => "CollateralFmspcMismatch",
            CollateralError::Expired { .. } => "CollateralExpired",
            CollateralError::NotYetValid { .. } => "CollateralNotYetValid",
            CollateralError::OfflineNotFound { .. } => "CollateralNotFound",
            CollateralError::OfflineUnreadable { .. } => "CollateralUnreadable",
            CollateralError::OfflineMalformed { .. } => "CollateralMalformed",
            CollateralError::Quote(_) => "MalformedQuote",
            CollateralError::Config(_) => "CollateralConfig",
            CollateralError::Invalid(_) => "CollateralInvalid",
        }
    }
}

/// Collateral with the window in which it may be used: from `issued_at` (the latest
/// issue date of its parts: TCB info and QE identity `issueDate`, CRL `thisUpdate`)
/// up to but excluding `expires_at` (the earliest `nextUpdate` of its parts).
#[derive(Debug, Clone)]
pub struct FetchedCollateral {
    collateral: QuoteCollateralV3,
    fmspc: Fmspc,
    issued_at: u64,
    expires_at: u64,
}

impl FetchedCollateral {
    /// Reads the dates and FMSPC of `collateral`. Signatures are not checked here.
    /// A malformed part is [`CollateralError::MalformedBody`] for its endpoint.
    pub fn from_collateral(collateral: QuoteCollateralV3) -> Result<Self, CollateralError> {
        let bad = |endpoint| move |detail| CollateralError::MalformedBody { endpoint, detail };
        let tcb = tcb_info_fields(&collateral.tcb_info).map_err(bad(Endpoint::TcbInfo))?;
        let qe = qe_identity_window(&collateral.qe_identity).map_err(bad(Endpoint::QeIdentity))?;
        let pck = crl_window(&collateral.pck_crl).map_err(bad(Endpoint::PckCrl))?;
        let root = crl_window(&collateral.root_ca_crl).map_err(bad(Endpoint::RootCaCrl))?;
        check_chain(&collateral.tcb_info_issuer_chain).map_err(bad(Endpoint::TcbInfo))?;
        check_chain(&collateral.qe_identity_issuer_chain).map_err(bad(Endpoint::QeIdentity))?;
        check_chain(&collateral.pck_crl_issuer_chain).map_err(bad(Endpoint::PckCrl))?;
        let windows = [tcb.1, qe, pck, root];
        Ok(FetchedCollateral {
            collateral,
            fmspc: tcb.0,
            issued_at: windows.iter().map(|w| w.0).max().unwrap_or(0),
            expires_at: windows.iter().map(|w| w.1).min().unwrap_or(0),
        })
    }
    pub fn collateral(&self) -> &QuoteCollateralV3 {
        &self.collateral
    }
    /// The FMSPC the TCB info is for.
    pub fn fmspc(&self) -> Fmspc {
        self.fmspc
    }
    /// Unix seconds: the latest issue date of the parts.
    pub fn issued_at(&self) -> u64 {
        self.issued_at
    }
    /// Unix seconds: the earliest `nextUpdate` of the parts; unusable from then on.
    pub fn expires_at(&self) -> u64 {
        self.expires_at
    }

    /// The collateral if it is usable at `now`, else why not.
    fn usable_at(self: Arc<Self>, now: u64) -> Result<Arc<Self>, CollateralError> {
        if now >= self.expires_at {
            return Err(CollateralError::Expired {
                fmspc: self.fmspc,
                expires_at: self.expires_at,
                now,
            });
        }
        if now < self.issued_at {
            return Err(CollateralError::NotYetValid {
                fmspc: self.fmspc,
                issued_at: self.issued_at,
                now,
            });
        }
        Ok(self)
    }
}

/// The FMSPC and PCK CA a quote's collateral is for, read from the PCK leaf
/// certificate in the quote (certification data type 5). This reads untrusted data:
/// it only chooses which collateral to get; verification checks everything.
pub fn quote_collateral_key(raw_quote: &[u8]) -> Result<(Fmspc, PckCa), CollateralError> {
    use x509_cert::der::Decode;
    let q = evidence::tdx::Quote::parse(raw_quote)
        .map_err(|e| CollateralError::Quote(e.to_string()))?;
    let pem = String::from_utf8_lossy(&q.signature.pck_chain_pem);
    let first = provenant_base::fsutil::split_pem_certificates(&pem)
        .map_err(|e| CollateralError::Quote(format!("PCK chain: {e}")))?
        .into_iter()
        .next()
        .ok_or_else(|| CollateralError::Quote("no PCK certificate".into()))?;
    let (_, der) = x509_cert::der::pem::decode_vec(first.as_bytes())
        .map_err(|e| CollateralError::Quote(format!("PCK certificate PEM: {e}")))?;
    let leaf = x509_cert::Certificate::from_der(&der)
        .map_err(|e| CollateralError::Quote(format!("PCK certificate: {e}")))?;
    let issuer = leaf.tbs_certificate.issuer.to_string();
    // Intel names its CAs "Intel SGX PCK Platform CA" / "... Processor CA"; a test PKI
    // configured in place of Intel's root keeps the suffix. The name only picks which
    // CRL to fetch: DCAP verification checks the CRL's issuer.
    let ca = if issuer.contains("PCK Platform CA") {
        PckCa::Platform
    } else if issuer.contains("PCK Processor CA") {
        PckCa::Processor
    } else {
        return Err(CollateralError::Quote(format!(
            "PCK certificate issuer {issuer} names no PCK Platform or Processor CA"
        )));
    };
    let fmspc = pck_fmspc(&leaf).map_err(CollateralError::Quote)?;
    Ok((Fmspc(fmspc), ca))
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

/// Offline collateral: operator-provided QuoteCollateralV3 JSON files.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct OfflineConfig {
    /// A directory of `<fmspc>-<ca>.json` or `<fmspc>.json` files (FMSPC in lowercase
    /// hex, CA `platform` or `processor`), tried in that order. A PCS source's cache
    /// directory has this layout, so it can be copied to an offline host.
    pub dir: Option<PathBuf>,
    /// One file used for any FMSPC not found in `dir` (its FMSPC must still match).
    pub file: Option<PathBuf>,
}

impl OfflineConfig {
    pub fn new(dir: Option<PathBuf>, file: Option<PathBuf>) -> Self {
        OfflineConfig { dir, file }
    }
}

/// Where the root CA CRL comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCaCrl {
    /// The PCCS endpoint `{base}/sgx/certification/v4/rootcacrl` (hex or DER).
    Pccs,
    /// A URL serving the DER CRL, such as [`INTEL_ROOT_CA_CRL_URL`]. No API key is
    /// sent there.
    Url(String),
}

/// An Intel PCS or PCCS (API v4) source.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PcsConfig {
    /// e.g. `https://api.trustedservices.intel.com` or `https://pccs:8081`; a trailing
    /// `/sgx/certification/v4` or `/tdx/certification/v4` is accepted.
    pub base_url: String,
    pub root_ca_crl: RootCaCrl,
    /// Sent as `Ocp-Apim-Subscription-Key` to `base_url` endpoints only.
    pub api_key: Option<String>,
    /// Per request, from connecting to the end of the body.
    pub timeout: Duration,
    /// Extra TLS roots (PEM) for a PCCS with a private or self-signed certificate.
    pub tls_roots_pem: Option<Vec<u8>>,
    /// Where fetched collateral is cached across restarts (`<fmspc>-<ca>.json`).
    pub cache_dir: Option<PathBuf>,
    /// The root CA (DER) the collateral's chains must end at before anything is
    /// cached. `None`: Intel's SGX Root CA.
    pub root_ca_der: Option<Vec<u8>>,
}

impl PcsConfig {
    /// Intel PCS, with the root CA CRL from Intel's distribution point.
    pub fn intel(api_key: Option<String>) -> Self {
        PcsConfig {
            base_url: INTEL_PCS_URL.to_string(),
            root_ca_crl: RootCaCrl::Url(INTEL_ROOT_CA_CRL_URL.to_string()),
            api_key,
            timeout: DEFAULT_TIMEOUT,
            tls_roots_pem: None,
            cache_dir: None,
            root_ca_der: None,
        }
    }
    /// A PCCS, which also serves the root CA CRL.
    pub fn pccs(base_url: impl Into<String>) -> Self {
        PcsConfig {
            base_url: base_url.into(),
            root_ca_crl: RootCaCrl::Pccs,
            api_key: None,
            timeout: DEFAULT_TIMEOUT,
            tls_roots_pem: None,
            cache_dir: None,
            root_ca_der: None,
        }
    }
}

/// Gets collateral for a (FMSPC, PCK CA) at a given time. Share it (`Arc`) so that
/// its memory cache is shared.
pub struct CollateralSource {
    inner: Inner,
}

enum Inner {
    Offline(OfflineConfig),
    Pcs(Pcs),
}

impl std::fmt::Debug for CollateralSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            Inner::Offline(c) => f.debug_tuple("CollateralSource::Offline").field(c).finish(),
            Inner::Pcs(p) => f
                .debug_struct("CollateralSource::Pcs")
                .field("base_url", &p.base)
                .field("root_ca_crl", &p.root_ca_crl)
                .field("cache_dir", &p.cache_dir)
                .finish_non_exhaustive(),
        }
    }
}

impl CollateralSource {
    /// Offline files; at least one of `dir` and `file` must be set.
    pub fn offline(cfg: OfflineConfig) -> Result<Self, CollateralError> {
        if cfg.dir.is_none() && cfg.file.is_none() {
            return Err(CollateralError::Config(
                "offline collateral needs a directory or a file".into(),
            ));
        }
        Ok(CollateralSource {
            inner: Inner::Offline(cfg),
        })
    }

    /// Intel PCS or a PCCS. Creates the cache directory if one is configured.
    pub fn pcs(cfg: PcsConfig) -> Result<Self, CollateralError> {
        Ok(CollateralSource {
            inner: Inner::Pcs(Pcs::new(cfg)?),
        })
    }

    /// Adds a shared cache (the control plane's store) in front of the disk cache and
    /// the network. Offline sources have no use for one and ignore it.
    pub fn with_shared_cache(mut self, cache: Arc<dyn SharedCache>) -> Self {
        if let Inner::Pcs(p) = &mut self.inner {
            p.shared = Some(cache);
        }
        self
    }

    /// Collateral for `fmspc` and `ca`, usable at `now_secs` (Unix seconds).
    pub async fn get(
        &self,
        fmspc: Fmspc,
        ca: PckCa,
        now_secs: u64,
    ) -> Result<Arc<FetchedCollateral>, CollateralError> {
        match &self.inner {
            Inner::Offline(cfg) => offline_get(cfg, fmspc, ca)?.usable_at(now_secs),
            Inner::Pcs(p) => p.get(fmspc, ca, now_secs).await,
        }
    }
}

fn shared_key(fmspc: Fmspc, ca: PckCa) -> String {
    format!("{fmspc}-{ca}")
}

fn cache_file_name(fmspc: Fmspc, ca: PckCa) -> String {
    format!("{}.json", shared_key(fmspc, ca))
}

/// A cache shared beyond this process: the control plane's store, so that replicas
/// sharing a store fetch a platform's collateral once, and a restarted control plane
/// does not fetch again. Entries are QuoteCollateralV3 JSON under
/// `<fmspc>-<ca>` keys; they are checked like any other cached collateral.
#[async_trait::async_trait]
pub trait SharedCache: Send + Sync {
    /// The entry for `key`, if any (expired entries may be returned; they are ignored).
    async fn load(&self, key: &str) -> Option<Vec<u8>>;
    /// Stores an entry usable until `expires_at` (Unix seconds). Best effort.
    async fn save(&self, key: &str, json: &[u8], expires_at: u64);
}

/// Parses cached collateral for `fmspc` (a file's bytes or a shared-cache entry).
fn parse_cached(
    bytes: &[u8],
    fmspc: Fmspc,
    shown: &str,
) -> Result<FetchedCollateral, CollateralError> {
    let c = parse_collateral(bytes).map_err(|e| CollateralError::OfflineMalformed {
        path: shown.to_string(),
        detail: e.to_string(),
    })?;
    let fc = FetchedCollateral::from_collateral(c).map_err(|e| match e {
        CollateralError::MalformedBody { endpoint, detail } => CollateralError::OfflineMalformed {
            path: shown.to_string(),
            detail: format!("{endpoint}: {detail}"),
        },
        e => e,
    })?;
    if fc.fmspc != fmspc {
        return Err(CollateralError::FmspcMismatch {
            want: fmspc,
            got: fc.fmspc,
        });
    }
    Ok(fc)
}

/// Reads and checks one collateral file. `Ok(None)` if it does not exist.
fn read_collateral_file(
    path: &Path,
    fmspc: Fmspc,
) -> Result<Option<FetchedCollateral>, CollateralError> {
    use provenant_base::fsutil::{read_bounded, ReadError};
    let shown = path.display().to_string();
    let max = u64::try_from(MAX_COLLATERAL_BYTES).unwrap_or(u64::MAX);
    let bytes = match read_bounded(path, max) {
        Ok(b) => b,
        Err(ReadError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(CollateralError::OfflineUnreadable {
                path: shown,
                detail: e.to_string(),
            })
        }
    };
    parse_cached(&bytes, fmspc, &shown).map(Some)
}

fn offline_get(
    cfg: &OfflineConfig,
    fmspc: Fmspc,
    ca: PckCa,
) -> Result<Arc<FetchedCollateral>, CollateralError> {
    let mut candidates = Vec::new();
    if let Some(dir) = &cfg.dir {
        candidates.push(dir.join(cache_file_name(fmspc, ca)));
        candidates.push(dir.join(format!("{fmspc}.json")));
    }
    candidates.extend(cfg.file.iter().cloned());
    for path in &candidates {
        if let Some(fc) = read_collateral_file(path, fmspc)? {
            return Ok(Arc::new(fc));
        }
    }
    Err(CollateralError::OfflineNotFound {
        fmspc,
        ca,
        searched: candidates
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

struct Pcs {
    root_ca_der: Vec<u8>,
    client: reqwest::Client,
    base: String,
    root_ca_crl: RootCaCrl,
    api_key: Option<reqwest::header::HeaderValue>,
    timeout: Duration,
    cache_dir: Option<PathBuf>,
    shared: Option<Arc<dyn SharedCache>>,
    slots: Mutex<HashMap<(Fmspc, PckCa), Arc<Slot>>>,
}

/// One key's cache entry. The async lock makes concurrent gets for a key wait for
/// one fetch instead of each fetching.
#[derive(Default)]
struct Slot {
    state: tokio::sync::Mutex<SlotState>,
    /// Completed fetch attempts; a waiter that saw an attempt finish while it waited
    /// shares that attempt's error instead of retrying at once.
    attempts: AtomicU64,
}

#[derive(Default)]
struct SlotState {
    entry: Option<Arc<FetchedCollateral>>,
    last_error: Option<CollateralError>,
}

impl Pcs {
    fn new(cfg: PcsConfig) -> Result<Pcs, CollateralError> {
        let base = normalise_base(&cfg.base_url)?;
        if let RootCaCrl::Url(u) = &cfg.root_ca_crl {
            check_http_url(u)?;
        }
        if cfg.timeout.is_zero() {
            return Err(CollateralError::Config("timeout must not be zero".into()));
        }
        // No redirects: PCS and PCCS do not redirect, and following one would take
        // the API key to another host.
        let mut builder = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("provenant-cp-verifier/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &cfg.tls_roots_pem {
            let roots = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| CollateralError::Config(format!("TLS roots: {e}")))?;
            if roots.is_empty() {
                return Err(CollateralError::Config("TLS roots: no certificate".into()));
            }
            for r in roots {
                builder = builder.add_root_certificate(r);
            }
        }
        let client = builder
            .build()
            .map_err(|e| CollateralError::Config(format!("HTTP client: {e}")))?;
        let api_key = match &cfg.api_key {
            Some(k) => {
                let mut v = reqwest::header::HeaderValue::from_str(k)
                    .map_err(|_| CollateralError::Config("API key is not a valid header".into()))?;
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };
        if let Some(dir) = &cfg.cache_dir {
            std::fs::create_dir_all(dir).map_err(|e| {
                CollateralError::Config(format!("cache directory {}: {e}", dir.display()))
            })?;
        }
        Ok(Pcs {
            root_ca_der: cfg
                .root_ca_der
                .clone()
                .unwrap_or_else(|| crate::attest::dcap::INTEL_SGX_ROOT_CA_DER.to_vec()),
            client,
            base,
            root_ca_crl: cfg.root_ca_crl,
            api_key,
            timeout: cfg.timeout,
            cache_dir: cfg.cache_dir,
            shared: None,
            slots: Mutex::new(HashMap::new()),
        })
    }

    fn slot(&self, key: (Fmspc, PckCa), now: u64) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if !slots.contains_key(&key) && slots.len() >= MAX_MEMORY_KEYS {
            // Keep keys being fetched (locked) and keys with an unexpired entry.
            slots.retain(|_, s| match s.state.try_lock() {
                Ok(st) => st.entry.as_ref().is_some_and(|e| now < e.expires_at),
                Err(_) => true,
            });
        }
        slots.entry(key).or_default().clone()
    }

    async fn get(
        &self,
        fmspc: Fmspc,
        ca: PckCa,
        now: u64,
    ) -> Result<Arc<FetchedCollateral>, CollateralError> {
        let slot = self.slot((fmspc, ca), now);
        let seen = slot.attempts.load(Ordering::Acquire);
        let mut st = slot.state.lock().await;
        if let Some(e) = &st.entry {
            if now < e.expires_at {
                return e.clone().usable_at(now);
            }
            st.entry = None; // expired: never served again
        }
        if slot.attempts.load(Ordering::Acquire) != seen {
            if let Some(err) = &st.last_error {
                return Err(err.clone());
            }
        }
        if let Some(fc) = self.read_shared(fmspc, ca, now).await {
            st.entry = Some(fc.clone());
            return fc.usable_at(now);
        }
        if let Some(fc) = self.read_disk(fmspc, ca, now) {
            st.entry = Some(fc.clone());
            return fc.usable_at(now);
        }
        // Verified before anything is cached: a forged answer is never kept.
        let outcome = self.fetch(fmspc, ca).await.and_then(|fc| {
            if fc.fmspc != fmspc {
                return Err(CollateralError::FmspcMismatch {
                    want: fmspc,
                    got: fc.fmspc,
                });
            }
            verify_collateral(&fc.collateral, &self.root_ca_der)?;
            Ok(Arc::new(fc))
        });
        if let Ok(fc) = &outcome {
            if now < fc.expires_at {
                st.entry = Some(fc.clone());
                self.write_disk(fmspc, ca, fc);
                if let (Some(shared), Ok(json)) = (&self.shared, serde_json::to_vec(&fc.collateral))
                {
                    shared
                        .save(&shared_key(fmspc, ca), &json, fc.expires_at)
                        .await;
                }
            }
        }
        let outcome = outcome.and_then(|fc| fc.usable_at(now));
        if let Err(e) = &outcome {
            tracing::warn!(%fmspc, %ca, error = %e, "no usable collateral");
        }
        st.last_error = outcome.as_ref().err().cloned();
        slot.attempts.fetch_add(1, Ordering::Release);
        outcome
    }

    async fn read_shared(
        &self,
        fmspc: Fmspc,
        ca: PckCa,
        now: u64,
    ) -> Option<Arc<FetchedCollateral>> {
        let key = shared_key(fmspc, ca);
        let bytes = self.shared.as_ref()?.load(&key).await?;
        match parse_cached(&bytes, fmspc, &format!("shared cache {key}")).and_then(|fc| {
            verify_collateral(&fc.collateral, &self.root_ca_der)?;
            Ok(fc)
        }) {
            Ok(fc) if now < fc.expires_at => Some(Arc::new(fc)),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(%key, error = %e, "ignoring shared collateral cache entry");
                None
            }
        }
    }

    fn read_disk(&self, fmspc: Fmspc, ca: PckCa, now: u64) -> Option<Arc<FetchedCollateral>> {
        let path = self.cache_dir.as_ref()?.join(cache_file_name(fmspc, ca));
        let read = read_collateral_file(&path, fmspc).and_then(|fc| match fc {
            Some(fc) => verify_collateral(&fc.collateral, &self.root_ca_der).map(|()| Some(fc)),
            None => Ok(None),
        });
        match read {
            Ok(Some(fc)) if now < fc.expires_at => Some(Arc::new(fc)),
            Ok(_) => None,
            Err(e) => {
                // Evicted: a corrupted or forged file is not read again.
                tracing::warn!(path = %path.display(), error = %e, "removing a collateral cache file that does not verify");
                if let Err(e) = std::fs::remove_file(&path) {
                    tracing::warn!(path = %path.display(), error = %e, "could not remove the collateral cache file");
                }
                None
            }
        }
    }

    /// Atomic: a temporary file in the same directory, renamed over the old one.
    /// A failure is logged, not returned: the collateral in hand is still good.
    fn write_disk(&self, fmspc: Fmspc, ca: PckCa, fc: &FetchedCollateral) {
        let Some(dir) = &self.cache_dir else { return };
        let path = dir.join(cache_file_name(fmspc, ca));
        let write = || -> Result<(), String> {
            use std::io::Write;
            let json = serde_json::to_vec(&fc.collateral).map_err(|e| e.to_string())?;
            let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| e.to_string())?;
            tmp.write_all(&json).map_err(|e| e.to_string())?;
            tmp.as_file().sync_all().map_err(|e| e.to_string())?;
            tmp.persist(&path).map_err(|e| e.to_string())?;
            Ok(())
        };
        if let Err(e) = write() {
            tracing::warn!(path = %path.display(), error = %e, "could not write collateral cache");
        }
    }

    fn url(&self, tee: &str, path: &str) -> String {
        format!("{}/{tee}/certification/v4/{path}", self.base)
    }

    async fn fetch(&self, fmspc: Fmspc, ca: PckCa) -> Result<FetchedCollateral, CollateralError> {
        let fmspc_upper = hex::encode_upper(fmspc.0);
        let tcb_url = self.url("tdx", &format!("tcb?fmspc={fmspc_upper}"));
        let qe_url = self.url("tdx", "qe/identity");
        let pck_url = self.url("sgx", &format!("pckcrl?ca={ca}&encoding=der"));
        let (root_url, root_key) = match &self.root_ca_crl {
            RootCaCrl::Pccs => (self.url("sgx", "rootcacrl"), true),
            RootCaCrl::Url(u) => (u.clone(), false),
        };
        let tcb = async {
            let (h, body) = self
                .http_get(Endpoint::TcbInfo, &tcb_url, true, MAX_JSON_BODY_BYTES)
                .await
                .map_err(|e| match e {
                    CollateralError::HttpStatus {
                        endpoint,
                        status: 404,
                    } => CollateralError::UnknownFmspc { endpoint, fmspc },
                    e => e,
                })?;
            let chain = issuer_chain(Endpoint::TcbInfo, &h, &TCB_INFO_CHAIN_HEADERS)?;
            let (json, sig) = signed_json(Endpoint::TcbInfo, &body, "tcbInfo")?;
            Ok::<_, CollateralError>((chain, json, sig))
        };
        let qe = async {
            let (h, body) = self
                .http_get(Endpoint::QeIdentity, &qe_url, true, MAX_JSON_BODY_BYTES)
                .await?;
            let chain = issuer_chain(Endpoint::QeIdentity, &h, &QE_IDENTITY_CHAIN_HEADERS)?;
            let (json, sig) = signed_json(Endpoint::QeIdentity, &body, "enclaveIdentity")?;
            Ok((chain, json, sig))
        };
        let pck = async {
            let (h, body) = self
                .http_get(Endpoint::PckCrl, &pck_url, true, MAX_CRL_BODY_BYTES)
                .await?;
            let chain = issuer_chain(Endpoint::PckCrl, &h, &PCK_CRL_CHAIN_HEADERS)?;
            let der = crl_der(&body).map_err(|detail| CollateralError::MalformedBody {
                endpoint: Endpoint::PckCrl,
                detail,
            })?;
            Ok((chain, der))
        };
        let root = async {
            let (_, body) = self
                .http_get(Endpoint::RootCaCrl, &root_url, root_key, MAX_CRL_BODY_BYTES)
                .await?;
            crl_der(&body).map_err(|detail| CollateralError::MalformedBody {
                endpoint: Endpoint::RootCaCrl,
                detail,
            })
        };
        let (
            (tcb_chain, tcb_info, tcb_sig),
            (qe_chain, qe_identity, qe_sig),
            (pck_chain, pck_crl),
            root_ca_crl,
        ) = tokio::try_join!(tcb, qe, pck, root)?;
        let collateral = QuoteCollateralV3 {
            pck_crl_issuer_chain: pck_chain,
            root_ca_crl,
            pck_crl,
            tcb_info_issuer_chain: tcb_chain,
            tcb_info,
            tcb_info_signature: tcb_sig,
            qe_identity_issuer_chain: qe_chain,
            qe_identity,
            qe_identity_signature: qe_sig,
            pck_certificate_chain: None,
        };
        FetchedCollateral::from_collateral(collateral)
    }

    /// GET with the size bound enforced on the bytes read (and on Content-Length
    /// before reading). Returns the headers and body of a 2xx answer.
    async fn http_get(
        &self,
        endpoint: Endpoint,
        url: &str,
        send_key: bool,
        limit: usize,
    ) -> Result<(reqwest::header::HeaderMap, Vec<u8>), CollateralError> {
        let net = |e: reqwest::Error| {
            if e.is_timeout() {
                CollateralError::Timeout {
                    endpoint,
                    timeout: self.timeout,
                }
            } else {
                CollateralError::Transport {
                    endpoint,
                    detail: crate::http::error::error_chain(&e),
                }
            }
        };
        let mut req = self.client.get(url);
        if let (true, Some(k)) = (send_key, &self.api_key) {
            req = req.header(API_KEY_HEADER, k.clone());
        }
        let mut resp = req.send().await.map_err(net)?;
        let status = resp.status();
        if !status.is_success() {
            tracing::debug!(%url, %status, "collateral endpoint refused");
            return Err(CollateralError::HttpStatus {
                endpoint,
                status: status.as_u16(),
            });
        }
        let too_big = CollateralError::Oversized { endpoint, limit };
        if resp
            .content_length()
            .is_some_and(|n| usize::try_from(n).map_or(true, |n| n > limit))
        {
            return Err(too_big);
        }
        let headers = resp.headers().clone();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(net)? {
            if body.len().saturating_add(chunk.len()) > limit {
                return Err(too_big);
            }
            body.extend_from_slice(&chunk);
        }
        Ok((headers, body))
    }
}

/// Checks the collateral's signatures to `root_der` (DER), as DCAP will: the TCB
/// info and QE identity signed (raw r‖s over their exact bytes) by the leaf of their
/// issuer chains, the PCK CRL by the leaf of its chain, the root CA CRL by the root,
/// and every chain ending at the root with each certificate signed by the next.
/// Validity windows are DCAP's business at verification time (the collateral's own
/// window is [`FetchedCollateral`]'s); this only decides whether bytes may be cached.
pub fn verify_collateral(c: &QuoteCollateralV3, root_der: &[u8]) -> Result<(), CollateralError> {
    use x509_cert::der::Decode;
    let bad = |what: &str, e: String| CollateralError::Invalid(format!("{what}: {e}"));
    let root = x509_cert::Certificate::from_der(root_der)
        .map_err(|e| bad("trusted root", e.to_string()))?;
    let tcb = chain_leaf(&c.tcb_info_issuer_chain, root_der)
        .map_err(|e| bad("TCB info issuer chain", e))?;
    raw_signature(&tcb, c.tcb_info.as_bytes(), &c.tcb_info_signature)
        .map_err(|e| bad("TCB info", e))?;
    let qe = chain_leaf(&c.qe_identity_issuer_chain, root_der)
        .map_err(|e| bad("QE identity issuer chain", e))?;
    raw_signature(&qe, c.qe_identity.as_bytes(), &c.qe_identity_signature)
        .map_err(|e| bad("QE identity", e))?;
    let pck = chain_leaf(&c.pck_crl_issuer_chain, root_der)
        .map_err(|e| bad("PCK CRL issuer chain", e))?;
    crl_signed_by(&c.pck_crl, &pck).map_err(|e| bad("PCK CRL", e))?;
    crl_signed_by(&c.root_ca_crl, &root).map_err(|e| bad("root CA CRL", e))?;
    Ok(())
}

fn cert_key(cert: &x509_cert::Certificate) -> Result<p256::ecdsa::VerifyingKey, String> {
    let bits = cert
        .tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .as_bytes()
        .ok_or("key bit string")?;
    p256::ecdsa::VerifyingKey::from_sec1_bytes(bits).map_err(|_| "not a P-256 key".to_string())
}

/// ECDSA-SHA256 (DER signature) of `issuer` over `tbs`.
fn der_signature(
    issuer: &x509_cert::Certificate,
    alg: &x509_cert::spki::AlgorithmIdentifierOwned,
    tbs: &[u8],
    sig: &x509_cert::der::asn1::BitString,
) -> Result<(), String> {
    use p256::ecdsa::signature::Verifier;
    const ECDSA_SHA256: x509_cert::der::oid::ObjectIdentifier =
        x509_cert::der::oid::ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
    if alg.oid != ECDSA_SHA256 {
        return Err("not signed with ECDSA-SHA256".into());
    }
    let s = p256::ecdsa::Signature::from_der(sig.as_bytes().ok_or("signature bit string")?)
        .map_err(|_| "malformed signature".to_string())?;
    cert_key(issuer)?
        .verify(tbs, &s)
        .map_err(|_| "signature does not verify".to_string())
}

/// The first certificate of a PEM chain that ends at `root_der`, each certificate
/// signed by the next (and each issuer a CA).
fn chain_leaf(pem: &str, root_der: &[u8]) -> Result<x509_cert::Certificate, String> {
    use x509_cert::der::Encode;
    use x509_cert::ext::pkix::BasicConstraints;
    let chain =
        x509_cert::Certificate::load_pem_chain(pem.as_bytes()).map_err(|e| e.to_string())?;
    if chain.is_empty() || chain.len() > 5 {
        return Err(format!("{} certificates", chain.len()));
    }
    let last = chain
        .last()
        .and_then(|c| c.to_der().ok())
        .unwrap_or_default();
    if last != root_der {
        return Err("does not end at the trusted root CA".into());
    }
    for (cert, issuer) in chain.iter().zip(chain.iter().skip(1)) {
        if !matches!(issuer.tbs_certificate.get::<BasicConstraints>(), Ok(Some((_, bc))) if bc.ca) {
            return Err(format!("{} is not a CA", issuer.tbs_certificate.subject));
        }
        let tbs = cert.tbs_certificate.to_der().map_err(|e| e.to_string())?;
        der_signature(issuer, &cert.signature_algorithm, &tbs, &cert.signature)
            .map_err(|e| format!("{}: {e}", cert.tbs_certificate.subject))?;
    }
    chain.into_iter().next().ok_or_else(|| "empty chain".into())
}

/// Intel's raw r‖s ECDSA-SHA256 signature of `signer` over `msg`.
fn raw_signature(signer: &x509_cert::Certificate, msg: &[u8], rs: &[u8]) -> Result<(), String> {
    use p256::ecdsa::signature::Verifier;
    let s =
        p256::ecdsa::Signature::from_slice(rs).map_err(|_| "malformed signature".to_string())?;
    cert_key(signer)?
        .verify(msg, &s)
        .map_err(|_| "signature does not verify".to_string())
}

/// A DER CRL issued and signed by `issuer`.
fn crl_signed_by(der: &[u8], issuer: &x509_cert::Certificate) -> Result<(), String> {
    use x509_cert::der::{Decode, Encode};
    let crl = x509_cert::crl::CertificateList::from_der(der).map_err(|e| e.to_string())?;
    if crl.tbs_cert_list.issuer != issuer.tbs_certificate.subject {
        return Err(format!(
            "issued by {}, not {}",
            crl.tbs_cert_list.issuer, issuer.tbs_certificate.subject
        ));
    }
    let tbs = crl.tbs_cert_list.to_der().map_err(|e| e.to_string())?;
    der_signature(issuer, &crl.signature_algorithm, &tbs, &crl.signature)
}

fn check_http_url(u: &str) -> Result<reqwest::Url, CollateralError> {
    let url =
        reqwest::Url::parse(u).map_err(|e| CollateralError::Config(format!("URL {u}: {e}")))?;
    if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none() {
        return Err(CollateralError::Config(format!(
            "URL {u}: not an http(s) URL with a host"
        )));
    }
    Ok(url)
}

fn normalise_base(u: &str) -> Result<String, CollateralError> {
    let url = check_http_url(u)?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(CollateralError::Config(format!(
            "base URL {u}: no query or fragment allowed"
        )));
    }
    let s = u.trim_end_matches('/');
    let s = s
        .strip_suffix("/sgx/certification/v4")
        .or_else(|| s.strip_suffix("/tdx/certification/v4"))
        .unwrap_or(s);
    Ok(s.to_string())
}

/// Splits `{"<field>": {...signed...}, "signature": "<hex>"}`, keeping the signed
/// value as the exact bytes received.
fn signed_json(
    endpoint: Endpoint,
    body: &[u8],
    field: &'static str,
) -> Result<(String, Vec<u8>), CollateralError> {
    #[derive(serde::Deserialize)]
    struct TcbInfoBody<'a> {
        #[serde(rename = "tcbInfo", borrow)]
        signed: &'a RawValue,
        signature: String,
    }
    #[derive(serde::Deserialize)]
    struct QeIdentityBody<'a> {
        #[serde(rename = "enclaveIdentity", borrow)]
        signed: &'a RawValue,
        signature: String,
    }
    let bad = |detail: String| CollateralError::MalformedBody { endpoint, detail };
    let (signed, signature) = match field {
        "tcbInfo" => serde_json::from_slice::<TcbInfoBody<'_>>(body)
            .map(|b| (b.signed.get().to_string(), b.signature)),
        _ => serde_json::from_slice::<QeIdentityBody<'_>>(body)
            .map(|b| (b.signed.get().to_string(), b.signature)),
    }
    .map_err(|e| bad(e.to_string()))?;
    if !signed.starts_with('{') {
        return Err(bad(format!("{field} is not an object")));
    }
    let sig = hex::decode(&signature).map_err(|e| bad(format!("signature: {e}")))?;
    if sig.len() != 64 {
        return Err(bad(format!("signature is {} bytes, not 64", sig.len())));
    }
    Ok((signed, sig))
}

/// The URL-encoded PEM chain in the first present header of `names`.
fn issuer_chain(
    endpoint: Endpoint,
    headers: &reqwest::header::HeaderMap,
    names: &[&'static str],
) -> Result<String, CollateralError> {
    let primary = names.first().copied().unwrap_or_default();
    let (header, value) = names
        .iter()
        .find_map(|n| headers.get(*n).map(|v| (*n, v)))
        .ok_or(CollateralError::MissingHeader {
            endpoint,
            header: primary,
        })?;
    let bad = |detail: String| CollateralError::MalformedHeader {
        endpoint,
        header,
        detail,
    };
    if value.len() > MAX_ISSUER_CHAIN_BYTES {
        return Err(bad(format!("over {MAX_ISSUER_CHAIN_BYTES} bytes")));
    }
    let text = value
        .to_str()
        .map_err(|_| bad("not visible ASCII".into()))?;
    let pem = percent_decode(text).map_err(bad)?;
    check_chain(&pem).map_err(bad)?;
    Ok(pem)
}

/// A PEM chain of at least one certificate. Only the shape: dcap-qvl checks it.
fn check_chain(pem: &str) -> Result<(), String> {
    let certs = provenant_base::fsutil::split_pem_certificates(pem)?;
    if certs.is_empty() {
        return Err("no PEM certificate".into());
    }
    Ok(())
}

/// Strict percent-decoding (`+` is literal, as Intel encodes spaces as `%20`).
fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            let hex = b.get(i + 1..i + 3).ok_or("truncated %-escape")?;
            let mut v = [0u8; 1];
            hex::decode_to_slice(hex, &mut v).map_err(|_| "invalid %-escape")?;
            out.push(v[0]);
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "not UTF-8 once decoded".into())
}

/// A CRL body: DER as is, or hex text (what a PCCS serves for the root CA CRL).
fn crl_der(body: &[u8]) -> Result<Vec<u8>, String> {
    if body.first() == Some(&0x30) {
        return Ok(body.to_vec());
    }
    let text = body.trim_ascii();
    if !text.is_empty() && text.iter().all(u8::is_ascii_hexdigit) {
        return hex::decode(text).map_err(|e| format!("hex CRL: {e}"));
    }
    Err("neither DER nor hex".into())
}

fn rfc3339_secs(s: &str) -> Result<u64, String> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("date {s:?}: {e}"))?;
    u64::try_from(t.unix_timestamp()).map_err(|_| format!("date {s:?} is before 1970"))
}

/// The FMSPC and (issueDate, nextUpdate) of a TDX TCB info.
fn tcb_info_fields(json: &str) -> Result<(Fmspc, (u64, u64)), String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Fields {
        id: String,
        fmspc: String,
        issue_date: String,
        next_update: String,
    }
    let f: Fields = serde_json::from_str(json).map_err(|e| e.to_string())?;
    if f.id != "TDX" {
        return Err(format!("id is {:?}, not \"TDX\"", f.id));
    }
    let fmspc = Fmspc::from_hex(&f.fmspc).ok_or_else(|| format!("FMSPC {:?}", f.fmspc))?;
    Ok((
        fmspc,
        (rfc3339_secs(&f.issue_date)?, rfc3339_secs(&f.next_update)?),
    ))
}

/// (issueDate, nextUpdate) of a TD QE identity.
fn qe_identity_window(json: &str) -> Result<(u64, u64), String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Fields {
        id: String,
        issue_date: String,
        next_update: String,
    }
    let f: Fields = serde_json::from_str(json).map_err(|e| e.to_string())?;
    if f.id != "TD_QE" {
        return Err(format!("id is {:?}, not \"TD_QE\"", f.id));
    }
    Ok((rfc3339_secs(&f.issue_date)?, rfc3339_secs(&f.next_update)?))
}

/// (thisUpdate, nextUpdate) of a DER CRL. A CRL without nextUpdate is refused: it
/// would give the collateral no expiry.
fn crl_window(der: &[u8]) -> Result<(u64, u64), String> {
    use x509_cert::der::Decode;
    let crl = x509_cert::crl::CertificateList::from_der(der).map_err(|e| format!("CRL: {e}"))?;
    let tbs = &crl.tbs_cert_list;
    let next = tbs.next_update.ok_or("CRL has no nextUpdate")?;
    Ok((
        tbs.this_update.to_unix_duration().as_secs(),
        next.to_unix_duration().as_secs(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_normalised() {
        for (given, want) in [
            ("https://pccs:8081", "https://pccs:8081"),
            ("https://pccs:8081/", "https://pccs:8081"),
            (
                "https://pccs:8081/sgx/certification/v4/",
                "https://pccs:8081",
            ),
            (
                "https://pccs:8081/tdx/certification/v4",
                "https://pccs:8081",
            ),
            (INTEL_PCS_URL, INTEL_PCS_URL),
        ] {
            assert_eq!(normalise_base(given).unwrap(), want, "{given}");
        }
        for bad in ["ftp://x", "pccs:8081", "https://h/?a=b", "not a url"] {
            assert_eq!(
                normalise_base(bad).unwrap_err().kind(),
                "CollateralConfig",
                "{bad}"
            );
        }
    }

    #[test]
    fn percent_decoding_is_strict() {
        assert_eq!(percent_decode("a%20b%2B+%0A").unwrap(), "a b++\n");
        assert!(percent_decode("%2").is_err());
        assert!(percent_decode("%zz").is_err());
        assert!(percent_decode("%ff").is_err());
    }

    #[test]
    fn crl_bodies_are_der_or_hex() {
        assert_eq!(crl_der(&[0x30, 0x01, 0x00]).unwrap(), [0x30, 0x01, 0x00]);
        assert_eq!(crl_der(b"300100\n").unwrap(), [0x30, 0x01, 0x00]);
        assert!(crl_der(b"").is_err());
        assert!(crl_der(b"<html>").is_err());
    }

    #[test]
    fn signed_json_keeps_the_exact_bytes() {
        // Spacing and key order a re-serialisation would change.
        let inner = r#"{ "z":1,  "a" : [1.50, 2e3] }"#;
        let body = format!(
            r#"{{"tcbInfo":{inner} , "signature":"{}"}}"#,
            "ab".repeat(64)
        );
        let (json, sig) = signed_json(Endpoint::TcbInfo, body.as_bytes(), "tcbInfo").unwrap();
        assert_eq!(json, inner);
        assert_eq!(sig, [0xab; 64]);
        // A duplicated signed field is refused, not resolved one way or the other.
        let dup = format!(
            r#"{{"tcbInfo":{{}},"tcbInfo":{inner},"signature":"{}"}}"#,
            "ab".repeat(64)
        );
        assert!(signed_json(Endpoint::TcbInfo, dup.as_bytes(), "tcbInfo").is_err());
        let short = format!(r#"{{"enclaveIdentity":{inner},"signature":"abcd"}}"#);
        assert!(signed_json(Endpoint::QeIdentity, short.as_bytes(), "enclaveIdentity").is_err());
        let not_obj = format!(
            r#"{{"enclaveIdentity":"x","signature":"{}"}}"#,
            "ab".repeat(64)
        );
        assert!(signed_json(Endpoint::QeIdentity, not_obj.as_bytes(), "enclaveIdentity").is_err());
    }

    #[test]
    fn intel_root_crl_url_is_the_roots_distribution_point() {
        use x509_cert::der::Decode;
        use x509_cert::ext::pkix::name::{DistributionPointName, GeneralName};
        use x509_cert::ext::pkix::CrlDistributionPoints;
        let root =
            x509_cert::Certificate::from_der(crate::attest::dcap::INTEL_SGX_ROOT_CA_DER).unwrap();
        let (_, dps) = root
            .tbs_certificate
            .get::<CrlDistributionPoints>()
            .unwrap()
            .unwrap();
        let urls: Vec<String> = dps
            .0
            .iter()
            .filter_map(|dp| match &dp.distribution_point {
                Some(DistributionPointName::FullName(names)) => Some(names),
                _ => None,
            })
            .flatten()
            .filter_map(|n| match n {
                GeneralName::UniformResourceIdentifier(u) => Some(u.to_string()),
                _ => None,
            })
            .collect();
        assert_eq!(urls, [INTEL_ROOT_CA_CRL_URL]);
    }

    #[test]
    fn fmspc_hex() {
        let f = Fmspc::from_hex("B0C06F000000").unwrap();
        assert_eq!(f.to_string(), "b0c06f000000");
        assert_eq!(Fmspc::from_hex("b0c06f000000"), Some(f));
        assert_eq!(Fmspc::from_hex("b0c06f"), None);
        assert_eq!(Fmspc::from_hex("b0c06f00000g"), None);
    }
}
