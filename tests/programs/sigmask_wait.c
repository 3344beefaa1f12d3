/* sigmask_wait.c - SIGCHLD is blocked except while waiting in pselect, ppoll, epoll_pwait and
 * sigsuspend, which wait with a temporary mask that lets it in (make -j does this): each
 * wait is interrupted by a child's exit and the handler runs inside it. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t handled;

static void on_chld(int sig)
{
    handled++;
}

static void child(void)
{
    if (fork() == 0)
        _exit(0);
}

static void report(const char *what, int rc)
{
    int blocked;
    sigset_t now;
    sigprocmask(SIG_BLOCK, NULL, &now);
    blocked = sigismember(&now, SIGCHLD);
    printf("%s: %s, handler ran %d time(s), SIGCHLD blocked again: %s\n", what,
           rc < 0 ? strerror(errno) : "no error", (int)handled, blocked ? "yes" : "no");
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
}

int main(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_chld;  /* no SA_RESTART: the waits fail with EINTR */
    sigaction(SIGCHLD, &sa, NULL);
    sigset_t block, empty;
    sigemptyset(&block);
    sigaddset(&block, SIGCHLD);
    sigemptyset(&empty);
    sigprocmask(SIG_BLOCK, &block, NULL);

    struct timespec ten = {10, 0};
    child();
    report("pselect", pselect(0, NULL, NULL, NULL, &ten, &empty));
    child();
    report("ppoll", ppoll(NULL, 0, &ten, &empty));
    int ep = epoll_create1(0);
    struct epoll_event ev;
    child();
    report("epoll_pwait", epoll_pwait(ep, &ev, 1, 10000, &empty));
    child();
    report("sigsuspend", sigsuspend(&empty));
    return 0;
}
