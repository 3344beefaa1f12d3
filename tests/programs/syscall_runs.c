/* syscall_runs.c - long runs of simple syscalls with a function call in between: N rounds
 * (argv[1], default 5000) of getppid, clock_gettime, fstat and getrlimit, and a call to
 * marker(i) every 1000 rounds.  Prints the number of rounds, a checksum of what the
 * deterministic calls returned, and how often marker ran.  Exit status: 0. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int markers;

void marker(long i)
{
    markers += (int)(i > 0);
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 5000;
    unsigned long check = 0;
    struct timespec ts;
    struct stat st;
    struct rlimit rl;
    for (long i = 0; i < n; i++) {
        getppid();
        clock_gettime(CLOCK_MONOTONIC, &ts);
        if (fstat(1, &st) == 0)
            check += (unsigned long)st.st_mode;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
            check += (unsigned long)rl.rlim_cur & 0xff;
        if (i % 1000 == 999)
            marker(i);
    }
    printf("rounds: %ld\ncheck: %lu\nmarkers: %d\n", n, check, markers);
    return 0;
}
