"""TraceWriter -> TraceReader: what is written is read back exactly; anything that is not a
good trace is a TraceError, never another exception."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import trace_rows
from conftest import REPO_ROOT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracefile.errors import TraceError
from tracefile.reader import CHUNK, TraceReader
from tracefile.records import FORMAT_VERSION, OLDEST_FORMAT, Event, Kind, MemoryWrite, TaskRecord
from tracefile.writer import TraceWriter

I64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)

compressible = st.builds(lambda unit, n: (unit * n)[:200_000],
                         st.binary(min_size=1, max_size=8), st.integers(20, 50_000))
payload = st.one_of(st.binary(max_size=300), compressible)
writes = st.builds(MemoryWrite, addr=st.integers(0, 2**47 - 1), data=payload,
                   conservative=st.booleans())
json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                      st.text(max_size=20))
json_value = st.recursive(json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=10)
events = st.builds(
    Event, seq=st.just(0), tid=st.integers(1, 2**31 - 1), kind=st.sampled_from(Kind),
    nr=I64, result=I64, regs=st.binary(min_size=216, max_size=216),
    writes=st.lists(writes, max_size=5).map(tuple),
    info=st.dictionaries(st.text(max_size=10), json_value, max_size=4))

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@SETTINGS
@given(evs=st.lists(events, max_size=12), meta=st.dictionaries(
    st.text(min_size=1, max_size=10).filter(lambda k: k not in ("format_version", "complete",
                                                                 "events")),
    json_value, max_size=4))
def test_events_round_trip(evs, meta):
    with tempfile.TemporaryDirectory() as tmp:
        trace = Path(tmp) / "trace"
        w = TraceWriter(trace)
        w.set_meta(**meta)
        seqs = [w.add(ev) for ev in evs]
        w.close(complete=True)
        assert seqs == list(range(len(evs)))

        r = TraceReader(trace)
        try:
            assert r.complete
            assert r.event_count == len(evs)
            assert r.meta["events"] == len(evs)
            assert r.meta["format_version"] == FORMAT_VERSION
            for key, value in meta.items():
                assert r.meta[key] == value
            expected = [ev._replace(seq=i) for i, ev in enumerate(evs)]
            assert list(r.events()) == expected
            for i, ev in enumerate(expected):
                assert r.event(i) == ev
            assert list(r.events(1, 3)) == expected[1:3]
        finally:
            r.close()


def test_many_events_across_chunks(tmp_path):
    w = TraceWriter(tmp_path / "t")
    n = CHUNK * 2 + 77
    for i in range(n):
        w.add(Event(seq=0, tid=100 + i % 3, kind=Kind.SYSCALL, nr=i, result=-i,
                    regs=i.to_bytes(8, "little") * 27,
                    writes=(MemoryWrite(addr=i, data=bytes([i % 256]) * (i % 300)),)))
    w.close()
    r = TraceReader(tmp_path / "t")
    got = list(r.events())
    assert [e.seq for e in got] == list(range(n))
    assert all(e.nr == e.seq and e.result == -e.seq for e in got)
    assert all(e.writes[0].data == bytes([e.seq % 256]) * (e.seq % 300) for e in got)
    assert [e.seq for e in r.events(CHUNK - 2, CHUNK + 3)] == list(range(CHUNK - 2, CHUNK + 3))
    with pytest.raises(TraceError):
        r.event(n)
    r.close()


def test_tasks_and_files_round_trip(tmp_path):
    src = tmp_path / "mapped.bin"
    src.write_bytes(os.urandom(5000))
    w = TraceWriter(tmp_path / "t")
    w.put_task(TaskRecord(tid=7, pid=7, ppid=1, argv=("prog", "a b", "ü"), exe="/bin/prog"))
    w.add(Event(seq=0, tid=7, kind=Kind.EXEC, regs=bytes(216)))
    w.put_task(TaskRecord(tid=8, pid=8, ppid=7, argv=(), exe="/bin/child"))
    file_id = w.add_file(str(src))
    assert w.add_file(str(src)) == file_id
    w.set_task_exit(7, 3 << 8)
    w.close(complete=False)

    r = TraceReader(tmp_path / "t")
    assert not r.complete
    assert r.tasks() == [
        TaskRecord(tid=7, pid=7, ppid=1, argv=("prog", "a b", "ü"), exe="/bin/prog",
                   exit_status=3 << 8),
        TaskRecord(tid=8, pid=8, ppid=7, argv=(), exe="/bin/child", exit_status=None)]
    assert r.file_ids() == {file_id: str(src)}
    assert r.file_path(file_id).read_bytes() == src.read_bytes()
    with pytest.raises(TraceError):
        r.file_path("0" * 32)
    r.close()


def test_writer_killed_mid_trace_leaves_committed_events(tmp_path):
    """A writer process that dies without close(): what it committed reads back, and the
    trace says it is incomplete."""
    trace = tmp_path / "t"
    script = f"""
import os, signal
from tracefile.writer import TraceWriter
from tracefile.records import Event, Kind
w = TraceWriter({str(trace)!r})
for i in range(10):
    w.add(Event(seq=0, tid=1, kind=Kind.SYSCALL, nr=i, regs=bytes(216)))
w.commit()
w.add(Event(seq=0, tid=1, kind=Kind.SYSCALL, nr=99, regs=bytes(216)))  # never committed
os.kill(os.getpid(), signal.SIGKILL)
"""
    proc = subprocess.run([sys.executable, "-c", script], check=False, env=dict(
        os.environ, PYTHONPATH=str(REPO_ROOT)), capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    r = TraceReader(trace)
    assert not r.complete
    assert [e.nr for e in r.events()] == list(range(10))
    r.close()


# -- not a trace --------------------------------------------------------------------------------
def _open_and_read_all(trace):
    r = TraceReader(trace)
    try:
        list(r.events())
        r.tasks()
        r.file_ids()
    finally:
        r.close()


@settings(max_examples=150, deadline=None)
@given(data=st.one_of(st.binary(max_size=5000),
                      st.binary(max_size=5000).map(lambda b: b"SQLite format 3\x00" + b)))
def test_garbage_trace_db_is_trace_error(data):
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "trace.db").write_bytes(data)
        with pytest.raises(TraceError):
            _open_and_read_all(Path(tmp))


@pytest.fixture(scope="module")
def small_trace_bytes(tmp_path_factory):
    trace = tmp_path_factory.mktemp("small") / "t"
    w = TraceWriter(trace)
    w.set_meta(program="/bin/x", argv=["x"])
    for i in range(300):
        w.add(Event(seq=0, tid=5, kind=Kind.SYSCALL, nr=i % 300, result=i,
                    regs=bytes([i % 256]) * 216,
                    writes=(MemoryWrite(addr=4096 * i, data=b"abc" * i),)))
    w.close()
    return (trace / "trace.db").read_bytes()


@settings(max_examples=40, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture])
@given(fraction=st.floats(0.0, 0.95))
def test_truncated_trace_db_is_trace_error(small_trace_bytes, fraction):
    """A TraceError, or (when only the zero bytes at the end of the last page went, which
    SQLite reads back as zeros) exactly what was written."""
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "trace.db").write_bytes(small_trace_bytes)
        expected = _everything(Path(tmp))
        cut = small_trace_bytes[:int(len(small_trace_bytes) * fraction)]
        (Path(tmp) / "trace.db").write_bytes(cut)
        try:
            got = _everything(Path(tmp))
        except TraceError:
            return
        assert got == expected


def test_missing_trace_db_is_trace_error(tmp_path):
    with pytest.raises(TraceError, match="not a relive trace"):
        TraceReader(tmp_path)


@pytest.fixture
def written(tmp_path):
    trace = tmp_path / "t"
    w = TraceWriter(trace)
    for i in range(20):
        w.add(Event(seq=0, tid=1, kind=Kind.SYSCALL, nr=i, regs=bytes(216)))
    w.close()
    return trace


def _sql(trace, statement, *args):
    """Run a statement on trace.db; on the events and writes tables of format 4 as
    tests/trace_rows.py unpacks them from the chunks (if the trace has some)."""
    db = sqlite3.connect(trace / "trace.db")
    chunked = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'chunks'").fetchone()
    if chunked and ("events" in statement or "writes" in statement):
        db.close()
        db = trace_rows.connect(trace)
    db.execute(statement, args)
    db.commit()
    db.close()


@pytest.mark.parametrize("missing", [[0], [7], [3, 4, 5], list(range(1, 19))])
def test_events_table_missing_rows_is_trace_error(written, missing):
    _sql(written, f"DELETE FROM events WHERE seq IN ({', '.join(map(str, missing))})")
    # Either opening (the count disagrees with meta) or reading (a gap) must say so.
    with pytest.raises(TraceError, match="missing|should hold"):
        r = TraceReader(written)
        try:
            list(r.events())
        finally:
            r.close()


def test_events_table_missing_last_rows_is_trace_error(written):
    _sql(written, "DELETE FROM events WHERE seq >= 17")
    with pytest.raises(TraceError, match="should hold 20 events but holds 17"):
        TraceReader(written)


@pytest.mark.parametrize("statement", [
    "UPDATE events SET kind = 99 WHERE seq = 3",
    "UPDATE events SET info = '{not json' WHERE seq = 3",
    "UPDATE meta SET value = '\"one\"' WHERE key = 'format_version'",
    "DELETE FROM meta WHERE key = 'format_version'",
    "UPDATE meta SET value = '{' WHERE key = 'events'",
    "DROP TABLE chunks",
], ids=["bad-kind", "bad-info-json", "version-string", "no-version", "bad-meta-json",
        "no-events-table"])
def test_damaged_rows_are_trace_errors(written, statement):
    _sql(written, statement)
    with pytest.raises(TraceError):
        _open_and_read_all(written)


def test_newer_and_older_format_versions(written):
    _sql(written, "UPDATE meta SET value = ? WHERE key = 'format_version'",
         str(FORMAT_VERSION + 1))
    with pytest.raises(TraceError, match="newer"):
        TraceReader(written)
    _sql(written, "UPDATE meta SET value = ? WHERE key = 'format_version'",
         str(OLDEST_FORMAT - 1))
    with pytest.raises(TraceError, match="re-record"):
        TraceReader(written)


def test_a_version_2_trace_still_reads(written):
    """Version 3 only added RDRAND events: traces recorded before it stay usable."""
    trace_rows.to_format4(written)
    _sql(written, "UPDATE meta SET value = ? WHERE key = 'format_version'", "2")
    r = TraceReader(written)
    try:
        assert len(list(r.events())) == r.event_count > 0
    finally:
        r.close()


def test_damaged_write_payload_is_trace_error(tmp_path):
    w = TraceWriter(tmp_path / "t")
    w.add(Event(seq=0, tid=1, kind=Kind.SYSCALL, regs=bytes(216),
                writes=(MemoryWrite(addr=0, data=b"z" * 10_000),)))  # compressed
    w.close()
    trace_rows.to_format4(tmp_path / "t")  # (format 4: a compressed write in a row of its own)
    _sql(tmp_path / "t", "UPDATE writes SET zstd = 1, data = x'28b52ffd0000' WHERE seq = 0")
    with pytest.raises(TraceError, match="event 0"):
        _open_and_read_all(tmp_path / "t")
    _sql(tmp_path / "t", "UPDATE writes SET size = 5, zstd = 0, data = x'0102' WHERE seq = 0")
    with pytest.raises(TraceError, match="event 0"):
        _open_and_read_all(tmp_path / "t")


def test_writer_refuses_non_empty_directory(tmp_path):
    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(TraceError, match="--force"):
        TraceWriter(tmp_path)
    with pytest.raises(TraceError, match="does not hold a trace"):
        TraceWriter(tmp_path, force=True)
    assert (tmp_path / "keep.txt").read_text() == "x"


def _everything(trace):
    r = TraceReader(trace)
    try:
        return r.meta, list(r.events()), r.tasks(), r.file_ids()
    finally:
        r.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture])
@given(where=st.integers(0, 2**32), bit=st.integers(0, 7))
def test_one_bit_flipped_anywhere_is_an_error_or_changes_nothing(small_trace_bytes, where, bit):
    """One bit of trace.db flipped (among its bytes that are not zero: the rest is mostly
    free space): reading it all is a TraceError or gives exactly what was written."""
    used = [i for i, b in enumerate(small_trace_bytes) if b]
    at = used[where % len(used)]
    damaged = bytearray(small_trace_bytes)
    damaged[at] ^= 1 << bit
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "t").mkdir()
        (Path(tmp) / "t" / "trace.db").write_bytes(small_trace_bytes)
        expected = _everything(Path(tmp) / "t")
        (Path(tmp) / "t" / "trace.db").write_bytes(damaged)
        try:
            got = _everything(Path(tmp) / "t")
        except TraceError:
            return
        assert got == expected


def test_a_version_3_trace_without_checksums_still_reads(written):
    """Traces recorded before checksums (no crc columns) replay, unchecked (and say so)."""
    trace_rows.to_format4(written)
    db = sqlite3.connect(written / "trace.db")
    for table in ("meta", "events", "writes", "files", "tasks"):
        db.execute(f"ALTER TABLE {table} DROP COLUMN crc")
    db.execute("ALTER TABLE events DROP COLUMN writes")
    db.execute("UPDATE meta SET value = '3' WHERE key = 'format_version'")
    db.commit()
    db.close()
    r = TraceReader(written)
    try:
        assert not r.verified
        assert [e.nr for e in r.events()] == list(range(20))
    finally:
        r.close()
    _sql(written, "UPDATE events SET regs = 'text' WHERE seq = 4")  # types are still checked
    with pytest.raises(TraceError, match="damaged at event 4 .*column regs holds a text"):
        _open_and_read_all(written)
