/* The writer thread of a sync store: store_submit() hands it one append at a time, so the
 * hub's event loop reads, dispatches and sends while the commit is flushed to the disk, and
 * the publishes that arrive meanwhile make the next group. Appends, other writes and reads
 * from the loop's thread may run at the same time: LMDB orders write txns, s->wmu orders
 * the store's own bookkeeping and s->maplock keeps every txn out while the map grows. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "baetyl/error.h"
#include "store_internal.h"

#define WRITER_STACK (256u << 10)

static void *writer_main(void *arg)
{
    store *s = arg;
    pthread_mutex_lock(&s->jmu);
    for (;;) {
        while (!s->job && !s->wstop)
            pthread_cond_wait(&s->jcond, &s->jmu);
        if (!s->job)
            break;
        store_job *j = s->job;
        pthread_mutex_unlock(&s->jmu);
        j->rc = store_append(s, j->msgs, j->n, j->seqs, j->offs, j->noffs, j->err, sizeof j->err);
        pthread_mutex_lock(&s->jmu);
        s->job = NULL;
        s->done = j;
        uint64_t one = 1;
        /* The fd is a counter: a write can only fail on overflow, which one job cannot do. */
        if (write(s->done_fd, &one, sizeof one) < 0)
            j->rc = j->rc ? j->rc : -1;
        pthread_cond_broadcast(&s->jcond);
    }
    pthread_mutex_unlock(&s->jmu);
    return NULL;
}

int store_writer_start(store *s)
{
    s->done_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (s->done_fd < 0)
        return -1;
    pthread_mutex_init(&s->jmu, NULL);
    pthread_cond_init(&s->jcond, NULL);
    /* A small stack of our own: glibc keeps the stacks it allocates mapped after the thread
     * ends, and on a 32-bit system such a leftover splits the address space that a store's
     * map (1 GiB by default) must find in one piece. store_append needs little stack. */
    pthread_attr_t at;
    pthread_attr_init(&at);
    s->wstack = malloc(WRITER_STACK);
    int rc = s->wstack ? pthread_attr_setstack(&at, s->wstack, WRITER_STACK) : ENOMEM;
    if (rc == 0)
        rc = pthread_create(&s->writer, &at, writer_main, s);
    pthread_attr_destroy(&at);
    if (rc) {
        free(s->wstack);
        s->wstack = NULL;
        pthread_mutex_destroy(&s->jmu);
        pthread_cond_destroy(&s->jcond);
        close(s->done_fd);
        s->done_fd = -1;
        return -1;
    }
    s->has_writer = 1;
    return 0;
}

void store_writer_stop(store *s)
{
    if (!s->has_writer)
        return;
    pthread_mutex_lock(&s->jmu);
    while (s->job)
        pthread_cond_wait(&s->jcond, &s->jmu);
    s->wstop = 1;
    pthread_cond_broadcast(&s->jcond);
    pthread_mutex_unlock(&s->jmu);
    pthread_join(s->writer, NULL);
    free(s->wstack);
    s->wstack = NULL;
    pthread_mutex_destroy(&s->jmu);
    pthread_cond_destroy(&s->jcond);
    close(s->done_fd);
    s->done_fd = -1;
    s->has_writer = 0;
}

int store_submit(store *s, store_job *j)
{
    if (!s || !j || !s->has_writer)
        return -1;
    pthread_mutex_lock(&s->jmu);
    int busy = s->job || s->done || s->inflight;
    if (!busy) {
        s->job = j;
        s->inflight = 1;
    }
    pthread_mutex_unlock(&s->jmu);
    /* After the unlock: the writer wakes to a free mutex instead of blocking on it again. */
    if (!busy)
        pthread_cond_broadcast(&s->jcond);
    return busy ? -1 : 0;
}

int store_done_fd(const store *s)
{
    return s && s->has_writer ? s->done_fd : -1;
}

int store_busy(const store *s)
{
    return s && s->has_writer && s->inflight;
}

store_job *store_reap(store *s, int wait)
{
    if (!s || !s->has_writer)
        return NULL;
    pthread_mutex_lock(&s->jmu);
    while (wait && s->inflight && !s->done)
        pthread_cond_wait(&s->jcond, &s->jmu);
    store_job *j = s->done;
    if (j) {
        uint64_t v;
        s->done = NULL;
        s->inflight = 0;
        /* Drains the counter: level-triggered epoll would report it again otherwise. */
        while (read(s->done_fd, &v, sizeof v) < 0 && errno == EINTR)
            ;
    }
    pthread_mutex_unlock(&s->jmu);
    return j;
}
