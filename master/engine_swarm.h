/* The swarm engine's service specs (engine_swarm_spec.c): how a service of the application
 * becomes a Docker swarm service (POST /services/create). Pure functions, unit-tested. */
#ifndef BAETYL_MASTER_ENGINE_SWARM_H
#define BAETYL_MASTER_ENGINE_SWARM_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "app.h"

#define SWARM_NAME_MAX 63
#define SWARM_INSTANCE_LABEL "baetyl-instance"
#define SWARM_SPEC_LABEL "baetyl-spec" /* swarm_spec_hash() of the spec the master made */
#define SWARM_MONITOR_NS 5000000000LL  /* an updated task that fails within this rolls back */

typedef struct {
    const char *pwd;       /* absolute work dir: bind sources (the same path on every node) */
    const char *network;   /* the overlay network */
    const char *master_id; /* docker_master_id() */
    int64_t grace_ms;      /* StopGracePeriod */
} swarm_ctx;

/* The swarm service name of an instance (SWARM_NAME_MAX + 1 bytes): the instance name when
 * it is a DNS label already, else its letters and digits joined by '-' and a hash of it.
 * Returns 0, or -1 when out is too small or the name has no letter or digit. */
int swarm_name(const char *instance, char *out, size_t outlen);
/* The spec of one instance of svc, all but Name, Env and the instance's labels: one replica,
 * ContainerSpec (Image, Args, bind Mounts, labels, StopGracePeriod), Resources.Limits,
 * RestartPolicy from restart, Placement from placement, the network with alias <service>,
 * EndpointSpec dnsrr with host-mode ports, UpdateConfig and RollbackConfig (in place, one
 * task at a time, rolled back on failure; start-first unless ports or writable binds).
 * devices, port addresses and host port ranges are errors (a swarm has none). New
 * reference, or NULL with err naming the field. */
json_t *swarm_service_spec(const swarm_ctx *ctx, const app_config *app, const app_service *svc,
                           char *err, size_t errlen);
/* Completes a copy of that spec for one instance: Name, Env, labels, alias. Returns 0 or -1. */
int swarm_instance_spec(json_t *spec, const char *name, const char *instance, char *const env[]);
/* 32 hex digits of the SHA-256 of the spec (keys sorted) into out (33+ bytes). 0 or -1. */
int swarm_spec_hash(const json_t *spec, char *out, size_t outlen);

#endif
