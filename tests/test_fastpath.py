"""The compiled fast path (tracee/fastloop.c) against the Python path it shortcuts.

RELIVE_FASTPATH=0 turns it off, so both paths can record the same program: the traces must
hold the same events, each must replay faithfully with the fast path on and off, a tampered
event in the middle of a long run of fast-replayed syscalls must be reported exactly as the
Python path reports it, and gdb breakpoints between fast syscalls must still stop."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import trace_rows
import pytest
from conftest import (REPO_ROOT, assert_diverged_at, assert_faithful, describe, replay, reseal,
                      run_relive, set_rdi)
from gdbhelpers import gdb_batch, requires_gdb, serve

from replayer.errors import ReplayDivergence
from replayer.session import ReplaySession
from tracee import fastloop
from tracefile.records import Kind

__all__ = ["serve"]  # the fixture, imported for pytest

GETPPID = 110
pytestmark = pytest.mark.skipif(fastloop.load() is None,
                                reason="the fast path could not be built (no gcc?)")
SETARCH = shutil.which("setarch")


def _env(fast: bool) -> dict[str, str]:
    # One CPU for both recordings: cpuid's results (recorded) hold the CPU's APIC id.
    # The calls the in-process buffer would take (getppid) are these tests' subject as
    # ptrace-stopped calls: the buffer stays out (tests/test_syscallbuf.py has its own).
    return dict(os.environ, RELIVE_FASTPATH="1" if fast else "0", RELIVE_SYSCALLBUF="seccomp",
                RELIVE_CPU=os.environ.get("RELIVE_CPU", str(min(os.sched_getaffinity(0)))))


def _record(trace, *argv, fast: bool):
    """Record with ASLR off if possible (setarch -R around relive, which the program
    inherits): then both recordings have the same addresses and whole events compare."""
    env = _env(fast)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    cmd = [sys.executable, "-m", "relive", "record", "-o", str(trace), "--force",
           *map(str, argv)]
    proc = subprocess.run([SETARCH, "-R", *cmd] if SETARCH else cmd, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=300)
    assert proc.returncode == 0, describe(proc)
    return proc


def _events(trace):
    """What `relive dump` shows of every event, without what differs from run to run: the
    thread ids, rdtsc values and the results of the calls that return ids."""
    dump = run_relive("dump", trace, text=True)
    assert dump.returncode == 0, describe(dump)
    out = []
    for line in dump.stdout.splitlines():
        line = re.sub(r"^\s*(\d+)\s+\d+", r"\1", line)
        line = re.sub(r"(RDTSC\s+value) 0x[0-9a-f]+", r"\1", line)
        line = re.sub(r"((?:getppid|getpid|gettid|set_tid_address)\(.*\)) = 0x[0-9a-f]+", r"\1",
                      line)
        out.append(line)
    return out


@pytest.fixture(scope="module")
def both(programs, tmp_path_factory):
    """syscall_runs (5000 rounds), many_syscalls (20,000 getppid) and file_writes (4000
    rounds), each recorded with the fast path on and off: {(name, fast): (trace,
    CompletedProcess)}."""
    base = tmp_path_factory.mktemp("fastpath")
    out = {}
    for name, args in (("syscall_runs", ["5000"]), ("many_syscalls", ["20000"]),
                       ("file_writes", ["4000"])):
        for fast in (True, False):
            trace = base / f"{name}-{int(fast)}"
            out[name, fast] = trace, _record(trace, programs[name], *args, fast=fast)
    return out


@pytest.mark.parametrize("name", ["syscall_runs", "many_syscalls", "file_writes"])
def test_both_paths_record_the_same_events(both, name):
    fast, slow = _events(both[name, True][0]), _events(both[name, False][0])
    assert len(fast) > 20000
    if SETARCH:
        assert fast == slow
    else:  # ASLR moves addresses: compare what each event is
        assert [line.split("(")[0] for line in fast] == [line.split("(")[0] for line in slow]
    if name != "many_syscalls":  # (which prints a sum of parent pids)
        assert both[name, True][1].stdout == both[name, False][1].stdout
    if name == "file_writes":  # what went to stdout is marked so, whichever path saw it
        assert sum(line.endswith(" -> stdout") for line in fast) == 9


@pytest.mark.parametrize("recorded_fast", [True, False])
@pytest.mark.parametrize("replay_fast", [True, False])
@pytest.mark.parametrize("name, says", [("syscall_runs", b"markers: 5\n"),
                                        ("file_writes", b"rounds: 4000\n")])
def test_each_trace_replays_faithfully_either_way(both, recorded_fast, replay_fast, name,
                                                  says):
    trace, rec = both[name, recorded_fast]
    assert_faithful(rec, replay(trace, env=_env(replay_fast)))
    assert says in rec.stdout


def _copy(both, tmp_path, name="many_syscalls"):
    trace, rec = both[name, True]
    dest = tmp_path / name
    shutil.copytree(trace, dest)
    return dest, rec


def _middle_getppid(trace):
    db = trace_rows.connect(trace)
    rows = db.execute("SELECT seq, regs, result FROM events WHERE kind = ? AND nr = ? "
                      "ORDER BY seq", (int(Kind.SYSCALL), GETPPID)).fetchall()
    assert len(rows) == 20000
    return db, rows[len(rows) // 2]


def test_a_changed_register_in_a_fast_run_is_reported_with_its_event(both, tmp_path):
    trace, rec = _copy(both, tmp_path)
    db, (seq, regs, _) = _middle_getppid(trace)
    old, tampered = set_rdi(regs)
    db.execute("UPDATE events SET regs = ? WHERE seq = ?", (tampered, seq))
    reseal(db)
    db.commit()
    db.close()
    rep = replay(trace, env=_env(True))
    err = assert_diverged_at(rep, seq)
    assert re.search(rf"\brdi: recorded {old + 1:#x}, replay {old:#x}\b", err), err
    # in process, the divergence carries the event and the register
    session = ReplaySession(trace)
    session.fast = True
    try:
        with pytest.raises(ReplayDivergence) as info:
            session.run()
    finally:
        session.close()
    assert info.value.event == seq and info.value.diff == {"rdi": (old + 1, old)}
    assert session.position == seq  # every event before it was replayed


def test_a_changed_result_in_a_fast_run_is_what_the_program_gets(both, tmp_path):
    """many_syscalls prints the sum of its getppid results: one result changed by 1000 in
    the middle of the run shows in the replayed sum."""
    trace, rec = _copy(both, tmp_path)
    db, (seq, _, result) = _middle_getppid(trace)
    db.execute("UPDATE events SET result = ? WHERE seq = ?", (result + 1000, seq))
    reseal(db)
    db.commit()
    db.close()
    rep = replay(trace, env=_env(True))
    assert rep.returncode == 0, describe(rep)
    recorded_sum = int(re.search(rb"sum: (\d+)", rec.stdout).group(1))
    assert f"sum: {recorded_sum + 1000}\n".encode() in rep.stdout, rep.stdout


@requires_gdb
def test_gdb_breakpoint_between_fast_syscalls_stops(both, serve):
    trace, _ = both["syscall_runs", True]
    server = serve(trace)
    run = gdb_batch("break marker", "continue", "print i", "continue", "print i",
                    "print markers", connect=server.address)
    out = run.output
    assert "Breakpoint 1, marker (i=999)" in out, str(run)
    assert "Breakpoint 1, marker (i=1999)" in out, str(run)
    assert re.search(r"\$\d+ = 1\n", out), str(run)  # markers, counted in the replay
