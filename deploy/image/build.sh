#!/usr/bin/env bash
# Build rung's server image with buildah (what `make image` and `make image-default` run).
#
#   deploy/image/build.sh [server|default]
#
#   server   (default) bundles come from the /models volume             -> $IMAGE, rung:VERSION
#   default  the embedded default bundle (models/default) baked in      -> rung:VERSION-default
#
# Environment:
#   BASE       base image; `local` (default here: no registry is reachable) makes and uses
#              localhost/rung-base:bookworm from Debian's packages (debian-base.sh), anything
#              else is passed on, e.g. BASE=python:3.11-slim (the Containerfile's own default)
#   IMAGE      the tag to build (default rung:VERSION or rung:VERSION-default)
#   CA_BUNDLE  CA bundle for pip behind a TLS-inspecting proxy, mounted as the build secret `ca`
#              for the install step only (default: the system bundle, when it exists)
#   CONTEXT    build context (default: the repository; the tests bake a tiny bundle from another)
#
# With Docker instead: docker build [--target default] --secret id=ca,src=CA.pem -t rung:0.1.0 .
set -euo pipefail
cd "$(dirname "$0")/../.."

TARGET=${1:-server}
case "$TARGET" in
    server | default) ;;
    *) echo "build.sh: unknown target '$TARGET' (server or default)" >&2; exit 2 ;;
esac
command -v buildah >/dev/null || { echo "build.sh: buildah is not installed (apt-get install buildah)" >&2; exit 2; }

VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)
SUFFIX=$([ "$TARGET" = default ] && echo "-default" || true)
IMAGE=${IMAGE:-rung:$VERSION$SUFFIX}
BASE=${BASE:-local}
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
CONTEXT=${CONTEXT:-.}

if [ "$TARGET" = default ] && [ ! -f "$CONTEXT/models/default/manifest.json" ]; then
    echo "build.sh: $CONTEXT/models/default is missing; build it first with 'make model'" >&2
    exit 2
fi
if [ "$BASE" = local ]; then
    BASE=localhost/rung-base:bookworm
    deploy/image/debian-base.sh "$BASE"
fi

args=(--isolation chroot --layers --format docker --target "$TARGET"
      --build-arg "BASE=$BASE" --build-arg "VERSION=$VERSION" -f "$PWD/Containerfile" -t "$IMAGE")
if [ -s "$CA_BUNDLE" ]; then
    args+=(--secret "id=ca,src=$CA_BUNDLE")
fi
start=$(date +%s)
buildah bud "${args[@]}" "$CONTEXT"
echo "built $IMAGE from $BASE in $(( $(date +%s) - start )) s ($(buildah images --format '{{.Size}}' "$IMAGE" | head -1))"
