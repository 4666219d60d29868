#!/usr/bin/env bash
# Obtains the guest firmware that Provenant's TDs boot: Debian 12's OVMF.fd from the
# `ovmf` package, pinned by the digest of the package and of the file, so the MRTD
# CI attests is the MRTD of exactly these bytes.
#
# Usage: ci/fetch-ovmf.sh OUT_DIR        -> OUT_DIR/OVMF.fd
#
# Sources, in order: $OVMF_DEB (a local .deb), `apt-get download` (Debian hosts with
# bookworm sources), Debian's package pool over HTTPS (any host with curl). Every
# source is checked against OVMF_DEB_SHA256, and the extracted file against
# OVMF_FD_SHA256; a mismatch stops the release. To move to another firmware build,
# change the three pins together (and the regression vector in
# cp-verifier/tests/measure.rs if it is Debian's file that changed).
set -euo pipefail

OVMF_DEB_VERSION=2022.11-6+deb12u2
OVMF_DEB_SHA256=e73d3d1a8799f7f6fc16b73501d913edcdd86237556fbff30693e747e6dc262e
OVMF_FD_SHA256=7b456907dd0786d415999e801a1ac4637b8ed4d7cf5378cfc6edbe5e574dd773
deb_name="ovmf_${OVMF_DEB_VERSION}_all.deb"
pool_url="https://deb.debian.org/debian/pool/main/e/edk2/${deb_name//+/%2B}"

out=${1:?usage: $0 OUT_DIR}
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

sha256_of() { sha256sum -- "$1" | cut -d' ' -f1; }

deb="$work/$deb_name"
if [ -n "${OVMF_DEB:-}" ]; then
    cp -- "$OVMF_DEB" "$deb"
elif command -v apt-get >/dev/null 2>&1 \
    && (cd "$work" && apt-get download "ovmf=$OVMF_DEB_VERSION" >/dev/null 2>&1); then
    :
else
    curl --fail --silent --show-error --location --retry 3 -o "$deb" "$pool_url"
fi
[ -f "$deb" ] || { echo "$0: could not obtain $deb_name" >&2; exit 1; }

got=$(sha256_of "$deb")
if [ "$got" != "$OVMF_DEB_SHA256" ]; then
    echo "$0: $deb_name has sha256 $got, expected $OVMF_DEB_SHA256" >&2
    exit 1
fi
dpkg-deb -x "$deb" "$work/x"
install -m 0644 "$work/x/usr/share/ovmf/OVMF.fd" "$out/OVMF.fd"
got=$(sha256_of "$out/OVMF.fd")
if [ "$got" != "$OVMF_FD_SHA256" ]; then
    echo "$0: OVMF.fd has sha256 $got, expected $OVMF_FD_SHA256" >&2
    exit 1
fi
echo "$out/OVMF.fd sha256:$got (Debian ovmf $OVMF_DEB_VERSION)"
