/* fed_marks.c N FILE [SIZE] - N rounds of a clock read and a pread of SIZE bytes (64) of
 * FILE (a regular file no process maps: its reads are buffered) into
 * `buf` (both buffered calls when recorded: tracee/sysbuf_hook.c), with a call of mark()
 * every 100 rounds, where a debugger stops. Prints a checksum of what it saw (replay must
 * print the same). Used by tests/test_sysbuf_gdb.py: a gdb `continue` over the rounds
 * between two marks runs through the hook's feed, and must stop where and with what a
 * replay with a stop per call shows. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static unsigned char buf[1 << 16];
static unsigned long total;

__attribute__((noinline)) void mark(long i, long ns, long got)
{
    __asm__ volatile("" ::: "memory");
    total = total * 31 + (unsigned long)(ns ^ got ^ i);
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 2000;
    long size = argc > 3 ? atol(argv[3]) : 64;
    if (size < 64 || size > (long)sizeof buf)
        return 2;
    int fd = open(argc > 2 ? argv[2] : "/etc/passwd", O_RDONLY);
    if (fd < 0)
        return 2;
    for (long i = 0; i < n; i++) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ssize_t got = pread(fd, buf, (size_t)size, (i * 7) % 256);
        total += buf[i % 64] + (unsigned long)got;
        if (i % 100 == 0)
            mark(i, ts.tv_nsec, buf[(i / 100) % 64]);
    }
    printf("%lu\n", total);
    return 0;
}
