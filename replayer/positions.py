"""The vocabulary of reverse execution: positions, hits, landings and a search's verdicts.

Reverse execution re-executes: a backward command replays forward from a checkpoint (or a
snapshot inside a stretch: a mid, a waypoint) and recognises states on the way. What it looks
for and where it ends are values of this module, shared by the search of one stretch
(replayer.stretch_back), the passes that look for hits (replayer.backward_pass,
replayer.hit_search), the event crossing (replayer.crossing) and the engine
(replayer.backward):

- a Position is a state to find again: an event boundary (`tid` None) or, inside the stretch
  after it, the registers of the thread running that stretch (only that thread runs until the
  next event), and what is known of how far it is from the stretch's start;
- a Hit is a breakpoint arrival, a watchpoint trap or a syscall's recorded write, numbered
  within its stretch from an origin (the boundary, a mid or a waypoint);
- a Waypoint is a snapshot inside a stretch that a pass took, with the hit counts it had
  reached there (replayer.waypoints keeps them);
- a Landing is where a backward move left the replay;
- a Verdict is what a search makes of one stop of the replayed program.

No ptrace here beyond reading a task to compare it with a Position.
"""
from __future__ import annotations

import enum
import hashlib
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from replayer.control import Watchpoint
from tracee.digest import RED_ZONE, matches_recorded, state_digest
from tracee.task import Task

from replayer import registers
from replayer.errors import ReplayError

if TYPE_CHECKING:
    from replayer.midpoints import Mid
    from replayer.snapshot import Snapshot


class Verdict(enum.Enum):
    """What a backward search makes of a stop of the replayed program."""
    KEEP_GOING = enum.auto()  # not what it looks for: the replay goes on
    REACHED_NOW = enum.auto()  # the state the search runs to (the user's "now")
    HIT = enum.auto()  # the one place the search was sent to (a hit, a counted arrival)
    INTERRUPTED = enum.auto()  # Ctrl-C


class LostPosition(ReplayError):
    """A backward pass ran past the stretch of `now` without recognising it."""


class SearchInterrupted(Exception):
    """Ctrl-C during a backward search; the replay is left where the search was, at an event
    boundary or (`boundary` False) inside a stretch."""

    def __init__(self, boundary: bool) -> None:
        super().__init__("interrupted")
        self.boundary = boundary


STATE = "state:"  # the prefix of a digest taken in replay (Position.fingerprint)


@dataclass
class Position:
    """A state to find again: boundary `position` (events replayed) and, with `tid`, the
    thread running the stretch after it, in the state `regs`.

    Inside a stretch, what is known of the way there: `steps` instructions (None: unknown)
    from the `anchor` (the count-th arrival at pc in the stretch: a state found by
    reverse-continue is one, so stepping back from it single-steps one loop iteration, not the
    stretch), itself counted from `base` (a mid inside the stretch; None: the boundary).
    `digest` (of writable memory) and `quick` (of the stack) tell apart states with the same
    registers, such as loop iterations. A digest taken here is `state_digest`'s, marked
    STATE; one from the trace (a PREEMPT's point) is the recorder's `memory_digest`."""
    position: int
    tid: int | None = None
    regs: bytes = b""
    steps: int | None = None
    digest: str | None = None
    quick: bytes | None = None
    anchor: tuple[int, int] | None = None
    base: Mid | None = None

    @property
    def boundary(self) -> bool:
        return self.tid is None

    @property
    def pc(self) -> int:
        return registers.unpack(self.regs)["rip"]

    def fingerprint(self, task: Task) -> None:
        """Note what tells this state apart from others with the same registers (`task` is
        in this state)."""
        if self.quick is None:
            self.quick = stack_hash(task)
        if self.digest is None:
            self.digest = STATE + state_digest(task.pid, task.mem.read_upto, task.regs.rsp)

    def matched_by(self, task: Task, planted: bool = False) -> bool:
        """Is `task` in this state? (`planted`: an int3 of ours sits at its pc.) Without a
        fingerprint, equal registers are enough (the caller made it from this very state)."""
        # orig_rax is the kernel's note of the syscall being made, not the program's state.
        differ = registers.diff(self.regs, task.regs_bytes(), skip=("orig_rax",))
        # Shown before a syscall instruction, a state carries the rcx/r11 the instruction
        # will clobber as the kernel saw them: those two cannot tell states apart there.
        if differ:
            code = task.mem.read_upto(task.regs.rip, 2)
            if planted and code[:1] == b"\xcc":
                code = b"\x0f" + code[1:]  # our int3 over the syscall's first byte
            if not (set(differ) <= {"rcx", "r11"} and code == b"\x0f\x05"):
                return False
        if self.quick is not None and stack_hash(task) != self.quick:
            return False
        if self.digest is None:
            return True
        if self.digest.startswith(STATE):
            return STATE + state_digest(task.pid, task.mem.read_upto,
                                        task.regs.rsp) == self.digest
        return matches_recorded(task.pid, task.mem.read_upto, self.digest, rsp=task.regs.rsp)


def stack_hash(task: Task) -> bytes:
    """A hash of the stack from the red zone below rsp up: tells most loop iterations apart
    at the cost of one small read, before the full memory digest is computed (not deeper:
    dead stack need not repeat, tracee.digest)."""
    rsp = task.regs.rsp
    return hashlib.blake2b(task.mem.read_upto(rsp - RED_ZONE, 4096 + RED_ZONE),
                           digest_size=16).digest()


@dataclass(frozen=True, slots=True)
class Hit:
    """A breakpoint arrival ('bp': the count-th at pc in the stretch after `position`), a
    watchpoint trap ('watch': the count-th in that stretch), or ('kernel') a syscall whose
    recorded output touched a watched range (before event `position`), by recorded thread
    `tid`. Counts start at the stretch's boundary, or at the mid `base` or the waypoint
    `origin`. `ordered` False: counted by the kernel, order among a stretch's hits unknown."""
    kind: str
    position: int
    pc: int = 0
    count: int = 0
    wp: Watchpoint | None = None
    tid: int = 0
    ordered: bool = True
    base: Mid | None = None
    origin: Waypoint | None = None


@dataclass(eq=False)
class Waypoint:
    """A snapshot inside the stretch after `snap.position`, at `point`, with what the pass
    that took it had counted in that stretch: arrivals at each of its breakpoints `armed`,
    and traps of its `watchpoints`."""
    snap: Snapshot
    point: Position
    armed: frozenset[int]
    arrivals: Counter[int]
    watchpoints: frozenset[Watchpoint] | None  # None: its watch traps were not counted
    watches: int
    alive: bool = True

    def discard(self) -> None:
        if self.alive:
            self.alive = False
            self.snap.discard()

    @property
    def position(self) -> int:
        return self.snap.position

    def counts(self, pc: int) -> int | None:
        """Arrivals at `pc` before this waypoint in its stretch, if they were counted."""
        return self.arrivals[pc] if pc in self.armed else None

    def watch_count(self, watchpoints: frozenset[Watchpoint]) -> int | None:
        return self.watches if watchpoints == self.watchpoints else None


class Land(enum.Enum):
    BEGIN = "begin"  # the start of history
    BOUNDARY = "boundary"  # an event boundary
    MID = "mid"  # inside a stretch


@dataclass(frozen=True, slots=True)
class Landing:
    """Where a backward move left the replay: inside the stretch run by `tid` (MID), `steps`
    instructions after the `anchor` arrival or the origin (None: not known)."""
    kind: Land
    tid: int | None = None
    steps: int | None = 0
    anchor: tuple[int, int] | None = None


BEGIN = Landing(Land.BEGIN)
BOUNDARY = Landing(Land.BOUNDARY)
