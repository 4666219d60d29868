//! The quote-provider seam: how a report is bound to the platform.
//!
//! This crate ships the `none` provider (software tier). TDX providers (configfs-tsm,
//! `/dev/tdx_guest`) implement the same trait. The tier is always explicit: a missing
//! TEE produces `Tier::Software`, stated in every report and on `/health`.

use evidence::Tier;

/// Evidence that binds a report to the platform, if the platform can give any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformEvidence {
    pub tier: Tier,
    /// The raw quote (or TDREPORT) whose REPORTDATA is the report binding.
    pub quote: Option<Vec<u8>>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QuoteError {
    #[error("quote provider unavailable: {0}")]
    Unavailable(String),
}

pub trait QuoteProvider: Send + Sync {
    /// The tier this provider produces.
    fn tier(&self) -> Tier;
    /// Evidence for a report whose binding is `report_data`.
    fn evidence(&self, report_data: &[u8; 64]) -> Result<PlatformEvidence, QuoteError>;
}

/// No TEE: the software tier. The report's own signature is the only binding.
#[derive(Debug, Default)]
pub struct NoTee;

impl QuoteProvider for NoTee {
    fn tier(&self) -> Tier {
        Tier::Software
    }
    fn evidence(&self, _report_data: &[u8; 64]) -> Result<PlatformEvidence, QuoteError> {
        Ok(PlatformEvidence {
            tier: Tier::Software,
            quote: None,
        })
    }
}
