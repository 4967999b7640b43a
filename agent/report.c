/* The report to the cloud (SPEC §15): the master's inspect (+ "ota" while an OTA runs),
 * encrypted with a fresh AES key that travels RSA-encrypted with the client's key, POSTed
 * over HTTPS. */
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent.h"
#include "baetyl/json.h"
#include "baetyl/metrics.h"
#include "baetyl/util.h"

#define ANSWER_MAX 4096 /* of the cloud's answer, kept for error messages */

int agent_report_encrypt(EVP_PKEY *key, const char *json, size_t len, char **body, char **key64,
                         char *err, size_t errlen)
{
    unsigned char aes[32], *enc = NULL, *rsa = NULL;
    size_t enclen = 0, rsalen = 0;
    int rc = -1;
    *body = *key64 = NULL;
    if (RAND_bytes(aes, sizeof aes) != 1) {
        snprintf(err, errlen, "no random key");
        return -1;
    }
    if (agent_aes_encrypt(aes, (const unsigned char *)json, len, &enc, &enclen, err, errlen) < 0 ||
        agent_rsa_private_encrypt(key, aes, sizeof aes, &rsa, &rsalen, err, errlen) < 0)
        goto out;
    *body = agent_base64(enc, enclen);
    *key64 = agent_base64(rsa, rsalen);
    if (!*body || !*key64) {
        free(*body);
        free(*key64);
        *body = *key64 = NULL;
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    rc = 0;
out:
    OPENSSL_cleanse(aes, sizeof aes);
    free(enc);
    free(rsa);
    return rc;
}

/* A 2xx answer is not read (only its status counts); another is kept for the error. */
static int skip(const char *p, size_t n, void *arg)
{
    (void)p, (void)n, (void)arg;
    return 0;
}

/* POST body to <address><report.url> with the agent's headers. */
static int post(agent *a, const char *body, const char *key64, char *err, size_t errlen)
{
    const agent_config *c = &a->cfg;
    char *url = NULL, *h_sn = NULL, *h_key = NULL, *h_id = NULL, *ans = NULL;
    int rc = -1;
    if (asprintf(&url, "%s%s", c->http.address, c->report_url) < 0 ||
        asprintf(&h_sn, "x-iot-edge-sn: %s", a->cert_sn) < 0 ||
        asprintf(&h_key, "x-iot-edge-key: %s", key64) < 0 ||
        asprintf(&h_id, "x-iot-edge-clientid: %s", c->mqtt.clientid) < 0) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    const char *lines[] = {h_sn, h_key, h_id, NULL};
    bt_http_req q = {.url = url,
                     .method = "POST",
                     .headers = lines,
                     .content_type = "application/x-www-form-urlencoded",
                     .body = body,
                     .body_len = strlen(body),
                     .timeout_ms = (long)c->http.timeout,
                     .max_body = ANSWER_MAX - 1,
                     .on_data = skip};
    agent_http_setup(&q, &c->http);
    int status = bt_http_request(&q, &ans, NULL, err, errlen);
    if (status >= 0 && (status < 200 || status > 299)) {
        char shown[201];
        agent_shown(shown, sizeof shown, ans);
        snprintf(err, errlen, "status %d: %s", status, shown);
    } else if (status >= 0) {
        rc = 0;
    }
out:
    free(ans);
    free(url);
    free(h_sn);
    free(h_key);
    free(h_id);
    return rc;
}

int agent_report(agent *a, const json_t *ota, char *err, size_t errlen)
{
    char why[512];
    json_t *doc = NULL;
    if (bt_api_inspect(a->api, &doc, NULL, why, sizeof why) < 0 || !json_is_object(doc)) {
        /* The cloud still hears from us, with the reason. */
        bt_logkv(BT_LOG_WARN, "failed to inspect stats", "error", why, NULL);
        json_decref(doc);
        char ts[64];
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        bt_fmt_time_utc(&now, ts, sizeof ts);
        doc = json_pack("{s:s,s:s}", "error", why, "time", ts);
    }
    if (doc && ota && json_object_size(ota) > 0)
        json_object_set_new(doc, "ota", json_deep_copy(ota));
    char *text = bt_json_dump(doc);
    json_decref(doc);
    char *body = NULL, *key64 = NULL;
    int rc = -1;
    if (!text) {
        snprintf(err, errlen, "out of memory");
    } else if (agent_report_encrypt(a->key, text, strlen(text), &body, &key64, err, errlen) == 0) {
        rc = post(a, body, key64, err, errlen);
        if (rc == 0)
            bt_logkv(BT_LOG_DEBUG, "stats reported", NULL);
    }
    free(text);
    free(body);
    free(key64);
    return rc;
}

/* {"<trace>": [records]} of the OTA being followed, or NULL. */
static json_t *ota_snapshot(agent *a)
{
    json_t *o = NULL;
    pthread_mutex_lock(&a->mu);
    if (a->ota_trace && a->ota_records) {
        o = json_object();
        if (o)
            json_object_set_new(o, a->ota_trace, json_deep_copy(a->ota_records));
    }
    pthread_mutex_unlock(&a->mu);
    return o;
}

/* The agent's metrics for the master (SPEC §19): the last report to the cloud, the reports
 * by result, whether an OTA is being followed, and the certificates' expiry. */
static void push_metrics(agent *a, int64_t last_ms, bool ok, const uint64_t n[2], bool ota)
{
    const char *svc = a->ctx->env.service_name;
    const char *inst = a->ctx->env.instance_name ? a->ctx->env.instance_name : svc;
    json_t *o = json_object();
    if (!svc || !o) {
        json_decref(o);
        return;
    }
    bt_metrics_one(o, "baetyl_agent_last_report_timestamp_seconds", "gauge",
                   "Unix time of the last report to the cloud.", (double)last_ms / 1000.0);
    bt_metrics_one(o, "baetyl_agent_last_report_success", "gauge",
                   "1 when the last report to the cloud succeeded.", ok);
    json_t *f = bt_metrics_family(o, "baetyl_agent_reports_total", "counter",
                                  "Reports to the cloud by result.");
    bt_metrics_sample(f, "", "result", "ok", (double)n[0]);
    bt_metrics_sample(f, "", "result", "error", (double)n[1]);
    bt_metrics_one(o, "baetyl_agent_ota_in_progress", "gauge", "1 while the agent follows an OTA.",
                   ota);
    bt_metrics_cert(o, a->cfg.mqtt.cert, "remote.mqtt");
    bt_metrics_cert(o, a->cfg.http.cert, "remote.http");
    json_t *stats = json_pack("{s:o}", "metrics", o);
    char err[256];
    if (stats && bt_api_report_instance(a->api, svc, inst, stats, err, sizeof err) < 0)
        bt_logkv(BT_LOG_WARN, "report to the master failed", "error", err, NULL);
    json_decref(stats);
}

void *agent_reporter_main(void *arg)
{
    agent *a = arg;
    uint64_t n[2] = {0, 0}; /* reports ok, failed */
    do {
        char err[512];
        json_t *ota = ota_snapshot(a);
        bool ok = agent_report(a, ota, err, sizeof err) == 0;
        if (!ok)
            bt_logkv(BT_LOG_WARN, "failed to report stats by https", "error", err, NULL);
        n[ok ? 0 : 1]++;
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        push_metrics(a, (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000, ok, n, ota != NULL);
        json_decref(ota);
    } while (!bt_ctx_sleep(a->ctx, a->cfg.report_interval));
    return NULL;
}
