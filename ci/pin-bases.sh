#!/usr/bin/env bash
# Pins the base images in images/bases.env: for each NAME_TAG=REPO:TAG line, resolves
# the digest of the manifest (or multi-platform index) the registry serves for that
# tag now, and rewrites the NAME=REPO@DIGEST line. Run by a person; review the diff
# like code. CI never resolves tags (ci/build-images.sh only reads the pins).
#
# Usage: ci/pin-bases.sh [--plain-http] [FILE]   (default images/bases.env; needs skopeo)
#   --plain-http: the registries speak plain HTTP (a local test registry)
set -euo pipefail
cd "$(dirname "$0")/.."
tls_verify=true
if [ "${1:-}" = --plain-http ]; then
    tls_verify=false
    shift
fi
file=${1:-images/bases.env}
command -v skopeo >/dev/null 2>&1 || { echo "$0: skopeo not found" >&2; exit 1; }

declare -A pinned=()
while IFS= read -r line || [ -n "$line" ]; do
    case "$line" in
        *_TAG=*)
            key=${line%%_TAG=*}
            tagged=${line#*=}
            if ! [[ "$tagged" =~ ^[a-z0-9.:-]+(/[a-z0-9._-]+)+:[A-Za-z0-9._-]+$ ]]; then
                echo "$0: $line: REPO:TAG expected" >&2
                exit 1
            fi
            repo=${tagged%:*}
            # The digest of the raw top-level manifest: what a pull by digest fetches.
            digest=sha256:$(skopeo inspect --tls-verify="$tls_verify" --raw "docker://$tagged" | sha256sum | awk '{ print $1 }')
            echo "$key: $tagged -> $repo@$digest" >&2
            pinned[$key]="$repo@$digest"
            ;;
    esac
done < "$file"

out=$(mktemp)
trap 'rm -f "$out"' EXIT
while IFS= read -r line || [ -n "$line" ]; do
    key=${line%%=*}
    if [[ "$line" != '#'* && "$line" == *=* && -n "${pinned[$key]:-}" ]]; then
        printf '%s=%s\n' "$key" "${pinned[$key]}" >> "$out"
    else
        printf '%s\n' "$line" >> "$out"
    fi
done < "$file"
cp "$out" "$file"
