"""The Target protocol: what a debugger front end (gdb's stub) needs from whatever it debugs,
and its value types.

``debugtarget.replay.ReplayTarget`` implements ``Target`` on a replay; tests use
``gdbstub.fake.FakeTarget``. The stub never imports an implementation. Rules every
implementation can rely on:

- **One thread.** The stub calls every method except ``interrupt`` on the engine thread
  (``debugtarget.engine.Engine``), one call at a time, so a ptrace-based target may use ptrace in
  all of them. ``interrupt`` is called from the server thread and must only set a flag or send
  a signal, never block.
- **Linux numbers.** Signal numbers in and out are Linux's; the stub translates to gdb's.
- **Concrete threads.** Every ``ThreadId`` passed in names a thread from ``threads()`` (the
  stub resolves gdb's "any"/"all" forms first).
- **Stateless breakpoints.** gdb inserts breakpoints before every resume and removes them after
  every stop. The stub keeps that set and hands it to ``resume`` inside ``ResumeCommand``; the
  target arms them only while ``resume`` runs. Between calls, memory reads must show the
  program's own bytes, never an ``int3`` the target planted.
- **Writes are the target's call.** ``write_registers``/``write_memory`` (``G``, ``P``,
  ``M``, ``X``) may refuse with TargetError, or apply to a throwaway copy (a replay's
  diversion, which lets gdb call functions): history itself only moves through time.
- **Errors.** Raise ``TargetError`` (message for the log) when an operation fails, ``NoSuchThread``
  for an unknown thread, ``Unsupported`` for an optional operation you do not implement;
  ``OSError`` from the file methods is passed to gdb with its errno.
"""
from __future__ import annotations

import enum
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

Address = int
USER_SPACE_END = 1 << 47
"""The end of x86-64 user space (4-level paging): no program memory lies at or above it."""


@dataclass(frozen=True, slots=True, order=True)
class ThreadId:
    """A thread as gdb names it: ``pPID.TID``. In requests, -1 means "all" and 0 "any"."""

    pid: int
    tid: int

    @property
    def is_specific(self) -> bool:
        """True when both parts name one process and one thread."""
        return self.pid > 0 and self.tid > 0


ALL_THREADS = ThreadId(-1, -1)
ANY_THREAD = ThreadId(0, 0)


class Action(enum.Enum):
    """What a resume does with the thread it targets."""

    CONTINUE = "c"
    STEP = "s"  # exactly one instruction
    RANGE_STEP = "r"  # step while start <= pc < end
    STOP = "t"  # vCont's 't' (non-stop only; refused in all-stop)


class Direction(enum.Enum):
    """Forward execution, or backwards in recorded history (``bc``/``bs``)."""

    FORWARD = "forward"
    BACKWARD = "backward"


class WatchKind(enum.Enum):
    """Which accesses a watchpoint reports (Z2/Z3/Z4); values are the stop-reply keywords."""

    WRITE = "watch"
    READ = "rwatch"
    ACCESS = "awatch"


class ThreadState(Protocol):
    """What a breakpoint condition may read of the thread stopped at its breakpoint."""

    def register(self, name: str) -> int: ...

    def read_memory(self, addr: Address, length: int) -> bytes: ...


class BreakpointConditions(Protocol):
    """Conditions of some breakpoints, evaluated by the target at each hit (gdb's
    target-side conditions). A hit at an address outside `addresses` always stops."""

    addresses: frozenset[Address]

    def holds(self, pc: Address, thread: ThreadState) -> bool: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Watchpoint:
    """Stop when the program accesses [addr, addr + length) in the given way."""

    kind: WatchKind
    addr: Address
    length: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ResumeCommand:
    """One resume, in either direction, with everything it must watch for.

    ``thread`` is the thread gdb is stepping or continuing; other threads run as recorded (a
    replay cannot hold them back). STEP executes one instruction of ``thread`` (backwards: un-
    executes the last one). RANGE_STEP (forward only) keeps stepping ``thread`` while
    ``start <= pc < end`` of ``step_range`` and stops with ``StopKind.STEPPED`` when it leaves.
    CONTINUE runs until something below stops it, or to an end of history.

    Any resume ends early on arriving at one of ``breakpoints`` (code addresses, software and
    hardware alike; at one of ``conditions.addresses`` only if ``conditions.holds`` there),
    on an access to one of ``watchpoints``, or on a signal; all are valid only for this call.
    ``signal`` (forward only) is the Linux signal gdb asks to deliver, 0 for none; a replay
    may ignore it. ``pass_signals`` are Linux signals gdb does not want to stop for
    (QPassSignals): the target may run through them silently. gdb sends backwards only STEP
    and CONTINUE, never with a signal. ``exec_events``: gdb follows execs
    (it negotiated ``exec-events``), so a forward resume stops with ``StopKind.EXECD`` where
    the process execs; otherwise execs are run through silently.
    """

    action: Action
    direction: Direction
    thread: ThreadId
    signal: int = 0
    step_range: tuple[Address, Address] | None = None
    breakpoints: frozenset[Address] = frozenset()
    conditions: BreakpointConditions | None = None
    watchpoints: frozenset[Watchpoint] = frozenset()
    pass_signals: frozenset[int] = frozenset()
    exec_events: bool = False


class StopKind(enum.Enum):
    """Why a resume ended (see ``Stop``)."""

    STEPPED = "stepped"  # a STEP or RANGE_STEP finished normally (reported as SIGTRAP)
    BREAKPOINT = "breakpoint"  # arrived at an address in ResumeCommand.breakpoints
    WATCHPOINT = "watchpoint"  # a watched range was accessed; watch_addr/watch_kind say how
    SIGNAL = "signal"  # the thread received ``signal`` (e.g. SIGSEGV)
    INTERRUPTED = "interrupted"  # interrupt() was called (reported as SIGINT)
    HISTORY_BEGIN = "history-begin"  # going backwards, reached the start of the recording
    HISTORY_END = "history-end"  # going forwards, reached the end of the recording
    EXECD = "exec"  # going forwards, the process exec'd ``exec_path`` (now at its entry)
    EXITED = "exited"  # the process exited with ``exit_code`` (ends gdb's view of it)
    KILLED = "killed"  # the process was terminated by ``signal``


@dataclass(frozen=True, slots=True, kw_only=True)
class Stop:
    """Where and why execution stopped: a value, never an exception.

    Semantics gdb relies on: a BREAKPOINT stop has pc == the breakpoint address with the
    instruction not yet executed (in both directions); a breakpoint at the pc a resume starts
    from does not trigger. A forward WATCHPOINT stop is just *after* the accessing instruction;
    a backward one just *before* it. ``registers`` may carry the stopped thread's registers (as
    ``Target.registers`` would return them) to save a call; None means "ask".
    """

    kind: StopKind
    thread: ThreadId
    signal: int = 5  # Linux number; SIGTRAP unless kind is SIGNAL or KILLED
    exit_code: int = 0
    watch_addr: Address = 0
    watch_kind: WatchKind = WatchKind.WRITE
    exec_path: str = ""
    registers: Mapping[str, int] | None = None
    console: str = ""  # a note for gdb's console, shown before the stop (lines end in \n)


@dataclass(frozen=True, slots=True, kw_only=True)
class ThreadInfo:
    """A live thread at the current position."""

    id: ThreadId
    name: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Library:
    """One entry of the dynamic loader's link_map (for ``qXfer:libraries-svr4``)."""

    name: str
    lm: Address  # address of the struct link_map
    l_addr: Address  # load bias
    l_ld: Address  # address of the library's dynamic section


@dataclass(frozen=True, slots=True, kw_only=True)
class LibraryList:
    """The loader's library list. ``main_lm`` (the executable's link_map) lets gdb find the
    main program's TLS block; omit it (None) if unknown."""

    libraries: Sequence[Library] = ()
    main_lm: Address | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FileStat:
    """The fields of ``struct stat`` that gdb's File-I/O protocol carries."""

    size: int
    mode: int = 0o100444
    dev: int = 0
    ino: int = 0
    nlink: int = 1
    uid: int = 0
    gid: int = 0
    rdev: int = 0
    blksize: int = 4096
    blocks: int = 0
    atime: int = 0
    mtime: int = 0
    ctime: int = 0

    @classmethod
    def from_os(cls, st: os.stat_result) -> FileStat:
        """Copy the relevant fields of an ``os.stat``/``os.fstat`` result."""
        return cls(size=st.st_size, mode=st.st_mode, dev=st.st_dev, ino=st.st_ino,
                   nlink=st.st_nlink, uid=st.st_uid, gid=st.st_gid, rdev=st.st_rdev,
                   blksize=st.st_blksize, blocks=st.st_blocks, atime=int(st.st_atime),
                   mtime=int(st.st_mtime), ctime=int(st.st_ctime))


class Target(Protocol):
    """What the stub debugs. All methods but ``interrupt`` run on the engine thread."""

    def current_stop(self) -> Stop:
        """The stop gdb should see on connecting (``?``): where the program is now."""
        ...

    def threads(self) -> Sequence[ThreadInfo]:
        """Live threads at the current position; the first is the one to show by default."""
        ...

    def registers(self, thread: ThreadId) -> Mapping[str, int]:
        """Register values by name (``gdbstub.registers.REGISTER_NAMES``): rax..r15, rip,
        eflags, cs..gs, fs_base, gs_base, orig_rax, and if known st0-st7 (80-bit ints),
        fctrl..fop, xmm0-xmm15 (128-bit ints), mxcsr. Names left out are shown to gdb as
        unavailable."""
        ...

    def read_memory(self, thread: ThreadId, addr: Address, length: int) -> bytes:
        """Up to ``length`` bytes at ``addr`` in ``thread``'s address space, as the program
        sees them. Fewer bytes means the rest is unreadable; b"" (or TargetError) means none."""
        ...

    def write_registers(self, thread: ThreadId, values: Mapping[str, int]) -> None:
        """Set registers (names as in ``registers``; only those given). A replay keeps its
        history intact: it may apply the write to a throwaway copy (a diversion) or raise
        TargetError to refuse it."""
        ...

    def write_memory(self, thread: ThreadId, addr: Address, data: bytes) -> None:
        """Write ``data`` at ``addr`` in ``thread``'s address space (or raise TargetError),
        with the same freedom as ``write_registers``."""
        ...

    def resume(self, command: ResumeCommand) -> Stop:
        """Run forwards or backwards as ``command`` says, block until something stops it, and
        return that stop. Must return promptly after ``interrupt``."""
        ...

    def interrupt(self) -> None:
        """Called from another thread, only while ``resume`` runs: make it return soon with an
        INTERRUPTED stop (or whatever stop it reaches first). Must not block. Typical: set a
        flag the resume loop checks (clear it when resume returns) and kick a running tracee."""
        ...

    def restart(self) -> Stop:
        """Go back to the start of the recording (gdb's ``run`` in extended-remote mode)."""
        ...

    def kill(self, pid: int) -> None:
        """gdb's ``kill``. A replay usually does nothing; gdb forgets the process."""
        ...

    def auxv(self, pid: int) -> bytes:
        """The process's auxiliary vector as recorded (``/proc/PID/auxv`` bytes)."""
        ...

    def exec_file(self, pid: int) -> str:
        """Path gdb should open (through ``open_file``) to read the executable's symbols."""
        ...

    def libraries(self, pid: int) -> LibraryList:
        """The dynamic loader's current library list (raise Unsupported to make gdb walk the
        loader's data in memory instead)."""
        ...

    def open_file(self, pid: int, path: str) -> int:
        """Open ``path`` read-only as process ``pid`` (0: the stub's own view) would see it,
        returning a handle. A replay serves its trace's copies. Raise OSError(errno) if not."""
        ...

    def pread(self, handle: int, length: int, offset: int) -> bytes:
        """Up to ``length`` bytes at ``offset`` of an open handle (b"" at end of file)."""
        ...

    def fstat(self, handle: int) -> FileStat:
        """Metadata of an open handle."""
        ...

    def close_file(self, handle: int) -> None:
        """Forget a handle."""
        ...

    def readlink(self, pid: int, path: str) -> str:
        """Target of a symbolic link as process ``pid`` would see it (OSError if none)."""
        ...

    def siginfo(self, thread: ThreadId) -> bytes:
        """The 128-byte ``siginfo_t`` of the signal ``thread`` stopped with (TargetError if
        it did not stop for a signal)."""
        ...

    def tls_address(self, thread: ThreadId, offset: int, lm: Address) -> Address:
        """Address of ``offset`` in the TLS block of the module whose link_map is ``lm``
        (``qGetTLSAddr``; gdb 13 needs it for ``errno`` and ``__thread``)."""
        ...

    def monitor(self, command: str) -> str:
        """Run a ``monitor`` command; return its output. TargetError for a bad command."""
        ...

    def report_progress(self, sink: Callable[[str], bool] | None) -> None:
        """Where to send notes on the progress of a long ``monitor`` command or resume (gdb
        shows them as console output, lines ending in \\n); None: nowhere. The stub sets it
        before such a request and clears it after; the target calls it on the engine thread,
        only while the request runs, and need not call it at all. The sink returns False
        once gdb has given up waiting for a monitor command (Ctrl-C): the target may then
        stop the command early; its answer is not sent."""
        ...
