/* sigchld_handler.c - SIGCHLD delivery while reaping several children.
 * Installs a counting SIGCHLD handler (SA_RESTART), forks 3 children that
 * each do a little computation and exit with status 10, 11 and 12.  The
 * parent reaps them with waitpid(-1) in a loop (retrying on EINTR), then
 * prints "reaped 3 children", the exit statuses sorted ("statuses: 10 11
 * 12") and "sigchld>=1" (the exact count can vary because pending SIGCHLDs
 * coalesce).  Deterministic.  Exit status: 0, or 1 on failure. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define NCHILD 3

static volatile sig_atomic_t sigchld_count;

static void on_chld(int sig) { (void)sig; sigchld_count++; }

int main(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_chld;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGCHLD, &sa, NULL);

    fflush(stdout);
    for (int i = 0; i < NCHILD; i++) {
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            return 1;
        }
        if (pid == 0) {
            volatile unsigned long x = (unsigned long)i + 1;
            for (int k = 0; k < 10000; k++)
                x = x * 2862933555777941757UL + 3037000493UL;
            _exit(10 + i);
        }
    }

    int statuses[NCHILD], n = 0;
    while (n < NCHILD) {
        int st;
        pid_t pid = waitpid(-1, &st, 0);
        if (pid < 0) {
            if (errno == EINTR)
                continue;
            perror("waitpid");
            return 1;
        }
        statuses[n++] = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    }
    for (int i = 1; i < n; i++)             /* insertion sort */
        for (int j = i; j > 0 && statuses[j - 1] > statuses[j]; j--) {
            int t = statuses[j]; statuses[j] = statuses[j - 1]; statuses[j - 1] = t;
        }
    printf("reaped %d children\n", n);
    printf("statuses:");
    for (int i = 0; i < n; i++)
        printf(" %d", statuses[i]);
    printf("\n");
    printf(sigchld_count >= 1 ? "sigchld>=1\n" : "no sigchld seen\n");
    return 0;
}
