#!/usr/bin/env bash
# Build a stand-in for the official `python:3.11-slim` image from Debian 12 packages, for the offline
# image tests only (tests/container/): this machine reaches Debian's and PyPI's package servers but no
# container registry. It is NOT the official image and is never published or used for releases.
#
# What it holds, like the official image: Debian 12 minbase, Python 3.11 with pip, venv and its C headers
# (the official image has them, and wheels of C extensions need them), `python`
# and `pip` on PATH, no EXTERNALLY-MANAGED marker (so `pip install` works system-wide), no apt lists.
# Unlike it: Debian's python3 in /usr/bin rather than a python.org build in /usr/local. If the host's CA
# bundle differs from Debian's (a TLS-intercepting egress proxy), it is added, so pip and apt in the
# build reach their servers as they do from the host.
#
# The image carries a label with the hash of this recipe and of the CA bundle added; it is rebuilt only
# when that hash changes, so repeated test runs on one machine pay for debootstrap once (~40 s).
#
# Usage: standin-base.sh [--print-hash]   (podman must be configured by the caller, e.g. CONTAINERS_CONF)
set -euo pipefail

IMAGE="docker.io/library/python:3.11-slim"
SUITE="bookworm"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
HOST_CA="/etc/ssl/certs/ca-certificates.crt"
LABEL="org.communs.standin-recipe"

recipe_hash() {
  { cat "${BASH_SOURCE[0]}"; [ -f "$HOST_CA" ] && cat "$HOST_CA"; echo "$MIRROR"; } | sha256sum | cut -c1-32
}
want="$(recipe_hash)"
if [ "${1:-}" = "--print-hash" ]; then echo "$want"; exit 0; fi

if podman image exists "$IMAGE"; then
  have="$(podman image inspect --format "{{ index .Labels \"$LABEL\" }}" "$IMAGE" 2>/dev/null || true)"
  if [ "$have" = "$want" ]; then
    echo "stand-in $IMAGE is up to date ($want)" >&2
    exit 0
  fi
  if [ -z "$have" ] || [ "$have" = "<no value>" ]; then
    echo "$IMAGE exists and is not a stand-in (no $LABEL label): using it as it is" >&2
    exit 0
  fi
fi

work="$(mktemp -d "${TMPDIR:-/var/tmp}/standin.XXXXXX")"
trap 'rm -rf "$work"' EXIT
root="$work/rootfs"
echo "building the stand-in $IMAGE with debootstrap (about 40 s) ..." >&2
debootstrap --variant=minbase --include=python3,python3-pip,python3-venv,libpython3.11-dev,ca-certificates \
  "$SUITE" "$root" "$MIRROR" >"$work/debootstrap.log" 2>&1 || { tail -30 "$work/debootstrap.log" >&2; exit 1; }

# The egress CA, if the host trusts one that Debian does not: add the host's bundle as a local CA.
if [ -f "$HOST_CA" ] && ! cmp -s "$HOST_CA" "$root/etc/ssl/certs/ca-certificates.crt"; then
  cp "$HOST_CA" "$root/usr/local/share/ca-certificates/host-bundle.crt"
  chroot "$root" update-ca-certificates >/dev/null 2>&1
fi
rm -f "$root"/usr/lib/python3*/EXTERNALLY-MANAGED
ln -sf python3 "$root/usr/bin/python"
[ -e "$root/usr/bin/pip" ] || ln -sf pip3 "$root/usr/bin/pip"
cat >"$root/etc/apt/sources.list" <<SOURCES
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
SOURCES
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/log/* "$root"/tmp/*

tar --numeric-owner -C "$root" --exclude=./dev/* --exclude=./proc/* --exclude=./sys/* -cf - . \
  | podman import --quiet \
      --change 'ENV LANG=C.UTF-8' \
      --change 'CMD ["python3"]' \
      --change "LABEL $LABEL=$want" \
      - "$IMAGE" >/dev/null
echo "stand-in $IMAGE built ($want)" >&2
