//! Comparing reported measurements with the last-known-good.
//!
//! Pure: given what was known and what was reported, it returns the new baseline and
//! the alerts to raise. An alert is raised when a difference first appears (not on
//! every pulse that repeats it); the verdict shows the difference for as long as it
//! lasts.

use evidence::{CollectorState, Inventory, InventoryItem, Measurements, PolicyMeasurement};
use policy::inventory::diff;

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
    match (
        complete(lkg.ebpf.as_ref()),
        complete(reported.ebpf.as_ref()),
    ) {
        (None, Some((_, ri))) => {
            // At first contact this is the baseline. Later (the collector could not
            // look at registration, and now can) it is adopted too, but never
            // silently: whatever was loaded meanwhile is named for the operator.
            if previous.is_some() {
                alerts.push((
                    AlertKind::EbpfChanged,
                    format!(
                        "eBPF programs became visible after registration and were adopted as last-known-good; review them: {}",
                        diff(&[], ri)
                    ),
                ));
            }
            lkg.ebpf = reported.ebpf.clone();
        }
        (Some((ld, li)), Some((rd, ri))) if ld != rd => {
            let prev = previous
                .and_then(|p| complete(p.ebpf.as_ref()))
                .map(|x| x.0);
            if prev != Some(rd) {
                alerts.push((
                    AlertKind::EbpfChanged,
                    format!(
                        "loaded eBPF programs differ from last-known-good: {}",
                        diff(li, ri)
                    ),
                ));
            }
        }
        _ => {}
    }

    // Workloads: informational. The last reported list is the reference.
    if let (Some((pd, pi)), Some((rd, ri))) = (
        previous.and_then(|p| complete(p.workloads.as_ref())),
        complete(reported.workloads.as_ref()),
    ) {
        if pd != rd {
            alerts.push((
                AlertKind::WorkloadsChanged,
                format!("workloads changed: {}", diff(pi, ri)),
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

/// The digest and items of a list the collector could see completely.
fn complete<T: InventoryItem>(l: Option<&Inventory<T>>) -> Option<(evidence::Digest32, &[T])> {
    l?.complete()
}

/// Why a pulse's inventory cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InventoryError(pub String);

/// Makes the reported policy file list and workloads and eBPF lists complete. A
/// report must carry full lists; a pulse may omit them only when its digest equals
/// the stored list's. A pulse naming a new digest without items, or items that do
/// not hash to the digest, is refused: stale lists are never kept silently.
pub fn resolve_inventory(
    stored: Option<&Measurements>,
    mut reported: Measurements,
    is_report: bool,
) -> Result<Measurements, InventoryError> {
    resolve_policy(&mut reported.policy, stored.map(|m| &m.policy), is_report)?;
    if let Some(w) = reported.workloads.as_mut() {
        resolve(w, stored.and_then(|m| m.workloads.as_ref()), is_report)?;
    }
    if let Some(e) = reported.ebpf.as_mut() {
        resolve(e, stored.and_then(|m| m.ebpf.as_ref()), is_report)?;
    }
    Ok(reported)
}

/// [`resolve_inventory`] for the policy file list.
fn resolve_policy(
    p: &mut PolicyMeasurement,
    stored: Option<&PolicyMeasurement>,
    is_report: bool,
) -> Result<(), InventoryError> {
    let digest = p.digest;
    if !p.omitted() {
        if !p.is_consistent() {
            return Err(InventoryError(format!(
                "policy files hash to {}, but the digest says {digest}",
                PolicyMeasurement::digest_of(&p.files)
            )));
        }
        return Ok(());
    }
    if is_report {
        return Err(InventoryError(
            "a report must carry the full policy file list".into(),
        ));
    }
    match stored.filter(|s| !s.omitted() && s.is_consistent()) {
        Some(s) if s.digest == digest => {
            p.files = s.files.clone();
            Ok(())
        }
        Some(s) => Err(InventoryError(format!(
            "pulse names policy digest {digest} without its files, but the last full list has digest {}; register again",
            s.digest
        ))),
        None => Err(InventoryError(format!(
            "pulse names policy digest {digest} without its files, and no full list is known; register again"
        ))),
    }
}

/// [`resolve_inventory`] for one list, against the stored list of its kind.
fn resolve<T: InventoryItem>(
    list: &mut Inventory<T>,
    stored: Option<&Inventory<T>>,
    is_report: bool,
) -> Result<(), InventoryError> {
    let what = T::NAME;
    let items = list.items.take();
    if list.state != CollectorState::Ok {
        // No list when the collector could not look.
        list.digest = None;
        return Ok(());
    }
    let Some(digest) = list.digest else {
        return Err(InventoryError(format!(
            "{what} state is ok but carries no digest"
        )));
    };
    list.items = Some(match items {
        Some(items) => {
            let got = Inventory::digest_of(&items);
            if got != digest {
                return Err(InventoryError(format!(
                    "{what} items hash to {got}, but the digest says {digest}"
                )));
            }
            items
        }
        None if is_report => {
            return Err(InventoryError(format!(
                "a report must carry the full {what} list"
            )))
        }
        None => match stored.and_then(Inventory::complete) {
            Some((d, items)) if d == digest => items.to_vec(),
            Some((d, _)) => return Err(InventoryError(format!(
                "pulse names {what} digest {digest} without its items, but the last full list has digest {d}; register again"
            ))),
            None => return Err(InventoryError(format!(
                "pulse names {what} digest {digest} without its items, and no full list is known; register again"
            ))),
        },
    });
    Ok(())
}

/// A collector state as the API shows it (`ok`, `unknown`, `unavailable`).
pub fn state_str(s: CollectorState) -> &'static str {
    s.as_str()
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
    use evidence::verdict::{ReasonCode, Status};
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
            ebpf: Some(evidence::Ebpf::full(
                p,
                evidence::EbpfExtra {
                    lsm_active: Some(true),
                },
            )),
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
        let r = policy::inventory::reasons(&j.lkg, &now);
        assert_eq!(r[0].code, ReasonCode::EbpfChanged);
        assert_eq!(r[0].status, Status::Fail);
        assert!(judge(&j.lkg, &j.expected, Some(&now), &now)
            .alerts
            .is_empty());
        // Order does not matter.
        let mut rev = progs(&[("b", 2), ("a", 1)]);
        rev.reverse();
        assert!(policy::inventory::reasons(&lkg, &with_ebpf(rev)).is_empty());
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

    fn container(id: &str, image: &str, digest: Option<&str>) -> evidence::Workload {
        evidence::Workload {
            name: format!("c-{id}"),
            id: id.into(),
            state: "running".into(),
            image: image.into(),
            image_id: format!("sha256:{id}"),
            image_digest: digest.map(Into::into),
        }
    }

    fn with_workloads(items: Vec<evidence::Workload>) -> Measurements {
        let mut m = m(1, 1);
        m.workloads = serde_json::from_value(serde_json::json!({
            "state": "ok",
            "digest": evidence::Workloads::digest_of(&items),
            "items": items,
        }))
        .unwrap();
        m
    }

    /// The alert texts name what changed, per kind of list.
    #[test]
    fn diff_texts_are_pinned() {
        let lkg = with_ebpf(progs(&[("a", 1), ("b", 2)]));
        let mut pinned = progs(&[("b", 3), ("c", 4)]);
        pinned[1].pinned = vec!["/sys/fs/bpf/c".into()];
        let now = with_ebpf(pinned);
        let j = judge(&lkg, &Expectations::default(), Some(&lkg), &now);
        assert_eq!(
            j.alerts[0].1,
            format!(
                "loaded eBPF programs differ from last-known-good: added: c (lsm, sha256 {}, pinned /sys/fs/bpf/c); removed: a (lsm, sha256 {}); changed: b (lsm, sha256 {}) -> sha256 {}",
                "04".repeat(32),
                "01".repeat(32),
                "02".repeat(32),
                "03".repeat(32)
            )
        );
        let twice = with_ebpf(progs(&[("a", 1), ("a", 1)]));
        let once = with_ebpf(progs(&[("a", 1)]));
        let j = judge(&once, &Expectations::default(), Some(&once), &twice);
        assert_eq!(
            j.alerts[0].1,
            "loaded eBPF programs differ from last-known-good: the same programs, in different numbers"
        );
        assert_eq!(
            policy::inventory::reasons(&once, &twice)[0].detail,
            "eBPF programs differ from last-known-good: the same programs, in different numbers"
        );

        let before = with_workloads(vec![
            container("1", "app:1", Some("sha256:aa")),
            container("2", "db:1", None),
        ]);
        let after = with_workloads(vec![
            container("1", "app:2", Some("sha256:bb")),
            container("3", "cache:1", None),
        ]);
        let j = judge(&before, &Expectations::default(), Some(&before), &after);
        assert_eq!(j.alerts.len(), 1);
        assert_eq!(
            j.alerts[0].1,
            "workloads changed: added: c-3 (cache:1, no digest, running); removed: c-2 (db:1, no digest, running); changed: c-1 (app:1, sha256:aa, running) -> c-1 (app:2, sha256:bb, running)"
        );
        let twice = with_workloads(vec![container("1", "app:1", None); 2]);
        let once = with_workloads(vec![container("1", "app:1", None)]);
        let j = judge(&once, &Expectations::default(), Some(&once), &twice);
        assert_eq!(j.alerts[0].1, "workloads changed: ");
    }
}
