"""gdb writing registers and memory in a replay: `print f(x)`, `call`, `set var`. They run
in a diversion (a throwaway copy of the process, replayer/diversion.py) and the replay goes
on exactly as recorded afterwards. Real gdb against ``relive replay --port 0``."""
from __future__ import annotations

import signal
import time

import pytest
from conftest import describe, record
from gdbhelpers import gdb_batch, requires_gdb, serve, start_gdb_batch

__all__ = ["serve"]  # the fixture, imported for pytest
pytestmark = [requires_gdb, pytest.mark.slow]
LINE = "gdb_calls.c:33"  # printf("counter %d\n", counter) in the loop


@pytest.fixture
def calls_trace(programs, tmp_path):
    rec = record(tmp_path / "trace", programs["gdb_calls"])
    assert rec.returncode == 0, describe(rec)
    assert rec.stdout == b"counter 7\ncounter 8\ncounter 10\n"
    return tmp_path / "trace"


def test_print_calls_functions_and_the_replay_goes_on_as_recorded(calls_trace, serve):
    server = serve(calls_trace)
    run = gdb_batch(f"break {LINE}", "continue", "print twice(21)", "print half(5.0)",
                    "print counter", "next", "next", "next", "print counter",
                    'print say("hi there")', "print twice(counter)", "reverse-next",
                    "reverse-next", "print counter", connect=server.address)
    out = run.output
    assert "$1 = 42\n" in out and "$2 = 2.5\n" in out and "$3 = 7\n" in out, str(run)
    assert "$4 = 8\n" in out, str(run)  # the next iteration, as recorded
    assert "$5 = 8\n" in out and "$6 = 16\n" in out, str(run)
    assert "$7 = 7\n" in out, str(run)  # back before it
    # a call cleans up after itself: no note; the string gdb wrote for say() is dropped
    # when the replay moves on, which gdb is told
    assert out.count("relive: what gdb wrote is dropped") == 1, str(run)
    assert out.index("what gdb wrote is dropped") > out.index("$6 = 16"), str(run)
    # say() ran for real in the copy: its printf reached relive's stdout, once
    assert server.stdout().count("said: hi there\n") == 1, server.describe()


def test_set_var_lasts_until_the_next_resume_and_gdb_is_told(calls_trace, serve):
    server = serve(calls_trace)
    run = gdb_batch(f"break {LINE}", "continue", "set var counter = 100", "print counter",
                    "print twice(counter)", "next", "print counter", connect=server.address)
    out = run.output
    assert "$1 = 100\n" in out and "$2 = 200\n" in out, str(run)
    assert "relive: what gdb wrote is dropped: the replay goes on as recorded" in out, str(run)
    assert "$3 = 7\n" in out, str(run)


def test_a_breakpoint_inside_a_called_function_and_finish(calls_trace, serve):
    server = serve(calls_trace)
    run = gdb_batch(f"break {LINE}", "continue", "break twice", "print twice(3)", "bt",
                    "finish", "next", "print counter", connect=server.address)
    out = run.output
    assert "Breakpoint 2, twice (x=3)" in out, str(run)
    assert "<function called from gdb>" in out, str(run)
    assert "Value returned is $1 = 6" in out, str(run)
    assert "$2 = 7\n" in out, str(run)


def test_ctrl_c_stops_a_call_that_never_returns(calls_trace, serve, tmp_path):
    server = serve(calls_trace)
    log = tmp_path / "gdb.log"
    gdb = start_gdb_batch(f"break {LINE}", "continue", "print spin_forever()", "print counter",
                          "print twice(4)", connect=server.address, log=log)
    try:
        deadline = time.monotonic() + 60
        while "Breakpoint 1, main" not in log.read_text(errors="replace"):
            assert time.monotonic() < deadline and gdb.poll() is None, log.read_text()
            time.sleep(0.05)
        time.sleep(1.0)  # well inside spin_forever
        gdb.send_signal(signal.SIGINT)  # what Ctrl-C does: gdb sends \x03 to the stub
        gdb.wait(timeout=30)
    finally:
        if gdb.poll() is None:
            gdb.kill()
            gdb.wait()
    out = log.read_text(errors="replace")
    assert "SIGINT" in out and "function called from GDB" in out, out
    assert "$1 = 7\n" in out and "$2 = 8\n" in out, out


def test_a_call_that_exits_leaves_the_replay_as_it_was(calls_trace, serve):
    server = serve(calls_trace)
    run = gdb_batch(f"break {LINE}", "continue", "print (int)exit(3)", "print counter",
                    "next", "print counter", "continue", connect=server.address)
    out = run.output
    assert "the code gdb called ended the process copy it ran in" in out, str(run)
    assert "$1 = 7\n" in out, str(run)  # the replay, unchanged
    assert "Breakpoint 1, main" in out.split("$1 = 7")[1], str(run)  # and it goes on
    assert "internal error" not in server.stderr(), server.describe()
