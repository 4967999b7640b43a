# baetyl-function-node: the Node.js function runtime (SPEC §12).
# Built by docker/build-images.sh: debian.tar is a minimal Debian root (debootstrap
# --variant=minbase) with Debian's nodejs; rootfs/ adds the runtime with its node_modules at
# /usr/local/lib/baetyl/baetyl-function-node. A Dockerfile FROM this image can
# `apt-get install` Debian packages (docs/native-packages.md). Functions' code arrives
# through a mount.
FROM scratch
ADD debian.tar /
COPY rootfs/ /
ENTRYPOINT ["/usr/bin/node", "/usr/local/lib/baetyl/baetyl-function-node/bin/baetyl-function-node"]
