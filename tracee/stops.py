"""Stops as values: decode a waitpid status into what happened to one task.

Callers `match` on these instead of catching exceptions for ordinary process events. They are
NamedTuples, cheap to define at start-up (see tracee/syscalls/rules.py).
"""
from __future__ import annotations

import os
import signal
from typing import NamedTuple, Union

from tracee.ptrace_api import Event


class Exited(NamedTuple):
    tid: int
    code: int


class Killed(NamedTuple):
    tid: int
    signal: int


class SyscallStop(NamedTuple):
    """Syscall entry or exit (PTRACE_SYSCALL / SYSEMU with TRACESYSGOOD); an entry is also
    a PTRACE_EVENT_SECCOMP stop (the recorder's filter: tracee.seccomp)."""
    tid: int


class SignalStop(NamedTuple):
    """Signal-delivery-stop: `signal` is about to be delivered (single-step traps included)."""
    tid: int
    signal: int


class EventStop(NamedTuple):
    """PTRACE_EVENT_* stop (exec, clone, fork, exit, or a group/interrupt stop)."""
    tid: int
    event: Event
    signal: int


Stop = Union[Exited, Killed, SyscallStop, SignalStop, EventStop]


def decode(tid: int, status: int) -> Stop:
    if os.WIFEXITED(status):
        return Exited(tid, os.WEXITSTATUS(status))
    if os.WIFSIGNALED(status):
        return Killed(tid, os.WTERMSIG(status))
    sig = os.WSTOPSIG(status)
    event = status >> 16
    if sig == signal.SIGTRAP | 0x80:
        return SyscallStop(tid)
    if event == Event.SECCOMP:
        return SyscallStop(tid)
    if event:
        return EventStop(tid, Event(event), sig)
    return SignalStop(tid, sig)
