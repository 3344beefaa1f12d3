"""The per-event work on buffered syscalls in compiled code (records.c), loaded with ctypes
as fastloop.c is (tracee.fastloop: a build made at install if it was built from this very
source, else one built with gcc at first use and cached, else none: the Python paths).

- `buffered_columns`: the syscall buffer's records as a chunk's columns (the recorder's
  trace writer thread: recorder.sysbuf_record `columns_from`).
- `RecordsCodec.layout`: a chunk's raw blob checked and laid out (the fields of a
  tracefile.columnar Decoded; replayer.fastpath installs the codec there: tracee knows no
  trace types);
  `collect`: a run of its events packed for the replay loop (replayer.fastpath).

RELIVE_FASTPATH=0 turns it off with the compiled loops. The C side lists its constants by
name (`relive_interface`), checked against `DECLARED` at load.
"""
from __future__ import annotations

import ctypes
import logging
import threading
from pathlib import Path
from typing import Protocol

from tracee import fastloop, sysbuf
from tracee.ptrace_api import REGS_SIZE

log = logging.getLogger(__name__)

# What tracefile.columnar makes its Columns and Decoded of (tracee imports no trace types):
# (events, nrs, results, counts, regs, regs_size, waddrs, wsizes, data) and
# (first, count, raw, writes, flat, off).
ColumnFields = tuple[int, bytes, bytes, bytes, bytes, int, bytes, bytes, bytes]
LayoutFields = tuple[int, int, bytes, int, bytes, memoryview]


class LaidOut(Protocol):
    """A chunk as `layout` laid it out (tracefile.columnar.Decoded)."""
    raw: bytes
    count: int
    writes: int
    flat: bytes
    off: memoryview

SOURCE = Path(__file__).with_name("records.c")
INSTALLED_NAME = "_records"  # setup.py's extension tracee._records
ARGS_SIZE = 56
TABLE_WORDS = 3
OFF_WORDS = 4
EV_SIZE = REGS_SIZE + fastloop.EV.size
MAX_NR = 1024
KIND_SYSCALL, KIND_BUFFERED = 2, 11  # tracefile.records Kind
DECLARED = {"REC_HEAD": sysbuf.REC_HEAD, "DONE": sysbuf.DONE, "NO_ARG": sysbuf.NO_ARG,
            "MAX_OUT": sysbuf.MAX_OUT, "ARGS_SIZE": ARGS_SIZE, "REGS": REGS_SIZE,
            "COLUMNS": 7, "WCOLUMNS": 3, "TABLE_WORDS": TABLE_WORDS, "OFF_WORDS": OFF_WORDS,
            "EV_SIZE": EV_SIZE, "WR_SIZE": fastloop.WR.size,
            "EV_BUFFERED": fastloop.EV_BUFFERED, "KIND_SYSCALL": KIND_SYSCALL,
            "KIND_BUFFERED": KIND_BUFFERED, "MAX_NR": MAX_NR}
_ERRORS = {-1: "shorter than its columns", -2: "a negative length",
           -3: "more writes than bytes", -4: "lengths do not add up to its size",
           -5: "its layout changed"}

_lib: ctypes.CDLL | None = None
_tried = False
_status = "not loaded yet"


def load() -> ctypes.CDLL | None:
    """The loaded library, or None: disabled, not built (said once: the Python paths do the
    same work)."""
    global _lib, _tried, _status
    if not fastloop.enabled():
        _status = "off (RELIVE_FASTPATH=0)"
        return None
    if _tried:
        return _lib
    _tried = True
    try:
        path, origin = fastloop.library_path(SOURCE, INSTALLED_NAME)
        lib = ctypes.CDLL(str(path))
    except OSError as e:
        _unavailable(str(e))
        return None
    _declare(lib)
    differ = fastloop.disagreements(lib, DECLARED)
    if differ:
        _unavailable(f"{path} does not match relive's Python code: {differ}")
        return None
    _lib = lib
    _status = f"on ({origin}: {path})"
    return lib


def codec() -> RecordsCodec | None:
    """The compiled chunk codec (for tracefile.columnar), if the library loads."""
    lib = load()
    return RecordsCodec(lib) if lib is not None else None


def _unavailable(why: str) -> None:
    global _status
    _status = f"off ({why}; the Python path does the same work more slowly)"
    log.warning("compiled buffered records unavailable (%s); using the Python path", why)


def status() -> str:
    """Whether records.c is on, and where it comes from or why not (`relive doctor`)."""
    load()
    return _status


def _declare(lib: ctypes.CDLL) -> None:
    i64, vp, cp = ctypes.c_int64, ctypes.c_void_p, ctypes.c_char_p
    lib.relive_buffered_columns.restype = ctypes.c_long
    lib.relive_buffered_columns.argtypes = [cp, i64, i64, i64, ctypes.c_uint64, vp, i64,
                                            vp, vp, vp, vp, vp, vp, vp, vp, ctypes.c_int]
    lib.relive_chunk_sizes.restype = ctypes.c_long
    lib.relive_chunk_sizes.argtypes = [cp, i64, i64, vp]
    lib.relive_chunk_layout.restype = ctypes.c_long
    lib.relive_chunk_layout.argtypes = [cp, i64, i64, i64, i64, vp, vp]
    lib.relive_chunk_collect.restype = ctypes.c_long
    lib.relive_chunk_collect.argtypes = [cp, i64, i64, cp, vp, i64, i64, cp, i64, i64, i64,
                                         i64, vp, vp, vp, vp]
    lib.relive_interface.restype = ctypes.c_long
    lib.relive_interface.argtypes = [vp, vp, ctypes.c_long]


_table: ctypes.Array[ctypes.c_int64] | None = None


def _entry_table() -> ctypes.Array[ctypes.c_int64]:
    """The hook's table (tracee.sysbuf entries) as TABLE_WORDS int64 per number: out_arg
    (NO_ARG: no output), cap_arg, fixed size."""
    global _table
    if _table is None:
        table = (ctypes.c_int64 * (sysbuf.TABLE_NRS * TABLE_WORDS))()
        for nr in range(sysbuf.TABLE_NRS):
            table[nr * TABLE_WORDS] = sysbuf.NO_ARG
        for nr, (out_arg, _, cap_arg, size) in sysbuf.entries().items():
            table[nr * TABLE_WORDS:nr * TABLE_WORDS + 3] = [out_arg, cap_arg, size]
        _table = table
    return _table


def _buf(size: int) -> ctypes.Array[ctypes.c_char]:
    return ctypes.create_string_buffer(max(size, 1))


class _Scratch(threading.local):
    """The buffers `buffered_columns` fills, kept per thread and grown as needed (zeroing
    fresh ones at every call cost more than the conversion)."""

    def __init__(self) -> None:
        self.size = -1
        self.data_size = -1
        self.bufs: list[ctypes.Array[ctypes.c_char]] = []
        self.data = _buf(0)

    def get(self, records: int, data: int) -> tuple[list[ctypes.Array[ctypes.c_char]],
                                                    ctypes.Array[ctypes.c_char]]:
        if records > self.size:
            self.size = max(records, 2 * self.size, 256)
            self.bufs = [_buf(8 * self.size) for _ in range(5)] + [_buf(ARGS_SIZE * self.size)]
        if data > self.data_size:
            self.data_size = max(data, 2 * self.data_size, 1 << 16)
            self.data = _buf(self.data_size)
        return self.bufs, self.data


_scratch = _Scratch()


def buffered_columns(lib: ctypes.CDLL, chunk: bytes, rip: int, cap: int, pos: int = 0, *,
                     whole: bool = False) -> tuple[ColumnFields, int]:
    """Up to `cap` records of `chunk` from `pos` as columns, and where the next starts.
    `whole`: only records that are whole, done and with their result (records.c says
    why)."""
    most = min(cap, max(len(chunk) - pos, 0) // sysbuf.REC_HEAD)
    (nrs, results, counts, waddrs, wsizes, regs), data = _scratch.get(most, len(chunk) - pos)
    state = (ctypes.c_int64 * 3)()
    n = lib.relive_buffered_columns(chunk, len(chunk), pos, most, rip, _entry_table(),
                                    sysbuf.TABLE_NRS, nrs, results, counts, regs, waddrs,
                                    wsizes, data, state, int(whole))
    w = state[1]
    at = ctypes.string_at
    return (n, at(nrs, 8 * n), at(results, 8 * n), at(counts, 8 * n),
                   at(regs, ARGS_SIZE * n), ARGS_SIZE, at(waddrs, 8 * w), at(wsizes, 8 * w),
                   at(data, state[2])), state[0]


_EMPTY = ctypes.c_char * 0  # a view of a bytearray's start, of one ctypes type whatever its size


def _ptr(buf: bytearray) -> ctypes.Array[ctypes.c_char]:
    """`buf`'s bytes, as a pointer argument (an array type per size would be a new ctypes
    type each time: ~30 µs)."""
    return _EMPTY.from_buffer(buf)


class _Batch(threading.local):
    """collect's output buffers, kept per thread and grown as needed."""

    def __init__(self) -> None:
        self.evs = bytearray(0)
        self.wrs = bytearray(0)
        self.data = bytearray(0)


_batch = _Batch()


def _room(buf: bytearray, size: int) -> bytearray:
    if len(buf) < size:
        buf.extend(bytes(max(size, 2 * len(buf)) - len(buf)))
    return buf


class RecordsCodec:
    """tracefile.columnar's Codec, and the batch packing of replayer.fastpath."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self._lib = lib

    def layout(self, first: int, count: int, raw: bytes) -> LayoutFields:
        sizes = (ctypes.c_int64 * 2)()
        err = self._lib.relive_chunk_sizes(raw, len(raw), count, sizes)
        if err:
            raise ValueError(_ERRORS.get(err, "malformed"))
        writes, planes = sizes[0], sizes[1]
        flat = bytearray(planes * REGS_SIZE + 1)
        off = bytearray(8 * OFF_WORDS * max(count, 1))
        err = self._lib.relive_chunk_layout(raw, len(raw), count, writes, planes, _ptr(flat),
                                            _ptr(off))
        if err:
            raise ValueError(_ERRORS.get(err, "malformed"))
        return (first, count, raw, writes, bytes(flat[:planes * REGS_SIZE]),
                       memoryview(off).cast("q"))

    def collect(self, chunk: LaidOut, i: int, hi: int, tid: int, allowed: bytes,
                max_events: int, max_bytes: int, nw0: int, off0: int
                ) -> tuple[int, bytes, bytes, bytes]:
        """Events [i, hi) of `chunk` packed as replayer.fastpath collect packs them, while
        they are task `tid`'s emulated events (numbers in `allowed`, MAX_NR bytes): (how
        many, struct evs, struct wrs, data), writes numbered from `nw0`, data from `off0`."""
        lib, out = self._lib, (ctypes.c_int64 * 3)()
        off = chunk.off.obj
        assert isinstance(off, bytearray)
        args = (chunk.raw, chunk.count, chunk.writes, chunk.flat, _ptr(off), i, tid, allowed,
                min(max_events, hi - i), max_bytes, nw0, off0)
        lib.relive_chunk_collect(*args, None, None, None, out)
        k, nw, nb = out[0], out[1], out[2]
        if not k:
            return 0, b"", b"", b""
        b = _batch
        evs = _room(b.evs, k * EV_SIZE + 1)
        wrs = _room(b.wrs, nw * fastloop.WR.size + 1)
        data = _room(b.data, nb + 1)
        lib.relive_chunk_collect(*args, _ptr(evs), _ptr(wrs), _ptr(data), out)
        return (k, bytes(memoryview(evs)[:k * EV_SIZE]),
                bytes(memoryview(wrs)[:nw * fastloop.WR.size]), bytes(memoryview(data)[:nb]))
