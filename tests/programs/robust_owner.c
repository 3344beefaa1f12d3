/* robust_owner.c - robust mutexes whose owner goes away holding them.
 *
 *   robust_owner two|shared|killed|pi|leader [ROUNDS]   (default 5)
 *
 * two: ROUNDS times, a thread takes two robust mutexes and exits holding both while main
 *   waits for the first (a futex wait the kernel ends at the thread's exit, through its
 *   robust list); main then takes the second, which nobody waited for: the kernel's
 *   FUTEX_OWNER_DIED in its word is all that says EOWNERDEAD (no system call at all).
 * shared: ROUNDS times, a child process takes a process-shared robust mutex in a
 *   MAP_SHARED page and _exits holding it while its parent waits for it.
 * killed: as shared, but the parent kills the child (SIGKILL) once it holds the lock.
 * pi: as two with one priority-inheritance robust mutex (FUTEX_LOCK_PI for the waiter).
 * leader: main takes a robust mutex, starts a thread that waits for it and leaves by
 *   pthread_exit holding it: the thread gets EOWNERDEAD and prints the tally.
 * Prints how many locks came back EOWNERDEAD and how many plainly, and a checksum of the
 * lock words seen after each round. Exit status 0, or 1 on a failure (printed). */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

struct shared {
    pthread_mutex_t m[2];
    volatile int ready;
};

static struct shared *sh;
static unsigned long owner_dead, plain, words;

static int init(pthread_mutex_t *m, int pshared, int pi)
{
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    if (pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST) != 0
        || (pshared && pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED) != 0)
        || (pi && pthread_mutexattr_setprotocol(&a, PTHREAD_PRIO_INHERIT) != 0))
        return -1;
    return pthread_mutex_init(m, &a);
}

static int take(pthread_mutex_t *m)
{
    int r = pthread_mutex_lock(m);
    if (r == EOWNERDEAD) {
        owner_dead++;
        pthread_mutex_consistent(m);
    } else if (r == 0) {
        plain++;
    } else {
        printf("lock: %s\n", strerror(r));
        return -1;
    }
    words = words * 31 + (unsigned)m->__data.__lock;
    return pthread_mutex_unlock(m);
}

static void *holds(void *arg)
{
    long n = (long)arg;
    for (long i = 0; i < n; i++)
        if (pthread_mutex_lock(&sh->m[i]) != 0)
            return (void *)1;
    sh->ready = 1;
    usleep(2000);  /* the other side is waiting by now */
    return NULL;   /* exits holding them */
}

static void *waits(void *arg)
{
    (void)arg;
    while (!sh->ready)
        sched_yield();
    if (take(&sh->m[0]) != 0)
        exit(1);
    printf("robust: EOWNERDEAD %lu, plain %lu, words %016lx\n", owner_dead, plain, words);
    exit(0);
}

static int round_threads(long n)
{
    pthread_t h;
    sh->ready = 0;
    if (pthread_create(&h, NULL, holds, (void *)n) != 0)
        return -1;
    while (!sh->ready)
        sched_yield();
    for (long i = 0; i < n; i++)
        if (take(&sh->m[i]) != 0)
            return -1;
    return pthread_join(h, NULL);
}

static int round_process(int killed)
{
    sh->ready = 0;
    pid_t child = fork();
    if (child < 0)
        return -1;
    if (child == 0) {
        if (pthread_mutex_lock(&sh->m[0]) != 0)
            _exit(1);
        sh->ready = 1;
        if (killed)
            for (;;)
                pause();
        usleep(2000);
        _exit(0);  /* the whole process goes, holding the lock */
    }
    while (!sh->ready)
        sched_yield();
    if (killed && kill(child, SIGKILL) != 0)
        return -1;
    int status;
    if (take(&sh->m[0]) != 0 || waitpid(child, &status, 0) != child
        || status != (killed ? SIGKILL : 0))
        return -1;
    return 0;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "two";
    long rounds = argc > 2 ? strtol(argv[2], NULL, 0) : 5;
    int killed = strcmp(mode, "killed") == 0;
    int shared = killed || strcmp(mode, "shared") == 0, pi = strcmp(mode, "pi") == 0;
    sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE,
              (shared ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED || init(&sh->m[0], shared, pi) != 0 || init(&sh->m[1], shared, 0) != 0) {
        puts("robust mutex failed");
        return 1;
    }
    if (strcmp(mode, "leader") == 0) {
        pthread_t w;
        if (pthread_mutex_lock(&sh->m[0]) != 0 || pthread_create(&w, NULL, waits, NULL) != 0)
            return 1;
        usleep(1000);
        sh->ready = 1;
        usleep(2000);
        pthread_exit(NULL);  /* holding m[0]; the process lives on in `waits` */
    }
    for (long k = 0; k < rounds; k++) {
        int r = shared ? round_process(killed) : round_threads(pi ? 1 : 2);
        if (r != 0) {
            printf("round %ld failed\n", k);
            return 1;
        }
    }
    printf("robust: EOWNERDEAD %lu, plain %lu, words %016lx\n", owner_dead, plain, words);
    return 0;
}
