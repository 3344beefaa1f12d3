"""The initial stack of a freshly exec'd process: find and edit its auxiliary vector.

At the exec stop rsp points at argc, then argv[], NULL, envp[], NULL, then (type, value) pairs
ending with AT_NULL. Hiding the vDSO = turning AT_SYSINFO_EHDR into AT_IGNORE before the loader
reads it, so glibc makes real clock_gettime/gettimeofday/time syscalls that can be recorded.
"""
from __future__ import annotations

import struct

from tracee.task import Task

AT_NULL, AT_IGNORE, AT_SYSINFO_EHDR = 0, 1, 33


def auxv_address(task: Task) -> int:
    rsp = task.regs.rsp
    argc = task.mem.read_u64(rsp)
    addr = rsp + 8 * (argc + 2)          # skip argc, argv[], NULL
    while task.mem.read_u64(addr) != 0:  # envp[]
        addr += 8
    return int(addr) + 8


def read_auxv(task: Task, addr: int) -> bytes:
    out = b""
    while True:
        pair = task.mem.read(addr + len(out), 16)
        out += pair
        if struct.unpack("<QQ", pair)[0] == AT_NULL:
            return out


def hide_vdso(task: Task) -> bytes:
    """Rewrite AT_SYSINFO_EHDR to AT_IGNORE in place; returns the auxv as the program sees it."""
    addr = auxv_address(task)
    auxv = bytearray(read_auxv(task, addr))
    for off in range(0, len(auxv), 16):
        kind = struct.unpack_from("<Q", auxv, off)[0]
        if kind == AT_SYSINFO_EHDR:
            struct.pack_into("<Q", auxv, off, AT_IGNORE)
            task.mem.write(addr + off, struct.pack("<Q", AT_IGNORE))
    return bytes(auxv)
