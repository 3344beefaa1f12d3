"""What gdb asks about the replayed process image: the loader's library list (through the
executable's DT_DEBUG entry), thread-local storage addresses, and x87/SSE registers decoded
from the FXSAVE area. Reads tracee memory only; changes nothing.
"""
from __future__ import annotations

import struct

from gdbstub.errors import TargetError
from gdbstub.target import Library, LibraryList
from tracee.task import Memory

AT_PHDR, AT_PHNUM = 3, 5
PT_DYNAMIC, PT_PHDR = 2, 6
DT_NULL, DT_DEBUG = 0, 21
# offsetof(struct link_map, l_tls_modid) in glibc 2.36 (Debian 12); it changes rarely.
LINK_MAP_TLS_MODID = 1152


def libraries(mem: Memory, auxv_bytes: bytes) -> LibraryList:
    """The loader's link_map list, found through the executable's DT_DEBUG entry."""
    auxv = dict(struct.iter_unpack("<QQ", auxv_bytes))
    phdr, phnum = auxv.get(AT_PHDR, 0), auxv.get(AT_PHNUM, 0)
    headers = [struct.unpack_from("<IIQQQQQQ", mem.read(phdr + 56 * i, 56))
               for i in range(phnum)]
    bias = next((phdr - h[3] for h in headers if h[0] == PT_PHDR), 0)
    dynamic = next((bias + h[3] for h in headers if h[0] == PT_DYNAMIC), 0)
    r_debug = 0
    for off in range(0, 16 * 512, 16):
        tag, value = struct.unpack("<QQ", mem.read(dynamic + off, 16))
        if tag == DT_NULL:
            break
        if tag == DT_DEBUG:
            r_debug = value
    if not r_debug:
        return LibraryList()
    lm = mem.read_u64(r_debug + 8)
    main_lm, libs = lm, []
    for _ in range(4096):
        if not lm:
            break
        l_addr, l_name, l_ld, l_next = struct.unpack("<QQQQ", mem.read(lm, 32))
        name = mem.read_cstring(l_name).decode(errors="replace") if l_name else ""
        if lm != main_lm and name:
            libs.append(Library(name=name, lm=lm, l_addr=l_addr, l_ld=l_ld))
        lm = l_next
    return LibraryList(libraries=libs, main_lm=main_lm)


def tls_address(mem: Memory, fs_base: int, offset: int, lm: int) -> int:
    """Thread-local variable address: dtv[l_tls_modid].pointer + offset, the dtv being the
    second word of the thread control block at fs_base (x86-64 TLS ABI)."""
    modid = mem.read_u64(lm + LINK_MAP_TLS_MODID)
    if not 0 < modid < 1 << 16:
        raise TargetError(f"cannot find the TLS module of link_map {lm:#x} (this glibc's "
                          "struct link_map layout is not known to relive)")
    dtv = mem.read_u64(fs_base + 8)
    block = mem.read_u64(dtv + 16 * modid)
    if block in (0, 0xFFFFFFFFFFFFFFFF):
        raise TargetError("the thread's TLS block for that module is not allocated yet")
    return block + offset


def fp_registers(fx: bytes) -> dict[str, int]:
    """x87/SSE registers from the 512-byte FXSAVE image, named as gdb's target.xml."""
    cwd, swd, ftw, fop, rip, rdp, mxcsr = struct.unpack_from("<HHHHQQI", fx, 0)
    out = {"fctrl": cwd, "fstat": swd, "ftag": _full_tag(ftw, swd, fx), "fop": fop,
           "fioff": rip & 0xFFFFFFFF, "fiseg": (rip >> 32) & 0xFFFF,
           "fooff": rdp & 0xFFFFFFFF, "foseg": (rdp >> 32) & 0xFFFF, "mxcsr": mxcsr}
    for i in range(8):
        out[f"st{i}"] = int.from_bytes(fx[32 + 16 * i: 32 + 16 * i + 10], "little")
    for i in range(16):
        out[f"xmm{i}"] = int.from_bytes(fx[160 + 16 * i: 176 + 16 * i], "little")
    return out


def _full_tag(abridged: int, swd: int, fx: bytes) -> int:
    """FXSAVE keeps one bit per register; gdb shows the full two-bit tag word."""
    top = (swd >> 11) & 7
    tag = 0
    for phys in range(8):
        if not abridged & (1 << phys):
            t = 3  # empty
        else:
            st = (phys - top) & 7
            raw = fx[32 + 16 * st: 42 + 16 * st]
            exp = int.from_bytes(raw[8:10], "little") & 0x7FFF
            mant = int.from_bytes(raw[:8], "little")
            if exp == 0x7FFF:
                t = 2
            elif exp == 0:
                t = 1 if mant == 0 else 2
            else:
                t = 0 if mant >> 63 else 2
        tag |= t << (2 * phys)
    return tag
