"""Ctrl-C in a tight loop, then step back: bounded (issue 23).

gdb interrupts a `continue` while the replay runs a hash loop with no system call (one
thread: cpu_loop; a worker thread while main waits in pthread_join: threads_long_loop), so
the stop lands at an arbitrary instruction inside the loop. Before, the first reverse-stepi
from there replayed the slice since the last mid stopping at every arrival at that
instruction (one per iteration: millions) and did not answer. Now the interrupted continue
leaves a mid there and runs on to a counted arrival (replayer/interrupt_point.py).

How much each backward command re-executed is read from `monitor info reverse` (the stops of
the replayed program), not from wall time. Where it lands is checked by going forwards
again: one `stepi` from the state reverse-stepi reached gives back exactly the registers
(and x, i) of the interrupted stop, and the steps back after it go on through the loop.
"""
from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from gdbhelpers import MiSession, requires_gdb, serve
from long_loop import record_long_loop

__all__ = ["serve"]  # the fixture, imported for pytest
pytestmark = [requires_gdb, pytest.mark.slow]

ITERATIONS = 1_500_000_000  # a few seconds of loop: the interrupt lands inside it
MAX_STOPS = 3_000  # per backward command; the slice since the last mid holds ~10^7 arrivals
GENERAL = [str(n) for n in range(18)]  # rax ... r15, rip, eflags (gdb's numbering)
LOOPS = {"cpu_loop": range(21, 25), "threads_long_loop": range(18, 22)}


@pytest.fixture(scope="module", params=sorted(LOOPS))
def long_loop(request, programs, tmp_path_factory) -> tuple[str, Path]:
    name = request.param
    trace, _ = record_long_loop(tmp_path_factory.mktemp("interrupt") / name,
                                programs[name], ITERATIONS)
    return name, trace


def _registers(mi: MiSession) -> dict[str, str]:
    values = mi.ok("-data-list-register-values x " + " ".join(GENERAL))["register-values"]
    return {v["number"]: v["value"] for v in values}


def _variables(mi: MiSession) -> tuple[int, int]:
    return (int(mi.ok("-data-evaluate-expression i")["value"]),
            int(mi.ok("-data-evaluate-expression x")["value"]))


def _same(mi: MiSession, regs: dict[str, str], variables: tuple[int, int]) -> None:
    now = _registers(mi)
    assert now == regs, {n: (regs[n], v) for n, v in now.items() if regs[n] != v}
    assert _variables(mi) == variables


def _stops(mi: MiSession) -> int:
    mark = len(mi.records)
    mi.ok('-interpreter-exec console "monitor info reverse"')
    said = "".join(r["payload"] for r in mi.records[mark:]
                   if r["type"] in ("console", "target") and isinstance(r["payload"], str))
    match = re.search(r"(\d+) stops", said)
    assert match, mi.transcript()
    return int(match.group(1))


def _move(mi: MiSession, command: str) -> dict:
    mi.ok(command)
    return mi.wait_stopped(timeout=120)


def _interrupt_in_loop(mi: MiSession, lines: range) -> dict:
    """`continue`, then -exec-interrupt once the replay is inside the loop."""
    for _ in range(10):  # on a loaded machine the replay may still be starting
        mi.ok("-exec-continue")
        mi.wait_for(lambda r: r["type"] == "notify" and r["message"] == "running")
        time.sleep(1.0)
        mi.ok("-exec-interrupt")
        stop = mi.wait_stopped(timeout=30)
        assert stop.get("signal-name") == "SIGINT", mi.transcript()
        if int(stop["frame"].get("line", 0)) in lines:
            return stop
    raise AssertionError(f"never interrupted inside the loop: {stop}")


def test_step_back_after_ctrl_c_in_a_tight_loop(long_loop, serve):
    name, trace = long_loop
    server = serve(trace)
    with MiSession() as mi:
        mi.ok("-gdb-set mi-async on")
        mi.ok(f"-target-select remote {server.address}", expect=("connected",))
        mi.wait_stopped()
        _interrupt_in_loop(mi, LOOPS[name])
        here, here_vars = _registers(mi), _variables(mi)

        _move(mi, "-exec-step-instruction --reverse")
        cost = {"first reverse-stepi": _stops(mi)}
        before = _registers(mi)
        assert before != here
        _move(mi, "-exec-step-instruction")  # one instruction forwards: the interrupted state
        _same(mi, here, here_vars)

        # Further back through the loop: every instruction back is one forwards from the
        # state before it, and i goes down (one iteration per pass through the loop's lines).
        seen = []
        for k in range(12):
            _move(mi, "-exec-step-instruction --reverse")
            cost[f"reverse-stepi {k}"] = _stops(mi)
            seen.append((_registers(mi), _variables(mi)))
        _move(mi, "-exec-step-instruction")
        _same(mi, *seen[-2])
        for k in range(4):
            _move(mi, "-exec-next --reverse")
            cost[f"reverse-next {k}"] = _stops(mi)
        i_now, _ = _variables(mi)
        assert here_vars[0] - 3 <= i_now <= here_vars[0], (here_vars, i_now)
    assert all(stops <= MAX_STOPS for stops in cost.values()), cost
