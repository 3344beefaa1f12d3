/* bench_stepback: long computations without system calls, for bench/bench_stepback.py.
 *
 *   bench_stepback PHASES ITERS [THREADED]
 *
 * runs PHASES phases; each hashes ITERS iterations with no system call (compute()), then
 * makes one (getppid).  `phase` holds the current phase number, so a conditional breakpoint
 * on compute()'s `return` line stops at the end of one chosen phase's computation.  With
 * THREADED 1 the phases run in a second thread while main waits in pthread_join (a
 * multi-threaded replay); with THREADED 2 in a forked child while the parent waits in
 * waitpid (a process tree: `relive replay -p CHILD` debugs the child). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

volatile int phase;
volatile unsigned long sink;

unsigned long compute(unsigned long x, unsigned long n)
{
    for (unsigned long i = 0; i < n; i++) {
        x ^= i;
        x *= 0x100000001b3UL;
        x = (x << 13) | (x >> 51);
    }
    return x; /* end of computation */
}

static int phases;
static unsigned long iters, x = 1;

static void *run(void *arg)
{
    (void)arg;
    for (phase = 0; phase < phases; phase++) {
        x = compute(x, iters);
        sink += (unsigned long)getppid();
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: %s PHASES ITERS [THREADED]\n", argv[0]);
        return 2;
    }
    phases = atoi(argv[1]);
    iters = strtoul(argv[2], NULL, 0);
    if (argc == 4 && atoi(argv[3]) == 2) {
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            run(NULL);
            printf("bench_stepback: %d x %lu: %lx (child)\n", phases, iters, x);
            fflush(stdout);
            _exit(0);
        }
        int status;
        if (pid < 0 || waitpid(pid, &status, 0) != pid || status != 0) {
            fprintf(stderr, "the child failed\n");
            return 1;
        }
        return 0;
    }
    if (argc == 4 && atoi(argv[3])) {
        pthread_t th;
        if (pthread_create(&th, NULL, run, NULL) != 0) {
            fprintf(stderr, "pthread_create failed\n");
            return 1;
        }
        pthread_join(th, NULL);
    } else {
        run(NULL);
    }
    printf("bench_stepback: %d x %lu: %lx\n", phases, iters, x);
    return 0;
}
