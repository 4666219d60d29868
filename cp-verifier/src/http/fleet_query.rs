//! The fleet's filters, search, counts and pages, shared by `GET /api/v1/agents` and
//! the fleet page (`/agents`), so both answer the same question the same way.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::http::error::ApiError;
use crate::http::views::AgentView;

/// Longest search string (characters).
pub const MAX_SEARCH: usize = 256;

/// Largest page of agents, for the API and the fleet page alike.
pub const MAX_PAGE: usize = 1000;

/// A page size: `limit`, or `default` when absent; 1 to [`MAX_PAGE`].
pub fn page_limit(limit: Option<usize>, default: usize) -> Result<usize, ApiError> {
    let limit = limit.unwrap_or(default);
    if (1..=MAX_PAGE).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::bad_request(
            "BadQuery",
            format!("limit must be 1 to {MAX_PAGE}"),
        ))
    }
}

/// Which agents: every given filter must hold.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct FleetFilter {
    /// Only agents with this badge: `green`, `yellow`, `red` or `unknown`.
    pub badge: Option<String>,
    /// Only agents on this tier.
    pub tier: Option<String>,
    /// Only agents in this partition.
    pub partition: Option<String>,
    /// A case-insensitive substring of the agent id, a workload's image or digest,
    /// the MRTD (hex), or a reason code of the agent or a workload.
    pub q: Option<String>,
}

impl FleetFilter {
    /// Drops empty fields (a form sends `badge=` for "any") and checks the rest.
    pub fn normalised(self) -> Result<FleetFilter, ApiError> {
        let keep = |v: Option<String>| v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
        let f = FleetFilter {
            badge: keep(self.badge),
            tier: keep(self.tier),
            partition: keep(self.partition),
            q: keep(self.q).map(|s| s.to_lowercase()),
        };
        if let Some(b) = f.badge.as_deref() {
            if !matches!(b, "green" | "yellow" | "red" | "unknown") {
                return Err(ApiError::bad_request(
                    "BadQuery",
                    format!("badge must be green, yellow, red or unknown, not {b:?}"),
                ));
            }
        }
        if f.q
            .as_deref()
            .is_some_and(|q| q.chars().count() > MAX_SEARCH)
        {
            return Err(ApiError::bad_request(
                "BadQuery",
                format!("q is longer than {MAX_SEARCH} characters"),
            ));
        }
        Ok(f)
    }

    /// Whether `a` passes every filter (`q` must already be lower case, as
    /// [`FleetFilter::normalised`] leaves it).
    pub fn matches(&self, a: &AgentView) -> bool {
        self.badge.as_deref().is_none_or(|b| a.badge == b)
            && self.tier.as_deref().is_none_or(|t| a.tier.as_str() == t)
            && self.partition.as_deref().is_none_or(|p| a.partition == p)
            && self.q.as_deref().is_none_or(|q| searched(a, q))
    }

    /// Whether any filter is set.
    pub fn is_empty(&self) -> bool {
        self.badge.is_none() && self.tier.is_none() && self.partition.is_none() && self.q.is_none()
    }
}

fn has(hay: &str, q: &str) -> bool {
    // Ids, images, digests and codes are ASCII in practice; a non-ASCII haystack is
    // lowered in full.
    if q.is_empty() {
        return true;
    }
    if hay.is_ascii() {
        hay.len() >= q.len()
            && hay
                .as_bytes()
                .windows(q.len())
                .any(|w| w.eq_ignore_ascii_case(q.as_bytes()))
    } else {
        hay.to_lowercase().contains(q)
    }
}

fn searched(a: &AgentView, q: &str) -> bool {
    has(&a.agent_id, q)
        || a.attestation
            .as_ref()
            .is_some_and(|t| has(&t.mrtd.to_hex(), q))
        || a.verdict.reasons.iter().any(|r| has(r.code.as_str(), q))
        || a.workloads.iter().any(|w| {
            has(&w.image, q)
                || w.image_digest.as_deref().is_some_and(|d| has(d, q))
                || has(&w.name, q)
                || w.reasons.iter().any(|r| has(r.code.as_str(), q))
        })
}

/// Agents by badge, tier and partition.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct FleetCounts {
    /// Every agent counted.
    pub total: usize,
    /// By badge (`green`, `yellow`, `red`, `unknown`; absent when none).
    pub by_badge: BTreeMap<String, usize>,
    /// By tier.
    pub by_tier: BTreeMap<String, usize>,
    /// By partition.
    pub by_partition: BTreeMap<String, usize>,
}

impl FleetCounts {
    /// Counts `agents`.
    pub fn of<'a>(agents: impl IntoIterator<Item = &'a AgentView>) -> FleetCounts {
        let mut c = FleetCounts::default();
        for a in agents {
            c.total += 1;
            *c.by_badge.entry(a.badge.clone()).or_default() += 1;
            *c.by_tier.entry(a.tier.as_str().to_owned()).or_default() += 1;
            *c.by_partition.entry(a.partition.clone()).or_default() += 1;
        }
        c
    }
}

/// One page of the agents `f` selects, by agent id, after `after`.
pub struct Page {
    /// The agents on this page.
    pub agents: Vec<AgentView>,
    /// How many agents match, over all pages.
    pub matched: usize,
    /// How many matching agents come before this page.
    pub offset: usize,
    /// The last id of this page when more follow.
    pub next: Option<String>,
}

/// Filters `all`, sorts by agent id and cuts the page of at most `limit` after `after`.
pub fn page(mut all: Vec<AgentView>, f: &FleetFilter, after: Option<&str>, limit: usize) -> Page {
    all.retain(|a| f.matches(a));
    all.sort_by(|a, b| a.agent_id.cmp(&b.agent_id));
    let matched = all.len();
    let start = after.map_or(0, |after| {
        all.partition_point(|a| a.agent_id.as_str() <= after)
    });
    let mut agents: Vec<_> = all.into_iter().skip(start).take(limit + 1).collect();
    let more = agents.len() > limit;
    agents.truncate(limit);
    let next = if more {
        agents.last().map(|a| a.agent_id.clone())
    } else {
        None
    };
    Page {
        agents,
        matched,
        offset: start,
        next,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_is_a_case_insensitive_substring() {
        assert!(has("Node-7", "node-7"));
        assert!(has("ghcr.io/acme/web", "acme/web"));
        assert!(!has("abc", "abcd"));
        assert!(has("Ünïcode-Node", "ünïcode"));
        assert!(has("x", ""));
    }

    #[test]
    fn normalised_drops_empty_fields_and_refuses_bad_ones() {
        let f = FleetFilter {
            badge: Some(String::new()),
            tier: Some(" software ".into()),
            partition: None,
            q: Some("NODE".into()),
        }
        .normalised()
        .unwrap();
        assert_eq!(f.badge, None);
        assert_eq!(f.tier.as_deref(), Some("software"));
        assert_eq!(f.q.as_deref(), Some("node"));
        let bad = FleetFilter {
            badge: Some("purple".into()),
            ..FleetFilter::default()
        };
        assert_eq!(bad.normalised().unwrap_err().kind(), "BadQuery");
        let long = FleetFilter {
            q: Some("x".repeat(MAX_SEARCH + 1)),
            ..FleetFilter::default()
        };
        assert_eq!(long.normalised().unwrap_err().kind(), "BadQuery");
    }
}
