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

use provenant_base::clock::UnixSecs;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dcap_qvl::QuoteCollateralV3;
use serde_json::value::RawValue;

use crate::attest::dcap::{parse_collateral, MAX_COLLATERAL_BYTES};

mod offline;
mod pcs;
mod raw;
mod verify;

pub use offline::OfflineConfig;
use offline::{offline_get, parse_cached, read_collateral_file};
use pcs::{check_chain, Pcs};
pub use raw::{assemble, import, pck_crl_ca, RawCollateral, RawCollateralError, RawPart};
pub use verify::verify_collateral;
use verify::{crl_window, qe_identity_window, tcb_info_fields};

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
    /// Intel SGX PCK Platform CA (PCS `ca=platform`).
    Platform,
    /// Intel SGX PCK Processor CA (PCS `ca=processor`).
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
    /// The TDX TCB info for an FMSPC (`/tdx/certification/v4/tcb`).
    TcbInfo,
    /// The TD_QE identity (`/tdx/certification/v4/qe/identity`).
    QeIdentity,
    /// The CRL of the PCK CA (`/sgx/certification/v4/pckcrl`).
    PckCrl,
    /// The root CA CRL (PCCS `rootcacrl`, or a URL: see [`RootCaCrl`]).
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

/// Why collateral could not be had for a quote at a given time. Every variant means
/// "cannot decide" (`unknown`), never a failed quote; [`CollateralError::kind`] is its
/// stable name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CollateralError {
    /// The TCB info endpoint answered 404: the service knows no such FMSPC.
    #[error("{endpoint}: no collateral for FMSPC {fmspc} (HTTP 404)")]
    UnknownFmspc {
        /// The endpoint asked.
        endpoint: Endpoint,
        /// The FMSPC asked for.
        fmspc: Fmspc,
    },
    /// The endpoint answered a non-success HTTP status.
    #[error("{endpoint}: HTTP {status}")]
    HttpStatus {
        /// The endpoint asked.
        endpoint: Endpoint,
        /// The HTTP status code.
        status: u16,
    },
    /// No complete response within the configured per-request timeout.
    #[error("{endpoint}: no complete answer within {timeout:?}")]
    Timeout {
        /// The endpoint asked.
        endpoint: Endpoint,
        /// The timeout that elapsed.
        timeout: Duration,
    },
    /// Connecting, TLS or reading the response failed.
    #[error("{endpoint}: {detail}")]
    Transport {
        /// The endpoint asked.
        endpoint: Endpoint,
        /// The error chain.
        detail: String,
    },
    /// The response body is over the endpoint's size cap.
    #[error("{endpoint}: response body over {limit} bytes")]
    Oversized {
        /// The endpoint asked.
        endpoint: Endpoint,
        /// The cap, in bytes.
        limit: usize,
    },
    /// A required response header (the issuer chain) is absent.
    #[error("{endpoint}: missing header {header}")]
    MissingHeader {
        /// The endpoint asked.
        endpoint: Endpoint,
        /// The first header name looked for.
        header: &'static str,
    },
    /// A response header cannot be decoded.
    #[error("{endpoint}: malformed header {header}: {detail}")]
    MalformedHeader {
        /// The endpoint asked.
        endpoint: Endpoint,
        /// The header.
        header: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// A response body (or a part of given collateral) cannot be parsed.
    #[error("{endpoint}: malformed response: {detail}")]
    MalformedBody {
        /// The endpoint (or collateral part) at fault.
        endpoint: Endpoint,
        /// What is wrong with it.
        detail: String,
    },
    /// The collateral's TCB info is for another FMSPC than the one asked for.
    #[error("collateral is for FMSPC {got}, not {want}")]
    FmspcMismatch {
        /// The FMSPC asked for (the quote's).
        want: Fmspc,
        /// The FMSPC the collateral is for.
        got: Fmspc,
    },
    /// The collateral is past its earliest `nextUpdate` at `now`.
    #[error("collateral for FMSPC {fmspc} expired at {expires_at} (now {now})")]
    Expired {
        /// The FMSPC of the collateral.
        fmspc: Fmspc,
        /// Earliest `nextUpdate` of its parts, Unix seconds.
        expires_at: u64,
        /// The verification time, Unix seconds.
        now: u64,
    },
    /// The collateral was issued after `now`.
    #[error("collateral for FMSPC {fmspc} is not valid before {issued_at} (now {now})")]
    NotYetValid {
        /// The FMSPC of the collateral.
        fmspc: Fmspc,
        /// Latest issue date of its parts, Unix seconds.
        issued_at: u64,
        /// The verification time, Unix seconds.
        now: u64,
    },
    /// No offline file holds collateral for the FMSPC.
    #[error("no offline collateral for FMSPC {fmspc} ({ca} CA) in {searched}")]
    OfflineNotFound {
        /// The FMSPC asked for.
        fmspc: Fmspc,
        /// The PCK CA asked for.
        ca: PckCa,
        /// The files tried, comma-separated.
        searched: String,
    },
    /// An offline collateral file exists but cannot be read.
    #[error("offline collateral {path}: {detail}")]
    OfflineUnreadable {
        /// The file.
        path: String,
        /// The I/O error.
        detail: String,
    },
    /// Offline or cached collateral cannot be parsed.
    #[error("offline collateral {path}: {detail}")]
    OfflineMalformed {
        /// The file (or shared-cache entry).
        path: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The quote does not say which collateral it needs.
    #[error("quote: {0}")]
    Quote(String),
    /// The collateral source is misconfigured (timeout, TLS roots, URL, API key, cache
    /// directory).
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
    /// The collateral itself, as dcap-qvl takes it.
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
    let first = provenant_base::pem::certificates(&pem)
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
    let fmspc = crate::attest::dcap::pck_fmspc(&leaf).map_err(CollateralError::Quote)?;
    Ok((Fmspc(fmspc), ca))
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
    /// Where the root CA CRL comes from.
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

    /// Collateral for `fmspc` and `ca`, usable at `now`.
    pub async fn get(
        &self,
        fmspc: Fmspc,
        ca: PckCa,
        now: UnixSecs,
    ) -> Result<Arc<FetchedCollateral>, CollateralError> {
        // Collateral dates are after 1970; the cache below keeps unsigned seconds.
        let now_secs = now.unsigned();
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
    /// Stores an entry usable until `expires_at`. Best effort.
    async fn save(&self, key: &str, json: &[u8], expires_at: UnixSecs);
}

#[cfg(test)]
mod tests;
