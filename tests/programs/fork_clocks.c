/* fork_clocks.c N - reads the clock and its ids N times (calls relive's in-process hook
 * makes without a ptrace stop), forks, and parent and child each do it N times more; the
 * child then execs this program with N/2 and "exec", which does it once more. Prints what
 * it checked, never a time: replay must print the same. Exit status: 0 if every clock was
 * monotonic and every id what the kernel says. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int reads(const char *who, long n)
{
    struct timespec prev = {0, 0}, ts;
    long bad = 0;
    pid_t pid = getpid();
    for (long i = 0; i < n; i++) {
        clock_gettime(CLOCK_MONOTONIC, &ts);
        if (ts.tv_sec < prev.tv_sec || (ts.tv_sec == prev.tv_sec && ts.tv_nsec < prev.tv_nsec))
            bad++;
        prev = ts;
        if (getpid() != pid || syscall(SYS_gettid) != pid)
            bad++;
        if (i % 100 == 0) {
            /* time() is the coarse clock: it may lag gettimeofday's second by a tick
             * (measured natively: 0.8% of pairs), never lead one read after it. */
            time_t coarse = time(NULL);
            struct timeval tv;
            gettimeofday(&tv, NULL);
            if (coarse > tv.tv_sec)
                bad++;
        }
    }
    printf("%s: %ld reads, %ld bad\n", who, n, bad);
    fflush(stdout);
    return bad != 0;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 5000;
    if (argc > 2 && strcmp(argv[2], "exec") == 0)
        return reads("exec'd child", n);
    int bad = reads("before fork", n);
    pid_t child = fork();
    if (child < 0)
        return 2;
    if (child == 0) {
        bad |= reads("child", n);
        char arg[32];
        snprintf(arg, sizeof arg, "%ld", n / 2);
        execl("/proc/self/exe", argv[0], arg, "exec", (char *)NULL);
        return 3;
    }
    bad |= reads("parent", n);
    int status;
    waitpid(child, &status, 0);
    printf("child exited %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    return bad;
}
