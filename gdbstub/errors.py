"""The gdb stub's errors, split by whose fault they are (as in h11).

- ``RemoteProtocolError``: gdb (the peer) sent bytes that are not the Remote Serial Protocol.
  The connection cannot continue; the server closes it.
- ``BadRequest``: a well-framed packet of a known kind whose arguments do not parse. The
  session answers ``E01`` and the connection survives.

The Target's own errors (``TargetError``, ``NoSuchThread``, ``Unsupported``) belong to the
Target protocol: ``debugtarget.errors``.

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

