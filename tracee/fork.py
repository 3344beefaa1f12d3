"""Fork a stopped tracee from inside (through the relive page): the basis of checkpoints.

The copy shares nothing with the original but file-backed pages (copy-on-write), is
auto-attached by ptrace (TRACEFORK) and is left stopped; its registers are set to the
original's so it stands at exactly the same point.
"""
from __future__ import annotations

import signal

from tracee import ptrace_api as api
from tracee.remote import SYSCALL_INSN, InjectionError
from tracee.stops import EventStop, SignalStop, decode
from tracee.task import Memory, Task

NR_FORK = 57


def fork_tracee(task: Task) -> Task:
    """A stopped copy of `task`'s process at the same point (same registers and memory)."""
    saved = task.regs_bytes()
    child = 0
    for _ in range(16):
        regs = task.regs
        if regs.rip != SYSCALL_INSN + 2 or not child:
            if regs.rip != SYSCALL_INSN:
                regs.rip, regs.orig_rax = SYSCALL_INSN, 0xFFFFFFFFFFFFFFFF
                task.set_reg("rip", SYSCALL_INSN)
            regs.rax = NR_FORK
            task.set_reg("rax", NR_FORK)
        stop = task.step()
        if isinstance(stop, EventStop) and stop.event == api.Event.FORK:
            child = api.get_event_msg(task.tid)
            continue
        if isinstance(stop, SignalStop) and stop.signal == signal.SIGTRAP:
            if task.regs.rip == SYSCALL_INSN + 2 and child:
                break
            continue
        if isinstance(stop, SignalStop):
            continue  # e.g. SIGCHLD from an earlier copy's death: dropped, step again
        raise InjectionError(f"fork of {task.tid} stopped unexpectedly: {stop}")
    else:
        raise InjectionError(f"fork of {task.tid} did not complete")
    task.set_regs_from(saved)
    task.flush_regs()
    # The child reports a stop of its own once it exists.
    while True:
        st = decode(child, api.wait_task(child))
        if isinstance(st, (EventStop, SignalStop)):
            break
    copy = Task(child, child, Memory(child), drop_child_signals=True)
    copy.set_regs_from(saved)
    copy.flush_regs()
    return copy
