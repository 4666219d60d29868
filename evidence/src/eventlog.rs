//! The RTMR3 runtime event log.
//!
//! The kernel keeps no log of RTMR extensions, so the agent keeps its own, as JSON
//! lines, one event per line:
//!
//! ```json
//! {"seq":0,"kind":"agent_binary","value":"<sha256 hex>","digest":"<sha384 hex>","bound":true}
//! ```
//!
//! - `kind`: `agent_binary`, `policy`, `workload_image`, `ebpf_program` (new kinds may
//!   be added; unknown kinds still replay);
//! - `digest` = SHA-384(`"provenant.rtmr3.v1" NUL kind NUL value`): the 48 bytes
//!   written to `rtmr3:sha384`;
//! - `bound`: whether the extension reached the hardware register. Unbound events are
//!   logged where RTMR extension is unavailable, and prove nothing on their own.
//!
//! Replay: RTMR3 starts at 48 zero bytes and each bound event does
//! `rtmr = SHA-384(rtmr || digest)`. The result must equal RTMR3 in the quote.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha384};

use crate::report::HexBytes;

/// Most events in one log. An agent extends a few per workload change.
pub const MAX_EVENTS: usize = 4096;
/// Longest line in a log.
pub const MAX_LINE: usize = 4096;

const DOMAIN: &[u8] = b"provenant.rtmr3.v1";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rtmr3Event {
    pub seq: u64,
    pub kind: String,
    pub value: String,
    pub digest: HexBytes<48>,
    pub bound: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EventLogError {
    #[error("event log has more than {MAX_EVENTS} events")]
    TooManyEvents,
    #[error("line {line} is longer than {MAX_LINE} bytes")]
    LineTooLong { line: usize },
    #[error("line {line}: {detail}")]
    Malformed { line: usize, detail: String },
    #[error("event {seq}: sequence out of order (expected {expected})")]
    Sequence { seq: u64, expected: u64 },
    #[error("event {seq}: digest does not match its kind and value")]
    DigestMismatch { seq: u64 },
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
    let mut out = Vec::new();
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let line_no = i + 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if line.len() > MAX_LINE {
            return Err(EventLogError::LineTooLong { line: line_no });
        }
        if out.len() == MAX_EVENTS {
            return Err(EventLogError::TooManyEvents);
        }
        let e: Rtmr3Event = serde_json::from_slice(line).map_err(|e| EventLogError::Malformed {
            line: line_no,
            detail: e.to_string(),
        })?;
        let expected = u64::try_from(out.len()).unwrap_or(u64::MAX);
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
