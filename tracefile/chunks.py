"""Format 5 stores events in chunks: runs of consecutive events (up to CHUNK_EVENTS, sealed
at every commit) packed column by column into one zstd blob with one checksum.

Why: an event row of format 4 cost ~300 bytes on `find` (216 of registers, SQLite's row
overhead, a checksum, a 144-byte stat buffer compressed on its own). Consecutive events of
a thread differ in a few registers, and consecutive events resemble each other: a chunk
stores each register file XORed with its thread's previous one in the chunk (the first of a
thread against zero, so a chunk decodes on its own: random access reads one chunk), laid out
byte plane by byte plane (byte i of every register file, then byte i+1, ...), so the
unchanged bytes become long runs of zeros that zstd removes; the other columns and the
memory writes' data go in the same blob, where zstd finds what events repeat. ~24 bytes per
event on `find` (docs/performance.md, "Trace size").

Layout of a chunk of n events with W memory writes (all integers little-endian int64):
tid, kind, nr, result, writes, regs length, info length (n each, column by column); addr,
size, conservative (W each); the register files of length REGS as byte planes; the other
register files; the infos; the writes' data. Its row: (first seq, n, raw size, blob, crc):
the checksum covers all four and is checked before anything is decompressed, and the
decoder checks that the lengths add up to the raw size before it slices: a damaged chunk is
`Damaged`, never a wrong event.
"""
from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Sequence
from array import array
from typing import TYPE_CHECKING, Any

from tracefile import columnar
from tracefile.columnar import Columns, Decoded, split
from tracefile.integrity import Damaged
from tracefile.records import MemoryWrite

if TYPE_CHECKING:
    import zstandard

REGS = 216                 # struct user_regs_struct
CHUNK_EVENTS = 4096        # a chunk is sealed at this many events,
CHUNK_BYTES = 4 << 20      # or once its payload passes this many bytes, or at a commit
MAX_CHUNK_EVENTS = 1 << 16   # what a reader accepts (a bound before sizing work)
MAX_CHUNK_SIZE = 1 << 34     # raw bytes a reader accepts (one write may be large)
_HEAD = struct.Struct("<3q")  # first, count, size: then the blob
_I64 = struct.Struct("<q")
_COLUMNS = 7
_WCOLUMNS = 3
INSERT_CHUNK = "INSERT INTO chunks VALUES (?, ?, ?, ?, ?)"
# An event as decoded: seq, tid, kind, nr, result, regs, info (JSON bytes), writes.
Row = tuple[int, int, int, int, int, bytes, bytes, tuple[MemoryWrite, ...]]


def chunk_crc(first: int, count: int, size: int, blob: bytes) -> int:
    return zlib.crc32(blob, zlib.crc32(_HEAD.pack(first, count, size)))


class ChunkBuilder:
    """The events of the chunk being filled (on the writer's SQL thread only). Columns are
    arrays, so that a run of BUFFERED events made as columns (tracefile.columnar Columns)
    is appended without a step per event."""

    def __init__(self) -> None:
        self.first = 0
        self._reset()

    def _reset(self) -> None:
        self.cols: list[array[int]] = [array("q") for _ in range(_COLUMNS)]
        self.full_regs: list[tuple[int, bytes]] = []  # (tid, a register file of REGS)
        self.other: list[bytes] = []  # the other "registers", in order
        self.infos: list[bytes] = []
        self.wcols: list[array[int]] = [array("q") for _ in range(_WCOLUMNS)]
        self.wdata: list[bytes] = []
        self.payload = 0
        self.count = 0

    def __len__(self) -> int:
        return self.count

    def full(self) -> bool:
        return self.count >= CHUNK_EVENTS or self.payload >= CHUNK_BYTES

    def add(self, tid: int, kind: int, nr: int, result: int, regs: bytes, info: bytes,
            writes: Sequence[tuple[int, bytes, int]]) -> None:
        """One event; `writes` as (addr, data, conservative)."""
        tids, kinds, nrs, results, counts, rlens, ilens = self.cols
        tids.append(tid)
        kinds.append(kind)
        nrs.append(nr)
        results.append(result)
        counts.append(len(writes))
        rlens.append(len(regs))
        ilens.append(len(info))
        if len(regs) == REGS:
            self.full_regs.append((tid, regs))
        else:
            self.other.append(regs)
        if info:
            self.infos.append(info)
        self.count += 1
        self.payload += len(regs) + len(info) + 56
        if writes:
            addrs, sizes, cons = self.wcols
            for addr, data, conservative in writes:
                addrs.append(addr)
                sizes.append(len(data))
                cons.append(conservative)
                self.wdata.append(data)
                self.payload += len(data) + 24

    def add_columns(self, tid: int, kind: int, run: Columns) -> None:
        """A run of events of task `tid` made as columns (no info; `run.regs_size` bytes of
        registers each, never a full register file; exact writes), all of them: the caller
        seals chunks between runs (`add_run`)."""
        n, w = run.events, len(run.waddrs) // 8
        tids, kinds, nrs, results, counts, rlens, ilens = self.cols
        tids.frombytes(_I64.pack(tid) * n)  # (bytes repeated and copied: no step per event)
        kinds.frombytes(_I64.pack(kind) * n)
        nrs.frombytes(run.nrs)
        results.frombytes(run.results)
        counts.frombytes(run.counts)
        rlens.frombytes(_I64.pack(run.regs_size) * n)
        ilens.frombytes(bytes(8 * n))
        self.other.append(run.regs)
        addrs, sizes, cons = self.wcols
        addrs.frombytes(run.waddrs)
        sizes.frombytes(run.wsizes)
        cons.frombytes(bytes(8 * w))
        self.wdata.append(run.data)
        self.count += n
        self.payload += len(run.regs) + 56 * n + len(run.data) + 24 * w

    def encode(self) -> tuple[int, int, bytes]:
        """(first seq, count, raw blob) of the chunk; the builder starts the next one."""
        n = self.count
        prev: dict[int, int] = {}
        planes: list[bytes] = []
        from_bytes = int.from_bytes
        for tid, regs in self.full_regs:
            value = from_bytes(regs, "little")
            planes.append((value ^ prev.get(tid, 0)).to_bytes(REGS, "little"))
            prev[tid] = value
        flat = b"".join(planes)
        raw = b"".join((*(col.tobytes() for col in self.cols),
                        *(col.tobytes() for col in self.wcols),
                        *(flat[i::REGS] for i in range(REGS)), *self.other, *self.infos,
                        *self.wdata))
        first = self.first
        self.first += n
        self._reset()
        return first, n, raw


def store(db: Any, builder: ChunkBuilder, compress: zstandard.ZstdCompressor) -> None:
    """Seal the builder's chunk into the chunks table (nothing if it is empty)."""
    if not len(builder):
        return
    first, count, raw = builder.encode()
    blob = compress.compress(raw)
    db.execute(INSERT_CHUNK, (first, count, len(raw), blob,
                              chunk_crc(first, count, len(raw), blob)))


def add_syscalls(builder: ChunkBuilder, db: Any, compress: zstandard.ZstdCompressor,
                 tid: int, kind: int,
                 records: Iterable[tuple[int, int, bytes, list[tuple[int, bytes]]]] | Columns
                 ) -> None:
    """A run of one task's SYSCALL events (no info), sealing chunks as they fill; or a run
    already made as columns (BUFFERED events: tracefile.columnar), added whole, split only
    where a chunk fills."""
    if isinstance(records, Columns):
        for part in split(records, CHUNK_EVENTS - len(builder), CHUNK_EVENTS):
            builder.add_columns(tid, kind, part)
            if builder.full():
                store(db, builder, compress)
        return
    for nr, result, regs, ws in records:
        builder.add(tid, kind, nr, result, regs, b"", [(a, d, 0) for a, d in ws])
        if builder.full():
            store(db, builder, compress)


def check_row(row: Sequence[Any]) -> tuple[int, int, int, bytes]:
    """A chunks row read as (first, count, size, blob, crc), checked: its types, checksum,
    and bounds (before it is decompressed)."""
    first, count, size, blob, crc = row
    for value, name, want in ((first, "first", int), (count, "count", int),
                              (size, "size", int), (blob, "data", bytes), (crc, "crc", int)):
        if type(value) is not want:
            kind = {int: "number", str: "text", bytes: "blob", float: "real number"}.get(
                type(value), "null")
            raise Damaged(f"chunk: column {name} holds a {kind}",
                          first if type(first) is int else None)
    try:
        good = crc == chunk_crc(first, count, size, blob)
    except struct.error:
        good = False
    if not good:
        raise Damaged("chunk of events: checksum mismatch", first)
    if not 0 < count <= MAX_CHUNK_EVENTS or not 0 <= size <= MAX_CHUNK_SIZE:
        raise Damaged(f"chunk of {count} events, {size} bytes: out of bounds", first)
    return first, count, size, blob


def decode(first: int, count: int, raw: bytes) -> list[Row]:
    """The events of a chunk's raw blob (`count` already bounded)."""
    try:
        return _decode(first, count, raw)
    except (struct.error, ValueError, IndexError) as e:
        raise Damaged(f"chunk of events: {e}", first) from None


def _decode(first: int, count: int, raw: bytes) -> list[Row]:
    n = count
    head = _COLUMNS * n * 8
    if len(raw) < head:
        raise ValueError("shorter than its columns")
    cols = struct.unpack_from(f"<{_COLUMNS * n}q", raw)
    tids, kinds, nrs, results, counts, rlens, ilens = (cols[i * n:(i + 1) * n]
                                                      for i in range(_COLUMNS))
    if min(cols, default=0) < 0 and min((*counts, *rlens, *ilens), default=0) < 0:
        raise ValueError("a negative length")  # (the first test is the quick one)
    w = sum(counts)
    if w * _WCOLUMNS * 8 > len(raw) - head:
        raise ValueError("more writes than bytes")
    wcols = struct.unpack_from(f"<{_WCOLUMNS * w}q", raw, head)
    addrs, sizes, cons = wcols[:w], wcols[w:2 * w], wcols[2 * w:]
    if min(sizes, default=0) < 0:
        raise ValueError("a negative write size")
    planes = rlens.count(REGS)
    pos = head + _WCOLUMNS * w * 8
    want = (pos + planes * REGS + sum(r for r in rlens if r != REGS) + sum(ilens)
            + sum(sizes))
    if want != len(raw):
        raise ValueError(f"lengths add up to {want} bytes, not {len(raw)}")
    view = memoryview(raw)
    flat = bytearray(planes * REGS)
    for i in range(REGS):
        flat[i::REGS] = view[pos + i * planes:pos + (i + 1) * planes]
    pos += planes * REGS
    from_bytes = int.from_bytes
    planes_view = memoryview(flat)
    prev: dict[int, int] = {}
    out: list[Row] = []
    fp = wi = 0
    ipos = pos + sum(r for r in rlens if r != REGS)
    dpos = ipos + sum(ilens)
    # (the loop makes ~10 objects an event and is most of a replay's reading: MemoryWrites
    # are made with tuple.__new__, not their NamedTuple __new__, a Python call each)
    new_write = tuple.__new__
    append = out.append
    for i in range(n):
        tid = tids[i]
        rl = rlens[i]
        if rl == REGS:
            value = from_bytes(planes_view[fp:fp + REGS], "little") ^ prev.get(tid, 0)
            prev[tid] = value
            regs = value.to_bytes(REGS, "little")
            fp += REGS
        else:
            regs = raw[pos:pos + rl]
            pos += rl
        il = ilens[i]
        if il:
            info = raw[ipos:ipos + il]
            ipos += il
        else:
            info = b""
        writes: tuple[MemoryWrite, ...] = ()
        nw = counts[i]
        if nw == 1:
            size = sizes[wi]
            writes = (new_write(MemoryWrite, (addrs[wi], raw[dpos:dpos + size], cons[wi] != 0)),)
            dpos += size
            wi += 1
        elif nw:
            ws = []
            for k in range(wi, wi + nw):
                size = sizes[k]
                ws.append(new_write(MemoryWrite, (addrs[k], raw[dpos:dpos + size], cons[k] != 0)))
                dpos += size
            wi += nw
            writes = tuple(ws)
        append((first + i, tid, kinds[i], nrs[i], results[i], regs, info, writes))
    return out


class ChunkIndex:
    """Where each chunk starts, read when a trace opens: the chunks must tile the events
    from 0 on (a missing chunk is a gap, reported before anything replays)."""

    def __init__(self, rows: Sequence[tuple[Any, Any]]) -> None:
        self.firsts: list[int] = []
        self.counts: list[int] = []
        total = 0
        for first, count in rows:
            if type(first) is not int or type(count) is not int:
                raise Damaged("chunk: first or count is not a number",
                              total)
            if first != total or not 0 < count <= MAX_CHUNK_EVENTS:
                what = (f"events {total}..{first - 1} missing" if first > total
                        else "chunks of events overlap")
                raise Damaged(what, total)
            self.firsts.append(first)
            self.counts.append(count)
            total += count
        self.event_count = total


KEEP_DECODED = 4


class ChunkSource:
    """Reads and decodes chunks over one connection (one per thread), keeping the last
    KEEP_DECODED chunks decoded: a cursor reads a chunk in several pieces, seeking reads one
    event, and going back in time restores checkpoints near one another over and over (each
    starts a cursor whose first piece may straddle two chunks: keeping one decoded chunk
    decoded both again at every restore, ~8 ms each)."""

    def __init__(self, db: Any, zstd: zstandard.ZstdDecompressor, index: ChunkIndex) -> None:
        self.db = db
        self._zstd = zstd
        self._index = index
        self._decoded: dict[int, Decoded | list[Row]] = {}  # first event -> rows, oldest use first

    def rows(self, seq: int, hi: int) -> list[Row]:
        """Events [seq, hi) (within the index), checked and decoded."""
        out: list[Row] = []
        for span in self.spans(seq, hi):
            out.extend(columnar.span_rows(span))
        return out

    def spans(self, seq: int, hi: int) -> list[columnar.Span]:
        """Events [seq, hi) (within the index), checked, as the spans of chunks holding
        them: laid out (tracefile.columnar Decoded) where the compiled codec is loaded,
        else decoded rows."""
        import bisect
        index = self._index
        i = bisect.bisect_right(index.firsts, seq) - 1
        out: list[columnar.Span] = []
        while seq < hi:
            first = index.firsts[i]
            chunk = self._chunk(first, index.counts[i])
            end = min(hi, first + len(chunk))
            out.append(columnar.Span(chunk, seq - first, end - first))
            seq = first + len(chunk)
            i += 1
        return out

    def _chunk(self, first: int, count: int) -> Decoded | list[Row]:
        if first in self._decoded:
            rows = self._decoded[first] = self._decoded.pop(first)
            return rows
        found = self.db.execute("SELECT first, count, size, data, crc FROM chunks "
                                "WHERE first = ?", (first,)).fetchall()
        if not found:
            raise Damaged(f"events {first}..{first + count - 1} missing", first)
        _, stored_count, size, blob = check_row(found[0])
        if stored_count != count:
            raise Damaged("chunk of events: its count changed", first)
        import zstandard
        try:
            raw = self._zstd.decompress(blob, max_output_size=size)
        except zstandard.ZstdError as e:
            raise Damaged(f"chunk of events: {e}", first) from None
        if len(raw) != size:
            raise Damaged(f"chunk of events: {len(raw)} bytes, not {size}", first)
        rows = decode_chunk(first, count, raw)
        self._decoded[first] = rows
        while len(self._decoded) > KEEP_DECODED:
            del self._decoded[next(iter(self._decoded))]
        return rows


def decode_chunk(first: int, count: int, raw: bytes) -> Decoded | list[Row]:
    """The events of a chunk's raw blob: laid out by the compiled codec if it is loaded,
    else decoded in Python (the same rows; the same checks)."""
    codec = columnar.codec
    if codec is None:
        return decode(first, count, raw)
    try:
        return columnar.Decoded(*codec.layout(first, count, raw))
    except ValueError as e:
        raise Damaged(f"chunk of events: {e}", first) from None
