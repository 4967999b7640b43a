/* baetyl-agent, the cloud link (SPEC §15): reports the master's inspect to the cloud over
 * HTTPS, takes OTA events from the cloud's MQTT broker, downloads and unzips the volumes of
 * the new application, asks the master to update, follows ota.log and cleans up volumes the
 * running app no longer uses. This header is what the agent's files share. */
#ifndef BAETYL_AGENT_H
#define BAETYL_AGENT_H

#include <jansson.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "baetyl/api.h"
#include "baetyl/app_config.h"
#include "baetyl/config.h"
#include "baetyl/context.h"
#include "baetyl/http.h"
#include "baetyl/log.h"
#include "baetyl/mqtt_client.h"
#include "baetyl/otalog.h"

/* Where the host's var/db/baetyl is mounted in the agent's service dir, and the host path
 * itself (relative to the master's work dir, which is the master's cwd). */
#define AGENT_HOST_DB "var/db/baetyl"
#define AGENT_VOLUMES_DIR "var/db/baetyl/volumes"

/* ---- config (config.c) --------------------------------------------------------------- */

typedef struct {
    char *address; /* https://host[:port]; derived from remote.mqtt for Baidu's cloud */
    char *ca;      /* CA of the server (empty = the system store) */
    char *cert;    /* optional client certificate for HTTPS */
    char *key;
    int64_t timeout; /* ms */
} agent_http_config;

typedef struct {
    bt_mqtt_client_config mqtt; /* remote.mqtt: ssl:// or wss:// with a client certificate */
    agent_http_config http;     /* remote.http */
    char *report_url;           /* remote.report.url (/v3/edge/info) */
    int64_t report_interval;    /* remote.report.interval (20s) */
    char *desire_topic;         /* remote.desire.topic; "%s" = the client id */
    int64_t ota_timeout;        /* ota.timeout (5m) */
    char *ota_log_path;         /* ota.logger.path (var/db/baetyl/volumes/ota.log) */
    bt_logger_config logger;
} agent_config;

extern const bt_cfg_schema agent_config_schema;

/* Completes a loaded config: the desire topic with the client id, the HTTP address derived
 * when absent (Baidu's cloud), checks what the schema cannot. Returns 0 or -1 with err. */
int agent_config_finish(agent_config *c, char *err, size_t errlen);

/* ---- crypto (crypto.c) --------------------------------------------------------------- */

/* Base64 (standard alphabet, padded, no newlines) of buf; malloc'd, NULL when out of memory. */
char *agent_base64(const unsigned char *buf, size_t len);
/* AES-256-CBC with a zero IV and PKCS#7 padding; *out malloc'd. Returns 0 or -1 with err. */
int agent_aes_encrypt(const unsigned char key[32], const unsigned char *in, size_t inlen,
                      unsigned char **out, size_t *outlen, char *err, size_t errlen);
/* Loads an RSA private key (PEM). NULL with err when unreadable or not RSA. */
EVP_PKEY *agent_load_rsa_key(const char *path, char *err, size_t errlen);
/* RSA "private-key encryption" of in (PKCS#1 v1.5 type 1 padding, no digest info): what
 * the cloud decrypts with the public key. *out malloc'd. Returns 0 or -1 with err. */
int agent_rsa_private_encrypt(EVP_PKEY *key, const unsigned char *in, size_t inlen,
                              unsigned char **out, size_t *outlen, char *err, size_t errlen);
/* Serial number of the first certificate of a PEM file, in decimal; malloc'd, or NULL
 * with err. */
char *agent_cert_serial(const char *path, char *err, size_t errlen);
/* MD5 of a file as base64 of the raw digest (how the cloud writes it). Returns 0 (out
 * holds 24 characters + NUL) or -1 with err. */
int agent_file_md5(const char *path, char out[32], char *err, size_t errlen);

/* ---- hostile text in errors (shown.c) ------------------------------------------------ */

/* Copies s (NULL = "") into out, cut to n-1 bytes, control characters as '?'. */
void agent_shown(char *out, size_t n, const char *s);

/* ---- events from the cloud (event.c) ------------------------------------------------- */

/* A volume (name, path under var/db/baetyl, meta url/md5/version): the SDK's type, so an
 * event's volume and an application.yml's are the same thing. */
typedef bt_app_volume agent_volume;

typedef struct {
    char *type; /* "APP" */
    char *trace;
    char *version;
    agent_volume volume;
    char *error; /* set (by the caller) for an event that names its OTA but cannot be used */
} agent_ota_event;

/* Parses a message of the desire topic. OTA (or the old UPDATE form) fills ev (free it with
 * agent_event_free) and returns 0. An OTA event with a valid trace but content that cannot
 * be used (e.g. no meta.md5) returns -2 with err, and ev holds its trace and type (free it):
 * its failure goes to ota.log. Anything else returns -1 with err ("event type (X)
 * unexpected", "event invalid: ...", "event content invalid: ..."). */
int agent_event_parse(const void *payload, size_t len, agent_ota_event *ev, char *err,
                      size_t errlen);
/* Frees the strings of ev and zeroes it. */
void agent_event_free(agent_ota_event *ev);
/* Frees the strings of v and zeroes it. */
void agent_volume_free(agent_volume *v);

/* ---- ota.log (otalog.c) -------------------------------------------------------------- */

/* Steps of ota.log (SPEC §9, §15). */
#define OTA_RECEIVED "RECEIVED"
#define OTA_UPDATED "UPDATED"
#define OTA_ROLLEDBACK "ROLLEDBACK"
#define OTA_FAILURE "FAILURE"
#define OTA_TIMEOUT "TIMEOUT"

/* Lines are written and the last trace read by the SDK (bt_otalog_write,
 * bt_otalog_last_trace), like the master's. */
/* The records of trace in the ota.log at path, as a JSON array of {"time","step","trace"
 * [,"error"]}, from its latest RECEIVED on (a trace sent again starts over); a missing file
 * is an empty array. Unparsable lines are skipped. NULL when out of memory. */
json_t *otalog_records(const char *path, const char *trace);
/* True when the last record of an array from otalog_records ends an OTA (UPDATED,
 * ROLLEDBACK, FAILURE or TIMEOUT); *step (if not NULL) = that step (borrowed). */
bool otalog_finished(const json_t *records, const char **step);

/* ---- volumes (download.c, unzip.c) --------------------------------------------------- */

/* Sets what every request to the cloud shares: remote.http's TLS settings (the server is
 * always verified; bt_http_request speaks https only, redirects too) and the cancel fd. */
void agent_http_setup(bt_http_req *q, const agent_http_config *http);
/* Makes every transfer in progress or to come fail at once (the agent stops). */
void agent_cancel_transfers(void);

/* Downloads url (https only, redirects to https only) into path, at most max bytes.
 * Returns 0, or -1 with err (transport error, a status other than 200, too large). */
int agent_download(const agent_http_config *http, const char *url, const char *path, int64_t max,
                   char *err, size_t errlen);

/* Where a volume goes: the container dir (var/db/baetyl/volumes/<rel>) the agent writes
 * and the host dir (var/db/baetyl/<rel>) the master reads. Refuses a path that is not a
 * clean relative path strictly under var/db/baetyl. Both malloc'd; 0 or -1 with err. */
int agent_volume_dirs(const agent_volume *v, char **container_dir, char **host_dir, char *err,
                      size_t errlen);
/* Makes a volume ready unless a file with meta.md5 is already in its container dir: downloads
 * <name>.zip from meta.url (one retry, 1s later unless ctx stops), checks the MD5 and unzips
 * it, all in a directory next to the container dir that replaces it only when the volume is
 * whole and is removed on any failure. Returns 0 or -1 with err. container_dir and host_dir
 * (if not NULL) get the dirs (malloc'd). */
int agent_volume_prepare(bt_ctx *ctx, const agent_http_config *http, const agent_volume *v,
                         char **container_dir, char **host_dir, char *err, size_t errlen);

/* Largest volume archive downloaded, and largest total unpacked (decided here). */
#define AGENT_ZIP_MAX ((int64_t)1 << 30)
#define AGENT_UNZIP_MAX ((int64_t)4 << 30)
#define AGENT_UNZIP_ENTRIES_MAX 100000
/* Unpacking keeps this much of the disk free, and looks again every AGENT_DISK_CHECK bytes. */
#define AGENT_DISK_RESERVE ((int64_t)64 << 20)
#define AGENT_DISK_CHECK ((int64_t)16 << 20)

/* Unzips zip into dir (which exists). Every entry is checked first, and none is written when
 * one would land outside dir: absolute names, ".." segments, symbolic links whose target
 * leaves dir, hard links and special files are refused, and so is an archive whose entries
 * declare more than AGENT_UNZIP_MAX bytes or more than the disk has free. While writing, an
 * entry larger than it declares, a bad CRC, the cap or a disk running full stop it; what was
 * written then stays (agent_volume_prepare unzips into a directory it removes on failure).
 * Returns 0 or -1 with err naming the entry. */
int agent_unzip(const char *zip, const char *dir, char *err, size_t errlen);
/* 0 when the filesystem of path has need bytes free on top of AGENT_DISK_RESERVE; -1 with
 * err saying how much is free otherwise. */
int agent_disk_room(const char *path, int64_t need, char *err, size_t errlen);

/* What the agent reads of an application.yml: its version, its services (only counted)
 * and its volumes (agent_volume elements; those with a meta.url are downloaded). */
typedef bt_app_config agent_app;
/* Loads path with the SDK's application schema (unknown keys are warnings, an unknown
 * top-level key an error); an app that does not write "services" is refused, as the master
 * refuses it for an OTA. Returns 0 or -1 with err. */
int agent_app_load(const char *path, agent_app *app, char *err, size_t errlen);
/* Frees what agent_app_load allocated. */
void agent_app_free(agent_app *app);

/* ---- cleanup (cleanup.c) ------------------------------------------------------------- */

/* Removes the directories under target (the host's var/db/baetyl seen through the mount)
 * that no volume path in volumes (a JSON array of {"path"}, paths relative to the work dir)
 * uses; prefix is the host's var/db/baetyl. Only real directories are removed, symbolic
 * links and files are kept; volume paths equal to prefix or outside it are ignored.
 * Returns the number of directories removed, or -1 with err. */
int agent_cleanup(const char *prefix, const char *target, const json_t *volumes, char *err,
                  size_t errlen);

/* ---- the agent (main.c, report.c, ota.c) --------------------------------------------- */

typedef struct agent agent;

struct agent {
    bt_ctx *ctx; /* its stop ends every wait of the reporter and the worker */
    agent_config cfg;
    bt_api_client *api;
    EVP_PKEY *key; /* remote.mqtt.key */
    char *cert_sn; /* serial of remote.mqtt.cert, decimal */
    bt_mqtt_client *mqtt;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    agent_ota_event *pending; /* the next OTA event (one slot: a newer one replaces it) */
    char *ota_trace;          /* the OTA being followed, NULL when none */
    json_t *ota_records;      /* its records */
    pthread_t reporter, worker;
};

/* Builds the report (the master's inspect, or {"error","time"} when the master does not
 * answer, plus "ota" when ota is a non-empty object) and POSTs it. Returns 0 or -1 with err. */
int agent_report(agent *a, const json_t *ota, char *err, size_t errlen);
/* Encrypts a report body: *body = base64(AES(json)), *key64 = base64(RSA(aes key)). */
int agent_report_encrypt(EVP_PKEY *key, const char *json, size_t len, char **body, char **key64,
                         char *err, size_t errlen);
/* The reporter thread: a report every interval, or at once when asked. */
void *agent_reporter_main(void *arg);
/* The OTA worker thread: resumes an unfinished OTA of ota.log, then processes events. */
void *agent_worker_main(void *arg);
/* Hands an event to the worker (replacing one still waiting, which is logged). Takes ev. */
void agent_queue_event(agent *a, agent_ota_event *ev);

#endif
