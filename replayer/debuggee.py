"""The debugged process of a replay: its threads, memory and moves through time, in the
replay's own terms (replayer.control); debugtarget.replay serves it to gdb's stub.

The debugger sees one process of the recorded tree (the root unless another pid was asked
for): its live threads under their *recorded* ids and names, its program image and memory,
and stops only for what that process does. The replay runs the whole tree, each event's
task in turn, exactly as recorded.

Forwards, `replayer.forward` runs the replay with gdb's breakpoints and watchpoints armed,
up to the first trap, Ctrl-C, or the end of the debugged process (a stop, replaylog:end, with
the process still alive, so it can be inspected; it is never allowed to exit under gdb).

Backwards, `replayer.backward` serves every command, with one task or several. Every method
runs on one thread (the one that made the Debuggee: ptrace's rule) except `interrupt`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import signal
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from replayer import process_view
from replayer.control import (
    Action,
    Direction,
    ResumeCommand,
    Stop,
    StopKind,
    WatchKind,
    Watchpoint,
)
from replayer.backward import Backward
from replayer.diversion import Diversion, register_values
from replayer.errors import Refused, ReplayError
from replayer.forward import ForwardRun
from replayer.process_view import Image, ProcessFacts
from replayer.positions import Landing
from replayer.progress import Abandoned, Progress
from replayer.session import OutputSink, ReplaySession
from replayer.sysbuf_view import SysbufView
from replayer.timeline import Timeline
from tracee import ptrace_api as api
from tracee import rdrand
from tracee.task import MemoryAccessError, Task
from tracefile.records import Event

log = logging.getLogger(__name__)
HIDDEN_STEPS = 4096  # instructions of the hook and a trampoline one stepi goes over, at most


class Debuggee:
    """Process `pid` (default: the root) of the replay of `trace`, driven by a debugger;
    `output` shows the program's writes to stdout/stderr as the replay passes them."""

    def __init__(self, trace: Path, output: OutputSink | None = None,
                 pid: int | None = None) -> None:
        self.trace = Path(trace)
        self.output = output
        self.wanted_pid = pid
        self.sysbuf = SysbufView()  # libc's patched syscall sites hidden from gdb
        self._interrupt = False
        self.facts: ProcessFacts | None = None  # facts about the trace survive a restart too
        self.diversion: Diversion | None = None  # gdb's writes and calls (replayer.diversion)
        self._start()

    # -- lifecycle --------------------------------------------------------------------------
    def _start(self) -> None:
        self.session = s = ReplaySession(self.trace, output=self.output)
        self.pid_of = {t.tid: t.pid for t in s.reader.tasks()}
        if self.facts is None:
            self.facts = ProcessFacts(self.pid_of)
        s.listeners.append(self._learn)
        self.progress = Progress(s.reader.event_count)
        s.listeners.append(lambda ev: self.progress.tick(ev.seq + 1))
        s.step()  # the initial EXEC: the process now sits at its first instruction
        self.exec_event: Event = next(ev for ev in s.reader.events(0, 1))
        root = self.exec_event.tid
        self.pid = self.wanted_pid or self.pid_of.get(root, root)
        self.pid_of.setdefault(root, root)
        self.timeline = Timeline(s, interrupted=self.interrupted)
        self.single = len(self.pid_of) == 1
        self.birth = 1 if self.pid == self.pid_of[root] else self._run_until_born()
        self.backward = Backward(self)
        self.where(True, 0)
        self._current = self.pid if self.pid in s.taskset.tasks else self.live_threads()[0]
        self.last_stop = Stop(kind=StopKind.SIGNAL, tid=self.resolve_tid(), signal=5)
        self._siginfo = b"\0" * api.SIGINFO_SIZE
        self.parked = False  # stopped at the debugged process's final exit syscall
        self.forwards = ForwardRun(self)
        self.previous: tuple[ResumeCommand, Stop] | None = None  # the last resume and its stop
        self.backward_stops = 0  # what the last backward resume cost (`monitor info reverse`)

    def _run_until_born(self) -> int:
        """Replay (no debugger) until the debugged process exists: gdb meets it right after
        the fork that created it."""
        s = self.session
        while not self.live_threads():
            if s.step() is None:
                raise Refused(f"process {self.pid} never appears in the replay")
        return s.position

    def _learn(self, ev: Event) -> None:
        assert self.facts is not None
        task = self.session.task
        self.facts.learn(ev, task.mem if task is not None else None)

    def close(self) -> None:
        self.end_diversion()
        self.backward.close()
        self.timeline.close()
        self.session.close()

    # -- threads ----------------------------------------------------------------------------
    def debugged(self, tid: int | None) -> bool:
        """Is recorded thread `tid` one of the debugged process's?"""
        return tid is not None and self.pid_of.get(tid) == self.pid

    def live_threads(self) -> list[int]:
        """Recorded tids of the debugged process's threads alive here, leader first."""
        s = self.session
        tids = [tid for tid, t in s.taskset.tasks.items()
                if self.debugged(tid) and t.tid not in s.dying]
        return sorted(tids, key=lambda tid: tid != self.pid)

    def task_of(self, tid: int) -> Task:
        task = self.session.taskset.tasks.get(tid)
        if task is None or not self.debugged(tid):
            raise Refused(f"thread {tid} does not exist at this point of the replay")
        return task

    def recorded(self, task: Task | None) -> int | None:
        if task is None:
            return None
        try:
            return self.session.taskset.recorded_tid(task)
        except KeyError:
            return None

    def resolve_tid(self, tid: int | None = None) -> int:
        """`tid` if it is a live thread of the debugged process, else the current thread
        (which it becomes)."""
        if tid is None or not self.debugged(tid) or tid not in self.session.taskset.tasks:
            live = self.live_threads()
            tid = self._current if self._current in live else (live[0] if live else self.pid)
        self._current = tid
        return tid

    def any_task(self) -> Task:
        """A task of the debugged process (its memory is every thread's)."""
        live = self.live_threads()
        tid = self._current if self._current in live else (live[0] if live else None)
        if tid is None:
            raise Refused("the debugged process has ended")
        return self.session.taskset.tasks[tid]

    @property
    def task(self) -> Task:
        """The current thread's task (monitor commands and tests use it)."""
        return self.task_of(self.resolve_tid())

    # -- inspection -------------------------------------------------------------------------
    def threads(self) -> list[tuple[int, str]]:
        """Live threads here (recorded tid, name), the default one first."""
        assert self.facts is not None
        names = self.facts.names_at(self.session.position)
        live = self.live_threads() or [self.resolve_tid()]
        return [(tid, names.get(tid, "")) for tid in live]

    def registers(self, tid: int) -> Mapping[str, int]:
        if self.diversion is not None and tid == self.diversion.tid:
            return self.diversion.registers()
        task = self.task_of(tid)
        if task.tid in self.session.taskset.in_kernel:
            raise Refused(f"thread {tid} is inside vfork; its registers are not "
                              "readable until the child execs or exits")
        values = register_values(task)
        proc = self.session.taskset.procs.get(tid)
        return values if proc is None else self.sysbuf.registers(task, proc.space, values)

    def read_memory(self, tid: int, addr: int, length: int) -> bytes:
        if self.diversion is not None:
            return self.diversion.read_memory(addr, length)
        task = self.task_of(tid)
        data = task.mem.read_upto(addr, length)
        proc = self.session.taskset.procs.get(tid)
        if proc is not None and proc.patched:
            data = rdrand.show_original(proc.patched, addr, data)  # code as the program has it
        if proc is not None:
            data = self.sysbuf.show_original(task, proc.space, addr, data)
        return data

    def siginfo(self) -> bytes:
        """The siginfo_t of the last signal stop."""
        return self._siginfo

    def _image(self) -> Image:
        assert self.facts is not None
        image = self.facts.image_at(self.pid, self.session.position)
        if image is None:
            info = self.exec_event.info
            return Image(exe=str(info["exe"]), auxv=bytes.fromhex(info["auxv"]))
        return image

    def auxv(self) -> bytes:
        return self._image().auxv

    def exec_file(self) -> str:
        return self._image().exe

    def libraries(self) -> process_view.Libraries:
        return process_view.libraries(self.any_task().mem, self.auxv())

    def tls_address(self, tid: int, offset: int, lm: int) -> int:
        task = self.task_of(tid)
        try:
            return process_view.tls_address(task.mem, task.regs.fs_base, offset, lm)
        except MemoryAccessError as e:  # gdb's link_map address, or the program's TLS
            raise Refused(f"no TLS block for link_map {lm:#x}: {e}") from None

    # -- writes: diversions -----------------------------------------------------------------
    def write_registers(self, tid: int, values: Mapping[str, int]) -> None:
        now = self.registers(tid)
        changed = {name: v for name, v in values.items() if now.get(name) != v}
        if changed:
            self._diverted(tid).write_registers(changed)

    def write_memory(self, tid: int, addr: int, data: bytes) -> None:
        now = self.read_memory(tid, addr, len(data))
        if len(now) != len(data):  # refused before a diversion is made for nothing
            raise Refused(f"cannot write {len(data)} bytes at {addr:#x}: not mapped")
        if now != data:
            self._diverted(tid).write_memory(addr, data)

    def _diverted(self, tid: int) -> Diversion:
        """The diversion gdb's writes go to, begun at the first write that changes anything."""
        if self.diversion is None:
            task = self.task_of(tid)
            if task.tid in self.session.taskset.in_kernel:
                raise Refused(f"thread {tid} is inside vfork; nothing can run in it")
            if self.parked:  # forking it there would finish its exit
                raise Refused("the process is at its exit: nothing can run in it (go "
                                  "back a little, e.g. reverse-stepi, to call functions)")
            self.diversion = Diversion(task, tid,
                                       in_syscall=task.tid in self.session.taskset.entered)
            log.info("diverting: gdb's writes and calls go to a copy of process %d; the "
                     "replay is unchanged", self.pid)
        elif tid != self.diversion.tid:
            raise Refused("a diversion runs one thread; finish with it before writing "
                              "to another")
        return self.diversion

    def end_diversion(self) -> None:
        if self.diversion is not None:
            self.diversion.end()
            self.diversion = None
            log.info("diversion ended: back in the replay")

    # -- control ----------------------------------------------------------------------------
    def restart(self) -> Stop:
        self.close()  # (ends a diversion)
        self._start()
        return self.last_stop

    def interrupt(self) -> None:
        """From the server thread: set the flag; if the tracee is running, kick it with
        SIGSTOP (cannot be blocked) so the engine's wait returns."""
        self._interrupt = True
        diversion = self.diversion  # (read once: the engine thread may end it meanwhile)
        if diversion is not None:
            diversion.interrupt()
        task = self.session.task
        if task is not None and self.session.running:
            try:
                api.tgkill(task.pid, task.tid, signal.SIGSTOP)
            except OSError:
                pass

    def interrupted(self) -> bool:
        """Has `interrupt` been called since the current resume began?"""
        return self._interrupt

    def take_checkpoint(self) -> int:
        """Keep a checkpoint here for the user; its id (replayer.checkpoints)."""
        self.end_diversion()
        if not self._boundary:
            raise Refused("checkpoints are taken at event boundaries; go to one "
                              "(`goto N`) first")
        if not self.session.can_snapshot():
            raise Refused("no checkpoint can be taken here: a thread is inside vfork or "
                              "exiting, or processes share memory (writable shared mappings, "
                              "clone with CLONE_VM); try another event (`goto N`)")
        return self.timeline.keep()

    def goto_position(self, position: int) -> int:
        """Go to the state right after event `position` - 1 (`monitor goto`)."""
        self.end_diversion()
        count = self.session.reader.event_count
        if not max(1, self.birth) <= position <= count:
            lo = max(1, self.birth)
            what = "the trace" if lo == 1 else f"the life of process {self.pid}"
            raise Refused(f"event {position} is outside {what} ({lo}..{count})")
        with self._silenced():
            try:
                self._seek_alive(position)
            except Abandoned:  # gdb stopped waiting (Ctrl-C): stay at the event reached
                log.info("goto abandoned by gdb at event %d", self.session.position - 1)
        self.backward.forget()
        self.parked = False
        self.where(True, 0)
        self._current = self._default_thread()
        return self.session.position

    def _seek_alive(self, position: int) -> None:
        """Go to the boundary `position`, or to the end of the debugged process if that comes
        first: it stays alive there, before its exit, as a forward run leaves it (a process
        that really exited could not be continued, nor inspected)."""
        self.timeline.seek(position, until=self.forwards.at_end)
        if self.live_threads():
            return
        self.timeline.seek(self.birth)  # restored a checkpoint from after the process's end
        s = self.session
        while s.position < position and not self.forwards.at_end():
            if s.step() is None:
                break

    def _default_thread(self) -> int:
        """After moving through time: the thread of the last event, else of the next one,
        else the leader."""
        s = self.session
        live = self.live_threads()
        for tid in (self.recorded(s.task), s.next_event.tid if s.next_event else None):
            if tid in live:
                return tid
        return live[0] if live else self.pid

    def last_write(self, addr: int, length: int) -> str:
        """Go back to just before the instruction (or syscall) that last wrote
        [addr, addr+length) before now: a reverse watchpoint without gdb's help. (The caller
        checked the range: aligned, of 1, 2, 4 or 8 bytes, in user space.)"""
        self.end_diversion()
        wp = Watchpoint(kind=WatchKind.WRITE, addr=addr, length=length)
        with self._silenced():
            try:
                return self.backward.last_write(wp)
            except ReplayError as e:  # (the replay is left at the boundary it was at)
                raise Refused(f"last-write failed: {e}") from None

    # -- resuming ---------------------------------------------------------------------------
    def resume(self, command: ResumeCommand) -> Stop:
        d = self.diversion
        note = ""
        if d is not None and (command.direction is Direction.BACKWARD or not d.continues()):
            # gdb is done with it (or leaves it by going back in time)
            if d.wrote_data or not d.restored():  # more than a call's frame
                note = ("relive: what gdb wrote is dropped: the replay goes on as "
                        "recorded\n")
            self.end_diversion()
        elif d is not None:
            try:
                stop = d.resume(command)
            finally:
                self._interrupt = False
            if d.dead:
                self.end_diversion()
                stop = dataclasses.replace(stop, console=(
                    "relive: the code gdb called ended the process copy it ran in; back "
                    "in the replay, unchanged\n"))
            return stop
        command = self._relocated(command)
        pin = self.session.pin
        pin.command_starts()
        try:
            stop = self._resume(command)
            for _ in range(HIDDEN_STEPS):  # a step into the hook or a trampoline goes on
                if command.action is not Action.STEP or stop.kind is not StopKind.STEPPED \
                        or not self._in_patch(stop.tid):
                    break
                stop = self._resume(command)
        finally:
            self._interrupt = False
            pin.command_ends(t.tid for t in self.session.taskset.tasks.values())
        if note:
            stop = dataclasses.replace(stop, console=note)
        self.last_stop = stop
        self.previous = (command, stop)
        return stop

    def _resume(self, command: ResumeCommand) -> Stop:
        if command.direction is Direction.BACKWARD:
            stops = Task.stops_seen
            with self._silenced(), self.progress.task("searching backwards"):
                try:
                    return self.backward.resume(command)
                finally:
                    self.backward_stops = Task.stops_seen - stops
        return self.forwards.resume(command)

    def _in_patch(self, tid: int) -> bool:
        """Is thread `tid` at an instruction of the syscall hook's patch gdb is not shown
        one step at a time (replayer.sysbuf_view.hidden)?"""
        task = self.session.taskset.tasks.get(tid)
        proc = self.session.taskset.procs.get(tid)
        if task is None or proc is None:
            return False
        return self.sysbuf.hidden(task, proc.space, task.regs.rip)

    def _relocated(self, command: ResumeCommand) -> ResumeCommand:
        """`command` with its breakpoints inside libc's patched syscall sites moved to the
        trampolines (replayer.sysbuf_view)."""
        if not command.breakpoints:
            return command
        task = self.session.taskset.tasks.get(command.tid)
        proc = self.session.taskset.procs.get(command.tid)
        if task is None or proc is None:
            return command
        moved = self.sysbuf.relocate(task, proc.space, command.breakpoints)
        if moved == command.breakpoints:
            return command
        return dataclasses.replace(command, breakpoints=moved)

    @contextlib.contextmanager
    def _silenced(self) -> Iterator[None]:
        """The program's output is shown as the user moves forwards over it; the re-runs
        from checkpoints behind going backwards or to an event show nothing."""
        output, self.session.output = self.session.output, None
        try:
            yield
        finally:
            self.session.output = output

    def mid_stretch(self) -> tuple[int | None, int | None, tuple[int, int] | None]:
        """Inside a stretch: the task running it (the next event's), the instructions it
        ran since the boundary or the anchor arrival, if known, and that anchor;
        (None, 0, None) at a boundary."""
        if self._boundary:
            return None, 0, None
        return self._mid_tid, self._steps, self._anchor

    def where(self, boundary: bool, steps: int | None,
               anchor: tuple[int, int] | None = None) -> None:
        """Remember how the current state relates to the last event boundary: instructions
        since it (or since an anchor arrival), if known, run by the task of the next event
        (`_mid_tid`). Reverse-stepi uses it."""
        self._boundary, self._steps, self._anchor = boundary, steps, anchor
        if boundary:
            self.timeline.base = None
        nxt = self.session.next_event
        self._mid_tid = None if boundary or nxt is None else nxt.tid

    def land(self, landing: Landing) -> None:
        """Take note of where a backward search of several threads left the replay."""
        self.parked = False
        if landing.tid is None or (landing.steps == 0 and landing.anchor is None
                                   and self.timeline.base is None):
            self.where(True, 0)
        else:
            self.where(False, landing.steps, landing.anchor)
            self._mid_tid = landing.tid

    def last_exec(self, position: int) -> int | None:
        """The seq of the debugged process's last EXEC event before `position`, if any."""
        assert self.facts is not None
        return self.facts.last_exec(self.pid, position)

    def peek(self, wp: Watchpoint) -> bytes:
        return self.any_task().mem.read_upto(wp.addr, wp.length)

    # -- stops (forwards: replayer.forward) ---------------------------------------------------
    def timeline_due(self) -> bool:
        return self.timeline.due()

    def paused(self, reason: object) -> Stop:
        """The stop for gdb of a replay paused mid-event (an observer's `Paused` reason)."""
        stepped_from = self._steps if not self._boundary else 0
        anchor = None if self._boundary else self._anchor
        self.where(False, None)
        parts: tuple[Any, ...] = reason if isinstance(reason, tuple) else (reason,)
        match parts:
            case ("breakpoint", tid):
                return self._stop(StopKind.BREAKPOINT, tid=tid)
            case ("step", tid):
                self.where(False, None if stepped_from is None else stepped_from + 1, anchor)
                return self._stop(StopKind.STEPPED, tid=tid)
            case ("watch", wp, tid):
                return self._stop(StopKind.WATCHPOINT, watch=wp, tid=tid)
            case ("interrupt",):
                return self._stop(StopKind.INTERRUPTED, signal.SIGINT,
                                  tid=self.recorded(self.session.task))
            case ("signal", ev):
                self._siginfo = bytes.fromhex(ev.info["siginfo"])
                return self._stop(StopKind.SIGNAL, ev.nr, tid=ev.tid)
        raise Refused(f"unexpected pause {reason!r}")

    def _stop(self, kind: StopKind, sig: int = signal.SIGTRAP,
              watch: Watchpoint | None = None, tid: int | None = None) -> Stop:
        return Stop(kind=kind, tid=self.resolve_tid(tid), signal=sig, watch=watch)

    def stop(self, kind: StopKind, tid: int | None = None, watch: Watchpoint | None = None,
             sig: int = signal.SIGTRAP) -> Stop:
        """A stop for the thread `tid` (forward runs report through this)."""
        return self._stop(kind, sig, watch, tid)
