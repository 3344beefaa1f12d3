/* signal_mid_compute.c - one SIGALRM that arrives while the program computes (no syscall
 * for ~10 ms at a time, then getppid): relive delivers it just before the next syscall or
 * at a point in user code, after code ran since the previous event. Stepping back from the
 * handler's first instruction must land where it interrupted the program, not at that
 * previous event. Prints how many rounds ran before the signal; exit status 0. */
#include <signal.h>
#include <stdio.h>
#include <sys/time.h>
#include <unistd.h>

static volatile sig_atomic_t fired;
static volatile unsigned long sink;

static void on_alarm(int sig)
{
    (void)sig;
    fired = 1;
}

int main(void)
{
    signal(SIGALRM, on_alarm);
    struct itimerval once = {{0, 0}, {0, 5000}};
    setitimer(ITIMER_REAL, &once, NULL);
    long rounds = 0;
    while (!fired) {
        for (int i = 0; i < 5000000; i++)
            sink += (unsigned long)i * 7;
        getppid();
        rounds++;
    }
    printf("signal after %s\n", rounds > 0 ? "some rounds" : "no round");
    return 0;
}
