"""Replay's compiled loops (tracee/fastloop.c): runs of emulated syscalls (relive_replay_run),
and the search for a point by its breakpoint's hits (relive_find_point, `PointFinder`).

A SYSCALL event can go into a batch when replay only has to emulate it: stop at its entry
under PTRACE_SYSEMU, check the registers, write the recorded memory (exact writes only), set
the result. So can a BUFFERED one (tracee.sysbuf): the loop then checks the number, the
arguments and rip, which are all the event has of the registers; given the process's feed
(replayer.sysbuf_feed), a run of them costs the loop one stop, not one each. Not batched: the calls
replay executes (address space, signal state: see replayer.syscalls), execve,
clone/fork/vfork, rt_sigreturn/exit, a call completing an ENTER, writes re-emitted to
stdout/stderr, conservative writes, and (when `naming` is set) the calls the gdb target
reads thread names from.

The loop stops at the first event whose stop is not the recorded one (another stop, other
registers, a write that does not land) and hands back that stop untouched: the session
replays that event through its ordinary path, which reports the same divergence, with the same
words, as if there had been no batch.
"""
from __future__ import annotations

import bisect
import ctypes
import struct
from collections.abc import Callable, Sequence
from typing import NamedTuple, Protocol, overload

from tracee import fastloop, records, sysbuf
from tracee.ptrace_api import REGS_SIZE
from tracee.syscalls import queries
from tracee.sysnums import NAME_OF
from tracee.syscalls.queries import NOT_EMULATED
from tracefile import columnar
from tracefile.columnar import Decoded
from tracefile.reader import Row
from tracefile.records import Event, Kind, MemoryWrite

# The gdb target reads the program's memory at these to learn thread names
# (replayer.process_view): prctl(PR_SET_NAME), opens of comm files, writes to them.
NAMING = frozenset(queries.OPENS) | queries.WRITES | {"prctl"}
MAX_BATCH = 256
# A batch also ends once its events write this many bytes: a batch is built (its writes
# joined into one buffer) before the loop knows how many of its events fit in its time, and
# the events it had no time for are built again into the next (with 1 MiB reads, 256 of them
# made every 20 ms batch copy 256 MiB).
MAX_BATCH_BYTES = 4 << 20
# A batch packed from laid-out chunks in compiled code (tracee.records) may be longer: the
# stop that ends each batch is then rarer (find: ~1,600 batches of 256 for 406k buffered
# calls), and the events a batch had no time for go back to the cursor without a row each
# (tracefile.reader EventCursor.push_back).
MAX_PACKED = 4096
_BATCHABLE = frozenset(NAME_OF) - queries.numbers(NOT_EMULATED)
_NAMING_NRS = queries.numbers(NAMING)
_SYSCALL, _BUFFERED = int(Kind.SYSCALL), int(Kind.BUFFERED)
_EV, _WR = fastloop.EV, fastloop.WR
_ARGS = struct.Struct("<7Q")  # a BUFFERED event's "registers" (recorder.sysbuf_record)
# where user_regs_struct has them: rdi rsi rdx r10 r8 r9 rip
_ARG_SLOTS = (14, 13, 12, 7, 9, 8, 16)


# A BUFFERED event's register file (its words at _ARG_SLOTS, the rest zero) and struct ev,
# packed at once: slots 7-9 (r10 r9 r8), 12-14 (rdx rsi rdi), 16 (rip).
_BUFFERED_EV = struct.Struct(f"<56xQQQ16xQQQ8xQ{REGS_SIZE - 136}x" + _EV.format.lstrip("<"))
assert sorted(_ARG_SLOTS) == [7, 8, 9, 12, 13, 14, 16] and _BUFFERED_EV.size == REGS_SIZE + _EV.size


def _regs_fit(kind: int, regs: bytes) -> bool:
    return len(regs) == (_ARGS.size if kind == _BUFFERED else REGS_SIZE)


def emulated_only(ev: Event, tid: int, *, naming: bool) -> bool:
    """Can `ev` go into a batch of task `tid`'s syscalls?"""
    if (ev.kind not in (Kind.SYSCALL, Kind.BUFFERED) or ev.tid != tid
            or ev.nr not in _BATCHABLE or not _regs_fit(ev.kind, ev.regs)
            or (naming and ev.nr in _NAMING_NRS)):
        return False
    if ev.info and ("out" in ev.info or "remote" in ev.info):
        return False
    for w in ev.writes:
        if w.conservative:
            return False
    return True


_REACHED = frozenset({int(Kind.SYSCALL), int(Kind.ENTER), int(Kind.RDTSC), int(Kind.RDRAND),
                      int(Kind.CPUID)})


def reached_by_running(row: Row | None, tid: int) -> bool:
    """Is `row` (the event after a batch) a stop task `tid` reaches by running on from
    its last event (a syscall, a trap)? Not so a signal delivered at that event's stop,
    another task's event, or a recorded point run to with a breakpoint."""
    return row is not None and row[1] == tid and row[2] in _REACHED


class Batch(NamedTuple):
    """A run of events packed for relive_replay_run: the rows (for what was not replayed
    to go back; made only when asked for), the struct evs, the struct wrs and the written
    bytes."""
    rows: Sequence[Row]
    evs: bytes
    wrs: bytes
    data: bytes
    after: Row | None  # the event after the batch, if it was read


class Spans(Protocol):
    """A cursor over laid-out chunks (tracefile.reader EventCursor)."""

    def span(self) -> tuple[Decoded, int, int] | None: ...

    def skip(self, count: int) -> None: ...


class BatchRows(Sequence[Row]):
    """A batch's rows: rows read one by one, and runs of a laid-out chunk's events packed
    in compiled code, whose rows are made only if asked for (the events not replayed)."""

    def __init__(self) -> None:
        self._parts: list[Row | tuple[Decoded, int, int]] = []
        self._ends: list[int] = []

    def add_row(self, row: Row) -> None:
        self._parts.append(row)
        self._ends.append(len(self) + 1)

    def add_run(self, chunk: Decoded, at: int, count: int) -> None:
        self._parts.append((chunk, at, count))
        self._ends.append(len(self) + count)

    def __len__(self) -> int:
        return self._ends[-1] if self._ends else 0

    @overload
    def __getitem__(self, i: int) -> Row: ...

    @overload
    def __getitem__(self, i: slice) -> list[Row]: ...

    def __getitem__(self, i: int | slice) -> Row | list[Row]:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        p = bisect.bisect_right(self._ends, i)
        part = self._parts[p]
        if len(part) == 3:  # (a row has 8 items)
            chunk, at, _ = part
            start = self._ends[p - 1] if p else 0
            return chunk.row(at + i - start)
        return part


_ALLOWED: dict[bool, bytes] = {}


def _allowed(naming: bool) -> bytes:
    """The numbers a batch takes as records.c's map (MAX_NR bytes)."""
    got = _ALLOWED.get(naming)
    if got is None:
        nrs = _BATCHABLE - _NAMING_NRS if naming else _BATCHABLE
        got = _ALLOWED[naming] = bytes(int(nr in nrs) for nr in range(records.MAX_NR))
    return got


_BUFFERED_REGS = _ARGS.size


def _conservative(writes: tuple[MemoryWrite, ...]) -> bool:
    for w in writes:
        if w[2]:
            return True
    return False


def collect(first: Row, next_row: Callable[[], Row | None],
            push_back: Callable[[Row], None], *, naming: bool,
            cursor: Spans | None = None) -> Batch | None:
    """The run of emulated events of `first`'s task from `first` (taken, checked by
    `emulated_only`) on, read with `next_row` (the first one it does not take goes back
    with `push_back`), up to MAX_BATCH events or MAX_BATCH_BYTES written, packed as the loop
    reads them in the same pass. Stricter than `emulated_only` on the events it reads (an
    event with any info is not taken: Events are made only for the events handed to
    others). None if a value does not fit its C type (a corrupt trace: the ordinary path
    reports it). Given the `cursor` and the compiled codec (tracee.records), the events of
    a laid-out chunk are checked and packed in compiled code, with the same checks (an
    event whose value does not fit ends the batch before it), without a row each."""
    tid = first[1]
    nrs = _BATCHABLE - _NAMING_NRS if naming else _BATCHABLE
    rows = BatchRows()
    rows.add_row(first)
    parts: list[bytes] = []
    wparts: list[bytes] = []
    data: list[bytes] = []
    off = nwrites = 0
    pack, wpack, args, bpack = _EV.pack, _WR.pack, _ARGS.unpack, _BUFFERED_EV.pack
    buffered_flag = fastloop.EV_BUFFERED
    after: Row | None = None
    row: Row | None = first
    put, wput, dput = parts.append, wparts.append, data.append
    codec = columnar.codec if cursor is not None else None
    packer = codec if isinstance(codec, records.RecordsCodec) else None
    allowed = _allowed(naming) if packer is not None else b""
    n = 1
    most = MAX_PACKED if packer is not None else MAX_BATCH
    try:
        while row is not None:
            _, rtid, kind, nr, result, regs, info, writes = row
            if row is not first:
                if (rtid != tid or nr not in nrs or info
                        or (kind != _BUFFERED or len(regs) != _BUFFERED_REGS)
                        and (kind != _SYSCALL or len(regs) != REGS_SIZE)
                        or writes and _conservative(writes)):
                    push_back(row)
                    after = row
                    break
                rows.add_row(row)
                n += 1
            if kind == _BUFFERED:
                a0, a1, a2, a3, a4, a5, rip = args(regs)
                put(bpack(a3, a5, a4, a2, a1, a0, rip, nr, result, len(writes) | buffered_flag,
                          nwrites))
            else:
                put(regs)
                put(pack(nr, result, len(writes), nwrites))
            if writes:
                for w in writes:
                    wput(wpack(w[0], len(w[1]), off))
                    dput(w[1])
                    off += len(w[1])
                    nwrites += 1
                if off >= MAX_BATCH_BYTES:
                    break
            if n >= MAX_BATCH:
                break
            while packer is not None and cursor is not None:  # (compiled: whole spans)
                got = cursor.span()
                if got is None:
                    break
                chunk, at, hi = got
                room = min(most - n, hi - at)
                k, evs, wrs, more = packer.collect(chunk, at, hi, tid, allowed, room,
                                                   MAX_BATCH_BYTES, nwrites, off)
                if k:
                    put(evs)
                    wput(wrs)
                    dput(more)
                    rows.add_run(chunk, at, k)
                    cursor.skip(k)
                    n += k
                    nwrites += len(wrs) // _WR.size
                    off += len(more)
                if off >= MAX_BATCH_BYTES or n >= most:
                    return Batch(rows, b"".join(parts), b"".join(wparts), b"".join(data), None)
                if k < room:  # an event it does not take: the next one, read as a row
                    break
            row = next_row()
    except struct.error:
        for r in reversed(rows[1:]):
            push_back(r)
        return None
    return Batch(rows, b"".join(parts), b"".join(wparts), b"".join(data), after)


class Outcome(NamedTuple):
    done: int      # events replayed
    reason: int    # fastloop.STOP / EINTR / PARKED / ERROR
    status: int    # with STOP: the raw status of the stop met at event `done`
    errno: int
    fed: int = 0   # BUFFERED events the hook took from its feed (no stop each)
    stops: int = 0  # ptrace stops the loop waited for


class ReplayLoop:
    def __init__(self, lib: ctypes.CDLL) -> None:
        self._lib = lib
        self._out = (ctypes.c_int64 * fastloop.OUT_WORDS)()
        if columnar.codec is None:  # (the trace's chunks laid out, batches packed, compiled)
            columnar.codec = records.codec()

    def run_packed(self, tid: int, memfd: int, evs: bytes, nev: int, wrs: bytes, data: bytes,
                   deadline_ns: int, feed: int = 0, feed_last: bool = False) -> Outcome:
        """Replay `nev` events packed by `collect` (task `tid` stopped at the boundary
        before the first). `feed`: the address of the process's feed (replayer.sysbuf_feed),
        through which runs of BUFFERED events are replayed without a stop each; 0 for none.
        `feed_last`: the last event may be fed too (the event after it is a stop the task
        reaches by running on: `reached_by_running`)."""
        out = self._out
        self._lib.relive_replay_feed(feed, int(feed_last), sysbuf.HOOK_CODE,
                                     sysbuf.HOOK_CODE + sysbuf.CODE_SIZE)
        self._lib.relive_replay_run(tid, memfd, evs, nev, wrs, data, deadline_ns, out)
        return Outcome(done=out[0], reason=out[1], status=out[3], errno=out[5], fed=out[4],
                       stops=out[6])


class Found(NamedTuple):
    hits: int      # hits of the breakpoint counted
    reason: int    # fastloop.MATCH / STOP / EINTR / PARKED / ERROR
    status: int    # with MATCH or STOP: the raw status of the stop the task is at
    errno: int


class PointFinder:
    def __init__(self, lib: ctypes.CDLL) -> None:
        self._lib = lib
        self._out = (ctypes.c_int64 * fastloop.OUT_WORDS)()

    def run(self, tid: int, rip: int, regs: bytes, max_hits: int, deadline_ns: int) -> Found:
        """Run task `tid` (stopped, debug register 3 breaking at `rip`) over the hits where
        its registers are not `regs`, up to `max_hits` hits or the deadline."""
        out = self._out
        self._lib.relive_find_point(tid, rip, regs, max_hits, deadline_ns, out)
        return Found(hits=out[0], reason=out[1], status=out[3], errno=out[5])
