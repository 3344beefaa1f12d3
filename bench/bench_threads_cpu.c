/* bench_threads_cpu: 4 pthreads each run a pure computation (an xorshift64 +
 * multiply hash seeded by the thread index, no system calls in the loop) of
 * ITERS iterations, argv[1] if given (bench/bench_threads.py calibrates it to
 * ~0.25 s per thread natively); main joins them and prints each result and
 * their xor.  Deterministic.  Exit status: 0, or 1 on setup failure. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define NTHREADS 4

static unsigned long iters = 100000000UL;
static uint64_t results[NTHREADS];

static void *worker(void *arg)
{
    long idx = (long)arg;
    uint64_t x = 0x9e3779b97f4a7c15ULL * (uint64_t)(idx + 1);
    uint64_t acc = 0;
    for (unsigned long i = 0; i < iters; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        acc = acc * 6364136223846793005ULL + (x ^ (uint64_t)i);
    }
    results[idx] = acc;
    return NULL;
}

int main(int argc, char **argv)
{
    pthread_t th[NTHREADS];
    uint64_t all = 0;

    if (argc > 1)
        iters = strtoul(argv[1], NULL, 0);
    for (long i = 0; i < NTHREADS; i++) {
        if (pthread_create(&th[i], NULL, worker, (void *)i) != 0) {
            puts("pthread_create failed");
            return 1;
        }
    }
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < NTHREADS; i++) {
        printf("worker %d result %016llx\n", i, (unsigned long long)results[i]);
        all ^= results[i];
    }
    printf("iterations %lu, combined %016llx\n", iters, (unsigned long long)all);
    return 0;
}
