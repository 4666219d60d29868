//! The RTMR3 runtime event log.
//!
//! The kernel keeps no log of RTMR extensions, so the agent keeps its own, as JSON
//! lines, one event per line:
//!
//! ```json
//! {"seq":0,"kind":"agent_binary","value":"<sha256 hex>","digest":"<sha384 hex>","bound":true}
//! ```
//!
//! - `kind`: `agent_binary`, `policy`, `workload_set`, `ebpf` (the measurements a
//!   report carries: [`BOUND_KINDS`]), `workload_image` (a verified pull); older logs
//!   may hold `workloads` (the full container list digest). New kinds may be added;
//!   unknown kinds still replay;
//! - `digest` = SHA-384(`"provenant.rtmr3.v1" NUL kind NUL value`): the 48 bytes
//!   written to `rtmr3:sha384`;
//! - `bound`: whether the extension reached the hardware register. Unbound events are
//!   logged where RTMR extension is unavailable, and prove nothing on their own.
//!
//! Replay: RTMR3 starts at 48 zero bytes and each bound event does
//! `rtmr = SHA-384(rtmr || digest)`. The result must equal RTMR3 in the quote, and the
//! last bound value of each of [`BOUND_KINDS`] must equal the report's own measurement
//! of that kind (the log is tied to the report, not only to the register).
//!
//! Only the events the control plane has not seen travel: it keeps, per agent, an
//! [`EventLogState`] (how many events it replayed, the RTMR3 value after them and the
//! last bound value of each kind), and a registration may send `event_log_from: N`
//! with events `N..` only ([`parse_jsonl_from`], [`EventLogState::extend`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha384};

use crate::report::{HexBytes, Workload};

/// Most events in one log. An agent extends one per change of a measurement (the
/// workload *set*, not every container restart) and one per verified pull.
pub const MAX_EVENTS: usize = 4096;
/// Longest line in a log.
pub const MAX_LINE: usize = 4096;
/// Largest log, as JSON lines. The agent stops extending before a log would pass it
/// (or [`MAX_EVENTS`]), so the whole log always fits a registration body
/// (`api::MAX_REGISTER_BODY` is derived from it).
pub const MAX_LOG_BYTES: usize = 1024 * 1024;

/// The agent binary's SHA-256 (hex).
pub const KIND_AGENT_BINARY: &str = "agent_binary";
/// The policy files' digest (hex).
pub const KIND_POLICY: &str = "policy";
/// The sorted, de-duplicated set of workload images ([`workload_set_value`]).
pub const KIND_WORKLOAD_SET: &str = "workload_set";
/// The eBPF list's digest (hex).
pub const KIND_EBPF: &str = "ebpf";
/// Event kinds whose last bound value must equal the report's measurement.
pub const BOUND_KINDS: [&str; 4] = [KIND_AGENT_BINARY, KIND_POLICY, KIND_WORKLOAD_SET, KIND_EBPF];

const DOMAIN: &[u8] = b"provenant.rtmr3.v1";

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rtmr3Event {
    /// Position in the log, from 0.
    pub seq: u64,
    /// What was measured (`KIND_*`).
    pub kind: String,
    /// The measurement, as text.
    pub value: String,
    /// [`event_digest`] of `kind` and `value`: what was extended.
    pub digest: HexBytes<48>,
    /// Whether the extension reached the RTMR3 register.
    pub bound: bool,
}

/// Why a log was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EventLogError {
    /// More than [`MAX_EVENTS`] events.
    #[error("event log has more than {MAX_EVENTS} events")]
    TooManyEvents,
    /// A line over [`MAX_LINE`] bytes.
    #[error("line {line} is longer than {MAX_LINE} bytes")]
    LineTooLong {
        /// The line number, from 1.
        line: usize,
    },
    /// A line that is not an event.
    #[error("line {line}: {detail}")]
    Malformed {
        /// The line number, from 1.
        line: usize,
        /// What is wrong with it.
        detail: String,
    },
    /// An event whose `seq` is not the next one.
    #[error("event {seq}: sequence out of order (expected {expected})")]
    Sequence {
        /// Its `seq`.
        seq: u64,
        /// The `seq` that was due.
        expected: u64,
    },
    /// An event whose `digest` is not [`event_digest`] of its kind and value.
    #[error("event {seq}: digest does not match its kind and value")]
    DigestMismatch {
        /// Its `seq`.
        seq: u64,
    },
    /// A log over [`MAX_LOG_BYTES`].
    #[error("event log is larger than {MAX_LOG_BYTES} bytes")]
    TooLarge,
}

/// What the control plane keeps of an agent's replayed log, so that later
/// registrations need only send the events after it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventLogState {
    /// Events replayed (bound or not): the next event's `seq`.
    pub count: u64,
    /// How many of them are bound (extended RTMR3).
    #[serde(default)]
    pub bound: u64,
    /// RTMR3 after replaying them.
    pub rtmr3: HexBytes<48>,
    /// The last bound value of each of [`BOUND_KINDS`] seen.
    #[serde(default)]
    pub last: BTreeMap<String, String>,
}

impl Default for EventLogState {
    /// No events: RTMR3 at its reset value.
    fn default() -> Self {
        EventLogState {
            count: 0,
            bound: 0,
            rtmr3: HexBytes([0; 48]),
            last: BTreeMap::new(),
        }
    }
}

impl EventLogState {
    /// The state after `events` (which must follow this state's `count`).
    pub fn extend(&self, events: &[Rtmr3Event]) -> EventLogState {
        let mut next = self.clone();
        for e in events {
            next.count = e.seq.saturating_add(1);
            if e.bound {
                next.bound = next.bound.saturating_add(1);
                next.rtmr3 = HexBytes(extend(&next.rtmr3.0, &e.digest.0));
                if BOUND_KINDS.contains(&e.kind.as_str()) {
                    next.last.insert(e.kind.clone(), e.value.clone());
                }
            }
        }
        next
    }
}

/// The `workload_set` event value for a container list: SHA-256 hex over the sorted,
/// de-duplicated `image NUL image_digest NUL image_id` lines. Container ids, names
/// and states are left out, so restarts and re-creations of the same images do not
/// grow the log; a new, changed or removed image does.
pub fn workload_set_value(items: &[Workload]) -> String {
    use sha2::Sha256;
    let mut set: Vec<(&str, &str, &str)> = items
        .iter()
        .map(|w| {
            (
                w.image.as_str(),
                w.image_digest.as_deref().unwrap_or(""),
                w.image_id.as_str(),
            )
        })
        .collect();
    set.sort_unstable();
    set.dedup();
    let mut h = Sha256::new();
    for (image, digest, id) in set {
        for f in [image, digest, id] {
            h.update(f.as_bytes());
            h.update([0]);
        }
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

/// The 48 bytes extended into RTMR3 for an event.
pub fn event_digest(kind: &str, value: &str) -> [u8; 48] {
    let mut h = Sha384::new();
    h.update(DOMAIN);
    h.update([0]);
    h.update(kind.as_bytes());
    h.update([0]);
    h.update(value.as_bytes());
    h.finalize().into()
}

/// `SHA-384(rtmr || digest)`.
pub fn extend(rtmr: &[u8; 48], digest: &[u8; 48]) -> [u8; 48] {
    let mut h = Sha384::new();
    h.update(rtmr);
    h.update(digest);
    h.finalize().into()
}

impl Rtmr3Event {
    /// The event for `kind` and `value`, with its digest.
    pub fn new(seq: u64, kind: &str, value: &str, bound: bool) -> Rtmr3Event {
        Rtmr3Event {
            seq,
            kind: kind.to_string(),
            value: value.to_string(),
            digest: HexBytes(event_digest(kind, value)),
            bound,
        }
    }
}

/// Parses a JSON-lines log (empty lines ignored), checking order and every digest.
pub fn parse_jsonl(bytes: &[u8]) -> Result<Vec<Rtmr3Event>, EventLogError> {
    parse_jsonl_from(bytes, 0)
}

/// Parses the tail of a log whose first event is `first` (the events before it were
/// sent earlier). The whole log, `first` events plus these, stays within
/// [`MAX_EVENTS`].
pub fn parse_jsonl_from(bytes: &[u8], first: u64) -> Result<Vec<Rtmr3Event>, EventLogError> {
    if bytes.len() > MAX_LOG_BYTES {
        return Err(EventLogError::TooLarge);
    }
    let before = usize::try_from(first).unwrap_or(usize::MAX);
    if before > MAX_EVENTS {
        return Err(EventLogError::TooManyEvents);
    }
    let mut out = Vec::new();
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let line_no = i + 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if line.len() > MAX_LINE {
            return Err(EventLogError::LineTooLong { line: line_no });
        }
        if before + out.len() >= MAX_EVENTS {
            return Err(EventLogError::TooManyEvents);
        }
        let e: Rtmr3Event = serde_json::from_slice(line).map_err(|e| EventLogError::Malformed {
            line: line_no,
            detail: e.to_string(),
        })?;
        let expected = first.saturating_add(u64::try_from(out.len()).unwrap_or(u64::MAX));
        if e.seq != expected {
            return Err(EventLogError::Sequence {
                seq: e.seq,
                expected,
            });
        }
        if e.digest.0 != event_digest(&e.kind, &e.value) {
            return Err(EventLogError::DigestMismatch { seq: e.seq });
        }
        out.push(e);
    }
    Ok(out)
}

/// Replays the bound events into the RTMR3 value they produce.
pub fn replay(events: &[Rtmr3Event]) -> [u8; 48] {
    events
        .iter()
        .filter(|e| e.bound)
        .fold([0u8; 48], |r, e| extend(&r, &e.digest.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log() -> Vec<Rtmr3Event> {
        vec![
            Rtmr3Event::new(0, "agent_binary", &"aa".repeat(32), true),
            Rtmr3Event::new(1, "policy", &"bb".repeat(32), true),
            Rtmr3Event::new(2, "workload_image", "registry.example/app@sha256:cc", false),
        ]
    }

    fn jsonl(events: &[Rtmr3Event]) -> Vec<u8> {
        let mut v = Vec::new();
        for e in events {
            v.extend(serde_json::to_vec(e).unwrap());
            v.push(b'\n');
        }
        v
    }

    #[test]
    fn replay_matches_manual_extension_and_skips_unbound() {
        let events = log();
        let mut r = [0u8; 48];
        for e in &events[..2] {
            let mut h = Sha384::new();
            h.update(r);
            h.update(e.digest.0);
            r = h.finalize().into();
        }
        assert_eq!(replay(&events), r);
        assert_eq!(replay(&[]), [0u8; 48]);
        assert_eq!(parse_jsonl(&jsonl(&events)).unwrap(), events);
    }

    #[test]
    fn tampered_logs_are_refused() {
        let mut events = log();
        events[1].value = "dd".repeat(32);
        assert_eq!(
            parse_jsonl(&jsonl(&events)).unwrap_err(),
            EventLogError::DigestMismatch { seq: 1 }
        );
        let mut events = log();
        events.swap(0, 1);
        assert!(matches!(
            parse_jsonl(&jsonl(&events)).unwrap_err(),
            EventLogError::Sequence { .. }
        ));
        assert!(matches!(
            parse_jsonl(b"{not json}\n").unwrap_err(),
            EventLogError::Malformed { line: 1, .. }
        ));
        let long = vec![b'x'; MAX_LINE + 1];
        assert_eq!(
            parse_jsonl(&long).unwrap_err(),
            EventLogError::LineTooLong { line: 1 }
        );
        // Dropping an event changes the replayed value.
        let events = log();
        assert_ne!(replay(&events[1..]), replay(&events));
    }
}
