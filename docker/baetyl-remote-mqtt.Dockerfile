# baetyl-remote-mqtt: the bridge to remote MQTT brokers (SPEC §13).
# Built by docker/build-images.sh, which puts in rootfs/ the program (/bin/baetyl-remote-mqtt),
# the shared libraries ldd lists for it, the loader and its cache. No base image: nothing
# runs in the container but the module. Its work dir is / (etc/baetyl/service.yml there).
FROM scratch
COPY rootfs/ /
ENTRYPOINT ["/bin/baetyl-remote-mqtt"]
