/* cpu_loop.c - CPU-bound workload with no syscalls inside the loop: about
 * 0.5 s of integer hashing at -O0 by default.  The iteration count is
 * argv[1] if given, else CPU_LOOP_ITERS (compile-time, default 200000000).
 * The hash is seeded with getpid() (read before the loop), so the printed
 * result varies per run.
 * Exit status: 0. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#ifndef CPU_LOOP_ITERS
#define CPU_LOOP_ITERS 200000000UL
#endif

int main(int argc, char **argv)
{
    unsigned long iters = argc > 1 ? strtoul(argv[1], NULL, 0) : CPU_LOOP_ITERS;
    unsigned long seed = (unsigned long)getpid();
    unsigned long x = seed;

    for (unsigned long i = 0; i < iters; i++) {
        x ^= i;
        x *= 0x100000001b3UL;
        x = (x << 13) | (x >> 51);
    }
    printf("seed: %lu\n", seed);
    printf("iterations: %lu\n", iters);
    printf("result: %016lx\n", x);
    return 0;
}
