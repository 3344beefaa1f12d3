/* vfork_scratch.c - vfork children that make a blocking call before exec.
 * A vfork child shares its parent's memory, so under relive its read() goes
 * through a scratch area in the parent's address space; when the child execs,
 * that area is left behind in the parent and must go back to the pool (the next
 * child reuses it, the parent's later signal frames are clipped at it).  Three
 * rounds: pipe with one byte, vfork, child reads the byte and execs
 * /bin/echo "child N got X"; parent waits and prints the status.  Then the
 * parent takes a signal on its own stack.  Exit 0. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile int hits;

static void on_usr1(int sig)
{
    (void)sig;
    hits++;
}

int main(void)
{
    for (int i = 0; i < 3; i++) {
        int p[2];
        char msg[32], c = 0;
        if (pipe(p) != 0 || write(p[1], "XYZ" + i, 1) != 1)
            return 1;
        fflush(stdout);
        pid_t pid = vfork();
        if (pid == 0) {
            if (read(p[0], &c, 1) != 1)
                _exit(126);
            snprintf(msg, sizeof msg, "child %d got %c", i, c);
            execl("/bin/echo", "echo", msg, (char *)NULL);
            _exit(127);
        }
        int status = 0;
        waitpid(pid, &status, 0);
        close(p[0]);
        close(p[1]);
        printf("round %d: child exited %d\n", i, WEXITSTATUS(status));
    }
    signal(SIGUSR1, on_usr1);
    raise(SIGUSR1);
    printf("parent handled %d signal(s)\n", hits);
    return 0;
}
