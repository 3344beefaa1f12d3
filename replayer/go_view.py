"""A Go program's patched syscall sites as gdb must see them (tracee.go_sites; the libc
sites' counterpart is replayer.sysbuf_view, which asks this module about Go's pages): the
sites' original bytes, a thread in a trampoline or in the hook at its site with the site's
stack (the trampoline saved it on the hook stack), breakpoints inside a site moved to the
same instruction in its trampoline.

A Go trampoline page is a SYSBUF mapping whose slot is followed by go_sites.MAGIC.
"""
from __future__ import annotations

import struct

from replayer import sysbuf_frames
from replayer.trampoline_pages import as_original, page_sites
from tracee import go_sites as gs
from tracee import sysbuf
from tracee.address_space import AddressSpace, Flag, Mapping
from tracee.task import MemoryAccessError, Task


class GoView:
    """The Go sites of the processes of one replay, read from their trampoline pages."""

    def __init__(self) -> None:
        self._pages: dict[tuple[int, int, bytes], list[gs.Site]] = {}

    @staticmethod
    def is_page(task: Task, m: Mapping) -> bool:
        try:
            return task.mem.read_upto(m.start + 8, 8) == gs.MAGIC
        except MemoryAccessError:
            return False

    @staticmethod
    def pages(task: Task, space: AddressSpace) -> list[Mapping]:
        out = []
        for m in space.flagged(Flag.SYSBUF):
            if m.start not in (sysbuf.HOOK_CODE, sysbuf.HOOK_BUF) and GoView.is_page(task, m):
                out.append(m)
        return out

    def sites(self, task: Task, space: AddressSpace) -> list[gs.Site]:
        out: list[gs.Site] = []
        for m in self.pages(task, space):
            out += page_sites(self._pages, task, m, gs.HEAD, gs.TRAMPOLINE, gs.decode)
        return out

    def _at(self, task: Task, page: Mapping, rip: int) -> tuple[gs.Site | None, int]:
        k, off = divmod(rip - page.start - gs.HEAD, gs.TRAMPOLINE)
        at = page.start + gs.HEAD + k * gs.TRAMPOLINE
        try:
            return gs.decode(at, task.mem.read_upto(at, gs.TRAMPOLINE)), off
        except MemoryAccessError:
            return None, off

    def registers(self, task: Task, page: Mapping, values: dict[str, int]) -> dict[str, int]:
        """`values` of a thread in a trampoline of `page`, as at its site."""
        rip = values["rip"]
        if rip < page.start + gs.HEAD:
            return values
        site, off = self._at(task, page, rip)
        if site is None:
            return values
        out = dict(values)
        h = site.head
        if h + gs.CALL <= off <= h + gs.AFTER_CALL:  # on the hook stack: the site's above
            try:
                out["rsp"] = struct.unpack("<Q", task.mem.read_upto(values["rsp"], 8))[0]
            except (MemoryAccessError, struct.error):
                return values
        elif off == h + gs.AFTER_CALL + 2:  # popped into r11, not swapped back yet
            out["rsp"] = values["r11"]
        syscall_at = site.addr + h
        out["rip"] = (site.addr if off < h else syscall_at if off <= h + gs.TRACED
                      else syscall_at + 2 if not h and off < gs.TRACED + 8
                      else site.addr + len(site.original))
        return out

    def from_hook(self, task: Task, space: AddressSpace,
                  values: dict[str, int]) -> dict[str, int] | None:
        """A thread at a `syscall` of the hook called from a Go trampoline, as at its site;
        None if it was not called from one."""
        pages = self.pages(task, space)
        if not pages:
            return None
        try:
            entry = struct.unpack("<Q", task.mem.read_upto(pages[0].start, 8))[0]
        except (MemoryAccessError, struct.error):
            return None

        def return_of(v: int) -> tuple[int, int] | None:
            m = next((p for p in pages if p.start + gs.HEAD <= v < p.end), None)
            if m is None:
                return None
            site, off = self._at(task, m, v)
            if site is None or off != site.head + gs.AFTER_CALL:
                return None
            return site.addr + site.head, site.addr + site.head + 2

        found = sysbuf_frames.at_site(task, values, entry, return_of)
        if found is None:
            return None
        # at_site takes the site's stack to be above the return address (libc's red-zone
        # step); a Go trampoline saved it there instead: the word above the return address
        slot_end = found["rsp"] - 128
        try:
            found["rsp"] = struct.unpack("<Q", task.mem.read_upto(slot_end, 8))[0]
        except (MemoryAccessError, struct.error):
            return None
        return found

    def hidden(self, task: Task, page: Mapping, rip: int) -> bool:
        """Is `rip` (in a trampoline of `page`) an instruction gdb must not stop at one step
        at a time: all but the `syscall` and a `cmp` site's displaced `cmp`."""
        if rip < page.start + gs.HEAD:
            return False
        site, off = self._at(task, page, rip)
        if site is None:
            return False
        return off not in ((site.head + gs.TRACED,) if site.head
                           else (gs.TRACED, gs.TRACED + 2))

    def show_original(self, task: Task, space: AddressSpace, addr: int,
                      data: bytes) -> bytes:
        return as_original(self.sites(task, space), addr, data, gs.jump)

    def inner(self, task: Task, space: AddressSpace) -> dict[int, int]:
        """Instructions inside patched sites -> the same instruction in their trampoline."""
        out = {}
        for site in self.sites(task, space):
            if site.head:
                out[site.addr + site.head] = site.trampoline + site.head + gs.TRACED
            else:
                out[site.addr + 2] = site.trampoline + gs.TRACED + 2
        return out

    def starts(self, task: Task, space: AddressSpace) -> set[int]:
        """The `cmp` sites' starts: their `jmp` stands for the `syscall` gdb is shown at the
        trampoline's."""
        return {s.addr for s in self.sites(task, space) if not s.head}
