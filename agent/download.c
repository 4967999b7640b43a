/* Volumes of an OTA (SPEC §15): where they go, their download over HTTPS, the MD5 check
 * and the application.yml they carry. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "baetyl/util.h"

/* ---- paths ----------------------------------------------------------------------------- */

/* Joins the clean segments of a relative path; NULL when it is absolute, holds "..", or
 * (strict) is empty. */
static char *clean_rel(const char *p, char *err, size_t errlen, const char *what)
{
    if (!p || p[0] == '/') {
        snprintf(err, errlen, "%s (%.200s) must be a relative path", what, p ? p : "");
        return NULL;
    }
    char *out = bt_path_clean_inside(p);
    if (!out)
        snprintf(err, errlen, "%s (%.200s) must not hold '..'", what, p);
    return out;
}

int agent_volume_dirs(const agent_volume *v, char **container_dir, char **host_dir, char *err,
                      size_t errlen)
{
    *container_dir = NULL;
    if (host_dir)
        *host_dir = NULL;
    const char *name = v->name ? v->name : "";
    bool ok = *name && !strchr(name, '/') && strcmp(name, ".") && strcmp(name, "..") &&
              strlen(name) <= 200;
    for (const char *p = name; ok && *p; p++)
        ok = (unsigned char)*p >= 0x20 && *p != 0x7F;
    if (!ok) {
        char q[201];
        agent_shown(q, sizeof q, name);
        snprintf(err, errlen, "name of volume (%s) invalid", q);
        return -1;
    }
    char *rel = clean_rel(v->path, err, errlen, "path of volume");
    if (!rel)
        return -1;
    size_t pl = strlen(AGENT_HOST_DB);
    if (strncmp(rel, AGENT_HOST_DB, pl) != 0 || rel[pl] != '/' || !rel[pl + 1]) {
        snprintf(err, errlen, "path of volume (%.200s) invalid: not under %s", v->path,
                 AGENT_HOST_DB);
        free(rel);
        return -1;
    }
    const char *sub = rel + pl + 1;
    size_t cl = strlen(AGENT_VOLUMES_DIR) + strlen(sub) + 2;
    char *c = malloc(cl), *h = host_dir ? strdup(rel) : NULL;
    if (!c || (host_dir && !h)) {
        free(c);
        free(h);
        free(rel);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    size_t vl = strlen(AGENT_VOLUMES_DIR);
    memcpy(c, AGENT_VOLUMES_DIR, vl); /* cl was sized for exactly this */
    c[vl] = '/';
    memcpy(c + vl + 1, sub, strlen(sub) + 1);
    free(rel);
    *container_dir = c;
    if (host_dir)
        *host_dir = h;
    return 0;
}

/* ---- HTTPS GET ------------------------------------------------------------------------- */

typedef struct {
    int fd;
    int64_t got, max;
    int werrno;
    bool too_big;
} sink;

static int on_data(const char *p, size_t len, void *arg)
{
    sink *s = arg;
    if (s->got + (int64_t)len > s->max) {
        s->too_big = true;
        return -1;
    }
    if (bt_write_all(s->fd, p, len) != 0) {
        s->werrno = errno ? errno : EIO;
        return -1;
    }
    s->got += (int64_t)len;
    return 0;
}

/* Readable once the agent stops: every transfer watches it. */
static int cancel_fd = -1;
static pthread_once_t cancel_once = PTHREAD_ONCE_INIT;

static void cancel_init(void)
{
    cancel_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
}

void agent_cancel_transfers(void)
{
    pthread_once(&cancel_once, cancel_init);
    uint64_t one = 1;
    if (cancel_fd >= 0 && write(cancel_fd, &one, sizeof one) < 0)
        bt_logkv(BT_LOG_WARN, "cannot cancel the transfers", "error", strerror(errno), NULL);
}

void agent_http_setup(bt_http_req *q, const agent_http_config *http)
{
    pthread_once(&cancel_once, cancel_init);
    q->ca = http->ca;
    if (http->cert && *http->cert) {
        q->cert = http->cert;
        q->key = http->key;
    }
    q->cancel_fd = cancel_fd;
}

int agent_download(const agent_http_config *http, const char *url, const char *path, int64_t max,
                   char *err, size_t errlen)
{
    if (strncmp(url, "https://", 8) != 0) {
        snprintf(err, errlen, "url (%.200s) is not https://", url);
        return -1;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "open %s: %s", path, strerror(errno));
        return -1;
    }
    sink s = {.fd = fd, .max = max};
    long secs = (long)((http->timeout + 999) / 1000);
    bt_http_req q = {
        .url = url, .method = "GET", .max_redirects = 5, .on_data = on_data, .arg = &s};
    q.max_stream = (size_t)max; /* a larger Content-Length is refused before any byte */
    agent_http_setup(&q, http);
    q.connect_timeout_ms = (long)http->timeout;
    /* A volume may be large: no bound on the whole transfer, but on a stalled one. */
    q.idle_timeout_ms = secs * 1000;
    char why[512];
    int status = bt_http_request(&q, NULL, NULL, why, sizeof why);
    int r = -1;
    if (close(fd) != 0 && status == 200 && !s.werrno && !s.too_big) {
        snprintf(err, errlen, "write %s: %s", path, strerror(errno));
    } else if (s.werrno) {
        snprintf(err, errlen, "write %s: %s", path, strerror(s.werrno));
    } else if (s.too_big || status == BT_HTTP_TOO_LARGE) {
        snprintf(err, errlen, "larger than %lld bytes", (long long)max);
    } else if (status < 0) {
        snprintf(err, errlen, "%s", why);
    } else if (status != 200) {
        snprintf(err, errlen, "status %d", status);
    } else {
        r = 0;
    }
    if (r != 0)
        unlink(path);
    return r;
}

/* ---- a volume ------------------------------------------------------------------------- */

/* Puts the staged directory tmp in dir's place: swapped atomically when the filesystem can
 * (the old content lands in tmp), else dir is moved aside first. The old content is then
 * removed. 0 or -1 with err (dir is as before then). */
static int replace_dir(char *tmp, const char *dir, char *err, size_t errlen)
{
    char why[512];
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, dir, RENAME_EXCHANGE) == 0) {
        if (bt_rm_rf(tmp, why, sizeof why) < 0)
            bt_logkv(BT_LOG_WARN, "failed to remove the old volume", "error", why, NULL);
        return 0;
    }
    if (errno == ENOENT && rename(tmp, dir) == 0)
        return 0;
    /* no RENAME_EXCHANGE here: dir goes aside under tmp's name with a suffix */
    char *old = bt_strdup_printf("%s.old", tmp);
    int rc = -1;
    if (!old) {
        snprintf(err, errlen, "out of memory");
    } else if (rename(dir, old) != 0) {
        snprintf(err, errlen, "rename %s: %s", dir, strerror(errno));
    } else if (rename(tmp, dir) != 0) {
        snprintf(err, errlen, "rename %s: %s", tmp, strerror(errno));
        rename(old, dir);
    } else {
        if (bt_rm_rf(old, why, sizeof why) < 0)
            bt_logkv(BT_LOG_WARN, "failed to remove the old volume", "error", why, NULL);
        rc = 0;
    }
    free(old);
    return rc;
}

/* A fresh directory next to dir ("<parent>/.<base>.ota-XXXXXX"), malloc'd; the parent is
 * created when missing. NULL with err. */
static char *stage_dir(const char *dir, char *err, size_t errlen)
{
    char why[512];
    const char *slash = strrchr(dir, '/');
    char *parent = slash ? strndup(dir, (size_t)(slash - dir)) : strdup(".");
    char *tmp =
        parent ? bt_strdup_printf("%s/.%s.ota-XXXXXX", parent, slash ? slash + 1 : dir) : NULL;
    if (!tmp) {
        snprintf(err, errlen, "out of memory");
    } else if (bt_mkdir_p(parent, 0755, why, sizeof why) < 0) {
        snprintf(err, errlen, "%s", why);
        free(tmp);
        tmp = NULL;
    } else if (!mkdtemp(tmp)) {
        snprintf(err, errlen, "mkdtemp %s: %s", tmp, strerror(errno));
        free(tmp);
        tmp = NULL;
    } else {
        chmod(tmp, 0755); /* mkdtemp makes it 0700; services read volumes */
    }
    free(parent);
    return tmp;
}

int agent_volume_prepare(bt_ctx *ctx, const agent_http_config *http, const agent_volume *v,
                         char **container_dir, char **host_dir, char *err, size_t errlen)
{
    char *dir = NULL, *host = NULL, *zip = NULL, *stage = NULL, *szip = NULL, *part = NULL;
    char why[512], md5[32];
    int rc = -1;
    if (container_dir)
        *container_dir = NULL;
    if (host_dir)
        *host_dir = NULL;
    if (agent_volume_dirs(v, &dir, &host, err, errlen) < 0)
        return -1;
    if (!v->url || !*v->url || !v->md5) {
        snprintf(err, errlen, "volume (%s) has no meta.url and meta.md5", v->name);
        goto out;
    }
    if (asprintf(&zip, "%s/%s.zip", dir, v->name) < 0) {
        zip = NULL;
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    struct stat st;
    if (lstat(zip, &st) == 0 && S_ISREG(st.st_mode) &&
        agent_file_md5(zip, md5, why, sizeof why) == 0 && !strcmp(md5, v->md5)) {
        bt_logkv(BT_LOG_DEBUG, "volume exists", "volume", v->name, "path", dir, NULL);
        rc = 0;
        goto out;
    }
    /* Everything goes into a directory next to dir that takes its place only once the volume
     * is whole: a failed download, a bad MD5 or a refused archive (a zip bomb half unpacked)
     * leave nothing behind. */
    if (!(stage = stage_dir(dir, why, sizeof why))) {
        snprintf(err, errlen, "failed to prepare volume (%s): %s", v->name, why);
        goto out;
    }
    if (asprintf(&szip, "%s/%s.zip", stage, v->name) < 0 || asprintf(&part, "%s.part", szip) < 0) {
        szip = part = NULL;
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    bt_logkv(BT_LOG_INFO, "downloading volume", "volume", v->name, "url", v->url, NULL);
    if (agent_download(http, v->url, part, AGENT_ZIP_MAX, why, sizeof why) < 0) {
        bt_logkv(BT_LOG_WARN, "download failed, retrying", "volume", v->name, "error", why, NULL);
        if (bt_ctx_sleep(ctx, 1000)) {
            snprintf(err, errlen, "failed to download volume (%s): agent stopped", v->name);
            goto out;
        }
        if (agent_download(http, v->url, part, AGENT_ZIP_MAX, why, sizeof why) < 0) {
            snprintf(err, errlen, "failed to download volume (%s): %s", v->name, why);
            goto out;
        }
    }
    if (rename(part, szip) != 0) {
        snprintf(err, errlen, "failed to prepare volume (%s): rename %s: %s", v->name, part,
                 strerror(errno));
        goto out;
    }
    if (agent_file_md5(szip, md5, why, sizeof why) < 0) {
        snprintf(err, errlen, "failed to calculate MD5 of volume (%s): %s", v->name, why);
        goto out;
    }
    if (strcmp(md5, v->md5) != 0) {
        snprintf(err, errlen, "MD5 of volume (%s) invalid: got %s, want %.64s", v->name, md5,
                 v->md5);
        goto out;
    }
    if (agent_unzip(szip, stage, why, sizeof why) < 0) {
        snprintf(err, errlen, "failed to unzip volume (%s): %s", v->name, why);
        goto out;
    }
    if (replace_dir(stage, dir, why, sizeof why) < 0) {
        snprintf(err, errlen, "failed to prepare volume (%s): %s", v->name, why);
        goto out;
    }
    free(stage);
    stage = NULL;
    bt_logkv(BT_LOG_INFO, "volume is ready", "volume", v->name, "path", dir, NULL);
    rc = 0;
out:
    if (stage && bt_rm_rf(stage, why, sizeof why) < 0)
        bt_logkv(BT_LOG_WARN, "failed to remove a partial volume", "error", why, NULL);
    if (rc == 0 && container_dir) {
        *container_dir = dir;
        dir = NULL;
    }
    if (rc == 0 && host_dir) {
        *host_dir = host;
        host = NULL;
    }
    free(dir);
    free(host);
    free(zip);
    free(stage);
    free(szip);
    free(part);
    return rc;
}

/* ---- application.yml ------------------------------------------------------------------ */

int agent_app_load(const char *path, agent_app *app, char *err, size_t errlen)
{
    char why[512];
    if (bt_app_load(path, app, NULL, NULL, why, sizeof why) < 0) {
        snprintf(err, errlen, "app config invalid: %s", why);
        return -1;
    }
    if (!app->has_services) {
        snprintf(err, errlen, "app config invalid: %s", BT_APP_NO_SERVICES);
        agent_app_free(app);
        return -1;
    }
    return 0;
}

void agent_app_free(agent_app *app)
{
    bt_app_free(app);
}
