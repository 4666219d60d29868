#!/usr/bin/env bash
# Builds the release binaries (cp-verifier, guest-agent) into OUT/bin and writes
# OUT/SHA256SUMS. The workflow attests every file in OUT/bin with
# actions/attest-build-provenance.
#
# Usage: ci/build-release.sh [--profile release|dev] [--out DIR]   (default: release, dist)
# `--profile dev` is for a quick local check of the script itself.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
out=dist
while [ $# -gt 0 ]; do
    case "$1" in
        --profile) profile=${2:?--profile needs a value}; shift 2 ;;
        --out) out=${2:?--out needs a value}; shift 2 ;;
        *) echo "usage: $0 [--profile release|dev] [--out DIR]" >&2; exit 2 ;;
    esac
done
case "$profile" in
    release) subdir=release ;;
    dev) subdir=debug ;;
    *) echo "$0: profile must be release or dev" >&2; exit 2 ;;
esac

binaries=(cp-verifier guest-agent)
# Two builds: the control plane without its default `demo` feature (so it links no
# guest-agent code: no aya, bollard or raw syscalls), then the agent.
cargo build --locked --profile "$profile" -p cp-verifier --no-default-features --bins
cargo build --locked --profile "$profile" -p guest-agent --bins

target=${CARGO_TARGET_DIR:-target}
mkdir -p "$out/bin"
for b in "${binaries[@]}"; do
    install -m 0755 "$target/$subdir/$b" "$out/bin/$b"
done
(cd "$out/bin" && sha256sum -- "${binaries[@]}") > "$out/SHA256SUMS"
cat "$out/SHA256SUMS"
