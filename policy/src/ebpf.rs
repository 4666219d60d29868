//! `[policy.ebpf]`: the eBPF programs every node must keep loaded (the signed-heartbeat
//! PRD's "Shield" and "Sentinel"), where they must be pinned, what their instructions
//! must hash to, and whether the BPF LSM must be active.
//!
//! A comparison with last-known-good ([`crate::inventory`]) cannot say this: a node
//! that never loaded the programs has nothing to differ from, and would be green.
//! These rules hold against the current list alone, from the first report on.

use evidence::{BpfProgram, CollectorState, Digest32, Measurements};
use serde::{Deserialize, Serialize};

use crate::{Reason, ReasonCode, Status};

/// One program the policy requires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequiredProgram {
    /// The program's name as the kernel reports it (at most 15 characters).
    pub name: String,
    /// Its type as the collector reports it (`lsm`, `socket_filter`, `tracing`, ...).
    #[serde(rename = "type")]
    pub prog_type: String,
    /// A bpffs path it must be pinned at.
    #[serde(default)]
    pub pinned_at: Option<String>,
    /// The SHA-256 of its translated instructions (the collector's `sha256`), hex.
    #[serde(default)]
    pub digest: Option<Digest32>,
}

/// The operator's eBPF policy. Empty by default: nothing required.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EbpfPolicy {
    /// Programs every node must have loaded.
    pub required: Vec<RequiredProgram>,
    /// The BPF LSM must be active.
    pub require_lsm: bool,
}

impl EbpfPolicy {
    /// Whether the policy asks anything of a node.
    pub fn is_empty(&self) -> bool {
        self.required.is_empty() && !self.require_lsm
    }
}

fn describe(r: &RequiredProgram) -> String {
    format!("{} ({})", r.name, r.prog_type)
}

/// The reasons `current` gives under `p`, all red: a required program missing,
/// not pinned at `pinned_at`, or not hashing to `digest`; the BPF LSM not active
/// where required. A list the collector could not see completely proves nothing is
/// loaded: every required program is then missing (fail closed), and an unknown LSM
/// state is inactive. Each reason names the program, so the control plane can alert
/// on the ones that newly appear.
pub fn required_reasons(p: &EbpfPolicy, current: &Measurements) -> Vec<Reason> {
    let mut out = Vec::new();
    if p.is_empty() {
        return out;
    }
    let ebpf = current.ebpf.as_ref();
    let visible: Option<&[BpfProgram]> = ebpf
        .filter(|e| e.state == CollectorState::Ok)
        .and_then(|e| e.items.as_deref());
    for r in &p.required {
        let Some(items) = visible else {
            let why = match ebpf {
                None => "the node does not report its eBPF programs".to_string(),
                Some(e) => format!(
                    "the node's eBPF list is {}: {}",
                    e.state.as_str(),
                    e.reason.as_deref().unwrap_or("no reason given")
                ),
            };
            out.push(Reason::new(
                ReasonCode::RequiredProgramMissing,
                Status::Fail,
                format!(
                    "required eBPF program {} cannot be shown loaded: {why}",
                    describe(r)
                ),
            ));
            continue;
        };
        let found: Vec<&BpfProgram> = items
            .iter()
            .filter(|i| i.name == r.name && i.prog_type == r.prog_type)
            .collect();
        if found.is_empty() {
            out.push(Reason::new(
                ReasonCode::RequiredProgramMissing,
                Status::Fail,
                format!("required eBPF program {} is not loaded", describe(r)),
            ));
            continue;
        }
        // Each constraint must hold for one and the same loaded instance.
        let pinned_ok = |i: &&BpfProgram| {
            r.pinned_at
                .as_ref()
                .is_none_or(|want| i.pinned.iter().any(|p| p == want))
        };
        let digest_ok = |i: &&BpfProgram| r.digest.is_none_or(|d| i.sha256 == d);
        if found.iter().any(|i| pinned_ok(i) && digest_ok(i)) {
            continue;
        }
        if !found.iter().any(pinned_ok) {
            let at: Vec<&str> = found
                .iter()
                .flat_map(|i| i.pinned.iter().map(String::as_str))
                .collect();
            out.push(Reason::new(
                ReasonCode::RequiredProgramUnpinned,
                Status::Fail,
                format!(
                    "required eBPF program {} is loaded but not pinned at {} (pinned at: {})",
                    describe(r),
                    r.pinned_at.as_deref().unwrap_or_default(),
                    if at.is_empty() {
                        "nowhere".to_string()
                    } else {
                        at.join(", ")
                    }
                ),
            ));
        } else {
            let got: Vec<String> = found.iter().map(|i| i.sha256.to_hex()).collect();
            out.push(Reason::new(
                ReasonCode::RequiredProgramChanged,
                Status::Fail,
                format!(
                    "required eBPF program {} is loaded with instructions {}, not the pinned {}",
                    describe(r),
                    got.join(", "),
                    r.digest.map(|d| d.to_hex()).unwrap_or_default()
                ),
            ));
        }
    }
    if p.require_lsm {
        let lsm = ebpf
            .filter(|e| e.state == CollectorState::Ok)
            .and_then(|e| e.extra.lsm_active);
        match lsm {
            Some(true) => {}
            Some(false) => out.push(Reason::new(
                ReasonCode::LsmInactive,
                Status::Fail,
                "the BPF LSM is not active (bpf is not in /sys/kernel/security/lsm)",
            )),
            None => out.push(Reason::new(
                ReasonCode::LsmInactive,
                Status::Fail,
                "the BPF LSM is required, and the node cannot show it active (LSM state unknown)",
            )),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use evidence::report::HexBytes;
    use evidence::{Ebpf, EbpfExtra, FileMeasurement, Platform, PolicyMeasurement, TeeKind};

    fn prog(name: &str, pinned: &[&str], hash: u8) -> BpfProgram {
        BpfProgram {
            id: u32::from(hash),
            name: name.into(),
            prog_type: "lsm".into(),
            tag: "0011223344556677".into(),
            sha256: HexBytes([hash; 32]),
            pinned: pinned.iter().map(|p| p.to_string()).collect(),
        }
    }

    fn node(ebpf: Option<Ebpf>) -> Measurements {
        Measurements {
            agent_binary: HexBytes([1; 32]),
            policy: PolicyMeasurement::from_files(vec![FileMeasurement {
                path: "/etc/p".into(),
                sha256: HexBytes([2; 32]),
            }]),
            platform: Platform {
                tee: TeeKind::None,
                tpm_present: false,
                kernel_cmdline_sha256: None,
                lockdown: None,
            },
            workloads: None,
            ebpf,
        }
    }

    fn loaded(items: Vec<BpfProgram>, lsm: Option<bool>) -> Measurements {
        node(Some(Ebpf::full(items, EbpfExtra { lsm_active: lsm })))
    }

    fn policy() -> EbpfPolicy {
        toml::from_str(
            r#"
require_lsm = true
[[required]]
name = "shield"
type = "lsm"
pinned_at = "/sys/fs/bpf/shield"
[[required]]
name = "sentinel"
type = "lsm"
digest = "0707070707070707070707070707070707070707070707070707070707070707"
"#,
        )
        .unwrap()
    }

    fn codes(r: &[Reason]) -> Vec<(ReasonCode, Status)> {
        r.iter().map(|r| (r.code, r.status)).collect()
    }

    #[test]
    fn everything_in_place_is_green_and_no_policy_asks_nothing() {
        let ok = loaded(
            vec![
                prog("shield", &["/sys/fs/bpf/shield"], 1),
                prog("sentinel", &[], 7),
                prog("other", &[], 9),
            ],
            Some(true),
        );
        assert!(required_reasons(&policy(), &ok).is_empty());
        assert!(required_reasons(&EbpfPolicy::default(), &node(None)).is_empty());
    }

    #[test]
    fn missing_unpinned_changed_and_lsm_are_red_and_named() {
        let p = policy();
        let r = required_reasons(&p, &loaded(vec![prog("sentinel", &[], 8)], Some(false)));
        assert_eq!(
            codes(&r),
            vec![
                (ReasonCode::RequiredProgramMissing, Status::Fail),
                (ReasonCode::RequiredProgramChanged, Status::Fail),
                (ReasonCode::LsmInactive, Status::Fail),
            ]
        );
        assert!(r[0].detail.contains("shield (lsm)"), "{}", r[0].detail);
        assert!(r[1].detail.contains("sentinel (lsm)") && r[1].detail.contains(&"08".repeat(32)));
        let r = required_reasons(
            &p,
            &loaded(
                vec![
                    prog("shield", &["/sys/fs/bpf/elsewhere"], 1),
                    prog("sentinel", &[], 7),
                ],
                Some(true),
            ),
        );
        assert_eq!(
            codes(&r),
            vec![(ReasonCode::RequiredProgramUnpinned, Status::Fail)]
        );
        assert!(
            r[0].detail.contains("/sys/fs/bpf/elsewhere"),
            "{}",
            r[0].detail
        );
        // A program of the same name but another type is not the required one.
        let mut wrong_type = prog("shield", &["/sys/fs/bpf/shield"], 1);
        wrong_type.prog_type = "kprobe".into();
        let r = required_reasons(
            &p,
            &loaded(vec![wrong_type, prog("sentinel", &[], 7)], Some(true)),
        );
        assert_eq!(
            codes(&r),
            vec![(ReasonCode::RequiredProgramMissing, Status::Fail)]
        );
    }

    #[test]
    fn a_list_that_cannot_be_seen_shows_nothing_loaded() {
        let p = policy();
        let unknown = node(Some(Ebpf {
            state: CollectorState::Unavailable,
            reason: Some("no CAP_BPF".into()),
            extra: EbpfExtra { lsm_active: None },
            digest: None,
            items: None,
        }));
        let r = required_reasons(&p, &unknown);
        assert_eq!(
            codes(&r),
            vec![
                (ReasonCode::RequiredProgramMissing, Status::Fail),
                (ReasonCode::RequiredProgramMissing, Status::Fail),
                (ReasonCode::LsmInactive, Status::Fail),
            ]
        );
        assert!(r[0].detail.contains("no CAP_BPF"), "{}", r[0].detail);
        let r = required_reasons(&p, &node(None));
        assert_eq!(r.len(), 3);
        assert!(r[0].detail.contains("does not report"), "{}", r[0].detail);
    }

    #[test]
    fn the_policy_rejects_unknown_fields_and_bad_digests() {
        assert!(toml::from_str::<EbpfPolicy>("requires = []").is_err());
        assert!(toml::from_str::<EbpfPolicy>(
            "[[required]]\nname = \"x\"\ntype = \"lsm\"\ndigest = \"00\"\n"
        )
        .is_err());
        assert!(toml::from_str::<EbpfPolicy>("[[required]]\nname = \"x\"\n").is_err());
    }
}
