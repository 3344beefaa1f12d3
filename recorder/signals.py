"""Recording signals so that replay delivers each one at the same point with the same frame.

Where a signal is delivered decides whether replay can find the point again without a PMU:
  - "sync": a fault (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP) re-happens by itself in replay
    at the same instruction;
  - "after_syscall": the signal was pending when a syscall returned (kill/raise, or it
    interrupted a blocking call): replay delivers it right after that SYSCALL event;
  - "before_syscall": an asynchronous signal that arrived while the thread ran user code is
    held back and delivered just before the thread's next syscall instead (the kernel may
    deliver late; the program cannot tell);
  - "user": a thread that makes no syscall within HOLD_BUDGET is interrupted and gets the held
    signal at a place replay finds fast: where it is, or a little later at a cold return
    address on its stack (recorder.preempt, as for a preemption); the event stores all
    registers and a digest of writable memory, and replay stops at that pc until both match
    (one trap per execution of the pc since the thread's last event; exact or a divergence).
    Where no place is cold (an interpreter's eval loop), the thread's state is recorded as a
    point replay jumps to (a PREEMPT event, recorder.jump_points) and the signal is delivered
    there: "preempted".
rdtsc/rdtscp traps (PR_SET_TSC) are emulated here too (cpuid traps in
recorder.cpuid_record). Signal frames are recorded with a
guessed size through `record_remote_writable`, clipped at flagged mappings, marked
conservative.
"""
from __future__ import annotations

import errno
import logging
import os
import signal
import struct
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from recorder.preempt import point_info
from tracee import ptrace_api as api
from tracee import rdrand
from tracee.address_space import AddressSpace, Flag, read_proc_maps
from tracee.digest import KERNEL_MAPS
from tracee.stops import EventStop, SignalStop, Stop, SyscallStop
from tracefile.records import Kind, MemoryWrite

if TYPE_CHECKING:
    from recorder.session import RecordedTask, Recorder

log = logging.getLogger(__name__)

SYNC_SIGNALS = {signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGTRAP,
                signal.SIGSYS}
DEFAULT_IGNORE = {signal.SIGCHLD, signal.SIGURG, signal.SIGWINCH, signal.SIGCONT}
STOP_SIGNALS = {signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU}
HOLD_BUDGET = 0.002
FRAME_GUESS = 8192          # rt_sigframe + xsave area, generously
SAME_STACK_LIMIT = 1 << 16
RDTSC, RDTSCP = b"\x0f\x31", b"\x0f\x01\xf9"


def si_signo(siginfo: bytes) -> int:
    return int(struct.unpack_from("<i", siginfo, 0)[0])


def si_code(siginfo: bytes) -> int:
    return int(struct.unpack_from("<i", siginfo, 8)[0])


def is_fault(sig: int, siginfo: bytes) -> bool:
    """A synchronous signal the kernel raised (a fault, a trap: it recurs in replay by
    itself), not one sent by kill with the same number."""
    return sig in SYNC_SIGNALS and si_code(siginfo) > 0


def _signal_masks(tid: int) -> dict[str, int]:
    """The signal masks of /proc/TID/status (SigPnd, ShdPnd, SigBlk, SigIgn, SigCgt)."""
    masks = {}
    with open(f"/proc/{tid}/status", errors="surrogateescape") as f:  # Name: is any bytes
        for line in f:
            if line.startswith(("SigPnd:", "ShdPnd:", "SigBlk:", "SigIgn:", "SigCgt:")):
                key, value = line.split(":")
                masks[key] = int(value, 16)
    return masks


def _how(masks: dict[str, int], sig: int) -> str:
    bit = 1 << (sig - 1)
    if masks.get("SigCgt", 0) & bit:
        return "caught"
    if masks.get("SigIgn", 0) & bit:
        return "ignored"
    return "default"


def disposition(pid: int, sig: int) -> str:
    """'caught', 'ignored' or 'default' for signal `sig` of process `pid`."""
    return _how(_signal_masks(pid), sig)


def pending_with_effect(tid: int) -> bool:
    """Whether thread `tid` has a signal pending (to it or its process), not blocked, that
    will be delivered rather than dropped (see `has_no_effect`)."""
    masks = _signal_masks(tid)
    pending = (masks.get("SigPnd", 0) | masks.get("ShdPnd", 0)) & ~masks.get("SigBlk", 0)
    return any(pending & 1 << (sig - 1) and not has_no_effect(_how(masks, sig), sig)
               for sig in range(1, 65))


def has_no_effect(how: str, sig: int) -> bool:
    """Whether an asynchronous signal with this disposition is dropped rather than delivered
    (ignored; or by default ignored, or a stop signal, which relive does not let stop the
    program): nothing runs, and a call it interrupted is restarted by the kernel."""
    return how == "ignored" or (how == "default" and sig in DEFAULT_IGNORE | STOP_SIGNALS)


def record_remote_writable(pid: int, space: AddressSpace, addr: int, size: int,
                           read: Callable[[int, int], bytes]) -> MemoryWrite | None:
    """The one path for guessed-size writes: clip at unmapped/read-only bytes and at every
    flagged-mapping boundary, read what remains, mark it conservative."""
    view = AddressSpace([m for m in read_proc_maps(pid) if m.path not in KERNEL_MAPS])
    for m in space.flagged(Flag.RELIVE_PAGE | Flag.SCRATCH | Flag.GUARD | Flag.SYSBUF):
        view.map(m)
    n = view.writable_extent(addr, size)
    if n <= 0:
        return None
    data = read(addr, n)
    return MemoryWrite(addr=addr, data=data, conservative=True) if data else None


class SignalRecorder:
    def __init__(self, recorder: Recorder) -> None:
        self.rec = recorder
        self._held_since: dict[int, float] = {}
        self._interrupted: set[int] = set()

    def holding(self) -> bool:
        """Does any task hold a signal back (then stops are polled with a deadline)?"""
        return bool(self._held_since)

    # -- waiting, with a deadline for held signals ------------------------------------------
    def wait_any(self) -> tuple[int, int]:
        if not self._held_since:
            return api.wait_any()
        while True:
            tid, status = os.waitpid(-1, api.WALL | os.WNOHANG)
            if tid:
                return tid, status
            now = time.monotonic()
            for t_id, since in self._held_since.items():
                if now - since > HOLD_BUDGET and t_id not in self._interrupted:
                    try:
                        api.ptrace(api.Req.INTERRUPT, t_id)
                    except api.PtraceError as e:  # it is exiting: its exit stop comes next
                        if e.errno != errno.ESRCH:
                            raise
                    self._interrupted.add(t_id)
            time.sleep(0.0005)

    # -- stops --------------------------------------------------------------------------------
    def on_signal_stop(self, t: RecordedTask, sig: int) -> None:
        task = t.task
        if sig == signal.SIGSEGV and (self._emulate_tsc(t) or self.rec.cpuid.emulate(t)):
            return
        if sig == signal.SIGILL and self._emulate_rdrand(t):
            return
        siginfo = api.get_siginfo(task.tid)
        if is_fault(sig, siginfo):
            self.deliver(t, sig, siginfo, {"where": "sync"})
        elif t.exit_at == (task.regs.rip, api.signed(task.regs.rax)):  # (rip alone: a loop's?)
            self.deliver(t, sig, siginfo, {"where": "after_syscall", "after": t.last_event})
        else:
            self._hold(t, sig, siginfo)
            self.rec.resume(t, mid_user=True)

    def _hold(self, t: RecordedTask, sig: int, siginfo: bytes) -> None:
        if sig < signal.SIGRTMIN and any(si_signo(h) == sig for h in t.held):
            return  # standard signals do not queue: one pending instance
        t.held.append(siginfo)
        self._held_since.setdefault(t.task.tid, time.monotonic())

    def absorb(self, t: RecordedTask, stop: Stop) -> bool:
        """While the recorder runs `t` on to a place of its choosing (recorder.preempt): hold
        an asynchronous signal that arrives (True: resume the thread and wait on). A fault,
        a trap, an rdtsc or rdrand is an exact point of its own and is not absorbed."""
        if not isinstance(stop, SignalStop):
            return False
        siginfo = api.get_siginfo(t.task.tid)
        if is_fault(stop.signal, siginfo):
            return False
        self._hold(t, stop.signal, siginfo)
        return True

    def on_interrupt(self, t: RecordedTask) -> None:
        """A PTRACE_INTERRUPT stop: deliver a held signal here if the thread still holds one."""
        self._interrupted.discard(t.task.tid)
        if not t.held:
            if self.rec.queue.should_switch() and t is self.rec.queue.current:
                self.rec.preempter.on_interrupt(t)
            else:
                self.rec.resume(t)
            return
        preempter = self.rec.preempter
        # (a hot place rarer than the pc too, as a signal has always been delivered: a
        # profiling timer over C code lands at a block's return, which replay runs to)
        stop, cold = preempter.to_colder_place(t, hot_ok=True)
        if stop is not None:  # an exact point came first (a syscall: delivered before it)
            self.rec.handle(t, stop)
            return
        jump = None if cold else preempter.jump_here(t)
        if jump is None:
            self._raise_held(t, dict(point_info(t), where="user"))
            return
        # No cold place: replay jumps to this point (a PREEMPT event with the state) and
        # delivers the signal where that leaves the thread.
        info, writes = jump
        self.rec.emit(t, Kind.PREEMPT, regs=t.task.regs_bytes(), info=info, writes=writes)
        preempter.made_syscall(t)
        self._raise_held(t, {"where": "preempted", "after": t.last_event})

    def deliver_held_before_syscall(self, t: RecordedTask) -> None:
        """At a syscall entry with a held signal: skip the call, rewind to its `syscall`
        instruction, deliver the signal there; the call runs again after the handler."""
        task = t.task
        entry_regs = task.regs_bytes()
        task.set_reg("orig_rax", -1)
        task.resume(api.Req.SYSCALL)
        stop = self._wait(t, api.Req.SYSCALL)
        if not isinstance(stop, SyscallStop):
            self.rec.handle(t, stop)
            return
        task.set_regs_from(entry_regs)
        task.set_reg("rip", task.regs.rip - 2)
        task.set_reg("rax", task.regs.orig_rax)
        task.set_reg("orig_rax", -1)
        self._raise_held(t, {"where": "before_syscall", "after": t.last_event})

    def _raise_held(self, t: RecordedTask, info: dict[str, object]) -> None:
        task = t.task
        siginfo = t.held.pop(0)
        if not t.held:
            self._held_since.pop(task.tid, None)
        sig = si_signo(siginfo)
        api.tgkill(task.pid, task.tid, sig)
        task.resume(api.Req.SYSCALL)
        stop = self._wait(t, api.Req.SYSCALL)
        if not (isinstance(stop, SignalStop) and stop.signal == sig):
            self.rec.handle(t, stop)
            return
        if info.get("rip") is not None and info["rip"] != task.regs.rip:
            # (a safeguard: the point recorded must be where the signal is delivered)
            log.warning("task %d: %s came at %#x, not at the point chosen (%#x)",
                        task.tid, signal.Signals(sig).name, task.regs.rip, info["rip"])
            info = dict(point_info(t), where="user")
        api.set_siginfo(task.tid, siginfo)
        self.deliver(t, sig, siginfo, info)

    def _wait(self, t: RecordedTask, request: api.Req) -> Stop:
        """The task's next stop, skipping a PTRACE_INTERRUPT stop that was sent for a held
        signal already delivered another way (the request raced with a syscall stop)."""
        while True:
            stop = self.rec.wait_for(t)
            if not (isinstance(stop, EventStop) and stop.event == api.Event.STOP):
                return stop
            self._interrupted.discard(t.task.tid)
            t.task.resume(request)

    # -- delivery -----------------------------------------------------------------------------
    def deliver(self, t: RecordedTask, sig: int, siginfo: bytes, info: dict[str, object]) -> None:
        """At a signal-delivery-stop: record the SIGNAL event and let the kernel deliver it."""
        task = t.task
        t.exit_at = None
        regs_before = task.regs_bytes()
        how = disposition(task.pid, sig)
        if has_no_effect(how, sig):
            if info["where"] == "sync":  # the kernel forces a fault's default action
                how = "default"
            else:
                self.rec.resume(t, mid_user=info["where"] != "after_syscall")
                return
        event_info = dict(info, siginfo=siginfo.hex())
        if how == "default":
            event_info["fatal"] = True
            self.rec.emit(t, Kind.SIGNAL, nr=sig, regs=regs_before, info=event_info)
            task.resume(api.Req.CONT, sig)
            return
        old_rsp = task.regs.rsp
        task.resume(api.Req.SINGLESTEP, sig)
        stop = self.rec.wait_for(t)
        if not (isinstance(stop, SignalStop) and stop.signal == signal.SIGTRAP):
            self.rec.emit(t, Kind.SIGNAL, nr=sig, regs=regs_before, info=event_info)
            self.rec.handle(t, stop)
            return
        new_rsp = task.regs.rsp
        same_stack = 0 < old_rsp - new_rsp <= SAME_STACK_LIMIT
        size = old_rsp - new_rsp if same_stack else FRAME_GUESS
        frame = record_remote_writable(task.pid, t.space, new_rsp, size, task.mem.read_upto)
        event_info["handler_regs"] = task.regs_bytes().hex()
        self.rec.emit(t, Kind.SIGNAL, nr=sig, regs=regs_before,
                      writes=(frame,) if frame else (), info=event_info)
        self.rec.resume(t)

    def _emulate_rdrand(self, t: RecordedTask) -> bool:
        """A patched rdrand/rdseed (recorder.code_patches): give it a random number."""
        task = t.task
        rip = task.regs.rip
        site = self.rec.effects.patcher.site_at(t.space, rip)
        if site is None or task.mem.read_upto(rip, 2) != rdrand.UD2:
            return False
        t.exit_at = None
        regs = task.regs_bytes()
        value = rdrand.new_value(site.width)
        rdrand.emulate(task, site.reg, site.width, len(site.code), value)
        signed = api.signed(value)  # what SQLite stores
        self.rec.emit(t, Kind.RDRAND, result=signed, regs=regs,
                      info={"insn": site.insn, "reg": site.reg, "width": site.width,
                            "len": len(site.code)})
        self.rec.resume(t)
        return True

    def _emulate_tsc(self, t: RecordedTask) -> bool:
        task = t.task
        rip = task.regs.rip
        code = task.mem.read_upto(rip, 3)
        if code.startswith(RDTSC):
            length, aux = 2, None
        elif code == RDTSCP:  # ecx: the CPU number (node 0), one the program may run on
            length, aux = 3, self.rec.cpus.cpu_of(t.task.tid)
        else:
            return False
        t.exit_at = None
        regs = task.regs_bytes()
        value = api.read_tsc()
        task.set_reg("rax", value & 0xFFFFFFFF)
        task.set_reg("rdx", value >> 32)
        if aux is not None:
            task.set_reg("rcx", aux)
        task.set_reg("rip", rip + length)
        self.rec.emit(t, Kind.RDTSC, result=value, regs=regs,
                      info={"len": length, "aux": aux} if aux is not None else {"len": length})
        self.rec.resume(t)
        return True
