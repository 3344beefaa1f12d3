"""Stock gdb 13 against the stub serving FakeTarget: what a user would see on the console."""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest
import trio

from debugtarget.engine import Engine
from gdbstub.fake import FakeTarget
from gdbstub.server import serve

GDB = shutil.which("gdb")
pytestmark = pytest.mark.skipif(GDB is None, reason="gdb is not installed")


@pytest.fixture
def engine() -> Iterator[Engine]:
    with Engine() as e:
        yield e


async def run_gdb(port: int, *commands: str) -> str:
    assert GDB is not None
    argv = [GDB, "-nx", "-batch", "-ex", "set architecture i386:x86-64",
            "-ex", f"target remote 127.0.0.1:{port}"]
    for command in commands:
        argv += ["-ex", command]
    env = dict(os.environ, DEBUGINFOD_URLS="")
    with trio.fail_after(25):
        result = await trio.run_process(argv, capture_stdout=True, capture_stderr=True,
                                        check=False, env=env)
    return result.stdout.decode() + result.stderr.decode()


async def test_gdb_shows_registers_memory_and_moves_both_ways(engine: Engine) -> None:
    target = engine.submit(FakeTarget).result()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve, target, engine)
        out = await run_gdb(
            port,
            "info registers rip rax rsp",
            "x/4xb 0x601000",
            "break *0x401010",
            "continue",
            "x/4xb 0x601000",
            "reverse-stepi",
            "info registers rip",
            "reverse-continue",
            "monitor when",
            "info threads",
            "detach")
        nursery.cancel_scope.cancel()
    assert "rip            0x401000" in out, out
    assert "rax            0x0 " in out, out
    assert "rsp            0x7ffdff00" in out, out
    assert "0x601000:\t0x00\t0x00\t0x00\t0x00" in out, out
    assert "Breakpoint 1, 0x0000000000401010 in ?? ()" in out, out
    assert "0x601000:\t0x2a\t0x00\t0x00\t0x00" in out, out
    assert "rip            0x40100c" in out, out
    assert "No more reverse-execution history." in out, out
    assert "position 0 of 12" in out, out
    assert 'Thread 100.100 "prog"' in out, out
    assert "[Inferior 1 (process 100) detached]" in out, out
    assert {ident for _, ident in target.calls} == {engine.thread_id}


async def test_a_long_monitor_command_shows_progress_and_never_times_out(
        engine: Engine) -> None:
    """gdb waits for a monitor command's reply only `remotetimeout` (2 s by default; 3
    tries, then "Ignoring packet error" and the late reply is misread as the answer to the
    next command). The stub sends the target's progress notes as they come and, through 7
    silent seconds, empty console packets that keep gdb waiting."""
    target = engine.submit(FakeTarget).result()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve, target, engine)
        assert GDB is not None
        argv = [GDB, "-nx", "-batch", "-ex", "set architecture i386:x86-64",
                "-ex", f"target remote 127.0.0.1:{port}", "-ex", "show remotetimeout",
                "-ex", "monitor slow 2 7", "-ex", "monitor when", "-ex", "detach"]
        with trio.fail_after(40):
            result = await trio.run_process(argv, capture_stdout=True, capture_stderr=True,
                                            check=False, env=dict(os.environ,
                                                                  DEBUGINFOD_URLS=""))
        nursery.cancel_scope.cancel()
    out = result.stdout.decode() + result.stderr.decode()
    assert "Timeout limit to wait for target to respond is 2." in out, out
    assert "note 0\nnote 1\nslow done\nposition 0 of 12\n" in out, out
    assert "Ignoring packet error" not in out, out
