/* threads_handoff.c - two threads hand a counter back and forth through a pthread mutex and
 * two condition variables (a futex hand-off each way), N round trips (argv[1], default 2000);
 * main prints the count and a checksum of what it got back.  Deterministic.
 * Exit status: 0, or 1 on setup failure. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t to_echo = PTHREAD_COND_INITIALIZER;
static pthread_cond_t to_main = PTHREAD_COND_INITIALIZER;
static unsigned long slot, rounds = 2000;
static int turn;  /* 0: main's, 1: echo's */

static void *echo(void *arg)
{
    (void)arg;
    for (unsigned long i = 0; i < rounds; i++) {
        pthread_mutex_lock(&lock);
        while (turn != 1)
            pthread_cond_wait(&to_echo, &lock);
        slot = slot * 3 + 1;
        turn = 0;
        pthread_cond_signal(&to_main);
        pthread_mutex_unlock(&lock);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    pthread_t th;
    unsigned long sum = 0;
    if (argc > 1)
        rounds = strtoul(argv[1], NULL, 0);
    if (pthread_create(&th, NULL, echo, NULL) != 0) {
        puts("pthread_create failed");
        return 1;
    }
    for (unsigned long i = 0; i < rounds; i++) {
        pthread_mutex_lock(&lock);
        slot += i;
        turn = 1;
        pthread_cond_signal(&to_echo);
        while (turn != 0)
            pthread_cond_wait(&to_main, &lock);
        sum = sum * 31 + slot;
        pthread_mutex_unlock(&lock);
    }
    pthread_join(th, NULL);
    printf("round trips %lu checksum %016lx\n", rounds, sum);
    return 0;
}
