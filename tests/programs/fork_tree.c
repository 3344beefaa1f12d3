/* fork_tree.c - a small process tree with concurrent children.
 * The root (depth 0) forks child1 and child2, which run concurrently;
 * child1 (depth 1) forks a grandchild (depth 2).  Every non-root process
 * has its stdout redirected into a pipe read by its parent; each process
 * first forwards its children's output (read to EOF, then waitpid), then
 * prints its own line with printf + fflush.  So the root prints, in a fixed
 * order:
 *   depth 2: grandchild, exiting 2
 *   depth 1: child1, grandchild status 2, exiting 3
 *   depth 1: child2, exiting 4
 *   depth 0: root, child1 status 3, child2 status 4, exiting 7
 * Exit status: 7 (child1 status + child2 status), or 1 on failure. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

/* Fork a child whose stdout is a pipe; returns its pid and the read end. */
static pid_t spawn(int *rfd)
{
    int fds[2];
    if (pipe(fds) != 0) { perror("pipe"); exit(1); }
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) { perror("fork"); exit(1); }
    if (pid == 0) {
        close(fds[0]);
        if (dup2(fds[1], STDOUT_FILENO) < 0) _exit(1);
        close(fds[1]);
        return 0;
    }
    close(fds[1]);
    *rfd = fds[0];
    return pid;
}

/* Copy the child's output to our stdout, then reap it; returns its status. */
static int collect(pid_t pid, int rfd)
{
    char buf[256];
    ssize_t n;
    while ((n = read(rfd, buf, sizeof buf)) > 0)
        fwrite(buf, 1, (size_t)n, stdout);
    close(rfd);
    int st;
    if (waitpid(pid, &st, 0) != pid) { perror("waitpid"); exit(1); }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 100;
}

int main(void)
{
    int r1, r2, rg;
    pid_t c1 = spawn(&r1);
    if (c1 == 0) {                          /* child1 */
        pid_t g = spawn(&rg);
        if (g == 0) {                       /* grandchild */
            printf("depth 2: grandchild, exiting 2\n");
            fflush(stdout);
            exit(2);
        }
        int gs = collect(g, rg);
        printf("depth 1: child1, grandchild status %d, exiting %d\n", gs, 1 + gs);
        fflush(stdout);
        exit(1 + gs);
    }
    pid_t c2 = spawn(&r2);
    if (c2 == 0) {                          /* child2 */
        close(r1);
        volatile unsigned long x = 1;
        for (int k = 0; k < 10000; k++)
            x = x * 6364136223846793005UL + 1;
        printf("depth 1: child2, exiting 4\n");
        fflush(stdout);
        exit(4);
    }
    int s1 = collect(c1, r1);
    int s2 = collect(c2, r2);
    printf("depth 0: root, child1 status %d, child2 status %d, exiting %d\n", s1, s2, s1 + s2);
    fflush(stdout);
    return s1 + s2;
}
