"""The syscall buffer's descriptor bitmap: which descriptors the hook may read and write
without a stop (tracee.sysbuf FDS; the catalogue's `buffered=OnFile`).

A bit is set only while its descriptor is open on a regular file that is not on a pseudo
file system (/proc, /sys, FUSE... whose reads the recorder fakes or that may wait for a
recorded task) and none of the watched files (relive's stdout and stderr, whose writes are
replayed as output; files ever mapped, whose mappings a write changes). A read or write of
anything else (a pipe, a socket, a terminal: it may block) takes the traced path.

Kept exact by the recorder, which sees every call that could make a set bit wrong: a
descriptor is only ever made at a free number (its bit cleared when it was freed) except by
dup2/dup3, so the calls to follow are those that open a regular file (open, openat,
openat2, creat), duplicate one (dup, dup2, dup3, fcntl F_DUPFD) or free numbers (close,
close_range); exec starts from a bitmap made from /proc/PID/fd. A close the hook makes
clears the bit in the hook (tracee/sysbuf_hook.c FD_FREES: replay runs the same code).
The compiled record loop keeps it too for the calls it records (tracee/fastloop.c
fds_after; close_range it leaves to Python). Every other change is a write of the event of
the call that made it, so replay's hook decides as the recorded one did (a missed write
diverges there, never silently).

The hook also sets bits itself, at the opens of regular files it makes (sysbuf_hook.c
open_file), from buffered fstat/fstatfs results and the watched table this module keeps
in the buffer's mapping (`table_writes`: relive's outputs and the files ever mapped, and
the pid whose descriptor table the bitmap describes), each change a write of an event.

A thread sharing the address space but not the descriptor table (a vfork child) only
clears the bits of the numbers it changes (the hook's opens there set none: its pid is
not the table's owner): the bitmap stays true for the table it was made for, and for the
child every bit it could rely on is one it never changed. Once the child has exec'd or
ended, the bits it cleared are set again from /proc/PID/fd at the next syscall event of the
parent's space the recorder handles (`reseed`: a spawning parent such as Python's
subprocess, whose child closes every descriptor above 2, otherwise read and wrote its files
with a stop each from then on, e.g. pytest's capture files). A table
shared by two address spaces (clone CLONE_FILES without CLONE_VM) stops bits from being
set in both: bits set before the clone stay (left alone, see docs/architecture.md 3b).
"""
from __future__ import annotations

import ctypes
import logging
import os
import stat
import struct
import weakref
from collections.abc import Callable, Iterable

from tracee import sysbuf
from tracee.address_space import AddressSpace
from tracee.syscalls.queries import DESCRIPTOR_CHANGERS, DUPS_FD, OPENS
from tracee.task import MemoryAccessError, Task

log = logging.getLogger(__name__)
Write = tuple[int, bytes]
_WORD = struct.Struct("<Q")
F_DUPFD, F_DUPFD_CLOEXEC = 0, 1030
CLOSE_RANGE_CLOEXEC = 4
CLONE_VM, CLONE_FILES = 0x100, 0x400
CLOSE_RANGE_UNSHARE = 2
# statfs f_type of file systems whose "regular" files are not plain data (tracee/fastloop.c
# PSEUDO_FS has the same list): proc, sysfs, debugfs, tracefs, securityfs, cgroup, cgroup2,
# configfs, efivarfs, pstore, bpf, fusectl, fuse (its server may be a recorded task),
# binfmt_misc, selinuxfs.
PSEUDO_FS = frozenset({0x9FA0, 0x62656572, 0x64626720, 0x74726163, 0x73636673, 0x27E0EB,
                       0x63677270, 0x62656570, 0xDE5E81E4, 0x6165676C, 0xCAFE4A11,
                       0x65735543, 0x65735546, 0x42494E4D, 0xF97CFF8C})


NR_CLOSE, NR_FCNTL, NR_OPENAT = 3, 72, 257
_ARG1 = struct.Struct("<8xQ")


def closes_or_makes(nr: int, regs: bytes) -> bool:
    """Does a buffered call (number, its BUFFERED event's "registers": the arguments) close
    or make a descriptor? The hook clears a closed descriptor's bit itself, makes openat
    of a directory and fcntl F_DUPFD only for descriptors without a bit (tracee/
    sysbuf_hook.c FD_FREES, FD_CLEAR) and sets the bit of a regular file it opens
    (open_file): the bitmap is right, but what else the recorder knows of that number
    may not be (tracee/fastloop.c counts the same calls)."""
    if nr == NR_FCNTL:
        return _ARG1.unpack_from(regs)[0] & 0xFFFF_FFFF in (F_DUPFD, F_DUPFD_CLOEXEC)
    return nr in (NR_CLOSE, NR_OPENAT)


class FdBits:
    """The recorder's side of the bitmap (one per recording)."""

    def __init__(self, watched: Callable[[], Iterable[tuple[int, int]]]) -> None:
        self.on = False  # the buffer is on (recorder.sysbuf_record.SyscallBuffer.on)
        self.watched = watched  # recorder.syscall_effects.EffectRecorder.watched_files
        self._shared_table: weakref.WeakSet[AddressSpace] = weakref.WeakSet()
        self._borrowers: set[int] = set()  # tids sharing a space, not its table
        self._lent: dict[int, AddressSpace] = {}  # vfork child tid -> the space it shares
        self._stale: weakref.WeakSet[AddressSpace] = weakref.WeakSet()  # bits a child cleared
        # what each space's watched table holds: (owner, the watched tuple written)
        self._tables: weakref.WeakKeyDictionary[AddressSpace, tuple[int, tuple[
            tuple[int, int], ...]]] = weakref.WeakKeyDictionary()

    def may_set(self, tid: int, space: AddressSpace) -> bool:
        """Can `tid`'s calls set bits in `space`'s bitmap (else they only clear)?"""
        return tid not in self._borrowers and space not in self._shared_table

    # -- events of the recording -----------------------------------------------------------
    def seed(self, task: Task) -> list[Write]:
        """A fresh image (bitmap clear): the bits of the descriptors it inherited."""
        if not self.on:
            return []
        words: dict[int, int] = {}
        try:
            fds = [int(n) for n in os.listdir(f"/proc/{task.tid}/fd")]
        except (OSError, ValueError):
            return []
        for fd in fds:
            if 0 <= fd < sysbuf.FDS_MAX and self.plain_file(task.tid, fd):
                words[fd // 64] = words.get(fd // 64, 0) | 1 << fd % 64
        return self._write(task, {w: (0, v) for w, v in words.items()})

    def cloned(self, space: AddressSpace, child_tid: int, child_space: AddressSpace,
               flags: int) -> None:
        if flags & CLONE_VM and not flags & CLONE_FILES:
            self._borrowers.add(child_tid)
            self._lent[child_tid] = space
            self._stale.add(space)  # (it may clear bits by any path: the hook, the loop)
        elif flags & CLONE_FILES and not flags & CLONE_VM:
            log.debug("descriptor table shared by two address spaces: no more buffered "
                      "reads and writes of newly opened files there")
            self._shared_table.add(space)
            self._shared_table.add(child_space)
        elif space in self._shared_table:
            self._shared_table.add(child_space)

    def table_writes(self, task: Task, space: AddressSpace) -> list[Write]:
        """The watched table of `space` (tracee/sysbuf_hook.c struct watch: the hook sets
        no bit for these files, nor in any process but the owner), written if it is not
        what the hook must see now: the owner is `task`'s process (none if its descriptor
        table is shared with another address space; a vfork child writes nothing: the
        table stays its parent's). Called at every event the Python path writes of a
        stopped call and at exec, so a file mapped by another process is in the table
        from this space's next such event on."""
        if not self.on or task.tid in self._borrowers:
            return []
        owner = 0 if space in self._shared_table else task.pid
        files = self.watched()
        files = files if isinstance(files, tuple) else tuple(files)
        now = self._tables.get(space)
        if now is not None and now[0] == owner and (now[1] is files or now[1] == files):
            return []
        if len(files) > sysbuf.WATCH_MAX:  # (too many: the hook sets no bit)
            data = struct.pack("<QQ", owner, sysbuf.WATCH_MAX + 1)
        else:
            data = struct.pack(f"<QQ{2 * len(files)}Q", owner, len(files),
                               *(v for f in files for v in f))
        try:
            if task.mem.write(sysbuf.WATCH, data) != len(data):
                return []
        except (MemoryAccessError, OSError):
            return []
        self._tables[space] = (owner, files)
        return [(sysbuf.WATCH, data)]

    def gone(self, tid: int) -> None:
        """`tid` exec'd (its own table and space now) or ended."""
        self._borrowers.discard(tid)
        self._lent.pop(tid, None)

    def reseed(self, task: Task, space: AddressSpace) -> list[Write]:
        """At a syscall event of `task`: if a vfork child that shared `space` cleared bits
        and is gone, the bits of the descriptors open now (the event's writes)."""
        if (not self.on or space not in self._stale or not self.may_set(task.tid, space)
                or any(s is space for s in self._lent.values())):
            return []
        self._stale.discard(space)
        try:
            fds = [int(n) for n in os.listdir(f"/proc/{task.tid}/fd")]
        except (OSError, ValueError):
            return []
        words = dict.fromkeys(range(sysbuf.FDS_MAX // 64), 0)
        for fd in fds:
            if 0 <= fd < sysbuf.FDS_MAX and self.plain_file(task.tid, fd):
                words[fd // 64] |= 1 << fd % 64
        try:
            raw = task.mem.read(sysbuf.FDS, sysbuf.FDS_MAX // 8)
        except (OSError, MemoryAccessError):
            return []
        now = [v for (v,) in _WORD.iter_unpack(raw)]
        return self._write(task, {w: ((1 << 64) - 1, v) for w, v in words.items()
                                  if w < len(now) and now[w] != v})

    def after_call(self, task: Task, space: AddressSpace, name: str, args: tuple[int, ...],
                   result: int) -> list[Write]:
        """The bitmap after syscall `name` returned `result`: the writes made (to go into the
        call's event)."""
        if not self.on or name not in DESCRIPTOR_CHANGERS:
            return []
        may_set = self.may_set(task.tid, space)
        changes: dict[int, tuple[int, int]] = {}  # word -> (bits to clear, bits to set)

        def put(fd: int, on: bool) -> None:
            if 0 <= fd < sysbuf.FDS_MAX:
                clear, put_on = changes.get(fd // 64, (0, 0))
                bit = 1 << fd % 64
                changes[fd // 64] = (clear | bit, put_on | bit if on and may_set else put_on)

        fd = args[0] & 0xFFFF_FFFF
        if name == "close_range" and result == 0 and args[2] & CLOSE_RANGE_UNSHARE:
            self._borrowers.add(task.tid)  # its own table now, not its space's others'
        if name in OPENS and result >= 0:
            put(result, self.plain_file(task.tid, result))
        elif (name in DUPS_FD or name == "fcntl" and args[1] & 0xFFFF_FFFF in (
                F_DUPFD, F_DUPFD_CLOEXEC)) and result >= 0 and result != fd:
            put(result, self.bit(task, fd))
        elif name == "close":
            put(fd, False)
        elif name == "close_range" and not args[2] & CLOSE_RANGE_CLOEXEC and result == 0:
            last = min(args[1] & 0xFFFF_FFFF, sysbuf.FDS_MAX - 1)
            for word in range(fd // 64, last // 64 + 1):
                lo, hi = max(fd, word * 64), min(last, word * 64 + 63)
                changes[word] = (((1 << (hi - lo + 1)) - 1) << lo % 64, 0)
        elif name == "mmap" and result >= 0 and not args[3] & 0x20:  # (not MAP_ANONYMOUS)
            changes = self._mapped(task, args[4] & 0xFFFF_FFFF)
        return self._write(task, changes) if changes else []

    # -- the bitmap in the tracee ------------------------------------------------------------
    def bit(self, task: Task, fd: int) -> bool:
        if not 0 <= fd < sysbuf.FDS_MAX:
            return False
        try:
            return bool(task.mem.read_u64(sysbuf.fd_word(fd)) >> fd % 64 & 1)
        except (MemoryAccessError, OSError):
            return False

    def _mapped(self, task: Task, fd: int) -> dict[int, tuple[int, int]]:
        """A file now mapped is watched from now on (its writes change the mapping): the
        bits of every descriptor open on it are cleared."""
        try:
            st = os.stat(f"/proc/{task.tid}/fd/{fd}")
            raw = task.mem.read(sysbuf.FDS, sysbuf.FDS_MAX // 8)
        except (OSError, MemoryAccessError):
            return {}
        ident = (st.st_dev, st.st_ino)
        changes: dict[int, tuple[int, int]] = {}
        if raw.count(0) == len(raw):
            return changes  # (no bit set: the usual case, libraries mapped at start)
        for word, (value,) in enumerate(_WORD.iter_unpack(raw)):
            while value:
                low = value & -value
                value ^= low
                other = word * 64 + low.bit_length() - 1
                try:
                    ost = os.stat(f"/proc/{task.tid}/fd/{other}")
                except OSError:
                    continue
                if (ost.st_dev, ost.st_ino) == ident:
                    changes[word] = (changes.get(word, (0, 0))[0] | low, 0)
        return changes

    def _write(self, task: Task, changes: dict[int, tuple[int, int]]) -> list[Write]:
        writes: list[Write] = []
        for word, (clear, put_on) in sorted(changes.items()):
            addr = sysbuf.FDS + word * 8
            try:
                old = task.mem.read_u64(addr)
            except (MemoryAccessError, OSError):
                continue
            new = old & ~clear | put_on
            if new != old:
                data = _WORD.pack(new)
                if task.mem.write(addr, data) == len(data):
                    writes.append((addr, data))
        return writes

    def plain_file(self, tid: int, fd: int) -> bool:
        """Is descriptor `fd` of process `pid` open on a regular file whose reads and writes
        need nothing but their results (and the bytes read) recorded? (Asked of thread
        `tid`: a process whose leader exited has no descriptors under /proc/PID/fd.)"""
        path = f"/proc/{tid}/fd/{fd}"
        try:
            st = os.stat(path)
        except OSError:
            return False
        return (stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) not in self.watched()
                and fs_type(path) not in PSEUDO_FS)


class _StatFs(ctypes.Structure):
    _fields_ = [("f_type", ctypes.c_long), ("rest", ctypes.c_long * 15)]


_libc: ctypes.CDLL | None = None


def fs_type(path: str) -> int:
    """statfs(path).f_type (if it fails: /proc's, never a plain file system)."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)  # (find_library runs ldconfig: ms)
    buf = _StatFs()
    if _libc.statfs(os.fsencode(path), ctypes.byref(buf)) != 0:
        return 0x9FA0  # unknown: as /proc (never buffered)
    return int(buf.f_type)
