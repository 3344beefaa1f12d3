"""A replay session: re-execute a trace event by event, checking each against the recording.

The replayed process runs under PTRACE_SYSEMU, so every syscall stops once at entry and the
kernel never runs it unless replay decides to. Each recorded event is matched with the stop the
replay reaches; any difference (another stop, another syscall, other registers, a write that
does not land) raises ReplayDivergence naming the event, the thread and what differed.

Threads and processes: every recorded task has a replayed task (clone, fork and vfork run for
real; `tasks` maps recorded tids to them). Only the task of the next event runs; the others
stay stopped where their last event left them, so stretches of user code run in the recorded
order. ENTER parks a task at a syscall entry (it left the CPU there when recorded); PREEMPT
stops it at a recorded user-code point.
"""
from __future__ import annotations

import logging
import os
import signal
import struct
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

from tracee import cpuid, fastloop, rdrand, sysbuf
from tracee import ptrace_api as api
from tracee.address_space import PROT_WRITE, mapping_from_info
from tracee.cputimer import CpuTimer, ThreadTimers
from tracee.remote import InjectionError, exec_in_tracee
from tracee.spawn import SpawnError, spawn
from tracee.stops import EventStop, Exited, Killed, SignalStop, Stop, SyscallStop
from tracee.syscalls import queries
from tracee.sysnums import name_of
from tracee.task import Memory, Task, kill_tasks, reap
from tracefile.errors import TraceError
from tracefile.reader import EventCursor, Row, TraceReader
from tracefile.records import Event, Kind

from replayer import cpu_match, handoff_replay, registers, snapshot, sysbuf_feed
from replayer.cpu_pin import CpuPin
from replayer.errors import CheckpointFailed, Paused, ReplayDivergence, ReplayError
from replayer.fastpath import (Outcome, ReplayLoop, collect, emulated_only,
                               reached_by_running)
from replayer.rebuild import map_anonymous, rebuild, write_memory
from replayer.signals import SignalReplayer
from replayer.snapshot import Snapshot
from replayer.syscalls import ProcessState, SyscallReplayer, args_of
from replayer.tasks import TaskSet, reap_exec_victims, wait_through_exec

log = logging.getLogger(__name__)

OutputSink = Callable[[int, bytes], None]

# A BUFFERED event's "registers" (recorder.sysbuf_record): the arguments, then rip.
BUFFERED_REGS = struct.Struct("<7Q")
BUFFERED_NAMES = ("orig_rax", "rdi", "rsi", "rdx", "r10", "r8", "r9", "rip")
STACK_T_SIZE, SS_DISABLE = 24, 2
# A batch of syscalls replayed in compiled code returns at least this often, so checkpoints
# are taken on time.
BATCH_BUDGET_NS = 20_000_000


class ReplaySession:
    """Owns the replayed process; `step()` replays one event, `run()` replays them all."""

    def __init__(self, trace: Path, output: OutputSink | None = None) -> None:
        self.reader = TraceReader(trace)
        self.output = output
        self.pin = CpuPin(None, movable=False)  # (pinned when the first exec is replayed)
        self.syscalls = SyscallReplayer(self.reader)
        self.signals = SignalReplayer(self)
        self._events: Iterator[Event] = self.reader.events()
        self._ahead: deque[Event] = deque()
        # Called with every stop the tracee reaches while running program code; it may raise
        # Paused (a breakpoint, a watchpoint, Ctrl-C) to abandon the current event, which
        # is then replayed again on the next step. The gdb target installs it.
        self.observer: Callable[[Stop], Stop | None] | None = None
        # How the tracee runs between events: SYSEMU, or SYSEMU_SINGLESTEP to stop after
        # every instruction.
        self.run_request = api.Req.SYSEMU
        # The replayed tasks; `task` and `proc` are those of the event being replayed.
        self.taskset = TaskSet()
        self.task: Task | None = None
        self.proc: ProcessState | None = None
        self.finished = False
        self.exit_status: int | None = None
        self.position = 0  # seq of the next event to replay
        self.last_exec: Event | None = None  # the image the process runs now
        # The SIGNAL event whose delivery point is reached but not yet delivered.
        self.signal_ready: int | None = None
        # Whether to pause before delivering a signal (gdb shows "received signal").
        self.wants_signal_stop: Callable[[int], bool] = lambda sig: False
        self.running = False  # True while waiting for the running tracee
        # Real tids of tasks let go to exit (exit/exit_group in place, a fatal signal).
        self.dying: set[int] = set()
        # Threads whose recorded exit was caused by another thread's execve, not yet run:
        # real tid -> recorded exit status. That execve kills them.
        self.exec_victims: dict[int, int] = {}
        self.fork_refused = False  # a checkpoint's fork failed (said once)
        # Called with every event once it is replayed, the event's task still stopped right
        # after it (the gdb target learns thread names and program images this way).
        self.listeners: list[Callable[[Event], None]] = []
        # Replay runs of emulated syscalls in compiled code (replayer.fastpath). Off unless
        # the driver turns it on: only where per-event hooks (observers, watchpoints,
        # positions of a reverse search) cannot miss anything.
        self.fast = False
        # Fed runs (replayer.sysbuf_feed) under an observer too: the driver says no trap can
        # be met inside the hook (replayer.forward: no watchpoint, no breakpoint in relive's
        # area); the hook is then pointed at the feed only while the compiled loop runs.
        self.feed_observed = False
        # A CPU timer on the program (tracee.cputimer), counting only while the program runs
        # its own code (run_once): reverse execution's ticks for mid-stretch checkpoints.
        self.ticks: CpuTimer | ThreadTimers | None = None
        lib = fastloop.load()
        self._loop = ReplayLoop(lib) if lib is not None else None
        # Futex hand-offs between threads in compiled code too (replayer.handoff_replay).
        self._handoffs = handoff_replay.load(lib)
        # A stop that compiled code waited for and left for the ordinary path (the next
        # event is replayed from it): consumed by run_once within the same step.
        self._pending: tuple[Task, Stop] | None = None
        self._replaying: Event | None = None  # the event step() replays now
        # ptrace stops waited for, and BUFFERED events replayed without one (the hook's
        # feed, replayer.sysbuf_feed): said at --log debug when the session closes.
        self.stops = 0
        self.fed = 0
        # Snapshots at one boundary share copies of the processes that do not run there.
        self._copies = snapshot.SharedCopies()
        if self.next_event is None or self.next_event.kind != Kind.EXEC:
            raise ReplayError(f"trace {trace} has no initial exec event; nothing to replay")

    # -- driving ----------------------------------------------------------------------------
    def run(self) -> None:
        while not self.finished:
            self.step()

    @property
    def next_event(self) -> Event | None:
        return self.peek(0)

    def peek(self, n: int) -> Event | None:
        """The n-th event after the current position (0 = the next one to replay)."""
        while len(self._ahead) <= n:
            ev = next(self._events, None)
            if ev is None:
                return None
            self._ahead.append(ev)
        return self._ahead[n]

    def step(self) -> Event | None:
        """Replay the next event; None once the trace is exhausted. If the observer pauses
        the run (Paused), the event stays next and is replayed again later."""
        ev = self.next_event
        if ev is None:
            self.finished = True
            return None
        if self.fast and self._loop is not None:
            last = self._run_handoffs(ev)
            if last is None and self._pending is None:
                last = self._run_batch(ev)
            if last is not None and self._pending is None:
                return last
            ev = self.next_event
            assert ev is not None  # a stop is left pending only at an event of the batch
        self._ahead.popleft()
        self.task, self.proc = self.taskset.select(ev.tid)
        self._replaying = ev
        try:
            self.replay_event(ev)
        except Paused:
            self._ahead.appendleft(ev)
            raise
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise TraceError(f"trace {self.reader.dir} is corrupt at event {ev.seq}: "
                             f"{type(e).__name__}: {e}") from None
        finally:
            self._pending = None
            self._replaying = None
        self.position = ev.seq + 1
        for listener in self.listeners:
            listener(ev)
        return ev

    def _run_batch(self, first: Event) -> Event | None:
        """Replay the run of emulated syscalls of `first`'s task that starts here in compiled
        code; the last event replayed, or None. If the loop met a stop it does not handle,
        that stop is left in `_pending` for the ordinary replay of the next event."""
        task = self.taskset.tasks.get(first.tid)
        if (task is None or task.tid in self.taskset.entered
                or task.tid in self.taskset.in_kernel):
            return None
        naming = bool(self.listeners)
        cursor = self._events
        if (len(self._ahead) != 1 or not isinstance(cursor, EventCursor)
                or not emulated_only(first, first.tid, naming=naming)):
            return None
        batch = collect(_row_of(first), cursor.next_row, cursor.push_back, naming=naming,
                        cursor=cursor)
        if batch is None:
            return None
        rows, after = batch.rows, batch.after
        self.task, self.proc = self.taskset.select(first.tid)
        task.hand_over(api.Req.SYSEMU)
        self.running = True
        if self.ticks is not None:
            self.ticks.enable(task.tid)
        proc = self.proc
        # Fed runs where nothing looks between events (no observer, no ticks), the hook
        # armed for good; or where the driver allows them under its observer, armed for
        # this run only, so that every stop shown, snapshot or search finds the hook as
        # when recorded. The loop holds back relive's own SIGSTOPs (ticks, Ctrl-C) that
        # reach the hook mid-record until the task is out of it.
        alone = self.observer is None and self.ticks is None
        feed = (sysbuf.FEED if proc is not None and proc.feed
                and (alone or self.feed_observed) else 0)
        if feed and proc is not None and not proc.feed_armed:
            proc.feed_armed = sysbuf_feed.arm(task)
            feed = feed if proc.feed_armed else 0
        try:
            outcome: Outcome | None = self._loop.run_packed(  # type: ignore[union-attr]
                task.tid, task.mem.fd, batch.evs, len(rows), batch.wrs, batch.data,
                time.monotonic_ns() + BATCH_BUDGET_NS, feed,
                # The last event fed too only when alone: the task then runs on into the
                # next event's stop, which this step replays at once, past the boundary a
                # driver looks at between steps (gdb's end of the process, checkpoints).
                alone and reached_by_running(after, first.tid))
        finally:
            self.running = False
            if self.ticks is not None:
                self.ticks.disable()
            if feed and not alone and proc is not None:
                sysbuf_feed.disarm(task)
                proc.feed_armed = False
        done = outcome.done if outcome is not None else 0
        if outcome is not None:
            self.stops += outcome.stops
            self.fed += outcome.fed
        for row in reversed(rows[max(done, 1):]):  # not replayed: next again
            cursor.push_back(row)
        if outcome is None:
            return None
        if done:
            self._ahead.popleft()  # first
            self.position = first.seq + done
        if outcome.reason in (fastloop.STOP, fastloop.EINTR):
            self.take_back(task, outcome.reason, outcome.status)
        elif outcome.reason == fastloop.ERROR:
            raise api.PtraceError(outcome.errno, f"ptrace of task {task.tid} failed while "
                                  f"replaying event {first.seq + done}")
        if not done:
            return None
        if self.listeners:  # (Events are made only for those who look at them)
            replayed = [first] + [self.reader.event_from(r) for r in rows[1:done]]
            for ev in replayed:
                for listener in self.listeners:
                    listener(ev)
            return replayed[-1]
        return first if done == 1 else self.reader.event_from(rows[done - 1])

    def _run_handoffs(self, first: Event) -> Event | None:
        """Replay the run of futex hand-offs between threads of one process that starts at
        `first` in compiled code (replayer.handoff_replay), only where nothing looks between
        events; the last event replayed, or None. A stop the loop did not handle is left in
        `_pending`, as by `_run_batch`."""
        cursor = self._events
        if (self._handoffs is None or self.observer is not None or self.ticks is not None
                or self.run_request != api.Req.SYSEMU or self.dying or self.exec_victims
                or self.signal_ready is not None or len(self._ahead) != 1
                or not isinstance(cursor, EventCursor)):
            return None
        plan = handoff_replay.plan(first, self.taskset, cursor, naming=bool(self.listeners))
        if plan is None:
            return None
        task, proc = self.taskset.select(first.tid)
        assert task is not None and proc is not None
        if proc.feed and not proc.feed_armed:
            proc.feed_armed = sysbuf_feed.arm(task)
        self.running = True
        try:
            outcome, stopped = self._handoffs.replay(
                plan, self.taskset, cursor, task.mem.fd,
                sysbuf.FEED if proc.feed and proc.feed_armed else 0)
        finally:
            self.running = False
        done, rows = outcome.done, plan.run.rows
        self.stops += outcome.stops
        self.fed += outcome.fed
        if done:
            self._ahead.popleft()  # first
            self.position = first.seq + done
            self.task, self.proc = self.taskset.select(rows[done - 1][1])
        if outcome.reason in (fastloop.STOP, fastloop.EINTR):
            if stopped is None:
                raise ReplayError(f"the compiled loop stopped in a task that is not one of "
                                  f"the process replayed at event {first.seq + done}")
            self.take_back(stopped, outcome.reason, outcome.status)
        elif outcome.reason == fastloop.ERROR:
            raise api.PtraceError(outcome.errno, "ptrace failed while replaying event "
                                  f"{first.seq + done}")
        if not done:
            return None
        if not self.listeners:
            return first if done == 1 else self.reader.event_from(rows[done - 1])
        replayed = [first] + [self.reader.event_from(r) for r in rows[1:done]]
        for ev in replayed:
            for listener in self.listeners:
                listener(ev)
        return replayed[-1]

    def close(self) -> None:
        log.debug("replay: %d events, %d ptrace stops, %d buffered calls without a stop",
                  self.position, self.stops, self.fed)
        if self._handoffs is not None:
            log.debug("replay: %d events replayed across thread switches in compiled code",
                      self._handoffs.events)
        self._kill_task()
        self.syscalls.close()
        self.reader.close()

    # -- one event --------------------------------------------------------------------------
    def replay_event(self, ev: Event) -> None:
        match ev.kind:
            case Kind.EXEC:
                self._exec(ev)
            case Kind.SYSCALL:
                self._syscall(ev)
            case Kind.RDTSC:
                self._rdtsc(ev)
            case Kind.RDRAND:
                self._rdrand(ev)
            case Kind.CPUID:
                self._cpuid(ev)
            case Kind.SIGNAL:
                self.signals.replay(ev)
            case Kind.EXIT:
                self._exit(ev)
            case Kind.ENTER:
                self._enter(ev)
            case Kind.PREEMPT:
                self.signals.reach_point(ev)
            case Kind.MAPPING:
                self._mapping(ev)
            case Kind.BUFFERED:
                self._buffered(ev)
            case _:
                raise ReplayError(f"event {ev.seq}: unknown kind {ev.kind}")

    def resume_until_stop(self, ev: Event) -> Stop:
        """Run the task (SYSEMU) to its next stop; exits and deaths end the session."""
        task = self.event_task(ev)
        self.taskset.settle(task)
        return self.run_once(task)

    def take_back(self, task: Task, reason: int, status: int) -> None:
        """Compiled code (tracee.fastloop) returned with `task` at a stop it does not handle
        (STOP or MATCH: the raw `status`) or still running (EINTR: wait for it): the next
        run_once of `task` returns that stop, through the observer."""
        stop = task.wait() if reason == fastloop.EINTR else task.stop_from(status)
        self._pending = (task, stop)

    def run_once(self, task: Task, request: api.Req | None = None) -> Stop:
        """Let the program run to its next stop that matters to replay. The observer sees
        every stop first: it may raise Paused, consume the stop (return None: keep running),
        or hand back the stop (possibly another one) for replay to use."""
        while True:
            if self._pending is not None and self._pending[0] is task:
                stop, self._pending = self._pending[1], None
            else:
                if self.ticks is not None:
                    self.ticks.enable(task.tid)
                task.resume(request or self.run_request)
                self.running = True
                try:
                    stop = task.wait()
                finally:
                    self.running = False
                    self.stops += 1
                    if self.ticks is not None:
                        self.ticks.disable()
            seen = stop if self.observer is None else self.observer(stop)
            if isinstance(seen, SignalStop) and seen.signal == signal.SIGSTOP:
                continue  # relive's own Ctrl-C kick that nobody took: never the program's
            if seen is not None:
                return seen

    # -- checkpoints ------------------------------------------------------------------------
    def can_snapshot(self) -> bool:
        """Checkpoints copy every process, their threads recreated from their saved state
        (replayer.snapshot): only when each process's leader thread is alive (a copy's
        leader is the same thread), no two processes share memory (a fork of each would
        split it), no thread is inside a real syscall (a vfork parent) or on its way out or
        about to be killed by an exec, no signal is half delivered, the replay is not
        between an execve and its EXEC event, and no process has writable shared memory (a
        fork would share it with the copy, so the copy's view would change as the replay
        goes on)."""
        ts = self.taskset
        if (not ts.tasks or ts.in_kernel or self.dying or self.exec_victims
                or self.signal_ready is not None or self.mid_exec()):
            return False
        pids = {t.pid for t in ts.tasks.values()}
        if (pids != {t.tid for t in ts.tasks.values() if t.tid == t.pid}
                or len({id(proc) for proc in ts.procs.values()}) != len(pids)):
            return False
        return not any(m.shared and m.prot & PROT_WRITE
                       for proc in {id(p): p for p in ts.procs.values()}.values()
                       for m in proc.space)

    def mid_exec(self) -> bool:
        """Between an execve and its EXEC event: the kernel has loaded the new program but
        replay has not rebuilt its address space yet (no relive page, nothing recorded)."""
        nxt = self.next_event
        return nxt is not None and nxt.kind == Kind.EXEC and self.position > 0

    def snapshot(self, steps: int = 0) -> Snapshot:
        """A stopped copy of the process at the current point, with what replay needs to
        continue from it."""
        if not self.can_snapshot():
            raise ReplayError("cannot checkpoint here: processes share memory, or a thread is "
                              "inside vfork or exiting")
        snap = snapshot.take(self.taskset, self.position, self.task, steps,
                             self._copies.reusable(self.taskset, self.position,
                                                   self._running_pid()))
        self._copies.note(snap, self.taskset)
        return snap

    def optional_snapshot(self, steps: int = 0) -> Snapshot | None:
        """A snapshot that only saves work later (an automatic checkpoint, a search's cache):
        None where none can be taken here, or when the kernel will not fork (out of
        processes: said once; going back then replays from the checkpoints there are)."""
        if not self.can_snapshot():
            return None
        try:
            return self.snapshot(steps)
        except CheckpointFailed as e:
            if not self.fork_refused:
                log.warning("%s (going on without it)", e)
            self.fork_refused = True
            return None

    def restore(self, snap: Snapshot) -> None:
        """Continue from a snapshot: a fresh fork of each stored copy (which never runs), with
        its other threads recreated; at the snapshot's own boundary, the processes that do
        not run in its stretch are kept as they stand. The copies are made before the live
        tasks go: if they cannot be (CheckpointFailed), the replay is left as it was."""
        keep = set() if self.dying or self.taskset.in_kernel or self.exec_victims \
            else snapshot.standing(snap, self.taskset, self.position, self._running_pid())
        if keep:
            taskset = snapshot.restore(snap, self.taskset, frozenset(
                image.owner for image in snap.processes if image.owner in keep))
            self._kill_exec_victims()
            kill_tasks([t for tid, t in self.taskset.tasks.items()
                        if tid not in keep], later=True)
        else:
            taskset = snapshot.restore(snap)
            self._kill_task()
        self.taskset = taskset
        self.pin.follow(t.tid for t in self.taskset.tasks.values())
        self.task, self.proc = self.taskset.select(
            snap.current if snap.current in self.taskset.tasks else snap.owner)
        self.position = snap.position
        self._events = self.reader.events(snap.position)
        self._ahead.clear()
        self.signal_ready = None
        self.dying.clear()
        self.exec_victims.clear()
        self.finished = False

    def _running_pid(self) -> int | None:
        """The live process of the next event's task: the only one that runs until then.
        While an event is replayed (a tick inside its stretch) the position is still before
        it, and it is that event's: the next one may be another process's."""
        nxt = self._replaying or self.next_event
        task = self.taskset.tasks.get(nxt.tid) if nxt is not None else None
        return task.pid if task is not None else None

    def current_task(self) -> Task:
        """The task that replays the current stretch (ReplayError when none is left)."""
        if self.task is None:
            raise ReplayError("no replayed process")
        return self.task

    def _kill_task(self) -> None:
        self._kill_exec_victims()
        self.taskset.kill_all()
        self.task = None
        self.proc = None

    def _kill_exec_victims(self) -> None:
        """Threads that the next exec kills are out of the task set but alive: they are
        killed and reaped first (their leader cannot be reaped before them; a replay left
        just before such an exec, as a step back over it leaves it, would wait forever)."""
        for pid in {t.pid for t in self.taskset.tasks.values()} if self.exec_victims else ():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        for tid in self.exec_victims:
            reap(tid)
        self.exec_victims.clear()

    def event_task(self, ev: Event) -> Task:
        """The task replaying event `ev` (the current one)."""
        if self.task is None:
            raise ReplayError(f"event {ev.seq}: no replayed process")
        return self.task

    def divergence(self, ev: Event, what: str, stop: Stop | None = None,
                   diff: dict[str, tuple[int, int]] | None = None) -> ReplayDivergence:
        if stop is not None:
            what += f"; replay reached {describe(stop, self.task)}"
        return ReplayDivergence(event=ev.seq, tid=ev.tid, what=what, diff=diff)

    def check_regs(self, ev: Event, what: str, skip: tuple[str, ...] = ()) -> None:
        task = self.event_task(ev)
        d = registers.diff(ev.regs, task.regs_bytes(), skip)
        if d:
            raise self.divergence(ev, f"registers differ at {what}", diff=d)

    def _exec(self, ev: Event) -> None:
        exe = self.reader.file_path(ev.info["exe_id"])
        if self.task is None:
            cpu = cpu_match.pin_replay(self.reader.meta)
            self.reader.avoid_cpu(cpu)
            self.pin = CpuPin(cpu, cpu_match.may_move(self.reader.meta), self.reader.avoid_cpu)
            try:
                pid = spawn(str(exe), [str(exe)], {}, ignored=ev.info.get("ignored"),
                            own_group=True)
            except SpawnError as e:  # e.g. a noexec mount with memory files not executable
                raise ReplayError(f"cannot start the replay of {self.reader.dir}: "
                                  f"{e.strerror}") from None
            self.task = Task(pid, pid, Memory(pid), drop_child_signals=True)
        else:
            self.task.mem.reopen()
            self.task.invalidate_regs()
        try:
            self.proc = ProcessState(space=rebuild(self.task, self.reader, ev))
        except InjectionError as e:  # e.g. the task did not exec where the trace says it did
            raise self.divergence(ev, f"cannot rebuild the recorded image: {e}") from None
        self.proc.patch_code(self.task, ev)
        self.proc.feed = sysbuf_feed.prepare(self.task, self.proc.space)
        self.taskset.add(ev.tid, self.task, self.proc)
        self.taskset.note_exec(ev.tid)
        self.last_exec = ev

    def _mapping(self, ev: Event) -> None:
        """A mapping the recorder made (a scratch area, its guard): made here too, so both
        address spaces stay alike."""
        m = mapping_from_info(ev.info["map"])
        task = self.event_task(ev)
        self.taskset.settle(task)
        map_anonymous(task, m)
        assert self.proc is not None
        self.proc.space.map(m)

    def _enter(self, ev: Event) -> None:
        """The thread reaches a syscall and stays there: recorded, it left the CPU inside the
        call; its SYSCALL event, later, completes it."""
        self._reach_syscall(ev)
        self.taskset.entered.add(self.event_task(ev).tid)

    def _syscall(self, ev: Event) -> None:
        task = self.event_task(ev)
        if task.tid in self.taskset.entered:
            self.taskset.entered.discard(task.tid)
        else:
            self._reach_syscall(ev)
        name = name_of(ev.nr)
        if name in queries.EXECS and ev.result == 0:  # execve, execveat (fexecve)
            self._execve(ev)
            return
        if name in queries.CLONES and ev.result > 0:
            self.taskset.clone(task, ev, self.divergence)
            return
        kind = self.syscalls.kind(name)
        if kind == "in_place":
            self._in_place(ev, name)
            return
        if kind == "execute":
            assert self.proc is not None
            self.syscalls.execute(task, self.proc, ev)
            if self.proc.feed and not sysbuf_feed.still_clear(self.proc.space):
                sysbuf_feed.disarm(task)  # (a recorded mapping took the feed's place)
                self.proc.feed = self.proc.feed_armed = False
            if name == "sigaltstack":
                self._note_altstack(task, ev)
        task.set_reg("rax", ev.result)
        write_memory(task, ev)
        if "remote" in ev.info:
            self._other_process_written(ev)
        if self.output is not None and "out" in ev.info and ev.result > 0:
            self._emit_output(ev)

    def _other_process_written(self, ev: Event) -> None:
        """process_vm_writev into another recorded process (or the caller's own): the bytes
        that process held after the write, put in its memory now (recorder.session)."""
        remote = ev.info["remote"]
        writes = remote.get("writes") if isinstance(remote, dict) else None
        if not isinstance(writes, list) or not all(
                isinstance(w, list) and len(w) == 2 and isinstance(w[0], int)
                and 0 <= w[0] < 1 << 64 and isinstance(w[1], str) for w in writes):
            raise TraceError(f"trace {self.reader.dir} is corrupt: damaged at event {ev.seq} "
                             "(process_vm_writev's remote writes)")
        target = self.taskset.tasks.get(remote.get("tid"))
        if target is None:
            raise self.divergence(ev, f"process_vm_writev into recorded task {remote['tid']}, "
                                      "which replay does not have")
        for addr, data in writes:
            try:
                raw = bytes.fromhex(data)
            except ValueError:
                raise TraceError(f"trace {self.reader.dir} is corrupt: damaged at event "
                                 f"{ev.seq} (process_vm_writev's remote writes)") from None
            if target.mem.write(addr, raw) != len(raw):
                raise self.divergence(ev, f"process_vm_writev's write of {len(raw)} bytes at "
                                          f"{addr:#x} in task {remote['tid']} did not land")

    def _note_altstack(self, task: Task, ev: Event) -> None:
        """Remember a thread's signal stack: the kernel will not show it to a checkpoint."""
        new = registers.unpack(ev.regs)["rdi"]
        if ev.result != 0 or not new:
            return
        stack = task.mem.read(new, STACK_T_SIZE)
        disabled = int.from_bytes(stack[8:12], "little") & SS_DISABLE
        self.taskset.note_altstack(ev.tid, None if disabled else stack)

    def _reach_syscall(self, ev: Event) -> None:
        stop = self.resume_until_stop(ev)
        task = self.event_task(ev)
        if not isinstance(stop, SyscallStop):
            raise self.divergence(ev, f"expected syscall {name_of(ev.nr)}", stop)
        if task.regs.orig_rax != ev.nr:
            raise self.divergence(ev, f"expected syscall {name_of(ev.nr)}, replay made "
                                      f"{name_of(task.regs.orig_rax)}",
                                  diff=registers.diff(ev.regs, task.regs_bytes()))
        self.check_regs(ev, f"syscall {name_of(ev.nr)}")

    def _buffered(self, ev: Event) -> None:
        """A call the in-process hook made without a stop when recorded (tracee.sysbuf):
        here it stops at the hook's `syscall` (SYSEMU), checked by number, arguments and
        rip; its result and the bytes the kernel wrote are put in place, and the hook copies
        them into its record as it did when recorded."""
        stop = self.resume_until_stop(ev)
        task = self.event_task(ev)
        if len(ev.regs) != BUFFERED_REGS.size:
            raise TraceError(f"trace {self.reader.dir} is corrupt: damaged at event {ev.seq} "
                             "(a buffered syscall's arguments)")
        if not isinstance(stop, SyscallStop):
            raise self.divergence(ev, f"expected syscall {name_of(ev.nr)} (buffered)", stop)
        regs = task.regs
        if regs.orig_rax != ev.nr:
            raise self.divergence(ev, f"expected syscall {name_of(ev.nr)} (buffered), replay "
                                      f"made {name_of(regs.orig_rax)}")
        want = dict(zip(BUFFERED_NAMES, (ev.nr, *BUFFERED_REGS.unpack(ev.regs))))
        diff = {name: (value, getattr(regs, name)) for name, value in want.items()
                if getattr(regs, name) != value}
        if diff:
            raise self.divergence(ev, f"the buffered syscall {name_of(ev.nr)} differs",
                                  diff=diff)
        task.set_reg("rax", ev.result)
        write_memory(task, ev)

    def _in_place(self, ev: Event, name: str) -> None:
        """rt_sigreturn, exit, exit_group: rewind to the `syscall` instruction and let the
        kernel run it where the program made it."""
        task = self.event_task(ev)
        task.set_reg("rip", task.regs.rip - 2)
        task.set_reg("rax", ev.nr)
        task.set_reg("orig_rax", -1)
        if name != "rt_sigreturn":
            task.resume(api.Req.CONT)
            self.dying |= self.taskset.dying_with(task, whole_process=name == "exit_group")
            return
        # Stops: the skipped call's exit, the real call's entry, its exit.
        for what in ("skip", "entry", "exit"):
            task.resume(api.Req.SYSCALL)
            stop = task.wait(past_sigstop=True)
            if not isinstance(stop, SyscallStop):
                raise self.divergence(ev, f"rt_sigreturn did not run ({what})", stop)

    def _execve(self, ev: Event) -> None:
        """A successful execve: exec the trace's copy of the new program (the next event is
        its EXEC record), then rebuild."""
        nxt = self.next_event
        if nxt is None and not self.reader.complete:
            self.finished = True  # the recording stopped there (its files could not be copied)
            return
        if nxt is None or nxt.kind != Kind.EXEC:
            raise self.divergence(ev, "trace has no image after a successful execve")
        exe = str(self.reader.file_path(nxt.info["exe_id"]))
        task = self.event_task(ev)
        victims, self.exec_victims = self.exec_victims, {}
        if victims:  # the exec completes only once the tracer has reaped them
            task.wait_hook = lambda: wait_through_exec(task, victims)
        try:
            exec_in_tracee(task, exe)
            reap_exec_victims(victims)
        except (InjectionError, ReplayError) as e:
            raise self.divergence(ev, str(e)) from None
        finally:
            task.wait_hook = None
        # the EXEC event, replayed next, rebuilds the image

    def _rdtsc(self, ev: Event) -> None:
        stop = self.resume_until_stop(ev)
        task = self.event_task(ev)
        if not (isinstance(stop, SignalStop) and stop.signal == signal.SIGSEGV):
            raise self.divergence(ev, "expected an rdtsc trap", stop)
        self.check_regs(ev, "rdtsc")
        task.set_reg("rax", ev.result & 0xFFFFFFFF)
        task.set_reg("rdx", ev.result >> 32)
        if "aux" in ev.info:
            task.set_reg("rcx", ev.info["aux"])
        task.set_reg("rip", task.regs.rip + ev.info["len"])

    def _rdrand(self, ev: Event) -> None:
        """A patched rdrand/rdseed (tracee.rdrand) raises SIGILL: give it the recorded number."""
        stop = self.resume_until_stop(ev)
        task = self.event_task(ev)
        if not (isinstance(stop, SignalStop) and stop.signal == signal.SIGILL):
            raise self.divergence(ev, f"expected the patched {ev.info['insn']} to trap", stop)
        self.check_regs(ev, ev.info["insn"])
        rdrand.emulate(task, ev.info["reg"], ev.info["width"], ev.info["len"], ev.result)

    def _cpuid(self, ev: Event) -> None:
        """A cpuid made to fault (tracee.cpuid): give it the recorded values, whatever the
        CPU replaying it."""
        stop = self.resume_until_stop(ev)
        task = self.event_task(ev)
        if not (isinstance(stop, SignalStop) and stop.signal == signal.SIGSEGV):
            raise self.divergence(ev, "expected a cpuid trap", stop)
        self.check_regs(ev, "cpuid")
        out = ev.info.get("out")
        if not (isinstance(out, list) and len(out) == 4
                and all(isinstance(v, int) and 0 <= v < 1 << 32 for v in out)):
            raise ReplayError(f"event {ev.seq}: corrupt cpuid values in the trace: {out!r}")
        cpuid.emulate(task, out)

    def _exit(self, ev: Event) -> None:
        """The task ends: by exit/exit_group run in place or a fatal signal (`dying`), or by a
        kill from outside the recording (replay has no more events for it)."""
        task = self.event_task(ev)
        write_memory(task, ev)  # the kernel's FUTEX_OWNER_DIED in robust mutexes it held
        if "exec" in ev.info:  # killed by another thread's execve, the next event of its
            self.exec_victims[task.tid] = ev.result  # process: that exec kills it here too
            self.taskset.remove(ev.tid)
            self.task = None
            return
        if task.tid in self.dying:
            stop = task.wait()
        elif self.next_event is None and os.WIFSIGNALED(ev.result):
            self._gone(ev, ev.result)  # killed from outside: the trace simply ends here
            return
        elif os.WIFSIGNALED(ev.result) and os.WTERMSIG(ev.result) == signal.SIGKILL:
            # SIGKILL from another process of the recording (whose kill() replay emulates)
            # or from outside: no signal stop was recorded, the task just ended here.
            api.tgkill(task.pid, task.tid, signal.SIGKILL)
            self.dying |= self.taskset.dying_with(task, whole_process=True)
            stop = task.wait()
        else:
            stop = self.resume_until_stop(ev)
        self.dying.discard(task.tid)
        if isinstance(stop, EventStop) and stop.event == api.Event.EXIT:
            status = api.get_event_msg(task.tid)
            task.resume(api.Req.CONT)
            if not self.taskset.leader_with_threads(task):
                task.wait()
        elif isinstance(stop, Exited):
            status = stop.code << 8
        elif isinstance(stop, Killed):
            status = stop.signal
        else:
            raise self.divergence(ev, "expected the process to exit", stop)
        if status != ev.result:
            raise self.divergence(ev, f"exit status {status:#x} in replay, {ev.result:#x} "
                                      "when recorded")
        self._gone(ev, status)

    def _gone(self, ev: Event, status: int) -> None:
        if ev.tid == self.taskset.root:
            self.exit_status = status
        self.taskset.remove(ev.tid)
        self.task = None
        self.finished = self.next_event is None
        if self.finished:
            self._kill_task()

    def _emit_output(self, ev: Event) -> None:
        task = self.event_task(ev)
        args = args_of(unpack_regs(ev.regs))
        fd = ev.info["out"]
        if "data" in ev.info:  # sendfile, splice, ...: recorded, never in tracee memory
            data = bytes.fromhex(ev.info["data"])
        elif name_of(ev.nr) in queries.WRITES:  # one flat buffer
            data = task.mem.read_upto(args[1], ev.result)
        else:  # writev, pwritev, pwritev2, vmsplice
            data, left = b"", ev.result
            for i in range(args[2]):
                base = task.mem.read_u64(args[1] + 16 * i)
                length = task.mem.read_u64(args[1] + 16 * i + 8)
                chunk = task.mem.read_upto(base, min(length, left))
                data += chunk
                left -= len(chunk)
                if left <= 0:
                    break
        assert self.output is not None
        self.output(fd, data)


def _row_of(ev: Event) -> Row:
    return (ev.seq, ev.tid, int(ev.kind), ev.nr, ev.result, ev.regs, b"", ev.writes)


class _Regs:
    def __init__(self, d: dict[str, int]) -> None:
        self.__dict__.update(d)


def unpack_regs(raw: bytes) -> _Regs:
    return _Regs(registers.unpack(raw))


def describe(stop: Stop, task: Task | None) -> str:
    match stop:
        case SyscallStop():
            nr = task.regs.orig_rax if task else -1
            return f"syscall {name_of(nr)} at rip {task.regs.rip:#x}" if task else "a syscall"
        case SignalStop(signal=sig):
            rip = f" at rip {task.regs.rip:#x}" if task else ""
            return f"signal {signal.Signals(sig).name}{rip}"
        case EventStop(event=ev):
            return f"ptrace event {ev.name}"
        case Exited(code=c):
            return f"process exit {c}"
        case Killed(signal=s):
            return f"process killed by {signal.Signals(s).name}"
    return repr(stop)
