/* threads_token.c - two threads pass a C11 atomic token back and forth; the thread waiting
 * for it spins and counts its turns (its registers change on every turn, and the loop calls
 * nothing: no place in it is reached rarely).  argv[1] rounds (default 6).  Each hand-off
 * needs the waiting thread to be preempted in user code, with no syscall, so the other can
 * run: on one CPU (or under a recorder running one thread at a time) it only finishes if
 * the spinner is preempted.  Prints the rounds and the spin counts, which depend on the
 * scheduling: a replay prints them from its own memory, so a replay that reached another
 * state than the recording prints other numbers.
 * Exit status: 0, or 1 on setup failure. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

static atomic_int token;
static int rounds = 6;
static long spins[2];

static void *player(void *arg)
{
    int me = (int)(long)arg;
    for (int r = 0; r < rounds; r++) {
        long n = 0;
        while (atomic_load_explicit(&token, memory_order_acquire) != me)
            n++;
        spins[me] += n;
        atomic_store_explicit(&token, 1 - me, memory_order_release);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc > 1)
        rounds = atoi(argv[1]);
    pthread_t a, b;
    if (pthread_create(&a, NULL, player, (void *)0L) != 0 ||
        pthread_create(&b, NULL, player, (void *)1L) != 0) {
        puts("pthread_create failed");
        return 1;
    }
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    printf("%d rounds; thread 1 spun %s; counts %ld %ld\n", rounds,
           spins[1] > 0 ? "yes" : "no", spins[0], spins[1]);
    return 0;
}
