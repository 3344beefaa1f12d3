"""Futex waits in the in-process syscall buffer (tracee/sysbuf_hook.c futex_wait): a wait that
will not sleep (the word no longer holds the value; or a wrong argument) costs no ptrace stop,
asked of the kernel by a buffered FUTEX_CMP_REQUEUE of the word onto itself (and, for a wait
with a timeout, a bitset or FUTEX_CLOCK_REALTIME, the same wait on a read-only zero word); a
wait that will sleep is left to the trampoline's traced `syscall`, as before, so the recorder
schedules around it (tests/test_threads_handoff.py bounds its stops). Every recording must
replay byte for byte, with signals arriving among the buffered waits too."""
from __future__ import annotations

import os
import re
import struct
import subprocess

import pytest
from conftest import assert_faithful, describe, record, replay, run_native, run_relive
from gdbhelpers import gdb_batch, requires_gdb, serve

from tracee import fastloop, sysbuf
from tracefile.reader import TraceReader
from tracefile.records import Kind

__all__ = ["serve"]  # the fixture, imported for pytest

FUTEX = 202
CMP_REQUEUE = 4
EAGAIN = 11
ROUNDS = 2000
STARTUP_STOPS = 300
pytestmark = pytest.mark.skipif(sysbuf.hook() is None or fastloop.load() is None,
                                reason="the hook or the fast path could not be built (no gcc?)")


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, RELIVE_SYSCALLBUF="1")
    env.pop("RELIVE_SYSCALLBUF_WAITS", None)
    env.update(extra)
    return env


def _python_stops(stderr: bytes) -> int:
    m = re.search(rb"relive: (\d+) stops handled in Python", stderr)
    assert m, stderr
    return int(m.group(1))


def _futex_events(trace) -> list[tuple[Kind, int, tuple[int, ...] | bytes, int]]:
    """(kind, tid, registers, result) of every futex event, in order."""
    r = TraceReader(trace)
    try:
        return [(ev.kind, ev.tid, ev.regs, ev.result) for ev in r.events()
                if ev.kind in (Kind.BUFFERED, Kind.SYSCALL) and ev.nr == FUTEX]
    finally:
        r.close()


def _probes(trace) -> tuple[int, int]:
    """Buffered FUTEX_CMP_REQUEUE probes: (all, those that found the word moved on)."""
    total = again = 0
    for kind, _, regs, result in _futex_events(trace):
        if kind != Kind.BUFFERED:
            continue
        op = struct.unpack_from("<7Q", regs)[1] & 0x7F
        if op == CMP_REQUEUE:
            total += 1
            again += result == -EAGAIN
    return total, again


def test_futex_waits_that_do_not_sleep_cost_no_stop(programs, tmp_path):
    """10,000 waits on a word that moved on (FUTEX_WAIT and _WAIT_BITSET, private and
    shared, with and without a timeout, with FUTEX_CLOCK_REALTIME) return EAGAIN without a
    stop; before, each cost two (they may sleep, so they stopped at entry and exit). The
    waits that fail or time out at once give the program what they give it natively."""
    trace = tmp_path / "t"
    prog = programs["futex_waits"]
    native = run_native([prog, ROUNDS])
    assert native.returncode == 0, describe(native)
    rec = run_relive("--log", "debug", "record", "-o", trace, prog, ROUNDS, env=_env(),
                     stdin=subprocess.DEVNULL, timeout=300)
    assert rec.returncode == 0, describe(rec)
    assert rec.stdout == native.stdout, describe(rec)
    assert rec.stdout.startswith(f"EAGAIN {5 * ROUNDS} of {5 * ROUNDS}\n".encode())
    stops = _python_stops(rec.stderr)
    assert stops < STARTUP_STOPS, stops          # before: > 2 * 5 * ROUNDS
    total, again = _probes(trace)
    assert again >= 5 * ROUNDS, (total, again)
    rep = replay(trace)
    assert rep.returncode == 0 and rep.stdout == rec.stdout, describe(rep)


def test_the_switch_leaves_waits_traced(programs, tmp_path):
    """RELIVE_SYSCALLBUF_WAITS=0: every futex wait stops, as before (and replays)."""
    trace = tmp_path / "t"
    rounds = 300
    rec = run_relive("--log", "debug", "record", "-o", trace, programs["futex_waits"], rounds,
                     env=_env(RELIVE_SYSCALLBUF_WAITS="0"), stdin=subprocess.DEVNULL,
                     timeout=300)
    assert rec.returncode == 0, describe(rec)
    assert _python_stops(rec.stderr) >= 2 * 5 * rounds
    assert _probes(trace) == (0, 0)
    rep = replay(trace)
    assert rep.returncode == 0 and rep.stdout == rec.stdout, describe(rep)


def test_a_ring_of_four_threads_replays(programs, tmp_path):
    """4 threads pass a token through a mutex and a broadcast condition variable, each turn
    with 50 stale waits on the ring's word: the sleeping waits stay traced (ENTER, another
    thread runs), the stale ones are buffered, and replay follows both."""
    trace = tmp_path / "t"
    rounds = 200
    rec = record(trace, programs["threads_wait_ring"], rounds, env=_env())
    assert rec.returncode == 0, describe(rec)
    turns = 4 * rounds
    assert rec.stdout.startswith(f"turns {turns} ".encode()), describe(rec)
    assert f"EAGAIN {50 * turns}, other 0".encode() in rec.stdout, describe(rec)
    total, again = _probes(trace)
    assert again >= 50 * turns - 20, (total, again)  # (a probe meeting a full buffer: traced)
    assert total > again  # the sleeping waits were probed too, then made traced
    assert_faithful(rec, replay(trace))


def _signals_after_buffered(trace) -> tuple[int, int]:
    """(SIGALRM events, those delivered right after a buffered call of their thread)."""
    r = TraceReader(trace)
    try:
        last: dict[int, Kind] = {}
        alarms = after = 0
        for ev in r.events():
            if ev.kind == Kind.SIGNAL and ev.nr == 14:
                alarms += 1
                after += last.get(ev.tid) == Kind.BUFFERED
            last[ev.tid] = ev.kind
        return alarms, after
    finally:
        r.close()


def test_signals_among_buffered_waits_replay(programs, tmp_path):
    """An ITIMER_REAL every 2 ms interrupts the ring; its handler makes a stale wait too (in
    the hook, or traced when it interrupted the hook). Delivered where they came (some right
    where a buffered wait returned), they replay at the same place: the handler's count and
    the ring's results are printed from the replay's own memory."""
    found = 0
    for i in range(3):
        trace = tmp_path / f"t{i}"
        rec = record(trace, programs["threads_wait_ring"], 200, "alarm", env=_env(),
                     timeout=300)
        assert rec.returncode == 0, describe(rec)
        assert re.search(rb"alarms [1-9]", rec.stdout), describe(rec)
        assert_faithful(rec, replay(trace))
        alarms, after = _signals_after_buffered(trace)
        assert alarms > 0
        assert _probes(trace)[1] >= 50 * 4 * 200 - 20  # the stale waits: buffered
        found += after
    assert found > 0  # a signal came where a buffered wait returned


BACK_TO_SYSCALL = """\
set $n = 0
while $n < 64
  reverse-stepi
  if *(unsigned short *)$pc == 0x050f
    loop_break
  end
  set $n = $n + 1
end
"""


@requires_gdb
def test_gdb_steps_back_onto_a_probed_wait(programs, tmp_path, serve):
    """Stepping back from a stale wait's return lands on libc's `syscall` of it, not yet
    run, shown with the program's arguments (FUTEX_WAIT_PRIVATE, not the probe's) and its
    whole backtrace (replayer.sysbuf_frames: the hook calls itself for the probe); stepi
    runs it again: EAGAIN."""
    trace = tmp_path / "t"
    rec = record(trace, programs["futex_waits"], 3, env=_env())
    assert rec.returncode == 0, describe(rec)
    script = tmp_path / "back.gdb"
    script.write_text(BACK_TO_SYSCALL)
    run = gdb_batch("break wait_result", "continue", "next", "source " + str(script),
                    "echo ===BT===\\n", "bt", "x/i $pc", "echo ===END===\\n",
                    'printf "back %ld %#lx %ld\\n", $rax, $rsi, $rdx', "stepi",
                    'printf "again %ld\\n", $rax',
                    connect=serve(trace).address, program=programs["futex_waits"])
    out = run.output
    bt = out.split("===BT===")[1].split("===END===")[0]
    assert re.search(r"^#0 .*syscall", bt, re.M), str(run)
    assert re.search(r"^#1 .*wait_result", bt, re.M), str(run)
    assert re.search(r"^#2 .*\bmain \(", bt, re.M) and "??" not in bt, str(run)
    assert re.search(r"=> 0x[0-9a-f]+ .*:\s+syscall", bt), str(run)
    assert re.search(r"^back 202 0x80 1$", out, re.M), str(run)
    assert re.search(rf"^again {-EAGAIN}$", out, re.M), str(run)
