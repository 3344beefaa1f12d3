"""Calls multiplexed by an argument (fcntl, ioctl, futex, flock, wait, open flags): the
commands the catalogue's entries and the recorder's code for irregular calls refer to, and what
each command writes or waits for.

Pure data, like the rest of tracee.syscalls.
"""
from __future__ import annotations

from enum import IntEnum

from tracee.syscalls.rules import (FLOCK, F_OWNER_EX, IFREQ, INT, INT_PAIR, LONG, MSGINFO,
                                   MSQID_DS, SEMID_DS, SEMINFO, SHM_INFO, SHMID_DS, SHMINFO,
                                   TERMIO, TERMIOS, TERMIOS2, WINSIZE, ArgIs, ArgValue, Fixed,
                                   Min, OpensFile, Out, Output, Result, SemOps)

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


def futex_ops(*ops: FutexOp) -> frozenset[int]:
    return frozenset(int(op) for op in ops)


# Only the waiting operations (FUTEX_WAIT, _WAIT_BITSET, _LOCK_PI, _LOCK_PI2,
# _WAIT_REQUEUE_PI) wait for another task; the wakes, requeues, unlock and trylock return at
# once, so a thread waking another keeps the CPU (a switch there made the woken thread run
# into the mutex its waker still held: three more switches per condvar hand-off). Unknown
# operations: may wait.
FUTEX_WAITS = ArgIs(1, frozenset({1, 3, 4, 5, 7, 8, 10, 12}), mask=FUTEX_CMD_MASK, negate=True)
# The operations relive's in-process hook makes without a stop (tracee.sysbuf): FUTEX_WAKE,
# _REQUEUE, _CMP_REQUEUE, _WAKE_BITSET never wait and write no futex word (none of FutexOp).
FUTEX_BUFFERED = ArgIs(1, frozenset({1, 3, 4, 10}), mask=FUTEX_CMD_MASK)


class Fcntl(IntEnum):
    """On x86-64 the ...64 commands (F_SETLKW64, ...) are these same numbers."""
    F_DUPFD = 0
    F_GETFD = 1
    F_SETFD = 2
    F_GETFL = 3
    F_SETFL = 4
    F_GETLK = 5
    F_SETLK = 6
    F_SETLKW = 7
    F_GETOWN_EX = 16
    F_GETOWNER_UIDS = 17
    F_OFD_GETLK = 36
    F_OFD_SETLK = 37
    F_OFD_SETLKW = 38
    F_DUPFD_CLOEXEC = 1030
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


# The commands that wait for a conflicting record or OFD lock to go away.
FCNTL_WAITS = ArgIs(1, frozenset({Fcntl.F_SETLKW, Fcntl.F_OFD_SETLKW}))
# The commands that need more than their result recorded: those that write a struct through
# arg, and those that may wait for a lock.
FCNTL_NOT_PLAIN = ArgIs(1, frozenset(_FCNTL_OUTPUTS) | FCNTL_WAITS.values)
# F_SETFL may set or clear O_NONBLOCK.
FCNTL_SETS_STATUS = ArgIs(1, frozenset({Fcntl.F_SETFL}))
# The commands relive's hook makes without a stop (tracee.sysbuf), on a descriptor that is
# not a regular file of the descriptor bitmap (so a copy's bit stays clear, as a free
# number's is): they never wait, write nothing and change nothing the recorder tracks
# (F_SETFD: close-on-exec only; the table is read again at exec). fts (find, du, rm -r)
# makes 4-5 of them a directory.
FCNTL_BUFFERED = ArgIs(1, frozenset({Fcntl.F_DUPFD, Fcntl.F_GETFD, Fcntl.F_SETFD,
                                     Fcntl.F_GETFL, Fcntl.F_DUPFD_CLOEXEC}))


def fcntl_outputs(args: tuple[int, ...]) -> tuple[Output, ...]:
    """fcntl(fd, cmd, arg) writes only for the commands that return a struct through arg."""
    return _FCNTL_OUTPUTS.get(args[1] & 0xFFFF_FFFF, ())


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

# Requests that wait for the terminal's output to drain (tcdrain is TCSBRK with arg 1,
# tcsetattr(TCSADRAIN/TCSAFLUSH) TCSETSW/TCSETSF).
IOCTL_WAITS = ArgIs(1, frozenset({
    Ioctl.TCSETSW, Ioctl.TCSETSF, Ioctl.TCSETAW, Ioctl.TCSETAF, Ioctl.TCSETSW2,
    Ioctl.TCSETSF2, Ioctl.TCSBRK, Ioctl.TCSBRKP,
}))
# FIONBIO sets or clears O_NONBLOCK.
IOCTL_SETS_STATUS = ArgIs(1, frozenset({Ioctl.FIONBIO}))


def ioctl_outputs(request: int) -> tuple[Output, ...] | None:
    """Outputs of ioctl(fd, request, argp); None for a request this table does not know
    (the recorder then refuses it, naming the request)."""
    return IOCTLS.get(request & 0xFFFF_FFFF)  # the kernel's cmd is an unsigned int


# flock(fd, op): waits unless LOCK_NB (4) or LOCK_UN (8).
LOCK_NB, LOCK_UN = 4, 8
FLOCK_WAITS = ArgIs(1, frozenset({0}), mask=LOCK_NB | LOCK_UN)
# wait4(pid, status, options, rusage) / waitid(idtype, id, info, options, rusage): WNOHANG.
WNOHANG = 1
WAIT4_WAITS = ArgIs(2, frozenset({0}), mask=WNOHANG)
WAITID_WAITS = ArgIs(3, frozenset({0}), mask=WNOHANG)
# poll(fds, nfds, timeout) and epoll_wait(epfd, events, max, timeout) with timeout 0 only look.
POLL_WAITS = ArgIs(2, frozenset({0}), negate=True)
EPOLL_WAITS = ArgIs(3, frozenset({0}), negate=True)
# send/recv flags: MSG_DONTWAIT
MSG_DONTWAIT = 0x40

# SysV IPC. msgsnd(id, msgp, size, flags) and msgrcv(id, msgp, size, type, flags) wait unless
# IPC_NOWAIT; semop(id, sops, nsops) and semtimedop unless each operation that may wait has it.
IPC_NOWAIT = 0o4000
MSGSND_WAITS = ArgIs(3, frozenset({0}), mask=IPC_NOWAIT)
MSGRCV_WAITS = ArgIs(4, frozenset({0}), mask=IPC_NOWAIT)
SEMOP_WAITS = SemOps(1, 2, IPC_NOWAIT, most=1024)
# mq_getsetattr(mqd, newattr, oldattr) with a new attr may set or clear O_NONBLOCK.
MQ_SETS_STATUS = ArgIs(1, frozenset({0}), mask=(1 << 64) - 1, negate=True)


class IpcCtl(IntEnum):
    """Commands of both semctl and msgctl (x86-64 takes them without IPC_64)."""
    IPC_RMID = 0
    IPC_SET = 1
    IPC_STAT = 2
    IPC_INFO = 3


class SemCtl(IntEnum):
    GETPID = 11
    GETVAL = 12
    GETALL = 13
    GETNCNT = 14
    GETZCNT = 15
    SETVAL = 16
    SETALL = 17
    SEM_STAT = 18
    SEM_INFO = 19
    SEM_STAT_ANY = 20


class MsgCtl(IntEnum):
    MSG_STAT = 11
    MSG_INFO = 12
    MSG_STAT_ANY = 13


class ShmCtl(IntEnum):
    SHM_LOCK = 11
    SHM_UNLOCK = 12
    SHM_STAT = 13
    SHM_INFO = 14
    SHM_STAT_ANY = 15


_WRITE_NOTHING = (IpcCtl.IPC_RMID, IpcCtl.IPC_SET)
# semctl(id, num, cmd, arg): the struct written through arg. GETALL's array, one unsigned short
# per semaphore, is sized by the set: the recorder looks it up (recorder.syscall_effects).
SEMCTL_OUTPUTS: dict[int, tuple[Output, ...]] = {
    **{int(c): (Out(3, SEMID_DS),) for c in (IpcCtl.IPC_STAT, SemCtl.SEM_STAT,
                                              SemCtl.SEM_STAT_ANY)},
    **{int(c): (Out(3, SEMINFO),) for c in (IpcCtl.IPC_INFO, SemCtl.SEM_INFO)},
    **{int(c): () for c in (*_WRITE_NOTHING, SemCtl.GETPID, SemCtl.GETVAL, SemCtl.GETALL,
                            SemCtl.GETNCNT, SemCtl.GETZCNT, SemCtl.SETVAL, SemCtl.SETALL)},
}
# msgctl(id, cmd, buf)
MSGCTL_OUTPUTS: dict[int, tuple[Output, ...]] = {
    **{int(c): (Out(2, MSQID_DS),) for c in (IpcCtl.IPC_STAT, MsgCtl.MSG_STAT,
                                              MsgCtl.MSG_STAT_ANY)},
    **{int(c): (Out(2, MSGINFO),) for c in (IpcCtl.IPC_INFO, MsgCtl.MSG_INFO)},
    **{int(c): () for c in _WRITE_NOTHING},
}


# shmctl(id, cmd, buf): what `ipcs -u`, `ipcs -m` and lsipc ask. (shmat, which maps the
# segment, is not in the catalogue: refused.)
SHMCTL_OUTPUTS: dict[int, tuple[Output, ...]] = {
    **{int(c): (Out(2, SHMID_DS),) for c in (IpcCtl.IPC_STAT, ShmCtl.SHM_STAT,
                                              ShmCtl.SHM_STAT_ANY)},
    int(IpcCtl.IPC_INFO): (Out(2, SHMINFO),),
    int(ShmCtl.SHM_INFO): (Out(2, SHM_INFO),),
    **{int(c): () for c in (*_WRITE_NOTHING, ShmCtl.SHM_LOCK, ShmCtl.SHM_UNLOCK)},
}


def semctl_outputs(args: tuple[int, ...]) -> tuple[Output, ...] | None:
    """None for a command this table does not know (refused if it succeeds)."""
    return SEMCTL_OUTPUTS.get(args[2] & 0xFFFF_FFFF)


def msgctl_outputs(args: tuple[int, ...]) -> tuple[Output, ...] | None:
    return MSGCTL_OUTPUTS.get(args[1] & 0xFFFF_FFFF)


def shmctl_outputs(args: tuple[int, ...]) -> tuple[Output, ...] | None:
    return SHMCTL_OUTPUTS.get(args[1] & 0xFFFF_FFFF)


# keyctl(cmd, arg2, arg3, arg4, arg5) (linux/keyctl.h): PAM's pam_keyinit (su, runuser,
# sudo, login), keyutils. The calls that read a key or its description into (arg3, arg4)
# return its whole size and write at most arg4 bytes; the others write nothing of the
# program's (they return a key serial or 0). Other commands are refused if they succeed.
class KeyCtl(IntEnum):
    GET_KEYRING_ID = 0
    JOIN_SESSION_KEYRING = 1
    UPDATE = 2
    REVOKE = 3
    CHOWN = 4
    SETPERM = 5
    DESCRIBE = 6
    CLEAR = 7
    LINK = 8
    UNLINK = 9
    SEARCH = 10
    READ = 11
    SET_REQKEY_KEYRING = 14
    SET_TIMEOUT = 15
    GET_SECURITY = 17
    SESSION_TO_PARENT = 18
    INVALIDATE = 21
    GET_PERSISTENT = 22
    RESTRICT_KEYRING = 29
    MOVE = 30


_KEY_BUFFER = (Out(2, Min(Result(), ArgValue(3))),)
KEYCTL_OUTPUTS: dict[int, tuple[Output, ...]] = {
    int(c): _KEY_BUFFER if c in (KeyCtl.DESCRIBE, KeyCtl.READ, KeyCtl.GET_SECURITY) else ()
    for c in KeyCtl}


def keyctl_outputs(args: tuple[int, ...]) -> tuple[Output, ...] | None:
    return KEYCTL_OUTPUTS.get(args[0] & 0xFFFF_FFFF)


# open flags (x86-64)
O_WRONLY, O_CREAT, O_EXCL, O_TRUNC = 0o1, 0o100, 0o200, 0o1000
O_NONBLOCK = 0o4000
O_PATH = 0o10000000
O_DIRECTORY, O_TMPFILE_ONLY = 0o200000, 0o20000000  # (O_TMPFILE is both)
# openat of a directory: it never waits (a FIFO or device fails with ENOTDIR before it is
# opened) and makes no descriptor the recorder follows (no bit in the descriptor bitmap):
# relive's hook makes it without a stop (tracee.sysbuf). Not with O_CREAT (older kernels
# create a regular file) nor O_TMPFILE (a regular file).
# Any other openat is made by the hook too unless it creates, truncates or makes a file,
# opens a path only (O_PATH: no bit, nothing to decide) or is a directory's: the hook then
# opens it only if it is a regular file on a plain file system (tracee/sysbuf_hook.c
# open_file; a file opened for writing too: its writes are buffered like any file's).
O_ASYNC = 0o20000
OPENAT_BUFFERED = OpensFile(
    ArgIs(2, frozenset({O_DIRECTORY}), mask=O_DIRECTORY | O_TMPFILE_ONLY | O_CREAT),
    refused=O_CREAT | O_EXCL | O_TRUNC | O_TMPFILE_ONLY | O_DIRECTORY | O_PATH | O_ASYNC)
AT_FDCWD = -100
