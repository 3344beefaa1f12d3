"""The Remote Serial Protocol's framing, with no I/O (h11-style).

Theory of operation
-------------------
The caller owns the socket. It feeds whatever bytes arrived to ``receive_data`` and then calls
``next_event`` until it returns ``NEED_DATA``. Events are:

- ``Packet(payload)``: one ``$payload#cs`` frame, checksum verified, ``}``-escapes decoded.
- ``Interrupt()``: a raw ``\\x03`` byte between packets (Ctrl-C in gdb).

Receiving has side effects on the wire in acknowledgement mode: every good packet must be
answered ``+`` and every corrupt one ``-`` (and dropped: gdb will resend it); a ``-`` from gdb
asks us to resend our last packet. Those bytes collect in an outbox that the caller drains with
``data_to_send()`` after each ``next_event()`` and writes before anything else. After the
session has answered ``QStartNoAckMode`` with ``OK`` (the ``OK`` itself is still acked by gdb),
the caller calls ``enter_no_ack_mode()``: from then on nothing is acked, ``+``/``-`` from the
peer are ignored, and a checksum mismatch is logged and the packet accepted (there is no way to
ask for a resend; gdbserver does the same).

``send_packet(payload)`` frames a reply: it escapes ``$ # } *`` (as ``}`` + byte ^ 0x20) so
binary payloads survive, and appends the checksum of the escaped bytes. gdb decodes ``*`` as
run-length encoding in *every* reply, so escaping it is required, not just polite. Replies are
never run-length encoded; gdb never sends RLE, so ``*`` in incoming payloads is literal.

Invariants: feeding the same bytes whole or one byte at a time yields the same events and the
same outbox bytes; garbage raises only ``RemoteProtocolError``, after which the connection is
dead (every later ``next_event`` raises the same error again).

This module knows nothing about what packets mean.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Final

from gdbstub.errors import RemoteProtocolError

log = logging.getLogger(__name__)

PACKET_SIZE: Final = 0x4000
"""What the stub advertises as ``PacketSize`` (bytes of payload gdb may send, and expects back)."""

MAX_INCOMING_PAYLOAD: Final = 2 * PACKET_SIZE
"""Longest raw payload accepted before the framing is declared broken (slack for escapes)."""

_ESCAPED: Final = frozenset(b"$#}*")
_ESCAPE_RE: Final = re.compile(rb"[$#}*]")
_UNESCAPE_RE: Final = re.compile(rb"\}(.?)", re.DOTALL)
_HEX: Final = frozenset(b"0123456789abcdefABCDEF")


@dataclass(frozen=True, slots=True)
class Packet:
    """One verified, unescaped packet payload from gdb."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class Interrupt:
    """A Ctrl-C (raw ``\\x03``) received between packets."""


class NeedData:
    """Sentinel type: no complete event is buffered; feed more bytes."""

    _instance: NeedData | None = None

    def __new__(cls) -> NeedData:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = NeedData()

Event = Packet | Interrupt


def checksum(data: bytes) -> int:
    """The RSP checksum: the sum of the bytes modulo 256."""
    return sum(data) & 0xFF


def escape(payload: bytes) -> bytes:
    """Escape the bytes that cannot appear raw inside a frame."""
    return _ESCAPE_RE.sub(lambda m: bytes((0x7D, m[0][0] ^ 0x20)), payload)


def escaped_prefix_length(data: bytes, budget: int) -> int:
    """How many leading bytes of ``data`` fit in ``budget`` bytes once escaped.

    Binary replies (qXfer, vFile:pread) may return fewer bytes than asked; this picks how many so
    that the frame gdb receives stays within the size it asked for. It is at least 1 for
    non-empty data, so a transfer always makes progress.
    """
    if _ESCAPE_RE.search(data, 0, budget) is None:
        return min(len(data), max(budget, 1))
    used = 0
    for count, b in enumerate(data):
        used += 2 if b in _ESCAPED else 1
        if used > budget:
            return max(count, 1)
    return len(data)


def unescape(raw: bytes) -> bytes:
    """Undo ``}``-escaping; a ``}`` with nothing after it is a framing error."""
    if b"}" not in raw:
        return raw

    def one(m: re.Match[bytes]) -> bytes:
        if not m[1]:
            raise RemoteProtocolError("packet ends inside an escape sequence ('}' before '#')")
        return bytes((m[1][0] ^ 0x20,))

    return _UNESCAPE_RE.sub(one, raw)


def frame(payload: bytes) -> bytes:
    """``$escaped#cs`` for a payload."""
    body = escape(payload)
    return b"$" + body + b"#%02x" % checksum(body)


class PacketCodec:
    """The wire codec of one gdb connection, sans I/O: receive buffer, ack mode, outbox."""

    def __init__(self, *, max_payload: int = MAX_INCOMING_PAYLOAD) -> None:
        self._buf = bytearray()
        self._outbox = bytearray()
        self._ack_mode = True
        self._last_sent: bytes | None = None
        self._max_payload = max_payload
        self._error: RemoteProtocolError | None = None

    @property
    def ack_mode(self) -> bool:
        """True until ``enter_no_ack_mode`` (acks are exchanged for every packet)."""
        return self._ack_mode

    def enter_no_ack_mode(self) -> None:
        """Stop acking; call right after framing the ``OK`` reply to ``QStartNoAckMode``."""
        self._ack_mode = False
        self._last_sent = None

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Buffer bytes that arrived from gdb (trio >= 0.23 types receive_some() as
        ``bytes | bytearray``)."""
        self._buf += data

    def data_to_send(self) -> bytes:
        """Acks and retransmissions produced while receiving; the caller must write them."""
        out = bytes(self._outbox)
        self._outbox.clear()
        return out

    def send_packet(self, payload: bytes) -> bytes:
        """The bytes that carry ``payload`` to gdb (remembered for a ``-`` retransmit)."""
        framed = frame(payload)
        if self._ack_mode:
            self._last_sent = framed
        return framed

    def next_event(self) -> Event | NeedData:
        """The next complete event, or ``NEED_DATA``; raises ``RemoteProtocolError`` on garbage."""
        if self._error is not None:
            raise self._error
        try:
            return self._next_event()
        except RemoteProtocolError as exc:
            self._error = exc
            raise

    def _next_event(self) -> Event | NeedData:
        buf = self._buf
        while buf:
            first = buf[0]
            if first == 0x24:  # '$'
                result = self._take_packet()
                if result is None:
                    continue  # a corrupt packet was dropped; look at what follows
                return result
            del buf[0]
            if first == 0x03:
                return Interrupt()
            if first == 0x2B:  # '+': gdb acked our last packet
                continue
            if first == 0x2D:  # '-': gdb wants our last packet again
                if self._ack_mode and self._last_sent is not None:
                    self._outbox += self._last_sent
                continue
            raise RemoteProtocolError(
                f"unexpected byte {bytes((first,))!r} between packets "
                "(expected '$', '+', '-' or Ctrl-C)")
        return NEED_DATA

    def _take_packet(self) -> Packet | NeedData | None:
        """Consume one frame at the start of the buffer; None if it was dropped as corrupt."""
        buf = self._buf
        end = self._find_terminator()
        if end < 0:
            return NEED_DATA
        if len(buf) < end + 3:
            return NEED_DATA
        raw = bytes(buf[1:end])
        cs_text = bytes(buf[end + 1:end + 3])
        del buf[:end + 3]
        if not all(c in _HEX for c in cs_text):
            raise RemoteProtocolError(f"packet checksum {cs_text!r} is not two hex digits")
        if int(cs_text, 16) != checksum(raw):
            if self._ack_mode:
                log.warning("dropping gdb packet with a bad checksum: %r", raw[:60])
                self._outbox += b"-"
                return None
            log.warning("bad checksum in no-ack mode, accepting packet anyway: %r", raw[:60])
        elif self._ack_mode:
            self._outbox += b"+"
        return Packet(unescape(raw))

    def _find_terminator(self) -> int:
        """Index of the ``#`` ending the frame that starts at buf[0], or -1 if not yet buffered."""
        buf = self._buf
        limit = min(len(buf), self._max_payload + 2)
        end = buf.find(b"#", 1, limit)
        if buf.find(b"$", 1, end if end >= 0 else limit) >= 0:
            raise RemoteProtocolError("unescaped '$' inside a packet (truncated frame?)")
        if end < 0 and len(buf) > self._max_payload + 1:
            raise RemoteProtocolError(
                f"packet longer than {self._max_payload} bytes without a '#' terminator")
        return end
