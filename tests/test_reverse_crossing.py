"""Stepping back over an event (replayer.crossing), one engine for one thread or several.

A signal that arrives while the program computes is delivered after code ran since the
program's previous event (just before its next syscall, or at a point in user code). One
instruction back from the handler's first instruction is where the signal interrupted the
program: the frame gdb shows under `<signal handler called>`. (The one-thread engine used to
land at the previous event instead, and `stepi` from there ran on in the wrong place.)

Going back over an exec, gdb is told the previous program runs again, with several threads as
with one (the several-thread engine did not tell it).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from conftest import describe, record, run_relive
from gdbhelpers import gdb_batch, requires_gdb, serve

__all__ = ["serve"]  # the fixture, imported for pytest
pytestmark = [requires_gdb, pytest.mark.slow]


# Where the recorder delivers the signal: at the return address of compute() (a point in user
# code, found in replay by registers and a memory digest) with the syscall buffer, just before
# the next getppid without it.
WHERE = {"user": {}, "before_syscall": {"RELIVE_SYSCALLBUF": "0"}}


@pytest.fixture(scope="module", params=sorted(WHERE))
def signal_trace(request, programs, tmp_path_factory) -> Path:
    where = request.param
    trace = tmp_path_factory.mktemp("crossing") / f"signal_at_return_{where}"
    rec = record(trace, programs["signal_at_return"], env={**os.environ, **WHERE[where]})
    assert rec.returncode == 0, describe(rec)
    listing = run_relive("dump", trace).stdout.decode()
    assert re.search(rf"SIGNAL +SIGALRM {where}\b", listing), listing[-3000:]
    return trace


def _pcs(output: str) -> list[int]:
    return [int(v, 16) for v in re.findall(r"^\$\d+ = (0x[0-9a-f]+)$", output, re.MULTILINE)]


def _values(output: str) -> list[int]:
    return [int(v) for v in re.findall(r"^\$\d+ = (\d+)$", output, re.MULTILINE)]


def _clean(server) -> None:
    """The replay served every request: no divergence, no traceback."""
    out = server.describe()
    assert "Traceback" not in out and "diverged" not in out, out


def test_reverse_stepi_from_a_handler_lands_where_the_signal_came(signal_trace, serve):
    """(With the signal at a point in user code, the search stopped at the breakpoint at
    the handler's first instruction as if it were its own debug trap, and replay diverged
    at a stray SIGTRAP; the forward `continue` itself sometimes never found the point.)"""
    server = serve(signal_trace)
    run = gdb_batch("break *on_alarm", "continue", "frame 2", "p/x $pc", "frame 0",
                    "reverse-stepi", "p/x $pc", "stepi", "p/x $pc", "p/x (long)&on_alarm",
                    connect=server.address, timeout=90)
    _clean(server)
    pcs = _pcs(run.output)
    assert len(pcs) == 4, str(run)
    interrupted, back, forward, handler = pcs
    assert back == interrupted, str(run)
    assert forward == handler, str(run)  # and stepping forward delivers the signal again


def test_reverse_continue_from_a_handler_to_the_round_before(signal_trace, serve):
    """Back from the handler to the last call of compute() before the signal, then forward
    to the handler again: the program's memory says which round each stop is in."""
    server = serve(signal_trace)
    run = gdb_batch("break *on_alarm", "continue", "print sink", "break compute",
                    "reverse-continue", "print sink", "delete 2", "continue", "print sink",
                    connect=server.address, timeout=90)
    _clean(server)
    at_signal, round_before, again = _values(run.output)
    assert at_signal - round_before == 7 * sum(range(5_000_000)), str(run)
    assert again == at_signal, str(run)
    assert re.search(r"Breakpoint 2, compute \(\)", run.output), str(run)


def test_reverse_next_back_to_the_line_the_signal_interrupted(signal_trace, serve):
    """From the line after the one the signal interrupted (the handler ran between), one
    reverse-next is the interrupted line again, at the interrupted pc."""
    if not signal_trace.name.endswith("_user"):
        pytest.skip("the signal came in getppid, not between two lines of main")
    server = serve(signal_trace)
    run = gdb_batch("break *on_alarm", "continue", "frame 2", "p/x $pc", "tbreak *$pc",
                    "continue", "next", "p/x $pc", "reverse-next", "p/x $pc",
                    connect=server.address, timeout=90)
    _clean(server)
    interrupted, after, back = _pcs(run.output)
    assert after != interrupted, str(run)
    assert back == interrupted, str(run)


@pytest.fixture(scope="module")
def exec_threads_trace(programs, tmp_path_factory) -> Path:
    trace = tmp_path_factory.mktemp("crossing") / "exec_from_threads"
    rec = record(trace, programs["exec_from_threads"])
    assert rec.returncode == 3, describe(rec)
    return trace


def test_reverse_stepi_back_across_an_exec_among_threads(exec_threads_trace, serve):
    """The main thread execs while three threads wait: one instruction back from the new
    program's first is the execve of the old one, and gdb is told that program runs again
    (with one engine for one thread or several, as in test_gdb_exec for one thread); one more
    step back goes on in it (it used to hang: the threads the exec kills were never reaped)."""
    server = serve(exec_threads_trace)
    run = gdb_batch("catch exec", "continue", "x/i $pc", "reverse-stepi", "x/i $pc", "bt 3",
                    "stepi", "x/i $pc", "reverse-stepi", "reverse-stepi", "x/i $pc",
                    connect=server.address, timeout=60)
    out = run.output
    assert "Traceback" not in server.describe(), server.describe()
    pcs = re.findall(r"^=> 0x[0-9a-f]+ <([\w.+]+)>:\s+(\w+)", out, re.MULTILINE)
    assert [p[0] for p in pcs] == ["_start", "__GI_execve+5", "_start", "__GI_execve"], str(run)
    assert pcs[1][1] == "syscall", str(run)
    assert re.search(r"#2 +0x[0-9a-f]+ in main \(argc=1,", out), str(run)


def test_reverse_continue_back_across_an_exec_among_threads(exec_threads_trace, serve):
    """From main of the new program back to main of the old one: gdb is told of the exec
    and finds its breakpoint in the old program (it used to stop nowhere, without symbols)."""
    server = serve(exec_threads_trace)
    run = gdb_batch("break main", "continue", "continue", "print argc", "reverse-continue",
                    "print argc", connect=server.address, timeout=60)
    out = run.output
    assert "Traceback" not in server.describe(), server.describe()
    assert re.findall(r"^\$\d+ = (\d+)$", out, re.MULTILINE) == ["2", "1"], str(run)
    back = out[out.index("$1 = 2"):]
    assert "is executing new program" in back, str(run)
    assert "Breakpoint 1, main (argc=1," in back, str(run)
