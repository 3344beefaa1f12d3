"""Reverse execution when the trace holds several tasks: thread-aware, by plain re-execution.

The Timeline's fast paths (kernel counters, mid-stretch forks, step caches) follow one task.
Here every backward request replays forward from a checkpoint (threads included, see
replayer.snapshot; none while several processes live) or a waypoint (replayer.waypoints: a
snapshot inside a stretch left by an earlier pass), with Traps that know every thread, so it is
slower but correct whichever thread runs. Passes take checkpoints and waypoints as they go.

- reverse-continue: one forward pass from the latest start before now records every hit in the
  debugged process (breakpoint arrivals and watchpoint traps, each numbered within the stretch
  of the event it precedes, and syscalls whose recorded writes touch a watched range); a second
  pass goes to the last one, from the last waypoint before it. No hit: an earlier start, down
  to the process's birth.
- reverse-stepi of thread T: if T ran in the current stretch, the same stretch with T stepped
  one instruction less (the count found by single-stepping from the boundary); otherwise the
  state just before the instruction that caused T's previous event (a syscall shown before it
  runs, a signal before its delivery). Before T's first instruction there is nothing: the
  start of history, for T.

A state here is an event boundary plus, inside the stretch after it, the task running it (the
next event's) and how many instructions it ran, if known; "now" is recognised in a forward
pass by that task's registers and a digest of its process's writable memory.
"""
from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from replayer import registers
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
from replayer.snapshot import Snapshot as Checkpoint
from replayer.timeline import (
    MAX_STEPS,
    LostPosition,
    SearchInterrupted,
)
from replayer.traps import Traps, condition_holds, is_clone, written_watchpoints
from replayer.waypoints import WAYPOINT_INTERVAL, Hit, Point, Waypoint, Waypoints
from tracee import ptrace_api as api
from tracee.digest import memory_digest
from tracee.stops import SignalStop, SyscallStop
from tracee.stops import Stop as TraceeStop
from tracee.task import Task
from tracefile.records import Event, Kind

if TYPE_CHECKING:
    from replayer.debuggee import Debuggee

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Landing:
    """Where a backward move left the replay: kind 'begin' (start of history), 'boundary' or
    'mid' (inside the stretch run by `tid`, `steps` instructions in, if known)."""
    kind: str
    tid: int | None = None
    steps: int | None = 0


class ThreadedReverse:
    def __init__(self, target: Debuggee) -> None:
        self.t = target
        self.s = target.session
        # The last reverse-stepi landing inside a stretch, its anchor arrival and the steps
        # from that arrival to it.
        self._anchored: tuple[Point, Hit, int] | None = None
        self.waypoints = Waypoints()
        self._met: list[Waypoint] = []  # the waypoints the last positioning pass met

    # -- the request ------------------------------------------------------------------------
    def resume_back(self, command: ResumeCommand) -> Stop:
        t = self.t
        now = self.now()
        t.parked = False
        self._met = []
        if command.action is Action.CONTINUE:
            return self.continue_back(command.breakpoints, command.watchpoints, now,
                                      *self._private(command), conditions=command.conditions)
        tid = command.tid
        watched = {wp: t.peek(wp) for wp in command.watchpoints}
        landing = self.step_back(tid, now)
        self.land(landing)
        if landing.kind == "begin":
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

    def now(self) -> Point:
        t, s = self.t, self.s
        tid, steps = t.mid_stretch()
        if tid is None or not t.debugged(tid):
            return Point(s.position)  # (a stretch of another process holds no hit of ours)
        task = s.taskset.tasks[tid]
        point = Point(s.position, tid, task.regs_bytes(), steps)
        _fingerprint(point, task)
        return point

    def continue_back(self, breakpoints: frozenset[int], watchpoints: frozenset[Watchpoint],
                      now: Point | None = None, private: frozenset[int] = frozenset(),
                      owner: int | None = None, *,
                      conditions: BreakpointConditions | None = None) -> Stop:
        t = self.t
        now = now or self.now()
        hit = self.last_hit_before(now, breakpoints, watchpoints, private, owner,
                                   conditions=conditions)
        if hit is None:
            self._seek(t.birth)
            self.land(Landing("begin"))
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

    def last_hit_before(self, now: Point, breakpoints: frozenset[int],
                        watchpoints: frozenset[Watchpoint], private: frozenset[int] = frozenset(),
                        owner: int | None = None, *,
                        conditions: BreakpointConditions | None = None) -> Hit | None:
        """The last hit strictly before `now` (where gdb's `conditions` hold); breakpoints in
        `private` count only for thread `owner`."""
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
            until = Point(start.position)
        return None

    def return_to(self, point: Point) -> None:
        """Go back to `point` (after a search that found nothing)."""
        self._pass(self._starts(point.position)[0], point, frozenset(), frozenset())

    def goto_hit(self, hit: Hit, watchpoints: frozenset[Watchpoint]) -> Landing:
        """Go to `hit`: at the breakpoint before its instruction runs, or before the
        instruction (or syscall) that wrote the watched memory."""
        if hit.kind == "kernel":
            return self.before_trigger(self._trigger_of(self.s.reader.event(hit.position)))
        bps = frozenset({hit.pc}) if hit.kind == "bp" else frozenset()
        wps = watchpoints if hit.kind == "watch" else frozenset()
        start = self._start_before(hit, wps)
        _, reached = self._pass(start, Point(hit.position + 1), bps, wps, goal=hit)
        if reached != "goal":
            raise ReplayError(f"could not find {hit} again")
        if hit.kind == "bp":
            return Landing("mid", hit.tid, None)
        self.waypoints.landed(self._met)  # (the pass's waypoints lie before the write)
        task = self.s.taskset.tasks[hit.tid]
        here = Point(hit.position, hit.tid, task.regs_bytes())
        _fingerprint(here, task)
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

    def _pass(self, start: Checkpoint | Waypoint, until: Point, breakpoints: frozenset[int],
              watchpoints: frozenset[Watchpoint], goal: Hit | None = None,
              private: frozenset[int] = frozenset(), owner: int | None = None,
              conditions: BreakpointConditions | None = None
              ) -> tuple[list[Hit], str | None]:
        """Replay from `start` to `until` (or to `goal`), collecting every hit of the
        debugged process on the way, and dropping checkpoints and waypoints as it goes.
        Returns the hits and 'now', 'goal' or None (reached a boundary)."""
        t, s = self.t, self.s
        origin = start if isinstance(start, Waypoint) else None
        s.restore(start.snap if isinstance(start, Waypoint) else start)
        self._met = [origin] if origin is not None else []
        while s.position < t.birth:
            self._check_interrupt(boundary=True)
            s.step()
        hits: list[Hit] = []
        if until.tid is None and s.position >= until.position:
            return hits, None
        armed = frozenset(breakpoints) | ({until.pc} if until.tid is not None else set())
        count = _Counts(origin, armed, watchpoints)
        traps = [Traps(t.any_task(), armed, watchpoints, taskset=s.taskset)]
        taken: list[Waypoint] = []
        clock = [time.monotonic()]

        def note(hit: Hit) -> None:
            hits.append(hit)
            if hit == goal:
                raise Paused("goal")

        def note_watch(wp: Watchpoint | None, tid: int) -> None:
            n, origin_ = count.watch(s.position)
            note(Hit("watch", s.position, count=n, wp=wp, tid=tid, origin=origin_))

        def at_now(tid: int | None, task: Task, planted: bool) -> bool:
            return (until.tid is not None and tid == until.tid
                    and s.position == until.position and self._matches(until, task, planted))

        def rearm(take: object) -> None:
            """Take a checkpoint or waypoint with our int3s out of memory."""
            traps[0].disarm()
            try:
                take()  # type: ignore[operator]
            finally:
                traps[0] = Traps(t.any_task(), armed, watchpoints, taskset=s.taskset)
            clock[0] = time.monotonic()

        def waypoint(task: Task, tid: int) -> None:
            if time.monotonic() - clock[0] < WAYPOINT_INTERVAL or not s.can_snapshot():
                return

            def take() -> None:
                point = Point(s.position, tid, task.regs_bytes())
                _fingerprint(point, task)
                w = count.waypoint(s.snapshot(), point)
                taken.append(w)
                self.waypoints.add(w)
                self.waypoints.thin(taken)
            rearm(take)

        def observe(stop: TraceeStop) -> TraceeStop | None:
            if self._interrupted(stop):
                raise Paused("interrupt")
            if isinstance(stop, SyscallStop) and s.task is not None and at_now(
                    t.recorded(s.task), s.task, False):
                raise Paused("now")  # `now` is parked at this syscall's entry
            trap = traps[0].classify(stop)
            if trap is None or trap.kind in ("own", "other", "step"):
                return stop
            task = trap.task
            assert task is not None
            tid = t.recorded(task) or 0
            if trap.kind == "watch":
                note_watch(trap.wp, tid)
                waypoint(task, tid)
                return None
            if trap.kind == "breakpoint":
                n, origin_ = count.arrival(s.position, trap.pc)
                if until.tid is not None and trap.pc == until.pc and at_now(tid, task, True):
                    raise Paused("now")
                if (trap.pc in breakpoints and (trap.pc not in private or tid == owner)
                        and condition_holds(conditions, trap.pc, task)):
                    note(Hit("bp", s.position, trap.pc, n, tid=tid, origin=origin_))
            after = traps[0].step_over(trap.pc, task)
            stepped = traps[0].after_step(after)
            if stepped is None:
                return after  # the instruction was a syscall (or faulted): replay uses it
            if stepped.kind == "watch":
                note_watch(stepped.wp, tid)
            waypoint(task, tid)
            return None

        s.observer = observe
        reached: str | None = None
        try:
            while not (until.tid is None and s.position >= until.position):
                self._check_interrupt(boundary=True)
                try:
                    ev = s.step()
                except Paused as p:
                    if p.reason == "interrupt":
                        raise SearchInterrupted(boundary=False) from None
                    reached = str(p.reason)
                    break
                if ev is None:
                    break
                traps[0].replant(ev)
                if until.tid is not None and s.position > until.position:
                    raise LostPosition("lost the current position while searching backwards "
                                       f"(it was in the stretch after event {until.position - 1})")
                if t.debugged(ev.tid):
                    for wp in written_watchpoints(ev, watchpoints):
                        note(Hit("kernel", ev.seq, wp=wp, tid=ev.tid))
                if t.timeline_due() and s.can_snapshot():
                    rearm(t.timeline.take)
        except Paused as p:  # the goal was a kernel write (not used) or found after an event
            reached = str(p.reason)
        finally:
            s.observer = None
            traps[0].disarm()
            self._met += taken
        return hits, reached

    # -- reverse-stepi ----------------------------------------------------------------------
    def step_back(self, tid: int, now: Point) -> Landing:
        """One instruction of thread `tid` back from `now`."""
        if now.tid == tid:
            if now.steps is None:
                landing = self._back_by_anchor(now)
                if landing is not None:
                    return landing
            steps = now.steps if now.steps is not None else self._count(now)
            if steps is None:
                raise ReplayError(f"could not find thread {tid}'s current position again "
                                  f"by single-stepping the stretch after event {now.position - 1}")
            if steps >= 1:
                self._goto_steps(now.position, tid, steps - 1)
                return Landing("mid", tid, steps - 1)
        return self._before_previous_event(tid, now.position)

    def _back_by_anchor(self, now: Point) -> Landing | None:
        """Reverse-stepi inside a long stretch without single-stepping all of it: find the
        previous arrival of the thread at the current pc in this stretch (a loop's previous
        iteration), count the instructions from there to `now`, and go there again, one
        instruction less. None if `now` is the first arrival at its pc. The anchor is kept,
        so the next reverse-stepi from the landing costs one forward pass."""
        cached = self._anchored
        anchor: Hit | None = None
        if (cached is not None and _same_state(cached[0], now) and cached[2] >= 1
                and (cached[1].origin is None or cached[1].origin.alive)):
            anchor, steps = cached[1], cached[2] - 1
        else:
            starts = self._starts(now.position)
            nearest = [w for w in starts[:1] if isinstance(w, Waypoint)]
            for start in nearest + [next(c for c in starts if not isinstance(c, Waypoint))]:
                hits, reached = self._pass(start, now, frozenset({now.pc}), frozenset())
                if reached != "now":
                    raise LostPosition("lost the current position while stepping back "
                                       f"(it was in the stretch after event {now.position - 1})")
                earlier = [h for h in hits if h.position == now.position and h.tid == now.tid]
                if earlier:
                    anchor = earlier[-1]
                    break
            if anchor is None:
                return None
            steps = self._steps_from(anchor, now) - 1
        self._goto_arrival(anchor)
        task = self.s.taskset.tasks[anchor.tid]
        for _ in range(steps):
            _single_step(task)
        landed = Point(now.position, now.tid, task.regs_bytes())
        _fingerprint(landed, task)
        self._anchored = (landed, anchor, steps)
        return Landing("mid", now.tid, None)

    def _steps_from(self, anchor: Hit, now: Point) -> int:
        """Instructions from the arrival `anchor` to `now` (same thread, same stretch)."""
        self._goto_arrival(anchor)
        task = self.s.taskset.tasks[anchor.tid]
        steps = 0
        while not self._matches(now, task):
            if steps >= MAX_STEPS:
                raise LostPosition(f"no way from {anchor} to the current position")
            stop = _single_step(task)
            steps += 1
            if not _is_step(stop) and not self._matches(now, task):
                raise LostPosition(f"stepping from {anchor} did not reach the current position")
        return steps

    def _goto_arrival(self, hit: Hit) -> None:
        _, reached = self._pass(self._start_before(hit, frozenset()), Point(hit.position + 1),
                                frozenset({hit.pc}), frozenset(), goal=hit)
        if reached != "goal":
            raise ReplayError(f"could not find {hit} again")

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
                case Kind.ENTER | Kind.RDTSC | Kind.RDRAND | Kind.CPUID:
                    return self.before_trigger(ev)
                case Kind.SIGNAL:
                    return self._at_signal_point(ev)
                case Kind.PREEMPT if ev.info.get("jump"):
                    self._seek(ev.seq)  # the jump replaces the stretch: its start is before
                    return Landing("mid", tid, 0)
                case Kind.PREEMPT:
                    point = Point(ev.seq, tid, ev.regs, digest=ev.info.get("digest"))
                    steps = self._count(point)
                    if steps:
                        self._goto_steps(ev.seq, tid, steps - 1)
                        return Landing("mid", tid, steps - 1)
        return self._begin_at(self.t.birth)

    def _begin_at(self, position: int) -> Landing:
        self._seek(max(position, self.t.birth))
        return Landing("begin")

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
        return Landing("mid", ev.tid, None)

    def _at_signal_point(self, ev: Event) -> Landing:
        """Where signal event `ev` is delivered, before the delivery."""
        s = self.s
        self._seek(ev.seq)
        wants = s.wants_signal_stop
        s.wants_signal_stop = lambda sig: True
        try:
            s.step()
        except Paused:
            return Landing("mid", ev.tid, None)
        finally:
            s.wants_signal_stop = wants
        raise ReplayError(f"could not stop before the delivery of event {ev.seq}")

    def _count(self, point: Point) -> int | None:
        """Instructions `point.tid` runs from boundary `point.position` to `point`, by
        single-stepping (None if the stretch ends first)."""
        self._seek(point.position)
        task = self.s.taskset.tasks[point.tid]  # type: ignore[index]
        self.s.taskset.settle(task)
        steps = 0
        while not self._matches(point, task):
            if steps >= MAX_STEPS:
                return None
            if steps % 4096 == 4095:
                self._check_interrupt(boundary=False)
            stop = _single_step(task)
            steps += 1
            if not _is_step(stop):
                return steps if self._matches(point, task) else None
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
    def _matches(self, point: Point, task: Task, planted: bool = False) -> bool:
        """Is `task` in the state `point`? (`planted`: an int3 of ours sits at its pc.)"""
        # orig_rax is the kernel's note of the syscall being made (-1 after a trap, the call's
        # number at a boundary right after it): not the program's state.
        differ = registers.diff(point.regs, task.regs_bytes(), skip=("orig_rax",))
        # Shown before a syscall instruction, a state carries the rcx/r11 the instruction
        # will clobber as the kernel saw them: those two cannot tell states apart there.
        if differ:
            code = task.mem.read_upto(task.regs.rip, 2)
            if planted and code[:1] == b"\xcc":
                code = b"\x0f" + code[1:]
            if not (set(differ) <= {"rcx", "r11"} and code == b"\x0f\x05"):
                return False
        if point.quick is not None and _stack_hash(task) != point.quick:
            return False
        if point.digest is None:
            return True
        return memory_digest(task.pid, task.mem.read_upto) == point.digest

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


class _Counts:
    """A pass's hit counts, per stretch: from the stretch's start; in the stretch of the
    waypoint the pass started from, continuing that waypoint's counts where it kept them,
    else counted from the waypoint (such hits name it as their origin)."""

    def __init__(self, origin: Waypoint | None, armed: frozenset[int],
                 watchpoints: frozenset[Watchpoint]) -> None:
        self.origin, self.armed, self.watchpoints = origin, armed, watchpoints
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

    def arrival(self, position: int, pc: int) -> tuple[int, Waypoint | None]:
        self.arrivals[(position, pc)] += 1
        relative = self._at_origin(position) and pc in self.relative
        return self.arrivals[(position, pc)], self.origin if relative else None

    def watch(self, position: int) -> tuple[int, Waypoint | None]:
        self.watches[position] += 1
        relative = self._at_origin(position) and self.relative_watch
        return self.watches[position], self.origin if relative else None

    def waypoint(self, snap: Checkpoint, point: Point) -> Waypoint:
        """A waypoint here, with the counts of its stretch that are from its start."""
        at_origin = self._at_origin(point.position)
        armed = self.armed - self.relative if at_origin else self.armed
        arrivals = Counter({pc: n for (q, pc), n in self.arrivals.items()
                            if q == point.position and pc in armed})
        watchpoints = None if at_origin and self.relative_watch else self.watchpoints
        return Waypoint(snap, point, frozenset(armed), arrivals, watchpoints,
                        self.watches[point.position])


def _same_state(a: Point, b: Point) -> bool:
    return (a.position, a.tid, a.regs, a.quick, a.digest) == (b.position, b.tid, b.regs,
                                                              b.quick, b.digest)


def _stack_hash(task: Task) -> bytes:
    rsp = task.regs.rsp
    return hashlib.blake2b(task.mem.read_upto(rsp - 256, 4352), digest_size=16).digest()


def _fingerprint(point: Point, task: Task) -> None:
    point.quick = _stack_hash(task)
    point.digest = memory_digest(task.pid, task.mem.read_upto)


def _single_step(task: Task) -> TraceeStop:
    task.resume(api.Req.SYSEMU_SINGLESTEP)
    return task.wait()


def _is_step(stop: TraceeStop) -> bool:
    from signal import SIGTRAP
    return isinstance(stop, SignalStop) and stop.signal == SIGTRAP
