/* threads_cpu_workers.c - parallel CPU-bound threads.
 * 4 threads each run 3,000,000 iterations of an xorshift64 + multiply hash
 * seeded by the thread index, with NO syscalls inside the loop (so the
 * threads can only be switched by preemption).  main joins them and prints
 * "worker i result <hex>" for each, then a combined xor.  Deterministic.
 * Exit status: 0, or 1 on setup failure. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>

#define NTHREADS 4
#define ITERS 3000000

static uint64_t results[NTHREADS];

static void *worker(void *arg)
{
    long idx = (long)arg;
    uint64_t x = 0x9e3779b97f4a7c15ULL * (uint64_t)(idx + 1);
    uint64_t acc = 0;
    for (long i = 0; i < ITERS; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        acc = acc * 6364136223846793005ULL + (x ^ (uint64_t)i);
    }
    results[idx] = acc;
    return NULL;
}

int main(void)
{
    pthread_t th[NTHREADS];
    for (long i = 0; i < NTHREADS; i++) {
        if (pthread_create(&th[i], NULL, worker, (void *)i) != 0) {
            puts("pthread_create failed");
            return 1;
        }
    }
    uint64_t all = 0;
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < NTHREADS; i++) {
        printf("worker %d result %016llx\n", i, (unsigned long long)results[i]);
        all ^= results[i];
    }
    printf("combined %016llx\n", (unsigned long long)all);
    return 0;
}
