#!/usr/bin/env bash
# Installs every Debian and npm package that the build, the examples and the tests need.
# Idempotent: packages already present are not fetched again. Needs root (or sudo).
#
#   scripts/deps.sh                         the native build, the examples, the tests
#   scripts/deps.sh --platforms all         also cross builds and emulated tests for
#   scripts/deps.sh --platforms linux/arm64,linux/arm/v7   (the listed) other platforms:
#       Debian's cross toolchains, the target's libraries (multiarch), qemu-user-static
#       registered with binfmt_misc so the target's binaries run here.
set -euo pipefail

PLATFORMS=""
while [ $# -gt 0 ]; do
  case "$1" in
    --platforms) PLATFORMS="${2:?--platforms needs a list (all, or linux/arm64,linux/arm/v7)}"; shift 2 ;;
    --platforms=*) PLATFORMS="${1#*=}"; shift ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "deps: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ "$PLATFORMS" = all ] && PLATFORMS="linux/arm64,linux/arm/v7"

PKGS=(
  # build
  build-essential pkg-config clang clang-format libclang-rt-14-dev git ca-certificates
  # libraries (DESIGN.md §4)
  libyaml-dev libjansson-dev libssl-dev liblmdb-dev
  libarchive-dev libcmocka-dev
  libnghttp2-dev protobuf-c-compiler libprotobuf-c-dev
  # video-infer: OpenCV 4 (C++ API) for capture, JPEG and DNN
  libopencv-core-dev libopencv-imgproc-dev libopencv-imgcodecs-dev libopencv-videoio-dev
  libopencv-dnn-dev
  # tests, peers and runtimes
  python3 python3-pytest python3-pytest-xdist python3-paho-mqtt python3-grpcio python3-protobuf python3-yaml
  python3-hpack
  python3-cryptography python3-more-itertools
  mosquitto mosquitto-clients libpaho-mqtt-dev openssl procps psmisc curl
  # bench: instructions per message under callgrind (row n: a count load does not move)
  valgrind
  python3-opencv python3-numpy
  nodejs npm
  # docker mode: the engine the tests start, and a static busybox for their test image
  docker.io busybox-static
  # swarm: the local registry nodes pull images from (test/swarm)
  docker-registry
  # durability: the power-cut filesystem (test/tools/cutfs.c) is a FUSE program
  libfuse3-dev fuse3
  # packages: make deb and its test (a fresh Debian root, in a network namespace)
  dpkg-dev lintian debootstrap iproute2
  # metrics: a real Prometheus scrapes the master; the status page in a headless browser
  prometheus chromium
)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# not_installed PKG...: those of PKG not fully installed ("install ok installed" is the
# only status dpkg-query gives a complete install), one per line.
not_installed() {
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
  done
}

mapfile -t missing < <(not_installed "${PKGS[@]}")
# A machine may bring its own node/npm (not from Debian); keep it rather than fight it.
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
  tmp=()
  for p in "${missing[@]}"; do [ "$p" = nodejs ] || [ "$p" = npm ] || tmp+=("$p"); done
  missing=("${tmp[@]+"${tmp[@]}"}")
fi

if [ "${#missing[@]}" -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "deps: all Debian packages present"
fi

# Debian's mosquitto package enables a system service on 1883; tests start their own
# brokers on free ports, so the system one is stopped where a service manager runs it.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet mosquitto 2>/dev/null; then
  $SUDO systemctl stop mosquitto || true
fi

# npm packages, from the committed lock files: the Node runtime's node_modules
# (@grpc/grpc-js, @grpc/proto-loader, js-yaml), lodash for the chapter-15 test function and
# MQTT.js 5, an MQTT 5.0 peer of the hub in the integration tests.
# Skipped when node_modules is already newer than the lock file. Install scripts are not
# run: none of these packages needs one (no native code).
ROOT=$(cd "$(dirname "$0")/.." && pwd)
for d in function-node test/integration/functions/node-lodash test/integration/peers/mqttjs; do
  lock=$ROOT/$d/package-lock.json
  [ -f "$lock" ] || continue
  if [ -f "$ROOT/$d/node_modules/.package-lock.json" ] && [ "$ROOT/$d/node_modules/.package-lock.json" -nt "$lock" ]; then
    echo "deps: $d/node_modules up to date"
  else
    echo "deps: npm ci in $d"
    (cd "$ROOT/$d" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund)
  fi
done

# ---- other platforms (--platforms): cross toolchains, the target's libraries, emulation ----
# The libraries of DESIGN.md §4 are Multi-Arch: same in Debian 12, so the target's -dev
# packages install beside the native ones (OpenCV's do not: video-infer stays native).
CROSS_LIBS=(libyaml-dev libjansson-dev libssl-dev liblmdb-dev
            libarchive-dev libcmocka-dev libnghttp2-dev libprotobuf-c-dev)
cross=()
for p in ${PLATFORMS//,/ }; do
  case "$p" in
    linux/amd64) arch=amd64 ;;
    linux/arm64) arch=arm64 ;;
    linux/arm/v7) arch=armhf ;;
    *) echo "deps: unknown platform $p (linux/amd64, linux/arm64, linux/arm/v7)" >&2; exit 2 ;;
  esac
  [ "$arch" = "$(dpkg --print-architecture)" ] && continue
  if ! dpkg --print-foreign-architectures | grep -qx "$arch"; then
    echo "deps: adding architecture $arch"
    $SUDO dpkg --add-architecture "$arch"
  fi
  cross+=("crossbuild-essential-$arch")
  for l in "${CROSS_LIBS[@]}"; do cross+=("$l:$arch"); done
done
if [ "${#cross[@]}" -gt 0 ]; then
  cross+=(qemu-user-static binfmt-support)
  mapfile -t needed < <(not_installed "${cross[@]}")
  if [ "${#needed[@]}" -gt 0 ]; then
    echo "deps: installing ${needed[*]}"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -q
    $SUDO apt-get install -y -q --no-install-recommends "${needed[@]}"
  else
    echo "deps: cross toolchains and target libraries present"
  fi
  # binfmt_misc lets the kernel run the target's binaries through qemu (the master starts
  # its services with exec, so an explicit qemu wrapper would not reach them).
  if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
    $SUDO mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  fi
  for q in qemu-aarch64 qemu-arm; do
    if [ ! -e /proc/sys/fs/binfmt_misc/$q ]; then
      $SUDO update-binfmts --enable "$q" || $SUDO update-binfmts --import "$q"
    fi
  done
  echo "deps: emulation registered: $(cd /proc/sys/fs/binfmt_misc && ls -d qemu-aarch64 qemu-arm 2>/dev/null | tr '\n' ' ')"
fi
