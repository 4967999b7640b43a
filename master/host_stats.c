/* Host and process statistics for inspect (SPEC §10). Everything comes from /proc, sysfs,
 * statvfs and getifaddrs; GPUs from nvidia-smi when it is installed. */
#include "host_stats.h"
#include "baetyl/error.h"
#include "baetyl/util.h"

#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define CPU_MIN_INTERVAL_MS 200
#define GPU_CACHE_MS 5000
#define NVSMI_TIMEOUT_MS 5000

struct host_sampler {
    pthread_mutex_t mu;
    uint64_t busy, total; /* last /proc/stat reading */
    int64_t at_ms;
    double used_percent;
    pthread_mutex_t gpu_mu; /* nvidia-smi may be slow: not under mu */
    json_t *os_release;     /* platform fields of /etc/os-release, read once */
    char host_id[256];
    char model[256]; /* CPU model, read once from /proc/cpuinfo */
    double mhz;
    json_t *gpu; /* last gpu_stats, or NULL */
    int64_t gpu_at_ms;
};

/* Reads a small file into buf (NUL-terminated); returns bytes read or -1. */
static ssize_t slurp(const char *path, char *buf, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t n = 0;
    while (n + 1 < len) {
        ssize_t r = read(fd, buf + n, len - 1 - n);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            close(fd);
            return -1;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    return (ssize_t)n;
}

static int cpu_times(uint64_t *busy, uint64_t *total)
{
    char buf[512];
    if (slurp("/proc/stat", buf, sizeof buf) <= 0)
        return -1;
    unsigned long long v[10] = {0};
    int n = sscanf(buf, "cpu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1],
                   &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9]);
    if (n < 4)
        return -1;
    /* guest and guest_nice are already counted in user and nice */
    uint64_t t = 0;
    for (int i = 0; i < 8 && i < n; i++)
        t += v[i];
    *total = t;
    *busy = t - v[3] - (n > 4 ? v[4] : 0); /* minus idle and iowait */
    return 0;
}

/* What does not change while the master runs: OS release, host id, CPU model. */
static void read_static(host_sampler *s)
{
    char buf[8192];
    s->os_release = json_object();
    if (s->os_release && slurp("/etc/os-release", buf, sizeof buf) > 0) {
        char *save = NULL;
        for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
            const char *key = NULL;
            if (!strncmp(line, "ID=", 3))
                key = "platform";
            else if (!strncmp(line, "VERSION_ID=", 11))
                key = "platform_version";
            else if (!strncmp(line, "ID_LIKE=", 8))
                key = "platform_family";
            if (!key)
                continue;
            char *v = strchr(line, '=') + 1;
            size_t n = strlen(v);
            if (n >= 2 && (v[0] == '"' || v[0] == '\'') && v[n - 1] == v[0]) {
                v[n - 1] = '\0';
                v++;
            }
            json_object_set_new(s->os_release, key, json_string(v));
        }
    }
    host_id(s->host_id, sizeof s->host_id);
    /* /proc/cpuinfo can be large on big machines; the first processor is enough. */
    if (slurp("/proc/cpuinfo", buf, sizeof buf) > 0) {
        const char *keys[] = {"model name", "Hardware", "Processor", "cpu model"};
        for (size_t k = 0; k < sizeof keys / sizeof keys[0] && !s->model[0]; k++) {
            char *p = strstr(buf, keys[k]);
            if (!p || (p != buf && p[-1] != '\n'))
                continue;
            char *c = strchr(p, ':'), *e = c ? strchr(c, '\n') : NULL;
            if (!c || !e)
                continue;
            size_t n = (size_t)(e - c - 1);
            char v[256];
            snprintf(v, sizeof v, "%.*s", (int)(n < sizeof v ? n : sizeof v - 1), c + 1);
            snprintf(s->model, sizeof s->model, "%s", bt_str_trim(v));
        }
        char *mhz = strstr(buf, "cpu MHz");
        if (mhz && (mhz = strchr(mhz, ':')))
            sscanf(mhz + 1, "%lf", &s->mhz);
    }
}

host_sampler *host_sampler_new(void)
{
    host_sampler *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->gpu_mu, NULL);
    if (cpu_times(&s->busy, &s->total) == 0)
        s->at_ms = bt_now_ms();
    read_static(s);
    return s;
}

void host_sampler_free(host_sampler *s)
{
    if (!s)
        return;
    json_decref(s->gpu);
    json_decref(s->os_release);
    pthread_mutex_destroy(&s->gpu_mu);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

static double cpu_used_percent(host_sampler *s)
{
    pthread_mutex_lock(&s->mu);
    int64_t now = bt_now_ms();
    if (s->at_ms == 0 || now - s->at_ms >= CPU_MIN_INTERVAL_MS) {
        uint64_t busy, total;
        if (cpu_times(&busy, &total) == 0) {
            if (s->at_ms && total > s->total && busy >= s->busy)
                s->used_percent = (double)(busy - s->busy) * 100.0 / (double)(total - s->total);
            s->busy = busy;
            s->total = total;
            s->at_ms = now;
        }
    }
    double r = s->used_percent;
    pthread_mutex_unlock(&s->mu);
    return r;
}

int proc_sample(pid_t pid, uint64_t *ticks, uint64_t *rss, uint64_t *start_ticks, char *comm,
                size_t commlen)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    if (slurp(path, buf, sizeof buf) <= 0)
        return -1;
    /* comm is inside parentheses and may itself hold ')' or spaces: take the last ')'. */
    char *lp = strchr(buf, '('), *rp = strrchr(buf, ')');
    if (!lp || !rp || rp < lp)
        return -1;
    size_t cl = (size_t)(rp - lp - 1);
    if (comm && commlen) {
        if (cl >= commlen)
            cl = commlen - 1;
        memcpy(comm, lp + 1, cl);
        comm[cl] = '\0';
    }
    char state;
    unsigned long long utime, stime, start;
    long long rsspages;
    /* fields after comm: 3 state ... 14 utime 15 stime ... 22 starttime 23 vsize 24 rss */
    int n = sscanf(rp + 2,
                   "%c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d %*d "
                   "%llu %*u %lld",
                   &state, &utime, &stime, &start, &rsspages);
    if (n != 5)
        return -1;
    if (state == 'Z' || state == 'X')
        return -1; /* ended, waiting to be reaped */
    long page = sysconf(_SC_PAGESIZE);
    *ticks = utime + stime;
    *rss = rsspages > 0 ? (uint64_t)rsspages * (uint64_t)(page > 0 ? page : 4096) : 0;
    *start_ticks = start;
    return 0;
}

double host_uptime(void)
{
    char buf[128];
    double up = 0;
    if (slurp("/proc/uptime", buf, sizeof buf) > 0)
        sscanf(buf, "%lf", &up);
    return up;
}

/* Reads "Key:   123 kB" lines of /proc/meminfo, in bytes. */
static int meminfo(const char *key, uint64_t *out, const char *buf)
{
    size_t kl = strlen(key);
    for (const char *p = buf; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, key, kl) == 0 && p[kl] == ':') {
            unsigned long long v;
            if (sscanf(p + kl + 1, "%llu", &v) == 1) {
                *out = (uint64_t)v * 1024;
                return 0;
            }
        }
    }
    return -1;
}

uint64_t host_mem_total(void)
{
    /* It does not change while we run; read it once (racing first readers agree). */
    static _Atomic uint64_t total;
    uint64_t t = total;
    if (t)
        return t;
    char buf[4096];
    if (slurp("/proc/meminfo", buf, sizeof buf) > 0)
        meminfo("MemTotal", &t, buf);
    total = t;
    return t;
}

void host_id(char *buf, size_t len)
{
    char tmp[256];
    const char *files[] = {"/etc/machine-id", "/var/lib/dbus/machine-id",
                           "/sys/class/dmi/id/product_uuid"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        if (slurp(files[i], tmp, sizeof tmp) > 0 && *bt_str_trim(tmp)) {
            snprintf(buf, len, "%s", tmp);
            return;
        }
    }
    if (gethostname(tmp, sizeof tmp) != 0)
        snprintf(tmp, sizeof tmp, "unknown");
    tmp[sizeof tmp - 1] = '\0';
    snprintf(buf, len, "%s", tmp);
}

const char *host_arch(void)
{
    static char arch[65];
    struct utsname u;
    if (uname(&u) != 0)
        return "unknown";
    const char *m = u.machine;
    if (!strcmp(m, "x86_64"))
        return "amd64";
    if (!strcmp(m, "aarch64") || !strcmp(m, "arm64"))
        return "arm64";
    if (!strncmp(m, "armv", 4) || !strcmp(m, "arm"))
        return "arm";
    if (m[0] == 'i' && !strcmp(m + 2, "86"))
        return "386";
    snprintf(arch, sizeof arch, "%s", m);
    return arch;
}

static json_t *host_part(host_sampler *s)
{
    json_t *o = s->os_release ? json_deep_copy(s->os_release) : json_object();
    struct utsname u;
    char hn[256] = "";
    if (gethostname(hn, sizeof hn) == 0)
        hn[sizeof hn - 1] = '\0';
    json_object_set_new(o, "hostname", json_string(hn));
    double up = host_uptime();
    json_object_set_new(o, "uptime", json_integer((json_int_t)up));
    json_object_set_new(o, "boot_time", json_integer((json_int_t)(time(NULL) - (time_t)up)));
    json_object_set_new(o, "os", json_string("linux"));
    if (uname(&u) == 0) {
        json_object_set_new(o, "kernel_version", json_string(u.release));
        json_object_set_new(o, "kernel_arch", json_string(u.machine));
    }
    json_object_set_new(o, "host_id", json_string(s->host_id));
    char la[128];
    if (slurp("/proc/loadavg", la, sizeof la) > 0) {
        unsigned running, total;
        if (sscanf(la, "%*s %*s %*s %u/%u", &running, &total) == 2)
            json_object_set_new(o, "process_num", json_integer(total));
    }
    return o;
}

static json_t *mem_part(void)
{
    char buf[8192];
    if (slurp("/proc/meminfo", buf, sizeof buf) <= 0)
        return json_pack("{s:s}", "error", "cannot read /proc/meminfo");
    uint64_t total = 0, free_ = 0, avail = 0, buffers = 0, cached = 0, sreclaim = 0, st = 0, sf = 0;
    meminfo("MemTotal", &total, buf);
    meminfo("MemFree", &free_, buf);
    if (meminfo("MemAvailable", &avail, buf) != 0)
        avail = free_;
    meminfo("Buffers", &buffers, buf);
    meminfo("Cached", &cached, buf);
    meminfo("SReclaimable", &sreclaim, buf);
    meminfo("SwapTotal", &st, buf);
    meminfo("SwapFree", &sf, buf);
    uint64_t used = total > avail ? total - avail : 0;
    json_t *o = json_object();
    json_object_set_new(o, "total", json_integer((json_int_t)total));
    json_object_set_new(o, "free", json_integer((json_int_t)free_));
    json_object_set_new(o, "available", json_integer((json_int_t)avail));
    json_object_set_new(o, "used", json_integer((json_int_t)used));
    json_object_set_new(o, "used_percent",
                        json_real(total ? (double)used * 100.0 / (double)total : 0));
    json_object_set_new(o, "swap_total", json_integer((json_int_t)st));
    json_object_set_new(o, "swap_free", json_integer((json_int_t)sf));
    json_object_set_new(o, "swap_used", json_integer((json_int_t)(st > sf ? st - sf : 0)));
    json_object_set_new(
        o, "swap_used_percent",
        json_real(st ? (double)(st - (sf < st ? sf : st)) * 100.0 / (double)st : 0));
    return o;
}

static json_t *cpu_part(host_sampler *s)
{
    json_t *o = json_object();
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    json_object_set_new(o, "cores", json_integer(cores > 0 ? cores : 1));
    if (s->model[0])
        json_object_set_new(o, "model_name", json_string(s->model));
    if (s->mhz > 0)
        json_object_set_new(o, "mhz", json_real(s->mhz));
    json_object_set_new(o, "used_percent", json_real(cpu_used_percent(s)));
    return o;
}

static json_t *disk_part(const char *path)
{
    struct statvfs v;
    if (statvfs(path, &v) != 0)
        return json_pack("{s:s,s:s}", "path", path, "error", strerror(errno));
    uint64_t fr = v.f_frsize ? v.f_frsize : v.f_bsize;
    uint64_t total = (uint64_t)v.f_blocks * fr, free_ = (uint64_t)v.f_bavail * fr;
    uint64_t used = (uint64_t)(v.f_blocks - v.f_bfree) * fr;
    json_t *o = json_object();
    json_object_set_new(o, "path", json_string(path));
    json_object_set_new(o, "total", json_integer((json_int_t)total));
    json_object_set_new(o, "free", json_integer((json_int_t)free_));
    json_object_set_new(o, "used", json_integer((json_int_t)used));
    json_object_set_new(
        o, "used_percent",
        json_real(used + free_ ? (double)used * 100.0 / (double)(used + free_) : 0));
    uint64_t it = v.f_files, ifr = v.f_ffree;
    json_object_set_new(o, "inodes_total", json_integer((json_int_t)it));
    json_object_set_new(o, "inodes_free", json_integer((json_int_t)ifr));
    json_object_set_new(o, "inodes_used", json_integer((json_int_t)(it > ifr ? it - ifr : 0)));
    return o;
}

static int prefix_len(const struct sockaddr *mask)
{
    if (!mask)
        return -1;
    const unsigned char *b;
    size_t n;
    if (mask->sa_family == AF_INET) {
        b = (const unsigned char *)&((const struct sockaddr_in *)mask)->sin_addr;
        n = 4;
    } else if (mask->sa_family == AF_INET6) {
        b = (const unsigned char *)&((const struct sockaddr_in6 *)mask)->sin6_addr;
        n = 16;
    } else {
        return -1;
    }
    int bits = 0;
    for (size_t i = 0; i < n; i++)
        bits += __builtin_popcount(b[i]);
    return bits;
}

static json_t *find_iface(json_t *list, const char *name)
{
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v)
    {
        if (!strcmp(json_string_value(json_object_get(v, "name")), name))
            return v;
    }
    json_t *o = json_pack("{s:s,s:i,s:s,s:[]}", "name", name, "index",
                          (json_int_t)if_nametoindex(name), "mac", "", "addrs");
    json_array_append_new(list, o);
    return o;
}

static json_t *net_part(void)
{
    struct ifaddrs *ifs;
    if (getifaddrs(&ifs) != 0)
        return json_pack("{s:s}", "error", strerror(errno));
    json_t *list = json_array();
    for (struct ifaddrs *i = ifs; i; i = i->ifa_next) {
        if (!i->ifa_name)
            continue;
        json_t *o = find_iface(list, i->ifa_name);
        if (!i->ifa_addr)
            continue;
        int fam = i->ifa_addr->sa_family;
        if (fam == AF_PACKET) {
            const struct sockaddr_ll *ll = (const struct sockaddr_ll *)i->ifa_addr;
            char mac[3 * 8 + 1] = "";
            size_t o2 = 0;
            for (int k = 0; k < ll->sll_halen && k < 8; k++)
                o2 += (size_t)snprintf(mac + o2, sizeof mac - o2, k ? ":%02x" : "%02x",
                                       ll->sll_addr[k]);
            bool zero = true;
            for (int k = 0; k < ll->sll_halen && k < 8; k++)
                zero = zero && ll->sll_addr[k] == 0;
            json_object_set_new(o, "mac", json_string(zero ? "" : mac));
        } else if (fam == AF_INET || fam == AF_INET6) {
            char ip[INET6_ADDRSTRLEN], addr[INET6_ADDRSTRLEN + 16];
            const void *src = fam == AF_INET
                                  ? (const void *)&((struct sockaddr_in *)i->ifa_addr)->sin_addr
                                  : (const void *)&((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr;
            if (!inet_ntop(fam, src, ip, sizeof ip))
                continue;
            int pl = prefix_len(i->ifa_netmask);
            if (pl >= 0)
                snprintf(addr, sizeof addr, "%s/%d", ip, pl);
            else
                snprintf(addr, sizeof addr, "%s", ip);
            json_array_append_new(json_object_get(o, "addrs"),
                                  json_pack("{s:s,s:s}", "network", "ip+net", "address", addr));
        }
    }
    freeifaddrs(ifs);
    return json_pack("{s:o}", "interfaces", list);
}

/* Finds a program on PATH; returns a malloc'd path or NULL. */
static char *which(const char *prog)
{
    const char *path = getenv("PATH");
    if (!path || !*path)
        path = "/usr/local/bin:/usr/bin:/bin";
    char *dup = strdup(path), *save = NULL;
    if (!dup)
        return NULL;
    for (char *d = strtok_r(dup, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        char *full = bt_strdup_printf("%s/%s", *d ? d : ".", prog);
        if (full && access(full, X_OK) == 0) {
            free(dup);
            return full;
        }
        free(full);
    }
    free(dup);
    return NULL;
}

/* Runs nvidia-smi with a timeout and parses its CSV lines (SPEC §10). */
static json_t *gpu_query(const char *bin)
{
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) != 0)
        return NULL;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    char *argv[] = {
        (char *)"nvidia-smi",
        (char
             *)"--query-gpu=index,name,memory.total,memory.free,utilization.memory,utilization.gpu",
        (char *)"--format=csv,noheader,nounits", NULL};
    pid_t pid;
    int rc = posix_spawn(&pid, bin, &fa, &attr, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    close(pfd[1]);
    if (rc != 0) {
        close(pfd[0]);
        return NULL;
    }
    char out[16384];
    size_t n = 0;
    int64_t deadline = bt_now_ms() + NVSMI_TIMEOUT_MS;
    bool timed_out = false;
    for (;;) {
        int64_t left = deadline - bt_now_ms();
        if (left <= 0) {
            timed_out = true;
            break;
        }
        struct pollfd p = {.fd = pfd[0], .events = POLLIN};
        int r = poll(&p, 1, (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            timed_out = r == 0;
            break;
        }
        ssize_t got = read(pfd[0], out + n, sizeof out - 1 - n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        n += (size_t)got;
        if (n == sizeof out - 1)
            break;
    }
    close(pfd[0]);
    if (timed_out)
        kill(pid, SIGKILL);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    out[n] = '\0';
    json_t *gpus = json_array();
    char *save = NULL;
    for (char *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *f[6], *s2 = NULL;
        int k = 0;
        for (char *t = strtok_r(line, ",", &s2); t && k < 6; t = strtok_r(NULL, ",", &s2))
            f[k++] = bt_str_trim(t);
        unsigned long long mt, mf;
        double mu, gu;
        if (k != 6 || sscanf(f[2], "%llu", &mt) != 1 || sscanf(f[3], "%llu", &mf) != 1 ||
            sscanf(f[4], "%lf", &mu) != 1 || sscanf(f[5], "%lf", &gu) != 1)
            continue;
        json_array_append_new(gpus,
                              json_pack("{s:s,s:s,s:I,s:I,s:f,s:f}", "index", f[0], "model", f[1],
                                        "mem_total", (json_int_t)mt, "mem_free", (json_int_t)mf,
                                        "mem_used_percent", mu, "gpu_used_percent", gu));
    }
    return json_pack("{s:o}", "gpus", gpus);
}

static json_t *gpu_part(host_sampler *s)
{
    pthread_mutex_lock(&s->gpu_mu);
    int64_t now = bt_now_ms();
    if (s->gpu_at_ms == 0 || now - s->gpu_at_ms >= GPU_CACHE_MS) {
        json_decref(s->gpu);
        s->gpu = NULL;
        char *bin = which("nvidia-smi");
        if (bin) {
            s->gpu = gpu_query(bin);
            free(bin);
        }
        s->gpu_at_ms = now;
    }
    json_t *r = s->gpu ? json_deep_copy(s->gpu) : NULL;
    pthread_mutex_unlock(&s->gpu_mu);
    return r;
}

json_t *host_hardware(host_sampler *s, const char *disk_path)
{
    json_t *hw = json_object();
    if (!hw)
        return NULL;
    json_object_set_new(hw, "host_stats", host_part(s));
    json_object_set_new(hw, "mem_stats", mem_part());
    json_object_set_new(hw, "cpu_stats", cpu_part(s));
    json_object_set_new(hw, "disk_stats", disk_part(disk_path));
    json_object_set_new(hw, "net_stats", net_part());
    json_t *gpu = gpu_part(s);
    if (gpu)
        json_object_set_new(hw, "gpu_stats", gpu);
    return hw;
}
