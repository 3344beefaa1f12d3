/* fork_pipe.c - fork, a pipe from child to parent, and exit status.
 * The child computes n = sum of i*i for i in 1..100 (338350), writes
 * "hello from child 338350" to a pipe and exits with status 7.  The parent
 * reads the pipe to EOF, prints "parent read: hello from child 338350",
 * waitpid()s and prints "child exited with status 7".  Deterministic.
 * Exit status: 0, or 1 on failure. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void)
{
    int fds[2];
    if (pipe(fds) != 0) {
        perror("pipe");
        return 1;
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) {
        close(fds[0]);
        long n = 0;
        for (long i = 1; i <= 100; i++)
            n += i * i;
        char buf[64];
        int len = snprintf(buf, sizeof buf, "hello from child %ld", n);
        if (write(fds[1], buf, (size_t)len) != len)
            _exit(1);
        close(fds[1]);
        exit(7);
    }
    close(fds[1]);
    char buf[128];
    size_t got = 0;
    ssize_t r;
    while (got < sizeof buf - 1 && (r = read(fds[0], buf + got, sizeof buf - 1 - got)) > 0)
        got += (size_t)r;
    buf[got] = '\0';
    close(fds[0]);
    printf("parent read: %s\n", buf);

    int status;
    if (waitpid(pid, &status, 0) != pid) {
        perror("waitpid");
        return 1;
    }
    if (WIFEXITED(status))
        printf("child exited with status %d\n", WEXITSTATUS(status));
    else
        printf("child ended abnormally (raw status 0x%x)\n", status);
    return 0;
}
