"""Where a Ctrl-C leaves a forward run inside a long stretch: a place a step back can find.

Ctrl-C stops the replayed thread wherever its SIGSTOP lands, often inside a tight loop.
Finding that state again means replaying from the last mid and recognising it among every
arrival at its pc since: millions in 25 ms of a loop, a stop each (the bound of
replayer.closing_in does not hold there: a breakpoint stop was reached by the forward run
itself, a Ctrl-C was not). So the forward run does not stop there. It keeps a mid F at
the interrupted state N (pc P) and runs on with a kernel counter at P to the
RUN_ON_ARRIVALS-th arrival after N, where it stops: the state reported to gdb, known
exactly as the (RUN_ON_ARRIVALS + 1)-th arrival at P counted from F (F itself is the first,
as a pass from F counts it). A step back from there goes to the arrival before (a counted
run from F) and single-steps one loop iteration; the steps back after it stay within those
arrivals, cheap, until they reach F.

The run on is bounded by RUN_ON_NS of the thread's CPU time. If P was reached fewer times
by then (P is not in a loop, or one with a long body), or the stretch ends first (a system
call, a signal), the replay goes back to F and on to the last arrival seen, if any, or
stays at F (reached exactly; a step back from F itself is the one unbounded case left:
closing in from the mid before, stopping at arrivals at P, a pc the program did not reach
again for RUN_ON_NS after it). Nothing here changes what the program does: the stop is a
state the recorded run passed through, a few hundred iterations after the Ctrl-C.
"""
from __future__ import annotations

import logging
from signal import SIGSTOP, SIGTRAP

from tracee.cputimer import CpuTimer, CpuTimerError, drain_stop
from tracee.hwcount import HwCounter, HwCounterError
from tracee.stops import SignalStop, Stop, SyscallStop
from tracefile.records import Event

from replayer.backward_pass import Pass
from replayer.errors import ReplayError
from replayer.midpoints import Mid
from replayer.positions import Land, Landing, Verdict
from replayer.session import ReplaySession
from replayer.timeline_core import TimelineCore

log = logging.getLogger(__name__)

RUN_ON_ARRIVALS = 256  # arrivals at the interrupted pc to run on (kernel-counted, no stop)
RUN_ON_NS = 10_000_000  # at most this much of the thread's CPU time (~13 µs an arrival here)
EFLAGS_RF = 1 << 16
NOT_IN_SYSCALL = (1 << 64) - 1  # orig_rax of a thread stopped in user code


class RunOnPass(Pass):
    """Replay to the trap of `counter` at its `count`-th arrival (HIT), within the stretch
    after boundary `position` and `timer`'s bound (REACHED_NOW: as far as it may go, or the
    stretch's system call, left unreplayed); a run past the stretch ends with KEEP_GOING."""
    interrupt_at_boundaries = False

    def __init__(self, session: ReplaySession, counter: HwCounter, count: int, position: int,
                 timer: CpuTimer | None) -> None:
        super().__init__(session, lambda: False)  # (a second Ctrl-C changes nothing here)
        self.counter, self.count, self.position, self.timer = counter, count, position, timer

    def judge(self, stop: Stop) -> Stop | None:
        if isinstance(stop, SignalStop) and stop.signal == SIGSTOP:
            if self.timer is not None and self.timer.elapsed() >= RUN_ON_NS:
                self.halt(Verdict.REACHED_NOW)
            return None  # (relive's Ctrl-C kick or a forward tick, sent before: dropped)
        if isinstance(stop, SyscallStop):
            self.halt(Verdict.REACHED_NOW)  # the stretch ends here: not replayed now
        if (isinstance(stop, SignalStop) and stop.signal == SIGTRAP
                and self.s.current_task().regs.rip == self.counter.addr
                and self.counter.count() >= self.count):
            self.halt(Verdict.HIT)
        return stop

    def after(self, ev: Event | None, position: int) -> bool:
        return ev is not None and self.s.position <= self.position


class InterruptPoint(TimelineCore):
    def settle_interrupt(self, clock: int) -> Landing | None:
        """The forward run was interrupted (Ctrl-C) inside the stretch being replayed, at a
        signal stop of its thread, our int3s out of memory; `clock`: the thread's CPU time
        since the stretch's start. Leave the replay at a state a step back finds cheaply
        (see the module) and say where, counted from `self.base`; None if this is not such
        a stop (the replay is left where it was)."""
        s = self.s
        nxt = s.next_event
        task = s.task
        if (nxt is None or task is None or not s.can_snapshot()
                or s.taskset.tasks.get(nxt.tid) is not task
                or task.regs.orig_rax != NOT_IN_SYSCALL or task.regs.eflags & EFLAGS_RF):
            return None
        pc = task.regs.rip
        self.take_mid(clock)
        mid = self.base
        if mid is None or mid.position != s.position or mid.regs != task.regs_bytes():
            return None  # (no mid taken here)
        at_mid = Landing(Land.MID, nxt.tid, 0, None)
        try:
            timer = CpuTimer(task.tid, RUN_ON_NS)
        except CpuTimerError:
            return at_mid
        try:
            # Standing at pc without the resume flag, the counter counts this state first.
            arrivals = self._counted_run(pc, mid, RUN_ON_ARRIVALS + 1, timer)
            if arrivals == RUN_ON_ARRIVALS + 1:
                return self._at_arrival(pc, arrivals)
            self._origin(mid.position, mid)  # (it went further: back, to the last arrival)
            if arrivals >= 2 and self._counted_run(pc, mid, arrivals, None) == arrivals:
                return self._at_arrival(pc, arrivals)
        except ReplayError as e:
            log.warning("running on from the interrupted point: %s", e)
        self._origin(mid.position, mid)
        self._task()  # (the stretch's thread is the one stopped)
        return at_mid

    def _at_arrival(self, pc: int, arrivals: int) -> Landing:
        """Stopped by the counter at an arrival: the resume flag the debug exception set is
        relive's, not the program's (gdb would show it in eflags), so it goes."""
        task = self._task()
        task.set_reg("eflags", task.regs.eflags & ~EFLAGS_RF)
        task.flush_regs()
        return Landing(Land.MID, self.s.next_event.tid if self.s.next_event else None, 0,
                       (pc, arrivals))

    def _counted_run(self, pc: int, mid: Mid, count: int, bound: CpuTimer | None) -> int:
        """Run the stretch's thread from here (at `mid`) to its `count`-th arrival at `pc`
        (a kernel counter's trap), within `bound` if given (a run to an arrival seen
        before has none: it is reached, though a fork's first steps cost more CPU time);
        the arrivals counted when the run ended."""
        task = self._task()
        try:
            counter = HwCounter(task.tid, pc, stop_at=count, sig=SIGTRAP)
        except HwCounterError:
            if bound is not None:
                bound.close()
            return 0
        ticks, self.s.ticks = self.s.ticks, bound
        output, self.s.output = self.s.output, None  # (shown when the replay gets there)
        run = RunOnPass(self.s, counter, count, mid.position, bound)
        try:
            verdict = run.run()
            arrivals = count if verdict is Verdict.HIT else counter.count()
        finally:
            self.s.ticks = ticks
            self.s.output = output
            counter.close()
            if bound is not None:
                bound.close()
                drain_stop(self._task().tid)
        log.debug("ran on from the interrupted point at %#x: %d arrivals (%s)", pc, arrivals,
                  verdict.name)
        return arrivals

