//! CCEL parsing and replay against go-tdx-guest's real TDX boot log: replaying it must
//! give RTMR0–2 of the quote taken on that boot; truncations and corruptions must give
//! typed errors, never panics; a changed digest must change the replay.

use evidence::ccel::{CcelError, CcelTable, EventLog, ALG_SHA384, CC_TYPE_TDX, EV_NO_ACTION};
use evidence::tdx::Quote;
use serde_json::Value;

fn data(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/data/tdx/go-tdx-guest/ccel/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// RTMR0–3 of cos-113-tdx-quote.dat as expected.json records them.
fn expected_rtmrs() -> [String; 4] {
    let path = format!(
        "{}/tests/data/tdx/expected.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let all: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let q = all["quotes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["file"] == "go-tdx-guest/ccel/cos-113-tdx-quote.dat")
        .unwrap();
    ["rtmr0", "rtmr1", "rtmr2", "rtmr3"].map(|r| q["td"][r].as_str().unwrap().to_string())
}

#[test]
fn table_points_at_the_log() {
    let t = CcelTable::parse(&data("ccel_table.dat")).unwrap();
    assert_eq!(t.cc_type, CC_TYPE_TDX);
    assert_eq!(t.cc_subtype, 0);
    assert_eq!(t.revision, 1);
    assert_eq!(&t.oem_id, b"INTEL ");
    assert_eq!(t.laml, 0x40000);
    assert_eq!(t.lasa, 0xbedb_f000);
    assert_eq!(
        u64::try_from(data("ccel_data.dat").len()).unwrap(),
        t.laml,
        "the log area is LAML bytes"
    );
}

#[test]
fn replay_reproduces_the_quotes_rtmrs() {
    let log = EventLog::parse(&data("ccel_data.dat")).unwrap();
    assert_eq!(log.spec_id.algorithms.len(), 1);
    assert_eq!(log.spec_id.algorithms[0].id, ALG_SHA384);
    assert_eq!(log.spec_id.algorithms[0].digest_size, 48);
    assert_eq!(log.events.len(), 43);
    assert_eq!(log.used_bytes, 18_101);
    assert!(log.events.iter().all(|e| (1..=3).contains(&e.mr_index)));

    let replayed = log.replay().unwrap();
    let want = expected_rtmrs();
    for i in 0..3 {
        assert_eq!(hex::encode(replayed[i]), want[i], "RTMR{i}");
    }
    // Nothing in the firmware log extends RTMR3, and the quote's RTMR3 is zero.
    assert_eq!(hex::encode(replayed[3]), want[3]);

    // The same values the quote parser reads from the quote itself.
    let quote = Quote::parse(&data("cos-113-tdx-quote.dat")).unwrap();
    for (i, mr) in replayed.iter().enumerate() {
        assert_eq!(mr, &quote.body.rtmrs[i].0, "RTMR{i}");
    }
}

#[test]
fn a_changed_digest_or_order_changes_the_replay() {
    let log = EventLog::parse(&data("ccel_data.dat")).unwrap();
    let good = log.replay().unwrap();
    for (i, e) in log.events.iter().enumerate() {
        if e.event_type == EV_NO_ACTION {
            continue;
        }
        let mut changed = log.clone();
        changed.events[i].digests[0].digest[0] ^= 1;
        let r = changed.replay().unwrap();
        let slot = usize::try_from(e.mr_index - 1).unwrap();
        assert_ne!(r[slot], good[slot], "event {i}");
    }
    // Swapping two events of the same register changes it (extension is ordered).
    let mut swapped = log.clone();
    let (a, b) = {
        let mut same = log
            .events
            .iter()
            .enumerate()
            .filter(|(_, e)| e.mr_index == 1 && e.event_type != EV_NO_ACTION)
            .map(|(i, _)| i);
        (same.next().unwrap(), same.next().unwrap())
    };
    swapped.events.swap(a, b);
    assert_ne!(swapped.replay().unwrap()[0], good[0]);
    // Also in the raw bytes: a flipped digest byte in the log changes the replay.
    let mut raw = data("ccel_data.dat");
    let first_event = 0x41; // after the 65-byte Spec ID event
    raw[first_event + 12 + 2 + 5] ^= 0x40; // inside the first event's SHA-384 digest
    assert_ne!(EventLog::parse(&raw).unwrap().replay().unwrap()[0], good[0]);
}

#[test]
fn every_truncation_is_typed_or_a_shorter_log() {
    let raw = data("ccel_data.dat");
    let full = EventLog::parse(&raw).unwrap();
    // Record boundaries: cutting exactly there is a valid, shorter log.
    let mut boundaries = vec![0x41usize];
    for e in &full.events {
        let len =
            12 + e.digests.iter().map(|d| 2 + d.digest.len()).sum::<usize>() + 4 + e.data.len();
        boundaries.push(boundaries.last().unwrap() + len);
    }
    assert_eq!(*boundaries.last().unwrap(), full.used_bytes);
    for n in 0..full.used_bytes {
        match EventLog::parse(&raw[..n]) {
            Ok(l) => {
                let k = boundaries.iter().position(|&b| b == n);
                assert_eq!(
                    k,
                    Some(l.events.len()),
                    "[..{n}] parsed but is not a boundary"
                );
            }
            Err(e) => assert!(matches!(e, CcelError::Truncated { .. }), "[..{n}]: {e:?}"),
        }
    }
}

/// What a corrupted input must fail with.
type Expect = fn(&CcelError) -> bool;

#[test]
fn table_corruptions_are_typed() {
    let raw = data("ccel_table.dat");
    for n in 0..raw.len() {
        assert!(CcelTable::parse(&raw[..n]).is_err(), "[..{n}]");
    }
    let cases: [(&str, usize, u8, Expect); 4] = [
        ("signature", 0, b'X', |e| matches!(e, CcelError::NotCcel(_))),
        ("length", 4, 0x39, |e| {
            matches!(e, CcelError::TableLength { .. })
        }),
        ("checksum", 9, 0x00, |e| matches!(e, CcelError::Checksum)),
        ("LASA byte", 50, 0x01, |e| matches!(e, CcelError::Checksum)),
    ];
    for (what, at, v, ok) in cases {
        let mut t = raw.clone();
        t[at] = v;
        let e = CcelTable::parse(&t).unwrap_err();
        assert!(ok(&e), "{what}: {e:?}");
    }
    // CC type SEV (1), with the checksum fixed up: a typed refusal, not a checksum one.
    let mut t = raw.clone();
    t[36] = 1;
    t[9] = t[9].wrapping_add(1);
    assert_eq!(CcelTable::parse(&t).unwrap_err(), CcelError::NotTdx(1));
    let mut long = raw.clone();
    long.push(0);
    assert!(matches!(
        CcelTable::parse(&long).unwrap_err(),
        CcelError::TooLarge { .. }
    ));
}

#[test]
fn log_corruptions_are_typed_and_never_panic() {
    let raw = data("ccel_data.dat");
    let used = EventLog::parse(&raw).unwrap().used_bytes;
    // Targeted: each field of the Spec ID event and of the first event.
    let cases: [(&str, usize, &[u8], Expect); 7] = [
        ("Spec ID event type", 4, &[4], |e| {
            matches!(e, CcelError::SpecId(_))
        }),
        ("Spec ID signature", 32, b"X", |e| {
            matches!(e, CcelError::SpecId(_))
        }),
        ("Spec ID algorithm count", 56, &[9], |e| {
            matches!(e, CcelError::TooLarge { .. })
        }),
        ("Spec ID digest size", 62, &[0x20], |e| {
            matches!(e, CcelError::SpecId(_))
        }),
        ("event digest count", 0x41 + 8, &[2], |e| {
            matches!(
                e,
                CcelError::DigestCount {
                    event: 0,
                    declared: 2,
                    ..
                }
            )
        }),
        ("event digest algorithm", 0x41 + 12, &[0x0B], |e| {
            matches!(
                e,
                CcelError::UnknownAlgorithm {
                    event: 0,
                    alg: 0x0B
                }
            )
        }),
        ("event size", 0x41 + 12 + 2 + 48 + 3, &[0x7F], |e| {
            matches!(
                e,
                CcelError::TooLarge {
                    what: "event data size",
                    ..
                }
            )
        }),
    ];
    for (what, at, v, ok) in cases {
        let mut l = raw.clone();
        l[at..at + v.len()].copy_from_slice(v);
        let e = EventLog::parse(&l).unwrap_err();
        assert!(ok(&e), "{what}: {e:?}");
    }
    // Sweep: every byte of the Spec ID event and the first events with three flips
    // each, every 7th byte after that with one; parse and replay either succeed or
    // fail with an error, and never panic. (The `ccel` fuzz target goes further.)
    let dense = 1024;
    let offsets = (0..dense)
        .flat_map(|i| [(i, 0x01u8), (i, 0x80), (i, 0xff)])
        .chain((dense..used).step_by(7).map(|i| (i, 0x01)));
    for (i, flip) in offsets {
        let mut l = raw[..used].to_vec();
        l[i] ^= flip;
        if let Ok(log) = EventLog::parse(&l) {
            let _ = log.replay();
        }
    }
}
