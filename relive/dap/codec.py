"""The Debug Adapter Protocol's framing, with no I/O: `Content-Length: N\\r\\n\\r\\n` + N bytes
of UTF-8 JSON, the same on stdio and TCP.

    codec = Codec()
    codec.receive_data(chunk)          # whatever the stream gave, in any slicing
    while (message := codec.next_message()) is not None:
        ...                            # a dict: a request from the editor
    stream.write(encode(response))

Invariant: feeding the bytes whole or one at a time yields the same messages. A malformed
header or body raises ProtocolError (the peer's fault); the codec is then unusable, as the
stream has no way to resynchronise.
"""
from __future__ import annotations

import json
from typing import Any

__all__ = ["Codec", "ProtocolError", "encode"]

MAX_HEADER = 8192                # bytes of header lines before the blank line
MAX_BODY = 64 * 1024 * 1024      # a request larger than this is garbage, not an editor


class ProtocolError(ValueError):
    """The peer sent something that is not DAP framing or not a JSON object."""


def encode(message: dict[str, Any]) -> bytes:
    """One message, framed."""
    body = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


class Codec:
    """Buffers received bytes and cuts them into messages."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._length: int | None = None  # body length once the header is parsed

    def receive_data(self, data: bytes) -> None:
        self._buffer += data

    def next_message(self) -> dict[str, Any] | None:
        """The next complete message, or None until more data arrives."""
        if self._length is None:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > MAX_HEADER:
                    raise ProtocolError("DAP header without an end (no blank line in "
                                        f"{MAX_HEADER} bytes)")
                return None
            self._length = _content_length(bytes(self._buffer[:end]))
            del self._buffer[:end + 4]
        if len(self._buffer) < self._length:
            return None
        body = bytes(self._buffer[:self._length])
        del self._buffer[:self._length]
        self._length = None
        try:
            message = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ProtocolError(f"DAP message is not JSON: {e}") from None
        if not isinstance(message, dict):
            raise ProtocolError("DAP message is not a JSON object")
        return message


def _content_length(header: bytes) -> int:
    length: int | None = None
    for line in header.split(b"\r\n"):
        name, sep, value = line.partition(b":")
        if not sep:
            raise ProtocolError(f"malformed DAP header line {line[:80]!r}")
        if name.strip().lower() == b"content-length":
            text = value.strip()
            if not text.isdigit():
                raise ProtocolError(f"bad Content-Length {text[:20]!r}")
            length = int(text)
    if length is None:
        raise ProtocolError("DAP header without Content-Length")
    if length > MAX_BODY:
        raise ProtocolError(f"DAP message of {length} bytes (at most {MAX_BODY})")
    return length
