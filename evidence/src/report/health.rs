//! The node's health in a pulse: the signed-heartbeat PRD's "health metrics", signed
//! with the state hashes. Small and bounded; not part of the measurements (it changes
//! every pulse), so it does not move `measurements_digest`.

use serde::{Deserialize, Serialize};

use super::check_text;
use crate::error::EvidenceError;
use crate::limits::MAX_PATH_LEN;

/// Most mounts a pulse reports free space for.
pub const MAX_HEALTH_MOUNTS: usize = 16;
/// Longest `last_error` carried (the agent truncates).
pub const MAX_LAST_ERROR_LEN: usize = 512;

/// What the node's kernel says about its clock (`adjtimex(2)`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockSync {
    /// The kernel considers the clock synchronised (an NTP or PTP daemon disciplines
    /// it: `STA_UNSYNC` clear and no `TIME_ERROR`).
    pub synchronised: bool,
    /// The kernel's estimated error, microseconds.
    pub est_error_us: u64,
    /// The kernel's maximum error, microseconds.
    pub max_error_us: u64,
}

/// Free space on one configured mount.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskFree {
    /// The mount point, as configured.
    pub mount: String,
    /// Its size, bytes.
    pub total_bytes: u64,
    /// Available to unprivileged writers, bytes.
    pub free_bytes: u64,
}

/// The node's health when the agent made the pulse.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// Seconds since the node booted.
    pub uptime_s: u64,
    /// Load averages over 1, 5 and 15 minutes.
    pub load_avg: [f64; 3],
    /// Total memory, KiB.
    pub mem_total_kib: u64,
    /// Memory available for new work, KiB.
    pub mem_available_kib: u64,
    /// Free space on the configured mounts.
    pub disks: Vec<DiskFree>,
    /// The agent's resident set size, KiB.
    pub agent_rss_kib: u64,
    /// CPU time the agent used since it started (user + system), milliseconds.
    pub agent_cpu_ms: u64,
    /// The kernel's clock synchronisation state; `None` where it cannot be read.
    pub clock: Option<ClockSync>,
    /// The agent's last error, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl Health {
    pub(crate) fn validate(&self) -> Result<(), EvidenceError> {
        if self.disks.len() > MAX_HEALTH_MOUNTS {
            return Err(EvidenceError::InvalidField {
                field: "health.disks",
                detail: format!("{} mounts, limit {MAX_HEALTH_MOUNTS}", self.disks.len()),
            });
        }
        for d in &self.disks {
            check_text("health.disks.mount", &d.mount, MAX_PATH_LEN)?;
        }
        if self.load_avg.iter().any(|l| !l.is_finite() || *l < 0.0) {
            return Err(EvidenceError::InvalidField {
                field: "health.load_avg",
                detail: "load averages are finite and not negative".into(),
            });
        }
        if let Some(e) = &self.last_error {
            check_text("health.last_error", e, MAX_LAST_ERROR_LEN)?;
        }
        Ok(())
    }
}
