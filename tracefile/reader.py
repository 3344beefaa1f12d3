"""Read a trace directory back: metadata, tasks, events in order (in chunks), file copies.

Every SQLite problem becomes a TraceError that names the trace and says what is wrong; a trace
whose recording was cut off opens fine and says `complete = False`.
"""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any, Iterator

import zstandard

from tracefile.errors import TraceError
from tracefile.records import FORMAT_VERSION, Event, Kind, MemoryWrite, TaskRecord

CHUNK = 2048


class TraceReader:
    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        db_path = self.dir / "trace.db"
        if not db_path.is_file():
            raise TraceError(f"{self.dir} is not a relive trace (no trace.db)")
        try:
            self.db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True,
                                      check_same_thread=False)
            self.db.execute("PRAGMA query_only=1")
            rows = self.db.execute("SELECT key, value FROM meta").fetchall()
            self.meta: dict[str, Any] = {k: json.loads(v) for k, v in rows}
            self.event_count = self.db.execute("SELECT count(*) FROM events").fetchone()[0]
        except (sqlite3.DatabaseError, ValueError) as e:  # incl. JSON and UnicodeDecodeError
            raise TraceError(f"trace {self.dir} is corrupt or truncated: {e}") from None
        recorded = self.meta.get("events")
        if self.meta.get("complete") and isinstance(recorded, int) and recorded != self.event_count:
            raise TraceError(f"trace {self.dir} is corrupt: it should hold {recorded} events "
                             f"but holds {self.event_count}")
        version = self.meta.get("format_version")
        if not isinstance(version, int):
            raise TraceError(f"trace {self.dir} has no format version: corrupt or not a trace")
        if version > FORMAT_VERSION:
            raise TraceError(f"trace {self.dir} uses format version {version}, newer than this "
                             f"relive understands ({FORMAT_VERSION}); upgrade relive")
        if version < FORMAT_VERSION:
            raise TraceError(f"trace {self.dir} uses old format version {version}; "
                             f"re-record it with this relive")
        self._zstd = zstandard.ZstdDecompressor()

    @property
    def complete(self) -> bool:
        return bool(self.meta.get("complete"))

    def close(self) -> None:
        self.db.close()

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        try:
            return self.db.execute(sql, args).fetchall()
        except (sqlite3.DatabaseError, ValueError) as e:
            raise TraceError(f"trace {self.dir} is corrupt or truncated: {e}") from None

    def tasks(self) -> list[TaskRecord]:
        rows = self._query("SELECT tid, pid, ppid, argv, exe, exit_status FROM tasks "
                           "ORDER BY first_event")
        try:
            return [TaskRecord(tid=t, pid=p, ppid=pp, argv=tuple(json.loads(a)), exe=e,
                               exit_status=s) for t, p, pp, a, e, s in rows]
        except (ValueError, TypeError) as e:
            raise TraceError(f"trace {self.dir} is corrupt (task table): {e}") from None

    def events(self, start: int = 0, stop: int | None = None) -> Iterator[Event]:
        """Events with seq in [start, stop), in order, read CHUNK at a time."""
        end = self.event_count if stop is None else min(stop, self.event_count)
        seq = start
        while seq < end:
            hi = min(seq + CHUNK, end)
            rows = self._query("SELECT seq, tid, kind, nr, result, regs, info FROM events "
                               "WHERE seq >= ? AND seq < ? ORDER BY seq", (seq, hi))
            writes: dict[int, list[MemoryWrite]] = {}
            for wseq, addr, size, cons, packed, data in self._query(
                    "SELECT seq, addr, size, conservative, zstd, data FROM writes "
                    "WHERE seq >= ? AND seq < ? ORDER BY seq, ord", (seq, hi)):
                writes.setdefault(wseq, []).append(MemoryWrite(
                    addr=addr, data=self._unpack(packed, data, size, wseq),
                    conservative=bool(cons)))
            if len(rows) != hi - seq:
                raise TraceError(f"trace {self.dir} is corrupt: events {seq}..{hi - 1} missing")
            for s, tid, kind, nr, result, regs, info in rows:
                try:
                    yield Event(seq=s, tid=tid, kind=Kind(kind), nr=nr, result=result,
                                regs=bytes(regs), writes=tuple(writes.get(s, ())),
                                info=json.loads(info) if info else {})
                except (ValueError, TypeError) as e:
                    raise TraceError(f"trace {self.dir} is corrupt at event {s}: {e}") from None
            seq = hi

    def event(self, seq: int) -> Event:
        for ev in self.events(seq, seq + 1):
            return ev
        raise TraceError(f"trace {self.dir} has no event {seq}")

    def _unpack(self, packed: int, data: bytes, size: int, seq: int) -> bytes:
        try:
            out = self._zstd.decompress(data, max_output_size=size) if packed else bytes(data)
        except zstandard.ZstdError as e:
            raise TraceError(f"trace {self.dir} is corrupt at event {seq}: {e}") from None
        if len(out) != size:
            raise TraceError(f"trace {self.dir} is corrupt at event {seq}: "
                             f"write of {size} bytes holds {len(out)}")
        return out

    def file_path(self, file_id: str) -> Path:
        path = self.dir / "files" / file_id
        if not path.is_file():
            raise TraceError(f"trace {self.dir} is missing its copy of a mapped file ({file_id})")
        return path

    def file_ids(self) -> dict[str, str]:
        """id -> original path of every file copied into the trace."""
        return dict(self._query("SELECT id, path FROM files"))

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.dir.rglob("*") if p.is_file())
