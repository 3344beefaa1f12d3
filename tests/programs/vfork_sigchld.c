/* vfork_sigchld.c - vfork children that exit at once (_exit, or exec of a program that
 * exits) while the parent has a SIGCHLD handler: the signal is pending when the parent's
 * vfork returns, so it is delivered right there (gdb starting its shell, found by a sweep).
 * Replay must give the parent vfork's recorded result before that delivery (it checked the
 * registers with the replay's own child pid in rax, and diverged). */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t got;

static void on_chld(int sig)
{
    (void)sig;
    got++;
}

int main(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_chld;
    sigaction(SIGCHLD, &sa, NULL);
    int statuses = 0;
    for (int i = 0; i < 20; i++) {
        pid_t pid = vfork();
        if (pid == 0) {
            if (i % 2)
                execl("/bin/true", "true", (char *)NULL);
            _exit(i % 7);
        }
        int status;
        while (waitpid(pid, &status, 0) < 0)
            ;
        statuses += WEXITSTATUS(status);
    }
    printf("20 children, statuses %d, handler ran %s\n", statuses, got > 0 ? "yes" : "no");
    return 0;
}
