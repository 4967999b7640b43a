#!/usr/bin/env bash
# Images of the C modules for another platform, from its cross build (issue #13):
#
#   docker/build-platform-images.sh -p PLATFORM [-t TAG] [IMAGE...]
#
# PLATFORM: linux/arm64 or linux/arm/v7 (built first with `make PLATFORM=…`). Each image is
# FROM scratch, like the native ones (docker/build-images.sh does the work): the program from
# build/linux-<arch>/bin, the target's libraries from Debian's multiarch directories (found
# by docker/cross-ldd instead of ldd, which cannot read another architecture), created for
# PLATFORM and tagged <image>:<TAG>-linux-<arch> (TAG default latest). A manifest list needs
# a registry, which this machine does not have: the per-arch tags are what `docker run
# --platform` and a later `docker manifest create` use. The Python and Node runtime images
# are left out: their interpreters would have to come from the target's root.
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
PLATFORM="" TAG=latest
usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; }
while getopts "p:t:h" o; do
  case $o in
    p) PLATFORM=$OPTARG ;;
    t) TAG=$OPTARG ;;
    h) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
case $PLATFORM in
  linux/arm64) TRIPLET=aarch64-linux-gnu ARCH=arm64 ;;
  linux/arm/v7) TRIPLET=arm-linux-gnueabihf ARCH=armv7 ;;
  linux/amd64) TRIPLET=x86_64-linux-gnu ARCH=amd64 ;;
  *) usage >&2; exit 2 ;;
esac
BUILD=$SRC/build/linux-$ARCH
[ -x "$BUILD/bin/baetyl-hub" ] || { echo "$0: $BUILD is not built (make PLATFORM=$PLATFORM)" >&2; exit 1; }
if [ $# -eq 0 ]; then
  for b in "$BUILD"/bin/baetyl-*; do set -- "$@" "${b##*/}"; done
fi
for img in "$@"; do
  case $img in baetyl-function-python|baetyl-function-node)
    echo "$0: $img is not built for $PLATFORM (its interpreter is the build machine's)" >&2; exit 2 ;;
  esac
done
# ldd, for the script, is cross-ldd for this platform
SHIM=$(mktemp -d)
trap 'rm -rf "$SHIM"' EXIT
printf '#!/bin/sh\nexec "%s" "$@"\n' "$SRC/docker/cross-ldd" >"$SHIM/ldd"
chmod +x "$SHIM/ldd"
export CROSS_TRIPLET=$TRIPLET PATH="$SHIM:$PATH" DOCKER_DEFAULT_PLATFORM=$PLATFORM
exec "$SRC/docker/build-images.sh" -n -b "$BUILD" -t "$TAG-linux-$ARCH" "$@"
