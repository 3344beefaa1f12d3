"""The records a trace holds: events with their memory writes, and the trace's metadata.

Immutable values; the writer stores them, the reader gives them back. NamedTuples rather than
frozen dataclasses: `relive record` creates these classes before the program starts, where
a dataclass costs ~1 ms each (docs/performance.md, "Start-up"). Build them with keywords.
"""
from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, NamedTuple

FORMAT_VERSION = 7
# Version 3 added RDRAND events, version 4 CPUID events and checksums on every row
# (tracefile.integrity): older traces read the same, unchecked. Version 5 stores events in
# compressed chunks (tracefile.chunks) instead of a row each. Version 6 adds BUFFERED events.
# Version 7 marks the memory digests of points by their kind (tracee.digest DIGEST_KIND: the
# non-zero pages: an older relive would never find such a point and report a divergence).
OLDEST_FORMAT = 2
CHECKED_FORMAT = 4
CHUNKED_FORMAT = 5


class Kind(enum.IntEnum):
    EXEC = 1      # a new program image: info has mappings, exe, auxv; writes fill its memory
    SYSCALL = 2   # nr, result, regs at entry, writes = what the kernel wrote
    SIGNAL = 3    # nr = signal; info says where it was delivered; writes = the signal frame
    RDTSC = 4     # result = the time-stamp counter value; info has tsc_aux for rdtscp
    EXIT = 5      # result = wait status of the task's end
    MAPPING = 6   # the address space changed without a syscall (e.g. file content reloaded)
    ENTER = 7     # the thread entered syscall nr and left the CPU there (regs at entry)
    PREEMPT = 8   # the thread was preempted in user code: info has rip and a memory digest
    RDRAND = 9    # a patched rdrand/rdseed (tracee.rdrand): result = the number it gave (as
    #               a signed 64-bit integer); info has the instruction's reg, width, len
    CPUID = 10    # a cpuid that faulted (tracee.cpuid): result = the leaf; info["out"] =
    #               [eax, ebx, ecx, edx] it gave
    BUFFERED = 11  # a syscall made by the in-process hook without a ptrace stop
    #               (tracee.sysbuf): nr, result, regs = its six arguments and the rip after
    #               the hook's `syscall` (7 x u64, no register file: none was seen);
    #               writes = what the kernel wrote (the hook's copy of it)


class MemoryWrite(NamedTuple):
    addr: int
    data: bytes
    # A guessed-size write (signal frames): replay tolerates it landing short.
    conservative: bool = False


class Event(NamedTuple):
    seq: int
    tid: int
    kind: Kind
    nr: int = 0
    result: int = 0
    regs: bytes = b""
    writes: tuple[MemoryWrite, ...] = ()
    info: Mapping[str, Any] = {}  # shared by events without info: never mutated


class TaskRecord(NamedTuple):
    tid: int
    pid: int
    ppid: int
    argv: tuple[str, ...] = ()
    exe: str = ""
    exit_status: int | None = None
