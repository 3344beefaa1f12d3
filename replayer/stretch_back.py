"""reverse-stepi: the state one instruction before "now".

At an event boundary it is the instruction that caused the event (a syscall is shown before
it runs): the caller says how to cross an event (`cross`: replayer.crossing, for the stepped
thread). Inside a stretch only one thread runs, so the search is the same for one task or
many:

- `now` counted from an anchor arrival (a state reverse-continue found): the previous arrival,
  then single steps over one loop iteration;
- otherwise close in on now first (replayer.closing_in), then guess the previous instruction
  by decoding backwards (replayer.decode_back), count its arrivals before now with a kernel
  counter, go to the last one and check that one step reaches now;
- when the count is unknown, first single-step up to SHORT_SLICE instructions from the
  origin (a stretch from a system call to the next stop is often that short; the forks left
  every SHORT_FORK steps make the next steps back of the line cheap);
- a decoded candidate's arrival may lead to now in up to DECODE_HOPS steps (a PLT entry's
  `jmp *GOT`), and direct jumps to pc are candidates too; counting a candidate's arrivals
  stops after ARRIVALS_BEFORE_CLOSING and closes in on now first;
- failing that, single-step from the origin (the base or the boundary).

Forks every STEP_CACHE single steps and every ARRIVAL_FORK_EVERY counted arrivals are kept for
the current stretch, so the next steps back are cheap.
"""
from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable

from tracee import ptrace_api as api
from tracee.hwcount import HwCounter, HwCounterError
from tracee.stops import SignalStop, Stop
from tracee.task import Task

from replayer import registers
from replayer.decode_back import (
    candidates_then_jumps,
    code_around,
    previous_instruction,
    previous_instructions,
)
from replayer.errors import ReplayError
from replayer.midpoints import ARRIVAL_FORK_EVERY, MAX_ARRIVAL_FORKS, ArrivalCache, Mid
from replayer.positions import BOUNDARY, Hit, Land, Landing, Position
from replayer.session import ReplaySession
from replayer.snapshot import Snapshot
from replayer.timeline_core import MAX_STEPS, StepCache, TimelineCore, replace

log = logging.getLogger(__name__)

STEP_CACHE = 512
SHORT_SLICE = 512  # single steps tried to find a state's count before decoding backwards
SHORT_FORK = 64  # steps between the forks left while trying
DECODE_HOPS = 4  # steps from a decoded candidate's arrival that may lead to now
ARRIVALS_BEFORE_CLOSING = 1024  # counted from the origin before closing in on now
EFLAGS_RF = 1 << 16


class TooManyArrivals(Exception):
    """Counting arrivals at an address passed its limit (ArrivalCounting `limit`)."""


class ArrivalCounting:
    """Kernel counters that count a thread's arrivals at `addr` and stop it every
    ARRIVAL_FORK_EVERY of them, where a fork is kept in `cache`. TooManyArrivals past
    `limit` (each costs a debug exception: 4 µs on some machines, 70 on others)."""

    def __init__(self, session: ReplaySession, task: Task, addr: int,
                 cache: ArrivalCache, limit: int | None = None) -> None:
        self.s, self.task, self.addr, self.cache = session, task, addr, cache
        self.limit = limit
        self.done = 0
        self.recount = 0  # the current counter counts the arrival it started at (no RF)
        self.counter: HwCounter | None = self._counter(0)

    def _counter(self, again: int) -> HwCounter:
        return HwCounter(self.task.tid, self.addr, stop_at=ARRIVAL_FORK_EVERY + again,
                         sig=signal.SIGTRAP)

    def on_trap(self, stop: Stop) -> bool:
        """A SIGTRAP: the counter's (True: a fork is kept, counting goes on)?"""
        if self.task.regs.rip != self.addr:
            return False  # not the counter's stop (that is before the instruction)
        if self.limit is not None and self.done + ARRIVAL_FORK_EVERY >= self.limit:
            raise TooManyArrivals(self.addr)
        self.close()
        self.done += ARRIVAL_FORK_EVERY
        snap = self.s.optional_snapshot() if len(self.cache.forks) < MAX_ARRIVAL_FORKS else None
        if snap is not None:
            self.cache.forks[self.done] = snap
        self.recount = int(not self.task.regs.eflags & EFLAGS_RF)
        self.counter = self._counter(self.recount)
        return True

    def total(self) -> int:
        current = self.counter.count() if self.counter is not None else 0
        return self.done + current - self.recount

    def close(self) -> None:
        if self.counter is not None:
            self.counter.close()
            self.counter = None


class StretchBack(TimelineCore):
    def step_back(self, now: Position, cross: Callable[[int], Landing]) -> Landing:
        """Go one instruction back from `now`: BEGIN at the start of history, BOUNDARY, or MID
        with steps counted from the anchor (None if unknown), itself counted from
        `self.base`. At the start of now's stretch, `cross(position)` goes back over the
        event before it."""
        if now.boundary or (now.steps == 0 and now.anchor is None and now.base is None):
            return cross(now.position)
        if now.steps == 0 and now.anchor is None:
            assert now.base is not None  # standing on a mid: count from the one before it
            now = replace(now, steps=None, base=self.mids.previous(now.base))
        if now.steps == 0:
            assert now.anchor is not None
            pc, k = now.anchor
            if k > 1:  # one iteration back: single-step from the previous arrival
                steps = self._count_steps(now, (pc, k - 1))
                return self._land(now, steps - 1, (pc, k - 1))
        closed, origin = now.steps is None, now.base
        if closed:
            self._close_in(now)
        if now.steps is None and now.anchor is None and (now.base is None
                                                        or now.base is origin):
            # (From a mid closing in just made at a tick, a random instruction, now is
            # rarely within SHORT_SLICE instructions: its forks would cost more than
            # decoding.)
            short = self._count_short(now)
            if short == 0:  # now is its origin: step back from the origin before it
                return self.step_back(replace(now, steps=0), cross)
            if short is not None:
                return self._land(now, short - 1, None)
        if now.steps is None or now.steps == 0:
            landed = self._step_back_by_decoding(now, closed)
            if landed is not None:
                return landed
        if now.steps == 0:  # at the first arrival of its anchor: count from the origin
            now = replace(now, steps=None, anchor=None)
            self._close_in(now)
            steps = self._count_steps(now, None)
            if steps == 0:  # now is its base itself: from the origin before that
                return self.step_back(replace(now, steps=0), cross)
            return self._land(now, steps - 1, None)
        steps = now.steps if now.steps is not None else self._count_steps(now, now.anchor)
        if steps == 0:  # now is its origin (a mid, or the anchor's arrival): from before it
            return self.step_back(replace(now, steps=0), cross)
        return self._land(now, steps - 1, now.anchor)

    def _land(self, now: Position, steps: int, anchor: tuple[int, int] | None) -> Landing:
        if steps < 0:  # (never: a landing there would be `now` again, a step back that stays)
            raise ReplayError(f"stepping back counted {steps} instructions from the origin")
        self.goto_steps(now.position, steps, anchor, now.base)
        self.base = now.base
        if steps == 0 and anchor is None and now.base is None:
            return BOUNDARY
        return Landing(Land.MID, now.tid, steps, anchor)

    def goto_anchor(self, position: int, anchor: tuple[int, int] | None,
                    base: Mid | None = None) -> None:
        """Go to the origin (the mid `base`, or the boundary `position`), then to the
        anchor's arrival if there is one."""
        if anchor is None:
            self._origin(position, base)
        else:
            self.goto_hit(Hit("bp", position, anchor[0], anchor[1], base=base), frozenset())

    def _step_back_by_decoding(self, now: Position, closed: bool = False) -> Landing | None:
        """Cheap reverse-stepi for a state whose step count is unknown: guess the previous
        instruction as the one that ends right before the pc (decoded with capstone, not a
        jump), count its arrivals from the origin up to `now` with a kernel counter, go to the
        last one and check that one step reaches `now`. None if the guess does not hold
        (the previous instruction jumped here): the caller single-steps the stretch.
        `closed`: the origin is as close as closing in gets (count all arrivals at once)."""
        self.fingerprint(now)
        mem = self._task().mem
        pc = now.pc
        regs = registers.unpack(now.regs)
        # x86 decodes backwards ambiguously (the last byte of `mov %rax,-0x8(%rbp)` is a
        # `clc`): every fall-through instruction that ends at pc is a candidate, the one
        # never reached before now costs one short counting pass.
        candidates = previous_instructions(mem.read_upto(pc - 16, 16), pc)
        # At a function's first instruction, the previous one is usually the call that
        # pushed the return address now at the top of the stack.
        ret = int.from_bytes(mem.read_upto(regs["rsp"], 8), "little")
        if ret:
            candidates.append(previous_instruction(mem.read_upto(ret - 16, 16), ret,
                                                   want_call=True))
        # Else a jump led here (an `if` without else, a loop's exit): the direct jumps to pc
        # in the code around it (read now: the passes below replace the process `mem` reads).
        start, code = code_around(mem.read_upto, pc)
        for candidate in candidates_then_jumps(candidates, start, code, pc):
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
            task = self._task()
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

    def _arrivals_before(self, now: Position, addr: int, limit: int | None = None) -> int:
        """How many times the stretch of `now` reaches `addr` from the origin (the base or
        the boundary) before `now` (kernel-counted). The counter stops the program every
        ARRIVAL_FORK_EVERY arrivals to leave a fork in the arrival cache, so going to the
        last arrival afterwards replays only the last few hundred. TooManyArrivals past
        `limit`."""
        self._origin(now.position, now.base)
        self._drop_arrival_cache()
        cache = self._arrivals = ArrivalCache(now.position, now.base, addr)
        try:
            counting = ArrivalCounting(self.s, self._task(), addr, cache, limit)
        except HwCounterError:
            return 0
        try:
            self._pass(now, on_trap=counting.on_trap)
            return counting.total()
        finally:
            counting.close()

    def _count_steps(self, now: Position, anchor: tuple[int, int] | None) -> int:
        """Instructions from `anchor` (or the origin) to `now`, by single-stepping."""
        self.fingerprint(now)
        self._from_step_cache(now.position, 0, anchor, now.base)
        task = self._task()
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

    def _count_short(self, now: Position) -> int | None:
        """Instructions from the origin to `now` if there are at most SHORT_SLICE (what a
        program runs between a system call and the next stop is often a line or two), by
        single-stepping, with a fork every SHORT_FORK steps in the step cache: the step
        backs that follow (gdb sends one `bs` per instruction of a line) then each restore a
        fork and step a few instructions, instead of counting arrivals again (two passes
        each). None if `now` is further."""
        self.fingerprint(now)
        cache, _ = self._from_step_cache(now.position, 0, None, now.base)
        task = self._task()
        if self.matches(now):
            return 0
        for done in range(SHORT_SLICE):
            if done and done % SHORT_FORK == 0 and done not in cache.forks:
                _keep(cache.forks, done, self.s.optional_snapshot(steps=done))
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
        task = self._task()
        while done < steps:
            if done and done % STEP_CACHE == 0 and done not in cache.forks:
                _keep(cache.forks, done, self.s.optional_snapshot(steps=done))
            task.resume(api.Req.SYSEMU_SINGLESTEP)
            stop = task.wait()
            if not _is_step(stop):
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
            _keep(cache.forks, 0, self.s.optional_snapshot())
            return cache, 0
        cp = cache.forks[key]
        self.s.restore(cp)
        self.base = base
        return cache, key


def _is_step(stop: Stop) -> bool:
    return isinstance(stop, SignalStop) and stop.signal == signal.SIGTRAP


def _keep(forks: dict[int, Snapshot], done: int, snap: Snapshot | None) -> None:
    """A fork `done` instructions into the stretch, for later steps back, if one was made."""
    if snap is not None:
        forks[done] = snap
