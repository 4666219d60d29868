#!/usr/bin/env bash
# Computes the launch measurements of the release's TD inputs and prepares the
# attestation subject.
#
# Usage: ci/measure.sh --out MANIFEST.json -- MEASURE_ARGS...
#   MEASURE_ARGS are passed to `cp-verifier measure` (--firmware F [--kernel K
#   --initrd I --cmdline S --memory M] [--layout L]).
#   $CP_VERIFIER is the binary to run (default target/release/cp-verifier).
#
# Writes MANIFEST.json (the predicate), prints the subject digest
# (sha256 of the 48 raw MRTD bytes, via ci/mrtd-subject-digest.py), and when
# $GITHUB_OUTPUT is set exports the step outputs `subject-digest`, `mrtd` and
# `manifest`.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

out=
while [ $# -gt 0 ]; do
    case "$1" in
        --out) out=${2:?--out needs a value}; shift 2 ;;
        --) shift; break ;;
        *) echo "usage: $0 --out MANIFEST.json -- MEASURE_ARGS..." >&2; exit 2 ;;
    esac
done
[ -n "$out" ] || { echo "usage: $0 --out MANIFEST.json -- MEASURE_ARGS..." >&2; exit 2; }

bin=${CP_VERIFIER:-target/release/cp-verifier}
mkdir -p "$(dirname "$out")"
if ! "$bin" measure "$@" > "$out.tmp"; then
    cat "$out.tmp" >&2
    rm -f "$out.tmp"
    exit 1
fi
mv "$out.tmp" "$out"

subject=$(python3 "$here/mrtd-subject-digest.py" "$out")
mrtd=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["mrtd"])' "$out")
echo "manifest: $out"
echo "mrtd: $mrtd"
echo "subject tdx-mrtd: $subject"
if [ -n "${GITHUB_OUTPUT:-}" ]; then
    {
        echo "subject-digest=$subject"
        echo "mrtd=$mrtd"
        echo "manifest=$out"
    } >> "$GITHUB_OUTPUT"
fi
