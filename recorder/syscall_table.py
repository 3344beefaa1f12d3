"""What every syscall writes into tracee memory: a declarative table.

The recorder reads this table at each syscall exit to know which tracee bytes the kernel wrote
(those are saved in the trace and written back at replay). A syscall is either:
  - in TABLE: its outputs are described by `Out` rules (possibly none);
  - irregular (IRREGULAR): the recorder has code for it (mmap family, clone, execve, ioctl by
    request, recvmsg, fcntl by command, ...), the table only names it; the helpers at the end
    of this module (`ioctl_outputs`, `fcntl_outputs`, `msghdr_output_ranges`, ...) give that
    code the data it needs;
  - FAKE_ENOSYS: never run; the recorder makes it fail with -ENOSYS because libc has a fallback
    (rseq would have the kernel write into memory behind our back; clone3 -> clone);
  - anything else: recording stops with an error naming the syscall.

Size rules are small values, evaluated by `output_ranges` with the syscall's arguments, its
result and a function to read tracee memory (for sizes the kernel stores, like socklen_t).
This module knows nothing of ptrace: it is pure data plus one evaluator.

Invariant: a range may cover more than the kernel wrote (those bytes are saved and written back
unchanged, which is harmless) but never less (a missed byte silently corrupts the replay). Where
the exact count is unknowable after the call (a socket address longer than the caller's buffer:
the kernel stores the full length), rules over-approximate, capped by the largest struct the
kernel can write; such a range may then end past the caller's buffer. Struct sizes below are
checked against gcc's sizeof() by tests/test_syscall_table.py.

Not covered here: writes the kernel makes outside a syscall's exit (CLONE_CHILD_CLEARTID /
set_tid_address at thread exit, signal frames, rseq), and restart_syscall, whose outputs are
those of the interrupted call it resumes.
"""
from __future__ import annotations

from collections.abc import Callable
from enum import IntEnum
from typing import NamedTuple

# The rules are NamedTuples rather than frozen dataclasses for start-up time: `relive record`
# imports this table before the program starts, and making a dataclass costs ~1 ms on the
# development VMs (docs/performance.md, "Start-up").

# ---- size rules ---------------------------------------------------------------------------


class Fixed(NamedTuple):
    """A constant number of bytes (a struct)."""
    nbytes: int


class Result(NamedTuple):
    """As many bytes as the syscall returned (read, getdents64, readlink, ...)."""


class ArgValue(NamedTuple):
    """The value of argument `arg` times `scale` (e.g. poll: nfds * 8)."""
    arg: int
    scale: int = 1


class ArgCeil(NamedTuple):
    """ceil(args[arg] / per) * scale: a bitmap or per-page vector sized by an argument
    (select: nfds bits in whole 8-byte longs; mincore: one byte per 4 KiB page)."""
    arg: int
    per: int
    scale: int = 1


class ResultTimes(NamedTuple):
    """result * scale (epoll_wait: number of events * 12)."""
    scale: int


class DerefAfter(NamedTuple):
    """The integer of `width` bytes the pointer argument `arg` points to, read after the call
    (accept/getsockname: *addrlen)."""
    arg: int
    width: int = 4


class Min(NamedTuple):
    a: Size
    b: Size


class WhenArg(NamedTuple):
    """`then` if argument `arg` masked by `mask` is one of `values`, else no bytes. For the
    few multiplexed calls whose outputs depend on an operation code (futex), and whose other
    pointer arguments may hold garbage for operations that ignore them."""
    arg: int
    values: frozenset[int]
    then: Size
    mask: int = 0xFFFF_FFFF


Size = Fixed | Result | ArgValue | ArgCeil | ResultTimes | DerefAfter | Min | WhenArg


class Out(NamedTuple):
    """The kernel writes `size` bytes at the address in argument `arg` (skipped if that
    argument is NULL). `always`: written even when the call fails (rare)."""
    arg: int
    size: Size
    always: bool = False


class IovecOut(NamedTuple):
    """The kernel fills the iovec array at argument `arg` (count in argument `count_arg`), in
    order, up to `limit` bytes in total (readv: the result)."""
    arg: int
    count_arg: int
    limit: Size = Result()


Output = Out | IovecOut


class Syscall(NamedTuple):
    outputs: tuple[Output, ...] = ()
    # May block for a long time (read on a pipe, poll, futex wait): the scheduler may run
    # other threads meanwhile and outputs go through scratch buffers (issue 5).
    may_block: bool = False
    # Shows or sets the program's CPU set, which relive keeps virtual (recorder.cpu_view):
    # the recorder rewrites or answers the call.
    cpu_view: bool = False
    # The argument holding a path the call opens (a /proc/.../status file shows the CPU
    # set: recorder.cpu_view), or -1.
    path_arg: int = -1
    # The argument holding a descriptor the call reads: when it is such a status file, what
    # is read is rewritten; or -1.
    reads_fd: int = -1
    # The argument holding a descriptor the call duplicates (the duplicate of a status
    # file is one too), or -1.
    dups_fd: int = -1


def S(*outputs: Output, may_block: bool = False, cpu_view: bool = False, path_arg: int = -1,
      reads_fd: int = -1, dups_fd: int = -1) -> Syscall:
    return Syscall(outputs=tuple(outputs), may_block=may_block, cpu_view=cpu_view,
                   path_arg=path_arg, reads_fd=reads_fd, dups_fd=dups_fd)


# ---- x86-64 sizes of what the kernel writes (tests compare them with gcc's sizeof) ---------

INT = Fixed(4)              # int, unsigned, pid_t, uid_t, socklen_t, kernel timer_t
LONG = Fixed(8)             # long, loff_t, size_t, time_t, a pointer
INT_PAIR = Fixed(8)         # int[2]: pipe, socketpair
TIMESPEC = Fixed(16)
TIMEVAL = Fixed(16)
TIMEZONE = Fixed(8)
ITIMERVAL = Fixed(32)
ITIMERSPEC = Fixed(32)
STAT = Fixed(144)           # the kernel's struct stat (stat, fstat, lstat, newfstatat)
STATX = Fixed(256)
STATFS = Fixed(120)
RUSAGE = Fixed(144)
SYSINFO = Fixed(112)
UTSNAME = Fixed(390)        # struct new_utsname: 6 fields of 65
RLIMIT = Fixed(16)
TMS = Fixed(32)
TIMEX = Fixed(208)
SIGINFO = Fixed(128)
KERNEL_SIGACTION = Fixed(32)  # handler, flags, restorer, 8-byte mask (not glibc's 152)
STACK_T = Fixed(24)
SCHED_PARAM = Fixed(4)
CAP_DATA = Fixed(24)        # two struct __user_cap_data_struct (versions 2 and 3)
FLOCK = Fixed(32)
F_OWNER_EX = Fixed(8)
SOCKADDR_MAX = Fixed(128)   # struct sockaddr_storage: the kernel never returns a longer address
TERMIOS = Fixed(36)         # the kernel's struct termios (no speed fields; glibc's is 60)
TERMIOS2 = Fixed(44)
TERMIO = Fixed(18)
WINSIZE = Fixed(8)
IFREQ = Fixed(40)
POLLFD_SIZE = 8
EPOLL_EVENT_SIZE = 12       # packed on x86-64
FD_SET_WORD = 8             # select copies fd_sets in whole longs of 64 bits
PAGE_SIZE = 4096

# The address written by accept/getsockname/recvfrom: at most the buffer the caller gave,
# which after the call is only known as *addrlen = the full address length; capped.
_SOCKADDR = Min(DerefAfter(2), SOCKADDR_MAX)


class FutexOp(IntEnum):
    """Futex operations that write the futex words (besides waking)."""
    FUTEX_WAKE_OP = 5           # atomically modifies *uaddr2
    FUTEX_LOCK_PI = 6           # PI ops store the owner tid / waiters bit in *uaddr
    FUTEX_UNLOCK_PI = 7
    FUTEX_TRYLOCK_PI = 8
    FUTEX_WAIT_REQUEUE_PI = 11  # may take the PI lock *uaddr2 on the waiter's behalf
    FUTEX_CMP_REQUEUE_PI = 12
    FUTEX_LOCK_PI2 = 13


FUTEX_CMD_MASK = ~(128 | 256) & 0xFFFF_FFFF  # drop FUTEX_PRIVATE_FLAG, FUTEX_CLOCK_REALTIME


def _futex_op(*ops: FutexOp) -> frozenset[int]:
    return frozenset(int(op) for op in ops)


# ---- the table ----------------------------------------------------------------------------

TABLE: dict[str, Syscall] = {
    # -- reading and writing file descriptors
    "read": S(Out(1, Result()), may_block=True, reads_fd=0),
    "pread64": S(Out(1, Result()), reads_fd=0),
    "readv": S(IovecOut(1, 2), may_block=True),
    "preadv": S(IovecOut(1, 2)),
    "preadv2": S(IovecOut(1, 2), may_block=True),   # offset -1 reads like readv
    "write": S(may_block=True),
    "pwrite64": S(),
    "writev": S(may_block=True),
    "pwritev": S(),
    "pwritev2": S(may_block=True),
    "lseek": S(),
    "sendfile": S(Out(2, LONG, always=True), may_block=True),  # *offset stored even on error
    "copy_file_range": S(Out(1, LONG), Out(3, LONG)),
    "splice": S(Out(1, LONG), Out(3, LONG), may_block=True),
    "tee": S(may_block=True),
    # vmsplice from a pipe's read end fills the iovecs; towards a pipe the range is the
    # caller's own unchanged data, harmless to save.
    "vmsplice": S(IovecOut(1, 2), may_block=True),
    "fadvise64": S(),
    "readahead": S(),
    "sync_file_range": S(),
    # -- opening and closing (opening a FIFO blocks until the other end opens)
    "open": S(may_block=True, path_arg=0),
    "openat": S(may_block=True, path_arg=1),
    "openat2": S(may_block=True, path_arg=1),
    "creat": S(may_block=True),
    "close": S(),
    "close_range": S(),
    "dup": S(dups_fd=0),
    "dup2": S(dups_fd=0),
    "dup3": S(dups_fd=0),
    "pipe": S(Out(0, INT_PAIR)),
    "pipe2": S(Out(0, INT_PAIR)),
    "memfd_create": S(),
    "flock": S(may_block=True),
    # -- file metadata
    "stat": S(Out(1, STAT)),
    "fstat": S(Out(1, STAT)),
    "lstat": S(Out(1, STAT)),
    "newfstatat": S(Out(2, STAT)),
    "statx": S(Out(4, STATX)),
    "statfs": S(Out(1, STATFS)),
    "fstatfs": S(Out(1, STATFS)),
    "access": S(),
    "faccessat": S(),
    "faccessat2": S(),
    "readlink": S(Out(1, Result())),
    "readlinkat": S(Out(2, Result())),
    "getdents": S(Out(1, Result())),
    "getdents64": S(Out(1, Result())),
    # With size 0 the *xattr calls return the size needed and write nothing.
    "getxattr": S(Out(2, Min(Result(), ArgValue(3)))),
    "lgetxattr": S(Out(2, Min(Result(), ArgValue(3)))),
    "fgetxattr": S(Out(2, Min(Result(), ArgValue(3)))),
    "listxattr": S(Out(1, Min(Result(), ArgValue(2)))),
    "llistxattr": S(Out(1, Min(Result(), ArgValue(2)))),
    "flistxattr": S(Out(1, Min(Result(), ArgValue(2)))),
    "setxattr": S(), "lsetxattr": S(), "fsetxattr": S(),
    "removexattr": S(), "lremovexattr": S(), "fremovexattr": S(),
    # -- the file tree and attributes (inputs only)
    "getcwd": S(Out(0, Result())),   # the result is the length including the NUL
    "chdir": S(), "fchdir": S(),
    "mkdir": S(), "mkdirat": S(), "rmdir": S(),
    "mknod": S(), "mknodat": S(),
    "unlink": S(), "unlinkat": S(),
    "rename": S(), "renameat": S(), "renameat2": S(),
    "link": S(), "linkat": S(), "symlink": S(), "symlinkat": S(),
    "chmod": S(), "fchmod": S(), "fchmodat": S(), "fchmodat2": S(),
    "chown": S(), "fchown": S(), "lchown": S(), "fchownat": S(),
    "umask": S(),
    "truncate": S(), "ftruncate": S(), "fallocate": S(),
    "fsync": S(), "fdatasync": S(), "sync": S(), "syncfs": S(),
    "utime": S(), "utimes": S(), "futimesat": S(), "utimensat": S(),
    # -- sockets
    "socket": S(),
    "socketpair": S(Out(3, INT_PAIR)),
    "bind": S(),
    "listen": S(),
    "connect": S(may_block=True),
    "accept": S(Out(1, _SOCKADDR), Out(2, INT), may_block=True),
    "accept4": S(Out(1, _SOCKADDR), Out(2, INT), may_block=True),
    "getsockname": S(Out(1, _SOCKADDR), Out(2, INT)),
    "getpeername": S(Out(1, _SOCKADDR), Out(2, INT)),
    # *optlen becomes the bytes written; SO_PEERSEC/SO_PEERGROUPS store it on ERANGE too.
    "getsockopt": S(Out(3, DerefAfter(4)), Out(4, INT, always=True)),
    "setsockopt": S(),
    "sendto": S(may_block=True),
    "sendmsg": S(may_block=True),
    # MSG_TRUNC makes recvfrom return the datagram's full length, beyond the buffer.
    "recvfrom": S(Out(1, Min(Result(), ArgValue(2))), Out(4, Min(DerefAfter(5), SOCKADDR_MAX)),
                  Out(5, INT), may_block=True),
    "shutdown": S(),
    # -- waiting for file descriptors. poll stores revents and the *poll/*select calls the
    # time left even when interrupted (EINTR / restart).
    "poll": S(Out(0, ArgValue(1, POLLFD_SIZE), always=True), may_block=True),
    "ppoll": S(Out(0, ArgValue(1, POLLFD_SIZE), always=True), Out(2, TIMESPEC, always=True),
               may_block=True),
    "select": S(*(Out(i, ArgCeil(0, 8 * FD_SET_WORD, FD_SET_WORD)) for i in (1, 2, 3)),
                Out(4, TIMEVAL, always=True), may_block=True),
    "pselect6": S(*(Out(i, ArgCeil(0, 8 * FD_SET_WORD, FD_SET_WORD)) for i in (1, 2, 3)),
                  Out(4, TIMESPEC, always=True), may_block=True),
    "epoll_create": S(),
    "epoll_create1": S(),
    "epoll_ctl": S(),
    "epoll_wait": S(Out(1, ResultTimes(EPOLL_EVENT_SIZE)), may_block=True),
    "epoll_pwait": S(Out(1, ResultTimes(EPOLL_EVENT_SIZE)), may_block=True),
    "epoll_pwait2": S(Out(1, ResultTimes(EPOLL_EVENT_SIZE)), may_block=True),
    # -- special file descriptors (their data comes through read)
    "eventfd": S(), "eventfd2": S(),
    "signalfd": S(), "signalfd4": S(),
    "timerfd_create": S(),
    "timerfd_settime": S(Out(3, ITIMERSPEC)),
    "timerfd_gettime": S(Out(1, ITIMERSPEC)),
    "inotify_init": S(), "inotify_init1": S(),
    "inotify_add_watch": S(), "inotify_rm_watch": S(),
    "pidfd_open": S(), "pidfd_getfd": S(), "pidfd_send_signal": S(),
    # -- time and sleeping: rem is stored only when the sleep is interrupted
    "nanosleep": S(Out(1, TIMESPEC, always=True), may_block=True),
    "clock_nanosleep": S(Out(3, TIMESPEC, always=True), may_block=True),
    "clock_gettime": S(Out(1, TIMESPEC)),
    "clock_getres": S(Out(1, TIMESPEC)),
    "clock_adjtime": S(Out(1, TIMEX)),
    "adjtimex": S(Out(0, TIMEX)),
    "gettimeofday": S(Out(0, TIMEVAL), Out(1, TIMEZONE)),
    "time": S(Out(0, LONG)),
    "times": S(Out(0, TMS)),
    "alarm": S(),
    "getitimer": S(Out(1, ITIMERVAL)),
    "setitimer": S(Out(2, ITIMERVAL)),
    "timer_create": S(Out(2, INT)),  # the kernel's timer_t is an int
    "timer_settime": S(Out(3, ITIMERSPEC)),
    "timer_gettime": S(Out(1, ITIMERSPEC)),
    "timer_getoverrun": S(),
    "timer_delete": S(),
    # -- process identity and limits
    "getpid": S(), "getppid": S(), "gettid": S(),
    "getuid": S(), "geteuid": S(), "getgid": S(), "getegid": S(),
    # getgroups(0, list) returns the count and writes nothing.
    "getgroups": S(Out(1, Min(ResultTimes(4), ArgValue(0, 4)))),
    "setgroups": S(),
    "setuid": S(), "setgid": S(), "setreuid": S(), "setregid": S(),
    "setresuid": S(), "setresgid": S(), "setfsuid": S(), "setfsgid": S(),
    "getresuid": S(Out(0, INT), Out(1, INT), Out(2, INT)),
    "getresgid": S(Out(0, INT), Out(1, INT), Out(2, INT)),
    "getpgrp": S(), "getpgid": S(), "setpgid": S(), "getsid": S(), "setsid": S(),
    "getpriority": S(), "setpriority": S(),
    "getrlimit": S(Out(1, RLIMIT)),
    "setrlimit": S(),
    "prlimit64": S(Out(3, RLIMIT)),
    "getrusage": S(Out(1, RUSAGE)),
    "sysinfo": S(Out(0, SYSINFO)),
    "uname": S(Out(0, UTSNAME)),
    "getrandom": S(Out(0, Result())),
    "personality": S(),
    # The version field is rewritten (and EINVAL returned) when the caller's is unknown.
    "capget": S(Out(0, INT, always=True), Out(1, CAP_DATA)),
    "capset": S(),
    "getcpu": S(Out(0, INT), Out(1, INT), cpu_view=True),
    "kcmp": S(),
    "ioprio_get": S(), "ioprio_set": S(),
    # -- scheduling
    "sched_yield": S(),
    "sched_getaffinity": S(Out(2, Min(ArgValue(1), Result())),  # result: bytes written
                           cpu_view=True),
    "sched_setaffinity": S(cpu_view=True),
    # NUMA policy (procps' ps/top ask): the mode, and the node mask in whole longs of
    # maxnode - 1 bits (over by at most one long when that is a multiple of 64)
    "get_mempolicy": S(Out(0, INT), Out(1, ArgCeil(2, 64, 8))),
    "set_mempolicy": S(),
    "mbind": S(),  # a range's policy (OpenBLAS, so numpy, at start-up); reads its node mask
    "sched_getparam": S(Out(1, SCHED_PARAM)),
    "sched_setparam": S(),
    "sched_getscheduler": S(), "sched_setscheduler": S(),
    "sched_get_priority_max": S(), "sched_get_priority_min": S(),
    "sched_rr_get_interval": S(Out(1, TIMESPEC)),
    # min(size, kernel's sched_attr) bytes; the caller's size bounds it whatever the kernel.
    "sched_getattr": S(Out(1, ArgValue(2))),
    "sched_setattr": S(),
    # -- signals
    "rt_sigaction": S(Out(2, KERNEL_SIGACTION)),
    "rt_sigprocmask": S(Out(2, ArgValue(3))),
    "rt_sigpending": S(Out(0, ArgValue(1))),
    "rt_sigtimedwait": S(Out(1, SIGINFO), may_block=True),
    "rt_sigsuspend": S(may_block=True),
    "rt_sigqueueinfo": S(), "rt_tgsigqueueinfo": S(),
    "sigaltstack": S(Out(1, STACK_T)),
    "kill": S(), "tkill": S(), "tgkill": S(),
    "pause": S(may_block=True),
    # -- waiting for children
    "wait4": S(Out(1, INT), Out(3, RUSAGE), may_block=True),
    "waitid": S(Out(2, SIGINFO), Out(4, RUSAGE), may_block=True),
    # -- threads and futexes. Most futex operations write nothing; the PI ones store the
    # owner tid in *uaddr (also when they fail after setting the waiters bit), WAKE_OP
    # modifies *uaddr2, and the REQUEUE_PI ones may take the lock at *uaddr2.
    "futex": S(
        Out(0, WhenArg(1, _futex_op(FutexOp.FUTEX_LOCK_PI, FutexOp.FUTEX_UNLOCK_PI,
                                    FutexOp.FUTEX_TRYLOCK_PI, FutexOp.FUTEX_LOCK_PI2),
                       INT, FUTEX_CMD_MASK), always=True),
        Out(4, WhenArg(1, _futex_op(FutexOp.FUTEX_WAKE_OP), INT, FUTEX_CMD_MASK)),
        Out(4, WhenArg(1, _futex_op(FutexOp.FUTEX_WAIT_REQUEUE_PI,
                                    FutexOp.FUTEX_CMP_REQUEUE_PI), INT, FUTEX_CMD_MASK),
            always=True),
        may_block=True),
    "futex_waitv": S(may_block=True),
    "set_robust_list": S(),
    "get_robust_list": S(Out(1, LONG), Out(2, LONG)),
    "set_tid_address": S(),
    "membarrier": S(),
    # -- memory (the mapping calls are irregular)
    "mincore": S(Out(2, ArgCeil(1, PAGE_SIZE))),
    "mlock": S(), "mlock2": S(), "munlock": S(), "mlockall": S(), "munlockall": S(),
    "msync": S(),
}

# Syscalls the recorder handles in code; the table only lists their names.
IRREGULAR: frozenset[str] = frozenset({
    "mmap", "munmap", "mremap", "mprotect", "brk", "madvise",
    "execve", "execveat", "exit", "exit_group",
    "clone", "fork", "vfork",
    "ioctl", "recvmsg", "recvmmsg", "sendmmsg", "fcntl",
    "rt_sigreturn", "arch_prctl", "prctl",
})

# Never run; answered -ENOSYS because glibc (or the program) falls back to something the
# recorder handles. pkey_alloc: memory protection keys would live in the kernel beyond the
# trace; node/V8 and glibc users treat a failed pkey_alloc as "no keys" and carry on.
FAKE_ENOSYS: frozenset[str] = frozenset({"rseq", "clone3", "io_uring_setup",
                                         "pkey_alloc", "pkey_free"})


def lookup(name: str) -> Syscall | None:
    """The table entry for a regular syscall; None if irregular, fake or unsupported."""
    return TABLE.get(name)


# ---- evaluation ---------------------------------------------------------------------------

ReadInt = Callable[[int, int], int]  # (address, width) -> unsigned integer in tracee memory


def _failed(result: int) -> bool:
    return -4096 < result < 0


def evaluate_size(size: Size, args: tuple[int, ...], result: int, read_int: ReadInt) -> int:
    match size:
        case Fixed(nbytes=n):
            return n
        case Result():
            return max(result, 0)
        case ArgValue(arg=i, scale=k):
            return args[i] * k
        case ArgCeil(arg=i, per=per, scale=k):
            return -(-args[i] // per) * k
        case ResultTimes(scale=k):
            return max(result, 0) * k
        case DerefAfter(arg=i, width=w):
            return read_int(args[i], w) if args[i] else 0
        case Min(a=a, b=b):
            return min(evaluate_size(a, args, result, read_int),
                       evaluate_size(b, args, result, read_int))
        case WhenArg(arg=i, values=values, then=then, mask=mask):
            if (args[i] & mask) in values:
                return evaluate_size(then, args, result, read_int)
            return 0
    raise TypeError(f"not a size rule: {size!r}")


def iovec_ranges(iov: int, count: int, limit: int,
                 read_int: ReadInt) -> list[tuple[int, int]]:
    """The buffers of an iovec array filled in order with `limit` bytes."""
    ranges: list[tuple[int, int]] = []
    for k in range(count):
        if limit <= 0:
            break
        base = read_int(iov + 16 * k, 8)
        length = read_int(iov + 16 * k + 8, 8)
        n = min(length, limit)
        if n and base:
            ranges.append((base, n))
        limit -= n
    return ranges


def output_ranges(call: Syscall, args: tuple[int, ...], result: int,
                  read_int: ReadInt) -> list[tuple[int, int]]:
    """(address, length) of every tracee range the kernel wrote for this call."""
    failed = _failed(result)
    ranges: list[tuple[int, int]] = []
    for out in call.outputs:
        if failed and not (isinstance(out, Out) and out.always):
            continue
        match out:
            case Out(arg=i, size=size):
                if args[i]:
                    n = evaluate_size(size, args, result, read_int)
                    if n > 0:
                        ranges.append((args[i], n))
            case IovecOut(arg=i, count_arg=c, limit=limit):
                left = evaluate_size(limit, args, result, read_int)
                ranges += iovec_ranges(args[i], args[c], left, read_int)
    return ranges


# ---- irregular calls: data for the recorder's code ----------------------------------------

class Fcntl(IntEnum):
    F_GETLK = 5
    F_SETLKW = 7
    F_GETOWN_EX = 16
    F_GETOWNER_UIDS = 17
    F_OFD_GETLK = 36
    F_OFD_SETLKW = 38
    F_GET_RW_HINT = 1035
    F_GET_FILE_RW_HINT = 1037


_FCNTL_OUTPUTS: dict[int, tuple[Output, ...]] = {
    Fcntl.F_GETLK: (Out(2, FLOCK),),
    Fcntl.F_OFD_GETLK: (Out(2, FLOCK),),
    Fcntl.F_GETOWN_EX: (Out(2, F_OWNER_EX),),
    Fcntl.F_GETOWNER_UIDS: (Out(2, INT_PAIR),),
    Fcntl.F_GET_RW_HINT: (Out(2, LONG),),
    Fcntl.F_GET_FILE_RW_HINT: (Out(2, LONG),),
}


# The fcntl commands that need more than their result recorded: those that write a struct
# through arg, and those that may wait for a lock.
FCNTL_NOT_PLAIN = frozenset(_FCNTL_OUTPUTS) | {Fcntl.F_SETLKW, Fcntl.F_OFD_SETLKW}


def fcntl_outputs(args: tuple[int, ...]) -> tuple[Output, ...]:
    """fcntl(fd, cmd, arg) writes only for the commands that return a struct through arg."""
    return _FCNTL_OUTPUTS.get(args[1] & 0xFFFF_FFFF, ())


def fcntl_may_block(args: tuple[int, ...]) -> bool:
    """F_SETLKW waits for a conflicting record lock to go away."""
    return (args[1] & 0xFFFF_FFFF) in (Fcntl.F_SETLKW, Fcntl.F_OFD_SETLKW)


class Ioctl(IntEnum):
    """ioctl requests glibc, python, perl and coreutils issue (terminals, pipes, files)."""
    TCGETS = 0x5401
    TCSETS = 0x5402
    TCSETSW = 0x5403
    TCSETSF = 0x5404
    TCGETA = 0x5405
    TCSETA = 0x5406
    TCSETAW = 0x5407
    TCSETAF = 0x5408
    TCSBRK = 0x5409
    TCXONC = 0x540A
    TCFLSH = 0x540B
    TIOCEXCL = 0x540C
    TIOCNXCL = 0x540D
    TIOCSCTTY = 0x540E
    TIOCGPGRP = 0x540F
    TIOCSPGRP = 0x5410
    TIOCOUTQ = 0x5411
    TIOCGWINSZ = 0x5413
    TIOCSWINSZ = 0x5414
    TIOCMGET = 0x5415
    FIONREAD = 0x541B
    FIONBIO = 0x5421
    TIOCNOTTY = 0x5422
    TIOCGETD = 0x5424
    TCSBRKP = 0x5425
    TIOCGSID = 0x5429
    TCGETS2 = 0x802C542A
    TCSETS2 = 0x402C542B
    TCSETSW2 = 0x402C542C
    TCSETSF2 = 0x402C542D
    TIOCGPTN = 0x80045430
    TIOCSPTLCK = 0x40045431
    TIOCGPTLCK = 0x80045439
    TIOCGEXCL = 0x80045440
    TIOCGPTPEER = 0x5441
    FIONCLEX = 0x5450
    FIOCLEX = 0x5451
    FIOASYNC = 0x5452
    FIOQSIZE = 0x5460
    FICLONE = 0x40049409         # cp --reflink=auto
    FICLONERANGE = 0x4020940D
    FS_IOC_GETFLAGS = 0x80086601  # declared long, but the kernel stores an int
    SIOCGIFNAME = 0x8910         # if_indextoname
    SIOCGIFCONF = 0x8912         # the interfaces (libuuid's uuid_generate_time, ifconfig)
    SIOCGIFFLAGS = 0x8913        # ... and what each is: ifconfig, libuuid
    SIOCGIFADDR = 0x8915
    SIOCGIFDSTADDR = 0x8917
    SIOCGIFBRDADDR = 0x8919
    SIOCGIFNETMASK = 0x891B
    SIOCGIFMETRIC = 0x891D
    SIOCGIFMTU = 0x8921
    SIOCGIFHWADDR = 0x8927
    SIOCGIFTXQLEN = 0x8942
    SIOCGIFMAP = 0x8970
    SIOCGIFINDEX = 0x8933        # if_nametoindex


def _arg2(size: Fixed) -> tuple[Output, ...]:
    return (Out(2, size),)


IOCTLS: dict[int, tuple[Output, ...]] = {
    # by default a request only reads its argument; SIOCGIFCONF has code (ifconf_ranges)
    **{int(req): () for req in Ioctl if req != Ioctl.SIOCGIFCONF},
    Ioctl.TCGETS: _arg2(TERMIOS),
    Ioctl.TCGETA: _arg2(TERMIO),
    Ioctl.TCGETS2: _arg2(TERMIOS2),
    Ioctl.TIOCGWINSZ: _arg2(WINSIZE),
    Ioctl.TIOCGPGRP: _arg2(INT),
    Ioctl.TIOCGSID: _arg2(INT),
    Ioctl.TIOCOUTQ: _arg2(INT),
    Ioctl.TIOCMGET: _arg2(INT),
    Ioctl.FIONREAD: _arg2(INT),
    Ioctl.TIOCGETD: _arg2(INT),
    Ioctl.TIOCGPTN: _arg2(INT),
    Ioctl.TIOCGPTLCK: _arg2(INT),
    Ioctl.TIOCGEXCL: _arg2(INT),
    Ioctl.FIOQSIZE: _arg2(LONG),
    Ioctl.FS_IOC_GETFLAGS: _arg2(INT),
    **{int(req): _arg2(IFREQ) for req in (
        Ioctl.SIOCGIFNAME, Ioctl.SIOCGIFINDEX, Ioctl.SIOCGIFFLAGS, Ioctl.SIOCGIFADDR,
        Ioctl.SIOCGIFDSTADDR, Ioctl.SIOCGIFBRDADDR, Ioctl.SIOCGIFNETMASK, Ioctl.SIOCGIFMETRIC,
        Ioctl.SIOCGIFMTU, Ioctl.SIOCGIFHWADDR, Ioctl.SIOCGIFTXQLEN, Ioctl.SIOCGIFMAP)},
}

# Requests that wait for the terminal's output to drain.
BLOCKING_IOCTLS: frozenset[int] = frozenset({
    Ioctl.TCSETSW, Ioctl.TCSETSF, Ioctl.TCSETAW, Ioctl.TCSETAF, Ioctl.TCSETSW2,
    Ioctl.TCSETSF2, Ioctl.TCSBRK, Ioctl.TCSBRKP,
})


def ioctl_outputs(request: int) -> tuple[Output, ...] | None:
    """Outputs of ioctl(fd, request, argp); None for a request this table does not know
    (the recorder then refuses it, naming the request)."""
    return IOCTLS.get(request & 0xFFFF_FFFF)  # the kernel's cmd is an unsigned int


# struct ifconf: int ifc_len, then (after 4 bytes of padding) the buffer's address.
IFCONF_LEN, IFCONF_BUF = 0, 8


def ifconf_ranges(ifconf: int, result: int, read_int: ReadInt) -> list[tuple[int, int]]:
    """ioctl(fd, SIOCGIFCONF, &ifconf): the kernel stores in ifc_len the bytes of struct
    ifreq it wrote at ifc_buf (or, with a NULL buffer, the bytes it would write). Read after
    the call."""
    if _failed(result) or not ifconf:
        return []
    ranges = [(ifconf + IFCONF_LEN, 4)]
    buf, used = read_int(ifconf + IFCONF_BUF, 8), read_int(ifconf + IFCONF_LEN, 4)
    if buf and 0 < used < 1 << 31:
        ranges.append((buf, used))
    return ranges


def ioctl_may_block(request: int) -> bool:
    return (request & 0xFFFF_FFFF) in BLOCKING_IOCTLS


# struct msghdr (56 bytes) and struct mmsghdr (msghdr + unsigned msg_len, 64 bytes).
MSG_NAME, MSG_NAMELEN, MSG_IOV, MSG_IOVLEN = 0, 8, 16, 24
MSG_CONTROL, MSG_CONTROLLEN, MSG_FLAGS = 32, 40, 48
MMSGHDR_SIZE, MMSG_LEN = 64, 56


def msghdr_output_ranges(msg_addr: int, result: int,
                         read_int: ReadInt) -> list[tuple[int, int]]:
    """What recvmsg wrote for the msghdr at `msg_addr`, `result` being the bytes received.

    Must run after the call: the kernel replaced msg_namelen with the address length and
    msg_controllen with the control bytes it wrote. On failure nothing is written.
    """
    if _failed(result):
        return []
    ranges = [(msg_addr + MSG_NAMELEN, 4), (msg_addr + MSG_CONTROLLEN, 8),
              (msg_addr + MSG_FLAGS, 4)]
    name = read_int(msg_addr + MSG_NAME, 8)
    namelen = min(read_int(msg_addr + MSG_NAMELEN, 4), SOCKADDR_MAX.nbytes)
    if name and namelen:
        ranges.append((name, namelen))
    ranges += iovec_ranges(read_int(msg_addr + MSG_IOV, 8), read_int(msg_addr + MSG_IOVLEN, 8),
                           result, read_int)
    control = read_int(msg_addr + MSG_CONTROL, 8)
    controllen = read_int(msg_addr + MSG_CONTROLLEN, 8)
    if control and controllen:
        ranges.append((control, controllen))
    return ranges


def recvmmsg_output_ranges(args: tuple[int, ...], result: int,
                           read_int: ReadInt) -> list[tuple[int, int]]:
    """recvmmsg(fd, msgvec, vlen, flags, timeout): `result` messages, each with its msg_len,
    and the time left in *timeout."""
    if _failed(result) or result == 0:
        return []
    ranges: list[tuple[int, int]] = []
    for k in range(result):
        entry = args[1] + MMSGHDR_SIZE * k
        received = read_int(entry + MMSG_LEN, 4)
        ranges += msghdr_output_ranges(entry, received, read_int)
        ranges.append((entry + MMSG_LEN, 4))
    if args[4]:
        ranges.append((args[4], TIMESPEC.nbytes))
    return ranges


def sendmmsg_output_ranges(args: tuple[int, ...], result: int) -> list[tuple[int, int]]:
    """sendmmsg(fd, msgvec, vlen, flags) stores msg_len in each of the `result` messages sent."""
    if _failed(result):
        return []
    return [(args[1] + MMSGHDR_SIZE * k + MMSG_LEN, 4) for k in range(result)]
