/* Threads blocked on a condition variable are woken, and the process exits at once (the
   woken threads' syscall exits are still to be handled when exit_group kills them): the
   recorder must not take their stale stops for syscalls (tests/test_threads_handoff.py). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define THREADS 6
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int waiting, go;

static void *waiter(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&mu);
    waiting++;
    while (!go)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    for (;;)
        pause();
    return NULL;
}

int main(void)
{
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, waiter, NULL);
    for (;;) {
        pthread_mutex_lock(&mu);
        int all = waiting == THREADS;
        pthread_mutex_unlock(&mu);
        if (all)
            break;
        usleep(1000);
    }
    usleep(20000);  /* every waiter inside its futex wait */
    pthread_mutex_lock(&mu);
    go = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    printf("woke %d\n", THREADS);
    fflush(stdout);
    exit(0);
}
