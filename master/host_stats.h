/* Host and process statistics for inspect (SPEC §10): /proc, sysfs, statvfs, getifaddrs and
 * nvidia-smi when it is installed. */
#ifndef BAETYL_MASTER_HOST_STATS_H
#define BAETYL_MASTER_HOST_STATS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

typedef struct host_sampler host_sampler;

/* A sampler keeps the previous /proc/stat reading, so CPU use is measured between two
 * calls (at least 200 ms apart; a closer call reuses the last figure). Thread-safe. */
host_sampler *host_sampler_new(void);
/* Frees a sampler (NULL is fine). */
void host_sampler_free(host_sampler *s);
/* The "hardware" object of inspect: host_stats, mem_stats, cpu_stats, disk_stats (of
 * disk_path), net_stats and, when nvidia-smi exists, gpu_stats. Never NULL unless out of
 * memory; a part that cannot be read carries an "error" text instead. */
json_t *host_hardware(host_sampler *s, const char *disk_path);

/* Reads /proc/<pid>/stat: CPU time in clock ticks (user+system), resident set in bytes,
 * start time in ticks since boot, and the process name (comm). Returns 0 or -1 (gone). */
int proc_sample(pid_t pid, uint64_t *ticks, uint64_t *rss, uint64_t *start_ticks, char *comm,
                size_t commlen);
/* Seconds since boot, from /proc/uptime (0 when unreadable). */
double host_uptime(void);
/* Total memory in bytes (0 when unreadable). */
uint64_t host_mem_total(void);
/* The stable host fingerprint: /etc/machine-id (or D-Bus's copy), else the hostname. */
void host_id(char *buf, size_t len);
/* Go's GOARCH name of this machine ("amd64", "arm64", "arm", "386", or uname's). */
const char *host_arch(void);

#endif
