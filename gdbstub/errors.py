"""The gdb stub's errors, split by whose fault they are (as in h11).

- ``RemoteProtocolError``: gdb (the peer) sent bytes that are not the Remote Serial Protocol.
  The connection cannot continue; the server closes it.
- ``BadRequest``: a well-framed packet of a known kind whose arguments do not parse. The
  session answers ``E01`` and the connection survives.
- ``TargetError``: the Target could not do what was asked (unmapped memory, unknown thread,
  no such file). Answered with an error packet; the connection survives.
- ``Unsupported``: the Target does not implement an optional operation. Answered with the empty
  packet, which tells gdb "not supported" so it stops asking.

All derive from relive's single error base, ``ReliveError``.
"""
from __future__ import annotations

from tracefile.errors import ReliveError


class GdbStubError(ReliveError):
    """Base of every error raised by the gdbstub package."""


class RemoteProtocolError(GdbStubError):
    """The peer sent bytes that break the packet framing; the connection must be closed."""


class BadRequest(GdbStubError):
    """A packet of a known kind with malformed arguments; answered with ``E01``."""

    def __init__(self, payload: bytes, why: str) -> None:
        self.payload = payload
        self.why = why
        shown = payload[:60].decode("latin-1")
        super().__init__(f"malformed gdb packet {shown!r}: {why}")


class TargetError(GdbStubError):
    """The target refused or failed an operation; gdb gets an error reply, the session goes on."""


class NoSuchThread(TargetError):
    """A thread id that names no thread the target knows."""


class Unsupported(TargetError):
    """An optional target operation that this target does not implement (gdb gets ``""``)."""
