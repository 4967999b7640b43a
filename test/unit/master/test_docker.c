/* The docker engine's pure parts: ports and devices in Docker's syntax, the container create
 * body of a service (binds, labels, resources, network), image references, the log stream
 * demultiplexer and the stats arithmetic. The engine itself runs against a real Docker
 * engine in test/integration/test_master_docker.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <baetyl/json.h>

#include "../../../master/app.h"
#include "../../../master/docker_api.h"
#include "../../../master/docker_config.h"

/* The compact JSON of v (freed by the caller). */
static char *dump(const json_t *v)
{
    return json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
}

static void port_ok(const char *spec, const char *want_exposed, const char *want_bindings)
{
    json_t *ex = json_object(), *pb = json_object();
    char err[256] = "";
    int r = docker_add_port(spec, ex, pb, err, sizeof err);
    if (r != 0)
        fail_msg("%s: %s", spec, err);
    char *a = dump(ex), *b = dump(pb);
    assert_string_equal(a, want_exposed);
    assert_string_equal(b, want_bindings);
    free(a);
    free(b);
    json_decref(ex);
    json_decref(pb);
}

static void port_bad(const char *spec, const char *want)
{
    json_t *ex = json_object(), *pb = json_object();
    char err[256] = "";
    assert_int_equal(docker_add_port(spec, ex, pb, err, sizeof err), -1);
    if (!strstr(err, want))
        fail_msg("%s: got error (%s), want (%s)", spec, err, want);
    json_decref(ex);
    json_decref(pb);
}

static void test_ports(void **state)
{
    port_ok("1883:1883", "{\"1883/tcp\":{}}",
            "{\"1883/tcp\":[{\"HostIp\":\"\",\"HostPort\":\"1883\"}]}");
    port_ok("0.0.0.0:8883:8883/tcp", "{\"8883/tcp\":{}}",
            "{\"8883/tcp\":[{\"HostIp\":\"0.0.0.0\",\"HostPort\":\"8883\"}]}");
    port_ok("[::1]:80:8080/udp", "{\"8080/udp\":{}}",
            "{\"8080/udp\":[{\"HostIp\":\"::1\",\"HostPort\":\"80\"}]}");
    port_ok("80", "{\"80/tcp\":{}}", "{\"80/tcp\":[{\"HostIp\":\"\",\"HostPort\":\"\"}]}");
    port_ok("127.0.0.1::53/udp", "{\"53/udp\":{}}",
            "{\"53/udp\":[{\"HostIp\":\"127.0.0.1\",\"HostPort\":\"\"}]}");
    port_ok("8000-8001:9000-9001/sctp", "{\"9000/sctp\":{},\"9001/sctp\":{}}",
            "{\"9000/sctp\":[{\"HostIp\":\"\",\"HostPort\":\"8000\"}],"
            "\"9001/sctp\":[{\"HostIp\":\"\",\"HostPort\":\"8001\"}]}");
    port_ok("7000-7010:80", "{\"80/tcp\":{}}",
            "{\"80/tcp\":[{\"HostIp\":\"\",\"HostPort\":\"7000-7010\"}]}");

    port_bad("", "empty");
    port_bad("abc", "container port (abc)");
    port_bad("0:80", "host port (0)");
    port_bad("70000", "1-65535");
    port_bad("9-3", "container port");
    port_bad("1:2:3:4", "too many ':'");
    port_bad("80/icmp", "tcp, udp or sctp");
    port_bad("1-3:4-7", "ranges differ");
    port_bad("300.1.1.1:80:80", "not an IP address");
    port_bad("[::1:80:80", "IPv6");
    port_bad("[::1]:80", "host:container");
    port_bad("123456:80", "host port");
}

static void test_two_ports_share_a_key(void **state)
{
    json_t *ex = json_object(), *pb = json_object();
    char err[256];
    assert_int_equal(docker_add_port("127.0.0.1:1883:1883", ex, pb, err, sizeof err), 0);
    assert_int_equal(docker_add_port("[::1]:1883:1883", ex, pb, err, sizeof err), 0);
    assert_int_equal(json_array_size(json_object_get(pb, "1883/tcp")), 2);
    assert_int_equal(json_object_size(ex), 1);
    json_decref(ex);
    json_decref(pb);
}

static void device_is(const char *spec, const char *host, const char *ctr, const char *perms)
{
    char err[256] = "";
    json_t *d = docker_device(spec, err, sizeof err);
    if (!d)
        fail_msg("%s: %s", spec, err);
    assert_string_equal(bt_json_get_str(d, "PathOnHost"), host);
    assert_string_equal(bt_json_get_str(d, "PathInContainer"), ctr);
    assert_string_equal(bt_json_get_str(d, "CgroupPermissions"), perms);
    json_decref(d);
}

static void device_bad(const char *spec, const char *want)
{
    char err[256] = "";
    json_t *d = docker_device(spec, err, sizeof err);
    assert_null(d);
    if (!strstr(err, want))
        fail_msg("%s: got error (%s), want (%s)", spec, err, want);
}

static void test_devices(void **state)
{
    device_is("/dev/video0", "/dev/video0", "/dev/video0", "mrw");
    device_is("/dev/sda:/dev/xvdc:r", "/dev/sda", "/dev/xvdc", "r");
    device_is("/dev/sda:rw", "/dev/sda", "/dev/sda", "rw");
    device_is("/dev/sda:/dev/b", "/dev/sda", "/dev/b", "mrw");
    device_bad("", "empty");
    device_bad("dev/x", "absolute");
    device_bad("/dev/a:dev/b", "absolute");
    device_bad("/dev/a:/dev/b:rx", "permissions (rx)");
    device_bad("/dev/a:/dev/b:rr", "permissions (rr)");
    device_bad("/a:/b:r:x", "host[:container][:perms]");
}

static const char APP[] = "version: v1\n"
                          "services:\n"
                          "  - name: localhub\n"
                          "    image: baetyl-hub:latest\n"
                          "    replica: 1\n"
                          "    args: ['-c', 'etc/baetyl/service.yml']\n"
                          "    ports: ['1883:1883']\n"
                          "    devices: ['/dev/video0']\n"
                          "    mounts:\n"
                          "      - {name: conf, path: etc/baetyl, readonly: true}\n"
                          "      - {name: data, path: var/db//baetyl/data/}\n"
                          "    resources: {cpu: {cpus: 1.5, setcpus: '0-1'}, memory: {limit: 500m, "
                          "swap: 1g}, pids: {limit: 100}}\n"
                          "  - name: plain\n"
                          "    image: busybox\n"
                          "volumes:\n"
                          "  - {name: conf, path: var/db/baetyl/localhub-conf}\n"
                          "  - {name: data, path: var//db/baetyl/localhub-data}\n";

static void test_service_config(void **state)
{
    app_config app;
    char err[512] = "";
    if (app_load_string(APP, strlen(APP), &app, err, sizeof err) != 0)
        fail_msg("%s", err);
    docker_ctx ctx = {.pwd = "/usr/local",
                      .api_socket = "/var/run/baetyl.sock",
                      .network = DOCKER_NETWORK,
                      .master_id = "0123456789ab",
                      .host_gateway = true};
    json_t *c = docker_service_config(&ctx, &app, APP_SERVICE(&app, 0), err, sizeof err);
    if (!c)
        fail_msg("%s", err);
    assert_string_equal(bt_json_get_str(c, "Image"), "baetyl-hub:latest");
    char *s = dump(json_object_get(c, "Cmd"));
    assert_string_equal(s, "[\"-c\",\"etc/baetyl/service.yml\"]");
    free(s);
    s = dump(json_object_get(c, "Labels"));
    assert_string_equal(s, "{\"baetyl\":\"baetyl\",\"baetyl-master\":\"0123456789ab\","
                           "\"service\":\"localhub\"}");
    free(s);
    json_t *hc = json_object_get(c, "HostConfig");
    s = dump(json_object_get(hc, "Binds"));
    assert_string_equal(s, "[\"/usr/local/var/db/baetyl/localhub-conf:/etc/baetyl:ro\","
                           "\"/usr/local/var/db/baetyl/localhub-data:/var/db/baetyl/data\","
                           "\"/var/run/baetyl.sock:/var/run/baetyl.sock:ro\"]");
    free(s);
    assert_int_equal(bt_json_get_int(hc, "NanoCpus", 0), 1500000000LL);
    assert_string_equal(bt_json_get_str(hc, "CpusetCpus"), "0-1");
    assert_int_equal(bt_json_get_int(hc, "Memory", 0), 500LL << 20);
    assert_int_equal(bt_json_get_int(hc, "MemorySwap", 0), 1LL << 30);
    assert_int_equal(bt_json_get_int(hc, "PidsLimit", 0), 100);
    assert_string_equal(bt_json_get_str(hc, "RestartPolicy.Name"), "no");
    assert_string_equal(bt_json_get_str(hc, "NetworkMode"), "baetyl");
    assert_string_equal(bt_json_get_str(hc, "PortBindings.1883/tcp.0.HostPort"), "1883");
    assert_non_null(json_object_get(json_object_get(c, "ExposedPorts"), "1883/tcp"));
    assert_string_equal(bt_json_get_str(hc, "Devices.0.PathInContainer"), "/dev/video0");
    /* every container can reach the host by name (a broker there, seed chapter 10) */
    assert_string_equal(bt_json_get_str(hc, "ExtraHosts.0"), "host.docker.internal:host-gateway");
    assert_string_equal(bt_json_get_str(c, "NetworkingConfig.EndpointsConfig.baetyl.Aliases.0"),
                        "localhub");
    assert_null(json_object_get(c, "Env"));
    json_decref(c);

    ctx.host_gateway = false; /* an engine older than 20.10 cannot resolve host-gateway */
    json_t *old = docker_service_config(&ctx, &app, APP_SERVICE(&app, 0), err, sizeof err);
    assert_non_null(old);
    assert_null(json_object_get(json_object_get(old, "HostConfig"), "ExtraHosts"));
    json_decref(old);

    /* No args, no resources: the image's CMD and the engine's defaults stay. A tcp API
     * is reached through host.docker.internal. */
    ctx.api_socket = NULL;
    c = docker_service_config(&ctx, &app, APP_SERVICE(&app, 1), err, sizeof err);
    assert_non_null(c);
    hc = json_object_get(c, "HostConfig");
    assert_null(json_object_get(c, "Cmd"));
    assert_null(json_object_get(hc, "NanoCpus"));
    assert_null(json_object_get(hc, "Memory"));
    assert_null(json_object_get(hc, "MemorySwap"));
    assert_null(json_object_get(hc, "PidsLimit"));
    assert_null(json_object_get(hc, "CpusetCpus"));
    assert_int_equal(json_array_size(json_object_get(hc, "Binds")), 0);
    assert_string_equal(bt_json_get_str(hc, "ExtraHosts.0"), "host.docker.internal:host-gateway");
    json_decref(c);

    /* A work dir a bind cannot carry. */
    ctx.pwd = "/srv/a:b";
    c = docker_service_config(&ctx, &app, APP_SERVICE(&app, 0), err, sizeof err);
    assert_null(c);
    assert_non_null(strstr(err, "cannot contain ':'"));
    app_free(&app);
}

/* One master per real work dir: two spellings of a dir are one id, two dirs two ids. */
static void test_master_id(void **state)
{
    (void)state;
    char tmpl[] = "/tmp/bt-master-id-XXXXXX", err[256] = "", a[16], b[16], c[16], link[64], dot[64];
    assert_non_null(mkdtemp(tmpl));
    snprintf(link, sizeof link, "%s-link", tmpl);
    snprintf(dot, sizeof dot, "%s/./", tmpl);
    assert_int_equal(symlink(tmpl, link), 0);
    assert_int_equal(docker_master_id(tmpl, a, err, sizeof err), 0);
    assert_int_equal(strlen(a), DOCKER_MASTER_ID_LEN);
    assert_int_equal(docker_master_id(link, b, err, sizeof err), 0);
    assert_string_equal(a, b);
    assert_int_equal(docker_master_id(dot, b, err, sizeof err), 0);
    assert_string_equal(a, b);
    assert_int_equal(docker_master_id("/", c, err, sizeof err), 0);
    assert_string_not_equal(a, c);
    unlink(link);
    rmdir(tmpl);
    assert_int_equal(docker_master_id(tmpl, c, err, sizeof err), -1);
    assert_non_null(strstr(err, tmpl));
}

static void test_service_config_errors(void **state)
{
    static const char *bad[][2] = {
        {"services: [{name: a, image: i, mounts: [{name: nope, path: x}]}]\n",
         "volume (nope) not found"},
        {"services: [{name: a, image: i, ports: ['1:2:3:4']}]\n", "ports[0]: port (1:2:3:4)"},
        {"services: [{name: a, image: i, devices: ['/dev/a', 'rel']}]\n",
         "devices[1]: device (rel)"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        app_config app;
        char err[512] = "";
        assert_int_equal(app_load_string(bad[i][0], strlen(bad[i][0]), &app, err, sizeof err), 0);
        docker_ctx ctx = {.pwd = "/w", .api_socket = NULL, .network = DOCKER_NETWORK};
        json_t *c = docker_service_config(&ctx, &app, APP_SERVICE(&app, 0), err, sizeof err);
        assert_null(c);
        if (!strstr(err, bad[i][1]))
            fail_msg("got (%s), want (%s)", err, bad[i][1]);
        app_free(&app);
    }
}

static void test_check_app(void **state)
{
    static const char text[] = "services:\n"
                               "  - {name: a, image: i, ports: ['80'], devices: ['/dev/x']}\n"
                               "  - {name: b, image: i, ports: ['80', '1883:188300']}\n";
    app_config app;
    char err[512] = "";
    assert_int_equal(app_load_string(text, strlen(text), &app, err, sizeof err), 0);
    assert_int_equal(docker_check_app(&app, err, sizeof err), -1);
    assert_non_null(strstr(err, "services[1].ports[1]: port (1883:188300)"));
    app_free(&app);
}

static void test_image_split(void **state)
{
    char repo[128], tag[64];
    assert_int_equal(docker_image_split("baetyl-hub", repo, sizeof repo, tag, sizeof tag), 0);
    assert_string_equal(repo, "baetyl-hub");
    assert_string_equal(tag, "latest");
    assert_int_equal(
        docker_image_split("reg:5000/baetyl/hub:1.0", repo, sizeof repo, tag, sizeof tag), 0);
    assert_string_equal(repo, "reg:5000/baetyl/hub");
    assert_string_equal(tag, "1.0");
    assert_int_equal(docker_image_split("reg:5000/hub", repo, sizeof repo, tag, sizeof tag), 0);
    assert_string_equal(repo, "reg:5000/hub");
    assert_string_equal(tag, "latest");
    assert_int_equal(docker_image_split("hub@sha256:abcd", repo, sizeof repo, tag, sizeof tag), 0);
    assert_string_equal(repo, "hub@sha256:abcd");
    assert_string_equal(tag, "");
    assert_int_equal(docker_image_split("hub:", repo, sizeof repo, tag, sizeof tag), -1);
    assert_int_equal(docker_image_split("", repo, sizeof repo, tag, sizeof tag), -1);
}

/* ---- the log stream ------------------------------------------------------------------- */

typedef struct {
    char out[65536];
    size_t n;
    int lines;
} collected;

static void collect(int stream, const char *text, size_t len, void *arg)
{
    collected *c = arg;
    int w = snprintf(c->out + c->n, sizeof c->out - c->n, "%d:%.*s|", stream, (int)len, text);
    if (w > 0 && (size_t)w < sizeof c->out - c->n)
        c->n += (size_t)w;
    c->lines++;
}

static size_t frame(unsigned char *out, int stream, const char *text)
{
    size_t n = strlen(text);
    out[0] = (unsigned char)stream;
    out[1] = out[2] = out[3] = 0;
    out[4] = (unsigned char)(n >> 24);
    out[5] = (unsigned char)(n >> 16);
    out[6] = (unsigned char)(n >> 8);
    out[7] = (unsigned char)n;
    memcpy(out + 8, text, n);
    return n + 8;
}

static void test_demux(void **state)
{
    unsigned char buf[512];
    size_t n = frame(buf, 1, "hello\nwor");
    n += frame(buf + n, 1, "ld\r\n");
    n += frame(buf + n, 2, "oops\n");
    n += frame(buf + n, 1, "tail without newline");
    collected *c = calloc(1, sizeof *c);
    docker_demux d;
    docker_demux_init(&d, collect, c);
    for (size_t i = 0; i < n; i++) /* one byte at a time: headers split anywhere */
        docker_demux_feed(&d, (const char *)buf + i, 1);
    docker_demux_flush(&d);
    assert_string_equal(c->out, "1:hello|1:world|2:oops|1:tail without newline|");

    /* No frame headers (a TTY container): plain lines. */
    memset(c, 0, sizeof *c);
    docker_demux_init(&d, collect, c);
    docker_demux_feed(&d, "plain text\nline two\n", 20);
    docker_demux_flush(&d);
    assert_string_equal(c->out, "1:plain text|1:line two|");

    /* An endless line is cut, never buffered without bound. */
    memset(c, 0, sizeof *c);
    docker_demux_init(&d, collect, c);
    static char big[DOCKER_LINE_MAX * 2 + 10];
    memset(big, 'x', sizeof big);
    unsigned char hdr[8] = {
        1, 0, 0, 0, 0, 0, (unsigned char)(sizeof big >> 8), (unsigned char)(sizeof big & 255)};
    docker_demux_feed(&d, (const char *)hdr, 8);
    docker_demux_feed(&d, big, sizeof big);
    docker_demux_flush(&d);
    assert_int_equal(c->lines, 3);
    free(c);
}

/* ---- stats ---------------------------------------------------------------------------- */

static void test_stats(void **state)
{
    static const char sample[] = "{\"cpu_stats\":{\"cpu_usage\":{\"total_usage\":3000000000},"
                                 "\"system_cpu_usage\":20000000000,"
                                 "\"online_cpus\":2},"
                                 "\"precpu_stats\":{\"cpu_usage\":{\"total_usage\":2000000000},"
                                 "\"system_cpu_usage\":16000000000},"
                                 "\"memory_stats\":{\"usage\":10485760,\"limit\":104857600,"
                                 "\"stats\":{\"total_inactive_file\":2097152}}}";
    json_t *j = bt_json_parse(sample, strlen(sample), NULL, 0);
    double pct = -1;
    uint64_t usage = 0, limit = 0;
    assert_int_equal(docker_stats_compute(j, &pct, &usage, &limit), 0);
    /* 1 s of CPU over 4 s of the whole system (2 CPUs): 25% of one CPU times 2. */
    assert_true(pct > 49.99 && pct < 50.01);
    assert_int_equal(usage, 8u << 20);
    assert_int_equal(limit, 100u << 20);
    json_decref(j);

    /* cgroup v2 names the page cache inactive_file; no previous sample: 0%. */
    static const char v2[] =
        "{\"cpu_stats\":{\"cpu_usage\":{\"total_usage\":5}},\"precpu_stats\":{},"
        "\"memory_stats\":{\"usage\":4096,\"limit\":8192,\"stats\":{\"inactive_file\":1024}}}";
    j = bt_json_parse(v2, strlen(v2), NULL, 0);
    assert_int_equal(docker_stats_compute(j, &pct, &usage, &limit), 0);
    assert_true(pct == 0);
    assert_int_equal(usage, 3072);
    json_decref(j);

    /* A stopped container's sample is empty; hostile values stay bounded. */
    static const char empty[] =
        "{\"read\":\"0001-01-01T00:00:00Z\",\"memory_stats\":{},\"cpu_stats\":{}}";
    j = bt_json_parse(empty, strlen(empty), NULL, 0);
    assert_int_equal(docker_stats_compute(j, &pct, &usage, &limit), -1);
    json_decref(j);
    static const char wild[] =
        "{\"cpu_stats\":{\"cpu_usage\":{\"total_usage\":1e300},\"system_cpu_usage\":2,"
        "\"online_cpus\":1},\"precpu_stats\":{\"cpu_usage\":{\"total_usage\":0},"
        "\"system_cpu_usage\":1},\"memory_stats\":{\"usage\":-5}}";
    j = bt_json_parse(wild, strlen(wild), NULL, 0);
    assert_int_equal(docker_stats_compute(j, &pct, &usage, &limit), -1); /* negative usage */
    json_decref(j);
    static const char wild2[] =
        "{\"cpu_stats\":{\"cpu_usage\":{\"total_usage\":1e300},\"system_cpu_usage\":2,"
        "\"online_cpus\":1},\"precpu_stats\":{\"cpu_usage\":{\"total_usage\":0},"
        "\"system_cpu_usage\":1},\"memory_stats\":{\"usage\":1e30}}";
    j = bt_json_parse(wild2, strlen(wild2), NULL, 0);
    assert_int_equal(docker_stats_compute(j, &pct, &usage, &limit), 0);
    assert_true(pct <= 100.0);
    assert_true(usage == UINT64_MAX);
    json_decref(j);
}

static void test_client_version(void **state)
{
    docker_client *c = NULL;
    char err[256] = "";
    assert_int_equal(docker_client_new("/nonexistent/docker.sock", "one.two", &c, err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "docker.api_version (one.two)"));
    assert_int_equal(docker_client_new("/nonexistent/docker.sock", "1.38", &c, err, sizeof err), 0);
    assert_string_equal(docker_client_socket(c), "/nonexistent/docker.sock");
    /* No engine there: a clear error, not a hang. */
    assert_int_equal(docker_check_version(c, err, sizeof err), -1);
    assert_non_null(strstr(err, "docker engine not reachable"));
    assert_non_null(strstr(err, "/nonexistent/docker.sock"));
    docker_client_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ports),          cmocka_unit_test(test_two_ports_share_a_key),
        cmocka_unit_test(test_devices),        cmocka_unit_test(test_service_config),
        cmocka_unit_test(test_master_id),      cmocka_unit_test(test_service_config_errors),
        cmocka_unit_test(test_check_app),      cmocka_unit_test(test_image_split),
        cmocka_unit_test(test_demux),          cmocka_unit_test(test_stats),
        cmocka_unit_test(test_client_version),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
