"""The hit search of reverse execution (replayer.backward_pass.HitsPass) over every thread
of the debugged process: which thread a trap is, which hits count for whom, and the waypoints
(replayer.waypoints) and checkpoints a pass over a replay of several tasks leaves on its way.
The search that uses it is replayer.hit_search.
"""
from __future__ import annotations

import time
from collections.abc import Callable

from replayer.control import BreakpointConditions, Watchpoint
from replayer.backward_pass import HitsPass, PassHost
from replayer.positions import Hit, Position
from replayer.traps import Traps
from replayer.waypoints import WAYPOINT_INTERVAL, Waypoint, Waypoints
from tracee.task import Task
from tracefile.records import Event


class ThreadsPass(HitsPass):
    """A HitsPass over every thread of the debugged process: from a checkpoint or waypoint to
    `until` (or to `goal`), collecting the hits of all its threads (breakpoints in `private`
    count only for thread `owner`; syscall writes only of its threads), taking checkpoints
    and, every WAYPOINT_INTERVAL at a trap it handles, waypoints (`taken`)."""

    def __init__(self, target: PassHost, interrupted: Callable[[], bool],
                 waypoints: Waypoints, origin: Waypoint | None, until: Position,
                 breakpoints: frozenset[int], watchpoints: frozenset[Watchpoint], *,
                 goal: Hit | None, private: frozenset[int], owner: int | None,
                 conditions: BreakpointConditions | None) -> None:
        self.t, self.waypoints = target, waypoints
        self.private, self.owner = private, owner
        self.taken: list[Waypoint] = []
        self.clock = time.monotonic()  # when the last checkpoint or waypoint was taken
        super().__init__(target.session, interrupted, target.any_task(), until, breakpoints,
                         watchpoints, conditions=conditions, origin=origin, goal=goal)

    def _traps(self) -> Traps:
        return Traps(self.t.any_task(), self.armed, self.watchpoints, taskset=self.s.taskset)

    def _tid(self, task: Task) -> int:
        return self.t.recorded(task) or 0

    def _is_now_thread(self, tid: int) -> bool:
        return tid == self.until.tid

    def _keeps(self, pc: int, tid: int) -> bool:
        return pc not in self.private or tid == self.owner

    def _debugged(self, tid: int) -> bool:
        return self.t.debugged(tid)

    def _take(self, take: Callable[[], None]) -> None:
        """Take a checkpoint or waypoint with our int3s out of memory."""
        self.traps.disarm()
        try:
            take()
        finally:
            self.traps = self._traps()
        self.clock = time.monotonic()

    def _after_trap(self, task: Task, tid: int) -> None:
        s = self.s
        if time.monotonic() - self.clock < WAYPOINT_INTERVAL or not s.can_snapshot():
            return

        def take() -> None:
            point = Position(s.position, tid, task.regs_bytes())
            point.fingerprint(task)
            snap = s.optional_snapshot()
            if snap is None:
                return
            w = self.count.waypoint(snap, point)
            self.taken.append(w)
            self.waypoints.add(w)
            self.waypoints.thin(self.taken)
        self._take(take)

    def after(self, ev: Event | None, position: int) -> bool:
        if not super().after(ev, position):
            return False
        if self.t.timeline.due() and self.s.can_snapshot():
            self._take(self.t.timeline.take)
        return True
