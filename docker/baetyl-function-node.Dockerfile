# baetyl-function-node: the Node.js function runtime (SPEC §12).
# Built by docker/build-images.sh, which puts in rootfs/ the host's node with its
# libraries and the runtime with its node_modules at
# /usr/local/lib/baetyl/baetyl-function-node. Functions' code arrives through a mount.
FROM scratch
COPY rootfs/ /
ENTRYPOINT ["/usr/bin/node", "/usr/local/lib/baetyl/baetyl-function-node/bin/baetyl-function-node"]
