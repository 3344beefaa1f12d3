"""Replaying buffered calls without a ptrace stop each (replayer/sysbuf_feed.py, the hook's
relive_hook_fed, tracee/fastloop.c relive_replay_run): a run of BUFFERED events is written
into the replayed process's feed and the hook takes each record instead of making the call.
The replayer says at --log debug how many stops it waited for and how many buffered calls
it replayed without one: a replay that silently fell back to a stop a call fails here. A
record the program does not make as recorded is still a divergence naming its event, and a
trace whose hook has no replay mode (recorded before it) replays with a stop a call."""
from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
import trace_rows
from conftest import (REPO_ROOT, assert_diverged_at, assert_faithful, describe, record, replay,
                      reseal, run_relive)

from tracee import fastloop, sysbuf
from tracefile.integrity import write_crc
from tracefile.reader import TraceReader
from tracefile.records import Kind

READS = 20000
GETPID, UNAME, GETRANDOM = 39, 63, 318
pytestmark = [pytest.mark.skipif(sysbuf.hook() is None or fastloop.load() is None,
                                 reason="the hook or the fast path could not be built (no gcc?)"),
              pytest.mark.usefixtures("syscallbuf_on")]


def _replay_counted(trace, **kw):
    """An autopilot replay at --log debug: (the process, events, stops, fed calls)."""
    rep = run_relive("--log", "debug", "replay", "--autopilot", trace,
                     stdin=subprocess.DEVNULL, **kw)
    m = re.search(rb"replay: (\d+) events, (\d+) ptrace stops, (\d+) buffered calls "
                  rb"without a stop", rep.stderr)
    assert m, describe(rep)
    return rep, int(m.group(1)), int(m.group(2)), int(m.group(3))


def _buffered(trace) -> int:
    r = TraceReader(trace)
    try:
        return sum(ev.kind == Kind.BUFFERED for ev in r.events())
    finally:
        r.close()


@pytest.fixture(scope="module")
def clocks(programs, tmp_path_factory):
    trace = tmp_path_factory.mktemp("feed") / "t"
    rec = record(trace, programs["clock_reads"], READS)
    assert rec.returncode == 0, describe(rec)
    return trace, rec


def test_a_clock_loop_replays_without_a_stop_per_read(clocks):
    """20,000 clock reads (a SIGALRM handler reading the clock among them): a few hundred
    stops, where a stop a read costs over 20,000; the output is the recording's."""
    trace, rec = clocks
    buffered = _buffered(trace)
    assert buffered > READS
    rep, events, stops, fed = _replay_counted(trace)
    assert_faithful(rec, rep)
    assert fed > 0.95 * buffered, (fed, buffered)
    assert stops < 0.05 * events, (stops, events)


@pytest.mark.parametrize("argv", [
    ["find", str(REPO_ROOT), "-name", "*.py", "-size", "+4k"],
    ["ls", "-laR", str(REPO_ROOT / "tracee"), str(REPO_ROOT / "tests")],
], ids=["find", "ls"])
def test_directory_walks_replay_their_stat_calls_without_stops(tmp_path, argv):
    if shutil.which(argv[0]) is None:
        pytest.skip(f"needs {argv[0]}")
    trace = tmp_path / "t"
    rec = record(trace, *argv)
    assert rec.returncode == 0, describe(rec)
    buffered = _buffered(trace)
    assert buffered > 100
    rep, events, stops, fed = _replay_counted(trace)
    assert_faithful(rec, rep)
    assert fed > 0.8 * buffered, (fed, buffered)
    assert stops < events - 0.8 * buffered, (stops, events, buffered)


def test_a_call_unlike_its_record_in_a_fed_run_diverges_naming_its_event(clocks, tmp_path):
    """A record in the middle of a run says getpid where the program reads the clock: the
    hook does not take it, the call stops, and replay names that event and the call."""
    src, _ = clocks
    trace = tmp_path / "t"
    shutil.copytree(src, trace)
    db = trace_rows.connect(trace)
    rows = db.execute("SELECT seq FROM events WHERE kind = ? ORDER BY seq",
                      (int(Kind.BUFFERED),)).fetchall()
    seq = rows[len(rows) // 2][0]
    db.execute("UPDATE events SET nr = ? WHERE seq = ?", (GETPID, seq))
    reseal(db)
    db.commit()
    db.close()
    rep = replay(trace)
    err = assert_diverged_at(rep, seq)
    assert "expected syscall getpid (buffered), replay made clock_gettime" in err, err


def test_a_hook_without_a_replay_mode_replays_with_a_stop_per_call(clocks, tmp_path):
    """The trace holds the hook's bytes: one without the feed's magic (as every hook
    recorded before it) is replayed as before, a PTRACE_SYSEMU stop per buffered call."""
    src, rec = clocks
    trace = tmp_path / "t"
    shutil.copytree(src, trace)
    db = trace_rows.connect(trace)
    at = sysbuf.CTRL_OFF
    found = 0
    for seq, ordinal, addr, size, cons, data in db.execute(
            "SELECT seq, ord, addr, size, conservative, data FROM writes WHERE addr = ?",
            (sysbuf.HOOK_CODE,)).fetchall():
        assert data[at:at + len(sysbuf.FEED_MAGIC)] == sysbuf.FEED_MAGIC
        data = data[:at] + b"\xcc" * len(sysbuf.FEED_MAGIC) + data[at + 8:]
        db.execute("UPDATE writes SET data = ?, crc = ? WHERE seq = ? AND ord = ?",
                   (data, write_crc(seq, ordinal, addr, size, cons, 0, data), seq, ordinal))
        found += 1
    assert found  # the EXEC event's copy of the hook's code page
    db.commit()
    db.close()
    rep, events, stops, fed = _replay_counted(trace)
    assert_faithful(rec, rep)
    assert fed == 0
    assert stops > READS


def test_without_the_compiled_loop_every_buffered_call_stops(clocks):
    """The Python path replays the same trace with a stop a call (the hook, never pointed
    at the feed, makes its `syscall`), passing the same checks."""
    trace, rec = clocks
    slow, _, stops, fed = _replay_counted(trace, env=dict(os.environ, RELIVE_FASTPATH="0"))
    assert_faithful(rec, slow)
    assert fed == 0 and stops > READS


def test_random_bytes_and_uname_are_buffered_and_replayed_as_recorded(tmp_path):
    """getrandom (Python's os.urandom, glibc's malloc and hash seeds: ~10,000 calls in
    boltons' test suite) and uname (platform, ~10,000 there too) cost no stop, and the
    replay hands the program the recorded random bytes and names."""
    script = tmp_path / "rand_uname.py"
    script.write_text(
        "import hashlib, os\n"
        "h = hashlib.sha256()\n"
        "for _ in range(300):\n"
        "    h.update(os.urandom(16))\n"
        "    h.update(repr(os.uname()).encode())\n"
        "print(h.hexdigest())\n")
    trace = tmp_path / "t"
    rec = record(trace, "python3", script)
    assert rec.returncode == 0, describe(rec)
    r = TraceReader(trace)
    try:
        kinds = [(ev.kind, ev.nr) for ev in r.events() if ev.nr in (GETRANDOM, UNAME)]
    finally:
        r.close()
    assert kinds.count((Kind.BUFFERED, GETRANDOM)) >= 290, kinds  # (a full buffer: traced)
    assert kinds.count((Kind.BUFFERED, UNAME)) >= 290, kinds
    rep, _, _, fed = _replay_counted(trace)
    assert_faithful(rec, rep)
    assert fed >= 580
