/* Supervision of one instance (SPEC §6): a thread per instance waits for its process, and
 * applies the restart policy with backoff min·factor^n capped at max (reset after a run
 * of at least max), up to retry.max restarts. A stop request (eventfd) turns into
 * SIGTERM, `grace`, then SIGKILL. Only this thread waits for, signals and reaps its
 * process, so a pid is never signalled after it was reaped. */
#include "supervisor.h"
#include "baetyl/error.h"
#include "baetyl/util.h"

#include <baetyl/log.h>

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

static void log_inst(bt_log_level l, const char *msg, const sup_proc *in, const char *k,
                     const char *v)
{
    bt_logkv(l, msg, "service", in->service, "instance", in->name, k, v, NULL);
}

static void mark_running(sup_proc *in)
{
    in->on_state(in, SUP_RUNNING);
    char pid[24];
    if (in->run.pid > 0) {
        snprintf(pid, sizeof pid, "%d", (int)in->run.pid);
        log_inst(BT_LOG_INFO, "instance started", in, "pid", pid);
    } else { /* a container */
        snprintf(pid, sizeof pid, "%.12s", in->run.id);
        log_inst(BT_LOG_INFO, "instance started", in, "cid", pid);
    }
}

static bool stop_requested(sup_proc *in)
{
    return atomic_load(&in->stop_req);
}

/* Sleeps ms, or less when a stop is requested; true when it is. */
static bool sleep_or_stop(sup_proc *in, int64_t ms)
{
    int64_t deadline = bt_now_ms() + ms;
    for (;;) {
        if (stop_requested(in))
            return true;
        int64_t left = deadline - bt_now_ms();
        if (left <= 0)
            return false;
        struct pollfd p = {.fd = in->wake_fd, .events = POLLIN};
        int r = poll(&p, 1, left > INT32_MAX ? INT32_MAX : (int)left);
        if (r > 0)
            return true; /* the eventfd is only ever written by a stop request */
    }
}

/* SIGTERM, wait `grace`, SIGKILL. */
static void stop_process(sup_proc *in)
{
    bt_engine *e = in->engine;
    int code = 0;
    e->ops->signal_instance(e, &in->run, false);
    int64_t grace = in->grace;
    int r =
        e->ops->wait_instance(e, &in->run, grace > INT32_MAX ? INT32_MAX : (int)grace, -1, &code);
    if (r != 1) {
        char g[32];
        bt_fmt_duration(grace, g, sizeof g);
        log_inst(BT_LOG_WARN, "instance did not stop within grace, killing it", in, "grace", g);
        e->ops->signal_instance(e, &in->run, true);
        while (e->ops->wait_instance(e, &in->run, -1, -1, &code) == 0)
            ;
    }
    in->last_code = code;
    in->on_state(in, SUP_EXITED);
    log_inst(BT_LOG_INFO, "instance stopped", in, NULL, NULL);
}

static bool should_restart(const app_restart *rp, int code)
{
    if (strcmp(rp->policy, "no") == 0)
        return false;
    if (strcmp(rp->policy, "on-failure") == 0)
        return code != 0;
    return true;
}

static int64_t backoff_ms(const app_restart *rp, int n)
{
    double d = (double)rp->backoff_min * pow(rp->backoff_factor, n);
    if (!(d <= (double)rp->backoff_max))
        d = (double)rp->backoff_max;
    return (int64_t)d;
}

static void *supervise(void *arg)
{
    sup_proc *in = arg;
    bt_engine *e = in->engine;
    const app_restart *rp = in->restart;
    long retries = 0;
    int n = 0;
    int64_t started = bt_now_ms();
    char msg[512], errbuf[512];

    for (;;) {
        int code = 0;
        int r = e->ops->wait_instance(e, &in->run, -1, in->wake_fd, &code);
        if (r != 1) {
            if (stop_requested(in)) {
                stop_process(in);
                break;
            }
            if (r < 0) {
                log_inst(BT_LOG_ERROR, "failed to wait for instance", in, "error", strerror(errno));
                sleep_or_stop(in, 1000);
            }
            continue;
        }
        int64_t ran = bt_now_ms() - started;
        atomic_store(&in->last_exit, code);
        atomic_store(&in->exited, true);
        in->last_code = code;
        if (stop_requested(in)) {
            in->on_state(in, SUP_EXITED);
            break;
        }
        if (!should_restart(rp, code)) {
            in->on_state(in, SUP_EXITED);
            snprintf(msg, sizeof msg, "instance (%s) exited (code %d)", in->name, code);
            bt_logkv(code ? BT_LOG_WARN : BT_LOG_INFO, msg, "service", in->service, "instance",
                     in->name, NULL);
            break;
        }
        /* Decided here (SPEC §6): a run of at least backoff.max starts the backoff over. */
        if (ran >= rp->backoff_max)
            n = 0;
        bool started_again = false;
        while (!started_again) {
            if (rp->retry_max > 0 && retries >= rp->retry_max) {
                in->on_state(in, SUP_EXITED);
                snprintf(msg, sizeof msg,
                         "instance (%s) exited (code %d), retried too many times (%ld)", in->name,
                         code, rp->retry_max);
                bt_logkv(BT_LOG_ERROR, msg, "service", in->service, "instance", in->name, NULL);
                goto done;
            }
            int64_t delay = backoff_ms(rp, n);
            if (n < 64)
                n++;
            retries++;
            in->on_state(in, SUP_RESTARTING);
            char d[32];
            bt_fmt_duration(delay, d, sizeof d);
            snprintf(msg, sizeof msg, "instance (%s) exited (code %d), restarting in %s", in->name,
                     code, d);
            bt_logkv(BT_LOG_WARN, msg, "service", in->service, "instance", in->name, NULL);
            if (sleep_or_stop(in, delay))
                goto done;
            if (e->ops->start_instance(e, in->eng_state, in->name, in->env, &in->run, errbuf,
                                       sizeof errbuf) == 0) {
                started_again = true;
                atomic_fetch_add(&in->restarts, 1);
            } else {
                log_inst(BT_LOG_ERROR, "failed to restart instance", in, "error", errbuf);
                code = -1;
                in->last_code = code;
            }
        }
        started = bt_now_ms();
        mark_running(in);
    }
done:
    in->on_state(in, SUP_FINISHED);
    return NULL;
}

int sup_launch(sup_proc *in, char *err, size_t errlen)
{
    bt_engine *e = in->engine;
    atomic_store(&in->stop_req, false);
    in->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (in->wake_fd < 0)
        return bt_errf(err, errlen, "eventfd: %s", strerror(errno));
    if (e->ops->start_instance(e, in->eng_state, in->name, in->env, &in->run, err, errlen) != 0) {
        close(in->wake_fd);
        in->wake_fd = -1;
        return -1;
    }
    mark_running(in);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    int rc = pthread_create(&in->thread, &attr, supervise, in);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        /* No supervisor: stop the process here; the caller frees the record. */
        int code;
        e->ops->signal_instance(e, &in->run, true);
        while (e->ops->wait_instance(e, &in->run, -1, -1, &code) == 0)
            ;
        in->on_state(in, SUP_EXITED);
        close(in->wake_fd);
        in->wake_fd = -1;
        return bt_errf(err, errlen, "failed to start supervisor of instance (%s): %s", in->name,
                       strerror(rc));
    }
    in->thread_started = true;
    return 0;
}

void sup_request_stop(sup_proc *in)
{
    atomic_store(&in->stop_req, true);
    if (in->wake_fd >= 0) {
        uint64_t one = 1;
        ssize_t w = write(in->wake_fd, &one, sizeof one);
        (void)w;
    }
}

void sup_join(sup_proc *in)
{
    if (in->thread_started) {
        pthread_join(in->thread, NULL);
        in->thread_started = false;
    }
    if (in->wake_fd >= 0) {
        close(in->wake_fd);
        in->wake_fd = -1;
    }
}
