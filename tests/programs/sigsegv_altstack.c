/* sigsegv_altstack.c - synchronous fault handling on an alternate stack.
 * Installs a malloc'd sigaltstack and a SIGSEGV handler (SA_SIGINFO |
 * SA_ONSTACK) that siglongjmps back out.  Dereferences NULL three times.
 * Prints, per fault, the fault address from siginfo (si_addr), si_code and
 * whether the handler ran on the alternate stack; then the fault count and
 * the altstack address (heap, so ASLR makes it vary per run).
 * Exit status: the number of faults caught (3), or 10 on setup failure. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FAULTS 3

static sigjmp_buf env;
static volatile sig_atomic_t faults;
static void *volatile fault_addr;
static volatile int fault_code;
static volatile int on_altstack;
static char *altstack;
static size_t altstack_size;

static void on_segv(int sig, siginfo_t *si, void *uctx)
{
    (void)sig;
    (void)uctx;
    char here;
    faults++;
    fault_addr = si->si_addr;
    fault_code = si->si_code;
    on_altstack = &here >= altstack && &here < altstack + altstack_size;
    siglongjmp(env, 1);
}

int main(void)
{
    altstack_size = 64 * 1024;
    altstack = malloc(altstack_size);
    stack_t ss = { .ss_sp = altstack, .ss_size = altstack_size, .ss_flags = 0 };
    if (altstack == NULL || sigaltstack(&ss, NULL) != 0) {
        perror("sigaltstack");
        return 10;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    if (sigaction(SIGSEGV, &sa, NULL) != 0) {
        perror("sigaction");
        return 10;
    }

    int *volatile nullp = NULL;
    for (int i = 0; i < FAULTS; i++) {
        if (sigsetjmp(env, 1) == 0) {
            int v = *nullp;            /* faults */
            printf("unexpected: read %d\n", v);
        } else {
            printf("fault %d: addr=%p code=%d on_altstack=%s\n", (int)faults,
                   fault_addr, fault_code, on_altstack ? "yes" : "no");
        }
    }
    printf("faults: %d\n", (int)faults);
    printf("altstack: %p\n", (void *)altstack);
    fflush(stdout);
    return faults;
}
