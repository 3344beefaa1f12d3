"""rdrand and rdseed, made recordable by patching them out of the program's code.

The CPU hands out a fresh random number for each, and nothing can make them trap here (no
CPUID faulting to hide the feature, no VMX): libstdc++'s std::random_device, OpenSSL and
libgcrypt execute them, and a replay that re-executes them computes with other numbers. So
each one is replaced, in the process's private copy of the code page, by `ud2` (and nops up to
its length) at the moment its file is mapped executable; the SIGILL it raises is emulated.
The recorder gives the program a random number and records it (an RDRAND event); the replayer
patches the same sites of the trace's copy of the file at the same moments and gives back the
recorded number.

Finding the instructions: the bytes 0F C7 /6 or /7 (register form) in a file's executable
segments, each confirmed by decoding with capstone from the start of the function around it
(the .eh_frame_hdr table of function starts) to an instruction boundary exactly there: the
same bytes inside another instruction or in data are never patched. A match that cannot be
confirmed is reported as doubtful, and not patched.

Shared by the recorder and the replayer; knows nothing of traces.
"""
from __future__ import annotations

import bisect
import json
import os
import struct
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

from tracee import elf
from tracee.address_space import PROT_EXEC, Mapping

if TYPE_CHECKING:
    from pathlib import Path

    from tracee.task import Task

UD2 = b"\x0f\x0b"
NOP = b"\x90"
_REGS = ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
         "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")
_CARRY, _CLEARED = 0x1, 0x4 | 0x10 | 0x40 | 0x80 | 0x800 | 0x10000  # CF; PF AF ZF SF OF RF


class Site(NamedTuple):
    """One rdrand/rdseed instruction in a file."""
    offset: int   # file offset of its first byte
    code: bytes   # its bytes (what gdb is shown)
    reg: str      # the destination, as a 64-bit register name of user_regs_struct
    width: int    # operand size in bytes: 2, 4 or 8
    insn: str     # "rdrand" or "rdseed"


class FileSites(NamedTuple):
    sites: tuple[Site, ...]
    doubtful: int  # matching bytes that could not be confirmed as an instruction


NO_SITES = FileSites((), 0)


def scan(path: Path) -> FileSites:
    """The rdrand/rdseed instructions of an ELF file's executable segments. Costs ~1 ms per
    MiB, plus capstone's import (~70 ms) for a file with matching bytes: callers cache it."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:5] != b"\x7fELF\x02":
        return NO_SITES
    try:
        segments = elf.segments(data)
        code = elf.code_sections(data) or list(elf.executable(segments))
        hits = [hit for off, size in code for hit in _matches(data, off, size)]
        functions = elf.functions(data, segments) if hits else []
    except (struct.error, ValueError):
        return NO_SITES  # not a whole ELF file: nothing the loader would have mapped
    found = [_confirm(data, functions, hit) for hit in hits]
    return FileSites(tuple(f for f in found if isinstance(f, Site)),
                     sum(1 for f in found if f is True))


def to_json(found: FileSites) -> str:
    return json.dumps({"sites": [[s.offset, s.code.hex(), s.reg, s.width, s.insn]
                                 for s in found.sites], "doubtful": found.doubtful})


def from_json(text: str) -> FileSites:
    d = json.loads(text)
    return FileSites(tuple(Site(offset=o, code=bytes.fromhex(c), reg=r, width=w, insn=i)
                           for o, c, r, w, i in d["sites"]), d["doubtful"])


def _matches(data: bytes, offset: int, size: int) -> Iterator[int]:
    """File offsets of 0F C7 followed by a ModRM of the register form with reg 6 or 7."""
    end = min(offset + size, len(data) - 2)
    i = data.find(b"\x0f\xc7", offset, end)
    while i >= 0:
        if data[i + 2] >= 0xF0:
            yield i
        i = data.find(b"\x0f\xc7", i + 2, end)


def _confirm(data: bytes, functions: list[tuple[int, int]], hit: int) -> Site | bool:
    """The instruction at `hit` (its 0F byte) if decoding from the start of the function
    that holds it lands on an rdrand/rdseed there; False if it lands on another instruction
    that covers `hit` (bytes of a displacement, say); True if undecided."""
    import capstone  # only for files that have matching bytes
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    i = bisect.bisect_right(functions, (hit, 1 << 64)) - 1
    if i >= 0 and functions[i][0] <= hit < functions[i][1]:
        found = _covering(md, data, functions[i][0], hit)
        if found is not None:
            return found
    # No function known to hold it (Go binaries have no .eh_frame_hdr) or undecodable bytes
    # on the way: never patched. x86 decoding falls into step within a few instructions, so
    # decode from several points shortly before; if most see another instruction there, it
    # is one; otherwise it stays doubtful.
    seen = [_covering(md, data, max(hit - back, 0), hit) for back in (16, 24, 32, 48, 64)]
    others = seen.count(False)
    return False if others > len(seen) - others else True


def _covering(md: Any, data: bytes, start: int, hit: int) -> Site | bool | None:
    """Decoding from `start`: the site at `hit`, False for another instruction covering it,
    None if decoding stops before it."""
    for address, size, mnemonic, _ in md.disasm_lite(data[start:hit + 16], start):
        if address + size > hit:
            if mnemonic in ("rdrand", "rdseed") and hit - address <= 2:
                return _decode(data[address:address + size], address) or None
            return False
    return None


def _decode(code: bytes, offset: int) -> Site | None:
    """Prefixes (66, REX), 0F C7, ModRM: the operand size and the register."""
    width, rex = 4, 0
    for byte in code[:-3]:
        if byte == 0x66:
            width = 2
        elif 0x40 <= byte <= 0x4F:
            rex = byte
        else:
            return None
    modrm = code[-1]
    if rex & 0x8:
        width = 8
    reg = _REGS[(modrm & 7) | (8 if rex & 1 else 0)]
    return Site(offset=offset, code=code, reg=reg, width=width,
                insn="rdseed" if (modrm >> 3) & 7 == 7 else "rdrand")


# -- in a process ---------------------------------------------------------------------------
def patchable(m: Mapping) -> bool:
    """Code the kernel maps privately from a file: what gets patched."""
    return bool(m.prot & PROT_EXEC and m.file_id and not m.shared)


def in_mapping(m: Mapping, sites: FileSites, lo: int, hi: int) -> Iterator[tuple[int, Site]]:
    """(address, site) for the sites of file mapping `m` that lie whole within [lo, hi)."""
    lo, hi = max(lo, m.start), min(hi, m.end)
    for site in sites.sites:
        addr = m.start + site.offset - m.offset
        if lo <= addr and addr + len(site.code) <= hi:
            yield addr, site


def patched_code(length: int) -> bytes:
    return UD2 + NOP * (length - len(UD2))


def show_original(patched: dict[int, bytes], addr: int, data: bytes) -> bytes:
    """`data` read at `addr` as the program's code has it, for gdb: the bytes of each patched
    site that still hold our patch show the original instruction."""
    out = None
    for at, code in patched.items():
        if addr - len(code) < at < addr + len(data):
            ours = patched_code(len(code))
            for i in range(max(addr - at, 0), min(len(code), addr + len(data) - at)):
                if data[at + i - addr] == ours[i]:
                    out = out if out is not None else bytearray(data)
                    out[at + i - addr] = code[i]
    return bytes(out) if out is not None else data


def new_value(width: int) -> int:
    return int.from_bytes(os.urandom(width), "little")


def emulate(task: Task, reg: str, width: int, length: int, value: int) -> None:
    """Leave the task as the instruction would have: `value` in its register (a 32-bit write
    clears the upper half, a 16-bit one keeps it), CF set (success), past the instruction."""
    regs = task.regs
    if width == 2:
        value = (getattr(regs, reg) & ~0xFFFF) | (value & 0xFFFF)
    elif width == 4:
        value &= 0xFFFFFFFF
    task.set_reg("eflags", (regs.eflags & ~_CLEARED) | _CARRY)
    task.set_reg("rip", regs.rip + length)
    task.set_reg(reg, value)
