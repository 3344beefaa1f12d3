"""`relive replay` with a debugger: serve the replay over the GDB remote protocol and, unless
--port or --socket was given, start gdb connected to it (through a Unix socket in a private
directory: no other user can get in first).

The replay target is created and used only on the engine thread (ptrace answers only the
thread that attached); trio runs the server beside it. While relive's own gdb runs, Ctrl-C is
gdb's (it interrupts the program, or does nothing at the prompt): relive ignores it. Serving
alone, Ctrl-C stops relive (exit 130); SIGTERM and SIGHUP stop it too, the socket removed.
"""
from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from functools import partial
from pathlib import Path

import trio

from debugtarget.engine import Engine
from gdbstub.server import TaskStatus, serve
from relive import listen
from debugtarget.replay import ReplayTarget
from replayer.traps import WATCH_SLOTS
from tracefile.errors import TraceError
from tracee.task import reap_one
from tracefile.reader import TraceReader

STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _emit(fd: int, data: bytes) -> None:
    os.write(fd, data)


EXTENSION = Path(__file__).resolve().with_name("gdb_extension.py")


def gdb_command(address: str) -> list[str]:
    """gdb connected to `address` (host:port, or the path of a Unix socket), with relive's
    commands (relive/gdb_extension.py)."""
    return ["gdb", "-q", "-x", str(EXTENSION), "-ex", "set remotetimeout 600",
            "-ex", "set pagination off", "-ex", f"target remote {address}"]


def serve_replay(trace: Path, *, host: str | None = None, port: int | None = None,
                 pid: int | None = None, socket_path: Path | None = None,
                 allow_remote: bool = False) -> int:
    """Serve `trace` on --socket PATH or on --port N [--host H] until stopped, or, with
    neither, start gdb connected to it and return gdb's exit status."""
    if pid is not None:
        _check_pid(trace, pid)
    if socket_path is not None and host is not None:
        raise listen.ListenError("--host goes with --port; a --socket is a path on this machine")
    serve_only = port is not None or socket_path is not None
    if not serve_only and shutil.which("gdb") is None:
        raise listen.ListenError("gdb is not installed (or not on PATH): install it, or serve "
                                 "with --port N or --socket PATH and connect a debugger")
    with contextlib.ExitStack() as stack:
        if socket_path is None and host is None and not serve_only:
            private = stack.enter_context(tempfile.TemporaryDirectory(prefix="relive-"))
            socket_path = Path(private) / "gdb.sock"
        if socket_path is not None:
            sock = listen.unix_listener(socket_path)
            stack.callback(socket_path.unlink, missing_ok=True)
        else:
            sock = listen.tcp_listener(host or "127.0.0.1", port or 0,
                                       allow_remote=allow_remote)
        stack.callback(sock.close)
        return _serve(trace, pid, sock, serve_only)
    raise AssertionError("unreachable")  # (ExitStack may swallow exceptions, for mypy)


def _check_pid(trace: Path, pid: int) -> None:
    reader = TraceReader(trace)
    try:
        pids = sorted({t.pid for t in reader.tasks()})
    finally:
        reader.close()
    if pid not in pids:
        raise TraceError(f"process {pid} is not in {trace}; its processes: "
                         f"{', '.join(map(str, pids))} (see `relive ps`)")


def _ignore(signum: int, frame: object) -> None:
    pass


def _serve(trace: Path, pid: int | None, sock: socket.socket, serve_only: bool) -> int:
    with Engine(idle=reap_one) as engine:
        target = engine.submit(partial(ReplayTarget, trace, output=_emit, pid=pid)).result()
        interrupted = False
        try:
            return int(trio.run(_main, target, engine, sock, serve_only))
        except* KeyboardInterrupt:  # (trio >= 0.25 wraps it in an exception group)
            interrupted = True
        finally:
            engine.submit(target.close).result()
        if interrupted:
            print("relive: stopped (Ctrl-C)" if not serve_only else
                  "relive: stopped serving (Ctrl-C)", file=sys.stderr)
        return 130


async def _main(target: ReplayTarget, engine: Engine, sock: socket.socket,
                serve_only: bool) -> int:
    address = listen.address_text(sock.getsockname())
    connect = listen.connect_text(sock.getsockname())
    stopped_by: list[int] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(serve, target, engine, listener=sock,
                                    debug_registers=WATCH_SLOTS))
        await nursery.start(_stop_on_signals, nursery.cancel_scope, stopped_by)
        if serve_only:
            cmd = " ".join(shlex.quote(a) for a in gdb_command(connect))
            print(f"relive: serving {target.trace} on {address}\n"
                  f"relive: connect with: {cmd}", file=sys.stderr, flush=True)
            await trio.sleep_forever()
        signal.signal(signal.SIGINT, _ignore)  # gdb's from now on (not SIG_IGN: inherited)
        result = await trio.to_thread.run_sync(partial(_run_gdb, gdb_command(connect)))
        nursery.cancel_scope.cancel()
    if stopped_by:
        print(f"relive: stopped serving ({signal.Signals(stopped_by[0]).name})",
              file=sys.stderr)
        return 128 + stopped_by[0]
    if isinstance(result, OSError):
        raise listen.ListenError(f"cannot start gdb: {result.strerror or result}")
    return int(result)


def _run_gdb(command: list[str]) -> int | OSError:
    try:
        return int(subprocess.run(command).returncode)
    except OSError as e:  # (raised here, trio would wrap it in an exception group)
        return e


async def _stop_on_signals(scope: trio.CancelScope, stopped_by: list[int],
                           task_status: TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
    """Cancel `scope` on SIGTERM or SIGHUP (started: they are caught from then on)."""
    with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
        task_status.started(0)
        async for signum in signals:
            stopped_by.append(signum)
            scope.cancel()
            return
