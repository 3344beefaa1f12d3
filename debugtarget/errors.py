"""What a Target raises when it cannot do what a front end asked.

- ``TargetError``: the target refused or failed an operation (unmapped memory, unknown thread,
  no such file, a time-travel command it cannot do here). A front end reports it and goes on.
- ``NoSuchThread``: a thread id that names no thread the target knows.
- ``Unsupported``: the target does not implement an optional operation (gdb gets the empty
  packet, which tells it to stop asking).

All derive from relive's single error base, ``ReliveError``.
"""
from __future__ import annotations

from tracefile.errors import ReliveError


class TargetError(ReliveError):
    """The target refused or failed an operation; the front end reports it and goes on."""


class NoSuchThread(TargetError):
    """A thread id that names no thread the target knows."""


class Unsupported(TargetError):
    """An optional target operation that this target does not implement."""
