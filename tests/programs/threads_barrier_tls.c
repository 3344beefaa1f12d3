/* threads_barrier_tls.c - barriers, TLS arrays and thread names.
 * 4 worker threads plus main meet at one pthread_barrier (count 5) three
 * times.  Phase 1: each worker names itself "worker-<i>" with
 * pthread_setname_np, stores its index in a __thread array and in a shared
 * array.  Phase 2: each reads its neighbour's shared slot and the
 * neighbour's name (pthread_getname_np on another thread).  Phase 3: each
 * combines values from another slot.  main then prints the three shared
 * arrays, each worker's TLS array, and "worker i: name worker-i, next
 * worker-j".  Deterministic.
 * Exit status: 0, or 1 on setup failure. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define N 4

static pthread_barrier_t barrier;
static pthread_t th[N];
static __thread int tls_vals[3];
static int shared1[N], shared2[N], shared3[N];
static int tls_copy[N][3];
static char own_name[N][16], next_name[N][16];

static void *worker(void *arg)
{
    int idx = (int)(long)arg;
    char name[16];
    snprintf(name, sizeof name, "worker-%d", idx);
    pthread_setname_np(pthread_self(), name);
    tls_vals[0] = idx;
    shared1[idx] = idx;
    pthread_barrier_wait(&barrier);

    pthread_getname_np(pthread_self(), own_name[idx], sizeof own_name[idx]);
    pthread_getname_np(th[(idx + 1) % N], next_name[idx], sizeof next_name[idx]);
    tls_vals[1] = shared1[(idx + 1) % N];
    shared2[idx] = 10 * tls_vals[0] + tls_vals[1];
    pthread_barrier_wait(&barrier);

    tls_vals[2] = shared2[(idx + N - 1) % N];
    shared3[idx] = shared2[idx] * 100 + tls_vals[2];
    pthread_barrier_wait(&barrier);

    memcpy(tls_copy[idx], tls_vals, sizeof tls_vals);
    return NULL;
}

static void print_array(const char *label, const int *a)
{
    printf("%s:", label);
    for (int i = 0; i < N; i++)
        printf(" %d", a[i]);
    printf("\n");
}

int main(void)
{
    pthread_barrier_init(&barrier, NULL, N + 1);
    for (long i = 0; i < N; i++) {
        if (pthread_create(&th[i], NULL, worker, (void *)i) != 0) {
            puts("pthread_create failed");
            return 1;
        }
    }
    for (int phase = 0; phase < 3; phase++)   /* th[] is complete before phase 2 */
        pthread_barrier_wait(&barrier);
    for (int i = 0; i < N; i++)
        pthread_join(th[i], NULL);
    print_array("shared1", shared1);
    print_array("shared2", shared2);
    print_array("shared3", shared3);
    for (int i = 0; i < N; i++)
        printf("worker %d: tls %d %d %d, name %s, next %s\n", i, tls_copy[i][0],
               tls_copy[i][1], tls_copy[i][2], own_name[i], next_name[i]);
    pthread_barrier_destroy(&barrier);
    return 0;
}
