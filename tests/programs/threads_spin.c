/* threads_spin.c - a thread busy-waiting (no syscalls) on another thread.
 * main starts thread B first: B spins on
 *     while (!__atomic_load_n(&flag, __ATOMIC_ACQUIRE)) ;
 * and only then thread A, which does ~20 ms of pure computation (no
 * syscalls), stores the result and sets flag.  B then prints
 * "B saw value <hex>"; main joins both and prints "done".  On one CPU (or
 * under a recorder that runs one thread at a time) this only terminates if
 * the spinning thread B is preempted so A can run.  Deterministic.
 * Exit status: 0, or 1 on setup failure. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>

#define ITERS 4000000

static int flag;
static uint64_t value;

static void *thread_a(void *arg)
{
    (void)arg;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (long i = 0; i < ITERS; i++) {
        h ^= (uint64_t)i;
        h *= 0x100000001b3ULL;
        h ^= h >> 29;
    }
    value = h;
    __atomic_store_n(&flag, 1, __ATOMIC_RELEASE);
    return NULL;
}

static void *thread_b(void *arg)
{
    (void)arg;
    while (!__atomic_load_n(&flag, __ATOMIC_ACQUIRE))
        ;
    printf("B saw value %016llx\n", (unsigned long long)value);
    return NULL;
}

int main(void)
{
    pthread_t a, b;
    if (pthread_create(&b, NULL, thread_b, NULL) != 0 ||
        pthread_create(&a, NULL, thread_a, NULL) != 0) {
        puts("pthread_create failed");
        return 1;
    }
    pthread_join(b, NULL);
    pthread_join(a, NULL);
    puts("done");
    return 0;
}
