/* bench_small: a short syscall-free loop, for comparing relive's reverse-stepi
 * with gdb's own `record full` (bench/bench_reverse.py).
 *
 *   bench_small [N]     (default 2000 iterations of work()'s loop)
 *
 * main() makes a system call, then work() runs N calls of mix(), then done().
 * Under `record full` the recording starts at work() and stops at done(); the
 * reverse-stepi sequence then walks back from done() into the loop.  Only the
 * program's own -O0 code runs in that window (no libc, no SSE state). */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

volatile unsigned long sink;

__attribute__((noinline)) unsigned long mix(unsigned long x, unsigned long i)
{
    return x * 6364136223846793005UL + i;
}

__attribute__((noinline)) unsigned long work(unsigned long n)
{
    unsigned long acc = 1;
    for (unsigned long i = 0; i < n; i++)
        acc = mix(acc, i);
    return acc;
}

__attribute__((noinline)) void done(unsigned long acc)
{
    sink = acc;
}

int main(int argc, char **argv)
{
    unsigned long n = argc > 1 ? strtoul(argv[1], NULL, 10) : 2000;
    sink = (unsigned long)getppid();
    done(work(n));
    printf("bench_small: %lu iterations: %lx\n", n, sink);
    return 0;
}
