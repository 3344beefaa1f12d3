"""The replay as a Target: serves a `replayer.debuggee.Debuggee` to a front end (gdb's stub).

The adapter translates between the Target protocol (gdb's pid.tid thread ids, its watchpoint
and stop types, TargetError) and the replay's own terms (recorded tids, replayer.control,
replayer.errors.Refused); the replay logic is all in the Debuggee. Beside the protocol's
`monitor` strings it offers the time-travel moves as typed calls (`goto_event`, `checkpoint`,
`goto_checkpoint`, `last_write`), which the monitor commands use. Every method runs on the
engine thread except `interrupt`.
"""
from __future__ import annotations

import contextlib
import errno
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

from debugtarget import monitor
from debugtarget.errors import TargetError, Unsupported
from debugtarget.protocol import (
    USER_SPACE_END,
    Action,
    Direction,
    FileStat,
    Library,
    LibraryList,
    ResumeCommand,
    Stop,
    StopKind,
    ThreadId,
    ThreadInfo,
    WatchKind,
    Watchpoint,
)
from debugtarget.trace_files import TraceFiles
from replayer import control
from replayer.debuggee import Debuggee
from replayer.errors import Refused
from replayer.progress import Sink
from replayer.session import OutputSink

_WATCH_KINDS = {WatchKind.WRITE: control.WatchKind.WRITE, WatchKind.READ: control.WatchKind.READ,
                WatchKind.ACCESS: control.WatchKind.ACCESS}
_WATCH_KINDS_BACK = {v: k for k, v in _WATCH_KINDS.items()}
_ACTIONS = {Action.CONTINUE: control.Action.CONTINUE, Action.STEP: control.Action.STEP,
            Action.RANGE_STEP: control.Action.RANGE_STEP}
_DIRECTIONS = {Direction.FORWARD: control.Direction.FORWARD,
               Direction.BACKWARD: control.Direction.BACKWARD}
_STOP_KINDS = {kind: StopKind[kind.name] for kind in control.StopKind}


class _Refusals(contextlib.ContextDecorator):
    """The replay's refusals reach the front end as TargetError (the session goes on)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if isinstance(exc, Refused):
            raise TargetError(str(exc)) from None


refusals = _Refusals()


def watchpoint(wp: Watchpoint) -> control.Watchpoint:
    return control.Watchpoint(kind=_WATCH_KINDS[wp.kind], addr=wp.addr, length=wp.length)


def resume_command(command: ResumeCommand) -> control.ResumeCommand:
    """gdb's resume in the replay's terms."""
    action = _ACTIONS.get(command.action)
    if action is None:
        raise Unsupported(f"resume action {command.action.name} (non-stop only)")
    return control.ResumeCommand(
        action=action, direction=_DIRECTIONS[command.direction], tid=command.thread.tid,
        signal=command.signal, step_range=command.step_range, breakpoints=command.breakpoints,
        conditions=command.conditions,
        watchpoints=frozenset(watchpoint(wp) for wp in command.watchpoints),
        pass_signals=command.pass_signals, exec_events=command.exec_events)


class ReplayTarget:
    """A replay of `trace` (process `pid` of it: default the root) as a Target."""

    def __init__(self, trace: Path, output: OutputSink | None = None,
                 pid: int | None = None) -> None:
        self.trace = Path(trace)
        self.files = TraceFiles(self.trace)  # gdb's open handles survive a restart
        with refusals:
            self.replay = Debuggee(self.trace, output, pid)

    def close(self) -> None:
        self.replay.close()

    def _thread(self, tid: int) -> ThreadId:
        return ThreadId(self.replay.pid, tid)

    def _stop(self, stop: control.Stop) -> Stop:
        watch = stop.watch
        if watch is None:
            return Stop(kind=_STOP_KINDS[stop.kind], thread=self._thread(stop.tid),
                        signal=stop.signal, exec_path=stop.exec_path, console=stop.console)
        return Stop(kind=_STOP_KINDS[stop.kind], thread=self._thread(stop.tid),
                    signal=stop.signal, watch_addr=watch.addr,
                    watch_kind=_WATCH_KINDS_BACK[watch.kind], exec_path=stop.exec_path,
                    console=stop.console)

    # -- the Target protocol ----------------------------------------------------------------
    def current_stop(self) -> Stop:
        return self._stop(self.replay.last_stop)

    def threads(self) -> Sequence[ThreadInfo]:
        return [ThreadInfo(id=self._thread(tid), name=name) for tid, name in self.replay.threads()]

    @refusals
    def registers(self, thread: ThreadId) -> Mapping[str, int]:
        return self.replay.registers(thread.tid)

    @refusals
    def read_memory(self, thread: ThreadId, addr: int, length: int) -> bytes:
        return self.replay.read_memory(thread.tid, addr, length)

    @refusals
    def write_registers(self, thread: ThreadId, values: Mapping[str, int]) -> None:
        self.replay.write_registers(thread.tid, values)

    @refusals
    def write_memory(self, thread: ThreadId, addr: int, data: bytes) -> None:
        self.replay.write_memory(thread.tid, addr, data)

    @refusals
    def resume(self, command: ResumeCommand) -> Stop:
        return self._stop(self.replay.resume(resume_command(command)))

    def interrupt(self) -> None:
        self.replay.interrupt()

    @refusals
    def restart(self) -> Stop:
        return self._stop(self.replay.restart())

    def kill(self, pid: int) -> None:
        self.replay.end_diversion()

    def auxv(self, pid: int) -> bytes:
        return self.replay.auxv()

    def exec_file(self, pid: int) -> str:
        return self.replay.exec_file()

    @refusals
    def libraries(self, pid: int) -> LibraryList:
        found = self.replay.libraries()
        return LibraryList(libraries=[Library(name=lib.name, lm=lib.lm, l_addr=lib.l_addr,
                                              l_ld=lib.l_ld) for lib in found.libraries],
                           main_lm=found.main_lm)

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

    def siginfo(self, thread: ThreadId) -> bytes:
        return self.replay.siginfo()

    @refusals
    def tls_address(self, thread: ThreadId, offset: int, lm: int) -> int:
        return self.replay.tls_address(thread.tid, offset, lm)

    def monitor(self, command: str) -> str:
        return monitor.run(self, command)

    def report_progress(self, sink: Sink | None) -> None:
        self.replay.progress.sink = sink

    # -- time travel, typed (the monitor commands' moves) -----------------------------------
    @refusals
    def goto_event(self, event: int) -> int:
        """Go to the state right after event `event` (`relive dump`'s numbers); returns the
        event reached (an earlier one if the user gave up waiting)."""
        r = self.replay
        count = r.session.reader.event_count
        first = monitor.event_of(max(1, r.birth))
        if not first <= event < count:
            what = "the trace" if first == 0 else f"the life of process {r.pid}"
            raise TargetError(f"event {event} is outside {what} ({first}..{count - 1})")
        with r.progress.task(f"going to event {event}", abandon_on_quit=True):
            return monitor.event_of(r.goto_position(event + 1))

    @refusals
    def checkpoint(self) -> int:
        """Keep a checkpoint at this event boundary; its number."""
        return self.replay.take_checkpoint()

    @refusals
    def goto_checkpoint(self, number: int) -> int:
        """Go to the user's checkpoint `number`; returns the event it is at."""
        r = self.replay
        snap = r.timeline.kept.get(number)
        with r.progress.task(f"going to checkpoint {number}", abandon_on_quit=True):
            return monitor.event_of(r.goto_position(snap.position))

    @refusals
    def delete_checkpoint(self, number: int) -> int:
        """Drop the user's checkpoint `number`; returns the event it was at."""
        return monitor.event_of(self.replay.timeline.kept.delete(number).position)

    def backward_stops(self) -> int:
        """What the last backward resume cost: stops of the replayed program."""
        return self.replay.backward_stops

    @refusals
    def last_write(self, addr: int, length: int = 8) -> str:
        """Go back to just before the instruction (or syscall) that last wrote
        [addr, addr + length) before now; says what it found."""
        if length not in (1, 2, 4, 8) or addr % length:
            raise TargetError("last-write needs an aligned length of 1, 2, 4 or 8 bytes")
        if not 0 < addr < USER_SPACE_END:
            raise TargetError(f"{addr:#x} is not a user-space address")
        with self.replay.progress.task(f"searching back for the last write to {addr:#x}"):
            return self.replay.last_write(addr, length)
