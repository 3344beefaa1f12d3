/* prof_timer.c - a profiling timer while the program computes: setitimer(ITIMER_PROF)
 * sends SIGPROF every 10 ms of CPU time (what gcc -pg's gprof support does) to a
 * program computing in blocks of function calls with no syscall. The handler notes the
 * block and step each tick lands in; those vary from run to run, so a replay reproduces
 * them only if it delivers every SIGPROF at exactly the recorded point. The recorder
 * delivers them a little late, at a place replay finds quickly.
 * With THREADS > 1, that many threads compute (the process's timer signals whichever runs)
 * and print their results; the ticks they note are not printed.
 * Usage: prof_timer [BLOCKS [THREADS [MIN_TICKS]]]   (default 12000 blocks, about a second
 * on a 2025 CPU; 1 thread). With one thread, it goes on computing past BLOCKS until it has
 * seen MIN_TICKS ticks (a fast CPU finishes 12000 blocks in 25 ticks, and ticks held back
 * under relive merge: a test that needs enough of them asks for them).
 * Exit status 0. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>

#define NOTED 8

static volatile unsigned long block_no, step_no;
static volatile int ticks;
static unsigned long noted[NOTED][2];

static void on_tick(int sig)
{
    (void)sig;
    if (ticks < NOTED) {
        noted[ticks][0] = block_no;
        noted[ticks][1] = step_no;
    }
    ticks++;
}

__attribute__((noinline)) static unsigned long step(unsigned long x)
{
    step_no++;
    return x * 6364136223846793005UL + 1442695040888963407UL;
}

__attribute__((noinline)) static unsigned long block(unsigned long x)
{
    for (int i = 0; i < 20000; i++)
        x = step(x);
    return x;
}

static unsigned long blocks = 12000;

static void *compute(void *seed)
{
    unsigned long x = (unsigned long)seed;
    for (unsigned long b = 0; b < blocks; b++)
        x = block(x);
    return (void *)x;
}

int main(int argc, char **argv)
{
    if (argc > 1)
        blocks = strtoul(argv[1], NULL, 10);
    int threads = argc > 2 ? atoi(argv[2]) : 1;
    int min_ticks = argc > 3 ? atoi(argv[3]) : 0;
    struct itimerval every_10ms = {{0, 10000}, {0, 10000}};
    signal(SIGPROF, on_tick);
    setitimer(ITIMER_PROF, &every_10ms, NULL);
    if (threads > 1) {
        pthread_t tids[threads];
        for (long i = 0; i < threads; i++)
            pthread_create(&tids[i], NULL, compute, (void *)(i + 1));
        for (int i = 0; i < threads; i++) {
            void *x;
            pthread_join(tids[i], &x);
            printf("thread %d: x=%016lx\n", i, (unsigned long)x);
        }
        return 0;
    }
    unsigned long x = 1;
    for (block_no = 0; block_no < blocks || ticks < min_ticks; block_no++)
        x = block(x);
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_PROF, &off, NULL);
    printf("x=%016lx ticks=%d\n", x, ticks);
    for (int i = 0; i < NOTED && i < ticks; i++)
        printf("tick %d: block %lu step %lu\n", i, noted[i][0], noted[i][1]);
    return 0;
}
