/* threads_long_loop.c - a worker thread computes for a long time with no system call
 * while main waits for it in pthread_join: a multi-threaded replay whose current stretch
 * is a long computation.  The loop is cpu_loop.c's (every operation invertible, so the
 * values of x and i in its last iterations follow from the printed result); the iteration
 * count is argv[1] (default 100000000).
 * Exit status: 0, or 1 on setup failure. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static unsigned long iters = 100000000UL;
static unsigned long result;

static void *worker(void *arg)
{
    unsigned long x = (unsigned long)arg;

    for (unsigned long i = 0; i < iters; i++) {
        x ^= i;
        x *= 0x100000001b3UL;
        x = (x << 13) | (x >> 51);
    }
    result = x; /* after the loop */
    return NULL;
}

int main(int argc, char **argv)
{
    pthread_t th;

    if (argc > 1)
        iters = strtoul(argv[1], NULL, 0);
    if (pthread_create(&th, NULL, worker, (void *)12345UL) != 0) {
        puts("pthread_create failed");
        return 1;
    }
    pthread_join(th, NULL);
    printf("iterations: %lu\n", iters);
    printf("result: %016lx\n", result);
    return 0;
}
