/* Volumes of an OTA (SPEC §15): where they go, their download over HTTPS, the MD5 check
 * and the application.yml they carry. */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
} sink;

static size_t on_data(char *p, size_t size, size_t n, void *arg)
{
    sink *s = arg;
    size_t len = size * n;
    if (s->got + (int64_t)len > s->max)
        return 0; /* too large: curl stops with a write error */
    if (bt_write_all(s->fd, p, len) != 0) {
        s->werrno = errno ? errno : EIO;
        return 0;
    }
    s->got += (int64_t)len;
    return len;
}

static atomic_bool cancelled;

void agent_cancel_transfers(void)
{
    atomic_store(&cancelled, true);
}

static int on_progress(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    (void)arg, (void)dt, (void)dn, (void)ut, (void)un;
    return atomic_load(&cancelled) ? 1 : 0;
}

void agent_curl_setup(CURL *h, const agent_http_config *http)
{
    if (http->ca && *http->ca)
        curl_easy_setopt(h, CURLOPT_CAINFO, http->ca);
    if (http->cert && *http->cert) {
        curl_easy_setopt(h, CURLOPT_SSLCERT, http->cert);
        curl_easy_setopt(h, CURLOPT_SSLKEY, http->key);
    }
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https");
    curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "https");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
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
    CURL *h = curl_easy_init();
    if (!h) {
        close(fd);
        snprintf(err, errlen, "curl: out of memory");
        return -1;
    }
    sink s = {.fd = fd, .max = max};
    char cerr[CURL_ERROR_SIZE] = "";
    long secs = (long)((http->timeout + 999) / 1000);
    curl_easy_setopt(h, CURLOPT_URL, url);
    agent_curl_setup(h, http);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(h, CURLOPT_MAXREDIRS, 5L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)http->timeout);
    /* A volume may be large: no bound on the whole transfer, but on a stalled one. */
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, secs);
    curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)max);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &s);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, cerr);
    CURLcode rc = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(h);
    int r = -1;
    if (close(fd) != 0 && rc == CURLE_OK) {
        snprintf(err, errlen, "write %s: %s", path, strerror(errno));
    } else if (rc == CURLE_WRITE_ERROR && s.werrno) {
        snprintf(err, errlen, "write %s: %s", path, strerror(s.werrno));
    } else if (rc == CURLE_WRITE_ERROR || rc == CURLE_FILESIZE_EXCEEDED) {
        snprintf(err, errlen, "larger than %lld bytes", (long long)max);
    } else if (rc != CURLE_OK) {
        snprintf(err, errlen, "%s", cerr[0] ? cerr : curl_easy_strerror(rc));
    } else if (status != 200) {
        snprintf(err, errlen, "status %ld", status);
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
