/* threads_atomics.c - lock-free shared counter plus a racy finishing order.
 * 4 threads each do __atomic_fetch_add(&counter, 1) 50000 times, then take
 * a ticket with another __atomic_fetch_add to record the order in which they
 * finished.  Prints "total 200000" (deterministic) and
 * "finish order: a b c d" (NONDETERMINISTIC: a permutation of 0..3 that
 * depends on scheduling; a replay must reproduce the recorded one).
 * Exit status: 0, or 1 if the total is wrong / setup fails. */
#include <pthread.h>
#include <stdio.h>

#define NTHREADS 4
#define ITERS 50000

static long counter;
static int ticket;
static int order[NTHREADS];

static void *worker(void *arg)
{
    int idx = (int)(long)arg;
    for (int i = 0; i < ITERS; i++)
        __atomic_fetch_add(&counter, 1, __ATOMIC_SEQ_CST);
    int t = __atomic_fetch_add(&ticket, 1, __ATOMIC_SEQ_CST);
    order[t] = idx;
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
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(th[i], NULL);
    printf("total %ld\n", counter);
    printf("finish order:");
    for (int i = 0; i < NTHREADS; i++)
        printf(" %d", order[i]);
    printf("\n");
    return counter == (long)NTHREADS * ITERS ? 0 : 1;
}
