//! Mismatch explanations: when a register does not match, what was compared and
//! where the two part.
//!
//! - **RTMR3**: the quoted value against the replay of the sent log, with the
//!   register's value after every entry. The divergence is placed only where a
//!   comparison places it: a prefix of the log that replays to the quoted value (the
//!   entries after it were logged but never extended), or the first entry that
//!   differs from the log this control plane accepted for the agent before. Where
//!   neither holds, the explanation says that replay cannot place it.
//! - **MRTD**: the refused value against the attested values this control plane has
//!   verified for the trusted repository, nearest first (fewest differing bytes,
//!   then newest).

use evidence::eventlog::{self, Rtmr3Event};
use serde::{Deserialize, Serialize};

use crate::model::explain::{MAX_CANDIDATES, MAX_EXPLAINED_ENTRIES};
use crate::model::{Candidate, ExplainedEntry, Explanation};

/// The RTMR3 log this control plane accepted at an agent's last registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptedLog {
    /// When it was accepted, UTC ns.
    pub at_ns: u64,
    /// Its entries.
    pub events: Vec<Rtmr3Event>,
}

/// Longest logged value an explanation quotes.
const MAX_VALUE: usize = 160;

fn clip(s: &str) -> String {
    if s.len() <= MAX_VALUE {
        return s.to_string();
    }
    let mut cut = MAX_VALUE;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &s[..cut])
}

/// `ns` (UTC) to the second, for people (`2026-12-06T05:58:31Z`).
fn utc(ns: u64) -> String {
    i64::try_from(ns / 1_000_000_000)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{ns} ns"))
}

fn same_entry(a: &Rtmr3Event, b: &Rtmr3Event) -> bool {
    a.kind == b.kind && a.value == b.value && a.bound == b.bound && a.digest == b.digest
}

/// Explains a quoted RTMR3 that the sent log `events` does not replay to, using the
/// log accepted before (`accepted`), if any.
pub fn rtmr3(
    quoted: &[u8; 48],
    events: &[Rtmr3Event],
    accepted: Option<&AcceptedLog>,
) -> Explanation {
    let mut running = Vec::with_capacity(events.len());
    let mut v = [0u8; 48];
    for e in events {
        if e.bound {
            v = eventlog::extend(&v, &e.digest.0);
        }
        running.push(v);
    }
    let replayed = v;
    let mut notes = Vec::new();
    let mut divergence = None;
    let mut first: Option<usize> = None;
    let mut entry_notes: Vec<String> = vec![String::new(); events.len()];

    // 1. A prefix that replays to the quote: the rest was logged, never extended.
    let prefix = if quoted == &[0u8; 48] {
        Some(None)
    } else {
        running.iter().position(|r| r == quoted).map(Some)
    };
    if let Some(k) = prefix {
        let after = k.map_or(0, |k| k + 1);
        if let Some(j) = events
            .iter()
            .skip(after)
            .position(|e| e.bound)
            .map(|j| j + after)
        {
            first = Some(j);
            divergence = Some(format!(
                "entry {} ({}): the quoted RTMR3 equals the log replayed {}; this entry and the \
                 bound ones after it are logged but not in the quoted register",
                events[j].seq,
                events[j].kind,
                match k {
                    Some(k) => format!("up to entry {}", events[k].seq),
                    None => "with no entry (the register's reset value)".to_string(),
                }
            ));
        }
    }
    // 2. Against the log accepted before.
    if let Some(acc) = accepted {
        let common = acc.events.len().min(events.len());
        let differs = (0..common).find(|&i| !same_entry(&acc.events[i], &events[i]));
        for i in 0..events.len() {
            entry_notes[i] = match acc.events.get(i) {
                Some(a) if same_entry(a, &events[i]) => "as accepted".to_string(),
                Some(a) => format!(
                    "differs from the accepted entry: was {}={}{}",
                    a.kind,
                    clip(&a.value),
                    if a.bound { "" } else { " (not bound)" }
                ),
                None => "new since the accepted log".to_string(),
            };
        }
        if events.len() < acc.events.len() {
            notes.push(format!(
                "the sent log has {} entries, the accepted one had {}: entries from {} on are missing",
                events.len(),
                acc.events.len(),
                events.len()
            ));
        }
        match differs {
            Some(i) if first.is_none() => {
                first = Some(i);
                divergence = Some(format!(
                    "entry {} ({}): differs from the log accepted at {} (was {}={}, now {}={})",
                    events[i].seq,
                    events[i].kind,
                    utc(acc.at_ns),
                    acc.events[i].kind,
                    clip(&acc.events[i].value),
                    events[i].kind,
                    clip(&events[i].value)
                ));
            }
            Some(i) => notes.push(format!(
                "entry {} also differs from the log accepted at {}",
                events[i].seq,
                utc(acc.at_ns)
            )),
            None if first.is_none() => {
                notes.push(format!(
                    "the first {common} entries are those accepted at {}, unchanged; the \
                     quoted register is not their replay followed by the {} entries after them",
                    utc(acc.at_ns),
                    events.len().saturating_sub(common)
                ));
            }
            None => {}
        }
    } else {
        notes.push("no earlier log of this agent is held to compare with".to_string());
    }
    if first.is_none() && prefix.is_none() {
        notes.push(
            "no prefix of the sent log replays to the quoted RTMR3: the register holds at least \
             one extension the log does not contain, and replay alone cannot say where"
                .to_string(),
        );
    }

    // The window: around the first divergence, else from the start.
    let start = first.map_or(0, |f| f.saturating_sub(MAX_EXPLAINED_ENTRIES / 3));
    let end = (start + MAX_EXPLAINED_ENTRIES).min(events.len());
    let entries = (start..end)
        .map(|i| ExplainedEntry {
            seq: events[i].seq,
            kind: events[i].kind.clone(),
            value: clip(&events[i].value),
            bound: events[i].bound,
            running: hex::encode(running[i]),
            note: if running[i] == *quoted {
                join_note(&entry_notes[i], "the quoted value")
            } else {
                entry_notes[i].clone()
            },
            first_divergent: first == Some(i),
        })
        .collect::<Vec<_>>();
    Explanation {
        subject: "RTMR3".into(),
        expected_label: "quoted RTMR3".into(),
        expected: hex::encode(quoted),
        found_label: format!(
            "RTMR3 replayed from the sent log ({} entries)",
            events.len()
        ),
        found: hex::encode(replayed),
        divergence,
        notes,
        entries_omitted: events.len() - entries.len(),
        entries,
        candidates: Vec::new(),
    }
}

fn join_note(a: &str, b: &str) -> String {
    if a.is_empty() {
        b.to_string()
    } else {
        format!("{a}; {b}")
    }
}

/// An attested MRTD this control plane verified, and by whom.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttestedValue {
    /// The attested MRTD.
    pub mrtd: evidence::tdx::Mr,
    /// Repository, workflow and ref, and when it was signed.
    pub attested_by: String,
    /// When it was verified here, UTC seconds (newest wins a tie).
    pub verified_at: u64,
}

/// Explains a refused MRTD against the attested values known here.
pub fn mrtd(refused: &[u8; 48], repository: &str, known: &[AttestedValue]) -> Explanation {
    let mut candidates: Vec<(Candidate, u64)> = known
        .iter()
        .map(|k| {
            let diff: Vec<usize> = (0..48).filter(|&i| k.mrtd.0[i] != refused[i]).collect();
            (
                Candidate {
                    value: hex::encode(k.mrtd.0),
                    differing_bytes: u32::try_from(diff.len()).unwrap_or(48),
                    first_difference: diff
                        .first()
                        .and_then(|&i| u32::try_from(i).ok())
                        .unwrap_or(48),
                    attested_by: k.attested_by.clone(),
                    nearest: false,
                },
                k.verified_at,
            )
        })
        .collect();
    candidates.sort_by(|(a, at), (b, bt)| {
        a.differing_bytes
            .cmp(&b.differing_bytes)
            .then(bt.cmp(at))
            .then(a.value.cmp(&b.value))
    });
    candidates.dedup_by(|a, b| a.0.value == b.0.value);
    candidates.truncate(MAX_CANDIDATES);
    let mut candidates: Vec<Candidate> = candidates.into_iter().map(|(c, _)| c).collect();
    let mut notes = Vec::new();
    let divergence = match candidates.first_mut() {
        Some(c) => {
            c.nearest = true;
            Some(format!(
                "nearest attested MRTD {}… differs in {} of 48 bytes, first at byte {}",
                &c.value[..16],
                c.differing_bytes,
                c.first_difference
            ))
        }
        None => {
            notes.push(format!(
                "this control plane has verified no attested MRTD of {repository} yet, so there \
                 is nothing to compare with"
            ));
            None
        }
    };
    notes.push(format!(
        "MRTD is one hash over the TD's initial memory (the firmware image and its \
         configuration): it cannot say which byte of the firmware differs; compare the \
         firmware build with the one {repository} attested"
    ));
    Explanation {
        subject: "MRTD".into(),
        expected_label: format!("MRTD attested by {repository}"),
        expected: candidates
            .first()
            .map_or_else(|| "none known".to_string(), |c| c.value.clone()),
        found_label: "quoted MRTD".into(),
        found: hex::encode(refused),
        divergence,
        notes,
        entries: Vec::new(),
        entries_omitted: 0,
        candidates,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(values: &[(&str, &str)]) -> Vec<Rtmr3Event> {
        values
            .iter()
            .enumerate()
            .map(|(i, (k, v))| Rtmr3Event::new(u64::try_from(i).unwrap(), k, v, true))
            .collect()
    }

    #[test]
    fn a_tampered_entry_is_named_against_the_accepted_log() {
        let good = log(&[
            ("agent_binary", "aa"),
            ("policy", "p1"),
            ("workload_set", "w"),
        ]);
        let quoted = eventlog::replay(&good);
        let mut tampered = good.clone();
        tampered[1] = Rtmr3Event::new(1, "policy", "p2", true);
        let acc = AcceptedLog {
            at_ns: 7,
            events: good.clone(),
        };
        let e = rtmr3(&quoted, &tampered, Some(&acc));
        assert_eq!(e.expected, hex::encode(quoted));
        assert_eq!(e.found, hex::encode(eventlog::replay(&tampered)));
        let d = e.divergence.unwrap();
        assert!(d.starts_with("entry 1 (policy)"), "{d}");
        assert!(d.contains("was policy=p1, now policy=p2"), "{d}");
        assert!(e.entries[1].first_divergent);
        assert_eq!(e.entries[0].note, "as accepted");
        assert!(
            e.entries[1].note.starts_with("differs"),
            "{:?}",
            e.entries[1]
        );
    }

    #[test]
    fn an_unextended_tail_is_placed_by_the_prefix_that_matches() {
        let l = log(&[("agent_binary", "aa"), ("policy", "p1"), ("policy", "p2")]);
        let quoted = eventlog::replay(&l[..2]);
        let e = rtmr3(&quoted, &l, None);
        let d = e.divergence.unwrap();
        assert!(d.starts_with("entry 2 (policy)"), "{d}");
        assert!(d.contains("up to entry 1"), "{d}");
        assert!(e.entries[1].note.contains("the quoted value"));
    }

    #[test]
    fn an_unlogged_extension_is_said_to_be_unplaceable() {
        let l = log(&[("agent_binary", "aa"), ("policy", "p1")]);
        let quoted = eventlog::extend(&[0; 48], &[9; 48]);
        let e = rtmr3(&quoted, &l, None);
        assert!(e.divergence.is_none());
        assert!(e
            .notes
            .iter()
            .any(|n| n.contains("replay alone cannot say where")));
        assert!(e.notes.iter().any(|n| n.contains("no earlier log")));
    }

    #[test]
    fn the_nearest_attested_mrtd_has_the_fewest_differing_bytes() {
        let mut near = [0x11; 48];
        near[5] = 0x12;
        let known = vec![
            AttestedValue {
                mrtd: evidence::report::HexBytes([0x33; 48]),
                attested_by: "far".into(),
                verified_at: 9,
            },
            AttestedValue {
                mrtd: evidence::report::HexBytes(near),
                attested_by: "near".into(),
                verified_at: 1,
            },
        ];
        let e = mrtd(&[0x11; 48], "acme/img", &known);
        assert_eq!(e.candidates[0].attested_by, "near");
        assert!(e.candidates[0].nearest && !e.candidates[1].nearest);
        assert_eq!(
            (
                e.candidates[0].differing_bytes,
                e.candidates[0].first_difference
            ),
            (1, 5)
        );
        assert!(e
            .divergence
            .unwrap()
            .contains("1 of 48 bytes, first at byte 5"));
        let none = mrtd(&[0x11; 48], "acme/img", &[]);
        assert!(none.divergence.is_none() && none.candidates.is_empty());
    }
}
