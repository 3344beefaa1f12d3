"""One traced thread: resume it, wait for it, its registers (once per stop) and memory.

Memory goes through /proc/PID/mem with pread/pwrite (writes even reach read-only pages); the
file is reopened after exec because the old one still names the old address space.
"""
from __future__ import annotations

import ctypes
import errno
import os
import signal
import struct
import threading
from collections.abc import Callable
from typing import ClassVar

from tracee import ptrace_api as api
from tracee.stops import SignalStop, Stop, decode


_OFFSET_END = 1 << 63  # /proc/PID/mem offsets are off_t; user space lies far below


class MemoryAccessError(OSError):
    """Tracee memory could not be read or written at that address."""


class Memory:
    """A process's address space through /proc/PID/mem (shared by its threads)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._fd = os.open(f"/proc/{pid}/mem", os.O_RDWR | os.O_CLOEXEC)

    def reopen(self) -> None:
        os.close(self._fd)
        self._fd = os.open(f"/proc/{self.pid}/mem", os.O_RDWR | os.O_CLOEXEC)

    @property
    def fd(self) -> int:
        """The open /proc/PID/mem (for compiled code that reads and writes it itself)."""
        return self._fd

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def read(self, addr: int, size: int) -> bytes:
        """Exactly `size` bytes or MemoryAccessError."""
        data = self.read_upto(addr, size)
        if len(data) != size:
            raise MemoryAccessError(errno.EFAULT, f"cannot read {size} bytes at {addr:#x}")
        return data

    def read_upto(self, addr: int, size: int) -> bytes:
        """As many bytes as are readable from `addr`, up to `size`."""
        if not 0 <= addr < _OFFSET_END:
            return b""  # not a user-space address (and not an off_t for pread)
        chunks = []
        while size > 0:
            try:
                got = os.pread(self._fd, size, addr)
            except OSError:
                got = b""
            if not got:
                # Retry page by page so a partially mapped range yields its readable prefix.
                page_end = (addr | 0xFFF) + 1
                if page_end - addr < size:
                    try:
                        got = os.pread(self._fd, page_end - addr, addr)
                    except OSError:
                        got = b""
                if not got:
                    break
            chunks.append(got)
            addr += len(got)
            size -= len(got)
        return b"".join(chunks)

    def write(self, addr: int, data: bytes) -> int:
        """Bytes written; stops at the first unwritable byte."""
        if not 0 <= addr < _OFFSET_END:
            return 0
        done = 0
        while done < len(data):
            try:
                n = os.pwrite(self._fd, data[done:], addr + done)
            except OSError:
                n = 0
            if n <= 0:
                break
            done += n
        return done

    def read_u64(self, addr: int) -> int:
        return int(struct.unpack("<Q", self.read(addr, 8))[0])

    def read_uint(self, addr: int, width: int) -> int:
        return int.from_bytes(self.read(addr, width), "little")

    def read_cstring(self, addr: int, limit: int = 4096) -> bytes:
        out = b""
        while len(out) < limit:
            chunk = self.read_upto(addr + len(out), min(256, 4096 - ((addr + len(out)) & 0xFFF)))
            if not chunk:
                break
            nul = chunk.find(b"\0")
            if nul >= 0:
                return out + chunk[:nul]
            out += chunk
        return out


def kill_tasks(tasks: list[Task], later: bool = False) -> None:
    """SIGKILL the tasks' processes and reap every task: threads before their leader (a
    traced thread not yet reaped keeps its leader from being reaped). `later`: leave them
    stopped at their exit event, where the kernel has not yet torn down their memory (a
    millisecond or more for a process with threads), and reap them when the tracer is idle
    (`reap_one`): a backward search discards dozens of forks."""
    for pid in {t.pid for t in tasks}:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    graves = _graves()
    for t in sorted(tasks, key=lambda t: t.tid == t.pid):
        t.mem.close()
        if later:
            graves.append(t.tid)
        else:
            reap(t.tid)
    while len(graves) > MAX_GRAVES:
        reap_one()


MAX_GRAVES = 64  # killed tasks left to reap at most (each still holds its memory)
_tracer = threading.local()


def _graves() -> list[int]:
    """This thread's killed, unreaped tasks, threads before their leader, oldest first. Only
    the thread that traces a task can let it out of its exit stop; from another one (a
    process running several engines, as the tests do) the wait for it would never end."""
    graves: list[int] | None = getattr(_tracer, "graves", None)
    if graves is None:
        graves = _tracer.graves = []
    return graves


def reap_one() -> bool:
    """Reap the oldest task killed with `later` (from the thread that traces it); whether
    any are left."""
    graves = _graves()
    if graves:
        reap(graves.pop(0))
    return bool(graves)


def reap(tid: int) -> None:
    """Wait until killed task `tid` is gone, letting it out of any ptrace stop."""
    try:
        while True:  # a task held in a ptrace stop (its exit event) must be let go
            try:
                api.ptrace(api.Req.CONT, tid, 0, 0)
            except OSError:
                pass
            _, status = os.waitpid(tid, api.WALL)
            if os.WIFEXITED(status) or os.WIFSIGNALED(status):
                break
    except OSError:
        pass


# ptrace events that stop a task inside the syscall that caused them.
_IN_SYSCALL_EVENTS = frozenset((api.Event.FORK, api.Event.VFORK, api.Event.CLONE,
                                api.Event.EXEC, api.Event.VFORK_DONE))
_info = api.SyscallInfo()


def in_syscall(tid: int) -> bool:
    """Is the stopped task between a syscall's entry (or seccomp) stop and its exit?"""
    op = int(api.get_syscall_info(tid, _info).op)
    if op != 0:
        return op != api.SYSCALL_INFO_EXIT
    try:
        code = int.from_bytes(api.get_siginfo(tid)[8:12], "little", signed=True)
    except OSError:  # (a group stop has no siginfo)
        return False
    return code & 0xFF == signal.SIGTRAP and code >> 8 in _IN_SYSCALL_EVENTS


def _from_kernel(tid: int) -> bool:
    """The pending signal's si_code says the kernel sent it (a child changed state)."""
    return int.from_bytes(api.get_siginfo(tid)[8:12], "little", signed=True) > 0


class Task:
    """A stopped-or-running thread. Registers are fetched once per stop and cached."""

    # Stops of any task waited for so far: how much work a search cost, in stops (reverse
    # execution reports it, `monitor info reverse`).
    stops_seen: ClassVar[int] = 0

    def __init__(self, tid: int, pid: int, memory: Memory, *,
                 drop_child_signals: bool = False) -> None:
        self.tid = tid
        self.pid = pid
        self.mem = memory
        # Replay's own forks (checkpoints) send SIGCHLD to their parent when discarded; a
        # replayed task never has real children, so those kernel SIGCHLDs are dropped.
        self.drop_child_signals = drop_child_signals
        self._last_request = api.Req.CONT
        # Resumed in seccomp mode (tracee.seccomp): "to the next syscall stop" is PTRACE_CONT
        # unless the task is inside a syscall (then PTRACE_SYSCALL, to its exit).
        self.seccomp = False
        self._regs = api.UserRegs()
        self._regs_valid = False
        self._regs_dirty = False
        # Set by a session that waits for all its tasks at once (the recorder): how to get
        # this task's next stop without losing other tasks' stops.
        self.wait_hook: Callable[[], Stop] | None = None

    # -- registers --------------------------------------------------------------------------
    @property
    def regs(self) -> api.UserRegs:
        if not self._regs_valid:
            api.get_regs(self.tid, self._regs)
            self._regs_valid = True
        return self._regs

    def set_reg(self, name: str, value: int) -> None:
        setattr(self.regs, name, value & 0xFFFFFFFFFFFFFFFF)
        self._regs_dirty = True

    def set_regs_from(self, raw: bytes) -> None:
        ctypes.memmove(ctypes.addressof(self._regs), raw, api.REGS_SIZE)
        self._regs_valid = True
        self._regs_dirty = True

    def regs_bytes(self) -> bytes:
        return bytes(self.regs)

    def flush_regs(self) -> None:
        if self._regs_dirty:
            api.set_regs(self.tid, self._regs)
            self._regs_dirty = False

    def invalidate_regs(self) -> None:
        self._regs_valid = False
        self._regs_dirty = False

    # -- resuming ---------------------------------------------------------------------------
    def resume(self, request: api.Req, sig: int = 0) -> None:
        self.flush_regs()
        self._regs_valid = False
        self._last_request = request
        api.ptrace(self._kernel_request(request), self.tid, 0, sig)

    def _kernel_request(self, request: api.Req) -> api.Req:
        """PTRACE_SYSCALL as the kernel must see it: in seccomp mode, outside a syscall the
        next syscall stop is the seccomp filter's (PTRACE_CONT); inside one (its entry, or
        a clone/exec event it made) its exit is a syscall stop (PTRACE_SYSCALL)."""
        if request != api.Req.SYSCALL or not self.seccomp:
            return request
        return api.Req.SYSCALL if in_syscall(self.tid) else api.Req.CONT

    def hand_over(self, request: api.Req) -> None:
        """Compiled code (tracee.fastloop) is about to resume this task with `request` and
        wait for it itself (in seccomp mode as `resume` would): registers set here go to the
        kernel first, and are fetched again afterwards."""
        self.flush_regs()
        self._regs_valid = False
        self._last_request = request

    def stop_from(self, status: int) -> Stop:
        """The stop that compiled code waited for, as `wait()` would have returned it (the
        kernel's SIGCHLDs that `wait()` drops are dropped here too)."""
        stop = decode(self.tid, status)
        if (self.drop_child_signals and isinstance(stop, SignalStop)
                and stop.signal == signal.SIGCHLD and _from_kernel(self.tid)):
            api.ptrace(self._kernel_request(self._last_request), self.tid, 0, 0)
            return self.wait()
        return stop

    def wait(self, past_sigstop: bool = False) -> Stop:
        """Wait for this task's next stop (use only when no other task can report first).
        `past_sigstop`: a SIGSTOP (relive's own: a Ctrl-C kick or a CPU-timer tick, never
        the program's) is dropped and the task resumed as it was."""
        if self.wait_hook is not None:
            return self.wait_hook()
        while True:
            stop = decode(self.tid, api.wait_task(self.tid))
            Task.stops_seen += 1
            if not (isinstance(stop, SignalStop) and (
                    (self.drop_child_signals and stop.signal == signal.SIGCHLD
                     and _from_kernel(self.tid))
                    or (past_sigstop and stop.signal == signal.SIGSTOP))):
                return stop
            api.ptrace(self._kernel_request(self._last_request), self.tid, 0, 0)

    def kill(self) -> None:
        """SIGKILL the task's process, reap it, close its memory file (idempotent)."""
        kill_tasks([self])

    def step(self, sig: int = 0) -> Stop:
        self.resume(api.Req.SINGLESTEP, sig)
        return self.wait()
