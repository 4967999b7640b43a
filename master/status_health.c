/* `baetyl status` health figures from the Prometheus text of /metrics. */
#include "status_health.h"

#include <stdlib.h>
#include <string.h>

/* The value of label k in the label text of a line ("a=\"x\",b=\"y\""), unescaped into buf;
 * "" when absent. */
static const char *label(const char *labels, size_t n, const char *k, char *buf, size_t len)
{
    size_t kl = strlen(k);
    buf[0] = '\0';
    for (size_t i = 0; i + kl + 2 <= n; i++) {
        if ((i == 0 || labels[i - 1] == ',') && !strncmp(labels + i, k, kl) &&
            labels[i + kl] == '=' && labels[i + kl + 1] == '"') {
            size_t o = 0;
            for (size_t j = i + kl + 2; j < n && labels[j] != '"' && o + 1 < len; j++) {
                if (labels[j] == '\\' && j + 1 < n)
                    j++;
                buf[o++] = labels[j] == 'n' && labels[j - 1] == '\\' ? '\n' : labels[j];
            }
            buf[o] = '\0';
            break;
        }
    }
    return buf;
}

typedef struct {
    const char *name; /* points into the text; name_len long */
    size_t name_len;
    const char *labels; /* without braces */
    size_t labels_len;
    double value;
} line_t;

/* Splits one sample line; false for comments and anything else. */
static bool parse_line(const char *s, size_t n, line_t *l)
{
    if (n == 0 || s[0] == '#')
        return false;
    size_t i = 0;
    while (i < n && s[i] != '{' && s[i] != ' ')
        i++;
    *l = (line_t){.name = s, .name_len = i};
    if (i < n && s[i] == '{') {
        size_t j = i + 1;
        bool q = false;
        for (; j < n && (q || s[j] != '}'); j++) {
            if (s[j] == '\\')
                j++;
            else if (s[j] == '"')
                q = !q;
        }
        if (j >= n)
            return false;
        l->labels = s + i + 1;
        l->labels_len = j - i - 1;
        i = j + 1;
    }
    if (i >= n || s[i] != ' ')
        return false;
    char num[64];
    size_t k = n - i - 1 < sizeof num - 1 ? n - i - 1 : sizeof num - 1;
    memcpy(num, s + i + 1, k);
    num[k] = '\0';
    char *end;
    l->value = strtod(num, &end);
    return end != num;
}

static bool is(const line_t *l, const char *name)
{
    return l->name_len == strlen(name) && !strncmp(l->name, name, l->name_len);
}

static void days_text(double s, char *buf, size_t len)
{
    if (s < 0)
        snprintf(buf, len, "expired %.1f days ago", -s / 86400);
    else
        snprintf(buf, len, "expires in %.1f days", s / 86400);
}

int status_health(const char *metrics, int64_t max_age_ms, bool figures, FILE *out, FILE *problems)
{
    int bad = 0;
    double max_age = (double)max_age_ms / 1000.0;
    bool header = false;
    for (const char *p = metrics; p && *p;) {
        const char *e = strchr(p, '\n');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        line_t l;
        bool ok = parse_line(p, n, &l);
        p = e ? e + 1 : p + n;
        if (!ok)
            continue;
        char svc[256], inst[256], extra[512], use[64];
        label(l.labels, l.labels_len, "service", svc, sizeof svc);
        label(l.labels, l.labels_len, "instance_name", inst, sizeof inst);
        char msg[1200] = "", why[1200] = "";
        if (is(&l, "baetyl_instance_restarts_total") && l.value > 0)
            snprintf(msg, sizeof msg, "%s/%s: %.0f restarts", svc, inst, l.value);
        else if (is(&l, "baetyl_instance_status") && l.value == 1 &&
                 !strcmp(label(l.labels, l.labels_len, "status", extra, sizeof extra),
                         "restarting"))
            snprintf(why, sizeof why, "service %s instance %s is restarting", svc, inst);
        else if (is(&l, "baetyl_hub_queued_messages") && l.value > 0)
            snprintf(msg, sizeof msg, "%s: %.0f messages wait for away persistent sessions", svc,
                     l.value);
        else if (is(&l, "baetyl_hub_dropped_messages_total") && l.value > 0)
            snprintf(msg, sizeof msg, "%s: %.0f messages dropped (%s)", svc, l.value,
                     label(l.labels, l.labels_len, "reason", extra, sizeof extra));
        else if (is(&l, "baetyl_remote_backlog_messages") && l.value > 0)
            snprintf(msg, sizeof msg, "%s: %.0f messages wait for remote %s", svc, l.value,
                     label(l.labels, l.labels_len, "remote", extra, sizeof extra));
        else if (is(&l, "baetyl_hub_oldest_unacked_age_seconds") ||
                 is(&l, "baetyl_remote_oldest_backlog_age_seconds")) {
            snprintf(msg, sizeof msg, "%s: oldest waiting message is %.0fs old", svc, l.value);
            if (l.value > max_age)
                snprintf(why, sizeof why, "%s: a message has waited %.0fs (over %.0fs)", svc,
                         l.value, max_age);
        } else if (is(&l, "baetyl_tls_cert_expires_in_seconds")) {
            char d[64];
            days_text(l.value, d, sizeof d);
            snprintf(msg, sizeof msg, "%s: certificate %s (%s) %s", svc,
                     label(l.labels, l.labels_len, "cert", extra, sizeof extra),
                     label(l.labels, l.labels_len, "use", use, sizeof use), d);
            if (l.value < HEALTH_CERT_DAYS * 86400.0)
                snprintf(why, sizeof why, "%s: certificate %s %s", svc, extra, d);
        }
        if (figures && out && *msg) {
            if (!header)
                fprintf(out, "\nhealth:\n");
            header = true;
            fprintf(out, "  %s\n", msg);
        }
        if (*why) {
            bad++;
            if (problems)
                fprintf(problems, "unhealthy: %s\n", why);
        }
    }
    return bad;
}
