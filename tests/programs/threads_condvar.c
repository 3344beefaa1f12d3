/* threads_condvar.c - condition variable token ring.
 * 3 threads share a mutex, a condvar and a "turn" variable.  Thread i waits
 * until turn == i, prints "thread i round r", sets turn = (i+1) % 3 and
 * broadcasts; 5 rounds each.  The printing is serialised by the token, so
 * the output order is fixed: thread 0 round 0, thread 1 round 0, ...,
 * thread 2 round 4, then "done".  Deterministic.
 * Exit status: 0, or 1 on setup failure. */
#include <pthread.h>
#include <stdio.h>

#define NTHREADS 3
#define ROUNDS 5

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int turn;

static void *worker(void *arg)
{
    int idx = (int)(long)arg;
    for (int r = 0; r < ROUNDS; r++) {
        pthread_mutex_lock(&lock);
        while (turn != idx)
            pthread_cond_wait(&cond, &lock);
        printf("thread %d round %d\n", idx, r);
        fflush(stdout);
        turn = (idx + 1) % NTHREADS;
        pthread_cond_broadcast(&cond);
        pthread_mutex_unlock(&lock);
    }
    return NULL;
}

int main(void)
{
    pthread_t th[NTHREADS];
    /* Start them in reverse so the first ones created must wait. */
    for (long i = NTHREADS - 1; i >= 0; i--) {
        if (pthread_create(&th[i], NULL, worker, (void *)i) != 0) {
            puts("pthread_create failed");
            return 1;
        }
    }
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(th[i], NULL);
    puts("done");
    return 0;
}
