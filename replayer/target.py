"""The replay as a gdb target: implements gdbstub's Target protocol on a ReplaySession.

Forward execution runs the replay event by event with gdb's breakpoints armed (int3 written
only while a resume runs), its watchpoints in debug registers 0-2, and an observer that turns
the first breakpoint/watchpoint/step trap or Ctrl-C into a stop. The end of the trace is a stop
(replaylog:end) with the process still alive, so it can be inspected; the process is never
allowed to exit under gdb. Every method runs on the engine thread except `interrupt`.
"""
from __future__ import annotations

import errno
import os
import signal
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from gdbstub.errors import TargetError
from gdbstub.target import (Action, Direction, FileStat, LibraryList,
                            ResumeCommand, Stop,
                            StopKind, ThreadId, ThreadInfo, Watchpoint, WatchKind)
from tracee import ptrace_api as api
from tracee.stops import SignalStop, Stop as TraceeStop, SyscallStop
from tracee.sysnums import name_of
from tracefile.records import Event, Kind

from replayer import monitor, process_view
from replayer.errors import Paused
from replayer.trace_files import TraceFiles
from replayer.session import ReplaySession
from replayer.timeline import CHECKPOINT_INTERVAL, Now, SearchInterrupted, Timeline
from replayer.traps import Traps, written_watchpoints

AT_PHDR, AT_PHNUM = 3, 5
PT_DYNAMIC, PT_PHDR = 2, 6
DT_NULL, DT_DEBUG = 0, 21
# offsetof(struct link_map, l_tls_modid) in glibc 2.36 (Debian 12); it changes rarely.
LINK_MAP_TLS_MODID = 1152


class ReplayTarget:
    def __init__(self, trace: Path, output=None) -> None:  # type: ignore[no-untyped-def]
        self.trace = Path(trace)
        self.output = output
        self._interrupt = False
        self.files = TraceFiles(self.trace)  # gdb's open handles survive a restart
        self._start()

    # -- lifecycle --------------------------------------------------------------------------
    def _start(self) -> None:
        self.session = ReplaySession(self.trace, output=self.output)
        self.session.step()  # the initial EXEC: the process now sits at its first instruction
        self.timeline = Timeline(self.session, interrupted=lambda: self._interrupt)
        self._where(True, 0)
        self.exec_event: Event = self._initial_exec()
        self.pid = self.exec_event.tid
        self.tid = self.exec_event.tid
        self._last: Stop = Stop(kind=StopKind.SIGNAL, thread=self._thread(), signal=5)
        self._siginfo = b"\0" * api.SIGINFO_SIZE
        self._parked = False  # stopped at the final exit syscall

    def _initial_exec(self) -> Event:
        r = self.session.reader
        return next(ev for ev in r.events(0, 1))

    def close(self) -> None:
        self.timeline.close()
        self.session.close()

    def _thread(self) -> ThreadId:
        return ThreadId(self.pid, self.tid)

    @property
    def task(self):  # type: ignore[no-untyped-def]
        if self.session.task is None:
            raise TargetError("the replayed process has ended")
        return self.session.task

    # -- inspection -------------------------------------------------------------------------
    def current_stop(self) -> Stop:
        return self._last

    def threads(self) -> Sequence[ThreadInfo]:
        name = os.path.basename(self.exec_event.info.get("exe", ""))[:15]
        return [ThreadInfo(id=self._thread(), name=name)]

    def registers(self, thread: ThreadId) -> Mapping[str, int]:
        task = self.task
        regs = task.regs
        out = {name: getattr(regs, name) for name in (
            "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11",
            "r12", "r13", "r14", "r15", "rip", "eflags", "cs", "ss", "ds", "es", "fs", "gs",
            "fs_base", "gs_base", "orig_rax")}
        out.update(process_view.fp_registers(api.get_fpregs(task.tid)))
        return out

    def read_memory(self, thread: ThreadId, addr: int, length: int) -> bytes:
        return self.task.mem.read_upto(addr, length)

    def siginfo(self, thread: ThreadId) -> bytes:
        return self._siginfo

    def auxv(self, pid: int) -> bytes:
        return bytes.fromhex(self._current_exec().info["auxv"])

    def exec_file(self, pid: int) -> str:
        return str(self._current_exec().info["exe"])

    def _current_exec(self) -> Event:
        return self.session.last_exec or self.exec_event

    def libraries(self, pid: int) -> LibraryList:
        return process_view.libraries(self.task.mem, self.auxv(pid))

    def tls_address(self, thread: ThreadId, offset: int, lm: int) -> int:
        return process_view.tls_address(self.task.mem, self.task.regs.fs_base, offset, lm)

    # -- files: only the trace's copies -----------------------------------------------------
    def open_file(self, pid: int, path: str) -> int:
        return self.files.open(path)

    def pread(self, handle: int, length: int, offset: int) -> bytes:
        return self.files.pread(handle, length, offset)

    def fstat(self, handle: int) -> FileStat:
        return self.files.fstat(handle)

    def close_file(self, handle: int) -> None:
        self.files.close(handle)

    def readlink(self, pid: int, path: str) -> str:
        raise OSError(errno.EINVAL, path)

    # -- control ----------------------------------------------------------------------------
    def kill(self, pid: int) -> None:
        pass

    def restart(self) -> Stop:
        self.close()
        self._start()
        return self._last

    def interrupt(self) -> None:
        """From the server thread: set the flag; if the tracee is running, kick it with
        SIGSTOP (cannot be blocked) so the engine's wait returns."""
        self._interrupt = True
        task = self.session.task
        if task is not None and self.session.running:
            try:
                api.tgkill(task.pid, task.tid, signal.SIGSTOP)
            except OSError:
                pass

    def monitor(self, command: str) -> str:
        return monitor.run(self, command)

    def take_checkpoint(self) -> int:
        if not self._boundary:
            raise TargetError("checkpoints are taken at event boundaries; go to one "
                              "(`monitor goto N`) first")
        self.timeline.take()
        return self.session.position

    def goto_event(self, position: int) -> int:
        """Go to the state right after event `position` - 1 (`monitor goto`)."""
        count = self.session.reader.event_count
        if not 1 <= position <= count:
            raise TargetError(f"event {position} is outside the trace (1..{count})")
        self.timeline.seek(position)
        self._parked = False
        self._where(True, 0)
        return self.session.position

    def last_write(self, addr: int, length: int) -> str:
        """Go back to just before the instruction (or syscall) that last wrote
        [addr, addr+length) before now: a reverse watchpoint without gdb's help."""
        if length not in (1, 2, 4, 8) or addr % length:
            raise TargetError("last-write needs an aligned length of 1, 2, 4 or 8 bytes")
        wp = Watchpoint(kind=WatchKind.WRITE, addr=addr, length=length)
        now = self.timeline.now(self._boundary, self._steps)
        hit = self.timeline.last_hit_before(now, frozenset(), frozenset({wp}))
        if hit is None:
            raise TargetError(f"nothing wrote {addr:#x} (+{length}) before this point")
        _, steps, anchor = self.timeline.goto_hit(hit, frozenset({wp}))
        self._where(False, steps, anchor)
        rip = self.task.regs.rip
        where = "a syscall" if hit.kind == "kernel" else f"the instruction at {rip:#x}"
        return f"Went back to {where}, which wrote {addr:#x}; event {self.session.position}"

    # -- resuming ---------------------------------------------------------------------------
    def resume(self, command: ResumeCommand) -> Stop:
        try:
            if command.direction is Direction.BACKWARD:
                stop = self._backward(command)
            else:
                stop = self._forward(command)
        finally:
            self._interrupt = False
        self._last = stop
        return stop

    def _where(self, boundary: bool, steps: int | None,
               anchor: tuple[int, int] | None = None) -> None:
        """Remember how the current state relates to the last event boundary: instructions
        since it (or since an anchor arrival), if known. Reverse-stepi uses it."""
        self._boundary, self._steps, self._anchor = boundary, steps, anchor

    def _backward(self, command: ResumeCommand) -> Stop:
        now = self.timeline.now(self._boundary, self._steps, self._anchor)
        try:
            return self._search_backward(command, now)
        except SearchInterrupted as e:
            self._where(e.boundary, 0 if e.boundary else None)
            return self._stop(StopKind.INTERRUPTED, signal.SIGINT)
        except Exception:
            # Leave a consistent replay behind: the boundary before where the user was.
            self.timeline.seek(max(1, now.position))
            self._where(True, 0)
            raise

    def _search_backward(self, command: ResumeCommand, now: Now) -> Stop:
        tl = self.timeline
        self._parked = False
        if command.action is Action.CONTINUE:
            hit = tl.last_hit_before(now, command.breakpoints, command.watchpoints)
            if hit is None:
                tl.seek(1)
                self._where(True, 0)
                return self._stop(StopKind.HISTORY_BEGIN)
            _, steps, anchor = tl.goto_hit(hit, command.watchpoints)
            self._where(False, steps, anchor)
            if hit.kind == "bp":
                return self._stop(StopKind.BREAKPOINT)
            return self._stop(StopKind.WATCHPOINT, watch=hit.wp)
        watched = {wp: self._peek(wp) for wp in command.watchpoints}
        landed, steps, anchor = tl.step_back(now)
        self._where(landed != "mid", steps, anchor)
        if landed == "begin":
            return self._stop(StopKind.HISTORY_BEGIN)
        for wp, later in watched.items():
            if wp.kind is not WatchKind.READ and self._peek(wp) != later:
                return self._stop(StopKind.WATCHPOINT, watch=wp)  # stepped back over a write
        return self._stop(StopKind.STEPPED)

    def _peek(self, wp: Watchpoint) -> bytes:
        return self.task.mem.read_upto(wp.addr, wp.length)

    def _forward(self, command: ResumeCommand) -> Stop:
        task = self.task
        self.session.wants_signal_stop = lambda sig: sig not in command.pass_signals
        stepping = command.action in (Action.STEP, Action.RANGE_STEP)
        # A breakpoint at the starting pc does not trigger: step off it first.
        if not stepping and task.regs.rip in command.breakpoints:
            first = self._run(ResumeCommand(action=Action.STEP, direction=command.direction,
                                            thread=command.thread,
                                            watchpoints=command.watchpoints), step_once=True)
            if first.kind is not StopKind.STEPPED:
                return first
        if command.action is Action.RANGE_STEP and command.step_range:
            lo, hi = command.step_range
            while True:
                stop = self._run(command, step_once=True)
                if stop.kind is not StopKind.STEPPED or not lo <= self.task.regs.rip < hi:
                    return stop
        return self._run(command, step_once=stepping)

    def _run(self, command: ResumeCommand, step_once: bool) -> Stop:
        """Replay events until a breakpoint, watchpoint, signal, end of trace, Ctrl-C, or
        (step_once) one instruction."""
        s = self.session
        breakpoints = set(command.breakpoints)
        traps = Traps(self.task, breakpoints, command.watchpoints)
        s.run_request = api.Req.SYSEMU_SINGLESTEP if step_once else api.Req.SYSEMU
        s.observer = lambda stop: self._observe(traps, stop, step_once)
        try:
            while True:
                if self._interrupt:
                    return self._stop(StopKind.INTERRUPTED, signal.SIGINT)
                if self._at_end():
                    try:
                        self._park_at_exit(step_once)
                    except Paused as p:
                        return self._paused(p.reason)
                    if not self._parked and step_once and s.next_event is not None:
                        return self._paused(("step",))  # one instruction nearer the exit
                    self._where(not self._parked, 0 if not self._parked else None)
                    return self._stop(StopKind.HISTORY_END)
                try:
                    ev = s.step()
                except Paused as p:
                    return self._paused(p.reason)
                if ev is None:
                    return self._stop(StopKind.HISTORY_END)
                self._where(True, 0)
                traps.replant(ev)
                if self.timeline_due():
                    traps.disarm()
                    self.timeline.take()
                    traps = Traps(self.task, breakpoints, command.watchpoints)
                written = written_watchpoints(ev, command.watchpoints)
                if written:
                    return self._stop(StopKind.WATCHPOINT, watch=written[0])
                if step_once and self._completes_instruction(ev):
                    return self._stop(StopKind.STEPPED)
        finally:
            s.observer = None
            s.run_request = api.Req.SYSEMU
            if s.task is not None:
                traps.disarm()

    def timeline_due(self) -> bool:
        return time.monotonic() - self.timeline._last_time > CHECKPOINT_INTERVAL

    @staticmethod
    def _completes_instruction(ev: Event) -> bool:
        """Events that finish the instruction being stepped (a syscall, an emulated rdtsc)."""
        return ev.kind in (Kind.SYSCALL, Kind.RDTSC, Kind.SIGNAL)

    def _at_end(self) -> bool:
        """Stop before the process would end: the user can still look at it (and, later,
        go back)."""
        s = self.session
        nxt = s.next_event
        if nxt is None:
            return True
        if nxt.kind == Kind.EXIT:
            return True
        if nxt.kind == Kind.SYSCALL and name_of(nxt.nr) in ("exit", "exit_group"):
            after = s.peek(1)
            return after is None or after.kind == Kind.EXIT
        if nxt.kind == Kind.SIGNAL and nxt.info.get("fatal") and s.signal_ready == nxt.seq:
            return True
        return False

    def _park_at_exit(self, step_once: bool = False) -> None:
        """At the end of the trace, run the program up to its exit_group (the last code it
        runs) and leave it stopped there, alive and inspectable. With `step_once`, run one
        instruction only (parking if that instruction is the exit syscall)."""
        s = self.session
        nxt = s.next_event
        if self._parked or nxt is None or nxt.kind != Kind.SYSCALL:
            return
        stop = s.run_once(self.task, api.Req.SYSEMU_SINGLESTEP if step_once else api.Req.SYSEMU)
        if step_once and isinstance(stop, SignalStop) and stop.signal == signal.SIGTRAP:
            return
        if not isinstance(stop, SyscallStop) or self.task.regs.orig_rax != nxt.nr:
            raise s.divergence(nxt, f"expected syscall {name_of(nxt.nr)}", stop)
        self._parked = True

    def _observe(self, traps: Traps, stop: TraceeStop, step_once: bool) -> TraceeStop:
        """Called at every stop while the program runs: is it one gdb wants to see?"""
        if isinstance(stop, SignalStop) and stop.signal == signal.SIGSTOP and self._interrupt:
            raise Paused(("interrupt",))
        trap = traps.classify(stop)
        if trap is None or trap.kind in ("own", "other"):
            return stop
        if trap.kind == "watch":
            raise Paused(("watch", trap.wp))
        if trap.kind == "breakpoint":
            raise Paused(("breakpoint",))
        if step_once:
            raise Paused(("step",))
        return stop

    def _paused(self, reason: tuple) -> Stop:  # type: ignore[type-arg]
        stepped_from = self._steps if not self._boundary else 0
        anchor = None if self._boundary else self._anchor
        self._where(False, None)
        match reason:
            case ("breakpoint",):
                return self._stop(StopKind.BREAKPOINT)
            case ("step",):
                self._where(False, None if stepped_from is None else stepped_from + 1, anchor)
                return self._stop(StopKind.STEPPED)
            case ("watch", wp):
                return self._stop(StopKind.WATCHPOINT, watch=wp)
            case ("interrupt",):
                return self._stop(StopKind.INTERRUPTED, signal.SIGINT)
            case ("signal", ev):
                self._siginfo = bytes.fromhex(ev.info["siginfo"])
                return self._stop(StopKind.SIGNAL, ev.nr)
        raise TargetError(f"unexpected pause {reason!r}")

    def _stop(self, kind: StopKind, sig: int = signal.SIGTRAP,
              watch: Watchpoint | None = None) -> Stop:
        if watch is not None:
            return Stop(kind=kind, thread=self._thread(), signal=sig, watch_addr=watch.addr,
                        watch_kind=watch.kind)
        return Stop(kind=kind, thread=self._thread(), signal=sig)
