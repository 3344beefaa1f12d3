/* clock_reads.c N - N clock reads (most CLOCK_MONOTONIC; some REALTIME, gettimeofday,
 * time, a process CPU clock, a bad pointer, a bad clock id) with SIGALRM every 2 ms whose
 * handler reads the clock too. Prints what it saw (replay must print the same) and, on
 * stderr, its voluntary context switches: each ptrace stop is one, so that number says
 * how many stops recording the N reads cost.
 * Exit status: 0 if every read behaved as the kernel says it must. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static volatile long alarms;
static volatile long long in_handler;

static void on_alarm(int sig)
{
    struct timespec ts;
    (void)sig;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    in_handler += ts.tv_nsec & 0xff;
    alarms++;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 20000;
    struct sigaction sa = {.sa_handler = on_alarm, .sa_flags = SA_RESTART};
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = {{0, 2000}, {0, 2000}};
    setitimer(ITIMER_REAL, &it, NULL);
    struct timespec prev = {0, 0}, ts;
    long backwards = 0, bad = 0;
    unsigned long long mix = 0;
    for (long i = 0; i < n; i++) {
        if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
            bad++;
        if (ts.tv_sec < prev.tv_sec || (ts.tv_sec == prev.tv_sec && ts.tv_nsec < prev.tv_nsec))
            backwards++;
        prev = ts;
        mix = mix * 31 + (unsigned long long)ts.tv_nsec;
        if (i % 64 == 0 && clock_gettime(CLOCK_REALTIME, &ts) == 0)
            mix ^= (unsigned long long)ts.tv_sec;
        if (i % 128 == 0) {
            struct timeval tv;
            if (gettimeofday(&tv, NULL) != 0 || tv.tv_usec >= 1000000)
                bad++;
            mix += (unsigned long long)tv.tv_usec;
        }
        if (i % 256 == 0)
            mix += (unsigned long long)time(NULL);
        if (i % 1000 == 0 && clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) == 0)
            mix -= (unsigned long long)ts.tv_nsec;
    }
    /* By syscall, as the vDSO glibc hides under relive would not: the kernel's answers. */
    long efault = syscall(SYS_clock_gettime, CLOCK_MONOTONIC, (void *)8) == -1 && errno == EFAULT;
    long einval = syscall(SYS_clock_gettime, 12345, &ts) == -1 && errno == EINVAL;
    long nulltime = syscall(SYS_time, NULL) > 0;
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("reads %ld backwards %ld bad %ld efault %ld einval %ld time %ld mix %llx "
           "alarms %ld handler %lld\n", n, backwards, bad, efault, einval, nulltime, mix,
           alarms, in_handler);
    fprintf(stderr, "stops %ld\n", ru.ru_nvcsw);
    return backwards || bad || !efault || !einval || !nulltime;
}
