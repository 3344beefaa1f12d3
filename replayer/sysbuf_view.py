"""The replayed program as gdb must see it with libc's syscall sites patched to the hook
(tracee.syscall_sites): the sites' original instructions, never their `jmp`; a thread in a
site's trampoline at the site (pc mapped back, the red-zone step undone), so a thread
blocked in the trampoline's traced `syscall` unwinds through libc's own CFI; and a
breakpoint gdb asks for at an instruction inside a patched site (the `cmp` after a site's
`syscall`, the `syscall` after its `mov`) planted at the same instruction in the trampoline,
never in the patched bytes (other threads run the `jmp` there).

The trampoline pages are read from the process (they are flagged SYSBUF in its address
space and never change once written); each trampoline's layout is syscall_sites.trampolines'.
"""
from __future__ import annotations

import struct
from typing import NamedTuple

from replayer import sysbuf_frames
from replayer.go_view import GoView
from replayer.trampoline_pages import as_original, page_sites
from tracee import syscall_sites as ss
from tracee import sysbuf
from tracee.address_space import AddressSpace, Flag
from tracee.task import MemoryAccessError, Task

# offsets inside a trampoline of a `cmp` site (a `mov` site's are 5 more)
_CALL, _AFTER_CALL, _TRACED, _CMP = 8, 14, 27, 29
_RED_ZONE = 128


class Site(NamedTuple):
    addr: int          # the site in libc
    original: bytes    # its bytes before the patch (8: syscall; cmp, 7: mov; syscall)
    trampoline: int    # its trampoline's address

    @property
    def mov(self) -> bool:
        return len(self.original) == ss.MOV_SITE


def _decode(at: int, code: bytes) -> Site | None:
    """The site whose trampoline is `code` (TRAMPOLINE bytes at `at`), if it is one."""
    mov = code[:1] == b"\xb8"
    base = 5 if mov else 0
    jmp = base + _CMP + (0 if mov else 6)
    if code[base:base + 3] != b"\x48\x8d\xa4" or code[jmp:jmp + 1] != b"\xe9":
        return None
    end = at + jmp + 5 + struct.unpack_from("<i", code, jmp + 1)[0]
    if mov:
        return Site(end - ss.MOV_SITE, code[:5] + b"\x0f\x05", at)
    return Site(end - ss.CMP_SITE, b"\x0f\x05" + code[_CMP:_CMP + 6], at)



def _trampoline_at(task: Task, page: int, addr: int) -> tuple[Site | None, int]:
    """The site of the trampoline holding `addr` in the trampoline page at `page` (None if
    unreadable or not one), and `addr`'s offset in that trampoline."""
    k, off = divmod(addr - page - ss.SLOT, ss.TRAMPOLINE)
    at = page + ss.SLOT + k * ss.TRAMPOLINE
    try:
        return _decode(at, task.mem.read_upto(at, ss.TRAMPOLINE)), off
    except MemoryAccessError:
        return None, off

class SysbufView:
    """The sites of the processes of one replay, read from their trampoline pages."""

    def __init__(self) -> None:
        self._pages: dict[tuple[int, int, bytes], list[Site]] = {}
        self.go = GoView()  # a Go binary's own sites (tracee.go_sites)

    def sites(self, task: Task, space: AddressSpace) -> list[Site]:
        out: list[Site] = []
        for m in space.flagged(Flag.SYSBUF):
            if m.start not in (sysbuf.HOOK_CODE, sysbuf.HOOK_BUF):
                out += page_sites(self._pages, task, m, ss.SLOT, ss.TRAMPOLINE, _decode)
        return out

    def registers(self, task: Task, space: AddressSpace,
                  values: dict[str, int]) -> dict[str, int]:
        """`values` (a thread's registers) as at the site if the thread is in a trampoline."""
        rip = values.get("rip", 0)
        if sysbuf_frames.in_hook(rip):
            found = self.go.from_hook(task, space, values)
            return found if found is not None else self._from_hook(task, space, values)
        m = space.find(rip)
        if m is None or not m.flags & Flag.SYSBUF or m.start in (sysbuf.HOOK_CODE,
                                                                  sysbuf.HOOK_BUF):
            return values
        if self.go.is_page(task, m):
            return self.go.registers(task, m, values)
        if rip < m.start + ss.SLOT:
            return values
        site, off = _trampoline_at(task, m.start, rip)
        if site is None:
            return values
        out = dict(values)
        base = 5 if site.mov else 0
        if base + _CALL <= off < base + _AFTER_CALL + 8:  # between the two lea
            out["rsp"] = values["rsp"] + _RED_ZONE
        if site.mov:
            out["rip"] = (site.addr if off < 5 else site.addr + 5 if off <= base + _TRACED
                          else site.addr + ss.MOV_SITE)
        else:
            out["rip"] = (site.addr if off <= _TRACED else site.addr + 2 if off < _CMP + 6
                          else site.addr + ss.CMP_SITE)
        return out

    def _from_hook(self, task: Task, space: AddressSpace,
                   values: dict[str, int]) -> dict[str, int]:
        """A thread at a `syscall` of the hook, as at its site (replayer.sysbuf_frames)."""
        pages = [m for m in space.flagged(Flag.SYSBUF)
                 if m.start not in (sysbuf.HOOK_CODE, sysbuf.HOOK_BUF)]
        if not pages:
            return values
        try:
            entry = struct.unpack("<Q", task.mem.read_upto(pages[0].start, ss.SLOT))[0]
        except (MemoryAccessError, struct.error):
            return values

        def return_of(v: int) -> tuple[int, int] | None:
            m = next((p for p in pages if p.start + ss.SLOT <= v < p.end), None)
            if m is None:
                return None
            site, off = _trampoline_at(task, m.start, v)
            if site is None or off != (5 if site.mov else 0) + _AFTER_CALL:
                return None
            return ((site.addr + 5, site.addr + ss.MOV_SITE) if site.mov
                    else (site.addr, site.addr + 2))

        found = sysbuf_frames.at_site(task, values, entry, return_of)
        return values if found is None else found

    def hidden(self, task: Task, space: AddressSpace, rip: int) -> bool:
        """Is `rip` an instruction of the patch gdb must not stop at one step at a time: one
        of the hook's or a trampoline's, but a `syscall` (the call's own instruction) and a
        `cmp` site's displaced `cmp`, or a `cmp` site's `jmp` (the `syscall` is shown at the
        trampoline's)? A `mov` site's `jmp` stands for its `mov`."""
        if sysbuf_frames.in_hook(rip):
            try:
                return task.mem.read_upto(rip, 2) != b"\x0f\x05"
            except MemoryAccessError:
                return False
        m = space.find(rip)
        if m is None or not m.flags & Flag.SYSBUF:
            sites = self.sites(task, space) if m is not None and m.prot & 4 else []
            return any(s.addr == rip and not s.mov for s in sites) or bool(
                m is not None and m.prot & 4 and rip in self.go.starts(task, space))
        if m.start in (sysbuf.HOOK_CODE, sysbuf.HOOK_BUF) or rip < m.start + ss.SLOT:
            return False
        if self.go.is_page(task, m):
            return self.go.hidden(task, m, rip)
        found, off = _trampoline_at(task, m.start, rip)
        if found is None:
            return False
        base = 5 if found.mov else 0
        return off not in ((base + _TRACED,) if found.mov else (_TRACED, _CMP))

    def show_original(self, task: Task, space: AddressSpace, addr: int,
                      data: bytes) -> bytes:
        """`data` read at `addr` with each patched site's bytes (if they hold the patch) as
        the program has them."""
        libc = as_original(self.sites(task, space), addr, data, ss.jump)
        return self.go.show_original(task, space, addr, libc)

    def relocate(self, task: Task, space: AddressSpace,
                 breakpoints: frozenset[int]) -> frozenset[int]:
        """gdb's breakpoints, those at an instruction inside a patched site moved to the
        same instruction in its trampoline."""
        if not breakpoints:
            return breakpoints
        inner = self.go.inner(task, space)
        for site in self.sites(task, space):
            if site.mov:
                inner[site.addr + 5] = site.trampoline + 5 + _TRACED
            else:
                inner[site.addr + 2] = site.trampoline + _CMP
        if not inner or not breakpoints & inner.keys():
            return breakpoints
        return frozenset(inner.get(a, a) for a in breakpoints)
