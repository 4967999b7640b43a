/* A pool of runtime instances for one function (SPEC §12): instances are named
 * <service>.<function>.<n> (n from 1..max, reused), created on demand up to max, kept at least
 * min, destroyed after idletime idle (checked every evicttime) or after a failed call. An
 * instance serves up to instance.concurrent calls at once over its one HTTP/2 connection
 * (a stream each): a new instance is started only when every live one is that busy, in the
 * background when others are live (they keep taking calls meanwhile). One that
 * failed a call takes no more calls and is destroyed when the last of its calls returns.
 * A failed start makes the next one wait (500 ms, doubling up to backoff.max) so a runtime
 * that cannot start is not restarted in a loop. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fm.h"
#include "baetyl/util.h"

#define BACKOFF_FIRST_MS 500
/* While an instance starts: how long each wait for its connection lasts before asking the
 * master whether it exited, and how many lines of its output to ask for. */
#define CONNECT_SLICE_MS 200
#define STATUS_LINES 10

struct fm_instance {
    char name[192];
    char dial[256];
    int id;
    bt_fn_client *client;
    int64_t idle_since; /* when busy last dropped to 0 */
    int busy;           /* calls in flight [mu] */
    bool broken;        /* a call failed: takes no more calls [mu] */
    int batch;          /* CallBatch: 0 not known yet, 1 served, -1 Unimplemented (atomic) */
    fm_instance *next;
};

struct fm_pool {
    const fm_function_cfg *cfg;
    fm_backend be;
    pthread_mutex_t mu;
    pthread_cond_t cv;       /* an instance came back, a slot was freed, or closed */
    pthread_cond_t evict_cv; /* wakes the evictor at close */
    fm_instance *live;       /* every started instance, newest first */
    size_t alive, peak;
    int starting;    /* instances being started */
    bool *ids;       /* ids[n]: n in use (1..max) */
    int64_t backoff; /* ms of the last wait; 0 after a good start */
    int64_t backoff_until;
    bool closed, evicting;
    pthread_t evictor;
};

const fm_function_cfg *fm_pool_function(const fm_pool *p)
{
    return p->cfg;
}

fm_pool *fm_pool_new(const fm_function_cfg *cfg, const fm_backend *b, char *err, size_t errlen)
{
    fm_pool *p = calloc(1, sizeof *p);
    if (!p || !(p->ids = calloc((size_t)cfg->max + 1, sizeof *p->ids))) {
        free(p);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    p->cfg = cfg;
    p->be = *b;
    pthread_mutex_init(&p->mu, NULL);
    bt_cond_init_monotonic(&p->cv);
    bt_cond_init_monotonic(&p->evict_cv);
    return p;
}

/* Asks the backend to stop instance `name`. At shutdown the master may already be gone
 * (it stops every instance itself then): not worth a warning. */
static void backend_stop(fm_pool *p, const char *name, bool shutdown)
{
    char err[256];
    if (p->be.stop(p->be.arg, p->cfg->service, name, err, sizeof err) < 0)
        bt_logkv(shutdown ? BT_LOG_DEBUG : BT_LOG_WARN, "failed to stop instance", "function",
                 p->cfg->name, "instance", name, "error", err, NULL);
}

/* Dials in within the call timeout, asking the master between short waits whether the
 * process already exited (an import error in the user's code, a bad config): then, or
 * when the time is up, the error says so with its exit code and last lines of output,
 * which are logged at error level. 0, or -1 with err. */
static int connect_or_explain(fm_pool *p, fm_instance *in, char *err, size_t errlen)
{
    const fm_function_cfg *f = p->cfg;
    int64_t deadline = bt_now_ms() + f->call.timeout;
    fm_instance_status st;
    char why[256];
    bool known = false;
    for (;;) {
        int64_t left = deadline - bt_now_ms();
        long slice = left < CONNECT_SLICE_MS ? (long)left : CONNECT_SLICE_MS;
        if (slice > 0 && bt_fn_client_connect(in->client, slice, why, sizeof why) == 0)
            return 0;
        /* an older master answers 404: only the timeout tells then */
        known = p->be.status && p->be.status(p->be.arg, f->service, in->name, STATUS_LINES, &st,
                                             why, sizeof why) == 0;
        if ((known && strcmp(st.state, "exited") == 0) || bt_now_ms() >= deadline)
            break;
    }
    bool exited = known && strcmp(st.state, "exited") == 0;
    int n; /* cut to errlen: the log line below has it all */
    if (exited)
        n = snprintf(err, errlen, "the instance exited (exit code %d) before serving%s%s",
                     st.exit_code, *st.output ? "; its last output: " : "", st.output);
    else
        n = snprintf(err, errlen, "connect to %s timed out after %lld ms%s%s", in->dial,
                     (long long)f->call.timeout, known && *st.output ? "; its last output: " : "",
                     known ? st.output : "");
    (void)n;
    char code[16];
    snprintf(code, sizeof code, "%d", known ? st.exit_code : -1);
    bt_logkv(BT_LOG_ERROR, exited ? "instance exited before serving" : "instance never answered",
             "function", f->name, "instance", in->name, "state", known ? st.state : "unknown",
             "exit_code", code, "output", known ? st.output : "", NULL);
    return -1;
}

/* Starts instance number id and dials it; NULL with err (the instance is stopped again). */
static fm_instance *instance_create(fm_pool *p, int id, char *err, size_t errlen)
{
    const fm_function_cfg *f = p->cfg;
    fm_instance *in = calloc(1, sizeof *in);
    if (!in) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    in->id = id;
    snprintf(in->name, sizeof in->name, "%s.%s.%d", f->service, f->name, id);
    int64_t t0 = bt_now_ms();
    char why[2048]; /* room for an exited instance's last lines */
    if (p->be.start(p->be.arg, f->service, in->name, in->dial, sizeof in->dial, why, sizeof why) <
        0) {
        snprintf(err, errlen, "failed to start instance (%s): %s", in->name, why);
        /* the master may have started it before failing to answer: make sure it is gone */
        backend_stop(p, in->name, false);
        free(in);
        return NULL;
    }
    bt_fn_client_options o = bt_fn_client_config_options(&f->call);
    in->client = bt_fn_client_new(in->dial, &o, why, sizeof why);
    if (!in->client || connect_or_explain(p, in, why, sizeof why) < 0) {
        snprintf(err, errlen, "failed to connect to instance (%s): %s", in->name, why);
        bt_fn_client_free(in->client);
        backend_stop(p, in->name, false);
        free(in);
        return NULL;
    }
    char ms[32];
    snprintf(ms, sizeof ms, "%lld", (long long)(bt_now_ms() - t0));
    bt_logkv(BT_LOG_INFO, "instance started", "function", f->name, "instance", in->name, "address",
             in->dial, "ms", ms, NULL);
    return in;
}

static void instance_destroy(fm_pool *p, fm_instance *in, const char *why)
{
    bt_fn_client_free(in->client);
    backend_stop(p, in->name, strcmp(why, "shutdown") == 0);
    bt_logkv(BT_LOG_INFO, "instance stopped", "function", p->cfg->name, "instance", in->name,
             "reason", why, NULL);
    free(in);
}

/* Takes a free id and a slot (mu held). */
static int reserve(fm_pool *p)
{
    int id = 1;
    while (id <= p->cfg->max && p->ids[id])
        id++;
    p->ids[id] = true; /* alive < max guarantees one */
    if (++p->alive > p->peak)
        p->peak = p->alive;
    return id;
}

/* Gives a slot back (mu held). */
static void release(fm_pool *p, int id)
{
    p->ids[id] = false;
    p->alive--;
    pthread_cond_broadcast(&p->cv);
}

/* A start failed: the slot is given back and the next start waits (mu held). */
static void start_failed_locked(fm_pool *p, int id, const char *err)
{
    release(p, id);
    int64_t max = p->cfg->call.backoff_max;
    p->backoff = p->backoff ? p->backoff * 2 : BACKOFF_FIRST_MS;
    if (p->backoff > max)
        p->backoff = max;
    p->backoff_until = bt_now_ms() + p->backoff;
    char ms[32];
    snprintf(ms, sizeof ms, "%lld", (long long)p->backoff);
    bt_logkv(BT_LOG_ERROR, "instance failed to start", "function", p->cfg->name, "error", err,
             "backoff_ms", ms, NULL);
}

/* Creates one instance into a reserved slot, with mu released during the work. Returns it,
 * or NULL with err after arming the backoff (mu held on entry and on return). */
static fm_instance *create_locked(fm_pool *p, char *err, size_t errlen)
{
    int id = reserve(p);
    p->starting++;
    pthread_mutex_unlock(&p->mu);
    fm_instance *in = instance_create(p, id, err, errlen);
    pthread_mutex_lock(&p->mu);
    p->starting--;
    if (in) {
        p->backoff = 0;
        p->backoff_until = 0;
        return in;
    }
    start_failed_locked(p, id, err);
    return NULL;
}

struct start_job {
    fm_pool *p;
    int id;
};

/* A start in the background: the new instance joins the live ones (and the waiters are
 * woken), or the backoff is armed. */
static void *start_main(void *arg)
{
    struct start_job *j = arg;
    fm_pool *p = j->p;
    int id = j->id;
    free(j);
    char err[512];
    fm_instance *in = instance_create(p, id, err, sizeof err);
    pthread_mutex_lock(&p->mu);
    p->starting--;
    if (in) {
        p->backoff = 0;
        p->backoff_until = 0;
        in->idle_since = bt_now_ms();
        in->next = p->live;
        p->live = in;
    } else {
        start_failed_locked(p, id, err);
    }
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* Starts one more instance on a thread of its own (mu held): the calls keep going to the
 * live ones meanwhile. false when no thread could be started (nothing changed). */
static bool start_background(fm_pool *p)
{
    struct start_job *j = malloc(sizeof *j);
    if (!j)
        return false;
    j->p = p;
    j->id = reserve(p);
    p->starting++;
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&t, &attr, start_main, j);
    pthread_attr_destroy(&attr);
    if (rc == 0)
        return true;
    p->starting--;
    p->ids[j->id] = false;
    p->alive--;
    free(j);
    return false;
}

/* True when an instance that takes calls is live (mu held). */
static bool any_healthy(const fm_pool *p)
{
    for (const fm_instance *in = p->live; in; in = in->next)
        if (!in->broken)
            return true;
    return false;
}

/* The first live instance with room for one more call, taken (mu held); NULL if none.
 * Filling the newest first leaves the others idle, so the evictor can retire them. */
static fm_instance *pick(fm_pool *p)
{
    for (fm_instance *in = p->live; in; in = in->next)
        if (!in->broken && in->busy < p->cfg->concurrent) {
            in->busy++;
            return in;
        }
    return NULL;
}

/* Takes in off the live list (mu held). */
static void unlink_live(fm_pool *p, fm_instance *in)
{
    for (fm_instance **pp = &p->live; *pp; pp = &(*pp)->next)
        if (*pp == in) {
            *pp = in->next;
            break;
        }
    in->next = NULL;
}

fm_instance *fm_pool_get(fm_pool *p, char *err, size_t errlen)
{
    pthread_mutex_lock(&p->mu);
    fm_instance *in = NULL;
    for (;;) {
        if (p->closed) {
            snprintf(err, errlen, "function (%s) is stopping", p->cfg->name);
            break;
        }
        in = pick(p);
        if (in)
            break;
        /* one start at a time: the instance starting may take every waiting call */
        if (p->alive < (size_t)p->cfg->max && !p->starting) {
            int64_t now = bt_now_ms();
            if (now < p->backoff_until) {
                struct timespec ts;
                ts = bt_deadline_in(p->backoff_until - bt_now_ms());
                pthread_cond_timedwait(&p->cv, &p->mu, &ts);
                continue;
            }
            /* Scaling out: the live instances keep taking calls while it starts. */
            if (any_healthy(p) && start_background(p)) {
                pthread_cond_wait(&p->cv, &p->mu);
                continue;
            }
            in = create_locked(p, err, errlen);
            if (in) {
                in->busy = 1;
                in->next = p->live;
                p->live = in;
                pthread_cond_broadcast(&p->cv); /* room for the calls that waited */
            }
            break;
        }
        pthread_cond_wait(&p->cv, &p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return in;
}

fm_instance *fm_pool_try_get(fm_pool *p)
{
    pthread_mutex_lock(&p->mu);
    fm_instance *in = p->closed ? NULL : pick(p);
    pthread_mutex_unlock(&p->mu);
    return in;
}

void fm_pool_put(fm_pool *p, fm_instance *in, bool healthy)
{
    pthread_mutex_lock(&p->mu);
    in->busy--;
    if (!healthy)
        in->broken = true;
    if (!in->broken || in->busy > 0) {
        if (in->busy == 0)
            in->idle_since = bt_now_ms();
        if (!in->broken)
            pthread_cond_broadcast(&p->cv); /* room for one more call */
        pthread_mutex_unlock(&p->mu);
        return;
    }
    unlink_live(p, in); /* the last call of a broken instance returned */
    pthread_mutex_unlock(&p->mu);
    /* The id stays taken until the instance is gone: a new instance of the same name must
     * not be started before this one's stop. */
    int id = in->id;
    instance_destroy(p, in, "call failed");
    pthread_mutex_lock(&p->mu);
    release(p, id);
    pthread_mutex_unlock(&p->mu);
}

bt_fn_client *fm_instance_client(fm_instance *in)
{
    return in->client;
}

const char *fm_instance_name(const fm_instance *in)
{
    return in->name;
}

size_t fm_pool_room(fm_pool *p)
{
    pthread_mutex_lock(&p->mu);
    size_t room = ((size_t)p->cfg->max - p->alive) * (size_t)p->cfg->concurrent;
    for (fm_instance *in = p->live; in; in = in->next)
        if (!in->broken && in->busy < p->cfg->concurrent)
            room += (size_t)(p->cfg->concurrent - in->busy);
    pthread_mutex_unlock(&p->mu);
    return room;
}

bool fm_instance_batches(const fm_instance *in)
{
    return __atomic_load_n(&in->batch, __ATOMIC_RELAXED) >= 0;
}

bool fm_instance_set_batches(fm_instance *in, bool yes)
{
    int v = yes ? 1 : -1;
    return __atomic_exchange_n(&in->batch, v, __ATOMIC_RELAXED) != v;
}

int fm_pool_call(fm_pool *p, const bt_fn_msg *in, bt_fn_msg *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    fm_instance *inst = fm_pool_get(p, err, errlen);
    if (!inst)
        return BT_FN_EUNAVAILABLE;
    int rc = bt_fn_call_ex(inst->client, in, out, (long)p->cfg->call.timeout, NULL, err, errlen);
    if (rc != BT_FN_OK)
        bt_logkv(BT_LOG_WARN, "call failed", "function", p->cfg->name, "instance", inst->name,
                 "invokeid", in->function_invoke_id ? in->function_invoke_id : "", "error", err,
                 NULL);
    fm_pool_put(p, inst, rc == BT_FN_OK);
    return rc;
}

/* Every evicttime: destroy instances idle for idletime (keeping min), then start instances
 * up to min (unless a failed start's backoff runs). */
static void *evictor_main(void *arg)
{
    fm_pool *p = arg;
    const fm_function_cfg *f = p->cfg;
    pthread_mutex_lock(&p->mu);
    while (!p->closed) {
        /* keep min alive */
        while (!p->closed && p->alive < (size_t)f->min && bt_now_ms() >= p->backoff_until) {
            char err[512];
            fm_instance *in = create_locked(p, err, sizeof err);
            if (!in)
                break;
            in->idle_since = bt_now_ms();
            in->next = p->live;
            p->live = in;
            pthread_cond_broadcast(&p->cv);
        }
        struct timespec ts;
        ts = bt_deadline_in(f->evicttime);
        while (!p->closed && pthread_cond_timedwait(&p->evict_cv, &p->mu, &ts) != ETIMEDOUT)
            ;
        if (p->closed)
            break;
        int64_t now = bt_now_ms();
        fm_instance *victims = NULL, **pp = &p->live;
        size_t nvictims = 0;
        while (*pp) {
            fm_instance *in = *pp;
            if (in->busy == 0 && !in->broken && p->alive - nvictims > (size_t)f->min &&
                now - in->idle_since >= f->idletime) {
                *pp = in->next;
                in->next = victims;
                victims = in;
                nvictims++;
            } else {
                pp = &in->next;
            }
        }
        pthread_mutex_unlock(&p->mu);
        while (victims) {
            fm_instance *in = victims;
            victims = in->next;
            int id = in->id;
            instance_destroy(p, in, "idle");
            pthread_mutex_lock(&p->mu);
            release(p, id);
            pthread_mutex_unlock(&p->mu);
        }
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

int fm_pool_start(fm_pool *p, char *err, size_t errlen)
{
    int rc = pthread_create(&p->evictor, NULL, evictor_main, p);
    if (rc != 0) {
        snprintf(err, errlen, "cannot start a thread: %s", strerror(rc));
        return -1;
    }
    p->evicting = true;
    return 0;
}

void fm_pool_close(fm_pool *p)
{
    pthread_mutex_lock(&p->mu);
    p->closed = true;
    pthread_cond_broadcast(&p->cv);
    pthread_cond_broadcast(&p->evict_cv);
    pthread_mutex_unlock(&p->mu);
}

struct stop_job {
    fm_pool *p;
    fm_instance *in;
};

static void *stop_main(void *arg)
{
    struct stop_job *j = arg;
    instance_destroy(j->p, j->in, "shutdown");
    return NULL;
}

bool fm_pool_closed(fm_pool *p)
{
    pthread_mutex_lock(&p->mu);
    bool c = p->closed;
    pthread_mutex_unlock(&p->mu);
    return c;
}

void fm_pool_free(fm_pool *p)
{
    if (!p)
        return;
    fm_pool_close(p);
    if (p->evicting)
        pthread_join(p->evictor, NULL);
    pthread_mutex_lock(&p->mu);
    while (p->starting > 0) /* background starts: their instances are stopped below */
        pthread_cond_wait(&p->cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
    /* Stopped side by side: each stop waits for its process to exit. */
    size_t n = 0;
    for (fm_instance *in = p->live; in; in = in->next)
        n++;
    pthread_t *ts = calloc(n ? n : 1, sizeof *ts);
    struct stop_job *jobs = calloc(n ? n : 1, sizeof *jobs);
    size_t started = 0;
    while (p->live) {
        fm_instance *in = p->live;
        p->live = in->next;
        if (ts && jobs) {
            jobs[started] = (struct stop_job){p, in};
            if (pthread_create(&ts[started], NULL, stop_main, &jobs[started]) == 0) {
                started++;
                continue;
            }
        }
        instance_destroy(p, in, "shutdown");
    }
    for (size_t i = 0; i < started; i++)
        pthread_join(ts[i], NULL);
    free(ts);
    free(jobs);
    pthread_cond_destroy(&p->cv);
    pthread_cond_destroy(&p->evict_cv);
    pthread_mutex_destroy(&p->mu);
    free(p->ids);
    free(p);
}

size_t fm_pool_size(fm_pool *p)
{
    pthread_mutex_lock(&p->mu);
    size_t n = p->alive;
    pthread_mutex_unlock(&p->mu);
    return n;
}

size_t fm_pool_starting(fm_pool *p)
{
    pthread_mutex_lock(&p->mu);
    size_t n = p->starting > 0 ? (size_t)p->starting : 0;
    pthread_mutex_unlock(&p->mu);
    return n;
}

size_t fm_pool_peak(fm_pool *p)
{
    pthread_mutex_lock(&p->mu);
    size_t n = p->peak;
    pthread_mutex_unlock(&p->mu);
    return n;
}
