//! The TDX firmware event log: the ACPI CCEL table and the TCG2 crypto-agile event
//! log it points at, and the replay of that log into RTMR0–3.
//!
//! - **CCEL table** (ACPI, 56 bytes): the standard 36-byte ACPI header with signature
//!   `"CCEL"`, then CC type (2 = TDX), CC subtype, 2 reserved bytes, the log area
//!   minimum length (LAML, u64) and the log area start address (LASA, u64).
//! - **Event log** (TCG PC Client Platform Firmware Profile, crypto-agile format):
//!   first a `TCG_PCClientPCREvent` in the old SHA-1 layout (MR index u32, event type
//!   u32, 20-byte digest, event size u32, event data) whose data is the
//!   `"Spec ID Event03"` structure listing the digest algorithms and their sizes;
//!   then `TCG_PCR_EVENT2` records (MR index u32, event type u32, digest count u32,
//!   `(algorithm id u16, digest)` for each algorithm, event size u32, event data).
//!   The log ends where the unused part of the log area starts: the firmware leaves
//!   it filled with 0xFF (or zero).
//! - **Replay**: CC measurement register index 0 is MRTD (measured by the TDX module,
//!   never extended from the log); indices 1–4 are RTMR0–3. Every event except
//!   `EV_NO_ACTION` extends its register with its SHA-384 digest:
//!   `rtmr = SHA-384(rtmr || digest)`, from 48 zero bytes.
//!
//! The log is untrusted input: every read goes through a [`Reader`] and fails with a
//! [`CcelError`] naming the field, every length and count the input declares is
//! bounded by a named limit, and nothing here panics. A replayed value proves nothing
//! until it is compared with RTMRs from a verified quote.

use crate::codec::{CodecError, Reader};
use crate::eventlog::extend;

/// Largest event log accepted. OVMF/TDVF reserves 64–256 KiB for the log area; a log
/// larger than this is not firmware's.
pub const MAX_LOG_BYTES: usize = 16 * 1024 * 1024;
/// Most events in a log. A TDVF boot through a bootloader into Linux logs tens to a
/// few hundred events.
pub const MAX_EVENTS: usize = 65_536;
/// Largest event data. The biggest firmware events (UEFI variables, GPT, image
/// paths, handoff tables) are a few KiB; 1 MiB leaves room for large ACPI blobs.
pub const MAX_EVENT_DATA_BYTES: usize = 1024 * 1024;
/// Most digest algorithms in the Spec ID event (TCG defines fewer than ten).
pub const MAX_ALGORITHMS: usize = 8;
/// Largest digest size (SHA-512 and SHA3-512 are 64 bytes).
pub const MAX_DIGEST_BYTES: usize = 64;
/// Largest Spec ID event (header fields, [`MAX_ALGORITHMS`] entries, vendor info of
/// at most 255 bytes).
pub const MAX_SPEC_ID_EVENT_BYTES: usize = 16 + 8 + 4 + MAX_ALGORITHMS * 4 + 1 + 255;

/// TCG algorithm id of SHA-384, the digest TDX extends RTMRs with.
pub const ALG_SHA384: u16 = 0x000C;
/// Events of this type are not extended into any register.
pub const EV_NO_ACTION: u32 = 0x0000_0003;
/// CC type of TDX in the CCEL table.
pub const CC_TYPE_TDX: u8 = 2;

const ACPI_HEADER_LEN: usize = 36;
const CCEL_TABLE_LEN: usize = ACPI_HEADER_LEN + 4 + 8 + 8;
const SPEC_ID_SIGNATURE: &[u8; 16] = b"Spec ID Event03\0";
const SHA384_LEN: usize = 48;
/// Number of RTMRs (CC MR indices 1..=4).
const RTMRS: usize = 4;

/// Why a CCEL table or event log was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CcelError {
    /// The input ends inside a field.
    #[error("CCEL truncated: {field} needs {need} bytes at offset {offset}, {have} left")]
    Truncated {
        /// The field.
        field: &'static str,
        /// Its offset (within the Spec ID event for `spec_id.*` fields after its size).
        offset: usize,
        /// Its size.
        need: usize,
        /// The bytes left from `offset`.
        have: usize,
    },
    /// An input, or a length or count it declares, over its named limit.
    #[error("{what} is {len}, over the limit of {max}")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its size or the declared value.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The ACPI table's signature is not `CCEL`.
    #[error("ACPI table signature {0:?} is not \"CCEL\"")]
    NotCcel([u8; 4]),
    /// The ACPI table's declared or actual length is not a CCEL table's.
    #[error("ACPI table declares {declared} bytes, {actual} given (CCEL is {CCEL_TABLE_LEN})")]
    TableLength {
        /// The length the table declares.
        declared: u32,
        /// The bytes given.
        actual: usize,
    },
    /// The ACPI table's bytes do not sum to zero.
    #[error("ACPI table checksum does not sum to zero")]
    Checksum,
    /// A CC type other than TDX.
    #[error("CC type {0} is not TDX (2)")]
    NotTdx(u8),
    /// The log does not open with a valid Spec ID Event03.
    #[error("first event is not a Spec ID Event03: {0}")]
    SpecId(&'static str),
    /// An event digest of an algorithm the Spec ID event does not list.
    #[error("event {event}: digest algorithm {alg:#06x} is not in the Spec ID event")]
    UnknownAlgorithm {
        /// The event's index after the Spec ID event.
        event: usize,
        /// The algorithm id.
        alg: u16,
    },
    /// An event with a digest count other than the Spec ID event's.
    #[error("event {event}: {declared} digests, the Spec ID event lists {expected}")]
    DigestCount {
        /// The event's index after the Spec ID event.
        event: usize,
        /// Its digest count.
        declared: u32,
        /// The algorithms the Spec ID event lists.
        expected: usize,
    },
    /// An event to replay without a SHA-384 digest.
    #[error("event {event}: no SHA-384 digest to replay")]
    NoSha384 {
        /// The event's index after the Spec ID event.
        event: usize,
    },
    /// An event to replay into a register past RTMR3.
    #[error("event {event}: CC MR index {index} is beyond RTMR3")]
    MrIndex {
        /// The event's index after the Spec ID event.
        event: usize,
        /// Its CC MR index.
        index: u32,
    },
}

impl From<CodecError> for CcelError {
    fn from(e: CodecError) -> CcelError {
        match e {
            CodecError::Truncated {
                field,
                offset,
                need,
                have,
            } => CcelError::Truncated {
                field,
                offset,
                need,
                have,
            },
            // A declared length past the end: the field is cut short.
            CodecError::Length {
                field,
                offset,
                declared,
                available,
            } => CcelError::Truncated {
                field,
                offset,
                need: declared,
                have: available,
            },
            CodecError::TooLarge { what, len, max } => CcelError::TooLarge { what, len, max },
        }
    }
}

/// The ACPI CCEL table: where the firmware put the event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CcelTable {
    /// ACPI table revision.
    pub revision: u8,
    /// ACPI OEM id.
    pub oem_id: [u8; 6],
    /// ACPI OEM table id.
    pub oem_table_id: [u8; 8],
    /// CC type ([`CC_TYPE_TDX`]).
    pub cc_type: u8,
    /// CC subtype.
    pub cc_subtype: u8,
    /// Log area minimum length.
    pub laml: u64,
    /// Log area start address (guest physical).
    pub lasa: u64,
}

impl CcelTable {
    /// Parses and checks a CCEL table: signature, declared length, checksum, and CC
    /// type TDX.
    pub fn parse(bytes: &[u8]) -> Result<CcelTable, CcelError> {
        if bytes.len() > CCEL_TABLE_LEN {
            return Err(CcelError::TooLarge {
                what: "CCEL table",
                len: bytes.len(),
                max: CCEL_TABLE_LEN,
            });
        }
        let mut c = Reader::new(bytes);
        let signature = c.array::<4>("signature")?;
        if &signature != b"CCEL" {
            return Err(CcelError::NotCcel(signature));
        }
        let declared = c.u32("length")?;
        if usize::try_from(declared).ok() != Some(CCEL_TABLE_LEN) || bytes.len() != CCEL_TABLE_LEN {
            return Err(CcelError::TableLength {
                declared,
                actual: bytes.len(),
            });
        }
        let revision = c.u8("revision")?;
        let _checksum = c.u8("checksum")?;
        let oem_id = c.array::<6>("oem_id")?;
        let oem_table_id = c.array::<8>("oem_table_id")?;
        let _oem_revision = c.u32("oem_revision")?;
        let _creator_id = c.u32("creator_id")?;
        let _creator_revision = c.u32("creator_revision")?;
        let cc_type = c.u8("cc_type")?;
        let cc_subtype = c.u8("cc_subtype")?;
        let _reserved = c.u16("reserved")?;
        let laml = c.u64("laml")?;
        let lasa = c.u64("lasa")?;
        if bytes.iter().fold(0u8, |s, &b| s.wrapping_add(b)) != 0 {
            return Err(CcelError::Checksum);
        }
        if cc_type != CC_TYPE_TDX {
            return Err(CcelError::NotTdx(cc_type));
        }
        Ok(CcelTable {
            revision,
            oem_id,
            oem_table_id,
            cc_type,
            cc_subtype,
            laml,
            lasa,
        })
    }
}

/// A digest algorithm the log carries, from the Spec ID event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Algorithm {
    /// TCG algorithm id (e.g. [`ALG_SHA384`]).
    pub id: u16,
    /// Its digest size in bytes.
    pub digest_size: u16,
}

/// The Spec ID Event03 that opens a crypto-agile log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecIdEvent {
    /// TCG platform class (0 client, 1 server).
    pub platform_class: u32,
    /// TCG spec version, major.
    pub spec_version_major: u8,
    /// TCG spec version, minor.
    pub spec_version_minor: u8,
    /// TCG spec errata.
    pub spec_errata: u8,
    /// Size of UINTN in the firmware (1: 32-bit, 2: 64-bit).
    pub uintn_size: u8,
    /// The digest algorithms every event carries, in order.
    pub algorithms: Vec<Algorithm>,
    /// Vendor-defined bytes.
    pub vendor_info: Vec<u8>,
}

/// One digest of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventDigest {
    /// TCG algorithm id.
    pub alg_id: u16,
    /// The digest, of the algorithm's size.
    pub digest: Vec<u8>,
}

/// One `TCG_PCR_EVENT2` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// CC measurement register index: 0 = MRTD, 1–4 = RTMR0–3.
    pub mr_index: u32,
    /// TCG event type (e.g. [`EV_NO_ACTION`]).
    pub event_type: u32,
    /// One digest per algorithm of the Spec ID event.
    pub digests: Vec<EventDigest>,
    /// The event data (what was measured, or a description of it).
    pub data: Vec<u8>,
}

impl Event {
    /// The digest for `alg_id`, if the event carries one.
    pub fn digest(&self, alg_id: u16) -> Option<&[u8]> {
        self.digests
            .iter()
            .find(|d| d.alg_id == alg_id)
            .map(|d| d.digest.as_slice())
    }
}

/// A parsed event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventLog {
    /// The Spec ID event that opens the log.
    pub spec_id: SpecIdEvent,
    /// The events after the Spec ID event, in log order.
    pub events: Vec<Event>,
    /// Bytes of the log area in use (where the end marker starts).
    pub used_bytes: usize,
}

fn parse_spec_id(c: &mut Reader<'_>) -> Result<SpecIdEvent, CcelError> {
    let _mr_index = c.u32("spec_id.mr_index")?;
    let event_type = c.u32("spec_id.event_type")?;
    if event_type != EV_NO_ACTION {
        return Err(CcelError::SpecId("event type is not EV_NO_ACTION"));
    }
    let _sha1_digest = c.take(20, "spec_id.digest")?;
    let size = c.len_u32(
        "spec_id.event_size",
        "Spec ID event size",
        MAX_SPEC_ID_EVENT_BYTES,
    )?;
    let mut e = Reader::new(c.take(size, "spec_id.event")?);
    if e.take(16, "spec_id.signature")? != SPEC_ID_SIGNATURE {
        return Err(CcelError::SpecId("signature is not \"Spec ID Event03\""));
    }
    let platform_class = e.u32("spec_id.platform_class")?;
    let spec_version_minor = e.u8("spec_id.spec_version_minor")?;
    let spec_version_major = e.u8("spec_id.spec_version_major")?;
    let spec_errata = e.u8("spec_id.spec_errata")?;
    let uintn_size = e.u8("spec_id.uintn_size")?;
    let n = e.len_u32(
        "spec_id.number_of_algorithms",
        "Spec ID algorithm count",
        MAX_ALGORITHMS,
    )?;
    let mut algorithms = Vec::with_capacity(n);
    for _ in 0..n {
        let id = e.u16("spec_id.algorithm_id")?;
        let digest_size = e.u16("spec_id.digest_size")?;
        if usize::from(digest_size) > MAX_DIGEST_BYTES {
            return Err(CcelError::TooLarge {
                what: "digest size",
                len: usize::from(digest_size),
                max: MAX_DIGEST_BYTES,
            });
        }
        if id == ALG_SHA384 && usize::from(digest_size) != SHA384_LEN {
            return Err(CcelError::SpecId("SHA-384 digest size is not 48"));
        }
        if algorithms.iter().any(|a: &Algorithm| a.id == id) {
            return Err(CcelError::SpecId("an algorithm is listed twice"));
        }
        algorithms.push(Algorithm { id, digest_size });
    }
    if algorithms.is_empty() {
        return Err(CcelError::SpecId("no digest algorithms"));
    }
    let vendor_len = usize::from(e.u8("spec_id.vendor_info_size")?);
    let vendor_info = e.take(vendor_len, "spec_id.vendor_info")?.to_vec();
    if e.remaining() != 0 {
        return Err(CcelError::SpecId("bytes left over after the vendor info"));
    }
    Ok(SpecIdEvent {
        platform_class,
        spec_version_major,
        spec_version_minor,
        spec_errata,
        uintn_size,
        algorithms,
        vendor_info,
    })
}

/// True where the used part of the log ends: nothing left, or the next record's MR
/// index and event type are all 0xFF (erased flash) or all zero.
fn at_end(rest: &[u8]) -> bool {
    let head = rest.get(..8).unwrap_or(rest);
    head.iter().all(|&b| b == 0xFF) || head.iter().all(|&b| b == 0)
}

impl EventLog {
    /// Parses a crypto-agile event log (the CCEL log area).
    pub fn parse(bytes: &[u8]) -> Result<EventLog, CcelError> {
        if bytes.len() > MAX_LOG_BYTES {
            return Err(CcelError::TooLarge {
                what: "event log",
                len: bytes.len(),
                max: MAX_LOG_BYTES,
            });
        }
        let mut c = Reader::new(bytes);
        let spec_id = parse_spec_id(&mut c)?;
        let mut events = Vec::new();
        while !at_end(c.rest()) {
            if events.len() >= MAX_EVENTS {
                return Err(CcelError::TooLarge {
                    what: "event count",
                    len: events.len().saturating_add(1),
                    max: MAX_EVENTS,
                });
            }
            let index = events.len();
            let mr_index = c.u32("event.mr_index")?;
            let event_type = c.u32("event.event_type")?;
            let count = c.u32("event.digest_count")?;
            if usize::try_from(count).ok() != Some(spec_id.algorithms.len()) {
                return Err(CcelError::DigestCount {
                    event: index,
                    declared: count,
                    expected: spec_id.algorithms.len(),
                });
            }
            let mut digests = Vec::with_capacity(spec_id.algorithms.len());
            for _ in 0..spec_id.algorithms.len() {
                let alg_id = c.u16("event.digest_alg")?;
                let alg = spec_id.algorithms.iter().find(|a| a.id == alg_id).ok_or(
                    CcelError::UnknownAlgorithm {
                        event: index,
                        alg: alg_id,
                    },
                )?;
                let digest = c.take(usize::from(alg.digest_size), "event.digest")?;
                digests.push(EventDigest {
                    alg_id,
                    digest: digest.to_vec(),
                });
            }
            let size = c.len_u32("event.event_size", "event data size", MAX_EVENT_DATA_BYTES)?;
            let data = c.take(size, "event.data")?.to_vec();
            events.push(Event {
                mr_index,
                event_type,
                digests,
                data,
            });
        }
        Ok(EventLog {
            spec_id,
            events,
            used_bytes: c.offset(),
        })
    }

    /// Replays the log into RTMR0–3 (CC MR indices 1–4) with SHA-384. MR index 0
    /// (MRTD) and `EV_NO_ACTION` events are not extended.
    pub fn replay(&self) -> Result<[[u8; SHA384_LEN]; RTMRS], CcelError> {
        let mut rtmrs = [[0u8; SHA384_LEN]; RTMRS];
        for (event, e) in self.events.iter().enumerate() {
            if e.event_type == EV_NO_ACTION || e.mr_index == 0 {
                continue;
            }
            let slot = e
                .mr_index
                .checked_sub(1)
                .and_then(|i| usize::try_from(i).ok())
                .and_then(|i| rtmrs.get_mut(i))
                .ok_or(CcelError::MrIndex {
                    event,
                    index: e.mr_index,
                })?;
            let digest: &[u8; SHA384_LEN] = e
                .digest(ALG_SHA384)
                .and_then(|d| d.try_into().ok())
                .ok_or(CcelError::NoSha384 { event })?;
            *slot = extend(slot, digest);
        }
        Ok(rtmrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_id(algs: &[(u16, u16)]) -> Vec<u8> {
        let mut ev = SPEC_ID_SIGNATURE.to_vec();
        ev.extend_from_slice(&0u32.to_le_bytes());
        ev.extend_from_slice(&[0, 2, 0, 2]);
        ev.extend_from_slice(&u32::try_from(algs.len()).unwrap().to_le_bytes());
        for (id, size) in algs {
            ev.extend_from_slice(&id.to_le_bytes());
            ev.extend_from_slice(&size.to_le_bytes());
        }
        ev.push(0);
        let mut out = 0u32.to_le_bytes().to_vec();
        out.extend_from_slice(&EV_NO_ACTION.to_le_bytes());
        out.extend_from_slice(&[0; 20]);
        out.extend_from_slice(&u32::try_from(ev.len()).unwrap().to_le_bytes());
        out.extend_from_slice(&ev);
        out
    }

    fn event(mr: u32, ty: u32, digest: &[u8; 48], data: &[u8]) -> Vec<u8> {
        let mut out = mr.to_le_bytes().to_vec();
        out.extend_from_slice(&ty.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&ALG_SHA384.to_le_bytes());
        out.extend_from_slice(digest);
        out.extend_from_slice(&u32::try_from(data.len()).unwrap().to_le_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn replay_follows_the_rules() {
        let mut log = spec_id(&[(ALG_SHA384, 48)]);
        log.extend(event(1, 0x8000_0001, &[1; 48], b"rtmr0"));
        log.extend(event(1, EV_NO_ACTION, &[2; 48], b"not extended"));
        log.extend(event(0, 0x8000_0001, &[3; 48], b"mrtd: not extended"));
        log.extend(event(4, 0xd, &[4; 48], b"rtmr3"));
        log.extend([0xFF; 64]);
        let l = EventLog::parse(&log).unwrap();
        assert_eq!(l.events.len(), 4);
        let r = l.replay().unwrap();
        assert_eq!(r[0], extend(&[0; 48], &[1; 48]));
        assert_eq!(r[1], [0; 48]);
        assert_eq!(r[2], [0; 48]);
        assert_eq!(r[3], extend(&[0; 48], &[4; 48]));

        // An index past RTMR3 is refused by replay, not silently dropped.
        let mut bad = spec_id(&[(ALG_SHA384, 48)]);
        bad.extend(event(5, 0xd, &[4; 48], b""));
        let e = EventLog::parse(&bad).unwrap().replay().unwrap_err();
        assert_eq!(e, CcelError::MrIndex { event: 0, index: 5 });
    }

    #[test]
    fn declared_sizes_are_bounded() {
        // An event size over the bound is refused before anything is read.
        let mut log = spec_id(&[(ALG_SHA384, 48)]);
        let mut e = event(1, 1, &[0; 48], b"");
        let n = e.len();
        e[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
        log.extend(e);
        assert!(matches!(
            EventLog::parse(&log).unwrap_err(),
            CcelError::TooLarge {
                what: "event data size",
                ..
            }
        ));
        // Too many algorithms, an oversized digest, a SHA-384 that is not 48 bytes.
        let many: Vec<(u16, u16)> = (0..9).map(|i| (i, 20)).collect();
        assert!(matches!(
            EventLog::parse(&spec_id(&many)).unwrap_err(),
            CcelError::TooLarge { .. }
        ));
        assert!(matches!(
            EventLog::parse(&spec_id(&[(0x0D, 65)])).unwrap_err(),
            CcelError::TooLarge { .. }
        ));
        assert_eq!(
            EventLog::parse(&spec_id(&[(ALG_SHA384, 32)])).unwrap_err(),
            CcelError::SpecId("SHA-384 digest size is not 48")
        );
        // A digest count that disagrees with the Spec ID event.
        let mut log = spec_id(&[(ALG_SHA384, 48)]);
        let mut e = event(1, 1, &[0; 48], b"");
        e[8..12].copy_from_slice(&2u32.to_le_bytes());
        log.extend(e);
        assert!(matches!(
            EventLog::parse(&log).unwrap_err(),
            CcelError::DigestCount { declared: 2, .. }
        ));
        assert!(matches!(
            EventLog::parse(&vec![0; MAX_LOG_BYTES + 1]).unwrap_err(),
            CcelError::TooLarge { .. }
        ));
    }
}
