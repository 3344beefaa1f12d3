"""gdb/MI (through pygdbmi, as front ends and scripts use it) against ``relive replay --port 0``.

pygdbmi's ``write()`` returns when output pauses, usually before ``*stopped``: every wait here
keeps reading until the record arrives, under an overall deadline (gdbhelpers.MiSession).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import describe, record
from gdbhelpers import END_OF_HISTORY, MiSession, requires_gdb, serve

__all__ = ["serve"]  # the fixture, imported for pytest
pytestmark = [requires_gdb, pytest.mark.slow]
pytest.importorskip("pygdbmi")

DOCS = Path(__file__).resolve().parent.parent / "docs"
CPU_LOOP_ITERS = "1500000000"  # a few seconds of replay with no syscalls in the loop


def _record(trace: Path, *argv: object) -> Path:
    rec = record(trace, "--force", *argv)
    assert rec.returncode == 0, describe(rec)
    return trace


@pytest.fixture(scope="module")
def target_trace(programs, tmp_path_factory) -> Path:
    return _record(tmp_path_factory.mktemp("gdb-mi") / "gdb_target", programs["gdb_target"])


@pytest.fixture(scope="module")
def cpu_loop_trace(programs, tmp_path_factory) -> Path:
    return _record(tmp_path_factory.mktemp("gdb-mi") / "cpu_loop", programs["cpu_loop"],
                   CPU_LOOP_ITERS)


def _connect(mi: MiSession, address: str) -> dict:
    """``-target-select remote``; returns the initial ``*stopped`` (the first instruction)."""
    mi.ok(f"-target-select remote {address}", expect=("connected",))
    return mi.wait_stopped()


def _args(frame: dict) -> dict[str, str]:
    return {a["name"]: a["value"] for a in frame.get("args", [])}


# -- 6. the basic MI session ----------------------------------------------------------------------

def test_mi_break_continue_next_frames_and_values(target_trace, serve):
    server = serve(target_trace)
    with MiSession() as mi:
        first = _connect(mi, server.address)
        assert first["frame"]["func"] == "_start", mi.transcript()

        bkpt = mi.ok("-break-insert bump")["bkpt"]
        assert bkpt["func"] == "bump", bkpt

        mi.ok("-exec-continue")
        stop = mi.wait_stopped()
        assert stop.get("reason") == "breakpoint-hit", mi.transcript()
        assert stop["frame"]["func"] == "bump" and _args(stop["frame"]) == {"by": "1"}, stop
        assert mi.ok("-data-evaluate-expression counter")["value"] == "0"

        mi.ok("-exec-next")
        stop = mi.wait_stopped()
        assert stop.get("reason") == "end-stepping-range", mi.transcript()
        assert stop["frame"]["func"] == "bump" and stop["frame"]["line"] == "23", stop

        frames = mi.ok("-stack-list-frames")["stack"]
        assert [f["func"] for f in frames] == ["bump", "main"], frames
        assert mi.ok("-data-evaluate-expression counter")["value"] == "1"
        variables = mi.ok("-stack-list-variables --all-values")["variables"]
        assert {"name": "by", "arg": "1", "value": "1"} in variables, variables
        message = mi.ok("-data-evaluate-expression message")["value"]
        assert message.startswith('"relive"'), message

        mi.ok("-exec-finish")
        stop = mi.wait_stopped()
        assert stop.get("reason") == "function-finished", mi.transcript()
        assert stop["frame"]["func"] == "main", stop

        mi.ok("-break-delete")
        mark = len(mi.records)
        mi.ok("-exec-continue")
        stop = mi.wait_stopped(timeout=60)
        # gdb 13: no "reason" for the end of history, only the console line.
        assert stop.get("reason") in (None, "no-history"), stop
        assert END_OF_HISTORY in mi.console_since(mark), mi.transcript()
        assert mi.ok("-data-evaluate-expression counter")["value"] == "15"
    assert "total=30 counter=15" in server.wait_for_stdout("pid="), server.describe()


def test_mi_continue_from_the_first_stop_to_the_end_of_history(target_trace, serve):
    """What a front end does when it only connects and continues."""
    server = serve(target_trace)
    with MiSession() as mi:
        mi.ok("-gdb-set mi-async on")
        _connect(mi, server.address)
        mark = len(mi.records)
        mi.ok("-exec-continue")
        stop = mi.wait_stopped(timeout=60)
        assert stop.get("reason") in (None, "no-history"), stop
        assert END_OF_HISTORY in mi.console_since(mark), mi.transcript()
        frames = mi.ok("-stack-list-frames")["stack"]
        # Still inspectable: parked in _exit, called from libc's start code.
        assert "exit" in frames[0]["func"] and frames[-1]["func"] == "_start", frames
        assert mi.ok("-data-evaluate-expression counter")["value"] == "15"
    out = server.wait_for_stdout("pid=")
    assert out.startswith("open=-1 errno=2\ntotal=30 counter=15 fact=120 len=6\npid="), out


def test_mi_cppdbg_like_launch_sequence(programs, target_trace, serve):
    """The commands VS Code's cppdbg sends with miDebuggerServerAddress and
    "launchCompleteCommand": "exec-continue": the local program for symbols, the remote
    target, the user's breakpoints, then -exec-continue (not -exec-run)."""
    server = serve(target_trace)
    with MiSession() as mi:
        mi.ok("-gdb-set mi-async on")
        mi.ok('-interpreter-exec console "set pagination off"')
        mi.ok("-enable-pretty-printing")
        mi.ok(f"-file-exec-and-symbols {programs['gdb_target']}")
        _connect(mi, server.address)

        # The default launchCompleteCommand (exec-run) cannot work on a plain remote target.
        refused = mi.command("-exec-run")
        assert refused["message"] == "error", refused

        mi.ok("-break-insert -f factorial")
        mi.ok("-exec-continue")
        stop = mi.wait_stopped()
        assert stop.get("reason") == "breakpoint-hit", mi.transcript()
        assert _args(stop["frame"]) == {"n": "5"}, stop
        mi.ok("-exec-continue")
        stop = mi.wait_stopped()
        assert _args(stop["frame"]) == {"n": "4"}, stop
        frames = mi.ok("-stack-list-frames")["stack"]
        assert [f["func"] for f in frames] == ["factorial", "factorial", "main"], frames
        # A console command typed in VS Code's debug console (what `-exec CMD` sends).
        mi.ok('-interpreter-exec console "print n * 10"')
        assert "$1 = 40" in mi.console(), mi.transcript()
        mi.ok("-break-delete")
        mark = len(mi.records)
        mi.ok("-exec-continue")
        mi.wait_stopped(timeout=60)
        assert END_OF_HISTORY in mi.console_since(mark), mi.transcript()


# -- 4. Ctrl-C -----------------------------------------------------------------------------------

def test_mi_interrupt_stops_a_running_replay_and_continue_resumes(cpu_loop_trace, serve):
    server = serve(cpu_loop_trace)
    with MiSession() as mi:
        mi.ok("-gdb-set mi-async on")
        _connect(mi, server.address)
        for _ in range(20):  # on a loaded machine the replay may still be in the loader
            mi.ok("-exec-continue")
            mi.wait_for(lambda r: r["type"] == "notify" and r["message"] == "running")
            time.sleep(0.5)  # then well inside the loop, which runs for seconds
            sent = time.monotonic()
            mi.ok("-exec-interrupt")
            stop = mi.wait_stopped(timeout=2.0)
            assert time.monotonic() - sent < 2.0
            assert stop.get("reason") == "signal-received", mi.transcript()
            assert stop.get("signal-name") == "SIGINT", stop
            if stop["frame"]["func"] == "main":
                break
        assert stop["frame"]["func"] == "main", stop
        assert "iterations:" not in server.stdout(), "the loop had already finished"

        mark = len(mi.records)
        mi.ok("-exec-continue")
        stop = mi.wait_stopped(timeout=90)
        assert stop.get("reason") in (None, "no-history"), stop
        assert END_OF_HISTORY in mi.console_since(mark), mi.transcript()
    out = server.wait_for_stdout("result:")
    assert f"iterations: {CPU_LOOP_ITERS}\n" in out, server.describe()


# -- the guide's pygdbmi example ---------------------------------------------------------------

def _guide_example() -> str:
    guide = (DOCS / "gdb.md").read_text()
    match = re.search(r"<!-- pygdbmi-example -->\s*```python\n(.*?)```", guide, re.DOTALL)
    assert match, "docs/gdb.md has no python block after <!-- pygdbmi-example -->"
    return match.group(1)


def test_the_guides_pygdbmi_example_runs(target_trace, serve, tmp_path):
    server = serve(target_trace)
    script = tmp_path / "replay_mi.py"
    script.write_text(_guide_example())
    env = dict(os.environ, DEBUGINFOD_URLS="", LC_ALL="C")
    proc = subprocess.run([sys.executable, str(script), server.address], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}\n{server.describe()}"
    assert proc.stdout.splitlines() == [
        "stopped (breakpoint-hit) in bump(by=1)",
        "counter = 0",
        "after -exec-next: counter = 1",
        "stack: bump <- main",
        "end of the recording: No more reverse-execution history.",
    ], proc.stdout


# -- calls from a watch expression (VS Code evaluates them through MI) ---------------------------

def test_mi_evaluates_calls_and_assignments_without_changing_history(target_trace, serve):
    server = serve(target_trace)
    with MiSession() as mi:
        _connect(mi, server.address)
        mi.ok("-break-insert bump")
        mi.ok("-exec-continue")
        assert mi.wait_stopped().get("reason") == "breakpoint-hit", mi.transcript()
        assert mi.ok("-data-evaluate-expression square(7)")["value"] == "49"
        assert mi.ok("-data-evaluate-expression \"counter = 5\"")["value"] == "5"
        assert mi.ok("-data-evaluate-expression counter")["value"] == "5"
        assert mi.ok("-data-evaluate-expression square(counter)")["value"] == "25"
        mark = len(mi.records)
        mi.ok("-exec-continue")
        stop = mi.wait_stopped()
        assert stop.get("reason") == "breakpoint-hit" and _args(stop["frame"]) == {"by": "2"}
        told = [r["payload"] for r in mi.records[mark:] if r["type"] == "target"]
        assert any("what gdb wrote is dropped" in t for t in told), mi.transcript()
        assert mi.ok("-data-evaluate-expression counter")["value"] == "1"  # as recorded
