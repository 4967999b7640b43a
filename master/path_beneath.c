/* Component-by-component walk below the work dir (path_beneath.h). openat2(RESOLVE_BENEATH)
 * cannot express the rule: it refuses the absolute in-tree links of a native service dir and
 * every operator link, so the walk resolves each symlink itself. */
#include "path_beneath.h"
#include "baetyl/error.h"
#include "baetyl/util.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

bool path_inside(const char *root, const char *p)
{
    size_t n = strlen(root);
    if (n == 1 && root[0] == '/')
        return true;
    return strncmp(p, root, n) == 0 && (p[n] == '/' || p[n] == '\0');
}

char **volume_roots(const char *pwd, const app_config *app)
{
    char **out = calloc(app->volumes.n + 1, sizeof *out);
    size_t k = 0;
    for (size_t i = 0; out && i < app->volumes.n; i++) {
        const char *vp = APP_VOLUME(app, i)->path;
        char *clean = malloc(strlen(vp) + 1), *abs = NULL;
        if (clean && bt_path_clean_rel(vp, clean, strlen(vp) + 1) == 0)
            abs = bt_path_join(pwd, clean);
        char *real = abs ? realpath(abs, NULL) : NULL;
        if (real)
            out[k++] = real;
        free(clean);
        free(abs);
    }
    return out;
}

void volume_roots_free(char **roots)
{
    for (char **r = roots; r && *r; r++)
        free(*r);
    free(roots);
}

typedef struct {
    const char *rroot;   /* the work dir, resolved */
    char *const *vroots; /* volume dirs, resolved */
    const char *dir;     /* what is being walked, for messages */
    char *err;
    size_t errlen;
} walk;

static bool in_a_volume(const walk *w, const char *p)
{
    for (char *const *v = w->vroots; v && *v; v++)
        if (path_inside(*v, p))
            return true;
    return false;
}

/* One step: cur/name, created when missing (inside the work dir only), resolved when a
 * symlink. Returns the resolved path or NULL with the error set. */
static char *step(const walk *w, const char *cur, const char *name)
{
    char *next = bt_path_join(cur, name);
    struct stat st;
    if (!next) {
        bt_errf(w->err, w->errlen, "out of memory");
        return NULL;
    }
    if (lstat(next, &st) != 0 && errno == ENOENT) {
        if (!path_inside(w->rroot, cur)) {
            bt_errf(w->err, w->errlen, "path (%s): %s is missing and outside the work dir", w->dir,
                    next);
            free(next);
            return NULL;
        }
        if (mkdir(next, 0755) != 0 && errno != EEXIST) {
            bt_errf(w->err, w->errlen, "mkdir %s: %s", next, strerror(errno));
            free(next);
            return NULL;
        }
    }
    if (lstat(next, &st) != 0) {
        bt_errf(w->err, w->errlen, "stat %s: %s", next, strerror(errno));
        free(next);
        return NULL;
    }
    if (S_ISLNK(st.st_mode)) {
        char *real = realpath(next, NULL);
        if (!real || (!path_inside(w->rroot, real) && in_a_volume(w, cur))) {
            bt_errf(w->err, w->errlen, "path (%s) leaves the work dir through the symlink %s",
                    w->dir, next);
            free(real);
            free(next);
            return NULL;
        }
        free(next);
        next = real;
        if (stat(next, &st) != 0)
            st.st_mode = 0;
    }
    if (!S_ISDIR(st.st_mode)) {
        bt_errf(w->err, w->errlen, "path (%s): %s is not a directory", w->dir, next);
        free(next);
        return NULL;
    }
    return next;
}

char *path_dir_beneath(const char *root, char *const *vroots, const char *dir, char *err,
                       size_t errlen)
{
    size_t n = strlen(root);
    while (n > 1 && root[n - 1] == '/')
        n--;
    if (n == 1 && root[0] == '/') /* the work dir is / (the Debian package): all is inside */
        n = 0;
    if (strncmp(dir, root, n) != 0 || (dir[n] != '/' && dir[n] != '\0')) {
        bt_errf(err, errlen, "path (%s) is not inside the work dir", dir);
        return NULL;
    }
    char *rroot = realpath(root, NULL);
    char *rest = strdup(dir + n);
    char *cur = rroot ? strdup(rroot) : NULL;
    if (!rroot || !rest || !cur) {
        if (!rroot)
            bt_errf(err, errlen, "work dir %s: %s", root, strerror(errno));
        else
            bt_errf(err, errlen, "out of memory");
        free(rroot);
        free(rest);
        free(cur);
        return NULL;
    }
    walk w = {rroot, vroots, dir, err, errlen};
    char *save = NULL;
    for (char *c = strtok_r(rest, "/", &save); c && cur; c = strtok_r(NULL, "/", &save)) {
        if (!strcmp(c, ".") || !strcmp(c, "..")) { /* paths are cleaned before: never here */
            bt_errf(err, errlen, "path (%s) is not clean", dir);
            free(cur);
            cur = NULL;
            break;
        }
        char *next = step(&w, cur, c);
        free(cur);
        cur = next;
    }
    free(rest);
    free(rroot);
    return cur;
}
