"""A digest of a process's writable memory: what identifies a point in a loop that registers
alone do not (the recorder stores it, replay compares it). Shared by both sides.

Only the program's memory counts: kernel mappings, the relive page and the recorder's scratch
areas (whose contents differ between record and replay) are left out, and adjacent ranges are
joined first so the digest does not depend on how the kernel happened to split or merge VMAs.
"""
from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterable, Sequence

from tracee.address_space import PROT_WRITE, AddressSpace, Flag, read_proc_maps
from tracee.remote import RELIVE_PAGE
from tracee.sysbuf import FEED as REPLAY_FEED

KERNEL_MAPS = ("[vdso]", "[vvar]", "[vsyscall]", "[vvar_vclock]")
PAGE = 4096
ZERO_PAGE = bytes(PAGE)
PM_PRESENT, PM_SWAPPED = 1 << 63, 1 << 62
PAGEMAP_CHUNK = 1 << 16  # page map entries read at a time


def writable_ranges(pid: int, skip: Iterable[tuple[int, int]] = ()) -> list[tuple[int, int]]:
    ranges: list[list[int]] = []
    for m in read_proc_maps(pid):
        if (m.prot & PROT_WRITE and m.path not in KERNEL_MAPS
                and m.start not in (RELIVE_PAGE, REPLAY_FEED)):  # (replay's alone: sysbuf)
            if ranges and ranges[-1][1] == m.start:
                ranges[-1][1] = m.end
            else:
                ranges.append([m.start, m.end])
    for lo, hi in skip:
        cut: list[list[int]] = []
        for start, end in ranges:
            if end <= lo or start >= hi:
                cut.append([start, end])
                continue
            if start < lo:
                cut.append([start, lo])
            if end > hi:
                cut.append([hi, end])
        ranges = cut
    return [(start, end) for start, end in ranges]


def scratch_ranges(space: AddressSpace | None) -> list[tuple[int, int]]:
    return [(m.start, m.end) for m in space.flagged(Flag.SCRATCH)] if space else []


def memory_digest(pid: int, read: Callable[[int, int], bytes],
                  skip: Iterable[tuple[int, int]] = ()) -> str:
    # Imported here, not at start-up: importing hashlib costs ~5 ms (OpenSSL), and most
    # recordings never digest memory.
    import hashlib
    h = hashlib.blake2b(digest_size=16)
    for start, end in writable_ranges(pid, skip):
        h.update(struct.pack("<QQ", start, end))
        h.update(read(start, end - start))
    return h.hexdigest()


def ranges_digest(read: Callable[[int, int], bytes], ranges: Iterable[Sequence[int]]) -> str:
    """A digest of a few (address, length) ranges: a cheap first test before
    `memory_digest` where a loop's registers repeat (its state is in memory they point to)."""
    import hashlib
    h = hashlib.blake2b(digest_size=8)
    for addr, length in ranges:
        h.update(read(addr, length))
    return h.hexdigest()


def state_digest(pid: int, read: Callable[[int, int], bytes]) -> str:
    """A digest of the process's writable memory for telling replayed states apart (not the
    recorded one, `memory_digest`, which the trace stores): every page that is not all
    zeros, with its address. Zero pages are left out, so an anonymous page the process never
    touched (a thread's 8 MiB stack is mostly such pages) need not be read: the kernel's
    page map says it is absent, and absent anonymous memory reads as zeros. Two states get
    the same digest exactly when their writable memory is the same, whichever pages a read
    by relive or gdb happened to bring in."""
    import hashlib
    h = hashlib.blake2b(digest_size=16)
    try:
        pagemap: int | None = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        pagemap = None
    try:
        for m in read_proc_maps(pid):
            if not m.prot & PROT_WRITE or m.path in KERNEL_MAPS or m.start == RELIVE_PAGE:
                continue
            anonymous = m.path is None or m.path.startswith("[")
            runs = (_present(pagemap, m.start, m.end) if anonymous and pagemap is not None
                    else [(m.start, m.end)])
            for lo, hi in runs:
                data = read(lo, hi - lo)
                for off in range(0, len(data), PAGE):
                    page = data[off:off + PAGE]
                    if page != ZERO_PAGE:
                        h.update(struct.pack("<Q", lo + off))
                        h.update(page)
    finally:
        if pagemap is not None:
            os.close(pagemap)
    return h.hexdigest()


def _present(pagemap: int, start: int, end: int) -> list[tuple[int, int]]:
    """The runs of pages in [start, end) that are present or swapped out (the others of an
    anonymous mapping read as zeros); all of it if the page map cannot be read."""
    runs: list[tuple[int, int]] = []
    for chunk in range(start, end, PAGEMAP_CHUNK * PAGE):
        first = chunk // PAGE
        count = (min(end, chunk + PAGEMAP_CHUNK * PAGE) - chunk) // PAGE
        try:
            raw = os.pread(pagemap, count * 8, first * 8)
        except OSError:
            return [(start, end)]
        if len(raw) != count * 8:
            return [(start, end)]
        for i, (entry,) in enumerate(struct.iter_unpack("<Q", raw)):
            if entry & (PM_PRESENT | PM_SWAPPED):
                addr = (first + i) * PAGE
                if runs and runs[-1][1] == addr:
                    runs[-1] = (runs[-1][0], addr + PAGE)
                else:
                    runs.append((addr, addr + PAGE))
    return runs
