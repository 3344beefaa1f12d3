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
