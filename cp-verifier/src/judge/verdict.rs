//! The agent verdict and per-workload badges: the stored facts (liveness, TDX
//! evidence and its age, last-known-good comparison, revocation, image checks) turned
//! into reasons and evaluated by `policy`; and the image transitions that raise one
//! `ImageRefused` alert per turn to red.

use crate::judge::baseline::standing;
use crate::model::AgentRecord;
use crate::model::{Alert, AlertKind};
use crate::plane::ControlPlane;
use evidence::api::WorkloadBadge;
use evidence::Measurements;
use policy::{AgentFacts, Verdict};
use provenant_base::clock::UnixNanos;
use std::time::Duration;

/// The key under which a red workload image is remembered: its digest, or for an
/// image without one, its reference.
pub fn image_key(b: &WorkloadBadge) -> String {
    match &b.image_digest {
        Some(d) => d.clone(),
        None => format!("no-digest:{}", b.image),
    }
}

/// Whether the badge is red because of the image itself ([`policy::image::image_red`]).
pub(crate) fn image_red(b: &WorkloadBadge) -> bool {
    policy::image::image_red(&b.reasons)
}

impl ControlPlane {
    /// The verdict for a record at `now`.
    pub fn verdict(&self, rec: &AgentRecord, now: UnixNanos) -> Verdict {
        let (binary_changed, policy_changed, platform_changed) = standing(&rec.lkg, &rec.current);
        let facts = AgentFacts {
            tier: rec.tier,
            interval: Duration::from_millis(rec.heartbeat_interval_ms),
            since_last_pulse: now.since(self.last_alive(rec)),
            binary_changed,
            policy_changed,
            platform_changed,
            since_replay: rec.last_replay_ns.map(|t| now.since(UnixNanos(t))),
            since_clock_desync: rec.last_desync_ns.map(|t| now.since(UnixNanos(t))),
            compromised: rec.compromised.as_ref().map(|c| c.detail.clone()),
        };
        let v = policy::evaluate(&self.cfg.policy, &facts);
        let mut reasons = v.reasons;
        if let Some(a) = &rec.attestation {
            reasons.extend(a.reasons.iter().cloned());
            // Evidence ages: collateral, PCK chain, quote and provenance judged at `now`.
            reasons.extend(crate::attest::age_reasons(a, now, &self.cfg.policy));
        }
        if let Some(f) = &rec.requote_failed {
            reasons.push(policy::Reason {
                code: policy::ReasonCode::RequoteFailed,
                status: policy::Status::Warn,
                detail: format!(
                    "the control plane cannot verify this agent's fresh quote for {}s (the agent \
                     is alive and pulsing on its last verified registration): {}",
                    now.since(UnixNanos(f.at_ns)).as_secs(),
                    f.reason
                ),
            });
        }
        reasons.extend(policy::inventory::reasons(&rec.lkg, &rec.current));
        reasons.extend(policy::ebpf::required_reasons(
            &self.cfg.policy.ebpf,
            &rec.current,
        ));
        if let Some(c) = rec.health.as_ref().and_then(|h| h.clock) {
            if !c.synchronised
                && self.cfg.policy.clock_unsynchronised == policy::ClockUnsynchronised::Yellow
            {
                reasons.push(policy::Reason::new(
                    policy::ReasonCode::ClockUnsynchronised,
                    policy::Status::Warn,
                    format!(
                        "the node's kernel reports its clock unsynchronised (adjtimex: estimated \
                         error {} us, maximum {} us); check its NTP or PTP daemon before its \
                         pulses drift out of the allowed skew",
                        c.est_error_us, c.max_error_us
                    ),
                ));
            }
        }
        reasons.extend(self.revocation_reasons(rec, now));
        Verdict::from_reasons(reasons)
    }

    /// The badge of each workload the agent reports, under `agent` (its verdict).
    /// Digests without a fresh result are queued for verification and shown
    /// `unknown` meanwhile.
    pub fn badges(&self, rec: &AgentRecord, agent: &Verdict) -> Vec<WorkloadBadge> {
        let Some(items) = rec
            .current
            .workloads
            .as_ref()
            .and_then(|w| w.items.as_ref())
        else {
            return Vec::new();
        };
        let configured = self.cfg.images.is_some().then_some(&self.image_policy);
        let uncovered = |repo: &str| policy::image::uncovered(configured, repo);
        items
            .iter()
            .map(|w| {
                let check = match (
                    &w.image_digest,
                    crate::judge::images::repository_of(&w.image),
                ) {
                    (None, _) => policy::image::ImageCheck::Pending,
                    (Some(_), None) => policy::image::ImageCheck::Refused {
                        code: policy::ReasonCode::ImageNotCovered,
                        detail: "the image reference names no repository".into(),
                    },
                    // Only repositories the policy covers reach the verifier (and so a
                    // registry): an agent cannot make the control plane contact
                    // registries of its choosing.
                    (Some(d), Some(repo)) => {
                        uncovered(&repo).unwrap_or_else(|| self.images.lookup(&repo, d))
                    }
                };
                let v = policy::image::workload_badge(&self.image_policy, agent, w, &check);
                let (signer, verified_at_ns, rekor_log_index) = match &check {
                    policy::image::ImageCheck::Verified {
                        signer,
                        verified_at_ns,
                        rekor_log_index,
                        ..
                    } => (
                        Some(signer.clone()),
                        Some(*verified_at_ns),
                        *rekor_log_index,
                    ),
                    _ => (None, None, None),
                };
                WorkloadBadge {
                    name: w.name.clone(),
                    id: w.id.clone(),
                    image: w.image.clone(),
                    image_digest: w.image_digest.clone(),
                    status: v.status,
                    reasons: v.reasons,
                    signer,
                    verified_at_ns,
                    rekor_log_index,
                }
            })
            .collect()
    }

    /// Updates the record's set of red images and returns an `ImageRefused` alert
    /// for each image that turned red.
    /// A severity-1 `RequiredProgram` alert for each `[policy.ebpf]` reason that
    /// `after` gives and `before` (the measurements last accepted; none for a new
    /// agent) did not: a required program gone missing, unpinned or changed, or the
    /// BPF LSM off. A standing reason is not raised again on every pulse.
    pub(crate) fn required_program_alerts(
        &self,
        agent_id: &str,
        before: Option<&Measurements>,
        after: &Measurements,
        now: UnixNanos,
    ) -> Vec<Alert> {
        let p = &self.cfg.policy.ebpf;
        let old = before
            .map(|m| policy::ebpf::required_reasons(p, m))
            .unwrap_or_default();
        policy::ebpf::required_reasons(p, after)
            .into_iter()
            .filter(|r| !old.contains(r))
            .map(|r| {
                Alert::new(
                    now,
                    agent_id,
                    AlertKind::RequiredProgram,
                    format!("{}: {}", r.code.as_str(), r.detail),
                )
            })
            .collect()
    }

    pub(crate) fn image_transitions(
        &self,
        rec: &mut AgentRecord,
        badges: &[WorkloadBadge],
        now: UnixNanos,
    ) -> Vec<Alert> {
        let mut red: Vec<String> = Vec::new();
        let mut alerts = Vec::new();
        for b in badges.iter().filter(|b| image_red(b)) {
            let k = image_key(b);
            if red.contains(&k) {
                continue;
            }
            if !rec.image_red.contains(&k) {
                let why = b
                    .reasons
                    .iter()
                    .filter(|r| r.status == policy::Status::Fail)
                    .map(|r| format!("{}: {}", r.code.as_str(), r.detail))
                    .collect::<Vec<_>>()
                    .join("; ");
                alerts.push(Alert::new(
                    now,
                    &rec.agent_id,
                    AlertKind::ImageRefused,
                    format!(
                        "workload {} runs image {} ({}) that is red: {why}",
                        b.name,
                        b.image,
                        b.image_digest.as_deref().unwrap_or("no digest")
                    ),
                ));
            }
            red.push(k);
        }
        // An image that was red and is only being verified again (its result
        // expired, or the registry is away) stays remembered as red, so the
        // re-verification does not raise the alert a second time.
        for b in badges.iter().filter(|b| !image_red(b)) {
            let k = image_key(b);
            let undecided = b
                .reasons
                .iter()
                .any(|r| r.code == policy::ReasonCode::ImageUnverifiable);
            if undecided && rec.image_red.contains(&k) && !red.contains(&k) {
                red.push(k);
            }
        }
        red.sort();
        rec.image_red = red;
        alerts
    }
}
