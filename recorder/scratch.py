"""Scratch areas: where the kernel writes a blocking syscall's outputs while other threads run.

A thread that waits in read/poll/wait4/... while another thread of its address space runs user
code must not have its buffer filled at a moment replay cannot reproduce. So, when the address
space is shared (threads, a vfork pair) and the call may block (recorder.blocking: a read of a
regular file or of an O_NONBLOCK pipe does not), the output pointers the catalogue names (its
entries' `scratch` moves) are pointed at the thread's own scratch area; when the thread runs
again, the recorder copies the outputs to the program's buffers and records those writes
(exact, at the program's addresses), and restores the argument registers. Replay emulates the
call and never needs the area, but maps it at the same address (a MAPPING event) so the two
address spaces stay alike.

Invariants (DESIGN.md section 4): each area is a flagged mapping (Flag.SCRATCH, owner = the
tid) in the address-space model, never coalesced with anything; a PROT_NONE guard page
(Flag.GUARD) follows it unless RELIVE_SCRATCH_GUARD=0 (tests use that to make two areas
adjacent and kernel-merged); areas are mapped lazily at a thread's first redirected call,
returned to the address space's pool when the thread exits or a vfork child execs, and reused.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from typing import NamedTuple

from tracee.address_space import AddressSpace, Flag, Mapping, mapping_info
from tracee.remote import (MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE, checked,
                           inject_syscall)
from tracee.syscalls import queries
from tracee.syscalls.outputs import evaluate_size
from tracee.syscalls.rules import Scratch
from tracee.task import MemoryAccessError, Task

SCRATCH_SIZE = 256 * 1024
PAGE = 4096
NR_MMAP, NR_MPROTECT = 9, 10
ALIGN = 16

Args = tuple[int, ...]
ReadInt = Callable[[int, int], int]
# [(arg index, capacity in bytes, copy the input in first)]
Plan = list[tuple[int, int, bool]]


def _plan(moves: tuple[Scratch, ...], args: Args, read_int: ReadInt) -> Plan:
    """The catalogue's scratch moves of a call (its `scratch`), sized before the call."""
    return [(m.arg, evaluate_size(m.size, args, 0, read_int), m.copy_in) for m in moves
            if (m.with_arg < 0 or args[m.with_arg]) and (m.without_arg < 0
                                                         or not args[m.without_arg])]


ARG_REGS = ("rdi", "rsi", "rdx", "r10", "r8", "r9")


class Redirect(NamedTuple):
    """One call's outputs moved to scratch: (scratch address, program address, size), and
    the arguments the call was made with."""
    moves: list[tuple[int, int, int]]
    args: Args

    def to_program(self, addr: int) -> int | None:
        for scratch, orig, size in self.moves:
            if scratch <= addr < scratch + size:
                return orig + (addr - scratch)
        return None


class ScratchAreas:
    def __init__(self) -> None:
        self.guard = os.environ.get("RELIVE_SCRATCH_GUARD", "1") != "0"

    def area_of(self, tid: int, space: AddressSpace) -> Mapping | None:
        for m in space.flagged(Flag.SCRATCH):
            if m.owner == tid:
                return m
        return None

    def plan(self, name: str, args: Args, task: Task) -> Plan:
        """What to redirect for this call (empty: nothing, or it does not fit)."""
        call = queries.entry(name)
        if call is None or not call.scratch:
            return []
        try:
            plan = [p for p in _plan(call.scratch, args, task.mem.read_uint)
                    if args[p[0]] and p[1] > 0]
        except MemoryAccessError:
            return []
        need = sum((size + ALIGN - 1) // ALIGN * ALIGN for _, size, _ in plan)
        return plan if need <= SCRATCH_SIZE else []

    def claim(self, tid: int, space: AddressSpace) -> Mapping | None:
        """A free area of this address space (left by an exited thread), now `tid`'s."""
        for m in space.flagged(Flag.SCRATCH):
            if m.owner == 0:
                mine = Mapping(start=m.start, end=m.end, prot=m.prot, flags=m.flags, owner=tid)
                space.map(mine)
                return mine
        return None

    def create(self, task: Task, space: AddressSpace) -> list[Mapping]:
        """Map a new area (and its guard) in the task's address space; the mappings made."""
        size = SCRATCH_SIZE + (PAGE if self.guard else 0)
        start = checked(inject_syscall(task, NR_MMAP, 0, size, PROT_READ | PROT_WRITE,
                                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), "mmap scratch")
        made = [Mapping(start=start, end=start + SCRATCH_SIZE, prot=PROT_READ | PROT_WRITE,
                        flags=Flag.SCRATCH, owner=task.tid)]
        if self.guard:
            guard = start + SCRATCH_SIZE
            checked(inject_syscall(task, NR_MPROTECT, guard, PAGE, 0), "mprotect guard")
            made.append(Mapping(start=guard, end=guard + PAGE, prot=0, flags=Flag.GUARD))
        for m in made:
            space.map(m)
        return made

    def release(self, tid: int, space: AddressSpace) -> None:
        """The thread is gone (or a vfork child exec'd): its area goes back to the pool."""
        m = self.area_of(tid, space)
        if m is not None:
            space.map(Mapping(start=m.start, end=m.end, prot=m.prot, flags=m.flags, owner=0))

    def redirect(self, task: Task, area: Mapping, plan: Plan, args: Args) -> Redirect:
        """Point the call's output arguments into `area` (inputs copied in first)."""
        inputs = {arg: task.mem.read(args[arg], size) for arg, size, copy_in in plan if copy_in}
        moves = []
        at = area.start
        new_args = list(args)
        for arg, size, _ in plan:
            if arg in inputs:
                task.mem.write(at, inputs[arg])
            moves.append((at, args[arg], size))
            new_args[arg] = at
            task.set_reg(ARG_REGS[arg], at)
            at += (size + ALIGN - 1) // ALIGN * ALIGN
        return Redirect(moves, tuple(new_args))


def mapping_event_info(m: Mapping) -> dict[str, object]:
    return {"map": mapping_info(m)}
