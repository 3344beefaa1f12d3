/* clock_steps.c - three clock reads, each followed by a call of after_read() (a place for
 * gdb to stop after a read relive's in-process hook made without a ptrace stop). Prints
 * how many reads succeeded, never a time. */
#include <stdio.h>
#include <time.h>

static volatile long seen;

__attribute__((noinline)) void after_read(long i)
{
    seen += i;
}

int main(void)
{
    struct timespec ts;
    long ok = 0;
    for (long i = 0; i < 3; i++) {
        ok += clock_gettime(CLOCK_MONOTONIC, &ts) == 0;
        after_read(i);
    }
    printf("%ld reads\n", ok);
    return 0;
}
