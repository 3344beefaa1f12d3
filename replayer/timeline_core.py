"""The Timeline's state: checkpoints at event boundaries, mids inside stretches, and the
state the replay is counted from; going to a boundary or a mid; recognising "now".

Checkpoints are forks of the replayed process (threads included, replayer.snapshot) taken at
event boundaries: at the start and every CHECKPOINT_INTERVAL of replay, thinned to
MAX_CHECKPOINTS; a stored one never runs, it is forked again to be used. Mids
(replayer.midpoints) are forks inside a stretch. Inside a stretch only the thread of the next
event runs, so everything below that works inside one follows that thread (`_task`).

The searches themselves are in replayer.reverse_continue (hits before now) and
replayer.stretch_back (one instruction back); replayer.timeline puts them together.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from replayer.control import BreakpointConditions, Watchpoint
from tracee.stops import Stop
from tracee.task import Task

from replayer.backward_pass import CountedTrapPass, HitsPass
from replayer.checkpoints import KeptCheckpoints
from replayer.midpoints import ArrivalCache, Mid, Mids
from replayer.positions import Hit, Landing, Position, Verdict
from replayer.session import ReplaySession
from replayer.snapshot import Snapshot as Checkpoint
from replayer.tick_states import settle

log = logging.getLogger(__name__)

CHECKPOINT_INTERVAL = 0.25
MAX_CHECKPOINTS = 48
MAX_STEPS = 50_000_000  # single steps to find a position (~25 µs each)
NEAR_EVERY = 0.02  # seconds of replay between the forks a seek leaves on its way
NEAR_FORKS = 8
EFLAGS_RF = 1 << 16
MEMORY_BUDGET_KIB = int(os.environ.get("RELIVE_CHECKPOINT_MB", "1024")) * 1024


@dataclass
class StepCache:
    """Mid-stretch forks for one stretch (counted from one anchor), so repeated
    reverse-stepi stays cheap."""
    position: int
    anchor: tuple[int, int] | None
    base: Mid | None = None
    forks: dict[int, Checkpoint] = field(default_factory=dict)


class TimelineCore:
    def __init__(self, session: ReplaySession,
                 interrupted: Callable[[], bool] = lambda: False) -> None:
        self.s = session
        # Polled during backward searches: Ctrl-C stops them at the next event boundary.
        self.interrupted = interrupted
        self.checkpoints: list[Checkpoint] = []
        self.kept = KeptCheckpoints()  # the user's, numbered; never thinned
        self._last_time = time.monotonic()
        self._steps: StepCache | None = None
        self._takes = 0
        self.mids = Mids()
        self.base: Mid | None = None  # the mid the current state is counted from
        self._arrivals: ArrivalCache | None = None
        self._boundary_fork: Checkpoint | None = None
        # Forks at boundaries that seeks replayed events through: at the boundary sought
        # and every NEAR_EVERY on the way (the newest NEAR_FORKS). The passes of one step
        # back (closing in, counting arrivals, going to one), the next step backs and a
        # reverse-continue to a hit just before (gdb's `bc` in a reverse-next over a call)
        # start near now's stretch; without them each replays from the checkpoint before
        # (up to CHECKPOINT_INTERVAL of replay, 0.2-0.5 s each).
        self._near: list[Checkpoint] = []
        self.take()

    # -- the searches (replayer.reverse_continue, replayer.stretch_back) --------------------
    def step_back(self, now: Position, cross: Callable[[int], Landing]) -> Landing:
        raise NotImplementedError

    def goto_hit(self, hit: Hit, watchpoints: frozenset[Watchpoint],
                 cross: Callable[[int], Landing] | None = None) -> Landing:
        raise NotImplementedError

    def _close_in(self, now: Position) -> None:
        raise NotImplementedError

    def take(self) -> None:
        """A checkpoint here, if the replay can be snapshotted (every process, threads
        recreated on restore; see ReplaySession.can_snapshot)."""
        if any(cp.position == self.s.position for cp in self.checkpoints):
            return
        snap = self.s.optional_snapshot()
        if snap is None:
            if self.s.fork_refused:  # (not tried again before the interval is over)
                self._last_time = time.monotonic()
            return
        self.checkpoints.append(snap)
        self.checkpoints.sort(key=lambda cp: cp.position)
        self._last_time = time.monotonic()
        self._thin()

    def keep(self) -> int:
        """A checkpoint here that the user asked for; its id (replayer.checkpoints)."""
        return self.kept.add(self.s.snapshot())

    def maybe_take(self) -> None:
        if time.monotonic() - self._last_time > CHECKPOINT_INTERVAL:
            self.take()

    def _thin(self) -> None:
        """Keep the first and last; drop the checkpoint closest to its predecessor, so
        their number grows slowly and they stay spread over the trace. Every few checkpoints
        the memory they hold is measured against the budget (RELIVE_CHECKPOINT_MB)."""
        limit = MAX_CHECKPOINTS
        self._takes += 1
        if self._takes % 8 == 0 and self.memory_kib() > MEMORY_BUDGET_KIB:
            limit = max(2, len(self.checkpoints) // 2)
        while len(self.checkpoints) > limit:
            gaps = [(self.checkpoints[i].position - self.checkpoints[i - 1].position, i)
                    for i in range(1, len(self.checkpoints) - 1)]
            _, i = min(gaps)
            self.checkpoints.pop(i).discard()

    def memory_kib(self, checkpoints: list[Checkpoint] | None = None) -> int:
        """Private (copied) memory of stored checkpoints (default: the automatic ones and
        the mids), in KiB."""
        total = 0
        stored = ([*self.checkpoints, *(m.snap for m in self.mids.chain)]
                  if checkpoints is None else checkpoints)
        copies = {task.pid: task for cp in stored for task in cp.stored()}  # (some shared)
        for copy in copies.values():
            try:
                with open(f"/proc/{copy.pid}/smaps_rollup") as f:
                    for line in f:
                        if line.startswith(("Private_Dirty:", "Private_Clean:")):
                            total += int(line.split()[1])
            except OSError:
                pass
        return total

    def close(self) -> None:
        for cp in self.checkpoints:
            cp.discard()
        self.checkpoints.clear()
        self.kept.close()
        self._drop_step_cache()
        self._drop_arrival_cache()
        for cp in self._near:
            cp.discard()
        self._near.clear()
        self.mids.clear()
        self.base = None

    def take_mid(self, clock: int) -> None:
        """A mid here, inside the stretch being replayed (a forward run's CPU timer
        stopped the program; the caller has lifted any int3 of its own)."""
        s = self.s
        if not s.can_snapshot() or not settle(s.current_task()):
            return
        after = self.base if self.base is not None and self.base.position == s.position \
            else None
        snap = s.optional_snapshot()
        if snap is None:
            return
        mid = Mid(s.position, snap, s.current_task().regs_bytes(), clock)
        self.mids.add(mid, after, keep={after})
        self.base = mid
        self._takes += 1
        if self._takes % 32 == 0 and self.memory_kib() > MEMORY_BUDGET_KIB:
            self.mids.thin(max(2, len(self.mids) // 2), keep={mid})

    def _origin(self, position: int, base: Mid | None) -> None:
        """Go to where counts in the stretch after `position` start: the mid `base`, or the
        event boundary."""
        if base is None:
            self.seek(position)
        else:
            self.s.restore(base.snap)
            self.base = base

    # -- positioning ------------------------------------------------------------------------
    def seek(self, position: int, until: Callable[[], bool] | None = None) -> None:
        """Go to the event boundary `position` (events replayed), or to the first boundary
        on the way where `until()` holds. It starts from the latest state stored before:
        a checkpoint, a near fork, or a mid in an earlier stretch (a forward run leaves one
        every MID_PERIOD of the program's CPU time, and the newest is always kept, so the
        first step back after a `continue` replays at most that much, not
        CHECKPOINT_INTERVAL). On its way it leaves near forks (`_near`)."""
        cp = max((c for c in [*self.checkpoints, *self.kept.snapshots(), *self._near]
                  if c.position <= position),
                 key=lambda c: c.position)
        mid = next((m for m in reversed(self.mids.chain)  # (in execution order)
                    if cp.position <= m.position < position), None)
        self.s.restore(cp if mid is None else mid.snap)
        self.base = None
        if mid is not None:
            self.s.step()  # to the end of the mid's stretch (not a boundary to stop at)
        forked = time.monotonic()
        while self.s.position < position and not (until is not None and until()):
            if time.monotonic() - forked > NEAR_EVERY:
                self._add_near()
                forked = time.monotonic()
            if self.s.step() is None:
                break
        if (mid is not None or cp.position < self.s.position) and self.s.position == position:
            self._add_near()

    def _add_near(self) -> None:
        """A near fork at this boundary (the newest NEAR_FORKS are kept)."""
        if any(c.position == self.s.position for c in self._near):
            return
        snap = self.s.optional_snapshot()
        if snap is None:
            return
        self._near.append(snap)
        while len(self._near) > NEAR_FORKS:
            self._near.pop(0).discard()

    def boundaries(self) -> list[Checkpoint]:
        """The states stored at event boundaries that backward searches pass from."""
        return [*self.checkpoints, *self._near]

    def due(self) -> bool:
        """Is it time for another checkpoint (CHECKPOINT_INTERVAL since the last)?"""
        return time.monotonic() - self._last_time > CHECKPOINT_INTERVAL

    def _task(self) -> Task:
        """The task that runs the current stretch: the next event's. Until that event it is
        the only one that runs, so a search inside the stretch follows it alone (in a
        multi-threaded replay too); it is made the session's current task."""
        s = self.s
        nxt = s.next_event
        task = s.taskset.tasks.get(nxt.tid) if nxt is not None else None
        if task is None or nxt is None:
            return s.current_task()
        if task is not s.task:
            s.taskset.settle(task)
            s.task, s.proc = s.taskset.select(nxt.tid)
        return task

    def now(self, boundary: bool, steps: int | None,
            anchor: tuple[int, int] | None = None) -> Position:
        """The current state as a Position (inside a stretch: counted from `self.base`)."""
        task = self._task()
        if boundary:
            return Position(self.s.position, regs=task.regs_bytes())
        nxt = self.s.next_event
        tid = nxt.tid if nxt is not None else self.s.taskset.recorded_tid(task)
        return Position(self.s.position, tid, task.regs_bytes(), steps, anchor=anchor,
                        base=self.base)

    def matches(self, now: Position, planted: bool = False) -> bool:
        """Is the current state `now`? `planted`: an int3 of ours sits at the pc."""
        return now.matched_by(self.s.current_task(), planted)  # (observers: the task run)

    def fingerprint(self, now: Position) -> None:
        now.fingerprint(self._task())

    def _pass(self, until: Position, breakpoints: frozenset[int] = frozenset(),
              watchpoints: frozenset[Watchpoint] = frozenset(), *,
              counted: frozenset[int] = frozenset(),
              conditions: BreakpointConditions | None = None,
              on_tick: Callable[[], None] | None = None, base: Mid | None = None,
              on_trap: Callable[[Stop], bool] | None = None) -> list[Hit]:
        """Replay forward from here to `until`, collecting every hit (replayer.backward_pass:
        HitsPass)."""
        run = HitsPass(self.s, self.interrupted, self._task(), until, breakpoints, watchpoints,
                       counted=counted, conditions=conditions, on_tick=on_tick, base=base,
                       on_trap=on_trap)
        run.run()
        return run.hits

    def _run_to_counted_trap(self, pc: int, position: int,
                             tick: Callable[[], None] | None = None) -> bool:
        """Replay until the trap of a kernel counter armed at `pc` (True), or past the
        stretch after event `position` (False), calling `tick` at CPU-timer ticks."""
        run = CountedTrapPass(self.s, self.interrupted, pc, position, tick)
        if run.run() is not Verdict.HIT:
            return False
        # The debug exception set the resume flag: relive's, not the program's (gdb would
        # show it in eflags at a landing here; replayer.registers ignores it).
        task = self.s.current_task()
        task.set_reg("eflags", task.regs.eflags & ~EFLAGS_RF)
        task.flush_regs()
        return True

    def _drop_arrival_cache(self) -> None:
        if self._arrivals is not None:
            self._arrivals.clear()
            self._arrivals = None

    def _drop_step_cache(self) -> None:
        if self._steps is not None:
            for cp in self._steps.forks.values():
                cp.discard()
            self._steps = None


def replace(now: Position, **changes: object) -> Position:
    """A copy of `now` with `changes` (dataclasses.replace, typed)."""
    return dataclasses.replace(now, **changes)  # type: ignore[arg-type]
