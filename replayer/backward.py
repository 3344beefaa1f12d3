"""Backward execution of the debugged process: the one entry point for every backward
command (`Backward.resume` for gdb's backward resumes, `last_write` for `monitor
last-write`), with one task or several. One task is the one-thread case: what only it allows
is chosen inside, as an accelerator, never a second path.

- reverse-continue: the last hit before now in any thread of the debugged process
  (replayer.hit_search), not before the exec of the program gdb knows; then go there. No hit:
  the start of history, or that exec (gdb then loads the previous program and goes on).
- reverse-stepi of thread T: inside the stretch T runs, one instruction back
  (replayer.stretch_back: closing in from mids, kernel-counted arrivals, cached forks); at
  its start, or from a stretch another thread runs, the state just before the instruction
  that caused T's previous event (replayer.crossing). Back into the previous program of an
  exec, gdb is told so.

A state is a Position: an event boundary plus, inside the stretch after it, the thread running
it and what is known of how far it is from the stretch's start. Where a command leaves the
replay (a Landing) is told to the host (`land`), which a forward resume or the next backward
command starts from. A failed command leaves the replay at the boundary it was at; Ctrl-C
stops where the search was.
"""
from __future__ import annotations

import signal
from typing import Protocol

from replayer.control import (
    Action,
    Direction,
    ResumeCommand,
    Stop,
    StopKind,
    WatchKind,
    Watchpoint,
)
from replayer.errors import CheckpointFailed, Refused
from replayer.hit_search import HitSearch, SearchHost
from replayer.positions import Land, Landing, Position, SearchInterrupted
from tracefile.records import Kind


class BackwardHost(SearchHost, Protocol):
    """What the engine needs of the debugged process (replayer.debuggee.Debuggee)."""
    pid: int
    parked: bool
    last_stop: Stop
    previous: tuple[ResumeCommand, Stop] | None

    def resolve_tid(self, tid: int | None = None) -> int: ...
    def mid_stretch(self) -> tuple[int | None, int | None, tuple[int, int] | None]: ...
    def land(self, landing: Landing) -> None: ...
    def peek(self, wp: Watchpoint) -> bytes: ...
    def last_exec(self, position: int) -> int | None: ...
    def exec_file(self) -> str: ...


class Backward:
    """The backward commands of `host` (see the module)."""

    def __init__(self, host: BackwardHost) -> None:
        self.h = host
        self.s = host.session
        self.search = HitSearch(host)
        self.crossing = self.search.crossing

    def forget(self) -> None:
        """The replay moved by other means (goto, restart): what was known is gone."""
        self.search.waypoints.clear()

    def close(self) -> None:
        self.forget()

    # -- the request ------------------------------------------------------------------------
    def resume(self, command: ResumeCommand) -> Stop:
        """A backward continue or step of `command.tid`: the stop gdb gets."""
        position, before = self.s.position, self._state()
        try:
            return self._resume(command)
        except SearchInterrupted as e:
            self.search.landed()
            self.h.where(e.boundary, 0 if e.boundary else None)
            return self._stop(StopKind.INTERRUPTED, sig=signal.SIGINT)
        except Exception:
            self._recover(position, before)
            raise

    def _state(self) -> tuple[object, int, bytes]:
        """What tells whether the live replay moved: its tasks, position and registers."""
        task = self.s.task
        return self.s.taskset, self.s.position, task.regs_bytes() if task is not None else b""

    def _recover(self, position: int, before: tuple[object, int, bytes]) -> None:
        """Leave a consistent replay behind: the boundary before where the user was. When
        the kernel will not fork (CheckpointFailed: out of processes) the replay stays
        where it was if it has not moved; else it goes forward from where the search left
        it, which needs no fork (how far into the stretch it then is may be unknown)."""
        boundary = True
        try:
            self.search.seek(max(self.h.birth, position))
        except CheckpointFailed:
            if self._state() == before:
                return
            boundary = self.s.position < position
            while self.s.position < position and self.s.step() is not None:
                pass
        self.forget()
        self.h.parked = False
        self.h.where(boundary, 0 if boundary else None)

    def _resume(self, command: ResumeCommand) -> Stop:
        # A step inside the current stretch fingerprints `now` only if it must look for it
        # (the digest reads all writable memory: thread stacks are megabytes).
        now = self.now(fingerprinted=command.action is Action.CONTINUE)
        self.h.parked = False
        self.search.start_command()
        exec_seq = self._exec_to_cross(command, now.position)
        if command.action is Action.CONTINUE:
            return self._continue(command, now, exec_seq)
        return self._step(command, now, exec_seq)

    def now(self, fingerprinted: bool = True) -> Position:
        """The current state; `fingerprinted`: with what tells it apart from other states
        with the same registers (needed to find it again in a pass)."""
        h, s = self.h, self.s
        tid, steps, anchor = h.mid_stretch()
        if tid is None or not h.debugged(tid):
            return Position(s.position)  # (a stretch of another process holds no hit of ours)
        task = s.taskset.tasks[tid]
        point = Position(s.position, tid, task.regs_bytes(), steps, anchor=anchor,
                         base=h.timeline.base)
        if fingerprinted:
            point.fingerprint(task)
        return point

    def _continue(self, command: ResumeCommand, now: Position, exec_seq: int | None) -> Stop:
        # gdb's breakpoints are addresses in the program running now: search back only to
        # where it was exec'd (before that, another program ran at those addresses).
        floor = exec_seq + 1 if exec_seq is not None else 0
        private, owner = self._private(command)
        hit = self.search.last_hit_before(now, command.breakpoints, command.watchpoints, floor,
                                          private, owner, conditions=command.conditions)
        if hit is None and exec_seq is not None:
            return self._back_to_exec(exec_seq)
        if hit is None:
            self.search.seek(self.h.birth)
            self._land(Landing(Land.BEGIN))
            return self._stop(StopKind.HISTORY_BEGIN, self.h.pid)
        self._land(self.search.goto_hit(hit, command.watchpoints))
        if hit.kind == "bp":
            return self._stop(StopKind.BREAKPOINT, hit.tid)
        return self._stop(StopKind.WATCHPOINT, hit.tid, watch=hit.wp)

    def _step(self, command: ResumeCommand, now: Position, exec_seq: int | None) -> Stop:
        tid = command.tid
        watched = {wp: self.h.peek(wp) for wp in command.watchpoints}
        landing = self.step_back(tid, now)
        self._land(landing)
        if landing.kind is Land.BEGIN:
            return self._stop(StopKind.HISTORY_BEGIN, tid)
        if exec_seq is not None and self.s.position < exec_seq:
            return self._exec_stop(exec_seq - 1)  # stepped back into the previous program
        for wp, later in watched.items():
            if wp.kind is not WatchKind.READ and self.h.peek(wp) != later:
                return self._stop(StopKind.WATCHPOINT, tid, watch=wp)  # back over a write
        return self._stop(StopKind.STEPPED, tid)

    def step_back(self, tid: int, now: Position) -> Landing:
        """One instruction of thread `tid` back from `now`."""
        return self.search.step_back(tid, now)

    def _private(self, command: ResumeCommand) -> tuple[frozenset[int], int | None]:
        """Breakpoints that only the resumed thread may hit, and that thread.

        gdb's reverse-next/reverse-step is a `bs` that lands in a callee, then a `bc` to a
        step-resume breakpoint at the callee's entry that is meant for the stepped thread
        only (gdb checks the frame). Going back to another thread's arrival there would move
        the stepped thread back in time too, and gdb, which assumes a thread it is not
        resuming cannot move, loses its way. So a breakpoint that is new in a `bc` right
        after a `bs` of the same thread counts for that thread alone."""
        previous = self.h.previous
        if previous is None:
            return frozenset(), None
        before, stop = previous
        if (before.direction is Direction.BACKWARD and before.action is Action.STEP
                and stop.kind is StopKind.STEPPED and stop.tid == command.tid):
            return command.breakpoints - before.breakpoints, command.tid
        return frozenset(), None

    def _land(self, landing: Landing) -> None:
        """Take note of where a backward command left the replay; keep the waypoints known to
        lie before it."""
        self.h.land(landing)
        self.search.landed()

    def _stop(self, kind: StopKind, tid: int | None = None, watch: Watchpoint | None = None,
              sig: int = signal.SIGTRAP) -> Stop:
        return Stop(kind=kind, tid=self.h.resolve_tid(tid), signal=sig, watch=watch)

    # -- execs ------------------------------------------------------------------------------
    def _exec_to_cross(self, command: ResumeCommand, position: int) -> int | None:
        """The EXEC event a backward resume from `position` would cross first, if gdb follows
        execs: going back over it, gdb must load the previous program's symbols."""
        if not command.exec_events:
            return None
        seq = self.h.last_exec(position)
        if seq is None:
            return None
        reader = self.s.reader
        execve = reader.event(seq - 1)
        if execve.kind != Kind.SYSCALL or execve.tid != reader.event(seq).tid:
            return None
        return seq

    def _back_to_exec(self, exec_seq: int) -> Stop:
        """Nothing to stop at in this program: stop at its start, shown as the execve
        instruction of the previous program, and tell gdb that program runs there (gdb
        reloads its symbols and breakpoints, then goes on backwards by itself)."""
        self._land(self.crossing.before_trigger(self.s.reader.event(exec_seq - 1)))
        return self._exec_stop(exec_seq - 1)

    def _exec_stop(self, execve_seq: int) -> Stop:
        tid = self.s.reader.event(execve_seq).tid
        return Stop(kind=StopKind.EXECD, tid=self.h.resolve_tid(tid),
                    exec_path=self.h.exec_file())

    # -- monitor last-write -----------------------------------------------------------------
    def last_write(self, wp: Watchpoint) -> str:
        """Go back to just before the last write to `wp`'s range before now (by an
        instruction or a syscall, in any thread of the debugged process). A failure leaves
        the replay where it was, or at the boundary before."""
        position, before = self.s.position, self._state()
        try:
            return self._last_write(wp)
        except Refused as e:
            if isinstance(e, CheckpointFailed):  # (perhaps after the search moved)
                self._recover(position, before)
            raise
        except Exception:
            self._recover(position, before)
            raise

    def _last_write(self, wp: Watchpoint) -> str:
        now = self.now()
        self.h.parked = False
        self.search.start_command()
        hit = self.search.last_hit_before(now, frozenset(), frozenset({wp}))
        if hit is None:
            self.search.return_to(now)
            self.search.landed()
            raise Refused(f"nothing wrote {wp.addr:#x} (+{wp.length}) before this point")
        self._land(self.search.goto_hit(hit, frozenset({wp})))
        self.h.last_stop = self._stop(StopKind.WATCHPOINT, hit.tid, watch=wp)
        rip = self.s.taskset.tasks[hit.tid].regs.rip
        where = "a syscall" if hit.kind == "kernel" else f"the instruction at {rip:#x}"
        return f"Went back to {where} of thread {hit.tid}, which wrote {wp.addr:#x}"
