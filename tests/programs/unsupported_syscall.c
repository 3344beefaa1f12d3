/* unsupported_syscall.c - prints a line, then calls shmat(2) through syscall(2) (SysV shared
 * memory, which relive cannot record: replay would have to attach real shared segments),
 * then prints its result. Natively the call fails (EINVAL: there is no segment -1); either
 * way the program prints both lines and exits 0.
 * Used to check that `relive record` refuses with exit status 125 and a
 * message naming the syscall instead of writing a trace that replays wrong.
 * Exit status: 0. */
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void)
{
    printf("before shmat\n");
    fflush(stdout);
    long r = syscall(SYS_shmat, -1, 0, 0);
    printf("shmat returned %ld\n", r);
    return 0;
}
