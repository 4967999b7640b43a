# baetyl-hub: the MQTT hub (SPEC §11).
# Built by docker/build-images.sh, which puts in rootfs/ the program (/bin/baetyl-hub),
# the shared libraries ldd lists for it, the loader and its cache. No base image: nothing
# runs in the container but the module. Its work dir is / (etc/baetyl/service.yml there).
FROM scratch
COPY rootfs/ /
ENTRYPOINT ["/bin/baetyl-hub"]
