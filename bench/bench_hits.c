/* bench_hits: a loop that calls target_fn() N times (default 10,000), for
 * bench/bench_gdb.py: `stepi` latency in main's loop and the cost of one
 * `continue` to a breakpoint on target_fn.  No system calls in the loop.
 *
 * The result is printed after the loop, so that the loop is not the program's
 * final syscall-free stretch (an earlier relive ran to the end of history on
 * any single-step taken after the last system call before exit_group). */
#include <stdio.h>
#include <stdlib.h>

volatile unsigned long sink;

__attribute__((noinline)) void target_fn(unsigned long i)
{
    sink += i * 2654435761UL;
}

int main(int argc, char **argv)
{
    unsigned long n = argc > 1 ? strtoul(argv[1], NULL, 10) : 10000;
    unsigned long acc = 0;
    for (unsigned long i = 0; i < n; i++) {
        acc = acc * 6364136223846793005UL + i;
        target_fn(acc);
    }
    printf("bench_hits: %lu calls, sink %lx\n", n, sink);
    return 0;
}
