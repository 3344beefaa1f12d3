"""A format 5 trace's events as the row tables of format 4 (`events`, `writes`), for tests
that tamper with recorded values in SQL: `connect(trace)` opens trace.db with TEMP tables of
those names (SQLite looks names up in TEMP first), filled from the trace's chunks, each row
with its format-4 checksum; `commit()` packs them back into chunks. A row whose checksum no
longer matches (an edit the test left unsealed: damage) goes into a chunk of its own whose
checksum is wrong, so the reader reports damage at that very event. `to_format4` rewrites a
trace as format 4, to check that old traces still read."""
from __future__ import annotations

import json
import sqlite3
import struct
from pathlib import Path

from tracefile import chunks
from tracefile.integrity import event_crc, row_crc, write_crc
from tracefile.reader import TraceReader
from tracefile.schema import ROW_TABLES


def _rows(trace: Path):
    r = TraceReader(trace)
    try:
        cursor = r.events()
        while (row := cursor.next_row()) is not None:
            yield row
    finally:
        r.close()


def _fill(db: sqlite3.Connection, trace: Path, schema: str = "") -> None:
    events, writes = [], []
    for seq, tid, kind, nr, result, regs, info, ws in _rows(trace):
        events.append((seq, tid, kind, nr, result, regs, info, len(ws),
                       event_crc(seq, tid, kind, nr, result, len(ws), regs, info)))
        for i, w in enumerate(ws):
            c = int(w.conservative)
            writes.append((seq, i, w.addr, len(w.data), c, 0, w.data,
                           write_crc(seq, i, w.addr, len(w.data), c, 0, w.data)))
    db.executemany(f"INSERT INTO {schema}events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", events)
    db.executemany(f"INSERT INTO {schema}writes VALUES (?, ?, ?, ?, ?, ?, ?, ?)", writes)


class RowsView:
    def __init__(self, trace: Path) -> None:
        self.db = sqlite3.connect(trace / "trace.db")
        self.db.executescript(ROW_TABLES.replace("CREATE TABLE IF NOT EXISTS ",
                                                 "CREATE TEMP TABLE "))
        _fill(self.db, trace, "temp.")

    def __enter__(self) -> RowsView:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.commit()

    def execute(self, *args):
        return self.db.execute(*args)

    def executemany(self, *args):
        return self.db.executemany(*args)

    def commit(self) -> None:
        self._pack()
        self.db.commit()

    def close(self) -> None:
        self.db.close()

    def _pack(self) -> None:
        db = self.db
        writes: dict[int, list[tuple]] = {}
        for row in db.execute("SELECT * FROM temp.writes ORDER BY seq, ord"):
            writes.setdefault(row[0], []).append(row)
        db.execute("DELETE FROM main.chunks")
        builder = chunks.ChunkBuilder()
        compress = __import__("zstandard").ZstdCompressor()

        def seal(first: int, bad: bool = False) -> None:
            if len(builder):
                f, n, raw = builder.encode()
                blob = compress.compress(raw)
                crc = chunks.chunk_crc(f, n, len(raw), blob) ^ (1 if bad else 0)
                db.execute("INSERT INTO main.chunks VALUES (?, ?, ?, ?, ?)",
                           (f, n, len(raw), blob, crc))
            builder.first = first

        rows = db.execute("SELECT * FROM temp.events ORDER BY seq").fetchall()
        for seq, tid, kind, nr, result, regs, info, count, crc in rows:
            ws = writes.get(seq, [])
            if seq != builder.first + len(builder):
                seal(seq)
            try:
                good = (crc == event_crc(seq, tid, kind, nr, result, count, regs, info)
                        and count == len(ws)
                        and all(w[7] == write_crc(*w[:7]) and not w[5] for w in ws))
                payload = [(w[2], w[6], w[4]) for w in ws]
                if not good:
                    raise TypeError
            except (TypeError, struct.error):
                seal(seq)  # a chunk of its own, damaged
                builder.add(int(tid) if type(tid) is int else 0, kind if type(kind) is int else 0,
                            nr if type(nr) is int else 0,
                            result if type(result) is int else 0,
                            regs if type(regs) is bytes else b"",
                            info if type(info) is bytes else str(info).encode(),
                            [(w[2], bytes(w[6]) if type(w[6]) is bytes else b"", w[4])
                             for w in ws if type(w[2]) is int and type(w[4]) is int])
                seal(seq + 1, bad=True)
                continue
            builder.add(tid, kind, nr, result, regs, info, payload)
            if builder.full():
                seal(seq + 1)
        seal(0)


def connect(trace: Path) -> RowsView:
    return RowsView(Path(trace))


def to_format4(trace: Path) -> None:
    """Rewrite a trace as format 4 (rows, checksums): what relive wrote before chunks."""
    trace = Path(trace)
    db = sqlite3.connect(trace / "trace.db")
    db.executescript(ROW_TABLES)
    _fill(db, trace)
    db.execute("DROP TABLE chunks")
    value = json.dumps(4)
    db.execute("UPDATE meta SET value = ?, crc = ? WHERE key = 'format_version'",
               (value, row_crc("format_version", value)))
    db.commit()
    db.close()


