"""Checksums of a trace's rows: damage to a stored value is "trace damaged at event N", never
a replay that looks faithful.

Every row of trace.db carries a `crc` column: CRC-32 (zlib) over all its other columns in a
fixed encoding. The writer computes it as it stores a row; the reader recomputes it before it
uses the row, and before it decompresses anything. An event row also stores how many memory
writes it has, so a write row that vanished is noticed, and each write row's checksum covers
its event's seq and its place, so a write moved to another event is too. CRC-32 catches every
flip of one bit and every burst of up to 32 flipped bits; it is a check against damage (a bad
disk, a stray edit), not against someone forging a trace.

The encodings check the cells' types on the way: a cell of another type than the writer
stored (an INTEGER edited into TEXT, a BLOB into NULL) is reported by the name of its column
instead of being used. Copied mapped files are named by the hash of their content
(tracefile.writer._copy); `content_id` recomputes it.

This module knows the order of each table's columns and nothing of what the values mean.
"""
from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tracefile import sparse
from tracefile.file_cache import ID_DIGITS  # a copied file's name: its SHA-256's first digits

EVENT_COLUMNS = ("seq", "tid", "kind", "nr", "result", "writes", "regs", "info")
WRITE_COLUMNS = ("seq", "ord", "addr", "size", "conservative", "zstd", "data")
EVENT_HEAD = struct.Struct("<6q")  # seq, tid, kind, nr, result, writes: then regs, info
_WRITE_HEAD = struct.Struct("<6q")  # seq, ord, addr, size, conservative, zstd
_I64 = struct.Struct("<q")
_F64 = struct.Struct("<d")
_U32 = struct.Struct("<I")


class Damaged(Exception):
    """A row whose stored values are not the written ones: `what` says how (the column of
    the first cell of a wrong type, or that the checksum disagrees); `seq` is its event's
    number, if it belongs to one whose number is readable."""

    def __init__(self, what: str, seq: int | None = None) -> None:
        super().__init__(what)
        self.what = what
        self.seq = seq


def _mismatch(row: str, values: Sequence[Any], types: Sequence[tuple[type, ...]],
              names: Sequence[str], seq: int | None = None) -> Damaged:
    for value, want, name in zip(values, types, names):
        if type(value) not in want:
            return Damaged(f"{row}: column {name} holds a {_type_name(value)}", seq)
    return Damaged(f"{row}: checksum mismatch", seq)


def _type_name(value: Any) -> str:
    return {int: "number", float: "real number", str: "text", bytes: "blob"}.get(
        type(value), "null")


def event_crc(seq: int, tid: int, kind: int, nr: int, result: int, writes: int,
              regs: bytes, info: bytes) -> int:
    """The checksum of an events row (the caller passes the values the writer stores)."""
    return zlib.crc32(info, zlib.crc32(regs, zlib.crc32(
        EVENT_HEAD.pack(seq, tid, kind, nr, result, writes))))


def write_crc(seq: int, order: int, addr: int, size: int, conservative: int, packed: int,
              data: bytes) -> int:
    """The checksum of a writes row; `data` as stored (compressed if `packed`)."""
    return zlib.crc32(data, zlib.crc32(
        _WRITE_HEAD.pack(seq, order, addr, size, conservative, packed)))


_EVENT_TYPES = ((int,),) * 6 + ((bytes,),) * 2 + ((int,),)
_WRITE_TYPES = ((int,),) * 6 + ((bytes,), (int,))


def checked_events(rows: Sequence[tuple[Any, ...]], writes: dict[int, list[Any]]
                   ) -> list[tuple[Any, ...]]:
    """Events rows read as (seq, tid, kind, nr, result, regs, info, writes, crc), checked,
    as (seq, tid, kind, nr, result, regs, info, tuple of writes) with their memory writes
    from `writes` (by seq), whose number must be the recorded one. The replay's reading of
    rows: one loop, no call per row but the checksum's."""
    pack = EVENT_HEAD.pack
    crc32 = zlib.crc32
    out = []
    empty: list[Any] = []
    try:
        for seq, tid, kind, nr, result, regs, info, count, crc in rows:
            if crc32(info, crc32(regs, crc32(pack(seq, tid, kind, nr, result, count)))) != crc:
                break
            ws = writes.get(seq, empty)
            if len(ws) != count:
                raise Damaged(f"memory writes: {len(ws)} of the {count} recorded are there",
                              seq)
            out.append((seq, tid, kind, nr, result, regs, info, tuple(ws)))
        else:
            return out
    except (struct.error, TypeError):
        pass
    bad = rows[len(out)]
    seq, tid, kind, nr, result, regs, info, count, crc = bad
    raise _mismatch("event row", (seq, tid, kind, nr, result, count, regs, info, crc),
                    _EVENT_TYPES, (*EVENT_COLUMNS, "crc"), seq if type(seq) is int else None)


def verify_write(row: Sequence[Any]) -> None:
    """Check a writes row read as (seq, ord, addr, size, conservative, zstd, data, crc)."""
    seq, order, addr, size, conservative, packed, data, crc = row
    try:
        if crc == write_crc(seq, order, addr, size, conservative, packed, data):
            return
    except (struct.error, TypeError):
        pass
    raise _mismatch("memory write", row, _WRITE_TYPES, (*WRITE_COLUMNS, "crc"),
                    seq if type(seq) is int else None)


def check_types(row: Sequence[Any], types: Sequence[tuple[type, ...]],
                names: Sequence[str], seq: int | None = None) -> None:
    """Check a row's cells' types only (a trace without checksums)."""
    for value, want, name in zip(row, types, names):
        if type(value) not in want:
            raise Damaged(f"column {name} holds a {_type_name(value)}", seq)


def row_crc(*values: Any) -> int:
    """The checksum of a row of the small tables (meta, tasks, files): each value is tagged
    with its type, so a cell changed into another type changes the checksum."""
    crc = 0
    for v in values:
        if v is None:
            crc = zlib.crc32(b"n", crc)
        elif type(v) is int:
            crc = zlib.crc32(b"i" + _I64.pack(v), crc)
        elif type(v) is float:
            crc = zlib.crc32(b"f" + _F64.pack(v), crc)
        elif type(v) is str:
            data = v.encode("utf-8", "surrogateescape")
            crc = zlib.crc32(data, zlib.crc32(b"s" + _U32.pack(len(data)), crc))
        elif type(v) is bytes:
            crc = zlib.crc32(v, zlib.crc32(b"b" + _U32.pack(len(v)), crc))
        else:
            raise TypeError(f"no checksum for a {type(v).__name__}")
    return crc


def verify_row(row: Sequence[Any], types: Sequence[tuple[type, ...]],
               names: Sequence[str]) -> None:
    """Check a row of a small table read as (*values, crc): types, then the checksum."""
    *values, crc = row
    check_types(row, (*types, (int,)), (*names, "crc"))
    if crc != row_crc(*values):
        raise Damaged("checksum mismatch")


def content_id(path: Path) -> str:
    """The id a copied file is stored under: the first digits of its content's SHA-256."""
    import hashlib  # only when a replay maps a file: OpenSSL's start-up costs ~5 ms
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        sparse.copy(f.fileno(), None, digest)  # a hole is hashed as zeros, never read
    return digest.hexdigest()[:ID_DIGITS]
