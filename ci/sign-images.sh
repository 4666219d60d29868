#!/usr/bin/env bash
# Signs pushed images by digest with cosign, keyless by default (Fulcio certificate
# for the workflow's OIDC identity, logged in Rekor), or with --key. In GitHub Actions
# it then verifies each signature against this workflow's own identity, the identity
# an image policy pins (san https://github.com/OWNER/REPO/.github/workflows/F@REF).
#
# Usage: ci/sign-images.sh [--key COSIGN_KEY] IMAGE@sha256:DIGEST...
#
# Needs cosign 2.x: it stores the legacy `sha256-<digest>.sig` tag with the Rekor SET
# in `dev.sigstore.cosign/bundle`, the format podman's sigstoreSigned policy reads.
# (Provenant's own verifier reads OCI 1.1 referrer bundles too.)
set -euo pipefail

key=
refs=()
while [ $# -gt 0 ]; do
    case "$1" in
        --key) key=${2:?--key needs a value}; shift 2 ;;
        -*) echo "usage: $0 [--key COSIGN_KEY] IMAGE@sha256:DIGEST..." >&2; exit 2 ;;
        *) refs+=("$1"); shift ;;
    esac
done
[ ${#refs[@]} -gt 0 ] || { echo "usage: $0 [--key COSIGN_KEY] IMAGE@sha256:DIGEST..." >&2; exit 2; }

command -v cosign >/dev/null 2>&1 || { echo "$0: cosign not found" >&2; exit 1; }
version=$(cosign version 2>/dev/null | awk '/^GitVersion:/ { print $2 }')
case "$version" in
    v2.*) ;;
    *) echo "$0: cosign $version: 2.x expected (legacy .sig storage, which podman reads)" >&2; exit 1 ;;
esac

for ref in "${refs[@]}"; do
    # Sign digests only: a tag can move after it is signed.
    if ! [[ "$ref" =~ ^[a-z0-9._/:-]+@sha256:[0-9a-f]{64}$ ]]; then
        echo "$0: $ref is not IMAGE@sha256:DIGEST (lowercase)" >&2
        exit 1
    fi
    echo "== sign $ref"
    if [ -n "$key" ]; then
        cosign sign --yes --key "$key" "$ref"
    else
        cosign sign --yes "$ref"
    fi
    if [ -z "$key" ] && [ -n "${GITHUB_WORKFLOW_REF:-}" ]; then
        cosign verify "$ref" \
            --certificate-identity "https://github.com/$GITHUB_WORKFLOW_REF" \
            --certificate-oidc-issuer https://token.actions.githubusercontent.com \
            > /dev/null
        echo "verified $ref as https://github.com/$GITHUB_WORKFLOW_REF"
    fi
done
