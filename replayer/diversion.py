"""Diversions: a throwaway copy of the debugged process where gdb may change registers and
memory and run code (`print f(x)`, `call g()`, `set var x = 1`) while the replay itself
stays exactly as recorded (rr calls these diversion sessions).

The first write gdb makes that changes something forks the debugged process at the current
point (through the relive page, as a checkpoint does) and the write lands in the copy; from
then on gdb's reads, writes and resumes of that thread go to the copy. There the program runs
for real: its syscalls are executed by the kernel, not emulated (a function that prints
writes to relive's own stdout), and only the diverted thread exists. A forward resume runs
in the copy only as part of one of gdb's inferior calls: one that starts (gdb moved the pc
and built a frame below the stack pointer) or one stopped inside the called code (a
breakpoint there) that has not returned. Any other resume ends the diversion: the copy is
killed and the resume runs in the replay, which never saw the writes (a `set var` lasts
until then; gdb's console is told when more than a call's own frame is dropped). Going
backwards, restarting, killing, moving to an event or a checkpoint end it too.

Floating-point and vector registers other than x87/SSE ones (st, xmm, mxcsr, control and
status words) cannot be written.

Processes and threads the called code creates (`call system("ls")` forks, or vforks and
waits) run untraced and with rdtsc allowed: the copy does not trace forks and clones (a traced
vfork child would sit in its first stop while the copy waits for it, uninterruptibly). A copy
that does not stop within INTERRUPT_GRACE seconds of Ctrl-C is killed: the diversion ends and
the replay is back as it was.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import struct
import threading
from collections.abc import Mapping

from tracee import ptrace_api as api
from tracee import remote, thread_state
from tracee.fork import ForkFailed, fork_tracee
from tracee.stops import Exited, Killed, SignalStop, Stop as TraceeStop
from tracee.spawn import OPTIONS
from tracee.task import Task

from replayer import process_view
from replayer.control import Action, ResumeCommand, Stop, StopKind
from replayer.errors import Refused

GPRS = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11",
        "r12", "r13", "r14", "r15", "rip", "eflags", "cs", "ss", "ds", "es", "fs", "gs",
        "fs_base", "gs_base", "orig_rax")
INT3 = b"\xcc"
CALL_FRAMES = 1 << 16  # below the stack pointer: where gdb builds an inferior call's frame
MAX_RANGE_STEPS = 1_000_000
log = logging.getLogger(__name__)
PR_TSC_ENABLE = 1
INTERRUPT_GRACE = 3.0  # seconds a copy gets to stop for Ctrl-C before it is killed
_UNTRACED_CHILDREN = OPTIONS & ~(api.Opt.TRACEFORK | api.Opt.TRACEVFORK | api.Opt.TRACECLONE)


def register_values(task: Task) -> dict[str, int]:
    """A stopped task's registers, named as gdb's target.xml."""
    regs = task.regs
    out = {name: getattr(regs, name) for name in GPRS}
    out.update(process_view.fp_registers(api.get_fpregs(task.tid)))
    return out


class Diversion:
    def __init__(self, task: Task, tid: int, *, in_syscall: bool) -> None:
        """Fork `task`'s process (stopped at the current point) into the diversion's copy.
        `in_syscall`: the task is parked inside a syscall (an ENTER), where it goes back."""
        self.tid = tid  # the recorded thread gdb runs here
        self.original = register_values(task)
        saved = task.regs_bytes()
        try:
            self.copy = fork_tracee(task)
        except ForkFailed as e:  # (registers given back; no copy made)
            if in_syscall:
                thread_state.enter_syscall(task, saved)
            raise Refused(f"cannot copy the process for gdb's writes and calls: {e.reason}; "
                          "the replay is unchanged") from e
        api.ptrace(api.Req.SETOPTIONS, self.copy.tid, 0, int(_UNTRACED_CHILDREN))
        # Code runs for real here: rdtsc too (the replay makes it fault, and so would a
        # program that system() starts, in ld.so, before its first line).
        remote.checked(remote.inject_syscall(self.copy, remote.NR_PRCTL, remote.PR_SET_TSC,
                                             PR_TSC_ENABLE), "prctl(PR_SET_TSC)")
        if in_syscall:  # the fork took it out of its syscall: back in
            thread_state.enter_syscall(task, saved)
        self._interrupted = False
        self._timer: threading.Timer | None = None  # kills a copy that ignores Ctrl-C
        self._timer_lock = threading.Lock()
        self._over = False  # end() ran: the copy's pid is no longer ours
        self.dead = False  # the code run here ended the copy (exit, a fatal signal)
        self.wrote_data = False  # memory beyond the stack below rsp (a call's frame)
        # The stack pointers of gdb's inferior calls under way, innermost last, and where
        # the copy last stopped (rip, rsp).
        self._calls: list[int] = []
        self._last = (self.original["rip"], self.original["rsp"])

    def registers(self) -> dict[str, int]:
        return register_values(self.copy)

    def restored(self) -> bool:
        """gdb put the registers back as they were when the diversion began."""
        now = self.registers()
        return all(now[name] == value for name, value in self.original.items())

    def read_memory(self, addr: int, length: int) -> bytes:
        return self.copy.mem.read_upto(addr, length)

    def continues(self) -> bool:
        """Should a forward resume run here? Only for gdb's inferior calls: one starts (gdb
        moved the pc and built a frame below the stack pointer) or one is under way (stopped
        inside the called code, not yet returned). Not after `set var` or once a call
        returned: the diversion is over then."""
        return not self.dead and (self._starting_call() or bool(self._calls))

    def _starting_call(self) -> bool:
        rip, rsp = int(self.copy.regs.rip), int(self.copy.regs.rsp)
        return rip != self._last[0] and rsp < self._last[1]

    def write_memory(self, addr: int, data: bytes) -> None:
        rsp = self.original["rsp"]
        if not rsp - CALL_FRAMES <= addr < addr + len(data) <= rsp:
            self.wrote_data = True
        if self.copy.mem.write(addr, data) != len(data):
            raise Refused(f"cannot write {len(data)} bytes at {addr:#x}")

    def write_registers(self, values: Mapping[str, int]) -> None:
        """Set the registers given (the caller passes only those that change)."""
        fx = bytearray(api.get_fpregs(self.copy.tid))
        fx_changed = False
        for name, value in values.items():
            if name in GPRS:
                self.copy.set_reg(name, value)
            elif _set_fx(fx, name, value):
                fx_changed = True
            else:
                raise Refused(f"relive cannot change register {name} in a diversion")
        self.copy.flush_regs()
        if fx_changed:
            api.set_fpregs(self.copy.tid, bytes(fx))

    def interrupt(self) -> None:
        """From any thread: stop a running copy (ptrace requests must come from the engine).
        A copy that cannot stop (blocked in the kernel) is killed after INTERRUPT_GRACE."""
        self._interrupted = True
        try:
            os.kill(self.copy.pid, signal.SIGSTOP)
        except ProcessLookupError:
            return
        with self._timer_lock:
            if self._timer is None and not self._over:
                self._timer = threading.Timer(INTERRUPT_GRACE, self._kill_if_still_running)
                self._timer.daemon = True
                self._timer.start()

    def _kill_if_still_running(self) -> None:
        with self._timer_lock:  # (end() reaps the copy under this lock: its pid is still ours)
            self._timer = None
            if self._interrupted and not self._over:
                log.warning("the code gdb called does not stop for Ctrl-C: killing its copy")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.copy.pid, signal.SIGKILL)

    def _cancel_timer(self) -> None:
        with self._timer_lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def resume(self, command: ResumeCommand) -> Stop:
        """Run the copy's thread: one instruction, while in a range, or until a breakpoint,
        a signal or Ctrl-C."""
        if self._starting_call():
            self._calls.append(self.copy.regs.rsp)
        try:
            return self._run(command)
        finally:
            if not self.dead:
                rip, rsp = self.copy.regs.rip, self.copy.regs.rsp
                while self._calls and rsp > self._calls[-1]:  # returned: `ret` popped it
                    self._calls.pop()
                self._last = (rip, rsp)

    def _run(self, command: ResumeCommand) -> Stop:
        task = self.copy
        if command.action is Action.STEP:
            return self._step(command.signal) or self._stop(StopKind.STEPPED)
        if command.action is Action.RANGE_STEP and command.step_range is not None:
            start, end = command.step_range
            sig = command.signal
            for _ in range(MAX_RANGE_STEPS):
                stopped = self._step(sig)
                sig = 0
                if stopped is not None:
                    return stopped
                pc = task.regs.rip
                if not start <= pc < end or pc in command.breakpoints:
                    break
            return self._stop(StopKind.BREAKPOINT if task.regs.rip in command.breakpoints
                              else StopKind.STEPPED)
        return self._continue(command)

    def _continue(self, command: ResumeCommand) -> Stop:
        task = self.copy
        sig = command.signal
        if task.regs.rip in command.breakpoints:  # not triggered where the resume starts
            stopped = self._step(sig)
            if stopped is not None:
                return stopped
            sig = 0
        planted = {addr: task.mem.read_upto(addr, 1) for addr in command.breakpoints}
        for addr, byte in planted.items():
            if byte:
                task.mem.write(addr, INT3)
        try:
            while True:
                task.resume(api.Req.CONT, sig)
                sig = 0
                stop = task.wait()
                if isinstance(stop, SignalStop) and stop.signal == signal.SIGTRAP and (
                        task.regs.rip - 1) in planted:
                    task.set_reg("rip", task.regs.rip - 1)
                    return self._stop(StopKind.BREAKPOINT)
                found = self._ended(stop)
                if found is not None:
                    return found
                if not isinstance(stop, SignalStop):
                    continue  # an event stop (the code forked, say): let it go on
                if stop.signal not in command.pass_signals:
                    return self._stop(StopKind.SIGNAL, stop.signal)
                sig = stop.signal
        finally:
            if not self.dead:
                for addr, byte in planted.items():
                    if byte:
                        task.mem.write(addr, byte)

    def _step(self, sig: int) -> Stop | None:
        """One instruction; a stop to report if it was not a plain step."""
        stop = self.copy.step(sig)
        if isinstance(stop, SignalStop) and stop.signal == signal.SIGTRAP:
            return None
        return self._ended(stop) or (self._stop(StopKind.SIGNAL, stop.signal)
                                     if isinstance(stop, SignalStop) else None)

    def _ended(self, stop: TraceeStop) -> Stop | None:
        """The copy died (the code called exit, or a fatal signal), or Ctrl-C stopped it."""
        if isinstance(stop, (Exited, Killed)):
            self.dead = True
            return self._stop(StopKind.SIGNAL, signal.SIGKILL)
        if isinstance(stop, SignalStop) and stop.signal == signal.SIGSTOP and self._interrupted:
            self._interrupted = False
            self._cancel_timer()
            return self._stop(StopKind.INTERRUPTED, signal.SIGINT)
        return None

    def _stop(self, kind: StopKind, sig: int = signal.SIGTRAP) -> Stop:
        return Stop(kind=kind, tid=self.tid, signal=sig)

    def end(self) -> None:
        with self._timer_lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._over = True
            self.copy.kill()


def _set_fx(fx: bytearray, name: str, value: int) -> bool:
    """Write an x87/SSE register into a 512-byte FXSAVE image; False if it is not one."""
    if name.startswith("xmm") and name[3:].isdigit() and int(name[3:]) < 16:
        i = int(name[3:])
        fx[160 + 16 * i:176 + 16 * i] = value.to_bytes(16, "little")
    elif name.startswith("st") and name[2:].isdigit() and int(name[2:]) < 8:
        i = int(name[2:])
        fx[32 + 16 * i:42 + 16 * i] = value.to_bytes(10, "little")
    elif name == "mxcsr":
        struct.pack_into("<I", fx, 24, value)
    elif name in ("fctrl", "fstat"):
        struct.pack_into("<H", fx, 0 if name == "fctrl" else 2, value)
    else:
        return False
    return True
