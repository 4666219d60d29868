#!/usr/bin/env bash
# Builds the release images (images/*/Containerfile) and, with --push, pushes them
# and reports each pushed manifest digest: the digest ci/sign-images.sh signs and
# actions/attest-build-provenance attests.
#
# Usage: ci/build-images.sh --registry REG [--tag TAG] [--image NAME]... [--push]
#                           [--bases FILE] [--dist DIR] [--digests-out FILE]
#   NAME: guest-agent | cp-verifier | workload (default: all three)
#   REG:  e.g. ghcr.io/OWNER/REPO (lowercased here); images are REG/NAME:TAG
#   --bases: the pinned base images (default images/bases.env); a placeholder
#            (all-zero) digest is refused, so nothing builds from a floating tag
#   --digests-out: append one `REG/NAME@sha256:..` line per pushed image
# guest-agent and cp-verifier copy the release binaries from DIR/bin (default
# dist/bin, from ci/build-release.sh), which must match DIR/SHA256SUMS: the image
# carries exactly the attested bytes. Each build gets a staged context holding only
# images/NAME/ and its binary (as dist/bin/NAME), never the whole checkout. ENGINE (default `podman`) is the build command, with any global
# flags (`ENGINE="podman --root DIR"`). With one image and $GITHUB_OUTPUT set, the
# step outputs are `image` (REG/NAME), `digest` and `ref` (REG/NAME@DIGEST).
set -euo pipefail
cd "$(dirname "$0")/.."

registry=
tag=latest
push=false
bases=images/bases.env
digests_out=
dist=dist
images=()
usage() {
    echo "usage: $0 --registry REG [--tag TAG] [--image NAME]... [--push] [--bases FILE] [--dist DIR] [--digests-out FILE]" >&2
    exit 2
}
while [ $# -gt 0 ]; do
    case "$1" in
        --registry) registry=${2:?--registry needs a value}; shift 2 ;;
        --tag) tag=${2:?--tag needs a value}; shift 2 ;;
        --image) images+=("${2:?--image needs a value}"); shift 2 ;;
        --push) push=true; shift ;;
        --bases) bases=${2:?--bases needs a value}; shift 2 ;;
        --digests-out) digests_out=${2:?--digests-out needs a value}; shift 2 ;;
        --dist) dist=${2:?--dist needs a value}; shift 2 ;;
        *) usage ;;
    esac
done
[ -n "$registry" ] || usage
registry=$(printf '%s' "$registry" | tr '[:upper:]' '[:lower:]')
[ ${#images[@]} -gt 0 ] || images=(guest-agent cp-verifier workload)
read -r -a engine <<< "${ENGINE:-podman}"

# KEY=VALUE lines; comments and blank lines skipped. Not sourced: it is data.
base_of() {
    local key=$1 line value=
    while IFS= read -r line || [ -n "$line" ]; do
        case "$line" in
            "$key="*) value=${line#*=} ;;
        esac
    done < "$bases"
    if [ -z "$value" ]; then
        echo "$0: $key is not set in $bases" >&2
        exit 1
    fi
    if ! [[ "$value" =~ ^[a-z0-9.:-]+(/[a-z0-9._-]+)+@sha256:[0-9a-f]{64}$ ]]; then
        echo "$0: $key=$value in $bases is not REPO@sha256:DIGEST" >&2
        exit 1
    fi
    if [[ "$value" =~ @sha256:0{64}$ ]]; then
        echo "$0: $key in $bases is a placeholder digest: pin it first (ci/pin-bases.sh)" >&2
        exit 1
    fi
    printf '%s' "$value"
}

# Copies DIR/bin/NAME into the context after checking it against DIR/SHA256SUMS.
stage_binary() {
    local name=$1 ctx=$2 want got
    [ -f "$dist/bin/$name" ] || { echo "$0: $dist/bin/$name missing: run ci/build-release.sh first" >&2; exit 1; }
    [ -f "$dist/SHA256SUMS" ] || { echo "$0: $dist/SHA256SUMS missing" >&2; exit 1; }
    want=$(awk -v n="$name" '$2 == n { print $1 }' "$dist/SHA256SUMS")
    [ -n "$want" ] || { echo "$0: $dist/SHA256SUMS has no entry for $name" >&2; exit 1; }
    mkdir -p "$ctx/dist/bin"
    # Copy first, then hash the copy: what is checked is what is built.
    # (install also restores the mode bits artifact downloads drop.)
    install -m 0755 "$dist/bin/$name" "$ctx/dist/bin/$name"
    got=$(sha256sum "$ctx/dist/bin/$name" | awk '{ print $1 }')
    if [ "$got" != "$want" ]; then
        echo "$0: $dist/bin/$name does not match $dist/SHA256SUMS ($got != $want)" >&2
        exit 1
    fi
}

revision=${GITHUB_SHA:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Check and stage every image's inputs before building any: a bad pin or binary
# stops the run before anything is pushed.
declare -A base_of_image=()
for name in "${images[@]}"; do
    ctx="$tmp/ctx-$name"
    mkdir -p "$ctx/images"
    case "$name" in
        guest-agent | cp-verifier) base=$(base_of DEBIAN_BASE); stage_binary "$name" "$ctx" ;;
        workload) base=$(base_of BUSYBOX_BASE) ;;
        *) echo "$0: unknown image $name (guest-agent, cp-verifier, workload)" >&2; exit 2 ;;
    esac
    cp -R "images/$name" "$ctx/images/$name"
    base_of_image[$name]=$base
done

for name in "${images[@]}"; do
    ctx="$tmp/ctx-$name"
    base=${base_of_image[$name]}
    image="$registry/$name"
    echo "== build $image:$tag (FROM $base)"
    "${engine[@]}" build \
        --file "$ctx/images/$name/Containerfile" \
        --build-arg "BASE_IMAGE=$base" \
        --label "org.opencontainers.image.revision=$revision" \
        --label "org.opencontainers.image.base.name=$base" \
        --tag "$image:$tag" \
        "$ctx"
    if [ "$push" = true ]; then
        "${engine[@]}" push --digestfile "$tmp/digest" "$image:$tag"
        digest=$(cat "$tmp/digest")
        if ! [[ "$digest" =~ ^sha256:[0-9a-f]{64}$ ]]; then
            echo "$0: push of $image:$tag reported no digest" >&2
            exit 1
        fi
        echo "pushed $image@$digest"
        [ -z "$digests_out" ] || echo "$image@$digest" >> "$digests_out"
        if [ -n "${GITHUB_OUTPUT:-}" ] && [ ${#images[@]} -eq 1 ]; then
            {
                echo "image=$image"
                echo "digest=$digest"
                echo "ref=$image@$digest"
            } >> "$GITHUB_OUTPUT"
        fi
    fi
done
