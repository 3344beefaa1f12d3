"""Threads that compute without a syscall where no instruction is reached rarely (a loop that
calls nothing, an interpreter's eval loop) while another thread waits for the CPU: the
recorder preempts them at once at a point replay jumps to (recorder/jump_points.py), so the
recording finishes about as fast as the program runs and the replay reproduces it, in less time
than the recording, instead of trapping at that point's pc millions of times ("gave up looking
for the point where the thread was preempted")."""
from __future__ import annotations

import os
import re
import shutil
import time

import pytest
from conftest import PROGRAMS_DIR, assert_faithful, describe, replay
from gdbhelpers import END_OF_HISTORY, gdb_batch, requires_gdb, serve  # noqa: F401 (fixture)

from test_threads_processes import dump_lines, record_checked

PYTHON = "/usr/bin/python3"


def jumps(trace):
    return [rest for _, _, kind, rest in dump_lines(trace)
            if kind == "PREEMPT" and "replay jumps here" in rest]


def record_then_replay(trace, *argv, timeout=90):
    """Record and replay (each bounded: without jump points the replay of these programs
    looks for its points for minutes and then gives up); returns both and their seconds."""
    t0 = time.monotonic()
    rec = record_checked(trace, *argv, timeout=timeout)
    t1 = time.monotonic()
    rep = replay(trace, timeout=timeout)
    t2 = time.monotonic()
    assert_faithful(rec, rep)
    return rec, rep, t1 - t0, t2 - t1


def test_threads_passing_an_atomic_token(programs, tmp_path):
    """Two threads pass a C11 atomic token; the one waiting spins and counts its turns (its
    registers change each turn, the loop calls nothing). Each hand-off preempts the spinner
    at a jump point: 12 hand-offs record in seconds (2 s each before) and replay prints the
    recorded spin counts from its own memory."""
    trace = tmp_path / "trace"
    rec, _, _, _ = record_then_replay(trace, programs["threads_token"], "6")
    assert rec.returncode == 0, describe(rec)
    assert re.fullmatch(rb"6 rounds; thread 1 spun yes; counts \d+ \d+\n", rec.stdout), rec.stdout
    assert jumps(trace), dump_lines(trace)


PY_SPIN = r"""
import threading, time
done = threading.Event()
count = [0]
def spin():
    n = 0
    while not done.is_set():
        n += 1
    count[0] = n
t = threading.Thread(target=spin)
t.start()
time.sleep(0.2)
done.set()
t.join()
print("spun", count[0])
"""

def test_a_python_thread_computing_while_the_main_thread_waits(tmp_path):
    """The main thread sleeps 0.2 s while a thread counts in a Python loop, then asks it to
    stop: it needs the GIL, which the counting thread gives up only when the main thread
    gets to run. The count printed depends on the recording's timing; replay must print the
    same one."""
    if not os.access(PYTHON, os.X_OK):
        pytest.skip(f"{PYTHON} is not installed")
    trace = tmp_path / "trace"
    rec, _, recorded, replayed = record_then_replay(trace, PYTHON, "-c", PY_SPIN)
    assert rec.returncode == 0, describe(rec)
    assert re.fullmatch(rb"spun \d+\n", rec.stdout), rec.stdout
    assert jumps(trace), dump_lines(trace)
    print(f"recorded in {recorded:.1f} s, replayed in {replayed:.1f} s")


def test_ruby_timeout_around_a_computation(tmp_path):
    """Timeout.timeout runs a thread that raises in the computing one after 0.1 s
    (0.4 s natively; the recording took ~30 s and its replay gave up before)."""
    ruby = shutil.which("ruby")
    if ruby is None:
        pytest.skip("ruby is not installed")
    script = ('require "timeout"; begin; Timeout.timeout(0.1) { loop { Math.sqrt(rand) } }; '
              'rescue Timeout::Error; puts "timed out"; end')
    trace = tmp_path / "trace"
    rec, _, _, _ = record_then_replay(trace, ruby, "-e", script)
    assert rec.stdout == b"timed out\n", describe(rec)
    assert jumps(trace), dump_lines(trace)


@requires_gdb
def test_gdb_goes_back_and_forth_across_jump_points(programs, tmp_path, serve):  # noqa: F811
    """Under gdb, a breakpoint after the spin loop stops with the recorded spin counts, and
    reverse-continue from the next hit comes back to the same state: every re-execution (from
    a checkpoint) makes the same jumps."""
    trace = tmp_path / "trace"
    rec = record_checked(trace, programs["threads_token"], "3", timeout=90)
    assert rec.returncode == 0, describe(rec)
    assert jumps(trace), dump_lines(trace)
    line = next(i for i, text in enumerate(
        (PROGRAMS_DIR / "threads_token.c").read_text().splitlines(), 1)
        if "spins[me] += n;" in text)
    server = serve(trace)
    run = gdb_batch(f"break threads_token.c:{line}", "continue", "print me * 1000 + r",
                    "print n", "continue", "print me * 1000 + r", "print n",
                    "reverse-continue", "print me * 1000 + r", "print n", "reverse-stepi",
                    "stepi", "delete", "continue", connect=server.address, timeout=240)
    values = re.findall(r"^\$\d+ = (\d+)$", run.output, re.M)
    assert len(values) == 6, str(run)
    assert values[4:6] == values[0:2], str(run)  # back at the first hit, same state
    assert values[2:4] != values[0:2], str(run)
    assert END_OF_HISTORY in run.output and "diverged" not in server.stderr(), str(run)


@requires_gdb
def test_reverse_stepi_across_a_jump_point_in_one_thread(programs, tmp_path, serve):  # noqa: F811
    """itimer_spin's SIGALRMs come while a loop that calls nothing runs: each is delivered at
    a jump point. From the handler, reverse-stepi goes back to the jump point, then in one
    step to where the jumped stretch began; stepi comes forward the same way (it used to
    re-run the stretch freely looking for the step before the point, and never answered)."""
    trace = tmp_path / "trace"
    rec = record_checked(trace, programs["itimer_spin"])
    assert rec.returncode == 0, describe(rec)
    rows = dump_lines(trace)
    points = [int(rows[i][3].split()[2].rstrip(":"), 16) for i in range(len(rows) - 1)
              if rows[i][2] == "PREEMPT" and "replay jumps here" in rows[i][3]
              and rows[i + 1][2] == "SIGNAL" and "preempted" in rows[i + 1][3]]
    if not points:
        pytest.skip("no SIGALRM of this recording came while the loop ran")
    server = serve(trace)
    back = ["reverse-stepi", "print/x $pc"] * 6
    run = gdb_batch("break on_alarm", "continue", "delete", *back, "stepi", "print/x $pc",
                    "continue", connect=server.address, timeout=180)
    pcs = [int(v, 16) for v in re.findall(r"^\$\d+ = (0x[0-9a-f]+)$", run.output, re.M)]
    assert len(pcs) == 7, str(run)
    assert points[0] in pcs[:6], (hex(points[0]), [hex(p) for p in pcs], str(run))
    i = pcs.index(points[0])
    assert i < 5, str(run)  # and it went on back from there
    assert END_OF_HISTORY in run.output and "diverged" not in server.stderr(), str(run)
