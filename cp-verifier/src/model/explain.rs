//! A refusal's explanation: what was compared, the expected and the found value,
//! and the first entry or input where they part. Kept with the refusal's alert, so
//! an operator sees it beside the alert. Factual by construction: every line is a
//! comparison that was made, never a guess at the cause.

use serde::{Deserialize, Serialize};

/// Most log entries an explanation lists (a window around the first divergence).
pub const MAX_EXPLAINED_ENTRIES: usize = 48;
/// Most attested values an MRTD explanation lists.
pub const MAX_CANDIDATES: usize = 16;

/// What a refusal compared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Explanation {
    /// The register or input compared: `RTMR3`, `MRTD`.
    pub subject: String,
    /// What the reference value is (`quoted RTMR3`).
    pub expected_label: String,
    /// The reference value, hex.
    pub expected: String,
    /// What the compared value is (`RTMR3 replayed from the sent log`).
    pub found_label: String,
    /// The compared value, hex.
    pub found: String,
    /// The first entry or input where the two part, where the comparison can place
    /// it; `None` when it cannot (the notes say why).
    pub divergence: Option<String>,
    /// What else the comparison established, one fact per line.
    #[serde(default)]
    pub notes: Vec<String>,
    /// The log entries compared (a window of at most [`MAX_EXPLAINED_ENTRIES`]),
    /// with the register's value after each.
    #[serde(default)]
    pub entries: Vec<ExplainedEntry>,
    /// Entries of the log left out of `entries`.
    #[serde(default)]
    pub entries_omitted: usize,
    /// For an MRTD: the attested values this control plane knows, nearest first.
    #[serde(default)]
    pub candidates: Vec<Candidate>,
}

/// One RTMR3 log entry as compared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExplainedEntry {
    /// Its `seq`.
    pub seq: u64,
    /// What was measured.
    pub kind: String,
    /// The measurement, as logged.
    pub value: String,
    /// Whether it was extended into the register.
    pub bound: bool,
    /// RTMR3 after replaying the log up to and including this entry, hex.
    pub running: String,
    /// How it compares with the log accepted before (`as accepted`, `differs from the
    /// accepted entry: was …`, `new since the accepted log`), or with the quote.
    pub note: String,
    /// Whether this is the first divergent entry.
    pub first_divergent: bool,
}

/// An attested value a refused one was compared with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Candidate {
    /// The attested value, hex.
    pub value: String,
    /// Bytes that differ from the refused value.
    pub differing_bytes: u32,
    /// The first differing byte's offset.
    pub first_difference: u32,
    /// Where it was attested (`owner/repo .github/workflows/x.yml@refs/…, signed …`).
    pub attested_by: String,
    /// The nearest of the candidates (fewest differing bytes, then the newest).
    pub nearest: bool,
}
