"""The few facts relive reads from ELF files: program headers, the code sections and the
function starts .eh_frame_hdr lists. Enough to find instructions worth patching (rdrand,
syscall sites) and the function around each; nothing here follows symbols or relocations.

Offsets are file offsets; every struct read may raise struct.error on a truncated file, which
the callers treat as "no sites".
"""
from __future__ import annotations

import struct
from collections.abc import Iterator

PT_LOAD, PT_GNU_EH_FRAME, PF_X = 1, 0x6474E550, 1
SHT_PROGBITS, SHF_EXECINSTR = 1, 4


def segments(data: bytes) -> list[tuple[int, int, int, int, int]]:
    """(type, flags, file offset, vaddr, file size) of each program header."""
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    out = []
    for i in range(phnum):
        p_type, flags, offset, vaddr, _, filesz = struct.unpack_from(
            "<IIQQQQ", data, phoff + i * phentsize)
        out.append((p_type, flags, offset, vaddr, filesz))
    return out


def code_sections(data: bytes) -> list[tuple[int, int]]:
    """(file offset, size) of the sections holding instructions (SHF_EXECINSTR): narrower
    than the executable segments, which may hold read-only data too."""
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    out = []
    for i in range(shnum if shoff else 0):
        _, sh_type, flags, _, offset, size = struct.unpack_from("<IIQQQQ", data,
                                                                shoff + i * shentsize)
        if sh_type == SHT_PROGBITS and flags & SHF_EXECINSTR:
            out.append((offset, size))
    return out


def executable(segments: list[tuple[int, int, int, int, int]]) -> Iterator[tuple[int, int]]:
    for p_type, flags, offset, _, size in segments:
        if p_type == PT_LOAD and flags & PF_X:
            yield offset, size


def functions(data: bytes, segments: list[tuple[int, int, int, int, int]]
               ) -> list[tuple[int, int]]:
    """(start, end) file offsets of the functions .eh_frame_hdr lists, sorted; [] if it has
    no table in the usual encodings (datarel sdata4 pairs; FDEs with pcrel sdata4 pc_begin,
    so pc_range is the 4 bytes after it)."""
    hdr = next(((off, vaddr) for p_type, _, off, vaddr, _ in segments
                if p_type == PT_GNU_EH_FRAME), None)
    if hdr is None:
        return []
    off, vaddr = hdr
    version, ptr_enc, count_enc, table_enc = data[off:off + 4]
    if version != 1 or ptr_enc != 0x1B or count_enc != 0x03 or table_enc != 0x3B:
        return []
    count, = struct.unpack_from("<I", data, off + 8)
    loads = [(v, o, size) for p_type, _, o, v, size in segments if p_type == PT_LOAD]
    functions = []
    for i in range(count):
        start_rel, fde_rel = struct.unpack_from("<ii", data, off + 12 + 8 * i)
        start = file_offset(loads, vaddr + start_rel)
        fde = file_offset(loads, vaddr + fde_rel)
        if start is not None and fde is not None:
            size, = struct.unpack_from("<I", data, fde + 12)
            functions.append((start, start + size))
    return sorted(functions)


def file_offset(loads: list[tuple[int, int, int]], vaddr: int) -> int | None:
    for v, o, size in loads:
        if v <= vaddr < v + size:
            return o + vaddr - v
    return None
