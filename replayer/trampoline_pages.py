"""The sites a page of trampolines jumps from (libc's: tracee.syscall_sites; a Go binary's:
tracee.go_sites), read from the replayed process's memory and decoded once per content:
gdb asks for them at every stop, and a page changes only when the recorder patched more
sites (a new key: its first trampoline, or its size)."""
from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from tracee.address_space import Mapping
from tracee.task import MemoryAccessError, Task

S = TypeVar("S")


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
