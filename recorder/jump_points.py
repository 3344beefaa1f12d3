"""Points replay jumps to: a thread preempted (or given a signal) in user code where replay
could not find the point again by execution in bounded time.

In an interpreter's eval loop, or a loop that calls nothing, every instruction and every
return address on the stack is reached millions of times a second: no place is cold, and
replay would trap at each arrival until registers and memory match (hours for seconds of
computation). Such a point is recorded with the state itself instead: every register (the
general ones in the event, the extended x87/SSE/AVX state in its info) and the pages the
thread's process wrote since the last jump point or since tracking started (the event's memory
writes; tracee.written_pages tracks them in the kernel). Only one recorded thread runs at a time
and a stretch makes no syscall, so nothing else changed memory: replay writes those pages and
registers in place of running the stretch and is exactly where the recording was
(replayer.jumps). The first jump point of a process carries every page it has in memory
(tracking starts there); the next ones only what was written since.

Where the kernel cannot track writes (no userfaultfd write-protect async mode before Linux 6.7,
userfaultfd forbidden), `JumpPoints.record` returns None and the caller keeps preempting at
points replay finds by execution.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from tracee import ptrace_api as api
from tracee.digest import scratch_ranges
from tracee.remote import InjectionError
from tracee.written_pages import TrackingError, WrittenPages
from tracefile.records import MemoryWrite

if TYPE_CHECKING:
    from recorder.session import RecordedTask

log = logging.getLogger(__name__)

READ_CHUNK = 1 << 20


class JumpPoints:
    """Write tracking per recorded process (by pid), started at its first jump point."""

    def __init__(self) -> None:
        self._trackers: dict[int, WrittenPages | None] = {}

    def record(self, t: RecordedTask) -> tuple[dict[str, object], tuple[MemoryWrite, ...]] | None:
        """At a stop of `t` in user code: what identifies the point beyond its registers
        (info: pc, last event, extended state, `jump`) and the memory to write there, or
        None if this process's writes cannot be tracked."""
        task = t.task
        xstate = api.get_xstate(task.tid)  # (before any injected syscall runs)
        tracker = self._tracker(t)
        if tracker is None:
            return None
        pages = tracker.mark(scratch_ranges(t.space))
        writes: list[MemoryWrite] = []
        for start, end in pages:
            for addr in range(start, end, READ_CHUNK):
                data = task.mem.read_upto(addr, min(READ_CHUNK, end - addr))
                if data:
                    writes.append(MemoryWrite(addr=addr, data=data))
        info: dict[str, object] = {"rip": task.regs.rip, "after": t.last_event, "jump": True,
                                   "xstate": xstate.hex(),
                                   "pages": sum((e - s) // 4096 for s, e in pages)}
        return info, tuple(writes)

    def _tracker(self, t: RecordedTask) -> WrittenPages | None:
        pid = t.task.pid
        if pid in self._trackers:
            return self._trackers[pid]
        tracker: WrittenPages | None
        try:
            tracker = WrittenPages(t.task)
        except (TrackingError, InjectionError, api.PtraceError) as e:
            log.info("process %d: its writes cannot be tracked (%s); threads computing "
                     "there are preempted at points replay finds by execution", pid, e)
            tracker = None
        self._trackers[pid] = tracker
        return tracker

    def unavailable(self, pid: int) -> bool:
        """Is it known that this process's writes cannot be tracked?"""
        return pid in self._trackers and self._trackers[pid] is None

    def forget(self, pid: int) -> None:
        """The process execs (a new address space) or is gone."""
        tracker = self._trackers.pop(pid, None)
        if tracker is not None:
            tracker.close()

    def close(self) -> None:
        for pid in list(self._trackers):
            self.forget(pid)
