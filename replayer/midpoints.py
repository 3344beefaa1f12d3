"""Checkpoints inside long computations (mid-stretch checkpoints), for the single-thread
timeline.

A checkpoint at an event boundary can lie seconds of computation before the point the user
stands at, if the program made no system call meanwhile; every backward step would then
re-execute all of it. So while the replay runs forwards, a CPU timer on the program
(tracee.cputimer) stops it every MID_PERIOD of its own CPU time, and a fork is kept there: a
*mid*. A mid belongs to the stretch after event `position`; the mids of one stretch form a
chain in execution order, and a state inside that stretch is counted (steps, anchor
arrivals) from its *base*, the last mid known to come before it (None: the boundary).

Going back, a step whose count is unknown first closes in (Timeline._close_in): it replays
from the base to `now` with the timer ticking ever faster, keeping the fork
at the last tick before `now` as the new base, so the exact search that follows (kernel-
counted arrivals, single steps) covers at most the last period's slice.

Memory: at most MAX_MIDS mids are kept, thinned like rr's checkpoints (the one closest to
its predecessor in the same stretch goes first, so they stay spread over long stretches), and
the whole set is halved when the checkpoints' private memory passes the budget.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field

from replayer.snapshot import Snapshot

MID_PERIOD_NS = int(os.environ.get("RELIVE_MID_PERIOD_MS", "25")) * 1_000_000
CLOSE_FIRST_NS = MID_PERIOD_NS // 8  # the first tick period when closing in (CPU time)
# Ticks closer than this cost more than they save (each costs some CPU time of its own).
CLOSE_MIN_NS = 20_000
CLOSE_LEVELS = 6
MAX_MIDS = 48
ARRIVAL_FORK_EVERY = 512  # kernel-counted arrivals between forks when going to the k-th one
MAX_ARRIVAL_FORKS = 64


@dataclass(eq=False)
class Mid:
    """A fork of the replay inside the stretch after event boundary `position`; `clock`:
    the program's CPU time (ns) from the stretch's start, roughly (for thinning only)."""
    position: int
    snap: Snapshot = field(repr=False)
    regs: bytes = field(repr=False)
    clock: int = 0

    def discard(self) -> None:
        self.snap.discard()


class Mids:
    """The mids held, in execution order (by stretch, then along each stretch's chain)."""

    def __init__(self) -> None:
        self.chain: list[Mid] = []
        self.pinned: set[Mid] = set()  # in use by a search: never dropped meanwhile

    def __len__(self) -> int:
        return len(self.chain)

    def of(self, position: int) -> list[Mid]:
        return [m for m in self.chain if m.position == position]

    def before(self, base: Mid | None, position: int) -> list[Mid]:
        """The mids of stretch `position` up to `base` (included), latest first."""
        if base is None:
            return []
        mine = self.of(position)
        if base not in mine:
            return []
        return list(reversed(mine[:mine.index(base) + 1]))

    def following(self, mid: Mid | None, position: int) -> Mid | None:
        """The mid after `mid` (None: after the boundary) in stretch `position`, if any."""
        mine = self.of(position)
        i = mine.index(mid) + 1 if mid in mine else 0
        return mine[i] if i < len(mine) else None

    def previous(self, mid: Mid) -> Mid | None:
        mine = self.of(mid.position)
        i = mine.index(mid) if mid in mine else 0
        return mine[i - 1] if i > 0 else None

    def add(self, mid: Mid, after: Mid | None, keep: Iterable[Mid | None] = ()) -> None:
        """Add `mid`, which comes after `after` (None: the stretch's boundary) in its
        stretch. Mids of that stretch past `after` are dropped: their order relative to the
        new one is not known."""
        mine = self.of(mid.position)
        cut = mine.index(after) + 1 if after in mine else 0
        for old in mine[cut:]:
            if old not in self.pinned:
                self.chain.remove(old)
                old.discard()
        i = 0
        while i < len(self.chain) and (self.chain[i].position <= mid.position):
            i += 1
        self.chain.insert(i, mid)
        self.thin(MAX_MIDS, keep={mid, *keep})

    def thin(self, limit: int, keep: set[Mid | None] | None = None) -> None:
        keep = (keep or set()) | self.pinned
        while len(self.chain) > limit:
            gaps = []
            for i, m in enumerate(self.chain):
                if m in keep:
                    continue
                prev = self.chain[i - 1] if i and self.chain[i - 1].position == m.position \
                    else None
                gaps.append((m.clock - (prev.clock if prev else 0), i))
            if not gaps:
                return
            _, i = min(gaps)
            self.chain.pop(i).discard()

    def drop(self, mid: Mid) -> None:
        if mid in self.chain:
            self.chain.remove(mid)
            mid.discard()

    def clear(self) -> None:
        for m in self.chain:
            m.discard()
        self.chain.clear()


@dataclass
class ArrivalCache:
    """Forks every ARRIVAL_FORK_EVERY kernel-counted arrivals at `pc` counted from one origin
    (a boundary or a mid), so going to the k-th arrival again, k-1 for a step back over a
    loop iteration, replays only the last few hundred."""
    position: int
    base: Mid | None
    pc: int
    forks: dict[int, Snapshot] = field(default_factory=dict)

    def matches(self, position: int, base: Mid | None, pc: int) -> bool:
        return (self.position, self.base, self.pc) == (position, base, pc)

    def best(self, count: int) -> tuple[int, Snapshot | None]:
        k = max((c for c in self.forks if c <= count), default=0)
        return k, self.forks.get(k)

    def clear(self) -> None:
        for snap in self.forks.values():
            snap.discard()
        self.forks.clear()
