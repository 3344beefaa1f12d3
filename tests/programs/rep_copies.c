/* rep_copies.c - N rounds (argv[1], default 200) of a getppid and a 64-byte `rep movsb`
 * copy between two buffers; prints a checksum of the copies. Deterministic. Exit 0. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static unsigned char from[64], to[64];

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 200;
    unsigned long sum = 0;
    for (long i = 0; i < n; i++) {
        getppid();
        for (int j = 0; j < 64; j++)
            from[j] = (unsigned char)(i + j);
        unsigned char *d = to;
        const unsigned char *s = from;
        unsigned long c = sizeof to;
        __asm__ volatile("rep movsb" : "+D"(d), "+S"(s), "+c"(c) : : "memory");
        sum += to[i % 64];
    }
    printf("rounds %ld sum %lu\n", n, sum);
    return 0;
}
