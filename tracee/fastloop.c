/* fastloop.c - relive's compiled inner loops: runs of syscalls, and the search for a point.
 *
 * Built when the package is installed (setup.py: tracee/_fastloop*.so), or else by
 * tracee/fastloop.py with gcc at first use, and loaded with ctypes. Each function
 * handles a run of ordinary stops of ONE task by itself and returns to Python at the first
 * thing it does not handle, with enough state for Python to carry on exactly as if it had
 * handled every stop itself:
 *
 *   relive_record_run   record: from a task stopped at a syscall exit that Python has
 *                       recorded, resume it, and while the next stop is the entry of a
 *                       syscall the spec table marks simple, run it to its exit, read its
 *                       outputs from /proc/PID/mem and append (entry registers, result,
 *                       exit rip, outputs) to a buffer. A call that writes to a file
 *                       (write, pwrite64, ...) is simple only if that file is not one of the
 *                       `watched` ones (relive's stdout and stderr, mapped files).
 *   relive_record_shared_run  the same loop (record_loop) for a task recorded beside
 *                       others: futex wakes too, other tasks' syscall stops kept.
 *   relive_replay_run   replay: for a batch of recorded syscalls of one task that need only
 *                       emulation, PTRACE_SYSEMU to the entry, compare the registers with
 *                       the recorded ones (as replayer/registers.diff does), write the
 *                       recorded memory, set rax.
 *   relive_replay_handoff  replay: the same across the threads of one process, switching
 *                       between them where a thread waited in a futex call when recorded.
 *   relive_find_point   replay: run a task (PTRACE_SYSEMU) from one hit of relive's own
 *                       instruction breakpoint (debug register 3) to the next, until a hit
 *                       where the registers are the recorded ones: the search for the
 *                       point where a signal or a preemption was recorded (a pc a loop
 *                       may reach millions of times a second).
 *
 * The loops make rdtsc fault in the calling thread while they run, as it faults in every
 * tracee (PR_SET_TSC): the kernel toggles CR4.TSD at each switch between a task that traps
 * rdtsc and one that does not, and on a VM that costs about a third of a ptrace round trip
 * (bench/ptrace_floor -t). Nothing in the loops reads the TSC: now_ns() makes a real
 * clock_gettime syscall (the vDSO's reads it). Where the tracees' cpuid faults, the loops
 * make it fault in the calling thread too, for the same reason (relive_trap_cpuid).
 *
 * Nothing here decides policy: which syscalls are simple, which events may be batched, is
 * decided in Python and passed in. No function ever retries a ptrace request after an
 * error or skips a stop: anything unexpected is handed back with the raw waitpid status.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Why a loop returned (out[1]). */
#define R_STOP 1     /* a stop it does not handle: out[2] = tid, out[3] = status */
#define R_EINTR 2    /* waitpid was interrupted by a signal: the task is running */
#define R_PARKED 3   /* time or buffer is up: the task is stopped after the last record */
#define R_ERROR 4    /* a ptrace request failed: out[5] = errno */
#define R_MATCH 5    /* relive_find_point: stopped at a hit with the registers wanted */
#define R_SYSBUF 6   /* the syscall buffer has records to write before this entry stop's
                        event (out[3] = status): Python writes them and calls again */
#define OUT_WORDS 7  /* the out[] array every loop fills */

#define SYSCALL_TRAP (SIGTRAP | 0x80)
/* 64-bit code's code segment. The `syscall` instruction leaves its return address in rcx, so
   at its entry stop rcx == rip; an i386 call (int $0x80, sysenter) leaves rcx as it was. */
#define USER64_CS 0x33
#define ARCH_SET_CPUID_ 0x1012
#define NREGS 27
#define REGS_SIZE (NREGS * 8)
#define MAX_OUTS 3
#define MAX_EXCEPT 8
#define SPEC_HEAD (4 + MAX_EXCEPT)
#define SPEC_PATH (3 + MAX_EXCEPT)  /* the word naming an argument that is a path opened */
#define SPEC_WORDS (SPEC_HEAD + 4 * MAX_OUTS)
/* Output size kinds in the spec table (recorder/fastpath.py builds it). */
#define SIZE_FIXED 1   /* n bytes */
#define SIZE_RESULT 2  /* max(result, 0) bytes */
#define SIZE_ARG 3     /* args[n] bytes */

static int64_t now_ns(void)
{
    struct timespec ts;
    syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Whether the tracees' cpuid faults (CPUID faulting, tracee/cpuid.py): set from Python. */
static int tracees_fault_cpuid;

void relive_trap_cpuid(int on)
{
    tracees_fault_cpuid = on;
}

/* Make rdtsc fault in this thread, as in the tracees, and cpuid if it faults in them (the
   kernel rewrites the CPUID faulting MSR at each switch between a task with it and one
   without: a VM exit, which doubled the cost of a syscall's stops); returns what to
   restore. Nothing in the loops executes cpuid. */
static int trap_like_tracees(void)
{
    int old = PR_TSC_ENABLE;
    if (prctl(PR_GET_TSC, &old, 0, 0, 0) == 0 && old != PR_TSC_SIGSEGV)
        prctl(PR_SET_TSC, PR_TSC_SIGSEGV, 0, 0, 0);
    if (tracees_fault_cpuid)
        syscall(SYS_arch_prctl, ARCH_SET_CPUID_, 0);
    return old;
}

static void restore_traps(int old)
{
    if (old != PR_TSC_SIGSEGV)
        prctl(PR_SET_TSC, old, 0, 0, 0);
    if (tracees_fault_cpuid)
        syscall(SYS_arch_prctl, ARCH_SET_CPUID_, 1);
}

static int is_syscall_stop(int status)
{
    return WIFSTOPPED(status) && WSTOPSIG(status) == SYSCALL_TRAP && (status >> 16) == 0;
}

/* Syscalls stop the tracer through the recorder's seccomp filter (tracee/seccomp.py): set
   from Python. The loop then resumes a task outside a syscall with PTRACE_CONT, and its
   entry stop is a PTRACE_EVENT_SECCOMP stop. */
static int record_seccomp;

void relive_record_seccomp(int on)
{
    record_seccomp = on;
}

static int is_entry_stop(int status)
{
    if (record_seccomp)
        return WIFSTOPPED(status) && WSTOPSIG(status) == SIGTRAP
               && (status >> 16) == PTRACE_EVENT_SECCOMP;
    return is_syscall_stop(status);
}

static int is_erestart(int64_t r)
{
    return r == -512 || r == -513 || r == -514 || r == -516;
}

/* One recorded syscall, as Python reads it (struct "<216sqQQ" + "QQQ" * MAX_OUTS). */
struct rec {
    unsigned char regs[REGS_SIZE]; /* at the entry stop */
    int64_t result;
    uint64_t exit_rip;
    uint64_t nwrites;
    struct { uint64_t addr, len, off; } w[MAX_OUTS];
};

static int64_t out_size(const int64_t *o, const uint64_t *args, int64_t result)
{
    switch (o[1]) {
    case SIZE_FIXED: return o[2];
    case SIZE_RESULT: return result > 0 ? result : 0;
    case SIZE_ARG: return (int64_t)args[o[2]] < 0 ? -1 : (int64_t)args[o[2]];
    }
    return -1;
}

/* Read the outputs of the syscall in `r` (entry regs) with result `result` into data.
   0: done; -1: Python must do it (unreadable, too big, unknown rule). */
static int read_outputs(int memfd, const int64_t *spec, const struct user_regs_struct *e,
                        struct rec *r, unsigned char *data, int64_t cap, int64_t *used)
{
    uint64_t args[6] = {e->rdi, e->rsi, e->rdx, e->r10, e->r8, e->r9};
    int failed = r->result > -4096 && r->result < 0;
    r->nwrites = 0;
    for (int k = 0; k < spec[0]; k++) {
        const int64_t *o = spec + SPEC_HEAD + 4 * k;
        if (failed && !o[3])
            continue;
        uint64_t addr = args[o[0]];
        if (!addr)
            continue;
        int64_t n = out_size(o, args, r->result);
        if (n < 0)
            return -1;
        if (n == 0)
            continue;
        if (n > cap - *used)
            return -1;
        ssize_t got = pread(memfd, data + *used, (size_t)n, (off_t)addr);
        if (got != n)
            return -1;
        r->w[r->nwrites].addr = addr;
        r->w[r->nwrites].len = (uint64_t)n;
        r->w[r->nwrites].off = (uint64_t)*used;
        r->nwrites++;
        *used += n;
    }
    return 0;
}

/* Clock reads answered at their seccomp stop (tracee/seccomp.py, "answered"): the loop reads
   the clock the kernel would have read (the tracer shares the tracee's clocks and time
   namespace), writes the output into the tracee, skips the call (orig_rax = -1: with
   PTRACE_CONT no exit stop follows) and records it as if it had run: one stop, not two.
   Python says which numbers (the catalogue's `clock` entries); only those this code knows
   are accepted. */
#define MAX_CLOCK_CALLS 4
static uint64_t clock_calls[MAX_CLOCK_CALLS];
static int nclock_calls;

static int knows_clock_call(uint64_t nr)
{
    return nr == SYS_clock_gettime || nr == SYS_gettimeofday || nr == SYS_time;
}

/* 0, or -1 if a number is not one this code can answer (then none is answered). */
long relive_record_clocks(const int64_t *nrs, long n)
{
    nclock_calls = 0;
    if (n < 0 || n > MAX_CLOCK_CALLS)
        return -1;
    for (long i = 0; i < n; i++)
        if (nrs[i] < 0 || !knows_clock_call((uint64_t)nrs[i]))
            return -1;
    for (long i = 0; i < n; i++)
        clock_calls[i] = (uint64_t)nrs[i];
    nclock_calls = (int)n;
    return 0;
}

/* The clocks the kernel reads for every process alike (not a process's or thread's CPU
   time, not a clock another namespace could shift differently). */
static int shared_clock(uint64_t id)
{
    return id == CLOCK_REALTIME || id == CLOCK_MONOTONIC || id == CLOCK_MONOTONIC_RAW
           || id == CLOCK_REALTIME_COARSE || id == CLOCK_MONOTONIC_COARSE
           || id == CLOCK_BOOTTIME;
}

/* By syscall: the vDSO's reads would execute rdtsc, which faults in this thread while the
   loop runs (trap_like_tracees). */
static int read_clock(clockid_t id, struct timespec *ts)
{
    return (int)syscall(SYS_clock_gettime, id, ts);
}

/* Answer the clock read at entry `e`: write its output (also to `copy`, recorded in `r` as
   its one write, offset left to the caller), skip the call with the result set.
   0: answered; -1: let the kernel run it (a clock or pointer it must judge). */
static int answer_clock(int tid, int memfd, const struct user_regs_struct *e, struct rec *r,
                        unsigned char *copy)
{
    int i;
    for (i = 0; i < nclock_calls && clock_calls[i] != e->orig_rax; i++)
        ;
    if (!record_seccomp || i == nclock_calls)
        return -1;
    struct timespec ts;
    uint64_t addr = 0, len = 0;
    int64_t result = 0;
    if (e->orig_rax == SYS_clock_gettime) {
        if (!shared_clock(e->rdi) || !e->rsi || read_clock((clockid_t)e->rdi, &ts))
            return -1;
        memcpy(copy, &ts, 16);
        addr = e->rsi, len = 16;
    } else if (e->orig_rax == SYS_gettimeofday) {
        if (e->rsi || read_clock(CLOCK_REALTIME, &ts))  /* a timezone: the kernel's */
            return -1;
        int64_t tv[2] = {ts.tv_sec, ts.tv_nsec / 1000};
        memcpy(copy, tv, 16);
        addr = e->rdi, len = addr ? 16 : 0;
    } else {  /* time(): the kernel's seconds are the coarse clock's */
        if (read_clock(CLOCK_REALTIME_COARSE, &ts))
            return -1;
        result = ts.tv_sec;
        memcpy(copy, &result, 8);
        addr = e->rdi, len = addr ? 8 : 0;
    }
    if (len && pwrite(memfd, copy, len, (off_t)addr) != (ssize_t)len)
        return -1;
    struct user_regs_struct x = *e;
    x.orig_rax = (uint64_t)-1;
    x.rax = (uint64_t)result;
    if (ptrace(PTRACE_SETREGS, tid, 0, &x) < 0)
        return -1;
    r->result = result;
    r->nwrites = len ? 1 : 0;
    r->w[0].addr = addr;
    r->w[0].len = len;
    return 0;
}

/* Is the file open as descriptor `fd` in task `tid` one of `watched` (n (dev, ino) pairs)?
   A descriptor that cannot be looked at is not: the call fails, and the Python path records
   nothing more for it either. */
static int writes_watched_file(int tid, uint64_t fd, const uint64_t *watched, long n)
{
    char path[64];
    struct stat st;
    snprintf(path, sizeof path, "/proc/%d/fd/%u", tid, (unsigned)fd);
    if (stat(path, &st) < 0)
        return 0;
    for (long i = 0; i < n; i++)
        if (watched[2 * i] == (uint64_t)st.st_dev && watched[2 * i + 1] == (uint64_t)st.st_ino)
            return 1;
    return 0;
}

static uint64_t arg_of(const struct user_regs_struct *e, int64_t i)
{
    uint64_t args[6] = {e->rdi, e->rsi, e->rdx, e->r10, e->r8, e->r9};
    return args[i];
}

/* Is this call one of the exceptions its spec lists (an argument, e.g. fcntl's command, whose
   low 32 bits have one of MAX_EXCEPT values)? */
static int is_exception(const int64_t *call, const struct user_regs_struct *e)
{
    if (call[2] < 0)
        return 0;
    int64_t v = (int64_t)(uint32_t)arg_of(e, call[2]);
    for (int k = 0; k < MAX_EXCEPT; k++)
        if (call[3 + k] == v)
            return 1;
    return 0;
}

/* Does the path at `addr` in the tracee start with "/proc/"? Such an open may be of a status
   file, whose CPU lines relive rewrites (recorder/cpu_view.py): Python must see it. */
static int opens_proc(int memfd, uint64_t addr)
{
    char p[6];
    return addr && pread(memfd, p, sizeof p, (off_t)addr) == (ssize_t)sizeof p
        && memcmp(p, "/proc/", sizeof p) == 0;
}

/* ==== The record loop: relive_record_run and relive_record_shared_run =======================
 *
 * Both run record_loop over ONE task, stopped at a syscall exit that Python has recorded:
 * resume it, and while the next stop is the entry of a simple syscall, run that call to its
 * exit (PTRACE_SYSCALL), read its outputs from /proc/PID/mem and append (entry registers,
 * result, exit rip, outputs) to a buffer; return at the first stop it does not handle, when
 * the buffers are full or the deadline has passed. Under the recorder's seccomp filter
 * (relive_record_seccomp) the task is resumed outside a syscall with PTRACE_CONT and its
 * entry stop is a PTRACE_EVENT_SECCOMP stop (is_entry_stop); without it, PTRACE_SYSCALL and
 * a syscall-entry stop. The exit stop is a syscall-exit stop in both models. Under the
 * filter, a clock read is answered at its entry stop (answer_clock, the numbers
 * relive_record_clocks set): one stop instead of two. A clock read never blocks, so this
 * holds beside other tasks too.
 *
 * spec: SPEC_WORDS int64 per syscall number below nspec: [0] the number of outputs, < 0 for
 * "not simple"; [1] the argument holding a file descriptor written to, checked against
 * `watched` (nwatched (dev, ino) pairs: relive's stdout and stderr, mapped files; a write to
 * one is not simple), or -1; [2] an argument whose values [3 .. 3 + MAX_EXCEPT) (-1: none)
 * make the call not simple, or -1; [SPEC_PATH] an argument holding a path that makes the
 * call not simple when it is under /proc/, or -1; then MAX_OUTS rules of 4 words (argument,
 * size kind, size value, written even on failure).
 *
 * out: [0] records, [1] reason, [2] tid, [3] status, [4] entry pending (its registers are in
 * `entry`), [5] errno, [6] data bytes used.
 *
 * relive_record_run is that loop for a task recorded alone: every stop of another task is
 * handed back at once. relive_record_shared_run is it for a task recorded beside others
 * (issue 18.2, cheap thread switches; recorder/handoff.py is its Python side), with these
 * differences (struct loop_opts), which keep a futex hand-off between two threads out of
 * Python except where the scheduler decides:
 *   - `allow`: calls that are simple only for some values of one argument, nallow rows of
 *     ALLOW_WORDS int64: the syscall number, the argument, a mask, then MAX_EXCEPT values
 *     (-1: none). Such a call (not simple by `spec`) is simple, with no outputs, when its
 *     argument masked is one of the values: futex's wake and requeue operations, which
 *     never wait and write nothing;
 *   - a syscall stop of another task (a thread whose futex wait the task's wake ended) is
 *     kept in `others` ((tid, status) pairs; out[7] of them, at most max_others) and the loop
 *     waits on for its own task (wait_own), instead of handing that stop back at once. Those
 *     tasks were resumed inside their syscall, so theirs are syscall-exit stops in both
 *     models. The first one kept starts the timeslice (ITIMER_REAL, arm_us microseconds,
 *     unless 0) as Python's run queue does when a thread becomes ready, so a task spinning
 *     on that thread is still interrupted (SIGALRM: the loop returns R_EINTR); out[8] = 1
 *     then. Any other stop of another task (a signal, an event, an exit) is handed back;
 *   - while it runs, the loop's own SIGALRM handler stands in front of the caller's
 *     (Python's, which it calls first): the timeslice's end makes the loop return R_EINTR
 *     whether it comes during a wait or just before one (the window in which a plain waitpid
 *     would block for good while the task spins). Its waits peek (waitid WNOWAIT) and then
 *     reap, so a signal that ends a wait never takes a stop with it.
 *   - the switch of a futex hand-off (issue 18.2, hand_off below): `waiters` (nwaiters
 *     tids, at most MAX_WAITERS) are threads of the same process left in a plain futex wait
 *     (FUTEX_WAIT or FUTEX_WAIT_BITSET; ENTER recorded) whose exit Python would record with
 *     nothing but its result. When the task enters such a wait itself while the first
 *     stop kept is the exit of one of them with a result that is no restart, the loop does
 *     what Python's scheduler would: it resumes the task into its wait (without Python's
 *     yield to see whether it comes back at once: the hook's probe said it sleeps, and an
 *     exit that comes anyway is a waiter's like any other, after its ENTER); with no
 *     stop kept, it resumes the task into its wait and waits for the next stop, which must
 *     be such a waiter's exit (Python's main loop: the task left in the kernel, the other
 *     made ready and picked; anything else is handed back with the entry pending); then
 *     appends a SWITCH_MARK record (regs: the task's entry, the ENTER event; result and
 *     exit_rip: the waiter's exit; w[0].addr, w[0].len: the two tids), makes the waiter the
 *     task it runs (it resumes from its exit stop as Python's would) and the task a waiter,
 *     and starts or stops the timeslice as the run queue's pick does (running while others
 *     stay kept, stopped otherwise; slice_us). Anything else (a SIGALRM seen, a restart, a
 *     stop that is not the waiter's exit) leaves the entry to Python as before.
 *   Its out[] is SHARED_OUT_WORDS: OUT_WORDS, then [7] others kept, [8] timer armed by the
 *   loop, [9] the timer running at the end, [10] switches made.
 */
#define ALLOW_WORDS (3 + MAX_EXCEPT)
#define SHARED_OUT_WORDS (OUT_WORDS + 4)
#define SWITCH_MARK 0x5c   /* struct rec's nwrites: a thread switch (see above) */
#define MAX_WAITERS 64

struct loop_opts {
    const int64_t *allow;  /* nallow rows of ALLOW_WORDS (none: 0 rows) */
    long nallow;
    int64_t *others;       /* other tasks' syscall stops kept (none: max_others 0) */
    long max_others;
    long slice_us;         /* the timeslice a stop kept starts while the timer is off */
    int alarmable;         /* on_alarm is installed: waits end at SIGALRM */
    int timer_on;          /* the timeslice timer runs (at the start: Python's) */
    int64_t *waiters;      /* threads in a plain futex wait the loop may switch to */
    long nwaiters;
    int64_t kept, armed;   /* results: stops kept in `others`, the timer started */
    int64_t switches;      /* thread switches made by the loop */
};

static const int64_t no_outputs[SPEC_WORDS] = {
    [0] = 0, [1] = -1, [2] = -1, [SPEC_PATH] = -1,
};

/* The row of `allow` that makes this call simple, or NULL. */
static const int64_t *allowed(const int64_t *allow, long nallow,
                              const struct user_regs_struct *e)
{
    for (long i = 0; i < nallow; i++) {
        const int64_t *row = allow + i * ALLOW_WORDS;
        if ((uint64_t)row[0] != e->orig_rax)
            continue;
        int64_t v = (int64_t)(arg_of(e, row[1]) & (uint64_t)row[2]);
        for (int k = 0; k < MAX_EXCEPT; k++)
            if (row[3 + k] >= 0 && row[3 + k] == v)
                return no_outputs;
    }
    return NULL;
}

static sigjmp_buf alarm_jmp;
static volatile sig_atomic_t alarm_seen, alarm_jump_ok;
static volatile pid_t alarm_thread;      /* the thread running the loop */
static struct sigaction outer_alarm;     /* the caller's handler, called first */

static void on_alarm(int sig, siginfo_t *si, void *uc)
{
    int saved = errno;
    if (outer_alarm.sa_flags & SA_SIGINFO)
        outer_alarm.sa_sigaction(sig, si, uc);
    else if (outer_alarm.sa_handler != SIG_DFL && outer_alarm.sa_handler != SIG_IGN)
        outer_alarm.sa_handler(sig);
    errno = saved;
    alarm_seen = 1;
    if (alarm_jump_ok && (pid_t)syscall(SYS_gettid) == alarm_thread) {
        alarm_jump_ok = 0;
        siglongjmp(alarm_jmp, 1);
    }
}

/* Put on_alarm in front of the caller's SIGALRM handler: 0, or -1 if there is none to keep
   (then the waits are plain waitpid, as in relive_record_run). */
static int take_alarm(void)
{
    struct sigaction sa;
    if (sigaction(SIGALRM, NULL, &outer_alarm) < 0
        || (!(outer_alarm.sa_flags & SA_SIGINFO)
            && (outer_alarm.sa_handler == SIG_DFL || outer_alarm.sa_handler == SIG_IGN)))
        return -1;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_alarm;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    alarm_seen = 0;
    alarm_jump_ok = 0;
    alarm_thread = (pid_t)syscall(SYS_gettid);
    return sigaction(SIGALRM, &sa, NULL);
}

static void give_alarm_back(void)
{
    sigaction(SIGALRM, &outer_alarm, NULL);
}

/* The next stop of any task (waitpid's answer), or -1 with errno EINTR once SIGALRM came
   (`alarmable`: on_alarm is installed), during the wait or before it. */
static int wait_stop(int *status, int alarmable)
{
    siginfo_t si;
    if (!alarmable)
        return waitpid(-1, status, __WALL);
    for (;;) {
        if (sigsetjmp(alarm_jmp, 0)) {  /* on_alarm jumped out of the peek */
            sigset_t set;
            sigemptyset(&set);
            sigaddset(&set, SIGALRM);
            sigprocmask(SIG_UNBLOCK, &set, NULL);
            errno = EINTR;
            return -1;
        }
        alarm_jump_ok = 1;
        if (alarm_seen) {
            alarm_jump_ok = 0;
            errno = EINTR;
            return -1;
        }
        memset(&si, 0, sizeof si);
        int r = waitid(P_ALL, 0, &si, WEXITED | WSTOPPED | WNOWAIT | __WALL);
        alarm_jump_ok = 0;
        if (r < 0)
            return -1;
        int w = waitpid(si.si_pid, status, __WALL | WNOHANG);
        if (w != 0)
            return w;
    }
}

/* Start (on) or stop the timeslice timer, as the run queue's arm and disarm do. */
static void set_slice(struct loop_opts *o, int on)
{
    struct itimerval it = {{0, 0}, {0, 0}};
    if (on) {
        it.it_value.tv_sec = o->slice_us / 1000000;
        it.it_value.tv_usec = o->slice_us % 1000000;
        o->armed = 1;
    }
    setitimer(ITIMER_REAL, &it, NULL);
    o->timer_on = on;
}

/* Must a wait end at SIGALRM? Not while the timeslice timer is off (nothing else sends
   it): a plain waitpid then, one syscall instead of a peek and a reap. */
static int alarm_may_come(const struct loop_opts *o)
{
    return o->alarmable && (o->timer_on || alarm_seen);
}

/* `tid`'s next stop, keeping other tasks' syscall stops in o->others while there is room
   (none: every stop is handed back): returns what waitpid returned (tid, another task whose
   stop is handed back, or -1). */
static int wait_own(int tid, int *status, struct loop_opts *o)
{
    for (;;) {
        int w = wait_stop(status, alarm_may_come(o));
        if (w < 0 || w == tid || o->kept >= o->max_others || !is_syscall_stop(*status))
            return w;
        o->others[2 * o->kept] = w;
        o->others[2 * o->kept + 1] = *status;
        o->kept++;
        if (o->slice_us > 0 && !o->timer_on)
            set_slice(o, 1);
    }
}

/* The in-process syscall buffer (tracee/sysbuf.py): the address of its position word in
   the task being run and the position up to which the recorder has written its records.
   A stop of the task while the buffer is past that goes back to Python, which writes the
   new records before that stop's event. 0: no buffer. */
static uint64_t sysbuf_pos_addr, sysbuf_cursor, sysbuf_hdr, sysbuf_size;
static int sysbuf_resume = -1;
static long sysbuf_chunks;  /* buffer chunks the last loop took into its records */
static long sysbuf_fd_calls;  /* buffered calls among them that closed or made a descriptor */

/* Also: `resume`, the status of the entry stop the last loop returned R_SYSBUF at (the
   next loop starts there instead of resuming the task), or -1; the buffer's header and
   whole size (tracee/sysbuf.py HDR_SIZE, BUF_SIZE). */
void relive_sysbuf_cursor(uint64_t addr, uint64_t cursor, int resume, uint64_t hdr,
                          uint64_t size)
{
    sysbuf_pos_addr = addr;
    sysbuf_cursor = cursor;
    sysbuf_resume = resume;
    sysbuf_hdr = hdr;
    sysbuf_size = size;
}

/* The syscall buffer's descriptor bitmap (recorder/sysbuf_fds.py says what it holds): its
   address in the task being run (0: none) and whether that task's calls may set bits (else
   they only clear those of the numbers they change: a vfork child). */
static uint64_t fds_addr;
static int fds_may_set;
#define FDS_MAX 0x8000  /* tracee/sysbuf.py FDS_MAX */

void relive_sysbuf_fds(uint64_t addr, int may_set)
{
    fds_addr = addr;
    fds_may_set = may_set;
}

/* statfs f_type of file systems whose files are not plain data (recorder/sysbuf_fds.py
   PSEUDO_FS: the same list). */
static const long pseudo_fs[] = {0x9fa0, 0x62656572, 0x64626720, 0x74726163, 0x73636673,
                                 0x27e0eb, 0x63677270, 0x62656570, 0xde5e81e4, 0x6165676c,
                                 0xcafe4a11, 0x65735543, 0x65735546, 0x42494e4d, 0xf97cff8c};

/* recorder/sysbuf_fds.py FdBits.plain_file: a regular file, on no pseudo file system, none
   of the `watched` ones. */
static int plain_file(int tid, int64_t fd, const uint64_t *watched, long nwatched)
{
    char path[64];
    struct stat st;
    struct statfs sf;
    snprintf(path, sizeof path, "/proc/%d/fd/%lld", tid, (long long)fd);
    if (stat(path, &st) || !S_ISREG(st.st_mode) || statfs(path, &sf))
        return 0;
    for (size_t k = 0; k < sizeof pseudo_fs / sizeof pseudo_fs[0]; k++)
        if ((long)sf.f_type == pseudo_fs[k])
            return 0;
    for (long k = 0; k < nwatched; k++)
        if (watched[2 * k] == (uint64_t)st.st_dev && watched[2 * k + 1] == (uint64_t)st.st_ino)
            return 0;
    return 1;
}

static int fd_bit(int memfd, uint64_t fd)
{
    uint64_t word;
    return fd < FDS_MAX
        && pread(memfd, &word, 8, (off_t)(fds_addr + fd / 64 * 8)) == 8
        && (word >> (fd % 64) & 1);
}

/* After a simple call the loop recorded: the bitmap as recorder/sysbuf_fds.py FdBits.
   after_call leaves it (close_range is never simple here: fds_entry_to_python), the change
   written to the task and added to the record's writes. 0, or -1: no room in the record
   (Python handles this exit stop, and the change). */
static int fds_after(int tid, int memfd, const struct user_regs_struct *regs, int64_t result,
                     const uint64_t *watched, long nwatched, struct rec *r,
                     unsigned char *data, int64_t cap, int64_t *used)
{
    uint64_t nr = regs->orig_rax, fd0 = (uint32_t)regs->rdi, fd;
    int on;
    if (nr == SYS_open || nr == SYS_openat || nr == SYS_creat || nr == SYS_openat2) {
        if (result < 0)
            return 0;
        fd = (uint64_t)result;
        on = fds_may_set && plain_file(tid, result, watched, nwatched);
    } else if (nr == SYS_dup || nr == SYS_dup2 || nr == SYS_dup3
               || (nr == SYS_fcntl && ((uint32_t)regs->rsi == 0 || (uint32_t)regs->rsi == 1030))) {
        if (result < 0 || (uint64_t)result == fd0)
            return 0;
        fd = (uint64_t)result;
        on = fds_may_set && fd_bit(memfd, fd0);
    } else if (nr == SYS_close) {
        fd = fd0;
        on = 0;
    } else {
        return 0;
    }
    if (fd >= FDS_MAX)
        return 0;
    uint64_t addr = fds_addr + fd / 64 * 8, word, bit = 1ULL << (fd % 64);
    if (pread(memfd, &word, 8, (off_t)addr) != 8)
        return 0;
    uint64_t next = on ? word | bit : word & ~bit;
    if (next == word)
        return 0;
    if (r->nwrites >= MAX_OUTS || cap - *used < 8)
        return -1;
    if (pwrite(memfd, &next, 8, (off_t)addr) != 8)
        return -1;
    memcpy(data + *used, &next, 8);
    r->w[r->nwrites].addr = addr;
    r->w[r->nwrites].len = 8;
    r->w[r->nwrites].off = (uint64_t)*used;
    r->nwrites++;
    *used += 8;
    return 0;
}

/* The chunks the last loop took and the cursor it left (Python's to keep). */
long relive_sysbuf_state(uint64_t *cursor)
{
    *cursor = sysbuf_cursor;
    return sysbuf_chunks;
}

/* How many of the last loop's buffered calls closed or made a descriptor (close, openat,
   fcntl F_DUPFD[_CLOEXEC]): what recorder.blocking caches of the process may be stale. */
long relive_sysbuf_fd_calls(void)
{
    return sysbuf_fd_calls;
}

/* The buffer's position, if it moved past the cursor (else 0). */
static uint64_t sysbuf_moved(int memfd)
{
    uint64_t pos;
    if (sysbuf_pos_addr
        && pread(memfd, &pos, sizeof pos, (off_t)sysbuf_pos_addr) == (ssize_t)sizeof pos
        && pos != sysbuf_cursor)
        return pos;
    return 0;
}

#define SYSBUF_REC_HEAD 64
#define SYSBUF_DONE 0x80000000U
#define SYSBUF_PENDING ((int64_t)0x8000000000000000ULL)

/* Take the records between the cursor and `pos` into one record of the batch (nwrites =
   SYSBUF_CHUNK, w[0] = the buffer bytes: address, length, offset in data; w[1] = the
   position they end at and how many records), if every one of them is whole (result stored, output copied: a
   stop at a syscall entry is after any call the hook made, unless a signal handler's call
   interrupted it; Python takes those). 0, or -1: Python must. */
#define SYSBUF_CHUNK 0x5b
/* Records longer than this hold a result-sized output (read, getdents64: the hook reserves
   the whole count; every fixed-size output is a smaller struct): only the head and the
   result's bytes are copied, the record's size in the copy says so (recorder/sysbuf_record.py
   calls_from walks by it). find's getdents64 reserve 32 KiB each: copying the reservations
   cost ~1.1 GB of /proc/PID/mem reads a run. */
#define SYSBUF_BIG 4160
#define SYSBUF_WINDOW 8192  /* the records are read this much at a time */

static int sysbuf_take(int memfd, uint64_t pos, struct rec *r, unsigned char *data,
                       int64_t cap, int64_t *used)
{
    uint64_t start = (pos >> 32) == (sysbuf_cursor >> 32) ? (sysbuf_cursor & 0xffffffffU)
                                                          : sysbuf_hdr;
    uint64_t end = pos & 0xffffffffU;
    if (start < sysbuf_hdr)
        start = sysbuf_hdr;
    if (start > end || end > sysbuf_size)
        return -1;
    unsigned char *buf = data + *used;
    uint64_t room = (uint64_t)(cap - *used), dst = 0, src = start, count = 0;
    long fd_calls = 0;
    while (src < end) {
        uint64_t win = end - src < SYSBUF_WINDOW ? end - src : SYSBUF_WINDOW, w = 0;
        if (win > room - dst || win < SYSBUF_REC_HEAD
            || pread(memfd, buf + dst, win, (off_t)(sysbuf_pos_addr + src)) != (ssize_t)win)
            return -1;
        while (win - w >= SYSBUF_REC_HEAD) {
            unsigned char *at = buf + dst + w;
            uint32_t size, nr;
            int64_t result;
            memcpy(&size, at, 4);
            memcpy(&nr, at + 4, 4);
            memcpy(&result, at + 56, 8);
            if (size < SYSBUF_REC_HEAD || size % 8 || size > end - src - w
                || !(nr & SYSBUF_DONE) || result == SYSBUF_PENDING)
                return -1;
            nr &= ~SYSBUF_DONE;
            uint64_t keep = size;
            if (size > SYSBUF_BIG) {
                uint64_t n = result > 0 && (uint64_t)result <= size - SYSBUF_REC_HEAD
                             ? (uint64_t)result : 0;
                keep = SYSBUF_REC_HEAD + ((n + 7) & ~7ULL);
            } else if (size > win - w) {
                break;  /* runs past the window: the next window starts with it */
            }
            if (nr == SYS_close || nr == SYS_openat || nr == SYS_fcntl) {
                uint32_t cmd;
                memcpy(&cmd, at + 16, 4);  /* args[1] */
                if (nr != SYS_fcntl || cmd == 0 || cmd == 1030)
                    fd_calls++;
            }
            count++;
            if (size <= SYSBUF_BIG) {
                w += size;
                continue;
            }
            /* a reservation: keep its head and output, go on after it */
            if (keep > win - w) {
                if (keep > room - dst - w
                    || pread(memfd, at, keep, (off_t)(sysbuf_pos_addr + src + w))
                       != (ssize_t)keep)
                    return -1;
            }
            uint32_t kept = (uint32_t)keep;
            memcpy(at, &kept, 4);
            dst += w + keep;
            src += w + size;
            w = 0;
            win = 0;
            break;
        }
        dst += w;
        src += w;
        if (w == 0 && win)  /* not one whole record in a window */
            return -1;
    }
    memset(r, 0, sizeof *r);
    r->nwrites = SYSBUF_CHUNK;
    r->w[0].addr = sysbuf_pos_addr + start;
    r->w[0].len = dst;
    r->w[0].off = (uint64_t)*used;
    r->w[1].addr = pos;
    r->w[1].len = count;
    *used += (int64_t)dst;
    sysbuf_cursor = pos;
    sysbuf_chunks++;
    sysbuf_fd_calls += fd_calls;
    return 0;
}

#define FUTEX_CMD_MASK_ 0x7f  /* (besides FUTEX_PRIVATE_FLAG and FUTEX_CLOCK_REALTIME) */
#define FUTEX_WAIT_ 0
#define FUTEX_WAIT_BITSET_ 9

static int is_waiter(const struct loop_opts *o, int64_t tid)
{
    for (long i = 0; i < o->nwaiters; i++)
        if (o->waiters[i] == tid)
            return 1;
    return 0;
}

static void drop_waiter(struct loop_opts *o, int64_t tid)
{
    for (long i = 0; i < o->nwaiters; i++)
        if (o->waiters[i] == tid) {
            o->waiters[i] = o->waiters[--o->nwaiters];
            return;
        }
}

/* Can the loop switch to `next`, whose stop `st` it has (its wait's exit, `info`)? */
static int switchable(const struct loop_opts *o, int next, int st,
                      struct __ptrace_syscall_info *info)
{
    return is_waiter(o, next) && is_syscall_stop(st)
           && ptrace(PTRACE_GET_SYSCALL_INFO, next, sizeof *info, info) >= 0
           && info->op == PTRACE_SYSCALL_INFO_EXIT && !is_erestart(info->exit.rval);
}

/* The task `*tid`, at the entry stop `regs` (registers also in `entry`), enters a futex
   wait: switch to the waiter whose exit stop was kept first, as described above, or, with
   none kept, let the task wait and switch to the waiter whose exit comes next (Python's
   main loop: the task left in the kernel, the other made ready and run).
   1: switched (a record appended at `r`, *tid is the waiter); 0: not (nothing done: the
   entry is Python's); the task was resumed into its wait (the entry is pending, for
   Python) and: -1: it came back (none kept), *status holds its stop; -2: a ptrace request failed
   (errno); -3: SIGALRM ended the wait for a stop; -4: another task's stop came that the
   loop does not switch to (*who, *status). */
static int hand_off(int *tid, const struct user_regs_struct *regs, struct rec *r,
                    struct loop_opts *o, int *status, int *who)
{
    uint64_t cmd = regs->rsi & FUTEX_CMD_MASK_;
    struct __ptrace_syscall_info info;
    int next;
    if (!o->waiters || regs->orig_rax != SYS_futex
        || (cmd != FUTEX_WAIT_ && cmd != FUTEX_WAIT_BITSET_) || alarm_seen)
        return 0;
    if (o->kept > 0) {
        next = (int)o->others[0];
        if (!switchable(o, next, (int)o->others[1], &info))
            return 0;
        /* Unlike Python's _enter_blocking, no yield to see whether the wait comes back at
           once: the probe said it sleeps (the buffer's futex_wait), and if it does not, its
           exit is a stop kept like any other waiter's. */
        if (ptrace(PTRACE_SYSCALL, *tid, 0, 0) < 0)
            return -2;
        o->kept--;
        memmove(o->others, o->others + 2, (size_t)o->kept * 2 * sizeof(int64_t));
    } else {
        if (ptrace(PTRACE_SYSCALL, *tid, 0, 0) < 0)
            return -2;
        int w = wait_stop(status, alarm_may_come(o));
        if (w < 0)
            return errno == EINTR ? -3 : -2;
        if (w == *tid)
            return -1;
        if (alarm_seen || !switchable(o, w, *status, &info)) {
            *who = w;
            return -4;
        }
        next = w;
    }
    memset(r, 0, sizeof *r);
    memcpy(r->regs, regs, REGS_SIZE);
    r->result = info.exit.rval;
    r->exit_rip = info.instruction_pointer;
    r->nwrites = SWITCH_MARK;
    r->w[0].addr = (uint64_t)*tid;
    r->w[0].len = (uint64_t)next;
    drop_waiter(o, next);
    if (o->nwaiters < MAX_WAITERS)
        o->waiters[o->nwaiters++] = *tid;
    if ((o->kept > 0) != o->timer_on)
        set_slice(o, o->kept > 0);
    o->switches++;
    *tid = next;
    return 1;
}

/* The loop both functions run (see above); fills out[0 .. OUT_WORDS). */
static long record_loop(int tid, int memfd, const int64_t *spec, long nspec,
                        const uint64_t *watched, long nwatched,
                        struct rec *recs, long max_recs, unsigned char *data, int64_t data_cap,
                        int64_t deadline_ns, unsigned char *entry, struct loop_opts *o,
                        int64_t *out)
{
    struct user_regs_struct regs, xregs;
    long n = 0;
    int64_t used = 0;
    int status = 0, reason = 0, w;
    int tsc = trap_like_tracees();
    int resume = sysbuf_resume;
    unsigned resumes = 0;
    sysbuf_resume = -1;
    sysbuf_chunks = 0;
    sysbuf_fd_calls = 0;
    memset(out, 0, OUT_WORDS * sizeof(int64_t));
    for (;;) {
        if (resume >= 0) {  /* at the entry stop the last loop left for the buffer */
            status = resume;
            w = tid;
            resume = -1;
        } else {
            /* (the clock is a syscall here: read at every 4th resume) */
            if (n >= max_recs || ((++resumes & 3) == 0 && now_ns() >= deadline_ns)) {
                reason = R_PARKED;
                break;
            }
            if (ptrace(record_seccomp ? PTRACE_CONT : PTRACE_SYSCALL, tid, 0, 0) < 0) {
                reason = R_ERROR;
                out[5] = errno;
                break;
            }
            /* the task runs user code */
            w = wait_own(tid, &status, o);
            if (w < 0) {
                reason = errno == EINTR ? R_EINTR : R_ERROR;
                out[5] = errno;
                break;
            }
        }
        uint64_t pos;
        if (w == tid && is_entry_stop(status) && (pos = sysbuf_moved(memfd)) != 0) {
            /* the buffer's records come before this stop's event */
            if (n >= max_recs || sysbuf_take(memfd, pos, &recs[n], data, data_cap, &used)) {
                reason = R_SYSBUF;  /* Python writes them */
                out[2] = w;
                break;
            }
            n++;
        }
        /* Python sees the same stop and handles or refuses it: another task's, not an
           entry, records in the syscall buffer to write first, registers it fails to read
           the same way, a call not entered by `syscall` in 64-bit code */
        if (w != tid || !is_entry_stop(status)
            || ptrace(PTRACE_GETREGS, tid, 0, &regs) < 0
            || regs.rcx != regs.rip || regs.cs != USER64_CS) {
            reason = R_STOP;
            out[2] = w;
            break;
        }
        uint64_t nr = regs.orig_rax;
        const int64_t *call = nr < (uint64_t)nspec ? spec + nr * SPEC_WORDS : NULL;
        if (!call || call[0] < 0 || is_exception(call, &regs)
            || (call[SPEC_PATH] >= 0 && opens_proc(memfd, arg_of(&regs, call[SPEC_PATH])))
            || (call[1] >= 0
                && writes_watched_file(tid, arg_of(&regs, call[1]), watched, nwatched)))
            call = allowed(o->allow, o->nallow, &regs);
        if (fds_addr && nr == SYS_close_range)
            call = NULL;  /* the bitmap's words it clears: Python (recorder/sysbuf_fds.py) */
        if (!call && n < max_recs) {
            memcpy(entry, &regs, REGS_SIZE);
            int who = tid;
            int h = hand_off(&tid, &regs, &recs[n], o, &status, &who);
            if (h == 1) {
                n++;
                continue;
            }
            if (h < 0) {
                out[4] = 1;  /* entered, in the kernel or back, not recorded */
                out[5] = errno;
                reason = h == -2 ? R_ERROR : h == -3 ? R_EINTR : R_STOP;
                out[2] = who;
                break;
            }
        }
        if (!call) {
            reason = R_STOP;  /* an entry Python handles */
            out[2] = w;
            break;
        }
        if (nclock_calls && data_cap - used >= 16
            && answer_clock(tid, memfd, &regs, &recs[n], data + used) == 0) {
            struct rec *r = &recs[n];
            if (r->nwrites) {
                r->w[0].off = (uint64_t)used;
                used += (int64_t)r->w[0].len;
            }
            memcpy(r->regs, &regs, REGS_SIZE);
            r->exit_rip = regs.rip;
            n++;
            continue;
        }
        /* a simple syscall: run it to its exit */
        memcpy(entry, &regs, REGS_SIZE);
        if (ptrace(PTRACE_SYSCALL, tid, 0, 0) < 0) {
            reason = R_ERROR;
            out[4] = 1;
            out[5] = errno;
            break;
        }
        w = wait_own(tid, &status, o);
        if (w < 0) {
            reason = errno == EINTR ? R_EINTR : R_ERROR;
            out[4] = 1;
            out[5] = errno;
            break;
        }
        out[4] = 1;  /* until recorded, the entry is pending */
        if (w != tid || !is_syscall_stop(status)
            || ptrace(PTRACE_GETREGS, tid, 0, &xregs) < 0) {
            reason = R_STOP;
            out[2] = w;
            break;
        }
        struct rec *r = &recs[n];
        r->result = (int64_t)xregs.rax;
        if (is_erestart(r->result)
            || read_outputs(memfd, call, &regs, r, data, data_cap, &used)
            || (fds_addr && fds_after(tid, memfd, &regs, r->result, watched, nwatched, r,
                                      data, data_cap, &used))) {
            reason = R_STOP;  /* Python handles this exit stop */
            out[2] = w;
            break;
        }
        memcpy(r->regs, &regs, REGS_SIZE);
        r->exit_rip = xregs.rip;
        out[4] = 0;
        n++;
    }
    restore_traps(tsc);
    out[0] = n;
    out[1] = reason;
    out[3] = status;
    out[6] = used;
    return n;
}

long relive_record_run(int tid, int memfd, const int64_t *spec, long nspec,
                       const uint64_t *watched, long nwatched,
                       struct rec *recs, long max_recs, unsigned char *data, int64_t data_cap,
                       int64_t deadline_ns, unsigned char *entry, int64_t *out)
{
    struct loop_opts o = {0};
    return record_loop(tid, memfd, spec, nspec, watched, nwatched, recs, max_recs, data,
                       data_cap, deadline_ns, entry, &o, out);
}

long relive_record_shared_run(int tid, int memfd, const int64_t *spec, long nspec,
                              const int64_t *allow, long nallow,
                              const uint64_t *watched, long nwatched,
                              struct rec *recs, long max_recs, unsigned char *data,
                              int64_t data_cap, int64_t deadline_ns, unsigned char *entry,
                              int64_t *others, long max_others, long arm_us,
                              int64_t *waiters, long nwaiters, long slice_us, int64_t *out)
{
    struct loop_opts o = {.allow = allow, .nallow = nallow, .others = others,
                          .max_others = max_others, .slice_us = arm_us > 0 ? arm_us : slice_us,
                          .timer_on = arm_us <= 0, .alarmable = take_alarm() == 0,
                          .waiters = nwaiters > 0 ? waiters : NULL,
                          .nwaiters = nwaiters < MAX_WAITERS ? nwaiters : MAX_WAITERS};
    if (!o.alarmable)
        o.waiters = NULL;  /* a switch needs the SIGALRM check (hand_off) */
    long n = record_loop(tid, memfd, spec, nspec, watched, nwatched, recs, max_recs, data,
                         data_cap, deadline_ns, entry, &o, out);
    if (o.alarmable)
        give_alarm_back();
    out[7] = o.kept;
    out[8] = o.armed;
    out[9] = o.timer_on;
    out[10] = o.switches;
    return n;
}

/* One event to replay (struct "<216sqqII"). */
struct ev {
    unsigned char regs[REGS_SIZE];
    int64_t nr;
    int64_t result;
    uint32_t nwrites;
    uint32_t first_write;
};

struct wr {
    uint64_t addr, len, off;
};

#define EFLAGS_IGNORED (0x100 | 0x10000)  /* trap and resume flags: the debugger's */
/* In struct ev's nwrites: a BUFFERED event (tracee/sysbuf.py), whose registers hold only
   the arguments and rip (the recorder saw no register file): only those are compared. */
#define EV_BUFFERED 0x80000000U

/* The registers match as replayer/registers.diff sees it (eflags and r11 without TF/RF). */
static int same_regs(const unsigned char *want, const struct user_regs_struct *got)
{
    const uint64_t *a = (const uint64_t *)want, *b = (const uint64_t *)got;
    for (int i = 0; i < NREGS; i++) {
        uint64_t x = a[i], y = b[i];
        if (i == (int)(offsetof(struct user_regs_struct, eflags) / 8)
            || i == (int)(offsetof(struct user_regs_struct, r11) / 8)) {
            x &= ~(uint64_t)EFLAGS_IGNORED;
            y &= ~(uint64_t)EFLAGS_IGNORED;
        }
        if (x != y)
            return 0;
    }
    return 1;
}

/* A BUFFERED event's registers: the arguments and rip where a register file has them. */
static int same_args(const unsigned char *want, const struct user_regs_struct *got)
{
    const struct user_regs_struct *w = (const struct user_regs_struct *)want;
    return w->rdi == got->rdi && w->rsi == got->rsi && w->rdx == got->rdx
        && w->r10 == got->r10 && w->r8 == got->r8 && w->r9 == got->r9 && w->rip == got->rip;
}

static int write_all(int memfd, const unsigned char *data, uint64_t len, uint64_t addr)
{
    uint64_t done = 0;
    while (done < len) {
        ssize_t k = pwrite(memfd, data + done, len - done, (off_t)(addr + done));
        if (k <= 0)
            return -1;
        done += (uint64_t)k;
    }
    return 0;
}

/* PTRACE_SYSEMU, then wait for the task's next stop (out[2] = its tid): 0, or -1 with
   *reason R_EINTR or R_ERROR and out[5] = errno. */
static int sysemu_and_wait(int tid, int *status, int *reason, int64_t *out)
{
    if (ptrace(PTRACE_SYSEMU, tid, 0, 0) < 0) {
        *reason = R_ERROR;
        out[5] = errno;
        return -1;
    }
    int w = waitpid(tid, status, __WALL);
    if (w < 0) {
        *reason = errno == EINTR ? R_EINTR : R_ERROR;
        out[5] = errno;
        return -1;
    }
    out[2] = w;
    return 0;
}

/* Replay's feed of buffered calls (tracee/sysbuf_hook.c relive_hook_fed,
   replayer/sysbuf_feed.py): a run of BUFFERED events is written into the replayed process's
   feed and the task runs through all of them without a stop; the stop it reaches next tells,
   by the feed's `next`, how many it took. */
#define FEED_HEAD 64
#define FEED_REC_HEAD 88
#define FEED_SIZE 0x100000
#define FEED_MAX (FEED_SIZE / FEED_REC_HEAD)
static uint64_t feed_addr;                 /* 0: no feed (Python sets it before each run) */
static int feed_last;                      /* the batch's last event may be fed too */
static uint64_t hook_lo, hook_hi;          /* the hook's code (relive_hook_fed runs there) */
static unsigned char feed_buf[FEED_SIZE];
static uint64_t feed_ends[FEED_MAX];       /* where each record of the feed ends */

/* `last`: the event after the batch is reached by running on (a syscall of the same task):
   else the batch's last event keeps its stop, where replay delivers a signal, switches
   to another task or runs to a recorded point. */
void relive_replay_feed(uint64_t addr, int last, uint64_t code_lo, uint64_t code_hi)
{
    feed_addr = addr;
    feed_last = last;
    hook_lo = code_lo;
    hook_hi = code_hi;
}

/* Write the feed: the BUFFERED events from evs[i] up to evs[limit] (not included; one
   write at most each), as many as fit; how many (0: none, the feed left as it was). */
static long feed_write(int memfd, const struct ev *evs, long i, long limit,
                       const struct wr *writes, const unsigned char *data)
{
    uint64_t at = FEED_HEAD;
    long n = 0;
    for (long k = i; k < limit && n < FEED_MAX; k++) {
        uint32_t nw = evs[k].nwrites & ~EV_BUFFERED;
        if (!(evs[k].nwrites & EV_BUFFERED) || nw > 1)
            break;
        const struct wr *w = nw ? writes + evs[k].first_write : NULL;
        uint64_t len = w ? w->len : 0;
        uint64_t size = (FEED_REC_HEAD + len + 7) & ~7UL;
        if (len > FEED_SIZE || at + size > FEED_SIZE)
            break;
        const struct user_regs_struct *r = (const struct user_regs_struct *)evs[k].regs;
        uint64_t head[11] = {(uint64_t)evs[k].nr, r->rdi, r->rsi, r->rdx, r->r10, r->r8, r->r9,
                             (uint64_t)evs[k].result, w ? w->addr : 0, len, size};
        memcpy(feed_buf + at, head, sizeof head);
        if (len)
            memcpy(feed_buf + at + FEED_REC_HEAD, data + w->off, len);
        at += size;
        feed_ends[n++] = at;
    }
    if (n == 0)
        return 0;
    uint64_t hdr[2] = {FEED_HEAD, at};
    memcpy(feed_buf, hdr, sizeof hdr);
    if (pwrite(memfd, feed_buf + 16, at - 16, (off_t)(feed_addr + 16)) != (ssize_t)(at - 16)
        || pwrite(memfd, feed_buf, 16, (off_t)feed_addr) != 16)
        return 0;
    return n;
}

/* After the task ran with a feed of n records: how many it took (-1: the feed is not as
   the hook leaves it); what it did not take is taken off (end = next). */
static long feed_taken(int memfd, long n)
{
    uint64_t next;
    if (pread(memfd, &next, sizeof next, (off_t)feed_addr) != (ssize_t)sizeof next)
        return -1;
    long c = 0;
    while (c < n && feed_ends[c] <= next)
        c++;
    if (next != (c ? feed_ends[c - 1] : FEED_HEAD))
        return -1;
    if (c < n && pwrite(memfd, &next, sizeof next, (off_t)(feed_addr + 8)) != sizeof next)
        return -1;
    return c;
}

/* PTRACE_SYSEMU and wait, through EINTR: a fed run must be counted before Python sees the
   stop. */
static int sysemu_and_wait_fed(int tid, int *status, int *reason, int64_t *out)
{
    if (ptrace(PTRACE_SYSEMU, tid, 0, 0) < 0) {
        *reason = R_ERROR;
        out[5] = errno;
        return -1;
    }
    int w;
    while ((w = waitpid(tid, status, __WALL)) < 0 && errno == EINTR)
        ;
    if (w < 0) {
        *reason = R_ERROR;
        out[5] = errno;
        return -1;
    }
    out[2] = w;
    out[6]++;
    return 0;
}

/* A signal that reached the task inside the hook's code during a fed run: relive's own
   SIGSTOP (a Ctrl-C kick, a CPU-timer tick) or the kernel's SIGCHLD (which replay drops),
   both sent from outside. The hook may be half-way through a record there (its output
   partly copied, `next` not yet moved past it), which no stop may show: the signal is
   held back (1: a SIGSTOP, sent again once the run has stopped elsewhere; 2: a SIGCHLD,
   dropped) and the task runs on. 0: any other stop, left as it is. */
static int held_in_hook(int tid, int status)
{
    if (!WIFSTOPPED(status) || (status >> 16) != 0
        || (WSTOPSIG(status) != SIGSTOP && WSTOPSIG(status) != SIGCHLD))
        return 0;
    errno = 0;
    long rip = ptrace(PTRACE_PEEKUSER, tid, offsetof(struct user_regs_struct, rip), 0);
    if (errno || (uint64_t)rip < hook_lo || (uint64_t)rip >= hook_hi)
        return 0;
    if (WSTOPSIG(status) == SIGSTOP)
        return 1;
    siginfo_t si;
    if (ptrace(PTRACE_GETSIGINFO, tid, 0, &si) < 0 || si.si_code <= 0)
        return 0;  /* sent by a process: not the kernel's, Python decides */
    return 2;
}

/* out: [0] events replayed, [1] reason, [2] tid, [3] status, [4] buffered calls taken from
   the feed, [5] errno, [6] stops waited for. The task starts
   stopped at the previous event's boundary with its registers set. Events are replayed in
   order; at the first one whose stop, registers or writes are not as recorded, the loop
   returns R_STOP with that stop untouched (registers and memory as the kernel left them), so
   Python replays that event itself from this stop. With a feed (relive_replay_feed), a run
   of BUFFERED events costs one stop: the next event's (or, if the hook did not take them
   all, the stop of the first it did not take, checked as that event's). */
long relive_replay_run(int tid, int memfd, const struct ev *evs, long nev,
                       const struct wr *writes, const unsigned char *data,
                       int64_t deadline_ns, int64_t *out)
{
    struct user_regs_struct regs;
    long i;
    int status = 0, reason = R_PARKED;
    int tsc = trap_like_tracees();
    memset(out, 0, OUT_WORDS * sizeof(int64_t));
    for (i = 0; i < nev; i++) {
        if (i > 0 && now_ns() >= deadline_ns)
            break;
        long fed = feed_addr && (evs[i].nwrites & EV_BUFFERED)
            ? feed_write(memfd, evs, i, feed_last ? nev : nev - 1, writes, data) : 0;
        if (fed > 0) {
            int failed = sysemu_and_wait_fed(tid, &status, &reason, out) < 0;
            int held, stopped = 0;
            while (!failed && (held = held_in_hook(tid, status)) != 0) {
                stopped |= held == 1;
                failed = sysemu_and_wait_fed(tid, &status, &reason, out) < 0;
            }
            if (stopped)  /* pending again: delivered at the next resume, from a boundary */
                syscall(SYS_tkill, tid, SIGSTOP);
            long c = feed_taken(memfd, fed);
            if (c < 0) {
                reason = R_ERROR;
                out[5] = EPROTO;
                break;
            }
            out[4] += c;
            i += c;
            if (failed)
                break;
            if (i >= nev) {
                reason = R_STOP;  /* the stop is the next batch's first event's */
                break;
            }
        } else if (sysemu_and_wait(tid, &status, &reason, out) < 0) {
            break;
        } else {
            out[6]++;
        }
        int buffered = (evs[i].nwrites & EV_BUFFERED) != 0;
        uint32_t nwrites = evs[i].nwrites & ~EV_BUFFERED;
        if (!is_syscall_stop(status) || ptrace(PTRACE_GETREGS, tid, 0, &regs) < 0
            || (int64_t)regs.orig_rax != evs[i].nr
            || !(buffered ? same_args(evs[i].regs, &regs) : same_regs(evs[i].regs, &regs))) {
            reason = R_STOP;
            break;
        }
        const struct wr *wp = writes + evs[i].first_write;
        int ok = 1;
        for (uint32_t k = 0; k < nwrites && ok; k++)
            ok = write_all(memfd, data + wp[k].off, wp[k].len, wp[k].addr) == 0;
        if (!ok) {
            reason = R_STOP;  /* Python writes again and reports what did not land */
            break;
        }
        if (ptrace(PTRACE_POKEUSER, tid, offsetof(struct user_regs_struct, rax),
                   (void *)evs[i].result) < 0) {
            reason = R_STOP;  /* Python replays the event again from this stop */
            break;
        }
    }
    restore_traps(tsc);
    out[0] = i;
    out[1] = reason;
    out[3] = status;
    return i;
}

/* ==== Replay across futex hand-offs: relive_replay_handoff ==================================
 *
 * A run of events of the threads of ONE process, switching between them only where a thread
 * waited in a traced futex call when recorded (replayer/handoff_replay.py picks the run):
 * each event names its thread (struct hev: an index into tids[]) and what replay does with
 * it, as replayer/session.py does event by event:
 *   HOP_RUN       the thread runs (PTRACE_SYSEMU) from its last boundary to the event's
 *                 syscall stop, checked as relive_replay_run checks it (number, registers
 *                 or a BUFFERED event's arguments and rip), the recorded memory written,
 *                 rax set; runs of BUFFERED events through the feed as there;
 *   HOP_ENTER     (an ENTER event) the thread runs to its futex entry, checked the same way,
 *                 and stays there: it left the CPU inside the call when recorded;
 *   HOP_COMPLETE  (the SYSCALL event completing an ENTER) the thread, stopped at that entry,
 *                 gets the recorded memory and result without running.
 * At the first event whose stop, registers or writes are not the recorded ones the loop
 * returns R_STOP with that stop untouched (out[2]: the thread), and Python replays that event
 * itself from it, which reports the divergence with its event, thread and registers; a
 * HOP_COMPLETE whose write does not land returns R_PARKED before it (Python completes it).
 */
#define HOP_RUN 0
#define HOP_ENTER 1
#define HOP_COMPLETE 2
#define HANDOFF_MAX_TASKS 64

struct hev {
    int32_t task;   /* index into tids[] */
    uint32_t op;    /* HOP_* */
};

/* Write event e's recorded memory and set its result; 0, or -1 if one did not land. */
static int put_result(int tid, int memfd, const struct ev *e, const struct wr *writes,
                      const unsigned char *data)
{
    const struct wr *wp = writes + e->first_write;
    uint32_t nwrites = e->nwrites & ~EV_BUFFERED;
    for (uint32_t k = 0; k < nwrites; k++)
        if (write_all(memfd, data + wp[k].off, wp[k].len, wp[k].addr) < 0)
            return -1;
    return ptrace(PTRACE_POKEUSER, tid, offsetof(struct user_regs_struct, rax),
                  (void *)e->result) < 0 ? -1 : 0;
}

/* Where a fed run of thread `task` from evs[i] may end (not included): at its last BUFFERED
   event, or past it when the next event is a stop that thread reaches by running on (its
   own syscall or futex entry; at the end of the run, as relive_replay_feed says). */
static long handoff_feed_limit(const struct ev *evs, const struct hev *hevs, long i, long nev)
{
    long j = i;
    while (j < nev && hevs[j].task == hevs[i].task && hevs[j].op == HOP_RUN
           && (evs[j].nwrites & EV_BUFFERED))
        j++;
    if (j < nev)
        return hevs[j].task == hevs[i].task && hevs[j].op != HOP_COMPLETE ? j : j - 1;
    return feed_last ? j : j - 1;
}

/* out: as relive_replay_run's ([2]: the thread of the stop or error). */
long relive_replay_handoff(const int32_t *tids, long ntasks, int memfd, const struct ev *evs,
                           const struct hev *hevs, long nev, const struct wr *writes,
                           const unsigned char *data, int64_t deadline_ns, int64_t *out)
{
    struct user_regs_struct regs;
    long i;
    int status = 0, reason = R_PARKED;
    int tsc = trap_like_tracees();
    memset(out, 0, OUT_WORDS * sizeof(int64_t));
    for (i = 0; i < nev; i++) {
        if (i > 0 && now_ns() >= deadline_ns)
            break;
        if (hevs[i].task < 0 || hevs[i].task >= ntasks || ntasks > HANDOFF_MAX_TASKS
            || hevs[i].op > HOP_COMPLETE) {
            reason = R_ERROR;
            out[5] = EINVAL;
            break;
        }
        int tid = tids[hevs[i].task];
        out[2] = tid;
        if (hevs[i].op == HOP_COMPLETE) {
            if (put_result(tid, memfd, evs + i, writes, data) < 0)
                break;  /* R_PARKED: Python completes it and reports what did not land */
            continue;
        }
        long fed = feed_addr && (evs[i].nwrites & EV_BUFFERED)
            ? feed_write(memfd, evs, i, handoff_feed_limit(evs, hevs, i, nev), writes, data)
            : 0;
        if (fed > 0) {
            int failed = sysemu_and_wait_fed(tid, &status, &reason, out) < 0;
            int held, stopped = 0;
            while (!failed && (held = held_in_hook(tid, status)) != 0) {
                stopped |= held == 1;
                failed = sysemu_and_wait_fed(tid, &status, &reason, out) < 0;
            }
            if (stopped)
                syscall(SYS_tkill, tid, SIGSTOP);
            long c = feed_taken(memfd, fed);
            if (c < 0) {
                reason = R_ERROR;
                out[5] = EPROTO;
                break;
            }
            out[4] += c;
            i += c;
            if (failed)
                break;
            if (i >= nev) {
                reason = R_STOP;  /* the stop is the event's after the run (same thread) */
                break;
            }
        } else if (sysemu_and_wait(tid, &status, &reason, out) < 0) {
            break;
        } else {
            out[6]++;
        }
        int buffered = (evs[i].nwrites & EV_BUFFERED) != 0;
        if (!is_syscall_stop(status) || ptrace(PTRACE_GETREGS, tid, 0, &regs) < 0
            || (int64_t)regs.orig_rax != evs[i].nr
            || !(buffered ? same_args(evs[i].regs, &regs) : same_regs(evs[i].regs, &regs))) {
            reason = R_STOP;
            break;
        }
        if (hevs[i].op == HOP_ENTER)
            continue;  /* parked at its futex entry until its HOP_COMPLETE */
        if (put_result(tid, memfd, evs + i, writes, data) < 0) {
            reason = R_STOP;  /* Python replays the event again from this stop */
            break;
        }
    }
    restore_traps(tsc);
    out[0] = i;
    out[1] = reason;
    out[3] = status;
    return i;
}

#define OWN_SLOT 3                    /* replayer/signals.py MATCH_SLOT */
#define DR6_OWN (1UL << OWN_SLOT)
#define DR6_WATCH 0x7UL               /* the slots gdb's watchpoints use */

/* out: [0] hits, [1] reason, [2] tid, [3] status, [5] errno. The task is stopped, with
   debug register 3 set to break at `rip` (Python arms it). Each stop that is a hit of that
   breakpoint alone and not at the registers `want` is passed over (its DR6 cleared, so a
   later trap is not taken for it); the loop returns R_MATCH at a hit at `want`, R_STOP at
   any other stop (untouched, for Python's observers and checks), R_PARKED once `max_hits`
   hits are counted or the deadline has passed (the task stopped at its last hit). */
long relive_find_point(int tid, uint64_t rip, const unsigned char *want, long max_hits,
                       int64_t deadline_ns, int64_t *out)
{
    struct user_regs_struct regs;
    long hits = 0;
    int status = 0, reason = R_PARKED;
    int tsc = trap_like_tracees();
    const long dr6_offset = offsetof(struct user, u_debugreg) + 6 * sizeof(long);
    memset(out, 0, OUT_WORDS * sizeof(int64_t));
    while (hits < max_hits && (hits % 256 != 0 || hits == 0 || now_ns() < deadline_ns)) {
        if (sysemu_and_wait(tid, &status, &reason, out) < 0)
            break;
        if (!WIFSTOPPED(status) || WSTOPSIG(status) != SIGTRAP || status >> 16 != 0
            || ptrace(PTRACE_GETREGS, tid, 0, &regs) < 0 || regs.rip != rip) {
            reason = R_STOP;
            break;
        }
        errno = 0;
        long dr6 = ptrace(PTRACE_PEEKUSER, tid, dr6_offset, 0);
        if (errno != 0 || !(dr6 & DR6_OWN) || (dr6 & DR6_WATCH)) {
            reason = R_STOP;
            break;
        }
        hits++;
        if (same_regs(want, &regs)) {
            reason = R_MATCH;
            break;
        }
        if (ptrace(PTRACE_POKEUSER, tid, dr6_offset, 0) < 0) {
            reason = R_ERROR;
            out[5] = errno;
            break;
        }
    }
    restore_traps(tsc);
    out[0] = hits;
    out[1] = reason;
    out[3] = status;
    return hits;
}

/* The interface Python relies on, by name: constants, and the layout of the structs Python
   builds or reads with the struct module. tracee/fastloop.py checks its declarations
   against this table when it loads the library (and a test checks every module's), so a
   copy that drifts turns the compiled path off with a warning instead of misreading it. */
struct abi_entry { const char *name; int64_t value; };
static const struct abi_entry abi[] = {
    {"R_STOP", R_STOP}, {"R_EINTR", R_EINTR}, {"R_PARKED", R_PARKED},
    {"R_ERROR", R_ERROR}, {"R_MATCH", R_MATCH}, {"R_SYSBUF", R_SYSBUF}, {"OUT_WORDS", OUT_WORDS},
    {"SIZE_FIXED", SIZE_FIXED}, {"SIZE_RESULT", SIZE_RESULT}, {"SIZE_ARG", SIZE_ARG},
    {"MAX_OUTS", MAX_OUTS}, {"MAX_EXCEPT", MAX_EXCEPT}, {"SPEC_HEAD", SPEC_HEAD},
    {"SPEC_WORDS", SPEC_WORDS}, {"REGS_SIZE", REGS_SIZE},
    {"sizeof(struct user_regs_struct)", sizeof(struct user_regs_struct)},
    {"sizeof(struct rec)", sizeof(struct rec)},
    {"offsetof(struct rec, result)", offsetof(struct rec, result)},
    {"offsetof(struct rec, exit_rip)", offsetof(struct rec, exit_rip)},
    {"offsetof(struct rec, nwrites)", offsetof(struct rec, nwrites)},
    {"offsetof(struct rec, w)", offsetof(struct rec, w)},
    {"sizeof(struct ev)", sizeof(struct ev)},
    {"offsetof(struct ev, nr)", offsetof(struct ev, nr)},
    {"offsetof(struct ev, result)", offsetof(struct ev, result)},
    {"offsetof(struct ev, nwrites)", offsetof(struct ev, nwrites)},
    {"offsetof(struct ev, first_write)", offsetof(struct ev, first_write)},
    {"sizeof(struct wr)", sizeof(struct wr)},
    {"EFLAGS_IGNORED", EFLAGS_IGNORED}, {"OWN_SLOT", OWN_SLOT},
    {"EV_BUFFERED", EV_BUFFERED}, {"SYSBUF_CHUNK", SYSBUF_CHUNK},
    {"SYSBUF_REC_HEAD", SYSBUF_REC_HEAD}, {"SYSBUF_DONE", SYSBUF_DONE},
    {"FEED_HEAD", FEED_HEAD}, {"FEED_REC_HEAD", FEED_REC_HEAD}, {"FEED_SIZE", FEED_SIZE},
};

/* Fill names[i]/values[i] for up to n entries; return how many entries there are. */
long relive_interface(const char **names, int64_t *values, long n)
{
    long count = (long)(sizeof abi / sizeof abi[0]);
    for (long i = 0; i < count && i < n; i++) {
        names[i] = abi[i].name;
        values[i] = abi[i].value;
    }
    return count;
}

#ifndef FASTLOOP_SOURCE_CRC
#define FASTLOOP_SOURCE_CRC -1
#endif
/* The crc32 of the source this library was built from (as zlib computes it; -1 if the
   build did not say): an installed build is used only if it matches the source beside it. */
int64_t relive_source_crc(void)
{
    return FASTLOOP_SOURCE_CRC;
}

/* relive_record_shared_run's constants and record layout, as relive_interface lists the
   others (recorder/handoff.py checks them). */
long relive_shared_interface(const char **names, int64_t *values, long n)
{
    static const struct abi_entry shared_abi[] = {
        {"ALLOW_WORDS", ALLOW_WORDS}, {"SHARED_OUT_WORDS", SHARED_OUT_WORDS},
        {"MAX_EXCEPT", MAX_EXCEPT}, {"sizeof(struct rec)", sizeof(struct rec)},
        {"SWITCH_MARK", SWITCH_MARK}, {"MAX_WAITERS", MAX_WAITERS},
    };
    long count = (long)(sizeof shared_abi / sizeof shared_abi[0]);
    for (long i = 0; i < count && i < n; i++) {
        names[i] = shared_abi[i].name;
        values[i] = shared_abi[i].value;
    }
    return count;
}

/* relive_replay_handoff's constants and layout (replayer/handoff_replay.py checks them). */
long relive_handoff_interface(const char **names, int64_t *values, long n)
{
    static const struct abi_entry handoff_abi[] = {
        {"HOP_RUN", HOP_RUN}, {"HOP_ENTER", HOP_ENTER}, {"HOP_COMPLETE", HOP_COMPLETE},
        {"HANDOFF_MAX_TASKS", HANDOFF_MAX_TASKS}, {"sizeof(struct hev)", sizeof(struct hev)},
        {"sizeof(struct ev)", sizeof(struct ev)}, {"sizeof(struct wr)", sizeof(struct wr)},
        {"EV_BUFFERED", EV_BUFFERED}, {"OUT_WORDS", OUT_WORDS},
    };
    long count = (long)(sizeof handoff_abi / sizeof handoff_abi[0]);
    for (long i = 0; i < count && i < n; i++) {
        names[i] = handoff_abi[i].name;
        values[i] = handoff_abi[i].value;
    }
    return count;
}
