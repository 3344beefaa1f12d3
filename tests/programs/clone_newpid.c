/* clone_newpid.c - prints a line, then starts a child in a new PID namespace (clone with
 * CLONE_NEWPID | CLONE_NEWUSER, as unshare --pid --fork and container tools do), which forks
 * a grandchild and waits for it. Inside the namespace the processes have other ids (the child
 * is 1, its fork returns 2) than the recorder sees: recorded, the fork's result was the
 * outer id and replay diverged at the wait (found by a sweep). relive refuses the clone at
 * record time. Natively: "child pid 1", "grandchild status 3", "child exited 5" (or the
 * clone fails where namespaces are forbidden). Exit status: 0. */
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

static char stack[1 << 16];

static int child(void *arg)
{
    (void)arg;
    printf("child pid %d\n", getpid());
    pid_t g = fork();
    if (g == 0)
        _exit(3);
    int status;
    if (waitpid(g, &status, 0) != g)
        return 1;
    printf("grandchild status %d\n", WEXITSTATUS(status));
    fflush(stdout);
    return 5;
}

int main(void)
{
    printf("before clone\n");
    fflush(stdout);
    pid_t p = clone(child, stack + sizeof stack, CLONE_NEWPID | CLONE_NEWUSER | SIGCHLD, NULL);
    if (p < 0) {
        perror("clone");
        return 0;
    }
    int status;
    waitpid(p, &status, 0);
    printf("child exited %d\n", WEXITSTATUS(status));
    return 0;
}
