/* dap_chunks.c - a program that computes for about a millisecond between system calls, as
 * many real programs do (tests/test_dap_stepback.py): Step Back right after a continue,
 * back over a libc call (reached through its PLT entry) and into the last iteration of a
 * loop left through a jump. */
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#define CHUNKS 600
#define MARKED 500
#define WORK 300000

volatile unsigned long sink;

__attribute__((noinline)) void marker(int chunk)
{
    sink += (unsigned long)chunk;
}

__attribute__((noinline)) unsigned long mix(unsigned long x)
{
    return (x ^ (x >> 29)) * 0xbf58476d1ce4e5b9UL;
}

int main(void)
{
    int fd = open("/dev/null", O_WRONLY);
    unsigned long acc = 1;
    long i;
    for (int chunk = 0; chunk < CHUNKS; chunk++) {
        if (chunk == MARKED)
            marker(chunk);
        acc = mix(acc + (unsigned long)chunk);
        for (i = 0; i < WORK; i++)
            acc = acc * 6364136223846793005UL + (unsigned long)i;
        if (chunk & 1)
            sink += (unsigned long)getppid();
        else if (write(fd, &acc, sizeof acc) != sizeof acc)
            return 1;
    }
    printf("dap_chunks: %lx\n", acc);
    return 0;
}
