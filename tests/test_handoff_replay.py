"""Futex hand-offs replayed in the compiled loop (issue 18.2, replayer/handoff_replay.py).

A condvar hand-off between two threads is, in a trace, an ENTER (the waiter left the CPU
inside futex), the SYSCALL completing the other thread's wait and that thread's calls up to
its own ENTER. Replay used to come back to Python two or three times per hand-off; the loop
(tracee/fastloop.c relive_replay_handoff) now runs whole stretches of them. These tests check
that it replays what the Python path replays (RELIVE_REPLAY_HANDOFF=0), with the same stops,
that gdb and reverse execution across hand-offs stop where they did, and that a tampered
futex event still diverges at its event, naming its thread and register.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
import trace_rows
from conftest import (assert_diverged_at, assert_faithful, describe, record, replay, reseal,
                      run_relive, set_rdi)
from gdbhelpers import gdb_batch, requires_gdb, serve

from replayer.errors import ReplayDivergence
from replayer.session import ReplaySession
from tracefile.records import Kind
from tracee.sysnums import nr

__all__ = ["serve"]  # the fixture, imported for pytest

ROUNDS = 1000  # per thread of the ring: 4 * ROUNDS hand-offs
COUNTS = re.compile(rb"replay: (\d+) events, (\d+) ptrace stops, (\d+) buffered calls")
IN_LOOP = re.compile(rb"replay: (\d+) events replayed across thread switches in compiled code")
FUTEX = nr("futex")


def _env(on: bool) -> dict[str, str]:
    return dict(os.environ, RELIVE_REPLAY_HANDOFF="1" if on else "0", RELIVE_FASTPATH="1")


@pytest.fixture(scope="module")
def traces(programs, tmp_path_factory):
    """The ring (4 threads) and the ping-pong benchmark (2 threads, cond mode), recorded."""
    base = tmp_path_factory.mktemp("handoff_replay")
    pingpong = base / "bench_pingpong"
    src = os.path.join(os.path.dirname(__file__), "..", "bench", "bench_pingpong.c")
    subprocess.run(["gcc", "-O2", "-pthread", "-o", str(pingpong), src], check=True)
    out = {}
    for name, argv in (("ring", [programs["handoff_ring"], str(ROUNDS)]),
                       ("pingpong", [pingpong, "5000", "cond"])):
        trace = base / name
        rec = record(trace, *argv)
        assert rec.returncode == 0, describe(rec)
        out[name] = (trace, rec)
    return out


def _replay_counts(trace, on: bool):
    rep = run_relive("--log", "debug", "replay", "--autopilot", trace, env=_env(on),
                     stdin=subprocess.DEVNULL, timeout=300)
    counts = COUNTS.search(rep.stderr)
    assert counts, describe(rep)
    looped = IN_LOOP.search(rep.stderr)
    rep.stderr = b"".join(line for line in rep.stderr.splitlines(keepends=True)
                          if not line.startswith(b"relive:"))
    return rep, tuple(map(int, counts.groups())), int(looped.group(1)) if looped else 0


@pytest.mark.parametrize("name, handoffs", [("ring", 4 * ROUNDS), ("pingpong", 2 * 5000)])
def test_replayed_in_the_loop_as_by_python(traces, name, handoffs):
    """Same output, events and ptrace stops with the compiled hand-offs as without; with them,
    almost every event of the run is replayed by the loop (without: none)."""
    trace, rec = traces[name]
    on, counts_on, looped_on = _replay_counts(trace, True)
    off, counts_off, looped_off = _replay_counts(trace, False)
    assert_faithful(rec, on)
    assert_faithful(rec, off)
    assert counts_on == counts_off, (counts_on, counts_off)
    enters = sum(1 for line in run_relive("dump", trace, timeout=300).stdout.splitlines()
                 if b" ENTER " in line)
    assert enters >= handoffs - 10
    assert looped_on >= 2 * enters, (looped_on, enters)  # at least ENTER + its completion
    assert looped_off == 0


def _middle_futex_enter(trace):
    db = trace_rows.connect(trace)
    rows = db.execute("SELECT seq, tid, regs FROM events WHERE kind = ? AND nr = ? ORDER BY seq",
                      (int(Kind.ENTER), FUTEX)).fetchall()
    assert len(rows) > 1000
    return db, rows[len(rows) // 2]


def test_a_tampered_futex_wait_diverges_at_its_event(traces, tmp_path):
    """rdi (the futex word's address) of an ENTER in the middle of the ring changed: the
    replay stops there, naming the event, its thread and the register, in the compiled
    hand-offs (which replayed every event before it) as without them."""
    trace = tmp_path / "ring"
    shutil.copytree(traces["ring"][0], trace)
    db, (seq, tid, regs) = _middle_futex_enter(trace)
    old, tampered = set_rdi(regs)
    db.execute("UPDATE events SET regs = ? WHERE seq = ?", (tampered, seq))
    reseal(db)
    db.commit()
    db.close()
    for on in (True, False):
        rep = replay(trace, env=_env(on))
        err = assert_diverged_at(rep, seq)
        assert f"(thread {tid})" in err, err
        assert re.search(rf"\brdi: recorded {old + 1:#x}, replay {old:#x}\b", err), err
    os.environ["RELIVE_REPLAY_HANDOFF"] = "1"
    try:
        session = ReplaySession(trace)
    finally:
        del os.environ["RELIVE_REPLAY_HANDOFF"]
    session.fast = True
    try:
        with pytest.raises(ReplayDivergence) as info:
            session.run()
        looped = session._handoffs.events if session._handoffs is not None else 0
    finally:
        session.close()
    assert (info.value.event, info.value.tid) == (seq, tid)
    assert info.value.diff == {"rdi": (old + 1, old)}
    assert session.position == seq
    assert looped >= seq // 2, looped  # the run up to it went through the loop


GDB_SCRIPT = """
break handoff_ring.c:50 if turn == {at}
continue
printf "HIT turn=%lu me=%u checksum=%lx\\n", turn, me, checksum
info threads
delete
stepi
stepi
reverse-stepi
reverse-stepi
reverse-stepi
printf "BACK turn=%lu me=%u checksum=%lx\\n", turn, me, checksum
break handoff_ring.c:50 if turn == {back}
reverse-continue
printf "REV turn=%lu me=%u checksum=%lx\\n", turn, me, checksum
"""


@requires_gdb
@pytest.mark.slow
def test_gdb_across_hand_offs_stops_where_it_did(traces, tmp_path, serve, monkeypatch):
    """A breakpoint in a ring thread after 3,000 hand-offs, steps and reverse steps round it,
    a reverse-continue back over 100 hand-offs: the same turn, thread and values with the
    compiled hand-offs on and off (gdb's runs keep their path: this guards that they do)."""
    trace, _ = traces["ring"]
    script = tmp_path / "s.gdb"
    script.write_text(GDB_SCRIPT.format(at=3000, back=2900))
    outputs = []
    for on in ("1", "0"):
        monkeypatch.setenv("RELIVE_REPLAY_HANDOFF", on)
        run = gdb_batch(connect=serve(trace).address, script=script, timeout=300)
        lines = [line for line in run.output.splitlines()
                 if line.startswith(("HIT ", "BACK ", "REV ")) or re.match(r"\* +\d+ ", line)]
        outputs.append(lines)
    hit = [line for line in outputs[0] if line.startswith("HIT ")]
    assert hit and "turn=3000 me=0 " in hit[0], outputs[0]
    assert any(line.startswith("REV turn=2900 me=0 ") for line in outputs[0]), outputs[0]
    assert outputs[0] == outputs[1], outputs


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_the_loop_is_used_only_if_both_sides_agree(tmp_path, monkeypatch):
    """handoff_replay's declarations are checked against the C side's (relive_handoff_
    interface); a copy that drifted turns the compiled hand-offs off, and so does
    RELIVE_REPLAY_HANDOFF=0."""
    import ctypes

    from replayer import handoff_replay
    from tracee import fastloop
    lib_path = tmp_path / "fastloop.so"
    subprocess.run(["gcc", "-O1", "-shared", "-fPIC", "-o", str(lib_path),
                    str(fastloop.SOURCE)], check=True, timeout=120)
    lib = ctypes.CDLL(str(lib_path))
    assert handoff_replay.load(lib) is not None
    monkeypatch.setitem(handoff_replay.DECLARED, "sizeof(struct hev)", 12)
    assert handoff_replay.load(lib) is None
    monkeypatch.undo()
    monkeypatch.setenv("RELIVE_REPLAY_HANDOFF", "0")
    assert handoff_replay.load(lib) is None


def _state(session):
    """Every thread's registers and whether it is parked at a syscall entry, by recorded tid
    (not the threads let go to exit: they run)."""
    ts = session.taskset
    return {rtid: (bytes(t.regs), t.tid in ts.entered) for rtid, t in ts.tasks.items()
            if t.tid not in session.dying}


@pytest.mark.parametrize("budget, max_events", [(None, None), (0, 3), (None, 1), (None, 2)])
def test_every_boundary_the_loop_returns_at_is_the_python_paths(traces, monkeypatch, budget,
                                                                max_events):
    """The ring replayed in process twice side by side: with the compiled hand-offs (and the
    batches) and event by event in Python. Wherever the first returns, the second, brought to
    the same event, has every thread at the same registers and parked alike. With short
    runs (cut by the deadline after their first event, or by a hard limit of 2 or 4 events:
    a completion and a buffered call or three) the loop returns after every kind of event,
    not only after an ENTER, where a run of its own ends."""
    from replayer import handoff_replay
    short = max_events is not None
    if budget is not None:
        monkeypatch.setattr(handoff_replay, "BUDGET_NS", budget)
    if max_events is not None:
        monkeypatch.setattr(handoff_replay, "MAX_EVENTS", max_events)
    trace, _ = traces["ring"]
    monkeypatch.setenv("RELIVE_REPLAY_HANDOFF", "1")
    fast = ReplaySession(trace)
    monkeypatch.setenv("RELIVE_REPLAY_HANDOFF", "0")
    slow = ReplaySession(trace)
    fast.fast = True
    compared = 0
    try:
        while not fast.finished:
            if fast.step() is None:
                break
            while slow.position < fast.position:
                assert slow.step() is not None
            assert slow.position == fast.position
            if fast.finished or slow.finished:
                break
            assert _state(fast) == _state(slow), fast.position
            compared += 1
        looped = fast._handoffs.events if fast._handoffs is not None else 0
    finally:
        fast.close()
        slow.close()
    # (cut short, a run is its first event: a completion, the rest goes to other paths)
    assert looped >= (1 if short else 2) * 4 * ROUNDS - 20, looped
    assert compared >= (4 * ROUNDS if short else 10), compared
