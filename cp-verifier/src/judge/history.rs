//! The verdict timeline: every change of an agent's or a workload's badge, with its
//! cause, recorded in the same transaction as the write that made it.
//!
//! Each record keeps the badges last recorded ([`SeenBadges`]). Every write goes
//! through [`ControlPlane::persist`], which judges the new record and, where a badge
//! differs, adds a [`VerdictChange`] to the write: so the per-agent compare-and-swap
//! makes each change recorded exactly once, whichever replica wrote it. A badge that
//! moves with time alone (a pulse late, collateral expiring, a withdrawal) changes
//! without a write; the liveness sweep, which judges every agent anyway, writes
//! those ([`ControlPlane::time_change`]). Pulses accepted and refused per minute are
//! counted in memory and added to the store by every replica ([`PulseTally`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use evidence::api::WorkloadBadge;
use policy::{Status, Verdict};
use provenant_base::clock::UnixNanos;

use crate::model::history::{AGENT_SUBJECT, MAX_SEEN_WORKLOADS};
use crate::model::{AgentRecord, Alert, PulseCount, SeenBadges, VerdictChange};
use crate::plane::ControlPlane;
use crate::store::AgentWrite;

/// Longest alert detail quoted in a cause.
const MAX_CAUSE_DETAIL: usize = 160;

/// The reason codes behind a non-green status.
fn codes<'a>(reasons: impl IntoIterator<Item = &'a policy::Reason>) -> Vec<String> {
    let mut v: Vec<String> = reasons
        .into_iter()
        .filter(|r| r.status != Status::Pass)
        .map(|r| r.code.as_str().to_string())
        .collect();
    v.sort();
    v.dedup();
    v
}

/// The badges a judgement gives.
pub(crate) fn seen_of(verdict: &Verdict, badges: &[WorkloadBadge]) -> SeenBadges {
    SeenBadges {
        agent: verdict.status.badge().to_string(),
        reasons: codes(&verdict.reasons),
        workloads: remembered(badges)
            .map(|b| (b.name.clone(), b.status.badge().to_string()))
            .collect(),
    }
}

/// The workloads whose badges are remembered: the first of each name (names come
/// from the agent; two with one name must not make every pulse a change), at most
/// [`MAX_SEEN_WORKLOADS`]. Quadratic in a list a report keeps short, and allocation
/// free: this runs on every pulse.
fn remembered(badges: &[WorkloadBadge]) -> impl Iterator<Item = &WorkloadBadge> {
    let shown = &badges[..badges.len().min(MAX_SEEN_WORKLOADS)];
    shown
        .iter()
        .enumerate()
        .filter(move |(i, b)| shown[..*i].iter().all(|x| x.name != b.name))
        .map(|(_, b)| b)
}

/// Whether `seen` shows the badges of this judgement (reasons aside).
fn shows(seen: &SeenBadges, verdict: &Verdict, badges: &[WorkloadBadge]) -> bool {
    seen.agent == verdict.status.badge()
        && seen.workloads.len() == remembered(badges).count()
        && remembered(badges).all(|b| {
            seen.workloads
                .get(&b.name)
                .is_some_and(|s| s == b.status.badge())
        })
}

/// `a` minus `b`.
fn minus(a: &[String], b: &[String]) -> Vec<String> {
    a.iter().filter(|x| !b.contains(x)).cloned().collect()
}

/// Cuts `s` to at most `max` bytes on a character boundary, marking the cut.
fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &s[..cut])
}

/// The cause of a change, for people: the alerts the write raised, then the reasons
/// that appeared or went.
fn cause(alerts: &[Alert], appeared: &[String], gone: &[String], first: bool) -> String {
    let mut parts = Vec::new();
    if first {
        parts.push("first judgement recorded".to_string());
    }
    if !alerts.is_empty() {
        let list = alerts
            .iter()
            .map(|a| {
                format!(
                    "{} ({})",
                    a.kind.as_str(),
                    clip(&a.detail, MAX_CAUSE_DETAIL)
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        parts.push(format!("alert: {list}"));
    }
    if !appeared.is_empty() {
        parts.push(format!("reasons appeared: {}", appeared.join(", ")));
    }
    if !gone.is_empty() {
        parts.push(format!("reasons gone: {}", gone.join(", ")));
    }
    if parts.is_empty() {
        parts.push("re-judged with no new alert or reason".to_string());
    }
    parts.join("; ")
}

/// The changes from `before` (none: nothing recorded yet) to the judgement
/// `verdict`/`badges` of agent `agent_id` at `now`, caused by a write raising
/// `alerts`; and what to remember next.
pub(crate) fn diff(
    agent_id: &str,
    before: Option<&SeenBadges>,
    verdict: &Verdict,
    badges: &[WorkloadBadge],
    alerts: &[Alert],
    now: UnixNanos,
) -> (SeenBadges, Vec<VerdictChange>) {
    let after = seen_of(verdict, badges);
    let mut out = Vec::new();
    let ids: Vec<String> = alerts.iter().map(|a| a.id.clone()).collect();
    let change = |subject: &str,
                  badge: &str,
                  previous: Option<&String>,
                  now_codes: Vec<String>,
                  old_codes: &[String]| {
        let appeared = minus(&now_codes, old_codes);
        let gone = minus(old_codes, &now_codes);
        VerdictChange {
            agent_id: agent_id.to_string(),
            subject: subject.to_string(),
            at_ns: now.get(),
            badge: badge.to_string(),
            previous: previous.cloned(),
            cause: cause(alerts, &appeared, &gone, previous.is_none()),
            alerts: ids.clone(),
            reasons: now_codes,
            appeared,
            gone,
        }
    };
    let old_agent = before.map(|b| &b.agent);
    if old_agent != Some(&after.agent) {
        let old_codes = before.map(|b| b.reasons.clone()).unwrap_or_default();
        out.push(change(
            AGENT_SUBJECT,
            &after.agent,
            old_agent,
            after.reasons.clone(),
            &old_codes,
        ));
    }
    let empty = BTreeMap::new();
    let old_workloads = before.map_or(&empty, |b| &b.workloads);
    for b in remembered(badges) {
        let now_badge = b.status.badge();
        let old = old_workloads.get(&b.name);
        if old.map(String::as_str) != Some(now_badge) {
            // A workload's earlier reasons are not kept: its appeared/gone are
            // relative to none.
            out.push(change(&b.name, now_badge, old, codes(&b.reasons), &[]));
        }
    }
    (after, out)
}

impl ControlPlane {
    /// Adds to `w` the badge changes its record makes (judged at `now`, or given as
    /// `judged` by a caller that already judged it), and remembers the new badges in
    /// the record. A change makes the write a full one.
    pub(crate) fn note_changes(
        &self,
        w: &mut AgentWrite,
        judged: Option<(&Verdict, &[WorkloadBadge])>,
        now: UnixNanos,
    ) {
        let owned;
        let (verdict, badges) = match judged {
            Some(j) => j,
            None => {
                let v = self.verdict(&w.record, now);
                let b = self.badges(&w.record, &v);
                owned = (v, b);
                (&owned.0, owned.1.as_slice())
            }
        };
        let before = w.record.seen.as_ref();
        // The hot path (a pulse that changes nothing) allocates nothing.
        if before.is_some_and(|b| shows(b, verdict, badges)) {
            return;
        }
        let (seen, changes) = diff(&w.record.agent_id, before, verdict, badges, &w.alerts, now);
        w.record.seen = Some(seen);
        w.changes.extend(changes);
        w.chain_only = false;
    }

    /// A write recording `rec`'s badge change with time alone (no pulse, no
    /// registration): `None` when its badges are what the record last recorded.
    pub(crate) fn time_change(&self, rec: &AgentRecord, now: UnixNanos) -> Option<AgentWrite> {
        let v = self.verdict(rec, now);
        let b = self.badges(rec, &v);
        if rec.seen.as_ref().is_some_and(|s| shows(s, &v, &b)) {
            return None;
        }
        let mut next = rec.clone();
        next.version = rec.version + 1;
        let mut w = AgentWrite {
            record: next,
            expected_version: Some(rec.version),
            nonce: None,
            chain_only: false,
            alerts: Vec::new(),
            changes: Vec::new(),
        };
        self.note_changes(&mut w, Some((&v, &b)), now);
        Some(w)
    }
}

/// Most (agent, minute) slots counted between flushes; past it new slots are
/// dropped (and counted as dropped) until the next flush.
pub(crate) const MAX_TALLY: usize = 200_000;

/// Pulses accepted and refused per agent and minute, since the last flush.
#[derive(Default)]
pub(crate) struct PulseTally {
    slots: Mutex<HashMap<(String, u64), (u64, u64)>>,
    dropped: std::sync::atomic::AtomicU64,
}

impl PulseTally {
    /// Counts one pulse of known agent `agent` at `now`.
    pub(crate) fn count(&self, agent: &str, now: UnixNanos, accepted: bool) {
        let minute = now.get() / 60_000_000_000;
        let mut m = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let key = (agent.to_string(), minute);
        if m.len() >= MAX_TALLY && !m.contains_key(&key) {
            self.dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return;
        }
        let e = m.entry(key).or_default();
        if accepted {
            e.0 = e.0.saturating_add(1);
        } else {
            e.1 = e.1.saturating_add(1);
        }
    }

    /// Everything counted since the last take.
    pub(crate) fn take(&self) -> Vec<(String, PulseCount)> {
        let m = std::mem::take(&mut *self.slots.lock().unwrap_or_else(|e| e.into_inner()));
        m.into_iter()
            .map(|((agent, minute), (accepted, refused))| {
                (
                    agent,
                    PulseCount {
                        minute,
                        accepted,
                        refused,
                    },
                )
            })
            .collect()
    }

    /// Puts counts back after a failed flush (within the bound).
    pub(crate) fn restore(&self, counts: Vec<(String, PulseCount)>) {
        let mut m = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        for (agent, p) in counts {
            let key = (agent, p.minute);
            if m.len() >= MAX_TALLY && !m.contains_key(&key) {
                self.dropped
                    .fetch_add(p.accepted + p.refused, std::sync::atomic::Ordering::Relaxed);
                continue;
            }
            let e = m.entry(key).or_default();
            e.0 = e.0.saturating_add(p.accepted);
            e.1 = e.1.saturating_add(p.refused);
        }
    }

    /// This replica's counts for `agent` not flushed yet.
    pub(crate) fn pending(&self, agent: &str) -> Vec<PulseCount> {
        let m = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        m.iter()
            .filter(|((a, _), _)| a == agent)
            .map(|((_, minute), (accepted, refused))| PulseCount {
                minute: *minute,
                accepted: *accepted,
                refused: *refused,
            })
            .collect()
    }

    /// Pulses not counted because the tally was full, since the last call.
    pub(crate) fn take_dropped(&self) -> u64 {
        self.dropped.swap(0, std::sync::atomic::Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AlertKind;
    use policy::{Reason, ReasonCode};

    fn verdict(status: Status, code: Option<ReasonCode>) -> Verdict {
        Verdict::from_reasons(
            code.map(|c| Reason::new(c, status, "x"))
                .into_iter()
                .collect(),
        )
    }

    #[test]
    fn a_change_names_its_alert_and_the_reasons_that_came_and_went() {
        let t = UnixNanos(5_000_000_000);
        let (seen, first) = diff("a", None, &verdict(Status::Pass, None), &[], &[], t);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].previous, None);
        assert!(first[0].cause.contains("first judgement"), "{first:?}");

        let alert = Alert::new(t, "a", AlertKind::BinaryChanged, "binary aa -> bb");
        let red = verdict(Status::Fail, Some(ReasonCode::BinaryChanged));
        let (seen2, ch) = diff("a", Some(&seen), &red, &[], std::slice::from_ref(&alert), t);
        assert_eq!(ch.len(), 1);
        assert_eq!(ch[0].badge, "red");
        assert_eq!(ch[0].previous.as_deref(), Some("green"));
        assert_eq!(ch[0].alerts, vec![alert.id.clone()]);
        assert_eq!(ch[0].appeared, vec!["BinaryChanged".to_string()]);
        assert!(
            ch[0].cause.contains("BinaryChanged (binary aa -> bb)"),
            "{}",
            ch[0].cause
        );

        let (_, back) = diff("a", Some(&seen2), &verdict(Status::Pass, None), &[], &[], t);
        assert_eq!(back[0].gone, vec!["BinaryChanged".to_string()]);
        assert!(back[0].cause.contains("reasons gone: BinaryChanged"));

        // Same badge again: nothing.
        let (_, none) = diff("a", Some(&seen2), &red, &[], &[], t);
        assert!(none.is_empty());
    }

    #[test]
    fn two_workloads_with_one_name_do_not_make_every_pulse_a_change() {
        let w = |status| WorkloadBadge {
            name: "dup".into(),
            id: "i".into(),
            image: "r/i".into(),
            image_digest: None,
            status,
            reasons: vec![],
            signer: None,
            verified_at_ns: None,
            rekor_log_index: None,
        };
        let badges = [w(Status::Pass), w(Status::Fail)];
        let v = verdict(Status::Pass, None);
        let (seen, first) = diff("a", None, &v, &badges, &[], UnixNanos(1));
        assert_eq!(first.len(), 2, "the agent and one workload: {first:?}");
        assert!(shows(&seen, &v, &badges));
        let (_, again) = diff("a", Some(&seen), &v, &badges, &[], UnixNanos(2));
        assert!(again.is_empty());
    }

    #[test]
    fn the_tally_is_bounded_and_restores_after_a_failed_flush() {
        let t = PulseTally::default();
        let now = UnixNanos(120_000_000_000);
        t.count("a", now, true);
        t.count("a", now, false);
        t.count("b", now, true);
        assert_eq!(t.pending("a")[0].accepted, 1);
        let taken = t.take();
        assert_eq!(taken.len(), 2);
        assert!(t.pending("a").is_empty());
        t.restore(taken);
        let a = t.pending("a");
        assert_eq!((a[0].minute, a[0].accepted, a[0].refused), (2, 1, 1));
        for i in 0..MAX_TALLY + 10 {
            t.count(&format!("x{i}"), now, true);
        }
        assert!(t.take_dropped() >= 10);
        assert_eq!(t.take_dropped(), 0);
    }
}
