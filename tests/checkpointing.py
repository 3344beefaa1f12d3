"""What the checkpoint tests compare (tests/test_mt_checkpoints.py, test_tree_checkpoints.py):
what a replay prints by event boundary, and every task's state as gdb or the program would see
it."""
from __future__ import annotations

from pathlib import Path

from replayer.session import ReplaySession
from tracee import ptrace_api as api


def printed_after(trace: Path) -> tuple[bytes, dict[int, int]]:
    """What a replay prints, and how much of it was printed before each event boundary."""
    out: list[bytes] = []
    session = ReplaySession(trace, output=lambda fd, data: out.append(data))
    printed = {}
    try:
        while not session.finished:
            printed[session.position] = sum(map(len, out))
            session.step()
    finally:
        session.close()
    return b"".join(out), printed


def task_states(session: ReplaySession) -> dict[int, tuple[bytes, bytes, int, bool]]:
    """Each task's registers, extended state, signal mask and whether it waits in a call."""
    ts = session.taskset
    return {tid: (t.regs_bytes(), api.get_xstate(t.tid), api.get_sigmask(t.tid),
                  t.tid in ts.entered) for tid, t in ts.tasks.items()}
