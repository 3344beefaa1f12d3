"""Fork a stopped tracee, or add a thread to it, from inside (through the relive page): the
basis of checkpoints.

A forked copy shares nothing with the original but file-backed pages (copy-on-write), is
auto-attached by ptrace (TRACEFORK) and is left stopped; its registers are set to the
original's so it stands at exactly the same point. It is made with clone(CLONE_PARENT): a
sibling of the original, not its child, so that the copies of a tree whose root relive
started are all children of relive, which reaps each one completely when it kills it (the
child of a replayed process would stay a zombie once relive had taken its exit: nobody waits
for it; see docs/reverse.md, "Processes"). A new thread (TRACECLONE) shares its
creator's process and is left stopped before it runs any user code, with its creator's
registers: the caller gives it the state it is meant to have.
"""
from __future__ import annotations

import contextlib
import os
from errno import EAGAIN
import signal

from tracee import ptrace_api as api
from tracee.remote import SYSCALL_INSN, InjectionError
from tracee.stops import EventStop, SignalStop, decode
from tracee.task import Memory, Task

NR_CLONE = 56
# What pthread_create asks for, minus what the caller sets by hand afterwards (the TLS base is
# a register; the tid words are the program's business, already written).
CLONE_VM, CLONE_FS, CLONE_FILES, CLONE_SIGHAND = 0x100, 0x200, 0x400, 0x800
CLONE_THREAD, CLONE_SYSVSEM, CLONE_PARENT = 0x10000, 0x40000, 0x8000
# A process copy: a sibling of the original (same parent), with the original's exit signal;
# SIGCHLD here makes ptrace report it as a fork (PTRACE_EVENT_FORK) and auto-attach it.
COPY_FLAGS = CLONE_PARENT | 17  # SIGCHLD
THREAD_FLAGS = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM
_ARGS = ("rdi", "rsi", "rdx", "r10", "r8", "r9")
STEPS = 16              # single steps the injected call may take between signals (2-3 do)
DROPPED_SIGNALS = 4096  # signals dropped on the way, at most (each a copy's SIGCHLD, ...)
ERESTART_FIRST, ERESTART_LAST = 512, 516  # ERESTARTSYS .. ERESTART_RESTARTBLOCK


class ForkFailed(InjectionError):
    """The kernel refused to make the task (`errno`: EAGAIN when out of processes, a pids
    cgroup or RLIMIT_NPROC, ENOMEM): nothing was made, the caller's task is as it was."""

    def __init__(self, what: str, errno: int) -> None:
        super().__init__(f"{what} failed: {os.strerror(errno)}")
        self.errno = errno

    @property
    def reason(self) -> str:
        """Why, for a user."""
        if self.errno == EAGAIN:
            return "out of processes (fork: EAGAIN; see ulimit -u, pids.max, pid_max)"
        return f"fork: {os.strerror(self.errno)}"


def _create(task: Task, nr: int, args: tuple[int, ...], event: api.Event) -> int:
    """Run the task-creating syscall `nr(args)` in `task` (stopped) and return the new task's
    tid once it has reported its first stop. The task's registers are restored, also when
    it fails (ForkFailed: the kernel said no; InjectionError: anything else)."""
    saved = task.regs_bytes()
    try:
        child = _run_create(task, nr, args, event)
    except BaseException:
        with contextlib.suppress(OSError):  # (a task gone: nothing to give back)
            task.set_regs_from(saved)
            task.flush_regs()
        raise
    task.set_regs_from(saved)
    task.flush_regs()
    # The new task reports a stop of its own once it exists.
    while True:
        st = decode(child, api.wait_task(child))
        if isinstance(st, (EventStop, SignalStop)):
            return child
        raise InjectionError(f"new task {child} ended before it started ({st})")


def _run_create(task: Task, nr: int, args: tuple[int, ...], event: api.Event) -> int:
    """Make the call, through single steps; the new task's tid."""
    child = 0
    steps = dropped = 0
    seen: list[str] = []
    while True:
        if steps >= STEPS:
            raise InjectionError(f"{event.name.lower()} in {task.tid} did not complete "
                                 f"(stops: {', '.join(seen[-6:])})")
        regs = task.regs
        if regs.rip != SYSCALL_INSN + 2 or not child:
            # From a syscall or event stop the first step only finishes the interrupted call
            # (which may change rax) and traps before the new rip runs: set it all again.
            if regs.rip != SYSCALL_INSN:
                regs.rip, regs.orig_rax = SYSCALL_INSN, 0xFFFFFFFFFFFFFFFF
                task.set_reg("rip", SYSCALL_INSN)
            task.set_reg("rax", nr)
            for name, value in zip(_ARGS, args):
                task.set_reg(name, value)
        stop = task.step()
        seen.append(f"{stop} at {task.regs.rip:#x} rax {task.regs.rax:#x}")
        if (isinstance(stop, SignalStop) and stop.signal != signal.SIGTRAP
                and dropped < DROPPED_SIGNALS):
            # e.g. SIGCHLD from an earlier copy's death (a process tree's snapshots kill many
            # at once): dropped, and the call made again (fork gives way to a pending signal
            # and is restarted after it), with its steps counted anew
            dropped += 1
            steps = 0
            continue
        steps += 1
        if isinstance(stop, EventStop) and stop.event == event:
            child = api.get_event_msg(task.tid)
            continue
        if isinstance(stop, SignalStop) and stop.signal == signal.SIGTRAP:
            if task.regs.rip == SYSCALL_INSN + 2 and child:
                return child
            if task.regs.rip == SYSCALL_INSN + 2 and _refused(task.regs.rax):
                raise ForkFailed(f"{event.name.lower()} in {task.tid}", -_signed(task.regs.rax))
            continue
        raise InjectionError(f"{event.name.lower()} in {task.tid} stopped unexpectedly: {stop}")


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _refused(rax: int) -> bool:
    """The call returned an error of its own (not a restart for a signal: made again)."""
    result = _signed(rax)
    return -4095 <= result < 0 and not ERESTART_FIRST <= -result <= ERESTART_LAST


def fork_tracee(task: Task) -> Task:
    """A stopped copy of `task`'s process at the same point (same registers and memory)."""
    child = _create(task, NR_CLONE, (COPY_FLAGS, 0, 0, 0, 0), api.Event.FORK)
    copy = Task(child, child, Memory(child), drop_child_signals=True)
    copy.set_regs_from(task.regs_bytes())
    copy.flush_regs()
    return copy


def clone_thread(task: Task) -> Task:
    """A new stopped thread in `task`'s process (sharing memory, files, signal handlers).
    Until the caller gives it registers it stands where `task` does, with no signal stack
    and no CLONE_CHILD_CLEARTID word."""
    child = _create(task, NR_CLONE, (THREAD_FLAGS, 0, 0, 0, 0), api.Event.CLONE)
    return Task(child, task.pid, task.mem, drop_child_signals=True)
