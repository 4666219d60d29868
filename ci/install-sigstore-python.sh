#!/usr/bin/env bash
# Installs sigstore-python (PyPI `sigstore`, pinned) into a venv at
# target/sigstore-python, where sigstore-testsign's cross-implementation tests look for
# `bin/sigstore`. Idempotent: does nothing if the pinned version is already there.
# Needs python3 with venv (Debian: python3-venv) and PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=4.5.1
VENV=${SIGSTORE_PYTHON_VENV:-target/sigstore-python}

if [ -x "$VENV/bin/sigstore" ] && "$VENV/bin/sigstore" --version 2>/dev/null | grep -qx "sigstore $VERSION"; then
    echo "sigstore-python $VERSION already in $VENV"
    exit 0
fi
rm -rf "$VENV"
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check "sigstore==$VERSION"
"$VENV/bin/sigstore" --version
