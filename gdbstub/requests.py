"""gdb's packets, parsed once into typed requests.

``parse_request(payload)`` turns the payload of one packet (already unframed and unescaped by
the codec) into a frozen dataclass, so the session can ``match`` on meaning instead of slicing
strings. Numbers are hex on the wire and ints here; hex-encoded strings (qRcmd, vFile paths,
vRun) are decoded; signal numbers stay in gdb's numbering (the session translates).

A packet of a known kind whose arguments do not parse raises ``BadRequest`` (the session
answers ``E01``); a packet this stub does not know becomes ``Unknown`` (answered with the empty
"not supported" reply). Parsing never touches a target and never fails any other way.

Bounds, checked here once so that no number from the wire sizes work further down: every
number fits in 64 bits; memory addresses (``m``, ``M``, ``X``, ``Z``, ``qGetTLSAddr``) lie in
x86-64 user space, below ``USER_SPACE_END``; a read is cut to what one reply can carry
(``MAX_MEMORY_READ``); a watchpoint covers at most ``MAX_WATCH_LENGTH`` bytes, what four debug
registers can watch (gdb falls back to software watchpoints with
``set can-use-hw-watchpoints 0``); signal numbers are one byte; a ``monitor`` command is
at most ``MAX_MONITOR_COMMAND`` bytes.
"""
from __future__ import annotations

import enum
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from debugtarget.protocol import USER_SPACE_END, Action, Direction, ThreadId
from gdbstub.agent import AgentExpr, parse_conditions
from gdbstub.codec import PACKET_SIZE
from gdbstub.errors import BadRequest
from gdbstub.syntax import addr_length, hex_bytes, hex_int, parse_thread_id, split_exact
from gdbstub.vfile import VFileRequest, parse_vfile


@dataclass(frozen=True, slots=True, kw_only=True)
class QuerySupported:
    """``qSupported:f1+;f2=v``: gdb's features, ``name -> "+"/"-"/value``."""

    features: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class MustReplyEmpty:
    """``vMustReplyEmpty``: checks that unknown ``v`` packets get an empty reply."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StartNoAck:
    """``QStartNoAckMode``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EnableExtendedMode:
    """``!`` (sent by ``target extended-remote``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SetThread:
    """``Hg<id>`` (thread for register/memory reads) or ``Hc<id>`` (thread to resume)."""

    op: str
    thread: ThreadId


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadRegisters:
    """``g``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WriteRegisters:
    """``G<hex>`` (always refused: a replay is read-only)."""

    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadRegister:
    """``p<regnum>``."""

    regnum: int


@dataclass(frozen=True, slots=True, kw_only=True)
class WriteRegister:
    """``P<regnum>=<hex>`` (refused)."""

    regnum: int
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadMemory:
    """``m<addr>,<length>``."""

    addr: int
    length: int


@dataclass(frozen=True, slots=True, kw_only=True)
class WriteMemory:
    """``M<addr>,<len>:<hex>`` or ``X<addr>,<len>:<binary>`` (refused unless empty)."""

    addr: int
    data: bytes


class BreakpointType(enum.IntEnum):
    """The type field of ``Z``/``z`` packets."""

    SOFTWARE = 0
    HARDWARE = 1
    WRITE_WATCH = 2
    READ_WATCH = 3
    ACCESS_WATCH = 4


@dataclass(frozen=True, slots=True, kw_only=True)
class InsertBreakpoint:
    """``Z<type>,<addr>,<kind-or-length>[;X<len>,<bytecode>...]``: conditions (Z0/Z1 only)
    are gdb agent expressions the stub evaluates at each hit (``ConditionalBreakpoints+``)."""

    type: BreakpointType
    addr: int
    length: int
    conditions: tuple[AgentExpr, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoveBreakpoint:
    """``z<type>,<addr>,<kind-or-length>``."""

    type: BreakpointType
    addr: int
    length: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ResumeAction:
    """One action of a resume: what to do, to which thread (None: the ``Hc`` thread / all)."""

    action: Action
    thread: ThreadId | None = None
    signal: int = 0  # gdb numbering; 0 = none
    step_range: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Resume:
    """``c``, ``C``, ``s``, ``S``, ``vCont;...`` (forward) and ``bc``, ``bs`` (backward).

    ``actions`` keeps vCont's per-thread list in order (the first action that names a thread
    applies to it; a thread-less action is the default for the rest). ``addr`` is the resume
    address of ``c addr``/``s addr`` (unsupported by a replay).
    """

    actions: tuple[ResumeAction, ...]
    direction: Direction = Direction.FORWARD
    addr: int | None = None

    @property
    def primary(self) -> ResumeAction:
        """The action for the thread gdb cares about: the first that names a specific thread,
        else the first."""
        for act in self.actions:
            if act.thread is not None and act.thread.is_specific:
                return act
        return self.actions[0]


@dataclass(frozen=True, slots=True, kw_only=True)
class VContQuery:
    """``vCont?``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StopReason:
    """``?``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class XferRead:
    """``qXfer:<object>:read:<annex>:<offset>,<length>``."""

    object: str
    annex: str
    offset: int
    length: int


@dataclass(frozen=True, slots=True, kw_only=True)
class QueryAttached:
    """``qAttached[:pid]``."""

    pid: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class QueryCurrentThread:
    """``qC``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ThreadInfoFirst:
    """``qfThreadInfo``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ThreadInfoNext:
    """``qsThreadInfo``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ThreadAlive:
    """``T<thread-id>``."""

    thread: ThreadId


@dataclass(frozen=True, slots=True, kw_only=True)
class Offsets:
    """``qOffsets``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Symbol:
    """``qSymbol::`` (ready to serve lookups) or ``qSymbol:<value>:<hex name>`` (an answer)."""

    name: bytes = b""
    value: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TStatus:
    """``qTStatus`` (tracepoints; unsupported)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GetTLSAddr:
    """``qGetTLSAddr:<thread>,<offset>,<lm>``."""

    thread: ThreadId
    offset: int
    lm: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Rcmd:
    """``qRcmd,<hex>``: a ``monitor`` command, decoded."""

    command: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PassSignals:
    """``QPassSignals:s1;s2;...``: gdb signal numbers gdb need not hear about."""

    signals: frozenset[int]


@dataclass(frozen=True, slots=True, kw_only=True)
class Kill:
    """``vKill;pid`` (expects ``OK``) or ``k`` (expects no reply)."""

    pid: int | None = None
    expects_reply: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class Detach:
    """``D`` or ``D;pid``."""

    pid: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Run:
    """``vRun;<hex filename>;<hex arg>...`` (extended-remote ``run``: restart the replay)."""

    filename: str = ""
    args: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Unknown:
    """Any packet this stub does not implement (answered with the empty reply)."""

    payload: bytes


Request = (QuerySupported | MustReplyEmpty | StartNoAck | EnableExtendedMode | SetThread
           | ReadRegisters | WriteRegisters | ReadRegister | WriteRegister | ReadMemory
           | WriteMemory | InsertBreakpoint | RemoveBreakpoint | Resume | VContQuery
           | StopReason | XferRead | VFileRequest | QueryAttached | QueryCurrentThread
           | ThreadInfoFirst | ThreadInfoNext | ThreadAlive | Offsets | Symbol | TStatus
           | GetTLSAddr | Rcmd | PassSignals | Kill | Detach | Run | Unknown)

_NAME_RE: Final = re.compile(rb"([qQv][A-Za-z0-9_\-]*\??)(?:[:,;](.*))?", re.DOTALL)

MAX_MEMORY_READ: Final = (PACKET_SIZE - 16) // 2
"""Most bytes one ``m`` reply carries (hex doubles them); gdb asks again for the rest."""
MAX_WATCH_LENGTH: Final = 4 * 8
"""Longest watched range: four debug registers of eight bytes each."""
MAX_SIGNAL: Final = 0xFF
MAX_MONITOR_COMMAND: Final = 1024
"""Longest ``monitor`` command (its numbers then stay far from Python's 4300-digit limit)."""


def _user_range(addr: int, length: int, payload: bytes) -> None:
    """Refuse a memory range that does not lie wholly in user space."""
    if addr >= USER_SPACE_END or length > USER_SPACE_END - addr:
        raise BadRequest(payload, f"memory at {addr:#x} (+{length:#x}) is beyond user space")


def _write_memory(args: bytes, payload: bytes, binary: bool) -> WriteMemory:
    head, colon, data = args.partition(b":")
    if not colon:
        raise BadRequest(payload, "missing ':' before the data")
    addr, length = addr_length(head, payload)
    raw = data if binary else hex_bytes(data, payload, "memory data")
    if len(raw) != length:
        raise BadRequest(payload, f"length {length} does not match {len(raw)} data bytes")
    _user_range(addr, length, payload)
    return WriteMemory(addr=addr, data=raw)


def _read_memory(args: bytes, payload: bytes) -> ReadMemory:
    addr, length = addr_length(args, payload)
    _user_range(addr, 0, payload)
    return ReadMemory(addr=addr, length=min(length, MAX_MEMORY_READ, USER_SPACE_END - addr))


def _breakpoint(args: bytes, payload: bytes, insert: bool) -> InsertBreakpoint | RemoveBreakpoint:
    head, _, options = args.partition(b";")
    fields = split_exact(head, b",", 3, payload)
    type_num = hex_int(fields[0], payload, "breakpoint type")
    if type_num > BreakpointType.ACCESS_WATCH:
        raise BadRequest(payload, f"unknown breakpoint type {type_num}")
    kind = BreakpointType(type_num)
    addr = hex_int(fields[1], payload, "address")
    length = hex_int(fields[2], payload, "kind")
    if not insert:
        return RemoveBreakpoint(type=kind, addr=addr, length=length)
    conditions: tuple[AgentExpr, ...] = ()
    if kind in (BreakpointType.SOFTWARE, BreakpointType.HARDWARE):
        _user_range(addr, 1, payload)
        if options:
            try:
                conditions = parse_conditions(options)
            except ValueError as e:
                raise BadRequest(payload, f"breakpoint condition: {e}") from None
    elif not 0 < length <= MAX_WATCH_LENGTH:
        raise BadRequest(payload, f"a watchpoint covers 1 to {MAX_WATCH_LENGTH} bytes, "
                         f"not {length:#x}")
    else:
        _user_range(addr, length, payload)
    return InsertBreakpoint(type=kind, addr=addr, length=length, conditions=conditions)


def _resume_letter(letter: str, args: bytes, payload: bytes) -> Resume:
    action = Action.CONTINUE if letter in "cC" else Action.STEP
    signal = 0
    addr_text = args
    if letter in "CS":
        sig_text, _, addr_text = args.partition(b";")
        signal = hex_int(sig_text, payload, "signal", MAX_SIGNAL)
    addr = hex_int(addr_text, payload, "resume address") if addr_text else None
    return Resume(actions=(ResumeAction(action=action, signal=signal),), addr=addr)


def _vcont_action(text: bytes, payload: bytes) -> ResumeAction:
    act, colon, thread_text = text.partition(b":")
    thread = parse_thread_id(thread_text, payload) if colon else None
    letter, rest = act[:1], act[1:]
    if letter in (b"c", b"s", b"t") and not rest:
        action = {b"c": Action.CONTINUE, b"s": Action.STEP, b"t": Action.STOP}[letter]
        return ResumeAction(action=action, thread=thread)
    if letter in (b"C", b"S"):
        action = Action.CONTINUE if letter == b"C" else Action.STEP
        return ResumeAction(action=action, thread=thread,
                            signal=hex_int(rest, payload, "signal", MAX_SIGNAL))
    if letter == b"r":
        start, end = split_exact(rest, b",", 2, payload)
        rng = (hex_int(start, payload, "range start"), hex_int(end, payload, "range end"))
        return ResumeAction(action=Action.RANGE_STEP, thread=thread, step_range=rng)
    raise BadRequest(payload, f"unknown vCont action {act[:10]!r}")


def _vcont(args: bytes | None, payload: bytes) -> Resume:
    if not args:
        raise BadRequest(payload, "vCont without actions")
    return Resume(actions=tuple(_vcont_action(a, payload) for a in args.split(b";")))


def _qxfer(args: bytes | None, payload: bytes) -> Request:
    parts = (args or b"").split(b":", 2)
    if len(parts) != 3:
        raise BadRequest(payload, "qXfer needs object:operation:annex:offset,length")
    obj, op, rest = parts
    if op != b"read":
        return Unknown(payload=payload)
    annex, colon, rng = rest.rpartition(b":")
    if not colon:
        raise BadRequest(payload, "qXfer read without offset,length")
    offset, length = addr_length(rng, payload)
    return XferRead(object=obj.decode("latin-1"), annex=annex.decode("latin-1"),
                    offset=offset, length=length)


def _qsupported(args: bytes | None, payload: bytes) -> QuerySupported:
    features: dict[str, str] = {}
    for item in (args or b"").split(b";"):
        text = item.decode("latin-1")
        if not text:
            continue
        name, eq, value = text.partition("=")
        if eq:
            features[name] = value
        elif text[-1] in "+-?":
            features[text[:-1]] = text[-1]
        else:
            raise BadRequest(payload, f"qSupported feature {text!r} has no +, - or =")
    return QuerySupported(features=features)


def _symbol(args: bytes | None, payload: bytes) -> Symbol:
    value_text, colon, name_text = (args or b"").partition(b":")
    if not colon:
        raise BadRequest(payload, "qSymbol needs value:name")
    value = hex_int(value_text, payload, "symbol value") if value_text else None
    return Symbol(name=hex_bytes(name_text, payload, "symbol name"), value=value)


def _tls(args: bytes | None, payload: bytes) -> GetTLSAddr:
    thread, offset, lm = split_exact(args or b"", b",", 3, payload)
    limit = USER_SPACE_END - 1
    return GetTLSAddr(thread=parse_thread_id(thread, payload),
                      offset=hex_int(offset, payload, "offset", limit),
                      lm=hex_int(lm, payload, "lm", limit))


def _pass_signals(args: bytes | None, payload: bytes) -> PassSignals:
    sigs = [s for s in (args or b"").split(b";") if s]
    return PassSignals(signals=frozenset(hex_int(s, payload, "signal", MAX_SIGNAL)
                                         for s in sigs))


def _run(args: bytes | None, payload: bytes) -> Run:
    fields = (args or b"").split(b";")
    decoded = [os.fsdecode(hex_bytes(f, payload, "vRun argument")) for f in fields]
    return Run(filename=decoded[0], args=tuple(decoded[1:]))


def _optional_pid(args: bytes | None, payload: bytes) -> int | None:
    return hex_int(args, payload, "pid") if args else None


def _rcmd(args: bytes | None, payload: bytes) -> Rcmd:
    raw = hex_bytes(args or b"", payload, "monitor command")
    if len(raw) > MAX_MONITOR_COMMAND:
        raise BadRequest(payload, f"a monitor command is at most {MAX_MONITOR_COMMAND} bytes")
    return Rcmd(command=raw.decode("utf-8", errors="replace"))


def _no_args(cls: Callable[[], Request]) -> Callable[[bytes | None, bytes], Request]:
    def parse(args: bytes | None, payload: bytes) -> Request:
        return cls() if args is None else Unknown(payload=payload)
    return parse


_NAMED: Final[dict[bytes, Callable[[bytes | None, bytes], Request]]] = {
    b"qSupported": _qsupported,
    b"vMustReplyEmpty": _no_args(MustReplyEmpty),
    b"QStartNoAckMode": _no_args(StartNoAck),
    b"vCont?": _no_args(VContQuery),
    b"vCont": _vcont,
    b"qXfer": _qxfer,
    b"vFile": lambda a, p: parse_vfile(a or b"", p) or Unknown(payload=p),
    b"qAttached": lambda a, p: QueryAttached(pid=_optional_pid(a, p)),
    b"qC": _no_args(QueryCurrentThread),
    b"qfThreadInfo": _no_args(ThreadInfoFirst),
    b"qsThreadInfo": _no_args(ThreadInfoNext),
    b"qOffsets": _no_args(Offsets),
    b"qSymbol": _symbol,
    b"qTStatus": _no_args(TStatus),
    b"qGetTLSAddr": _tls,
    b"qRcmd": _rcmd,
    b"QPassSignals": _pass_signals,
    b"vKill": lambda a, p: Kill(pid=_optional_pid(a, p)),
    b"vRun": _run,
}


def _parse_letter(payload: bytes) -> Request:
    letter, args = chr(payload[0]), payload[1:]
    match letter:
        case "?" if not args:
            return StopReason()
        case "!" if not args:
            return EnableExtendedMode()
        case "g" if not args:
            return ReadRegisters()
        case "G":
            return WriteRegisters(data=hex_bytes(args, payload, "register data"))
        case "p":
            return ReadRegister(regnum=hex_int(args, payload, "register number"))
        case "P":
            num, eq, value = args.partition(b"=")
            if not eq:
                raise BadRequest(payload, "P needs regnum=value")
            return WriteRegister(regnum=hex_int(num, payload, "register number"),
                                 data=hex_bytes(value, payload, "register value"))
        case "m":
            return _read_memory(args, payload)
        case "M" | "X":
            return _write_memory(args, payload, binary=letter == "X")
        case "Z" | "z":
            return _breakpoint(args, payload, insert=letter == "Z")
        case "c" | "C" | "s" | "S":
            return _resume_letter(letter, args, payload)
        case "b" if args in (b"c", b"s"):
            action = Action.CONTINUE if args == b"c" else Action.STEP
            return Resume(actions=(ResumeAction(action=action),), direction=Direction.BACKWARD)
        case "H":
            op = args[:1].decode("latin-1")
            if op not in ("g", "c"):
                raise BadRequest(payload, f"unknown H operation {op!r}")
            return SetThread(op=op, thread=parse_thread_id(args[1:], payload))
        case "T":
            return ThreadAlive(thread=parse_thread_id(args, payload))
        case "k" if not args:
            return Kill(expects_reply=False)
        case "D":
            if args and not args.startswith(b";"):
                raise BadRequest(payload, "D takes ';pid'")
            return Detach(pid=_optional_pid(args[1:], payload))
    return Unknown(payload=payload)


def parse_request(payload: bytes) -> Request:
    """The typed request for one packet payload; raises BadRequest for malformed arguments."""
    if not payload:
        return Unknown(payload=payload)
    if payload[:1] in (b"q", b"Q", b"v"):
        m = _NAME_RE.fullmatch(payload)
        parser = _NAMED.get(m[1]) if m else None
        if parser is None or m is None:
            return Unknown(payload=payload)
        return parser(m[2], payload)
    return _parse_letter(payload)
