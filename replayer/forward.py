"""Running the replay forwards for a debugger (continue, step, range-step) on behalf of
`replayer.debuggee.Debuggee`.

The replay runs event by event with gdb's breakpoints armed (int3 written only while a resume
runs) and its watchpoints in debug registers 0-2 of every thread of the debugged process; an
observer turns the first breakpoint/watchpoint/step trap or Ctrl-C into a stop, reported for
the thread it happened in. Stepping a thread single-steps that thread only: the events of
other threads that come first replay normally (and can stop at breakpoints), then the stepped
thread executes its instruction. The end of the debugged process is a stop (replaylog:end)
with the process parked, alive, at its exit syscall, so it can be inspected.
"""
from __future__ import annotations

import errno
import signal
from typing import Protocol

from replayer.control import Action, ResumeCommand, Stop, StopKind, Watchpoint
from replayer.errors import Paused
from replayer.midpoints import MID_PERIOD_NS
from replayer.session import ReplaySession
from replayer.timeline import Timeline
from replayer.traps import Trap, Traps, condition_holds, written_watchpoints
from tracee import ptrace_api as api
from tracee.cputimer import CpuTimer, CpuTimerError, ThreadTimers, drain_stop
from tracee.remote import RELIVE_AREA_SIZE, RELIVE_PAGE
from tracee.stops import SignalStop, SyscallStop
from tracee.stops import Stop as TraceeStop
from tracee.syscalls import queries
from tracee.sysnums import name_of
from tracee.task import Task
from tracefile.records import Event, Kind


class ForwardHost(Protocol):
    """What a forward run needs of the debugged process (replayer.debuggee.Debuggee)."""
    session: ReplaySession
    timeline: Timeline
    single: bool
    parked: bool

    def interrupted(self) -> bool: ...
    def debugged(self, tid: int | None) -> bool: ...
    def recorded(self, task: Task | None) -> int | None: ...
    def live_threads(self) -> list[int]: ...
    def task_of(self, tid: int) -> Task: ...
    def any_task(self) -> Task: ...
    def resolve_tid(self, tid: int | None = None) -> int: ...
    def timeline_due(self) -> bool: ...
    def where(self, boundary: bool, steps: int | None,
              anchor: tuple[int, int] | None = None) -> None: ...
    def paused(self, reason: object) -> Stop: ...
    def stop(self, kind: StopKind, tid: int | None = None, watch: Watchpoint | None = None,
             sig: int = signal.SIGTRAP) -> Stop: ...


class ForwardRun:
    def __init__(self, target: ForwardHost) -> None:
        self.t = target
        self.stepper: int | None = None  # the thread a forward step is for
        self.command: ResumeCommand | None = None
        # Ticks every MID_PERIOD_NS of the program's CPU time during a continue (of the
        # thread running, among threads): a mid-stretch checkpoint each (replayer.midpoints).
        self.timer: CpuTimer | ThreadTimers | None = None
        self._clock0 = 0  # the timer's reading at the start of the current stretch

    def resume(self, command: ResumeCommand) -> Stop:
        """Continue, step or range-step forwards: the stop gdb gets."""
        s = self.t.session
        s.wants_signal_stop = lambda sig: (self.t.debugged(self.t.recorded(s.task))
                                           and sig not in command.pass_signals)
        stepper = command.tid if command.action in (Action.STEP, Action.RANGE_STEP) else None
        # A breakpoint at the pc the resumed thread starts from does not trigger for it
        # (gdb steps it over breakpoints itself). Another thread sitting at a breakpoint
        # reports it when it runs, as on a live target: gdb relies on that.
        skip = {}
        resumed = s.taskset.tasks.get(command.tid)
        if (resumed is not None and resumed.tid not in s.taskset.in_kernel
                and resumed.regs.rip in command.breakpoints):
            skip[resumed.tid] = resumed.regs.rip
        if command.action is Action.RANGE_STEP and command.step_range:
            lo, hi = command.step_range
            while True:
                stop = self._run(command, stepper, skip)
                if (stop.kind is not StopKind.STEPPED or stop.tid != stepper
                        or not lo <= self.t.task_of(stepper).regs.rip < hi):
                    return stop
        return self._run(command, stepper, skip)

    def _traps(self, command: ResumeCommand, skip: dict[int, int]) -> Traps:
        return Traps(self.t.any_task(), set(command.breakpoints), command.watchpoints,
                     taskset=self.t.session.taskset, skip=skip)

    def _run(self, command: ResumeCommand, stepper: int | None,
             skip: dict[int, int]) -> Stop:
        """Replay events until a breakpoint, watchpoint, signal, end of the debugged
        process, Ctrl-C, or (stepper) one instruction of the thread `stepper`."""
        s = self.t.session
        self.stepper = stepper
        self.command = command
        traps = self._traps(command, skip)
        s.observer = lambda stop: self._observe(traps, stop)
        # Runs of emulated syscalls in compiled code: breakpoints, signals and Ctrl-C still
        # reach the observer; not with watchpoints (a syscall's recorded writes are checked
        # after each event) nor while stepping (each event may end the step).
        s.fast = not command.watchpoints and stepper is None
        # ... and their buffered calls without a stop each (the hook's feed), unless a
        # breakpoint lies in relive's area, where the hook runs.
        s.feed_observed = s.fast and not any(RELIVE_PAGE <= b < RELIVE_PAGE + RELIVE_AREA_SIZE
                                             for b in command.breakpoints)
        self._start_timer(stepper)
        try:
            while True:
                if self.t.interrupted():
                    return self.t.stop(StopKind.INTERRUPTED, sig=signal.SIGINT)
                if self.at_end():
                    return self._end()
                nxt = s.next_event
                assert nxt is not None
                mine = self.stepper is not None and nxt.tid == self.stepper
                if mine and self._found_by_search(nxt):
                    return self._step_alone(nxt.tid)
                s.run_request = api.Req.SYSEMU_SINGLESTEP if mine else api.Req.SYSEMU
                try:
                    ev = s.step()
                except Paused as p:
                    if p.reason == ("interrupt",):
                        return self._interrupted(traps)
                    return self.t.paused(p.reason)
                if ev is None:
                    return self.t.stop(StopKind.HISTORY_END)
                self.t.where(True, 0)
                if self.timer is not None:
                    self._clock0 = self.timer.elapsed()
                if ev.kind == Kind.EXEC and command.exec_events and self.t.debugged(ev.tid):
                    # gdb loads the new program's symbols, sets its breakpoints again, and
                    # resumes by itself (unless the user asked for `catch exec`).
                    return Stop(kind=StopKind.EXECD, tid=self.t.resolve_tid(ev.tid),
                                exec_path=str(ev.info["exe"]))
                traps.replant(ev)
                if self.t.timeline_due() and s.can_snapshot():
                    traps.disarm()
                    self.t.timeline.take()
                    traps = self._traps(command, skip)
                if self.t.debugged(ev.tid):
                    written = written_watchpoints(ev, command.watchpoints)
                    if written:
                        return self.t.stop(StopKind.WATCHPOINT, watch=written[0], tid=ev.tid)
                if self.stepper is not None and ev.tid == self.stepper:
                    if self._ends_thread(ev):
                        self.stepper = None  # the stepped thread is gone: a continue now
                    elif self._completes_instruction(ev) and not s.mid_exec():
                        return self.t.stop(StopKind.STEPPED, tid=ev.tid)
        finally:
            s.observer = None
            s.fast = s.feed_observed = False
            s.run_request = api.Req.SYSEMU
            self.stepper = None
            traps.disarm()
            self._stop_timer()

    def _start_timer(self, stepper: int | None) -> None:
        task = self.t.session.task
        if stepper is not None or task is None:
            return
        if self.t.single:
            try:
                self.timer = CpuTimer(task.tid, MID_PERIOD_NS)
            except CpuTimerError:
                return
        else:  # one thread runs at a time: each is timed while it runs
            self.timer = ThreadTimers(MID_PERIOD_NS)
        self._clock0 = 0
        self.t.session.ticks = self.timer

    def _stop_timer(self) -> None:
        if self.timer is None:
            return
        self.t.session.ticks = None
        timed = set(self.timer.timers) if isinstance(self.timer, ThreadTimers) else set()
        self.timer.close()
        self.timer = None
        s = self.t.session
        if s.task is not None and not timed:
            drain_stop(s.task.tid)
        for task in s.taskset.tasks.values():
            if task.tid in timed and task.tid not in s.dying:
                drain_stop(task.tid)

    def _tick(self, traps: Traps) -> None:
        """The CPU timer stopped the program inside a stretch: keep a mid there."""
        assert self.timer is not None
        with traps.lifted():
            self.t.timeline.take_mid(self.timer.elapsed() - self._clock0)

    def _interrupted(self, traps: Traps) -> Stop:
        """Ctrl-C stopped the program inside a stretch during a continue: the stop gdb gets
        is a state a step back finds without stopping at every arrival at its pc since the
        last mid (replayer.interrupt_point)."""
        landing = None
        if self.timer is not None:
            traps.disarm()
            landing = self.t.timeline.settle_interrupt(self.timer.elapsed() - self._clock0)
        stop = self.t.paused(("interrupt",))
        if landing is not None:
            self.t.where(False, landing.steps, landing.anchor)
        return stop

    def _found_by_search(self, ev: Event) -> bool:
        """Does replaying `ev` run its thread to a point found with relive's own breakpoint
        (a preemption, a signal in user code), more than one instruction away? Then a step
        of that thread is made by hand instead."""
        s = self.t.session
        if not ((ev.kind == Kind.PREEMPT and not ev.info.get("jump"))
                or (ev.kind == Kind.SIGNAL and s.signal_ready != ev.seq
                    and ev.info.get("where") == "user")):
            return False  # (a point jumped to is one step: replayer.jumps)
        return not s.signals.at_point(ev, self.t.task_of(ev.tid))

    def _step_alone(self, tid: int) -> Stop:
        """One instruction of `tid`, whose next event is found by running to a point (relive
        would otherwise run it there in one go)."""
        s = self.t.session
        task = self.t.task_of(tid)
        s.taskset.settle(task)
        s.task, s.proc = s.taskset.select(tid)
        try:
            stop = s.run_once(task, api.Req.SYSEMU_SINGLESTEP)
        except Paused as p:
            return self.t.paused(p.reason)
        nxt = s.next_event
        assert nxt is not None
        raise s.divergence(nxt, "single-stepping towards the event's point", stop)

    @staticmethod
    def _completes_instruction(ev: Event) -> bool:
        """Events that finish the instruction being stepped (a syscall, an emulated rdtsc,
        rdrand or cpuid; a jump to a recorded point, which replaces the stretch before it)."""
        return (ev.kind in (Kind.SYSCALL, Kind.BUFFERED, Kind.RDTSC, Kind.RDRAND, Kind.CPUID,
                            Kind.SIGNAL)
                or (ev.kind == Kind.PREEMPT and bool(ev.info.get("jump"))))

    @staticmethod
    def _ends_thread(ev: Event) -> bool:
        return ((ev.kind == Kind.SYSCALL and name_of(ev.nr) in queries.ENDS_TASK)
                or (ev.kind == Kind.SIGNAL and bool(ev.info.get("fatal"))) or ev.kind == Kind.EXIT)

    def at_end(self) -> bool:
        """Stop before the debugged process would end: the user can still look at it (and
        go back)."""
        s = self.t.session
        nxt = s.next_event
        if nxt is None:
            return True
        if not self.t.debugged(nxt.tid):
            return False
        task = s.taskset.tasks.get(nxt.tid)
        if nxt.kind == Kind.EXIT and "exec" in nxt.info:
            return False  # killed by another thread's execve, which the process goes on to
        if nxt.kind == Kind.EXIT:  # killed from outside the recording (or all exiting)
            return task is None or task.tid not in s.dying or not self.t.live_threads()
        if nxt.kind == Kind.SYSCALL and name_of(nxt.nr) == "exit_group":
            return True
        if nxt.kind == Kind.SYSCALL and name_of(nxt.nr) == "exit":
            return self.t.live_threads() == [nxt.tid]
        return bool(nxt.kind == Kind.SIGNAL and nxt.info.get("fatal")
                    and s.signal_ready == nxt.seq)

    def _end(self) -> Stop:
        """At the end of the debugged process: run its last thread up to its exit syscall (the
        last code it runs) and leave it stopped there, alive and inspectable. Stepping that
        thread runs one instruction at a time towards it."""
        nxt = self.t.session.next_event
        tid = nxt.tid if nxt is not None and self.t.debugged(nxt.tid) else None
        stepping = tid is not None and self.stepper == tid
        try:
            self._park_at_exit(stepping)
        except Paused as p:
            return self.t.paused(p.reason)
        if not self.t.parked and stepping:
            return self.t.paused(("step", tid))  # one instruction nearer the exit
        self.t.where(not self.t.parked, 0 if not self.t.parked else None)
        return self.t.stop(StopKind.HISTORY_END, tid=tid)

    def _park_at_exit(self, step_once: bool = False) -> None:
        s = self.t.session
        nxt = s.next_event
        if self.t.parked or nxt is None or nxt.kind != Kind.SYSCALL:
            return
        task = self.t.task_of(nxt.tid)
        s.taskset.settle(task)
        s.task, s.proc = s.taskset.select(nxt.tid)
        if task.tid in s.taskset.entered or _at_entry_of(task, nxt.nr):
            self.t.parked = True
            return
        stop = s.run_once(task, api.Req.SYSEMU_SINGLESTEP if step_once else api.Req.SYSEMU)
        if step_once and isinstance(stop, SignalStop) and stop.signal == signal.SIGTRAP:
            return
        if not isinstance(stop, SyscallStop) or task.regs.orig_rax != nxt.nr:
            raise s.divergence(nxt, f"expected syscall {name_of(nxt.nr)}", stop)
        self.t.parked = True

    def _observe(self, traps: Traps, stop: TraceeStop) -> TraceeStop | None:
        """Called at every stop while the program runs: is it one gdb wants to see?"""
        if isinstance(stop, SignalStop) and stop.signal == signal.SIGSTOP and self.t.interrupted():
            raise Paused(("interrupt",))
        if isinstance(stop, SignalStop) and stop.signal == signal.SIGSTOP and self.timer:
            self._tick(traps)
            return None
        trap = traps.classify(stop)
        if trap is None or trap.kind in ("own", "other"):
            return stop
        if (trap.kind == "breakpoint" and self.command is not None and trap.task is not None
                and not condition_holds(self.command.conditions, trap.pc, trap.task)):
            trap = Trap("pass", pc=trap.pc, task=trap.task)  # gdb's condition is false
        if trap.kind == "pass":  # run the instruction under our int3, then go on
            after = traps.step_over(trap.pc, trap.task)
            stepped = traps.after_step(after)
            if stepped is None:
                return after
            trap = stepped
        tid = self.t.recorded(trap.task)
        if trap.kind == "watch":
            raise Paused(("watch", trap.wp, tid))
        if trap.kind == "breakpoint":
            raise Paused(("breakpoint", tid))
        if self.stepper is not None and tid == self.stepper:
            raise Paused(("step", tid))
        return None  # another thread's step over one of our int3s: let it run on


def _at_entry_of(task: Task, nr: int) -> bool:
    """Is `task` stopped at the entry of syscall `nr` (SYSEMU: the kernel set rax to -ENOSYS
    and kept the number in orig_rax; a stop in user code has orig_rax -1)? A search that
    went back from the parked exit and returned (monitor last-write finding no write) puts
    it back there, where running it again would skip the exit call and run on past it."""
    regs = task.regs
    return regs.orig_rax == nr and api.signed(regs.rax) == -errno.ENOSYS
