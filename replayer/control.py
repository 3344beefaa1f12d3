"""What a debugger asks of a replay and what it gets back, in the replay's own terms.

The replay core knows no debugger protocol: a front end (debugtarget.replay for gdb's stub)
converts its requests into these values and these stops into its own. Threads are recorded
tids; signal numbers are Linux's.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol


class WatchKind(enum.Enum):
    """Which accesses to a watched range stop the replay."""

    WRITE = "write"
    READ = "read"
    ACCESS = "access"


@dataclass(frozen=True, slots=True, kw_only=True)
class Watchpoint:
    """Stop when the program accesses [addr, addr + length) in the given way."""

    kind: WatchKind
    addr: int
    length: int


class ThreadState(Protocol):
    """What a breakpoint condition may read of the thread stopped at its breakpoint."""

    def register(self, name: str) -> int: ...

    def read_memory(self, addr: int, length: int) -> bytes: ...


class BreakpointConditions(Protocol):
    """Conditions of some breakpoints, evaluated at each hit; a hit at an address outside
    `addresses` always stops."""

    addresses: frozenset[int]

    def holds(self, pc: int, thread: ThreadState) -> bool: ...


class Action(enum.Enum):
    """What a resume does with the thread it is for."""

    CONTINUE = "continue"
    STEP = "step"  # exactly one instruction
    RANGE_STEP = "range-step"  # step while start <= pc < end


class Direction(enum.Enum):
    FORWARD = "forward"
    BACKWARD = "backward"


@dataclass(frozen=True, slots=True, kw_only=True)
class ResumeCommand:
    """One resume of recorded thread `tid`, with what it stops at (valid for this call only);
    the fields mean what debugtarget.protocol.ResumeCommand's do."""

    action: Action
    direction: Direction
    tid: int
    signal: int = 0
    step_range: tuple[int, int] | None = None
    breakpoints: frozenset[int] = frozenset()
    conditions: BreakpointConditions | None = None
    watchpoints: frozenset[Watchpoint] = frozenset()
    pass_signals: frozenset[int] = frozenset()
    exec_events: bool = False


class StopKind(enum.Enum):
    """Why a resume ended."""

    STEPPED = "stepped"
    BREAKPOINT = "breakpoint"
    WATCHPOINT = "watchpoint"  # `watch` says which
    SIGNAL = "signal"
    INTERRUPTED = "interrupted"
    HISTORY_BEGIN = "history-begin"
    HISTORY_END = "history-end"
    EXECD = "exec"  # the process exec'd `exec_path`


@dataclass(frozen=True, slots=True, kw_only=True)
class Stop:
    """Where (recorded thread `tid`) and why a resume ended: a value, never an exception."""

    kind: StopKind
    tid: int
    signal: int = 5  # SIGTRAP unless kind is SIGNAL (or INTERRUPTED: SIGINT)
    watch: Watchpoint | None = None
    exec_path: str = ""
    console: str = ""  # a note for the user, shown before the stop (lines end in \n)
