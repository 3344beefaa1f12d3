/* signal_at_return.c - one SIGALRM that arrives while the program computes in compute(), a
 * function that is not inlined, between getppid calls. With the syscall buffer (getppid made
 * without a stop) relive delivers it at a point in user code: the return address of
 * compute(), every round the same registers, told apart by memory. Without the buffer, just
 * before the next getppid. Stepping back from the handler's first instruction must land
 * where it interrupted the program. Prints whether rounds ran first; exit status 0. */
#include <signal.h>
#include <stdio.h>
#include <sys/time.h>
#include <unistd.h>
static volatile sig_atomic_t fired;
static volatile unsigned long sink;
static void on_alarm(int sig) { (void)sig; fired = 1; }
__attribute__((noinline)) static void compute(void)
{
    for (int i = 0; i < 5000000; i++)
        sink += (unsigned long)i * 7;
}
int main(void)
{
    signal(SIGALRM, on_alarm);
    struct itimerval once = {{0, 0}, {0, 5000}};
    setitimer(ITIMER_REAL, &once, NULL);
    long rounds = 0;
    while (!fired) {
        compute();
        getppid();
        rounds++;
    }
    printf("signal after %s\n", rounds > 0 ? "some rounds" : "no round");
    return 0;
}
