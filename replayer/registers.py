"""Compare a replayed thread's registers with the recorded ones, naming what differs."""
from __future__ import annotations

import struct

from tracee.fastloop import EFLAGS_IGNORED  # (the compiled comparison ignores the same)
from tracee.ptrace_api import REG_NAMES, REGS_SIZE
_FMT = f"<{len(REG_NAMES)}Q"


def unpack(raw: bytes) -> dict[str, int]:
    return dict(zip(REG_NAMES, struct.unpack(_FMT, raw[:REGS_SIZE])))


def diff(recorded: bytes, actual: bytes, skip: tuple[str, ...] = ()) -> dict[str, tuple[int, int]]:
    """{register: (recorded, replayed)} for every register that differs."""
    if recorded == actual:
        return {}
    want, got = unpack(recorded), unpack(actual)
    out = {}
    for name in REG_NAMES:
        if name in skip:
            continue
        a, b = want[name], got[name]
        if name in ("eflags", "r11"):  # r11 holds rflags after a syscall instruction
            a, b = a & ~EFLAGS_IGNORED, b & ~EFLAGS_IGNORED
        if a != b:
            out[name] = (a, b)
    return out
