/* How a service of the application becomes a Docker container (SPEC §5): binds from its
 * mounts, ports, devices and resources mapped to HostConfig, labels, the `baetyl`
 * network. Pure functions (no engine call), so every rule is unit-tested and fuzzed. */
#ifndef BAETYL_MASTER_DOCKER_CONFIG_H
#define BAETYL_MASTER_DOCKER_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "app.h"

#define DOCKER_NETWORK "baetyl"
#define DOCKER_LABEL "baetyl=baetyl"
#define DOCKER_MASTER_LABEL "baetyl-master" /* value: docker_master_id() of the master */
#define DOCKER_MASTER_ID_LEN 12
#define DOCKER_API_SOCKET "/var/run/baetyl.sock" /* the master API inside a container */
#define DOCKER_HOST_GATEWAY "host.docker.internal"

typedef struct {
    const char *pwd;        /* absolute work dir of the master */
    const char *api_socket; /* host path of the master's unix socket; NULL with a tcp API */
    const char *network;    /* the user-defined bridge network (DOCKER_NETWORK) */
    const char *master_id;  /* docker_master_id(): labels the containers of this master */
    bool host_gateway;      /* the engine resolves host-gateway (API 1.41+, Docker 20.10+) */
} docker_ctx;

/* The stable id of a master on a shared engine: the first DOCKER_MASTER_ID_LEN hex digits
 * of the SHA-256 of its work dir's real path (symlinks resolved, so two spellings of one dir
 * are one master). out holds DOCKER_MASTER_ID_LEN + 1 bytes. Returns 0 or -1 with err. */
int docker_master_id(const char *pwd, char *out, char *err, size_t errlen);

/* Adds one `ports` entry, `[ip:][hostport[-end]:]port[-end][/tcp|udp|sctp]`, to the
 * ExposedPorts and PortBindings objects. Returns 0 or -1 with err saying what is wrong. */
int docker_add_port(const char *spec, json_t *exposed, json_t *bindings, char *err, size_t errlen);
/* One `devices` entry, `host[:container][:perms]` (perms of r, w, m; default mrw), as a
 * HostConfig.Devices element (new reference), or NULL with err. */
json_t *docker_device(const char *spec, char *err, size_t errlen);
/* The host directory of a mount, <pwd>/<volume.path> (malloc'd), or NULL with err (unknown
 * volume, a path escaping the work dir, a ':' that a bind cannot carry). */
char *docker_mount_source(const char *pwd, const app_config *app, const app_mount *m, char *err,
                          size_t errlen);
/* The container create body of a service, everything but Env: Image, Cmd (args), labels
 * baetyl=baetyl, service=<name> and baetyl-master=<master_id>, ExposedPorts, HostConfig
 * (Binds, PortBindings, Devices, NanoCpus, CpusetCpus, Memory, MemorySwap, PidsLimit,
 * restart policy `no`, the network, ExtraHosts host.docker.internal:host-gateway with a tcp
 * API or host_gateway) and the network alias <service>. New reference, or NULL with err. */
json_t *docker_service_config(const docker_ctx *ctx, const app_config *app, const app_service *svc,
                              char *err, size_t errlen);
/* Checks the ports and devices of every service (for `baetyl check` in docker mode).
 * Returns 0 or -1 with err naming the entry ("services[0].ports[1]: …"). */
int docker_check_app(const app_config *app, char *err, size_t errlen);

#endif
