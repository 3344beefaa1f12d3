"""Which pages of a process are there: the kernel's page map (/proc/PID/pagemap), asked with
the PAGEMAP_SCAN ioctl (Linux 6.7+), which walks the page tables and skips what was never
touched, so a sanitizer's terabytes of reserved shadow cost no more than the pages in it.

Kernels without the ioctl get the page map read entry by entry: exact, but its cost grows
with the size of the mappings asked about (8 bytes a page).
"""
from __future__ import annotations

import ctypes
import errno
import os
import struct

PAGEMAP_SCAN = 0xC0606610     # _IOWR('f', 16, struct pm_scan_arg)
PM_SCAN_WP_MATCHING = 1
PAGE_IS_WPALLOWED, PAGE_IS_WRITTEN, PAGE_IS_FILE = 1 << 0, 1 << 1, 1 << 2
PAGE_IS_PRESENT, PAGE_IS_SWAPPED, PAGE_IS_PFNZERO = 1 << 3, 1 << 4, 1 << 5
SCAN_ARG = struct.Struct("<12Q")
VEC_LEN = 4096  # page regions per PAGEMAP_SCAN call
PAGE = 4096
PM_PRESENT, PM_SWAPPED = 1 << 63, 1 << 62
PAGEMAP_CHUNK = 1 << 16  # page map entries read at a time without the ioctl

_libc = ctypes.CDLL(None, use_errno=True)
_libc.ioctl.restype = ctypes.c_int
_libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]


class PagemapError(OSError):
    """The page map cannot be asked (no PAGEMAP_SCAN, the process is gone)."""


class Scanner:
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
                raise PagemapError(err, f"PAGEMAP_SCAN: {os.strerror(err)}")
            regions.extend((vec[3 * i], vec[3 * i + 1], vec[3 * i + 2]) for i in range(n))
            walk_end = SCAN_ARG.unpack_from(self._arg, 0)[4]
            if n < VEC_LEN or walk_end <= start:
                break
            start = walk_end
        return regions

    def present(self, start: int, end: int) -> list[tuple[int, int]]:
        """The runs of pages in [start, end) that are present or swapped out: the others of
        an anonymous mapping read as zeros."""
        try:
            return [(s, e) for s, e, _ in self.scan(
                start, end, anyof=PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
                returned=PAGE_IS_PRESENT | PAGE_IS_SWAPPED)]
        except PagemapError as e:
            if e.errno not in (errno.ENOTTY, errno.EINVAL, errno.EOPNOTSUPP):
                raise
        return self._present_by_entries(start, end)

    def _present_by_entries(self, start: int, end: int) -> list[tuple[int, int]]:
        runs: list[tuple[int, int]] = []
        for chunk in range(start, end, PAGEMAP_CHUNK * PAGE):
            first = chunk // PAGE
            count = (min(end, chunk + PAGEMAP_CHUNK * PAGE) - chunk) // PAGE
            raw = os.pread(self.fd, count * 8, first * 8)
            if len(raw) != count * 8:
                raise PagemapError(errno.EIO, "short read of the page map")
            for i, (entry,) in enumerate(struct.iter_unpack("<Q", raw)):
                if entry & (PM_PRESENT | PM_SWAPPED):
                    addr = (first + i) * PAGE
                    if runs and runs[-1][1] == addr:
                        runs[-1] = (runs[-1][0], addr + PAGE)
                    else:
                        runs.append((addr, addr + PAGE))
        return runs
