"""Reply payloads that carry structure: stop replies, qXfer documents and chunks, errors.

Pure functions from values to bytes; the session decides *which* reply to send. Formats:

- Stop reply: ``T<gdbsig>[reason;]<regnum>:<hex>;...thread:<id>;`` (as gdbserver orders
  it), ``W<code>[;process:<pid>]`` for exit, ``X<gdbsig>[;process:<pid>]`` for a fatal
  signal. Reasons: ``swbreak:;``, ``hwbreak:;``, ``watch:<addr>;`` (``rwatch``/``awatch``),
  ``replaylog:begin;`` / ``replaylog:end;`` at the ends of recorded history.
- qXfer chunk: ``m<data>`` (more follows) or ``l<data>`` (last), data binary (escaped by the
  codec), sized so that the escaped frame fits what gdb asked for.
- XML documents for ``qXfer:threads`` and ``qXfer:libraries-svr4``.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final
from xml.sax.saxutils import quoteattr

from gdbstub.codec import PACKET_SIZE, escaped_prefix_length
from gdbstub.registers import EXPEDITED, REGISTERS, encode_register
from gdbstub.signals import GdbSignal, to_gdb
from gdbstub.syntax import format_thread_id
from debugtarget.protocol import LibraryList, Stop, StopKind, ThreadInfo

OK: Final = b"OK"
EMPTY: Final = b""
ERROR: Final = b"E01"

XFER_BUDGET: Final = PACKET_SIZE - 16
"""Largest escaped qXfer chunk sent, whatever length gdb asks for."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StopReplyOptions:
    """What gdb negotiated in qSupported, which changes how stops are written."""

    multiprocess: bool = True
    swbreak: bool = True
    hwbreak: bool = True
    exec_events: bool = False


def _stop_signal(stop: Stop) -> int:
    match stop.kind:
        case StopKind.SIGNAL | StopKind.KILLED:
            return to_gdb(stop.signal)
        case StopKind.INTERRUPTED:
            return GdbSignal.INT
    return GdbSignal.TRAP


def _reason(stop: Stop, break_reason: bytes, options: StopReplyOptions) -> bytes:
    match stop.kind:
        case StopKind.BREAKPOINT:
            wanted = options.swbreak if break_reason == b"swbreak" else options.hwbreak
            return break_reason + b":;" if wanted else b""
        case StopKind.WATCHPOINT:
            return b"%s:%x;" % (stop.watch_kind.value.encode(), stop.watch_addr)
        case StopKind.HISTORY_BEGIN:
            return b"replaylog:begin;"
        case StopKind.HISTORY_END:
            return b"replaylog:end;"
        case StopKind.EXECD if options.exec_events:
            return b"exec:%s;" % stop.exec_path.encode().hex().encode()
    return b""


def stop_reply(stop: Stop, registers: Mapping[str, int] | None, options: StopReplyOptions,
               break_reason: bytes = b"swbreak") -> bytes:
    """The payload reporting ``stop``; ``registers`` of the stopped thread are expedited."""
    process = b";process:%x" % stop.thread.pid if options.multiprocess else b""
    if stop.kind is StopKind.EXITED:
        return b"W%02x" % (stop.exit_code & 0xFF) + process
    if stop.kind is StopKind.KILLED:
        return b"X%02x" % _stop_signal(stop) + process
    parts = [b"T%02x" % _stop_signal(stop), _reason(stop, break_reason, options)]
    for regnum in EXPEDITED:
        if registers is not None and registers.get(REGISTERS[regnum].name) is not None:
            parts.append(b"%02x:%s;" % (regnum, encode_register(regnum, registers)))
    parts.append(b"thread:%s;" % format_thread_id(stop.thread, options.multiprocess))
    return b"".join(parts)


def xfer_chunk(document: bytes, offset: int, length: int) -> bytes:
    """``m``/``l`` + the slice of ``document`` gdb asked for, trimmed to fit once escaped."""
    if offset >= len(document):
        return b"l"
    piece = document[offset:offset + min(length, XFER_BUDGET)]
    piece = piece[:escaped_prefix_length(piece, min(length, XFER_BUDGET))]
    more = offset + len(piece) < len(document)
    return (b"m" if more else b"l") + piece


def threads_xml(threads: Iterable[ThreadInfo], multiprocess: bool) -> bytes:
    """The ``qXfer:threads:read`` document."""
    lines = ['<?xml version="1.0"?>\n<threads>\n']
    for info in threads:
        tid = format_thread_id(info.id, multiprocess).decode()
        name = f" name={quoteattr(info.name)}" if info.name else ""
        lines.append(f'<thread id="{tid}"{name}/>\n')
    lines.append("</threads>\n")
    return "".join(lines).encode()


def libraries_svr4_xml(libraries: LibraryList) -> bytes:
    """The ``qXfer:libraries-svr4:read`` document."""
    main = f' main-lm="{libraries.main_lm:#x}"' if libraries.main_lm is not None else ""
    parts = [f'<library-list-svr4 version="1.0"{main}>']
    for lib in libraries.libraries:
        parts.append(f"<library name={quoteattr(lib.name)} lm=\"{lib.lm:#x}\""
                     f" l_addr=\"{lib.l_addr:#x}\" l_ld=\"{lib.l_ld:#x}\" lmid=\"0x0\"/>")
    parts.append("</library-list-svr4>")
    return "".join(parts).encode()


def thread_list_chunks(ids: Sequence[bytes], budget: int = PACKET_SIZE - 16) -> list[bytes]:
    """``qfThreadInfo``/``qsThreadInfo`` replies: ``m<id>,<id>...`` pieces, then ``l``."""
    chunks: list[bytes] = []
    current: list[bytes] = []
    size = 1
    for tid in ids:
        if current and size + len(tid) + 1 > budget:
            chunks.append(b"m" + b",".join(current))
            current, size = [], 1
        current.append(tid)
        size += len(tid) + 1
    if current:
        chunks.append(b"m" + b",".join(current))
    chunks.append(b"l")
    return chunks


def console_output(text: str, budget: int = PACKET_SIZE - 16) -> list[bytes]:
    """``O<hex>`` packets carrying ``text`` to gdb's console."""
    raw = text.encode("utf-8", errors="replace")
    step = max(1, (budget - 1) // 2)
    return [b"O" + raw[i:i + step].hex().encode() for i in range(0, len(raw), step)]
