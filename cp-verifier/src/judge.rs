//! Comparing reported measurements with the last-known-good.
//!
//! Pure: given what was known and what was reported, it returns the new baseline and
//! the alerts to raise. An alert is raised when a difference first appears (not on
//! every pulse that repeats it); the verdict shows the difference for as long as it
//! lasts.

use evidence::Measurements;

use crate::alert::AlertKind;
use crate::store::Expectations;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgement {
    pub lkg: Measurements,
    pub expected: Expectations,
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

    Judgement {
        lkg,
        expected,
        alerts,
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
