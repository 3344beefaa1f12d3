/* threads_wait_ring.c - 4 threads pass a token round a ring, ROUNDS times each (argv[1],
 * default 1000), through a pthread mutex and one condition variable (broadcast: the three
 * not named wake, see it is not their turn and wait again). At each turn the holder also
 * waits STALE times on the ring's futex word with turns it saw before its own
 * (FUTEX_WAIT_PRIVATE, as hand-made locks wait with a value they read earlier): the word has
 * moved on, so each wait returns EAGAIN at once. With argv[2] = "alarm", an ITIMER_REAL
 * every 2 ms interrupts the workers (SA_RESTART; main blocks it while it joins them); its
 * handler counts and makes a stale wait of its own. Prints the checksum of the order the
 * token went round, the stale waits' results and, with alarm, the handler's count (how many
 * signals came depends on the run: a replay prints its own count).
 * Exit status: 0, or 1 on setup failure. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

#define NTHREADS 4
#define STALE 50                    /* stale waits per turn */

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static unsigned turn;               /* whose turn: a futex word too */
static unsigned long rounds = 1000, checksum;
static unsigned long stale_again[NTHREADS], stale_other[NTHREADS];
static volatile sig_atomic_t alarms, handler_again;

static long stale_wait(unsigned *word, unsigned seen)
{
    return syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, seen, NULL, NULL, 0);
}

static void on_alarm(int sig)
{
    (void)sig;
    int saved = errno;
    alarms++;
    if (stale_wait(&turn, turn + NTHREADS) == -1 && errno == EAGAIN)
        handler_again++;
    errno = saved;
}

static void *worker(void *arg)
{
    unsigned me = (unsigned)(long)arg;
    for (unsigned long r = 0; r < rounds; r++) {
        pthread_mutex_lock(&lock);
        unsigned before = turn;
        while (turn % NTHREADS != me)
            pthread_cond_wait(&cond, &lock);
        for (unsigned k = 1; k <= STALE; k++) {
            if (stale_wait(&turn, before - k) == -1 && errno == EAGAIN)
                stale_again[me]++;
            else
                stale_other[me]++;
        }
        checksum = checksum * 31 + me + 1;
        turn++;
        pthread_cond_broadcast(&cond);
        pthread_mutex_unlock(&lock);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    pthread_t th[NTHREADS];
    if (argc > 1)
        rounds = strtoul(argv[1], NULL, 0);
    int alarm_on = argc > 2 && strcmp(argv[2], "alarm") == 0;
    if (alarm_on) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_alarm;
        sa.sa_flags = SA_RESTART;
        struct itimerval it = {{0, 2000}, {0, 2000}};
        if (sigaction(SIGALRM, &sa, NULL) != 0 || setitimer(ITIMER_REAL, &it, NULL) != 0) {
            puts("setup failed");
            return 1;
        }
    }
    for (long i = 0; i < NTHREADS; i++)
        if (pthread_create(&th[i], NULL, worker, (void *)i) != 0) {
            puts("pthread_create failed");
            return 1;
        }
    if (alarm_on) {  /* the workers take the signals, not main waiting in pthread_join */
        sigset_t alrm;
        sigemptyset(&alrm);
        sigaddset(&alrm, SIGALRM);
        pthread_sigmask(SIG_BLOCK, &alrm, NULL);
    }
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(th[i], NULL);
    if (alarm_on) {
        struct itimerval off = {{0, 0}, {0, 0}};
        setitimer(ITIMER_REAL, &off, NULL);
    }
    unsigned long again = 0, other = 0;
    for (int i = 0; i < NTHREADS; i++) {
        again += stale_again[i];
        other += stale_other[i];
    }
    printf("turns %u checksum %016lx stale waits: EAGAIN %lu, other %lu\n", turn, checksum,
           again, other);
    if (alarm_on)
        printf("alarms %d, the handler's stale waits EAGAIN %d\n", (int)alarms,
               (int)handler_again);
    return 0;
}
