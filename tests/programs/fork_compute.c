/* fork_compute.c - two processes that compute for long stretches and talk over pipes.
 *
 *   fork_compute ROUNDS ITERS
 *
 * The parent forks a child; then, ROUNDS times, the parent hashes ITERS iterations with no
 * system call (compute()), sends its result down one pipe, and the child, which was
 * waiting in read, hashes it ITERS times too and sends its result back up the other pipe.
 * So at any point of the replay two processes are alive, and each spends most of its
 * time in one long stretch of user code.  `round_no` holds the current round, so a
 * conditional breakpoint on compute()'s `return` line stops at the end of one chosen
 * round's computation, in the parent or in the child.  Prints the last result and the
 * child's exit status; deterministic.  Exit status: 0, or 1 on failure. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

volatile int round_no;

unsigned long compute(unsigned long x, unsigned long n)
{
    for (unsigned long i = 0; i < n; i++) {
        x ^= i;
        x *= 0x100000001b3UL;
        x = (x << 13) | (x >> 51);
    }
    return x; /* end of computation */
}

static int full(int fd, void *buf, size_t len, int writing)
{
    size_t done = 0;
    while (done < len) {
        ssize_t r = writing ? write(fd, (char *)buf + done, len - done)
                            : read(fd, (char *)buf + done, len - done);
        if (r <= 0)
            return -1;
        done += (size_t)r;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s ROUNDS ITERS\n", argv[0]);
        return 2;
    }
    int rounds = atoi(argv[1]);
    unsigned long iters = strtoul(argv[2], NULL, 0), x = 1;
    int down[2], up[2];
    if (pipe(down) != 0 || pipe(up) != 0) {
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
        close(down[1]);
        close(up[0]);
        for (round_no = 0; round_no < rounds; round_no++) {
            if (full(down[0], &x, sizeof x, 0) != 0)
                _exit(1);
            x = compute(x, iters);
            if (full(up[1], &x, sizeof x, 1) != 0)
                _exit(1);
        }
        _exit(7);
    }
    close(down[0]);
    close(up[1]);
    for (round_no = 0; round_no < rounds; round_no++) {
        x = compute(x, iters);
        if (full(down[1], &x, sizeof x, 1) != 0 || full(up[0], &x, sizeof x, 0) != 0) {
            fprintf(stderr, "the child went away\n");
            return 1;
        }
    }
    int status;
    if (waitpid(pid, &status, 0) != pid) {
        perror("waitpid");
        return 1;
    }
    printf("fork_compute: %d x %lu: %lx, child status %d\n", rounds, iters, x,
           WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    return 0;
}
