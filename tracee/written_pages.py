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
from tracee.address_space import PROT_WRITE, read_proc_maps
from tracee.digest import KERNEL_MAPS
from tracee.remote import RELIVE_PAGE, inject_syscall
from tracee.task import Task

NR_USERFAULTFD, NR_PIDFD_OPEN, NR_PIDFD_GETFD, NR_CLOSE = 323, 434, 438, 3
O_CLOEXEC, O_NONBLOCK, UFFD_USER_MODE_ONLY = 0o2000000, 0o4000, 1
UFFD_API = 0xAA
UFFD_FEATURE_WP_UNPOPULATED, UFFD_FEATURE_WP_ASYNC = 1 << 13, 1 << 15
UFFDIO_API = 0xC018AA3F       # _IOWR(0xAA, 0x3F, struct uffdio_api)
UFFDIO_REGISTER = 0xC020AA00  # _IOWR(0xAA, 0x00, struct uffdio_register)
UFFDIO_REGISTER_MODE_WP = 2
PAGEMAP_SCAN = 0xC0606610     # _IOWR('f', 16, struct pm_scan_arg)
PM_SCAN_WP_MATCHING = 1
PAGE_IS_WPALLOWED, PAGE_IS_WRITTEN, PAGE_IS_FILE = 1 << 0, 1 << 1, 1 << 2
PAGE_IS_PRESENT, PAGE_IS_SWAPPED, PAGE_IS_PFNZERO = 1 << 3, 1 << 4, 1 << 5
SCAN_ARG = struct.Struct("<12Q")
VEC_LEN = 4096  # page regions per PAGEMAP_SCAN call
PAGE = 4096
ALL_SIGNALS = (1 << 64) - 1  # (the kernel never blocks SIGKILL and SIGSTOP)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.ioctl.restype = ctypes.c_int
_libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]

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


def writable_mappings(pid: int, skip: Iterable[tuple[int, int]]) -> list[tuple[int, int, bool]]:
    """(start, end, private file mapping?) of the program's writable memory: not the kernel's
    mappings, the relive page or the ranges in `skip` (relive's scratch areas)."""
    cuts = sorted(skip)
    out: list[tuple[int, int, bool]] = []
    for m in read_proc_maps(pid):
        if not m.prot & PROT_WRITE or m.path in KERNEL_MAPS or m.start == RELIVE_PAGE:
            continue
        private_file = not m.shared and m.path is not None and not m.path.startswith("[")
        pieces = [(m.start, m.end)]
        for lo, hi in cuts:
            pieces = [p for s, e in pieces for p in ((s, min(e, lo)), (max(s, hi), e))
                      if p[0] < p[1]]
        out.extend((s, e, private_file) for s, e in pieces)
    return out


class _Scanner:
    """PAGEMAP_SCAN on one process's /proc/PID/pagemap."""

    def __init__(self, pid: int) -> None:
        self.fd = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY | os.O_CLOEXEC)
        self._vec = (ctypes.c_uint64 * (3 * VEC_LEN))()
        self._arg = ctypes.create_string_buffer(SCAN_ARG.size)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def scan(self, start: int, end: int, *, flags: int = 0, mask: int = 0, anyof: int = 0,
             returned: int = 0) -> list[tuple[int, int, int]]:
        """(start, end, categories) of the pages in [start, end) that have every category of
        `mask` and one of `anyof`; with PM_SCAN_WP_MATCHING, those are write-protected
        again (the mark)."""
        regions: list[tuple[int, int, int]] = []
        vec = self._vec
        while start < end:
            SCAN_ARG.pack_into(self._arg, 0, SCAN_ARG.size, flags, start, end, 0,
                               ctypes.addressof(vec), VEC_LEN, 0, 0, mask, anyof, returned)
            n = _libc.ioctl(self.fd, PAGEMAP_SCAN, ctypes.addressof(self._arg))
            if n < 0:
                err = ctypes.get_errno()
                raise TrackingError(err, f"PAGEMAP_SCAN: {os.strerror(err)}")
            regions.extend((vec[3 * i], vec[3 * i + 1], vec[3 * i + 2]) for i in range(n))
            walk_end = SCAN_ARG.unpack_from(self._arg, 0)[4]
            if n < VEC_LEN or walk_end <= start:
                break
            start = walk_end
        return regions


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
        self._scanner: _Scanner | None = None
        self._uffd = _take_userfaultfd(task)
        try:
            api_arg = bytearray(struct.pack("<QQQ", UFFD_API, UFFD_FEATURE_WP_ASYNC
                                            | UFFD_FEATURE_WP_UNPOPULATED, 0))
            fcntl.ioctl(self._uffd, UFFDIO_API, api_arg)
            self._scanner = _Scanner(task.pid)
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
        lo, hi = maps[0][0], maps[-1][1]
        present = self._scanner.scan(lo, hi, anyof=PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
                                     returned=PAGE_IS_WPALLOWED | PAGE_IS_WRITTEN | PAGE_IS_FILE
                                     | PAGE_IS_PRESENT | PAGE_IS_SWAPPED | PAGE_IS_PFNZERO)
        written = _clip([(s, e, cat) for s, e, cat in present
                         if not cat & PAGE_IS_PFNZERO
                         and (cat & PAGE_IS_WRITTEN or not cat & PAGE_IS_WPALLOWED)], maps)
        self._register([m for m in maps if any(
            s < m[1] and m[0] < e and not cat & PAGE_IS_WPALLOWED for s, e, cat in present)])
        self._scanner.scan(lo, hi, flags=PM_SCAN_WP_MATCHING, mask=PAGE_IS_WRITTEN,
                           returned=PAGE_IS_WRITTEN)
        return written

    def _register(self, maps: list[tuple[int, int, bool]]) -> None:
        """Track mappings whose pages are not tracked yet (new since the last mark). One the
        kernel refuses stays untracked: its present pages count as written at each mark."""
        for start, end, _ in maps:
            arg = bytearray(struct.pack("<QQQQ", start, end - start,
                                        UFFDIO_REGISTER_MODE_WP, 0))
            try:
                fcntl.ioctl(self._uffd, UFFDIO_REGISTER, arg)
            except OSError:
                continue


def _clip(regions: list[tuple[int, int, int]], maps: list[tuple[int, int, bool]]) -> Ranges:
    """`regions` cut to the program's writable mappings, joined where adjacent; a private
    file mapping's pages that are still the file's (never written: a write copies them)
    left out."""
    out: Ranges = []
    i = 0
    for s, e, cat in sorted(regions):
        while i < len(maps) and maps[i][1] <= s:
            i += 1
        j = i
        while j < len(maps) and maps[j][0] < e:
            lo, hi = max(s, maps[j][0]), min(e, maps[j][1])
            if lo < hi and not (maps[j][2] and cat & PAGE_IS_FILE):
                if out and out[-1][1] == lo:
                    out[-1] = (out[-1][0], hi)
                else:
                    out.append((lo, hi))
            j += 1
    return out
