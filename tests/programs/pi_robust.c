/* pi_robust.c - futexes the recorder keeps on the traced path, beside plain condvar waits.
 *
 *   pi_robust [ROUNDS] [pi|robust]   (default 500, both parts)
 *
 * pi: two threads take turns through a priority-inheritance mutex
 *   (PTHREAD_PRIO_INHERIT: contended locks are FUTEX_LOCK_PI, unlocks with waiters
 *   FUTEX_UNLOCK_PI, which the kernel hands the lock over in) and a condition variable each,
 *   ROUNDS turns each.
 * robust: ROUNDS/10 times, a thread takes a robust mutex and exits holding it while main
 *   waits for it (a plain futex wait the kernel ends at the owner's exit, through its
 *   robust list): main gets EOWNERDEAD, makes it consistent and unlocks.
 * Prints the turns' checksum and how many times each lock came back as EOWNERDEAD.
 * Exit status: 0, or 1 on a failure (printed). */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static pthread_mutex_t pi;
static pthread_cond_t turn_cond[2] = {PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER};
static unsigned long rounds = 500, turn, checksum;
static pthread_mutex_t robust;
static volatile int holder_ready;

static void *taker(void *arg)
{
    unsigned me = (unsigned)(long)arg;
    for (unsigned long r = 0; r < rounds; r++) {
        if (pthread_mutex_lock(&pi) != 0)
            return (void *)1;
        while (turn % 2 != me)
            pthread_cond_wait(&turn_cond[me], &pi);
        checksum = checksum * 31 + me + 1;
        turn++;
        pthread_cond_signal(&turn_cond[1 - me]);
        pthread_mutex_unlock(&pi);
    }
    return NULL;
}

static void *dies_holding(void *arg)
{
    (void)arg;
    if (pthread_mutex_lock(&robust) != 0)
        return (void *)1;
    holder_ready = 1;
    usleep(2000);  /* main is waiting for the lock by now */
    return NULL;   /* exits holding it */
}

int main(int argc, char **argv)
{
    if (argc > 1)
        rounds = strtoul(argv[1], NULL, 0);
    int do_pi = argc < 3 || strcmp(argv[2], "pi") == 0;
    int do_robust = argc < 3 || strcmp(argv[2], "robust") == 0;
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    if (pthread_mutexattr_setprotocol(&a, PTHREAD_PRIO_INHERIT) != 0
        || pthread_mutex_init(&pi, &a) != 0) {
        puts("PI mutex failed");
        return 1;
    }
    pthread_mutexattr_t b;
    pthread_mutexattr_init(&b);
    if (pthread_mutexattr_setrobust(&b, PTHREAD_MUTEX_ROBUST) != 0
        || pthread_mutex_init(&robust, &b) != 0) {
        puts("robust mutex failed");
        return 1;
    }
    pthread_t th[2];
    for (long i = 0; i < 2 && do_pi; i++)
        if (pthread_create(&th[i], NULL, taker, (void *)i) != 0) {
            puts("pthread_create failed");
            return 1;
        }
    void *ret;
    for (int i = 0; i < 2 && do_pi; i++)
        if (pthread_join(th[i], &ret) != 0 || ret != NULL) {
            puts("taker failed");
            return 1;
        }
    unsigned long owner_dead = 0, plain = 0;
    for (unsigned long k = 0; k < rounds / 10 && do_robust; k++) {
        pthread_t h;
        holder_ready = 0;
        if (pthread_create(&h, NULL, dies_holding, NULL) != 0) {
            puts("pthread_create failed");
            return 1;
        }
        while (!holder_ready)
            sched_yield();
        int r = pthread_mutex_lock(&robust);
        if (r == EOWNERDEAD) {
            owner_dead++;
            pthread_mutex_consistent(&robust);
        } else if (r == 0) {
            plain++;
        } else {
            printf("robust lock: %d\n", r);
            return 1;
        }
        pthread_mutex_unlock(&robust);
        pthread_join(h, NULL);
    }
    printf("pi turns %lu checksum %016lx\n", turn, checksum);
    printf("robust: EOWNERDEAD %lu, plain %lu\n", owner_dead, plain);
    return 0;
}
