"""Closing in on "now" (replayer.closing_in) keeps the fork made at a CPU-timer tick as the new
base of a step back: it must lie before now. Under load a tick's SIGSTOP was seen arriving at
now itself (pending when the pass reached now, before the int3 there ran); a mid made there
left the step back zero instructions to count, and reverse-stepi stayed where it was
(tests/test_sysbuf_waits.py::test_gdb_steps_back_onto_a_probed_wait, 1 run in ~30 under two
busy loops). These drive a real replay in-process at a real state inside a stretch."""
from __future__ import annotations

import os
import signal
import subprocess

import pytest
from conftest import describe, record

from replayer import registers
from replayer.closing_in import SliceTicks
from replayer.positions import Landing
from replayer.session import ReplaySession
from replayer.timeline import Position, Timeline
from tracee import ptrace_api as api
from tracee.cputimer import CpuTimer, CpuTimerError
from tracee.stops import SignalStop

STEPS = 24  # instructions run into the stretch before "now"
GETPPID = 110


@pytest.fixture(scope="module")
def trace(programs, tmp_path_factory):
    """futex_waits with every wait traced: a stretch of a few dozen instructions between
    two futex events, in the program's own code and libc's."""
    path = tmp_path_factory.mktemp("ticks") / "t"
    rec = record(path, programs["futex_waits"], 20,
                 env=dict(os.environ, RELIVE_SYSCALLBUF="0"), stdin=subprocess.DEVNULL)
    assert rec.returncode == 0, describe(rec)
    return path


class Replay:
    """A replay and its Timeline, `steps` instructions into the stretch after the middle
    event boundary; `pcs`: the pc before each of those instructions."""

    def __init__(self, trace) -> None:
        self.session = ReplaySession(trace, output=lambda fd, data: None)
        self.session.step()  # the initial exec
        self.timeline = Timeline(self.session)
        self.position = self.session.reader.event_count // 2
        self.pcs: list[int] = []

    def go(self, steps: int) -> None:
        self.timeline.seek(self.position)
        task = self.timeline._task()
        self.pcs = []
        for _ in range(steps):
            self.pcs.append(task.regs.rip)
            task.resume(api.Req.SYSEMU_SINGLESTEP)
            stop = task.wait()
            assert isinstance(stop, SignalStop) and stop.signal == signal.SIGTRAP, stop

    def now(self) -> Position:
        now = self.timeline.now(boundary=False, steps=None)
        self.timeline.fingerprint(now)
        return now

    def ticks(self, now: Position) -> SliceTicks:
        task = self.timeline._task()
        try:
            timer = CpuTimer(task.tid, 10 ** 9)
        except CpuTimerError as e:
            pytest.skip(f"no CPU timer: {e}")
        return SliceTicks(self.session, task, now, timer, None)

    def close(self) -> None:
        self.timeline.close()
        self.session.close()


@pytest.fixture
def replay(trace):
    r = Replay(trace)
    yield r
    r.close()


def test_a_tick_at_now_makes_no_mid(replay):
    """A tick at now is not kept as the base to count from; one before now is."""
    replay.go(STEPS)
    now = replay.now()
    for steps in (STEPS, STEPS // 2):
        replay.go(steps)
        ticks = replay.ticks(now)
        try:
            ticks.tick()
            if steps == STEPS:
                assert ticks.last is None  # before the fix: a mid at now itself
            else:
                assert ticks.last is not None and ticks.last.regs != now.regs
        finally:
            ticks.drop()
            ticks.timer.close()


def test_a_step_back_from_a_mid_at_now_moves_back(replay, monkeypatch):
    """Should a closing in still leave now's base at now, the step back starts from the
    origin before that mid and lands one instruction back, never where it stood."""
    replay.go(STEPS)
    now = replay.now()
    timeline = replay.timeline

    def close_in_onto_now(now: Position) -> None:
        # What the race made of a closing in from the boundary: a mid at now, as its base.
        timeline._origin(now.position, now.base)
        timeline._task()
        for _ in range(STEPS):
            timeline._task().resume(api.Req.SYSEMU_SINGLESTEP)
            timeline._task().wait()
        assert timeline.matches(now)
        timeline.take_mid(0)
        now.base = timeline.base
        monkeypatch.undo()  # (the next closing in, from the origin before it, is real)

    monkeypatch.setattr(timeline, "_close_in", close_in_onto_now)

    def cross(position: int) -> Landing:
        raise AssertionError(f"crossed the event before {position}: now was mid-stretch")

    timeline.step_back(now, cross)
    assert timeline._task().regs.rip == replay.pcs[-1]  # before the fix: now's pc again


def test_a_tick_after_a_rep_copy_is_kept_past_it(programs, tmp_path):
    """A tick can leave a `rep movsb` that has copied everything at the instruction with rcx
    0 (replayer.tick_states); a mid there could not be found again by a pass (each arrival
    there is an iteration, the last with rcx 1) and the step back from it failed. The mid
    is kept one instruction on, and the step back from it lands before the last
    iteration."""
    trace = tmp_path / "t"
    rec = record(trace, programs["rep_copies"], 20,
                 env=dict(os.environ, RELIVE_SYSCALLBUF="0"), stdin=subprocess.DEVNULL)
    assert rec.returncode == 0, describe(rec)
    r = Replay(trace)
    try:
        timeline = r.timeline
        getppids = [ev.seq for ev in r.session.reader.events() if ev.nr == GETPPID]
        timeline.seek(getppids[len(getppids) // 2] + 1)  # the stretch from one to the next
        task = timeline._task()
        for _ in range(2000):  # to the copy, then through it
            if task.mem.read_upto(task.regs.rip, 2) == b"\xf3\xa4" and task.regs.rcx == 64:
                break
            task.resume(api.Req.SYSEMU_SINGLESTEP)
            task.wait()
        rep = task.regs.rip
        assert task.mem.read_upto(rep, 2) == b"\xf3\xa4", "no rep movsb in the stretch"
        while task.regs.rip == rep:
            task.resume(api.Req.SYSEMU_SINGLESTEP)
            task.wait()
        assert task.regs.rip == rep + 2 and task.regs.rcx == 0
        task.set_reg("rip", rep)  # where the tick leaves it: copied, not yet moved on
        task.flush_regs()
        timeline.take_mid(0)
        assert timeline.base is not None
        assert registers.unpack(timeline.base.regs)["rip"] == rep + 2  # before: rep
        now = timeline.now(boundary=False, steps=0)

        def cross(position: int) -> Landing:
            raise AssertionError(f"crossed the event before {position}")

        timeline.step_back(now, cross)  # before: "lost the current position"
        task = timeline._task()
        assert (task.regs.rip, task.regs.rcx) == (rep, 1)
    finally:
        r.close()
