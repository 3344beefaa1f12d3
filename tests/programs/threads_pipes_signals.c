/* threads_pipes_signals.c - thread-directed signals interrupting blocking reads.
 * 3 reader threads each install their own sigaltstack and block in read() on
 * their own pipe.  SIGUSR1 has an SA_ONSTACK handler WITHOUT SA_RESTART that
 * counts signals in a __thread volatile and notes whether it ran on that
 * thread's alternate stack.  main (after a ready handshake and a 5 ms sleep
 * so each reader is really blocked) pthread_kill()s each reader in turn and
 * waits until it reports "reader i: read interrupted (EINTR)"; the reader
 * loops back into read().  main then raises one process-directed
 * kill(getpid(), SIGUSR2) (readers block SIGUSR2, so main handles it), writes
 * a message to each pipe in turn and joins that reader, which prints what it
 * read.  Finally main prints, per reader, the signal count (1), whether the
 * handler ran on the altstack (yes) and the message, then the SIGUSR2 count.
 * All printing is serialised by handshakes, so the output is deterministic.
 * Exit status: 0, or 1 on setup failure / a missing EINTR. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NREADERS 3
#define ALTSZ (64 * 1024)

static char altstacks[NREADERS][ALTSZ];
static int pipes[NREADERS][2];
static __thread volatile sig_atomic_t tls_sigs, tls_onstack;
static __thread uintptr_t tls_alt;
static int ready[NREADERS], eintr_seen[NREADERS];
static int sig_count[NREADERS], on_alt[NREADERS];
static char message[NREADERS][64];
static volatile sig_atomic_t usr2_count;

static void on_usr1(int sig)
{
    char local;
    (void)sig;
    tls_sigs++;
    if ((uintptr_t)&local >= tls_alt && (uintptr_t)&local < tls_alt + ALTSZ)
        tls_onstack++;
}

static void on_usr2(int sig) { (void)sig; usr2_count++; }

static void ms_sleep(long ms)
{
    struct timespec ts = { 0, ms * 1000000L };
    nanosleep(&ts, NULL);
}

static void *reader(void *arg)
{
    int i = (int)(long)arg;
    stack_t ss = { .ss_sp = altstacks[i], .ss_size = ALTSZ, .ss_flags = 0 };
    tls_alt = (uintptr_t)altstacks[i];
    if (sigaltstack(&ss, NULL) != 0)
        perror("sigaltstack");
    __atomic_store_n(&ready[i], 1, __ATOMIC_RELEASE);
    for (;;) {
        ssize_t n = read(pipes[i][0], message[i], sizeof message[i] - 1);
        if (n < 0 && errno == EINTR) {
            printf("reader %d: read interrupted (EINTR)\n", i);
            __atomic_store_n(&eintr_seen[i], 1, __ATOMIC_RELEASE);
            continue;
        }
        if (n < 0) { perror("read"); break; }
        message[i][n] = '\0';
        printf("reader %d: read \"%s\"\n", i, message[i]);
        break;
    }
    sig_count[i] = tls_sigs;
    on_alt[i] = tls_sigs > 0 && tls_onstack == tls_sigs;
    return NULL;
}

int main(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_ONSTACK;           /* no SA_RESTART: read() fails with EINTR */
    sigaction(SIGUSR1, &sa, NULL);
    sa.sa_handler = on_usr2;
    sa.sa_flags = 0;
    sigaction(SIGUSR2, &sa, NULL);

    sigset_t usr2;                      /* readers inherit SIGUSR2 blocked */
    sigemptyset(&usr2);
    sigaddset(&usr2, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &usr2, NULL);

    pthread_t th[NREADERS];
    for (long i = 0; i < NREADERS; i++) {
        if (pipe(pipes[i]) != 0 || pthread_create(&th[i], NULL, reader, (void *)i) != 0) {
            puts("setup failed");
            return 1;
        }
    }
    for (int i = 0; i < NREADERS; i++)
        while (!__atomic_load_n(&ready[i], __ATOMIC_ACQUIRE))
            ms_sleep(1);
    ms_sleep(5);                        /* let every reader block in read() */

    int ok = 1;
    for (int i = 0; i < NREADERS; i++) {
        pthread_kill(th[i], SIGUSR1);
        int polls = 0;
        while (!__atomic_load_n(&eintr_seen[i], __ATOMIC_ACQUIRE) && polls++ < 5000)
            ms_sleep(1);
        if (!__atomic_load_n(&eintr_seen[i], __ATOMIC_ACQUIRE)) {
            printf("reader %d: no EINTR\n", i);
            ok = 0;
        }
    }

    pthread_sigmask(SIG_UNBLOCK, &usr2, NULL);
    kill(getpid(), SIGUSR2);

    for (int i = 0; i < NREADERS; i++) {
        char msg[32];
        int len = snprintf(msg, sizeof msg, "message for reader %d", i);
        if (write(pipes[i][1], msg, (size_t)len) != len)
            perror("write");
        pthread_join(th[i], NULL);
    }
    for (int i = 0; i < NREADERS; i++)
        printf("reader %d: signals %d, on altstack %s, message \"%s\"\n",
               i, sig_count[i], on_alt[i] ? "yes" : "no", message[i]);
    printf("SIGUSR2 handled %d time(s)\n", (int)usr2_count);
    return ok ? 0 : 1;
}
