#!/usr/bin/env bash
# Builds the Docker images of the modules on the local Docker engine (no registry needed):
# each image is FROM scratch with the module's program, the shared libraries `ldd` lists
# for it and those it loads on first use (and the dynamic loader), an ld.so.cache for them, CA certificates and /tmp.
#
#   docker/build-images.sh [-b BUILD_DIR] [-t TAG] [-n] [IMAGE...]
#
# BUILD_DIR (default build) holds the binaries (BUILD_DIR/bin/baetyl-*); TAG defaults to
# latest. IMAGE names: baetyl-hub, baetyl-function-sql, … (every docker/<IMAGE>.Dockerfile),
# default all; a C module whose binary is not built is skipped with a note. The Python and
# Node runtimes are Debian's python3 (with the packages the runtime imports) or nodejs on a
# minimal Debian root (docker/debian-root.sh: made once, cached in build/debian-rootfs or
# $BAETYL_DEBIAN_CACHE), so a Dockerfile FROM them can apt-get install Debian packages;
# without a reachable mirror they copy the host's python3 or node instead, FROM scratch.
# Each image is also tagged with the names Baetyl 1.0's docs use (hub.baidubce.com/baetyl/
# baetyl-hub:latest, :0.1.6, :1.0.0, baetyl-function-python27/-python36/-node85, …), so their
# application.yml files run unchanged; -n leaves those names alone.
#
#   docker/build-images.sh -x PROGRAM [-f DOCKERFILE] NAME[:TAG]
#
# A module of your own (written with the SDK, built outside this tree) as image NAME: the
# same FROM-scratch root with PROGRAM at /bin/<its file name>, and DOCKERFILE (default: FROM
# scratch, COPY rootfs/ /, ENTRYPOINT the program) to add files or set its entrypoint.
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$SRC/build
# the runtimes' Debian roots, shared by the build dirs (build, build/san, ...)
DEBIAN_CACHE=${BAETYL_DEBIAN_CACHE:-$SRC/build/debian-rootfs}
TAG=latest
SEED_NAMES=1
PROGRAM="" OWN_DOCKERFILE=""
usage() { sed -n '2,/^[^#]/{/^#/p}' "$0" | sed 's/^# \{0,1\}//'; }
while getopts "b:t:nx:f:h" o; do
  case $o in
    x) PROGRAM=$OPTARG ;;
    f) OWN_DOCKERFILE=$OPTARG ;;
    b) BUILD=$(cd "$OPTARG" && pwd) ;;
    t) TAG=$OPTARG ;;
    n) SEED_NAMES=0 ;;
    h) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))

command -v docker >/dev/null || { echo "$0: the docker client is not installed (apt-get install docker.io)" >&2; exit 1; }
docker info >/dev/null 2>&1 || {
  echo "$0: no Docker engine answers at ${DOCKER_HOST:-unix:///var/run/docker.sock}" \
    "(start it: systemctl start docker, or dockerd &)" >&2
  exit 1
}

if [ $# -eq 0 ]; then
  for df in "$SRC"/docker/*.Dockerfile; do
    n=${df##*/}
    set -- "$@" "${n%.Dockerfile}"
  done
fi

CTX=""
cleanup() { [ -n "$CTX" ] && rm -rf "$CTX"; CTX=""; }
trap cleanup EXIT

# add_file SRC [DEST]: SRC (symlinks followed) into the image at DEST (default: the same path).
add_file() {
  local src=$1 dst=${2:-$1}
  mkdir -p "$CTX/rootfs$(dirname "$dst")"
  cp -L "$src" "$CTX/rootfs$dst"
}

# Libraries a program dlopen()s on first use rather than linking them (baetyl/ossl.h:
# OpenSSL, for TLS; the agent's libarchive): ldd does not list them.
LAZY_LIBS="libssl.so.3 libcrypto.so.3 libarchive.so.13"

# lazy_libs FILE: those of LAZY_LIBS the dynamic program FILE names, from the target's
# multiarch directories.
lazy_libs() {
  local so d triplet=${CROSS_TRIPLET:-$(gcc -dumpmachine 2>/dev/null || echo "$(uname -m)-linux-gnu")}
  readelf -d "$1" 2>/dev/null | grep -q NEEDED || return 0 # static: nothing to load
  for so in $LAZY_LIBS; do
    grep -qaF "$so" "$1" || continue
    for d in "/lib/$triplet" "/usr/lib/$triplet"; do
      if [ -e "$d/$so" ]; then echo "$d/$so"; break; fi
    done
  done
}

# add_libs FILE...: the shared libraries these ELF files load (lazy ones too), and the
# loader, at the paths ldd found them.
add_libs() {
  local f out line p lazy
  for f in "$@"; do
    for lazy in $(lazy_libs "$f"); do
      [ -e "$CTX/rootfs$lazy" ] || { add_file "$lazy"; add_libs "$lazy"; }
    done
    out=$(ldd "$f" 2>/dev/null) || continue # not dynamic
    while IFS= read -r line; do
      case $line in
        *"not found"*) echo "$0: $f: ${line# }" >&2; return 1 ;;
        *"=> /"*) p=${line#*=> }; p=${p%% (*} ;;
        *[[:space:]]/*|/*) p=${line#"${line%%/*}"}; p=${p%% (*} ;;
        *) continue ;;
      esac
      [ -e "$CTX/rootfs$p" ] || add_file "$p"
    done <<<"$out"
  done
}

# finish_rootfs: the loader cache of every copied library dir, CA certificates, /tmp, a
# passwd for root.
finish_rootfs() {
  local r=$CTX/rootfs
  mkdir -p "$r/etc" "$r/tmp" "$r/var/db/baetyl" "$r/var/log/baetyl" "$r/var/run"
  chmod 1777 "$r/tmp"
  if [ -z "${NO_CA:-}" ] && [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    add_file /etc/ssl/certs/ca-certificates.crt
  fi
  printf 'root:x:0:0:root:/root:/bin/sh\n' >"$r/etc/passwd"
  printf 'root:x:0:\n' >"$r/etc/group"
  (cd "$r" && find . -name '*.so*' -type f -printf '/%h\n' | sed 's|^/\./|/|' | sort -u) >"$r/etc/ld.so.conf"
  if [ -s "$r/etc/ld.so.conf" ]; then
    ldconfig -r "$r" 2>/dev/null || /sbin/ldconfig -r "$r"
  else
    rm "$r/etc/ld.so.conf" # a static program: no loader
  fi
}

# c_module IMAGE: the C program at /bin/IMAGE, stripped: BUILD/image/IMAGE when the build
# made one for the image (hub, timer, remote-mqtt: static), else BUILD/bin/IMAGE. A static
# program takes no libraries; the hub opens no TLS connection of its own, so no CA bundle.
c_module() {
  local img=$1 bin=$BUILD/bin/$1 strip=${CROSS_TRIPLET:+$CROSS_TRIPLET-}strip
  [ -x "$BUILD/image/$img" ] && bin=$BUILD/image/$img
  if [ ! -x "$bin" ]; then
    echo "skip $img: $bin is not built"
    return 2
  fi
  add_file "$bin" "/bin/$img"
  if command -v "$strip" >/dev/null; then
    "$strip" --strip-unneeded --remove-section=.comment "$CTX/rootfs/bin/$img"
  fi
  add_libs "$bin"
  [ "$img" != baetyl-hub ] || NO_CA=1
}

# debian_root NAME PACKAGE...: the runtime's Debian root (docker/debian-root.sh, cached under
# $DEBIAN_CACHE) as $CTX/debian.tar, which its Dockerfile ADDs first; 1 when it cannot be made
# (no mirror reachable): the caller then copies the host's interpreter instead.
debian_root() {
  local tar
  tar=$("$SRC/docker/debian-root.sh" "$DEBIAN_CACHE" "$@") || return 1
  ln "$tar" "$CTX/debian.tar" 2>/dev/null || cp "$tar" "$CTX/debian.tar"
  mkdir -p "$CTX/rootfs/var/db/baetyl" "$CTX/rootfs/var/log/baetyl"
}

# no_debian_root IMAGE: the fallback's empty debian.tar, and a note that apt is missing.
no_debian_root() {
  echo "  $1: no Debian root (see above): the host's interpreter is copied instead;" \
    "a Dockerfile FROM this image cannot apt-get install"
  tar -cf "$CTX/debian.tar" -T /dev/null
}

# python_runtime: Debian's python3 with the packages the runtime imports (hpack, protobuf,
# yaml) on a minbase root, and the runtime.
python_runtime() {
  if debian_root python python3 python3-hpack python3-protobuf python3-yaml ca-certificates; then
    runtime_files python
    return 0
  fi
  no_debian_root baetyl-function-python
  host_python
  runtime_files python
}

# host_python: the fallback root: /usr/bin/python3, its standard library (tests, IDLE and Tk
# left out), the Debian packages the runtime imports and the libraries they load.
host_python() {
  local py; py=$(readlink -f /usr/bin/python3)
  local ver; ver=$(/usr/bin/python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  local r=$CTX/rootfs dp=/usr/lib/python3/dist-packages
  add_file "$py" /usr/bin/python3
  add_libs "$py"
  mkdir -p "$r/usr/lib" "$r$dp"
  (cd /usr/lib && tar -cf - --exclude=__pycache__ --exclude="python$ver/test" --exclude="python$ver/idlelib" \
     --exclude="python$ver/tkinter" --exclude="python$ver/ensurepip" --exclude="python$ver/lib2to3" \
     --exclude="python$ver/turtledemo" "python$ver") | tar -xf - -C "$r/usr/lib"
  local pkgs=(hpack google yaml _yaml)
  for p in "${pkgs[@]}"; do
    [ -e "$dp/$p" ] || { echo "$0: $dp/$p is missing (apt-get install python3-hpack python3-protobuf python3-yaml)" >&2; return 1; }
    (cd "$dp" && tar -cf - --exclude=__pycache__ "$p") | tar -xf - -C "$r$dp"
  done
  # the distribution metadata (importlib.metadata and pkg_resources read it)
  (cd "$dp" && tar -cf - hpack-*info protobuf-*info PyYAML-*info 2>/dev/null) | tar -xf - -C "$r$dp" || true
  local so=()
  while IFS= read -r -d '' f; do so+=("$f"); done < <(find "/usr/lib/python$ver/lib-dynload" -name '*.so' -print0;
    for p in "${pkgs[@]}"; do find "$dp/$p" -name '*.so' -print0; done)
  add_libs "${so[@]}"
  finish_rootfs
}

# node_runtime: Debian's nodejs on a minbase root, and the runtime with its node_modules.
node_runtime() {
  [ -d "$SRC/function-node/node_modules/@grpc/grpc-js" ] ||
    { echo "$0: function-node/node_modules is missing: run scripts/deps.sh" >&2; return 1; }
  if ! debian_root node nodejs ca-certificates; then
    no_debian_root baetyl-function-node
    local node; node=$(command -v node || true)
    [ -n "$node" ] || { echo "$0: node is not installed" >&2; return 1; }
    add_file "$(readlink -f "$node")" /usr/bin/node
    add_libs "$(readlink -f "$node")"
    finish_rootfs
  fi
  runtime_files node
}

# runtime_files python|node: the function runtime at /usr/local/lib/baetyl/baetyl-function-*.
runtime_files() {
  local dst=$CTX/rootfs/usr/local/lib/baetyl/baetyl-function-$1 f
  mkdir -p "$dst/proto"
  case $1 in
    python) cp -R "$SRC/function-python/bin" "$SRC/function-python/baetyl_runtime" \
              "$SRC/function-python/package.yml" "$dst/" ;;
    node) for f in bin lib package.json node_modules package.yml; do
            cp -R "$SRC/function-node/$f" "$dst/"
          done ;;
  esac
  cp "$SRC/proto/function.proto" "$dst/proto/"
  find "$dst" -name __pycache__ -type d -prune -exec rm -rf {} +
}

# seed_names IMAGE: the names Baetyl 1.0's docs give this image (the runtimes map onto the
# project's Python 3 and Node runtimes; python36:0.1.6-opencv41 has no OpenCV).
seed_names() {
  local r=hub.baidubce.com/baetyl v t
  local tags=(latest 0.1.6 1.0.0)
  case $1 in
    baetyl-function-python) v=(baetyl-function-python27 baetyl-function-python36) ;;
    baetyl-function-node) v=(baetyl-function-node85) ;;
    *) v=("$1") ;;
  esac
  for n in "${v[@]}"; do
    for t in "${tags[@]}"; do echo "$r/$n:$t"; done
  done
  case $1 in
    baetyl-hub) echo hub.baidubce.com/baetyl-hub:latest ;;
    baetyl-function-python) echo "$r/baetyl-function-python36:0.1.6-opencv41" ;;
    baetyl-video-infer) for t in latest 0.1.6; do echo "hub.baidubce.com/baetyl-beta/$1:$t"; done ;;
  esac
}

human() { numfmt --to=si --suffix=B --format=%.1f "$1" 2>/dev/null || echo "$1 bytes"; }

# own_module NAME: PROGRAM as the image NAME (see -x above).
own_module() {
  local name=$1 bin; bin=$(basename "$PROGRAM")
  [ -x "$PROGRAM" ] || { echo "$0: $PROGRAM is not an executable file" >&2; exit 1; }
  if [ -n "$OWN_DOCKERFILE" ] && [ ! -f "$OWN_DOCKERFILE" ]; then
    echo "$0: no $OWN_DOCKERFILE" >&2
    exit 1
  fi
  CTX=$(mktemp -d /tmp/baetyl-image.XXXXXX)
  mkdir -p "$CTX/rootfs"
  add_file "$PROGRAM" "/bin/$bin"
  add_libs "$PROGRAM"
  finish_rootfs
  if [ -n "$OWN_DOCKERFILE" ]; then
    cp "$OWN_DOCKERFILE" "$CTX/Dockerfile"
  else
    printf 'FROM scratch\nCOPY rootfs/ /\nENTRYPOINT ["/bin/%s"]\n' "$bin" >"$CTX/Dockerfile"
  fi
  local t0; t0=$(date +%s)
  echo "[1/1] $name: building ($(du -sh "$CTX/rootfs" | cut -f1) of files)"
  docker build -q -t "$name" "$CTX" >/dev/null 2>"$CTX/build.err" ||
    { cat "$CTX/build.err" >&2; exit 1; }
  local size; size=$(docker image inspect -f '{{.Size}}' "$name")
  echo "[1/1] $name: $(human "$size") in $(($(date +%s) - t0))s"
  cleanup
  echo "built: $name"
}

if [ -n "$PROGRAM" ]; then
  [ $# -eq 1 ] || { echo "$0: -x PROGRAM takes one image name" >&2; exit 2; }
  own_module "$1"
  exit 0
fi

built=() skipped=()
n=0
for img in "$@"; do
  n=$((n + 1))
  t0=$(date +%s)
  df=$SRC/docker/$img.Dockerfile
  [ -f "$df" ] || { echo "$0: no $df" >&2; exit 1; }
  cleanup
  CTX=$(mktemp -d /tmp/baetyl-image.XXXXXX)
  mkdir -p "$CTX/rootfs"
  rc=0 NO_CA=""
  case $img in
    baetyl-function-python) python_runtime || rc=$? ;;
    baetyl-function-node) node_runtime || rc=$? ;;
    *) c_module "$img" || rc=$? ;;
  esac
  if [ $rc -eq 2 ]; then skipped+=("$img"); continue; fi
  [ $rc -eq 0 ] || exit 1
  [ -e "$CTX/debian.tar" ] || finish_rootfs # the runtimes finish their own root
  cp "$df" "$CTX/Dockerfile"
  files=$( (du -shc "$CTX/rootfs" "$CTX/debian.tar" 2>/dev/null || true) | tail -1 | cut -f1)
  echo "[$n/$#] $img:$TAG: building ($files of files)"
  docker build -q -t "$img:$TAG" "$CTX" >/dev/null 2>"$CTX/build.err" || { cat "$CTX/build.err" >&2; exit 1; }
  also=""
  if [ $SEED_NAMES -eq 1 ]; then
    # an array, not `echo | head`: under pipefail a pipe's writer can die of SIGPIPE (141)
    mapfile -t aliases < <(seed_names "$img")
    for alias in "${aliases[@]}"; do docker tag "$img:$TAG" "$alias"; done
    also=", also ${aliases[0]} and $((${#aliases[@]} - 1)) more seed names"
  fi
  size=$(docker image inspect -f '{{.Size}}' "$img:$TAG")
  echo "[$n/$#] $img:$TAG: $(human "$size") in $(($(date +%s) - t0))s$also"
  built+=("$img:$TAG")
done
cleanup
echo "built: ${built[*]:-none}"
[ ${#skipped[@]} -eq 0 ] || echo "skipped (not built): ${skipped[*]}"
