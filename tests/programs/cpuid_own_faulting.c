/* The program's own CPUID faulting: arch_prctl(ARCH_GET_CPUID / ARCH_SET_CPUID) and a cpuid
 * that faults (SIGSEGV, caught) once it asked for that, in itself and in a forked child
 * (the setting is inherited), then cpuid enabled again. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define ARCH_GET_CPUID 0x1011
#define ARCH_SET_CPUID 0x1012

static sigjmp_buf env;

static void on_segv(int sig)
{
    (void)sig;
    siglongjmp(env, 1);
}

static long arch(int code, unsigned long arg)
{
    long r = syscall(SYS_arch_prctl, code, arg);
    return r < 0 ? -errno : r;
}

static void try_cpuid(const char *who)
{
    if (!sigsetjmp(env, 1)) {
        unsigned a = 0, b, c = 0, d;
        __asm__ volatile("cpuid" : "+a"(a), "=b"(b), "+c"(c), "=d"(d));
        printf("%s: cpuid ran (max leaf > 0: %d)\n", who, a > 0);
    } else {
        printf("%s: cpuid faulted\n", who);
    }
    fflush(stdout);
}

int main(void)
{
    signal(SIGSEGV, on_segv);
    printf("get: %ld\n", arch(ARCH_GET_CPUID, 0));
    long set = arch(ARCH_SET_CPUID, 0);
    printf("set 0: %ld\n", set);
    printf("get: %ld\n", arch(ARCH_GET_CPUID, 0));
    try_cpuid("main");
    pid_t pid = fork();
    if (pid == 0) {
        printf("child get: %ld\n", arch(ARCH_GET_CPUID, 0));
        try_cpuid("child");
        return 0;
    }
    waitpid(pid, NULL, 0);
    printf("set 1: %ld\n", arch(ARCH_SET_CPUID, 1));
    printf("get: %ld\n", arch(ARCH_GET_CPUID, 0));
    try_cpuid("main");
    return 0;
}
