"""Format 5's chunks of events (tracefile.chunks): every event reads back exactly, in order
and one by one, whatever the threads, register lengths and chunk boundaries; a recording
costs a few dozen bytes per event; a format-4 trace still reads; a chunk whose lengths do
not add up is damage, not a wrong event."""
from __future__ import annotations

import sqlite3
import struct
import tempfile
from pathlib import Path

import pytest
import trace_rows
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracefile import chunks
from tracefile.errors import TraceError
from tracefile.reader import TraceReader
from tracefile.records import Event, Kind, MemoryWrite
from tracefile.writer import TraceWriter

I64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
WORD = st.integers(0, 2**64 - 1)
SETTINGS = settings(max_examples=80, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@st.composite
def event_runs(draw: st.DrawFn) -> list[Event]:
    """Events of a few threads whose registers change a few words at a time (as a program's
    do), now and then of another length (none, or not 216 bytes)."""
    tids = draw(st.lists(st.integers(1, 2**31 - 1), min_size=1, max_size=4, unique=True))
    regs = {tid: draw(st.lists(WORD, min_size=27, max_size=27)) for tid in tids}
    out = []
    for _ in range(draw(st.integers(0, 60))):
        tid = draw(st.sampled_from(tids))
        for i, v in draw(st.lists(st.tuples(st.integers(0, 26), WORD), max_size=4)):
            regs[tid][i] = v
        packed = struct.pack("<27Q", *regs[tid])
        shape = draw(st.integers(0, 9))
        raw = packed if shape > 1 else (b"" if shape == 0 else draw(st.binary(max_size=300)))
        ws = draw(st.lists(st.builds(MemoryWrite, addr=st.integers(0, 2**63 - 1),
                                     data=st.binary(max_size=200),
                                     conservative=st.booleans()), max_size=3))
        info = draw(st.sampled_from([{}, {"rip": 4096}, {"x": "é" * 3}]))
        out.append(Event(seq=0, tid=tid, kind=draw(st.sampled_from(Kind)), nr=draw(I64),
                         result=draw(I64), regs=raw, writes=tuple(ws), info=info))
    return out


def _row(ev: Event, seq: int) -> tuple:
    import json
    info = json.dumps(ev.info, separators=(",", ":")).encode() if ev.info else b""
    return (seq, ev.tid, int(ev.kind), ev.nr, ev.result, ev.regs, info, ev.writes)


@SETTINGS
@given(evs=event_runs(), first=st.integers(0, 2**40))
def test_a_chunk_decodes_to_what_was_encoded(evs, first):
    builder = chunks.ChunkBuilder()
    builder.first = first
    for ev in evs:
        builder.add(ev.tid, int(ev.kind), ev.nr, ev.result, ev.regs,
                    _row(ev, 0)[6], [(w.addr, w.data, int(w.conservative)) for w in ev.writes])
    got_first, count, raw = builder.encode()
    assert (got_first, count) == (first, len(evs))
    assert chunks.decode(first, count, raw) == [_row(ev, first + i) for i, ev in enumerate(evs)]
    assert len(builder) == 0 and builder.first == first + len(evs)


@SETTINGS
@given(evs=event_runs(), cuts=st.sets(st.integers(0, 60), max_size=6))
def test_events_read_back_across_commits_in_order_and_one_by_one(evs, cuts):
    """Each commit seals a chunk: the boundaries fall anywhere."""
    with tempfile.TemporaryDirectory() as tmp:
        trace = Path(tmp) / "t"
        w = TraceWriter(trace)
        for i, ev in enumerate(evs):
            w.add(ev)
            if i in cuts:
                w.commit(wait=False)
        w.close()
        expected = [ev._replace(seq=i) for i, ev in enumerate(evs)]
        r = TraceReader(trace)
        try:
            assert list(r.events()) == expected
            for i in reversed(range(len(expected))):  # seeking: backwards, chunk by chunk
                assert r.event(i) == expected[i]
            if len(expected) > 3:
                assert list(r.events(2, len(expected) - 1)) == expected[2:-1]
        finally:
            r.close()


def test_a_programs_events_cost_a_few_dozen_bytes_each(tmp_path):
    """20 000 syscalls of two threads whose registers change a few words each time, each
    with a 144-byte stat buffer: format 4 stored 216 bytes of registers alone per event."""
    w = TraceWriter(tmp_path / "t")
    n = 20_000
    regs = {7: [0x7FFD_0000_1000 + 8 * i for i in range(27)], 8: [0x5555_0000 + i
                                                                  for i in range(27)]}
    for i in range(n):
        tid = 7 if i % 5 else 8
        r = regs[tid]
        r[15] = r[10] = (4, 262, 3, 0)[i % 4]              # orig_rax, rax: the syscall
        r[14], r[13] = 3 + i % 7, 0x7FFD_0000_2000 + 64 * (i % 50)  # rdi, rsi: arguments
        r[16] = 0x7F00_0012_3456 + (i % 4) * 0x40          # rip: one of four call sites
        stat = struct.pack("<3Q", 2049, 1_000_000 + i, 0o100644) + bytes(120)
        w.add(Event(seq=0, tid=tid, kind=Kind.SYSCALL, nr=r[15], regs=struct.pack("<27Q", *r),
                    writes=(MemoryWrite(addr=r[13], data=stat),)))
        if i % 3000 == 0:
            w.commit(wait=False)
    w.close()
    r = TraceReader(tmp_path / "t")
    try:
        assert r.event_count == n and r.event(12_345).writes[0].data[8:16] == \
            struct.pack("<Q", 1_012_345)
    finally:
        r.close()
    db = sqlite3.connect(tmp_path / "t" / "trace.db")
    stored = db.execute("SELECT sum(length(data)) FROM chunks").fetchone()[0]
    db.close()
    assert stored / n < 24, stored / n
    on_disk = sum(p.stat().st_size for p in (tmp_path / "t").glob("trace.db*"))
    assert on_disk / n < 64, on_disk / n  # (main's format 4 writer: 331)


def test_a_format_4_trace_reads_the_same(tmp_path):
    w = TraceWriter(tmp_path / "t")
    evs = [Event(seq=0, tid=1 + i % 2, kind=Kind.SYSCALL, nr=i, result=i * 3,
                 regs=bytes([i]) * 216, writes=(MemoryWrite(addr=i, data=b"x" * i * 40),),
                 info={"n": i} if i % 4 == 0 else {}) for i in range(50)]
    for ev in evs:
        w.add(ev)
    w.close()
    new = TraceReader(tmp_path / "t")
    before = list(new.events())
    new.close()
    trace_rows.to_format4(tmp_path / "t")
    old = TraceReader(tmp_path / "t")
    try:
        assert old.meta["format_version"] == 4 and old.verified
        assert list(old.events()) == before == [e._replace(seq=i) for i, e in enumerate(evs)]
        assert old.event(17) == before[17]
    finally:
        old.close()


def _reseal_chunk(trace: Path, change) -> None:
    """Replace the first chunk's raw blob with `change(raw)`, checksum recomputed (a crafted
    trace, not a damaged one: the decoder's own checks are what is tested)."""
    db = sqlite3.connect(trace / "trace.db")
    first, count, blob = db.execute("SELECT first, count, data FROM chunks "
                                    "ORDER BY first LIMIT 1").fetchone()
    raw = change(zstandard.ZstdDecompressor().decompress(blob))
    blob = zstandard.ZstdCompressor().compress(raw)
    db.execute("UPDATE chunks SET size = ?, data = ?, crc = ? WHERE first = ?",
               (len(raw), blob, chunks.chunk_crc(first, count, len(raw), blob), first))
    db.commit()
    db.close()


@pytest.mark.parametrize("change", [
    lambda raw: raw[:-1],                                    # a byte short
    lambda raw: raw + b"\0",                                 # a byte over
    lambda raw: raw[:8 * 4] + struct.pack("<q", 2**40) + raw[8 * 5:],  # huge writes count
    lambda raw: raw[:8 * 5] + struct.pack("<q", -216) + raw[8 * 6:],   # negative regs length
    lambda raw: raw[:20],                                    # shorter than its columns
], ids=["short", "long", "writes-count", "negative-length", "truncated"])
def test_a_chunk_whose_lengths_do_not_add_up_is_damage(tmp_path, change):
    w = TraceWriter(tmp_path / "t")
    w.add(Event(seq=0, tid=1, kind=Kind.SYSCALL, regs=bytes(range(216)),
                writes=(MemoryWrite(addr=8, data=b"abc"),)))
    w.close()
    _reseal_chunk(tmp_path / "t", change)
    r = TraceReader(tmp_path / "t")
    try:
        with pytest.raises(TraceError, match="damaged at event 0"):
            list(r.events())
    finally:
        r.close()


@SETTINGS
@given(evs=event_runs(), edits=st.lists(st.tuples(st.integers(0, 2**32), st.integers(0, 255)),
                                        min_size=1, max_size=4),
       cut=st.integers(0, 64))
def test_a_crafted_chunk_decodes_or_is_damage(evs, edits, cut):
    """Bytes of a chunk changed behind its checksum's back (a crafted trace): decoding gives
    events or `Damaged`, never another exception, whatever the columns now say."""
    builder = chunks.ChunkBuilder()
    for ev in evs:
        builder.add(ev.tid, int(ev.kind), ev.nr, ev.result, ev.regs, b"",
                    [(w.addr, w.data, int(w.conservative)) for w in ev.writes])
    first, count, raw = builder.encode()
    data = bytearray(raw[:len(raw) - cut] if cut < len(raw) else raw)
    for where, value in edits:
        if data:
            data[where % len(data)] = value
    try:
        rows = chunks.decode(first, count, bytes(data))
    except chunks.Damaged:
        return
    assert len(rows) == count
