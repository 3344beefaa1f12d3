"""Run syscalls inside a tracee: the relive page.

One page at RELIVE_PAGE, mapped by the tool in every recorded and replayed process, holds a
`syscall` instruction (then `int3`) and, from DATA_OFFSET, room for the strings and structs an
injected syscall needs. Every syscall the tool itself runs in the tracee goes through it, with the
task's registers saved and restored around it, so the program never notices.

RELIVE_PAGE is the one place the tool's fixed addresses derive from (the syscall buffer's
mappings follow it, tracee.sysbuf). It lies at 0x7e80_0000_0000, the low end of what
ThreadSanitizer, AddressSanitizer and MemorySanitizer all keep for application memory on
x86-64 (TSan aborts on a mapping inside its shadow, where the page used to be:
LEGACY_RELIVE_PAGE) and far below where the kernel puts stacks and top-down mmaps in a 47-bit
address space. A trace's meta `relive_page` says where it was recorded (absent: the legacy
address); the page is the tool's, not the program's, so a replay maps its own wherever this
relive keeps it. RELIVE_PAGE_ADDRESS in the environment moves it (to record as an older relive
did, for tests).
"""
from __future__ import annotations

import os
import signal
import struct

from tracee import ptrace_api as api
from tracee.stops import EventStop, SignalStop, Stop, SyscallStop
from tracee.task import Task

PAGE_SIZE = 4096
DEFAULT_RELIVE_PAGE = 0x7E80_0000_0000
LEGACY_RELIVE_PAGE = 0x7000_0000_0000


def _relive_page() -> int:
    """DEFAULT_RELIVE_PAGE, or a page-aligned RELIVE_PAGE_ADDRESS inside a 47-bit user space
    (an unusable value is ignored: the knob is for tests, not a user's way to break relive)."""
    raw = os.environ.get("RELIVE_PAGE_ADDRESS", "")
    try:
        addr = int(raw, 0)
    except ValueError:
        return DEFAULT_RELIVE_PAGE
    if addr % PAGE_SIZE or not 1 << 32 <= addr <= (1 << 47) - (1 << 32):
        return DEFAULT_RELIVE_PAGE
    return addr


RELIVE_PAGE = _relive_page()
# The relive page and what follows it (the syscall buffer's hook and buffer, and replay's
# feed: tracee.sysbuf): relive's own memory, never part of the program's state.
RELIVE_AREA_SIZE = 0x23_0000  # (+64 KiB: the Go sites' hook stack, tracee.go_sites)
SYSCALL_INSN = RELIVE_PAGE
DATA_OFFSET = 256
DATA = RELIVE_PAGE + DATA_OFFSET
DATA_SIZE = PAGE_SIZE - DATA_OFFSET

PROT_READ, PROT_WRITE, PROT_EXEC = 1, 2, 4
MAP_SHARED, MAP_PRIVATE, MAP_FIXED, MAP_ANONYMOUS = 0x1, 0x2, 0x10, 0x20
MAP_GROWSDOWN, MAP_NORESERVE, MAP_FIXED_NOREPLACE = 0x100, 0x4000, 0x100000

NR_MMAP, NR_MUNMAP, NR_OPEN, NR_CLOSE, NR_MPROTECT, NR_PRCTL = 9, 11, 2, 3, 10, 157
NR_EXECVE = 59
PR_SET_TSC, PR_TSC_SIGSEGV = 26, 2


class InjectionError(RuntimeError):
    """An injected syscall did not come back as expected (the task died or took a signal);
    `stop` is what came instead, for the caller to handle."""

    def __init__(self, message: str, stop: Stop | None = None) -> None:
        super().__init__(message)
        self.stop = stop


def _step_into_syscall(task: Task, nr: int, args: tuple[int, ...], at: int) -> Stop:
    """Point the task at the `syscall` instruction at `at` with `nr(args)` and single-step it.

    From a syscall or event stop, the first step only finishes the interrupted syscall (which
    may overwrite rax) and traps before the new rip runs: then the registers are set again and
    the step repeated. Returns the stop that follows the injected instruction."""
    stop: Stop = SignalStop(task.tid, signal.SIGTRAP)
    for _ in range(2):
        regs = task.regs
        regs.rip, regs.rax, regs.orig_rax = at, nr, 0xFFFFFFFFFFFFFFFF
        for name, value in zip(("rdi", "rsi", "rdx", "r10", "r8", "r9"), args):
            setattr(regs, name, value & 0xFFFFFFFFFFFFFFFF)
        task.set_reg("rip", at)
        stop = task.step()
        if isinstance(stop, SyscallStop):  # the recorder's seccomp filter (tracee.seccomp)
            stop = task.step()             # stopped it: the call runs, then the step traps
        if not (isinstance(stop, SignalStop) and stop.signal == signal.SIGTRAP
                and task.regs.rip == at):
            break
    return stop


def inject_syscall(task: Task, nr: int, *args: int, at: int = SYSCALL_INSN) -> int:
    """Run syscall `nr(args)` in `task` (stopped) and return its raw result (negative errno);
    the task's registers are restored afterwards."""
    saved = task.regs_bytes()
    stop = _step_into_syscall(task, nr, args, at)
    if not (isinstance(stop, SignalStop) and stop.signal == signal.SIGTRAP
            and task.regs.rip == at + 2):
        raise InjectionError(f"task {task.tid}: unexpected stop {stop} in injected syscall",
                             stop)
    result = int(task.regs.rax)
    task.set_regs_from(saved)
    task.flush_regs()
    return api.signed(result)


def exec_in_tracee(task: Task, path: str) -> None:
    """execve(path, [path], []) in the task; returns at the exec event stop (the old image
    and its relive page are gone; the caller rebuilds)."""
    path_addr, argv_addr = put_data(task, os.fsencode(path) + b"\0", b"\0" * 16)
    task.mem.write(argv_addr, struct.pack("<QQ", path_addr, 0))
    stop = _step_into_syscall(task, NR_EXECVE, (path_addr, argv_addr, argv_addr + 8),
                              SYSCALL_INSN)
    if not (isinstance(stop, EventStop) and stop.event == api.Event.EXEC):
        raise InjectionError(f"task {task.tid}: exec of {path} failed ({stop})")


def checked(result: int, what: str) -> int:
    if -4096 < result < 0:
        raise InjectionError(f"{what} failed in the tracee: {os.strerror(-result)}")
    return result


def map_relive_page(task: Task) -> None:
    """Map the relive page in a freshly exec'd task, using a temporary `syscall` at rip."""
    rip = task.regs.rip
    saved = task.mem.read(rip, 2)
    task.mem.write(rip, b"\x0f\x05")
    try:
        res = inject_syscall(task, NR_MMAP, RELIVE_PAGE, PAGE_SIZE, PROT_READ | PROT_EXEC,
                             MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0, at=rip)
    finally:
        task.mem.write(rip, saved)
    if res != RELIVE_PAGE:
        raise InjectionError(f"cannot map the relive page at {RELIVE_PAGE:#x}: result {res:#x}")
    task.mem.write(RELIVE_PAGE, b"\x0f\x05\xcc")
    # rdtsc/rdtscp now fault so they can be recorded or replayed (inherited by fork and
    # kept across exec). Set here, not before exec, so relive's own child never traps.
    checked(inject_syscall(task, NR_PRCTL, PR_SET_TSC, PR_TSC_SIGSEGV), "prctl(PR_SET_TSC)")


def put_data(task: Task, *blobs: bytes) -> list[int]:
    """Copy blobs into the relive page's data area; returns their tracee addresses."""
    addrs, off = [], 0
    for blob in blobs:
        if off + len(blob) > DATA_SIZE:
            raise InjectionError("injected syscall arguments do not fit in the relive page")
        task.mem.write(DATA + off, blob)
        addrs.append(DATA + off)
        off += (len(blob) + 15) & ~15
    return addrs


def open_in_tracee(task: Task, path: str, flags: int = 0) -> int:
    (addr,) = put_data(task, os.fsencode(path) + b"\0")
    return checked(inject_syscall(task, NR_OPEN, addr, flags | 0o2000000, 0), f"open {path}")


def mmap_in_tracee(task: Task, addr: int, length: int, prot: int, flags: int, fd: int = -1,
                   offset: int = 0) -> int:
    return checked(inject_syscall(task, NR_MMAP, addr, length, prot, flags, fd, offset),
                   f"mmap {addr:#x}+{length:#x}")
