"""The lexical pieces of packet arguments: hex numbers, hex strings, field lists, thread ids.

Strict on purpose: ``int(text, 16)`` would accept ``0x``, signs, underscores and spaces, none
of which gdb sends; anything else is a ``BadRequest`` naming the packet and the field. Every
number must fit in 64 bits (gdb's addresses, lengths and offsets are unsigned 64-bit), so no
value from the wire can overflow a C type further down.
"""
from __future__ import annotations

import re
from typing import Final

from gdbstub.errors import BadRequest
from debugtarget.protocol import ALL_THREADS, ANY_THREAD, ThreadId

_HEX_RE: Final = re.compile(rb"[0-9a-fA-F]+")
U64_MAX: Final = (1 << 64) - 1


def hex_int(text: bytes, payload: bytes, what: str, limit: int = U64_MAX) -> int:
    """A strict unsigned hex number (no sign, prefix or spaces) no larger than ``limit``."""
    if not _HEX_RE.fullmatch(text):
        raise BadRequest(payload, f"{what} {text[:20]!r} is not a hex number")
    value = int(text, 16)
    if value > limit:
        raise BadRequest(payload, f"{what} {text[:20]!r} is larger than {limit:#x}")
    return value


def hex_bytes(text: bytes, payload: bytes, what: str) -> bytes:
    """Bytes from an even-length hex string."""
    if len(text) % 2 or (text and not _HEX_RE.fullmatch(text)):
        raise BadRequest(payload, f"{what} is not an even-length hex string")
    return bytes.fromhex(text.decode())


def split_exact(text: bytes, sep: bytes, count: int, payload: bytes) -> list[bytes]:
    """``text.split(sep)`` into exactly ``count`` parts (the last keeps any further seps)."""
    parts = text.split(sep, count - 1)
    if len(parts) != count:
        raise BadRequest(payload, f"expected {count} fields separated by {sep.decode()!r}")
    return parts


def addr_length(text: bytes, payload: bytes) -> tuple[int, int]:
    """``<addr>,<length>`` as two ints."""
    addr, length = split_exact(text, b",", 2, payload)
    return hex_int(addr, payload, "address"), hex_int(length, payload, "length")


def _thread_part(text: bytes, payload: bytes) -> int:
    return -1 if text == b"-1" else hex_int(text, payload, "thread id")


def parse_thread_id(text: bytes, payload: bytes) -> ThreadId:
    """``pPID.TID``, ``pPID`` (all threads of PID), ``TID``, ``-1`` (all) or ``0`` (any).

    A bare TID gets pid 0 ("whichever process has it").
    """
    if text.startswith(b"p"):
        pid_text, dot, tid_text = text[1:].partition(b".")
        pid = _thread_part(pid_text, payload)
        return ThreadId(pid, _thread_part(tid_text, payload) if dot else -1)
    tid = _thread_part(text, payload)
    if tid == -1:
        return ALL_THREADS
    if tid == 0:
        return ANY_THREAD
    return ThreadId(0, tid)


def format_thread_id(thread: ThreadId, multiprocess: bool) -> bytes:
    """``pPID.TID`` when gdb negotiated multiprocess, else the bare TID."""
    def part(n: int) -> bytes:
        return b"-1" if n < 0 else b"%x" % n
    if multiprocess:
        return b"p" + part(thread.pid) + b"." + part(thread.tid)
    return part(thread.tid)
