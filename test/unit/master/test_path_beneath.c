/* The walk below the work dir (master/path_beneath.c): a volume's planted symlink that leads
 * outside is refused, missing components are created inside only, and a work dir of / (the
 * Debian package's) holds every absolute path. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../../master/path_beneath.h"
#include "baetyl/util.h"

static void test_walk(void **state)
{
    (void)state;
    char base[] = "/tmp/bt-pb-XXXXXX", err[512];
    assert_non_null(mkdtemp(base));
    char *root = bt_strdup_printf("%s/w", base), *out = bt_strdup_printf("%s/out", base);
    char *vol = bt_strdup_printf("%s/w/var/db/vol", base);
    assert_int_equal(bt_mkdir_p(vol, 0755, err, sizeof err), 0);
    assert_int_equal(bt_mkdir_p(out, 0755, err, sizeof err), 0);
    char *plant = bt_strdup_printf("%s/evil", vol), *deep = bt_strdup_printf("%s/evil/x", vol);
    assert_int_equal(symlink(out, plant), 0);
    char *vroots[] = {vol, NULL};
    /* missing components inside: created */
    char *made = bt_strdup_printf("%s/var/run/a/b", root);
    char *got = path_dir_beneath(root, vroots, made, err, sizeof err);
    if (!got)
        fail_msg("%s", err);
    assert_true(bt_is_regular_file(got) == 0 && bt_path_exists(got));
    free(got);
    /* a planted link in a volume leading out: refused, nothing made outside */
    assert_null(path_dir_beneath(root, vroots, deep, err, sizeof err));
    assert_non_null(strstr(err, "leaves the work dir"));
    char *outx = bt_strdup_printf("%s/x", out);
    assert_false(bt_path_exists(outx));
    /* a path that is not below the root at all */
    assert_null(path_dir_beneath(root, vroots, out, err, sizeof err));
    assert_non_null(strstr(err, "not inside the work dir"));
    /* the work dir / holds everything: the same planted link is outside no work dir then */
    got = path_dir_beneath("/", NULL, out, err, sizeof err);
    if (!got)
        fail_msg("%s", err);
    free(got);
    assert_true(path_inside("/", "/etc"));
    assert_true(path_inside(root, root));
    assert_false(path_inside(root, out));
    bt_rm_rf(base, err, sizeof err);
    free(root), free(out), free(vol), free(plant), free(deep), free(made), free(outx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_walk),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
