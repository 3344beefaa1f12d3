"""Breakpoints and watchpoints armed in the replayed process while it runs, and what a
SIGTRAP means: an int3 we planted, a debug-register watchpoint, a single step, or the
replayer's own signal-point breakpoint (debug register 3).

One process is *debugged* (the process of the task Traps is made with): its memory holds the
int3 bytes and every one of its threads has the watchpoints in debug registers 0-2 (debug
registers are per thread, and a thread created while armed gets them at once, see
`replant`). Other processes of the tree run untouched; a task of another process that meets
one of our int3s anyway (a vfork child shares its parent's memory) is stepped over it
silently ('pass'), and a fork child's copy of the int3s is removed before it runs.

int3 bytes live in memory only while armed: `disarm()` always restores the program's bytes.
Without a TaskSet the debugged process is the one task given (the timeline's use).
"""
from __future__ import annotations

import contextlib
import signal
import struct
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from replayer.control import BreakpointConditions, WatchKind, Watchpoint
from replayer.tasks import CLONE_VM, TaskSet
from tracee import ptrace_api as api
from tracee.stops import SignalStop, Stop
from tracee.syscalls.queries import CLONES, MAP_CHANGERS
from tracee.sysnums import name_of
from tracee.task import Task
from tracefile.records import Event, Kind

INT3 = b"\xcc"
DR6, DR7 = 6, 7
WATCH_SLOTS = 3  # debug registers 0-2; 3 is the replayer's own
KEEP_DR7 = 0xF << 28 | 0b11 << 6  # slot 3's enable and condition bits
TRAP_TRACE = 2
_RW = {WatchKind.WRITE: 0b01, WatchKind.READ: 0b11, WatchKind.ACCESS: 0b11}
_LEN = {1: 0b00, 2: 0b01, 4: 0b11, 8: 0b10}




def _maps_change(event: Event) -> bool:
    return event.kind == Kind.EXEC or (event.kind == Kind.SYSCALL
                                       and name_of(event.nr) in MAP_CHANGERS)


def is_clone(event: Event) -> bool:
    """A clone/fork/vfork that created a task (its result is the recorded child tid)."""
    return event.kind == Kind.SYSCALL and name_of(event.nr) in CLONES and event.result > 0


def written_watchpoints(event: Event, watchpoints: frozenset[Watchpoint]) -> list[Watchpoint]:
    """Write/access watchpoints whose range the event's recorded writes (the kernel's, for a
    syscall) touched: debug registers never see those writes."""
    return [wp for wp in watchpoints if wp.kind is not WatchKind.READ
            and any(w.addr < wp.addr + wp.length and wp.addr < w.addr + len(w.data)
                    for w in event.writes)]


class StoppedThread:
    """A task stopped at a breakpoint, as a breakpoint condition reads it (gdb's
    target-side conditions: replayer.control.ThreadState)."""

    def __init__(self, task: Task) -> None:
        self.task = task

    def register(self, name: str) -> int:
        if name not in api.REG_NAMES:
            raise OSError(f"register {name} is not read by breakpoint conditions")
        return int(getattr(self.task.regs, name))

    def read_memory(self, addr: int, length: int) -> bytes:
        if not 0 <= addr < 1 << 63 or not 0 < length <= 8:
            return b""
        return self.task.mem.read_upto(addr, length)


def condition_holds(conditions: BreakpointConditions | None, pc: int, task: Task) -> bool:
    """Does a hit of the breakpoint at `pc` by `task` stop, given gdb's conditions?"""
    if conditions is None or pc not in conditions.addresses:
        return True
    return conditions.holds(pc, StoppedThread(task))


def watch_pieces(wp: Watchpoint) -> list[tuple[int, int, Watchpoint]]:
    """The aligned 1/2/4/8-byte pieces (address, length) that cover a watched range, as
    debug registers need them (the stub lets at most WATCH_SLOTS of them through)."""
    pieces: list[tuple[int, int, Watchpoint]] = []
    addr, left = wp.addr, wp.length
    while left > 0 and len(pieces) <= WATCH_SLOTS:
        size = 8
        while size > 1 and (addr % size or size > left):
            size //= 2
        pieces.append((addr, size, wp))
        addr += size
        left -= size
    return pieces


@dataclass(frozen=True, slots=True)
class Trap:
    """What a SIGTRAP stop was: kind is 'breakpoint' (pc = its address, already rewound),
    'watch' (wp = which), 'step', 'own' (the replayer's breakpoint), 'pass' (an int3 of ours
    that must not stop: a thread's first instruction at the pc it was resumed from, or a task
    of another process; pc rewound, to be stepped over) or 'other'. `task` is the task that
    stopped."""
    kind: str
    pc: int = 0
    wp: Watchpoint | None = None
    task: Task | None = None


class Traps:
    def __init__(self, task: Task, breakpoints: set[int] | frozenset[int],
                 watchpoints: frozenset[Watchpoint] = frozenset(), *,
                 taskset: TaskSet | None = None, skip: Mapping[int, int] | None = None) -> None:
        """Arm `breakpoints` in the memory of `task`'s process and `watchpoints` in its
        threads (all of them if `taskset` is given). `skip` maps real tids to the pc they
        resume from: a breakpoint there does not trigger on their first instruction."""
        self.task = task
        self.pid = task.pid
        self.mem = task.mem
        self.taskset = taskset
        self.breakpoints = set(breakpoints)
        self.skip = dict(skip or {})
        self.saved: dict[int, bytes] = {}
        # One debug register per aligned 1/2/4/8-byte piece of a watched range (what x86
        # can watch): slot -> (piece address, piece length, the watchpoint it belongs to).
        self.slots: list[tuple[int, int, Watchpoint]] = [
            piece for wp in sorted(watchpoints, key=lambda w: (w.addr, w.length))
            for piece in watch_pieces(wp)][:WATCH_SLOTS]
        self.armed: dict[int, Task] = {}  # real tid -> task with the watchpoints set
        self._last = task
        try:  # all or nothing: a failure must not leave int3s behind in the program
            for addr in self.breakpoints:
                self._plant(addr)
            for t in self._threads():
                self._arm(t)
        except BaseException:
            self.disarm()
            raise

    def _threads(self) -> Iterable[Task]:
        if self.taskset is None:
            return (self.task,)
        return [t for t in self.taskset.tasks.values() if t.pid == self.pid]

    def _task_for(self, tid: int) -> Task:
        if tid == self.task.tid or self.taskset is None:
            return self.task
        for t in self.taskset.tasks.values():
            if t.tid == tid:
                return t
        return self.task

    def _arm(self, task: Task) -> None:
        if not self.slots or task.tid in self.armed:
            return
        try:
            dr7 = api.get_debugreg(task.tid, DR7) & KEEP_DR7
            for slot, (addr, size, wp) in enumerate(self.slots):
                api.set_debugreg(task.tid, slot, addr)
                dr7 |= 1 << (2 * slot)
                dr7 |= (_RW[wp.kind] | _LEN[size] << 2) << (16 + 4 * slot)
            api.set_debugreg(task.tid, DR7, dr7)
        except OSError:
            return  # not stopped (exiting, or inside a real vfork): it runs no program code
        self.armed[task.tid] = task

    def replant(self, event: Event | None) -> None:
        """After an event: plant again the int3s that a new mapping replaced or that could
        not be planted before (a library loaded since); arm a thread the event created; take
        our int3s out of a forked child's copy of the memory."""
        if event is None:
            return
        if self.taskset is not None:
            if is_clone(event):
                self._adopt(event)
            elif event.kind == Kind.SIGNAL:  # delivery moved the thread: no first-pc skip
                task = self.taskset.tasks.get(event.tid)
                if task is not None:
                    self.skip.pop(task.tid, None)
        if not _maps_change(event):
            return
        for addr in self.breakpoints:
            if self.mem.read_upto(addr, 1) != INT3:
                self.saved.pop(addr, None)
                self._plant(addr)

    def _adopt(self, event: Event) -> None:
        assert self.taskset is not None
        child = self.taskset.tasks.get(event.result)
        parent = self.taskset.tasks.get(event.tid)
        if child is None:
            return
        if child.pid == self.pid:
            self._arm(child)
        elif (parent is not None and parent.pid == self.pid
              and not int(event.info.get("flags", 0)) & CLONE_VM):
            for addr, orig in self.saved.items():
                child.mem.write(addr, orig)

    def _plant(self, addr: int) -> None:
        orig = self.mem.read_upto(addr, 1)
        if orig and orig != INT3 and self.mem.write(addr, INT3) == 1:
            self.saved[addr] = orig

    def disarm(self) -> None:
        for addr, orig in self.saved.items():
            self.mem.write(addr, orig)
        self.saved.clear()
        for task in self.armed.values():
            try:
                dr7 = api.get_debugreg(task.tid, DR7)
                api.set_debugreg(task.tid, DR7, dr7 & KEEP_DR7)
            except OSError:
                pass  # gone, or running to its exit
        self.armed.clear()
        self.slots = []

    @contextlib.contextmanager
    def lifted(self) -> Iterator[None]:
        """The program's own bytes under our int3s for a while (a fork taken meanwhile
        copies the program, not our breakpoints)."""
        for addr, orig in self.saved.items():
            self.mem.write(addr, orig)
        try:
            yield
        finally:
            for addr in self.saved:
                self.mem.write(addr, INT3)

    def classify(self, stop: Stop) -> Trap | None:
        """None if the stop is not a SIGTRAP; otherwise what caused it."""
        if not (isinstance(stop, SignalStop) and stop.signal == signal.SIGTRAP):
            return None
        task = self._task_for(stop.tid)
        self._last = task
        ours = task.pid == self.pid
        dr6 = api.get_debugreg(task.tid, DR6)
        if dr6 & 0b111 and self.slots and task.tid in self.armed:
            api.set_debugreg(task.tid, DR6, 0)
            slot = (dr6 & 0b111).bit_length() - 1
            if slot < len(self.slots):
                return Trap("watch", wp=self.slots[slot][2], task=task)
        if dr6 & 0b1000:  # cleared: the kernel keeps DR6 until the next debug trap, and a
            api.set_debugreg(task.tid, DR6, 0)  # later int3 stop must not look like ours
            return Trap("own", task=task)
        pc = task.regs.rip - 1
        first = self.skip.pop(task.tid, None)
        if pc in self.saved and (ours or task.mem.read_upto(pc, 1) == INT3):
            task.set_reg("rip", pc)
            if ours and first != pc:
                return Trap("breakpoint", pc=pc, task=task)
            return Trap("pass", pc=pc, task=task)
        code = struct.unpack_from("<i", api.get_siginfo(task.tid), 8)[0]
        if code == TRAP_TRACE:
            return Trap("step", task=task)
        return Trap("other", task=task)

    def after_step(self, stop: Stop) -> Trap | None:
        """What the single step of `step_over` met: a watchpoint the stepped instruction
        triggered ('watch'), a plain 'step', or None (not a SIGTRAP: a syscall, a fault)."""
        if not (isinstance(stop, SignalStop) and stop.signal == signal.SIGTRAP):
            return None
        task = self._task_for(stop.tid)
        dr6 = api.get_debugreg(task.tid, DR6)
        if dr6:
            api.set_debugreg(task.tid, DR6, 0)
        slot = (dr6 & 0b111).bit_length() - 1
        if 0 <= slot < len(self.slots) and task.tid in self.armed:
            return Trap("watch", wp=self.slots[slot][2], task=task)
        return Trap("step", task=task)

    def step_over(self, pc: int, task: Task | None = None) -> Stop:
        """Execute the instruction under the int3 at `pc` (the program's own byte) in `task`
        (default: the one last classified), then plant the int3 again. Returns the stop of
        that one instruction (a syscall entry if it was a `syscall`)."""
        task = task or self._last
        orig = self.saved.get(pc)
        if orig is not None:
            self.mem.write(pc, orig)
        task.resume(api.Req.SYSEMU_SINGLESTEP)
        stop = task.wait()
        if orig is not None:
            self.mem.write(pc, INT3)
        return stop
