"""The sites a page of trampolines jumps from (libc's: tracee.syscall_sites; a Go binary's:
tracee.go_sites), read from the replayed process's memory and decoded once per content:
gdb asks for them at every stop, and a page changes only when the recorder patched more
sites (a new key: its first trampoline, or its size); and memory gdb reads over patched
sites shown with the bytes the program has there."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol, TypeVar

from tracee.address_space import Mapping
from tracee.task import MemoryAccessError, Task

S = TypeVar("S")


class PatchedSite(Protocol):
    @property
    def addr(self) -> int: ...
    @property
    def trampoline(self) -> int: ...
    @property
    def original(self) -> bytes: ...


def page_sites(cache: dict[tuple[int, int, bytes], list[S]], task: Task, m: Mapping,
               head: int, size: int, decode: Callable[[int, bytes], S | None]) -> list[S]:
    """The sites of trampoline page `m`: `head` bytes of header, then trampolines of `size`
    bytes up to the first that `decode` (address, bytes) does not take."""
    try:
        first = task.mem.read_upto(m.start, head + size)
    except MemoryAccessError:
        return []
    key = (m.start, m.end, first)
    found = cache.get(key)
    if found is None:
        try:
            page = task.mem.read_upto(m.start, m.end - m.start)
        except MemoryAccessError:
            return []
        found = []
        for at in range(m.start + head, m.start + len(page) - size + 1, size):
            site = decode(at, page[at - m.start:at - m.start + size])
            if site is None:
                break
            found.append(site)
        cache[key] = found
    return found


def as_original(sites: Iterable[PatchedSite], addr: int, data: bytes,
                jump: Callable[[int, int, int], bytes]) -> bytes:
    """`data` read at `addr` with each site's bytes, where they hold its patch (`jump`: the
    patch's bytes for a site, its trampoline and its length), as the program has them."""
    out: bytearray | None = None
    for site in sites:
        n = len(site.original)
        if not (addr - n < site.addr < addr + len(data)):
            continue
        ours = jump(site.addr, site.trampoline, n)
        lo, hi = max(addr - site.addr, 0), min(n, addr + len(data) - site.addr)
        if data[site.addr + lo - addr:site.addr + hi - addr] == ours[lo:hi]:
            out = out if out is not None else bytearray(data)
            out[site.addr + lo - addr:site.addr + hi - addr] = site.original[lo:hi]
    return bytes(out) if out is not None else data
