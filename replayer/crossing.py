"""Going back over an event: the state just before the instruction of thread T that caused
T's last event before a boundary. Every backward step that leaves a stretch ends here, with
one task or several (the one-task case is T = the only thread).

Per kind of T's previous event:

- a syscall: before its `syscall` instruction runs (shown with rip on it); one that T entered
  earlier and left the CPU in (an ENTER event, then the SYSCALL when it returned): before the
  instruction that entered it, at the ENTER;
- an rdtsc, rdrand or cpuid: before that instruction;
- a signal: where it is delivered, before the delivery. A fault stops at the faulting
  instruction; a signal that came while T ran user code ("before_syscall", "user") is
  delivered after T ran the code since its previous event, so that code is replayed up to
  the delivery point; one delivered right after a syscall or at a jump point stops at once;
- a preemption at a point found by running (PREEMPT): T's instruction before that point,
  counted by single steps from the boundary; a jump point (replayer.jumps) replaces its
  stretch, so its start is one step back;
- an EXEC is not an instruction: the execve syscall before it is;
- events that T's instructions did not cause (MAPPING: relive's own mappings) are passed.

Before T's first instruction (the clone that made it, or the trace's first EXEC, or the birth
of the debugged process) there is nothing: the start of history, for T.

This module knows the session and how to go to a boundary (`seek`, given); not gdb, nor
checkpoints, nor how a search inside a stretch works.
"""
from __future__ import annotations

import signal
from collections.abc import Callable, Iterator

from tracee import ptrace_api as api
from tracee.stops import SignalStop, SyscallStop
from tracee.stops import Stop as TraceeStop
from tracee.task import Task
from tracefile.records import Event, Kind

from replayer.errors import Paused, ReplayError
from replayer.positions import BEGIN, Land, Landing, Position, SearchInterrupted
from replayer.session import ReplaySession
from replayer.timeline_core import MAX_STEPS
from replayer.traps import is_clone

# Caused by an instruction of the event's thread, shown just before it.
_TRIGGERED = (Kind.SYSCALL, Kind.BUFFERED, Kind.ENTER, Kind.RDTSC, Kind.RDRAND, Kind.CPUID)


class EventCrossing:
    """Steps back over events of the replay `session` (see the module). `seek(position)` goes
    to an event boundary; `birth` is the first boundary of the debugged process; Ctrl-C
    (`interrupted`) stops a count by single steps."""

    def __init__(self, session: ReplaySession, seek: Callable[[int], None], birth: int,
                 interrupted: Callable[[], bool]) -> None:
        self.s, self.seek, self.birth, self.interrupted = session, seek, birth, interrupted

    def previous(self, tid: int, position: int) -> Landing:
        """Just before the instruction of `tid` that caused its last event before boundary
        `position`; BEGIN before its first."""
        for ev in self.events_back(position):
            if is_clone(ev) and ev.result == tid:
                return self._begin_at(ev.seq + 1)  # the thread starts here
            if ev.tid != tid:
                continue
            if ev.kind in _TRIGGERED:
                return self.before_trigger(self.trigger_of(ev))
            if ev.kind == Kind.EXEC and ev.seq == 0:
                return self._begin_at(1)
            if ev.kind == Kind.SIGNAL:
                return self._at_signal_point(ev)
            if ev.kind == Kind.PREEMPT:
                landing = self._before_point(ev)
                if landing is not None:
                    return landing
        return self._begin_at(self.birth)

    def _begin_at(self, position: int) -> Landing:
        self.seek(max(position, self.birth))
        return BEGIN

    def trigger_of(self, ev: Event) -> Event:
        """A syscall that a thread entered earlier (ENTER) was triggered there."""
        if ev.kind == Kind.SYSCALL:
            for prev in self.events_back(ev.seq):
                if prev.tid == ev.tid:
                    return prev if prev.kind == Kind.ENTER and prev.nr == ev.nr else ev
        return ev

    def before_trigger(self, ev: Event) -> Landing:
        """Just before the instruction that caused event `ev` (a syscall is shown at its
        `syscall` instruction, not yet run; an rdtsc or a fault at the instruction)."""
        s = self.s
        self.seek(ev.seq)
        task = s.taskset.tasks[ev.tid]
        s.taskset.settle(task)
        s.task, s.proc = s.taskset.select(ev.tid)
        stop = s.run_once(task, api.Req.SYSEMU)
        if isinstance(stop, SyscallStop):
            task.set_reg("rip", task.regs.rip - 2)
            task.set_reg("rax", task.regs.orig_rax)
            task.set_reg("orig_rax", -1)
            task.flush_regs()
        elif not isinstance(stop, SignalStop):
            raise s.divergence(ev, "expected the event's trigger", stop)
        return Landing(Land.MID, ev.tid, None)

    def _at_signal_point(self, ev: Event) -> Landing:
        """Where signal event `ev` is delivered, before the delivery (the session replays
        the way there: the code run since the thread's previous event, if any)."""
        s = self.s
        self.seek(ev.seq)
        wants = s.wants_signal_stop
        s.wants_signal_stop = lambda sig: True
        try:
            s.step()
        except Paused:
            return Landing(Land.MID, ev.tid, None)
        finally:
            s.wants_signal_stop = wants
        raise ReplayError(f"could not stop before the delivery of event {ev.seq}")

    def _before_point(self, ev: Event) -> Landing | None:
        """The instruction before the point PREEMPT event `ev` left its thread at (None if
        the thread ran none since the boundary: look further back)."""
        if ev.info.get("jump"):
            self.seek(ev.seq)  # the jump replaces the stretch: its start is one step before
            return Landing(Land.MID, ev.tid, 0)
        point = Position(ev.seq, ev.tid, ev.regs, digest=ev.info.get("digest"))
        steps = self._count(point)
        if not steps:
            return None
        self._goto_steps(ev.seq, ev.tid, steps - 1)
        return Landing(Land.MID, ev.tid, steps - 1)

    def _count(self, point: Position) -> int | None:
        """Instructions `point.tid` runs from boundary `point.position` to `point`, by
        single-stepping (None if the stretch ends first)."""
        self.seek(point.position)
        task = self.s.taskset.tasks[point.tid]  # type: ignore[index]
        self.s.taskset.settle(task)
        steps = 0
        while not point.matched_by(task):
            if steps >= MAX_STEPS:
                return None
            if steps % 4096 == 4095 and self.interrupted():
                raise SearchInterrupted(boundary=False)
            stop = _single_step(task)
            steps += 1
            if not _is_step(stop):
                return steps if point.matched_by(task) else None
        return steps

    def _goto_steps(self, position: int, tid: int, steps: int) -> None:
        self.seek(position)
        task = self.s.taskset.tasks[tid]
        self.s.taskset.settle(task)
        for _ in range(steps):
            stop = _single_step(task)
            if not _is_step(stop):
                raise ReplayError(f"single-stepping thread {tid} after event {position - 1} "
                                  f"met {stop}")

    def events_back(self, position: int) -> Iterator[Event]:
        """Events before `position`, latest first."""
        hi = position
        while hi > 0:
            lo = max(0, hi - 256)
            yield from reversed(list(self.s.reader.events(lo, hi)))
            hi = lo


def _single_step(task: Task) -> TraceeStop:
    task.resume(api.Req.SYSEMU_SINGLESTEP)
    return task.wait()


def _is_step(stop: TraceeStop) -> bool:
    return isinstance(stop, SignalStop) and stop.signal == signal.SIGTRAP
