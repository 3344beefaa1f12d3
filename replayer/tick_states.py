"""States a CPU-timer tick can stop the program in that no trap-driven pass reaches again.

A `rep movs`/`stos`/... interrupted after its last iteration is left at the instruction with
the count register 0 (seen on an AMD EPYC under KVM: the sysbuf hook's `rep movsb`, copying a
buffered fstat's 144 bytes, ticked at with rcx 0 and rsi/rdi past the copy). Run on, it does
nothing and the next instruction follows; but a pass that stops at each arrival there (an
int3: one per iteration, the last with rcx 1) or single-steps never sees rcx 0 at it. A mid
kept in that state could never be found again: the step back from it failed with "lost the
current position". So before a mid is kept, such an instruction is stepped over (nothing
else changes).
"""
from __future__ import annotations

import signal

from tracee import ptrace_api as api
from tracee.stops import SignalStop
from tracee.task import Task

STRING_OPS = frozenset({0xA4, 0xA5, 0xA6, 0xA7, 0xAA, 0xAB, 0xAC, 0xAD, 0xAE, 0xAF})
REP = frozenset({0xF2, 0xF3})
LEGACY_PREFIXES = frozenset({0x66, 0x67, 0xF2, 0xF3, 0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65})


def is_rep_string(code: bytes) -> bool:
    """Is `code` a rep-prefixed string instruction (prefixes, optional REX, opcode)?"""
    i, rep = 0, False
    while i < len(code) and code[i] in LEGACY_PREFIXES:
        rep |= code[i] in REP
        i += 1
    if i < len(code) and 0x40 <= code[i] <= 0x4F:
        i += 1
    return rep and i < len(code) and code[i] in STRING_OPS


def settle(task: Task) -> bool:
    """Step `task` past a rep string instruction with nothing left to do (see the module);
    False if it could not be (the state is not one to keep a mid in)."""
    rip = task.regs.rip
    if task.regs.rcx != 0 or not is_rep_string(task.mem.read_upto(rip, 8)):
        return True
    for _ in range(3):
        task.resume(api.Req.SYSEMU_SINGLESTEP)
        stop = task.wait()
        if task.regs.rip != rip:
            return True
        if not (isinstance(stop, SignalStop) and stop.signal in (signal.SIGTRAP,
                                                                 signal.SIGSTOP)):
            return False
    return False
