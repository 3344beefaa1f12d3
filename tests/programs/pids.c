/* pids.c - prints getpid, getppid, gettid and getuid.  pid/ppid/tid differ
 * per run; replay must return the recorded values.
 * Exit status: 0. */
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/types.h>
#include <unistd.h>

int main(void)
{
    pid_t pid = getpid();
    pid_t ppid = getppid();
    pid_t tid = gettid();
    uid_t uid = getuid();

    printf("pid: %d\n", (int)pid);
    printf("ppid: %d\n", (int)ppid);
    printf("tid: %d\n", (int)tid);
    printf("uid: %u\n", (unsigned)uid);
    printf("pid==tid: %s\n", pid == tid ? "yes" : "no");
    return 0;
}
