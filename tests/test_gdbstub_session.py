"""The session against FakeTarget: what gdb gets back for each request, no sockets."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gdbstub.codec import unescape
from debugtarget.errors import TargetError
from gdbstub.errors import BadRequest
from gdbstub.fake import CODE, DATA, PID, FakeStep, FakeTarget
from gdbstub.registers import TARGET_XML, decode_registers
from gdbstub.requests import parse_request
from gdbstub.session import Session
from debugtarget.protocol import (
    Action,
    Direction,
    ResumeCommand,
    Stop,
    ThreadId,
    WatchKind,
    Watchpoint,
)

GDB_FEATURES = b"qSupported:multiprocess+;swbreak+;hwbreak+;vContSupported+;xmlRegisters=i386"


def ask(session: Session, payload: bytes) -> list[bytes]:
    """Payloads of the reply to one packet."""
    return list(session.handle(parse_request(payload)).packets)


def one(session: Session, payload: bytes) -> bytes:
    [reply] = ask(session, payload)
    return reply


@pytest.fixture
def target() -> FakeTarget:
    return FakeTarget()


@pytest.fixture
def session(target: FakeTarget) -> Session:
    s = Session(target)
    one(s, GDB_FEATURES)
    return s


def test_qsupported_advertises_what_rsp_notes_require(session: Session) -> None:
    reply = one(session, GDB_FEATURES)
    for feature in (b"PacketSize=4000", b"QStartNoAckMode+", b"qXfer:features:read+",
                    b"qXfer:auxv:read+", b"qXfer:exec-file:read+", b"qXfer:libraries-svr4:read+",
                    b"qXfer:threads:read+", b"multiprocess+", b"swbreak+", b"hwbreak+",
                    b"vContSupported+", b"ReverseStep+", b"ReverseContinue+"):
        assert feature in reply.split(b";")
    assert b"QNonStop" not in reply and b"btrace" not in reply


def test_connect_sequence_replies(session: Session) -> None:
    assert one(session, b"vMustReplyEmpty") == b""
    start = session.handle(parse_request(b"QStartNoAckMode"))
    assert start.packets == (b"OK",) and start.no_ack_after
    assert one(session, b"Hgp0.0") == b"OK"
    assert one(session, b"?") == (b"T0506:40fffd7f00000000;07:00fffd7f00000000;"
                                  b"10:0010400000000000;thread:p64.64;")
    assert one(session, b"qAttached:64") == b"1"
    assert one(session, b"qC") == b"QCp64.64"
    assert one(session, b"qOffsets") == b""
    assert one(session, b"qTStatus") == b""
    assert one(session, b"qSymbol::") == b"OK"
    assert one(session, b"vCont?") == b"vCont;c;C;s;S;r"
    assert one(session, b"qThreadExtraInfo,p64.64") == b""


def test_registers_of_the_selected_thread(session: Session, target: FakeTarget) -> None:
    regs = decode_registers(one(session, b"g"))
    assert regs["rip"] == CODE and regs["rax"] == 0 and regs["st0"] is None
    assert regs["xmm0"] == 0x0123456789ABCDEF0011223344556677
    assert one(session, b"p10") == b"0010400000000000"
    assert one(session, b"p3a") == (0x7F0000000000 + PID).to_bytes(8, "little").hex().encode()
    assert one(session, b"p1000") == b"E01"
    assert one(session, b"Hgp64.65") == b"E01"  # the worker does not exist yet
    target.position = 6
    assert one(session, b"qfThreadInfo") == b"mp64.64,p64.65"
    assert one(session, b"qsThreadInfo") == b"l"
    assert one(session, b"Hgp64.65") == b"OK"
    assert decode_registers(one(session, b"g"))["rip"] == CODE + 0x104
    assert one(session, b"Tp64.65") == b"OK"
    assert one(session, b"Tp64.99") == b"E01"


def test_memory_reads_partial_unmapped_and_refused_writes(session: Session) -> None:
    assert one(session, b"m601000,4") == b"00000000"
    assert one(session, b"m401000,4") == b"4889e590"
    assert one(session, b"m60103e,10") == b"0000"  # the region ends after 2 bytes
    assert one(session, b"m0,4") == b"E01"
    assert one(session, b"X601000,0:") == b"OK"
    assert one(session, b"M601000,1:05") == b"E01"
    assert one(session, b"P0=0100000000000000") == b"E01"
    assert one(session, b"G" + b"00" * 560) == b"E01"
    assert one(session, b"m601000,4") == b"00000000"


def test_software_breakpoint_stop_and_breakpoints_passed_per_resume(
        session: Session, target: FakeTarget) -> None:
    assert one(session, b"Z0,401008,1") == b"OK"
    assert one(session, b"Z0,401008,1") == b"OK"  # idempotent
    reply = one(session, b"vCont;c:p64.-1")
    assert reply.startswith(b"T05swbreak:;") and b"10:0810400000000000;" in reply
    assert target.commands[-1].breakpoints == frozenset({0x401008})
    assert target.commands[-1].thread == ThreadId(PID, PID)
    assert one(session, b"m401008,4") == b"4889e590"  # never an int3 in sight
    assert one(session, b"z0,401008,1") == b"OK"
    one(session, b"vCont;s:p64.64")
    assert target.commands[-1].breakpoints == frozenset()


def test_breakpoint_at_the_starting_pc_does_not_trigger(session: Session) -> None:
    one(session, b"Z0,401000,1")
    one(session, b"Z0,401008,1")
    assert b"10:0810400000000000" in one(session, b"c")


def test_hardware_breakpoint_reports_hwbreak(session: Session) -> None:
    assert one(session, b"Z1,401008,1") == b"OK"
    assert one(session, b"c").startswith(b"T05hwbreak:;")


def test_hardware_slots_are_limited_to_four_debug_registers(session: Session) -> None:
    assert [one(session, b"Z1,40100%x,1" % i) for i in range(4)] == [b"OK"] * 4
    assert one(session, b"Z1,401000,1") == b"OK"  # re-inserting takes no new slot
    assert one(session, b"Z1,401010,1") == b"E01"
    assert one(session, b"Z2,601000,4") == b"E01"
    one(session, b"z1,401000,1")
    one(session, b"z1,401001,1")
    assert one(session, b"Z2,601004,8") == b"OK"  # unaligned: two 4-byte slots
    assert one(session, b"Z3,601000,1") == b"E01"
    one(session, b"z1,401002,1")
    assert one(session, b"Z3,601000,1") == b"OK"
    assert one(session, b"Z4,601010,10") == b"E01"  # 16 bytes need two slots
    assert one(session, b"Z0,401100,1") == b"OK"  # software breakpoints are free


def test_watchpoint_stops_after_the_write_forwards_and_before_it_backwards(
        session: Session, target: FakeTarget) -> None:
    assert one(session, b"Z2,601000,4") == b"OK"
    reply = one(session, b"vCont;c:p64.-1")
    assert reply.startswith(b"T05watch:601000;") and b"10:1010400000000000" in reply
    assert one(session, b"m601000,4") == b"2a000000"
    assert target.commands[-1].watchpoints == frozenset(
        {Watchpoint(kind=WatchKind.WRITE, addr=DATA, length=4)})
    back = one(session, b"bc")
    assert back.startswith(b"T05watch:601000;") and b"10:0c10400000000000" in back
    assert one(session, b"m601000,4") == b"00000000"
    assert target.commands[-1].direction is Direction.BACKWARD


def test_reverse_step_and_both_ends_of_history(session: Session, target: FakeTarget) -> None:
    one(session, b"Hc0")
    one(session, b"vCont;s:p64.64")
    one(session, b"vCont;s:p64.64")
    assert b"10:0810400000000000" in one(session, b"?")
    step_back = one(session, b"bs")
    assert step_back.startswith(b"T05") and b"10:0410400000000000" in step_back
    assert target.commands[-1].action is Action.STEP
    assert one(session, b"bc").startswith(b"T05replaylog:begin;")
    assert one(session, b"bs").startswith(b"T05replaylog:begin;")
    target.program = [FakeStep(tid=PID, pc=CODE + 4 * i) for i in range(4)]
    assert one(session, b"c").startswith(b"T05replaylog:end;")


def test_range_step_and_signal_translation(session: Session, target: FakeTarget) -> None:
    reply = one(session, b"vCont;r401000,40100c:p64.64;c:p64.-1")
    assert b"10:0c10400000000000" in reply
    assert target.commands[-1].action is Action.RANGE_STEP
    assert target.commands[-1].step_range == (0x401000, 0x40100C)
    assert one(session, b"QPassSignals:e;1e;") == b"OK"
    reply = one(session, b"C1e")  # gdb's SIGUSR1 is Linux 10
    assert target.commands[-1].signal == 10
    assert target.commands[-1].pass_signals == frozenset({14, 10})
    assert reply.startswith(b"T0b")  # the fake's SIGSEGV (Linux 11 is gdb 11 too)
    siginfo = one(session, b"qXfer:siginfo:read::0,200")
    assert siginfo[:1] == b"l" and len(unescape(siginfo[1:])) == 128


def test_xfer_documents_are_chunked_with_m_and_l(session: Session) -> None:
    document = b""
    offset = 0
    while True:
        chunk = one(session, b"qXfer:features:read:target.xml:%x,100" % offset)
        assert chunk[:1] in (b"m", b"l")
        document += chunk[1:]
        offset += len(chunk) - 1
        if chunk[:1] == b"l":
            break
    assert document == TARGET_XML
    assert one(session, b"qXfer:features:read:target.xml:%x,100" % (offset + 5)) == b"l"
    assert one(session, b"qXfer:features:read:other.xml:0,100") == b"E01"
    assert one(session, b"qXfer:btrace:read::0,100") == b""


def test_threads_libraries_auxv_and_exec_file_documents(
        session: Session, target: FakeTarget) -> None:
    target.position = 6
    threads = one(session, b"qXfer:threads:read::0,1000")
    assert threads.startswith(b"l<?xml") and b'<thread id="p64.65" name="worker"/>' in threads
    libs = one(session, b"qXfer:libraries-svr4:read::0,1000")
    assert b'main-lm="0x7f0000000800"' in libs
    assert b'<library name="/fake/libc.so.6" lm="0x7f0000001000"' in libs
    auxv = unescape(one(session, b"qXfer:auxv:read::0,1000")[1:])
    assert len(auxv) == 48 and auxv[:8] == (6).to_bytes(8, "little")
    assert one(session, b"qXfer:exec-file:read:64:0,1000") == b"l/fake/prog"
    assert one(session, b"qXfer:exec-file:read::0,1000") == b"l/fake/prog"


def test_vfile_serves_target_files_read_only(session: Session, target: FakeTarget) -> None:
    assert one(session, b"vFile:setfs:0") == b"F0"
    path = b"/fake/prog".hex().encode()
    assert one(session, b"vFile:open:6a7573742070726f62696e67,0,1c0") == b"F-1,2"
    assert one(session, b"vFile:open:" + path + b",1,1c0") == b"F-1,1e"  # EROFS
    handle = one(session, b"vFile:open:" + path + b",0,0")
    assert handle == b"F3"
    assert one(session, b"vFile:pread:3,4000,0") == b"F40;" + target.files["/fake/prog"]
    assert one(session, b"vFile:pread:3,4000,40") == b"F0;"
    fstat = one(session, b"vFile:fstat:3")
    assert fstat[:4] == b"F40;" and len(fstat) == 4 + 64
    assert int.from_bytes(fstat[4 + 8:4 + 12], "big") == 0o100755
    assert int.from_bytes(fstat[4 + 28:4 + 36], "big") == 64
    assert one(session, b"vFile:pwrite:3,0,abc") == b"F-1,1e"
    assert one(session, b"vFile:unlink:" + path) == b"F-1,1e"
    assert one(session, b"vFile:setfs:64") == b"F0"
    assert one(session, b"vFile:readlink:" + b"/proc/100/exe".hex().encode()) == (
        b"Fa;/fake/prog")
    assert one(session, b"vFile:readlink:" + b"/etc".hex().encode()) == b"F-1,16"
    assert one(session, b"vFile:close:3") == b"F0"
    assert one(session, b"vFile:close:3") == b"F-1,9"
    one(session, b"vFile:open:" + path + b",0,0")
    session.close()
    assert target.open_handles == 0


def test_vfile_pread_escapes_and_trims_binary_to_the_requested_size(
        session: Session, target: FakeTarget) -> None:
    target.files["/bin"] = b"#" * 10
    handle = one(session, b"vFile:open:" + b"/bin".hex().encode() + b",0,0")
    assert one(session, b"vFile:pread:%s,8,0" % handle[1:]) == b"F4;####"


def test_monitor_output_goes_to_the_console(session: Session) -> None:
    assert ask(session, b"qRcmd," + b"when".hex().encode()) == [
        b"O" + b"position 0 of 12\n".hex().encode(), b"OK"]
    packets = ask(session, b"qRcmd," + b"bogus".hex().encode())
    assert packets[-1] == b"OK"
    assert b"unknown monitor command" in bytes.fromhex(packets[0][1:].decode())


def test_tls_kill_detach(session: Session, target: FakeTarget) -> None:
    assert one(session, b"qGetTLSAddr:p64.64,8,7ffff7ffe2e0") == b"%x" % (
        0x7F0000000000 + PID + 0x18)
    assert one(session, b"vKill;64") == b"OK" and target.killed == [PID]
    kill_k = session.handle(parse_request(b"k"))
    assert kill_k.packets == () and kill_k.close_after
    detach = session.handle(parse_request(b"D;64"))
    assert detach.packets == (b"OK",) and detach.close_after
    assert one(session, b"!") == b"OK"
    assert not session.handle(parse_request(b"D")).close_after  # extended-remote stays


def test_vrun_restarts_from_the_beginning(session: Session, target: FakeTarget) -> None:
    one(session, b"c")
    assert target.position > 0
    assert b"10:0010400000000000" in one(session, b"vRun;")
    assert target.position == 0


def test_interrupt_before_the_resume_starts_answers_sigint_without_moving(
        session: Session, target: FakeTarget) -> None:
    session.request_interrupt()
    assert one(session, b"c").startswith(b"T02")
    assert target.commands == []
    session.request_interrupt()
    session.discard_interrupt()
    assert one(session, b"vCont;s:p64.64").startswith(b"T05")


def test_refused_resumes_and_failing_resumes(session: Session, target: FakeTarget) -> None:
    assert one(session, b"c401000") == b"E01"
    assert one(session, b"vCont;t:p64.64") == b"E01"

    def broken(command: ResumeCommand) -> Stop:
        raise TargetError("replay diverged at event 7")
    target.resume = broken  # type: ignore[method-assign]
    packets = ask(session, b"c")
    assert packets[-1] == b"E01"
    assert b"diverged at event 7" in bytes.fromhex(packets[0][1:].decode())


def test_without_multiprocess_thread_ids_are_bare(target: FakeTarget) -> None:
    session = Session(target)
    one(session, b"qSupported:xmlRegisters=i386")
    assert one(session, b"?").endswith(b"thread:64;")
    assert one(session, b"qC") == b"QC64"
    one(session, b"Z0,401008,1")
    assert one(session, b"c").startswith(b"T0506:")  # no swbreak: gdb did not offer it


# -- robustness: random and mutated packets never crash the session ----------------------

VALID = [b"?", b"g", b"p10", b"m401000,4", b"Z0,401008,1", b"z0,401008,1", b"c", b"bs",
         b"bc", b"vCont;c:p64.-1", b"vCont;r401000,40100c:p64.64;c", b"Hgp64.65", b"Hc-1",
         b"qXfer:features:read:target.xml:0,100", b"qXfer:threads:read::0,100",
         b"vFile:open:2f66616b652f70726f67,0,0", b"vFile:pread:3,10,0", b"vFile:close:3",
         b"qfThreadInfo", b"qsThreadInfo", b"qRcmd,7768656e", b"Z2,601000,4", b"QPassSignals:e",
         b"qGetTLSAddr:p64.64,0,0", b"qXfer:siginfo:read::0,80", b"Tp64.64", b"vRun;"]


def mutate(payload: bytes, pos: int, junk: bytes) -> bytes:
    return payload[:pos] + junk + payload[pos + 1:]


packets = st.one_of(
    st.binary(max_size=30),
    st.sampled_from(VALID),
    st.builds(mutate, st.sampled_from(VALID), st.integers(0, 30), st.binary(max_size=3)),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(packets, min_size=1, max_size=25))
def test_random_and_mutated_packets_get_replies_never_exceptions(payloads: list[bytes]) -> None:
    session = Session(FakeTarget())
    one(session, GDB_FEATURES)
    for payload in payloads:
        try:
            request = parse_request(payload)
        except BadRequest:
            continue
        reply = session.handle(request)
        assert all(isinstance(p, bytes) for p in reply.packets)
