# baetyl-function-manager: the function manager (SPEC §12).
# Built by docker/build-images.sh, which puts in rootfs/ the program (/bin/baetyl-function-manager),
# the shared libraries ldd lists for it, the loader and its cache. No base image: nothing
# runs in the container but the module. Its work dir is / (etc/baetyl/service.yml there).
FROM scratch
COPY rootfs/ /
ENTRYPOINT ["/bin/baetyl-function-manager"]
