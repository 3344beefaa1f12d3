"""The first step back among processes is bounded (issue 23).

tests/programs/fork_compute.c: a parent and its forked child take turns hashing for a long
stretch each, with no system call, and pass the result over pipes; so two processes live
everywhere in the replay. gdb debugs one of them (the child with `relive replay -p`, or the
parent), continues to the end of its second computation, then steps back. Before, no
checkpoint (and no mid inside a computation) was taken while two processes lived, so that
first reverse-stepi re-ran the replay from before the fork and single-stepped towards the
point: minutes (a memcached server under gdb: 162 s). Now checkpoints copy every process
(replayer/snapshot.py) and the step closes in from the mids the continue left.

How much each backward command re-executed is read from `monitor info reverse` (the stops of
the replayed program), not from wall time. Where it lands is checked by going forwards
again: one `stepi` from the state reverse-stepi reached gives back exactly the registers
(and `x`) of the stop it stepped back from.

The copies those snapshots fork and kill are children of relive, which reaps them: a long
session leaves no zombies (counted from /proc while it runs).
"""
from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest
from conftest import PROGRAMS_DIR, describe, record
from gdbhelpers import END_OF_HISTORY, MiSession, gdb_batch, requires_gdb, section, serve

from tracefile.reader import TraceReader

__all__ = ["serve"]  # the fixture, imported for pytest
pytestmark = [requires_gdb, pytest.mark.slow]

ITERATIONS = 100_000_000  # per computation: ~0.1-0.3 s, millions of loop iterations
MAX_STOPS = 3_000  # per backward command; a computation holds 10^8 arrivals at each pc
GENERAL = [str(n) for n in range(18)]  # rax ... r15, rip, eflags (gdb's numbering)
LINES = (PROGRAMS_DIR / "fork_compute.c").read_text().splitlines()
END = next(n for n, line in enumerate(LINES, 1) if "end of computation" in line)


@pytest.fixture(scope="module")
def tree(programs, tmp_path_factory) -> tuple[Path, dict[str, int]]:
    trace = tmp_path_factory.mktemp("tree-stepback") / "t"
    rec = record(trace, programs["fork_compute"], "3", str(ITERATIONS))
    assert rec.returncode == 0 and b"child status 7" in rec.stdout, describe(rec)
    reader = TraceReader(trace)
    try:
        pids = [t.pid for t in reader.tasks()]
    finally:
        reader.close()
    assert len(pids) == 2, pids
    return trace, {"parent": pids[0], "child": pids[1]}


def _registers(mi: MiSession) -> dict[str, str]:
    values = mi.ok("-data-list-register-values x " + " ".join(GENERAL))["register-values"]
    return {v["number"]: v["value"] for v in values}


def _state(mi: MiSession) -> tuple[dict[str, str], int]:
    return _registers(mi), int(mi.ok("-data-evaluate-expression x")["value"])


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


@pytest.mark.parametrize("who", ["child", "parent"])
def test_first_step_back_in_a_process_tree_is_bounded(tree, serve, who):
    trace, pids = tree
    server = serve(trace, pid=pids[who] if who == "child" else None)
    with MiSession() as mi:
        mi.ok("-gdb-set mi-async on")
        mi.ok(f"-target-select remote {server.address}", expect=("connected",))
        mi.wait_stopped()
        mi.ok(f"-break-insert -c round_no==1 fork_compute.c:{END}")
        stop = _move(mi, "-exec-continue")
        assert stop.get("reason") == "breakpoint-hit", mi.transcript()
        mi.ok("-break-delete")
        here = _state(mi)

        _move(mi, "-exec-step-instruction --reverse")
        cost = {"first reverse-stepi": _stops(mi)}
        assert _registers(mi) != here[0]
        _move(mi, "-exec-step-instruction")  # one instruction forwards: where it began
        assert _state(mi) == here, (who, mi.transcript()[-2000:])

        seen = []
        for k in range(10):  # back through the loop's last iterations
            _move(mi, "-exec-step-instruction --reverse")
            cost[f"reverse-stepi {k}"] = _stops(mi)
            seen.append(_state(mi))
        _move(mi, "-exec-step-instruction")
        assert _state(mi) == seen[-2]
        for k in range(3):
            _move(mi, "-exec-next --reverse")
            cost[f"reverse-next {k}"] = _stops(mi)
        line = int(mi.ok("-stack-info-frame")["frame"]["line"])
        assert line in range(END - 5, END), line  # still inside the loop
    assert all(stops <= MAX_STOPS for stops in cost.values()), (who, cost, server.describe())


def test_monitor_checkpoint_in_a_child_and_restart_to_it(tree, serve):
    """`monitor checkpoint` in the child while its parent lives (refused before: "several
    processes live"), then on to the child's end, and `monitor restart` back: the same
    event, registers and variables as when it was taken."""
    trace, pids = tree
    server = serve(trace, pid=pids["child"])
    goto = ("python here = re.search(r'event: (\\d+)', gdb.execute('monitor when', "
            "to_string=True)).group(1); gdb.execute('monitor goto ' + here)")
    show = ("monitor when", "maint flush register-cache", "print round_no", "print x",
            "info registers rip rsp rbp")
    run = gdb_batch("python import re", f"break fork_compute.c:{END} if round_no == 1",
                    "continue", "delete", goto, "monitor checkpoint", "echo ===BEFORE===\\n",
                    *show, "echo ===RUN===\\n", "continue", "echo ===RESTART===\\n",
                    "monitor restart 1", "echo ===AFTER===\\n", *show, "echo ===END===\\n",
                    connect=server.address, timeout=300)
    out = run.output
    assert run.returncode == 0 and "Remote failure reply" not in out, f"{run}\n{server.describe()}"
    assert re.search(r"^Checkpoint 1 at event \d+$", out, re.MULTILINE), out
    before = section(out, "===BEFORE===", "===RUN===")
    after = section(out, "===AFTER===", "===END===")
    assert "round_no" not in before and "$1 = 1" in before, out
    assert END_OF_HISTORY in section(out, "===RUN===", "===RESTART==="), out
    strip = re.compile(r"^\$\d+ = ", re.MULTILINE)  # (gdb numbers values on)
    assert strip.sub("", before) == strip.sub("", after), f"{before}\n--- after ---\n{after}"


ZOMBIES_MAX = 16  # zombies of relive's processes at any moment, at most
RESTARTS = 40


def _zombies(relive: int) -> int:
    """Zombies whose parent is `relive` or a process it traces (a replayed process or a
    copy, wherever the kernel moved it: a copy whose parent died is init's child), from
    /proc: killed processes that nobody has reaped."""
    tracer = {int(t.name) for t in Path(f"/proc/{relive}/task").iterdir()}
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # (not a process, or gone meanwhile)
        if fields[0] == "Z":
            parents[int(entry.name)] = int(fields[1])
    count = 0
    for parent in parents.values():
        if parent == relive:
            count += 1
            continue
        try:
            status = Path(f"/proc/{parent}/status").read_text()
        except OSError:
            continue
        match = re.search(r"^TracerPid:\s+(\d+)", status, re.MULTILINE)
        count += bool(match and int(match.group(1)) in tracer)
    return count


def test_a_long_reverse_session_leaves_no_zombies(tree, serve):
    """Back and forth in the child while its parent lives: a checkpoint restarted again and
    again, steps back and forth; each restore and snapshot forks copies and kills others.
    They are children of relive, which reaps each one. As children of the replayed
    processes (before) nobody reaped them: a zombie per restart under the checkpoint's copy
    (which never runs), and ~30,000 within 20 s of this module in CI, until fork failed
    with EAGAIN (pid_max)."""
    trace, pids = tree
    server = serve(trace, pid=pids["child"])
    goto = ("python here = re.search(r'event: (\\d+)', gdb.execute('monitor when', "
            "to_string=True)).group(1); gdb.execute('monitor goto ' + here)")
    commands = ["python import re", f"break fork_compute.c:{END} if round_no == 1", "continue",
                "delete", goto, "monitor checkpoint"]
    for _ in range(RESTARTS):
        commands += ["monitor restart 1", "reverse-stepi", "stepi"]
    commands += ["echo ===STEPS===\\n", f"break fork_compute.c:{END} if round_no == 2",
                 "continue", "delete", *["reverse-stepi"] * 20, *["reverse-next"] * 3,
                 *["stepi"] * 5, "echo ===END===\\n"]
    seen: list[int] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.2) and server.proc.poll() is None:
            seen.append(_zombies(server.proc.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        run = gdb_batch(*commands, "monitor info checkpoints", connect=server.address,
                        timeout=300)
        after = _zombies(server.proc.pid)
    finally:
        done.set()
        sampler.join()
    out = run.output
    assert run.returncode == 0 and "Remote failure reply" not in out, f"{run}\n{server.describe()}"
    assert out.count("At checkpoint 1") == RESTARTS and "===END===" in out, out
    assert "2 processes" in section(out, "===END===", "Inferior"), out
    assert len(seen) >= 5, seen  # (sampled all along)
    assert max(seen + [after]) <= ZOMBIES_MAX, (after, seen)
