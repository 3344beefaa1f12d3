"""The per-buffered-event work in compiled code (tracee/records.c, tracee.records): the
syscall buffer's records turned into chunk columns at record, chunks laid out and replay
batches packed at replay. Each must give exactly what its Python path gives (the
fallback, RELIVE_FASTPATH=0): on real recordings (find, tar, a C program reading the clock),
and on crafted input, where the compiled code must never read past what it was given (a
mangled chunk is `Damaged` or the same rows as the Python decoder's, never a crash)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import struct

import pytest
import trace_rows
from conftest import REPO_ROOT, assert_diverged_at, describe, record, replay, reseal
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from test_trace_chunks import event_runs

from recorder.sysbuf_record import calls_from, columns_from
from replayer import fastpath
from replayer.fastpath import collect, emulated_only
from tracee import fastloop, records, sysbuf
from tracefile import chunks, columnar
from tracefile.columnar import Columns, Decoded
from tracefile.integrity import Damaged
from tracefile.reader import TraceReader
from tracefile.records import Kind

pytestmark = [pytest.mark.skipif(sysbuf.hook() is None or records.load() is None,
                                 reason="the hook or records.c could not be built (no gcc?)"),
              pytest.mark.usefixtures("syscallbuf_on")]
SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
_HEAD = struct.Struct("<II6Qq")


@pytest.fixture(scope="module")
def traces(programs, tmp_path_factory):
    """find, tar and a C program, recorded with the syscall buffer (compiled columns)."""
    out = {}
    root = tmp_path_factory.mktemp("records")
    argvs = {"find": ["find", str(REPO_ROOT), "-name", "*.py", "-size", "+2k"],
             "tar": ["tar", "-cf", "/dev/null", "-C", str(REPO_ROOT), "tracee", "tests"],
             "clocks": [str(programs["clock_reads"]), "3000"]}
    for name, argv in argvs.items():
        if shutil.which(argv[0]) is None:
            continue
        rec = record(root / name, *argv)
        assert rec.returncode == 0, describe(rec)
        out[name] = root / name
    return out


@pytest.fixture(autouse=True)
def _compiled_codec(monkeypatch):
    """As a replay installs it (replayer.fastpath): the chunks laid out in compiled code."""
    monkeypatch.setattr(columnar, "codec", records.codec())


def _all_rows(trace, codec):
    """Every row of `trace`, its chunks decoded by `codec` (None: the Python decoder)."""
    old, columnar.codec = columnar.codec, codec
    try:
        r = TraceReader(trace)
        try:
            assert r._chunks is not None
            return r._chunks.rows(0, r.event_count)
        finally:
            r.close()
    finally:
        columnar.codec = old


def _buffer_of(rows) -> bytes:
    """BUFFERED rows as the syscall buffer's records that made them (head, then output)."""
    out = []
    for _, _, kind, nr, result, regs, _, writes in rows:
        assert kind == Kind.BUFFERED
        args = struct.unpack("<7Q", regs)[:6]
        data = writes[0].data if writes else b""
        size = _HEAD.size + (len(data) + 7) // 8 * 8
        out.append(_HEAD.pack(size, nr | sysbuf.DONE, *args, result)
                   + data.ljust(size - _HEAD.size, b"\0"))
    return b"".join(out)


def _encoded_both_ways(buffer: bytes) -> tuple[bytes, bytes]:
    """`buffer`'s records as a chunk's raw blob: through calls_from (Python) and through
    columns_from (records.c)."""
    slow = chunks.ChunkBuilder()
    for nr, result, regs, ws in calls_from(buffer, 0):
        slow.add(7, int(Kind.BUFFERED), nr, result, regs, b"", [(a, d, 0) for a, d in ws])
    fast = chunks.ChunkBuilder()
    cols = columns_from(buffer, 0)
    assert isinstance(cols, Columns)
    fast.add_columns(7, int(Kind.BUFFERED), cols)
    return slow.encode()[2], fast.encode()[2]


@pytest.mark.parametrize("name", ["find", "tar", "clocks"])
def test_recorded_buffers_become_the_same_chunk_either_way(traces, name):
    """The buffered events of a real recording, as the buffer held them: records.c makes
    the chunk the Python path makes, byte for byte, and the events the trace holds."""
    if name not in traces:
        pytest.skip(f"needs {name}")
    rows = [r for r in _all_rows(traces[name], None) if r[2] == Kind.BUFFERED]
    assert len(rows) > 100
    for lo in range(0, len(rows), 1000):
        part = rows[lo:lo + 1000]
        slow, fast = _encoded_both_ways(_buffer_of(part))
        assert fast == slow
        back = chunks.decode(0, len(part), fast)
        assert [r[2:] for r in back] == [r[2:] for r in part]


@pytest.mark.parametrize("name", ["find", "tar", "clocks"])
def test_recorded_chunks_lay_out_to_the_python_rows(traces, name):
    if name not in traces:
        pytest.skip(f"needs {name}")
    assert columnar.codec is not None
    assert _all_rows(traces[name], columnar.codec) == _all_rows(traces[name], None)


class _ListCursor:
    def __init__(self, rows, at):
        self.rows, self.at, self.back = rows, at, []

    def next_row(self):
        if self.back:
            return self.back.pop()
        if self.at < len(self.rows):
            self.at += 1
            return self.rows[self.at - 1]
        return None

    def push_back(self, row):
        self.back.append(row)


@pytest.mark.parametrize("name", ["find", "tar", "clocks"])
@pytest.mark.parametrize("naming", [False, True])
def test_replay_batches_are_packed_the_same_either_way(traces, name, naming, monkeypatch):
    """Every batch a replay of the trace would pack, from each of its events: records.c's
    packing of the laid-out chunks and the Python path's, from rows, are the same bytes,
    the same events, ending at the same event; most of them are many events long. (The
    Python path's batches are as long as the compiled one's for the comparison.)"""
    if name not in traces:
        pytest.skip(f"needs {name}")
    monkeypatch.setattr(fastpath, "MAX_BATCH", fastpath.MAX_PACKED)
    rows = _all_rows(traces[name], None)
    r = TraceReader(traces[name])
    long_batches = compiled_runs = 0
    try:
        i = 0
        while i < len(rows):
            ev = r.event_from(rows[i])
            if not emulated_only(ev, ev.tid, naming=naming):
                i += 1
                continue
            first = rows[i][:6] + (b"",) + rows[i][7:]
            slow_cursor = _ListCursor(rows, i + 1)
            slow = collect(first, slow_cursor.next_row, slow_cursor.push_back, naming=naming)
            cursor = r.events(i + 1)
            fast = collect(first, cursor.next_row, cursor.push_back, naming=naming,
                           cursor=cursor)
            assert slow is not None and fast is not None
            assert (fast.evs, fast.wrs, fast.data, fast.after) == (
                slow.evs, slow.wrs, slow.data, slow.after)
            assert list(fast.rows) == list(slow.rows)
            assert fast.rows[-1] == slow.rows[-1] and fast.rows[1:3] == slow.rows[1:3]
            compiled_runs += any(isinstance(p[0], Decoded) for p in fast.rows._parts)
            nxt = cursor.next_row()
            assert nxt == (rows[i + len(slow.rows)] if i + len(slow.rows) < len(rows) else None)
            long_batches += len(slow.rows) > 8
            i += len(slow.rows)
    finally:
        r.close()
    assert long_batches and compiled_runs


def _real_buffer(traces) -> bytes:
    name = next(iter(traces))
    rows = [r for r in _all_rows(traces[name], None) if r[2] == Kind.BUFFERED]
    return _buffer_of(rows[:40])


@SETTINGS
@given(edits=st.lists(st.tuples(st.integers(0, 2**32), st.integers(0, 255)), max_size=6),
       cut=st.integers(0, 200), words=st.lists(st.tuples(st.integers(0, 2**20),
                                                        st.integers(-2**63, 2**63 - 1)),
                                              max_size=3))
def test_a_mangled_buffer_gives_the_same_columns_or_none(traces, edits, cut, words):
    """Records changed or cut short (sizes, numbers, results, lengths from nowhere): the
    compiled conversion stays within the buffer and takes what calls_from takes."""
    data = bytearray(_real_buffer(traces))
    data = data[:max(len(data) - cut, 0)]
    for where, value in edits:
        if data:
            data[where % len(data)] = value
    for where, value in words:
        at = where % max(len(data) - 8, 1) // 8 * 8
        if at + 8 <= len(data):
            data[at:at + 8] = struct.pack("<q", value)
    try:
        slow, fast = _encoded_both_ways(bytes(data))
        # as the recorder's stop takes them: the whole, done records with their result
        recs, _ = sysbuf.parse(bytes(data), 0)
        whole = 0
        for rec in recs:
            if not rec.done or rec.result == sysbuf.PENDING:
                break
            whole = rec.data_addr - sysbuf.HOOK_BUF + len(rec.data)
        slow_whole, _ = _encoded_both_ways(bytes(data[:whole]))
    except OverflowError:  # an output address past 2**63: the Python path cannot store it
        assume(False)
    assert fast == slow
    hook = sysbuf.hook()
    assert hook is not None
    fields, end = records.buffered_columns(records.load(), bytes(data),
                                           hook.untraced_insn + 2, len(data), whole=True)
    cols = Columns(*fields)
    builder = chunks.ChunkBuilder()
    builder.add_columns(7, int(Kind.BUFFERED), cols)
    assert (builder.encode()[2], end) == (slow_whole, whole)


def _crafted_rows(raw: bytes, count: int):
    try:
        slow = chunks.decode(0, count, raw)
    except Damaged:
        slow = None
    try:
        fast = chunks.decode_chunk(0, count, raw)
    except Damaged:
        fast = None
    return slow, fast


@SETTINGS
@given(edits=st.lists(st.tuples(st.integers(0, 2**32), st.integers(0, 255)), max_size=4),
       cut=st.integers(0, 64), words=st.lists(st.tuples(st.integers(0, 2**16),
                                                       st.integers(-2**40, 2**40)),
                                             max_size=2))
def test_a_crafted_chunk_lays_out_as_python_decodes_it_or_is_damage(traces, edits, cut, words):
    """A real chunk's bytes changed behind its checksum (a crafted trace): the compiled
    layout is Damaged exactly when the Python decoder is, else gives the same rows; and
    packing batches from it never reads outside it."""
    name = next(iter(traces))
    r = TraceReader(traces[name])
    try:
        assert r._chunks is not None and r._index is not None
        count = min(r._index.counts[0], 300)
        rows = r._chunks.rows(0, count)
    finally:
        r.close()
    builder = chunks.ChunkBuilder()
    for _, tid, kind, nr, result, regs, info, ws in rows:
        builder.add(tid, kind, nr, result, regs, info, [(w.addr, w.data, int(w.conservative))
                                                       for w in ws])
    _, count, raw = builder.encode()
    data = bytearray(raw[:len(raw) - cut] if cut < len(raw) else raw)
    for where, value in edits:
        if data:
            data[where % len(data)] = value
    for where, value in words:
        at = where % max(len(data) // 8, 1) * 8
        if at + 8 <= len(data):
            data[at:at + 8] = struct.pack("<q", value)
    slow, fast = _crafted_rows(bytes(data), count)
    assert (slow is None) == (fast is None)
    if fast is None:
        return
    assert isinstance(fast, Decoded)
    assert fast.rows(0, count) == slow
    codec = columnar.codec
    assert isinstance(codec, records.RecordsCodec)
    allowed = bytes([1]) * records.MAX_NR
    for i in range(0, count, 7):
        k, evs, wrs, out = codec.collect(fast, i, count, fast.row(i)[1], allowed, 256,
                                         4 << 20, 0, 0)
        assert 0 <= k <= count - i and len(evs) == k * records.EV_SIZE


class _SpanCursor(_ListCursor):
    """tracefile.reader EventCursor over one laid-out chunk."""

    def __init__(self, chunk: Decoded, at: int):
        super().__init__([chunk.row(i) for i in range(chunk.count)], at)
        self.chunk = chunk

    def span(self):
        return None if self.back or self.at >= self.chunk.count else (
            self.chunk, self.at, self.chunk.count)

    def skip(self, count):
        self.at += count


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(evs=event_runs(), naming=st.booleans())
def test_crafted_events_lay_out_and_pack_as_the_python_path_does(evs, naming):
    assert len(evs) < fastpath.MAX_BATCH  # (the same lengths either way)
    """Events of several threads, of every kind, with odd register lengths, infos and
    conservative writes: laid out as decoded, and every batch from every event packed as
    the Python path packs it (the same events taken, the same bytes, the same end)."""
    builder = chunks.ChunkBuilder()
    for ev in evs:
        builder.add(ev.tid, int(ev.kind), ev.nr, ev.result, ev.regs, b"x" if ev.info else b"",
                    [(w.addr, w.data, int(w.conservative)) for w in ev.writes])
    first, count, raw = builder.encode()
    if not count:
        return
    slow_rows = chunks.decode(first, count, raw)
    fast = chunks.decode_chunk(first, count, raw)
    assert isinstance(fast, Decoded) and fast.rows(0, count) == slow_rows
    for i, row in enumerate(slow_rows):
        slow_cursor = _ListCursor(slow_rows, i + 1)
        slow = collect(row, slow_cursor.next_row, slow_cursor.push_back, naming=naming)
        cursor = _SpanCursor(fast, i + 1)
        got = collect(row, cursor.next_row, cursor.push_back, naming=naming, cursor=cursor)
        assert (slow is None) == (got is None)
        if slow is None or got is None:
            continue
        assert (got.evs, got.wrs, got.data, got.after) == (slow.evs, slow.wrs, slow.data,
                                                            slow.after)
        assert list(got.rows) == list(slow.rows)
        assert cursor.next_row() == slow_cursor.next_row()


def test_the_c_and_python_declarations_agree_and_a_drift_is_named():
    lib = records.load()
    assert lib is not None
    assert fastloop.disagreements(lib, records.DECLARED) == ""
    wrong = dict(records.DECLARED, EV_SIZE=records.EV_SIZE + 8)
    assert f"EV_SIZE is {records.EV_SIZE} in C" in fastloop.disagreements(lib, wrong)


def test_relive_fastpath_0_keeps_the_python_paths():
    """RELIVE_FASTPATH=0: no compiled codec, chunks decode to rows in Python."""
    code = "from tracee import records; print(records.load(), records.codec())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, RELIVE_FASTPATH="0", PYTHONPATH=str(REPO_ROOT)),
                         check=True)
    assert out.stdout.split() == ["None", "None"]


def test_a_batchs_events_not_replayed_go_back_to_the_span(traces):
    """The events of a compiled batch the loop had no time for go back (replayer.session,
    in reverse order) as a step back in the chunk: the next batch packs them again from it,
    not row by row; a row from elsewhere goes back as a row."""
    r = TraceReader(traces[next(iter(traces))])
    try:
        cursor = r.events()
        cursor.next_row()
        got = cursor.span()
        assert got is not None
        chunk, at, hi = got
        assert hi - at > 20
        cursor.skip(10)
        for i in reversed(range(at, at + 10)):
            cursor.push_back(chunk.row(i))
        assert cursor.span() == (chunk, at, hi)
        cursor.skip(1)
        cursor.push_back(chunk.row(at + 5))  # not the one just before: a row
        assert cursor.span() is None
        assert cursor.next_row() == chunk.row(at + 5)
        assert cursor.next_row() == chunk.row(at + 1)
    finally:
        r.close()


def test_a_tampered_record_in_a_packed_batch_diverges_at_its_event(traces, tmp_path):
    """find's trace with one buffered call's argument changed in the middle of a long run
    (a batch packed by records.c): the replay names that event."""
    if "find" not in traces:
        pytest.skip("needs find")
    trace = tmp_path / "t"
    shutil.copytree(traces["find"], trace)
    db = trace_rows.connect(trace)
    found = db.execute("SELECT seq, regs FROM events WHERE kind = ? ORDER BY seq",
                       (int(Kind.BUFFERED),)).fetchall()
    seq, regs = found[len(found) // 2]
    assert len(regs) == 56
    args = list(struct.unpack("<7Q", regs))
    args[1] ^= 0x10  # the path's or the buffer's address
    db.execute("UPDATE events SET regs = ? WHERE seq = ?", (struct.pack("<7Q", *args), seq))
    reseal(db)
    db.commit()
    db.close()
    assert_diverged_at(replay(trace), seq)


def test_doctor_says_whether_records_c_is_on():
    from conftest import run_relive
    on = run_relive("doctor", text=True, timeout=60)
    off = run_relive("doctor", text=True, timeout=60, env=dict(os.environ, RELIVE_FASTPATH="0"))
    line = next(x for x in on.stdout.splitlines() if "records path:" in x)
    assert "on (" in line, line
    assert "records path:    off (RELIVE_FASTPATH=0)" in off.stdout, off.stdout
