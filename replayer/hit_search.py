"""The search under every backward command (replayer.backward): the last breakpoint or
watchpoint hit before now in any thread of the debugged process, going to a hit, and one
instruction of a thread back.

- The last hit: from inside a stretch counted from a mid, the slices of that stretch first
  (only its thread runs there: the Timeline's search, replayer.reverse_continue); then
  passes from the latest start before now (a checkpoint, threads included, see
  replayer.snapshot; a near fork a seek left at a boundary; or a waypoint, a snapshot inside
  a stretch left by an earlier pass) record every hit in the debugged process, whichever
  thread makes it; no hit: an earlier start, down to the process's birth. Hits before
  `floor` (an exec: gdb's breakpoints are addresses in the later program) do not count.
- Going to a hit: from the last waypoint or checkpoint before it, to its count.
- One instruction back: inside the stretch the thread runs, the Timeline's search
  (replayer.stretch_back); at its start or from another thread's stretch, the event crossing
  (replayer.crossing).

One algorithm; what only a trace of one task allows (`single`: one thread runs everywhere)
is chosen inside, as accelerators: its passes have breakpoint hits counted by the kernel (a
hardware counter counts one thread's hits; replayer.reverse_continue `search_from`), its
searches start first from the newest mid of an earlier stretch, and a hit is gone to from
the boundary or mid it is counted from, with counted arrivals past a few. Among threads,
passes (replayer.threads_pass) leave waypoints instead, and a hit is gone to by a pass from
the waypoint or checkpoint before it.
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
from replayer.midpoints import Mid
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
        self.crossing = EventCrossing(self.s, self.seek, host.birth, host.interrupted)

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
        return lambda position: self.crossing.previous(tid, position)

    # -- reverse-continue -------------------------------------------------------------------
    def last_hit_before(self, now: Position, breakpoints: frozenset[int],
                        watchpoints: frozenset[Watchpoint], floor: int = 0,
                        private: frozenset[int] = frozenset(), owner: int | None = None, *,
                        conditions: BreakpointConditions | None = None) -> Hit | None:
        """The last hit strictly before `now` (where gdb's `conditions` hold), not before
        boundary `floor`; breakpoints in `private` count only for thread `owner`. From
        inside a stretch counted from a mid, the slices of that stretch come first: only its
        thread runs there, so this is the Timeline's search (closing in, kernel-counted
        breakpoints). Then passes from ever earlier starts (`_starts`), each up to where the
        previous one began."""
        if not now.boundary and now.base is not None:
            mine = breakpoints if now.tid == owner else breakpoints - private
            hit = self.tl.last_hit_from_mids(replace(now), mine, watchpoints, conditions)
            if hit is not None:
                return dataclasses.replace(hit, tid=now.tid or 0)
        self.tl.checkpoint_from(floor, now.position)
        until = now
        for start in self._starts(now, floor):
            if isinstance(start, Checkpoint) and until.boundary \
                    and start.position == until.position:
                continue  # (a near fork and a checkpoint at one boundary)
            hits = [hit for hit in self._search(start, until, breakpoints, watchpoints,
                                                private, owner, conditions)
                    if hit.position >= floor]
            log.debug("backward pass from %s %d to %s: %d hits", type(start).__name__,
                      start.position, (until.position, until.tid), len(hits))
            if hits:
                return hits[-1]
            if isinstance(start, Waypoint):
                until = start.point
            elif isinstance(start, Mid):
                until = Position(start.position + 1)
            elif start.position <= max(self.h.birth, floor):
                break
            else:
                until = Position(start.position)
        return None

    def _starts(self, now: Position, floor: int) -> list[Checkpoint | Waypoint | Mid]:
        """Where the passes of a search back from `now` start, latest first: the states kept
        at boundaries (checkpoints, and the near forks seeks leave) and the waypoints held
        (those known to lie before now). With one task, first the newest mid of an earlier
        stretch that is later than all of those (an accelerator: hits in its stretch are
        counted from it, and a waypoint could not be)."""
        starts: list[Checkpoint | Waypoint | Mid] = list(self._states(now.position))
        near = self.tl.near_mid(now, floor) if self.h.single else None
        return [near, *starts] if near is not None else starts

    def _states(self, position: int) -> list[Checkpoint | Waypoint]:
        """The states kept at boundaries up to `position` and the waypoints held in their
        stretches, latest first."""
        states: list[Checkpoint | Waypoint] = sorted(
            (c for c in self.tl.boundaries() if c.position <= position),
            key=lambda c: c.position)
        states += [w for w in self.waypoints.held if w.position <= position]
        states.sort(key=lambda c: c.position)  # (stable: a stretch's waypoints after its start)
        return states[::-1]

    def _search(self, start: Checkpoint | Waypoint | Mid, until: Position,
                breakpoints: frozenset[int], watchpoints: frozenset[Watchpoint],
                private: frozenset[int], owner: int | None,
                conditions: BreakpointConditions | None) -> list[Hit]:
        """The hits of one pass from `start` to `until`. With one task the Timeline's pass
        (breakpoints counted by the kernel: it counts one thread's hits); else a pass over
        every thread of the debugged process, which leaves waypoints."""
        if self.h.single and not isinstance(start, Waypoint):
            return self.tl.search_from(lambda: self._restore(start), until, breakpoints,
                                       watchpoints, conditions,
                                       start if isinstance(start, Mid) else None)
        assert not isinstance(start, Mid)  # (mids are starts with one task only)
        hits, _ = self._pass(start, until, breakpoints, watchpoints, private=private,
                             owner=owner, conditions=conditions)
        return hits

    def _restore(self, start: Checkpoint | Mid) -> None:
        """Restore a state kept at a boundary, or a mid (then counts are from it)."""
        if isinstance(start, Mid):
            self.s.restore(start.snap)
            self.tl.base = start
        else:
            self.s.restore(start)
            self.tl.base = None

    def return_to(self, point: Position) -> None:
        """Go back to `point` (after a search that found nothing)."""
        if self.h.single or (not point.boundary and point.base is not None):
            self.tl.back_to(point)  # (from the mid it is counted from)
            return
        self._pass(self._states(point.position)[0], point, frozenset(), frozenset())

    def goto_hit(self, hit: Hit, watchpoints: frozenset[Watchpoint]) -> Landing:
        """Go to `hit`: at the breakpoint before its instruction runs, or before the
        instruction (or syscall) that wrote the watched memory."""
        if hit.kind == "kernel":
            crossing = self.crossing
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
        """The latest state kept at a boundary up to `position` (a checkpoint, or a near
        fork: a search may have found the hit from one)."""
        return max((c for c in self.tl.boundaries() if c.position <= position),
                   key=lambda c: c.position)
