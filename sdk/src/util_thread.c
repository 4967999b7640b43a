/* Thread helpers of util.h. */
#include "baetyl/util.h"

#include <pthread.h>
#include <signal.h>

int bt_thread_start_quiet(pthread_t *th, void *(*fn)(void *), void *arg, size_t stack)
{
    sigset_t all, old;
    sigfillset(&all);
    sigdelset(&all, SIGSEGV);
    sigdelset(&all, SIGBUS);
    sigdelset(&all, SIGFPE);
    sigdelset(&all, SIGILL);
    sigdelset(&all, SIGABRT);
    pthread_attr_t a;
    pthread_attr_init(&a);
    if (stack)
        pthread_attr_setstacksize(&a, stack);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(th, &a, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&a);
    return rc;
}
