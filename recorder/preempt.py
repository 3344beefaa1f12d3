"""Preempting a thread that runs user code past its timeslice while another thread waits.

Without a PMU there is no instruction or branch count to say where the thread was stopped, so
the point is recorded as (all registers, a digest of writable memory) and replay stops at that
pc until both match (replayer.points). That search costs one debug trap per execution of the pc
since the thread's last syscall, so the recorder chooses where to preempt:
  - a thread whose state repeats (a spin loop waiting for another thread: the next arrival at
    the same pc has the same registers and memory) is preempted there; replay finds the first
    matching arrival, which is the same state;
  - a thread that computes (its state changes) keeps the CPU, since it does not wait for
    anyone, until FORCE_AFTER timeslices have passed without a syscall: then it is preempted
    where it is, and replay finds that point exactly but slowly.
"""
from __future__ import annotations

import signal
from typing import TYPE_CHECKING

from tracee import ptrace_api as api
from tracee.digest import memory_digest, scratch_ranges
from tracee.stops import EventStop, SignalStop, Stop, SyscallStop
from tracefile.records import Kind

if TYPE_CHECKING:
    from recorder.session import RecordedTask, Recorder

FORCE_AFTER = 100  # timeslices computing without a syscall while others wait (~2 s)
SLOT = 3          # debug register 3: relive's own
DR7_ENABLE = 1 << (2 * SLOT)
DR6_HIT = 1 << SLOT
_EFLAGS = api.UserRegs.eflags.offset
RESUME_FLAG = 1 << 16
_TRAP_FLAGS = (1 << 8) | RESUME_FLAG  # TF, RF: the debugger's, not the program's


def same_state(a: bytes, b: bytes) -> bool:
    """Registers equal apart from the trap and resume flags."""
    if a[:_EFLAGS] != b[:_EFLAGS] or a[_EFLAGS + 8:] != b[_EFLAGS + 8:]:
        return False
    fa = int.from_bytes(a[_EFLAGS:_EFLAGS + 8], "little")
    fb = int.from_bytes(b[_EFLAGS:_EFLAGS + 8], "little")
    return (fa ^ fb) & ~_TRAP_FLAGS == 0


class Preempter:
    def __init__(self, recorder: Recorder) -> None:
        self.rec = recorder
        self._slices: dict[int, int] = {}

    def made_syscall(self, t: RecordedTask) -> None:
        self._slices.pop(t.task.tid, None)

    def on_interrupt(self, t: RecordedTask) -> None:
        """The current thread was interrupted in user code after its timeslice."""
        task = t.task
        n = self._slices[task.tid] = self._slices.get(task.tid, 0) + 1
        if n < FORCE_AFTER:
            stop, repeating = self._repeats(t)
            if stop is not None:       # it made a syscall or took a signal first
                self.rec.handle(t, stop)
                return
            if not repeating:
                self.rec.queue.start_slice()  # computing: it keeps the CPU
                self.rec.resume(t)
                return
        self.rec.emit(t, Kind.PREEMPT, regs=task.regs_bytes(),
                      info={"rip": task.regs.rip, "after": t.last_event,
                            "digest": memory_digest(task.pid, task.mem.read_upto,
                                                    scratch_ranges(t.space))})
        self._slices.pop(task.tid, None)
        t.wants = (api.Req.SYSCALL, 0)
        self.rec.queue.make_ready(t)

    def _repeats(self, t: RecordedTask) -> tuple[Stop | None, bool]:
        """Does the thread come back to this pc in the same state? Registers are compared
        at the next arrival; only if they match is memory digested, at that arrival and the
        one after (digests are costly for big processes). Returns (a stop that came first
        instead: a syscall, a signal, to be handled as usual; or None, whether it repeats)."""
        task = t.task
        regs, rip = task.regs_bytes(), task.regs.rip
        stop = self._next_arrival(t, rip)
        if stop is not None or not same_state(regs, task.regs_bytes()):
            return stop, False
        digest = memory_digest(task.pid, task.mem.read_upto, scratch_ranges(t.space))
        stop = self._next_arrival(t, rip)
        if stop is not None:
            return stop, False
        return None, (same_state(regs, task.regs_bytes()) and digest == memory_digest(
            task.pid, task.mem.read_upto, scratch_ranges(t.space)))

    def _next_arrival(self, t: RecordedTask, rip: int) -> Stop | None:
        """Run the thread until it executes `rip` again (None) or stops for another reason
        (that stop is returned)."""
        task = t.task
        api.set_debugreg(task.tid, SLOT, rip)
        api.set_debugreg(task.tid, 7, api.get_debugreg(task.tid, 7) | DR7_ENABLE)
        # RF: the instruction at rip runs first instead of trapping at once.
        task.set_reg("eflags", task.regs.eflags | RESUME_FLAG)
        task.resume(api.Req.SYSCALL)
        stop = self.rec.wait_for(t)
        if not isinstance(stop, (SignalStop, EventStop, SyscallStop)):
            return stop  # it is gone
        api.set_debugreg(task.tid, 7, api.get_debugreg(task.tid, 7) & ~DR7_ENABLE)
        if (isinstance(stop, SignalStop) and stop.signal == signal.SIGTRAP
                and api.get_debugreg(task.tid, 6) & DR6_HIT):
            api.set_debugreg(task.tid, 6, 0)
            return None
        return stop
