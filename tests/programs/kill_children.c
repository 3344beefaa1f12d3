/* kill_children.c - the parent kills children that are blocked in the kernel: SIGTERM with
 * the default action (in nanosleep), SIGKILL (in read on a pipe), and SIGTERM caught by a
 * handler (in nanosleep, then the child reports how much sleep was left). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void on_term(int sig)
{
    const char msg[] = "child: caught SIGTERM\n";
    write(1, msg, sizeof msg - 1);
}

static void settle(void)
{
    struct timespec t = {0, 50 * 1000 * 1000};  /* let the child block */
    nanosleep(&t, NULL);
}

static void report(const char *what, pid_t pid)
{
    int status;
    waitpid(pid, &status, 0);
    if (WIFSIGNALED(status))
        printf("%s: killed by signal %d\n", what, WTERMSIG(status));
    else
        printf("%s: exit %d\n", what, WEXITSTATUS(status));
    fflush(stdout);
}

int main(void)
{
    int fds[2];
    pipe(fds);
    pid_t a = fork();
    if (a == 0) {
        struct timespec t = {10, 0};
        nanosleep(&t, NULL);
        _exit(1);
    }
    settle();
    kill(a, SIGTERM);
    report("sleeping child, SIGTERM", a);

    pid_t b = fork();
    if (b == 0) {
        char c;
        read(fds[0], &c, 1);
        _exit(2);
    }
    settle();
    kill(b, SIGKILL);
    report("reading child, SIGKILL", b);

    pid_t c = fork();
    if (c == 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_term;
        sigaction(SIGTERM, &sa, NULL);
        struct timespec t = {10, 0}, left;
        int rc = nanosleep(&t, &left);
        _exit(rc == -1 && left.tv_sec < 10 ? 3 : 4);
    }
    settle();
    kill(c, SIGTERM);
    report("child with a handler, SIGTERM", c);
    return 0;
}
