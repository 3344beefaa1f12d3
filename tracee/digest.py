"""Digests of a process's writable memory: what identifies a point in a loop that registers
alone do not (the recorder stores one, replay compares), and what tells replayed states apart.
Shared by both sides.

Only the program's memory counts: kernel mappings, relive's own area (tracee.remote) and the
recorder's scratch areas (whose contents differ between record and replay) are left out.
Pages that hold only zeros are left out too, so an anonymous page the process never touched
need not be read: the kernel's page map (tracee.pagemap) says it is absent, and absent
anonymous memory reads as zeros. That keeps a digest's cost to the memory the program uses,
not the memory it reserved (ThreadSanitizer reserves ~35 TB of shadow), and makes it the same
whichever pages a read by relive or gdb happened to bring in.

A recorded digest is marked with its kind (DIGEST_KIND); one without the mark comes from a
trace made before, when every byte of every writable range was read (`matches_recorded` still checks
those the old way).

The digest of a thread's point (STACK_KIND) leaves out that thread's dead stack too: below its
red zone, which the ABI lets anything overwrite at any time. Code that ran earlier left bytes
there that no execution can be relied on to repeat: glibc's lazy binding
(_dl_runtime_resolve_xsavec) saves the vector registers there with XSAVEC, whose header says
which register sets the CPU holds "in use", and that depends on whether the kernel switched
the thread out meanwhile (a SIGALRM at the return of a function failed to be found again in
replay for one flipped bit 2 KB below rsp).
"""
from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, NamedTuple

from tracee.address_space import PROT_WRITE, AddressSpace, Flag, read_proc_maps
from tracee.pagemap import PagemapError, Scanner
from tracee.remote import RELIVE_AREA_SIZE, RELIVE_PAGE

KERNEL_MAPS = ("[vdso]", "[vvar]", "[vsyscall]", "[vvar_vclock]")
PAGE = 4096
ZERO_PAGE = bytes(PAGE)
READ_CHUNK = 1 << 24  # bytes read at a time
DIGEST_KIND = "p:"  # a recorded digest of the non-zero pages (memory_digest)
STACK_KIND = "s:"   # the same but for the dead stack of the thread at the point
RED_ZONE = 128      # bytes below rsp a function may use without moving rsp (x86-64 ABI)

Read = Callable[[int, int], bytes]

if TYPE_CHECKING:
    from hashlib import blake2b


class Piece(NamedTuple):
    """A writable mapping of the program's, or the part of one outside the ranges skipped."""
    start: int
    end: int
    private_file: bool  # a private mapping of a file: an absent page reads from the file
    anonymous: bool     # an absent page reads as zeros


def _without_relive_area(skip: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """`skip` and relive's area (the syscall buffer's records are relive's business: replay
    may hold other bytes there than the recording did)."""
    return [*skip, (RELIVE_PAGE, RELIVE_PAGE + RELIVE_AREA_SIZE)]


def writable_mappings(pid: int, skip: Iterable[tuple[int, int]] = ()) -> list[Piece]:
    """The program's writable memory: not the kernel's mappings, the relive page or the
    ranges in `skip` (relive's scratch areas)."""
    cuts = sorted(skip)
    out: list[Piece] = []
    for m in read_proc_maps(pid):
        if not m.prot & PROT_WRITE or m.path in KERNEL_MAPS or m.start == RELIVE_PAGE:
            continue
        file = m.path is not None and not m.path.startswith("[")
        pieces = [(m.start, m.end)]
        for lo, hi in cuts:
            pieces = [p for s, e in pieces for p in ((s, min(e, lo)), (max(s, hi), e))
                      if p[0] < p[1]]
        out.extend(Piece(s, e, file and not m.shared, not file) for s, e in pieces)
    return out


def scratch_ranges(space: AddressSpace | None) -> list[tuple[int, int]]:
    return [(m.start, m.end) for m in space.flagged(Flag.SCRATCH)] if space else []


def memory_digest(pid: int, read: Read, skip: Iterable[tuple[int, int]] = (),
                  rsp: int | None = None) -> str:
    """The digest a trace stores for a point: the extent of the program's writable memory
    (adjacent mappings joined, so it does not depend on how the kernel split or merged
    them) and its non-zero pages with their addresses. With `rsp` (the thread's at the
    point), its dead stack is left out (STACK_KIND)."""
    # Imported here, not at start-up: importing hashlib costs ~5 ms (OpenSSL), and most
    # recordings never digest memory.
    import hashlib
    h = hashlib.blake2b(digest_size=16)
    skip = [*skip, *dead_stack(pid, rsp)] if rsp is not None else skip
    pieces = writable_mappings(pid, _without_relive_area(skip))
    for start, end in _joined((p.start, p.end) for p in pieces):
        h.update(struct.pack("<QQ", start, end))
    _hash_pages(h, pid, read, pieces)
    return (DIGEST_KIND if rsp is None else STACK_KIND) + h.hexdigest()


def matches_recorded(pid: int, read: Read, recorded: str,
                     skip: Iterable[tuple[int, int]] = (), rsp: int = 0) -> bool:
    """Whether the process's memory has the digest a trace recorded (of any kind; `rsp`:
    the thread's, equal to the recorded one)."""
    if recorded.startswith(STACK_KIND):
        return memory_digest(pid, read, skip, rsp) == recorded
    if recorded.startswith(DIGEST_KIND):
        return memory_digest(pid, read, skip) == recorded
    return _legacy_digest(pid, read, skip) == recorded


def dead_stack(pid: int, rsp: int) -> list[tuple[int, int]]:
    """The part of the mapping holding `rsp` below the red zone: memory the thread has
    given up, whose contents no replay can be sure to repeat (see the module)."""
    for m in read_proc_maps(pid):
        if m.start <= rsp < m.end or m.end == rsp:
            return [(m.start, rsp - RED_ZONE)] if rsp - RED_ZONE > m.start else []
    return []


def ranges_digest(read: Read, ranges: Iterable[Sequence[int]]) -> str:
    """A digest of a few (address, length) ranges: a cheap first test before
    `memory_digest` where a loop's registers repeat (its state is in memory they point to)."""
    import hashlib
    h = hashlib.blake2b(digest_size=8)
    for addr, length in ranges:
        h.update(read(addr, length))
    return h.hexdigest()


def state_digest(pid: int, read: Read, rsp: int | None = None) -> str:
    """A digest of the process's writable memory for telling replayed states apart (not
    the recorded one): its non-zero pages with their addresses (but the dead stack below
    `rsp`, the thread's). Two states get the same digest exactly when that memory is the
    same."""
    import hashlib
    h = hashlib.blake2b(digest_size=16)
    skip = dead_stack(pid, rsp) if rsp is not None else []
    _hash_pages(h, pid, read, writable_mappings(pid, _without_relive_area(skip)))
    return h.hexdigest()


def _hash_pages(h: blake2b, pid: int, read: Read, pieces: list[Piece]) -> None:
    """Feed `h` every non-zero page of `pieces` with its address. Of an anonymous mapping
    only the pages the page map says are there are read."""
    try:
        scanner: Scanner | None = Scanner(pid)
    except OSError:
        scanner = None
    try:
        for piece in pieces:
            runs = (scanner.present(piece.start, piece.end)
                    if piece.anonymous and scanner is not None else [(piece.start, piece.end)])
            for lo, hi in runs:  # (the page map's runs are whole pages: cut to the piece)
                _hash_run(h, read, max(lo, piece.start), min(hi, piece.end))
    except PagemapError as e:
        raise OSError(e.errno, f"the page map of process {pid}: {e.strerror}") from e
    finally:
        if scanner is not None:
            scanner.close()


def _hash_run(h: blake2b, read: Read, lo: int, hi: int) -> None:
    """Feed `h` the parts of [lo, hi) that are not all zeros, cut at page boundaries (so
    the parts do not depend on where the run started: a piece may start inside a page, as
    a dead stack's end does), each with its address."""
    at = lo
    while at < hi:
        end = min(hi, (at // READ_CHUNK + 1) * READ_CHUNK)
        data = memoryview(read(at, end - at))
        off = 0
        while off < len(data):
            n = min(len(data) - off, PAGE - (at + off) % PAGE)
            part = data[off:off + n]
            if part != (ZERO_PAGE if n == PAGE else bytes(n)):
                h.update(struct.pack("<Q", at + off))
                h.update(part)
            off += n
        at = end


def _joined(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for start, end in ranges:
        if out and out[-1][1] == start:
            out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


def _legacy_digest(pid: int, read: Read, skip: Iterable[tuple[int, int]]) -> str:
    """The digest traces stored before DIGEST_KIND: every byte of the writable ranges, with
    only the relive page itself left out."""
    import hashlib
    h = hashlib.blake2b(digest_size=16)
    ranges = _joined((m.start, m.end) for m in read_proc_maps(pid)
                     if m.prot & PROT_WRITE and m.path not in KERNEL_MAPS
                     and m.start != RELIVE_PAGE)
    for lo, hi in skip:
        ranges = [p for s, e in ranges for p in ((s, min(e, lo)), (max(s, hi), e))
                  if p[0] < p[1]]
    for start, end in ranges:
        h.update(struct.pack("<QQ", start, end))
        for at in range(start, end, READ_CHUNK):
            h.update(read(at, min(end, at + READ_CHUNK) - at))
    return h.hexdigest()
