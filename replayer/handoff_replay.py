"""Futex hand-offs replayed in compiled code (tracee/fastloop.c relive_replay_handoff; issue
18.2).

A condition variable's ping-pong between two threads is recorded as, per hand-off, an ENTER
(the waiting thread left the CPU inside futex), then the SYSCALL event that completes the
other thread's wait, the woken thread's buffered calls, and its own ENTER. Replayed event by
event, each hand-off came back to Python two or three times (the completion, a batch of one
thread's calls, the ENTER), for one ptrace stop. Here a run of such events of the threads of
one process goes to the compiled loop at once: it does what replayer.session does with each
(an ENTER runs its thread to the futex entry and checks it there, a completion writes the
result into the parked thread, the other calls as relive_replay_run replays them, buffered
ones through the feed) and comes back at the end of the run, at the deadline, or at the first
stop that is not the recorded one, which the ordinary path then replays from that very stop:
a divergence is reported by the same code, naming the same event, thread and registers.

Only where nothing looks between events (no observer, no CPU-timer ticks: `relive replay -a`
and the compiled forward runs like it); gdb, reverse execution's runs, signals, exits and
every other kind of event keep their path. RELIVE_REPLAY_HANDOFF=0 turns it off.
"""
from __future__ import annotations

import ctypes
import logging
import os
import struct
import time
from typing import NamedTuple

from tracee import fastloop, sysbuf
from tracee import ptrace_api as api
from tracee.ptrace_api import REGS_SIZE
from tracee.syscalls import queries
from tracee.syscalls.queries import NOT_EMULATED
from tracee.sysnums import NAME_OF, nr
from tracee.task import Task
from tracefile.reader import EventCursor, Row
from tracefile.records import Event, Kind

from replayer.fastpath import NAMING, Outcome, reached_by_running
from replayer.tasks import TaskSet

log = logging.getLogger(__name__)

HOP_RUN, HOP_ENTER, HOP_COMPLETE = 0, 1, 2
MAX_TASKS = 64
HEV = struct.Struct("<iI")
MAX_EVENTS = 2048
MAX_BYTES = 4 << 20
BUDGET_NS = 20_000_000  # back to Python at least this often (checkpoints, Ctrl-C)
DECLARED = {"HOP_RUN": HOP_RUN, "HOP_ENTER": HOP_ENTER, "HOP_COMPLETE": HOP_COMPLETE,
            "HANDOFF_MAX_TASKS": MAX_TASKS, "sizeof(struct hev)": HEV.size,
            "sizeof(struct ev)": REGS_SIZE + fastloop.EV.size,
            "sizeof(struct wr)": fastloop.WR.size, "EV_BUFFERED": fastloop.EV_BUFFERED,
            "OUT_WORDS": fastloop.OUT_WORDS}

FUTEX = nr("futex")
_SYSCALL, _BUFFERED, _ENTER = int(Kind.SYSCALL), int(Kind.BUFFERED), int(Kind.ENTER)
_EMULATED = frozenset(NAME_OF) - queries.numbers(NOT_EMULATED)
_NAMING = queries.numbers(NAMING)
_ARGS = struct.Struct("<7Q")  # a BUFFERED event's "registers" (recorder.sysbuf_record)
# Its register file for the loop: rdi rsi rdx r10 r8 r9 rip where user_regs_struct has them
# (slots 7-9 r10 r9 r8, 12-14 rdx rsi rdi, 16 rip), then struct ev.
_BUFFERED_EV = struct.Struct(f"<56xQQQ16xQQQ8xQ{REGS_SIZE - 136}x"
                             + fastloop.EV.format.lstrip("<"))


def enabled() -> bool:
    return os.environ.get("RELIVE_REPLAY_HANDOFF", "1") != "0"


def load(lib: ctypes.CDLL | None) -> HandoffReplay | None:
    """The compiled hand-off path, or None (off, or a library without it or that does not
    agree with the declarations here: said once, the ordinary path replays)."""
    if lib is None or not enabled():
        return None
    try:
        fn = lib.relive_replay_handoff
        wrong = fastloop.disagreements(lib, DECLARED, "relive_handoff_interface")
    except AttributeError:
        log.warning("compiled fast path has no relive_replay_handoff: thread switches are "
                    "replayed by the slower Python path")
        return None
    fn.restype = ctypes.c_long
    fn.argtypes = [ctypes.c_char_p, ctypes.c_long, ctypes.c_int, ctypes.c_char_p,
                   ctypes.c_char_p, ctypes.c_long, ctypes.c_char_p, ctypes.c_char_p,
                   ctypes.c_int64, ctypes.c_void_p]
    if wrong:
        log.warning("relive_replay_handoff does not match relive's Python code (%s): thread "
                    "switches are replayed by the slower Python path", wrong)
        return None
    return HandoffReplay(lib)


def starts_handoff(first: Event, taskset: TaskSet) -> bool:
    """Is `first` a hand-off: a futex ENTER, or the event completing a thread's ENTER?"""
    if first.nr != FUTEX or first.info:
        return False
    if first.kind == Kind.ENTER:
        return True
    task = taskset.tasks.get(first.tid)
    return first.kind == Kind.SYSCALL and task is not None and task.tid in taskset.entered


class _Run:
    """A run of events packed for relive_replay_handoff, as `collect` read it."""

    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.evs: list[bytes] = []
        self.hevs: list[bytes] = []
        self.wrs: list[bytes] = []
        self.data: list[bytes] = []
        self.ops: list[int] = []
        self.after: Row | None = None


def _op(row: Row, index: dict[int, int], entered: set[int], naming: bool) -> int:
    """What the loop does with `row` (HOP_*), entered (recorded tids parked at a futex entry)
    updated; -1 if the run ends before it."""
    _, rtid, kind, num, _, regs, info, writes = row
    if rtid not in index or info or any(w.conservative for w in writes):
        return -1
    if kind == _ENTER:
        if num != FUTEX or len(regs) != REGS_SIZE or rtid in entered:
            return -1
        entered.add(rtid)
        return HOP_ENTER
    if rtid in entered:
        if (kind != _SYSCALL or num != FUTEX or num not in _EMULATED
                or len(regs) != REGS_SIZE):
            return -1
        entered.discard(rtid)
        return HOP_COMPLETE
    if (num not in _EMULATED or (naming and num in _NAMING)
            or len(regs) != (_ARGS.size if kind == _BUFFERED else REGS_SIZE)
            or kind not in (_SYSCALL, _BUFFERED)):
        return -1
    return HOP_RUN


def collect(first: Row, cursor: EventCursor, index: dict[int, int], entered: set[int],
            naming: bool) -> _Run | None:
    """The run from `first` on (read from `cursor`; the first row not taken goes back), or
    None if `first` cannot start one or a value does not fit its C type (a corrupt trace:
    the ordinary path reports it)."""
    run = _Run()
    entered = set(entered)
    row: Row | None = first
    off = nwrites = 0
    try:
        while row is not None:
            op = _op(row, index, entered, naming)
            if op < 0:
                if row is not first:
                    cursor.push_back(row)
                    run.after = row
                break
            _, rtid, kind, num, result, regs, _, writes = row
            run.rows.append(row)
            run.ops.append(op)
            run.hevs.append(HEV.pack(index[rtid], op))
            flags = len(writes)
            if kind == _BUFFERED:
                a0, a1, a2, a3, a4, a5, rip = _ARGS.unpack(regs)
                run.evs.append(_BUFFERED_EV.pack(a3, a5, a4, a2, a1, a0, rip, num, result,
                                                 flags | fastloop.EV_BUFFERED, nwrites))
            else:
                run.evs.append(regs + fastloop.EV.pack(num, result, flags, nwrites))
            for w in writes:
                run.wrs.append(fastloop.WR.pack(w.addr, len(w.data), off))
                run.data.append(w.data)
                off += len(w.data)
                nwrites += 1
            # Past the limits the run ends after an ENTER, where the next one starts (not
            # amid a thread's buffered calls, each end of which would cost a stop).
            if ((len(run.rows) >= MAX_EVENTS or off >= MAX_BYTES)
                    and (op == HOP_ENTER or len(run.rows) >= 2 * MAX_EVENTS
                         or off >= 2 * MAX_BYTES)):
                break
            row = cursor.next_row()
    except struct.error:
        for r in reversed(run.rows[1:]):
            cursor.push_back(r)
        return None
    return run if run.rows else None


class Plan(NamedTuple):
    """A run to replay and the threads it switches between (recorded tid, task), in the
    order the loop indexes them."""
    run: _Run
    threads: list[tuple[int, Task]]


def plan(first: Event, taskset: TaskSet, cursor: EventCursor, *, naming: bool) -> Plan | None:
    """The run of hand-offs from `first` (the next event; the rows after it are read from
    `cursor`), or None if there is none to replay here."""
    task = taskset.tasks.get(first.tid)
    if task is None or taskset.in_kernel or not starts_handoff(first, taskset):
        return None
    threads = [(rtid, t) for rtid, t in taskset.tasks.items() if t.pid == task.pid]
    if len(threads) > MAX_TASKS:
        return None
    index = {rtid: k for k, (rtid, _) in enumerate(threads)}
    by_real = {t.tid: rtid for rtid, t in threads}
    entered = {by_real[t] for t in taskset.entered if t in by_real}
    first_row: Row = (first.seq, first.tid, int(first.kind), first.nr, first.result,
                      first.regs, b"", first.writes)
    run = collect(first_row, cursor, index, entered, naming)
    return Plan(run, threads) if run is not None else None


class HandoffReplay:
    def __init__(self, lib: ctypes.CDLL) -> None:
        self._lib = lib
        self._out = (ctypes.c_int64 * fastloop.OUT_WORDS)()
        self.events = 0  # replayed by the loop (said at --log debug)

    def replay(self, p: Plan, taskset: TaskSet, cursor: EventCursor, memfd: int,
               feed: int) -> tuple[Outcome, Task | None]:
        """Replay `p` (every thread stopped at its boundary; `feed`: the process's feed, 0
        for none); what it did, and the thread of the stop it returned at. The rows not
        replayed, but the first, go back to `cursor`; the threads parked by the events
        replayed are in `taskset.entered`."""
        run = p.run
        for _, t in p.threads:
            t.hand_over(api.Req.SYSEMU)
        tids = struct.pack(f"<{len(p.threads)}i", *(t.tid for _, t in p.threads))
        self._lib.relive_replay_feed(feed, int(reached_by_running(run.after, run.rows[-1][1])),
                                     sysbuf.HOOK_CODE, sysbuf.HOOK_CODE + sysbuf.CODE_SIZE)
        out = self._out
        self._lib.relive_replay_handoff(
            tids, len(p.threads), memfd, b"".join(run.evs), b"".join(run.hevs),
            len(run.rows), b"".join(run.wrs), b"".join(run.data),
            time.monotonic_ns() + BUDGET_NS, out)
        done = int(out[0])
        self.events += done
        for row in reversed(run.rows[max(done, 1):]):  # not replayed: next again
            cursor.push_back(row)
        for row, op in zip(run.rows[:done], run.ops[:done]):
            real = taskset.tasks[row[1]].tid
            if op == HOP_ENTER:
                taskset.entered.add(real)
            elif op == HOP_COMPLETE:
                taskset.entered.discard(real)
        stopped = next((t for _, t in p.threads if t.tid == out[2]), None)
        return Outcome(done=done, reason=int(out[1]), status=int(out[3]), errno=int(out[5]),
                       fed=int(out[4]), stops=int(out[6])), stopped
