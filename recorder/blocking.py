"""May a syscall about to run wait for another recorded task? The catalogue's rule
(tracee.syscalls.queries.may_block), with the facts about the process it needs:

  - what a descriptor is: I/O on a regular file, directory, block device or memory device
    (/dev/null, /dev/urandom) never waits for anyone, nor on one opened O_NONBLOCK; anything
    else (pipe, socket, terminal, eventfd, ...) may. Found with stat(/proc/PID/fd/N) and the
    flags line of /proc/PID/fdinfo/N (~30 us together, measured on the development VM), and
    cached per (process, descriptor) because reads and writes on pipes are hot;
  - the struct sembuf array a semop will act on (its IPC_NOWAIT flags), read from memory;
  - whether a POSIX message queue descriptor is O_NONBLOCK (its inode is a regular file, so
    only the flags tell; not cached: queue calls are rare next to pipe I/O);
  - what a path to be opened names: a FIFO waits for its other end, a device may wait.
    stat() of the path as the process sees it (/proc/PID/root, /proc/PID/cwd or the
    directory descriptor's /proc/PID/fd/N).

Cache invariant: an entry is dropped whenever the descriptor may have changed: closed or
replaced (close, dup2, dup3: that process's entry), the whole table (close_range, exec, exit:
that process's entries), its status flags (fcntl F_SETFL, ioctl FIONBIO: every entry, as the
flags belong to the open file description, which forked processes share). Numbers the kernel
hands out were free, hence already dropped. Asked nothing when only one task is recorded.
"""
from __future__ import annotations

import os
import stat

from tracee.syscalls import queries
from tracee.syscalls.commands import AT_FDCWD, O_NONBLOCK
from tracee.syscalls.rules import Effect, Syscall
from tracee.task import Memory, MemoryAccessError

MEM_DEVICES = 1  # major number of /dev/null, zero, full, random, urandom: never wait


def _never_waits(st: os.stat_result) -> bool:
    mode = st.st_mode
    return (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISBLK(mode)
            or (stat.S_ISCHR(mode) and os.major(st.st_rdev) == MEM_DEVICES))


def _status_flags(tid: int, fd: int) -> int | None:
    try:
        with open(f"/proc/{tid}/fdinfo/{fd}", "rb") as f:
            for line in f:
                if line.startswith(b"flags:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return None


# Paths whose meaning depends on who asks: resolved here, they would name the recorder's own.
_SELF = (("/proc/self/", "/proc/{tid}/"), ("/proc/thread-self/", "/proc/{tid}/"),
         ("/dev/fd/", "/proc/{tid}/fd/"), ("/dev/stdin", "/proc/{tid}/fd/0"),
         ("/dev/stdout", "/proc/{tid}/fd/1"), ("/dev/stderr", "/proc/{tid}/fd/2"))


def _as_seen_by(tid: int, path: str) -> str:
    for prefix, own in _SELF:
        if path.startswith(prefix):
            return own.format(tid=tid) + path[len(prefix):]
    return path


class Descriptors:
    """What the recorded processes' descriptors are, as far as waiting goes (cached)."""

    def __init__(self) -> None:
        self._waits: dict[tuple[int, int], bool] = {}

    def fd_waits(self, pid: int, tid: int, fd: int) -> bool:
        """(pid keys the cache; the thread `tid` is asked: a process whose leader has exited
        has no descriptors under /proc/PID/fd, its other threads have them under theirs.)"""
        key = (pid, fd)
        known = self._waits.get(key)
        if known is not None:
            return known
        try:
            st = os.stat(f"/proc/{tid}/fd/{fd}")
        except FileNotFoundError:
            return False  # not open: the call fails at once (EBADF)
        except OSError:
            return True
        if _never_waits(st):
            waits = False
        else:
            flags = _status_flags(tid, fd)
            if flags is None:
                return True
            waits = not flags & O_NONBLOCK
        self._waits[key] = waits
        return waits

    @staticmethod
    def queue_waits(tid: int, fd: int) -> bool:
        if not os.path.lexists(f"/proc/{tid}/fd/{fd}"):
            return False  # not open: EBADF at once
        flags = _status_flags(tid, fd)
        return flags is None or not flags & O_NONBLOCK

    def opening_waits(self, tid: int, mem: Memory, dirfd: int, path_addr: int) -> bool:
        try:
            path = os.fsdecode(mem.read_cstring(path_addr))
        except MemoryAccessError:
            return False  # EFAULT
        if path.startswith("/"):
            where = f"/proc/{tid}/root{_as_seen_by(tid, path)}"
        elif dirfd == AT_FDCWD:
            where = f"/proc/{tid}/cwd/{path}"
        else:
            where = f"/proc/{tid}/fd/{dirfd}/{path}"
        try:
            st = os.stat(where)
        except OSError:
            return False  # the open fails the same way, or creates a regular file
        return stat.S_ISFIFO(st.st_mode) or not _never_waits(st)

    # -- keeping the cache true ---------------------------------------------------------------
    def after_call(self, pid: int, call: Syscall, args: tuple[int, ...], result: int) -> None:
        """A call of process `pid` returned `result`: drop what it may have changed."""
        if not self._waits or not call.effects or -4096 < result < 0:
            return
        if call.effects & Effect.FD_CLOSE:
            self._waits.pop((pid, queries.int_arg(args[0])), None)
        elif call.effects & Effect.FD_REPLACE:
            self._waits.pop((pid, queries.int_arg(args[1])), None)
        elif call.effects & Effect.FD_TABLE:
            self.forget(pid)
        elif queries.changes_status(call, args):
            self._waits.clear()

    def forget(self, pid: int) -> None:
        """Process `pid` exec'd, exited, or is new (a reused number)."""
        if self._waits:
            for key in [k for k in self._waits if k[0] == pid]:
                del self._waits[key]

    def forget_all(self) -> None:
        self._waits.clear()

    @property
    def empty(self) -> bool:
        return not self._waits


class CallingProcess:
    """The `queries.Process` of one call: the process of the task making it."""
    __slots__ = ("_fds", "_pid", "_tid", "_mem")

    def __init__(self, fds: Descriptors, pid: int, tid: int, mem: Memory) -> None:
        self._fds = fds
        self._pid = pid
        self._tid = tid
        self._mem = mem

    def fd_waits(self, fd: int) -> bool:
        return self._fds.fd_waits(self._pid, self._tid, fd)

    def queue_waits(self, fd: int) -> bool:
        return self._fds.queue_waits(self._tid, fd)

    def read_memory(self, addr: int, size: int) -> bytes | None:
        try:
            return self._mem.read(addr, size)
        except MemoryAccessError:
            return None

    def opening_waits(self, dirfd: int, path_addr: int) -> bool:
        return self._fds.opening_waits(self._tid, self._mem, dirfd, path_addr)


def may_block(fds: Descriptors, pid: int, tid: int, mem: Memory, call: Syscall,
              args: tuple[int, ...]) -> bool:
    if isinstance(call.may_block, bool):  # (most calls: no object made)
        return call.may_block
    return queries.may_block(call, args, CallingProcess(fds, pid, tid, mem))
