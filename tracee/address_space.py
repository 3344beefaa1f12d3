"""The address-space model: logical mappings as the program and the tool created them.

The kernel merges adjacent VMAs with equal properties, so /proc/PID/maps alone cannot say
where one thread's scratch area ends and its neighbour's begins. This model keeps mappings the
tool made (the relive page, scratch areas, guards) as flagged mappings that never coalesce, not
with unflagged neighbours and not with each other, whatever the kernel did. Guessed-size writes
(signal frames) are clipped by `writable_extent`, which stops at every flagged boundary.

Shared by the recorder and the replayer; knows nothing of ptrace or traces.
"""
from __future__ import annotations

import bisect
import enum
from typing import NamedTuple, cast

PROT_READ, PROT_WRITE, PROT_EXEC = 1, 2, 4


class Flag(enum.IntFlag):
    NONE = 0
    RELIVE_PAGE = 1
    SCRATCH = 2
    GUARD = 4
    SYSBUF = 8  # the in-process syscall hook's code, buffer and trampolines (tracee.sysbuf)


class Mapping(NamedTuple):
    """One logical mapping (a NamedTuple: cheap to define at start-up; build it with keywords)."""
    start: int
    end: int
    prot: int
    shared: bool = False
    offset: int = 0
    path: str | None = None      # "[stack]", "/usr/lib/...", None for anonymous
    file_id: str | None = None   # content hash of the trace's copy, for file-backed mappings
    flags: Flag = Flag.NONE
    owner: int = 0               # thread id owning a scratch area

    @property
    def size(self) -> int:
        return self.end - self.start

    def clipped(self, start: int, end: int) -> Mapping:
        """The part of this mapping inside [start, end), file offset adjusted."""
        lo, hi = max(start, self.start), min(end, self.end)
        off = self.offset + (lo - self.start) if self.file_id or self.path else self.offset
        return self._replace(start=lo, end=hi, offset=off)


class AddressSpace:
    """Sorted, non-overlapping logical mappings. No coalescing, ever."""

    def __init__(self, mappings: list[Mapping] | None = None) -> None:
        self._maps: list[Mapping] = sorted(mappings or [], key=lambda m: m.start)
        self._starts = [m.start for m in self._maps]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(list(self._maps))

    def __len__(self) -> int:
        return len(self._maps)

    def copy(self) -> AddressSpace:
        return AddressSpace(list(self._maps))

    def _reindex(self) -> None:
        self._maps.sort(key=lambda m: m.start)
        self._starts = [m.start for m in self._maps]

    def find(self, addr: int) -> Mapping | None:
        i = bisect.bisect_right(self._starts, addr) - 1
        if i >= 0 and self._maps[i].start <= addr < self._maps[i].end:
            return self._maps[i]
        return None

    def overlapping(self, start: int, end: int) -> list[Mapping]:
        """The mappings that overlap [start, end), in address order."""
        i = max(bisect.bisect_right(self._starts, start) - 1, 0)
        j = bisect.bisect_left(self._starts, end)
        return [m for m in self._maps[i:j] if m.end > start]

    def unmap(self, start: int, end: int) -> list[Mapping]:
        """Remove [start, end); returns the removed pieces."""
        kept, removed = [], []
        for m in self._maps:
            if m.end <= start or m.start >= end:
                kept.append(m)
                continue
            removed.append(m.clipped(start, end))
            if m.start < start:
                kept.append(m.clipped(m.start, start))
            if m.end > end:
                kept.append(m.clipped(end, m.end))
        self._maps = kept
        self._reindex()
        return removed

    def map(self, mapping: Mapping) -> None:
        """Add a mapping, replacing whatever overlapped it (MAP_FIXED semantics)."""
        self.unmap(mapping.start, mapping.end)
        self._maps.append(mapping)
        self._reindex()

    def protect(self, start: int, end: int, prot: int) -> None:
        pieces = self.unmap(start, end)
        for p in pieces:
            self._maps.append(p._replace(prot=prot))
        self._reindex()

    def move(self, old: int, old_size: int, new: int, new_size: int) -> None:
        """mremap: the mapping at `old` now lives at `new` with `new_size` bytes."""
        pieces = self.unmap(old, old + old_size)
        if not pieces:
            return
        first = pieces[0]
        self.map(first._replace(start=new, end=new + new_size))

    def flagged(self, flag: Flag) -> list[Mapping]:
        return [m for m in self._maps if m.flags & flag]

    def writable_extent(self, addr: int, size: int) -> int:
        """How many bytes from `addr` (up to `size`) can be recorded as one guessed write.

        Walks the model from `addr` and stops at the first unmapped or non-writable byte and at
        every flagged-mapping boundary: a range that starts outside scratch never enters one, a
        range that starts inside a scratch area stops at that area's end.
        """
        m = self.find(addr)
        if m is None or not m.prot & PROT_WRITE:
            return 0
        if m.flags:
            return min(size, m.end - addr)
        end = m.end
        while end < addr + size:
            nxt = self.find(end)
            if nxt is None or nxt.flags or not nxt.prot & PROT_WRITE:
                break
            end = nxt.end
        return min(size, end - addr)


def mapping_info(m: Mapping) -> dict[str, object]:
    return {"start": m.start, "end": m.end, "prot": m.prot, "shared": m.shared,
            "offset": m.offset, "path": m.path, "file_id": m.file_id, "flags": int(m.flags)}


def mapping_from_info(d: dict[str, object]) -> Mapping:
    def num(key: str) -> int:
        return int(cast(int, d[key]))
    return Mapping(start=num("start"), end=num("end"), prot=num("prot"),
                   shared=bool(d["shared"]), offset=num("offset"),
                   path=cast("str | None", d["path"]), file_id=cast("str | None", d["file_id"]),
                   flags=Flag(num("flags")))


def parse_proc_maps(text: str) -> list[Mapping]:
    """Mappings as /proc/PID/maps shows them (kernel VMAs, possibly merged)."""
    out = []
    for line in text.splitlines():
        parts = line.split(None, 5)
        if len(parts) < 5:
            continue
        lo, hi = (int(x, 16) for x in parts[0].split("-"))
        perms = parts[1]
        prot = ((PROT_READ if perms[0] == "r" else 0) | (PROT_WRITE if perms[1] == "w" else 0)
                | (PROT_EXEC if perms[2] == "x" else 0))
        path = parts[5].strip() if len(parts) > 5 else None
        inode = int(parts[4])
        out.append(Mapping(start=lo, end=hi, prot=prot, shared=perms[3] == "s",
                           offset=int(parts[2], 16) if inode else 0, path=path or None))
    return out


def read_proc_maps(pid: int) -> list[Mapping]:
    with open(f"/proc/{pid}/maps", errors="surrogateescape") as f:  # paths are any bytes
        return parse_proc_maps(f.read())
