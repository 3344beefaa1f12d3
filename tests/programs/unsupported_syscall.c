/* unsupported_syscall.c - prints a line, then calls userfaultfd(2) through
 * syscall(2) (a syscall relive cannot record), then prints its result.
 * Natively the call may succeed or fail (EPERM when unprivileged userfaultfd
 * is disabled); either way the program prints both lines and exits 0.
 * Used to check that `relive record` refuses with exit status 125 and a
 * message naming the syscall instead of writing a trace that replays wrong.
 * Exit status: 0. */
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void)
{
    printf("before userfaultfd\n");
    fflush(stdout);
    long r = syscall(SYS_userfaultfd, 0);
    printf("userfaultfd returned %ld\n", r);
    return 0;
}
