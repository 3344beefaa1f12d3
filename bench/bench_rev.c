/* bench_rev: a long-running workload for bench/bench_reverse.py.
 *
 *   bench_rev SECONDS CHUNKS WORK
 *
 * runs SECONDS "seconds"; each is CHUNKS chunks, and each chunk calls hot()
 * once, spins WORK iterations of integer arithmetic and makes one system call
 * (getppid or an 8-byte write to /dev/null, alternately).  marker(s) is called
 * at the start of second s and marker(SECONDS) at the very end, so with WORK
 * calibrated to make one second last ~1 s natively, consecutive marker() hits
 * are ~1 s of execution apart.  A final write reports the result. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

volatile unsigned long sink;

__attribute__((noinline)) void marker(int sec)
{
    sink += (unsigned long)sec;
}

__attribute__((noinline)) unsigned long hot(unsigned long x)
{
    return (x ^ (x >> 29)) * 0xbf58476d1ce4e5b9UL;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s SECONDS CHUNKS WORK\n", argv[0]);
        return 2;
    }
    int secs = atoi(argv[1]);
    long chunks = atol(argv[2]);
    long work = atol(argv[3]);
    int fd = open("/dev/null", O_WRONLY);
    unsigned long acc = 1;
    int sec;
    for (sec = 0; sec < secs; sec++) {
        marker(sec);
        for (long c = 0; c < chunks; c++) {
            acc = hot(acc + (unsigned long)c);
            for (long i = 0; i < work; i++)
                acc = acc * 6364136223846793005UL + (unsigned long)i;
            if (c & 1)
                sink += (unsigned long)getppid();
            else if (write(fd, &acc, sizeof acc) != sizeof acc)
                return 1;
        }
    }
    marker(sec);
    printf("bench_rev: %d s x %ld chunks x %ld work: %lx\n", secs, chunks, work, acc);
    return 0;
}
