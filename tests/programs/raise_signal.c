/* raise_signal.c - synchronous self-signals and a pending blocked signal.
 * raise(SIGUSR1) runs the handler before raise returns.  Then SIGUSR1 is
 * blocked with sigprocmask, raised again (becomes pending, checked with
 * sigpending), and delivered when unblocked.  Prints the order of events and
 * the sender pid from siginfo (= own pid, varies per run).
 * Exit status: 0, or 11 on failure. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t step;
static volatile sig_atomic_t handled_at[4];
static volatile pid_t sender[4];
static volatile int code[4];
static volatile sig_atomic_t nhandled;

static void on_usr1(int sig, siginfo_t *si, void *uctx)
{
    (void)sig;
    (void)uctx;
    if (nhandled < 4) {
        handled_at[nhandled] = step;
        sender[nhandled] = si->si_pid;
        code[nhandled] = si->si_code;
    }
    nhandled++;
    step++;
}

int main(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_usr1;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_SIGINFO;
    if (sigaction(SIGUSR1, &sa, NULL) != 0) {
        perror("sigaction");
        return 11;
    }

    printf("pid: %d\n", (int)getpid());
    step = 1;
    printf("step 1: raise(SIGUSR1) unblocked\n");
    raise(SIGUSR1);                 /* handler runs: step 1 -> 2 */
    printf("step %d: after raise, handled=%d\n", (int)step, (int)nhandled);

    sigset_t set, pend;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigprocmask(SIG_BLOCK, &set, NULL);
    step = 10;
    raise(SIGUSR1);                 /* pending, no handler yet */
    sigpending(&pend);
    printf("step 10: raised while blocked, pending=%s handled=%d\n",
           sigismember(&pend, SIGUSR1) ? "yes" : "no", (int)nhandled);
    step = 20;
    sigprocmask(SIG_UNBLOCK, &set, NULL);   /* delivered here: 20 -> 21 */
    printf("step %d: after unblock, handled=%d\n", (int)step, (int)nhandled);

    for (int i = 0; i < nhandled && i < 4; i++)
        printf("handler %d: ran at step %d, si_pid=%d (self=%s), si_code=%d\n",
               i + 1, (int)handled_at[i], (int)sender[i],
               sender[i] == getpid() ? "yes" : "no", code[i]);
    return nhandled == 2 ? 0 : 11;
}
