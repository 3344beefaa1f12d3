"""The records a trace holds: events with their memory writes, and the trace's metadata.

Frozen, slotted, keyword-only values; the writer stores them, the reader gives them back.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

FORMAT_VERSION = 2


class Kind(enum.IntEnum):
    EXEC = 1      # a new program image: info has mappings, exe, auxv; writes fill its memory
    SYSCALL = 2   # nr, result, regs at entry, writes = what the kernel wrote
    SIGNAL = 3    # nr = signal; info says where it was delivered; writes = the signal frame
    RDTSC = 4     # result = the time-stamp counter value; info has tsc_aux for rdtscp
    EXIT = 5      # result = wait status of the task's end
    MAPPING = 6   # the address space changed without a syscall (e.g. file content reloaded)
    ENTER = 7     # the thread entered syscall nr and left the CPU there (regs at entry)
    PREEMPT = 8   # the thread was preempted in user code: info has rip and a memory digest


@dataclass(frozen=True, slots=True, kw_only=True)
class MemoryWrite:
    addr: int
    data: bytes
    # A guessed-size write (signal frames): replay tolerates it landing short.
    conservative: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    seq: int
    tid: int
    kind: Kind
    nr: int = 0
    result: int = 0
    regs: bytes = b""
    writes: tuple[MemoryWrite, ...] = ()
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskRecord:
    tid: int
    pid: int
    ppid: int
    argv: tuple[str, ...] = ()
    exe: str = ""
    exit_status: int | None = None
