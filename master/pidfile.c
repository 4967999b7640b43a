/* The pid file, locked with flock for the master's whole life. */
#include "pidfile.h"
#include "baetyl/error.h"
#include "baetyl/util.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

static pid_t read_pid(int fd)
{
    char buf[32];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    long v = strtol(buf, NULL, 10);
    return v > 0 && v < 0x3fffffff ? (pid_t)v : 0;
}

int pidfile_acquire(const char *path, char *err, size_t errlen)
{
    char *dir = strdup(path);
    if (!dir)
        return bt_errf(err, errlen, "out of memory");
    int r = bt_mkdir_p(dirname(dir), 0755, err, errlen);
    free(dir);
    if (r != 0)
        return -1;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return bt_errf(err, errlen, "open %s: %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        pid_t other = read_pid(fd);
        close(fd);
        if (e == EWOULDBLOCK)
            return bt_errf(err, errlen, "baetyl is already running (pid %d) in this work dir",
                           (int)other);
        return bt_errf(err, errlen, "lock %s: %s", path, strerror(e));
    }
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%d\n", (int)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, buf, (size_t)n, 0) != n) {
        int e = errno;
        close(fd);
        return bt_errf(err, errlen, "write %s: %s", path, strerror(e));
    }
    return fd;
}

void pidfile_release(const char *path, int fd)
{
    if (fd < 0)
        return;
    unlink(path);
    close(fd);
}

pid_t pidfile_running(const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        return bt_errf(err, errlen, "open %s: %s", path, strerror(errno));
    }
    pid_t pid = 0;
    if (flock(fd, LOCK_SH | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK)
            pid = read_pid(fd); /* locked: that master is alive */
        else
            pid = bt_errf(err, errlen, "lock %s: %s", path, strerror(errno));
    }
    close(fd);
    return pid;
}
