/* bench_stepback: long computations without system calls, for bench/bench_stepback.py.
 *
 *   bench_stepback PHASES ITERS
 *
 * runs PHASES phases; each hashes ITERS iterations with no system call (compute()), then
 * makes one (getppid).  `phase` holds the current phase number, so a conditional breakpoint
 * on compute()'s `return` line stops at the end of one chosen phase's computation. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

volatile int phase;
volatile unsigned long sink;

unsigned long compute(unsigned long x, unsigned long n)
{
    for (unsigned long i = 0; i < n; i++) {
        x ^= i;
        x *= 0x100000001b3UL;
        x = (x << 13) | (x >> 51);
    }
    return x; /* end of computation */
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s PHASES ITERS\n", argv[0]);
        return 2;
    }
    int phases = atoi(argv[1]);
    unsigned long iters = strtoul(argv[2], NULL, 0);
    unsigned long x = 1;
    for (phase = 0; phase < phases; phase++) {
        x = compute(x, iters);
        sink += (unsigned long)getppid();
    }
    printf("bench_stepback: %d x %lu: %lx\n", phases, iters, x);
    return 0;
}
