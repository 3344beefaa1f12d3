"""One forward run of the replay on behalf of a backward search, judged stop by stop.

Every backward command is made of such runs: from a checkpoint (or a snapshot inside a
stretch) up to the user's "now", collecting the hits on the way; to the count-th hit found
by an earlier run; to the trap a kernel counter sends at the count-th arrival. A `Pass` holds
what its run has seen in named fields; its `judge` looks at each stop of the replayed program
and returns the stop for replay to use, None (consumed: keep going), or ends the run with a
`Verdict` (`halt`). Ctrl-C ends any run with Verdict.INTERRUPTED, raised to the caller as
SearchInterrupted. The session's observer hook is the only way in: a pass knows nothing of
gdb, of checkpoints or of where its run started.

`HitsPass` collects the hits up to now (of one task; ThreadsPass in replayer.threads_pass
extends it to every thread of a process), `GotoTrapPass` goes to the count-th trap and
`CountedTrapPass` to a kernel counter's trap (both within one stretch's thread).
"""
from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from signal import SIGSTOP, SIGTRAP
from typing import NoReturn, Protocol

from replayer.control import BreakpointConditions, Watchpoint
from tracee.hwcount import HwCounter, HwCounterError
from tracee.stops import SignalStop, Stop, SyscallStop
from tracee.task import Task
from tracefile.records import Event

from replayer import registers
from replayer.errors import Paused
from replayer.midpoints import Mid
from replayer.positions import Hit, LostPosition, Position, SearchInterrupted, Verdict
from replayer.session import ReplaySession
from replayer.snapshot import Snapshot
from replayer.traps import Traps, condition_holds, written_watchpoints
from replayer.waypoints import Waypoint

log = logging.getLogger(__name__)


class Checkpointer(Protocol):
    def due(self) -> bool: ...
    def take(self) -> None: ...


class PassHost(Protocol):
    """What a pass over every thread of a process needs of it (replayer.threads_pass)."""
    session: ReplaySession
    timeline: Checkpointer  # (a replayer.timeline.Timeline)

    def any_task(self) -> Task: ...
    def recorded(self, task: Task | None) -> int | None: ...
    def debugged(self, tid: int | None) -> bool: ...


class Pass:
    """A run of the replay that a backward search judges stop by stop."""
    # Ctrl-C seen between two events ends the run there (at a boundary); otherwise only when
    # its SIGSTOP stops the program.
    interrupt_at_boundaries = True

    def __init__(self, session: ReplaySession, interrupted: Callable[[], bool]) -> None:
        self.s = session
        self.interrupted = interrupted
        self.verdict = Verdict.KEEP_GOING

    def halt(self, verdict: Verdict) -> NoReturn:
        """End the run here (inside an event: it is replayed again on the next step)."""
        self.verdict = verdict
        raise Paused(verdict)

    def judge(self, stop: Stop) -> Stop | None:
        return stop

    def done(self) -> bool:
        """Nothing left to run (checked at each event boundary)."""
        return False

    def after(self, ev: Event | None, position: int) -> bool:
        """Event `ev` (None: the end of the trace) was replayed from boundary `position`:
        go on?"""
        return ev is not None

    def reached(self, position: int) -> None:
        """The run ended inside the stretch after boundary `position`."""

    def finish(self) -> None:
        """Clean up (int3s, counters), whatever ended the run."""

    def run(self) -> Verdict:
        s = self.s
        s.observer = self._observe
        try:
            while not self.done():
                if self.interrupt_at_boundaries and self.interrupted():
                    raise SearchInterrupted(boundary=True)
                position = s.position
                try:
                    ev = s.step()
                except Paused:
                    if self.verdict is Verdict.KEEP_GOING:
                        raise  # not ours
                    self.reached(position)
                    break
                if not self.after(ev, position):
                    break
        except Paused:  # halted after an event (a goal found there)
            if self.verdict is Verdict.KEEP_GOING:
                raise
        finally:
            s.observer = None
            self.finish()
        if self.verdict is Verdict.INTERRUPTED:
            raise SearchInterrupted(boundary=False)
        return self.verdict

    def _observe(self, stop: Stop) -> Stop | None:
        if isinstance(stop, SignalStop) and stop.signal == SIGSTOP and self.interrupted():
            self.halt(Verdict.INTERRUPTED)
        return self.judge(stop)


class HitsPass(Pass):
    """Replay forward to `until`, collecting every hit on the way (or up to the hit `goal`).
    This one judges the stops of one task (the thread running a stretch, or a single-task
    replay); ThreadsPass (replayer.threads_pass) those of every thread of a process.

    Hits are numbered per stretch (Counts): in the first stretch from `base` (a mid) or from
    the waypoint `origin`. Breakpoints in `counted` are counted by the kernel (hardware
    counters, no stop per hit; an accelerator) where a debug register is free; their hits
    come per stretch, after that stretch's other hits, marked unordered. `on_tick` is called
    at a CPU-timer tick, `on_trap` at a SIGTRAP first (True: it was its own)."""

    def __init__(self, session: ReplaySession, interrupted: Callable[[], bool], task: Task,
                 until: Position, breakpoints: frozenset[int],
                 watchpoints: frozenset[Watchpoint], *, counted: frozenset[int] = frozenset(),
                 conditions: BreakpointConditions | None = None,
                 on_tick: Callable[[], None] | None = None, base: Mid | None = None,
                 on_trap: Callable[[Stop], bool] | None = None,
                 origin: Waypoint | None = None, goal: Hit | None = None) -> None:
        super().__init__(session, interrupted)
        self.task = task
        self.until, self.breakpoints, self.watchpoints = until, breakpoints, watchpoints
        self.conditions, self.on_tick, self.on_trap = conditions, on_tick, on_trap
        self.goal = goal
        self.hits: list[Hit] = []
        self.counters = open_counters(task.tid, counted)
        self.seen = {c.addr: 0 for c in self.counters}
        self.armed = ((breakpoints - frozenset(self.seen))
                      | (frozenset() if until.boundary else frozenset({until.pc})))
        self.count = Counts(self.armed, watchpoints, session.position, origin, base)
        self.traps = self._traps()

    # -- what differs among threads (ThreadsPass) ---------------------------------------------
    def _traps(self) -> Traps:
        return Traps(self.task, self.armed, self.watchpoints)

    def _tid(self, task: Task) -> int:
        try:
            return self.s.taskset.recorded_tid(task)
        except KeyError:
            return 0

    def _is_now_thread(self, tid: int) -> bool:
        return True  # (one task runs)

    def _keeps(self, pc: int, tid: int) -> bool:
        """Does an arrival of thread `tid` at breakpoint `pc` count?"""
        return True

    def _debugged(self, tid: int) -> bool:
        return True

    def _after_trap(self, task: Task, tid: int) -> None:
        """A trap of `task` was handled (ThreadsPass leaves waypoints here)."""

    # -- the pass -----------------------------------------------------------------------------
    def note(self, hit: Hit) -> None:
        self.hits.append(hit)
        if hit == self.goal:
            self.halt(Verdict.HIT)

    def _note_watch(self, wp: Watchpoint | None, tid: int) -> None:
        n, origin, base = self.count.watch(self.s.position)
        self.note(Hit("watch", self.s.position, count=n, wp=wp, tid=tid, base=base,
                      origin=origin))

    def _at_now(self, task: Task, planted: bool, tid: int | None = None) -> bool:
        until = self.until
        if until.boundary or self.s.position != until.position:
            return False
        return (self._is_now_thread(self._tid(task) if tid is None else tid)
                and until.matched_by(task, planted))

    def judge(self, stop: Stop) -> Stop | None:
        s, until, traps = self.s, self.until, self.traps
        if isinstance(stop, SignalStop) and stop.signal == SIGSTOP and self.on_tick is not None:
            with traps.lifted():
                self.on_tick()
            return None
        if isinstance(stop, SignalStop) and stop.signal == SIGTRAP and self.on_trap is not None:
            with traps.lifted():
                if self.on_trap(stop):
                    return None
        if (isinstance(stop, SyscallStop) and s.task is not None
                and self._at_now(s.task, planted=False)):
            self.halt(Verdict.REACHED_NOW)  # `now` is parked at this syscall's entry
        trap = traps.classify(stop)
        if trap is None or trap.kind in ("own", "other", "step"):
            return stop
        task = trap.task or s.current_task()
        tid = self._tid(task)
        if trap.kind == "watch":
            self._note_watch(trap.wp, tid)
            self._after_trap(task, tid)
            return None
        if trap.kind == "breakpoint":
            n, origin, base = self.count.arrival(s.position, trap.pc)
            if not until.boundary and s.position == until.position and trap.pc == until.pc:
                if self._at_now(task, planted=True, tid=tid):
                    self.halt(Verdict.REACHED_NOW)
                log.debug("arrival at %#x does not match now: %s", trap.pc,
                          registers.diff(until.regs, task.regs_bytes()))
            if (trap.pc in self.breakpoints and self._keeps(trap.pc, tid)
                    and condition_holds(self.conditions, trap.pc, task)):
                self.note(Hit("bp", s.position, trap.pc, n, tid=tid, base=base, origin=origin))
        after = traps.step_over(trap.pc, task)
        stepped = traps.after_step(after)
        if stepped is None:
            return after  # the instruction was a syscall (or faulted): replay uses it
        if stepped.kind == "watch":
            self._note_watch(stepped.wp, tid)
        self._after_trap(task, tid)
        return None

    def _add_counted(self, position: int) -> None:
        for c in self.counters:
            total = c.count()
            if total > self.seen[c.addr]:
                self.hits.append(Hit("bp", position, c.addr, total - self.seen[c.addr],
                                     tid=self._tid(self.task), ordered=False,
                                     base=self.count.base_at(position)))
            self.seen[c.addr] = total

    def done(self) -> bool:
        return self.until.boundary and self.s.position >= self.until.position

    def reached(self, position: int) -> None:
        self._add_counted(position)  # reached `now` inside this stretch

    def after(self, ev: Event | None, position: int) -> bool:
        self._add_counted(position)
        if ev is None:
            return False
        self.traps.replant(ev)
        until = self.until
        if not until.boundary and self.s.position > until.position:
            raise LostPosition("lost the current position while searching backwards "
                               f"(it was in the stretch after event {until.position - 1})")
        if self._debugged(ev.tid):
            for wp in written_watchpoints(ev, self.watchpoints):
                self.note(Hit("kernel", ev.seq, wp=wp, tid=ev.tid))
        return True

    def finish(self) -> None:
        for c in self.counters:
            c.close()
        if self.s.task is not None:
            self.traps.disarm()


class Counts:
    """A pass's hit counts, per stretch: from the stretch's start; in the first stretch, from
    the mid `base` the pass started from, or, from the waypoint `origin`, continuing that
    waypoint's counts where it kept them, else counted from the waypoint (such hits name it
    as their origin)."""

    def __init__(self, armed: frozenset[int], watchpoints: frozenset[Watchpoint], start: int,
                 origin: Waypoint | None = None, base: Mid | None = None) -> None:
        self.origin, self.armed, self.watchpoints = origin, armed, watchpoints
        self.start, self.base = start, base
        self.arrivals: Counter[tuple[int, int]] = Counter()
        self.watches: Counter[int] = Counter()
        self.relative: set[int] = set()
        self.relative_watch = False
        if origin is not None:
            for pc in armed:
                n = origin.counts(pc)
                if n is None:
                    self.relative.add(pc)
                else:
                    self.arrivals[(origin.position, pc)] = n
            seen = origin.watch_count(watchpoints)
            if seen is None:
                self.relative_watch = True
            else:
                self.watches[origin.position] = seen

    def _at_origin(self, position: int) -> bool:
        return self.origin is not None and position == self.origin.position

    def base_at(self, position: int) -> Mid | None:
        return self.base if position == self.start else None

    def arrival(self, position: int, pc: int) -> tuple[int, Waypoint | None, Mid | None]:
        self.arrivals[(position, pc)] += 1
        relative = self._at_origin(position) and pc in self.relative
        return (self.arrivals[(position, pc)], self.origin if relative else None,
                self.base_at(position))

    def watch(self, position: int) -> tuple[int, Waypoint | None, Mid | None]:
        self.watches[position] += 1
        relative = self._at_origin(position) and self.relative_watch
        return self.watches[position], self.origin if relative else None, self.base_at(position)

    def waypoint(self, snap: Snapshot, point: Position) -> Waypoint:
        """A waypoint here, with the counts of its stretch that are from its start."""
        at_origin = self._at_origin(point.position)
        armed = self.armed - self.relative if at_origin else self.armed
        arrivals = Counter({pc: n for (q, pc), n in self.arrivals.items()
                            if q == point.position and pc in armed})
        watchpoints = None if at_origin and self.relative_watch else self.watchpoints
        return Waypoint(snap, point, frozenset(armed), arrivals, watchpoints,
                        self.watches[point.position])


class GotoTrapPass(Pass):
    """Replay to the `count`-th trap of `traps` in the stretch after boundary `position`
    (a breakpoint arrival: before its instruction runs; a watchpoint trap: after the write)."""
    interrupt_at_boundaries = False

    def __init__(self, session: ReplaySession, interrupted: Callable[[], bool], traps: Traps,
                 position: int, count: int) -> None:
        super().__init__(session, interrupted)
        self.traps, self.position, self.count, self.seen = traps, position, count, 0

    def judge(self, stop: Stop) -> Stop | None:
        traps = self.traps
        trap = traps.classify(stop)
        if trap is None or trap.kind in ("own", "other", "step"):
            return stop
        self.seen += 1
        if self.seen == self.count:
            self.halt(Verdict.HIT)
        if trap.kind == "watch":
            return None
        after = traps.step_over(trap.pc)
        return None if traps.after_step(after) is not None else after

    def after(self, ev: Event | None, position: int) -> bool:
        if self.s.position > self.position:
            return False  # past the stretch: not found
        self.traps.replant(ev)
        return True

    def finish(self) -> None:
        if self.s.task is not None:
            self.traps.disarm()


class CountedTrapPass(Pass):
    """Replay until the SIGTRAP a kernel counter armed at `pc` sends (Verdict.HIT), or past
    the stretch after event `position` (KEEP_GOING). With `tick`, a SIGSTOP that is not
    Ctrl-C is the CPU timer's: `tick` is called and the program goes on."""
    interrupt_at_boundaries = False

    def __init__(self, session: ReplaySession, interrupted: Callable[[], bool], pc: int,
                 position: int, tick: Callable[[], None] | None = None) -> None:
        super().__init__(session, interrupted)
        self.pc, self.position, self.tick = pc, position, tick

    def judge(self, stop: Stop) -> Stop | None:
        if isinstance(stop, SignalStop) and stop.signal == SIGSTOP and self.tick is not None:
            self.tick()
            return None
        if (isinstance(stop, SignalStop) and stop.signal == SIGTRAP
                and self.s.current_task().regs.rip == self.pc):
            self.halt(Verdict.HIT)
        return stop

    def after(self, ev: Event | None, position: int) -> bool:
        return ev is not None and self.s.position <= self.position


def open_counters(tid: int, addrs: frozenset[int]) -> list[HwCounter]:
    """Kernel counters for as many of `addrs` as there are free debug registers, but one:
    replay needs one of its own to find where a signal came in user code or a thread was
    preempted (replayer.signals; taking all made that fail with ENOSPC in a search)."""
    counters = []
    for addr in sorted(addrs):
        try:
            counters.append(HwCounter(tid, addr))
        except HwCounterError:
            break
    if counters:
        try:
            HwCounter(tid, counters[0].addr).close()  # is one register left?
        except HwCounterError:
            counters.pop().close()
    return counters
