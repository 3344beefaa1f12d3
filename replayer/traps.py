"""Breakpoints and watchpoints armed in the replayed process while it runs, and what a
SIGTRAP means: an int3 we planted, a debug-register watchpoint, a single step, or the
replayer's own signal-point breakpoint (debug register 3).

int3 bytes live in memory only while armed: `disarm()` always restores the program's bytes.
"""
from __future__ import annotations

import signal
import struct
from dataclasses import dataclass

from gdbstub.target import Watchpoint, WatchKind
from tracee import ptrace_api as api
from tracee.stops import SignalStop, Stop
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


MAP_CHANGERS = frozenset({"mmap", "munmap", "mremap", "mprotect", "brk", "execve", "madvise"})


def _maps_change(event: Event) -> bool:
    return event.kind == Kind.EXEC or (event.kind == Kind.SYSCALL
                                       and name_of(event.nr) in MAP_CHANGERS)


def written_watchpoints(event: Event, watchpoints: frozenset[Watchpoint]) -> list[Watchpoint]:
    """Write/access watchpoints whose range the event's recorded writes (the kernel's, for a
    syscall) touched: debug registers never see those writes."""
    return [wp for wp in watchpoints if wp.kind is not WatchKind.READ
            and any(w.addr < wp.addr + wp.length and wp.addr < w.addr + len(w.data)
                    for w in event.writes)]


@dataclass(frozen=True, slots=True)
class Trap:
    """What a SIGTRAP stop was: kind is 'breakpoint' (pc = its address, already rewound),
    'watch' (wp = which), 'step', 'own' (the replayer's breakpoint) or 'other'."""
    kind: str
    pc: int = 0
    wp: Watchpoint | None = None


class Traps:
    def __init__(self, task: Task, breakpoints: set[int] | frozenset[int],
                 watchpoints: frozenset[Watchpoint] = frozenset()) -> None:
        self.task = task
        self.breakpoints = set(breakpoints)
        self.saved: dict[int, bytes] = {}
        self.slots: list[Watchpoint] = []
        for addr in self.breakpoints:
            self._plant(addr)
        if watchpoints:
            dr7 = api.get_debugreg(task.tid, DR7) & KEEP_DR7
            for slot, wp in enumerate(sorted(watchpoints, key=lambda w: w.addr)[:WATCH_SLOTS]):
                api.set_debugreg(task.tid, slot, wp.addr)
                dr7 |= 1 << (2 * slot)
                dr7 |= (_RW[wp.kind] | _LEN.get(wp.length, 0b11) << 2) << (16 + 4 * slot)
                self.slots.append(wp)
            api.set_debugreg(task.tid, DR7, dr7)

    def replant(self, event: Event | None) -> None:
        """After an event that changed the address space, plant again the int3s that a new
        mapping replaced or that could not be planted before (a library loaded since)."""
        if event is None or not _maps_change(event):
            return
        for addr in self.breakpoints:
            if self.task.mem.read_upto(addr, 1) != INT3:
                self.saved.pop(addr, None)
                self._plant(addr)

    def _plant(self, addr: int) -> None:
        orig = self.task.mem.read_upto(addr, 1)
        if orig and orig != INT3 and self.task.mem.write(addr, INT3) == 1:
            self.saved[addr] = orig

    def disarm(self) -> None:
        for addr, orig in self.saved.items():
            self.task.mem.write(addr, orig)
        self.saved.clear()
        if self.slots:
            dr7 = api.get_debugreg(self.task.tid, DR7)
            api.set_debugreg(self.task.tid, DR7, dr7 & KEEP_DR7)
            self.slots = []

    def classify(self, stop: Stop) -> Trap | None:
        """None if the stop is not a SIGTRAP; otherwise what caused it."""
        if not (isinstance(stop, SignalStop) and stop.signal == signal.SIGTRAP):
            return None
        task = self.task
        dr6 = api.get_debugreg(task.tid, DR6)
        if dr6 & 0b111 and self.slots:
            api.set_debugreg(task.tid, DR6, 0)
            slot = (dr6 & 0b111).bit_length() - 1
            if slot < len(self.slots):
                return Trap("watch", wp=self.slots[slot])
        if dr6 & 0b1000:
            return Trap("own")
        rip = task.regs.rip
        if rip - 1 in self.saved:
            task.set_reg("rip", rip - 1)
            return Trap("breakpoint", pc=rip - 1)
        code = struct.unpack_from("<i", api.get_siginfo(task.tid), 8)[0]
        if code == TRAP_TRACE:
            return Trap("step")
        return Trap("other")

    def after_step(self, stop: Stop) -> Trap | None:
        """What the single step of `step_over` met: a watchpoint the stepped instruction
        triggered ('watch'), a plain 'step', or None (not a SIGTRAP: a syscall, a fault)."""
        if not (isinstance(stop, SignalStop) and stop.signal == signal.SIGTRAP):
            return None
        dr6 = api.get_debugreg(self.task.tid, DR6)
        if dr6:
            api.set_debugreg(self.task.tid, DR6, 0)
        slot = (dr6 & 0b111).bit_length() - 1
        if 0 <= slot < len(self.slots):
            return Trap("watch", wp=self.slots[slot])
        return Trap("step")

    def step_over(self, pc: int) -> Stop:
        """Execute the instruction under the int3 at `pc` (the program's own byte), then plant
        the int3 again. Returns the stop of that one instruction (a syscall entry if it was a
        `syscall`)."""
        orig = self.saved.get(pc)
        if orig is not None:
            self.task.mem.write(pc, orig)
        self.task.resume(api.Req.SYSEMU_SINGLESTEP)
        stop = self.task.wait()
        if orig is not None:
            self.task.mem.write(pc, INT3)
        return stop
