"""Decoding x86 backwards: which instructions can end right before a pc.

reverse-stepi inside a stretch guesses the previous instruction without running anything:
one that ends exactly at the pc and falls through to it (or, at a function's first
instruction, the call before the return address). x86 decodes backwards ambiguously, so every
candidate is returned; the caller checks each by replaying (replayer.stretch_back).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

_DISASM: Any = None
_SWEEP: Any = None
JUMP_WINDOW = 2048  # bytes of code searched on each side of pc for jumps to it


def previous_instructions(code: bytes, pc: int) -> list[int | None]:
    """Every address where an instruction that falls through to `pc` could start."""
    found: list[int | None] = []
    skip = 0
    while len(found) < 8:
        start = previous_instruction(code, pc, skip=skip)
        if start is None:
            break
        found.append(start)
        skip = pc - start
    return found


def previous_instruction(code: bytes, pc: int, want_call: bool = False,
                         skip: int = 0) -> int | None:
    """The address of an instruction that ends exactly at `pc` and falls through to it (not a
    jump, call or return; with `want_call`, a call), decoding the 16 bytes before pc; None
    if there is none."""
    global _DISASM
    import capstone
    if _DISASM is None:
        _DISASM = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
        _DISASM.detail = True
    for length in range(skip + 1, min(15, len(code)) + 1):
        start = pc - length
        insns = list(_DISASM.disasm(code[len(code) - length:], start, 1))
        if insns and insns[0].size == length:
            groups = set(insns[0].groups)
            if want_call:
                if capstone.CS_GRP_CALL in groups:
                    return start
            elif not (groups & {capstone.CS_GRP_CALL, capstone.CS_GRP_RET, capstone.CS_GRP_INT,
                                capstone.CS_GRP_IRET}
                      or insns[0].mnemonic in ("jmp", "ljmp")):
                return start  # (a conditional jump may fall through)
    return None




def code_around(read: Callable[[int, int], bytes], pc: int) -> tuple[int, bytes]:
    """Up to JUMP_WINDOW bytes of code on each side of pc (less before it where the mapping
    starts closer): where the first byte is, and the bytes."""
    for start in (pc - JUMP_WINDOW, pc & ~0xFFF, pc):
        code = read(start, pc + JUMP_WINDOW - start)
        if code:
            return start, code
    return pc, b""


def jumps_to(start: int, code: bytes, pc: int) -> list[int]:
    """Addresses of direct jumps and conditional jumps to `pc` in `code` (at `start`), by
    linear sweeps from its start (x86 resynchronises within a few instructions) and from
    pc itself; a wrong guess only costs a counting pass."""
    global _SWEEP
    import capstone
    if _SWEEP is None:
        _SWEEP = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
        _SWEEP.skipdata = True
    found: list[int] = []
    for offset in sorted({0, pc - start}):
        for address, _, mnemonic, operand in _SWEEP.disasm_lite(code[offset:], start + offset):
            op = mnemonic.split()[-1] if mnemonic else ""
            if ((op.startswith("j") or op.startswith("loop")) and operand.startswith("0x")
                    and int(operand, 16) == pc and address not in found):
                found.append(address)
    return found


def candidates_then_jumps(candidates: list[int | None], start: int, code: bytes,
                          pc: int) -> Iterator[int]:
    """The fall-through candidates first, then (swept only if those were not it) the jumps
    to pc, each once."""
    tried: set[int] = set()
    for candidate in candidates:
        if candidate is not None and candidate not in tried:
            tried.add(candidate)
            yield candidate
    for candidate in jumps_to(start, code, pc):
        if candidate not in tried:
            tried.add(candidate)
            yield candidate
