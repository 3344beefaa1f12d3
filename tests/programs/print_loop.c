/* print_loop.c - prints "tick N" (flushed) then sleeps 50 ms, argv[1] times
 * (default 1000, i.e. about 50 s), then "done".  Used to kill the recorder
 * mid-recording: what was printed so far must replay from the partial trace.
 * Exit status: 0. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 1000;
    struct timespec ts = { 0, 50 * 1000 * 1000 };
    for (long i = 0; i < n; i++) {
        printf("tick %ld\n", i);
        fflush(stdout);
        nanosleep(&ts, NULL);
    }
    printf("done\n");
    return 0;
}
