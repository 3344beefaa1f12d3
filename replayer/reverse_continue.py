"""reverse-continue for the Timeline: the passes that look for hits inside one thread's
stretches, and going to a hit there (replayer.hit_search puts them in order).

From inside a long stretch, the mids of now's stretch come first: the last slice before now,
then ever longer ones. A pass from a checkpoint or mid of a trace of one task (`search_from`)
has its unconditional breakpoints that are not at now's pc counted by the kernel (an
accelerator: no stop per hit); their order among a stretch's other hits is not known, so a
stretch whose last hits include counted ones is searched again stopping at every hit.

Going to a hit replays from its origin to the count-th trap (GotoTrapPass), or, beyond
COUNTER_WORTH arrivals, with a kernel counter that stops the thread every ARRIVAL_FORK_EVERY
arrivals, where a fork is kept for the next time.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from signal import SIGTRAP

from replayer.control import BreakpointConditions, Watchpoint
from tracee.hwcount import HwCounter, HwCounterError

from replayer.backward_pass import GotoTrapPass
from replayer.errors import ReplayError
from replayer.midpoints import ARRIVAL_FORK_EVERY, MAX_ARRIVAL_FORKS, ArrivalCache, Mid
from replayer.positions import Hit, Land, Landing, LostPosition, Position, Verdict
from replayer.timeline_core import TimelineCore, replace
from replayer.traps import Traps

log = logging.getLogger(__name__)

COUNTER_WORTH = 8  # go to a hit with a kernel counter beyond this many arrivals
EFLAGS_RF = 1 << 16


class ReverseContinue(TimelineCore):
    def checkpoint_from(self, floor: int, position: int) -> None:
        """A checkpoint at boundary `floor` (where the program the breakpoints belong to was
        exec'd) if none lies between it and `position`: a search back to the floor then
        starts there, not before (if one can be taken there: not with shared memory)."""
        if floor and not any(floor <= c.position <= position for c in self.checkpoints):
            self.seek(floor)
            self.take()

    def near_mid(self, now: Position, floor: int) -> Mid | None:
        """The newest mid of a stretch before `now`'s that is later than every stored
        boundary state before now: a backward search passes from there first (the hit is
        often in the last milliseconds; hits in its stretch count from it), then from the
        boundaries before, up to the boundary after it."""
        latest = max((c.position for c in self.boundaries() if c.position <= now.position),
                     default=0)
        return next((m for m in reversed(self.mids.chain)
                     if max(latest, floor) <= m.position < now.position), None)

    def last_hit_from_mids(self, now: Position, breakpoints: frozenset[int],
                            watchpoints: frozenset[Watchpoint],
                            conditions: BreakpointConditions | None) -> Hit | None:
        """The last hit before `now` from the mids of now's stretch, ever further back (each
        pass runs to now). In a long stretch (it has mids), close in on now first: the last
        hit is then looked for in the last slice before now, then in ever longer ones."""
        probe = now
        self.mids.pinned = {now.base} if now.base is not None else set()
        try:
            if now.base is not None:
                probe = replace(now)
                self._close_in(probe)
            chain = self.mids.before(probe.base, now.position)
            i = 0
            while i < len(chain):
                mid = chain[i]
                hits = self.search_from(lambda: self._origin(now.position, mid), probe,
                                    breakpoints, watchpoints, conditions, mid)
                if hits:
                    return hits[-1]
                i = 2 * i + 1
        finally:
            self.mids.pinned = set()
        return None

    def search_from(self, start: Callable[[], None], until: Position, breakpoints: frozenset[int],
                watchpoints: frozenset[Watchpoint], conditions: BreakpointConditions | None,
                base: Mid | None) -> list[Hit]:
        """The hits of one backward pass: from `start()` (a checkpoint) up to `until`."""
        start()
        counted = breakpoints - {until.pc} if not until.boundary else breakpoints
        if conditions is not None:
            counted -= conditions.addresses
        try:
            hits = self._pass(until, breakpoints, watchpoints, counted=counted,
                              conditions=conditions, base=base)
        except LostPosition:
            if not counted:
                raise
            log.warning("backward search lost its position with kernel counters; "
                        "searching again stopping at every hit")
            start()
            hits = self._pass(until, breakpoints, watchpoints, conditions=conditions,
                              base=base)
        log.debug("backward pass to %s: %d hits, last %s", (until.position, until.steps),
                  len(hits), hits[-1] if hits else None)
        if hits:
            last = [h for h in hits if h.position == hits[-1].position]
            if len(last) > 1 and any(h.ordered is False for h in last):
                # Counted hits say how many, not in which order: replay that span again
                # stopping at every hit.
                start()
                hits = self._pass(until, breakpoints, watchpoints, conditions=conditions,
                                  base=base)
        return hits

    def back_to(self, now: Position) -> None:
        """Return to `now` after a search that found nothing (it left the replay at an
        earlier checkpoint's stretch): replay from the last checkpoint before it."""
        self._origin(now.position, now.base)
        self._pass(now)

    def goto_hit(self, hit: Hit, watchpoints: frozenset[Watchpoint],
                 cross: Callable[[int], Landing] | None = None) -> Landing:
        """Position the replay at `hit` (a breakpoint arrival or a watchpoint trap inside a
        stretch): at the breakpoint before its instruction runs, or, for a watchpoint, before
        the instruction that wrote (`cross`: as for step_back)."""
        at_hit = Landing(Land.MID, steps=0, anchor=(hit.pc, hit.count))
        if hit.kind == "bp" and hit.count > COUNTER_WORTH and self._goto_counted(hit):
            return at_hit
        self._origin(hit.position, hit.base)
        traps = Traps(self._task(), {hit.pc} if hit.kind == "bp" else set(),
                      watchpoints if hit.kind == "watch" else frozenset())
        run = GotoTrapPass(self.s, self.interrupted, traps, hit.position, hit.count)
        if run.run() is not Verdict.HIT:
            raise ReplayError(f"could not find hit {hit} again")
        if hit.kind == "watch":
            if cross is None:
                raise ReplayError("going to a watchpoint hit needs a way to cross events")
            return self.step_back(self.now(boundary=False, steps=None), cross)
        return at_hit

    def _goto_counted(self, hit: Hit) -> bool:
        """Run to the hit.count-th arrival at hit.pc (counted from hit.base) with kernel
        counters that stop the thread every ARRIVAL_FORK_EVERY arrivals, where a fork is
        kept (ArrivalCache), and at the last; False if no counter is available (then the
        caller stops at every arrival)."""
        cache = self._arrivals
        if cache is None or not cache.matches(hit.position, hit.base, hit.pc):
            self._drop_arrival_cache()
            cache = self._arrivals = ArrivalCache(hit.position, hit.base, hit.pc)
        done, fork = cache.best(hit.count)
        if fork is not None:
            self.s.restore(fork)
            self.base = hit.base
        else:
            self._origin(hit.position, hit.base)
        while done < hit.count:
            step = min(ARRIVAL_FORK_EVERY - done % ARRIVAL_FORK_EVERY, hit.count - done)
            # Standing at an arrival already counted: without the resume flag, the counter
            # would count it again.
            regs = self._task().regs
            again = int(done > 0 and regs.rip == hit.pc and not regs.eflags & EFLAGS_RF)
            if not self._run_to_arrival(hit, step + again):
                return False
            done += step
            if done < hit.count and len(cache.forks) < MAX_ARRIVAL_FORKS:
                snap = self.s.optional_snapshot()
                if snap is not None:
                    cache.forks[done] = snap
        return True

    def _run_to_arrival(self, hit: Hit, count: int) -> bool:
        """Run to the count-th arrival at hit.pc from here, stopped by a kernel counter."""
        try:
            counter = HwCounter(self._task().tid, hit.pc, stop_at=count, sig=SIGTRAP)
        except HwCounterError:
            return False
        try:
            if not self._run_to_counted_trap(hit.pc, hit.position):
                raise ReplayError(f"could not find hit {hit} again")
            return True
        finally:
            counter.close()

