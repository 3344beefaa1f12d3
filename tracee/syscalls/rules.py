"""The vocabulary of the syscall catalogue: what one entry can state about a syscall.

An entry (`Syscall`) is a value made of small rules:
  - outputs: where the kernel writes tracee memory, as size rules (`Fixed`, `Result`,
    `ArgValue`, ...) evaluated with the call's arguments, its result and a memory reader;
  - may_block: whether the call can wait for another task (a lock holder, the other end of a
    pipe, a child): False, True, or a rule that decides from the arguments (`ArgIs`: an
    argument's value; `OnFd`: what the descriptor is; `OnOpen`: what the path names);
  - how the recorder and the replayer treat it (`Record`, `Replay`), what it changes beyond
    memory (`Effect`), and the roles other parts look for (file writes, scratch moves, ...).
This module is pure data: no ptrace, no /proc, nothing of the recorder or the replayer.
The rules are NamedTuples rather than frozen dataclasses for start-up time: `relive record`
imports the catalogue before the program starts, and making a dataclass costs ~1 ms on the
development VMs (docs/performance.md, "Start-up").
"""
from __future__ import annotations

from enum import Enum, IntFlag
from typing import NamedTuple

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
    (accept/getsockname: *addrlen); read before it, the caller's capacity."""
    arg: int
    width: int = 4


class Min(NamedTuple):
    a: Size
    b: Size


class Sum(NamedTuple):
    """a + b bytes (msgrcv: the long mtype, then the result's bytes of text)."""
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


Size = Fixed | Result | ArgValue | ArgCeil | ResultTimes | DerefAfter | Min | Sum | WhenArg


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

# ---- blocking rules -----------------------------------------------------------------------


class ArgIs(NamedTuple):
    """True when argument `arg` masked by `mask` is one of `values` (fcntl: F_SETLKW waits for
    a lock; flock: neither LOCK_NB nor LOCK_UN; wait4: no WNOHANG), or with `negate`, when it
    is none of them (poll: a timeout other than 0)."""
    arg: int
    values: frozenset[int]
    mask: int = 0xFFFF_FFFF
    negate: bool = False


class OnFile(NamedTuple):
    """`buffered` only when the descriptor in argument `arg` is one the recorder knows to be
    a regular file whose writes need nothing more recorded (recorder.sysbuf_fds): its reads
    and writes never wait for another task. With `regular=False` only when it is none of
    those (its bit clear): duplicating it changes no bit of the bitmap (fcntl F_DUPFD),
    and `when` (an ArgIs on another argument) must hold too."""
    arg: int
    regular: bool = True
    when: ArgIs | None = None


class OpensFile(NamedTuple):
    """`buffered` for an open (openat): of a directory when `dirs` holds (as an ArgIs), and
    of anything else when its flags (`dirs.arg`) have none of the `refused` bits: the hook
    makes it only if it opens a regular file on a plain file system (else it closes it and
    leaves the open traced) and decides the new descriptor's bit itself, from buffered
    fstat and fstatfs results (tracee/sysbuf_hook.c open_file)."""
    dirs: ArgIs
    refused: int


class OnFd(NamedTuple):
    """I/O on the descriptors in `fds`: it may wait unless each of them never does (opened
    O_NONBLOCK, or a regular file, directory or block device), or unless the per-call flags
    in argument `flags` (if >= 0) have the `nowait` bit (MSG_DONTWAIT)."""
    fds: tuple[int, ...] = (0,)
    flags: int = -1
    nowait: int = 0


class OnOpen(NamedTuple):
    """Opening the path in argument `path` (relative to the directory descriptor in `dirfd`
    if >= 0, else the working directory) with the open flags in argument `flags` (if >= 0,
    else `fixed_flags`): opening a FIFO waits for its other end, and a device may wait
    (a serial line for its carrier), unless O_NONBLOCK or O_PATH."""
    path: int
    dirfd: int = -1
    flags: int = -1
    fixed_flags: int = 0


class OnQueue(NamedTuple):
    """Sending to or receiving from the POSIX message queue descriptor in argument `fd`: it
    waits (for room, for a message) unless the descriptor is O_NONBLOCK. (OnFd would say it
    never does: a queue's inode is a regular file of the mqueue filesystem.)"""
    fd: int = 0


class SemOps(NamedTuple):
    """semop(id, sops, nsops): the array of struct sembuf {unsigned short num; short op;
    short flg} at argument `arg`, as many as argument `number` says. It may wait unless
    each operation that takes (op < 0) or waits for zero (op == 0) has IPC_NOWAIT; adding
    (op > 0) never waits."""
    arg: int
    number: int
    nowait: int  # IPC_NOWAIT
    most: int    # more than this many are assumed to wait (the kernel's SEMOPM is 500)


SEMBUF_SIZE = 6

Blocking = bool | ArgIs | OnFd | OnOpen | OnQueue | SemOps

# ---- how each side treats a call ----------------------------------------------------------


class Record(Enum):
    """How the recorder records it."""
    TABLE = "table"              # the outputs above say everything it writes
    CODE = "code"                # recorder code (mappings, tasks, ioctl by request, ...)
    FAKE_ENOSYS = "fake-enosys"  # never run: fails with -ENOSYS, libc falls back


class Replay(Enum):
    """How the replayer replays it."""
    EMULATE = "emulate"      # skipped by the kernel; the recorded result and memory are put
    EXECUTE = "execute"      # run for real with the same arguments, the result checked
    OWN_CODE = "own-code"    # run for real by replay code at the recorded addresses
    IN_PLACE = "in-place"    # run where the program made it (changes registers, ends a task)
    EXEC = "exec"            # an exec, replayed by exec + rebuild
    CLONE = "clone"          # makes a task, replayed by making it


class Effect(IntFlag):
    """What a call changes beyond the memory it writes."""
    NONE = 0
    MAPS = 1          # the address space (mappings, their protection, the heap)
    NEW_TASK = 2      # creates a thread or process
    ENDS_TASK = 4     # ends the calling thread or its whole process
    FD_CLOSE = 8      # closes the descriptor in argument 0
    FD_REPLACE = 16   # makes the descriptor in argument 1 another one (dup2, dup3)
    FD_TABLE = 32     # may change any descriptor of the process (close_range, exec)
    FD_STATUS = 64    # may change a descriptor's status flags (O_NONBLOCK): see `status_when`


class Copy(NamedTuple):
    """A call that moves bytes between descriptors without passing them through the caller's
    memory: its input descriptor argument, and the arguments holding pointers to the input
    and output offsets (None: the call has none, the file position is used)."""
    in_fd: int
    in_offset: int | None
    out_offset: int | None


class Scratch(NamedTuple):
    """An output buffer moved to the thread's scratch area while the call may block: argument
    `arg`, `size` bytes (evaluated before the call: the caller's capacity), its contents
    copied in first if `copy_in` (an input too). Only when argument `with_arg` (if >= 0) is
    not NULL and argument `without_arg` (if >= 0) is NULL."""
    arg: int
    size: Size
    copy_in: bool = False
    with_arg: int = -1
    without_arg: int = -1


class WaitMask(NamedTuple):
    """The call waits with a temporary signal mask: the sigset_t the pointer in argument `arg`
    points to (`indirect`: argument `arg` points to {const sigset_t *, size_t}: pselect6)."""
    arg: int
    indirect: bool = False


class Flow(Enum):
    """Plain file I/O through one flat buffer: descriptor argument 0, buffer argument 1."""
    IN = "in"    # read, pread64
    OUT = "out"  # write, pwrite64


class Syscall(NamedTuple):
    outputs: tuple[Output, ...] = ()
    # Can the call wait for another task? The scheduler lets others run meanwhile, and its
    # outputs go through scratch (DESIGN.md section 4, recorder.scratch).
    may_block: Blocking = False
    record: Record = Record.TABLE
    replay: Replay = Replay.EMULATE
    effects: Effect = Effect.NONE
    status_when: ArgIs | None = None    # with FD_STATUS: the arguments that change them
    file_fd: int = -1                   # writes file contents through this descriptor arg
    shown: bool = False                 # bytes it writes to relive's stdout/stderr are output
    copies: Copy | None = None
    scratch: tuple[Scratch, ...] = ()
    path: int = -1                      # opens the path in this argument
    flow: Flow | None = None
    wait_mask: WaitMask | None = None
    # The compiled record loop takes it unless this says otherwise (fcntl: the commands that
    # write a struct or wait for a lock are left to the Python path).
    plain_unless: ArgIs | None = None
    # Shows or sets the program's CPU set, which relive keeps virtual (recorder.cpu_view):
    # the recorder rewrites or answers the call.
    cpu_view: bool = False
    dups_fd: int = -1                   # duplicates the descriptor in this argument
    # Reads a clock every process shares (some clock ids of it): the compiled record loop
    # answers it at its seccomp stop with the recorder's own read (tracee.seccomp).
    clock: bool = False
    # Made by relive's in-process hook without a ptrace stop (tracee.sysbuf): never blocks,
    # changes nothing the recorder tracks, at most one output (a struct, or as many bytes
    # as it returns); an ArgIs: only when it holds (futex: the wakes); an OpensFile: openat;
    # an OnFile: only on a regular file's descriptor (read, write), or only on any other
    # (fcntl's commands that change no bit of the descriptor bitmap). A buffered call
    # with Effect.FD_CLOSE (close) has its descriptor's bit cleared by the hook.
    buffered: bool | ArgIs | OnFile | OpensFile = False


def S(*outputs: Output, may_block: Blocking = False, record: Record = Record.TABLE,
      replay: Replay = Replay.EMULATE, effects: Effect = Effect.NONE,
      status_when: ArgIs | None = None, file_fd: int = -1, shown: bool = False,
      copies: Copy | None = None, scratch: tuple[Scratch, ...] = (), path: int = -1,
      flow: Flow | None = None, wait_mask: WaitMask | None = None,
      plain_unless: ArgIs | None = None, cpu_view: bool = False, dups_fd: int = -1,
      clock: bool = False, buffered: bool | ArgIs | OnFile | OpensFile = False) -> Syscall:
    return Syscall(tuple(outputs), may_block, record, replay, effects, status_when, file_fd,
                   shown, copies, scratch, path, flow, wait_mask, plain_unless, cpu_view,
                   dups_fd, clock, buffered)


def arg_is(rule: ArgIs, args: tuple[int, ...]) -> bool:
    return ((args[rule.arg] & rule.mask) in rule.values) != rule.negate


# The registers holding a syscall's arguments 0-5 on x86-64.
ARG_REGS = ("rdi", "rsi", "rdx", "r10", "r8", "r9")

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
MQ_ATTR = Fixed(64)         # struct mq_attr: 4 longs and 4 reserved
SEMID_DS = Fixed(104)       # struct semid64_ds (IPC_STAT, SEM_STAT)
SEMINFO = Fixed(40)         # struct seminfo: 10 ints (IPC_INFO, SEM_INFO)
MSQID_DS = Fixed(120)       # struct msqid64_ds (IPC_STAT, MSG_STAT)
MSGINFO = Fixed(32)         # struct msginfo: 8 ints (IPC_INFO, MSG_INFO)
SHMID_DS = Fixed(112)       # struct shmid64_ds (IPC_STAT, SHM_STAT)
SHMINFO = Fixed(72)         # struct shminfo64 (IPC_INFO)
SHM_INFO = Fixed(48)        # struct shm_info (SHM_INFO)
SEM_VALUE = 2               # GETALL: an unsigned short per semaphore
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
