#!/usr/bin/env bash
# Installs every Debian and npm package that the build, the examples and the tests need.
# Idempotent: packages already present are not fetched again. Needs root (or sudo).
set -euo pipefail

PKGS=(
  # build
  build-essential pkg-config clang clang-format libclang-rt-14-dev git ca-certificates
  # libraries (DESIGN.md §4)
  libyaml-dev libjansson-dev libcurl4-openssl-dev libssl-dev liblmdb-dev
  libmicrohttpd-dev libarchive-dev libcmocka-dev
  libgrpc-dev protobuf-c-compiler libprotobuf-c-dev
  # video-infer: OpenCV 4 (C++ API) for capture, JPEG and DNN
  libopencv-core-dev libopencv-imgproc-dev libopencv-imgcodecs-dev libopencv-videoio-dev
  libopencv-dnn-dev
  # tests, peers and runtimes
  python3 python3-pytest python3-paho-mqtt python3-grpcio python3-protobuf python3-yaml
  python3-cryptography python3-more-itertools
  mosquitto mosquitto-clients libpaho-mqtt-dev openssl procps psmisc curl
  python3-opencv python3-numpy
  nodejs npm
  # docker mode: the engine the tests start, and a static busybox for their test image
  docker.io busybox-static
)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${PKGS[@]}"; do
  # dpkg-query says "install ok installed" only for a fully installed package.
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
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
# (@grpc/grpc-js, @grpc/proto-loader, js-yaml) and lodash for the chapter-15 test function.
# Skipped when node_modules is already newer than the lock file. Install scripts are not
# run: none of these packages needs one (no native code).
ROOT=$(cd "$(dirname "$0")/.." && pwd)
for d in function-node test/integration/functions/node-lodash; do
  lock=$ROOT/$d/package-lock.json
  [ -f "$lock" ] || continue
  if [ -f "$ROOT/$d/node_modules/.package-lock.json" ] && [ "$ROOT/$d/node_modules/.package-lock.json" -nt "$lock" ]; then
    echo "deps: $d/node_modules up to date"
  else
    echo "deps: npm ci in $d"
    (cd "$ROOT/$d" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund)
  fi
done
