/* wait_restart.c - the parent waits for a slow child while a fast one exits: the fast one's
 * SIGCHLD (ignored by default, but a traced process still receives it) interrupts the wait,
 * which the kernel restarts. Then the same with a read on a pipe and a nanosleep. */
#include <stdio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void nap(long ms)
{
    struct timespec t = {0, ms * 1000 * 1000};
    nanosleep(&t, NULL);
}

static pid_t child(long ms, int code)
{
    pid_t pid = fork();
    if (pid == 0) {
        nap(ms);
        _exit(code);
    }
    return pid;
}

int main(void)
{
    int status, fds[2];
    pid_t slow = child(200, 7);
    child(20, 0);
    pid_t got = waitpid(slow, &status, 0);
    printf("waitpid: slow child %s, exit %d\n", got == slow ? "reaped" : "missed",
           WEXITSTATUS(status));
    while (wait(NULL) > 0)
        ;
    pipe(fds);
    pid_t writer = fork();
    if (writer == 0) {
        nap(200);
        write(fds[1], "x", 1);
        _exit(0);
    }
    child(20, 0);
    char c = 0;
    ssize_t n = read(fds[0], &c, 1);
    printf("read: %zd byte '%c'\n", n, c);
    child(20, 0);
    struct timespec t = {0, 200 * 1000 * 1000}, left = {0, 0};
    int rc = nanosleep(&t, &left);
    printf("nanosleep: rc %d\n", rc);
    while (wait(NULL) > 0)
        ;
    return 0;
}
