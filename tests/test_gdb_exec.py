"""gdb follows execs in a replay, forwards and backwards (the `exec-events` stop reply).

Forwards, gdb is told the process runs a new program where it exec'd, loads that program's
symbols from the trace and sets its breakpoints again. Backwards, crossing the exec tells gdb
the previous program runs again, so its breakpoints and symbols work there too.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import describe, record
from gdbhelpers import gdb_batch, requires_gdb, serve

__all__ = ["serve"]  # the fixture, imported for pytest
pytestmark = [requires_gdb, pytest.mark.slow]

NEW_PROGRAM = "is executing new program: "


def _record(trace: Path, program: Path, status: int) -> Path:
    rec = record(trace, "--force", program)
    assert rec.returncode == status, describe(rec)
    return trace


@pytest.fixture(scope="module")
def exec_self_trace(programs, tmp_path_factory) -> Path:
    return _record(tmp_path_factory.mktemp("gdb-exec") / "exec_self", programs["exec_self"], 4)


def _stages(output: str) -> list[str]:
    """The value of `which` at each `print which`, in order."""
    return re.findall(r"^\$\d+ = (\d+)$", output, re.MULTILINE)


def test_breakpoint_in_the_program_after_exec(exec_self_trace, serve):
    server = serve(exec_self_trace)
    run = gdb_batch("break exec_self.c:15", "continue", "print which", "continue",
                    "print which", "bt 1", connect=server.address)
    out = run.output
    assert NEW_PROGRAM in out, str(run)
    assert _stages(out) == ["1", "2"], str(run)
    assert out.count("Breakpoint 1, main (argc=") == 2, str(run)
    assert "main (argc=2," in out[out.index(NEW_PROGRAM):], str(run)


def test_reverse_continue_back_across_the_exec(exec_self_trace, serve):
    """From main of the second program back to execl in the first, then to its main."""
    server = serve(exec_self_trace)
    run = gdb_batch("break exec_self.c:15", "break execl", "continue", "continue", "continue",
                    "print which", "reverse-continue", "bt 2", "reverse-continue",
                    "print which", "continue", "continue", "print which",
                    connect=server.address)
    out = run.output
    assert "Traceback" not in server.describe(), server.describe()
    assert _stages(out) == ["2", "1", "2"], str(run)
    back = out[out.index("$1 = 2"):]
    # gdb loads the first program again, then stops in its execl (with symbols).
    assert back.index(NEW_PROGRAM) < back.index("Breakpoint 2, __GI_execl"), str(run)
    assert re.search(r"#1 +0x[0-9a-f]+ in main \(argc=1,", back), str(run)


def test_reverse_stepi_into_the_execve_and_stepi_out(exec_self_trace, serve):
    server = serve(exec_self_trace)
    run = gdb_batch("catch exec", "continue", "x/i $pc", "reverse-stepi", "x/i $pc",
                    "bt 2", "stepi", "x/i $pc", connect=server.address)
    out = run.output
    assert "Traceback" not in server.describe(), server.describe()
    pcs = re.findall(r"^=> 0x[0-9a-f]+ <([\w.+]+)>:\s+(\w+)", out, re.MULTILINE)
    assert [p[0] for p in pcs] == ["_start", "__GI_execve+5", "_start"], str(run)
    assert pcs[1][1] == "syscall", str(run)
    assert re.search(r"#1 +0x[0-9a-f]+ in __GI_execl", out), str(run)


def test_exec_from_a_multithreaded_process(programs, tmp_path, serve):
    """The exec kills three waiting threads; gdb then debugs the new program."""
    trace = _record(tmp_path / "t", programs["exec_from_threads"], 3)
    server = serve(trace)
    run = gdb_batch("break main", "continue", "continue", "info threads", "bt 1",
                    connect=server.address)
    out = run.output
    assert "Traceback" not in server.describe(), server.describe()
    after = out[out.index(NEW_PROGRAM):]
    assert "main (argc=2," in after, str(run)
    threads = re.findall(r"^[ *] +\d+ +Thread ", after, re.MULTILINE)
    assert len(threads) == 1, str(run)
