"""A record session: run the program under ptrace and write every event it causes.

One loop owns every ptrace call. Each stop is a value; per kind:
  - syscall entry/exit -> a SYSCALL event (registers at entry, result, memory the kernel wrote);
  - exec -> an EXEC event describing the new image (recorder.image);
  - rdtsc/rdtscp trap (PR_SET_TSC) -> an RDTSC event with the value the program got;
  - signals -> SIGNAL events at points replay can find again (recorder.signals);
  - exit -> an EXIT event.
Threads and child processes are refused with a clear message for now: the scheduler that makes
them replayable is not written yet.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from recorder import syscall_table as table
from recorder.errors import UnsupportedError
from recorder.image import snapshot_image
from recorder.signals import SignalRecorder
from recorder.syscall_effects import EffectRecorder
from tracee import ptrace_api as api
from tracee.address_space import AddressSpace
from tracee.spawn import pin_to_one_cpu, spawn
from tracee.stops import EventStop, Exited, Killed, SignalStop, Stop, SyscallStop, decode
from tracee.sysnums import name_of
from tracee.task import Memory, Task
from tracefile.records import Event, Kind, TaskRecord
from tracefile.writer import TraceWriter

log = logging.getLogger(__name__)

ENOSYS = 38
NOT_YET = {"clone": "threads or child processes", "fork": "child processes",
           "vfork": "child processes"}
# prctl options that would undo what the recorder set up: answered as if they worked.
PR_SET_TSC, PR_SET_SECCOMP = 26, 22


@dataclass
class Entry:
    """A syscall between its entry and exit stops."""
    nr: int
    args: tuple[int, ...]
    regs: bytes
    fake_result: int | None = None
    exec_done: bool = False


@dataclass
class RecordedTask:
    task: Task
    space: AddressSpace
    entry: Entry | None = None
    exited: bool = False
    # Set when the task was resumed from a syscall-exit stop: a signal stop that follows at
    # the same rip came before any user instruction ran, i.e. right after that syscall.
    exit_rip: int | None = None
    last_event: int = -1
    held: list[bytes] = field(default_factory=list)


class Recorder:
    def __init__(self, writer: TraceWriter, path: str, argv: list[str],
                 env: dict[str, str]) -> None:
        self.writer = writer
        self.path = path
        self.argv = argv
        self.env = env
        self.tasks: dict[int, RecordedTask] = {}
        self.effects = EffectRecorder(writer, own_outputs=_own_outputs())
        self.signals = SignalRecorder(self)
        self._info = api.SyscallInfo()
        self.status = 0

    # -- events -----------------------------------------------------------------------------
    def emit(self, t: RecordedTask, kind: Kind, **fields: object) -> int:
        seq = self.writer.add(Event(seq=-1, tid=t.task.tid, kind=kind, **fields))  # type: ignore[arg-type]
        t.last_event = seq
        return seq

    # -- main loop --------------------------------------------------------------------------
    def run(self) -> int:
        """Record until the program ends; returns its wait status."""
        pin_to_one_cpu()
        pid = spawn(self.path, self.argv, self.env)
        task = Task(pid, pid, Memory(pid))
        t = RecordedTask(task=task, space=AddressSpace())
        self.tasks[pid] = t
        self.writer.put_task(TaskRecord(tid=pid, pid=pid, ppid=os.getpid(),
                                        argv=tuple(self.argv), exe=self.path))
        self._record_exec(t)
        self.resume(t)
        try:
            while self.tasks:
                tid, status = self.signals.wait_any()
                t = self.tasks.get(tid)  # type: ignore[assignment]
                if t is None:
                    continue
                self.handle(t, decode(tid, status))
        finally:
            for t in self.tasks.values():
                t.task.kill()
        return self.status

    def resume(self, t: RecordedTask, sig: int = 0) -> None:
        t.task.resume(api.Req.SYSCALL, sig)

    def handle(self, t: RecordedTask, stop: Stop) -> None:
        match stop:
            case SyscallStop():
                info = api.get_syscall_info(t.task.tid, self._info)
                if info.op == api.SYSCALL_INFO_ENTRY:
                    self.on_entry(t, info.u[0], tuple(info.u[1:7]))
                else:
                    self.on_exit(t, _signed(info.u[0]), info.instruction_pointer)
            case SignalStop(signal=sig):
                self.signals.on_signal_stop(t, sig)
            case EventStop(event=api.Event.EXEC):
                self.on_exec(t)
            case EventStop(event=api.Event.EXIT):
                self.on_exit_event(t)
            case EventStop(event=api.Event.STOP):
                self.signals.on_interrupt(t)
            case EventStop(event=ev):
                raise UnsupportedError(f"{NOT_YET.get(ev.name.lower(), ev.name.lower())} "
                                       "are not supported by relive yet")
            case Exited() | Killed():
                self.on_gone(t, stop)

    # -- syscalls ---------------------------------------------------------------------------
    def on_entry(self, t: RecordedTask, nr: int, args: tuple[int, ...]) -> None:
        t.exit_rip = None
        if t.held:
            self.signals.deliver_held_before_syscall(t)
            return
        name = name_of(nr)
        if name in NOT_YET:
            raise UnsupportedError(
                f"the program called {name}: recording {NOT_YET[name]} is not supported by "
                "relive yet")
        entry = Entry(nr=nr, args=args, regs=t.task.regs_bytes())
        if name in table.FAKE_ENOSYS:
            entry.fake_result = -ENOSYS
        elif name == "prctl" and args[0] in (PR_SET_TSC, PR_SET_SECCOMP):
            entry.fake_result = 0 if args[0] == PR_SET_TSC else -22
        elif table.lookup(name) is None and name not in table.IRREGULAR:
            raise UnsupportedError(f"the program called syscall {name} (number {nr}), which "
                                   "relive cannot record yet")
        if entry.fake_result is not None:
            t.task.set_reg("orig_rax", -1)  # the kernel skips the call
        if name in ("exit", "exit_group"):  # no exit stop follows: record it now
            self.emit(t, Kind.SYSCALL, nr=nr, result=0, regs=entry.regs)
        t.entry = entry
        self.resume(t)

    def on_exit(self, t: RecordedTask, result: int, rip: int) -> None:
        entry, t.entry = t.entry, None
        if entry is None:  # the exit half of an exec whose entry we saw before the image
            self.resume(t)
            return
        if entry.exec_done:
            t.exit_rip = rip
            self.resume(t)
            return
        if entry.fake_result is not None:
            result = entry.fake_result
            t.task.set_reg("rax", result)
        eff = self.effects.effects(t.task, t.space, entry.nr, entry.args, result)
        self.emit(t, Kind.SYSCALL, nr=entry.nr, result=result, regs=entry.regs,
                  writes=tuple(eff.writes), info=eff.info)
        t.exit_rip = rip
        self.resume(t)

    # -- exec and exit ----------------------------------------------------------------------
    def on_exec(self, t: RecordedTask) -> None:
        entry = t.entry
        if entry is None or name_of(entry.nr) not in ("execve", "execveat"):
            raise UnsupportedError("exec stop without an execve entry")
        t.task.mem.reopen()
        t.task.invalidate_regs()
        self.emit(t, Kind.SYSCALL, nr=entry.nr, result=0, regs=entry.regs)
        entry.exec_done = True
        self._record_exec(t)
        self.resume(t)

    def _record_exec(self, t: RecordedTask) -> None:
        argv = self.argv if t.last_event < 0 else []
        event, space, identities = snapshot_image(t.task, self.writer, argv)
        self.effects.identities.update(identities)
        t.space = space
        self.emit(t, Kind.EXEC, regs=event.regs, writes=event.writes, info=event.info)

    def on_exit_event(self, t: RecordedTask) -> None:
        status = api.get_event_msg(t.task.tid)
        self.emit(t, Kind.EXIT, result=status)
        t.exited = True
        self.writer.set_task_exit(t.task.tid, status)
        t.task.resume(api.Req.CONT)

    def on_gone(self, t: RecordedTask, stop: Exited | Killed) -> None:
        status = (stop.code << 8) if isinstance(stop, Exited) else stop.signal
        if not t.exited:
            self.emit(t, Kind.EXIT, result=status)
            self.writer.set_task_exit(t.task.tid, status)
        if t.task.tid == t.task.pid:
            self.status = status
        t.task.mem.close()
        del self.tasks[t.task.tid]


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _own_outputs() -> dict[int, tuple[int, int]]:
    out = {}
    for fd in (1, 2):
        try:
            st = os.fstat(fd)
            out[fd] = (st.st_dev, st.st_ino)
        except OSError:
            pass
    return out


def exit_code(status: int) -> int:
    """A wait status as a shell exit code (128+N when killed by signal N)."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)

