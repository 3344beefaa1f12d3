"""The replayed tasks: recorded tid -> live task, and clone/fork/vfork run for real.

Replay creates threads and processes the way the recording did (the same clone call, made by
the program at the same point), so their stacks, TLS and shared memory are the program's own.
The kernel gives them other tids; the program never sees those: every syscall that returns a
tid is emulated, and the tid words the kernel writes for CLONE_PARENT_SETTID/CHILD_SETTID are
overwritten with the recorded ones.

A new process is made with CLONE_PARENT added (fork and vfork become the equivalent clone):
the kernel makes it a sibling of its creator instead of its child, so every replayed process,
and every checkpoint copy of one (tracee.fork), is a child of relive, and relive's wait for a
killed one reaps it completely. Were it a child of a replayed process, it would stay a zombie
once relive had taken its exit: nobody waits for it. The program cannot tell: wait4, waitid,
getppid and kill are emulated, the kernel's SIGCHLDs to replayed processes were dropped anyway
(the recorded ones are delivered from the trace), and the arguments are given back on both
sides of the call.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable

from tracee import ptrace_api as api
from tracee.stops import EventStop, Exited, Killed, SignalStop, Stop, SyscallStop, decode
from tracee.task import Memory, Task, kill_tasks
from tracefile.records import Event

from replayer import registers
from replayer.errors import ReplayDivergence, ReplayError
from replayer.syscalls import ProcessState

CLONE_VM, CLONE_VFORK, CLONE_PARENT, CLONE_THREAD = 0x100, 0x4000, 0x8000, 0x10000
NR_CLONE, NR_FORK, NR_VFORK = 56, 57, 58
SIGCHLD = 17
CLONE_PARENT_SETTID, CLONE_CHILD_CLEARTID, CLONE_CHILD_SETTID = 0x100000, 0x200000, 0x1000000
Divergence = Callable[..., ReplayDivergence]


class TaskSet:
    def __init__(self) -> None:
        self.tasks: dict[int, Task] = {}
        self.procs: dict[int, ProcessState] = {}
        self.root = 0
        # Real tids parked at a syscall entry by an ENTER event.
        self.entered: set[int] = set()
        # Real tids inside a real syscall (a vfork parent) -> the result to give them.
        self.in_kernel: dict[int, int] = {}
        # Real tids of vfork parents in there -> (the call's number, rdi, rsi) to give back.
        self._called: dict[int, tuple[int, int, int]] = {}
        # Per recorded tid, what the kernel holds for a thread but will not show, so that a
        # checkpoint can give it back: the CLONE_CHILD_CLEARTID word (the real clone sets it;
        # set_tid_address is emulated) and the stack_t of a real sigaltstack.
        self.clear_tid: dict[int, int] = {}
        self.altstack: dict[int, bytes] = {}

    def select(self, tid: int) -> tuple[Task | None, ProcessState | None]:
        return self.tasks.get(tid), self.procs.get(tid)

    def add(self, tid: int, task: Task, proc: ProcessState) -> None:
        if not self.tasks:
            self.root = self.root or tid
        self.tasks[tid] = task
        self.procs[tid] = proc

    def busy(self) -> bool:
        return bool(self.entered or self.in_kernel)

    def recorded_tid(self, task: Task) -> int:
        for tid, t in self.tasks.items():
            if t is task:
                return tid
        raise KeyError(task.tid)

    def threads_of(self, task: Task) -> list[Task]:
        return [t for t in self.tasks.values() if t.pid == task.pid]

    def dying_with(self, task: Task, *, whole_process: bool) -> set[int]:
        """Real tids that go when `task` exits (all its process's threads for exit_group)."""
        return {t.tid for t in self.threads_of(task)} if whole_process else {task.tid}

    def leader_with_threads(self, task: Task) -> bool:
        """A process leader whose other threads live on: it is reaped after them."""
        return task.tid == task.pid and len(self.threads_of(task)) > 1

    def remove(self, tid: int) -> None:
        task = self.tasks.pop(tid, None)
        self.procs.pop(tid, None)
        if task is None:
            return
        self.entered.discard(task.tid)
        self.in_kernel.pop(task.tid, None)
        self._called.pop(task.tid, None)
        self.clear_tid.pop(tid, None)
        self.altstack.pop(tid, None)
        if not self.threads_of(task):
            try:  # a leader that exited before its threads is a zombie until now
                os.waitpid(task.pid, api.WALL | os.WNOHANG)
            except OSError:
                pass
            task.mem.close()

    def kill_all(self) -> None:
        kill_tasks(list(self.tasks.values()), later=True)  # (reaped when the tracer is idle)
        self.tasks.clear()
        self.procs.clear()
        self.entered.clear()
        self.in_kernel.clear()
        self._called.clear()
        self.clear_tid.clear()
        self.altstack.clear()

    def note_altstack(self, tid: int, stack: bytes | None) -> None:
        """Thread `tid` now has the signal stack `stack` (None: none, SS_DISABLE)."""
        if stack is None:
            self.altstack.pop(tid, None)
        else:
            self.altstack[tid] = stack

    def note_exec(self, tid: int) -> None:
        """execve drops the signal stack and the clear-tid word."""
        self.clear_tid.pop(tid, None)
        self.altstack.pop(tid, None)

    def settle(self, task: Task) -> None:
        """A task left inside a real syscall (vfork) has returned from it by now: collect
        that stop and give it the recorded result."""
        result = self.in_kernel.pop(task.tid, None)
        if result is None:
            return
        stop = task.wait()
        if not isinstance(stop, SyscallStop):
            raise ReplayError(f"task {task.tid}: expected the end of vfork, got {stop}")
        task.set_reg("rax", result)
        nr, *args = self._called.pop(task.tid)
        _as_called(task, nr, (args[0], args[1]))

    # -- clone, fork, vfork -------------------------------------------------------------------
    def clone(self, parent: Task, ev: Event, divergence: Divergence) -> None:
        """At the SYSEMU entry of a recorded clone/fork/vfork: make the call for real."""
        flags = int(ev.info.get("flags", 0))
        args = (parent.regs.rdi, parent.regs.rsi)
        parent.set_reg("rip", parent.regs.rip - 2)
        parent.set_reg("orig_rax", -1)
        _as_sibling(parent, ev.nr, flags)
        for what in ("the skipped call's exit", "the real call's entry"):
            stop = _step(parent)
            if not isinstance(stop, SyscallStop):
                raise divergence(ev, f"clone did not run ({what})", stop)
        stop = _step(parent)
        if not (isinstance(stop, EventStop) and stop.event in (
                api.Event.CLONE, api.Event.FORK, api.Event.VFORK)):
            raise divergence(ev, "clone did not create a task", stop)
        real = api.get_event_msg(parent.tid)
        _first_stop(real)
        thread = bool(flags & CLONE_THREAD)
        child = Task(real, parent.pid if thread else real,
                     parent.mem if thread else Memory(real), drop_child_signals=True)
        if not thread:
            _as_called(child, ev.nr, args)
        proc = self.procs[ev.tid]
        self.add(ev.result, child, proc if flags & CLONE_VM else proc.copy())
        if "ptid" in ev.info:
            parent.mem.write(ev.info["ptid"], ev.result.to_bytes(4, "little"))
        if "ctid" in ev.info:
            child.mem.write(ev.info["ctid"], ev.result.to_bytes(4, "little"))
        if flags & CLONE_CHILD_CLEARTID:
            self.clear_tid[ev.result] = registers.unpack(ev.regs)["r10"]
        if ev.tid in self.altstack and flags & (CLONE_VM | CLONE_VFORK) != CLONE_VM:
            self.altstack[ev.result] = self.altstack[ev.tid]  # (a new thread has none)
        if stop.event == api.Event.VFORK:  # back when the child has exec'd or exited
            parent.resume(api.Req.SYSCALL)
            self.in_kernel[parent.tid] = ev.result
            self._called[parent.tid] = (ev.nr, *args)
            return
        stop = _step(parent)
        if not isinstance(stop, SyscallStop):
            raise divergence(ev, "clone did not return", stop)
        parent.set_reg("rax", ev.result)
        if not thread:
            _as_called(parent, ev.nr, args)


def wait_through_exec(task: Task, victims: dict[int, int]) -> Stop:
    """The next stop of `task` while it runs an execve that kills the other threads of its
    process (`victims`: real tid -> recorded exit status). The kernel finishes the exec only
    once the tracer has let each victim through its exit stop and reaped it, so this polls
    all of them (any other task of the replay is stopped and reports nothing)."""
    while True:
        for tid in list(victims):
            if _let_victim_go(tid, victims, os.WNOHANG):
                del victims[tid]
        pid, status = os.waitpid(task.tid, api.WALL | os.WNOHANG)
        if pid:
            return decode(task.tid, status)
        time.sleep(0.0002)


def reap_exec_victims(victims: dict[int, int]) -> None:
    """After the exec: whatever victims are left (normally none) are waited for."""
    for tid in list(victims):
        while not _let_victim_go(tid, victims, 0):
            pass
        del victims[tid]


def _let_victim_go(tid: int, victims: dict[int, int], flags: int) -> bool:
    """Handle one status of an exec victim; True once it is gone."""
    pid, status = os.waitpid(tid, api.WALL | flags)
    if not pid:
        return False
    stop = decode(tid, status)
    if isinstance(stop, (Exited, Killed)):
        return True
    if isinstance(stop, EventStop) and stop.event == api.Event.EXIT:
        got = api.get_event_msg(tid)
        if got != victims[tid]:
            raise ReplayError(f"thread {tid}, killed by the exec, exited with status {got:#x} "
                              f"in replay, {victims[tid]:#x} when recorded")
    api.ptrace(api.Req.CONT, tid, 0, 0)
    return False


def _as_sibling(parent: Task, nr: int, flags: int) -> None:
    """Set `parent`, at the entry of a recorded clone/fork/vfork it is about to make again,
    to make the new process with CLONE_PARENT (fork and vfork as the clone they are); a
    thread (CLONE_THREAD: its parent is the process's already) is made as recorded."""
    if nr in (NR_FORK, NR_VFORK):
        real = SIGCHLD if nr == NR_FORK else CLONE_VM | CLONE_VFORK | SIGCHLD
        parent.set_reg("rsi", 0)  # (the child's stack: the caller's)
    elif nr == NR_CLONE and not flags & CLONE_THREAD:
        real = parent.regs.rdi  # the program's flags and exit signal
    else:
        parent.set_reg("rax", nr)
        return
    parent.set_reg("rax", NR_CLONE)
    parent.set_reg("rdi", real | CLONE_PARENT)


def _as_called(task: Task, nr: int, args: tuple[int, int]) -> None:
    """What the recorded call leaves in a task's registers (one side of the call that
    _as_sibling changed): its number and arguments."""
    task.set_reg("rdi", args[0])
    task.set_reg("rsi", args[1])
    task.set_reg("orig_rax", nr)


def _step(task: Task) -> Stop:
    task.resume(api.Req.SYSCALL)
    return task.wait()


def _first_stop(tid: int) -> None:
    """A new task reports one stop (PTRACE_EVENT_STOP) before it runs."""
    while True:
        stop = decode(tid, api.wait_task(tid))
        if isinstance(stop, (EventStop, SignalStop)):
            return
        raise ReplayError(f"new task {tid} ended before it started ({stop})")
