"""Requests that used to break the replay for good (issue 21), from real gdb and raw sockets
against ``relive replay --port 0``: each fails cleanly (or works) and leaves the replay as it
was, for this gdb and the next one."""
from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import pytest
from conftest import describe, record
from gdbhelpers import END_OF_HISTORY, ReplayServer, gdb_batch, requires_gdb, serve

from gdbstub.codec import NEED_DATA, PacketCodec, Packet
from tracee.sysnums import name_of
from tracefile.reader import TraceReader
from tracefile.records import Kind

__all__ = ["serve"]  # the fixture, imported for pytest
pytestmark = [requires_gdb, pytest.mark.slow]

HELLO_OUT = b"hello, relive\nargv[0]: "
VSYSCALL = "0xffffffffff600000"


@pytest.fixture(scope="module")
def hello(programs, tmp_path_factory) -> tuple[Path, bytes]:
    trace = tmp_path_factory.mktemp("hostile") / "hello"
    rec = record(trace, programs["hello"])
    assert rec.returncode == 0, describe(rec)
    assert rec.stdout.startswith(HELLO_OUT)
    return trace, rec.stdout


@pytest.fixture(scope="module")
def calls(programs, tmp_path_factory) -> Path:
    trace = tmp_path_factory.mktemp("hostile") / "calls"
    rec = record(trace, programs["gdb_calls"])
    assert rec.returncode == 0, describe(rec)
    return trace


def assert_sound(server: ReplayServer) -> None:
    log = server.stderr()
    for bad in ("internal error", "Traceback", "diverge", "resume failed"):
        assert bad not in log, server.describe()


def test_an_unplantable_breakpoint_fails_the_continue_and_leaves_memory_clean(hello, serve):
    trace, recorded = hello
    server = serve(trace)
    run = gdb_batch(f"break *{VSYSCALL}", "break main", "continue", "delete 1", "continue",
                    "continue", connect=server.address)
    out = run.output
    assert "Cannot insert breakpoint 1" in out, str(run)
    assert "Breakpoint 2, main" in out, str(run)
    assert END_OF_HISTORY in out, str(run)
    assert server.wait_for_stdout(recorded.decode()) == recorded.decode(), server.describe()
    # The next gdb finds the replay intact: back to the start and forwards again, faithfully.
    again = gdb_batch("break main", "reverse-continue", "continue", "continue",
                      connect=server.address)
    assert "Breakpoint 1, main" in again.output, str(again)
    assert again.output.count(END_OF_HISTORY) == 3, str(again)  # the start, the end twice
    assert server.stdout() == recorded.decode() * 2, server.describe()
    assert_sound(server)


def test_goto_the_last_event_leaves_the_process_alive_at_its_end(hello, serve):
    trace, recorded = hello
    reader = TraceReader(trace)
    last = reader.event_count - 1  # (events are numbered from 0, as `relive dump` does)
    exit_group = next(ev.seq for ev in reader.events(0, last + 1)
                      if ev.kind == Kind.SYSCALL and name_of(ev.nr) == "exit_group")
    reader.close()
    server = serve(trace)
    run = gdb_batch(f"monitor goto {last}", "maint flush register-cache", "continue",
                    "break main", "reverse-continue", "info registers rip",
                    connect=server.address)
    out = run.output
    # right after the event before its exit_group: alive
    assert f"At event {exit_group - 1}" in out, str(run)
    assert END_OF_HISTORY in out, str(run)
    assert "Breakpoint 1, main" in out, str(run)
    assert "No such process" not in out and "E01" not in out, str(run)
    again = gdb_batch(f"monitor goto {last + 5}", f"monitor goto {last}", "continue",
                      "reverse-stepi", "continue", connect=server.address)
    assert "outside" in again.output, str(again)  # beyond the trace: refused
    assert again.output.count(END_OF_HISTORY) == 2, str(again)
    assert_sound(server)


def test_call_system_in_a_diversion_runs_and_the_replay_goes_on(calls, serve):
    server = serve(calls)
    started = time.monotonic()
    run = gdb_batch("break main", "continue", 'print (int)system("echo from-system")',
                    "print twice(4)", "delete", "continue", connect=server.address,
                    timeout=60)
    out = run.output
    assert "$1 = 0" in out and "$2 = 8" in out, str(run)
    assert END_OF_HISTORY in out, str(run)
    assert time.monotonic() - started < 60
    stdout = server.wait_for_stdout("counter 10\n")
    assert stdout == "from-system\ncounter 7\ncounter 8\ncounter 10\n", server.describe()
    assert_sound(server)


def _packet(sock: socket.socket, codec: PacketCodec, payload: bytes,
            timeout: float = 5.0) -> bytes:
    """Send one packet and return the reply's payload (acks handled by the codec)."""
    sock.sendall(codec.send_packet(payload))
    sock.settimeout(timeout)
    while True:
        while (event := codec.next_event()) is not NEED_DATA:
            if isinstance(event, Packet):
                sock.sendall(codec.data_to_send())
                return event.payload
        data = sock.recv(65536)
        assert data, f"connection closed after {payload!r}"
        codec.receive_data(data)


def test_huge_numbers_get_errors_at_once_and_the_server_stays_responsive(hello, serve):
    trace, _ = hello
    server = serve(trace)
    hostile = [b"Z2,0,ffffffffffffffff", b"Z2,1000,10000000", b"mffffffffff600000,10",
               b"m8000000000000000,ffffffffffffffff", b"Z0,ffffffffff600000,1",
               b"M10000000000000000,1:00", b"vCont;C1ff", b"m" + b"f" * 40 + b",10",
               b"qGetTLSAddr:p1.1,0,ffffffffffffffff"]
    for _ in range(2):  # and a second client afterwards
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            codec = PacketCodec()
            assert b"PacketSize" in _packet(sock, codec, b"qSupported:multiprocess+")
            for payload in hostile:
                started = time.monotonic()
                reply = _packet(sock, codec, payload)
                assert reply.startswith(b"E"), (payload, reply)
                assert time.monotonic() - started < 2, payload
            assert _packet(sock, codec, b"?").startswith(b"T05")
            assert _packet(sock, codec, b"D") == b"OK"
    assert_sound(server)
    # With a client connected mid-continue, Ctrl-C in relive's terminal still ends it.
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        codec = PacketCodec()
        _packet(sock, codec, b"qSupported:multiprocess+")
        sock.sendall(codec.send_packet(b"Z2,0,ffffffffffffffff") + codec.send_packet(b"c"))
        time.sleep(0.5)
        server.proc.send_signal(signal.SIGINT)
        assert server.proc.wait(timeout=15) == 130, server.describe()


def test_a_watchpoint_wider_than_a_debug_register_watches_all_of_it(calls, serve):
    """12 bytes ending with `counter`: two debug registers (8 + 4 bytes); the writes to
    counter land in the second. Silently missed when one register covered the first bytes."""
    server = serve(calls)
    run = gdb_batch("break main", "continue", "watch *(char(*)[12])((char*)&counter - 8)",
                    "continue", "continue", "reverse-continue", "print counter",
                    connect=server.address)
    out = run.output
    assert out.count("Hardware watchpoint 2: *(char(*)[12])") == 4, str(run)
    assert "\\a\\000\\000\"\nNew value = " in out and out.count("Old value") == 3, str(run)
    assert out.rstrip().splitlines()[-2].endswith("= 8"), str(run)  # back before 8 -> 10
    assert_sound(server)
