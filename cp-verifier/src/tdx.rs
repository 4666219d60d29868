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
//! - the TCB status as a type, and [`VerifiedQuote`], which only [`verify_quote`]
//!   builds. Whether a status is acceptable is policy's decision, not this module's.
//!
//! Intel's SGX Root CA is the default trust anchor (embedded by dcap-qvl); another
//! root is used only when a caller passes one explicitly.

use dcap_qvl::verify::QuoteVerifier;
use dcap_qvl::QuoteCollateralV3;
use evidence::tdx::{Quote, QuoteError};

/// Largest collateral JSON accepted (real collateral with CRLs is 15–20 KiB).
pub const MAX_COLLATERAL_BYTES: usize = 1024 * 1024;

/// A TCB status as Intel's TCB info defines it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum TcbStatus {
    UpToDate,
    SWHardeningNeeded,
    ConfigurationNeeded,
    ConfigurationAndSWHardeningNeeded,
    OutOfDate,
    OutOfDateConfigurationNeeded,
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

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuoteVerifyError {
    #[error("malformed quote: {0}")]
    Parse(#[from] QuoteError),
    #[error("malformed collateral: {0}")]
    Collateral(String),
    /// The platform's TCB matches no level in the TCB info: not a known-good state.
    #[error("no TCB level in the collateral matches this platform")]
    NoMatchingTcbLevel,
    /// A signature, chain, CRL or validity-window check failed.
    #[error("quote verification failed: {0}")]
    Verification(String),
    #[error("parsers disagree on {field}; refusing the quote")]
    ParserMismatch { field: &'static str },
}

impl QuoteVerifyError {
    pub fn kind(&self) -> &'static str {
        match self {
            QuoteVerifyError::Parse(_) => "MalformedQuote",
            QuoteVerifyError::Collateral(_) => "MalformedCollateral",
            QuoteVerifyError::NoMatchingTcbLevel => "NoMatchingTcbLevel",
            QuoteVerifyError::Verification(_) => "QuoteVerificationFailed",
            QuoteVerifyError::ParserMismatch { .. } => "ParserMismatch",
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
    pub fn quote(&self) -> &Quote {
        &self.quote
    }
    pub fn tcb_status(&self) -> &TcbStatus {
        &self.tcb_status
    }
    pub fn advisory_ids(&self) -> &[String] {
        &self.advisory_ids
    }
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

/// Verifies `raw` against `collateral` at `now_secs` (Unix seconds). `root_ca_der`
/// overrides Intel's root; pass `None` in production.
pub fn verify_quote(
    raw: &[u8],
    collateral: &QuoteCollateralV3,
    now_secs: u64,
    root_ca_der: Option<&[u8]>,
) -> Result<VerifiedQuote, QuoteVerifyError> {
    let quote = Quote::parse(raw)?;
    let verifier = match root_ca_der {
        Some(der) => QuoteVerifier::new(der.to_vec()),
        None => QuoteVerifier::new_prod(),
    };
    let report = verifier.verify(raw, collateral, now_secs).map_err(|e| {
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
        verified_at: now_secs,
    })
}

fn cross_check(ours: &Quote, theirs: &dcap_qvl::quote::Report) -> Result<(), QuoteVerifyError> {
    use dcap_qvl::quote::Report;
    let b = &ours.body;
    let td10 = match theirs {
        Report::TD10(r) => r,
        Report::TD15(r) => &r.base,
        _ => return Err(QuoteVerifyError::ParserMismatch { field: "body type" }),
    };
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
