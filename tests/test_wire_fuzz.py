"""Hostile packets against the REAL replay target (issue 21): a recorded hello.c replayed by
``ReplayTarget`` on the engine thread, driven through gdbstub's sans-I/O ``Session``.

Every packet gets a well-formed reply promptly (never an exception, which the server turns
into "internal error", never a logged "resume failed"), and whatever the packets did, a plain
continue afterwards still replays the program faithfully to its end, in this connection and
in the next one.
"""
from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterator
from concurrent.futures import TimeoutError as FutureTimeout
from functools import partial
from pathlib import Path

import pytest
from conftest import describe, record
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from debugtarget.engine import Engine
from gdbstub.errors import BadRequest
from gdbstub.requests import parse_request
from gdbstub.session import Session
from debugtarget.replay import ReplayTarget
from replayer.traps import WATCH_SLOTS

pytestmark = pytest.mark.slow
FEATURES = b"qSupported:multiprocess+;swbreak+;hwbreak+;vContSupported+"
REPLY_TIMEOUT = 20.0  # seconds; one hello.c replay takes a few milliseconds
BOUNDARY = (0, 1, 7, 0x1000, 2**31, 2**32 - 1, 2**32, 2**47 - 1, 2**47, 2**63 - 1, 2**63,
            2**64 - 8, 2**64 - 1)
WELL_FORMED = re.compile(
    rb"(|OK|E[0-9a-fA-F]{2}|E\..*|[0-9a-fA-F]+|[TS][0-9a-fA-F]{2}.*|[WX][0-9a-fA-F]{2}.*"
    rb"|F-?[0-9a-fA-F]+(,[0-9a-fA-F]+)?(;.*)?|[ml].*|O[0-9a-fA-F]+|QC.*|PacketSize=.*"
    rb"|vCont;.*|1)", re.DOTALL)


class Replay:
    """The replay target and one gdb connection's session, on a dedicated engine thread."""

    def __init__(self, trace: Path) -> None:
        self.output: list[bytes] = []
        self.history: list[bytes] = []  # every packet asked, for failure messages
        self.kinds: set[bytes] = set()  # first bytes of the replies: what the fuzz reached
        self.engine = Engine().start()
        self.target = self.engine.submit(partial(
            ReplayTarget, trace, output=lambda fd, data: self.output.append(data))).result()
        self.connect()

    def connect(self) -> None:
        """A new gdb connection (a fresh session on the same target)."""
        self.session = Session(self.target, debug_registers=WATCH_SLOTS)
        self.ask(FEATURES)

    def ask(self, payload: bytes) -> list[bytes]:
        """The reply packets, as the server would send them; raises on any bug."""
        def handle() -> list[bytes]:
            try:
                request = parse_request(payload)
            except BadRequest:
                return [b"E01"]  # what the server answers
            return list(self.session.handle(request).packets)
        self.history.append(payload)
        started = time.monotonic()
        try:
            packets = self.engine.submit(handle).result(REPLY_TIMEOUT)
        except FutureTimeout:
            pytest.fail(f"no reply to {payload[:80]!r} within {REPLY_TIMEOUT} s: the engine "
                        "is wedged")
        assert time.monotonic() - started < REPLY_TIMEOUT
        for packet in packets:
            assert WELL_FORMED.fullmatch(packet), f"{payload[:80]!r} -> {packet[:120]!r}"
            self.kinds.add(packet[:1])
        return packets

    def alive(self) -> bool:
        """The replayed process is still there, not a zombie (it must never exit under
        gdb: it is parked before its exit)."""
        tasks = self.target.replay.session.taskset.tasks
        for tid in self.target.replay.live_threads():
            try:
                state = Path(f"/proc/{tasks[tid].tid}/stat").read_text().rsplit(")", 1)[1]
            except FileNotFoundError:
                return False
            if state.split()[0] in ("Z", "X"):
                return False
        return bool(self.target.replay.live_threads())

    def stop_reply(self, payload: bytes) -> bytes:
        *notes, stop = self.ask(payload)
        assert stop[:1] == b"T", f"{payload!r} -> {notes} {stop[:120]!r}"
        return stop

    def close(self) -> None:
        self.engine.submit(self.target.close).result(30)
        self.engine.close(30)


@pytest.fixture(scope="module")
def hello(programs, tmp_path_factory) -> tuple[Path, bytes]:
    trace = tmp_path_factory.mktemp("wire") / "hello"
    rec = record(trace, programs["hello"], "fuzz")
    assert rec.returncode == 0, describe(rec)
    return trace, rec.stdout


@pytest.fixture(scope="module")
def replay(hello: tuple[Path, bytes]) -> Iterator[Replay]:
    r = Replay(hello[0])
    yield r
    r.close()


def weird_fields() -> st.SearchStrategy[str]:
    """Number fields gdb never sends: negative-looking, overflowing, empty, prefixed."""
    return st.sampled_from(["-1", "-5", "f" * 17, "1" + "0" * 16, "", "0x10", " 1",
                            "ffffffffffffffffffffffffffffffff"])


def hex_field() -> st.SearchStrategy[str]:
    """A number field as gdb writes it (boundary values first), or a weird one; leading zeros
    do not change a value."""
    numbers = st.sampled_from(BOUNDARY) | st.integers(0, 2**64 - 1)
    return numbers.map(lambda n: f"{n:x}") | st.just("0" * 30 + "1") | weird_fields()


def packets(exe: str) -> st.SearchStrategy[bytes]:
    h = hex_field()
    small = st.integers(0, 40).map(lambda n: f"{n:x}") | h
    thread = st.sampled_from(["-1", "0", "p-1.-1", "p0.0"]) | st.builds(
        lambda p, t: f"p{p}.{t}", h, h) | h
    data = st.binary(max_size=16)
    exe_hex = exe.encode().hex()
    forms = [
        st.builds(lambda a, n: f"m{a},{n}", h, h),
        st.builds(lambda a, d: f"M{a},{len(d):x}:{d.hex()}", h, data),
        st.builds(lambda a, n, d: f"M{a},{n}:{d.hex()}", h, h, data),
        st.builds(lambda a, d: b"X%s,%x:" % (a.encode(), len(d)) + d, h, data),
        st.builds(lambda z, t, a, k: f"{z}{t},{a},{k}", st.sampled_from("Zz"),
                  st.integers(0, 5), h, small),
        st.builds(lambda r: f"p{r}", small),
        st.builds(lambda r, d: f"P{r}={d.hex()}", small, st.binary(max_size=20)),
        st.builds(lambda op, t: f"H{op}{t}", st.sampled_from("gc"), thread),
        st.builds(lambda t: f"T{t}", thread),
        # (a range gdb steps through covers a line: a huge one single-steps the whole run,
        # slow but interruptible, and not what this test is about)
        st.builds(lambda a, n, t: f"vCont;r{a:x},{min(a + n, 2**64 - 1):x}:{t}",
                  st.sampled_from(BOUNDARY), st.integers(0, 64), thread),
        st.builds(lambda a, b, t: f"vCont;r{a},{b}:{t}", weird_fields(), h, thread),
        st.builds(lambda a, t: f"vCont;{a}:{t}", st.sampled_from(["c", "s", "C05", "Sff", "t"]),
                  thread),
        st.builds(lambda s: f"C{s};", small) | st.builds(lambda s: f"S{s}", small),
        st.sampled_from(["c", "s", "bc", "bs", "?", "g", "qC", "qfThreadInfo", "qsThreadInfo",
                         "c0", "s1000", "vCont;c", "vCont;s", "vCont?"]),
        st.builds(lambda fd, n, off: f"vFile:pread:{fd},{n},{off}", small, h, h),
        st.just(f"vFile:open:{exe_hex},0,0"),
        st.builds(lambda fd: f"vFile:close:{fd}", small),
        st.builds(lambda fd: f"vFile:fstat:{fd}", small),
        st.builds(lambda obj, off, n: "qXfer:{}:read:{}:{},{}".format(*obj, off, n),
                  st.sampled_from([("features", "target.xml"), ("features", "x.xml"),
                                   ("auxv", ""), ("exec-file", ""), ("exec-file", "ff"),
                                   ("exec-file", "f" * 20), ("libraries-svr4", ""),
                                   ("threads", ""), ("siginfo", ""), ("nonsense", "")]),
                  h, h),
        st.builds(lambda t, off, lm: f"qGetTLSAddr:{t},{off},{lm}", thread, h, h),
        st.builds(lambda s: f"QPassSignals:{s}", h),
        st.builds(lambda pid: f"vFile:setfs:{pid}", h),
        st.builds(lambda path, fl: f"vFile:open:{path.hex()},{fl},0", st.binary(max_size=12),
                  h),
        st.builds(lambda n: f"vKill;{n}", h) | st.builds(lambda n: f"qAttached:{n}", h),
        st.builds(lambda v, name: f"qSymbol:{v}:{name.hex()}", h, st.binary(max_size=8)),
        st.sampled_from(["vRun;", "!", "qOffsets", "qTStatus", "vMustReplyEmpty",
                         "qXfer:threads:read::0,fff", "qXfer:auxv:read::0,ffffffffffffffff"]),
        st.builds(lambda cmd, n: "qRcmd," + f"{cmd} {n}".encode().hex(),
                  st.sampled_from(["goto", "restart"]),
                  st.sampled_from(["0", "1", "2", "20", "42", "43", "44", "45", str(2**31),
                                   str(2**64 - 1), "9" * 5000])),
        st.builds(lambda a, n: "qRcmd," + f"last-write {a} {n}".encode().hex(),
                  st.sampled_from(BOUNDARY).map(hex), st.sampled_from(["1", "8", "0", "-1"])),
    ]
    return st.one_of(*forms).map(lambda p: p if isinstance(p, bytes) else p.encode())


def test_hostile_packets_get_error_replies_and_the_replay_stays_faithful(
        replay: Replay, hello: tuple[Path, bytes], programs,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    started = time.monotonic()

    @settings(max_examples=600, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(packets(str(programs["hello"])), min_size=1, max_size=6))
    def fuzz(batch: list[bytes]) -> None:
        for payload in batch:
            caplog.clear()
            replay.ask(payload)
            # (the session logs a target's ReliveError as a warning: still a failure here)
            errors = [r for r in caplog.records if r.levelno >= logging.ERROR or (
                r.name == "gdbstub.session" and r.levelno >= logging.WARNING)]
            if errors and os.environ.get("WIRE_HISTORY"):  # to bisect a failure by hand
                Path(os.environ["WIRE_HISTORY"]).write_text(
                    "\n".join(p.hex() for p in replay.history))
            assert not errors, (f"{payload!r} after {replay.history[-12:-1]!r}: "
                                f"{errors[0].getMessage()}\n{errors[0].exc_text}")
            alive = replay.engine.submit(replay.alive).result(REPLY_TIMEOUT)
            assert alive, f"the replayed process exited after {replay.history[-8:]!r}"

    fuzz()
    assert time.monotonic() - started < 60, "the fuzz must stay quick"
    # It reached the target: stops, memory, documents, files, monitor output, errors.
    assert {b"T", b"l", b"m", b"F", b"O", b"E"} <= replay.kinds, replay.kinds
    assert len(replay.history) > 1500, "the fuzz sent fewer packets than meant"
    # Whatever the packets did: no breakpoints, back to the start, and a plain continue
    # replays the program to its end exactly as recorded, here and in a new connection.
    _, recorded = hello
    for _ in range(2):
        replay.connect()
        assert b"replaylog:begin" in replay.stop_reply(b"bc")
        replay.output.clear()
        assert b"replaylog:end" in replay.stop_reply(b"vCont;c")
        assert b"".join(replay.output) == recorded


def test_a_last_write_finding_nothing_at_the_end_leaves_the_exit_as_it_was(
        hello: tuple[Path, bytes], caplog: pytest.LogCaptureFixture) -> None:
    """Found by the fuzz: at the end (the process parked at its exit call), a `monitor
    last-write` that found no write went back to the end with the process stopped at the
    entry of exit_group but no longer counted as parked, so the next continue skipped the
    call and ran on past it: "replay diverged ... expected syscall exit_group"."""
    caplog.set_level(logging.WARNING)
    r = Replay(hello[0])
    try:
        assert b"replaylog:end" in r.stop_reply(b"c")
        r.ask(b"qRcmd," + b"last-write 0x100000000 1".hex().encode())
        for _ in range(2):
            assert b"replaylog:end" in r.stop_reply(b"c")
        errors = [x.getMessage()[:300] for x in caplog.records if x.levelno >= logging.ERROR]
        assert not errors, errors
        assert b"replaylog:begin" in r.stop_reply(b"bc")
        r.output.clear()
        assert b"replaylog:end" in r.stop_reply(b"vCont;c")
        assert b"".join(r.output) == hello[1]
    finally:
        r.close()
