"""Which pages of a process were written since a mark: what a preemption that replay jumps to
must carry (recorder.preempt).

A thread stopped where replay cannot find the point again by execution (an interpreter's eval
loop: every instruction runs millions of times a second) is recorded with the memory its
process wrote during the stretch plus its registers; replay writes them instead of running the
stretch. Only one recorded thread runs at a time and the stretch makes no syscall, so what
changed is exactly what the thread wrote: a superset of those pages (with their contents at
the point) gives the exact state by construction.

The kernel tracks the writes: a userfaultfd in write-protect *async* mode (Linux 6.7+) on every
writable mapping, read and re-armed with the PAGEMAP_SCAN ioctl of /proc/PID/pagemap (the
successor of soft-dirty bits, which this kernel family may lack: CONFIG_MEM_SOFT_DIRTY). A
write to a protected page costs one minor fault (~3 us here) the first time after each mark,
and the kernel resolves it itself: no thread is stopped. The userfaultfd is made by the tracee
(a syscall through the relive page, `userfaultfd` works on the caller's own address space),
taken over by the tracer with pidfd_getfd and closed in the tracee again before it runs: the
program never sees the descriptor. Tracking starts lazily, at the first point that needs it;
until then (and for mappings made since the last mark) every present page counts as written.

Knows nothing of traces; the caller says which ranges are relive's own (scratch areas).
"""
from __future__ import annotations

import ctypes
import fcntl
import os
import struct
from collections.abc import Iterable

from tracee import ptrace_api as api
from tracee.digest import Piece, writable_mappings
from tracee.pagemap import (PAGE_IS_FILE, PAGE_IS_PFNZERO, PAGE_IS_PRESENT, PAGE_IS_SWAPPED,
                            PAGE_IS_WPALLOWED, PAGE_IS_WRITTEN, PM_SCAN_WP_MATCHING, Scanner)
from tracee.remote import inject_syscall
from tracee.task import Task

NR_USERFAULTFD, NR_PIDFD_OPEN, NR_PIDFD_GETFD, NR_CLOSE = 323, 434, 438, 3
O_CLOEXEC, O_NONBLOCK, UFFD_USER_MODE_ONLY = 0o2000000, 0o4000, 1
UFFD_API = 0xAA
UFFD_FEATURE_WP_UNPOPULATED, UFFD_FEATURE_WP_ASYNC = 1 << 13, 1 << 15
UFFDIO_API = 0xC018AA3F       # _IOWR(0xAA, 0x3F, struct uffdio_api)
UFFDIO_REGISTER = 0xC020AA00  # _IOWR(0xAA, 0x00, struct uffdio_register)
UFFDIO_REGISTER_MODE_WP = 2
PAGE = 4096
ALL_SIGNALS = (1 << 64) - 1  # (the kernel never blocks SIGKILL and SIGSTOP)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

Ranges = list[tuple[int, int]]


class TrackingError(OSError):
    """The kernel cannot track the process's writes (no userfaultfd write-protect async mode,
    no PAGEMAP_SCAN, userfaultfd forbidden): the caller falls back to finding points by
    execution."""


def _syscall(nr: int, *args: int) -> int:
    res = int(_libc.syscall(nr, *[ctypes.c_long(a) for a in args]))
    if res < 0:
        err = ctypes.get_errno()
        raise TrackingError(err, os.strerror(err))
    return res


def _take_userfaultfd(task: Task) -> int:
    """A userfaultfd on `task`'s address space, as a descriptor of ours: made by the task
    (an injected syscall), copied with pidfd_getfd, closed in the task. Signals are blocked
    meanwhile (one arriving would stop a single-step into the relive page half-way) and the
    task's registers and mask are as before whatever happens."""
    saved, mask = task.regs_bytes(), api.get_sigmask(task.tid)
    api.set_sigmask(task.tid, ALL_SIGNALS)
    try:
        fd = inject_syscall(task, NR_USERFAULTFD, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY)
        if fd < 0:
            raise TrackingError(-fd, f"userfaultfd in the tracee: {os.strerror(-fd)}")
        try:
            pidfd = _syscall(NR_PIDFD_OPEN, task.pid, 0)
            try:
                return _syscall(NR_PIDFD_GETFD, pidfd, fd, 0)
            finally:
                os.close(pidfd)
        finally:
            inject_syscall(task, NR_CLOSE, fd)
    finally:
        task.set_regs_from(saved)
        task.flush_regs()
        api.set_sigmask(task.tid, mask)


class WrittenPages:
    """The pages one process (address space) wrote since the last `mark`. Made at a stop of
    one of its threads (`task`), whose registers are restored."""

    def __init__(self, task: Task) -> None:
        self.pid = task.pid
        self._uffd = -1
        self._scanner: Scanner | None = None
        self._uffd = _take_userfaultfd(task)
        try:
            api_arg = bytearray(struct.pack("<QQQ", UFFD_API, UFFD_FEATURE_WP_ASYNC
                                            | UFFD_FEATURE_WP_UNPOPULATED, 0))
            fcntl.ioctl(self._uffd, UFFDIO_API, api_arg)
            self._scanner = Scanner(task.pid)
        except OSError as e:
            self.close()
            raise TrackingError(e.errno or 0, f"userfaultfd write-protect: {e.strerror}") from e

    def close(self) -> None:
        if self._uffd >= 0:
            os.close(self._uffd)
            self._uffd = -1
        if self._scanner is not None:
            self._scanner.close()
            self._scanner = None

    def mark(self, skip: Iterable[tuple[int, int]] = ()) -> Ranges:
        """Page ranges written since the last mark (every present page of a mapping not
        tracked yet: all of them, the first time), then start a new period: every writable
        mapping is tracked and write-protected from here on. The process must be stopped."""
        assert self._scanner is not None
        maps = writable_mappings(self.pid, skip)
        if not maps:
            return []
        lo, hi = maps[0].start, maps[-1].end
        present = self._scanner.scan(lo, hi, anyof=PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
                                     returned=PAGE_IS_WPALLOWED | PAGE_IS_WRITTEN | PAGE_IS_FILE
                                     | PAGE_IS_PRESENT | PAGE_IS_SWAPPED | PAGE_IS_PFNZERO)
        written = _clip([(s, e, cat) for s, e, cat in present
                         if not cat & PAGE_IS_PFNZERO
                         and (cat & PAGE_IS_WRITTEN or not cat & PAGE_IS_WPALLOWED)], maps)
        self._register([m for m in maps if any(
            s < m.end and m.start < e and not cat & PAGE_IS_WPALLOWED for s, e, cat in present)])
        self._scanner.scan(lo, hi, flags=PM_SCAN_WP_MATCHING, mask=PAGE_IS_WRITTEN,
                           returned=PAGE_IS_WRITTEN)
        return written

    def _register(self, maps: list[Piece]) -> None:
        """Track mappings whose pages are not tracked yet (new since the last mark). One the
        kernel refuses stays untracked: its present pages count as written at each mark."""
        for m in maps:
            arg = bytearray(struct.pack("<QQQQ", m.start, m.end - m.start,
                                        UFFDIO_REGISTER_MODE_WP, 0))
            try:
                fcntl.ioctl(self._uffd, UFFDIO_REGISTER, arg)
            except OSError:
                continue


def _clip(regions: list[tuple[int, int, int]], maps: list[Piece]) -> Ranges:
    """`regions` cut to the program's writable mappings, joined where adjacent; a private
    file mapping's pages that are still the file's (never written: a write copies them)
    left out."""
    out: Ranges = []
    i = 0
    for s, e, cat in sorted(regions):
        while i < len(maps) and maps[i].end <= s:
            i += 1
        j = i
        while j < len(maps) and maps[j].start < e:
            lo, hi = max(s, maps[j].start), min(e, maps[j].end)
            if lo < hi and not (maps[j].private_file and cat & PAGE_IS_FILE):
                if out and out[-1][1] == lo:
                    out[-1] = (out[-1][0], hi)
                else:
                    out.append((lo, hi))
            j += 1
    return out
