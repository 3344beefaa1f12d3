"""Progress notes for gdb's console while a long request runs.

`monitor goto 400000` or a reverse-continue far back can replay for many seconds. gdb shows
nothing meanwhile and, for a monitor command, gives up waiting after `remotetimeout` (2 s by
default: "Ignoring packet error, continuing..."). While such a request runs, the replay
reports where it is about once a second through a sink the stub provides (it becomes gdb
console output, `O` packets); the stub itself keeps gdb waiting when the replay is silent
(a long stretch without events). Nothing is said during the first second, so quick requests
print nothing.

gdb 13 gives up on a monitor command when the user presses Ctrl-C (it sends nothing: it
stops reading the reply). The sink then answers False, and a task begun with
`abandon_on_quit` stops at the next note with `Abandoned`, raised from the event listener
with the replay at an event boundary.

The tick is called for every event replayed: it must stay cheap when nothing is due.
"""
from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterator

# Seconds between notes (gdb's default remotetimeout is 2 s); tests shorten it so that a
# request that is quick on a fast machine still shows its notes.
INTERVAL = float(os.environ.get("RELIVE_PROGRESS_INTERVAL", "1.0"))

Sink = Callable[[str], bool]  # says a note; False: nobody waits for the answer any more


class Abandoned(Exception):
    """gdb no longer waits for the task (raised by Progress.tick, at an event boundary)."""


class Progress:
    """Says, at most once per INTERVAL, which event a long task has reached."""

    def __init__(self, events: int) -> None:
        self.events = events  # how many the trace has (the last is events - 1)
        self.sink: Sink | None = None
        self._what = ""
        self._due = math.inf
        self._abandon = False

    @contextlib.contextmanager
    def task(self, what: str, abandon_on_quit: bool = False) -> Iterator[None]:
        """Report on `what` (e.g. "going to event 400000") while the block runs, if a sink
        is attached; with `abandon_on_quit`, raise Abandoned once gdb stops waiting."""
        outer = self._what, self._due, self._abandon
        self._what, self._due = what, time.monotonic() + INTERVAL
        self._abandon = abandon_on_quit
        try:
            yield
        finally:
            self._what, self._due, self._abandon = outer

    def tick(self, position: int) -> None:
        """The replay has replayed `position` events: say so if a note is due."""
        if self.sink is None:
            return
        now = time.monotonic()
        if now < self._due:
            return
        self._due = now + INTERVAL
        waited = self.sink(f"relive: {self._what}: at event {max(0, position - 1)} "
                           f"of {self.events - 1}\n")
        if not waited and self._abandon:
            raise Abandoned(f"gdb gave up on {self._what}")
