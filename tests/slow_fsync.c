/* A slow disk, for tests and benchmarks: fsync/fdatasync of files whose path contains
   $SLOW_FSYNC_MATCH sleep $SLOW_FSYNC_MS first (LD_PRELOAD). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void maybe_sleep(int fd) {
    const char *ms = getenv("SLOW_FSYNC_MS"), *match = getenv("SLOW_FSYNC_MATCH");
    char link[64], path[4096];
    ssize_t n;
    if (!ms || !match) return;
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    n = readlink(link, path, sizeof path - 1);
    if (n <= 0) return;
    path[n] = 0;
    if (!strstr(path, match)) return;
    long v = atol(ms);
    struct timespec ts = {v / 1000, (v % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    maybe_sleep(fd);
    return real(fd);
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    maybe_sleep(fd);
    return real(fd);
}
