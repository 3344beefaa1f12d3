"""The `relive` command line: record, replay, info, ps, dump.

Errors a user can cause (a missing program, a bad trace, an unsupported syscall) are printed as
one `relive: ...` line with a non-zero exit status, never as a traceback.
"""
from __future__ import annotations

import argparse
import errno
import gc
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from tracefile.errors import ReliveError, TraceError

if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]

TOOL_FAILURE = 125  # like env(1)/git: the tool failed, not the program


def _program_path(program: str) -> str:
    """Resolve PROGRAM like a shell: exit 127 if not found, 126 if not executable."""
    if "/" in program:
        path = program
        if not os.path.exists(path):
            _fail(f"{program}: No such file or directory", 127)
    else:
        found = _search_path(program)
        if found is None:
            _fail(f"{program}: command not found", 127)
        path = found  # type: ignore[assignment]
    if os.path.isdir(path) or not os.access(path, os.X_OK):
        _fail(f"{program}: Permission denied (not an executable file)", 126)
    return path


def _search_path(program: str) -> str | None:
    """The first executable file named `program` in $PATH, as a shell finds it (shutil.which
    does the same, but importing shutil costs start-up ~5 ms)."""
    for directory in os.environ.get("PATH", os.defpath).split(os.pathsep):
        path = os.path.join(directory or ".", program)
        if os.access(path, os.X_OK) and not os.path.isdir(path):
            return path
    return None


def _fail(message: str, code: int) -> None:
    print(f"relive: {message}", file=sys.stderr)
    raise SystemExit(code)


def _now_iso() -> str:
    """The local time as ISO 8601 with the UTC offset, e.g. 2026-12-01T22:40:16+01:00 (the
    datetime module would cost start-up ~2 ms for this)."""
    now = time.localtime()
    offset = time.strftime("%z", now)
    return time.strftime("%Y-%m-%dT%H:%M:%S", now) + offset[:3] + ":" + offset[3:]


def _loaded() -> None:
    """relive's modules are imported: hide what they made from the garbage collector
    (gc.freeze). It all lives until exit, yet every full collection walked it again, the
    interpreter's last ones at exit included (~35 ms of `relive record /bin/true` here).
    The collector, off while they were imported (main: ~2 ms of collections), is on again."""
    gc.freeze()
    gc.enable()


# -- record ------------------------------------------------------------------------------------
def cmd_record(args: argparse.Namespace) -> int:
    from relive import privacy, traces
    from tracee.cpuid import model_name
    from tracee.hwcount import has_pmu
    from tracefile.writer import TraceWriter

    argv = [args.program, *args.args]
    path = _program_path(args.program)
    made = not args.output or not os.path.lexists(args.output)
    out = Path(args.output) if args.output else traces.new_trace_dir(args.program)
    latest_before = _latest_target(traces.trace_root()) if not args.output else None
    writer = TraceWriter(out, force=args.force, file_cache=traces.file_cache_dir())
    writer.set_meta(program=path, argv=argv, cwd=os.getcwd(), host=os.uname().nodename,
                    started=_now_iso(),
                    cpu=model_name(), pmu=has_pmu(), complete=False)
    writer.commit(wait=False)  # the program starts while the SQL thread creates the database
    # The recorder is imported only now: the SQL thread imports sqlite3 and zstandard and
    # creates the database meanwhile, rather than while the first syscalls are recorded
    # (where each of the recorder's wake-ups waited for the GIL that thread held).
    from recorder.errors import UnsupportedError
    from recorder.session import Recorder, exit_code
    from tracee.spawn import SpawnError
    _loaded()
    if not args.output:
        traces.set_latest(out)
    environ = dict(os.environ)
    env = privacy.program_environment(environ, privacy.exclusion_patterns(args.env_exclude,
                                                                          environ))
    recorder = Recorder(writer, path, argv, env)
    old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the program's to get
    for stop in _STOP_SIGNALS:
        signal.signal(stop, _terminate)
    try:
        status = recorder.run()
    except SpawnError as e:  # exec failed: the program never ran, so no trace is kept
        writer.close(complete=False, error=str(e))
        _discard_trace(out, made=made, latest_before=latest_before,
                       latest=None if args.output else traces.trace_root() / "latest")
        hint = " (a script needs a #! line)" if e.errno == errno.ENOEXEC else ""
        print(f"relive: {e.strerror}{hint}", file=sys.stderr)
        return 127 if e.errno == errno.ENOENT else 126
    except (UnsupportedError, TraceError, OSError) as e:
        writer.close(complete=False, error=str(e))
        print(f"relive: {e}", file=sys.stderr)
        print(f"relive: the recording stopped there; partial trace in {out}", file=sys.stderr)
        return TOOL_FAILURE
    except _Terminated as e:
        name = signal.Signals(e.signum).name
        writer.close(complete=False, error=f"recorder terminated by {name}")
        print(f"relive: terminated by {name}; partial trace in {out}", file=sys.stderr)
        return 128 + e.signum
    except KeyboardInterrupt:  # only once the program exited (Recorder._left_running)
        writer.close(complete=False, error="stopped by Ctrl-C after the program exited, "
                     "while processes it left running were recorded", exit_status=recorder.status)
        print(f"relive: stopped; the trace in {out} ends there (the program's own run is all "
              "in it)", file=sys.stderr)
        return exit_code(recorder.status)
    except Exception as e:  # a relive bug: keep what was recorded, then show the traceback
        writer.close(complete=False, error=f"internal error: {e!r}")
        print(f"relive: internal error while recording (partial trace kept in {out}); "
              "please report this:", file=sys.stderr)
        raise
    finally:
        signal.signal(signal.SIGINT, old_int)
    writer.close(complete=True, exit_status=status)
    if os.WIFSIGNALED(status):
        from relive.inspect_trace import status_text
        print(f"relive: {args.program} was {status_text(status)}", file=sys.stderr)
    print(f"relive: trace written to {out}  (replay: relive replay {out})", file=sys.stderr)
    privacy.notice_once(traces.trace_root())
    return exit_code(status)


def _latest_target(root: Path) -> str | None:
    try:
        return os.readlink(root / "latest")
    except OSError:
        return None


def _discard_trace(out: Path, *, made: bool, latest_before: str | None,
                   latest: Path | None) -> None:
    """Remove the trace of a program that could not be executed: the directory if relive
    made it, else what relive put in it; `latest` points where it did before."""
    import shutil
    if made:
        shutil.rmtree(out, ignore_errors=True)
    else:
        for name in ("trace.db", "trace.db-wal", "trace.db-shm"):
            (out / name).unlink(missing_ok=True)
        shutil.rmtree(out / "files", ignore_errors=True)
    if latest is not None and latest.is_symlink() and latest.resolve() == out.resolve():
        latest.unlink(missing_ok=True)
        if latest_before is not None:
            latest.symlink_to(latest_before)


# Each ends the recording as SIGTERM does: what was recorded is committed, the reason stored.
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


class _Terminated(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _terminate(signum: int, frame: object) -> None:
    raise _Terminated(signum)


# -- replay ------------------------------------------------------------------------------------
def cmd_replay(args: argparse.Namespace) -> int:
    from relive import traces
    from replayer.autopilot import autopilot

    _loaded()
    trace = traces.resolve_trace(args.trace, replay=True)
    if args.autopilot:
        return autopilot(trace)
    from relive.serve import serve_replay
    return serve_replay(trace, host=args.host, port=args.port, pid=args.pid,
                        socket_path=args.socket, allow_remote=args.allow_remote)


# -- dap ---------------------------------------------------------------------------------------
def cmd_dap(args: argparse.Namespace) -> int:
    from relive.dap.server import serve_stdio, serve_tcp
    return serve_stdio() if args.port is None else serve_tcp(args.port)


def _add_dap(sub: Subparsers) -> None:
    d = sub.add_parser("dap", formatter_class=_HelpFormatter,
                       help="a Debug Adapter (DAP) for editors, with reverse execution",
                       description="Speak the Debug Adapter Protocol on stdin/stdout (or on "
                       "127.0.0.1:PORT with --port): an editor launches a replay by its "
                       "`trace` argument and debugs it forwards and backwards through gdb.")
    d.add_argument("--port", type=int, default=None,
                   help="listen on 127.0.0.1:PORT instead (0: any free port, printed)")
    d.set_defaults(func=cmd_dap)


# -- inspection --------------------------------------------------------------------------------
def cmd_info(args: argparse.Namespace) -> int:
    from relive import inspect_trace, traces
    print(inspect_trace.info_text(traces.resolve_trace(args.trace)))
    return 0


def cmd_ps(args: argparse.Namespace) -> int:
    from relive import inspect_trace, traces
    print(inspect_trace.ps_text(traces.resolve_trace(args.trace)))
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    from relive import trace_list
    print(trace_list.ls_text())
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    from relive import trace_list
    errors = trace_list.remove(args.names)
    for error in errors:
        print(f"relive: {error}", file=sys.stderr)
    return 1 if errors else 0


def cmd_dump(args: argparse.Namespace) -> int:
    from relive import inspect_trace, traces
    inspect_trace.dump(traces.resolve_trace(args.trace), sys.stdout)
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from relive.doctor import run_doctor
    return run_doctor()


def _add_doctor(sub: Subparsers) -> None:
    text = ("check what relive can do here: ptrace, the compiled fast path, gdb, the trace "
            "directory, the CPU's features")
    sub.add_parser("doctor", formatter_class=_HelpFormatter, help=text,
                   description=text).set_defaults(func=cmd_doctor)


def cmd_gdbinit(args: argparse.Namespace) -> int:
    print(Path(__file__).resolve().with_name("gdb_extension.py"))
    return 0


def _add_gdbinit(sub: Subparsers) -> None:
    text = ("print the path of relive's gdb commands (goto, checkpoint, restart, last-write, "
            "when): `source $(relive gdbinit)` in a gdb connected with `target remote`")
    sp = sub.add_parser("gdbinit", formatter_class=_HelpFormatter, help=text, description=text)
    sp.set_defaults(func=cmd_gdbinit)


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, told the terminal's width: left to find it, argparse imports
    shutil (~5 ms of start-up) for every parser it builds, even when no help is shown."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=_terminal_width() - 2)


def _terminal_width() -> int:
    """As shutil.get_terminal_size: $COLUMNS, else the width of the terminal on stdout, else
    80."""
    try:
        return int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        pass
    try:
        return os.get_terminal_size(1).columns or 80
    except OSError:
        return 80


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line, or, with `only`, the parser of that one command (enough to
    parse its arguments, and a few ms less of start-up)."""
    p = argparse.ArgumentParser(
        prog="relive", formatter_class=_HelpFormatter,
        description="Record a Linux x86-64 program under ptrace, replay it deterministically, "
                    "and debug the replay forwards and backwards with gdb.")
    p.add_argument("--version", action=_Version)
    p.add_argument("--log", choices=["debug", "info", "warning"], default="warning",
                   help="logging level for relive's own messages")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, add in _COMMANDS.items():
        if only is None or only == name:
            add(sub)
    return p


def _add_record(sub: Subparsers) -> None:
    r = sub.add_parser("record", formatter_class=_HelpFormatter,
                       help="run PROGRAM and record it into a trace",
                       description="Run PROGRAM with its stdin/stdout/stderr passed through and "
                       "record it. Exits with the program's status (128+N if killed by signal "
                       "N; 125 if relive itself could not record). The trace goes to "
                       "$RELIVE_TRACE_DIR or ~/.local/share/relive/<name>-<n>, with a `latest` "
                       "link.")
    r.add_argument("-o", "--output", metavar="DIR", help="write the trace to DIR")
    r.add_argument("--force", action="store_true",
                   help="overwrite an existing trace in DIR (never one still being recorded)")
    r.add_argument("--env-exclude", action="append", default=[], metavar="PATTERN",
                   help="run the program without the environment variables whose names "
                   "match this glob (repeatable; also $RELIVE_ENV_EXCLUDE='P1:P2'), so they are "
                   "not in the trace")
    r.add_argument("program", metavar="PROGRAM")
    r.add_argument("args", nargs="*", default=[], metavar="ARG")  # (main splits them off)
    r.set_defaults(func=cmd_record)


def _add_replay(sub: Subparsers) -> None:
    rp = sub.add_parser("replay", formatter_class=_HelpFormatter,
                        help="replay a trace (under gdb, or --autopilot)",
                        description="Replay a trace (default: the latest). With --autopilot, "
                        "run it to the end with no debugger, re-emitting what the program "
                        "printed; exit 0 if it replayed faithfully. Otherwise serve it to gdb.")
    rp.add_argument("-a", "--autopilot", action="store_true",
                    help="replay to the end with no debugger")
    where = rp.add_mutually_exclusive_group()
    where.add_argument("--port", type=_port_number, default=None,
                       help="only serve on TCP port PORT (0: any free one), and print the gdb "
                       "command to connect")
    where.add_argument("--socket", type=Path, default=None, metavar="PATH",
                       help="only serve on a Unix socket at PATH (mode 0600: only you can "
                       "connect; gdb: target remote PATH)")
    rp.add_argument("--host", default=None,
                    help="address to listen on with --port (default 127.0.0.1)")
    rp.add_argument("--allow-remote", action="store_true",
                    help="allow a --host other machines can reach (whoever connects can run "
                    "code as you)")
    rp.add_argument("-p", "--pid", type=int, default=None,
                    help="debug this process of the recorded tree (default: the first)")
    rp.add_argument("trace", nargs="?", metavar="DIR")
    rp.set_defaults(func=cmd_replay)


def _add_rm(sub: Subparsers) -> None:
    rm = sub.add_parser("rm", formatter_class=_HelpFormatter, help="delete traces",
                        description="Delete traces, named as in the trace directory (or as "
                        "paths). A trace still being recorded is refused; `latest` moves to the "
                        "newest trace left.")
    rm.add_argument("names", nargs="+", metavar="NAME")
    rm.set_defaults(func=cmd_rm)


class _Version(argparse.Action):
    """--version: the installed package's version, looked up only when asked for."""

    def __init__(self, option_strings: list[str], dest: str, **kw: object) -> None:
        super().__init__(option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS,
                         nargs=0, help="print relive's version and exit")

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                  values: object, option_string: str | None = None) -> None:
        from importlib import metadata
        try:
            version = metadata.version("relive")
        except metadata.PackageNotFoundError:
            version = "(version unknown: not installed)"
        print(f"relive {version}")
        parser.exit()


def _port_number(text: str) -> int:
    from relive.listen import port_number
    return port_number(text)


def _inspection(name: str, func: Callable[[argparse.Namespace], int],
                text: str) -> Callable[[Subparsers], None]:
    def add(sub: Subparsers) -> None:
        sp = sub.add_parser(name, formatter_class=_HelpFormatter, help=text, description=text)
        sp.add_argument("trace", nargs="?", metavar="DIR")
        sp.set_defaults(func=func)
    return add


_COMMANDS: dict[str, Callable[[Subparsers], None]] = {
    "record": _add_record,
    "replay": _add_replay,
    "dap": _add_dap,
    "info": _inspection("info", cmd_info, "summarise a trace"),
    "ps": _inspection("ps", cmd_ps, "list the processes of a trace"),
    "dump": _inspection("dump", cmd_dump, "print a trace's events, one per line"),
    "ls": lambda sub: sub.add_parser(
        "ls", formatter_class=_HelpFormatter, help="list the traces in the trace directory",
        description="List the traces in $RELIVE_TRACE_DIR or ~/.local/share/relive: name, "
        "program, when, size, complete/incomplete/recording, how the program ended; `*` marks "
        "the latest.").set_defaults(func=cmd_ls),
    "rm": _add_rm,
    "doctor": _add_doctor,
    "gdbinit": _add_gdbinit,
}


def _command_index(argv: list[str]) -> int:
    """Where the command word is in relive's arguments (after options such as --log LEVEL);
    len(argv) if there is none."""
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        i += 2 if argv[i] == "--log" else 1
    return i


def _split_record_argv(argv: list[str]) -> tuple[list[str], list[str]]:
    """Split `record [OPTIONS] [--] PROGRAM ARGS...` so that everything from PROGRAM on,
    including any `--` or option-like words, belongs to the program untouched."""
    i = _command_index(argv)
    if i >= len(argv) or argv[i] != "record":
        return argv, []
    i += 1
    while i < len(argv):
        word = argv[i]
        if word == "--":
            return argv[:i], argv[i + 1:]
        if word in ("-o", "--output", "--env-exclude"):
            i += 2
        elif word.startswith("-"):
            i += 1
        else:
            return argv[:i], argv[i:]
    return argv, []


def main(argv: list[str] | None = None) -> int:
    gc.disable()  # until the command's modules are imported
    try:
        return _main(sys.argv[1:] if argv is None else argv)
    finally:
        gc.enable()


def _main(argv: list[str]) -> int:
    options, program = _split_record_argv(argv)
    i = _command_index(argv)
    parser = build_parser(argv[i] if i < len(argv) and argv[i] in _COMMANDS else None)
    if program:
        args = parser.parse_args([*options, program[0]])
        args.args = program[1:]
    else:
        args = parser.parse_args(argv)
    logging.basicConfig(level=args.log.upper(), format="relive: %(message)s")
    if args.func not in (cmd_record, cmd_replay):  # (those two import first: _loaded)
        gc.enable()
    try:
        return int(args.func(args))
    except ReliveError as e:
        print(f"relive: {e}", file=sys.stderr)
        return TOOL_FAILURE if args.command == "record" else 1
    except BrokenPipeError:
        return 1
    except (BlockingIOError, RuntimeError) as e:
        if not _no_room_for_tasks(e):
            raise
        print("relive: the system refused to create another process or thread (EAGAIN): "
              "too many are running (see ulimit -u and /proc/sys/kernel/pid_max)",
              file=sys.stderr)
        return TOOL_FAILURE if args.command == "record" else 1
    except KeyboardInterrupt:  # (the commands that run long say where they stopped)
        print("relive: interrupted (Ctrl-C)", file=sys.stderr)
        return 130


def _no_room_for_tasks(e: Exception) -> bool:
    """fork's EAGAIN, or threading's way of saying clone failed."""
    if isinstance(e, BlockingIOError):
        return e.errno == errno.EAGAIN
    return str(e) == "can't start new thread"


def run() -> None:
    """The `relive` command: main(), then exit without tearing the interpreter down when
    nothing is left to finish (only this thread runs; the trace is closed). Freeing every
    object of every module one by one took ~15 ms of each `relive record` here, and the
    kernel frees the process's memory at once anyway."""
    code = main()
    logging.shutdown()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:  # e.g. a closed pipe: what Python's own exit would report, briefly
        code = code or 1
    if threading.active_count() == 1:
        os._exit(code)
    sys.exit(code)
