#!/usr/bin/env python3
"""The per-buffered-event work of record and replay, Python path against tracee/records.c,
in CPU microseconds per event (docs/performance.md, "buffered records without Python per
event"): one trace (by default a fresh recording of `find /usr -type f -size +100k`).

- record: the trace's BUFFERED events rebuilt as the syscall buffer's records (200 a flush),
  turned into a chunk's columns: `calls_from` + `ChunkBuilder.add` against `columns_from` +
  `add_columns` (chunks encoded, not compressed);
- replay, decode: every chunk decoded to rows (`chunks.decode`) against laid out
  (`records.c` layout);
- replay, collect: every batch a replay would pack, from each emulated event on: from
  decoded rows (MAX_BATCH) against from the laid-out chunks (reading them included).

Usage: python3 bench/bench_buffered_records.py [TRACE]
"""
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import REPO_ROOT, relive_cmd, relive_env

sys.path.insert(0, str(REPO_ROOT))

from recorder.sysbuf_record import calls_from, columns_from  # noqa: E402
from replayer import fastpath  # noqa: E402
from tracee import records, sysbuf  # noqa: E402
from tracefile import chunks, columnar  # noqa: E402
from tracefile.reader import TraceReader  # noqa: E402
from tracefile.records import Kind  # noqa: E402

_HEAD = struct.Struct("<II6Qq")


def buffer_of(rows):
    out = []
    for _, _, _, nr, result, regs, _, writes in rows:
        data = writes[0].data if writes else b""
        size = _HEAD.size + (len(data) + 7) // 8 * 8
        out.append(_HEAD.pack(size, nr | sysbuf.DONE, *struct.unpack("<7Q", regs)[:6], result)
                   + data.ljust(size - _HEAD.size, b"\0"))
    return b"".join(out)


def best(f, k=3):
    times = []
    for _ in range(k):
        t = time.process_time()
        f()
        times.append(time.process_time() - t)
    return min(times)


class ListCursor:
    def __init__(self, rows):
        self.rows, self.at, self.back = rows, 0, []

    def next_row(self):
        if self.back:
            return self.back.pop()
        if self.at < len(self.rows):
            self.at += 1
            return self.rows[self.at - 1]
        return None

    def push_back(self, row):
        self.back.append(row)


def main():
    if records.load() is None or sysbuf.hook() is None:
        sys.exit("records.c or the hook could not be built")
    if len(sys.argv) > 1:
        trace = Path(sys.argv[1])
    else:
        trace = Path(tempfile.mkdtemp()) / "find"
        subprocess.run(relive_cmd(sys.executable, "record", "-o", trace, "--", "sh", "-c",
                                  "find /usr -type f -size +100k | wc -l"),
                       env=relive_env(), check=True, stdout=subprocess.DEVNULL)
    codec, columnar.codec = records.codec(), None
    reader = TraceReader(trace)
    rows = reader._chunks.rows(0, reader.event_count)
    reader.close()
    columnar.codec = codec
    buffered = [r for r in rows if r[2] == Kind.BUFFERED]
    bufs = [buffer_of(buffered[i:i + 200]) for i in range(0, len(buffered), 200)]

    def record(compiled):
        b = chunks.ChunkBuilder()
        for chunk in bufs:
            if compiled:
                b.add_columns(7, int(Kind.BUFFERED), columns_from(chunk, 0))
            else:
                for nr, result, regs, ws in calls_from(chunk, 0):
                    b.add(7, int(Kind.BUFFERED), nr, result, regs, b"",
                          [(a, d, 0) for a, d in ws])
                    if b.full():
                        b.encode()
            if b.full():
                b.encode()
        b.encode()

    import sqlite3
    import zstandard
    db = sqlite3.connect(trace / "trace.db")
    raws = [(f, c, zstandard.ZstdDecompressor().decompress(blob, max_output_size=size))
            for f, c, size, blob in db.execute(
                "SELECT first, count, size, data FROM chunks ORDER BY first")]
    db.close()

    def decode(compiled):
        for first, count, raw in raws:
            codec.layout(first, count, raw) if compiled else chunks.decode(first, count, raw)

    def collect(compiled):
        r = TraceReader(trace)
        cursor = r.events() if compiled else ListCursor(rows)
        while (row := cursor.next_row()) is not None:
            if row[2] in (int(Kind.SYSCALL), int(Kind.BUFFERED)) and not row[6]:
                fastpath.collect(row, cursor.next_row, cursor.push_back, naming=False,
                                 cursor=cursor if compiled else None)
        r.close()

    print(f"{trace}: {len(rows)} events, {len(buffered)} BUFFERED")
    print("| work | Python path | records.c |\n|---|---:|---:|")
    for name, f, n in (("record: records -> chunk columns", record, len(buffered)),
                       ("replay: chunk -> rows / laid out", decode, len(rows)),
                       ("replay: batches packed", collect, len(rows))):
        slow, fast = best(lambda: f(False)), best(lambda: f(True))
        print(f"| {name} | {slow / n * 1e6:.2f} µs | {fast / n * 1e6:.2f} µs |")


if __name__ == "__main__":
    main()
