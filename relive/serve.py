"""`relive replay` with a debugger: serve the replay over the GDB remote protocol and, unless
--port was given, start gdb connected to it.

The replay target is created and used only on the engine thread (ptrace answers only the
thread that attached); trio runs the server beside it.
"""
from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
from functools import partial
from pathlib import Path

import trio

from gdbstub.engine import Engine
from gdbstub.server import serve
from replayer.target import ReplayTarget
from replayer.traps import WATCH_SLOTS
from tracefile.errors import TraceError
from tracefile.reader import TraceReader


def _emit(fd: int, data: bytes) -> None:
    os.write(fd, data)


EXTENSION = Path(__file__).resolve().with_name("gdb_extension.py")


def gdb_command(host: str, port: int) -> list[str]:
    """gdb connected to the replay, with relive's commands (relive/gdb_extension.py)."""
    return ["gdb", "-q", "-x", str(EXTENSION), "-ex", "set remotetimeout 600",
            "-ex", "set pagination off", "-ex", f"target remote {host}:{port}"]


def serve_replay(trace: Path, *, host: str = "127.0.0.1", port: int | None = None,
                 pid: int | None = None) -> int:
    if pid is not None:
        reader = TraceReader(trace)
        try:
            pids = sorted({t.pid for t in reader.tasks()})
        finally:
            reader.close()
        if pid not in pids:
            raise TraceError(f"process {pid} is not in {trace}; its processes: "
                             f"{', '.join(map(str, pids))} (see `relive ps`)")
    # With gdb in this terminal, Ctrl-C is gdb's: gdb stops the replay through the stub. The
    # replayed processes have a session of their own (tracee.spawn), and relive ignores it.
    old_int = signal.signal(signal.SIGINT, signal.SIG_IGN) if port is None else None
    try:
        with Engine() as engine:
            target = engine.submit(partial(ReplayTarget, trace, output=_emit, pid=pid)).result()
            try:
                return int(trio.run(_main, target, engine, host, port))
            except KeyboardInterrupt:
                return 130
            finally:
                engine.submit(target.close).result()
    finally:
        if old_int is not None:
            signal.signal(signal.SIGINT, old_int)


async def _main(target: ReplayTarget, engine: Engine, host: str, port: int | None) -> int:
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(partial(serve, target, engine, host=host, port=port or 0,
                                            debug_registers=WATCH_SLOTS))
        connect = host if host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        if port is not None:
            cmd = " ".join(shlex.quote(a) for a in gdb_command(connect, bound))
            print(f"relive: serving {target.trace} on {host}:{bound}\n"
                  f"relive: connect with: {cmd}", file=sys.stderr, flush=True)
            await trio.sleep_forever()
        result = await trio.to_thread.run_sync(
            lambda: subprocess.run(gdb_command(connect, bound)).returncode)
        nursery.cancel_scope.cancel()
    return int(result)
