/* time_sources.c - reads every common clock source and prints the raw values.
 * Replay must reproduce time(), clock_gettime (REALTIME, MONOTONIC) and
 * gettimeofday results exactly; they differ on every native run.
 * (In glibc these normally go through the vDSO, not a real syscall.)
 * Exit status: 0. */
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/time.h>
#include <time.h>

int main(void)
{
    time_t t = time(NULL);
    struct timespec rt, mono;
    struct timeval tv;

    clock_gettime(CLOCK_REALTIME, &rt);
    clock_gettime(CLOCK_MONOTONIC, &mono);
    gettimeofday(&tv, NULL);

    printf("time: %lld\n", (long long)t);
    printf("realtime: %lld.%09ld\n", (long long)rt.tv_sec, rt.tv_nsec);
    printf("monotonic: %lld.%09ld\n", (long long)mono.tv_sec, mono.tv_nsec);
    printf("gettimeofday: %lld.%06ld\n", (long long)tv.tv_sec, (long)tv.tv_usec);
    return 0;
}
