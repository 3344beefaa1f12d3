"""Decoding x86 backwards: which instructions can end right before a pc.

reverse-stepi inside a stretch guesses the previous instruction without running anything:
one that ends exactly at the pc and falls through to it (or, at a function's first
instruction, the call before the return address). x86 decodes backwards ambiguously, so every
candidate is returned; the caller checks each by replaying (replayer.stretch_back).
"""
from __future__ import annotations

from typing import Any

_DISASM: Any = None


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


