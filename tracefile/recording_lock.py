"""Whether a trace is being recorded right now: the recorder holds an exclusive flock(2) on
the trace directory from the moment it opens it until the trace is closed.

The kernel drops the lock when the recorder exits however it dies (even SIGKILL), so a trace
whose recorder was killed reads as cut off, not as still being recorded, and no stale lock
file is ever left behind. Readers only probe the lock (non-blocking, released at once); the
file descriptor is close-on-exec, so the recorded program never holds it.
"""
from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from tracefile.errors import TraceError

# A reader probing the lock holds it for microseconds; a writer tries this long before
# concluding that another recorder holds it.
_WRITER_PATIENCE = 1.0


def hold(directory: Path, patience: float = _WRITER_PATIENCE) -> int:
    """Lock `directory` for a recording (or for deleting it); returns the descriptor to pass
    to `release`."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    deadline = time.monotonic() + patience
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise TraceError(f"{directory} is being recorded right now by another relive; "
                                 "refusing to touch it") from None
            time.sleep(0.01)
        except OSError:  # a filesystem without flock: record anyway, unprotected
            return fd


def release(fd: int) -> None:
    os.close(fd)


def being_recorded(directory: Path) -> bool:
    """True while a recorder holds `directory` (a trace still being written)."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # also drops the shared lock just taken
