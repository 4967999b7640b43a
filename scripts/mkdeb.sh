#!/usr/bin/env bash
# Debian packages of one platform's build (`make deb` calls it):
#
#   scripts/mkdeb.sh -p PLATFORM -b BUILD_DIR -o OUT_DIR -v VERSION
#
#   baetyl_<v>_<arch>.deb               the master (/usr/bin/baetyl), every module and the
#                                        Python/Node runtimes as native packages under
#                                        /usr/lib/baetyl/<image>, the example application,
#                                        a systemd unit
#   baetyl-dev_<v>_<arch>.deb           the SDK: headers, static library, pkg-config file
#   baetyl-video-infer_<v>_<arch>.deb   video-infer alone (when built): OpenCV pulls some 200
#                                        packages a gateway without a camera should not carry
#
# Layout: the master in /usr/bin takes / as its work dir (master/cli.c), so the seed's
# /usr/local/etc/baetyl is /etc/baetyl and /usr/local/var/db/baetyl is /var/db/baetyl. The
# example's configs and code are conffiles under /etc/baetyl; /var/db/baetyl holds symlinks
# to them and to the packages, and what the services write at run time (hub store, logs),
# which `apt-get purge` removes and `apt-get remove` keeps.
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
PLATFORM="" BUILD="" OUT="" VERSION=""
usage() { sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; }
while getopts "p:b:o:v:h" o; do
  case $o in
    p) PLATFORM=$OPTARG ;;
    b) BUILD=$OPTARG ;;
    o) OUT=$OPTARG ;;
    v) VERSION=$OPTARG ;;
    h) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done
[ -n "$PLATFORM" ] && [ -n "$BUILD" ] && [ -n "$OUT" ] && [ -n "$VERSION" ] || { usage >&2; exit 2; }
case $PLATFORM in
  linux/amd64) ARCH=amd64 TRIPLET=x86_64-linux-gnu ;;
  linux/arm64) ARCH=arm64 TRIPLET=aarch64-linux-gnu ;;
  linux/arm/v7) ARCH=armhf TRIPLET=arm-linux-gnueabihf ;;
  *) echo "$0: unknown platform $PLATFORM" >&2; exit 2 ;;
esac
STRIP=$TRIPLET-strip
for t in dpkg-deb dpkg-shlibdeps $STRIP; do
  command -v $t >/dev/null || { echo "$0: $t not found: run scripts/deps.sh" >&2; exit 1; }
done
BUILD=$(cd "$BUILD" && pwd)
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
# The packager, as Debian tools name it (DEBFULLNAME, DEBEMAIL).
MAINT="${DEBFULLNAME:-Baetyl-C team} <${DEBEMAIL:-baetyl-c@example.org}>"

# Debian wants a version that starts with a digit: v1.2.3 -> 1.2.3, git-abc1234 -> 0~git.abc1234
case $VERSION in
  v[0-9]*) DEBVER=${VERSION#v} ;;
  git-*) DEBVER="0~git$(git -C "$SRC" log -1 --format=%cd --date=format:%Y%m%d 2>/dev/null).${VERSION#git-}" ;;
  *) DEBVER=$VERSION ;;
esac

overrides() { # overrides ROOT PACKAGE TAG...: what lintian flags on purpose, with the reason
  local root=$1 pkg=$2; shift 2
  install -d "$root/usr/share/lintian/overrides"
  {
    echo "# Baetyl's work dir layout (SPEC §1; the seed's /usr/local/var/db/baetyl): modules find"
    echo "# their packages and volumes under var/db/baetyl of the work dir, which is / here."
    for t in "$@"; do echo "$pkg: $t"; done
  } >"$root/usr/share/lintian/overrides/$pkg"
}

doc_files() { # doc_files ROOT PACKAGE: copyright and changelog, as policy asks of every package
  local d=$1/usr/share/doc/$2
  install -d "$d"
  cat >"$d/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: baetyl-c
Comment: A C implementation of Baetyl 1.0 (LF Edge, Apache-2.0).

Files: *
Copyright: 2026 Baetyl-C authors
License: Apache-2.0
 On Debian systems, the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
EOF
  printf '%s (%s) unstable; urgency=medium\n\n  * Built from %s.\n\n -- %s  %s\n' \
    "$2" "$DEBVER" "$VERSION" "$MAINT" "$(date -R -d @"${SOURCE_DATE_EPOCH:-$(date +%s)}")" \
    | gzip -9n >"$d/changelog.gz" # a native package: no separate upstream changelog
}

# shlibs ROOT FILE...: the Depends that dpkg-shlibdeps finds for these ELF files.
shlibs() {
  local root=$1; shift
  mkdir -p "$WORK/shl/debian"
  printf 'Source: baetyl\n\nPackage: baetyl\nArchitecture: any\n' >"$WORK/shl/debian/control"
  (cd "$WORK/shl" && dpkg-architecture -a"$ARCH" -f -c \
     dpkg-shlibdeps -O -l"/usr/lib/$TRIPLET" "$@" 2>/dev/null) | sed -n 's/^shlibs:Depends=//p'
}

build_deb() { # build_deb ROOT: stripped programs, md5sums, sizes, then the .deb into OUT
  local root=$1 pkg; pkg=$(sed -n 's/^Package: //p' "$root/DEBIAN/control")
  find "$root" -path "$root/DEBIAN" -prune -o -type f -perm -u+x -print | while read -r f; do
    if head -c4 "$f" | grep -q ELF; then $STRIP --strip-unneeded --remove-section=.comment "$f"; fi
  done
  (cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z \
     | xargs -0r md5sum) >"$root/DEBIAN/md5sums"
  local kb; kb=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
  sed -i "s/^Installed-Size: .*/Installed-Size: $kb/" "$root/DEBIAN/control"
  find "$root" -type d -exec chmod 0755 {} +
  dpkg-deb --root-owner-group -Zxz --build "$root" "$OUT/${pkg}_${DEBVER}_${ARCH}.deb" >/dev/null
  echo "  DEB   $OUT/${pkg}_${DEBVER}_${ARCH}.deb ($(du -k "$OUT/${pkg}_${DEBVER}_${ARCH}.deb" | cut -f1) KiB)"
}

# ---- baetyl -----------------------------------------------------------------------------
R=$WORK/baetyl
install -d "$R/DEBIAN" "$R/usr/bin" "$R/usr/lib/baetyl" "$R/var/db/baetyl" "$R/etc/baetyl" \
  "$R/lib/systemd/system"
install -m 0755 "$BUILD/bin/baetyl" "$R/usr/bin/baetyl"
elves=("$R/usr/bin/baetyl")
for b in "$BUILD"/bin/baetyl-*; do
  m=${b##*/}
  [ "$m" = baetyl-video-infer ] && continue
  d=${m#baetyl-}
  install -d "$R/usr/lib/baetyl/$m/bin"
  install -m 0755 "$b" "$R/usr/lib/baetyl/$m/bin/$m"
  install -m 0644 "$SRC/$d/package.yml" "$R/usr/lib/baetyl/$m/package.yml"
  elves+=("$R/usr/lib/baetyl/$m/bin/$m")
done
# the Python and Node runtimes: the same files `make install` puts in place
"$SRC/scripts/install-extra.sh" "$WORK/extra" "$BUILD" >/dev/null
cp -R "$WORK/extra/var/db/baetyl/." "$R/usr/lib/baetyl/"
# a runtime's node_modules carry no native code (scripts/deps.sh: --ignore-scripts); npm's
# packaging leftovers go, and only scripts keep an executable bit
NM=$R/usr/lib/baetyl/baetyl-function-node/node_modules
find "$R/usr/lib/baetyl" -name '*.node' -print -quit | grep -q . && { echo "$0: native node module found" >&2; exit 1; }
find "$NM" -name .npmignore -delete
find "$NM" -type f -perm /111 | while read -r f; do
  head -c2 "$f" | grep -q '#!' || chmod a-x "$f"
done
for p in "$R"/usr/lib/baetyl/*; do
  ln -s "/usr/lib/baetyl/${p##*/}" "$R/var/db/baetyl/${p##*/}"
done
# the example application (the seed's chapters 8 and 9): configs and code as conffiles
EX=$SRC/example/native
install -m 0644 "$EX/etc/baetyl/conf.yml" "$R/etc/baetyl/conf.yml"
sed -i 's|address: unix://var/run/baetyl.sock .*|address: unix:///var/run/baetyl.sock|' "$R/etc/baetyl/conf.yml"
install -m 0644 "$EX/var/db/baetyl/application.yml" "$R/etc/baetyl/application.yml"
ln -s /etc/baetyl/application.yml "$R/var/db/baetyl/application.yml"
for v in "$EX"/var/db/baetyl/*/; do
  v=${v%/}; v=${v##*/}
  cp -R "$EX/var/db/baetyl/$v" "$R/etc/baetyl/$v"
  ln -s "/etc/baetyl/$v" "$R/var/db/baetyl/$v"
done
find "$R/etc/baetyl" -type f -exec chmod 0644 {} +
chmod 0755 "$R"/etc/baetyl/function-*-code/* # the seed's function code keeps its #! line
install -d "$R/usr/share/man/man1"
gzip -9n <"$SRC/scripts/baetyl.1" >"$R/usr/share/man/man1/baetyl.1.gz"
sed -e 's|@PREFIX@/bin/baetyl start -w @PREFIX@|/usr/bin/baetyl start -w /|' \
    -e 's|@PREFIX@/bin/baetyl stop -w @PREFIX@|/usr/bin/baetyl stop -w /|' \
    -e 's|(installed by `make install`)|(Debian package)|' \
    "$SRC/scripts/baetyl.service.in" >"$R/lib/systemd/system/baetyl.service"
doc_files "$R" baetyl
overrides "$R" baetyl "non-standard-dir-in-var [var/db/]" "file-in-unusual-dir [var/db/baetyl/*]"
# the seed's example function starts with #!/usr/bin/env python, kept verbatim
echo "baetyl: unusual-interpreter python [etc/baetyl/function-sayhi-code/index.py]" \
  >>"$R/usr/share/lintian/overrides/baetyl"
(cd "$R" && find etc -type f -printf '/%p\n' | LC_ALL=C sort) >"$R/DEBIAN/conffiles"
# The agent dlopen()s libarchive on its first volume unzip (agent/archive_lib.h): no
# DT_NEEDED for dpkg-shlibdeps to see. (OpenSSL, loaded the same way by the other modules,
# comes in through the agent's libraries.)
DEPS="$(shlibs "$R" "${elves[@]}"), libarchive13 | libarchive13t64"
cat >"$R/DEBIAN/control" <<EOF
Package: baetyl
Version: $DEBVER
Architecture: $ARCH
Maintainer: $MAINT
Installed-Size: 0
Depends: $DEPS, python3, python3-hpack, python3-protobuf, python3-yaml, nodejs
Suggests: mosquitto-clients, docker.io
Section: net
Priority: optional
Homepage: https://github.com/baetyl/baetyl
Description: edge computing framework (Baetyl 1.0 in C): MQTT hub, functions, cloud sync
 Baetyl-C runs on a gateway, a camera box or a factory PC: its master starts and
 supervises the services of an application (native processes or Docker
 containers); its hub is an MQTT broker with durable QoS 1; its function manager
 runs Python, Node and SQL functions on messages; remote-mqtt, timer and agent
 bridge to brokers and the cloud. The example application (the hub and three
 functions on topic t) is in /etc/baetyl; the master's work dir is /.
EOF
install -m 0755 /dev/stdin "$R/DEBIAN/postinst" <<'EOF'
#!/bin/sh
# Starts the master through systemd where systemd runs (a chroot or container without it:
# start it by hand with `baetyl start`).
set -e
if [ "$1" = configure ]; then
    mkdir -p /var/log/baetyl
    deb-systemd-helper enable baetyl.service >/dev/null || true
    if [ -d /run/systemd/system ]; then
        systemctl --system daemon-reload >/dev/null || true
        deb-systemd-invoke restart baetyl.service >/dev/null || true
    fi
fi
exit 0
EOF
install -m 0755 /dev/stdin "$R/DEBIAN/prerm" <<'EOF'
#!/bin/sh
# The master and every service it started go before the files do, however it was started.
set -e
if [ "$1" = remove ] || [ "$1" = upgrade ] || [ "$1" = deconfigure ]; then
    if [ -d /run/systemd/system ]; then
        deb-systemd-invoke stop baetyl.service >/dev/null || true
    fi
    if [ -f /var/run/baetyl.pid ] && command -v baetyl >/dev/null; then
        baetyl stop -w / >/dev/null 2>&1 || true
        i=0
        while [ -f /var/run/baetyl.pid ] && [ $i -lt 120 ]; do sleep 0.5; i=$((i + 1)); done
    fi
fi
exit 0
EOF
install -m 0755 /dev/stdin "$R/DEBIAN/postrm" <<'EOF'
#!/bin/sh
# remove: the master's run files (socket, pid, service dirs) go; data (hub store, logs) stays.
# purge: everything the master and the services wrote.
set -e
case "$1" in
remove)
    rm -rf /var/run/baetyl.sock /var/run/baetyl.pid /var/run/baetyl
    if [ -d /run/systemd/system ]; then systemctl --system daemon-reload >/dev/null || true; fi
    deb-systemd-helper mask baetyl.service >/dev/null || true
    ;;
purge)
    rm -rf /var/db/baetyl /var/log/baetyl /etc/baetyl
    rm -rf /var/run/baetyl.sock /var/run/baetyl.pid /var/run/baetyl
    deb-systemd-helper purge baetyl.service >/dev/null || true
    deb-systemd-helper unmask baetyl.service >/dev/null || true
    ;;
esac
exit 0
EOF
build_deb "$R"

# ---- baetyl-dev -------------------------------------------------------------------------
D=$WORK/dev
install -d "$D/DEBIAN" "$D/usr/include/baetyl" "$D/usr/lib/$TRIPLET/pkgconfig"
install -m 0644 "$SRC"/sdk/include/baetyl/*.h "$D/usr/include/baetyl/"
install -m 0644 "$BUILD/lib/libbaetyl-sdk.a" "$D/usr/lib/$TRIPLET/libbaetyl-sdk.a"
REQ="yaml-0.1 jansson openssl lmdb libarchive libprotobuf-c libnghttp2"
sed -e 's|@PREFIX@|/usr|g' -e "s|@VERSION@|$DEBVER|g" -e "s|@REQUIRES@|$REQ|g" \
    -e "s|^libdir=.*|libdir=\${prefix}/lib/$TRIPLET|" \
    "$SRC/scripts/baetyl-sdk.pc.in" >"$D/usr/lib/$TRIPLET/pkgconfig/baetyl-sdk.pc"
doc_files "$D" baetyl-dev
cat >"$D/DEBIAN/control" <<EOF
Package: baetyl-dev
Source: baetyl
Version: $DEBVER
Architecture: $ARCH
Multi-Arch: same
Maintainer: $MAINT
Installed-Size: 0
Depends: libyaml-dev, libjansson-dev, libssl-dev, liblmdb-dev, libarchive-dev, libnghttp2-dev, libprotobuf-c-dev, pkg-config
Section: libdevel
Priority: optional
Homepage: https://github.com/baetyl/baetyl
Description: Baetyl-C SDK: write custom modules in C
 The static library and headers every Baetyl-C module is built on: config
 schemas, logging, the module context, the master API client, an MQTT client
 with manual acknowledgement, WebSocket, and the gRPC function client/server.
 pkg-config --cflags --libs baetyl-sdk.
EOF
build_deb "$D"

# ---- baetyl-video-infer (when the build has it) -----------------------------------------
if [ -x "$BUILD/bin/baetyl-video-infer" ]; then
  V=$WORK/vi
  install -d "$V/DEBIAN" "$V/usr/lib/baetyl/baetyl-video-infer/bin" "$V/var/db/baetyl"
  install -m 0755 "$BUILD/bin/baetyl-video-infer" "$V/usr/lib/baetyl/baetyl-video-infer/bin/"
  install -m 0644 "$SRC/video-infer/package.yml" "$V/usr/lib/baetyl/baetyl-video-infer/"
  ln -s /usr/lib/baetyl/baetyl-video-infer "$V/var/db/baetyl/baetyl-video-infer"
  doc_files "$V" baetyl-video-infer
  overrides "$V" baetyl-video-infer "non-standard-dir-in-var [var/db/]" \
    "file-in-unusual-dir [var/db/baetyl/*]"
  DEPS=$(shlibs "$V" "$V/usr/lib/baetyl/baetyl-video-infer/bin/baetyl-video-infer")
  cat >"$V/DEBIAN/control" <<EOF
Package: baetyl-video-infer
Source: baetyl
Version: $DEBVER
Architecture: $ARCH
Maintainer: $MAINT
Installed-Size: 0
Depends: $DEPS, baetyl (= $DEBVER)
Section: net
Priority: optional
Homepage: https://github.com/baetyl/baetyl
Description: Baetyl-C video-infer module: camera to DNN to function to MQTT
 Reads frames from a camera, a file or a stream, runs a DNN on them with
 OpenCV, passes the result through a function and publishes it to the hub.
EOF
  build_deb "$V"
fi
