//! What the workload and eBPF inventories mean for an agent's verdict.
//!
//! The control plane resolves each reported list (a pulse may send only its digest)
//! and keeps the last-known-good one; this module decides which differences and
//! blind spots stand against the agent, and with what [`Status`]. It also words the
//! differences ([`diff`]) for the reasons and for the control plane's alerts.

use evidence::{
    BpfProgram, CollectorState, Digest32, Inventory, InventoryItem, Measurements, Workload,
};

use crate::{Reason, ReasonCode, Status};

/// The digest and items of a list the collector could see completely.
fn complete<T: InventoryItem>(l: Option<&Inventory<T>>) -> Option<(Digest32, &[T])> {
    l?.complete()
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
pub fn reasons(lkg: &Measurements, current: &Measurements) -> Vec<Reason> {
    let mut out = Vec::new();
    let mut push = |code, status, detail: String| out.push(Reason::new(code, status, detail));
    let lkg_ebpf = complete(lkg.ebpf.as_ref());
    match (&current.ebpf, lkg_ebpf) {
        (Some(e), _) if e.state == CollectorState::Ok => {
            if let (Some((ld, li)), Some((cd, ci))) = (lkg_ebpf, e.complete()) {
                if ld != cd {
                    push(
                        ReasonCode::EbpfChanged,
                        Status::Fail,
                        format!(
                            "eBPF programs differ from last-known-good: {}",
                            diff(li, ci)
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
                e.state.as_str(),
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
                e.state.as_str(),
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
                    w.state.as_str(),
                    w.reason.as_deref().unwrap_or("no reason given")
                ),
            );
        }
    }
    out
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

/// How [`diff`] names and compares the items of one kind of list.
pub trait Listed: InventoryItem {
    /// The text when no item was added, removed or changed (the digests differ all
    /// the same).
    const NO_DIFFERENCE: &'static str;
    /// Whether two items are the same entry (possibly changed).
    fn same_entry(&self, other: &Self) -> bool;
    /// How the item is named in an alert.
    fn describe(&self) -> String;
    /// How `new` changed from `old`, its entries in the old list (never empty); `None`
    /// if it did not.
    fn change(old: &[&Self], new: &Self) -> Option<String>;
}

impl Listed for BpfProgram {
    const NO_DIFFERENCE: &'static str = "the same programs, in different numbers";
    /// Programs are keyed by (name, type).
    fn same_entry(&self, other: &Self) -> bool {
        self.name == other.name && self.prog_type == other.prog_type
    }
    fn describe(&self) -> String {
        format!(
            "{} ({}, sha256 {}{})",
            self.name,
            self.prog_type,
            self.sha256,
            if self.pinned.is_empty() {
                String::new()
            } else {
                format!(", pinned {}", self.pinned.join(","))
            }
        )
    }
    /// Changed unless one of the programs with its key has its hash and pins.
    fn change(old: &[&Self], new: &Self) -> Option<String> {
        let same = |a: &BpfProgram| a.sha256 == new.sha256 && a.pinned == new.pinned;
        (!old.iter().any(|o| same(o))).then(|| {
            format!(
                "{} -> sha256 {}",
                old.iter()
                    .map(|o| o.describe())
                    .collect::<Vec<_>>()
                    .join(" | "),
                new.sha256
            )
        })
    }
}

impl Listed for Workload {
    const NO_DIFFERENCE: &'static str = "";
    /// Containers are keyed by id.
    fn same_entry(&self, other: &Self) -> bool {
        self.id == other.id
    }
    fn describe(&self) -> String {
        format!(
            "{} ({}, {}, {})",
            self.name,
            self.image,
            self.image_digest.as_deref().unwrap_or("no digest"),
            self.state
        )
    }
    /// Compared with the first old container with its id, field by field.
    fn change(old: &[&Self], new: &Self) -> Option<String> {
        let o = old.first()?;
        (*o != new).then(|| format!("{} -> {}", o.describe(), new.describe()))
    }
}

/// Added, removed and changed entries between two lists.
pub fn diff<T: Listed>(old: &[T], new: &[T]) -> String {
    let (mut added, mut removed, mut changed) = (Vec::new(), Vec::new(), Vec::new());
    for n in new {
        let olds: Vec<&T> = old.iter().filter(|o| o.same_entry(n)).collect();
        if olds.is_empty() {
            added.push(n.describe());
        } else if let Some(c) = T::change(&olds, n) {
            changed.push(c);
        }
    }
    for o in old {
        if !new.iter().any(|n| n.same_entry(o)) {
            removed.push(o.describe());
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
        T::NO_DIFFERENCE.into()
    } else {
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use evidence::report::HexBytes;
    use evidence::{
        Ebpf, EbpfExtra, FileMeasurement, Platform, PolicyMeasurement, TeeKind, Workloads,
    };

    fn m(ebpf: Option<Ebpf>, workloads: Option<Workloads>) -> Measurements {
        Measurements {
            agent_binary: HexBytes([1; 32]),
            policy: PolicyMeasurement::from_files(vec![FileMeasurement {
                path: "/etc/p.toml".into(),
                sha256: HexBytes([2; 32]),
            }]),
            platform: Platform {
                tee: TeeKind::None,
                tpm_present: false,
                kernel_cmdline_sha256: None,
                lockdown: None,
            },
            workloads,
            ebpf,
        }
    }

    fn prog(name: &str, h: u8) -> BpfProgram {
        BpfProgram {
            id: 1,
            name: name.into(),
            prog_type: "lsm".into(),
            tag: "00".into(),
            sha256: HexBytes([h; 32]),
            pinned: vec![],
        }
    }

    fn seen(p: Vec<BpfProgram>) -> Option<Ebpf> {
        Some(Ebpf::full(p, EbpfExtra::default()))
    }

    fn blind(state: CollectorState) -> Option<Ebpf> {
        Some(Ebpf {
            state,
            reason: Some("no CAP_BPF".into()),
            extra: EbpfExtra::default(),
            digest: None,
            items: None,
        })
    }

    fn one(lkg: &Measurements, now: &Measurements) -> Option<(ReasonCode, Status, String)> {
        let r = reasons(lkg, now);
        assert!(r.len() <= 1, "{r:?}");
        r.into_iter().next().map(|r| (r.code, r.status, r.detail))
    }

    /// Every row of the decision [`reasons`] documents.
    #[test]
    fn ebpf_decisions() {
        let good = m(seen(vec![prog("a", 1)]), None);
        assert_eq!(one(&good, &good), None);
        assert_eq!(
            one(&m(None, None), &good),
            None,
            "no baseline yet: no reason"
        );
        assert_eq!(one(&m(None, None), &m(None, None)), None);
        assert_eq!(
            one(&good, &m(seen(vec![prog("a", 2)]), None)),
            Some((
                ReasonCode::EbpfChanged,
                Status::Fail,
                format!(
                    "eBPF programs differ from last-known-good: changed: a (lsm, sha256 {}) -> sha256 {}",
                    "01".repeat(32),
                    "02".repeat(32)
                )
            ))
        );
        for state in [CollectorState::Unavailable, CollectorState::Unknown] {
            assert_eq!(
                one(&good, &m(blind(state), None)),
                Some((
                    ReasonCode::EbpfUnavailable,
                    Status::Fail,
                    format!(
                        "eBPF programs were visible at last-known-good, now {}: no CAP_BPF",
                        state.as_str()
                    )
                ))
            );
        }
        assert_eq!(
            one(&good, &m(None, None)),
            Some((
                ReasonCode::EbpfUnavailable,
                Status::Fail,
                "eBPF programs were visible at last-known-good, now not reported".into()
            ))
        );
        assert_eq!(
            one(&m(None, None), &m(blind(CollectorState::Unavailable), None)),
            Some((
                ReasonCode::EbpfUnavailable,
                Status::Warn,
                "eBPF programs unavailable: no CAP_BPF".into()
            ))
        );
        let mut unknown = blind(CollectorState::Unknown);
        unknown.as_mut().unwrap().reason = None;
        assert_eq!(
            one(&m(None, None), &m(unknown, None)),
            Some((
                ReasonCode::EbpfUnavailable,
                Status::Unknown,
                "eBPF programs unknown: no reason given".into()
            ))
        );
    }

    #[test]
    fn workloads_decisions() {
        let ok = m(None, Some(Workloads::full(vec![], ())));
        assert_eq!(one(&ok, &ok), None);
        for state in [CollectorState::Unavailable, CollectorState::Unknown] {
            let now = m(
                None,
                Some(Workloads {
                    state,
                    reason: Some("podman down".into()),
                    extra: (),
                    digest: None,
                    items: None,
                }),
            );
            assert_eq!(
                one(&ok, &now),
                Some((
                    ReasonCode::WorkloadsUnknown,
                    Status::Unknown,
                    format!("workloads {}: podman down", state.as_str())
                ))
            );
        }
    }

    #[test]
    fn diff_lists_at_most_twenty_per_kind() {
        let new: Vec<BpfProgram> = (0..25).map(|i| prog(&format!("p{i:02}"), 1)).collect();
        let d = diff(&[], &new);
        assert!(d.starts_with("added: p00 (lsm"), "{d}");
        assert!(d.ends_with("; … and 5 more"), "{d}");
        assert_eq!(d.matches("(lsm, sha256").count(), 20);
    }
}
