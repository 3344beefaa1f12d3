/* many_syscalls.c - syscall-heavy workload: N getppid() calls (N = argv[1],
 * default 20000), each a real syscall.  Prints N and the sum of the results
 * (N * ppid, varies per run).
 * Exit status: 0. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 20000;
    long long sum = 0;
    for (long i = 0; i < n; i++)
        sum += getppid();
    printf("calls: %ld\n", n);
    printf("sum: %lld\n", sum);
    return 0;
}
