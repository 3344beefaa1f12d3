"""The first step back after a long computation is bounded among threads too (issue 23).

threads_long_loop's worker computes for about a second with no system call while main waits
in pthread_join: a multi-threaded replay, whose backward commands go through the thread-aware
engine. Before mid-stretch checkpoints were taken among threads, the first `reverse-stepi`
after continuing to the end of that loop re-executed the whole loop from the last event
(single-stepping it: hundreds of millions of stops; it did not answer within minutes).

How much was re-executed is read from the engine (`monitor info reverse`: the stops of the
replayed program during the last backward command), not from wall time. The oracle for where
each command lands is the program itself, as in test_stepback.py: every operation of the
loop body is invertible, so x and i at each line of the last iterations follow from the
result the recording printed.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from gdbhelpers import gdb_batch, requires_gdb, serve
from long_loop import MASK, PRIME_INVERSE, record_long_loop, ror

__all__ = ["serve"]  # the fixture, imported for pytest
pytestmark = [requires_gdb, pytest.mark.slow]

ITERATIONS = 100_000_000
MAX_STOPS = 5_000  # per command; the whole loop single-stepped would be ~10^9

SCRIPT = r"""
break threads_long_loop.c:23
continue
python
import re
def show(cmd):
    gdb.execute(cmd, to_string=True)
    cost = gdb.execute("monitor info reverse", to_string=True)
    stops = int(re.search(r"(\d+) stops", cost).group(1))
    line = gdb.selected_frame().find_sal().line
    i = int(gdb.parse_and_eval("i"))
    x = int(gdb.parse_and_eval("x"))
    print("STOP %s|%d|%d|%d|%d" % (cmd, line, i, x, stops))
COMMANDS
end
"""


@pytest.fixture(scope="module")
def long_loop(programs, tmp_path_factory) -> tuple[Path, int]:
    """threads_long_loop recorded with ITERATIONS iterations, and the result it printed."""
    return record_long_loop(tmp_path_factory.mktemp("stepback_threads") / "threads_long_loop",
                            programs["threads_long_loop"], ITERATIONS)


def test_first_step_back_in_a_threads_long_computation(long_loop, tmp_path: Path, serve):
    trace, result = long_loop
    n = ITERATIONS
    commands = ["reverse-stepi"] * 5 + ["reverse-next"] * 4
    path = tmp_path / "stepback.gdb"
    path.write_text(SCRIPT.replace("COMMANDS", "\n".join(f"show({c!r})" for c in commands)))
    run = gdb_batch(connect=serve(trace).address, script=path, timeout=300)
    stops = [line[5:].split("|") for line in run.output.splitlines()
             if line.startswith("STOP ")]
    assert len(stops) == len(commands), run.output
    got = [(s[0], int(s[1]), int(s[2]), int(s[3])) for s in stops]
    cost = {f"{k}: {s[0]}": int(s[4]) for k, s in enumerate(stops)}
    # x at the start of lines 21, 20 and 19 of the last iteration (i == n - 1)
    x21 = ror(result, 13)
    x20 = x21 * PRIME_INVERSE & MASK
    x19 = x20 ^ (n - 1)
    # back from `result = x` over the loop's compare-and-branch into its last i++, then into
    # the end of the last iteration's body (the rotation of line 21, not yet stored) ...
    assert [g[1:3] for g in got[:4]] == [(18, n)] * 3 + [(18, n - 1)], got
    assert [g[3] for g in got[:4]] == [result] * 4, got
    assert got[4] == ("reverse-stepi", 21, n - 1, x21), got
    # ... then line by line back through it, and into the iteration before
    assert got[5:] == [("reverse-next", 20, n - 1, x20), ("reverse-next", 19, n - 1, x19),
                       ("reverse-next", 18, n - 2, x19),
                       ("reverse-next", 21, n - 2, ror(x19, 13))], got
    assert all(c <= MAX_STOPS for c in cost.values()), cost


def test_reverse_continue_into_a_threads_long_computation(long_loop, tmp_path: Path, serve):
    """From after the loop back to a breakpoint inside it: the last iteration, then the one
    before, from the last mid rather than from the stretch's start (~10^8 arrivals, one stop
    each, before); a step back, and forwards to the same hit again."""
    trace, result = long_loop
    n = ITERATIONS
    commands = ["reverse-continue", "reverse-continue", "reverse-stepi", "continue"]
    path = tmp_path / "rc.gdb"
    path.write_text(SCRIPT.replace("COMMANDS", "gdb.execute('break threads_long_loop.c:21')\n"
                                   + "\n".join(f"show({c!r})" for c in commands)))
    run = gdb_batch(connect=serve(trace).address, script=path, timeout=300)
    stops = [line[5:].split("|") for line in run.output.splitlines()
             if line.startswith("STOP ")]
    assert len(stops) == len(commands), run.output
    got = [(s[0], int(s[1]), int(s[2]), int(s[3])) for s in stops]
    cost = {f"{k}: {s[0]}": int(s[4]) for k, s in enumerate(stops[:3])}
    x21 = ror(result, 13)
    x19 = (x21 * PRIME_INVERSE & MASK) ^ (n - 1)
    earlier = ror(x19, 13)  # line 21 of the iteration before: x then rotates into x19
    assert got[:2] == [("reverse-continue", 21, n - 1, x21),
                       ("reverse-continue", 21, n - 2, earlier)], got
    assert got[2][1:3] == (20, n - 2), got
    assert got[3] == ("continue", 21, n - 2, earlier), got
    assert all(c <= MAX_STOPS for c in cost.values()), cost
