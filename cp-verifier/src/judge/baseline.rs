//! Comparing reported measurements with the last-known-good.
//!
//! Pure: given what was known and what was reported, it returns the new baseline and
//! the alerts to raise. An alert is raised when a difference first appears (not on
//! every pulse that repeats it); the verdict shows the difference for as long as it
//! lasts.

use evidence::verdict::{Reason, ReasonCode, Status};
use evidence::{BpfProgram, CollectorState, Ebpf, Measurements, Workload, Workloads};

use crate::model::AlertKind;
use crate::model::Expectations;

/// The outcome of [`judge`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgement {
    /// The new last-known-good: observed announced updates, and a first complete eBPF
    /// program list, are taken in.
    pub lkg: Measurements,
    /// The expectations left: those fulfilled are cleared.
    pub expected: Expectations,
    /// Alerts to raise, with their detail.
    pub alerts: Vec<(AlertKind, String)>,
}

fn short(d: &evidence::Digest32) -> String {
    d.to_hex()[..16].to_string()
}

/// Paths whose digest differs between two policy measurements (added, removed or
/// changed), for the alert text.
pub fn changed_paths(a: &Measurements, b: &Measurements) -> Vec<String> {
    let mut out = Vec::new();
    for f in &b.policy.files {
        match a.policy.files.iter().find(|x| x.path == f.path) {
            Some(x) if x.sha256 == f.sha256 => {}
            Some(_) => out.push(format!("{} (changed)", f.path)),
            None => out.push(format!("{} (added)", f.path)),
        }
    }
    for f in &a.policy.files {
        if !b.policy.files.iter().any(|x| x.path == f.path) {
            out.push(format!("{} (removed)", f.path));
        }
    }
    out
}

/// Judges `reported` against the baseline. `previous` is what the agent reported last
/// (to raise each alert once), `None` on first contact.
pub fn judge(
    lkg: &Measurements,
    expected: &Expectations,
    previous: Option<&Measurements>,
    reported: &Measurements,
) -> Judgement {
    let mut lkg = lkg.clone();
    let mut expected = expected.clone();
    let mut alerts = Vec::new();

    if reported.agent_binary != lkg.agent_binary {
        if expected.agent_binary == Some(reported.agent_binary) {
            alerts.push((
                AlertKind::ExpectedUpdateApplied,
                format!(
                    "agent binary {} -> {} as announced; now last-known-good",
                    short(&lkg.agent_binary),
                    short(&reported.agent_binary)
                ),
            ));
            lkg.agent_binary = reported.agent_binary;
            expected.agent_binary = None;
        } else if previous.map(|p| p.agent_binary) != Some(reported.agent_binary) {
            alerts.push((
                AlertKind::BinaryChanged,
                format!(
                    "agent binary changed without a coordinated update: last-known-good {} , now {}",
                    lkg.agent_binary, reported.agent_binary
                ),
            ));
        }
    }

    if reported.policy.digest != lkg.policy.digest {
        if expected.policy_digest == Some(reported.policy.digest) {
            alerts.push((
                AlertKind::ExpectedUpdateApplied,
                format!(
                    "policy {} -> {} as announced; now last-known-good",
                    short(&lkg.policy.digest),
                    short(&reported.policy.digest)
                ),
            ));
            lkg.policy = reported.policy.clone();
            expected.policy_digest = None;
        } else if previous.map(|p| p.policy.digest) != Some(reported.policy.digest) {
            alerts.push((
                AlertKind::PolicyChanged,
                format!(
                    "policy files differ from last-known-good: {}",
                    changed_paths(&lkg, reported).join(", ")
                ),
            ));
        }
    }

    if reported.platform != lkg.platform
        && previous.map(|p| &p.platform) != Some(&reported.platform)
    {
        alerts.push((
            AlertKind::PlatformChanged,
            format!(
                "platform facts differ from last-known-good: was {:?}, now {:?}",
                lkg.platform, reported.platform
            ),
        ));
    }

    // eBPF: judged against the last-known-good, like the binary. With no good list
    // yet (collector not configured or unable to look at registration), the first
    // complete list becomes the baseline.
    match (ok_ebpf(lkg.ebpf.as_ref()), ok_ebpf(reported.ebpf.as_ref())) {
        (None, Some((_, ri))) => {
            // At first contact this is the baseline. Later (the collector could not
            // look at registration, and now can) it is adopted too, but never
            // silently: whatever was loaded meanwhile is named for the operator.
            if previous.is_some() {
                alerts.push((
                    AlertKind::EbpfChanged,
                    format!(
                        "eBPF programs became visible after registration and were adopted as last-known-good; review them: {}",
                        ebpf_diff(&[], ri)
                    ),
                ));
            }
            lkg.ebpf = reported.ebpf.clone();
        }
        (Some((ld, li)), Some((rd, ri))) if ld != rd => {
            let prev = previous.and_then(|p| ok_ebpf(p.ebpf.as_ref())).map(|x| x.0);
            if prev != Some(rd) {
                alerts.push((
                    AlertKind::EbpfChanged,
                    format!(
                        "loaded eBPF programs differ from last-known-good: {}",
                        ebpf_diff(li, ri)
                    ),
                ));
            }
        }
        _ => {}
    }

    // Workloads: informational. The last reported list is the reference.
    if let (Some((pd, pi)), Some((rd, ri))) = (
        previous.and_then(|p| ok_workloads(p.workloads.as_ref())),
        ok_workloads(reported.workloads.as_ref()),
    ) {
        if pd != rd {
            alerts.push((
                AlertKind::WorkloadsChanged,
                format!("workloads changed: {}", workloads_diff(pi, ri)),
            ));
        }
    }
    lkg.workloads = reported.workloads.clone();

    Judgement {
        lkg,
        expected,
        alerts,
    }
}

/// The digest and items of an eBPF list the collector could see completely.
fn ok_ebpf(e: Option<&Ebpf>) -> Option<(evidence::Digest32, &[BpfProgram])> {
    let e = e?;
    match (e.state, e.digest, e.items.as_deref()) {
        (CollectorState::Ok, Some(d), Some(i)) => Some((d, i)),
        _ => None,
    }
}

fn ok_workloads(w: Option<&Workloads>) -> Option<(evidence::Digest32, &[Workload])> {
    let w = w?;
    match (w.state, w.digest, w.items.as_deref()) {
        (CollectorState::Ok, Some(d), Some(i)) => Some((d, i)),
        _ => None,
    }
}

/// At most this many entries per list in an alert text.
const MAX_LISTED: usize = 20;

fn listing(label: &str, items: &[String]) -> Option<String> {
    if items.is_empty() {
        return None;
    }
    let mut s = format!("{label}: ");
    s.push_str(&items[..items.len().min(MAX_LISTED)].join("; "));
    if items.len() > MAX_LISTED {
        s.push_str(&format!("; … and {} more", items.len() - MAX_LISTED));
    }
    Some(s)
}

fn prog(p: &BpfProgram) -> String {
    format!(
        "{} ({}, sha256 {}{})",
        p.name,
        p.prog_type,
        p.sha256,
        if p.pinned.is_empty() {
            String::new()
        } else {
            format!(", pinned {}", p.pinned.join(","))
        }
    )
}

/// Added, removed and changed programs, keyed by (name, type).
pub fn ebpf_diff(old: &[BpfProgram], new: &[BpfProgram]) -> String {
    let key = |p: &BpfProgram| (p.name.clone(), p.prog_type.clone());
    let same = |a: &BpfProgram, b: &BpfProgram| a.sha256 == b.sha256 && a.pinned == b.pinned;
    let (mut added, mut removed, mut changed) = (Vec::new(), Vec::new(), Vec::new());
    for n in new {
        let olds: Vec<&BpfProgram> = old.iter().filter(|o| key(o) == key(n)).collect();
        if olds.is_empty() {
            added.push(prog(n));
        } else if !olds.iter().any(|o| same(o, n)) {
            changed.push(format!(
                "{} -> sha256 {}",
                olds.iter().map(|o| prog(o)).collect::<Vec<_>>().join(" | "),
                n.sha256
            ));
        }
    }
    for o in old {
        if !new.iter().any(|n| key(n) == key(o)) {
            removed.push(prog(o));
        }
    }
    let parts: Vec<String> = [
        listing("added", &added),
        listing("removed", &removed),
        listing("changed", &changed),
    ]
    .into_iter()
    .flatten()
    .collect();
    if parts.is_empty() {
        "the same programs, in different numbers".into()
    } else {
        parts.join("; ")
    }
}

fn wl(w: &Workload) -> String {
    format!(
        "{} ({}, {}, {})",
        w.name,
        w.image,
        w.image_digest.as_deref().unwrap_or("no digest"),
        w.state
    )
}

/// Started, stopped and changed containers, keyed by container id.
pub fn workloads_diff(old: &[Workload], new: &[Workload]) -> String {
    let (mut added, mut removed, mut changed) = (Vec::new(), Vec::new(), Vec::new());
    for n in new {
        match old.iter().find(|o| o.id == n.id) {
            None => added.push(wl(n)),
            Some(o) if o != n => changed.push(format!("{} -> {}", wl(o), wl(n))),
            Some(_) => {}
        }
    }
    for o in old {
        if !new.iter().any(|n| n.id == o.id) {
            removed.push(wl(o));
        }
    }
    let parts: Vec<String> = [
        listing("added", &added),
        listing("removed", &removed),
        listing("changed", &changed),
    ]
    .into_iter()
    .flatten()
    .collect();
    parts.join("; ")
}

/// Why a pulse's inventory cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryError(pub String);

/// Makes the reported workloads and eBPF lists complete. A report must carry full
/// lists; a pulse may omit them only when its digest equals the stored list's. A
/// pulse naming a new digest without items, or items that do not hash to the
/// digest, is refused: stale lists are never kept silently.
pub fn resolve_inventory(
    stored: Option<&Measurements>,
    mut reported: Measurements,
    is_report: bool,
) -> Result<Measurements, InventoryError> {
    if let Some(w) = reported.workloads.as_mut() {
        let stored = stored.and_then(|m| ok_workloads(m.workloads.as_ref()));
        let items = resolve(
            "workloads",
            w.state,
            w.digest,
            w.items.take(),
            stored.map(|(d, i)| (d, i.to_vec())),
            is_report,
            Workloads::digest_of,
        )?;
        if w.state != CollectorState::Ok {
            w.digest = None;
        }
        w.items = items;
    }
    if let Some(e) = reported.ebpf.as_mut() {
        let stored = stored.and_then(|m| ok_ebpf(m.ebpf.as_ref()));
        let items = resolve(
            "ebpf",
            e.state,
            e.digest,
            e.items.take(),
            stored.map(|(d, i)| (d, i.to_vec())),
            is_report,
            Ebpf::digest_of,
        )?;
        if e.state != CollectorState::Ok {
            e.digest = None;
        }
        e.items = items;
    }
    Ok(reported)
}

fn resolve<T>(
    what: &str,
    state: CollectorState,
    digest: Option<evidence::Digest32>,
    items: Option<Vec<T>>,
    stored: Option<(evidence::Digest32, Vec<T>)>,
    is_report: bool,
    digest_of: impl Fn(&[T]) -> evidence::Digest32,
) -> Result<Option<Vec<T>>, InventoryError> {
    if state != CollectorState::Ok {
        // No list when the collector could not look.
        return Ok(None);
    }
    let Some(digest) = digest else {
        return Err(InventoryError(format!(
            "{what} state is ok but carries no digest"
        )));
    };
    match items {
        Some(items) => {
            let got = digest_of(&items);
            if got != digest {
                return Err(InventoryError(format!(
                    "{what} items hash to {got}, but the digest says {digest}"
                )));
            }
            Ok(Some(items))
        }
        None if is_report => Err(InventoryError(format!(
            "a report must carry the full {what} list"
        ))),
        None => match stored {
            Some((d, items)) if d == digest => Ok(Some(items)),
            Some((d, _)) => Err(InventoryError(format!(
                "pulse names {what} digest {digest} without its items, but the last full list has digest {d}; register again"
            ))),
            None => Err(InventoryError(format!(
                "pulse names {what} digest {digest} without its items, and no full list is known; register again"
            ))),
        },
    }
}

/// Reasons from the workloads and eBPF collectors that stand now. Statuses (never
/// green):
/// - eBPF programs differ from a last-known-good list: `EbpfChanged`, red.
/// - eBPF list not visible (`unknown`/`unavailable`/no longer reported) where the
///   last-known-good had one: `EbpfUnavailable`, red (the view was lost).
/// - eBPF never visible: `unavailable` is yellow (a standing, weaker configuration,
///   like the software tier); `unknown` is unknown.
/// - workloads `unknown`/`unavailable`: `WorkloadsUnknown`, unknown: what runs
///   cannot be told, so nothing about it is acceptable.
pub fn inventory_reasons(lkg: &Measurements, current: &Measurements) -> Vec<Reason> {
    let mut out = Vec::new();
    let mut push = |code, status, detail: String| {
        out.push(Reason {
            code,
            status,
            detail,
        })
    };
    let lkg_ebpf = ok_ebpf(lkg.ebpf.as_ref());
    match (&current.ebpf, lkg_ebpf) {
        (Some(e), _) if e.state == CollectorState::Ok => {
            if let (Some((ld, li)), Some((cd, ci))) = (lkg_ebpf, ok_ebpf(Some(e))) {
                if ld != cd {
                    push(
                        ReasonCode::EbpfChanged,
                        Status::Fail,
                        format!(
                            "eBPF programs differ from last-known-good: {}",
                            ebpf_diff(li, ci)
                        ),
                    );
                }
            }
        }
        (Some(e), Some(_)) => push(
            ReasonCode::EbpfUnavailable,
            Status::Fail,
            format!(
                "eBPF programs were visible at last-known-good, now {}: {}",
                state_str(e.state),
                e.reason.as_deref().unwrap_or("no reason given")
            ),
        ),
        (None, Some(_)) => push(
            ReasonCode::EbpfUnavailable,
            Status::Fail,
            "eBPF programs were visible at last-known-good, now not reported".into(),
        ),
        (Some(e), None) => push(
            ReasonCode::EbpfUnavailable,
            if e.state == CollectorState::Unavailable {
                Status::Warn
            } else {
                Status::Unknown
            },
            format!(
                "eBPF programs {}: {}",
                state_str(e.state),
                e.reason.as_deref().unwrap_or("no reason given")
            ),
        ),
        (None, None) => {}
    }
    if let Some(w) = &current.workloads {
        if w.state != CollectorState::Ok {
            push(
                ReasonCode::WorkloadsUnknown,
                Status::Unknown,
                format!(
                    "workloads {}: {}",
                    state_str(w.state),
                    w.reason.as_deref().unwrap_or("no reason given")
                ),
            );
        }
    }
    out
}

/// A collector state as the API shows it (`ok`, `unknown`, `unavailable`).
pub fn state_str(s: CollectorState) -> &'static str {
    match s {
        CollectorState::Ok => "ok",
        CollectorState::Unknown => "unknown",
        CollectorState::Unavailable => "unavailable",
    }
}

/// The differences that stand now, for the verdict.
pub fn standing(
    lkg: &Measurements,
    current: &Measurements,
) -> (Option<String>, Option<String>, Option<String>) {
    let bin = (current.agent_binary != lkg.agent_binary).then(|| {
        format!(
            "agent binary {} differs from last-known-good {}",
            short(&current.agent_binary),
            short(&lkg.agent_binary)
        )
    });
    let pol = (current.policy.digest != lkg.policy.digest).then(|| {
        format!(
            "policy files differ: {}",
            changed_paths(lkg, current).join(", ")
        )
    });
    let plat = (current.platform != lkg.platform)
        .then(|| "platform facts differ from last-known-good".to_string());
    (bin, pol, plat)
}

#[cfg(test)]
mod tests {
    use super::*;
    use evidence::report::HexBytes;
    use evidence::{FileMeasurement, Platform, PolicyMeasurement, TeeKind};

    fn m(bin: u8, pol: u8) -> Measurements {
        Measurements {
            agent_binary: HexBytes([bin; 32]),
            policy: PolicyMeasurement::from_files(vec![FileMeasurement {
                path: "/etc/p.toml".into(),
                sha256: HexBytes([pol; 32]),
            }]),
            platform: Platform {
                tee: TeeKind::None,
                tpm_present: false,
                kernel_cmdline_sha256: None,
                lockdown: None,
            },
            workloads: None,
            ebpf: None,
        }
    }

    #[test]
    fn unchanged_is_quiet() {
        let j = judge(&m(1, 1), &Expectations::default(), Some(&m(1, 1)), &m(1, 1));
        assert!(j.alerts.is_empty());
        assert_eq!(standing(&j.lkg, &m(1, 1)), (None, None, None));
    }

    #[test]
    fn binary_change_alerts_once_and_stands() {
        let j = judge(&m(1, 1), &Expectations::default(), Some(&m(1, 1)), &m(2, 1));
        assert_eq!(j.alerts.len(), 1);
        assert_eq!(j.alerts[0].0, AlertKind::BinaryChanged);
        assert_eq!(j.lkg, m(1, 1));
        // Repeating the same change raises nothing new, but it still stands.
        let j2 = judge(&j.lkg, &j.expected, Some(&m(2, 1)), &m(2, 1));
        assert!(j2.alerts.is_empty());
        assert!(standing(&j2.lkg, &m(2, 1)).0.is_some());
    }

    #[test]
    fn announced_update_becomes_baseline() {
        let exp = Expectations {
            agent_binary: Some(HexBytes([2; 32])),
            policy_digest: None,
        };
        let j = judge(&m(1, 1), &exp, Some(&m(1, 1)), &m(2, 1));
        assert_eq!(j.alerts[0].0, AlertKind::ExpectedUpdateApplied);
        assert_eq!(j.lkg.agent_binary, HexBytes([2; 32]));
        assert_eq!(j.expected, Expectations::default());
        // A different, unannounced binary still alerts.
        let j = judge(&m(1, 1), &exp, Some(&m(1, 1)), &m(3, 1));
        assert_eq!(j.alerts[0].0, AlertKind::BinaryChanged);
    }

    fn progs(v: &[(&str, u8)]) -> Vec<evidence::BpfProgram> {
        v.iter()
            .map(|(n, h)| evidence::BpfProgram {
                id: u32::from(*h),
                name: (*n).into(),
                prog_type: "lsm".into(),
                tag: "00".into(),
                sha256: HexBytes([*h; 32]),
                pinned: vec![],
            })
            .collect()
    }

    fn with_ebpf(p: Vec<evidence::BpfProgram>) -> Measurements {
        Measurements {
            ebpf: Some(Ebpf {
                state: CollectorState::Ok,
                reason: None,
                lsm_active: Some(true),
                digest: Some(Ebpf::digest_of(&p)),
                items: Some(p),
            }),
            ..m(1, 1)
        }
    }

    #[test]
    fn ebpf_changes_alert_once_and_stand() {
        let lkg = with_ebpf(progs(&[("a", 1), ("b", 2)]));
        let now = with_ebpf(progs(&[("b", 3), ("c", 4)]));
        let j = judge(&lkg, &Expectations::default(), Some(&lkg), &now);
        assert_eq!(j.alerts.len(), 1);
        assert_eq!(j.alerts[0].0, AlertKind::EbpfChanged);
        assert_eq!(j.lkg.ebpf, lkg.ebpf, "the baseline is not moved");
        let r = inventory_reasons(&j.lkg, &now);
        assert_eq!(r[0].code, ReasonCode::EbpfChanged);
        assert_eq!(r[0].status, Status::Fail);
        assert!(judge(&j.lkg, &j.expected, Some(&now), &now)
            .alerts
            .is_empty());
        // Order does not matter.
        let mut rev = progs(&[("b", 2), ("a", 1)]);
        rev.reverse();
        assert!(inventory_reasons(&lkg, &with_ebpf(rev)).is_empty());
        // With no baseline yet, the first complete list becomes it.
        let j = judge(&m(1, 1), &Expectations::default(), None, &now);
        assert_eq!(j.lkg.ebpf, now.ebpf);
        assert!(j.alerts.is_empty());
        // A list first visible after registration is adopted, never silently.
        let j = judge(&m(1, 1), &Expectations::default(), Some(&m(1, 1)), &now);
        assert_eq!(j.lkg.ebpf, now.ebpf);
        assert_eq!(j.alerts.len(), 1);
        assert_eq!(j.alerts[0].0, AlertKind::EbpfChanged);
        assert!(j.alerts[0].1.contains("adopted"), "{}", j.alerts[0].1);
    }

    #[test]
    fn pulses_without_items_must_match_the_stored_digest() {
        let full = with_ebpf(progs(&[("a", 1)]));
        let mut bare = full.clone();
        bare.ebpf.as_mut().unwrap().items = None;
        // A report must carry items.
        assert!(resolve_inventory(None, bare.clone(), true).is_err());
        let stored = resolve_inventory(None, full.clone(), true).unwrap();
        assert_eq!(
            resolve_inventory(Some(&stored), bare.clone(), false).unwrap(),
            full
        );
        let mut other = bare.clone();
        other.ebpf.as_mut().unwrap().digest = Some(HexBytes([9; 32]));
        let e = resolve_inventory(Some(&stored), other, false).unwrap_err();
        assert!(e.0.contains("without its items"), "{}", e.0);
        let mut lying = full.clone();
        lying.ebpf.as_mut().unwrap().digest = Some(HexBytes([9; 32]));
        assert!(resolve_inventory(Some(&stored), lying, false)
            .unwrap_err()
            .0
            .contains("hash to"));
        // A collector that could not look carries no list, whatever it sent.
        let mut blind = full.clone();
        blind.ebpf.as_mut().unwrap().state = CollectorState::Unavailable;
        let r = resolve_inventory(Some(&stored), blind, false).unwrap();
        assert_eq!(r.ebpf.as_ref().unwrap().items, None);
        assert_eq!(r.ebpf.as_ref().unwrap().digest, None);
    }

    #[test]
    fn policy_change_names_the_file() {
        let j = judge(&m(1, 1), &Expectations::default(), Some(&m(1, 1)), &m(1, 2));
        assert_eq!(j.alerts[0].0, AlertKind::PolicyChanged);
        assert!(
            j.alerts[0].1.contains("/etc/p.toml (changed)"),
            "{}",
            j.alerts[0].1
        );
    }
}
