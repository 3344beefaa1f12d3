/* A child blocked in read gets SIGUSR1 (handled, no SA_RESTART) and then SIGCONT, as
   `timeout` sends them: the read fails with EINTR after the handler runs. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t handled;

static void on_usr1(int sig)
{
    (void)sig;
    handled = 1;
}

int main(void)
{
    int fds[2];
    if (pipe(fds)) {
        perror("pipe");
        return 1;
    }
    pid_t child = fork();
    if (child == 0) {
        close(fds[1]);
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_usr1;
        sigaction(SIGUSR1, &sa, NULL);
        char byte;
        long r = read(fds[0], &byte, 1);
        printf("child: read returned %ld (%s), handler ran: %d\n", r,
               r < 0 ? strerror(errno) : "no error", handled);
        return 0;
    }
    close(fds[0]);
    usleep(200000);
    kill(child, SIGUSR1);
    kill(child, SIGCONT);
    usleep(200000);
    close(fds[1]);
    int status;
    waitpid(child, &status, 0);
    printf("parent: child exited with %d\n", WEXITSTATUS(status));
    return 0;
}
