/* The agent's parts that need no cloud: the report's crypto (decrypted here the way the
 * cloud does it), event parsing, volume paths, the zip-slip guards of the unzipper, the
 * cleanup of unused volume directories and ota.log. The whole agent runs against a fake
 * cloud in test/integration/test_agent.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../../agent/agent.h"
#include "baetyl/util.h"

/* ---- helpers ------------------------------------------------------------------------- */

/* Standard base64 back to bytes, as the cloud decodes the report; *out malloc'd. */
static int unbase64(const char *s, unsigned char **out, size_t *outlen)
{
    size_t n = strlen(s);
    *out = NULL;
    if (n % 4 != 0 || n > (size_t)1 << 30)
        return -1;
    unsigned char *buf = malloc(n / 4 * 3 + 1);
    if (!buf)
        return -1;
    int r = EVP_DecodeBlock(buf, (const unsigned char *)s, (int)n);
    if (r < 0) {
        free(buf);
        return -1;
    }
    /* EVP_DecodeBlock counts the padding as zero bytes. */
    size_t len = (size_t)r;
    if (n >= 1 && s[n - 1] == '=')
        len--;
    if (n >= 2 && s[n - 2] == '=')
        len--;
    *out = buf;
    *outlen = len;
    return 0;
}

static char tmpdir[64];

static int setup_dir(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/btagentXXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    return 0;
}

static int teardown_dir(void **state)
{
    (void)state;
    char err[256];
    bt_rm_rf(tmpdir, err, sizeof err);
    return 0;
}

static char *at(const char *rel)
{
    static char buf[4][512];
    static int i;
    i = (i + 1) % 4;
    snprintf(buf[i], sizeof buf[i], "%s/%s", tmpdir, rel);
    return buf[i];
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* ---- crypto -------------------------------------------------------------------------- */

static void test_base64_and_md5(void **state)
{
    (void)state;
    char *b = agent_base64((const unsigned char *)"hello", 5);
    assert_string_equal(b, "aGVsbG8=");
    unsigned char *out;
    size_t n;
    assert_int_equal(unbase64(b, &out, &n), 0);
    assert_int_equal(n, 5);
    assert_memory_equal(out, "hello", 5);
    free(out);
    free(b);
    assert_int_equal(unbase64("abc", &out, &n), -1);
    assert_int_equal(unbase64("a!c=", &out, &n), -1);

    char md5[32], err[256];
    write_text(at("empty"), "");
    assert_int_equal(agent_file_md5(at("empty"), md5, err, sizeof err), 0);
    assert_string_equal(md5, "1B2M2Y8AsgTpgAmY7PhCfg=="); /* md5 of "" */
    assert_int_equal(agent_file_md5(at("missing"), md5, err, sizeof err), -1);
    assert_non_null(strstr(err, "No such file"));
}

static void test_report_encryption_decrypts_with_the_public_key(void **state)
{
    (void)state;
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    assert_non_null(k);
    FILE *f = fopen(at("key.pem"), "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL), 1);
    fclose(f);
    char err[256];
    EVP_PKEY *loaded = agent_load_rsa_key(at("key.pem"), err, sizeof err);
    assert_non_null(loaded);

    const char *json = "{\"software\":{\"conf_version\":\"v1\"},\"services\":[]}";
    char *body, *key64;
    assert_int_equal(
        agent_report_encrypt(loaded, json, strlen(json), &body, &key64, err, sizeof err), 0);

    /* the cloud: RSA public "decrypt" (verify-recover, PKCS#1 v1.5) gives the AES key */
    unsigned char *ek, *eb;
    size_t ekl, ebl;
    assert_int_equal(unbase64(key64, &ek, &ekl), 0);
    assert_int_equal(ekl, 256);
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(k, NULL);
    unsigned char aes[256];
    size_t aesl = sizeof aes;
    assert_int_equal(EVP_PKEY_verify_recover_init(c), 1);
    assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_PADDING), 1);
    assert_int_equal(EVP_PKEY_verify_recover(c, aes, &aesl, ek, ekl), 1);
    assert_int_equal(aesl, 32);
    EVP_PKEY_CTX_free(c);

    /* then AES-256-CBC, zero IV, PKCS#7 */
    assert_int_equal(unbase64(body, &eb, &ebl), 0);
    assert_int_equal(ebl % 16, 0);
    static const unsigned char iv[16];
    EVP_CIPHER_CTX *d = EVP_CIPHER_CTX_new();
    unsigned char *plain = malloc(ebl + 16);
    int n1, n2;
    assert_int_equal(EVP_DecryptInit_ex(d, EVP_aes_256_cbc(), NULL, aes, iv), 1);
    assert_int_equal(EVP_DecryptUpdate(d, plain, &n1, eb, (int)ebl), 1);
    assert_int_equal(EVP_DecryptFinal_ex(d, plain + n1, &n2), 1);
    assert_int_equal(n1 + n2, (int)strlen(json));
    assert_memory_equal(plain, json, strlen(json));
    EVP_CIPHER_CTX_free(d);

    /* a fresh key per report */
    char *body2, *key2;
    assert_int_equal(
        agent_report_encrypt(loaded, json, strlen(json), &body2, &key2, err, sizeof err), 0);
    assert_string_not_equal(body, body2);
    free(body2);
    free(key2);

    free(plain);
    free(ek);
    free(eb);
    free(body);
    free(key64);
    EVP_PKEY_free(loaded);
    EVP_PKEY_free(k);
}

static void test_key_must_be_rsa(void **state)
{
    (void)state;
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    assert_non_null(k);
    FILE *f = fopen(at("ec.pem"), "w");
    PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    EVP_PKEY_free(k);
    char err[256];
    assert_null(agent_load_rsa_key(at("ec.pem"), err, sizeof err));
    assert_non_null(strstr(err, "not an RSA key"));
    write_text(at("junk.pem"), "not a key");
    assert_null(agent_load_rsa_key(at("junk.pem"), err, sizeof err));
    assert_non_null(strstr(err, "not a PEM private key"));
    assert_null(agent_cert_serial(at("junk.pem"), err, sizeof err));
    assert_non_null(strstr(err, "not a PEM certificate"));
}

/* ---- events -------------------------------------------------------------------------- */

static int parse(const char *s, agent_ota_event *ev, char *err)
{
    return agent_event_parse(s, strlen(s), ev, err, 256);
}

static void test_event_ota_and_old_update(void **state)
{
    (void)state;
    agent_ota_event ev;
    char err[256];
    assert_int_equal(
        parse("{\"time\":\"x\",\"event\":\"OTA\",\"content\":{\"type\":\"APP\",\"trace\":\"t1\","
              "\"version\":\"v2\",\"volume\":{\"name\":\"app\",\"path\":\"var/db/baetyl/app\","
              "\"meta\":{\"url\":\"https://h/a.zip\",\"md5\":\"abc=\",\"version\":\"3\"}}}}",
              &ev, err),
        0);
    assert_string_equal(ev.type, "APP");
    assert_string_equal(ev.trace, "t1");
    assert_string_equal(ev.version, "v2");
    assert_string_equal(ev.volume.name, "app");
    assert_string_equal(ev.volume.path, "var/db/baetyl/app");
    assert_string_equal(ev.volume.url, "https://h/a.zip");
    assert_string_equal(ev.volume.md5, "abc=");
    assert_string_equal(ev.volume.version, "3");
    agent_event_free(&ev);

    /* the old form: no type (an app), config instead of volume, the version as trace */
    assert_int_equal(
        parse(
            "{\"event\":\"UPDATE\",\"content\":{\"version\":\"v9\",\"config\":{\"name\":\"c\","
            "\"path\":\"var/db/baetyl/c\",\"meta\":{\"url\":\"https://h/c.zip\",\"md5\":\"m\"}}}}",
            &ev, err),
        0);
    assert_string_equal(ev.type, "APP");
    assert_string_equal(ev.trace, "v9");
    assert_string_equal(ev.volume.name, "c");
    agent_event_free(&ev);
}

/* A refused event: -1 leaves ev empty; -2 (an OTA that names its trace but cannot be used)
 * keeps the trace and type for the FAILURE line of ota.log, nothing else. */
static void refused(const char *s, int want_rc, const char *want)
{
    agent_ota_event ev;
    char err[256] = "";
    int r = parse(s, &ev, err);
    if (r != want_rc)
        fail_msg("%s: returned %d, want %d", s, r, want_rc);
    if (!strstr(err, want))
        fail_msg("%s: got '%s', want '%s'", s, err, want);
    if (want_rc == -1) {
        assert_null(ev.trace);
        return;
    }
    assert_string_equal(ev.trace, "t");
    assert_string_equal(ev.type, "APP");
    assert_null(ev.version);
    assert_null(ev.volume.name);
    assert_null(ev.volume.md5);
    agent_event_free(&ev);
}
#define bad_event(s, want) refused(s, -1, want)
#define failed_ota(s, want) refused(s, -2, want)

static void test_event_errors(void **state)
{
    (void)state;
    bad_event("{\"event\":\"REBOOT\",\"content\":{}}", "event type (REBOOT) unexpected");
    bad_event("{\"event\":7}", "event type (not a string) unexpected");
    bad_event("{}", "event type () unexpected");
    bad_event("not json", "event invalid");
    bad_event("[1]", "event invalid");
    bad_event("{\"event\":\"OTA\"}", "content is not an object");
    failed_ota("{\"event\":\"OTA\",\"content\":{\"trace\":\"t\","
               "\"volume\":7}}",
               "volume is not an object");
    bad_event("{\"event\":\"OTA\",\"content\":{\"trace\":1}}", "trace is not a string");
    failed_ota("{\"event\":\"OTA\",\"content\":{\"trace\":\"t\","
               "\"volume\":{\"name\":\"a\",\"path\":\"p\"}}}",
               "volume.meta needs a url and an md5");
    failed_ota("{\"event\":\"OTA\",\"content\":{\"trace\":\"t\","
               "\"volume\":{\"name\":\"a\",\"path\":\"p\","
               "\"meta\":{\"url\":[],\"md5\":\"m\"}}}}",
               "volume.meta.url is not a string");
    bad_event("{\"event\":\"OTA\",\"content\":{\"volume\":{\"name\":\"a\",\"path\":\"p\","
              "\"meta\":{\"url\":\"u\",\"md5\":\"m\"}}}}",
              "trace must have");
    bad_event("{\"event\":\"OTA\",\"content\":{\"trace\":\"a\\nb\",\"volume\":{\"name\":\"a\","
              "\"path\":\"p\","
              "\"meta\":{\"url\":\"u\",\"md5\":\"m\"}}}}",
              "control character");
    failed_ota("{\"event\":\"OTA\",\"content\":{\"trace\":\"t\","
               "\"volume\":{\"name\":\"a\\u0000b\",\"path\":\"p\","
               "\"meta\":{\"url\":\"u\",\"md5\":\"m\"}}}}",
               "NUL byte");
    failed_ota("{\"event\":\"OTA\",\"content\":{\"trace\":\"t\","
               "\"version\":1}}",
               "version is not a string");
    failed_ota("{\"event\":\"UPDATE\",\"content\":{\"version\":\"t\",\"config\":{}}}",
               "needs a name");
    bad_event("{\"event\":\"UPDATE\",\"content\":{\"config\":{\"name\":\"c\",\"path\":\"p\","
              "\"meta\":{\"url\":\"u\",\"md5\":\"m\"}}}}",
              "trace must have");
}

/* ---- volume paths -------------------------------------------------------------------- */

static void dirs_ok(const char *name, const char *path, const char *want_c, const char *want_h)
{
    agent_volume v = {.name = (char *)name, .path = (char *)path};
    char *c, *h, err[256];
    if (agent_volume_dirs(&v, &c, &h, err, sizeof err) != 0)
        fail_msg("%s: %s", path, err);
    assert_string_equal(c, want_c);
    assert_string_equal(h, want_h);
    free(c);
    free(h);
}

static void dirs_bad(const char *name, const char *path, const char *want)
{
    agent_volume v = {.name = (char *)name, .path = (char *)path};
    char *c, *h, err[256];
    if (agent_volume_dirs(&v, &c, &h, err, sizeof err) == 0)
        fail_msg("accepted %s %s", name, path);
    if (!strstr(err, want))
        fail_msg("%s: got '%s'", path, err);
    assert_null(c);
}

static void test_volume_dirs(void **state)
{
    (void)state;
    dirs_ok("app", "var/db/baetyl/app/v2", "var/db/baetyl/volumes/app/v2", "var/db/baetyl/app/v2");
    dirs_ok("app", "./var//db/baetyl/./x/", "var/db/baetyl/volumes/x", "var/db/baetyl/x");
    dirs_bad("app", "var/db/baetyl", "not under var/db/baetyl");
    dirs_bad("app", "var/db/baetyl/", "not under var/db/baetyl");
    dirs_bad("app", "var/db/baetylx/a", "not under var/db/baetyl");
    dirs_bad("app", "var/db/other", "not under var/db/baetyl");
    dirs_bad("app", "var/db/baetyl/../../../etc", "must not hold '..'");
    dirs_bad("app", "/var/db/baetyl/x", "must be a relative path");
    dirs_bad("a/b", "var/db/baetyl/x", "name of volume (a/b) invalid");
    dirs_bad("..", "var/db/baetyl/x", "invalid");
    dirs_bad("", "var/db/baetyl/x", "invalid");
    dirs_bad("a\nb", "var/db/baetyl/x", "name of volume (a?b) invalid");
}

/* ---- unzip --------------------------------------------------------------------------- */

typedef struct {
    const char *name;
    char type;        /* 'f' file, 'd' dir, 'l' symlink (zip cannot hold hard links) */
    const char *data; /* file content or link target */
} zentry;

static void make_zip(const char *path, const zentry *e, size_t n)
{
    struct archive *a = archive_write_new();
    archive_write_set_format_zip(a);
    assert_int_equal(archive_write_open_filename(a, path), ARCHIVE_OK);
    for (size_t i = 0; i < n; i++) {
        struct archive_entry *ae = archive_entry_new();
        archive_entry_set_pathname(ae, e[i].name);
        size_t len = 0;
        switch (e[i].type) {
        case 'f':
            len = strlen(e[i].data);
            archive_entry_set_filetype(ae, AE_IFREG);
            archive_entry_set_perm(ae, 0644);
            archive_entry_set_size(ae, (la_int64_t)len);
            break;
        case 'd':
            archive_entry_set_filetype(ae, AE_IFDIR);
            archive_entry_set_perm(ae, 0755);
            break;
        case 'l':
            archive_entry_set_filetype(ae, AE_IFLNK);
            archive_entry_set_perm(ae, 0777);
            archive_entry_set_symlink(ae, e[i].data);
            break;
        }
        assert_int_equal(archive_write_header(a, ae), ARCHIVE_OK);
        if (len)
            assert_int_equal(archive_write_data(a, e[i].data, len), (la_ssize_t)len);
        archive_entry_free(ae);
    }
    archive_write_close(a);
    archive_write_free(a);
}

static char *read_text(const char *path)
{
    static char buf[256];
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void unzip_bad(const zentry *e, size_t n, const char *want)
{
    char err[512] = "";
    bt_rm_rf(at("out"), err, sizeof err);
    mkdir(at("out"), 0755);
    make_zip(at("bad.zip"), e, n);
    if (agent_unzip(at("bad.zip"), at("out"), err, sizeof err) == 0)
        fail_msg("accepted an archive holding %s", e[n - 1].name);
    if (!strstr(err, want))
        fail_msg("got '%s', want '%s'", err, want);
    /* refused before anything is written */
    assert_false(exists(at("out/application.yml")));
    assert_false(exists(at("evil")));
}

static void test_unzip_extracts_files_dirs_and_inner_links(void **state)
{
    (void)state;
    mkdir(at("out"), 0755);
    const zentry ok[] = {{"application.yml", 'f', "version: v2\n"},
                         {"sub/", 'd', NULL},
                         {"sub/a.txt", 'f', "a"},
                         {"./deep//x/y.txt", 'f', "y"},
                         {"link", 'l', "sub/a.txt"},
                         {"sub/up", 'l', "../deep/x/y.txt"}};
    make_zip(at("ok.zip"), ok, sizeof ok / sizeof *ok);
    char err[512] = "";
    if (agent_unzip(at("ok.zip"), at("out"), err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_string_equal(read_text(at("out/application.yml")), "version: v2\n");
    assert_string_equal(read_text(at("out/deep/x/y.txt")), "y");
    assert_string_equal(read_text(at("out/link")), "a");
    assert_string_equal(read_text(at("out/sub/up")), "y");
    /* extracting again replaces the files */
    if (agent_unzip(at("ok.zip"), at("out"), err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_int_equal(agent_unzip(at("missing.zip"), at("out"), err, sizeof err), -1);
    write_text(at("notzip.zip"), "plain text, not a zip");
    assert_int_equal(agent_unzip(at("notzip.zip"), at("out"), err, sizeof err), -1);
}

static void test_disk_room(void **state)
{
    (void)state;
    char err[512] = "";
    if (agent_disk_room(tmpdir, 0, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_int_equal(agent_disk_room(tmpdir, INT64_MAX / 2, err, sizeof err), -1);
    assert_non_null(strstr(err, "not enough disk space"));
    assert_int_equal(agent_disk_room(at("missing"), 0, err, sizeof err), -1);
    assert_non_null(strstr(err, "statvfs"));
}

static void test_unzip_refuses_zip_slip(void **state)
{
    (void)state;
    const zentry app = {"application.yml", 'f', "x"};
    zentry e[3] = {app};
#define BAD1(n, t, d, want)       \
    do {                          \
        e[1] = (zentry){n, t, d}; \
        unzip_bad(e, 2, want);    \
    } while (0)
    BAD1("../evil", 'f', "owned", "entry (../evil) escapes the volume directory");
    BAD1("a/../../evil", 'f', "owned", "escapes the volume directory");
    BAD1("/tmp/evil", 'f', "owned", "escapes the volume directory");
    BAD1("abs", 'l', "/etc/passwd", "entry (abs) links to an absolute path");
    BAD1("up", 'l', "../evil", "entry (up) links outside the volume directory");
    BAD1("sub/up", 'l', "../../evil", "links outside the volume directory");
    BAD1("empty", 'l', "", "empty link target");
    BAD1(".", 'd', NULL, "escapes the volume directory");
    /* through a link of the archive: the lexical path would not be the real one */
    e[1] = (zentry){"s", 'l', "sub"};
    e[2] = (zentry){"s/file", 'f', "x"};
    unzip_bad(e, 3, "entry (s/file) lies below a link of the archive");
    e[1] = (zentry){"sub/s", 'l', ".."};
    e[2] = (zentry){"t", 'l', "sub/s/../evil"};
    unzip_bad(e, 3, "entry (t) links through another link of the archive");
#undef BAD1
}

/* ---- cleanup ------------------------------------------------------------------------- */

static void test_cleanup_removes_unused_directories_only(void **state)
{
    (void)state;
    const char *dirs[] = {"db",        "db/used",        "db/used/inner",  "db/old", "db/old/x",
                          "db/parent", "db/parent/keep", "db/parent/drop", "outside"};
    for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++)
        assert_int_equal(mkdir(at(dirs[i]), 0755), 0);
    write_text(at("db/application.yml"), "x");
    write_text(at("db/old/x/f"), "x");
    write_text(at("outside/precious"), "x");
    assert_int_equal(symlink(at("outside"), at("db/alink")), 0); /* a link is never followed */
    assert_int_equal(symlink(at("outside"), at("db/old/x/escape")), 0);
    json_t *vols = json_pack("[{s:s},{s:s},{s:s},{s:s},{s:s}]", "path", "var/db/baetyl/used",
                             "path", "./var/db/baetyl/parent//keep", "path", "var/db/baetyl",
                             "path", "var/db/data", "path", "var/db/baetyl/../../../outside");
    char err[256];
    char prefix_target[600];
    snprintf(prefix_target, sizeof prefix_target, "%s", at("db"));
    int n = agent_cleanup("var/db/baetyl", prefix_target, vols, err, sizeof err);
    assert_int_equal(n, 2);
    assert_true(exists(at("db/used/inner")));
    assert_true(exists(at("db/parent/keep")));
    assert_false(exists(at("db/parent/drop")));
    assert_false(exists(at("db/old")));
    assert_true(exists(at("db/application.yml")));
    assert_true(exists(at("db/alink")));
    assert_true(exists(at("outside/precious")));
    json_decref(vols);
    assert_int_equal(agent_cleanup("var/db/baetyl", at("db"), NULL, err, sizeof err), -1);
    json_t *empty = json_array();
    assert_int_equal(agent_cleanup("var/db/baetyl", at("nope"), empty, err, sizeof err), -1);
    json_decref(empty);
}

/* ---- ota.log ------------------------------------------------------------------------- */

static void test_otalog_lines_and_records(void **state)
{
    (void)state;
    char err[256];
    const char *p = at("sub/ota.log"); /* its directory is created */
    assert_int_equal(
        bt_otalog_write(p, "t1", "APP", OTA_RECEIVED, "received", NULL, err, sizeof err), 0);
    FILE *f = fopen(p, "a");
    fputs("{\"level\":\"info\",\"msg\":\"app is "
          "updating\",\"step\":\"UPDATING\",\"time\":\"T\",\"trace\":\"t1\","
          "\"type\":\"APP\"}\nnot json\n{\"step\":\"UPDATING\",\"trace\":\"other\"}\n",
          f);
    fclose(f);
    assert_int_equal(
        bt_otalog_write(p, "t1", "APP", OTA_FAILURE, "failed", "it broke", err, sizeof err), 0);

    json_t *r = otalog_records(p, "t1");
    assert_int_equal(json_array_size(r), 3);
    assert_string_equal(json_string_value(json_object_get(json_array_get(r, 1), "step")),
                        "UPDATING");
    json_t *last = json_array_get(r, 2);
    assert_string_equal(json_string_value(json_object_get(last, "error")), "it broke");
    assert_string_equal(json_string_value(json_object_get(last, "trace")), "t1");
    const char *step;
    assert_true(otalog_finished(r, &step));
    assert_string_equal(step, "FAILURE");
    json_decref(r);

    /* the agent's own line: keys sorted like the master's */
    f = fopen(p, "r");
    char line[512];
    assert_non_null(fgets(line, sizeof line, f));
    fclose(f);
    assert_non_null(
        strstr(line, "{\"level\":\"info\",\"msg\":\"received\",\"step\":\"RECEIVED\",\"time\":\""));
    assert_non_null(strstr(line, "\"trace\":\"t1\",\"type\":\"APP\"}\n"));

    /* the same trace again starts over at its latest RECEIVED */
    assert_int_equal(
        bt_otalog_write(p, "t1", "APP", OTA_RECEIVED, "received", NULL, err, sizeof err), 0);
    r = otalog_records(p, "t1");
    assert_int_equal(json_array_size(r), 1);
    assert_false(otalog_finished(r, NULL));
    json_decref(r);

    char *t = bt_otalog_last_trace(p);
    assert_string_equal(t, "t1");
    free(t);
    r = otalog_records(at("none.log"), "t1");
    assert_int_equal(json_array_size(r), 0);
    assert_false(otalog_finished(r, NULL));
    json_decref(r);
    assert_null(bt_otalog_last_trace(at("none.log")));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_base64_and_md5, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_report_encryption_decrypts_with_the_public_key,
                                        setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_key_must_be_rsa, setup_dir, teardown_dir),
        cmocka_unit_test(test_event_ota_and_old_update),
        cmocka_unit_test(test_event_errors),
        cmocka_unit_test(test_volume_dirs),
        cmocka_unit_test_setup_teardown(test_unzip_extracts_files_dirs_and_inner_links, setup_dir,
                                        teardown_dir),
        cmocka_unit_test_setup_teardown(test_unzip_refuses_zip_slip, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_cleanup_removes_unused_directories_only, setup_dir,
                                        teardown_dir),
        cmocka_unit_test_setup_teardown(test_otalog_lines_and_records, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_disk_room, setup_dir, teardown_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
