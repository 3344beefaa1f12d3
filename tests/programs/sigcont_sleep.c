/* A child sleeping in nanosleep gets SIGCONT (as from `kill -CONT`, or `timeout`, or fg after
   Ctrl-Z): the signal is dropped and the kernel resumes the sleep with restart_syscall, which
   the program never sees. */
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(void)
{
    pid_t child = fork();
    if (child == 0) {
        struct timespec nap = {1, 0}, left = {0, 0};
        int r = nanosleep(&nap, &left);
        printf("child: nanosleep returned %d\n", r);
        return 0;
    }
    usleep(200000);
    kill(child, SIGCONT);
    int status;
    waitpid(child, &status, 0);
    printf("parent: child exited with %d\n", WEXITSTATUS(status));
    return 0;
}
