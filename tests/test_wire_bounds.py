"""The bounds parse_request puts on numbers from the wire (issue 21), checked without a target:
each out-of-range packet is a BadRequest (answered E01), never a number that sizes work."""
from __future__ import annotations

import time

import pytest

from gdbstub.breakpoints import BreakpointTable
from gdbstub.errors import BadRequest
from gdbstub.fake import FakeTarget
from gdbstub.requests import (
    MAX_MEMORY_READ,
    MAX_WATCH_LENGTH,
    USER_SPACE_END,
    BreakpointType,
    InsertBreakpoint,
    ReadMemory,
    parse_request,
)
from gdbstub.session import Session


@pytest.mark.parametrize("payload", [
    b"m8000000000000000,10", b"mffffffffff600000,1", b"m800000000000,1",
    b"m10000000000000000,1", b"m" + b"f" * 40 + b",1", b"m-1,1", b"m1,-1",
    b"M7fffffffffff,2:0000", b"Xffffffffffffffff,1:\x00",
    b"Z0,ffffffffff600000,1", b"Z1,800000000000,1",
    b"Z2,0,ffffffffffffffff", b"Z2,1000,21", b"Z3,1000,0", b"Z4,7ffffffffff8,10",
    b"Z0,10000000000000000,1", b"C100", b"vCont;S1ff", b"QPassSignals:100",
    b"qGetTLSAddr:p1.1,0,800000000000", b"qRcmd," + b"61" * 1025,
])
def test_out_of_range_numbers_are_bad_requests(payload: bytes) -> None:
    with pytest.raises(BadRequest):
        parse_request(payload)


def test_reads_are_cut_to_one_reply_and_to_user_space() -> None:
    assert parse_request(b"m1000,ffffffffffffffff") == ReadMemory(addr=0x1000,
                                                                   length=MAX_MEMORY_READ)
    top = USER_SPACE_END - 4
    assert parse_request(b"m%x,100" % top) == ReadMemory(addr=top, length=4)
    assert parse_request(b"m" + b"0" * 30 + b"1,1") == ReadMemory(addr=1, length=1)


def test_the_longest_watchpoint_and_its_removal_parse() -> None:
    assert parse_request(b"Z2,1000,%x" % MAX_WATCH_LENGTH) == InsertBreakpoint(
        type=BreakpointType.WRITE_WATCH, addr=0x1000, length=MAX_WATCH_LENGTH)
    parse_request(b"z2,0,ffffffffffffffff")  # removing what was never there: harmless


def test_counting_debug_register_pieces_stops_early() -> None:
    table = BreakpointTable(debug_registers=3)
    started = time.monotonic()
    assert not table.insert(BreakpointType.WRITE_WATCH, 0, 1 << 62)
    assert time.monotonic() - started < 0.5
    assert table.insert(BreakpointType.WRITE_WATCH, 0x1000, 24)  # three 8-byte pieces
    assert not table.insert(BreakpointType.WRITE_WATCH, 0x2000, 1)


def test_a_pread_past_any_file_offset_fails_with_einval() -> None:
    session = Session(FakeTarget())
    path = b"/fake/prog".hex().encode()
    [opened] = session.handle(parse_request(b"vFile:open:%s,0,0" % path)).packets
    assert opened.startswith(b"F") and not opened.startswith(b"F-1"), opened
    fd = opened[1:]
    [reply] = session.handle(parse_request(b"vFile:pread:%s,10,ffffffffffffffff" % fd)).packets
    assert reply == b"F-1,16"  # EINVAL (22) in gdb's hex
