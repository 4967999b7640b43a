# baetyl-function-python: the Python 3 function runtime (SPEC §12).
# Built by docker/build-images.sh: debian.tar is a minimal Debian root (debootstrap
# --variant=minbase) with Debian's python3 and the packages the runtime imports (grpc,
# google.protobuf, yaml); rootfs/ adds the runtime at /usr/local/lib/baetyl/
# baetyl-function-python. A Dockerfile FROM this image can `apt-get install python3-numpy`
# and the like (docs/native-packages.md). Functions' code arrives through a mount, as in
# Baetyl 1.0.
FROM scratch
ADD debian.tar /
COPY rootfs/ /
ENTRYPOINT ["/usr/bin/python3", "/usr/local/lib/baetyl/baetyl-function-python/bin/baetyl-function-python"]
