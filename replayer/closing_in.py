"""Closing in on "now" inside a long stretch: new mids ever nearer before it.

A state inside a stretch whose distance from its base (a mid, or the stretch's start) is not
known would need all of that distance searched exactly (single steps, counted arrivals).
Closing in replays from the base to now with a CPU timer on the stretch's thread ticking
every CLOSE_FIRST_NS of its CPU time, keeps the fork made at the last tick before now as the
new base (a mid), and again with a period an eighth of what was left, down to CLOSE_MIN_NS:
what follows covers that short slice only. This is the bound of a step back (docs/reverse.md).

If now is the k-th arrival at its pc from the base, a kernel counter stops the thread there
once (CountedTrapPass) instead of a trap at every arrival; the mid then keeps how many
arrivals it had seen, so now's anchor can be counted from it.
"""
from __future__ import annotations

import logging
import time
from signal import SIGTRAP

from tracee.cputimer import CpuTimer, CpuTimerError, drain_stop
from tracee.hwcount import HwCounter, HwCounterError
from tracee import ptrace_api as api
from tracee.task import Task

from replayer.midpoints import CLOSE_FIRST_NS, CLOSE_LEVELS, CLOSE_MIN_NS, Mid
from replayer.positions import LostPosition, Position
from replayer.session import ReplaySession
from replayer.tick_states import settle
from replayer.timeline_core import TimelineCore

log = logging.getLogger(__name__)

EFLAGS_RF = 1 << 16
SYSCALL_INSN = b"\x0f\x05"


class SliceTicks:
    """The ticks of one closing-in run: the fork made at the latest tick so far (`last`,
    the older one is dropped), with the CPU time and the counted arrivals there."""

    def __init__(self, session: ReplaySession, task: Task, now: Position, timer: CpuTimer,
                 counter: HwCounter | None) -> None:
        self.s, self.task, self.now, self.timer, self.counter = (session, task, now, timer,
                                                                  counter)
        self.clock0 = now.base.clock if now.base is not None else 0
        self.last: Mid | None = None
        self.arrivals_at_last = 0

    def tick(self) -> None:
        if not self.s.can_snapshot():
            return
        if (self.counter is not None and self.task.regs.rip == self.counter.addr
                and self.task.regs.eflags & EFLAGS_RF
                and self.task.mem.read_upto(self.counter.addr, 2) != SYSCALL_INSN):
            # A tick right after the counter's debug exception (kernel entries are where
            # ticks land): the arrival is counted, its instruction not run. A mid here would
            # be that arrival itself, counted from it by an int3 but not by a counter (the
            # resume flag): one instruction on, it is neither.
            self.task.resume(api.Req.SYSEMU_SINGLESTEP)
            self.task.wait()
        if not settle(self.task):
            return
        if self.now.matched_by(self.task):
            # A tick at now itself (seen under load: the timer's SIGSTOP, pending, came at
            # now before the int3 planted there ran, even twice). A mid here is no state
            # before now: the step back would count zero instructions from it and land
            # where it started (a reverse-stepi that does not move).
            log.debug("closing in: a tick at now itself at %#x, no mid", self.task.regs.rip)
            return
        snap = self.s.optional_snapshot()
        if snap is None:
            return
        mid = Mid(self.now.position, snap, self.task.regs_bytes(),
                  self.clock0 + self.timer.elapsed())
        self.drop()
        self.last = mid
        if self.counter is not None:
            self.arrivals_at_last = self.counter.count()

    def drop(self) -> None:
        if self.last is not None:
            self.last.discard()
            self.last = None


class ClosingIn(TimelineCore):
    def _close_in(self, now: Position) -> None:
        """Bring `now.base` close before `now` when the steps from it are unknown (see the
        module's docstring); `now` is updated (base, anchor, steps)."""
        self.fingerprint(now)
        period = CLOSE_FIRST_NS
        later = self.mids.following(now.base, now.position)
        if later is not None and now.base is not None:  # (now is likely before it)
            period = max(period, (later.clock - now.base.clock) // 8)
        try:  # (from the boundary: it is forked once, as seeking there replays events)
            for _ in range(CLOSE_LEVELS):
                next_period = self._close_in_once(now, period)
                if next_period is None:
                    return
                period = next_period
        finally:
            if self._boundary_fork is not None:
                self._boundary_fork.discard()
                self._boundary_fork = None

    def _slice_start(self, now: Position) -> None:
        if now.base is None and self._boundary_fork is not None:
            self.s.restore(self._boundary_fork)
            self.base = None
        else:
            self._origin(now.position, now.base)
            if now.base is None:
                self._boundary_fork = self.s.optional_snapshot()

    def _close_in_once(self, now: Position, period: int) -> int | None:
        """One run from now's base to now with ticks every `period` ns; the next period, or
        None when close enough."""
        t0 = time.monotonic()
        self._slice_start(now)
        task = self._task()
        try:
            timer = CpuTimer(task.tid, period)
        except CpuTimerError:
            return None
        arrival = now.anchor[1] if now.steps == 0 and now.anchor is not None else None
        counter: HwCounter | None = None
        if arrival is not None:
            try:
                counter = HwCounter(task.tid, now.pc, stop_at=arrival, sig=SIGTRAP)
            except HwCounterError:
                counter = None
        ticks = SliceTicks(self.s, task, now, timer, counter)
        self.s.ticks = timer
        try:
            if counter is not None:
                try:
                    self._run_to_counted(now, ticks)
                except LostPosition as e:
                    log.warning("closing in: %s; stopping at every arrival instead", e)
                    ticks.drop()
                    counter.close()
                    counter = ticks.counter = None
                    self._origin(now.position, now.base)
            if counter is None:
                self._pass(now, on_tick=ticks.tick)
            total = ticks.clock0 + timer.elapsed()
        except BaseException:
            ticks.drop()
            raise
        finally:
            self.s.ticks = None
            timer.close()
            if counter is not None:
                counter.close()
            drain_stop(task.tid)
        left = total - ticks.clock0
        mid = ticks.last
        if mid is not None:
            self.mids.add(mid, now.base, keep={now.base})
            left = total - mid.clock
            now.base = self.base = mid
            if arrival is not None and counter is not None:
                now.anchor = (now.pc, arrival - ticks.arrivals_at_last)
            else:
                now.steps, now.anchor = None, None
        log.debug("closing in on %#x (period %d ns): %d ns of CPU time left, in %.3f s",
                  now.pc, period, left, time.monotonic() - t0)
        if period <= CLOSE_MIN_NS or (mid is None and left <= CLOSE_MIN_NS):
            return None
        # Without a tick the slice was shorter than the period (or the program hardly ran in
        # user mode: stopped at every arrival at a hot `now.pc`): shorter ticks.
        return max(CLOSE_MIN_NS, min(left, period) // 8)

    def _run_to_counted(self, now: Position, ticks: SliceTicks) -> None:
        """Run (ticking) to `now`, stopped by the kernel counter at its arrival; LostPosition
        if the state reached there is not `now`."""
        if not self._run_to_counted_trap(now.pc, now.position, ticks.tick):
            raise LostPosition("counted arrivals missed the current position")
        if not self.matches(now):
            raise LostPosition("the counted arrival is not the current position")
