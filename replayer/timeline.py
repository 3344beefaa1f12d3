"""Reverse execution by re-execution, for the stretch a thread runs: the Timeline.

A position is (events replayed, then the state of the thread running the stretch after that
boundary: only that thread runs until the next event). Without a PMU the number of
instructions it has run is not known for free: a position reached by a breakpoint is
identified by its registers (and, when those match, a digest of writable memory), and its
count is found only if needed.

- Checkpoints and mids (replayer.timeline_core): forks at event boundaries and inside long
  stretches, to replay from.
- reverse-continue (replayer.reverse_continue): the passes inside one thread's stretches,
  from a checkpoint or mid before "now" with the breakpoints and watchpoints armed,
  remembering the last hit before now; then go to that hit.
- reverse-stepi (replayer.stretch_back, replayer.closing_in): the same stretch one
  instruction less, found from a nearby mid by counting, decoding and single steps.
- Ctrl-C in a forward run (replayer.interrupt_point): a mid there, and on to a counted
  arrival a step back finds cheaply.

Every run is a replayer.backward_pass.Pass judged stop by stop. The backward commands
themselves (replayer.backward, replayer.hit_search) use the Timeline for what happens inside
one stretch, with one task or several; crossing events is replayer.crossing's.
"""
from __future__ import annotations

from replayer.closing_in import ClosingIn
from replayer.interrupt_point import InterruptPoint
from replayer.positions import LostPosition, Position, SearchInterrupted
from replayer.reverse_continue import ReverseContinue
from replayer.stretch_back import StretchBack
from replayer.timeline_core import CHECKPOINT_INTERVAL, MAX_STEPS

__all__ = ["CHECKPOINT_INTERVAL", "MAX_STEPS", "LostPosition", "Position", "SearchInterrupted",
           "Timeline"]


class Timeline(ReverseContinue, StretchBack, ClosingIn, InterruptPoint):
    """Checkpoints, reverse-continue and reverse-stepi of one replay (see the module)."""
