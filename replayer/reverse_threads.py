"""Reverse execution when the trace holds several tasks: hits in every thread, events
crossed per thread, and the Timeline's search for the steps inside a stretch.

Inside a stretch only the thread of the next event runs, so stepping back within it is the
single-task case: replayer.stretch_back (closing in from the mids the forward run left,
kernel-counted arrivals, cached forks). What differs among threads is handled here:

- reverse-continue: a ThreadsPass (replayer.threads_pass) from the latest start before now (a
  checkpoint, threads included, see replayer.snapshot; or a waypoint, a snapshot inside a
  stretch left by an earlier pass) records every hit in the debugged process, whichever thread
  makes it; a second pass goes to the last one, from the last waypoint before it. No hit: an
  earlier start, down to the process's birth.
- reverse-stepi of thread T: if T runs the current stretch, one instruction back inside it (as
  above); before the stretch's start, or if another thread runs it, the state just before the
  instruction that caused T's previous event (a syscall shown before it runs, a signal before
  its delivery). Before T's first instruction there is nothing: the start of history, for T.

A state here is a Position: an event boundary plus, inside the stretch after it, the thread
running it and how far it is from the stretch's start, if known; "now" is recognised in a
forward pass by that thread's registers and a digest of its process's writable memory.
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from replayer.control import (
    Action,
    BreakpointConditions,
    Direction,
    ResumeCommand,
    Stop,
    StopKind,
    WatchKind,
    Watchpoint,
)
from replayer.errors import Paused, Refused, ReplayError
from replayer.positions import (
    BEGIN,
    Hit,
    Land,
    Landing,
    LostPosition,
    Position,
    SearchInterrupted,
    Verdict,
)
from replayer.snapshot import Snapshot as Checkpoint
from replayer.timeline import MAX_STEPS
from replayer.traps import is_clone
from replayer.threads_pass import ThreadsPass
from replayer.timeline_core import replace
from replayer.waypoints import Waypoint, Waypoints
from tracee import ptrace_api as api
from tracee.stops import SignalStop, SyscallStop
from tracee.stops import Stop as TraceeStop
from tracee.task import Task
from tracefile.records import Event, Kind

if TYPE_CHECKING:
    from replayer.debuggee import Debuggee

log = logging.getLogger(__name__)


class ThreadedReverse:
    def __init__(self, target: Debuggee) -> None:
        self.t = target
        self.s = target.session
        self.waypoints = Waypoints()
        self._met: list[Waypoint] = []  # the waypoints the last positioning pass met

    # -- the request ------------------------------------------------------------------------
    def resume_back(self, command: ResumeCommand) -> Stop:
        t = self.t
        # A step inside the current stretch fingerprints `now` only if it must look for it
        # (the digest reads all writable memory: thread stacks are megabytes).
        now = self.now(fingerprinted=command.action is Action.CONTINUE)
        t.parked = False
        self._met = []
        if command.action is Action.CONTINUE:
            return self.continue_back(command.breakpoints, command.watchpoints, now,
                                      *self._private(command), conditions=command.conditions)
        tid = command.tid
        watched = {wp: t.peek(wp) for wp in command.watchpoints}
        landing = self.step_back(tid, now)
        self.land(landing)
        if landing.kind is Land.BEGIN:
            return t.stop(StopKind.HISTORY_BEGIN, tid)
        for wp, later in watched.items():
            if wp.kind is not WatchKind.READ and t.peek(wp) != later:
                return t.stop(StopKind.WATCHPOINT, tid, watch=wp)  # stepped back over a write
        return t.stop(StopKind.STEPPED, tid)

    def _private(self, command: ResumeCommand) -> tuple[frozenset[int], int | None]:
        """Breakpoints that only the resumed thread may hit, and that thread.

        gdb's reverse-next/reverse-step is a `bs` that lands in a callee, then a `bc` to a
        step-resume breakpoint at the callee's entry that is meant for the stepped thread
        only (gdb checks the frame). Going back to another thread's arrival there would move
        the stepped thread back in time too, and gdb, which assumes a thread it is not
        resuming cannot move, loses its way. So a breakpoint that is new in a `bc` right
        after a `bs` of the same thread counts for that thread alone."""
        previous = self.t.previous
        if previous is None:
            return frozenset(), None
        before, stop = previous
        if (before.direction is Direction.BACKWARD and before.action is Action.STEP
                and stop.kind is StopKind.STEPPED and stop.tid == command.tid):
            return command.breakpoints - before.breakpoints, command.tid
        return frozenset(), None

    def now(self, fingerprinted: bool = True) -> Position:
        """The current state; `fingerprinted`: with what tells it apart from other states
        with the same registers (needed to find it again in a pass)."""
        t, s = self.t, self.s
        tid, steps, anchor = t.mid_stretch()
        if tid is None or not t.debugged(tid):
            return Position(s.position)  # (a stretch of another process holds no hit of ours)
        task = s.taskset.tasks[tid]
        point = Position(s.position, tid, task.regs_bytes(), steps, anchor=anchor,
                         base=t.timeline.base)
        if fingerprinted:
            point.fingerprint(task)
        return point

    def continue_back(self, breakpoints: frozenset[int], watchpoints: frozenset[Watchpoint],
                      now: Position | None = None, private: frozenset[int] = frozenset(),
                      owner: int | None = None, *,
                      conditions: BreakpointConditions | None = None) -> Stop:
        t = self.t
        now = now or self.now()
        hit = self.last_hit_before(now, breakpoints, watchpoints, private, owner,
                                   conditions=conditions)
        if hit is None:
            self._seek(t.birth)
            self.land(BEGIN)
            return t.stop(StopKind.HISTORY_BEGIN, t.pid)
        self.land(self.goto_hit(hit, watchpoints))
        if hit.kind == "bp":
            return t.stop(StopKind.BREAKPOINT, hit.tid)
        return t.stop(StopKind.WATCHPOINT, hit.tid, watch=hit.wp)

    def land(self, landing: Landing) -> None:
        """Take note of where a backward command left the replay; keep the waypoints known to
        lie before it."""
        self.t.land(landing)
        self.waypoints.landed(self._met)

    def last_write(self, wp: Watchpoint) -> str:
        """`monitor last-write`: just before the last write to `wp`'s range before now."""
        t = self.t
        now = self.now()
        hit = self.last_hit_before(now, frozenset(), frozenset({wp}))
        if hit is None:
            self.return_to(now)
            self.waypoints.landed(self._met)
            raise Refused(f"nothing wrote {wp.addr:#x} (+{wp.length}) before this point")
        self.land(self.goto_hit(hit, frozenset({wp})))
        t.last_stop = t.stop(StopKind.WATCHPOINT, hit.tid, watch=wp)
        return f"Went back to just before the write to {wp.addr:#x} by thread {hit.tid}"

    # -- reverse-continue -------------------------------------------------------------------
    def _starts(self, position: int) -> list[Checkpoint | Waypoint]:
        """Where a pass towards a point of the stretch after `position` (not before the
        waypoints held) can start, latest first: the held waypoints, then the checkpoints."""
        cps = [c for c in self.t.timeline.checkpoints if c.position <= position]
        starts: list[Checkpoint | Waypoint] = sorted(cps, key=lambda c: c.position)
        starts += [w for w in self.waypoints.held if w.position <= position]
        starts.sort(key=lambda c: c.position)  # (stable: a stretch's waypoints after its start)
        return starts[::-1]

    def last_hit_before(self, now: Position, breakpoints: frozenset[int],
                        watchpoints: frozenset[Watchpoint], private: frozenset[int] = frozenset(),
                        owner: int | None = None, *,
                        conditions: BreakpointConditions | None = None) -> Hit | None:
        """The last hit strictly before `now` (where gdb's `conditions` hold); breakpoints in
        `private` count only for thread `owner`. From inside a stretch counted from a mid,
        the slices of that stretch come first: only its thread runs there, so this is the
        Timeline's search (closing in, kernel-counted breakpoints)."""
        if not now.boundary and now.base is not None:
            mine = breakpoints if now.tid == owner else breakpoints - private
            hit = self.t.timeline.last_hit_from_mids(replace(now), mine, watchpoints,
                                                     conditions)
            if hit is not None:
                return dataclasses.replace(hit, tid=now.tid or 0)
        until = now
        for start in self._starts(now.position):
            hits, _ = self._pass(start, until, breakpoints, watchpoints, private=private,
                                 owner=owner, conditions=conditions)
            log.debug("backward pass from %s %d to %s: %d hits", type(start).__name__,
                      start.position, (until.position, until.tid), len(hits))
            if hits:
                return hits[-1]
            if isinstance(start, Waypoint):
                until = start.point
                continue
            if start.position <= self.t.birth:
                break
            until = Position(start.position)
        return None

    def return_to(self, point: Position) -> None:
        """Go back to `point` (after a search that found nothing)."""
        if not point.boundary and point.base is not None:
            self.t.timeline.back_to(point)  # (from the mid it is counted from)
            return
        self._pass(self._starts(point.position)[0], point, frozenset(), frozenset())

    def goto_hit(self, hit: Hit, watchpoints: frozenset[Watchpoint]) -> Landing:
        """Go to `hit`: at the breakpoint before its instruction runs, or before the
        instruction (or syscall) that wrote the watched memory."""
        if hit.kind == "kernel":
            return self.before_trigger(self._trigger_of(self.s.reader.event(hit.position)))
        if hit.base is not None:  # found from a mid, in a stretch only `hit.tid` runs
            landing = self.t.timeline.goto_hit(hit, watchpoints, lambda position: (
                self._before_previous_event(hit.tid, position)))
            return dataclasses.replace(landing, tid=hit.tid)
        bps = frozenset({hit.pc}) if hit.kind == "bp" else frozenset()
        wps = watchpoints if hit.kind == "watch" else frozenset()
        start = self._start_before(hit, wps)
        _, reached = self._pass(start, Position(hit.position + 1), bps, wps, goal=hit)
        if reached is not Verdict.HIT:
            raise ReplayError(f"could not find {hit} again")
        if hit.kind == "bp":
            return Landing(Land.MID, hit.tid, None)
        self.waypoints.landed(self._met)  # (the pass's waypoints lie before the write)
        task = self.s.taskset.tasks[hit.tid]
        here = Position(hit.position, hit.tid, task.regs_bytes())
        here.fingerprint(task)
        return self.step_back(hit.tid, here)

    def _start_before(self, hit: Hit, watchpoints: frozenset[Watchpoint]
                      ) -> Checkpoint | Waypoint:
        """The latest place known to lie before `hit` from which its count holds."""
        cp = self._checkpoint_before(hit.position)
        w = self.waypoints.before_hit(hit, watchpoints)
        if w is not None and (hit.origin is not None or w.position >= cp.position):
            return w
        if hit.origin is not None:
            raise LostPosition(f"the waypoint {hit} was counted from is gone")
        return cp

    def _pass(self, start: Checkpoint | Waypoint, until: Position, breakpoints: frozenset[int],
              watchpoints: frozenset[Watchpoint], goal: Hit | None = None,
              private: frozenset[int] = frozenset(), owner: int | None = None,
              conditions: BreakpointConditions | None = None
              ) -> tuple[list[Hit], Verdict]:
        """Replay from `start` to `until` (or to `goal`), collecting every hit of the
        debugged process on the way, and dropping checkpoints and waypoints as it goes.
        Returns the hits and REACHED_NOW, HIT (the goal) or KEEP_GOING (reached a
        boundary)."""
        t, s = self.t, self.s
        origin = start if isinstance(start, Waypoint) else None
        s.restore(start.snap if isinstance(start, Waypoint) else start)
        t.timeline.base = None  # (counts here are from boundaries and waypoints, not mids)
        self._met = [origin] if origin is not None else []
        while s.position < t.birth:
            self._check_interrupt(boundary=True)
            s.step()
        if until.boundary and s.position >= until.position:
            return [], Verdict.KEEP_GOING
        run = ThreadsPass(t, t.interrupted, self.waypoints, origin, until, breakpoints,
                          watchpoints, goal=goal, private=private, owner=owner,
                          conditions=conditions)
        try:
            return run.hits, run.run()
        finally:
            self._met += run.taken

    # -- reverse-stepi ----------------------------------------------------------------------
    def step_back(self, tid: int, now: Position) -> Landing:
        """One instruction of thread `tid` back from `now`."""
        if now.tid == tid:
            return self._back_in_stretch(tid, now)
        return self._before_previous_event(tid, now.position)

    def _back_in_stretch(self, tid: int, now: Position) -> Landing:
        """One instruction back from `now`, inside the stretch `tid` runs: only `tid` runs
        there, so the Timeline's search of a stretch applies as for a single task (closing
        in from the mids a forward run left, kernel-counted arrivals, cached forks). Before
        the stretch's first instruction: `tid`'s previous event."""
        return self.t.timeline.step_back(now, lambda position: self._before_previous_event(
            tid, position))

    def _seek(self, position: int) -> None:
        """Go to boundary `position` (meeting no waypoint on the way)."""
        self._met = []
        self.t.timeline.seek(position)

    def _checkpoint_before(self, position: int) -> Checkpoint:
        return max((c for c in self.t.timeline.checkpoints if c.position <= position),
                   key=lambda c: c.position)

    def _before_previous_event(self, tid: int, position: int) -> Landing:
        """The state just before the instruction of `tid` that caused its last event before
        boundary `position`."""
        for ev in self._events_back(position):
            if is_clone(ev) and ev.result == tid:
                return self._begin_at(ev.seq + 1)  # the thread starts here
            if ev.tid != tid:
                continue
            match ev.kind:
                case Kind.EXEC:
                    if ev.seq == 0:
                        return self._begin_at(1)
                case Kind.SYSCALL:
                    return self.before_trigger(self._trigger_of(ev))
                case Kind.ENTER | Kind.RDTSC | Kind.RDRAND | Kind.CPUID | Kind.BUFFERED:
                    return self.before_trigger(ev)
                case Kind.SIGNAL:
                    return self._at_signal_point(ev)
                case Kind.PREEMPT if ev.info.get("jump"):
                    self._seek(ev.seq)  # the jump replaces the stretch: its start is before
                    return Landing(Land.MID, tid, 0)
                case Kind.PREEMPT:
                    point = Position(ev.seq, tid, ev.regs, digest=ev.info.get("digest"))
                    steps = self._count(point)
                    if steps:
                        self._goto_steps(ev.seq, tid, steps - 1)
                        return Landing(Land.MID, tid, steps - 1)
        return self._begin_at(self.t.birth)

    def _begin_at(self, position: int) -> Landing:
        self._seek(max(position, self.t.birth))
        return BEGIN

    def _trigger_of(self, ev: Event) -> Event:
        """A syscall that a thread entered earlier (ENTER) was triggered there."""
        if ev.kind == Kind.SYSCALL:
            for prev in self._events_back(ev.seq):
                if prev.tid == ev.tid:
                    return prev if prev.kind == Kind.ENTER and prev.nr == ev.nr else ev
        return ev

    def before_trigger(self, ev: Event) -> Landing:
        """Just before the instruction that caused event `ev` (a syscall is shown at its
        `syscall` instruction, not yet run; an rdtsc or a fault at the instruction)."""
        s = self.s
        self._seek(ev.seq)
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
        """Where signal event `ev` is delivered, before the delivery."""
        s = self.s
        self._seek(ev.seq)
        wants = s.wants_signal_stop
        s.wants_signal_stop = lambda sig: True
        try:
            s.step()
        except Paused:
            return Landing(Land.MID, ev.tid, None)
        finally:
            s.wants_signal_stop = wants
        raise ReplayError(f"could not stop before the delivery of event {ev.seq}")

    def _count(self, point: Position) -> int | None:
        """Instructions `point.tid` runs from boundary `point.position` to `point`, by
        single-stepping (None if the stretch ends first)."""
        self._seek(point.position)
        task = self.s.taskset.tasks[point.tid]  # type: ignore[index]
        self.s.taskset.settle(task)
        steps = 0
        while not point.matched_by(task):
            if steps >= MAX_STEPS:
                return None
            if steps % 4096 == 4095:
                self._check_interrupt(boundary=False)
            stop = _single_step(task)
            steps += 1
            if not _is_step(stop):
                return steps if point.matched_by(task) else None
        return steps

    def _goto_steps(self, position: int, tid: int, steps: int) -> None:
        self._seek(position)
        task = self.s.taskset.tasks[tid]
        self.s.taskset.settle(task)
        for _ in range(steps):
            stop = _single_step(task)
            if not _is_step(stop):
                raise ReplayError(f"single-stepping thread {tid} after event {position - 1} "
                                  f"met {stop}")

    # -- helpers ----------------------------------------------------------------------------
    def _events_back(self, position: int) -> Iterator[Event]:
        """Events before `position`, latest first."""
        hi = position
        while hi > 0:
            lo = max(0, hi - 256)
            yield from reversed(list(self.s.reader.events(lo, hi)))
            hi = lo

    def _interrupted(self, stop: TraceeStop) -> bool:
        from signal import SIGSTOP
        return (isinstance(stop, SignalStop) and stop.signal == SIGSTOP
                and self.t.interrupted())

    def _check_interrupt(self, boundary: bool) -> None:
        if self.t.interrupted():
            raise SearchInterrupted(boundary=boundary)


def _single_step(task: Task) -> TraceeStop:
    task.resume(api.Req.SYSEMU_SINGLESTEP)
    return task.wait()


def _is_step(stop: TraceeStop) -> bool:
    from signal import SIGTRAP
    return isinstance(stop, SignalStop) and stop.signal == SIGTRAP
