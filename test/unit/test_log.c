/* Logger (SPEC §18): logrus text and JSON lines, quoting, levels, fields, hostile text,
 * file output with rotation by size, backup count and age. Lines are read back from the
 * files the logger writes (or from stderr redirected to a file). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "baetyl/log.h"

static char g_dir[256];
static char g_path[320];

/* ---- helpers -------------------------------------------------------------------------- */

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    size_t r;
    while ((r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (cap - n - 1 == 0) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
    }
    fclose(f);
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

static void rm_rf(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            rm_rf(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static bool exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

static void open_log(const char *format, const char *level, long size_max, long backups, long age)
{
    bt_logger_config c;
    bt_logger_defaults(&c);
    c.path = g_path;
    c.format = (char *)format;
    c.level = (char *)level;
    c.size_max = size_max;
    c.backup_max = backups;
    c.age_max = age;
    char err[256] = "";
    int rc = bt_log_init(&c, err, sizeof err);
    if (rc != 0)
        fail_msg("bt_log_init: %s", err);
}

static void set_tz(const char *tz)
{
    setenv("TZ", tz, 1);
    tzset();
}

/* Checks the time="…" prefix of a text line (RFC3339 with the zone `zone`, within 5 s of
 * now) and returns what follows it. */
static const char *check_text_time(const char *line, const char *zone)
{
    regex_t re;
    assert_int_equal(regcomp(&re,
                             "^time=\"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}([+-][0-"
                             "9]{2}:[0-9]{2}|Z)\" ",
                             REG_EXTENDED),
                     0);
    regmatch_t m[2];
    int rc = regexec(&re, line, 2, m, 0);
    regfree(&re);
    if (rc != 0)
        fail_msg("bad time prefix: %s", line);
    size_t zl = (size_t)(m[1].rm_eo - m[1].rm_so);
    assert_int_equal(zl, strlen(zone));
    assert_memory_equal(line + m[1].rm_so, zone, zl);
    struct tm tm = {0};
    assert_non_null(strptime(line + 6, "%Y-%m-%dT%H:%M:%S", &tm));
    time_t t = timegm(&tm);
    if (strcmp(zone, "Z") != 0) {
        int hh = atoi(zone + 1), mm = atoi(zone + 4);
        long off = (hh * 3600 + mm * 60) * (zone[0] == '-' ? -1 : 1);
        t -= off;
    }
    assert_true(labs((long)(t - time(NULL))) <= 5);
    return line + m[0].rm_eo;
}

static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/bt-test-log-XXXXXX");
    assert_non_null(mkdtemp(g_dir));
    snprintf(g_path, sizeof g_path, "%s/var/log/x.log", g_dir);
    unsetenv("BAETYL_LOG_SIZE_MAX_BYTES");
    bt_log_set_size_max_bytes(0);
    set_tz("UTC0");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    bt_log_close();
    bt_log_set_field("baetyl", NULL);
    bt_log_set_field("service", NULL);
    bt_log_set_field("time", NULL);
    bt_log_set_level(BT_LOG_INFO);
    rm_rf(g_dir);
    return 0;
}

/* ---- formats -------------------------------------------------------------------------- */

static void test_text_line_exact(void **state)
{
    (void)state;
    set_tz("UTC-8"); /* POSIX: eight hours east of UTC, i.e. +08:00 */
    open_log("text", "info", 50, 15, 15);
    bt_log_set_field("baetyl", "master");
    bt_logkv(BT_LOG_INFO, "instance started", "service", "localhub", NULL);
    bt_log_close();
    char *s = slurp(g_path, NULL);
    assert_non_null(s);
    const char *rest = check_text_time(s, "+08:00");
    assert_string_equal(rest,
                        "level=info msg=\"instance started\" baetyl=master service=localhub\n");
    free(s);
}

static void test_text_utc_and_negative_zone(void **state)
{
    (void)state;
    open_log("text", "info", 50, 15, 15);
    bt_logkv(BT_LOG_ERROR, "boom", NULL);
    set_tz("UTC+5:30"); /* 5h30 west: -05:30 */
    bt_logkv(BT_LOG_WARN, "", NULL);
    bt_log_close();
    char *s = slurp(g_path, NULL);
    char *nl = strchr(s, '\n');
    assert_non_null(nl);
    *nl = '\0';
    assert_string_equal(check_text_time(s, "Z"), "level=error msg=boom");
    /* An empty message is left out, as logrus does; warn prints as "warning". */
    assert_string_equal(check_text_time(nl + 1, "-05:30"), "level=warning\n");
    free(s);
}

static void test_json_line_exact(void **state)
{
    (void)state;
    open_log("json", "info", 50, 15, 15);
    bt_log_set_field("baetyl", "master");
    bt_logkv(BT_LOG_INFO, "instance started", "service", "localhub", "zeta", "a \"q\"", NULL);
    bt_log_close();
    char *s = slurp(g_path, NULL);
    regex_t re;
    assert_int_equal(
        regcomp(&re,
                "^\\{\"baetyl\":\"master\",\"level\":\"info\",\"msg\":\"instance started\","
                "\"service\":\"localhub\",\"time\":\"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:"
                "[0-9]{2}:[0-9]{2}Z\",\"zeta\":\"a \\\\\"q\\\\\"\"\\}\n$",
                REG_EXTENDED),
        0);
    int rc = regexec(&re, s, 0, NULL, 0);
    regfree(&re);
    if (rc != 0)
        fail_msg("unexpected JSON line: %s", s);
    free(s);
}

/* ---- quoting -------------------------------------------------------------------------- */

static void test_text_quoting_rules(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"abc", "abc"},
        {"", ""},
        {"AZaz09-._/@^+", "AZaz09-._/@^+"},
        {"a b", "\"a b\""},
        {"a\"b", "\"a\\\"b\""},
        {"a=b", "\"a=b\""},
        {"a\\b", "\"a\\\\b\""},
        {"10:00", "\"10:00\""},
        {"t\tn\nr\r", "\"t\\tn\\nr\\r\""},
        {"\a\b\f\v", "\"\\a\\b\\f\\v\""},
        {"\x01\x1f\x7f", "\"\\x01\\x1f\\x7f\""},
        {"caf\xc3\xa9", "\"caf\xc3\xa9\""},           /* printable UTF-8 stays */
        {"\xf0\x9f\x98\x80", "\"\xf0\x9f\x98\x80\""}, /* emoji stays */
        {"\xff", "\"\\xff\""},                        /* invalid byte */
        {"\xc0\xaf", "\"\\xc0\\xaf\""},               /* overlong */
        {"\xed\xa0\x80", "\"\\xed\\xa0\\x80\""},      /* surrogate */
        {"\xe2\x82", "\"\\xe2\\x82\""},               /* truncated rune */
        {"\xc2\x80", "\"\\u0080\""},                  /* C1 control */
        {"\xc2\xa0", "\"\\u00a0\""},                  /* no-break space */
        {"\xef\xbb\xbf", "\"\\ufeff\""},              /* BOM */
        {"\xf3\xa0\x80\x81", "\"\\U000e0001\""},      /* tag character */
    };
    open_log("text", "info", 50, 15, 15);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        bt_logkv(BT_LOG_INFO, "q", "v", cases[i].in, NULL);
    bt_log_close();
    char *s = slurp(g_path, NULL);
    char *line = s;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *nl = strchr(line, '\n');
        assert_non_null(nl);
        *nl = '\0';
        char want[128];
        snprintf(want, sizeof want, "level=info msg=q v=%s", cases[i].out);
        const char *got = check_text_time(line, "Z");
        if (strcmp(got, want) != 0)
            fail_msg("case %zu: got [%s] want [%s]", i, got, want);
        line = nl + 1;
    }
    assert_string_equal(line, "");
    free(s);
}

/* ---- hostile text --------------------------------------------------------------------- */

static void test_nul_and_trailing_newline(void **state)
{
    (void)state;
    open_log("text", "info", 50, 15, 15);
    bt_logf(BT_LOG_INFO, "a%cb", 0);
    bt_logf(BT_LOG_INFO, "hello %s\n", "world");
    bt_logkv(BT_LOG_INFO, NULL, "k", NULL, NULL); /* NULL message and value: empty */
    bt_log_close();
    char *s = slurp(g_path, NULL);
    char *l2 = strchr(s, '\n') + 1, *l3 = strchr(l2, '\n') + 1;
    l2[-1] = l3[-1] = '\0';
    assert_string_equal(check_text_time(s, "Z"), "level=info msg=\"a\\x00b\"");
    assert_string_equal(check_text_time(l2, "Z"), "level=info msg=\"hello world\"");
    assert_string_equal(check_text_time(l3, "Z"), "level=info k=\n");
    free(s);
}

static void test_huge_message_truncated(void **state)
{
    (void)state;
    size_t big = 200 * 1024;
    char *m = malloc(big + 1);
    memset(m, 'x', big);
    m[big] = '\0';
    /* A 3-byte rune straddling the cut: it must not be split. */
    memcpy(m + BT_LOG_MAX_TEXT - 1, "\xe2\x82\xac", 3);
    open_log("text", "info", 50, 15, 15);
    bt_logkv(BT_LOG_INFO, "big", "v", m, NULL);
    bt_log_close();
    size_t len;
    char *s = slurp(g_path, &len);
    const char *rest = check_text_time(s, "Z");
    const char *pre = "level=info msg=big v=\"";
    assert_memory_equal(rest, pre, strlen(pre));
    const char *v = rest + strlen(pre);
    const char *end = "...(truncated)\"\n";
    size_t vl = strlen(v) - strlen(end);
    assert_string_equal(v + vl, end);
    assert_int_equal(vl, BT_LOG_MAX_TEXT - 1); /* cut before the euro sign */
    for (size_t i = 0; i < vl; i++)
        assert_int_equal(v[i], 'x');
    free(s);

    /* JSON: invalid UTF-8 becomes U+FFFD, the line stays valid JSON. */
    unlink(g_path);
    open_log("json", "info", 50, 15, 15);
    m[10] = (char)0xff;
    bt_logkv(BT_LOG_INFO, "big\xc3", "v", m, NULL);
    bt_log_close();
    s = slurp(g_path, &len);
    json_error_t je;
    json_t *o = json_loads(s, 0, &je);
    if (!o)
        fail_msg("invalid JSON: %s", je.text);
    assert_string_equal(json_string_value(json_object_get(o, "msg")), "big\xef\xbf\xbd");
    const char *jv = json_string_value(json_object_get(o, "v"));
    assert_int_equal(strlen(jv), BT_LOG_MAX_TEXT - 1 + 2 + strlen("...(truncated)"));
    assert_memory_equal(jv + 10, "\xef\xbf\xbd", 3);
    json_decref(o);
    free(s);
    free(m);
}

/* ---- levels --------------------------------------------------------------------------- */

static void test_levels(void **state)
{
    (void)state;
    assert_int_equal(bt_log_parse_level("debug"), BT_LOG_DEBUG);
    assert_int_equal(bt_log_parse_level("info"), BT_LOG_INFO);
    assert_int_equal(bt_log_parse_level("warn"), BT_LOG_WARN);
    assert_int_equal(bt_log_parse_level("warning"), BT_LOG_WARN);
    assert_int_equal(bt_log_parse_level("ERROR"), BT_LOG_ERROR);
    assert_int_equal(bt_log_parse_level("verbose"), -1);
    assert_int_equal(bt_log_parse_level(""), -1);
    assert_int_equal(bt_log_parse_level(NULL), -1);

    open_log("text", "warn", 50, 15, 15);
    assert_false(bt_log_enabled(BT_LOG_INFO));
    assert_true(bt_log_enabled(BT_LOG_WARN));
    bt_debug("d");
    bt_info("i");
    bt_warn("w");
    bt_error("e");
    bt_log_set_level(BT_LOG_DEBUG);
    bt_debug("d2");
    bt_log_close();
    char *s = slurp(g_path, NULL);
    assert_null(strstr(s, "msg=i"));
    assert_null(strstr(s, "msg=d\n"));
    assert_non_null(strstr(s, "level=warning msg=w\n"));
    assert_non_null(strstr(s, "level=error msg=e\n"));
    assert_non_null(strstr(s, "level=debug msg=d2\n"));
    int lines = 0;
    for (char *p = s; *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, 3);
    free(s);
}

static void test_bad_config(void **state)
{
    (void)state;
    bt_logger_config c;
    bt_logger_defaults(&c);
    char err[256] = "";
    c.level = "loud";
    assert_int_equal(bt_log_init(&c, err, sizeof err), -1);
    assert_non_null(strstr(err, "level"));
    bt_logger_defaults(&c);
    c.format = "xml";
    assert_int_equal(bt_log_init(&c, err, sizeof err), -1);
    assert_non_null(strstr(err, "format"));
    /* A directory that cannot be created: its parent is a regular file. */
    char file[400], path[480];
    snprintf(file, sizeof file, "%s/plain", g_dir);
    FILE *f = fopen(file, "w");
    fclose(f);
    snprintf(path, sizeof path, "%s/sub/x.log", file);
    bt_logger_defaults(&c);
    c.path = path;
    err[0] = '\0';
    assert_int_equal(bt_log_init(&c, err, sizeof err), -1);
    assert_non_null(strstr(err, "mkdir"));
    setenv("BAETYL_LOG_SIZE_MAX_BYTES", "12abc", 1);
    bt_logger_defaults(&c);
    assert_int_equal(bt_log_init(&c, err, sizeof err), -1);
    assert_non_null(strstr(err, "BAETYL_LOG_SIZE_MAX_BYTES"));
    unsetenv("BAETYL_LOG_SIZE_MAX_BYTES");
}

/* ---- fields --------------------------------------------------------------------------- */

static void test_fields(void **state)
{
    (void)state;
    open_log("text", "info", 50, 15, 15);
    bt_log_set_field("service", "hub");
    bt_log_set_field("baetyl", "master");
    bt_logkv(BT_LOG_INFO, "one", "service", "override", "b", "2", "a", "1", NULL);
    bt_log_set_field("service", NULL);
    bt_log_set_field("baetyl", "again");
    bt_logkv(BT_LOG_INFO, "two", NULL);
    bt_logkv(BT_LOG_INFO, "three", "fields.time", "old", "time", "t", "msg", "m", "level", "l",
             NULL);
    bt_log_close();
    char *s = slurp(g_path, NULL);
    char *l2 = strchr(s, '\n') + 1, *l3 = strchr(l2, '\n') + 1;
    l2[-1] = l3[-1] = '\0';
    assert_string_equal(check_text_time(s, "Z"),
                        "level=info msg=one a=1 b=2 baetyl=master service=override");
    assert_string_equal(check_text_time(l2, "Z"), "level=info msg=two baetyl=again");
    /* Fields named like the fixed keys are renamed, as logrus does. */
    assert_string_equal(
        check_text_time(l3, "Z"),
        "level=info msg=three baetyl=again fields.level=l fields.msg=m fields.time=t\n");
    free(s);
}

static void test_stderr_default(void **state)
{
    (void)state;
    char out[400];
    snprintf(out, sizeof out, "%s/stderr.txt", g_dir);
    int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    int saved = dup(2);
    dup2(fd, 2);
    close(fd);
    char err[64];
    int rc = bt_log_init(NULL, err, sizeof err); /* defaults: stderr, text, info */
    int is_file = bt_log_is_file();
    bt_debug("hidden");
    bt_logkv(BT_LOG_INFO, "to stderr", "k", "v w", NULL);
    dup2(saved, 2);
    close(saved);
    assert_int_equal(rc, 0);
    assert_int_equal(is_file, 0);
    char *s = slurp(out, NULL);
    assert_string_equal(check_text_time(s, "Z"), "level=info msg=\"to stderr\" k=\"v w\"\n");
    free(s);
}

/* ---- rotation ------------------------------------------------------------------------- */

/* Sequence numbers of the "n=<i>" lines of a file, in order; returns the count. */
static int read_seq(const char *path, int *out, int max)
{
    char *s = slurp(path, NULL);
    if (!s)
        return -1;
    int n = 0;
    for (char *p = strstr(s, " n="); p && n < max; p = strstr(p + 1, " n="))
        out[n++] = atoi(p + 3);
    free(s);
    return n;
}

static void test_rotation_by_size_and_count(void **state)
{
    (void)state;
    bt_log_set_size_max_bytes(300);
    open_log("text", "info", 50, 2, 15);
    assert_int_equal(bt_log_is_file(), 1);
    char num[16];
    for (int i = 0; i < 40; i++) {
        snprintf(num, sizeof num, "%d", i);
        bt_logkv(BT_LOG_INFO, "rotation test line", "n", num, NULL);
    }
    bt_log_close();
    char p1[400], p2[400], p3[400];
    snprintf(p1, sizeof p1, "%s.1", g_path);
    snprintf(p2, sizeof p2, "%s.2", g_path);
    snprintf(p3, sizeof p3, "%s.3", g_path);
    assert_true(exists(p1));
    assert_true(exists(p2));
    assert_false(exists(p3)); /* backup.max 2 */
    /* Every file stays within the limit and the three hold consecutive lines ending with
     * the last one: .2 is oldest, the live file newest. */
    const char *files[] = {p2, p1, g_path};
    int seq[64], all[200], total = 0;
    for (int f = 0; f < 3; f++) {
        struct stat st;
        assert_int_equal(stat(files[f], &st), 0);
        assert_true(st.st_size <= 300);
        assert_true(st.st_size > 0);
        int n = read_seq(files[f], seq, 64);
        assert_true(n > 0);
        for (int i = 0; i < n; i++)
            all[total++] = seq[i];
    }
    for (int i = 1; i < total; i++)
        assert_int_equal(all[i], all[i - 1] + 1);
    assert_int_equal(all[total - 1], 39);
    assert_true(total < 40); /* older lines went with the dropped backups */
}

static void test_rotation_env_bytes(void **state)
{
    (void)state;
    setenv("BAETYL_LOG_SIZE_MAX_BYTES", "200", 1);
    open_log("json", "info", 50, 0, 0); /* backup.max 0: keep them all */
    for (int i = 0; i < 30; i++)
        bt_logkv(BT_LOG_INFO, "env limit line", "n", "x", NULL);
    bt_log_close();
    unsetenv("BAETYL_LOG_SIZE_MAX_BYTES");
    /* ~90-byte lines, two per 200-byte file: 15 files in all, nothing deleted. */
    int files = 0, lines = 0;
    char p[400];
    for (int i = 0; i <= 30; i++) {
        if (i == 0)
            snprintf(p, sizeof p, "%s", g_path);
        else
            snprintf(p, sizeof p, "%s.%d", g_path, i);
        char *s = slurp(p, NULL);
        if (!s)
            break;
        files++;
        for (char *c = s; *c; c++)
            lines += *c == '\n';
        assert_true(strlen(s) <= 200);
        free(s);
    }
    assert_int_equal(lines, 30);
    assert_true(files >= 10);
}

static void make_file(const char *path, int days_old)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("old\n", f);
    fclose(f);
    struct timeval tv[2];
    gettimeofday(&tv[0], NULL);
    tv[0].tv_sec -= (time_t)days_old * 86400;
    tv[1] = tv[0];
    assert_int_equal(utimes(path, tv), 0);
}

static void test_age_and_count_cleanup(void **state)
{
    (void)state;
    char dir[400], p[480];
    snprintf(dir, sizeof dir, "%s/var", g_dir);
    mkdir(dir, 0755);
    snprintf(dir, sizeof dir, "%s/var/log", g_dir);
    mkdir(dir, 0755);
    const struct {
        const char *suffix;
        int days;
    } files[] = {{".1", 1},   {".2", 14},   {".3", 16}, {".4", 40},
                 {".02", 40}, {".bak", 40}, {".5x", 40}};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(p, sizeof p, "%s%s", g_path, files[i].suffix);
        make_file(p, files[i].days);
    }
    open_log("text", "info", 50, 10, 15); /* age.max 15 days */
    bt_log_close();
    const struct {
        const char *suffix;
        bool kept;
    } want[] = {{".1", true},
                {".2", true},
                {".3", false},
                {".4", false},
                /* not backups of ours: untouched */
                {".02", true},
                {".bak", true},
                {".5x", true}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        snprintf(p, sizeof p, "%s%s", g_path, want[i].suffix);
        if (exists(p) != want[i].kept)
            fail_msg("%s: kept=%d, want %d", want[i].suffix, exists(p), want[i].kept);
    }
    /* The count limit applies at open too: backup.max 1 drops .2. */
    open_log("text", "info", 50, 1, 0);
    bt_log_close();
    snprintf(p, sizeof p, "%s.2", g_path);
    assert_false(exists(p));
    snprintf(p, sizeof p, "%s.1", g_path);
    assert_true(exists(p));
}

/* ---- threads -------------------------------------------------------------------------- */

#define THREADS 4
#define PER_THREAD 300

static void *writer(void *arg)
{
    char id[8], n[16];
    snprintf(id, sizeof id, "%d", (int)(intptr_t)arg);
    for (int i = 0; i < PER_THREAD; i++) {
        snprintf(n, sizeof n, "%d", i);
        bt_logkv(BT_LOG_INFO, "concurrent line with some padding text", "n", n, "t", id, NULL);
    }
    return NULL;
}

static void test_threads_whole_lines(void **state)
{
    (void)state;
    open_log("text", "info", 50, 15, 15);
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++)
        pthread_create(&th[i], NULL, writer, (void *)(intptr_t)i);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    bt_log_close();
    char *s = slurp(g_path, NULL);
    int count[THREADS] = {0};
    char *line = s;
    for (char *nl; (nl = strchr(line, '\n')) != NULL; line = nl + 1) {
        *nl = '\0';
        const char *rest = check_text_time(line, "Z");
        int n, t;
        assert_int_equal(
            sscanf(rest, "level=info msg=\"concurrent line with some padding text\" n=%d t=%d", &n,
                   &t),
            2);
        assert_true(t >= 0 && t < THREADS);
        assert_int_equal(n, count[t]); /* each thread's lines in its own order */
        count[t]++;
    }
    assert_string_equal(line, "");
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(count[i], PER_THREAD);
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_text_line_exact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_text_utc_and_negative_zone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_line_exact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_text_quoting_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nul_and_trailing_newline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_huge_message_truncated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_levels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_config, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stderr_default, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotation_by_size_and_count, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotation_env_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_age_and_count_cleanup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads_whole_lines, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
