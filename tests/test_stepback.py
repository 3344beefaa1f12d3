"""The first step back after a long computation is bounded (issue 23).

cpu_loop runs a hashing loop with no system call for about a second: before mid-stretch
checkpoints, a `reverse-stepi` from the line after the loop re-executed the loop from its
start, single-stepping or counting every iteration (it did not answer within 15 minutes).

The oracle is the program itself: it prints the final hash `x` and the loop count, and each
operation of the loop body is invertible (xor with i, multiplication by an odd constant,
rotation), so the values of `x` and `i` at every line of the last iterations follow from what
the recording printed, independently of relive.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from gdbhelpers import gdb_batch, requires_gdb, serve
from long_loop import MASK, PRIME_INVERSE, record_long_loop, ror

__all__ = ["serve"]  # the fixture, imported for pytest
pytestmark = [requires_gdb, pytest.mark.slow]

ITERATIONS = 400_000_000  # about a second of computation without a system call
BOUND = 20.0  # seconds per command; each took more than 15 minutes before

SCRIPT = r"""
break cpu_loop.c:26
continue
python
import time
def show(cmd):
    t = time.monotonic()
    gdb.execute(cmd, to_string=True)
    took = time.monotonic() - t
    frame = gdb.selected_frame()
    line = frame.find_sal().line
    i = int(gdb.parse_and_eval("i"))
    x = int(gdb.parse_and_eval("x"))
    rax = int(gdb.parse_and_eval("$rax")) & ((1 << 64) - 1)
    print("STOP %s|%d|%d|%d|%d|%.3f" % (cmd, line, i, x, rax, took))
COMMANDS
end
"""


@pytest.fixture(scope="module")
def long_loop(programs, tmp_path_factory) -> tuple[Path, int]:
    """cpu_loop recorded with ITERATIONS iterations, and the result it printed."""
    return record_long_loop(tmp_path_factory.mktemp("stepback") / "cpu_loop",
                            programs["cpu_loop"], ITERATIONS)


def _run(server, tmp_path: Path, commands: list[str]) -> list[tuple[str, int, int, int, int]]:
    """The script's commands, each followed by (command, line, i, x, rax); every command
    answers within BOUND."""
    path = tmp_path / "stepback.gdb"
    path.write_text(SCRIPT.replace("COMMANDS", "\n".join(
        f"gdb.execute({c!r})" if c.startswith("break") else f"show({c!r})" for c in commands)))
    run = gdb_batch(connect=server.address, script=path, timeout=180)
    stops = [line[5:].split("|") for line in run.output.splitlines()
             if line.startswith("STOP ")]
    assert len(stops) == len([c for c in commands if not c.startswith("break")]), run.output
    took = {f"{k}: {s[0]}": float(s[5]) for k, s in enumerate(stops)}
    assert all(t < BOUND for t in took.values()), took
    return [(s[0], int(s[1]), int(s[2]), int(s[3]), int(s[4])) for s in stops]


def _last_iteration(result: int) -> tuple[int, int, int]:
    """x at the start of lines 24, 23 and 22 in the last iteration (i == n - 1)."""
    x24 = ror(result, 13)
    x23 = x24 * PRIME_INVERSE & MASK
    return x24, x23, x23 ^ (ITERATIONS - 1)


def test_first_step_back_after_a_long_computation(long_loop, tmp_path: Path, serve):
    trace, result = long_loop
    n = ITERATIONS
    x24, x23, x22 = _last_iteration(result)
    got = _run(serve(trace), tmp_path, [
        "reverse-stepi", "reverse-stepi", "reverse-stepi", "reverse-stepi",
        "reverse-next", "reverse-next", "reverse-next", "reverse-next",
        "stepi", "next", "next"])
    expected = [
        # back from the printf after the loop: the loop's last compare-and-branch...
        ("reverse-stepi", 21, n, result, n),
        ("reverse-stepi", 21, n, result, n),     # cmp
        ("reverse-stepi", 21, n, result, None),  # mov i, %rax (rax as before it)
        ("reverse-stepi", 21, n - 1, result, None),  # i++ of the last iteration
        # ...then line by line through the last iteration's body
        ("reverse-next", 24, n - 1, x24, None),
        ("reverse-next", 23, n - 1, x23, None),
        ("reverse-next", 22, n - 1, x22, None),
        ("reverse-next", 21, n - 2, x22, None),  # the i++ of the iteration before
        # and forwards again, through the same states
        ("stepi", 21, n - 1, x22, None),
        ("next", 22, n - 1, x22, None),
        ("next", 23, n - 1, x23, None),
    ]
    for (cmd, line, i, x, rax), want in zip(got, expected, strict=True):
        assert (cmd, line, i, x) == want[:4], got
        if want[4] is not None:
            assert rax == want[4], got


def test_reverse_continue_into_a_long_computation(long_loop, tmp_path: Path, serve):
    """From after the loop back to a breakpoint inside it: the last iteration, then the one
    before (a search over the whole slice since the last checkpoint would count ~10^7
    hits), a step back, and forwards to the same hit again."""
    trace, result = long_loop
    n = ITERATIONS
    x24, _, x22 = _last_iteration(result)
    got = _run(serve(trace), tmp_path, [
        "break cpu_loop.c:24", "reverse-continue", "reverse-continue", "reverse-stepi",
        "continue"])
    earlier = ror(x22, 13)  # line 24 of the iteration before: x then rotates into x22
    assert [g[:4] for g in got] == [
        ("reverse-continue", 24, n - 1, x24),
        ("reverse-continue", 24, n - 2, earlier),
        ("reverse-stepi", 23, n - 2, got[2][3]),
        ("continue", 24, n - 2, earlier)], got
