"""Step Back in an editor on a program that computes between system calls (issue 20's
latency target: a stepBack answers in <= 100 ms on a 30 s trace; bench/bench_dap.py measures
that, this test the cases that took seconds to minutes before).

tests/programs/dap_chunks.c computes ~1 ms (300,000 loop iterations) between two system
calls. From `marker()`, reached by a continue, the editor steps back line by line: out of
marker, over the loop header, over the previous chunk's `getppid()` (gdb goes back to the
libc function's entry, then one instruction back lands in its PLT entry, which no decoding
backwards finds), through `if (chunk & 1)` (entered by a jump from the loop's exit) and
into the loop's last iteration. Each step used to replay from the last checkpoint several
times (seconds in all) and the last two single-stepped or counted the whole loop (40 s and
more here); the oracle for where they land is the program's own variables: the loop's
last iteration has i == WORK - 1 in the chunk before the marked one.
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest
from dapclient import DapClient

from conftest import PROGRAMS_DIR, run_relive

SOURCE = PROGRAMS_DIR / "dap_chunks.c"
BOUND = 2.0  # seconds per stepBack; the slowest took 40-260 s before (under load)


def _line(pattern: str) -> int:
    lines = SOURCE.read_text().splitlines()
    return next(i + 1 for i, text in enumerate(lines) if pattern in text)


def _define(name: str) -> int:
    return int(next(line.split()[2] for line in SOURCE.read_text().splitlines()
                    if line.startswith(f"#define {name} ")))


@pytest.fixture(scope="module")
def trace(programs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dap-chunks") / "trace"
    rec = run_relive("record", "-o", out, programs["dap_chunks"])
    assert rec.returncode == 0, rec.stderr
    return out


def _value(c: DapClient, frame: dict, expression: str) -> int:
    return int(c.request("evaluate", expression=expression, frameId=frame["id"],
                         context="watch")["result"])


def test_step_back_after_a_continue_over_a_libc_call_and_into_a_loop(trace):
    marked, work = _define("MARKED"), _define("WORK")
    call, body = _line("marker(chunk);"), _line("acc = acc * 6364136223846793005UL")
    syscall = _line("sink += (unsigned long)getppid();")
    c = DapClient(timeout=600)
    try:
        c.request("initialize", adapterID="relive")
        c.request("launch", trace=str(trace))
        c.event("initialized")
        c.request("setFunctionBreakpoints", breakpoints=[{"name": "marker"}])
        c.request("configurationDone")
        assert c.event("stopped")["reason"] == "function breakpoint"
        walk: list[tuple[int, float]] = []
        for _ in range(10):
            start = time.monotonic()
            stop = c.run("stepBack", threadId=1)
            took = time.monotonic() - start
            frame = c.top()
            assert stop["reason"] == "step" and frame["name"] == "main", (stop, frame)
            walk.append((frame["line"], took))
            if frame["line"] == body:
                break
        lines = [line for line, _ in walk]
        assert lines[0] == call, walk
        assert syscall in lines, walk
        assert lines[-1] == body, walk  # reached the loop's body
        assert _value(c, frame, "chunk") == marked - 1
        assert _value(c, frame, "i") == work - 1  # in its last iteration
        slow = [(line, round(took, 3)) for line, took in walk if took > BOUND]
        assert not slow, f"stepBack took more than {BOUND} s: {slow} (walk {walk})"
        c.request("disconnect")
    finally:
        c.close()
