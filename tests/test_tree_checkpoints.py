"""Checkpoints of a process tree (issue 23), in-process (ReplaySession).

What a user would notice: while several processes live (a forked child computing and
talking to its parent over pipes, a tree of three, children killed or reaped under a
SIGCHLD handler, a shell pipeline), a checkpoint is taken at every event boundary it can be,
and going back to one puts every process and thread where it was (registers, extended state,
signal mask, at a syscall entry or not; memory the same), then replays to the end printing
exactly the rest of what the program printed, with no divergence. Before, no checkpoint was
taken while several processes lived, so every backward command re-ran from before the
first fork. What cannot be copied process by process is still refused: memory two processes
share.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
from checkpointing import printed_after, task_states
from conftest import describe, record

from replayer import registers
from replayer.session import ReplaySession
from tracefile.reader import TraceReader
from tracee.digest import memory_digest

pytestmark = pytest.mark.slow

PROGRAMS = {  # name -> argv after the program, recorded exit status
    "fork_compute": (["3", "2000000"], 0),
    "fork_pipe": ([], 0),
    "fork_tree": ([], 7),
    "sigchld_handler": ([], 0),
    "kill_children": ([], 0),
    "wait_restart": ([], 0),
}


@pytest.fixture(scope="module")
def traces(programs, tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("tree-checkpoints")
    out = {}
    for name, (args, status) in PROGRAMS.items():
        rec = record(base / name, "--force", programs[name], *args)
        assert rec.returncode == status, describe(rec)
        out[name] = base / name
    return out


def _digests(session: ReplaySession) -> dict[int, str]:
    """A digest of each process's writable memory, by the recorded tid of its first task."""
    seen: dict[int, str] = {}
    pids = set()
    for tid, task in session.taskset.tasks.items():
        if task.pid not in pids:
            pids.add(task.pid)
            seen[tid] = memory_digest(task.pid, task.mem.read_upto)
    return seen


def _processes(session: ReplaySession) -> int:
    return len({t.pid for t in session.taskset.tasks.values()})


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_every_tree_checkpoint_replays_to_the_end_faithfully(traces, name):
    trace = traces[name]
    want, printed = printed_after(trace)
    out: list[bytes] = []
    session = ReplaySession(trace, output=lambda fd, data: out.append(data))
    try:
        session.step()
        snaps = []
        while not session.finished:
            if _processes(session) > 1 and session.can_snapshot():
                before = (task_states(session), _digests(session))
                snaps.append((session.snapshot(), before))
            session.step()
        assert len(snaps) >= 3, f"only {len(snaps)} checkpoints among processes in {name}"
        for snap, (tasks, digests) in snaps:
            session.restore(snap)
            assert session.position == snap.position
            assert len(snap.processes) == _processes(session) > 1
            after = task_states(session)
            assert after.keys() == tasks.keys(), snap.position
            for tid, (regs, xstate, mask, entered) in tasks.items():
                got = after[tid]
                assert not registers.diff(regs, got[0]), (snap.position, tid,
                                                          registers.diff(regs, got[0]))
                assert got[1:] == (xstate, mask, entered), (snap.position, tid)
            assert _digests(session) == digests, snap.position
            out.clear()
            session.run()  # (a divergence raises)
            assert b"".join(out) == want[printed[snap.position]:], snap.position
    finally:
        session.close()


def test_processes_sharing_memory_are_not_checkpointed(programs, tmp_path):
    """fork_shared_memory: parent and child share a MAP_SHARED page; copies of each would
    not share it, so no checkpoint is taken while both live (the replay stays faithful)."""
    rec = record(tmp_path / "t", "--force", programs["fork_shared_memory"])
    assert rec.returncode == 0, describe(rec)
    session = ReplaySession(tmp_path / "t")
    try:
        both = 0
        while not session.finished:
            if _processes(session) > 1:
                both += 1
                assert not session.can_snapshot(), session.position
            session.step()
        assert both > 0
    finally:
        session.close()


def test_snapshots_at_one_boundary_share_the_processes_that_do_not_run(traces):
    """fork_compute: the parent waits in read while the child computes. Two snapshots at one
    boundary share the copy of the waiting parent (one fork each, not two), going back to
    one there keeps the parent's live tasks, and from either snapshot, gone back to from
    elsewhere, the replay runs on to the end printing the same; discarding one leaves the
    other whole."""
    trace = traces["fork_compute"]
    want, printed = printed_after(trace)
    out: list[bytes] = []
    session = ReplaySession(trace, output=lambda fd, data: out.append(data))
    try:
        while not (_processes(session) > 1 and session.can_snapshot()
                   and session.next_event is not None
                   and session.next_event.tid != session.taskset.root):
            session.step()
        running = session.next_event.tid
        waiting = {tid: t for tid, t in session.taskset.tasks.items() if tid != running}
        before = (task_states(session), _digests(session))
        first, second = session.snapshot(), session.snapshot()
        copies = [{p.owner: p.stored.pid for p in snap.processes} for snap in (first, second)]
        assert copies[0][running] != copies[1][running]
        (parent,) = waiting
        assert copies[0][parent] == copies[1][parent]  # shared

        session.restore(first)  # at its own boundary: the parent stays as it stands
        assert session.taskset.tasks[parent] is waiting[parent]
        assert session.taskset.tasks[running].tid != copies[0][running]
        assert (task_states(session), _digests(session)) == before
        out.clear()
        session.run()
        assert b"".join(out) == want[printed[first.position]:]

        first.discard()  # the parent's copy lives on in `second`
        for _ in range(2):
            session.restore(second)  # from the end of the replay: every process forked
            assert session.taskset.tasks[parent] is not waiting[parent]
            assert (task_states(session), _digests(session)) == before
            out.clear()
            session.run()
            assert b"".join(out) == want[printed[second.position]:]
        second.discard()
    finally:
        session.close()


def test_a_snapshot_while_an_event_replays_copies_that_events_process(traces):
    """A tick of closing in takes a snapshot while an event is replayed (inside its
    stretch). The process that runs there is that event's, not the next event's: here the
    child's last event before the parent's (an ENTER: it blocks in read, the parent's read
    returns). Two snapshots made there share the parent's copy, not the child's: sharing the
    child's (before) gave a mid the child's state of an earlier tick, and the first
    reverse-stepi after it ran on past `now` into the next round (test_tree_stepback, 1 run
    in 3 under load)."""
    trace = traces["fork_compute"]
    want, printed = printed_after(trace)
    reader = TraceReader(trace)
    try:
        tids = {ev.seq: ev.tid for ev in reader.events()}
    finally:
        reader.close()
    out: list[bytes] = []
    session = ReplaySession(trace, output=lambda fd, data: out.append(data))
    taken: list = []
    replay_event = session.replay_event

    def ticking(ev):  # (what a tick does, at the start of the event's stretch)
        if (not taken and tids.get(ev.seq + 1, ev.tid) != ev.tid
                and _processes(session) > 1 and session.can_snapshot()):
            taken.extend((ev, session.snapshot(), session.snapshot()))
        return replay_event(ev)

    session.replay_event = ticking  # type: ignore[method-assign]
    try:
        while not taken and not session.finished:
            session.step()
        ev, first, second = taken
        copies = [{p.owner: p.stored.pid for p in snap.processes} for snap in (first, second)]
        running = ev.tid  # (one thread each: the leader, which owns its process's copy)
        (other,) = set(copies[0]) - {running}
        assert copies[0][running] != copies[1][running], (ev, copies)
        assert copies[0][other] == copies[1][other], (ev, copies)
        first.discard()
        session.restore(second)  # from later: the replay goes on from the snapshot's state
        out.clear()
        session.run()
        assert b"".join(out) == want[printed[second.position]:]
        second.discard()
    finally:
        session.close()


PY_CHILD = """
import os
r1, w1 = os.pipe(); r2, w2 = os.pipe()
pid = os.fork()
if pid == 0:
    for _ in range(3):
        n = int(os.read(r1, 64))
        os.write(w2, str(sum(i * i for i in range(n))).encode())
    os._exit(5)
total = 0
for n in (20000, 30000, 40000):
    os.write(w1, str(n).encode())
    total += int(os.read(r2, 64))
print("python child said", total, "status", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
"""


def test_checkpoints_of_a_python_parent_and_child(tmp_path):
    """python3 forks a child that computes for it over pipes: checkpoints taken while both
    live (at every fourth boundary where one can be) replay to the end faithfully."""
    rec = record(tmp_path / "t", "--force", sys.executable, "-c", PY_CHILD)
    assert rec.returncode == 0 and b"status 5" in rec.stdout, describe(rec)
    want, printed = printed_after(tmp_path / "t")
    out: list[bytes] = []
    session = ReplaySession(tmp_path / "t", output=lambda fd, data: out.append(data))
    try:
        session.step()
        snaps, seen = [], 0
        while not session.finished:
            if _processes(session) > 1 and session.can_snapshot():
                seen += 1
                if seen % 4 == 1 and len(snaps) < 6:
                    snaps.append((session.snapshot(), _digests(session)))
            session.step()
        assert len(snaps) >= 3, f"only {seen} boundaries with a checkpoint among processes"
        for snap, digests in snaps:
            session.restore(snap)
            assert _digests(session) == digests, snap.position
            out.clear()
            session.run()
            assert b"".join(out) == want[printed[snap.position]:], snap.position
    finally:
        session.close()
