"""Read a trace directory back: metadata, tasks, events in order (in chunks), file copies.

Every SQLite problem becomes a TraceError that names the trace and says what is wrong; a trace
whose recording was cut off opens fine and says `complete = False`. Every row is checked
against its checksum (tracefile.integrity) before it is used, and a copied file against its
content hash the first time it is asked for: damage is a TraceError naming the event, the
table or the file. Traces older than CHECKED_FORMAT have no checksums: their rows are only
checked for types (`verified` is False).

A cursor that goes on past its second chunk reads the next chunk ahead, on a thread of the
reader's own with its own connection and decompressor: a replay spends most of its time in
compiled loops and waits, which release the GIL, so reading and decompressing rows (~4 µs per
event) leaves its critical path.
"""
from __future__ import annotations

import json
import logging
import os
import sqlite3
import stat
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

import zstandard

from tracefile import checked_copies, chunks, integrity
from tracefile.chunks import ChunkIndex, ChunkSource
from tracefile.columnar import Decoded, Span
from tracefile.errors import TraceError
from tracefile.exec_copies import ExecCopies, on_noexec_mount
from tracefile.file_cache import ID_DIGITS
from tracefile.integrity import Damaged
from tracefile.records import (
    CHECKED_FORMAT,
    CHUNKED_FORMAT,
    FORMAT_VERSION,
    OLDEST_FORMAT,
    Event,
    Kind,
    MemoryWrite,
    TaskRecord,
)

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

log = logging.getLogger(__name__)
CHUNK = 2048
_WARNED: set[Path] = set()  # traces without checksums said so (once per process)
_KINDS = {int(k): k for k in Kind}
# An event as stored: seq, tid, kind, nr, result, regs, info (JSON bytes), writes.
Row = tuple[int, int, int, int, int, bytes, bytes, tuple[MemoryWrite, ...]]


class TraceReader:
    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        db_path = self.dir / "trace.db"
        if not db_path.is_file():
            raise TraceError(f"{self.dir} is not a relive trace (no trace.db)")
        try:
            self.db = _connect(db_path)
            rows = _meta_rows(self.db)
            self.meta: dict[str, Any] = {k: json.loads(v) for k, v, *_ in rows}
        except (sqlite3.DatabaseError, ValueError, TypeError) as e:  # incl. JSON, Unicode
            raise TraceError(f"trace {self.dir} is corrupt or truncated: {e}") from None
        version = self.meta.get("format_version")
        if not isinstance(version, int):
            raise TraceError(f"trace {self.dir} has no format version: corrupt or not a trace")
        if version > FORMAT_VERSION:
            raise TraceError(f"trace {self.dir} uses format version {version}, newer than this "
                             f"relive understands ({FORMAT_VERSION}); upgrade relive")
        if version < OLDEST_FORMAT:
            raise TraceError(f"trace {self.dir} uses old format version {version}; "
                             f"re-record it with this relive")
        self._index: ChunkIndex | None = None  # format 5: events stored in chunks
        try:
            if version >= CHUNKED_FORMAT:
                self._index = ChunkIndex(self.db.execute(
                    "SELECT first, count FROM chunks ORDER BY first").fetchall())
                self.event_count = self._index.event_count
            else:
                self.event_count = self.db.execute("SELECT count(*) FROM events").fetchone()[0]
        except sqlite3.DatabaseError as e:
            raise TraceError(f"trace {self.dir} is corrupt or truncated: {e}") from None
        except Damaged as e:
            raise _damaged(self.dir, e.seq, e.what) from None
        self.verified = version >= CHECKED_FORMAT  # rows carry checksums
        if not self.verified and self.dir not in _WARNED:
            _WARNED.add(self.dir)
            log.warning("trace %s is from before relive kept checksums (format %d): damage "
                        "to it goes unnoticed; re-record it to have it checked", self.dir,
                        version)
        if self.verified:
            for row in rows:
                self._check(row, f"metadata {row[0]!r}", (str,), (str,),
                            names=("key", "value"))
        recorded = self.meta.get("events")
        if self.meta.get("complete") and isinstance(recorded, int) and recorded != self.event_count:
            if self._index is not None:
                self._check_chunks()  # a count damaged: say so, naming the event
            raise TraceError(f"trace {self.dir} is corrupt: it should hold {recorded} events "
                             f"but holds {self.event_count}")
        self._files_checked: set[str] = set()
        self._zstd = zstandard.ZstdDecompressor()
        self._chunks = (ChunkSource(self.db, self._zstd, self._index)
                        if self._index is not None else None)
        self._ahead: ThreadPoolExecutor | None = None
        self._ahead_state: tuple[sqlite3.Connection, zstandard.ZstdDecompressor] | None = None
        self._ahead_chunks: ChunkSource | None = None
        self._cpus = os.sched_getaffinity(0)  # before the replay pins itself to one
        self._avoid: int | None = None
        self._avoiding: int | None = None  # what the reader's thread avoids now
        self._exec_copies: ExecCopies | None = None

    def _check_chunks(self) -> None:
        """Check every chunk row's checksum (when their counts disagree with the metadata)."""
        try:
            for row in self.db.execute("SELECT first, count, size, data, crc FROM chunks"):
                chunks.check_row(row)
        except Damaged as e:
            raise _damaged(self.dir, e.seq, e.what) from None
        except sqlite3.DatabaseError as e:
            raise TraceError(f"trace {self.dir} is corrupt or truncated: {e}") from None

    @property
    def complete(self) -> bool:
        return bool(self.meta.get("complete"))

    def close(self) -> None:
        if self._ahead is not None:
            self._ahead.shutdown(wait=True, cancel_futures=True)
            self._ahead = None
        if self._ahead_state is not None:
            self._ahead_state[0].close()
            self._ahead_state = None
        self.db.close()
        if self._exec_copies is not None:
            self._exec_copies.close()

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        return _query(self.db, self.dir, sql, args)

    def _check(self, row: tuple[Any, ...], table: str, *types: tuple[type, ...],
               names: tuple[str, ...]) -> None:
        """Check a row of a small table, (*values, crc) if `verified`, else (*values)."""
        try:
            if self.verified:
                integrity.verify_row(row, types, names)
            else:
                integrity.check_types(row, types, names)
        except Damaged as e:
            raise _damaged(self.dir, None, f"{table}: {e.what}") from None

    def tasks(self) -> list[TaskRecord]:
        crc = ", crc" if self.verified else ""
        rows = self._query("SELECT tid, pid, ppid, argv, exe, exit_status, first_event"
                           f"{crc} FROM tasks ORDER BY first_event")
        tasks = []
        for row in rows:
            self._check(row, f"task {row[0]}", (int,), (int,), (int,), (str,), (str, bytes),
                        (int, type(None)), (int,),
                        names=("tid", "pid", "ppid", "argv", "exe", "exit_status",
                               "first_event"))
            t, p, pp, a, e, s = row[:6]
            try:
                argv = json.loads(a)
            except ValueError as err:
                raise _damaged(self.dir, None, f"task {t}: argv: {err}") from None
            if not isinstance(argv, list) or not all(isinstance(x, str) for x in argv):
                raise _damaged(self.dir, None, f"task {t}: argv is not a list of strings")
            tasks.append(TaskRecord(tid=t, pid=p, ppid=pp, argv=tuple(argv), exe=_path_text(e),
                                    exit_status=s))
        return tasks

    def events(self, start: int = 0, stop: int | None = None) -> EventCursor:
        """Events with seq in [start, stop), in order, read CHUNK at a time."""
        end = self.event_count if stop is None else min(stop, self.event_count)
        return EventCursor(self, start, end)

    def _rows(self, seq: int, hi: int) -> list[Row]:
        if self._chunks is not None:
            return _chunk_rows(self._chunks, self.dir, seq, hi)
        return _read_rows(self.db, self._zstd, self.dir, seq, hi, self.verified)

    def _spans(self, seq: int, hi: int) -> list[Span]:
        if self._chunks is not None:
            return _chunk_spans(self._chunks, self.dir, seq, hi)
        rows = _read_rows(self.db, self._zstd, self.dir, seq, hi, self.verified)
        return [Span(rows, 0, len(rows))]

    def _rows_ahead(self, seq: int, hi: int) -> Future[list[Span]]:
        """Start reading rows [seq, hi) on the reader's thread (started at first use)."""
        if self._ahead is None:
            from concurrent.futures import ThreadPoolExecutor
            self._ahead = ThreadPoolExecutor(max_workers=1,
                                             thread_name_prefix="relive-trace-reader")
        return self._ahead.submit(self._read_ahead, seq, hi)

    def avoid_cpu(self, cpu: int | None) -> None:
        """Read ahead on other CPUs than `cpu` (the replay's own, which it pins itself and
        its tracees to, and which a thread it starts would inherit), if there are any."""
        self._avoid = cpu

    def _read_ahead(self, seq: int, hi: int) -> list[Span]:
        if self._avoiding != self._avoid:  # (only ever on the reader's thread, as below)
            self._avoiding = self._avoid
            others = self._cpus - {self._avoid}
            if others:
                os.sched_setaffinity(0, others)
        if self._ahead_state is None:
            try:
                self._ahead_state = _connect(self.dir / "trace.db"), zstandard.ZstdDecompressor()
            except sqlite3.DatabaseError as e:
                raise TraceError(f"trace {self.dir} is corrupt or truncated: {e}") from None
        db, zstd = self._ahead_state
        if self._index is not None:
            if self._ahead_chunks is None:
                self._ahead_chunks = ChunkSource(db, zstd, self._index)
            return _chunk_spans(self._ahead_chunks, self.dir, seq, hi)
        rows = _read_rows(db, zstd, self.dir, seq, hi, self.verified)
        return [Span(rows, 0, len(rows))]

    def event_from(self, row: Row) -> Event:
        s, tid, kind, nr, result, regs, info, writes = row
        try:
            return Event(seq=s, tid=tid, kind=_KINDS.get(kind) or Kind(kind), nr=nr,
                         result=result, regs=bytes(regs), writes=writes,
                         info=json.loads(info) if info else {})
        except (ValueError, TypeError) as e:
            raise TraceError(f"trace {self.dir} is corrupt at event {s}: {e}") from None

    def event(self, seq: int) -> Event:
        for ev in self.events(seq, seq + 1):
            return ev
        raise TraceError(f"trace {self.dir} has no event {seq}")

    def file_path(self, file_id: str) -> Path:
        """The trace's copy of a mapped file, at a path replayed processes can exec and map
        executable (tracefile.exec_copies when the trace is on a noexec mount); its content is
        checked against its id (its hash) the first time it is asked for, unless it was checked
        by an earlier replay and has not changed since (tracefile.checked_copies)."""
        path = self.dir / "files" / checked_file_id(self.dir, file_id)
        if not path.is_file():
            raise TraceError(f"trace {self.dir} is missing its copy of a mapped file ({file_id})")
        if file_id not in self._files_checked and not checked_copies.known(path, file_id):
            try:
                before = os.stat(path)
                found = integrity.content_id(path)
            except OSError as e:
                raise TraceError(f"trace {self.dir}: cannot read its copy of a mapped file "
                                 f"({file_id}): {e.strerror}") from None
            if found != file_id:
                raise TraceError(f"trace {self.dir} is corrupt: its copy of a mapped file "
                                 f"({self._file_name(file_id)}) is damaged: files/{file_id} "
                                 f"holds other content")
            checked_copies.note(path, file_id, before)
            self._files_checked.add(file_id)
        if self._exec_copies is None and on_noexec_mount(self.dir):
            self._exec_copies = ExecCopies(self.dir)
        return self._exec_copies.path(file_id, path) if self._exec_copies else path

    def _file_name(self, file_id: str) -> str:
        return self.file_ids().get(file_id, file_id)

    def file_ids(self) -> dict[str, str]:
        """id -> original path of every file copied into the trace."""
        crc = ", crc" if self.verified else ""
        rows = self._query(f"SELECT id, path, size{crc} FROM files")
        for row in rows:
            self._check(row, "mapped files", (str,), (str, bytes), (int,),
                        names=("id", "path", "size"))
        return {checked_file_id(self.dir, row[0]): _path_text(row[1]) for row in rows}

    def size_bytes(self) -> tuple[int, int]:
        """(bytes of the whole trace, bytes of it in copied files that other traces or the
        cache of mapped files hard-link too: on disk once)."""
        total = shared = 0
        for p in self.dir.rglob("*"):
            st = p.lstat()
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
                shared += st.st_size if st.st_nlink > 1 else 0
        return total, shared


def checked_file_id(trace: Path, file_id: object) -> str:
    """A file id as the writer makes them (a hash, in hex digits): anything else, such as
    `../..` in a crafted trace, would name a file outside the trace."""
    if (not isinstance(file_id, str) or len(file_id) != ID_DIGITS
            or file_id.strip("0123456789abcdef")):
        raise _damaged(trace, None, f"{file_id!r} is not a file id (a hash)")
    return file_id


def _path_text(path: str | bytes) -> str:
    """A path column as str: the writer stores a path that is not UTF-8 as its bytes."""
    return os.fsdecode(path) if isinstance(path, bytes) else path


def _meta_rows(db: sqlite3.Connection) -> list[tuple[Any, ...]]:
    """(key, value, crc) rows, or (key, value) from a trace without checksums."""
    try:
        return db.execute("SELECT key, value, crc FROM meta").fetchall()
    except sqlite3.OperationalError as e:
        if "no such column" not in str(e):
            raise
        return db.execute("SELECT key, value FROM meta").fetchall()


def _damaged(trace: Path, seq: int | None, what: str) -> TraceError:
    where = f"damaged at event {seq}" if seq is not None else "damaged"
    return TraceError(f"trace {trace} is corrupt: {where} ({what}); it cannot be replayed "
                      "faithfully")


def _connect(db_path: Path) -> sqlite3.Connection:
    """A read-only connection. On read-only media (a CD, a read-only mount) SQLite cannot
    create the WAL index a WAL database is read through: a trace whose recording ended
    normally has no WAL left to read, so it is opened as immutable there."""
    uri = f"file:{_uri_path(db_path)}?mode=ro"
    if not os.access(db_path.parent, os.W_OK) and not _has_wal(db_path):
        uri += "&immutable=1"
    db = sqlite3.connect(uri, uri=True, check_same_thread=False)
    db.execute("PRAGMA query_only=1")
    return db


def _has_wal(db_path: Path) -> bool:
    try:
        return os.stat(f"{db_path}-wal").st_size > 0
    except OSError:
        return False


def _uri_path(path: Path) -> str:
    """`path` for a file: URI, any byte (`?`, `#`, `%`, not UTF-8) escaped as %HH."""
    return "".join(chr(b) if chr(b).isalnum() or chr(b) in "/-_." else f"%{b:02X}"
                   for b in os.fsencode(path))


def _query(db: sqlite3.Connection, trace: Path, sql: str,
           args: tuple[Any, ...] = ()) -> list[Any]:
    try:
        return db.execute(sql, args).fetchall()
    except (sqlite3.DatabaseError, ValueError) as e:
        raise TraceError(f"trace {trace} is corrupt or truncated: {e}") from None


_EVENTS = "SELECT seq, tid, kind, nr, result, regs, info{} FROM events " \
          "WHERE seq >= ? AND seq < ? ORDER BY seq"
_WRITES = "SELECT seq, ord, addr, size, conservative, zstd, data{} FROM writes " \
          "WHERE seq >= ? AND seq < ? ORDER BY seq, ord"
_EVENT_TYPES = ((int,),) * 5 + ((bytes,),) * 2
_EVENT_NAMES = ("seq", "tid", "kind", "nr", "result", "regs", "info")
_WRITE_TYPES = ((int,),) * 6 + ((bytes,),)


def _chunk_rows(source: ChunkSource, trace: Path, seq: int, hi: int) -> list[Row]:
    """The rows of events [seq, hi) of a format 5 trace (tracefile.chunks), checked."""
    try:
        return source.rows(seq, hi)
    except Damaged as e:
        raise _damaged(trace, seq if e.seq is None else e.seq, e.what) from None
    except sqlite3.DatabaseError as e:
        raise TraceError(f"trace {trace} is corrupt or truncated: {e}") from None


def _chunk_spans(source: ChunkSource, trace: Path, seq: int, hi: int) -> list[Span]:
    """`_chunk_rows` as spans of chunks (tracefile.columnar)."""
    try:
        return source.spans(seq, hi)
    except Damaged as e:
        raise _damaged(trace, seq if e.seq is None else e.seq, e.what) from None
    except sqlite3.DatabaseError as e:
        raise TraceError(f"trace {trace} is corrupt or truncated: {e}") from None


def _read_rows(db: sqlite3.Connection, zstd: zstandard.ZstdDecompressor, trace: Path,
               seq: int, hi: int, verified: bool) -> list[Row]:
    """The rows of events [seq, hi), checked, with their memory writes checked and then
    decompressed."""
    rows = _query(db, trace, _EVENTS.format(", writes, crc" if verified else ""), (seq, hi))
    if len(rows) != hi - seq:
        raise TraceError(f"trace {trace} is corrupt: events {seq}..{hi - 1} missing")
    try:
        writes = _read_writes(db, zstd, trace, seq, hi, verified)
        if verified:
            return integrity.checked_events(rows, writes)
        for row in rows:
            integrity.check_types(row, _EVENT_TYPES, _EVENT_NAMES,
                                  _seq_of(row, seq))
    except Damaged as e:
        raise _damaged(trace, seq if e.seq is None else e.seq, e.what) from None
    return [(s, tid, kind, nr, result, regs, info, tuple(writes.get(s, ())))
            for s, tid, kind, nr, result, regs, info in rows]


def _read_writes(db: sqlite3.Connection, zstd: zstandard.ZstdDecompressor, trace: Path,
                 seq: int, hi: int, verified: bool) -> dict[int, list[MemoryWrite]]:
    """The memory writes of events [seq, hi) by event, each checked before it is
    decompressed."""
    writes: dict[int, list[MemoryWrite]] = {}
    for w in _query(db, trace, _WRITES.format(", crc" if verified else ""), (seq, hi)):
        if verified:
            integrity.verify_write(w)
        else:
            integrity.check_types(w, _WRITE_TYPES, integrity.WRITE_COLUMNS, _seq_of(w, seq))
        wseq, _, addr, size, cons, packed, data = w[:7]
        writes.setdefault(wseq, []).append(MemoryWrite(
            addr=addr, data=_unpack(zstd, trace, packed, data, size, wseq),
            conservative=bool(cons)))
    return writes


def _seq_of(row: tuple[Any, ...], default: int) -> int:
    """The event a damaged row belongs to, if its seq is a number (else the first asked)."""
    return row[0] if type(row[0]) is int else default


def _unpack(zstd: zstandard.ZstdDecompressor, trace: Path, packed: int, data: bytes,
            size: int, seq: int) -> bytes:
    try:
        out = zstd.decompress(data, max_output_size=size) if packed else bytes(data)
    except zstandard.ZstdError as e:
        raise TraceError(f"trace {trace} is corrupt at event {seq}: {e}") from None
    if len(out) != size:
        raise TraceError(f"trace {trace} is corrupt at event {seq}: "
                         f"write of {size} bytes holds {len(out)}")
    return out


class EventCursor:
    """Iterates over a trace's events in order (fetched CHUNK rows at a time). Besides
    Events it hands out the rows they are made from (`next_row`, `push_back`), for callers
    that look at many events and need objects only for a few (replay's compiled batches),
    and the chunk laid out under the cursor (`span`, `skip`), for callers that need no row
    at all (replayer.fastpath packs batches from it in compiled code)."""

    def __init__(self, reader: TraceReader, start: int, end: int) -> None:
        self._reader = reader
        self._seq = start
        self._end = end
        self._rows: deque[Row] = deque()  # rows pushed back: before the spans
        self._spans: deque[Span] = deque()
        self._at = 0  # in the first span: its next event
        self._chunks = 0  # read so far; from the second on, the next is read ahead
        self._ahead: Future[list[Span]] | None = None

    def __iter__(self) -> EventCursor:
        return self

    def __next__(self) -> Event:
        row = self.next_row()
        if row is None:
            raise StopIteration
        return self._reader.event_from(row)

    def _fill(self) -> bool:
        """A span with events left first in `_spans` (read if need be); whether there is."""
        spans = self._spans
        while spans and self._at >= spans[0].hi:
            spans.popleft()
            if spans:
                self._at = spans[0].lo
        if spans:
            return True
        if self._seq >= self._end:
            return False
        hi = min(self._seq + CHUNK, self._end)
        if self._ahead is not None:
            got, self._ahead = self._ahead.result(), None
        else:
            got = self._reader._spans(self._seq, hi)
        spans.extend(s for s in got if s.hi > s.lo)
        self._seq = hi
        self._chunks += 1
        if self._chunks >= 2 and hi < self._end:
            self._ahead = self._reader._rows_ahead(hi, min(hi + CHUNK, self._end))
        if spans:
            self._at = spans[0].lo
        return bool(spans)

    def next_row(self) -> Row | None:
        if self._rows:
            return self._rows.popleft()
        if not self._fill():
            return None
        row = self._spans[0].row(self._at)
        self._at += 1
        return row

    def push_back(self, row: Row) -> None:
        """Make `row` the next one again (rows go back in the reverse of their order). The
        row just before the next one of the current span goes back by a step back in it:
        a compiled batch's events not replayed go back without a row each (and are packed
        again from the span)."""
        if not self._rows and self._spans:
            span = self._spans[0]
            chunk = span.chunk
            if (isinstance(chunk, Decoded) and self._at > span.lo
                    and row[0] == chunk.first + self._at - 1):
                self._at -= 1
                return
        self._rows.appendleft(row)

    def span(self) -> tuple[Decoded, int, int] | None:
        """The laid-out chunk the next events are in, the next's index in it and the end of
        what this cursor reads of it; None if a row pushed back comes first, or the chunk
        is not laid out (no compiled codec, an older trace)."""
        if self._rows or not self._fill():
            return None
        chunk, _, hi = self._spans[0]
        return (chunk, self._at, hi) if isinstance(chunk, Decoded) else None

    def skip(self, count: int) -> None:
        """Go past `count` events of the current `span` (taken without rows)."""
        self._at += count
