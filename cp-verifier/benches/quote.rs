//! TDX quote verification throughput: `cp_verifier::attest::dcap::verify_quote` (our quote
//! parse, the PCK chain pinning, dcap-qvl's full verification and the cross-check of
//! the two parsers) against a bare `dcap_qvl::verify::QuoteVerifier::new_prod()
//! .verify(..)` on the same quote, the same pre-parsed collateral and the same time.
//! The two run interleaved, in alternating batches in the same process, so drift in
//! clock speed or load hits both alike. Figures are printed, never asserted. Target:
//! ours >= 0.8x bare.
//!
//! PROVENANT_BENCH_ROUNDS (default 20) rounds of PROVENANT_BENCH_BATCH (default 50)
//! verifications each way.
#![allow(clippy::as_conversions)] // bench arithmetic on counts and durations

use provenant_base::clock::UnixSecs;
use std::hint::black_box;
use std::time::{Duration, Instant};

use cp_verifier::attest::dcap::{parse_collateral, verify_quote};
use dcap_qvl::verify::QuoteVerifier;

fn env_or(name: &str, d: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn data(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../evidence/tests/data/tdx/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// expected.json: the v4 quote is UpToDate at this time with its collateral.
const AT: u64 = 1_752_919_234;

fn main() {
    let rounds = env_or("PROVENANT_BENCH_ROUNDS", 20);
    let batch = env_or("PROVENANT_BENCH_BATCH", 50);
    let quote = data("tdx_quote");
    // Cached collateral: parsed once, as the control plane keeps it per FMSPC.
    let collateral = parse_collateral(&data("tdx_quote_collateral.json")).unwrap();

    let ours = || {
        let v = verify_quote(
            black_box(&quote),
            black_box(&collateral),
            UnixSecs::from_unsigned(AT),
            None,
        )
        .unwrap();
        black_box(v);
    };
    let bare = || {
        let r = QuoteVerifier::new_prod()
            .verify(black_box(&quote), black_box(&collateral), AT)
            .unwrap();
        assert_eq!(r.status, "UpToDate");
        black_box(r);
    };

    // Warm up both (allocator, caches, lazy statics).
    for _ in 0..batch.min(20) {
        ours();
        bare();
    }

    let (mut t_ours, mut t_bare) = (Duration::ZERO, Duration::ZERO);
    for round in 0..rounds {
        // Alternate which goes first so neither always runs on a warmer cache.
        let order: [bool; 2] = if round % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for is_ours in order {
            let start = Instant::now();
            for _ in 0..batch {
                if is_ours {
                    ours();
                } else {
                    bare();
                }
            }
            let took = start.elapsed();
            if is_ours {
                t_ours += took;
            } else {
                t_bare += took;
            }
        }
    }
    let n = (rounds * batch) as f64;
    let per_s = |t: Duration| n / t.as_secs_f64();
    let (ours_s, bare_s) = (per_s(t_ours), per_s(t_bare));
    println!("TDX quote verification, v4 quote + cached collateral, {n} each, interleaved");
    println!(
        "  cp_verifier::attest::dcap::verify_quote : {ours_s:>8.1} verifications/s ({:.1} us each)",
        1e6 / ours_s
    );
    println!(
        "  dcap_qvl QuoteVerifier::verify : {bare_s:>8.1} verifications/s ({:.1} us each)",
        1e6 / bare_s
    );
    println!(
        "  ratio ours/bare                : {:.3} (target >= 0.8)",
        ours_s / bare_s
    );
}
