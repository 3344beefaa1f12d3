/* handoff_ring.c - 4 threads pass a token round a ring, ROUNDS times each (argv[1], default
 * 1000): one pthread mutex, a condition variable per thread; the holder signals the next
 * thread's and waits on its own (every wait sleeps: a futex hand-off per turn).
 *
 *   handoff_ring [ROUNDS] [plain|timeout|signal]
 *
 * timeout: a fifth thread waits on a condition variable nobody signals with
 *   pthread_cond_timedwait (1 ms, CLOCK_REALTIME) until the ring is done: every wait times
 *   out (ETIMEDOUT), while the ring runs.
 * signal: main sends SIGUSR1 (SA_RESTART handler: counts) to the ring's threads in turn,
 *   with a 0.5 ms sleep between, until the ring is done: most arrive while the thread
 *   sleeps in its futex wait, which the kernel restarts after the handler.
 * Prints the token's order checksum, the turns, and the timeouts or signals counted (how
 * many came depends on the run: a replay prints its own). Exit status: 0, or 1 on failure. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NTHREADS 4

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t conds[NTHREADS] = {PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER,
                                         PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER};
static pthread_cond_t never = PTHREAD_COND_INITIALIZER;
static unsigned long rounds = 1000, turn, checksum, timeouts, other_results;
static int done;
static volatile sig_atomic_t signals_seen[NTHREADS];
static __thread int my_index = -1;

static void on_usr1(int sig)
{
    (void)sig;
    if (my_index >= 0)
        signals_seen[my_index]++;
}

static void *worker(void *arg)
{
    unsigned me = (unsigned)(long)arg;
    my_index = (int)me;
    pthread_mutex_lock(&lock);
    for (unsigned long r = 0; r < rounds; r++) {
        while (turn % NTHREADS != me)
            pthread_cond_wait(&conds[me], &lock);
        checksum = checksum * 31 + me + 1;
        turn++;
        pthread_cond_signal(&conds[(me + 1) % NTHREADS]);
    }
    pthread_mutex_unlock(&lock);
    return NULL;
}

static void *sleeper(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&lock);
    while (!done) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        int r = pthread_cond_timedwait(&never, &lock, &ts);
        if (r == ETIMEDOUT)
            timeouts++;
        else
            other_results++;
    }
    pthread_mutex_unlock(&lock);
    return NULL;
}

int main(int argc, char **argv)
{
    pthread_t th[NTHREADS], sl;
    if (argc > 1)
        rounds = strtoul(argv[1], NULL, 0);
    const char *mode = argc > 2 ? argv[2] : "plain";
    int timeout = strcmp(mode, "timeout") == 0, sig = strcmp(mode, "signal") == 0;
    if (sig) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_usr1;
        sa.sa_flags = SA_RESTART;
        if (sigaction(SIGUSR1, &sa, NULL) != 0) {
            puts("sigaction failed");
            return 1;
        }
    }
    if (timeout && pthread_create(&sl, NULL, sleeper, NULL) != 0) {
        puts("pthread_create failed");
        return 1;
    }
    for (long i = 0; i < NTHREADS; i++)
        if (pthread_create(&th[i], NULL, worker, (void *)i) != 0) {
            puts("pthread_create failed");
            return 1;
        }
    unsigned long sent = 0;
    if (sig) {
        for (;;) {
            pthread_mutex_lock(&lock);
            int finished = turn >= rounds * NTHREADS;
            pthread_mutex_unlock(&lock);
            if (finished)
                break;
            struct timespec half = {0, 500000};
            nanosleep(&half, NULL);
            if (pthread_kill(th[sent % NTHREADS], SIGUSR1) == 0)
                sent++;
        }
    }
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(th[i], NULL);
    pthread_mutex_lock(&lock);
    done = 1;
    pthread_mutex_unlock(&lock);
    if (timeout)
        pthread_join(sl, NULL);
    printf("turns %lu checksum %016lx\n", turn, checksum);
    if (timeout)
        printf("timed waits: ETIMEDOUT %lu, other %lu\n", timeouts, other_results);
    if (sig) {
        unsigned long seen = 0;
        for (int i = 0; i < NTHREADS; i++)
            seen += (unsigned long)signals_seen[i];
        printf("signals sent %lu, handled %lu\n", sent, seen);
    }
    return 0;
}
