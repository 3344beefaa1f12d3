/* exec_from_threads.c - the main thread execs while other threads wait in the kernel (a read
 * on a pipe, a condition variable, a nanosleep): the exec kills them. The new image prints
 * and exits with status 3. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int fds[2];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int started;

static void arrived(void)
{
    pthread_mutex_lock(&lock);
    started++;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
}

static void *reader(void *arg)
{
    char c;
    arrived();
    return (void *)read(fds[0], &c, 1);  /* never written: blocked until the exec */
}

static void *waiter(void *arg)
{
    pthread_mutex_lock(&lock);
    started++;
    pthread_cond_broadcast(&cond);
    while (1)
        pthread_cond_wait(&cond, &lock);  /* woken by the others' broadcasts, waits again */
    return NULL;
}

static void *sleeper(void *arg)
{
    struct timespec t = {30, 0};
    arrived();
    nanosleep(&t, NULL);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "after") == 0) {
        printf("after exec, pid %d\n", getpid() > 0);
        return 3;
    }
    pthread_t t[3];
    pipe(fds);
    pthread_create(&t[0], NULL, reader, NULL);
    pthread_create(&t[1], NULL, waiter, NULL);
    pthread_create(&t[2], NULL, sleeper, NULL);
    pthread_mutex_lock(&lock);
    while (started < 3)
        pthread_cond_wait(&cond, &lock);
    pthread_mutex_unlock(&lock);
    printf("three threads waiting; exec\n");
    fflush(stdout);
    execl("/proc/self/exe", argv[0], "after", (char *)NULL);
    perror("execl");
    return 1;
}
