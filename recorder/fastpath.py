"""Recording runs of simple syscalls in compiled code (tracee/fastloop.c, relive_record_run).

A syscall is *simple* when the Python path would do nothing at its stops but save the entry
registers, run it, and record the result and its outputs: the catalogue records it from its
outputs (record=TABLE: no code of its own, not faked), and every output is `Out(arg, Fixed |
Result | ArgValue(scale 1))`, sized at the exit. A call that writes to a file (FILE_WRITERS)
is simple when that file is none of the watched ones (relive's stdout and stderr, whose writes
are replayed as output, and mapped files, whose mappings show the change): the loop checks at
its entry. With several tasks only calls that never block (the catalogue's PLAIN_WHEN_SHARED:
never, or only with arguments the loop leaves to Python) are simple, so no thread switch,
ENTER or scratch redirect is ever skipped. With several tasks the loop is
relive_record_shared_run (recorder.handoff): it also runs futex wakes, keeps the other
tasks' syscall stops for the recorder (`Batch.others`) rather than returning at the first, and
switches threads at futex waits (`Batch.mixed`: the runs of each thread and the switches).

The recorder calls `run()` where it would resume a task after recording the exit of a simple
syscall (a run of them is likely to go on; after other calls the loop would mostly return at
once, a cost for nothing), and only when nothing else is waiting to be handled (no stashed
stops, no held signals, no switch due). The loop records simple syscalls of that task until
anything else happens and hands that stop back (`Batch.status`), with the entry registers
when a syscall was entered but not recorded; the recorder then carries on exactly as if its
own loop had reached that stop.
"""
from __future__ import annotations

import ctypes
import functools
import mmap
import struct
import time
from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple

from recorder.handoff import SWITCH_MARK, SharedRun
from recorder.syscall_effects import EffectRecorder
from tracee import fastloop, records
from tracee.ptrace_api import REGS_SIZE, PtraceError
from tracee.syscalls import queries
from tracee.syscalls.queries import DUPS_FD, FILE_WRITERS, PLAIN_WHEN_SHARED, READS_FD
from tracee.syscalls.rules import Fixed, Out, Record, Result, ArgValue
from tracee.sysnums import NAME_OF
from recorder.sysbuf_record import columns_from
from tracefile.columnar import Columns
from tracefile.records import Kind
from tracefile.writer import SyscallRecord

MAX_RECORDS = 4096
DATA_SIZE = 4 << 20
# The loop returns at least this often so that commits and the run queue stay on time even
# if a timer signal slipped in between two waits.
BUDGET_NS = 5_000_000
_REC = fastloop.REC


Outputs = list[tuple[int, int, int, int]]


class CallSpec(NamedTuple):
    """How the compiled loop records a simple syscall."""
    outputs: Outputs
    fd_arg: int = -1      # the descriptor it writes to, if the file may be a watched one
    except_arg: int = -1  # an argument whose values in `exceptions` leave it to Python
    exceptions: frozenset[int] = frozenset()
    path_arg: int = -1    # an argument holding a path: opens under /proc/ leave it to Python


def _outputs(name: str) -> Outputs | None:
    """The spec of a simple syscall's outputs, None if it is not simple."""
    call = queries.entry(name)
    if (call is None or call.record is not Record.TABLE or call.cpu_view
            or hasattr(EffectRecorder, f"_on_{name}") or len(call.outputs) > fastloop.MAX_OUTS):
        return None
    outs = []
    for o in call.outputs:
        if not isinstance(o, Out):
            return None
        match o.size:
            case Fixed(nbytes=n):
                outs.append((o.arg, fastloop.SIZE_FIXED, n, int(o.always)))
            case Result():
                outs.append((o.arg, fastloop.SIZE_RESULT, 0, int(o.always)))
            case ArgValue(arg=i, scale=1):
                outs.append((o.arg, fastloop.SIZE_ARG, i, int(o.always)))
            case _:
                return None
    return outs


def simple_calls(*, alone: bool) -> dict[int, CallSpec]:
    """Syscall number -> how the loop records it, for every simple syscall. `alone`: the
    task is the only one recorded (calls that may block are then simple too)."""
    out = {}
    for nr, name in NAME_OF.items():
        call = queries.entry(name)
        if call is None or not alone and (name not in PLAIN_WHEN_SHARED or call.scratch):
            continue
        if call.plain_unless is not None:  # (outputs and waits by command: none in the rest)
            rule = call.plain_unless
            out[nr] = CallSpec([], except_arg=rule.arg, exceptions=rule.values)
        elif (outs := _outputs(name)) is not None:
            out[nr] = CallSpec(outs, fd_arg=FILE_WRITERS.get(name, -1), path_arg=call.path)
    return out


def spec_table(calls: dict[int, CallSpec]) -> ctypes.Array[ctypes.c_int64]:
    """SPEC_WORDS int64 per syscall number: -1 (not simple), or the outputs' count, the
    argument holding the file descriptor written to (-1: none), the argument whose listed
    values make it not simple (-1: none) and those values, the argument holding a path
    opened (-1: none), and the output rules."""
    spec = (ctypes.c_int64 * (512 * fastloop.SPEC_WORDS))()
    for i in range(512):
        spec[i * fastloop.SPEC_WORDS] = -1
    for nr, call in calls.items():
        exceptions = sorted(call.exceptions)
        if len(exceptions) > fastloop.MAX_EXCEPT:
            raise ValueError(f"syscall {nr}: more exceptions than the loop takes")
        exceptions += [-1] * (fastloop.MAX_EXCEPT - len(exceptions))
        words = [len(call.outputs), call.fd_arg, call.except_arg, *exceptions, call.path_arg]
        words += [v for o in call.outputs for v in o]
        for k, v in enumerate(words):
            spec[nr * fastloop.SPEC_WORDS + k] = v
    return spec


_REGS = struct.Struct("<27Q")
_NR = struct.Struct("<q")
_ORIG_RAX, _ARGS = 15, (14, 13, 12, 7, 9, 8)  # indexes in user_regs_struct: rdi..r9


def entry_of(regs: bytes) -> tuple[int, tuple[int, ...]]:
    """(syscall number, arguments) from the registers at a syscall entry."""
    r = _REGS.unpack(regs)
    return r[_ORIG_RAX], tuple(r[i] for i in _ARGS)


def _segments(raw: bytes, data: bytes, n: int) -> tuple[Segment, ...]:
    """A batch with syscall buffer chunks, as runs of SYSCALL events (the loop's records)
    and BUFFERED ones (each chunk's records, counted here, converted when written)."""
    out: list[Segment] = []
    first = 0
    chunk_at = [i for i, (nw,) in enumerate(_NW.iter_unpack(raw[:n * _REC.size]))
                if nw == fastloop.SYSBUF_CHUNK]
    for i in (*chunk_at, n):
        if i > first:
            part = raw[first * _REC.size:i * _REC.size]
            out.append((Kind.SYSCALL, i - first, functools.partial(_unpack, part, data)))
        if i < n:
            addr, length, off, _, count = struct.unpack_from("<5Q", raw,
                                                             i * _REC.size + _NWRITES + 8)
            chunk = data[off:off + length]
            out.append((Kind.BUFFERED, count, functools.partial(columns_from, chunk, addr)))
        first = i + 1
    return tuple(out)


class Switch(NamedTuple):
    """A thread switch the shared loop made at a futex wait (recorder.handoff)."""
    from_tid: int    # the thread that left the CPU in its wait (an ENTER event)
    to_tid: int      # the thread whose wait returned, run next
    regs: bytes      # from_tid's registers at its wait's entry
    result: int      # to_tid's wait's result
    exit_rip: int


def _mixed(raw: bytes, data: bytes, n: int) -> tuple[Segment | Switch, ...]:
    """A batch with thread switches: runs of SYSCALL and BUFFERED events of the thread that
    ran them, and the switches between them, in order (the recorder knows whose runs)."""
    out: list[Segment | Switch] = []
    first = 0
    marks = [i for i, (nw,) in enumerate(_NW.iter_unpack(raw[:n * _REC.size]))
             if nw in (fastloop.SYSBUF_CHUNK, SWITCH_MARK)]
    for i in (*marks, n):
        if i > first:
            part = raw[first * _REC.size:i * _REC.size]
            out.append((Kind.SYSCALL, i - first, functools.partial(_unpack, part, data)))
        if i < n:
            regs, result, exit_rip, nw, a, b, off, _, count = struct.unpack_from(
                f"<{REGS_SIZE}sqQQ5Q", raw, i * _REC.size)
            if nw == SWITCH_MARK:
                out.append(Switch(a, b, regs, result, exit_rip))
            else:
                chunk = data[off:off + b]
                out.append((Kind.BUFFERED, count, functools.partial(columns_from, chunk, a)))
        first = i + 1
    return tuple(out)


def _zero_pages(size: int) -> ctypes.Array[ctypes.c_char]:
    """A buffer of `size` zero bytes whose pages the kernel provides when first touched
    (ctypes.create_string_buffer fills them all at once: milliseconds of start-up)."""
    return (ctypes.c_char * size).from_buffer(mmap.mmap(-1, size))


def _unpack(raw: bytes, data: bytes) -> Iterator[SyscallRecord]:
    """The records of relive_record_run's buffer (`raw`, whole records) and its output
    bytes, as the trace writer stores them (the syscall buffer's chunks left out)."""
    for regs, result, _exit_rip, nw, *w in _REC.iter_unpack(raw):
        if nw == fastloop.SYSBUF_CHUNK or nw == SWITCH_MARK:
            continue
        writes = [(w[3 * k], data[w[3 * k + 2]:w[3 * k + 2] + w[3 * k + 1]]) for k in range(nw)]
        yield _NR.unpack_from(regs, 8 * _ORIG_RAX)[0], result, regs, writes


Segment = tuple[Kind, int, Callable[[], Iterable[SyscallRecord] | Columns]]
_NWRITES = REGS_SIZE + 16  # struct rec's nwrites
_NW = struct.Struct(f"<{_NWRITES}xQ{fastloop.REC.size - _NWRITES - 8}x")  # it alone


class Batch(NamedTuple):
    recorded: int           # syscalls recorded
    records: Callable[[], Iterator[SyscallRecord]]  # them, unpacked when called
    reason: int
    tid: int = 0            # with reason STOP: whose stop
    status: int = 0         # its raw waitpid status
    entry: bytes | None = None  # registers of a syscall entered and not recorded
    exit_at: tuple[int, int] | None = None  # (rip, result) of the last record
    others: tuple[tuple[int, int], ...] = ()  # other tasks' stops kept: (tid, status)
    armed: bool = False     # the loop started the timeslice timer (recorder.handoff)
    # With records of the syscall buffer among them (tracee.sysbuf): the events in order,
    # as runs of one kind (count, records), and the buffer's cursor after them.
    segments: tuple[Segment, ...] = ()
    sysbuf_cursor: int = 0
    # Of those, calls that closed or made a descriptor (close, openat, fcntl F_DUPFD).
    buffered_fd_calls: int = 0
    # With thread switches made by the loop (recorder.handoff): the records in order, as
    # runs and switches (segments is then empty), and whether the timeslice timer ran at
    # the end.
    switches: int = 0
    mixed: tuple[Segment | Switch, ...] = ()
    timer_on: bool = False


class RecordLoop:
    def __init__(self, lib: ctypes.CDLL) -> None:
        self._lib = lib
        self._specs: dict[bool, ctypes.Array[ctypes.c_int64]] = {}
        # (alone, descriptors) -> the spec with reads of those descriptors left to Python
        self._read_specs: dict[tuple[bool, tuple[int, ...]], ctypes.Array[ctypes.c_int64]] = {}
        self._simple: dict[bool, frozenset[int]] = {}
        self._recs = _zero_pages(_REC.size * MAX_RECORDS)
        self._data = _zero_pages(DATA_SIZE)
        self._entry = ctypes.create_string_buffer(REGS_SIZE)
        self._out = (ctypes.c_int64 * fastloop.OUT_WORDS)()
        self._watched: tuple[tuple[int, int], ...] = ()
        self._watched_array = (ctypes.c_uint64 * 0)()
        self._shared = SharedRun.load(lib)
        self._resumed_in_loop: frozenset[int] = frozenset()
        self.sysbuf = False  # the tasks may have a syscall buffer (recorder.sysbuf_record)
        records.load()  # (buffered records as columns: loaded, or built, before the run)

    def simple(self, *, alone: bool) -> frozenset[int]:
        """The numbers of the syscalls the loop records (worked out at first use: start-up
        time)."""
        if alone not in self._simple:
            calls = simple_calls(alone=alone)
            self._specs[alone] = spec_table(calls)
            self._simple[alone] = frozenset(calls)
            if not alone and self._shared is not None:
                self._resumed_in_loop = self._simple[alone] | self._shared.allowed
        return self._simple[alone]

    def resumes(self, nr: int, *, alone: bool) -> bool:
        """Should a task be resumed through the loop after the exit of syscall `nr`? After
        a simple one (a run of them is likely to go on); with several tasks, after any futex
        call too (a wait that returned is followed by the wake or unlock the loop runs)."""
        simple = self.simple(alone=alone)
        if alone or self._shared is None:
            return nr in simple
        return nr in self._resumed_in_loop

    def _spec(self, alone: bool, reads_left: tuple[int, ...]) -> ctypes.Array[ctypes.c_int64]:
        """The spec table, with the calls that read or duplicate descriptors `reads_left`
        (the catalogue's READS_FD, DUPS_FD) left to Python."""
        base = self._specs[alone]
        if not reads_left:
            return base
        key = (alone, reads_left)
        spec = self._read_specs.get(key)
        if spec is None:
            if len(self._read_specs) > 64:
                self._read_specs.clear()
            spec = (ctypes.c_int64 * len(base)).from_buffer_copy(base)
            words = fastloop.SPEC_WORDS
            for nr in self._simple[alone]:
                name = NAME_OF[nr]
                fd_arg = max(READS_FD.get(name, -1), DUPS_FD.get(name, -1))
                if fd_arg < 0:
                    continue
                if len(reads_left) > fastloop.MAX_EXCEPT:
                    spec[nr * words] = -1
                    continue
                values = [*reads_left, *[-1] * (fastloop.MAX_EXCEPT - len(reads_left))]
                spec[nr * words + 2] = fd_arg
                for k, v in enumerate(values):
                    spec[nr * words + 3 + k] = v
            self._read_specs[key] = spec
        return spec

    def run(self, tid: int, memfd: int, *, alone: bool,
            watched: tuple[tuple[int, int], ...], reads_left: tuple[int, ...] = (),
            arm_us: int = 0, waiters: tuple[int, ...] = (), slice_us: int = 0) -> Batch:
        """Resume `tid` (stopped after a recorded syscall exit) and record what it can,
        leaving writes to the `watched` files ((dev, ino) pairs) and reads (and dups) of
        the descriptors `reads_left` to the Python path. The records are copied out of the
        loop's buffers here and unpacked later (by the trace writer's thread). With several
        tasks, `arm_us`: the timeslice to start when another task becomes ready (0: the
        timer runs already); `waiters`: the threads in a futex wait the loop may switch to
        (recorder.handoff), `slice_us` the timeslice a switch starts."""
        out: ctypes.Array[ctypes.c_int64] = self._out
        self.simple(alone=alone)
        if watched is not self._watched:
            self._watched = watched
            self._watched_array = (ctypes.c_uint64 * (2 * len(watched)))(
                *(v for pair in watched for v in pair))
        shared = None if alone else self._shared
        if shared is not None:
            out = shared.out
            n = shared.call(tid, memfd, self._spec(alone, reads_left), self._watched_array,
                            len(watched), self._recs, MAX_RECORDS, self._data, DATA_SIZE,
                            time.monotonic_ns() + BUDGET_NS, self._entry, arm_us, waiters,
                            slice_us)
        else:
            n = self._lib.relive_record_run(
                tid, memfd, self._spec(alone, reads_left), 512, self._watched_array,
                len(watched), self._recs, MAX_RECORDS, self._data, DATA_SIZE,
                time.monotonic_ns() + BUDGET_NS, self._entry, out)
        reason = out[1]
        if reason == fastloop.ERROR:
            raise PtraceError(out[5], f"ptrace of task {tid} failed in the fast path")
        raw = ctypes.string_at(self._recs, n * _REC.size)
        data = ctypes.string_at(self._data, out[6])
        exit_at = None
        if n:
            _regs, result, exit_rip, nw, *_ = _REC.unpack_from(raw, len(raw) - _REC.size)
            exit_at = (exit_rip, result) if nw != fastloop.SYSBUF_CHUNK else None
        chunks, cursor = fastloop.sysbuf_state() if self.sysbuf else (0, 0)
        switches = shared.switches() if shared is not None else 0
        mixed = _mixed(raw, data, n) if switches else ()
        segments = _segments(raw, data, n) if chunks and not switches else ()
        n -= chunks + switches
        return Batch(recorded=n, records=lambda: _unpack(raw, data), reason=reason, tid=out[2],
                     status=out[3], entry=self._entry.raw if out[4] else None,
                     exit_at=exit_at,
                     others=shared.others() if shared is not None else (),
                     armed=shared is not None and shared.armed(),
                     segments=segments, sysbuf_cursor=cursor,
                     buffered_fd_calls=fastloop.sysbuf_fd_calls() if chunks else 0,
                     switches=switches, mixed=mixed,
                     timer_on=shared is not None and shared.timer_on())
