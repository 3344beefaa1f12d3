"""Replaying SIGNAL events: reach the recorded delivery point, then let the kernel deliver the
recorded siginfo, and put the recorded frame and handler registers in place.

Points (see recorder.signals): "sync" faults recur by themselves; "after_syscall" and
"before_syscall" are exact syscall boundaries; "user" is found by a hardware breakpoint on the
recorded pc, checking all registers and a memory digest at each hit; "preempted" is where the
thread's PREEMPT event just before left it (a point replay jumps to, replayer.jumps).
"""
from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from typing import Protocol

from tracee import fastloop
from tracee import ptrace_api as api
from tracee.digest import matches_recorded, ranges_digest, scratch_ranges
from tracee.stops import EventStop, SignalStop, Stop, SyscallStop
from tracee.syscalls.queries import WAIT_MASKS
from tracee.syscalls.rules import ARG_REGS
from tracee.sysnums import name_of
from tracee.task import MemoryAccessError, Task
from tracefile.records import Event

from replayer import registers
from replayer.errors import Paused, ReplayDivergence
from replayer.fastpath import PointFinder
from replayer.jumps import jump_to
from replayer.rebuild import write_memory
from replayer.tasks import TaskSet

log = logging.getLogger(__name__)

# Debug register 3 is relive's own (finding signal points); 0-2 serve gdb's watchpoints.
MATCH_SLOT = fastloop.OWN_SLOT
DR7_MATCH_ENABLE = 1 << (2 * MATCH_SLOT)
DR6_MATCH_HIT = 1 << MATCH_SLOT
MAX_HITS = 10_000_000
FINDER_BUDGET_NS = 1_000_000_000  # the compiled search returns this often to note progress


class SignalHost(Protocol):
    """What signal replay needs of the replay session (replayer.session.ReplaySession)."""
    taskset: TaskSet
    dying: set[int]
    running: bool
    signal_ready: int | None
    wants_signal_stop: Callable[[int], bool]

    def event_task(self, ev: Event) -> Task: ...
    def resume_until_stop(self, ev: Event) -> Stop: ...
    def run_once(self, task: Task, request: api.Req | None = None) -> Stop: ...
    def take_back(self, task: Task, reason: int, status: int) -> None: ...
    def check_regs(self, ev: Event, what: str, skip: tuple[str, ...] = ()) -> None: ...
    def divergence(self, ev: Event, what: str, stop: Stop | None = None,
                   diff: dict[str, tuple[int, int]] | None = None) -> ReplayDivergence: ...


class SignalReplayer:
    def __init__(self, session: SignalHost) -> None:
        self.s = session
        lib = fastloop.load()
        self._finder = PointFinder(lib) if lib is not None else None

    def replay(self, ev: Event) -> None:
        if self.s.signal_ready != ev.seq:
            self._reach(ev)
            self.s.check_regs(ev, f"delivery of {_name(ev.nr)}")
            self.s.signal_ready = ev.seq
            if self.s.wants_signal_stop(ev.nr):
                raise Paused(("signal", ev))
        self.s.signal_ready = None
        self._deliver(ev)

    def _reach(self, ev: Event) -> None:
        """Bring the task to the recorded delivery point, at a signal-delivery-stop."""
        where = ev.info["where"]
        task = self.s.event_task(ev)
        self.s.taskset.settle(task)  # a vfork parent: vfork's recorded result first
        sig = ev.nr
        if where == "sync":
            stop = self.s.resume_until_stop(ev)
            if not (isinstance(stop, SignalStop) and stop.signal == sig):
                raise self.s.divergence(ev, f"expected signal {_name(sig)}", stop)
        elif task.tid in self.s.taskset.entered:  # it cut short the call the task waits in
            self._interrupt_parked(ev, task)
            self._raise(ev, task)
        elif where == "preempted":  # the PREEMPT event before it left the task there
            self._raise(ev, task)
            _orig_rax_as_recorded(task, ev)
        elif where in ("after_syscall", "before_syscall"):
            if where == "before_syscall":
                stop = self.s.resume_until_stop(ev)
                if not isinstance(stop, SyscallStop):
                    raise self.s.divergence(ev, f"expected a syscall before {_name(sig)}", stop)
                task.set_reg("rip", task.regs.rip - 2)
                task.set_reg("rax", task.regs.orig_rax)
                task.set_reg("orig_rax", -1)
            else:
                _let_in(task, sig)
                _orig_rax_as_recorded(task, ev)
            self._raise(ev, task)
        else:
            self._reach_user_point(ev)

    def _raise(self, ev: Event, task: Task) -> None:
        """Have the kernel deliver the event's signal where the task stands: a
        signal-delivery-stop."""
        api.tgkill(task.pid, task.tid, ev.nr)
        task.resume(api.Req.SYSEMU)
        stop = task.wait(past_sigstop=ev.nr != signal.SIGSTOP)
        while ev.nr == signal.SIGCONT and isinstance(stop, EventStop) \
                and stop.event == api.Event.STOP:
            # SIGCONT resumes the whole (ptrace-seized) process first: the kernel reports
            # that as an event stop, then the signal itself (gpg-agent wakes itself so).
            task.resume(api.Req.SYSEMU)
            stop = task.wait()
        if not (isinstance(stop, SignalStop) and stop.signal == ev.nr):
            raise self.s.divergence(ev, f"expected signal {_name(ev.nr)} to be delivered", stop)

    def _interrupt_parked(self, ev: Event, task: Task) -> None:
        """The signal cut short the blocking call the task is parked in (ENTER). When
        recorded, it came where the call returned (rip after the `syscall`), or once the
        kernel had set up the call's restart (rip on the `syscall`, rax the call or
        restart_syscall): the recorded registers say which. Put the task in that state
        instead of running it (the call itself is never replayed)."""
        here = task.regs.rip
        if registers.unpack(ev.regs)["rip"] not in (here, here - 2):
            raise self.s.divergence(ev, f"{_name(ev.nr)} came at another place than the call "
                                        f"the thread waits in (at {here - 2:#x})")
        self.s.taskset.entered.discard(task.tid)
        task.set_regs_from(ev.regs)

    def reach_point(self, ev: Event) -> None:
        """A PREEMPT event: stop where the thread was preempted (at a debug trap), or give
        it the recorded state there (a point recorded to be jumped to: replayer.jumps)."""
        if ev.info.get("jump"):
            task = self.s.event_task(ev)
            self.s.taskset.settle(task)
            jump_to(task, ev)
            return
        self._find_point(ev, "where the thread was preempted")

    def _reach_user_point(self, ev: Event) -> None:
        """Stop where the signal was delivered, then have the kernel deliver it there."""
        task = self.s.event_task(ev)
        self._find_point(ev, f"where {_name(ev.nr)} was delivered")
        self._raise(ev, task)  # (in place of the breakpoint's SIGTRAP stop we sit at)

    def _find_point(self, ev: Event, what: str) -> None:
        """Stop at the recorded pc until registers and memory match the recording."""
        task = self.s.event_task(ev)
        self.s.taskset.settle(task)
        rip = ev.info["rip"]
        api.set_debugreg(task.tid, MATCH_SLOT, rip)
        dr7 = api.get_debugreg(task.tid, 7)
        api.set_debugreg(task.tid, 7, dr7 | DR7_MATCH_ENABLE)
        started = last_note = time.monotonic()
        hits = 0
        try:
            while True:
                if hits >= MAX_HITS:
                    raise self.s.divergence(ev, f"gave up looking for the point {what} after "
                                                f"{MAX_HITS} hits")
                if time.monotonic() - last_note > 5:
                    last_note = time.monotonic()
                    log.warning("still looking for %s: pc %#x executed %d times so far "
                                "(%.0f s, %.0f per second); a thread that computes without "
                                "syscalls replays slowly without a hardware PMU", what, rip,
                                hits, last_note - started, hits / (last_note - started))
                stop, counted = self._next_hit(task, rip, ev.regs, MAX_HITS - hits)
                hits += counted
                if stop is None:
                    continue  # the compiled search's time is up: note progress, go on
                if not (isinstance(stop, SignalStop) and stop.signal == signal.SIGTRAP
                        and task.regs.rip == rip):
                    raise self.s.divergence(
                        ev, f"never reached the point {what} (pc {rip:#x})", stop)
                if self.at_point(ev, task):
                    break
        finally:
            api.set_debugreg(task.tid, 7, api.get_debugreg(task.tid, 7) & ~DR7_MATCH_ENABLE)
            # The kernel keeps DR6 until the next debug trap: our hit's bit left there made
            # the int3 of a breakpoint at the handler's first instruction look like one of
            # ours (replayer.traps), and the replay went on to a stray SIGTRAP.
            if api.get_debugreg(task.tid, 6) & DR6_MATCH_HIT:
                api.set_debugreg(task.tid, 6, 0)

    def at_point(self, ev: Event, task: Task) -> bool:
        """Is `task` (stopped) where the point of `ev` (a PREEMPT, a SIGNAL in user code) was
        recorded: same registers, and the same memory near them and in all (but relive's
        scratch areas, whose contents differ between record and replay)?"""
        if registers.diff(ev.regs, task.regs_bytes()):
            return False
        if "near" in ev.info and ev.info["near_digest"] != ranges_digest(task.mem.read_upto,
                                                                         ev.info["near"]):
            return False
        if "digest" not in ev.info:  # a point jumped to, never reached by running
            return False
        proc = self.s.taskset.procs.get(ev.tid)
        skip = scratch_ranges(proc.space if proc else None)
        return matches_recorded(task.pid, task.mem.read_upto, str(ev.info["digest"]), skip,
                                rsp=task.regs.rsp)

    def _next_hit(self, task: Task, rip: int, regs: bytes, budget: int) -> tuple[Stop | None, int]:
        """Run `task` to its next stop worth checking, and how many hits of the breakpoint
        that took. In compiled code (tracee.fastloop) hits at other registers are passed over
        without a trip through Python (1.4-2x as many hits a second here: the ptrace stop
        itself is the rest); the stop it ends at goes through the session's observers as any
        other. (None, n): its time was up."""
        if self._finder is None or len(regs) != api.REGS_SIZE:  # (C reads REGS_SIZE bytes)
            return self.s.run_once(task, api.Req.SYSEMU), 1
        task.hand_over(api.Req.SYSEMU)
        self.s.running = True
        try:
            found = self._finder.run(task.tid, rip, regs, budget,
                                     time.monotonic_ns() + FINDER_BUDGET_NS)
        finally:
            self.s.running = False
        if found.reason == fastloop.PARKED:
            return None, found.hits
        if found.reason == fastloop.ERROR:
            raise api.PtraceError(found.errno, f"ptrace of task {task.tid} failed while "
                                  f"looking for the point at {rip:#x}")
        self.s.take_back(task, found.reason, found.status)
        return self.s.run_once(task, api.Req.SYSEMU), found.hits

    def _deliver(self, ev: Event) -> None:
        task = self.s.event_task(ev)
        api.set_siginfo(task.tid, bytes.fromhex(ev.info["siginfo"]))
        if ev.info.get("fatal"):
            task.resume(api.Req.CONT, ev.nr)
            self.s.dying |= self.s.taskset.dying_with(task, whole_process=True)
            return
        task.resume(api.Req.SINGLESTEP, ev.nr)
        stop = task.wait()
        if not (isinstance(stop, SignalStop) and stop.signal == signal.SIGTRAP):
            raise self.s.divergence(ev, f"{_name(ev.nr)} handler did not start", stop)
        write_memory(task, ev)
        if "handler_regs" in ev.info:
            task.set_regs_from(bytes.fromhex(ev.info["handler_regs"]))


def _let_in(task: Task, sig: int) -> None:
    """pselect6, ppoll, epoll_pwait and rt_sigsuspend wait with a temporary signal mask, which
    let `sig` in when recorded; replay emulates the call, so the kernel never installed that
    mask and would keep `sig` pending. Install it for the delivery: the handler then runs
    with the recorded mask, and the recorded signal frame holds the program's own mask, which
    sigreturn restores, as when recorded."""
    bit = 1 << (sig - 1)
    mask = api.get_sigmask(task.tid)
    if not mask & bit:
        return
    temporary = _temporary_mask(task)
    if temporary is None or temporary & bit:
        temporary = mask & ~bit
    api.set_sigmask(task.tid, temporary)


def _orig_rax_as_recorded(task: Task, ev: Event) -> None:
    """At a signal's delivery the kernel reads orig_rax only to decide whether a syscall is
    in progress (and to restart it if rax is an -ERESTART* code). Replay and recording may
    differ there by one side having none (-1): a signal recorded right after a syscall that
    came a moment later from user mode (a timer's interrupt before the next instruction), or
    a thread preempted on its way out of a syscall, whose point replay reaches by a jump or a
    breakpoint (both leave -1). The recorded value delivers the signal as recorded; two
    different call numbers are a divergence, left to check_regs."""
    recorded = registers.unpack(ev.regs)["orig_rax"]
    if -1 in (api.signed(recorded), api.signed(task.regs.orig_rax)):
        task.set_reg("orig_rax", recorded)


def _temporary_mask(task: Task) -> int | None:
    """The mask the syscall the task just made waits with, if it takes one."""
    regs = task.regs
    name = name_of(regs.orig_rax) if regs.orig_rax < 1 << 63 else ""
    where = WAIT_MASKS.get(name)
    if where is None:
        return None
    pointer = getattr(regs, ARG_REGS[where.arg])
    try:
        if where.indirect and pointer:  # -> {const sigset_t *, size_t}
            pointer = int.from_bytes(task.mem.read(pointer, 8), "little")
        if not pointer:
            return None
        return int.from_bytes(task.mem.read(pointer, 8), "little")
    except MemoryAccessError:
        return None


def _name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"
