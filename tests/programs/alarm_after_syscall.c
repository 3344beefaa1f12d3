/* SIGALRM every millisecond while the program computes and now and then calls getppid: some
 * ticks come in user mode right after a syscall returned, before the next instruction (same
 * rip and rax as the call's exit, but orig_rax -1). Usage: alarm_after_syscall [TICKS] */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>
#include <unistd.h>

static volatile sig_atomic_t ticks;

static void on_alarm(int sig) { (void)sig; ticks++; }

int main(int argc, char **argv) {
    int wanted = argc > 1 ? atoi(argv[1]) : 200;
    signal(SIGALRM, on_alarm);
    struct itimerval every_ms = {{0, 1000}, {0, 1000}};
    setitimer(ITIMER_REAL, &every_ms, NULL);
    volatile unsigned long x = 0;
    long calls = 0;
    while (ticks < wanted) {
        for (int i = 0; i < 20000; i++)
            x += i * 7;
        if ((x & 3) == 0) {
            getppid();
            calls++;
        }
    }
    printf("%d ticks, getppid called: %s\n", (int)ticks, calls > 0 ? "yes" : "no");
    return 0;
}
