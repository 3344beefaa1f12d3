/* threads_cpu_calls.c - two threads that compute for a few seconds each without a syscall,
 * block by block, calling a small function for every step (as real code does: a
 * compressor's match finder, a hash per block). Under relive one runs while the other waits,
 * so the recorder must preempt a computing thread (after ~2 s). Prints each thread's result.
 * Deterministic. Exit status: 0. argv[1]: blocks (default 500) of 1,000,000 steps. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static long blocks = 500;
static uint64_t results[2];

__attribute__((noinline)) static uint64_t mix(uint64_t x, long i)
{
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x * 6364136223846793005ULL + (uint64_t)i;
}

__attribute__((noinline)) static uint64_t block(uint64_t x)
{
    for (long i = 0; i < 1000000; i++)
        x = mix(x, i);
    return x;
}

static void *worker(void *arg)
{
    long id = (long)arg;
    uint64_t x = 0x9e3779b97f4a7c15ULL * (uint64_t)(id + 1);
    for (long b = 0; b < blocks; b++)
        x = block(x);
    results[id] = x;
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc > 1)
        blocks = atol(argv[1]);
    pthread_t t[2];
    for (long i = 0; i < 2; i++)
        if (pthread_create(&t[i], NULL, worker, (void *)i) != 0)
            return 1;
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    printf("thread 0: %016llx\nthread 1: %016llx\n", (unsigned long long)results[0],
           (unsigned long long)results[1]);
    return 0;
}
