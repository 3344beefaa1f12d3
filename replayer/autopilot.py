"""`relive replay --autopilot`: replay a whole trace with no debugger, re-emitting what the
program wrote to its stdout and stderr, byte for byte and in order."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from tracee.ptrace_api import PtraceError
from tracefile.errors import ReliveError

from replayer.session import ReplaySession


def _emit(fd: int, data: bytes) -> None:
    stream = sys.stdout if fd == 1 else sys.stderr
    stream.flush()
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def autopilot(trace: Path) -> int:
    """0 if the trace replayed faithfully to its end; 1 with a message otherwise."""
    try:
        session = ReplaySession(trace, output=_emit)
    except ReliveError as e:
        print(f"relive: {e}", file=sys.stderr)
        return 1
    session.fast = True  # no debugger: nothing to see between events
    try:
        session.run()
    except ReliveError as e:
        print(f"relive: {e}", file=sys.stderr)
        return 1
    except PtraceError as e:  # a replayed task gone or not stopped where the trace says
        print(f"relive: replay failed at event {session.position} of "
              f"{session.reader.event_count}: {e} (a relive bug: please report it with the "
              f"trace)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"relive: replay interrupted (Ctrl-C) at event {session.position} of "
              f"{session.reader.event_count}", file=sys.stderr)
        return 130
    finally:
        complete = session.reader.complete
        count = session.reader.event_count
        session.close()
    if not complete:
        print(f"relive: the trace is incomplete (the recording was cut off); replayed all "
              f"{count} recorded events faithfully", file=sys.stderr)
    return 0
