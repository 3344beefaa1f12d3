"""Reverse execution by re-execution: checkpoints, positions, backward searches.

A position is (events replayed, instructions executed since that event boundary). Without a
PMU the instruction count is not known for free: a position reached by a breakpoint is
identified by its registers (and, when those match, a digest of writable memory), and its
count is found only if needed, by single-stepping from the boundary.

- Checkpoints are forks of the replayed process taken at event boundaries (at start and every
  CHECKPOINT_INTERVAL of replay), thinned to MAX_CHECKPOINTS; a stored one never runs, it is
  forked again to be used.
- reverse-continue = forward passes from the checkpoint before "now" with the breakpoints and
  watchpoints armed, remembering the last hit before now; none -> an earlier checkpoint; none
  at all -> the start of history. Then go to that hit.
- reverse-stepi = the state one instruction earlier: at an event boundary, the instruction that
  caused the event (a syscall is shown before it runs); inside a stretch, the same stretch
  stepped one instruction less (mid-stretch forks every STEP_CACHE steps keep this cheap).
"""
from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from signal import SIGSTOP, SIGTRAP

from replayer.control import BreakpointConditions, Watchpoint
from tracee import ptrace_api as api
from tracee.cputimer import CpuTimer, CpuTimerError, drain_stop
from tracee.digest import memory_digest
from tracee.hwcount import HwCounter, HwCounterError
from tracee.stops import SignalStop, Stop, SyscallStop
from tracefile.records import Kind

from replayer import registers
from replayer.checkpoints import KeptCheckpoints
from replayer.errors import Paused, ReplayError
from replayer.midpoints import (ARRIVAL_FORK_EVERY, CLOSE_FIRST_NS, CLOSE_LEVELS, CLOSE_MIN_NS,
                                MAX_ARRIVAL_FORKS, ArrivalCache, Mid, Mids)
from replayer.session import ReplaySession
from replayer.snapshot import Snapshot as Checkpoint
from replayer.traps import Traps, condition_holds, written_watchpoints

log = logging.getLogger(__name__)

CHECKPOINT_INTERVAL = 0.25
MAX_CHECKPOINTS = 48
STEP_CACHE = 512
SHORT_SLICE = 512  # single steps tried to find a state's count before decoding backwards
SHORT_FORK = 64  # steps between the forks left while trying
DECODE_HOPS = 4  # steps from a decoded candidate's arrival that may lead to now
ARRIVALS_BEFORE_CLOSING = 1024  # counted from the origin before closing in on now
NEAR_EVERY = 0.02  # seconds of replay between the forks a seek leaves on its way
NEAR_FORKS = 8
MAX_STEPS = 50_000_000  # single steps to find a position (~25 µs each)
COUNTER_WORTH = 8
EFLAGS_RF = 1 << 16  # go to a hit with a kernel counter beyond this many arrivals
MEMORY_BUDGET_KIB = int(os.environ.get("RELIVE_CHECKPOINT_MB", "1024")) * 1024


class LostPosition(ReplayError):
    """A backward pass ran past the stretch of `now` without recognising it."""


class TooManyArrivals(Exception):
    """Counting arrivals at an address passed its limit (Timeline._arrivals_before)."""


class SearchInterrupted(Exception):
    """Ctrl-C during a backward search; the replay is left where the search was, at an event
    boundary or (`boundary` False) inside a stretch."""

    def __init__(self, boundary: bool) -> None:
        super().__init__("interrupted")
        self.boundary = boundary


@dataclass
class Now:
    """Where the user is: enough to recognise this state again in a forward pass."""
    position: int
    regs: bytes
    boundary: bool
    steps: int | None = None
    digest: str | None = None
    # Steps are counted from here: the count-th arrival at pc in the stretch (None: from the
    # event boundary). A state found by reverse-continue is such an arrival, so stepping back
    # from it single-steps one loop iteration, not the whole stretch.
    anchor: tuple[int, int] | None = None
    # Where steps and arrivals are counted from: a checkpoint inside the stretch
    # (replayer.midpoints), or None for the event boundary.
    base: Mid | None = None

    @property
    def pc(self) -> int:
        return registers.unpack(self.regs)["rip"]


@dataclass(frozen=True)
class Hit:
    """A breakpoint arrival (kind 'bp': count-th arrival at pc in the stretch after
    `position`), a watchpoint trap ('watch': the count-th in that stretch), or a syscall
    whose recorded output touched a watched range ('kernel': before event `position`)."""
    kind: str
    position: int
    pc: int = 0
    count: int = 0
    wp: Watchpoint | None = None
    ordered: bool = True  # False: counted by the kernel, order among a stretch's hits unknown
    base: Mid | None = None  # arrivals counted from this mid (None: from the boundary)


@dataclass
class StepCache:
    """Mid-stretch forks for one stretch (counted from one anchor), so repeated
    reverse-stepi stays cheap."""
    position: int
    anchor: tuple[int, int] | None
    base: Mid | None = None
    forks: dict[int, Checkpoint] = field(default_factory=dict)


Landing = tuple[str, "int | None", "tuple[int, int] | None"]


class Timeline:
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

    # -- checkpoints ------------------------------------------------------------------------
    def take(self) -> None:
        """A checkpoint here, if the replay can be snapshotted (one process, threads
        recreated on restore; see ReplaySession.can_snapshot)."""
        if (any(cp.position == self.s.position for cp in self.checkpoints)
                or not self.s.can_snapshot()):
            return
        self.checkpoints.append(self.s.snapshot())
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
        for cp in stored:
            try:
                with open(f"/proc/{cp.stored.pid}/smaps_rollup") as f:
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
        if not s.can_snapshot():
            return
        after = self.base if self.base is not None and self.base.position == s.position \
            else None
        mid = Mid(s.position, s.snapshot(), s.current_task().regs_bytes(), clock)
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
        a checkpoint, or a mid in an earlier stretch (a forward run leaves one every
        MID_PERIOD of the program's CPU time, and the newest is always kept, so the first
        step back after a `continue` replays at most that much, not CHECKPOINT_INTERVAL)."""
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
        if (not self.s.can_snapshot()
                or any(c.position == self.s.position for c in self._near)):
            return
        self._near.append(self.s.snapshot())
        while len(self._near) > NEAR_FORKS:
            self._near.pop(0).discard()

    def now(self, boundary: bool, steps: int | None,
            anchor: tuple[int, int] | None = None) -> Now:
        task = self.s.current_task()
        return Now(self.s.position, task.regs_bytes(), boundary, steps, anchor=anchor,
                   base=None if boundary else self.base)

    def matches(self, now: Now, planted: bool = False) -> bool:
        """Is the current state `now`? `planted`: an int3 of ours sits at the pc."""
        task = self.s.current_task()
        differ = registers.diff(now.regs, task.regs_bytes())
        # Shown before a syscall instruction, a state carries the rcx/r11 the instruction
        # will clobber as the kernel saw them: those two cannot tell states apart there.
        if differ:
            code = task.mem.read_upto(task.regs.rip, 2)
            if planted and code[:1] == b"\xcc":
                code = b"\x0f" + code[1:]  # our int3 over the syscall's first byte
            if not (set(differ) <= {"rcx", "r11"} and code == b"\x0f\x05"):
                return False
        if now.digest is None:
            return True  # caller computed `now` from this very state
        return memory_digest(task.pid, task.mem.read_upto) == now.digest

    def fingerprint(self, now: Now) -> None:
        task = self.s.current_task()
        if now.digest is None:
            now.digest = memory_digest(task.pid, task.mem.read_upto)

    # -- reverse-continue -------------------------------------------------------------------
    def last_hit_before(self, now: Now, breakpoints: frozenset[int],
                        watchpoints: frozenset[Watchpoint], floor: int = 0,
                        conditions: BreakpointConditions | None = None) -> Hit | None:
        """The last breakpoint/watchpoint hit strictly before `now` (where gdb's `conditions`
        hold), searching back one checkpoint at a time, not before the boundary `floor`
        (where the program the breakpoints belong to was exec'd: a checkpoint is taken there
        if there is none). Conditional breakpoints are never counted by the kernel: each hit
        is looked at."""
        self.fingerprint(now)

        def above_floor() -> bool:
            return any(floor <= c.position <= now.position for c in self.checkpoints)
        if floor and not above_floor():
            self.seek(floor)
            self.take()
            if not above_floor():  # no checkpoint possible there (shared memory)
                floor = 0
        if not now.boundary:
            # First from the mids of now's stretch, ever further back (each pass runs to now).
            # In a long stretch (it has mids), close in on now first: the last hit is then
            # looked for in the last slice before now, then in ever longer ones.
            probe = now
            self.mids.pinned = {now.base} if now.base is not None else set()
            try:
                if now.base is not None:
                    probe = Now(now.position, now.regs, False, now.steps, now.digest,
                                now.anchor, now.base)
                    self._close_in(probe)
                chain = self.mids.before(probe.base, now.position)
                i = 0
                while i < len(chain):
                    mid = chain[i]
                    hits = self._search(lambda: self._origin(now.position, mid), probe,
                                        breakpoints, watchpoints, conditions, mid)
                    if hits:
                        return hits[-1]
                    i = 2 * i + 1
            finally:
                self.mids.pinned = set()
        until = now
        near = self._near_start(now, floor)
        if near is not None:  # (a reverse-next over a call: gdb's `bc` to the callee)
            start, base, after = near
            hits = self._search(start, until, breakpoints, watchpoints, conditions, base)
            if hits:
                return hits[-1]
            until = Now(after, b"", boundary=True)
        for cp in sorted((c for c in self._boundaries()
                          if floor <= c.position <= until.position),
                         key=lambda c: -c.position):
            if cp.position == until.position and until.boundary:
                continue  # (a near fork and a checkpoint at one boundary)
            hits = self._search(lambda: self.seek(cp.position), until, breakpoints,
                                watchpoints, conditions, None)
            if hits:
                return hits[-1]
            until = Now(cp.position, b"", boundary=True)
        return None

    def _near_start(self, now: Now, floor: int
                    ) -> tuple[Callable[[], None], Mid, int] | None:
        """The newest mid of a stretch before `now`'s that is later than every stored
        boundary state before now: a backward search passes from there first (the hit is
        often in the last milliseconds), then from the boundaries before. Returns how to go
        there, the mid (hits found in its stretch count from it) and the boundary after."""
        latest = max((c.position for c in self._boundaries() if c.position <= now.position),
                     default=0)
        mid = next((m for m in reversed(self.mids.chain)
                    if max(latest, floor) <= m.position < now.position), None)
        if mid is None:
            return None
        return (lambda: self._origin(mid.position, mid)), mid, mid.position + 1

    def _boundaries(self) -> list[Checkpoint]:
        """The states stored at event boundaries that backward searches pass from."""
        return [*self.checkpoints, *self._near]

    def _search(self, start: Callable[[], None], until: Now, breakpoints: frozenset[int],
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
            hits = self._pass(until, breakpoints, watchpoints, counted=frozenset(),
                              conditions=conditions, base=base)
        log.debug("backward pass to %s: %d hits, last %s", (until.position, until.steps),
                  len(hits), hits[-1] if hits else None)
        if hits:
            last = [h for h in hits if h.position == hits[-1].position]
            if len(last) > 1 and any(h.ordered is False for h in last):
                # Counted hits say how many, not in which order: replay that span again
                # stopping at every hit.
                start()
                hits = self._pass(until, breakpoints, watchpoints, counted=frozenset(),
                                  conditions=conditions, base=base)
        return hits

    def back_to(self, now: Now) -> None:
        """Return to `now` after a search that found nothing (it left the replay at an
        earlier checkpoint's stretch): replay from the last checkpoint before it."""
        self._origin(now.position, now.base)
        self._pass(now, frozenset(), frozenset())

    def _pass(self, until: Now, breakpoints: frozenset[int],
              watchpoints: frozenset[Watchpoint], counted: frozenset[int] = frozenset(),
              conditions: BreakpointConditions | None = None,
              on_tick: Callable[[], None] | None = None, base: Mid | None = None,
              on_trap: Callable[[Stop], bool] | None = None) -> list[Hit]:
        """Replay forward to `until`, collecting every hit on the way. Breakpoints in
        `counted` are counted by the kernel (hardware counters, no stop per hit) where a
        debug register is free; their hits come per stretch, after that stretch's other hits,
        marked unordered."""
        s = self.s
        hits: list[Hit] = []
        arrivals: Counter[tuple[int, int]] = Counter()
        watch_traps: Counter[int] = Counter()
        counters = _open_counters(s.current_task().tid, counted)
        seen = {c.addr: 0 for c in counters}
        start = s.position

        def origin(position: int) -> Mid | None:
            return base if position == start else None
        armed = (set(breakpoints) - set(seen)) | (set() if until.boundary else {until.pc})
        traps = Traps(s.current_task(), armed, watchpoints)

        def add_counted(position: int) -> None:
            for c in counters:
                total = c.count()
                if total > seen[c.addr]:
                    hits.append(Hit("bp", position, c.addr, total - seen[c.addr],
                                    ordered=False, base=origin(position)))
                seen[c.addr] = total

        def observe(stop: Stop) -> Stop | None:
            if isinstance(stop, SignalStop) and stop.signal == SIGSTOP and self.interrupted():
                raise Paused("interrupt")
            if isinstance(stop, SignalStop) and stop.signal == SIGSTOP and on_tick is not None:
                with traps.lifted():
                    on_tick()
                return None
            if (isinstance(stop, SignalStop) and stop.signal == SIGTRAP
                    and on_trap is not None):
                with traps.lifted():
                    if on_trap(stop):
                        return None
            if (isinstance(stop, SyscallStop) and not until.boundary
                    and s.position == until.position and self.matches(until)):
                raise Paused("now")  # `now` is parked at this syscall's entry (end of trace)
            trap = traps.classify(stop)
            if trap is None or trap.kind in ("own", "other", "step"):
                return stop
            if trap.kind == "watch":
                watch_traps[s.position] += 1
                hits.append(Hit("watch", s.position, count=watch_traps[s.position], wp=trap.wp,
                                base=origin(s.position)))
                return None
            arrivals[(s.position, trap.pc)] += 1
            if not until.boundary and s.position == until.position and trap.pc == until.pc:
                if self.matches(until, planted=True):
                    raise Paused("now")
                log.debug("arrival at %#x does not match now: %s", trap.pc,
                          registers.diff(until.regs, s.current_task().regs_bytes()))
            if trap.pc in breakpoints and condition_holds(conditions, trap.pc,
                                                          s.current_task()):
                hits.append(Hit("bp", s.position, trap.pc, arrivals[(s.position, trap.pc)],
                                base=origin(s.position)))
            after = traps.step_over(trap.pc)
            stepped = traps.after_step(after)
            if stepped is None:
                return after  # the instruction was a syscall (or faulted): replay uses it
            if stepped.kind == "watch":
                watch_traps[s.position] += 1
                hits.append(Hit("watch", s.position, count=watch_traps[s.position],
                                wp=stepped.wp, base=origin(s.position)))
            return None

        s.observer = observe
        try:
            while not (until.boundary and s.position >= until.position):
                if self.interrupted():
                    raise SearchInterrupted(boundary=True)
                position = s.position
                try:
                    ev = s.step()
                except Paused as p:
                    if p.reason == "interrupt":
                        raise SearchInterrupted(boundary=False) from None
                    add_counted(position)  # reached `now` inside this stretch
                    break
                add_counted(position)
                if ev is None:
                    break
                traps.replant(ev)
                if not until.boundary and s.position > until.position:
                    raise LostPosition("lost the current position while searching backwards "
                                       f"(it was in the stretch after event {until.position - 1})")
                for wp in written_watchpoints(ev, watchpoints):
                    hits.append(Hit("kernel", ev.seq, wp=wp))
        finally:
            s.observer = None
            for c in counters:
                c.close()
            if s.task is not None:
                traps.disarm()
        return hits

    def goto_hit(self, hit: Hit, watchpoints: frozenset[Watchpoint]) -> Landing:
        """Position the replay at `hit`: at the breakpoint before its instruction runs, or,
        for a watchpoint, before the instruction (or syscall) that wrote."""
        if hit.kind == "kernel":
            self.before_trigger(hit.position)
            return "mid", None, None
        s = self.s
        if hit.kind == "bp" and hit.count > COUNTER_WORTH and self._goto_counted(hit):
            return "mid", 0, (hit.pc, hit.count)
        self._origin(hit.position, hit.base)
        count = 0
        traps = Traps(s.current_task(), {hit.pc} if hit.kind == "bp" else set(),
                      watchpoints if hit.kind == "watch" else frozenset())

        def observe(stop: Stop) -> Stop | None:
            nonlocal count
            if isinstance(stop, SignalStop) and stop.signal == SIGSTOP and self.interrupted():
                raise Paused("interrupt")
            trap = traps.classify(stop)
            if trap is None or trap.kind in ("own", "other", "step"):
                return stop
            count += 1
            if count == hit.count:
                raise Paused("there")
            if trap.kind == "watch":
                return None
            after = traps.step_over(trap.pc)
            return None if traps.after_step(after) is not None else after

        s.observer = observe
        try:
            while True:
                try:
                    ev = s.step()
                except Paused as p:
                    if p.reason == "interrupt":
                        raise SearchInterrupted(boundary=False) from None
                    break
                if s.position > hit.position:
                    raise ReplayError(f"could not find hit {hit} again")
                traps.replant(ev)
        finally:
            s.observer = None
            if s.task is not None:
                traps.disarm()
        if hit.kind == "watch":
            return self.step_back(self.now(boundary=False, steps=None))
        return "mid", 0, (hit.pc, hit.count)

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
            regs = self.s.current_task().regs
            again = int(done > 0 and regs.rip == hit.pc and not regs.eflags & EFLAGS_RF)
            if not self._run_to_arrival(hit, step + again):
                return False
            done += step
            if (done < hit.count and len(cache.forks) < MAX_ARRIVAL_FORKS
                    and self.s.can_snapshot()):
                cache.forks[done] = self.s.snapshot()
        return True

    def _run_to_arrival(self, hit: Hit, count: int) -> bool:
        """Run to the count-th arrival at hit.pc from here, stopped by a kernel counter."""
        try:
            counter = HwCounter(self.s.current_task().tid, hit.pc, stop_at=count, sig=SIGTRAP)
        except HwCounterError:
            return False
        try:
            if not self._run_to_counted_trap(hit.pc, hit.position):
                raise ReplayError(f"could not find hit {hit} again")
            return True
        finally:
            counter.close()

    # -- reverse-stepi ----------------------------------------------------------------------
    def before_trigger(self, seq: int) -> None:
        """Position just before the instruction that caused event `seq` (a syscall is shown
        at its `syscall` instruction, not yet run)."""
        self.seek(seq)
        s = self.s
        ev = s.next_event
        stop = s.run_once(s.current_task(), api.Req.SYSEMU)
        task = s.current_task()
        if isinstance(stop, SyscallStop):
            task.set_reg("rip", task.regs.rip - 2)
            task.set_reg("rax", task.regs.orig_rax)
            task.set_reg("orig_rax", -1)
            task.flush_regs()
        elif not isinstance(stop, SignalStop) and ev is not None:
            raise s.divergence(ev, "expected the event's trigger", stop)

    def step_back(self, now: Now) -> Landing:
        """Go one instruction back from `now`. Returns where it landed: ('begin', 0, None) at
        the start of history, ('boundary', 0, None), or ('mid', steps, anchor) with steps
        counted from the anchor (None if unknown), itself counted from `self.base`."""
        if now.boundary or (now.steps == 0 and now.anchor is None and now.base is None):
            return self._step_back_over_event(now.position)
        if now.steps == 0 and now.anchor is None:
            assert now.base is not None  # standing on a mid: count from the one before it
            now = Now(now.position, now.regs, False, None, now.digest, None,
                      self.mids.previous(now.base))
        if now.steps == 0:
            assert now.anchor is not None
            pc, k = now.anchor
            if k > 1:  # one iteration back: single-step from the previous arrival
                steps = self._count_steps(now, (pc, k - 1))
                return self._land(now, steps - 1, (pc, k - 1))
        if now.steps is None:
            self._close_in(now)
        if now.steps is None and now.anchor is None:
            short = self._count_short(now)
            if short == 0:  # now is its origin: step back from the origin before it
                return self.step_back(Now(now.position, now.regs, False, 0, now.digest,
                                          None, now.base))
            if short is not None:
                return self._land(now, short - 1, None)
        if now.steps is None or now.steps == 0:
            landed = self._step_back_by_decoding(now)
            if landed is not None:
                return landed
        if now.steps == 0:  # at the first arrival of its anchor: count from the origin
            now = Now(now.position, now.regs, False, None, now.digest, None, now.base)
            self._close_in(now)
            steps = self._count_steps(now, None)
            if steps == 0:  # now is its base itself: from the origin before that
                return self.step_back(Now(now.position, now.regs, False, 0, now.digest,
                                          None, now.base))
            return self._land(now, steps - 1, None)
        steps = now.steps if now.steps is not None else self._count_steps(now, now.anchor)
        return self._land(now, steps - 1, now.anchor)

    def _land(self, now: Now, steps: int, anchor: tuple[int, int] | None) -> Landing:
        self.goto_steps(now.position, steps, anchor, now.base)
        self.base = now.base
        if steps == 0 and anchor is None and now.base is None:
            return "boundary", 0, None
        return "mid", steps, anchor

    def _close_in(self, now: Now) -> None:
        """Bring `now.base` close before `now` when the steps from it are unknown: replay
        from the base to now with a CPU timer ticking and keep the fork made at the last tick
        before now as the new base (a mid); again with a period an eighth of what was left,
        down to CLOSE_MIN_NS of the program's CPU time. What follows (counting arrivals,
        single steps) then covers that short slice only."""
        self.fingerprint(now)
        period = CLOSE_FIRST_NS
        later = self.mids.following(now.base, now.position)
        if later is not None and now.base is not None:  # (now is likely before it)
            period = max(period, (later.clock - now.base.clock) // 8)
        try:  # (from the boundary: it is forked once, as seeking there replays events)
            self._closing_in(now, period)
        finally:
            if self._boundary_fork is not None:
                self._boundary_fork.discard()
                self._boundary_fork = None

    def _closing_in(self, now: Now, period: int) -> None:
        for level in range(CLOSE_LEVELS):
            t0 = time.monotonic()
            if now.base is None and self._boundary_fork is not None:
                self.s.restore(self._boundary_fork)
                self.base = None
            else:
                self._origin(now.position, now.base)
                if now.base is None and self.s.can_snapshot():
                    self._boundary_fork = self.s.snapshot()
            task = self.s.current_task()
            clock0 = now.base.clock if now.base is not None else 0
            last: list[Mid] = []
            try:
                timer = CpuTimer(task.tid, period)
            except CpuTimerError:
                return
            # `now` is the k-th arrival at its pc from the base: a kernel counter stops there
            # once, instead of a stop at every arrival (a breakpoint in a tight loop).
            arrival = now.anchor[1] if now.steps == 0 and now.anchor is not None else None
            counter: HwCounter | None = None
            if arrival is not None:
                try:
                    counter = HwCounter(task.tid, now.pc, stop_at=arrival, sig=SIGTRAP)
                except HwCounterError:
                    counter = None
            counted: dict[Mid, int] = {}

            def tick() -> None:
                if not self.s.can_snapshot():
                    return
                mid = Mid(now.position, self.s.snapshot(), task.regs_bytes(),
                          clock0 + timer.elapsed())
                if counter is not None:
                    counted[mid] = counter.count()
                if last:
                    last.pop().discard()
                last.append(mid)
            self.s.ticks = timer
            try:
                if counter is not None:
                    try:
                        self._run_to_counted(now, tick)
                    except LostPosition as e:
                        log.warning("closing in: %s; stopping at every arrival instead", e)
                        for m in last:
                            m.discard()
                        last.clear()
                        counter.close()
                        counter = None
                        self._origin(now.position, now.base)
                if counter is None:
                    self._pass(now, frozenset(), frozenset(), on_tick=tick)
                total = clock0 + timer.elapsed()
            except BaseException:
                for m in last:
                    m.discard()
                raise
            finally:
                self.s.ticks = None
                timer.close()
                if counter is not None:
                    counter.close()
                drain_stop(task.tid)
            left = total - clock0
            if last:
                mid = last[0]
                self.mids.add(mid, now.base, keep={now.base})
                left = total - mid.clock
                now.base = self.base = mid
                if arrival is not None and counter is not None:
                    now.anchor = (now.pc, arrival - counted[mid])
                else:
                    now.steps, now.anchor = None, None
            log.debug("closing in on %#x (period %d ns): %d ns of CPU time left, in %.3f s",
                      now.pc, period, left, time.monotonic() - t0)
            if period <= CLOSE_MIN_NS or (not last and left <= CLOSE_MIN_NS):
                return
            # Without a tick the slice was shorter than the period (or the program hardly
            # ran in user mode: stopped at every arrival at a hot `now.pc`): shorter ticks.
            period = max(CLOSE_MIN_NS, min(left, period) // 8)

    def _run_to_counted(self, now: Now, tick: Callable[[], None]) -> None:
        """Run (ticking) to `now`, stopped by the kernel counter at its arrival; LostPosition
        if the state reached there is not `now`."""
        if not self._run_to_counted_trap(now.pc, now.position, tick):
            raise LostPosition("counted arrivals missed the current position")
        if not self.matches(now):
            raise LostPosition("the counted arrival is not the current position")

    def _run_to_counted_trap(self, pc: int, position: int,
                             tick: Callable[[], None] | None = None) -> bool:
        """Replay until the SIGTRAP a kernel counter armed at `pc` sends (True), or past the
        stretch after event `position` (False). With `tick`, a SIGSTOP that is not Ctrl-C is
        the CPU timer's: `tick` is called and the program goes on."""
        s = self.s

        def observe(stop: Stop) -> Stop | None:
            if isinstance(stop, SignalStop) and stop.signal == SIGSTOP:
                if self.interrupted():
                    raise Paused("interrupt")
                if tick is not None:
                    tick()
                    return None
            if (isinstance(stop, SignalStop) and stop.signal == SIGTRAP
                    and s.current_task().regs.rip == pc):
                raise Paused("there")
            return stop

        s.observer = observe
        try:
            while True:
                try:
                    s.step()
                except Paused as p:
                    if p.reason == "interrupt":
                        raise SearchInterrupted(boundary=False) from None
                    return True
                if s.position > position:
                    return False
        finally:
            s.observer = None

    def _step_back_over_event(self, position: int) -> Landing:
        if position <= 1:
            self.seek(1)
            return "begin", 0, None
        ev = self.s.reader.event(position - 1)
        if ev.kind == Kind.SIGNAL and ev.info.get("where") != "sync":
            self.seek(position - 1)  # before delivery, nothing ran in between
            return "boundary", 0, None
        if ev.kind == Kind.PREEMPT and ev.info.get("jump"):
            self.seek(position - 1)  # a jump point replaces its stretch: one step (jumps.py)
            return "boundary", 0, None
        if ev.kind == Kind.EXEC:
            return self._step_back_over_event(position - 1)
        self.before_trigger(ev.seq)
        return "mid", None, None

    def goto_anchor(self, position: int, anchor: tuple[int, int] | None,
                    base: Mid | None = None) -> None:
        """Go to the origin (the mid `base`, or the boundary `position`), then to the
        anchor's arrival if there is one."""
        if anchor is None:
            self._origin(position, base)
        else:
            self.goto_hit(Hit("bp", position, anchor[0], anchor[1], base=base), frozenset())

    def _step_back_by_decoding(self, now: Now) -> Landing | None:
        """Cheap reverse-stepi for a state whose step count is unknown: guess the previous
        instruction as the one that ends right before the pc (decoded with capstone, not a
        jump), count its arrivals from the origin up to `now` with a kernel counter, go to the
        last one and check that one step reaches `now`. None if the guess does not hold
        (the previous instruction jumped here): the caller single-steps the stretch."""
        self.fingerprint(now)
        mem = self.s.current_task().mem
        pc = now.pc
        regs = registers.unpack(now.regs)
        # x86 decodes backwards ambiguously (the last byte of `mov %rax,-0x8(%rbp)` is a
        # `clc`): every fall-through instruction that ends at pc is a candidate, the one
        # never reached before now costs one short counting pass.
        candidates = _previous_instructions(mem.read_upto(pc - 16, 16), pc)
        # At a function's first instruction, the previous one is usually the call that
        # pushed the return address now at the top of the stack.
        ret = int.from_bytes(mem.read_upto(regs["rsp"], 8), "little")
        if ret:
            candidates.append(_previous_instruction(mem.read_upto(ret - 16, 16), ret,
                                                    want_call=True))
        # Else a jump led here (an `if` without else, a loop's exit): the direct jumps to pc
        # in the code around it, looked for only when the others were not it.
        # (read now: the passes below replace the process `mem` reads)
        start, code = _code_around(mem.read_upto, pc)

        def all_candidates() -> Iterator[int | None]:
            yield from candidates
            yield from _jumps_to(start, code, pc)
        tried: set[int] = set()
        closed = False
        for candidate in all_candidates():
            if candidate is None or candidate in tried:
                continue
            tried.add(candidate)
            t0 = time.monotonic()
            try:
                arrivals = self._arrivals_before(now, candidate, None if closed else
                                                 ARRIVALS_BEFORE_CLOSING)
            except TooManyArrivals:
                # A loop's back edge far from the origin: close in on now first, then
                # count only in the last slice.
                self._close_in(now)
                closed = True
                arrivals = self._arrivals_before(now, candidate)
            log.debug("%d arrivals at %#x before now, counted in %.3f s", arrivals, candidate,
                      time.monotonic() - t0)
            if not arrivals:
                continue
            anchor = (candidate, arrivals)
            t0 = time.monotonic()
            self._from_step_cache(now.position, 0, anchor, now.base)
            task = self.s.current_task()
            log.debug("went to arrival %d in %.3f s", arrivals, time.monotonic() - t0)
            # A few steps, not one: a call reaches a library function through its PLT
            # entry (`jmp *GOT`), which no decoding backwards finds.
            for hop in range(DECODE_HOPS):
                task.resume(api.Req.SYSEMU_SINGLESTEP)
                stop = task.wait()
                if self.matches(now):
                    return self._land(now, hop, anchor)
                if not _is_step(stop):
                    break
        return None

    def _arrivals_before(self, now: Now, addr: int, limit: int | None = None) -> int:
        """How many times the stretch of `now` reaches `addr` from the origin (the base or
        the boundary) before `now` (kernel-counted). The counter stops the program every
        ARRIVAL_FORK_EVERY arrivals to leave a fork in the arrival cache, so going to the
        last arrival afterwards replays only the last few hundred. TooManyArrivals past
        `limit` (each costs a debug exception: 4 µs on some machines, 70 on others)."""
        self._origin(now.position, now.base)
        self._drop_arrival_cache()
        cache = self._arrivals = ArrivalCache(now.position, now.base, addr)
        task = self.s.current_task()
        done = 0

        def counter(again: int) -> HwCounter:
            return HwCounter(task.tid, addr, stop_at=ARRIVAL_FORK_EVERY + again, sig=SIGTRAP)
        try:
            current = [counter(0)]
        except HwCounterError:
            return 0
        recount = 0  # the current counter counts the arrival it started at (no resume flag)

        def on_trap(stop: Stop) -> bool:
            nonlocal done, recount
            if task.regs.rip != addr:
                return False  # not the counter's stop (that is before the instruction)
            if limit is not None and done + ARRIVAL_FORK_EVERY >= limit:
                raise TooManyArrivals(addr)
            current.pop().close()
            done += ARRIVAL_FORK_EVERY
            if len(cache.forks) < MAX_ARRIVAL_FORKS and self.s.can_snapshot():
                cache.forks[done] = self.s.snapshot()
            recount = int(not task.regs.eflags & EFLAGS_RF)
            current.append(counter(recount))
            return True
        try:
            self._pass(now, frozenset(), frozenset(), on_trap=on_trap)
            return done + current[0].count() - recount
        finally:
            for c in current:
                c.close()

    def _count_steps(self, now: Now, anchor: tuple[int, int] | None) -> int:
        """Instructions from `anchor` (or the origin) to `now`, by single-stepping."""
        self.fingerprint(now)
        self._from_step_cache(now.position, 0, anchor, now.base)
        task = self.s.current_task()
        if self.matches(now):
            return 0
        started = noted = time.monotonic()
        for n in range(1, MAX_STEPS):
            task.resume(api.Req.SYSEMU_SINGLESTEP)
            stop = task.wait()
            if self.matches(now):
                return n  # (a syscall entry too: the end of the trace is parked at one)
            if n % 65536 == 0 and time.monotonic() - noted > 5:
                noted = time.monotonic()
                log.warning("stepping back: single-stepped %d instructions of a long stretch "
                            "without syscalls so far (%.0f s)", n, noted - started)
            if not _is_step(stop):
                break  # the stretch ended (a syscall, a fault) without meeting `now`
        raise ReplayError("could not find the current position by single-stepping")

    def _count_short(self, now: Now) -> int | None:
        """Instructions from the origin to `now` if there are at most SHORT_SLICE (what a
        program runs between a system call and the next stop is often a line or two), by
        single-stepping, with a fork every SHORT_FORK steps in the step cache: the step
        backs that follow (gdb sends one `bs` per instruction of a line) then each restore a
        fork and step a few instructions, instead of counting arrivals again (two passes
        each). None if `now` is further."""
        self.fingerprint(now)
        cache, _ = self._from_step_cache(now.position, 0, None, now.base)
        task = self.s.current_task()
        if self.matches(now):
            return 0
        for done in range(SHORT_SLICE):
            if (done and done % SHORT_FORK == 0 and done not in cache.forks
                    and self.s.can_snapshot()):
                cache.forks[done] = self.s.snapshot(steps=done)
            task.resume(api.Req.SYSEMU_SINGLESTEP)
            stop = task.wait()
            if self.matches(now):
                return done + 1
            if not _is_step(stop):
                return None  # the stretch ended (a syscall, a fault) without meeting `now`
        return None

    def goto_steps(self, position: int, steps: int,
                   anchor: tuple[int, int] | None = None, base: Mid | None = None) -> None:
        """Go to `steps` instructions after the anchor (or origin), via cached forks."""
        cache, done = self._from_step_cache(position, steps, anchor, base)
        task = self.s.current_task()
        while done < steps:
            if (done and done % STEP_CACHE == 0 and done not in cache.forks
                    and self.s.can_snapshot()):
                cache.forks[done] = self.s.snapshot(steps=done)
            task.resume(api.Req.SYSEMU_SINGLESTEP)
            stop = task.wait()
            if not (isinstance(stop, SignalStop) and _is_step(stop)):
                raise ReplayError(f"single-stepping stretch {position} met {stop}")
            done += 1
        self.base = base

    def _from_step_cache(self, position: int, steps: int, anchor: tuple[int, int] | None,
                         base: Mid | None = None) -> tuple[StepCache, int]:
        """Restore the cached fork closest before `steps` from the anchor; the first time,
        go to the anchor (maybe costly: a run to the k-th arrival) and fork it there."""
        cache = self._steps
        if cache is None or (cache.position, cache.anchor, cache.base) != (position, anchor,
                                                                           base):
            self._drop_step_cache()
            cache = self._steps = StepCache(position, anchor, base)
        key = max((k for k in cache.forks if k <= steps), default=None)
        if key is None:
            self.goto_anchor(position, anchor, base)
            if self.s.can_snapshot():
                cache.forks[0] = self.s.snapshot()
            return cache, 0
        cp = cache.forks[key]
        self.s.restore(cp)
        self.base = base
        return cache, key

    def _drop_arrival_cache(self) -> None:
        if self._arrivals is not None:
            self._arrivals.clear()
            self._arrivals = None

    def _drop_step_cache(self) -> None:
        if self._steps is not None:
            for cp in self._steps.forks.values():
                cp.discard()
            self._steps = None


_DISASM = None


def _previous_instructions(code: bytes, pc: int) -> list[int | None]:
    """Every address where an instruction that falls through to `pc` could start."""
    found: list[int | None] = []
    skip = 0
    while len(found) < 8:
        start = _previous_instruction(code, pc, skip=skip)
        if start is None:
            break
        found.append(start)
        skip = pc - start
    return found


def _previous_instruction(code: bytes, pc: int, want_call: bool = False,
                          skip: int = 0) -> int | None:
    """The address of an instruction that ends exactly at `pc` and falls through to it (not a
    jump, call or return; with `want_call`, a call), decoding the 16 bytes before pc; None
    if there is none."""
    global _DISASM
    import capstone
    if _DISASM is None:
        _DISASM = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
        _DISASM.detail = True
    for length in range(skip + 1, min(15, len(code)) + 1):
        start = pc - length
        insns = list(_DISASM.disasm(code[len(code) - length:], start, 1))
        if insns and insns[0].size == length:
            groups = set(insns[0].groups)
            if want_call:
                if capstone.CS_GRP_CALL in groups:
                    return start
            elif not (groups & {capstone.CS_GRP_CALL, capstone.CS_GRP_RET, capstone.CS_GRP_INT,
                                capstone.CS_GRP_IRET}
                      or insns[0].mnemonic in ("jmp", "ljmp")):
                return start  # (a conditional jump may fall through)
    return None


_SWEEP = None
JUMP_WINDOW = 2048  # bytes of code searched on each side of pc for jumps to it


def _code_around(read: Callable[[int, int], bytes], pc: int) -> tuple[int, bytes]:
    """Up to JUMP_WINDOW bytes of code on each side of pc (less before it where the mapping
    starts closer): where the first byte is, and the bytes."""
    for start in (pc - JUMP_WINDOW, pc & ~0xFFF, pc):
        code = read(start, pc + JUMP_WINDOW - start)
        if code:
            return start, code
    return pc, b""


def _jumps_to(start: int, code: bytes, pc: int) -> list[int]:
    """Addresses of direct jumps and conditional jumps to `pc` in `code` (at `start`), by
    linear sweeps from its start (x86 resynchronises within a few instructions) and from
    pc itself; a wrong guess only costs a counting pass."""
    global _SWEEP
    import capstone
    if _SWEEP is None:
        _SWEEP = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
        _SWEEP.skipdata = True
    found: list[int] = []
    for offset in sorted({0, pc - start}):
        for address, _, mnemonic, operand in _SWEEP.disasm_lite(code[offset:], start + offset):
            op = mnemonic.split()[-1] if mnemonic else ""
            if ((op.startswith("j") or op.startswith("loop")) and operand.startswith("0x")
                    and int(operand, 16) == pc and address not in found):
                found.append(address)
    return found


def _open_counters(tid: int, addrs: frozenset[int]) -> list[HwCounter]:
    """Kernel counters for as many of `addrs` as there are free debug registers."""
    counters = []
    for addr in sorted(addrs):
        try:
            counters.append(HwCounter(tid, addr))
        except HwCounterError:
            break
    return counters


def _is_step(stop: Stop) -> bool:
    import signal
    return isinstance(stop, SignalStop) and stop.signal == signal.SIGTRAP
