#!/usr/bin/env bash
# debian-root.sh CACHE NAME PACKAGE...: a minimal Debian root (debootstrap --variant=minbase)
# with PACKAGE... installed, as a tar archive; prints its path. The runtime images start from
# it so that a user's Dockerfile FROM them can `apt-get install` Debian packages with native
# libraries (python3-numpy, python3-opencv, ...).
#
# The archive is cached as CACHE/NAME-<key>.tar, the key naming the suite, mirror,
# architecture and packages: it is made once (a minute or two, most of it downloading), and
# the downloaded packages stay in CACHE/debs for the next root. apt's lists and downloaded
# packages are left out of the archive (a derived image runs `apt-get update` first).
#
# Environment: DEBIAN_SUITE (default: this machine's Debian codename, else bookworm),
# DEBIAN_MIRROR (default http://deb.debian.org/debian; a local mirror or apt proxy works).
# Needs root and debootstrap (scripts/deps.sh installs it). Progress goes to stderr.
set -euo pipefail

[ $# -ge 2 ] || { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
CACHE=$1 NAME=$2
shift 2
suite=${DEBIAN_SUITE:-$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")}
suite=${suite:-bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
arch=$(dpkg --print-architecture)
pkgs=$(printf '%s\n' "$@" | sort -u | paste -sd, -)
key=$(printf '%s %s %s %s' "$suite" "$mirror" "$arch" "$pkgs" | sha256sum | cut -c1-12)
out=$CACHE/$NAME-$key.tar
if [ -s "$out" ]; then
  echo "$out"
  exit 0
fi
command -v debootstrap >/dev/null ||
  { echo "$0: debootstrap is not installed (apt-get install debootstrap)" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "$0: debootstrap needs root" >&2; exit 1; }

mkdir -p "$CACHE/debs"
CACHE=$(cd "$CACHE" && pwd)
root=$(mktemp -d "$CACHE/.root.XXXXXX")
cleanup() {
  # a failed debootstrap may leave /proc or /sys mounted in the root
  local m
  for m in $(awk -v r="$root/" 'index($2, r) == 1 { print $2 }' /proc/self/mounts | sort -r); do
    umount -l "$m" 2>/dev/null || true
  done
  rm -rf "$root" "$root.tar"
}
trap cleanup EXIT

t0=$(date +%s)
echo "  $NAME: debootstrap --variant=minbase $suite with $pkgs (from $mirror; once, cached)" >&2
log=$CACHE/$NAME-$key.debootstrap.log
if ! debootstrap --variant=minbase --arch="$arch" --include="$pkgs" --cache-dir="$CACHE/debs" \
  "$suite" "$root" "$mirror" >"$log" 2>&1; then
  echo "$0: debootstrap of $NAME failed (mirror $mirror unreachable? set DEBIAN_MIRROR);" \
    "last lines of $log:" >&2
  tail -5 "$log" >&2
  exit 1
fi
# what a container does not need, and what would only go stale in the image
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
  "$root"/var/log/* "$root"/tmp/* "$root"/usr/share/doc/* "$root"/usr/share/man/* \
  "$root"/usr/share/info/* "$root"/usr/share/locale/* "$root"/debootstrap
mkdir -p "$root/var/lib/apt/lists/partial"
# nor in what a derived image installs (as Debian's slim images do)
printf 'path-exclude /usr/share/%s/*\n' doc man info locale >"$root/etc/dpkg/dpkg.cfg.d/no-docs"
# containers have no init: let apt install packages whose scripts start services
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"
# made beside the root and renamed: two builds at once each make a whole archive
tar --numeric-owner -cf "$root.tar" -C "$root" .
mv "$root.tar" "$out"
echo "  $NAME: Debian root $(du -sh "$out" | cut -f1) in $(($(date +%s) - t0))s" >&2
echo "$out"
