/* threads_mutex.c - mutex contention and thread-local storage.
 * 4 threads each add 1 to a shared counter 20000 times under one
 * pthread_mutex (heavy contention, so futex waits/wakes happen), and each
 * also counts its own increments in a __thread variable.  main joins them and
 * prints each thread's TLS count ("thread i tls 20000") and the total
 * ("total 80000").  Output is deterministic.
 * Exit status: 0, or 1 if the total is wrong / setup fails. */
#include <pthread.h>
#include <stdio.h>

#define NTHREADS 4
#define ITERS 20000

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static long counter;
static __thread long tls_count;
static long tls_result[NTHREADS];

static void *worker(void *arg)
{
    long idx = (long)arg;
    for (int i = 0; i < ITERS; i++) {
        pthread_mutex_lock(&lock);
        counter++;
        pthread_mutex_unlock(&lock);
        tls_count++;
    }
    tls_result[idx] = tls_count;
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
    for (int i = 0; i < NTHREADS; i++)
        printf("thread %d tls %ld\n", i, tls_result[i]);
    printf("main tls %ld\n", tls_count);
    printf("total %ld\n", counter);
    return counter == (long)NTHREADS * ITERS ? 0 : 1;
}
