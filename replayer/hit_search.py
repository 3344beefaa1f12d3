"""The search under every backward command (replayer.backward): the last breakpoint or
watchpoint hit before now in any thread of the debugged process, going to a hit, and one
instruction of a thread back.

- The last hit: from inside a stretch counted from a mid, the slices of that stretch first
  (only its thread runs there: the Timeline's search, replayer.reverse_continue); then
  passes (replayer.threads_pass) from the latest start before now (a checkpoint, threads
  included, see replayer.snapshot; or a waypoint, a snapshot inside a stretch left by an
  earlier pass) record every hit in the debugged process, whichever thread makes it; no hit:
  an earlier start, down to the process's birth or to `floor` (an exec).
- Going to a hit: from the last waypoint or checkpoint before it, to its count.
- One instruction back: inside the stretch the thread runs, the Timeline's search
  (replayer.stretch_back); at its start or from another thread's stretch, the event crossing
  (replayer.crossing).

Accelerators chosen here when the trace has one task (`single`: one thread runs everywhere):
breakpoint hits counted by the kernel (a hardware counter counts one thread's hits), and
searches that start from the near forks a seek leaves and from mids of earlier stretches
(replayer.reverse_continue); hits are gone to with counted arrivals. Among threads, passes
leave waypoints instead.
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Protocol

from replayer.backward_pass import PassHost
from replayer.control import BreakpointConditions, Watchpoint
from replayer.crossing import EventCrossing
from replayer.errors import ReplayError
from replayer.positions import (
    Hit,
    Land,
    Landing,
    LostPosition,
    Position,
    SearchInterrupted,
    Verdict,
)
from replayer.snapshot import Snapshot as Checkpoint
from replayer.threads_pass import ThreadsPass
from replayer.timeline import Timeline
from replayer.timeline_core import replace
from replayer.waypoints import Waypoint, Waypoints

log = logging.getLogger(__name__)


class SearchHost(PassHost, Protocol):
    """What the search needs of the debugged process (replayer.debuggee.Debuggee)."""
    timeline: Timeline
    birth: int
    single: bool  # the trace has one task

    def interrupted(self) -> bool: ...
    def where(self, boundary: bool, steps: int | None,
              anchor: tuple[int, int] | None = None) -> None: ...


class HitSearch:
    """The searches of the backward commands of `host` (see the module)."""

    def __init__(self, host: SearchHost) -> None:
        self.h = host
        self.s = host.session
        self.tl = host.timeline
        self.waypoints = Waypoints()
        self._met: list[Waypoint] = []  # the waypoints the last positioning pass met
        self.crossing: EventCrossing | None = None  # (set by the engine that owns both)

    def start_command(self) -> None:
        self._met = []

    def landed(self) -> None:
        """The command's last pass positioned the replay: keep the waypoints it met."""
        self.waypoints.landed(self._met)

    def seek(self, position: int) -> None:
        """Go to boundary `position` (meeting no waypoint on the way)."""
        self._met = []
        self.tl.seek(position)

    def _cross(self, tid: int) -> Callable[[int], Landing]:
        crossing = self.crossing
        assert crossing is not None
        return lambda position: crossing.previous(tid, position)

    # -- reverse-continue -------------------------------------------------------------------
    def _starts(self, position: int) -> list[Checkpoint | Waypoint]:
        """Where a pass towards a point of the stretch after `position` (not before the
        waypoints held) can start, latest first: the held waypoints, then the checkpoints."""
        cps = [c for c in self.tl.checkpoints if c.position <= position]
        starts: list[Checkpoint | Waypoint] = sorted(cps, key=lambda c: c.position)
        starts += [w for w in self.waypoints.held if w.position <= position]
        starts.sort(key=lambda c: c.position)  # (stable: a stretch's waypoints after its start)
        return starts[::-1]

    def last_hit_before(self, now: Position, breakpoints: frozenset[int],
                        watchpoints: frozenset[Watchpoint], floor: int = 0,
                        private: frozenset[int] = frozenset(), owner: int | None = None, *,
                        conditions: BreakpointConditions | None = None) -> Hit | None:
        """The last hit strictly before `now` (where gdb's `conditions` hold), not before
        boundary `floor`; breakpoints in `private` count only for thread `owner`. From
        inside a stretch counted from a mid, the slices of that stretch come first: only its
        thread runs there, so this is the Timeline's search (closing in, kernel-counted
        breakpoints)."""
        if self.h.single:  # (the accelerators: see the module)
            return self.tl.last_hit_before(now, breakpoints, watchpoints, floor, conditions)
        if not now.boundary and now.base is not None:
            mine = breakpoints if now.tid == owner else breakpoints - private
            hit = self.tl.last_hit_from_mids(replace(now), mine, watchpoints, conditions)
            if hit is not None:
                return dataclasses.replace(hit, tid=now.tid or 0)
        self.tl.checkpoint_from(floor, now.position)  # (the passes then start there)
        until = now
        for start in self._starts(now.position):
            hits, _ = self._pass(start, until, breakpoints, watchpoints, private=private,
                                 owner=owner, conditions=conditions)
            hits = [hit for hit in hits if hit.position >= floor]
            log.debug("backward pass from %s %d to %s: %d hits", type(start).__name__,
                      start.position, (until.position, until.tid), len(hits))
            if hits:
                return hits[-1]
            if isinstance(start, Waypoint):
                until = start.point
                continue
            if start.position <= max(self.h.birth, floor):
                break
            until = Position(start.position)
        return None

    def return_to(self, point: Position) -> None:
        """Go back to `point` (after a search that found nothing)."""
        if self.h.single or (not point.boundary and point.base is not None):
            self.tl.back_to(point)  # (from the mid it is counted from)
            return
        self._pass(self._starts(point.position)[0], point, frozenset(), frozenset())

    def goto_hit(self, hit: Hit, watchpoints: frozenset[Watchpoint]) -> Landing:
        """Go to `hit`: at the breakpoint before its instruction runs, or before the
        instruction (or syscall) that wrote the watched memory."""
        if hit.kind == "kernel":
            crossing = self.crossing
            assert crossing is not None
            return crossing.before_trigger(crossing.trigger_of(self.s.reader.event(hit.position)))
        if hit.base is not None or self.h.single:
            # Counted from a mid, or in a trace of one task: only `hit.tid` runs in the
            # stretch, and the Timeline goes there (with counted arrivals past a few).
            landing = self.tl.goto_hit(hit, watchpoints, self._cross(hit.tid))
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
        h, s = self.h, self.s
        origin = start if isinstance(start, Waypoint) else None
        s.restore(start.snap if isinstance(start, Waypoint) else start)
        self.tl.base = None  # (counts here are from boundaries and waypoints, not mids)
        self._met = [origin] if origin is not None else []
        while s.position < h.birth:
            if h.interrupted():
                raise SearchInterrupted(boundary=True)
            s.step()
        if until.boundary and s.position >= until.position:
            return [], Verdict.KEEP_GOING
        run = ThreadsPass(h, h.interrupted, self.waypoints, origin, until, breakpoints,
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
        return self._cross(tid)(now.position)

    def _back_in_stretch(self, tid: int, now: Position) -> Landing:
        """One instruction back from `now`, inside the stretch `tid` runs: only `tid` runs
        there, so the Timeline's search of a stretch applies as for a single task (closing
        in from the mids a forward run left, kernel-counted arrivals, cached forks). Before
        the stretch's first instruction: `tid`'s previous event."""
        return self.tl.step_back(now, self._cross(tid))

    def _checkpoint_before(self, position: int) -> Checkpoint:
        return max((c for c in self.tl.checkpoints if c.position <= position),
                   key=lambda c: c.position)
