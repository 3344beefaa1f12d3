"""A digest of a process's writable memory: what identifies a point in a loop that registers
alone do not (the recorder stores it, replay compares it). Shared by both sides.

Only the program's memory counts: kernel mappings, the relive page and the recorder's scratch
areas (whose contents differ between record and replay) are left out, and adjacent ranges are
joined first so the digest does not depend on how the kernel happened to split or merge VMAs.
"""
from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Sequence

from tracee.address_space import PROT_WRITE, AddressSpace, Flag, read_proc_maps
from tracee.remote import RELIVE_PAGE

KERNEL_MAPS = ("[vdso]", "[vvar]", "[vsyscall]", "[vvar_vclock]")


def writable_ranges(pid: int, skip: Iterable[tuple[int, int]] = ()) -> list[tuple[int, int]]:
    ranges: list[list[int]] = []
    for m in read_proc_maps(pid):
        if m.prot & PROT_WRITE and m.path not in KERNEL_MAPS and m.start != RELIVE_PAGE:
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
