"""Cheap thread switches: the compiled loop a thread runs in while other recorded threads wait
(tracee/fastloop.c, relive_record_shared_run; issue 18.2).

A futex hand-off between two recorded threads (a condition variable's signal and wait, a
contended mutex) used to cost a return to Python at every stop of every call around it: the
wakes, the mutex unlock after the wait, and each syscall stop of the woken thread, which the
compiled loop handed back at once. With several tasks this loop
  - also runs, in C, the calls the catalogue says never wait and write nothing only for some
    values of one argument (`allow_rows`: futex's wake and requeue operations), which the
    ordinary spec table cannot say (it lists values that make a call NOT simple);
  - keeps the syscall stops of other tasks (the woken thread's wait returning) and waits on
    for its own task; the recorder hands them to its main loop afterwards, in the order the
    kernel reported them, so every scheduling decision is the one the Python path makes. The
    first kept stop starts the timeslice as the run queue does when a thread becomes ready.
  - switches threads itself at a plain futex wait (FUTEX_WAIT, FUTEX_WAIT_BITSET) when the
    first stop kept (or, none kept, the next stop once the task waits) is the wait exit of
    a thread in such a wait (`waiters`, picked by the
    recorder: recorder.session `_futex_waiters`), making the decisions Python's scheduler
    would (ENTER for the task that waits, the woken thread's exit recorded with its result
    alone, the woken thread run next, the timeslice started or stopped as `RunQueue.pick`
    does) and noting each switch as a record of its own (SWITCH_MARK), so a condvar
    ping-pong runs in C from one batch to the next.
"""
from __future__ import annotations

import ctypes
import logging

from recorder.syscall_effects import EffectRecorder
from tracee import fastloop
from tracee.syscalls import queries
from tracee.syscalls.rules import ArgIs, Out, Record, WhenArg
from tracee.sysnums import NAME_OF

log = logging.getLogger(__name__)

ALLOW_WORDS = 3 + fastloop.MAX_EXCEPT
SHARED_OUT_WORDS = fastloop.OUT_WORDS + 4
MAX_OTHERS = 64  # stops of other tasks kept per run; one more is handed back
SWITCH_MARK = 0x5C  # a struct rec noting a thread switch made by the loop
MAX_WAITERS = 64
DECLARED = {"ALLOW_WORDS": ALLOW_WORDS, "SHARED_OUT_WORDS": SHARED_OUT_WORDS,
            "MAX_EXCEPT": fastloop.MAX_EXCEPT, "sizeof(struct rec)": fastloop.REC.size,
            "SWITCH_MARK": SWITCH_MARK, "MAX_WAITERS": MAX_WAITERS}


def allow_values(name: str) -> tuple[int, int, frozenset[int]] | None:
    """(argument, mask, values) for which call `name` never waits and writes nothing (and
    has no other effect the recorder tracks), or None. The catalogue says it as a may_block
    rule `ArgIs(negate=True)` (waits unless the argument is one of these) and outputs that
    all depend on the same argument (`WhenArg`)."""
    call = queries.entry(name)
    if (call is None or call.record is not Record.TABLE or call.cpu_view or call.scratch
            or call.effects or call.path >= 0 or call.file_fd >= 0 or call.dups_fd >= 0
            or call.plain_unless is not None or call.status_when is not None
            or hasattr(EffectRecorder, f"_on_{name}")):
        return None
    rule = call.may_block
    if not isinstance(rule, ArgIs) or not rule.negate:
        return None
    values = set(rule.values)
    for o in call.outputs:
        if not (isinstance(o, Out) and isinstance(o.size, WhenArg) and o.size.arg == rule.arg
                and o.size.mask == rule.mask):
            return None
        values -= o.size.values
    if not values or len(values) > fastloop.MAX_EXCEPT:
        return None
    return rule.arg, rule.mask, frozenset(values)


def allow_rows() -> dict[int, tuple[int, int, frozenset[int]]]:
    """Syscall number -> (argument, mask, values) of every call `allow_values` accepts."""
    out = {}
    for nr, name in NAME_OF.items():
        found = allow_values(name)
        if found is not None:
            out[nr] = found
    return out


def allow_table(rows: dict[int, tuple[int, int, frozenset[int]]]) -> ctypes.Array[ctypes.c_int64]:
    table = (ctypes.c_int64 * (ALLOW_WORDS * max(len(rows), 1)))()
    for i, (nr, (arg, mask, values)) in enumerate(sorted(rows.items())):
        vals = sorted(values) + [-1] * (fastloop.MAX_EXCEPT - len(values))
        for k, v in enumerate([nr, arg, mask, *vals]):
            table[i * ALLOW_WORDS + k] = v
    return table


def _declare(lib: ctypes.CDLL) -> bool:
    """Declare the function's types; False (and one line saying why) if the library does
    not have it or does not agree with the declarations here."""
    try:
        fn = lib.relive_record_shared_run
        wrong = fastloop.disagreements(lib, DECLARED, "relive_shared_interface")
    except AttributeError:
        log.warning("compiled fast path has no relive_record_shared_run: thread switches "
                    "take the slower Python path")
        return False
    fn.restype = ctypes.c_long
    fn.argtypes = [
        ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_long, ctypes.c_void_p,
        ctypes.c_long, ctypes.c_void_p, ctypes.c_long, ctypes.c_void_p, ctypes.c_long,
        ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p,
        ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_long, ctypes.c_long,
        ctypes.c_void_p]
    if wrong:
        log.warning("relive_record_shared_run does not match relive's Python code (%s): "
                    "thread switches take the slower Python path", wrong)
        return False
    return True


class SharedRun:
    """The buffers and the allow table of relive_record_shared_run (the record buffers are
    the caller's: recorder.fastpath.RecordLoop)."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self._fn = lib.relive_record_shared_run
        rows = allow_rows()
        self.allowed = frozenset(rows)
        self._allow = allow_table(rows)
        self._nallow = len(rows)
        self._others = (ctypes.c_int64 * (2 * MAX_OTHERS))()
        self._waiters = (ctypes.c_int64 * MAX_WAITERS)()
        self.out = (ctypes.c_int64 * SHARED_OUT_WORDS)()

    @classmethod
    def load(cls, lib: ctypes.CDLL) -> SharedRun | None:
        return cls(lib) if _declare(lib) else None

    def call(self, tid: int, memfd: int, spec: ctypes.Array[ctypes.c_int64],
             watched: ctypes.Array[ctypes.c_uint64], nwatched: int, recs: object,
             max_recs: int, data: object, data_cap: int, deadline_ns: int, entry: object,
             arm_us: int, waiters: tuple[int, ...] = (), slice_us: int = 0) -> int:
        n = min(len(waiters), MAX_WAITERS)
        for i in range(n):
            self._waiters[i] = waiters[i]
        return int(self._fn(tid, memfd, spec, 512, self._allow, self._nallow, watched,
                            nwatched, recs, max_recs, data, data_cap, deadline_ns, entry,
                            self._others, MAX_OTHERS, arm_us, self._waiters, n, slice_us,
                            self.out))

    def others(self) -> tuple[tuple[int, int], ...]:
        """The other tasks' stops the last call kept, in the order they came."""
        n = min(int(self.out[fastloop.OUT_WORDS]), MAX_OTHERS)
        return tuple((int(self._others[2 * i]), int(self._others[2 * i + 1]))
                     for i in range(n))

    def armed(self) -> bool:
        """Did the last call start the timeslice timer?"""
        return bool(self.out[fastloop.OUT_WORDS + 1])

    def timer_on(self) -> bool:
        """Was the timeslice timer running when the last call returned?"""
        return bool(self.out[fastloop.OUT_WORDS + 2])

    def switches(self) -> int:
        """Thread switches the last call made (SWITCH_MARK records)."""
        return int(self.out[fastloop.OUT_WORDS + 3])
