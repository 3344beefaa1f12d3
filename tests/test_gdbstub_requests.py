"""Parsing gdb packets into typed requests (payloads as captured from gdb 13.1)."""
from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gdbstub.agent import AgentExpr
from gdbstub.errors import BadRequest
from gdbstub.requests import (
    BreakpointType,
    Detach,
    GetTLSAddr,
    InsertBreakpoint,
    Kill,
    PassSignals,
    QueryAttached,
    QuerySupported,
    Rcmd,
    ReadMemory,
    ReadRegister,
    RemoveBreakpoint,
    Resume,
    ResumeAction,
    Run,
    SetThread,
    StopReason,
    Symbol,
    ThreadAlive,
    Unknown,
    VContQuery,
    WriteMemory,
    WriteRegister,
    XferRead,
    parse_request,
)
from debugtarget.protocol import ALL_THREADS, ANY_THREAD, Action, Direction, ThreadId
from gdbstub.vfile import VFileClose, VFileOpen, VFilePread, VFileSetFs

CASES = [
    (b"qSupported:multiprocess+;swbreak+;xmlRegisters=i386",
     QuerySupported(features={"multiprocess": "+", "swbreak": "+", "xmlRegisters": "i386"})),
    (b"Hgp0.0", SetThread(op="g", thread=ANY_THREAD)),
    (b"Hc-1", SetThread(op="c", thread=ALL_THREADS)),
    (b"Hgp1202.1203", SetThread(op="g", thread=ThreadId(0x1202, 0x1203))),
    (b"Hg5", SetThread(op="g", thread=ThreadId(0, 5))),
    (b"p10", ReadRegister(regnum=16)),
    (b"P10=0011223344556677", WriteRegister(regnum=16, data=bytes.fromhex("0011223344556677"))),
    (b"m555555554040,38", ReadMemory(addr=0x555555554040, length=0x38)),
    (b"M1000,2:abcd", WriteMemory(addr=0x1000, data=b"\xab\xcd")),
    (b"X1000,3:a:,", WriteMemory(addr=0x1000, data=b"a:,")),
    (b"Z0,55555555517f,1", InsertBreakpoint(type=BreakpointType.SOFTWARE,
                                            addr=0x55555555517f, length=1)),
    (b"z2,601000,4", RemoveBreakpoint(type=BreakpointType.WRITE_WATCH, addr=0x601000,
                                      length=4)),
    (b"Z1,400000,1;X3,220027", InsertBreakpoint(type=BreakpointType.HARDWARE, addr=0x400000,
                                                length=1,
                                                conditions=(AgentExpr(b"\x22\x00\x27"),))),
    (b"c", Resume(actions=(ResumeAction(action=Action.CONTINUE),))),
    (b"s1000", Resume(actions=(ResumeAction(action=Action.STEP),), addr=0x1000)),
    (b"C0b", Resume(actions=(ResumeAction(action=Action.CONTINUE, signal=11),))),
    (b"bc", Resume(actions=(ResumeAction(action=Action.CONTINUE),),
                   direction=Direction.BACKWARD)),
    (b"bs", Resume(actions=(ResumeAction(action=Action.STEP),), direction=Direction.BACKWARD)),
    (b"vCont;c:p1202.-1", Resume(actions=(
        ResumeAction(action=Action.CONTINUE, thread=ThreadId(0x1202, -1)),))),
    (b"vCont;r55555555517f,55555555519c:p1202.1202;c:p1202.-1", Resume(actions=(
        ResumeAction(action=Action.RANGE_STEP, thread=ThreadId(0x1202, 0x1202),
                     step_range=(0x55555555517f, 0x55555555519c)),
        ResumeAction(action=Action.CONTINUE, thread=ThreadId(0x1202, -1))))),
    (b"vCont;S05:p1.2;c", Resume(actions=(
        ResumeAction(action=Action.STEP, thread=ThreadId(1, 2), signal=5),
        ResumeAction(action=Action.CONTINUE)))),
    (b"vCont?", VContQuery()),
    (b"?", StopReason()),
    (b"qXfer:features:read:target.xml:1000,1000",
     XferRead(object="features", annex="target.xml", offset=0x1000, length=0x1000)),
    (b"qXfer:exec-file:read:1202:0,1000",
     XferRead(object="exec-file", annex="1202", offset=0, length=0x1000)),
    (b"qXfer:auxv:read::0,1000", XferRead(object="auxv", annex="", offset=0, length=0x1000)),
    (b"vFile:setfs:1202", VFileSetFs(pid=0x1202)),
    (b"vFile:open:2f746d702f7273702f74,0,0", VFileOpen(path="/tmp/rsp/t", flags=0, mode=0)),
    (b"vFile:pread:6,47ff,2de0", VFilePread(fd=6, count=0x47ff, offset=0x2de0)),
    (b"vFile:close:8", VFileClose(fd=8)),
    (b"qAttached:1202", QueryAttached(pid=0x1202)),
    (b"qAttached", QueryAttached()),
    (b"qSymbol::", Symbol()),
    (b"qSymbol:7ffff7f669f0:5f5f6e70746c5f76657273696f6e",
     Symbol(name=b"__nptl_version", value=0x7ffff7f669f0)),
    (b"qGetTLSAddr:p1202.1202,0,7ffff7ffe2e0",
     GetTLSAddr(thread=ThreadId(0x1202, 0x1202), offset=0, lm=0x7ffff7ffe2e0)),
    (b"qRcmd,7768656e", Rcmd(command="when")),
    (b"QPassSignals:e;10;14;", PassSignals(signals=frozenset({0xe, 0x10, 0x14}))),
    (b"QPassSignals:", PassSignals(signals=frozenset())),
    (b"vKill;1202", Kill(pid=0x1202)),
    (b"k", Kill(expects_reply=False)),
    (b"D", Detach()),
    (b"D;1202", Detach(pid=0x1202)),
    (b"vRun;;", Run(filename="", args=("",))),
    (b"vRun;2f62696e2f6c73;2d6c", Run(filename="/bin/ls", args=("-l",))),
    (b"Tp1.2", ThreadAlive(thread=ThreadId(1, 2))),
    (b"qCRC:1,2", Unknown(payload=b"qCRC:1,2")),
    (b"QNonStop:0", Unknown(payload=b"QNonStop:0")),
    (b"vFile:frobnicate:1", Unknown(payload=b"vFile:frobnicate:1")),
    (b"qXfer:siginfo:write::0:abc", Unknown(payload=b"qXfer:siginfo:write::0:abc")),
    (b"", Unknown(payload=b"")),
]


@pytest.mark.parametrize(("payload", "expected"), CASES, ids=[c[0][:30].decode("latin-1")
                                                                for c in CASES])
def test_packets_parse_to_typed_requests(payload: bytes, expected: object) -> None:
    assert parse_request(payload) == expected


def test_vcont_primary_is_the_action_naming_a_specific_thread() -> None:
    req = parse_request(b"vCont;c;s:p1.2")
    assert isinstance(req, Resume)
    assert req.primary == ResumeAction(action=Action.STEP, thread=ThreadId(1, 2))


@pytest.mark.parametrize("payload", [
    b"mzz,1", b"m0x10,1", b"m10", b"m-1,2", b"Z9,1,1", b"Z0,1", b"vCont;q", b"vCont",
    b"vCont;r1:p1.1", b"H?1", b"Hgpx.1", b"pxyz", b"M0,2:abc", b"X0,5:ab", b"P1", b"Cxx",
    b"qGetTLSAddr:p1.1,0", b"qRcmd,abc", b"vFile:open:zz,0,0", b"qXfer:auxv:read::0",
    b"qSupported:bogus", b"D1", b"qSymbol:zz:00",
])
def test_malformed_known_packets_raise_bad_request(payload: bytes) -> None:
    with pytest.raises(BadRequest) as info:
        parse_request(payload)
    assert payload[:10].decode("latin-1") in str(info.value)


@settings(max_examples=500, deadline=None)
@given(st.one_of(
    st.binary(max_size=40),
    st.sampled_from([c[0] for c in CASES]).flatmap(
        lambda p: st.tuples(st.just(p), st.integers(0, max(len(p), 1)), st.binary(max_size=4))
        .map(lambda t: t[0][:t[1]] + t[2] + t[0][t[1] + 1:]))))
def test_any_payload_parses_or_raises_bad_request_only(payload: bytes) -> None:
    with contextlib.suppress(BadRequest):
        parse_request(payload)
