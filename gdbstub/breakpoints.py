"""The breakpoints and watchpoints gdb has inserted (``Z``/``z``), kept by the stub.

gdb inserts every breakpoint right before each resume and removes it right after each stop, so
``Z``/``z`` must be cheap: they only edit this table, and the table is handed to the target as
part of the next ``ResumeCommand``. The target never writes an ``int3`` the user could see.

Hardware resources are accounted as x86 has them: four debug registers, each covering one
aligned region of 1, 2, 4 or 8 bytes. A hardware breakpoint (Z1) takes one; a watchpoint
(Z2-Z4) takes one per aligned piece of its range (gdbserver splits unaligned ranges the same
way). An insertion that does not fit is refused, and gdb reports "Could not insert hardware
watchpoint" instead of silently watching the wrong bytes. Re-inserting an existing entry is
idempotent (its conditions are replaced: gdb sends them with every insertion); one removal
removes it.

A code breakpoint may carry conditions (agent expressions): the target stops at a hit only if
one of them is true, as gdbserver does; a breakpoint at the same address without conditions
(of the other type, say) makes every hit there stop.
"""
from __future__ import annotations

from typing import Final

from gdbstub.agent import AgentExpr, any_true
from gdbstub.requests import BreakpointType
from debugtarget.protocol import Address, ThreadState, WatchKind, Watchpoint

DEBUG_REGISTERS: Final = 4

_WATCH_KIND: Final = {
    BreakpointType.WRITE_WATCH: WatchKind.WRITE,
    BreakpointType.READ_WATCH: WatchKind.READ,
    BreakpointType.ACCESS_WATCH: WatchKind.ACCESS,
}


def debug_register_pieces(addr: Address, length: int, limit: int = DEBUG_REGISTERS) -> int:
    """How many aligned 1/2/4/8-byte regions cover [addr, addr + length), counted only up to
    ``limit`` + 1 (a range that needs more never fits: no need to count them all)."""
    pieces = 0
    while length > 0 and pieces <= limit:
        size = 8
        while size > 1 and (addr % size or size > length):
            size //= 2
        addr += size
        length -= size
        pieces += 1
    return pieces


class BreakpointTable:
    """Software breakpoints, hardware breakpoints and watchpoints of one gdb connection."""

    def __init__(self, *, debug_registers: int = DEBUG_REGISTERS) -> None:
        self._debug_registers = debug_registers
        self._software: set[Address] = set()
        self._hardware: set[Address] = set()
        self._watch: set[Watchpoint] = set()
        self._conditions: dict[tuple[BreakpointType, Address], tuple[AgentExpr, ...]] = {}

    def insert(self, type: BreakpointType, addr: Address, length: int,
               conditions: tuple[AgentExpr, ...] = ()) -> bool:
        """Add an entry; False if it needs hardware slots that are not free (or length 0)."""
        if type in (BreakpointType.SOFTWARE, BreakpointType.HARDWARE):
            if not self._insert_code(type, addr):
                return False
            if conditions:
                self._conditions[(type, addr)] = conditions
            else:
                self._conditions.pop((type, addr), None)
            return True
        return self._insert_watch(type, addr, length)

    def _insert_code(self, type: BreakpointType, addr: Address) -> bool:
        if type is BreakpointType.SOFTWARE:
            self._software.add(addr)
            return True
        if addr in self._hardware:
            return True
        if self.slots_used() + 1 > self._debug_registers:
            return False
        self._hardware.add(addr)
        return True

    def _insert_watch(self, type: BreakpointType, addr: Address, length: int) -> bool:
        watch = Watchpoint(kind=_WATCH_KIND[type], addr=addr, length=length)
        if watch in self._watch:
            return True
        if length <= 0:
            return False
        pieces = debug_register_pieces(addr, length, self._debug_registers)
        if self.slots_used() + pieces > self._debug_registers:
            return False
        self._watch.add(watch)
        return True

    def remove(self, type: BreakpointType, addr: Address, length: int) -> None:
        """Drop an entry (removing one that is not there is harmless)."""
        self._conditions.pop((type, addr), None)
        if type is BreakpointType.SOFTWARE:
            self._software.discard(addr)
        elif type is BreakpointType.HARDWARE:
            self._hardware.discard(addr)
        else:
            self._watch.discard(Watchpoint(kind=_WATCH_KIND[type], addr=addr, length=length))

    def clear(self) -> None:
        """Forget everything (a new program run)."""
        self._software.clear()
        self._hardware.clear()
        self._watch.clear()
        self._conditions.clear()

    def slots_used(self) -> int:
        """Debug registers taken by hardware breakpoints and watchpoints."""
        return len(self._hardware) + sum(
            debug_register_pieces(w.addr, w.length) for w in self._watch)

    @property
    def breakpoints(self) -> frozenset[Address]:
        """Every code address execution must stop at (software and hardware alike)."""
        return frozenset(self._software | self._hardware)

    @property
    def conditions(self) -> Conditions | None:
        """The conditions of the breakpoints that have them (None: every hit stops)."""
        by_addr: dict[Address, tuple[AgentExpr, ...]] = {}
        for addr in self.breakpoints:
            kinds = [t for t in (BreakpointType.SOFTWARE, BreakpointType.HARDWARE)
                     if addr in (self._software if t is BreakpointType.SOFTWARE
                                 else self._hardware)]
            if all((t, addr) in self._conditions for t in kinds):
                by_addr[addr] = tuple(e for t in kinds for e in self._conditions[(t, addr)])
        return Conditions(by_addr) if by_addr else None

    @property
    def watchpoints(self) -> frozenset[Watchpoint]:
        """Every watched data range."""
        return frozenset(self._watch)

    def stop_reason(self, pc: Address) -> bytes:
        """``swbreak`` or ``hwbreak`` for a breakpoint stop at ``pc`` (software wins a tie)."""
        if pc in self._hardware and pc not in self._software:
            return b"hwbreak"
        return b"swbreak"


class Conditions:
    """Breakpoint conditions as a target uses them: which addresses have some (their hits
    must each be looked at: a kernel cannot count them), and whether a hit stops."""

    def __init__(self, by_addr: dict[Address, tuple[AgentExpr, ...]]) -> None:
        self._by_addr = by_addr
        self.addresses = frozenset(by_addr)

    def holds(self, pc: Address, thread: ThreadState) -> bool:
        """Does the hit of the breakpoint at `pc` by `thread` (stopped there) stop?"""
        exprs = self._by_addr.get(pc)
        return exprs is None or any_true(exprs, thread)
