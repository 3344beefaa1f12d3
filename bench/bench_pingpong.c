/* bench_pingpong: two threads pass a byte back and forth N times (argv[1],
 * default 5,000 round trips).
 *
 *   bench_pingpong [N] [pipe|cond]
 *
 * pipe (the default): through two pipes.  The main thread writes the byte to
 * pipe `ping` and reads the answer from pipe `pong`; the other thread reads
 * from `ping`, adds 1 and writes to `pong`.  Each round trip is 4 syscalls
 * (2 writes, 2 reads) and at least 2 thread switches.
 * cond: through one slot guarded by a pthread mutex and two condition
 * variables (a futex hand-off each way: pthread_cond_wait / _signal), the
 * shape of issue 18's "mutex + condvar ping-pong".
 * main then prints the round-trip count and a checksum of the bytes it got
 * back.  Deterministic.  Exit status: 0, or 1 on any failure. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int ping[2], pong[2];
static unsigned long rounds = 5000;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t to_echo = PTHREAD_COND_INITIALIZER;
static pthread_cond_t to_main = PTHREAD_COND_INITIALIZER;
static unsigned char slot;
static int turn;  /* 0: main's, 1: echo's */

static void *echo_cond(void *arg)
{
    (void)arg;
    for (unsigned long i = 0; i < rounds; i++) {
        pthread_mutex_lock(&lock);
        while (turn != 1)
            pthread_cond_wait(&to_echo, &lock);
        slot++;
        turn = 0;
        pthread_cond_signal(&to_main);
        pthread_mutex_unlock(&lock);
    }
    return NULL;
}

/* main's half of one cond round trip: hand `b` over, wait for the answer. */
static unsigned char round_trip_cond(unsigned char b)
{
    pthread_mutex_lock(&lock);
    slot = b;
    turn = 1;
    pthread_cond_signal(&to_echo);
    while (turn != 0)
        pthread_cond_wait(&to_main, &lock);
    b = slot;
    pthread_mutex_unlock(&lock);
    return b;
}

static void *echo(void *arg)
{
    unsigned char b;
    (void)arg;
    for (unsigned long i = 0; i < rounds; i++) {
        if (read(ping[0], &b, 1) != 1)
            return (void *)1;
        b++;
        if (write(pong[1], &b, 1) != 1)
            return (void *)1;
    }
    return NULL;
}

int main(int argc, char **argv)
{
    pthread_t th;
    void *ret;
    unsigned char b = 0;
    uint64_t sum = 0;

    if (argc > 1)
        rounds = strtoul(argv[1], NULL, 0);
    int cond = argc > 2 && strcmp(argv[2], "cond") == 0;
    if (argc > 2 && !cond && strcmp(argv[2], "pipe") != 0) {
        puts("usage: bench_pingpong [N] [pipe|cond]");
        return 1;
    }
    if (pipe(ping) != 0 || pipe(pong) != 0 ||
        pthread_create(&th, NULL, cond ? echo_cond : echo, NULL) != 0) {
        puts("setup failed");
        return 1;
    }
    for (unsigned long i = 0; i < rounds; i++) {
        if (cond) {
            b = round_trip_cond(b);
        } else if (write(ping[1], &b, 1) != 1 || read(pong[0], &b, 1) != 1) {
            puts("pipe i/o failed");
            return 1;
        }
        sum = sum * 31 + b;
        b++;
    }
    if (pthread_join(th, &ret) != 0 || ret != NULL) {
        puts("echo thread failed");
        return 1;
    }
    printf("round trips %lu, last byte %u, checksum %016llx\n", rounds, b,
           (unsigned long long)sum);
    return 0;
}
