/* threads_sigrestart.c - a signal with an SA_RESTART handler interrupts a thread
 * blocked in read() on a pipe; the kernel restarts the read, which later gets the
 * data.  Also nanosleep in another thread interrupted by a handler without
 * SA_RESTART (EINTR, remaining time written to rem).  Prints what each thread saw,
 * in a fixed order (main prints after joining).  Exit 0. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int p[2];
static volatile sig_atomic_t usr1, usr2;
static volatile int ready_reader, ready_sleeper;
static char got[32];
static int sleep_result, sleep_errno;
static struct timespec rem;

static void on_usr1(int s) { (void)s; usr1++; }
static void on_usr2(int s) { (void)s; usr2++; }

static void *reader(void *a)
{
    (void)a;
    ready_reader = 1;
    ssize_t n = read(p[0], got, sizeof got - 1);  /* restarted after SIGUSR1 */
    if (n > 0)
        got[n] = 0;
    return NULL;
}

static void *sleeper(void *a)
{
    (void)a;
    struct timespec ts = {5, 0};
    ready_sleeper = 1;
    sleep_result = nanosleep(&ts, &rem);  /* EINTR after SIGUSR2 */
    sleep_errno = errno;
    return NULL;
}

int main(void)
{
    struct sigaction sa = {.sa_handler = on_usr1, .sa_flags = SA_RESTART};
    sigaction(SIGUSR1, &sa, NULL);
    sa.sa_handler = on_usr2;
    sa.sa_flags = 0;
    sigaction(SIGUSR2, &sa, NULL);
    if (pipe(p) != 0)
        return 1;
    pthread_t r, s;
    pthread_create(&r, NULL, reader, NULL);
    pthread_create(&s, NULL, sleeper, NULL);
    while (!ready_reader || !ready_sleeper)
        usleep(1000);
    usleep(10000);  /* both are blocked now */
    pthread_kill(r, SIGUSR1);
    pthread_kill(s, SIGUSR2);
    pthread_join(s, NULL);
    usleep(5000);
    if (write(p[1], "after restart", 13) != 13)
        return 1;
    pthread_join(r, NULL);
    printf("reader: %d SIGUSR1, read \"%s\"\n", (int)usr1, got);
    printf("sleeper: %d SIGUSR2, nanosleep %d (%s), rem %s\n", (int)usr2, sleep_result,
           strerror(sleep_errno), rem.tv_sec >= 3 && rem.tv_sec <= 5 ? "about 5 s" : "odd");
    return 0;
}
