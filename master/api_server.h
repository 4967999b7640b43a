/* The master API (SPEC §7) on the SDK's HTTP server, over a unix socket (0660, removed at
 * stop) or tcp. Every route checks the service account; bodies are limited to API_MAX_BODY. */
#ifndef BAETYL_MASTER_API_SERVER_H
#define BAETYL_MASTER_API_SERVER_H

#include <stddef.h>

#include "master.h"
#include "ota.h"

#define API_MAX_BODY (4u << 20) /* a larger body gets 413 */

typedef struct api_server api_server;

/* Listens on m->api and serves requests on their own threads. Returns 0 or -1 with err
 * (e.g. the socket is used by another running master). */
int api_server_start(master *m, ota *o, api_server **out, char *err, size_t errlen);
/* Stops serving (waits for requests in progress), removes the unix socket, frees s. */
void api_server_stop(api_server *s);
/* A listening tcp socket on host:port (host "" = any). Returns the fd or -1 with err. */
int api_listen_tcp(const char *host, const char *port, char *err, size_t errlen);

#endif
