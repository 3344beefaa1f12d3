"""The kernel's writes to a dying thread's robust futexes, worked out at its exit stop.

A thread that exits (or is killed) holding a robust mutex does not unlock it: the kernel, in
do_exit after PTRACE_EVENT_EXIT, walks the list the thread registered with set_robust_list
(glibc does so for every thread) and, in each lock word whose owner bits are the thread's
tid, puts FUTEX_OWNER_DIED (keeping FUTEX_WAITERS), then wakes a waiter. The next owner sees
EOWNERDEAD. Those writes belong to no system call, so the recorder writes them into the
thread's EXIT event and replay applies them there (set_robust_list is emulated in replay:
the replayed kernel knows no list and writes nothing itself). The waiter's futex wait is
replayed from its own recorded result, after the EXIT event, as it returned when recorded.

The writes are predicted at the exit stop, by the kernel's own rules (kernel/futex/core.c:
exit_robust_list, handle_futex_death) applied to the memory as it is there: the thread runs
no more user code, and the word's owner is the dying thread, so nobody else takes it in
between. Observing them after the exit is not possible in general: when the whole process
goes, its memory goes too (a robust mutex in shared memory still matters to the others).

Not covered: execve walks the exec'ing thread's list too (futex_exec_release), into the
address space it leaves; only a lock in memory shared with another process would show it,
and no event carries that write yet.

This module reads the tracee; it does not know about events or the trace.
"""
from __future__ import annotations

import ctypes
import logging
import struct

from tracee.task import Memory, MemoryAccessError

log = logging.getLogger(__name__)

NR_GET_ROBUST_LIST = 274
ROBUST_LIST_LIMIT = 2048  # the kernel's bound on a list's length (circular lists)
HEAD_SIZE = 24  # struct robust_list_head: list.next, futex_offset, list_op_pending
FUTEX_WAITERS, FUTEX_OWNER_DIED, FUTEX_TID_MASK = 0x80000000, 0x40000000, 0x3FFFFFFF

_libc = ctypes.CDLL(None, use_errno=True)


def robust_head(tid: int) -> int:
    """The robust list head thread `tid` registered (0: none, or it cannot be asked)."""
    head, size = ctypes.c_void_p(0), ctypes.c_size_t(0)
    if _libc.syscall(ctypes.c_long(NR_GET_ROBUST_LIST), ctypes.c_long(tid),
                     ctypes.byref(head), ctypes.byref(size)) != 0:
        log.debug("get_robust_list(%d): errno %d", tid, ctypes.get_errno())
        return 0
    return int(head.value or 0) if size.value == HEAD_SIZE else 0


def owner_died_writes(mem: Memory, tid: int, head: int) -> list[tuple[int, bytes]]:
    """The lock words the kernel will change when thread `tid` (stopped at its exit) goes,
    with their new values, in the kernel's order: the list's entries, then the pending one."""
    try:
        first, futex_offset, pending = struct.unpack("<QqQ", mem.read(head, HEAD_SIZE))
    except MemoryAccessError:
        return []
    writes: dict[int, bytes] = {}
    # (Bit 0 of each pointer marks a PI futex: it decides who wakes a waiter, not the word.)
    entry, pending_entry = first & ~1, pending & ~1
    for _ in range(ROBUST_LIST_LIMIT):
        if entry == head:
            break
        try:
            nxt = mem.read_u64(entry)
        except MemoryAccessError:
            nxt = None
        if entry != pending_entry:
            if not _death(mem, tid, entry + futex_offset, writes):
                return list(writes.items())
        if nxt is None:
            return list(writes.items())
        entry = nxt & ~1
    if pending_entry:
        _death(mem, tid, pending_entry + futex_offset, writes)
    return list(writes.items())


def _death(mem: Memory, tid: int, uaddr: int, writes: dict[int, bytes]) -> bool:
    """handle_futex_death's effect on one word; False where the kernel stops the walk."""
    uaddr &= (1 << 64) - 1
    if uaddr % 4:
        return False
    if uaddr in writes:
        uval = int.from_bytes(writes[uaddr], "little")
    else:
        try:
            uval = mem.read_uint(uaddr, 4)
        except MemoryAccessError:
            return False
    if uval & FUTEX_TID_MASK == tid:
        writes[uaddr] = ((uval & FUTEX_WAITERS) | FUTEX_OWNER_DIED).to_bytes(4, "little")
    return True
