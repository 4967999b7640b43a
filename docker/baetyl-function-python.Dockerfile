# baetyl-function-python: the Python 3 function runtime (SPEC §12).
# Built by docker/build-images.sh, which puts in rootfs/ the host's /usr/bin/python3 with
# its libraries and standard library, the Debian packages the runtime imports (grpc,
# google.protobuf, yaml) and the runtime at /usr/local/lib/baetyl/baetyl-function-python.
# Functions' code arrives through a mount, as in Baetyl 1.0.
FROM scratch
COPY rootfs/ /
ENTRYPOINT ["/usr/bin/python3", "/usr/local/lib/baetyl/baetyl-function-python/bin/baetyl-function-python"]
