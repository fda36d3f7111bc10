#!/usr/bin/env bash
# A local base image made from Debian's own packages, for machines that reach no container
# registry: `debootstrap --variant=minbase bookworm` with Debian's python3 (3.11) and its venv
# module, imported as an image with buildah. Root only (debootstrap and buildah's storage).
#
#   deploy/image/debian-base.sh [IMAGE]      # default IMAGE: localhost/rung-base:bookworm
#
# Keeps an existing image unless REBUILD=1. DEBIAN_MIRROR overrides the package mirror.
set -euo pipefail

IMAGE=${1:-localhost/rung-base:bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
# python3-venv brings ensurepip (the Containerfile makes a venv); passwd brings useradd.
PACKAGES=python3,python3-venv,passwd

for tool in debootstrap buildah; do
    command -v "$tool" >/dev/null || { echo "debian-base.sh: $tool is not installed (apt-get install $tool)" >&2; exit 2; }
done
[ "$(id -u)" = 0 ] || { echo "debian-base.sh: run as root (debootstrap needs it)" >&2; exit 2; }

if [ "${REBUILD:-0}" != 1 ] && buildah inspect --type image "$IMAGE" >/dev/null 2>&1; then
    echo "base image $IMAGE exists (REBUILD=1 makes it again)"
    exit 0
fi

work=$(mktemp -d)
ctr=""
cleanup() {
    [ -n "$ctr" ] && buildah rm "$ctr" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

echo "debootstrap --variant=minbase $SUITE from $MIRROR (a minute or two)"
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$work/rootfs" "$MIRROR" \
    > "$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
# Downloaded .debs, package lists, manuals and translations are not needed at run time.
rm -rf "$work/rootfs"/var/cache/apt/archives/*.deb "$work/rootfs"/var/lib/apt/lists/* \
       "$work/rootfs"/usr/share/man "$work/rootfs"/usr/share/info "$work/rootfs"/usr/share/locale \
       "$work/rootfs"/var/log/*.log "$work/rootfs"/debootstrap
tar -C "$work/rootfs" --numeric-owner -cf "$work/rootfs.tar" .

ctr=$(buildah from scratch)
buildah add --quiet "$ctr" "$work/rootfs.tar" / >/dev/null
buildah config \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 \
    --cmd /bin/bash \
    --label org.opencontainers.image.description="Debian $SUITE minbase with python3, from debootstrap" \
    "$ctr"
buildah commit --quiet --rm "$ctr" "$IMAGE" >/dev/null
ctr=""
echo "made $IMAGE ($(buildah images --format '{{.Size}}' "$IMAGE" | head -1))"
