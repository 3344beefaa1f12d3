"""Preempting a thread that runs user code past its timeslice while another thread waits.

Without a PMU there is no instruction or branch count to say where the thread was stopped, so
the point is recorded as (all registers, a digest of writable memory) and replay stops at that
pc until both match (replayer.points). That search costs one debug trap per execution of the pc
since the thread's last syscall, so the recorder chooses where to preempt:
  - a thread whose state repeats (a spin loop waiting for another thread: the next arrival at
    the same pc has the same registers and memory) is preempted there; replay finds the first
    matching arrival, which is the same state;
  - a thread that computes (its state changes) is looked at once per stretch: the return
    addresses on its stack are counted in the kernel for a few milliseconds (perf breakpoint
    counters). If it reaches one rarely (at most COLD_RATE arrivals a second) it keeps the
    CPU, since it does not wait for anyone, until FORCE_AFTER timeslices have passed without
    a syscall, and is then preempted at its next arrival at the least frequent one, which
    replay finds exactly (one trap per arrival). If none is (an interpreter's eval loop, a
    loop that calls nothing: replay would trap millions of times a second), it is preempted
    after JUMP_AFTER timeslices where it stands, and the point is recorded as one replay
    jumps to: its registers and the memory its process wrote (recorder.jump_points). Where
    the kernel cannot track writes, it keeps the CPU and is preempted after FORCE_AFTER at
    the least frequent hot return address if reached less often than its pc, else where it
    is.
An asynchronous signal that arrives while a thread computes is delivered at such a place too
(recorder.signals: a cold return address, or a hot one reached less often than the pc, else a
jump point); signals that arrive while the recorder takes the thread there are held. A chosen
place the thread does not reach within ARRIVAL_WAIT of its CPU time (its frame returned) is
given up for a jump point where the thread stands.
"""
from __future__ import annotations

import os
import signal
import struct
import time
from typing import TYPE_CHECKING

from tracee import ptrace_api as api
from tracee.address_space import PROT_EXEC, PROT_WRITE, AddressSpace
from tracee.digest import KERNEL_MAPS, memory_digest, ranges_digest, scratch_ranges
from tracee.hwcount import HwCounter, HwCounterError
from tracee.remote import PAGE_SIZE
from tracee.stops import EventStop, SignalStop, Stop, SyscallStop, decode
from tracefile.records import Kind, MemoryWrite

from recorder.jump_points import JumpPoints

if TYPE_CHECKING:
    from recorder.session import RecordedTask, Recorder
    from tracee.task import Task

FORCE_AFTER = 100  # timeslices computing without a syscall while others wait (~2 s)
# Timeslices a thread with no cold place computes while others wait before a jump point:
# short bursts of computation stay whole (replay runs them, gdb stops in them), a thread
# that waits for another (a spinner, an interpreter's lock) hands over within ~0.1 s.
JUMP_AFTER = 5
COLD_WINDOW = 0.01  # s: how long each batch of return addresses is counted
COLD_RATE = 5000    # arrivals a second at most, for replay to stop at each
POLL = 0.001        # s: how often counters are read, to drop a hot one
ARRIVAL_WAIT = 0.02  # s of a thread's CPU time to reach a chosen place, at most
COUNTERS = 3        # perf breakpoint counters at once (debug register 3 is relive's own)
RETURNS = 9         # return addresses tried, innermost first
STACK_SCAN = 1 << 14  # bytes of stack searched for them
NEAR = 64           # bytes each side of a register's value digested for a quick test
NEAR_REGS = ("rsp", "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp",
             "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")
SLOT = 3          # debug register 3: relive's own
DR7_ENABLE = 1 << (2 * SLOT)
DR6_HIT = 1 << SLOT
_EFLAGS = api.UserRegs.eflags.offset
RESUME_FLAG = 1 << 16
_TRAP_FLAGS = (1 << 8) | RESUME_FLAG  # TF, RF: the debugger's, not the program's
# What _next_arrival returns when the thread was interrupted before it got there (compared
# by identity: the thread stands at an interrupt stop, in user code).
NOT_ARRIVED: Stop = EventStop(-1, api.Event.STOP, 0)


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
        # Whether the thread's current stretch reaches a cold return address (has_cold_place).
        self._cold: dict[int, bool] = {}
        self.jumps = JumpPoints()

    def made_syscall(self, t: RecordedTask) -> None:
        """The thread's stretch ended (an event of its own): count its computing anew."""
        self._slices.pop(t.task.tid, None)
        self._cold.pop(t.task.tid, None)

    def on_interrupt(self, t: RecordedTask) -> None:
        """The current thread was interrupted in user code after its timeslice."""
        task = t.task
        n = self._slices[task.tid] = self._slices.get(task.tid, 0) + 1
        jump: tuple[dict[str, object], tuple[MemoryWrite, ...]] | None = None
        if n < FORCE_AFTER:
            stop, repeating = self._repeats(t)
            if stop is not None:       # it made a syscall or took a signal first
                self.rec.handle(t, stop)
                return
            if not repeating:
                if task.tid not in self._cold:  # first look at this stretch's computation
                    stop, self._cold[task.tid] = self.has_cold_place(t)
                    if stop is not None:
                        self.rec.handle(t, stop)
                        return
                if (self._cold[task.tid] or n < JUMP_AFTER
                        or (jump := self.jump_here(t)) is None):
                    self.rec.queue.start_slice()  # computing: it keeps the CPU
                    self.rec.resume(t)
                    return
        else:
            stop, cold = self.to_colder_place(t, hot_ok=self.jumps.unavailable(task.pid))
            if stop is not None:  # a syscall or signal came first: an exact point anyway
                self.rec.handle(t, stop)
                return
            if not cold:
                jump = self.jump_here(t)
        if jump is not None:
            info, writes = jump
            self.rec.emit(t, Kind.PREEMPT, regs=task.regs_bytes(), info=info, writes=writes)
        else:
            self.rec.emit(t, Kind.PREEMPT, regs=task.regs_bytes(), info=point_info(t))
        self.made_syscall(t)
        t.wants = (api.Req.SYSCALL, 0)
        self.rec.queue.make_ready(t)

    def jump_here(self, t: RecordedTask) -> tuple[dict[str, object],
                                                   tuple[MemoryWrite, ...]] | None:
        """The point where `t` stands, as one replay jumps to (recorder.jump_points): info
        and memory writes, or None where the process's writes cannot be tracked."""
        found = self.jumps.record(t)
        if found is None:
            return None
        info, writes = found
        near = near_ranges(t.task.regs, t.space)
        info.update(near=near, near_digest=ranges_digest(t.task.mem.read_upto, near))
        return info, writes

    def has_cold_place(self, t: RecordedTask) -> tuple[Stop | None, bool]:
        """Does the thread reach a return address on its stack rarely (at most COLD_RATE
        times a second), a place replay finds by stopping at each arrival? Counted for a
        few milliseconds of its computation (it runs on meanwhile); a stop that came first
        is returned."""
        found = return_addresses(t.task, t.space)[:RETURNS]
        for end in range(len(found), 0, -COUNTERS):
            stop, rates = self._count_arrivals(t, found[max(end - COUNTERS, 0):end])
            if stop is not None:
                return stop, False
            reached = [rate for rate, _ in rates if rate > 0]
            if reached or not rates:
                return None, bool(reached) and min(reached) <= COLD_RATE
        return None, False

    def to_colder_place(self, t: RecordedTask, *,
                        hot_ok: bool = False) -> tuple[Stop | None, bool]:
        """Run the thread on to the return address on its stack it reaches least often, if
        it reaches one at most COLD_RATE times a second, or (`hot_ok`) more often but less
        often than the pc where the thread is (a loop's per-iteration return, against an
        instruction of an inner loop): (None, True), a point replay finds by execution.
        Failing that (None, False): the thread stands where it was or a little further, and
        the caller records the point as one replay jumps to (recorder.jump_points) or, where
        it cannot, as it is. (stop, False): a stop that came first instead. The outermost
        frames are counted first, COUNTERS at a time, up to the first batch with an address
        reached: frames further in return more often."""
        found = return_addresses(t.task, t.space)[:RETURNS]
        reached: list[tuple[float, int]] = []
        for end in range(len(found), 0, -COUNTERS):
            stop, rates = self._count_arrivals(t, found[max(end - COUNTERS, 0):end])
            if stop is not None:
                return stop, False
            reached = [(rate, addr) for rate, addr in rates if rate > 0]
            if reached or not rates:
                break
        if not reached:
            return None, False
        rate, addr = min(reached)
        if rate > COLD_RATE:
            if not hot_ok:
                return None, False
            here = t.task.regs.rip
            stop, rates = self._count_arrivals(t, [addr, here], COLD_WINDOW / 10, evict=False)
            if stop is not None:
                return stop, False
            if len(rates) < 2 or rates[0][0] >= rates[1][0]:
                return None, False
        stop = self._next_arrival(t, addr)
        if stop is NOT_ARRIVED:
            return None, False
        return stop, stop is None

    def _count_arrivals(self, t: RecordedTask, addrs: list[int], window: float = COLD_WINDOW,
                        evict: bool = True) -> tuple[Stop | None, list[tuple[float, int]]]:
        """Let the thread run for `window` of its CPU time (relive's own threads share its
        CPU) and count its arrivals at `addrs` in the kernel: (None, [(arrivals per second
        of CPU time, address)] in the order of `addrs`), or (a stop that came first, []).
        With `evict`, a counter is read every millisecond and dropped once its address is
        hot: each arrival at a counted address costs the thread a few µs, and a hot one
        would starve the others of arrivals."""
        task = t.task
        counters: list[HwCounter] = []
        for addr in addrs:
            try:
                counters.append(HwCounter(task.tid, addr))
            except HwCounterError:
                break
        if not counters:
            return None, []
        rates: dict[HwCounter, float] = {}
        stop: Stop | None = None
        try:
            cpu_before = cpu_time(task.tid)
            task.resume(api.Req.SYSCALL)
            started, ran = time.monotonic(), 0.0
            while ran < window and time.monotonic() < started + 10 * window:
                time.sleep(min(POLL, window))
                stop = self._poll(t)
                if stop is not None:
                    break
                ran = max(cpu_time(task.tid) - cpu_before, 1e-6)
                for c in counters:
                    if evict and c not in rates and (n := c.count()) > COLD_RATE * window:
                        rates[c] = n / ran
                        c.close()
            if stop is None:
                api.ptrace(api.Req.INTERRUPT, task.tid)
                stop = self._wait(t)
            if not (isinstance(stop, EventStop) and stop.event == api.Event.STOP):
                return stop, []  # (it may be gone: no /proc entry to read)
            ran = max(cpu_time(task.tid) - cpu_before, 1e-6)
            return None, [(rates[c] if c in rates else c.count() / ran, c.addr)
                          for c in counters]
        finally:
            for c in counters:
                c.close()

    def _wait(self, t: RecordedTask) -> Stop:
        """The thread's next stop but for asynchronous signals, which are held for later: the
        thread is on its way to a point of the recorder's choosing."""
        while True:
            stop = self.rec.wait_for(t)
            if not self.rec.signals.absorb(t, stop):
                return stop
            t.task.resume(api.Req.SYSCALL)

    def _poll(self, t: RecordedTask) -> Stop | None:
        """The thread's stop if it stopped during a counting window. It goes on after a
        timer signal (held for later) and after an interrupt (the scheduler's end of a
        timeslice: the window ends with an interrupt of its own)."""
        tid, status = os.waitpid(t.task.tid, api.WALL | os.WNOHANG)
        if not tid:
            return None
        stop = decode(tid, status)
        interrupt = isinstance(stop, EventStop) and stop.event == api.Event.STOP
        if not interrupt and not self.rec.signals.absorb(t, stop):
            return stop
        t.task.resume(api.Req.SYSCALL)
        return None

    def _repeats(self, t: RecordedTask) -> tuple[Stop | None, bool]:
        """Does the thread come back to this pc in the same state? Registers are compared
        at the next arrival; only if they match is memory digested, at that arrival and the
        one after (digests are costly for big processes). Returns (a stop that came first
        instead: a syscall, a signal, to be handled as usual; or None, whether it repeats)."""
        task = t.task
        regs, rip = task.regs_bytes(), task.regs.rip
        stop = self._next_arrival(t, rip)
        if stop is not None or not same_state(regs, task.regs_bytes()):
            return (None if stop is NOT_ARRIVED else stop), False
        digest = memory_digest(task.pid, task.mem.read_upto, scratch_ranges(t.space))
        stop = self._next_arrival(t, rip)
        if stop is not None:
            return (None if stop is NOT_ARRIVED else stop), False
        return None, (same_state(regs, task.regs_bytes()) and digest == memory_digest(
            task.pid, task.mem.read_upto, scratch_ranges(t.space)))

    def _next_arrival(self, t: RecordedTask, rip: int) -> Stop | None:
        """Run the thread until it executes `rip` again (None) or stops for another reason
        (that stop is returned). If it does not get there within ARRIVAL_WAIT of its CPU
        time (a frame that returned meanwhile, a loop it never leaves), it is interrupted
        where it is: NOT_ARRIVED."""
        task = t.task
        api.set_debugreg(task.tid, SLOT, rip)
        api.set_debugreg(task.tid, 7, api.get_debugreg(task.tid, 7) | DR7_ENABLE)
        # RF: the instruction at rip runs first instead of trapping at once.
        task.set_reg("eflags", task.regs.eflags | RESUME_FLAG)
        cpu_before = cpu_time(task.tid)
        task.resume(api.Req.SYSCALL)
        started = time.monotonic()
        stop: Stop | None = None
        while stop is None:
            if (time.monotonic() > started + 10 * ARRIVAL_WAIT
                    or cpu_time(task.tid) - cpu_before > ARRIVAL_WAIT):
                api.ptrace(api.Req.INTERRUPT, task.tid)
                stop = self._wait(t)
                break
            time.sleep(POLL / 4)
            stop = self._poll(t)
        if not isinstance(stop, (SignalStop, EventStop, SyscallStop)):
            return stop  # it is gone
        api.set_debugreg(task.tid, 7, api.get_debugreg(task.tid, 7) & ~DR7_ENABLE)
        if (isinstance(stop, SignalStop) and stop.signal == signal.SIGTRAP
                and api.get_debugreg(task.tid, 6) & DR6_HIT):
            api.set_debugreg(task.tid, 6, 0)
            return None
        if isinstance(stop, EventStop) and stop.event == api.Event.STOP:
            return NOT_ARRIVED
        return stop


def cpu_time(tid: int) -> float:
    """Seconds thread `tid` has run (its first field in /proc/TID/schedstat, in ns; up to
    date here, since the thread shares the recorder's CPU and is not running now)."""
    with open(f"/proc/{tid}/schedstat", "rb") as f:
        return int(f.read().split()[0]) / 1e9


def point_info(t: RecordedTask) -> dict[str, object]:
    """What identifies a point in user code: the pc, the thread's last event, a digest of
    writable memory, and one of the memory near the registers (checked first in replay:
    cheaper; an interpreter's registers repeat, the objects they point to change)."""
    task = t.task
    near = near_ranges(task.regs, t.space)
    return {"rip": task.regs.rip, "after": t.last_event,
            "digest": memory_digest(task.pid, task.mem.read_upto, scratch_ranges(t.space),
                                    rsp=task.regs.rsp),
            "near": near, "near_digest": ranges_digest(task.mem.read_upto, near)}


def near_ranges(regs: api.UserRegs, space: AddressSpace) -> list[list[int]]:
    """The stack from rsp to its page's end and NEAR bytes around each register that
    points into the program's writable memory, clipped to the mapping: memory the memory
    digest covers, so at the right point replay reads the same there."""
    ranges: list[list[int]] = []
    for name in NEAR_REGS:
        value = getattr(regs, name)
        m = space.find(value)
        if m is None or not m.prot & PROT_WRITE or m.flags or m.path in KERNEL_MAPS:
            continue
        lo, hi = (value, value - value % PAGE_SIZE + PAGE_SIZE) if name == "rsp" else (value - NEAR,
                                                                            value + NEAR)
        lo, hi = max(lo, m.start), min(hi, m.end)
        if [lo, hi - lo] not in ranges:
            ranges.append([lo, hi - lo])
    return ranges


def return_addresses(task: Task, space: AddressSpace) -> list[int]:
    """Values on the stack above rsp that point just after a call instruction in code mapped
    from a file: the return addresses of the frames the thread is in, innermost first
    (without frame pointers or unwind tables; a stale value that passes is harmless, the
    point chosen is verified like any other)."""
    rsp = task.regs.rsp
    stack = task.mem.read_upto(rsp, STACK_SCAN)
    found: list[int] = []
    for (value,) in struct.iter_unpack("<Q", stack[:len(stack) & ~7]):
        m = space.find(value)
        if m is None or not m.prot & PROT_EXEC or not m.file_id or value in found:
            continue
        if after_call(task.mem.read_upto(value - 7, 7)):
            found.append(value)
    return found


def after_call(code: bytes) -> bool:
    """The 7 bytes before an address end with a call: E8 rel32, or FF /2 (indirect) in its
    2, 3, 6 and 7-byte forms."""
    if len(code) != 7:
        return False
    if code[2] == 0xE8:
        return True
    return any(code[7 - n] == 0xFF and (code[8 - n] >> 3) & 7 == 2 for n in (2, 3, 6, 7))
