/* bench_pingpong: two threads pass a byte back and forth N times (argv[1],
 * default 5,000 round trips) through two pipes.  The main thread writes the
 * byte to pipe `ping` and reads the answer from pipe `pong`; the other thread
 * reads from `ping`, adds 1 and writes to `pong`.  Each round trip is 4
 * syscalls (2 writes, 2 reads) and at least 2 thread switches.  main then
 * prints the round-trip count and a checksum of the bytes it got back.
 * Deterministic.  Exit status: 0, or 1 on any failure. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static int ping[2], pong[2];
static unsigned long rounds = 5000;

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
    if (pipe(ping) != 0 || pipe(pong) != 0 ||
        pthread_create(&th, NULL, echo, NULL) != 0) {
        puts("setup failed");
        return 1;
    }
    for (unsigned long i = 0; i < rounds; i++) {
        if (write(ping[1], &b, 1) != 1 || read(pong[0], &b, 1) != 1) {
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
