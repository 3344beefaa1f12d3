"""Chunks of events kept column by column, for the work done per buffered syscall
(issue 18: `find` makes ~400k of them; a Python tuple or loop turn each cost more than the
program itself).

- At record, `Columns`: a run of BUFFERED events already in the columns a chunk stores
  (recorder.sysbuf_record `columns_from`, made in compiled code from the syscall buffer's
  records), appended to the chunk being filled without a Python step per event
  (tracefile.chunks ChunkBuilder.add_columns).
- At replay, `Decoded`: a chunk's raw blob checked and laid out once (where each event's
  registers, info and writes are), whose rows are made only when asked for (`row`); the
  replay loop's batches are packed from it in compiled code (replayer.fastpath).

The compiled code is tracee/records.c; tracefile imports nothing from tracee, so the
loader (tracee.records) installs itself here as `codec` when it loads: without it, chunks
decode in Python (tracefile.chunks `_decode`) to the same rows.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple, Protocol

from tracefile.records import MemoryWrite

if TYPE_CHECKING:
    from tracefile.chunks import Row

REGS = 216
_COLUMNS = 7
_OFF_WORDS = 4


class Columns(NamedTuple):
    """`events` BUFFERED events of one task as column bytes (int64 little-endian each):
    numbers, results, write counts, the registers (56 bytes each), the writes' addresses
    and sizes, and their data one after the other."""
    events: int
    nrs: bytes
    results: bytes
    counts: bytes
    regs: bytes
    regs_size: int
    waddrs: bytes
    wsizes: bytes
    data: bytes


class Codec(Protocol):
    def layout(self, first: int, count: int, raw: bytes) -> tuple[
            int, int, bytes, int, bytes, memoryview]:
        """The chunk checked and laid out, Decoded's fields; ValueError saying what does
        not add up."""


codec: Codec | None = None  # tracee.records' compiled one, set by replayer.fastpath


class Decoded:
    """A chunk's events (raw blob checked) with, per event, where its registers (in `flat`,
    the full register files restored, or in `raw`), info, first write and first write's
    bytes are (`off`, _OFF_WORDS each)."""

    __slots__ = ("first", "count", "raw", "writes", "flat", "off", "_cols", "_wcols")

    def __init__(self, first: int, count: int, raw: bytes, writes: int, flat: bytes,
                 off: memoryview) -> None:
        self.first = first
        self.count = count
        self.raw = raw
        self.writes = writes
        self.flat = flat
        self.off = off
        head = _COLUMNS * count * 8
        view = memoryview(raw)
        self._cols = view[:head].cast("q")
        self._wcols = view[head:head + 3 * writes * 8].cast("q")

    def __len__(self) -> int:
        return self.count

    def row(self, i: int) -> Row:
        """Event `i` of the chunk, as tracefile.chunks `decode` makes it."""
        n = self.count
        c = self._cols
        rl, il, nw = c[5 * n + i], c[6 * n + i], c[4 * n + i]
        ro, io, wf, dp = self.off[_OFF_WORDS * i:_OFF_WORDS * i + _OFF_WORDS]
        raw = self.raw
        regs = self.flat[ro:ro + REGS] if rl == REGS else raw[ro:ro + rl]
        info = raw[io:io + il] if il else b""
        writes: tuple[MemoryWrite, ...] = ()
        if nw:
            w, wc = self.writes, self._wcols
            made = []
            for k in range(wf, wf + nw):
                size = wc[w + k]
                made.append(tuple.__new__(MemoryWrite, (wc[k], raw[dp:dp + size],
                                                        wc[2 * w + k] != 0)))
                dp += size
            writes = tuple(made)
        return (self.first + i, c[i], c[n + i], c[2 * n + i], c[3 * n + i], regs, info,
                writes)

    def rows(self, lo: int, hi: int) -> list[Row]:
        row = self.row
        return [row(i) for i in range(lo, hi)]


class Span(NamedTuple):
    """Events [lo, hi) of a chunk, as a cursor reads them."""
    chunk: Decoded | list[Row]
    lo: int
    hi: int

    def row(self, i: int) -> Row:
        chunk = self.chunk
        return chunk.row(i) if isinstance(chunk, Decoded) else chunk[i]


def span_rows(span: Span) -> list[Row]:
    chunk, lo, hi = span
    return chunk.rows(lo, hi) if isinstance(chunk, Decoded) else chunk[lo:hi]


def split(run: Columns, room: int, size: int) -> list[Columns]:
    """`run` cut into parts of at most `room` events, then at most `size` each (a chunk
    holds at most CHUNK_EVENTS): most runs fit whole."""
    room = room if room > 0 else size
    if run.events <= room:
        return [run]
    from array import array
    counts, wsizes = array("q", run.counts), array("q", run.wsizes)
    parts = []
    lo = wlo = dlo = 0
    step = room
    while lo < run.events:
        hi = min(lo + step, run.events)
        whi = wlo + sum(counts[lo:hi])
        dhi = dlo + sum(wsizes[wlo:whi])
        r = run.regs_size
        parts.append(Columns(hi - lo, run.nrs[8 * lo:8 * hi], run.results[8 * lo:8 * hi],
                             run.counts[8 * lo:8 * hi], run.regs[r * lo:r * hi], r,
                             run.waddrs[8 * wlo:8 * whi], run.wsizes[8 * wlo:8 * whi],
                             run.data[dlo:dhi]))
        lo, wlo, dlo, step = hi, whi, dhi, size
    return parts
