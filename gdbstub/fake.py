"""FakeTarget: an in-memory "recording" that implements the Target protocol.

It exists for the stub's tests and as the executable reference of the Target contract: what a
breakpoint, watchpoint or history-end stop means, in which direction, at which position.

The program is a list of ``FakeStep``s, one per executed instruction, in recorded order across
threads. Position ``i`` means "about to execute step ``i``". Executing step ``i`` may write
memory (``writes``); arriving at a step with ``signal`` set reports that signal. Forward
CONTINUE walks ``i+1, i+2, ...`` and stops on arrival at a breakpoint pc, after a write into a
watched range, or at a signal; past the last step it reports HISTORY_END. Backward CONTINUE
walks ``i-1, ...`` and stops at a breakpoint pc, or *before* a step that writes a watched range;
at position 0 it reports HISTORY_BEGIN. A breakpoint at the starting pc never triggers.

Every call is recorded with the thread it ran on (``calls``), so tests can check the engine.
``monitor slow N S`` is a long command: N progress notes half a second apart (it stops early
once the progress sink says gdb gave up), then S silent seconds.
"""
from __future__ import annotations

import errno
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from debugtarget.errors import NoSuchThread, TargetError
from debugtarget.protocol import (
    Action,
    Address,
    Direction,
    FileStat,
    Library,
    LibraryList,
    ResumeCommand,
    Stop,
    StopKind,
    ThreadId,
    ThreadInfo,
    WatchKind,
)

PID = 100
CODE = 0x401000
DATA = 0x601000
STACK_TOP = 0x7FFE0000
SIGSEGV = 11


@dataclass(frozen=True, slots=True, kw_only=True)
class FakeStep:
    """One recorded instruction: which thread ran it at which pc, and what it did."""

    tid: int
    pc: Address
    writes: Mapping[Address, bytes] = field(default_factory=dict)
    signal: int = 0


def default_program() -> list[FakeStep]:
    """Two threads; step 3 writes DATA, thread 101 runs steps 5-7, step 10 faults."""
    steps = [FakeStep(tid=PID, pc=CODE + 4 * i) for i in range(5)]
    steps[3] = FakeStep(tid=PID, pc=CODE + 12, writes={DATA: b"\x2a\x00\x00\x00"})
    steps += [FakeStep(tid=PID + 1, pc=CODE + 0x100 + 4 * i) for i in range(3)]
    steps += [FakeStep(tid=PID, pc=CODE + 20 + 4 * i) for i in range(2)]
    steps.append(FakeStep(tid=PID, pc=CODE + 28, signal=SIGSEGV))
    steps.append(FakeStep(tid=PID, pc=CODE + 32))
    return steps


class FakeTarget:
    """A Target over a list of FakeSteps (see the module docstring)."""

    def __init__(self, program: Sequence[FakeStep] | None = None, *,
                 block_on_continue: bool = False) -> None:
        self.program = list(program if program is not None else default_program())
        self.position = 0
        self.block_on_continue = block_on_continue
        self.calls: list[tuple[str, int]] = []
        self.resume_started = threading.Event()
        self.commands: list[ResumeCommand] = []
        self.files: dict[str, bytes] = {"/fake/prog": b"\x7fELF" + bytes(60),
                                        "/fake/libc.so.6": b"\x7fELF libc"}
        self.killed: list[int] = []
        self.progress: Callable[[str], bool] | None = None
        self._interrupted = threading.Event()
        self._handles: dict[int, str] = {}
        self._next_handle = 3
        code = bytes((0x48, 0x89, 0xE5, 0x90)) * 0x80
        self._initial = {CODE: code, DATA: bytes(64), STACK_TOP - 0x1000: bytes(0x1000)}

    def _log(self, name: str) -> None:
        self.calls.append((name, threading.get_ident()))

    # -- state at the current position ---------------------------------------------------

    def _thread_ids(self) -> list[int]:
        seen: list[int] = []
        for step in self.program[:self.position + 1]:
            if step.tid not in seen:
                seen.append(step.tid)
        return seen

    def _stop_at(self, index: int, kind: StopKind, *, signal: int = 5, watch_addr: Address = 0,
                 watch_kind: WatchKind = WatchKind.WRITE) -> Stop:
        self.position = index
        return Stop(kind=kind, thread=ThreadId(PID, self.program[index].tid), signal=signal,
                    watch_addr=watch_addr, watch_kind=watch_kind)

    def _memory(self) -> dict[Address, bytearray]:
        regions = {base: bytearray(data) for base, data in self._initial.items()}
        for step in self.program[:self.position]:
            for addr, data in step.writes.items():
                for base, region in regions.items():
                    if base <= addr and addr + len(data) <= base + len(region):
                        region[addr - base:addr - base + len(data)] = data
        return regions

    def current_stop(self) -> Stop:
        self._log("current_stop")
        return Stop(kind=StopKind.STEPPED, thread=ThreadId(PID, self.program[self.position].tid))

    def threads(self) -> Sequence[ThreadInfo]:
        self._log("threads")
        return [ThreadInfo(id=ThreadId(PID, tid), name="prog" if tid == PID else "worker")
                for tid in self._thread_ids()]

    def registers(self, thread: ThreadId) -> Mapping[str, int]:
        self._log("registers")
        last = None
        for index, step in enumerate(self.program[:self.position + 1]):
            if step.tid == thread.tid:
                last = index
        if last is None or thread.pid != PID:
            raise NoSuchThread(f"no thread {thread}")
        rsp = STACK_TOP - 0x100 * (thread.tid - PID + 1)
        return {"rax": last, "rbx": 0x1111 * thread.tid, "rcx": 0, "rdx": 0, "rsi": 0,
                "rdi": 0, "rbp": rsp + 0x40, "rsp": rsp, "r8": 8, "r15": 0xF0F0F0F0F0F0F0F0,
                "rip": self.program[last].pc, "eflags": 0x246, "cs": 0x33, "ss": 0x2B,
                "ds": 0, "es": 0, "fs": 0, "gs": 0, "fs_base": 0x7F0000000000 + thread.tid,
                "gs_base": 0, "orig_rax": -1, "xmm0": 0x0123456789ABCDEF0011223344556677,
                "mxcsr": 0x1F80}

    def read_memory(self, thread: ThreadId, addr: Address, length: int) -> bytes:
        self._log("read_memory")
        for base, region in self._memory().items():
            if base <= addr < base + len(region):
                return bytes(region[addr - base:addr - base + length])
        return b""

    def write_registers(self, thread: ThreadId, values: Mapping[str, int]) -> None:
        self._log("write_registers")
        raise TargetError("the fake target is read-only")

    def write_memory(self, thread: ThreadId, addr: Address, data: bytes) -> None:
        self._log("write_memory")
        raise TargetError("the fake target is read-only")

    # -- moving through time -------------------------------------------------------------

    def resume(self, command: ResumeCommand) -> Stop:
        self._log("resume")
        self.commands.append(command)
        self.resume_started.set()
        try:
            if command.direction is Direction.FORWARD:
                return self._forward(command)
            return self._backward(command)
        finally:
            self._interrupted.clear()
            self.resume_started.clear()

    def _watch_hit(self, step: FakeStep,
                   command: ResumeCommand) -> tuple[Address, WatchKind] | None:
        for watch in command.watchpoints:
            if watch.kind is WatchKind.READ:
                continue
            for addr, data in step.writes.items():
                if addr < watch.addr + watch.length and watch.addr < addr + len(data):
                    return max(addr, watch.addr), watch.kind
        return None

    def _forward(self, command: ResumeCommand) -> Stop:
        if command.action is Action.CONTINUE and self.block_on_continue:
            self._interrupted.wait(timeout=30)
            return self._stop_at(self.position, StopKind.INTERRUPTED)
        index = self.position
        while index + 1 < len(self.program):
            hit = self._watch_hit(self.program[index], command)
            index += 1
            arrived = self.program[index]
            if hit is not None:
                return self._stop_at(index, StopKind.WATCHPOINT, watch_addr=hit[0],
                                     watch_kind=hit[1])
            if arrived.signal:
                return self._stop_at(index, StopKind.SIGNAL, signal=arrived.signal)
            if command.action is Action.STEP:
                return self._stop_at(index, StopKind.STEPPED)
            if command.action is Action.RANGE_STEP and command.step_range is not None:
                start, end = command.step_range
                if not start <= arrived.pc < end:
                    return self._stop_at(index, StopKind.STEPPED)
            if arrived.pc in command.breakpoints:
                return self._stop_at(index, StopKind.BREAKPOINT)
            if self._interrupted.is_set():
                return self._stop_at(index, StopKind.INTERRUPTED)
        return self._stop_at(len(self.program) - 1, StopKind.HISTORY_END)

    def _backward(self, command: ResumeCommand) -> Stop:
        index = self.position
        while index > 0:
            index -= 1
            step = self.program[index]
            hit = self._watch_hit(step, command)
            if hit is not None:
                return self._stop_at(index, StopKind.WATCHPOINT, watch_addr=hit[0],
                                     watch_kind=hit[1])
            if command.action is Action.STEP:
                return self._stop_at(index, StopKind.STEPPED)
            if step.pc in command.breakpoints:
                return self._stop_at(index, StopKind.BREAKPOINT)
        return self._stop_at(0, StopKind.HISTORY_BEGIN)

    def report_progress(self, sink: Callable[[str], bool] | None) -> None:
        self.progress = sink

    def interrupt(self) -> None:
        self.calls.append(("interrupt", threading.get_ident()))
        self._interrupted.set()

    def restart(self) -> Stop:
        self._log("restart")
        self.position = 0
        return self.current_stop()

    def kill(self, pid: int) -> None:
        self._log("kill")
        self.killed.append(pid)

    # -- files and process metadata ----------------------------------------------------

    def auxv(self, pid: int) -> bytes:
        self._log("auxv")
        entries = [(6, 4096), (9, CODE), (0, 0)]  # AT_PAGESZ, AT_ENTRY, AT_NULL
        return b"".join(k.to_bytes(8, "little") + v.to_bytes(8, "little") for k, v in entries)

    def exec_file(self, pid: int) -> str:
        self._log("exec_file")
        return "/fake/prog"

    def libraries(self, pid: int) -> LibraryList:
        self._log("libraries")
        lib = Library(name="/fake/libc.so.6", lm=0x7F0000001000, l_addr=0x7F0000100000,
                      l_ld=0x7F0000180000)
        return LibraryList(libraries=[lib], main_lm=0x7F0000000800)

    def open_file(self, pid: int, path: str) -> int:
        self._log("open_file")
        if path not in self.files:
            raise FileNotFoundError(errno.ENOENT, "not in the fake recording", path)
        handle, self._next_handle = self._next_handle, self._next_handle + 1
        self._handles[handle] = path
        return handle

    def _file(self, handle: int) -> bytes:
        if handle not in self._handles:
            raise OSError(errno.EBADF, "bad handle")
        return self.files[self._handles[handle]]

    def pread(self, handle: int, length: int, offset: int) -> bytes:
        self._log("pread")
        return self._file(handle)[offset:offset + length]

    def fstat(self, handle: int) -> FileStat:
        self._log("fstat")
        return FileStat(size=len(self._file(handle)), mode=0o100755)

    def close_file(self, handle: int) -> None:
        self._log("close_file")
        self._file(handle)
        del self._handles[handle]

    def readlink(self, pid: int, path: str) -> str:
        self._log("readlink")
        if path == f"/proc/{pid}/exe":
            return "/fake/prog"
        raise OSError(errno.EINVAL, "not a link", path)

    def siginfo(self, thread: ThreadId) -> bytes:
        self._log("siginfo")
        signal = self.program[self.position].signal
        if not signal:
            raise TargetError("the thread did not stop for a signal")
        return signal.to_bytes(4, "little") + bytes(124)

    def tls_address(self, thread: ThreadId, offset: int, lm: Address) -> Address:
        self._log("tls_address")
        return 0x7F0000000000 + thread.tid + 0x10 + offset

    def monitor(self, command: str) -> str:
        self._log("monitor")
        if command == "when":
            return f"position {self.position} of {len(self.program)}\n"
        if command.startswith("slow "):  # a long command: progress notes, then silence
            notes, silence = (float(w) for w in command.split()[1:3])
            for i in range(int(notes)):
                if self.progress is not None and not self.progress(f"note {i}\n"):
                    return "abandoned\n"
                time.sleep(0.5)
            time.sleep(silence)
            return "slow done\n"
        raise TargetError(f"unknown monitor command {command!r}; try 'monitor when'")

    @property
    def open_handles(self) -> int:
        """How many vFile handles are still open."""
        return len(self._handles)
