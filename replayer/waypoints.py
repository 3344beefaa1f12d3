"""What a thread-aware backward pass looks for (Position, Hit) and where it can start from:
boundary checkpoints, and waypoints -- snapshots taken *inside* a stretch during earlier
passes.

A multi-threaded program often runs long stretches without a system call (a worker's whole
loop), and every backward command re-runs the stretch it is in from its start. Waypoints cut
that: a pass snapshots the replay every WAYPOINT_INTERVAL (at a trap it handles, between two
instructions), with the hit counts it had reached there, so the next pass can start from the
last waypoint before its goal.

Which waypoints lie before which state is known only along one run: those a pass met on its
way to a state lie before it. So `held` are the waypoints met by the pass that positioned the
replay where it is (forward commands keep them valid), and a backward command's other passes
add `fresh` ones, used only where their hit counts place them before a hit. Hit counts are per
stretch from its start when the pass started from a boundary or from a waypoint that counted
the same breakpoints/watchpoints; otherwise they are counted from the waypoint, which the hit
names as its `origin` so that going to it starts there again.
"""
from __future__ import annotations

from replayer.control import Watchpoint
from replayer.positions import Hit, Waypoint

__all__ = ["MAX_WAYPOINTS", "WAYPOINT_INTERVAL", "Waypoint", "Waypoints"]

WAYPOINT_INTERVAL = 0.25  # seconds of a backward pass between two waypoints
MAX_WAYPOINTS = 16  # per pass


class Waypoints:
    """The waypoints of the current backward command (`fresh`), and those of the pass that
    positioned the replay where it is (`held`, in the order the replay meets them)."""

    def __init__(self) -> None:
        self.held: list[Waypoint] = []
        self.fresh: list[Waypoint] = []

    def add(self, waypoint: Waypoint) -> None:
        self.fresh.append(waypoint)

    def thin(self, taken: list[Waypoint]) -> None:
        """Keep one pass's waypoints few: drop every other one of the older half."""
        while len(taken) > MAX_WAYPOINTS:
            for w in taken[1:len(taken) // 2:2]:
                taken.remove(w)
                self.fresh.remove(w)
                w.discard()

    def before_hit(self, hit: Hit, watchpoints: frozenset[Watchpoint]) -> Waypoint | None:
        """The last waypoint known to lie before `hit` that counts the way the hit does
        (watch traps: of `watchpoints`)."""
        if hit.origin is not None:
            return hit.origin if hit.origin.alive else None
        best = None
        for w in self.held + self.fresh:
            if w.position < hit.position:
                ok = True  # (counts in the hit's stretch start at its beginning anyway)
            elif w.position == hit.position:
                seen = (w.counts(hit.pc) if hit.kind == "bp"
                        else w.watch_count(watchpoints) if hit.kind == "watch" else None)
                ok = seen is not None and seen < hit.count
            else:
                ok = False
            if ok and (best is None or _later(w, best)):
                best = w
        return best

    def landed(self, met: list[Waypoint]) -> None:
        """The replay went back to a state reached by a pass that met the waypoints `met` on
        its way there: only those are known to lie before it."""
        for w in self.held + self.fresh:
            if w not in met:
                w.discard()
        self.held = [w for w in met if w.alive]
        self.fresh = []

    def clear(self) -> None:
        self.landed([])


def _later(a: Waypoint, b: Waypoint) -> bool:
    """Is `a` met after `b`? Known for different stretches, or by counts in one stretch."""
    if a.position != b.position:
        return a.position > b.position
    for pc in a.armed & b.armed:
        if a.arrivals[pc] != b.arrivals[pc]:
            return a.arrivals[pc] > b.arrivals[pc]
    return a.watches > b.watches if a.watchpoints == b.watchpoints else False
