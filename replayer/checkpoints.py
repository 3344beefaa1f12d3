"""The user's checkpoints: ones gdb asked for (`checkpoint`), numbered for the user.

The Timeline takes its own checkpoints as the replay goes (at the start, every
CHECKPOINT_INTERVAL, before a backward search) and thins them; those are an implementation
detail, never numbered for the user. A checkpoint the user asks for is a separate snapshot
kept here under an id that never changes and is never reused: taking, thinning or deleting
other checkpoints cannot make `restart 2` land anywhere but where checkpoint 2 was taken.
Only `delete` (or the end of the replay) drops one. The Timeline also starts replays from
these when they are the nearest before a point (see Timeline.seek).
"""
from __future__ import annotations

from collections.abc import Iterator

from replayer.errors import Refused

from replayer.snapshot import Snapshot


class KeptCheckpoints:
    """Snapshots the user asked for, by id (1, 2, ...)."""

    def __init__(self) -> None:
        self._kept: dict[int, Snapshot] = {}
        self._next = 1

    def add(self, snapshot: Snapshot) -> int:
        """Keep `snapshot`; its id."""
        number = self._next
        self._next += 1
        self._kept[number] = snapshot
        return number

    def get(self, number: int) -> Snapshot:
        snap = self._kept.get(number)
        if snap is None:
            raise Refused(f"no checkpoint {number}; `info checkpoints` lists them")
        return snap

    def delete(self, number: int) -> Snapshot:
        """Drop checkpoint `number` (its process is killed); the snapshot it was."""
        snap = self.get(number)
        del self._kept[number]
        snap.discard()
        return snap

    def __iter__(self) -> Iterator[tuple[int, Snapshot]]:
        return iter(sorted(self._kept.items()))

    def __len__(self) -> int:
        return len(self._kept)

    def snapshots(self) -> list[Snapshot]:
        return list(self._kept.values())

    def close(self) -> None:
        for snap in self._kept.values():
            snap.discard()
        self._kept.clear()
