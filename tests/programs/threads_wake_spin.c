/* threads_wake_spin.c - a thread wakes another from a futex wait and then spins, without a
 * system call, until the woken thread has run: ROUNDS (argv[1], default 20) times.  A recorder
 * that runs one thread at a time must preempt the spinning waker to let the woken one run.
 * Prints "rounds N" at the end.  Exit status: 0, or 1 on setup failure. */
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

static atomic_int word;   /* the futex: the round the waiter may start */
static atomic_int done;   /* the last round the waiter finished */
static int rounds = 20;

static void *waiter(void *arg)
{
    (void)arg;
    for (int r = 1; r <= rounds; r++) {
        while (atomic_load(&word) < r)
            syscall(SYS_futex, &word, FUTEX_WAIT_PRIVATE, r - 1, NULL, NULL, 0);
        atomic_store(&done, r);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    pthread_t th;
    if (argc > 1)
        rounds = atoi(argv[1]);
    if (pthread_create(&th, NULL, waiter, NULL) != 0) {
        puts("pthread_create failed");
        return 1;
    }
    for (int r = 1; r <= rounds; r++) {
        usleep(1000);  /* (the waiter gets to its wait, mostly) */
        atomic_store(&word, r);
        syscall(SYS_futex, &word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
        while (atomic_load(&done) < r)
            ;  /* no system call: only a preemption lets the waiter run */
    }
    pthread_join(th, NULL);
    printf("rounds %d\n", rounds);
    return 0;
}
