/* Building a module's "metrics" report (metrics.h). */
#include "baetyl/metrics.h"

#include "baetyl/ossl.h"
#include <stdio.h>
#include <time.h>

json_t *bt_metrics_family(json_t *out, const char *name, const char *type, const char *help)
{
    json_t *f = json_object_get(out, name);
    json_t *samples = json_object_get(f, "samples");
    if (json_is_array(samples))
        return samples;
    samples = json_array();
    f = json_pack("{s:s,s:s,s:o}", "type", type, "help", help, "samples", samples);
    if (!f || json_object_set_new(out, name, f) != 0)
        return NULL;
    return samples;
}

void bt_metrics_sample(json_t *samples, const char *suffix, const char *k, const char *v,
                       double value)
{
    if (!samples)
        return;
    json_t *l = k ? json_pack("{s:s}", k, v ? v : "") : json_object();
    json_t *s = l ? json_pack("[s,o,f]", suffix ? suffix : "", l, value) : NULL;
    if (s)
        json_array_append_new(samples, s);
}

void bt_metrics_one(json_t *out, const char *name, const char *type, const char *help, double value)
{
    bt_metrics_sample(bt_metrics_family(out, name, type, help), "", NULL, NULL, value);
}

int bt_metrics_cert(json_t *out, const char *path, const char *use)
{
    if (bt_ossl_load(NULL, 0) < 0)
        return -1;
    FILE *f = path && *path ? fopen(path, "r") : NULL;
    if (!f)
        return -1;
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (!x)
        return -1;
    /* ASN1_TIME_diff from the epoch gives the notAfter time without timegm's pitfalls. */
    ASN1_TIME *epoch = ASN1_TIME_set(NULL, 0);
    int days = 0, secs = 0;
    int ok = epoch && ASN1_TIME_diff(&days, &secs, epoch, X509_get0_notAfter(x));
    ASN1_TIME_free(epoch);
    X509_free(x);
    if (!ok)
        return -1;
    json_t *s = bt_metrics_family(out, "baetyl_tls_cert_not_after_timestamp_seconds", "gauge",
                                  "Unix time a configured TLS certificate expires.");
    json_t *l = json_pack("{s:s,s:s}", "cert", path, "use", use ? use : "");
    json_t *smp = l ? json_pack("[s,o,f]", "", l, (double)days * 86400.0 + secs) : NULL;
    if (!s || !smp || json_array_append_new(s, smp) != 0)
        return -1;
    return 0;
}
