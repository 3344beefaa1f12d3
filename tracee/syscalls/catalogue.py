"""The syscall catalogue: every syscall relive knows, and every fact about it, in one table.

Each entry states what the kernel writes (outputs), whether the call can wait for another
task (may_block: a fact or a rule on the arguments), how the recorder records it (from the
outputs, in code, or faked -ENOSYS), how the replayer replays it, what it changes beyond memory
(mappings, tasks, descriptors), and the roles other parts look for (file writes, output shown
again, scratch moves, opened paths). Every set of syscall names the recorder and the replayer
use is derived from this table (tracee.syscalls.queries); tests/test_syscall_catalogue.py
forbids hand-made ones elsewhere.

A syscall not in the catalogue is never recorded silently: the recorder stops naming it.
Struct sizes are checked against gcc's sizeof() by tests/test_syscall_table.py.

Not covered here: writes the kernel makes outside a syscall's exit (CLONE_CHILD_CLEARTID /
set_tid_address at thread exit, signal frames, rseq), and restart_syscall, whose outputs are
those of the interrupted call it resumes.
"""
from __future__ import annotations

from tracee.syscalls.commands import (EPOLL_WAITS, FCNTL_BUFFERED, FCNTL_NOT_PLAIN,
                                      FCNTL_SETS_STATUS, FCNTL_WAITS, FLOCK_WAITS,
                                      FUTEX_BUFFERED, FUTEX_CMD_MASK, FUTEX_WAITS,
                                      IOCTL_SETS_STATUS, IOCTL_WAITS, MQ_SETS_STATUS,
                                      MSG_DONTWAIT, MSGRCV_WAITS, MSGSND_WAITS, O_CREAT,
                                      O_TRUNC, O_WRONLY, OPENAT_BUFFERED, POLL_WAITS,
                                      SEMOP_WAITS, WAIT4_WAITS, WAITID_WAITS, FutexOp,
                                      futex_ops)
from tracee.syscalls.rules import (CAP_DATA, EPOLL_EVENT_SIZE, FD_SET_WORD, INT, INT_PAIR,
                                   ITIMERSPEC, ITIMERVAL, KERNEL_SIGACTION, LONG, MQ_ATTR,
                                   PAGE_SIZE,
                                   POLLFD_SIZE, RLIMIT, RUSAGE, SCHED_PARAM, SIGINFO,
                                   SOCKADDR_MAX, STACK_T, STAT, STATFS, STATX, SYSINFO, TIMESPEC,
                                   TIMEVAL, TIMEX, TIMEZONE, TMS, UTSNAME, ArgCeil, ArgValue,
                                   Copy, DerefAfter, Effect, Flow, IovecOut, Min, OnFd, OnFile,
                                   OnOpen, OnQueue, Out, Record, Replay, Result, ResultTimes, S,
                                   Scratch, Sum, Syscall, WaitMask, WhenArg)

# The address written by accept/getsockname/recvfrom: at most the buffer the caller gave,
# which after the call is only known as *addrlen = the full address length; capped.
_SOCKADDR = Min(DerefAfter(2), SOCKADDR_MAX)
FD = OnFd()  # I/O on the descriptor in argument 0
ON_FILE = OnFile(0)  # buffered on a regular file's descriptor (tracee.sysbuf)
CODE = Record.CODE
_SELECT_SCRATCH = (*(Scratch(i, ArgCeil(0, 8 * FD_SET_WORD, FD_SET_WORD), copy_in=True)
                     for i in (1, 2, 3)), Scratch(4, TIMEVAL, copy_in=True))
_ACCEPT_SCRATCH = (Scratch(1, DerefAfter(2)), Scratch(2, INT, copy_in=True, with_arg=1))

CATALOGUE: dict[str, Syscall] = {
    # -- reading and writing file descriptors
    "read": S(Out(1, Result()), may_block=FD, flow=Flow.IN,
              scratch=(Scratch(1, ArgValue(2)),), buffered=ON_FILE),
    "pread64": S(Out(1, Result()), flow=Flow.IN, buffered=ON_FILE),
    "readv": S(IovecOut(1, 2), may_block=FD),
    "preadv": S(IovecOut(1, 2)),
    "preadv2": S(IovecOut(1, 2), may_block=FD),   # offset -1 reads like readv
    "write": S(may_block=FD, file_fd=0, shown=True, flow=Flow.OUT, buffered=ON_FILE),
    "pwrite64": S(file_fd=0, shown=True, flow=Flow.OUT, buffered=ON_FILE),
    "writev": S(may_block=FD, file_fd=0, shown=True, buffered=ON_FILE),
    "pwritev": S(file_fd=0, shown=True, buffered=ON_FILE),
    "pwritev2": S(may_block=FD, file_fd=0, shown=True),
    "lseek": S(buffered=True),
    "sendfile": S(Out(2, LONG, always=True), may_block=OnFd((0, 1)), file_fd=0,
                  shown=True, copies=Copy(1, 2, None)),  # *offset stored even on error
    "copy_file_range": S(Out(1, LONG), Out(3, LONG), file_fd=2, shown=True,
                         copies=Copy(0, 1, 3)),
    "splice": S(Out(1, LONG), Out(3, LONG), may_block=OnFd((0, 2)), file_fd=2,
                shown=True, copies=Copy(0, 1, 3)),
    "tee": S(may_block=OnFd((0, 1)), file_fd=1, shown=True, copies=Copy(0, None, None)),
    # vmsplice from a pipe's read end fills the iovecs; towards a pipe the range is the
    # caller's own unchanged data, harmless to save.
    "vmsplice": S(IovecOut(1, 2), may_block=FD, file_fd=0, shown=True),
    "fadvise64": S(),
    "readahead": S(),
    "sync_file_range": S(),
    # -- opening and closing (opening a FIFO blocks until the other end opens)
    "open": S(may_block=OnOpen(0, flags=1), path=0),
    "openat": S(may_block=OnOpen(1, dirfd=0, flags=2), path=1, buffered=OPENAT_BUFFERED),
    "openat2": S(may_block=True, path=1),  # (flags in struct open_how: rare, assumed to wait)
    "creat": S(may_block=OnOpen(0, fixed_flags=O_CREAT | O_WRONLY | O_TRUNC), path=0),
    "close": S(effects=Effect.FD_CLOSE, buffered=True),  # (the hook clears its bit)
    "close_range": S(effects=Effect.FD_TABLE),
    "dup": S(dups_fd=0),
    "dup2": S(effects=Effect.FD_REPLACE, dups_fd=0),
    "dup3": S(effects=Effect.FD_REPLACE, dups_fd=0),
    "pipe": S(Out(0, INT_PAIR)),
    "pipe2": S(Out(0, INT_PAIR)),
    "memfd_create": S(),
    "flock": S(may_block=FLOCK_WAITS),
    # -- file metadata
    "stat": S(Out(1, STAT), buffered=True),
    "fstat": S(Out(1, STAT), buffered=True),
    "lstat": S(Out(1, STAT), buffered=True),
    "newfstatat": S(Out(2, STAT), buffered=True),
    "statx": S(Out(4, STATX), buffered=True),
    "statfs": S(Out(1, STATFS), buffered=True),
    "fstatfs": S(Out(1, STATFS), buffered=True),
    "access": S(buffered=True),
    "faccessat": S(buffered=True),
    "faccessat2": S(buffered=True),
    "readlink": S(Out(1, Result()), buffered=True),
    "readlinkat": S(Out(2, Result()), buffered=True),
    "getdents": S(Out(1, Result())),
    "getdents64": S(Out(1, Result()), buffered=True),
    # With size 0 the *xattr calls return the size needed and write nothing.
    "getxattr": S(Out(2, Min(Result(), ArgValue(3))), buffered=True),
    "lgetxattr": S(Out(2, Min(Result(), ArgValue(3))), buffered=True),
    "fgetxattr": S(Out(2, Min(Result(), ArgValue(3))), buffered=True),
    "listxattr": S(Out(1, Min(Result(), ArgValue(2))), buffered=True),
    "llistxattr": S(Out(1, Min(Result(), ArgValue(2))), buffered=True),
    "flistxattr": S(Out(1, Min(Result(), ArgValue(2))), buffered=True),
    "setxattr": S(), "lsetxattr": S(), "fsetxattr": S(),
    "removexattr": S(), "lremovexattr": S(), "fremovexattr": S(),
    # -- the file tree and attributes (inputs only)
    "getcwd": S(Out(0, Result())),   # the result is the length including the NUL
    "chdir": S(buffered=True), "fchdir": S(buffered=True),
    "chroot": S(),  # the recorder sees paths as the process does (/proc/PID/root)
    "mkdir": S(), "mkdirat": S(), "rmdir": S(),
    "mknod": S(), "mknodat": S(),
    "unlink": S(), "unlinkat": S(),
    "rename": S(), "renameat": S(), "renameat2": S(),
    "link": S(), "linkat": S(), "symlink": S(), "symlinkat": S(),
    "chmod": S(), "fchmod": S(), "fchmodat": S(), "fchmodat2": S(),
    "chown": S(), "fchown": S(), "lchown": S(), "fchownat": S(),
    "umask": S(),
    "truncate": S(), "ftruncate": S(file_fd=0, buffered=ON_FILE), "fallocate": S(file_fd=0),
    "fsync": S(), "fdatasync": S(), "sync": S(), "syncfs": S(),
    "utime": S(), "utimes": S(), "futimesat": S(), "utimensat": S(),
    # -- sockets
    "socket": S(),
    "socketpair": S(Out(3, INT_PAIR)),
    "bind": S(),
    "listen": S(),
    "connect": S(may_block=FD),
    "accept": S(Out(1, _SOCKADDR), Out(2, INT), may_block=FD, scratch=_ACCEPT_SCRATCH),
    "accept4": S(Out(1, _SOCKADDR), Out(2, INT), may_block=FD, scratch=_ACCEPT_SCRATCH),
    "getsockname": S(Out(1, _SOCKADDR), Out(2, INT)),
    "getpeername": S(Out(1, _SOCKADDR), Out(2, INT)),
    # *optlen becomes the bytes written; SO_PEERSEC/SO_PEERGROUPS store it on ERANGE too.
    "getsockopt": S(Out(3, DerefAfter(4)), Out(4, INT, always=True)),
    "setsockopt": S(),
    "sendto": S(may_block=OnFd(flags=3, nowait=MSG_DONTWAIT)),
    "sendmsg": S(may_block=OnFd(flags=2, nowait=MSG_DONTWAIT)),
    # MSG_TRUNC makes recvfrom return the datagram's full length, beyond the buffer.
    "recvfrom": S(Out(1, Min(Result(), ArgValue(2))), Out(4, Min(DerefAfter(5), SOCKADDR_MAX)),
                  Out(5, INT), may_block=OnFd(flags=3, nowait=MSG_DONTWAIT),
                  scratch=(Scratch(1, ArgValue(2), without_arg=4),)),
    "shutdown": S(),
    # -- waiting for file descriptors. poll stores revents and the *poll/*select calls the
    # time left even when interrupted (EINTR / restart).
    "poll": S(Out(0, ArgValue(1, POLLFD_SIZE), always=True), may_block=POLL_WAITS,
              scratch=(Scratch(0, ArgValue(1, POLLFD_SIZE), copy_in=True),)),
    "ppoll": S(Out(0, ArgValue(1, POLLFD_SIZE), always=True), Out(2, TIMESPEC, always=True),
               may_block=True, scratch=(Scratch(0, ArgValue(1, POLLFD_SIZE), copy_in=True),
                                        Scratch(2, TIMESPEC, copy_in=True)),
               wait_mask=WaitMask(3)),
    "select": S(*(Out(i, ArgCeil(0, 8 * FD_SET_WORD, FD_SET_WORD)) for i in (1, 2, 3)),
                Out(4, TIMEVAL, always=True), may_block=True, scratch=_SELECT_SCRATCH),
    "pselect6": S(*(Out(i, ArgCeil(0, 8 * FD_SET_WORD, FD_SET_WORD)) for i in (1, 2, 3)),
                  Out(4, TIMESPEC, always=True), may_block=True, scratch=_SELECT_SCRATCH,
                  wait_mask=WaitMask(5, indirect=True)),
    "epoll_create": S(),
    "epoll_create1": S(),
    "epoll_ctl": S(),
    "epoll_wait": S(Out(1, ResultTimes(EPOLL_EVENT_SIZE)), may_block=EPOLL_WAITS,
                    scratch=(Scratch(1, ArgValue(2, EPOLL_EVENT_SIZE)),)),
    "epoll_pwait": S(Out(1, ResultTimes(EPOLL_EVENT_SIZE)), may_block=EPOLL_WAITS,
                     scratch=(Scratch(1, ArgValue(2, EPOLL_EVENT_SIZE)),), wait_mask=WaitMask(4)),
    "epoll_pwait2": S(Out(1, ResultTimes(EPOLL_EVENT_SIZE)), may_block=True,  # (timespec *)
                      scratch=(Scratch(1, ArgValue(2, EPOLL_EVENT_SIZE)),),
                      wait_mask=WaitMask(4)),
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
    "nanosleep": S(Out(1, TIMESPEC, always=True), may_block=True,
                   scratch=(Scratch(1, TIMESPEC),)),
    "clock_nanosleep": S(Out(3, TIMESPEC, always=True), may_block=True,
                         scratch=(Scratch(3, TIMESPEC),)),
    "clock_gettime": S(Out(1, TIMESPEC), clock=True, buffered=True),
    "clock_getres": S(Out(1, TIMESPEC)),
    "clock_settime": S(), "settimeofday": S(),  # root's: run when recorded, never replayed
    "clock_adjtime": S(Out(1, TIMEX)),
    "adjtimex": S(Out(0, TIMEX)),
    "gettimeofday": S(Out(0, TIMEVAL), Out(1, TIMEZONE), clock=True, buffered=True),
    "time": S(Out(0, LONG), clock=True, buffered=True),
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
    "getpid": S(buffered=True), "getppid": S(buffered=True), "gettid": S(buffered=True),
    "getuid": S(buffered=True), "geteuid": S(buffered=True), "getgid": S(buffered=True),
    "getegid": S(buffered=True),
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
    "uname": S(Out(0, UTSNAME), buffered=True),
    "sethostname": S(), "setdomainname": S(),
    "getrandom": S(Out(0, Result()), buffered=True),  # (it waits only at boot)
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
    "rt_sigaction": S(Out(2, KERNEL_SIGACTION), replay=Replay.EXECUTE),
    "rt_sigprocmask": S(Out(2, ArgValue(3)), replay=Replay.EXECUTE),
    "rt_sigpending": S(Out(0, ArgValue(1))),
    "rt_sigtimedwait": S(Out(1, SIGINFO), may_block=True, scratch=(Scratch(1, SIGINFO),)),
    "rt_sigsuspend": S(may_block=True, wait_mask=WaitMask(0)),
    "rt_sigqueueinfo": S(), "rt_tgsigqueueinfo": S(),
    "sigaltstack": S(Out(1, STACK_T), replay=Replay.EXECUTE),
    "kill": S(), "tkill": S(), "tgkill": S(),
    "pause": S(may_block=True),
    # -- waiting for children
    "wait4": S(Out(1, INT), Out(3, RUSAGE), may_block=WAIT4_WAITS,
               scratch=(Scratch(1, INT), Scratch(3, RUSAGE))),
    "waitid": S(Out(2, SIGINFO), Out(4, RUSAGE), may_block=WAITID_WAITS,
                scratch=(Scratch(2, SIGINFO), Scratch(4, RUSAGE))),
    # -- threads and futexes. Most futex operations write nothing; the PI ones store the
    # owner tid in *uaddr (also when they fail after setting the waiters bit), WAKE_OP
    # modifies *uaddr2, and the REQUEUE_PI ones may take the lock at *uaddr2.
    "futex": S(
        Out(0, WhenArg(1, futex_ops(FutexOp.FUTEX_LOCK_PI, FutexOp.FUTEX_UNLOCK_PI,
                                    FutexOp.FUTEX_TRYLOCK_PI, FutexOp.FUTEX_LOCK_PI2),
                       INT, FUTEX_CMD_MASK), always=True),
        Out(4, WhenArg(1, futex_ops(FutexOp.FUTEX_WAKE_OP), INT, FUTEX_CMD_MASK)),
        Out(4, WhenArg(1, futex_ops(FutexOp.FUTEX_WAIT_REQUEUE_PI,
                                    FutexOp.FUTEX_CMP_REQUEUE_PI), INT, FUTEX_CMD_MASK),
            always=True),
        may_block=FUTEX_WAITS, buffered=FUTEX_BUFFERED),
    "futex_waitv": S(may_block=True),
    "set_robust_list": S(),
    "get_robust_list": S(Out(1, LONG), Out(2, LONG)),
    "set_tid_address": S(),
    "membarrier": S(),
    # -- POSIX message queues: descriptors whose kernel objects the replay never needs (every
    # result and output is recorded). mq_open's argument names a queue, not a file. Sending
    # waits for room and receiving for a message, unless the descriptor is O_NONBLOCK.
    # mq_notify with SIGEV_THREAD: glibc passes the kernel a netlink socket that its helper
    # thread reads (recvfrom), all recorded as usual; SIGEV_SIGNAL's signal is recorded too.
    "mq_open": S(),
    "mq_unlink": S(),
    "mq_timedsend": S(may_block=OnQueue()),
    "mq_timedreceive": S(Out(1, Result()), Out(3, INT), may_block=OnQueue(),
                         scratch=(Scratch(1, ArgValue(2)), Scratch(3, INT))),
    "mq_notify": S(),
    "mq_getsetattr": S(Out(2, MQ_ATTR), effects=Effect.FD_STATUS, status_when=MQ_SETS_STATUS),
    # -- SysV semaphores and message queues (kernel objects named by id). semop waits unless
    # every operation that takes or waits for zero has IPC_NOWAIT (in its struct sembuf, in
    # memory). msgrcv writes the long mtype, then the text (the result).
    "semget": S(),
    "semop": S(may_block=SEMOP_WAITS),
    "semtimedop": S(may_block=SEMOP_WAITS),
    "semctl": S(record=CODE),   # outputs by command (tracee.syscalls.commands)
    "msgget": S(),
    "msgsnd": S(may_block=MSGSND_WAITS),
    "msgrcv": S(Out(1, Sum(LONG, Result())), may_block=MSGRCV_WAITS,
                scratch=(Scratch(1, Sum(LONG, ArgValue(2))),)),
    "msgctl": S(record=CODE),
    # SysV shared memory: its ids and status (ipcs, lsipc), not shmat/shmdt: a segment is
    # memory other processes write, which replay would have to share (refused).
    "shmget": S(),
    "shmctl": S(record=CODE),
    # -- the kernel's key store (PAM's pam_keyinit: su, runuser, sudo, login): key serials;
    # keyctl writes by command (tracee.syscalls.commands). request_key may call out to
    # /sbin/request-key, outside the recording; it returns a serial.
    "add_key": S(), "request_key": S(),
    "keyctl": S(record=CODE),
    # -- another process's memory: process_vm_readv fills the caller's iovecs in order, as
    # readv; process_vm_writev writes only the other process: when that one is recorded too,
    # recorder code keeps what it wrote there and replay puts it in (recorder.session).
    "process_vm_readv": S(IovecOut(1, 2)),
    "process_vm_writev": S(record=CODE),
    # -- memory (the mapping calls are irregular)
    "mincore": S(Out(2, ArgCeil(1, PAGE_SIZE))),
    "mlock": S(replay=Replay.EXECUTE), "mlock2": S(), "munlock": S(replay=Replay.EXECUTE),
    "mlockall": S(replay=Replay.EXECUTE), "munlockall": S(replay=Replay.EXECUTE),
    "msync": S(replay=Replay.EXECUTE),
    # -- the address space: recorder code (recorder.syscall_effects) keeps the model, replay
    # runs them at the recorded addresses
    "mmap": S(record=CODE, replay=Replay.OWN_CODE, effects=Effect.MAPS),
    "munmap": S(record=CODE, replay=Replay.EXECUTE, effects=Effect.MAPS),
    "mremap": S(record=CODE, replay=Replay.OWN_CODE, effects=Effect.MAPS),
    "mprotect": S(record=CODE, replay=Replay.EXECUTE, effects=Effect.MAPS),
    "madvise": S(record=CODE, replay=Replay.EXECUTE, effects=Effect.MAPS),
    "brk": S(record=CODE, replay=Replay.OWN_CODE, effects=Effect.MAPS),
    "arch_prctl": S(record=CODE, replay=Replay.OWN_CODE),  # ARCH_GET_FS/GS write a long
    "prctl": S(record=CODE),  # PR_GET_NAME & co. write by option
    # -- tasks
    "execve": S(record=CODE, replay=Replay.EXEC, effects=Effect.MAPS | Effect.FD_TABLE),
    "execveat": S(record=CODE, replay=Replay.EXEC, effects=Effect.MAPS | Effect.FD_TABLE),
    "exit": S(record=CODE, replay=Replay.IN_PLACE, effects=Effect.ENDS_TASK),
    "exit_group": S(record=CODE, replay=Replay.IN_PLACE, effects=Effect.ENDS_TASK),
    "clone": S(record=CODE, replay=Replay.CLONE, effects=Effect.NEW_TASK),
    "fork": S(record=CODE, replay=Replay.CLONE, effects=Effect.NEW_TASK),
    "vfork": S(record=CODE, replay=Replay.CLONE, effects=Effect.NEW_TASK),
    "rt_sigreturn": S(record=CODE, replay=Replay.IN_PLACE),
    # -- by request or command: outputs in tracee.syscalls.commands
    "ioctl": S(record=CODE, may_block=IOCTL_WAITS, effects=Effect.FD_STATUS,
               status_when=IOCTL_SETS_STATUS),
    "fcntl": S(record=CODE, may_block=FCNTL_WAITS, effects=Effect.FD_STATUS,
               status_when=FCNTL_SETS_STATUS, plain_unless=FCNTL_NOT_PLAIN,
               buffered=OnFile(0, regular=False, when=FCNTL_BUFFERED)),
    # -- socket messages: outputs in tracee.syscalls.outputs
    "recvmsg": S(record=CODE, may_block=OnFd(flags=2, nowait=MSG_DONTWAIT)),
    "recvmmsg": S(record=CODE, may_block=OnFd(flags=3, nowait=MSG_DONTWAIT)),
    "sendmmsg": S(record=CODE, may_block=OnFd(flags=3, nowait=MSG_DONTWAIT)),
    # -- never run; answered -ENOSYS because glibc (or the program) falls back to something the
    # recorder handles (rseq would have the kernel write into memory behind our back; clone3
    # -> clone). pkey_alloc: memory protection keys would live in the kernel beyond the trace;
    # node/V8 and glibc users treat a failed pkey_alloc as "no keys" and carry on.
    # userfaultfd: page faults served by another thread from outside any syscall; its users
    # (QEMU postcopy, CRIU lazy pages, garbage collectors) take another path when it fails, as
    # they must where the sysctl vm.unprivileged_userfaultfd forbids it.
    **{name: S(record=Record.FAKE_ENOSYS)
       for name in ("rseq", "clone3", "io_uring_setup", "pkey_alloc", "pkey_free",
                    "userfaultfd")},
}
