#!/usr/bin/env bash
# Makes the certificates of a TLS test setup with openssl, into DIR:
#   ca.pem ca.key           a self-signed CA (keep ca.key to sign more client certificates)
#   server.pem server.key   the hub's certificate, for 127.0.0.1, ::1 and localhost (and NAME…)
#   client.pem client.key   a client certificate (CN=client) for two-way TLS logins
# Keys are EC P-256, created 0600. An existing DIR/ca.pem is kept (rerunning an install must
# not invalidate certificates users already copied) unless --force is given.
#
#   scripts/gen-certs.sh [--force] DIR [EXTRA_HOSTNAME...]
set -euo pipefail

force=0
if [ "${1:-}" = "--force" ]; then
  force=1
  shift
fi
if [ $# -lt 1 ] || [ -z "$1" ]; then
  echo "usage: $0 [--force] DIR [EXTRA_HOSTNAME...]" >&2
  exit 2
fi
dir=$1
shift
command -v openssl >/dev/null || { echo "$0: openssl not found" >&2; exit 1; }

if [ -f "$dir/ca.pem" ] && [ $force -eq 0 ]; then
  echo "certificates already in $dir (use --force to replace them)"
  exit 0
fi
mkdir -p "$dir"
umask 077
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

san="IP:127.0.0.1,IP:::1,DNS:localhost"
for h in "$@"; do
  case $h in
    *[!0-9.]*) san="$san,DNS:$h" ;;
    *) san="$san,IP:$h" ;;
  esac
done

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

# CA
key "$tmp/ca.key"
openssl req -x509 -new -key "$tmp/ca.key" -sha256 -days 3650 -subj "/O=Baetyl/CN=Baetyl test CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out "$tmp/ca.pem"

# leaf NAME CN EXTENSIONS...
leaf() {
  local name=$1 cn=$2
  shift 2
  key "$tmp/$name.key"
  openssl req -new -key "$tmp/$name.key" -subj "/O=Baetyl/CN=$cn" -out "$tmp/$name.csr"
  printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" "$@" \
    > "$tmp/$name.ext"
  openssl x509 -req -in "$tmp/$name.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" -CAcreateserial \
    -days 825 -sha256 -extfile "$tmp/$name.ext" -out "$tmp/$name.pem" 2>/dev/null
}
leaf server localhost "extendedKeyUsage=serverAuth" "subjectAltName=$san"
leaf client client "extendedKeyUsage=clientAuth"

for f in ca server client; do
  install -m 0644 "$tmp/$f.pem" "$dir/$f.pem"
  install -m 0600 "$tmp/$f.key" "$dir/$f.key"
done
echo "certificates written to $dir: ca.pem, server.pem/.key, client.pem/.key (CA key: ca.key)"
