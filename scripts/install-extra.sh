#!/usr/bin/env bash
# Installs the packages that are not C executables: the Python and Node function runtimes.
# Called by `make install MODE=native` as: scripts/install-extra.sh PREFIX BUILD
# Each lands in PREFIX/var/db/baetyl/baetyl-function-<lang>/ with its package.yml (the
# layout the native engine finds through lib/baetyl/<image>), a copy of
# proto/function.proto (read at startup) and, for Node, its node_modules.
set -euo pipefail

if [ $# -lt 1 ] || [ -z "$1" ]; then
  echo "usage: $0 PREFIX [BUILD]" >&2
  exit 2
fi
PREFIX=$1
SRC=$(cd "$(dirname "$0")/.." && pwd)
DB=$PREFIX/var/db/baetyl

# install_pkg NAME SRCDIR ITEM... : a fresh copy of ITEMs of SRCDIR into $DB/NAME.
install_pkg() {
  local name=$1 from=$2
  shift 2
  local dest=$DB/$name
  rm -rf "$dest"
  install -d "$dest/proto"
  for item in "$@"; do
    cp -R "$from/$item" "$dest/"
  done
  install -m 0644 "$SRC/proto/function.proto" "$dest/proto/function.proto"
  find "$dest" -name __pycache__ -type d -prune -exec rm -rf {} +
  chmod -R u+rwX,go+rX,go-w "$dest"
  echo "installed $name into $dest"
}

install_pkg baetyl-function-python "$SRC/function-python" bin baetyl_runtime package.yml

if [ ! -d "$SRC/function-node/node_modules/@grpc/grpc-js" ]; then
  echo "$0: function-node/node_modules is missing: run scripts/deps.sh (npm ci in function-node)" >&2
  exit 1
fi
install_pkg baetyl-function-node "$SRC/function-node" bin lib package.json package-lock.json \
  node_modules package.yml
