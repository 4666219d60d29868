#!/usr/bin/env bash
# A short run of every cargo-fuzz target (fuzz/README.md), seeded from fuzz/seeds and
# the repo's real vectors: SECONDS_EACH seconds each (default 30), one job each.
# A crash, sanitizer report, timeout or out-of-memory fails the run; libFuzzer's
# closing line ("Done N runs in S second(s)") is printed per target.
# Needs cargo-fuzz (installed here from crates.io when missing) and the nightly-only
# flags that RUSTC_BOOTSTRAP=1 unlocks on the stable toolchain.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

SECONDS_EACH=${SECONDS_EACH:-30}
CARGO_FUZZ_VERSION=0.13.2
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi
export RUSTC_BOOTSTRAP=1

targets=$(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^provenant-fuzz$')
# Build once (every target shares the dependency graph).
cargo fuzz build

D=../evidence/tests/data/tdx
for t in $targets; do
    corpus="corpus/$t"
    mkdir -p "$corpus"
    if [ -d "seeds/$t" ]; then cp seeds/"$t"/* "$corpus"/; fi
    case "$t" in
        quote_parse) cp "$D"/tdx_quote "$D"/tdx_quote_outdated "$D"/go-tdx-guest/quote_v5_sample.dat "$corpus"/ ;;
        ccel) cp "$D"/go-tdx-guest/ccel/ccel_table.dat "$corpus"/ ;;
        bundle_parse) cp ../signatures/tests/data/*.json "$corpus"/ ;;
        image_signature) cp ../signatures/tests/data/cosign/containers-image/*/signature-1 "$corpus"/ 2>/dev/null || true ;;
    esac
    echo "== fuzz $t (${SECONDS_EACH}s)"
    log="artifacts/$t.log"
    mkdir -p artifacts
    if ! cargo fuzz run "$t" "$corpus" -- -max_total_time="$SECONDS_EACH" \
        -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
        tail -n 60 "$log" >&2
        echo "fuzz target $t failed (log: fuzz/$log)" >&2
        exit 1
    fi
    grep -E '^(Done|stat::number_of_executed_units)' "$log" || tail -n 3 "$log"
done
