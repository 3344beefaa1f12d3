/* ptrace_floor.c - the "ptrace floor": the cheapest possible syscall tracer.
 *
 *   ptrace_floor [-c] [-t] [-f] PROGRAM [ARGS...]
 *
 * Forks; the child does PTRACE_TRACEME, raise(SIGSTOP) and execvp(PROGRAM).
 * The parent sets PTRACE_O_TRACESYSGOOD | PTRACE_O_EXITKILL (plus
 * PTRACE_O_TRACEEXEC, so execve reports an event stop instead of a stray
 * SIGTRAP), then loops PTRACE_SYSCALL + waitpid, doing one PTRACE_GETREGS at
 * every stop, until the child exits.  Signals other than the syscall/event
 * stops are passed through to the child.  Only the direct child is traced
 * (no fork following).
 *
 * Exit status: the child's exit status, or 128+N if it was killed by signal
 * N; 127 if PROGRAM cannot be executed; 126 on tracer errors.
 * With -c, prints "ptrace_floor: syscalls=N stops=M" to stderr at the end
 * (N counts syscall entries, including the few between raise() and execve).
 *
 * With -t the child makes rdtsc/rdtscp fault (prctl PR_SET_TSC, PR_TSC_SIGSEGV) as relive
 * does, and the tracer emulates them: the same floor plus what trapping rdtsc costs on
 * every context switch (the kernel toggles CR4.TSD, which a VM may have to trap).
 *
 * With -f it follows threads and children too (PTRACE_O_TRACECLONE/FORK/VFORK, waitpid(-1)):
 * every task stops at every syscall entry and exit, the floor for a multi-threaded program
 * (run it under `taskset -c CPU` for the one-CPU floor relive's serialised threads face).
 *
 * Every relive record/replay time is compared against this: a recorder that
 * stops at every syscall cannot be faster than this loop.
 * Build: gcc -O2 -o ptrace_floor ptrace_floor.c */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/types.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

/* At a SIGSEGV: if the child stopped at rdtsc (0f 31) or rdtscp (0f 01 f9), do it for it. */
static int emulate_tsc(pid_t child, struct user_regs_struct *regs)
{
    errno = 0;
    long code = ptrace(PTRACE_PEEKTEXT, child, (void *)regs->rip, NULL);
    if (errno)
        return 0;
    unsigned len = (code & 0xffff) == 0x310f ? 2 : (code & 0xffffff) == 0xf9010f ? 3 : 0;
    if (!len)
        return 0;
    unsigned lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    regs->rax = lo;
    regs->rdx = hi;
    if (len == 3)
        regs->rcx = 0;
    regs->rip += len;
    return ptrace(PTRACE_SETREGS, child, NULL, regs) == 0;
}

/* -f: every task of the program, each resumed at each of its stops; returns like main. */
static int follow_all(pid_t root, int count)
{
    struct user_regs_struct regs;
    unsigned long stops = 0, tasks = 1;
    int status, root_status = 0;
    pid_t tid = root;
    int inject = 0;
    for (;;) {
        if (tid > 0 && ptrace(PTRACE_SYSCALL, tid, NULL, (void *)(long)inject) != 0
            && errno != ESRCH) {
            perror("PTRACE_SYSCALL");
            return 126;
        }
        inject = 0;
        tid = waitpid(-1, &status, __WALL);
        if (tid < 0) {
            if (errno == EINTR)
                continue;
            if (errno == ECHILD)
                break;
            perror("waitpid");
            return 126;
        }
        if (WIFEXITED(status) || WIFSIGNALED(status)) {
            if (tid == root)
                root_status = status;
            tid = 0;                            /* nothing to resume */
            continue;
        }
        if (!WIFSTOPPED(status))
            continue;
        stops++;
        ptrace(PTRACE_GETREGS, tid, NULL, &regs);
        int sig = WSTOPSIG(status);
        if (sig == (SIGTRAP | 0x80) || status >> 16) {
            if (status >> 16 == PTRACE_EVENT_CLONE || status >> 16 == PTRACE_EVENT_FORK
                || status >> 16 == PTRACE_EVENT_VFORK)
                tasks++;
        } else if (sig != SIGSTOP || tasks < 2) {
            inject = sig;                       /* a new task's first SIGSTOP: suppressed */
        }
    }
    if (count)
        fprintf(stderr, "ptrace_floor: tasks=%lu stops=%lu\n", tasks, stops);
    if (WIFEXITED(root_status))
        return WEXITSTATUS(root_status);
    return 128 + WTERMSIG(root_status);
}

int main(int argc, char **argv)
{
    int count = 0, tsc = 0, follow = 0;
    int argi = 1;
    if (argi < argc && strcmp(argv[argi], "-c") == 0) {
        count = 1;
        argi++;
    }
    if (argi < argc && strcmp(argv[argi], "-t") == 0) {
        tsc = 1;
        argi++;
    }
    if (argi < argc && strcmp(argv[argi], "-f") == 0) {
        follow = 1;
        argi++;
    }
    if (argi >= argc) {
        fprintf(stderr, "usage: %s [-c] [-t] [-f] PROGRAM [ARGS...]\n", argv[0]);
        return 126;
    }

    pid_t child = fork();
    if (child < 0) {
        perror("fork");
        return 126;
    }
    if (child == 0) {
        if (ptrace(PTRACE_TRACEME, 0, NULL, NULL) != 0) {
            perror("PTRACE_TRACEME");
            _exit(126);
        }
        raise(SIGSTOP);
        if (tsc && prctl(PR_SET_TSC, PR_TSC_SIGSEGV, 0, 0, 0) != 0) {
            perror("PR_SET_TSC");
            _exit(126);
        }
        execvp(argv[argi], &argv[argi]);
        fprintf(stderr, "ptrace_floor: exec %s: %s\n", argv[argi], strerror(errno));
        _exit(127);
    }

    int status;
    if (waitpid(child, &status, 0) != child || !WIFSTOPPED(status)) {
        fprintf(stderr, "ptrace_floor: child did not stop\n");
        return 126;
    }
    if (ptrace(PTRACE_SETOPTIONS, child, NULL,
               (void *)(long)(PTRACE_O_TRACESYSGOOD | PTRACE_O_EXITKILL |
                              PTRACE_O_TRACEEXEC |
                              (follow ? PTRACE_O_TRACECLONE | PTRACE_O_TRACEFORK |
                                        PTRACE_O_TRACEVFORK : 0))) != 0) {
        perror("PTRACE_SETOPTIONS");
        return 126;
    }

    struct user_regs_struct regs;
    unsigned long syscalls = 0, stops = 0;
    int in_syscall = 0;
    int inject = 0;                     /* the initial SIGSTOP is suppressed */
    if (follow)
        return follow_all(child, count);
    for (;;) {
        if (ptrace(PTRACE_SYSCALL, child, NULL, (void *)(long)inject) != 0) {
            perror("PTRACE_SYSCALL");
            return 126;
        }
        inject = 0;
        if (waitpid(child, &status, __WALL) < 0) {
            if (errno == EINTR)
                continue;
            perror("waitpid");
            return 126;
        }
        if (WIFEXITED(status) || WIFSIGNALED(status))
            break;
        if (!WIFSTOPPED(status))
            continue;
        stops++;
        ptrace(PTRACE_GETREGS, child, NULL, &regs);
        int sig = WSTOPSIG(status);
        if (sig == (SIGTRAP | 0x80)) {          /* syscall entry or exit */
            in_syscall = !in_syscall;
            if (in_syscall)
                syscalls++;
        } else if (status >> 16) {              /* PTRACE_EVENT_* stop */
            /* execve: the syscall-exit stop still follows */
        } else if (tsc && sig == SIGSEGV && emulate_tsc(child, &regs)) {
            /* rdtsc/rdtscp emulated: the child goes on after it */
        } else {
            inject = sig;                       /* pass the signal on */
        }
    }

    if (count)
        fprintf(stderr, "ptrace_floor: syscalls=%lu stops=%lu\n", syscalls, stops);
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    return 128 + WTERMSIG(status);
}
