/* A function called many times in a loop with a syscall every few calls: the shape of
 * `break step if i == N` (gdb's target-side breakpoint conditions, evaluated in the stub).
 * Usage: cond_loop [CALLS] */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

struct point { long x, y; };

static long total;

__attribute__((noinline)) static long step(int i, struct point *p)
{
    p->x += i;
    p->y ^= (long)i * 2654435761L;
    total += p->x & 0xff;
    return total;
}

int main(int argc, char **argv)
{
    int calls = argc > 1 ? atoi(argv[1]) : 2000;
    struct point p = {0, 0};
    for (int i = 0; i < calls; i++) {
        step(i, &p);
        if (i % 4 == 0)
            getppid();
    }
    printf("total %ld x %ld y %ld\n", total, p.x, p.y);
    return 0;
}
