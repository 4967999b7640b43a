/* Cleanup after an update (SPEC §15, seed 2.4.1): volume directories of the host's
 * var/db/baetyl that no volume of the running app uses are removed. Only real directories
 * go: files (application.yml, ota.log, ...) and symbolic links stay, and nothing is
 * followed out of the tree while removing. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "baetyl/util.h"

typedef struct {
    char **v; /* volume paths relative to prefix, clean ("a/b") */
    size_t n;
} keep_list;

/* One level: rel is the path of dir relative to the prefix ("" at the top). */
static int walk(const char *dir, const char *rel, const keep_list *k, int *removed, char *err,
                size_t errlen)
{
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(err, errlen, "open %s: %s", dir, strerror(errno));
        return -1;
    }
    int rc = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        char *path = NULL, *q = NULL;
        if (asprintf(&path, "%s/%s", dir, de->d_name) < 0 ||
            asprintf(&q, "%s%s%s", rel, *rel ? "/" : "", de->d_name) < 0) {
            free(path);
            snprintf(err, errlen, "out of memory");
            rc = -1;
            break;
        }
        struct stat st;
        if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
            bool used = false, below = false;
            size_t ql = strlen(q);
            for (size_t i = 0; i < k->n && !used; i++) {
                if (!strcmp(k->v[i], q))
                    used = true;
                else if (!strncmp(k->v[i], q, ql) && k->v[i][ql] == '/')
                    below = true;
            }
            if (!used && below) {
                if (walk(path, q, k, removed, err, errlen) < 0)
                    rc = -1;
            } else if (!used) {
                char why[512];
                if (bt_rm_rf(path, why, sizeof why) < 0)
                    bt_logkv(BT_LOG_WARN, "failed to remove", "path", path, "error", why, NULL);
                else
                    bt_logkv(BT_LOG_INFO, "old volume is removed", "path", path, NULL);
                (*removed)++;
            }
        }
        free(path);
        free(q);
        if (rc < 0)
            break;
    }
    closedir(d);
    return rc;
}

int agent_cleanup(const char *prefix, const char *target, const json_t *volumes, char *err,
                  size_t errlen)
{
    if (!json_is_array(volumes)) {
        snprintf(err, errlen, "no volume list");
        return -1;
    }
    char *pre = bt_path_clean_inside(prefix);
    size_t pl = pre ? strlen(pre) : 0;
    keep_list k = {calloc(json_array_size(volumes) + 1, sizeof(char *)), 0};
    int rc = -1, removed = 0;
    if (!pre || !k.v) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    size_t i;
    json_t *v;
    json_array_foreach(volumes, i, v)
    {
        char *p = bt_path_clean_inside(json_string_value(json_object_get(v, "path")));
        /* only paths strictly under the prefix; the prefix itself is the agent's own mount */
        if (p && !strncmp(p, pre, pl) && p[pl] == '/' && p[pl + 1]) {
            memmove(p, p + pl + 1, strlen(p + pl + 1) + 1);
            k.v[k.n++] = p;
        } else {
            free(p);
        }
    }
    if (walk(target, "", &k, &removed, err, errlen) == 0)
        rc = removed;
out:
    for (size_t j = 0; j < k.n; j++)
        free(k.v[j]);
    free(k.v);
    free(pre);
    return rc;
}
