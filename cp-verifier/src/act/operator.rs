//! Operator actions on an agent's expectations (`POST /api/v1/agents/{id}/expect`):
//! announce the binary or policy digest of a coordinated update, accept the current
//! measurements as last-known-good, or allow one registration on a lower tier. Edits
//! are compare-and-swap with retry, so they never overwrite a concurrent pulse.

use crate::http::error::ApiError;
use crate::http::views::AgentView;
use crate::judge::baseline::judge;
use crate::model::{AgentRecord, Expectations};
use crate::model::{Alert, AlertKind};
use crate::plane::{store_err, ControlPlane};
use crate::store::{AgentWrite, StoreError};
use evidence::{Digest32, Tier};
use provenant_base::clock::UnixNanos;
use serde::Deserialize;

/// Body of `POST /api/v1/agents/{id}/expect`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpectRequest {
    /// The agent binary digest a coordinated update will bring.
    #[serde(default)]
    pub agent_binary: Option<Digest32>,
    /// The policy digest a coordinated change will bring.
    #[serde(default)]
    pub policy_digest: Option<Digest32>,
    /// Accept everything the agent reports now as last-known-good.
    #[serde(default)]
    pub accept_current: bool,
    /// Allow the agent's next registration on this tier (one-shot), e.g. a planned
    /// move of a once-`tdx` agent to `software`, which is refused otherwise.
    #[serde(default)]
    pub tier: Option<Tier>,
    /// Clear the agent's `Compromised` mark (and its count of bad signatures), after
    /// the node was investigated. Audited as a `CompromiseCleared` alert.
    #[serde(default)]
    pub clear_compromised: bool,
}

impl ControlPlane {
    /// Announces a coordinated update (or accepts the current state as baseline).
    pub async fn expect(&self, id: &str, req: ExpectRequest) -> Result<AgentView, ApiError> {
        self.operator_edit(id, |rec, now| {
            let mut next = rec.clone();
            let mut alerts = Vec::new();
            if let Some(t) = req.tier {
                next.allowed_tier = Some(t);
                alerts.push(Alert::new(
                    now,
                    id,
                    AlertKind::TierExpected,
                    format!(
                        "operator allows the next registration on tier {} (now {}; one-shot)",
                        t.as_str(),
                        rec.tier.as_str()
                    ),
                ));
            }
            if req.clear_compromised {
                next.bad_signatures_ns.clear();
                if let Some(c) = next.compromised.take() {
                    alerts.push(Alert::new(
                        now,
                        id,
                        AlertKind::CompromiseCleared,
                        format!(
                            "operator cleared the Compromised mark set at {} ns: {}",
                            c.at_ns, c.detail
                        ),
                    ));
                }
            }
            if req.accept_current {
                next.lkg = rec.current.clone();
                next.expected = Expectations::default();
                alerts.push(Alert::new(
                    now,
                    id,
                    AlertKind::BaselineAccepted,
                    "operator accepted the current measurements as last-known-good",
                ));
            } else {
                if let Some(b) = req.agent_binary {
                    next.expected.agent_binary = Some(b);
                }
                if let Some(p) = req.policy_digest {
                    next.expected.policy_digest = Some(p);
                }
                // The expected state may already be here.
                let j = judge(&next.lkg, &next.expected, None, &next.current);
                let applied: Vec<_> = j
                    .alerts
                    .iter()
                    .filter(|(k, _)| *k == AlertKind::ExpectedUpdateApplied)
                    .map(|(k, d)| Alert::new(now, id, *k, d))
                    .collect();
                if !applied.is_empty() {
                    next.lkg = j.lkg;
                    next.expected = j.expected;
                }
                alerts.extend(applied);
            }
            Some((next, alerts))
        })
        .await
    }

    /// An operator's change to an agent's record, written under compare-and-swap and
    /// retried when a pulse or the sweeper wrote the record meanwhile. `change` gets
    /// the current record and `now` and returns the next record with its alerts, or
    /// `None` when there is nothing to write (the current view is returned).
    pub(crate) async fn operator_edit(
        &self,
        id: &str,
        mut change: impl FnMut(&AgentRecord, UnixNanos) -> Option<(AgentRecord, Vec<Alert>)>,
    ) -> Result<AgentView, ApiError> {
        for _ in 0..3 {
            let now = self.now();
            let Some(rec) = self.load(id, true).await? else {
                return Err(ApiError::NotFound(format!("no agent {id:?}")));
            };
            let Some((mut next, alerts)) = change(&rec, now) else {
                return Ok(self.view(&rec, now));
            };
            next.version = rec.version + 1;
            match self
                .persist(AgentWrite {
                    record: next.clone(),
                    expected_version: Some(rec.version),
                    nonce: None,
                    alerts,
                    chain_only: false,
                    changes: Vec::new(),
                })
                .await
            {
                Ok(()) => return Ok(self.view(&next, now)),
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(store_err(e)),
            }
        }
        Err(ApiError::StoreUnavailable(
            "agent record kept changing; retry".into(),
        ))
    }
}
