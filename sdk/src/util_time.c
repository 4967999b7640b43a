/* Clock, deadlines and time formats (util.h). */
#include "baetyl/util.h"

#include <stdio.h>
#include <string.h>

int64_t bt_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t bt_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

struct timespec bt_deadline_in(int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    if (ms < 0)
        ms = 0;
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

int bt_poll_timeout(int64_t deadline_ms, int64_t now_ms, int max_ms)
{
    int64_t left = deadline_ms - now_ms;
    if (left <= 0)
        return 0;
    return left > max_ms ? max_ms : (int)left;
}

int bt_cond_init_monotonic(pthread_cond_t *cv)
{
    pthread_condattr_t ca;
    int r = pthread_condattr_init(&ca);
    if (r != 0)
        return r;
    r = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    if (r == 0)
        r = pthread_cond_init(cv, &ca);
    pthread_condattr_destroy(&ca);
    return r;
}

void bt_fmt_duration(int64_t ms, char *buf, size_t len)
{
    if (ms == 0) {
        snprintf(buf, len, "0s");
        return;
    }
    const char *sign = ms < 0 ? "-" : "";
    uint64_t u = ms < 0 ? (uint64_t)0 - (uint64_t)ms : (uint64_t)ms;
    if (u < 1000) {
        snprintf(buf, len, "%s%llums", sign, (unsigned long long)u);
        return;
    }
    uint64_t h = u / 3600000, m = (u / 60000) % 60, s = (u / 1000) % 60, f = u % 1000;
    char sec[32];
    if (f == 0)
        snprintf(sec, sizeof sec, "%llus", (unsigned long long)s);
    else {
        char fr[8];
        snprintf(fr, sizeof fr, "%03llu", (unsigned long long)f);
        for (int i = 2; i > 0 && fr[i] == '0'; i--)
            fr[i] = '\0';
        snprintf(sec, sizeof sec, "%llu.%ss", (unsigned long long)s, fr);
    }
    if (h)
        snprintf(buf, len, "%s%lluh%llum%s", sign, (unsigned long long)h, (unsigned long long)m,
                 sec);
    else if (m)
        snprintf(buf, len, "%s%llum%s", sign, (unsigned long long)m, sec);
    else
        snprintf(buf, len, "%s%s", sign, sec);
}

void bt_fmt_time_utc(const struct timespec *ts, char *buf, size_t len)
{
    struct tm tm;
    time_t t = ts->tv_sec;
    gmtime_r(&t, &tm);
    char base[32];
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    if (ts->tv_nsec == 0) {
        snprintf(buf, len, "%sZ", base);
        return;
    }
    char frac[16];
    snprintf(frac, sizeof frac, "%09ld", ts->tv_nsec);
    for (int i = 8; i > 0 && frac[i] == '0'; i--)
        frac[i] = '\0';
    snprintf(buf, len, "%s.%sZ", base, frac);
}
