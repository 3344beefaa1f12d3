"""What each gdb request means: typed request in, Target calls, reply payloads out.

A ``Session`` holds the state of one gdb connection (negotiated features, selected threads,
inserted breakpoints, open vFile handles, the last stop) and turns each ``Request`` into a
``Reply``. It does no I/O and knows no wire format beyond reply payloads: the server frames
them. ``handle`` must run on the engine thread, because it calls the Target; the server runs
it there with ``engine.call(session.handle, request)``. Only ``request_interrupt`` and
``discard_interrupt`` may be called from another thread.

Policies worth knowing:
- Writes (``G``, ``P``, ``M``, ``X``) go to the target, which refuses them (``E01``) or
  applies them to a throwaway copy (relive's diversions). An empty ``X`` probe is accepted
  without asking it, and so is gdb's reset of orig_rax to -1 after ``run``.
- Target errors become ``E01``, ``Unsupported`` becomes the empty reply; the session survives
  both. A failing resume also prints the error on gdb's console (``O`` packets), and so does
  a failing ``monitor`` command, which then answers ``OK`` (gdb 13 would otherwise print only
  "Protocol error with Rcmd").
- Stop replies report breakpoints as ``swbreak``/``hwbreak`` only if gdb offered them, and
  history ends as ``replaylog:begin``/``replaylog:end``.
- Progress: while a ``monitor`` command or a resume runs, the target may report progress
  through ``console`` (set by the server: console output sent before the reply).
- Ctrl-C: ``request_interrupt`` forwards to ``Target.interrupt`` while ``resume`` runs; if
  the resume request has not reached the target yet, it is answered as interrupted without
  moving. The lock makes "running" and "interrupt" one atomic decision.
"""
from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final

from gdbstub import replies
from gdbstub.breakpoints import BreakpointTable
from gdbstub.codec import PACKET_SIZE
from debugtarget.errors import NoSuchThread, TargetError, Unsupported
from gdbstub.errors import BadRequest
from gdbstub.registers import (
    REGISTERS,
    REGNUM,
    TARGET_XML,
    encode_register,
    encode_registers,
    values_from_bytes,
)
from gdbstub.replies import EMPTY, ERROR, OK, StopReplyOptions
from gdbstub.requests import (
    Detach,
    EnableExtendedMode,
    GetTLSAddr,
    MAX_MEMORY_READ,
    InsertBreakpoint,
    Kill,
    MustReplyEmpty,
    Offsets,
    PassSignals,
    QueryAttached,
    QueryCurrentThread,
    QuerySupported,
    Rcmd,
    ReadMemory,
    ReadRegister,
    ReadRegisters,
    RemoveBreakpoint,
    Request,
    Resume,
    Run,
    SetThread,
    StartNoAck,
    StopReason,
    Symbol,
    ThreadAlive,
    ThreadInfoFirst,
    ThreadInfoNext,
    TStatus,
    Unknown,
    VContQuery,
    WriteMemory,
    WriteRegister,
    WriteRegisters,
    XferRead,
)
from gdbstub.signals import from_gdb
from gdbstub.syntax import format_thread_id, hex_int
from debugtarget.protocol import (
    ANY_THREAD,
    Action,
    Direction,
    ResumeCommand,
    Stop,
    StopKind,
    Target,
    ThreadId,
)
from gdbstub.vfile import HostIO
from tracefile.errors import ReliveError

log = logging.getLogger(__name__)

SUPPORTED: Final = (
    b"PacketSize=%x;QStartNoAckMode+;qXfer:features:read+;qXfer:auxv:read+;"
    b"qXfer:exec-file:read+;qXfer:libraries-svr4:read+;qXfer:threads:read+;"
    b"qXfer:siginfo:read+;QPassSignals+;multiprocess+;swbreak+;hwbreak+;vContSupported+;"
    b"exec-events+;ReverseStep+;ReverseContinue+;ConditionalBreakpoints+" % PACKET_SIZE)
VCONT_ACTIONS: Final = b"vCont;c;C;s;S;r"


@dataclass(frozen=True, slots=True)
class Reply:
    """Payloads to send in order (none for ``k``), and what the connection does next."""

    packets: tuple[bytes, ...]
    no_ack_after: bool = False  # switch the codec to no-ack mode once these are sent
    close_after: bool = False  # end the connection once these are sent

    @classmethod
    def of(cls, payload: bytes) -> Reply:
        """A reply of one packet."""
        return cls((payload,))


class Session:
    """One gdb connection's view of the target."""

    def __init__(self, target: Target, *, debug_registers: int = 4) -> None:
        self._target = target
        self._lock = threading.Lock()
        self._running = False
        self._interrupt_pending = False
        self._options = StopReplyOptions()
        self._extended = False
        self._last_stop: Stop | None = None
        self._general = ANY_THREAD
        self._continue = ANY_THREAD
        self._breakpoints = BreakpointTable(debug_registers=debug_registers)
        self._pass_signals: frozenset[int] = frozenset()
        self._xfer_cache: dict[tuple[str, str], bytes] = {}
        self._thread_chunks: list[bytes] = []
        self._hostio = HostIO(target)
        # Where the target's progress notes go while a long request runs (the server sets
        # it: they become console output packets ahead of the reply; False once gdb gave
        # up waiting); called on the engine thread.
        self.console: Callable[[str], bool] | None = None

    # -- called from the server thread -------------------------------------------------

    def request_interrupt(self) -> None:
        """Ctrl-C while a resume request is outstanding: stop it, or stop it before it starts."""
        with self._lock:
            if self._running:
                self._target.interrupt()
            else:
                self._interrupt_pending = True

    def discard_interrupt(self) -> None:
        """Forget a Ctrl-C that arrived after the resume it aimed at had already stopped."""
        with self._lock:
            self._interrupt_pending = False

    # -- called on the engine thread ---------------------------------------------------

    def close(self) -> None:
        """Release what this connection holds in the target (open vFile handles)."""
        self._hostio.close_all()

    def handle(self, request: Request) -> Reply:
        """The reply to one request. Raises only for bugs (in the stub or the target)."""
        try:
            return self._dispatch(request)
        except Unsupported as exc:
            log.debug("%s: unsupported by the target: %s", type(request).__name__, exc)
            return Reply.of(EMPTY)
        except (TargetError, BadRequest) as exc:
            log.info("%s failed: %s", type(request).__name__, exc)
            return Reply.of(ERROR)
        except ReliveError as exc:  # the target's own failure, told in its words, not a bug
            log.warning("%s failed: %s", type(request).__name__, exc)
            return Reply.of(ERROR)

    def _dispatch(self, request: Request) -> Reply:
        match request:
            case QuerySupported(features=features):
                self._options = StopReplyOptions(
                    multiprocess=features.get("multiprocess") == "+",
                    swbreak=features.get("swbreak") == "+",
                    hwbreak=features.get("hwbreak") == "+",
                    exec_events=features.get("exec-events") == "+")
                return Reply.of(SUPPORTED)
            case StartNoAck():
                return Reply((OK,), no_ack_after=True)
            case EnableExtendedMode():
                self._extended = True
                return Reply.of(OK)
            case SetThread(op=op, thread=thread):
                self._resolve(thread)  # NoSuchThread -> E01
                if op == "g":
                    self._general = thread
                else:
                    self._continue = thread
                return Reply.of(OK)
            case ReadRegisters():
                return Reply.of(encode_registers(self._target.registers(self._reads_thread())))
            case ReadRegister(regnum=regnum):
                if regnum >= len(REGISTERS):
                    return Reply.of(ERROR)
                regs = self._target.registers(self._reads_thread())
                return Reply.of(encode_register(regnum, regs))
            case WriteRegister(regnum=regnum, data=data) if (
                    regnum == REGNUM["orig_rax"] and data == b"\xff" * 8):
                # gdb resets orig_rax to -1 after `run` so the kernel will not restart a
                # syscall; in a replay that is already the case: accept it as a no-op.
                return Reply.of(OK)
            case WriteRegister(regnum=regnum, data=data):
                if regnum >= len(REGISTERS) or len(data) != REGISTERS[regnum].size:
                    return Reply.of(ERROR)
                value = int.from_bytes(data, "little")
                self._target.write_registers(self._reads_thread(),
                                             {REGISTERS[regnum].name: value})
                return Reply.of(OK)
            case WriteRegisters(data=data):
                try:
                    values = values_from_bytes(data)
                except ValueError:
                    return Reply.of(ERROR)
                self._target.write_registers(self._reads_thread(), values)
                return Reply.of(OK)
            case ReadMemory(addr=addr, length=length):
                return Reply.of(self._read_memory(addr, length))
            case WriteMemory(addr=addr, data=data):
                if data:
                    self._target.write_memory(self._reads_thread(), addr, data)
                return Reply.of(OK)
            case InsertBreakpoint(type=kind, addr=addr, length=length, conditions=conds):
                inserted = self._breakpoints.insert(kind, addr, length, conds)
                return Reply.of(OK if inserted else ERROR)
            case RemoveBreakpoint(type=kind, addr=addr, length=length):
                self._breakpoints.remove(kind, addr, length)
                return Reply.of(OK)
            case Resume():
                return self._resume(request)
            case VContQuery():
                return Reply.of(VCONT_ACTIONS)
            case StopReason():
                return Reply.of(self._stop_reply(self._stop()))
            case XferRead():
                return Reply.of(self._xfer(request))
            case QueryAttached():
                return Reply.of(b"1")
            case QueryCurrentThread():
                thread = self._reads_thread()
                return Reply.of(b"QC" + format_thread_id(thread, self._options.multiprocess))
            case ThreadInfoFirst():
                ids = [format_thread_id(t.id, self._options.multiprocess)
                       for t in self._target.threads()]
                first, *self._thread_chunks = replies.thread_list_chunks(ids)
                return Reply.of(first)
            case ThreadInfoNext():
                return Reply.of(self._thread_chunks.pop(0) if self._thread_chunks else b"l")
            case ThreadAlive(thread=thread):
                self._resolve(thread)
                return Reply.of(OK)
            case Symbol():
                return Reply.of(OK)
            case GetTLSAddr(thread=thread, offset=offset, lm=lm):
                addr = self._target.tls_address(self._resolve(thread), offset, lm)
                return Reply.of(b"%x" % addr)
            case Rcmd(command=command):
                return self._monitor(command)
            case PassSignals(signals=signals):
                linux = (from_gdb(s) for s in signals)
                self._pass_signals = frozenset(s for s in linux if s)
                return Reply.of(OK)
            case Kill(pid=pid, expects_reply=expects_reply):
                self._target.kill(pid if pid is not None else self._stop().thread.pid)
                return Reply((OK,)) if expects_reply else Reply((), close_after=True)
            case Detach():
                return Reply((OK,), close_after=not self._extended)
            case Run():
                self._general = self._continue = ANY_THREAD
                return Reply.of(self._report(self._target.restart()))
            case MustReplyEmpty() | Offsets() | TStatus() | Unknown():
                return Reply.of(EMPTY)
            case _:  # the vFile requests: Host I/O has its own module
                return Reply.of(self._hostio.handle(request))

    # -- threads -------------------------------------------------------------------------

    def _stop(self) -> Stop:
        """The last stop reported (on first use: where the target is when gdb connects)."""
        if self._last_stop is None:
            self._last_stop = self._target.current_stop()
        return self._last_stop

    def _resolve(self, thread: ThreadId) -> ThreadId:
        """A concrete thread for gdb's id forms (-1 all, 0 any, pPID alone, bare TID)."""
        current = self._stop().thread
        if thread.pid in (0, -1) and thread.tid in (0, -1):
            return current
        if thread.tid in (0, -1) and current.pid == thread.pid:
            return current
        for info in self._target.threads():
            tid = info.id
            if thread.tid in (0, -1) and tid.pid == thread.pid:
                return tid
            if tid.tid == thread.tid and thread.pid in (0, -1, tid.pid):
                return tid
        raise NoSuchThread(f"no thread {thread.pid}.{thread.tid} at this point of the replay")

    def _reads_thread(self) -> ThreadId:
        return self._resolve(self._general)

    # -- memory and documents ------------------------------------------------------------

    def _read_memory(self, addr: int, length: int) -> bytes:
        length = min(length, MAX_MEMORY_READ)
        if length == 0:
            return EMPTY
        data = self._target.read_memory(self._reads_thread(), addr, length)
        if not data:
            return ERROR
        return data[:length].hex().encode()

    def _xfer(self, request: XferRead) -> bytes:
        key = (request.object, request.annex)
        document = self._xfer_cache.get(key)
        if request.offset == 0 or document is None:
            document = self._document(request.object, request.annex)
            self._xfer_cache[key] = document
        return replies.xfer_chunk(document, request.offset, request.length)

    def _document(self, obj: str, annex: str) -> bytes:
        pid = self._reads_thread().pid
        match obj:
            case "features":
                if annex != "target.xml":
                    raise TargetError(f"no target description {annex!r}")
                return TARGET_XML
            case "threads":
                return replies.threads_xml(self._target.threads(), self._options.multiprocess)
            case "auxv":
                return self._target.auxv(pid)
            case "exec-file":
                if annex:
                    pid = hex_int(annex.encode(), b"qXfer:exec-file", "pid")
                return os.fsencode(self._target.exec_file(pid))
            case "libraries-svr4":
                return replies.libraries_svr4_xml(self._target.libraries(pid))
            case "siginfo":
                return self._target.siginfo(self._reads_thread())
        raise Unsupported(f"qXfer object {obj!r}")

    # -- running ---------------------------------------------------------------------------

    def _resume(self, request: Resume) -> Reply:
        primary = request.primary
        if request.addr is not None or primary.action is Action.STOP:
            log.info("refused %s: a replay cannot resume at an address or stop threads",
                     request)
            return Reply.of(ERROR)
        target_thread = primary.thread if primary.thread is not None else self._continue
        signal = from_gdb(primary.signal) or 0
        command = ResumeCommand(
            action=primary.action, direction=request.direction,
            thread=self._resolve(target_thread),
            signal=signal if request.direction is Direction.FORWARD else 0,
            step_range=primary.step_range, breakpoints=self._breakpoints.breakpoints,
            conditions=self._breakpoints.conditions,
            watchpoints=self._breakpoints.watchpoints, pass_signals=self._pass_signals,
            exec_events=self._options.exec_events)
        with self._lock:
            interrupted = self._interrupt_pending
            self._interrupt_pending = False
            self._running = not interrupted
        if interrupted:
            return Reply.of(self._report(Stop(kind=StopKind.INTERRUPTED,
                                              thread=self._stop().thread)))
        try:
            with self._progress():
                stop = self._target.resume(command)
        except TargetError as exc:  # refused (the target is as it was): one line
            log.warning("%s", exc)
            return Reply((*replies.console_output(f"relive: {exc}\n"), ERROR))
        except Exception as exc:
            log.exception("resume failed: %s", command)
            return Reply((*replies.console_output(f"relive: {exc}\n"), ERROR))
        finally:
            with self._lock:
                self._running = False
        if stop.console:
            return Reply((*replies.console_output(stop.console), self._report(stop)))
        return Reply.of(self._report(stop))

    def _report(self, stop: Stop) -> bytes:
        """Record a new stop (forgetting per-position caches) and build its reply."""
        self._last_stop = stop
        self._general = ANY_THREAD
        self._xfer_cache.clear()
        self._thread_chunks = []
        return self._stop_reply(stop)

    def _stop_reply(self, stop: Stop) -> bytes:
        registers = stop.registers
        if registers is None and stop.kind not in (StopKind.EXITED, StopKind.KILLED):
            try:
                registers = self._target.registers(stop.thread)
            except TargetError as exc:
                log.info("no registers to expedite for %s: %s", stop.thread, exc)
        reason = b"swbreak"
        if stop.kind is StopKind.BREAKPOINT and registers and "rip" in registers:
            reason = self._breakpoints.stop_reason(registers["rip"])
        return replies.stop_reply(stop, registers, self._options, reason)

    def _monitor(self, command: str) -> Reply:
        # gdb 13 turns an E reply to qRcmd into "Protocol error with Rcmd", hiding the
        # message; so a failing command prints its error and still answers OK.
        try:
            with self._progress():
                output = self._target.monitor(command)
        except Unsupported:
            raise
        except TargetError as exc:
            output = f"relive: {exc}\n"
        return Reply((*replies.console_output(output), OK))

    @contextmanager
    def _progress(self) -> Iterator[None]:
        """Let the target report progress to gdb's console while the block runs."""
        if self.console is None:
            yield
            return
        self._target.report_progress(self.console)
        try:
            yield
        finally:
            self._target.report_progress(None)
