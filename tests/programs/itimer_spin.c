/* itimer_spin.c - asynchronous signal delivery in the middle of pure
 * computation.  setitimer(ITIMER_REAL) fires SIGALRM every 2 ms; the handler
 * increments a volatile counter and snapshots the loop's iteration count.
 * main spins in a loop with NO syscalls until the counter reaches 5, then
 * prints the iteration count at each signal, the total iterations and a
 * checksum computed in the loop.  These vary per run; a replay must deliver
 * each SIGALRM at exactly the recorded instruction to reproduce them.
 * Exit status: 0, or 9 on failure. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>

#define TICKS 5

static volatile sig_atomic_t counter;
static volatile unsigned long iterations;
static volatile unsigned long snapshot[TICKS + 1];

static void on_alarm(int sig)
{
    (void)sig;
    if (counter < TICKS)
        snapshot[counter] = iterations;
    counter++;
}

int main(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    if (sigaction(SIGALRM, &sa, NULL) != 0) {
        perror("sigaction");
        return 9;
    }

    struct itimerval it = {
        .it_interval = { 0, 2000 },
        .it_value = { 0, 2000 },
    };
    if (setitimer(ITIMER_REAL, &it, NULL) != 0) {
        perror("setitimer");
        return 9;
    }

    unsigned long checksum = 0x9e3779b97f4a7c15UL;
    /* Pure computation: no syscalls inside this loop. The body is straight-line (64
     * unrolled steps) so each instruction runs once per iteration: without a hardware PMU,
     * relive finds the delivery point of a signal that lands here by stopping at one pc and
     * comparing registers and memory, which costs per execution of that pc. */
#define STEP checksum ^= checksum >> 13; checksum *= 0x100000001b3UL; checksum += iterations;
#define STEP8 STEP STEP STEP STEP STEP STEP STEP STEP
    while (counter < TICKS) {
        iterations++;
        STEP8 STEP8 STEP8 STEP8 STEP8 STEP8 STEP8 STEP8
    }

    struct itimerval off = { { 0, 0 }, { 0, 0 } };
    setitimer(ITIMER_REAL, &off, NULL);

    for (int i = 0; i < TICKS; i++)
        printf("signal %d at iteration %lu\n", i + 1, snapshot[i]);
    printf("iterations: %lu\n", iterations);
    printf("checksum: %016lx\n", checksum);
    printf("signals: %d\n", (int)counter);
    return 0;
}
