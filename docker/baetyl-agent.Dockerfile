# baetyl-agent: the cloud agent (SPEC §15).
# Built by docker/build-images.sh, which puts in rootfs/ the program (/bin/baetyl-agent),
# the shared libraries ldd lists for it, the loader and its cache. No base image: nothing
# runs in the container but the module. Its work dir is / (etc/baetyl/service.yml there).
FROM scratch
COPY rootfs/ /
ENTRYPOINT ["/bin/baetyl-agent"]
