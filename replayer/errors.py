"""Replay failures: a divergence names the event, thread and what differed."""
from __future__ import annotations

from tracefile.errors import ReliveError


class ReplayDivergence(ReliveError):
    """The replay did not do what the trace says the recording did."""

    def __init__(self, *, event: int, tid: int, what: str,
                 diff: dict[str, tuple[int, int]] | None = None) -> None:
        self.event, self.tid, self.what, self.diff = event, tid, what, diff or {}
        lines = [f"replay diverged at event {event} (thread {tid}): {what}"]
        for name, (want, got) in self.diff.items():
            lines.append(f"    {name:>8}: recorded {want:#x}, replay {got:#x}")
        super().__init__("\n".join(lines))


class ReplayError(ReliveError):
    """The replay could not be set up (missing file copy, failed rebuild, ...)."""


class Paused(Exception):
    """Raised by a session observer to stop replaying in the middle of an event (gdb wants
    control: a breakpoint, a watchpoint, Ctrl-C); the event is replayed again on the next
    step. Not an error: `reason` is whatever the observer needs to report."""

    def __init__(self, reason: object) -> None:
        super().__init__(reason)
        self.reason = reason


class Refused(ReliveError):
    """A request the replay cannot carry out where it is (no such thread here, unmapped
    memory, no checkpoint possible at this point): the replay is left as it was."""


class CheckpointFailed(Refused):
    """A checkpoint could not be made or restored: the kernel would not fork (out of
    processes). The replay is left as it was."""
