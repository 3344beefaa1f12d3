"""A thread's state as plain data, and giving it to another thread: how a checkpoint carries
the threads that fork leaves behind.

What the kernel keeps per thread and a copy must get back: the general registers (fs_base,
the TLS pointer, included), the extended FPU/SSE/AVX state, the blocked-signal mask, the
signal stack, and the CLONE_CHILD_CLEARTID word (cleared and woken by the kernel when the
thread exits: pthread_join waits for it). The first three are read from the kernel here; the
last two cannot be read back from outside, so the caller says what they are.

A stopped thread is also *somewhere* in the kernel: a replayed thread waits either after its
last event (resuming it returns to user code) or at the entry of a system call it has made
but not finished. `stand_at_syscall_entry` puts a thread in the first kind of place with the
given registers, `enter_syscall` in the second, each at a PTRACE_SYSEMU syscall-entry stop
like the ones replay leaves its threads at, so resuming behaves the same (in particular no
syscall restart is attempted, as it would be from a signal stop).
"""
from __future__ import annotations

from typing import NamedTuple

from tracee import ptrace_api as api
from tracee.remote import SYSCALL_INSN, InjectionError, checked, inject_syscall, put_data
from tracee.stops import SyscallStop
from tracee.task import Task

NR_SIGALTSTACK, NR_GETPID, NR_SET_TID_ADDRESS = 131, 39, 218
SYSCALL_BYTES = b"\x0f\x05"


class ThreadState(NamedTuple):
    """What a thread needs to continue exactly where another left off."""
    regs: bytes
    xstate: bytes
    sigmask: int
    altstack: bytes | None = None  # the stack_t given to sigaltstack, if any
    clear_tid: int = 0  # the CLONE_CHILD_CLEARTID / set_tid_address word, if any


def capture(task: Task, *, altstack: bytes | None = None, clear_tid: int = 0) -> ThreadState:
    """The state of `task` (stopped), with what the kernel does not show."""
    return ThreadState(regs=task.regs_bytes(), xstate=api.get_xstate(task.tid),
                       sigmask=api.get_sigmask(task.tid), altstack=altstack,
                       clear_tid=clear_tid)


def give_kernel_state(task: Task, state: ThreadState, *,
                      inherited: ThreadState | None = None) -> None:
    """Everything but the registers, the place and the extended state: the signal mask
    (where it differs from what the task `inherited` from its creator), the signal stack and
    clear-tid word if any (injected syscalls: the task must not be parked in a syscall yet).
    Give the extended state with `give_extended_state` once the task is parked."""
    if inherited is None or state.sigmask != inherited.sigmask:
        api.set_sigmask(task.tid, state.sigmask)
    if state.altstack is not None:  # (a new thread never inherits one)
        (addr,) = put_data(task, state.altstack)
        checked(inject_syscall(task, NR_SIGALTSTACK, addr, 0), "sigaltstack")
    if state.clear_tid:
        set_clear_tid(task, state.clear_tid)


def give_extended_state(task: Task, state: ThreadState) -> None:
    """The x87/SSE/AVX state, as the last thing before the parked task is resumed: whenever
    it runs an instruction (an injected syscall, reaching a syscall entry), the CPU saves
    its state again and may clear XSTATE_BV bits of components found in their initial
    configuration (XSAVEOPT/XSAVES "init optimisation": the SSE bit of all-zero XMM
    registers), so a state given earlier reads back with another header."""
    api.set_xstate(task.tid, state.xstate)


def set_clear_tid(task: Task, addr: int) -> None:
    """The word the kernel clears (and wakes futex waiters on) when the thread exits."""
    inject_syscall(task, NR_SET_TID_ADDRESS, addr)


def stand_at_syscall_entry(task: Task, regs: bytes) -> None:
    """Leave `task` stopped at a syscall entry (a skipped getpid in the relive page), then
    give it `regs`: resumed, it goes on at regs' rip as a replayed thread does after its
    last event."""
    task.set_reg("rip", SYSCALL_INSN)
    task.set_reg("rax", NR_GETPID)
    task.set_reg("orig_rax", -1)
    _reach_entry(task, NR_GETPID)
    task.set_regs_from(regs)
    task.flush_regs()


def enter_syscall(task: Task, regs: bytes) -> None:
    """Leave `task` at the entry of the syscall it was making when stopped with `regs` (its
    registers at that syscall-entry stop): it makes the call again, from the program's own
    `syscall` instruction, and stops at its entry with exactly those registers."""
    entry = api.UserRegs.from_buffer_copy(regs)
    if task.mem.read_upto(entry.rip - 2, 2) != SYSCALL_BYTES:
        raise InjectionError(f"task {task.tid}: no syscall instruction before {entry.rip:#x}")
    task.set_regs_from(regs)
    task.set_reg("rip", entry.rip - 2)
    task.set_reg("rax", entry.orig_rax)
    task.set_reg("orig_rax", -1)
    _reach_entry(task, entry.orig_rax)
    task.set_regs_from(regs)
    task.flush_regs()


def _reach_entry(task: Task, nr: int) -> None:
    task.resume(api.Req.SYSEMU)
    stop = task.wait()
    if not isinstance(stop, SyscallStop) or task.regs.orig_rax != nr:
        raise InjectionError(f"task {task.tid} did not reach the entry of syscall {nr}: {stop}",
                             stop)
