"""The `relive` command line: record, replay, info, ps, dump.

Errors a user can cause (a missing program, a bad trace, an unsupported syscall) are printed as
one `relive: ...` line with a non-zero exit status, never as a traceback.
"""
from __future__ import annotations

import argparse
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


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def _now_iso() -> str:
    """The local time as ISO 8601 with the UTC offset, e.g. 2026-12-01T22:40:16+01:00 (the
    datetime module would cost start-up ~2 ms for this)."""
    now = time.localtime()
    offset = time.strftime("%z", now)
    return time.strftime("%Y-%m-%dT%H:%M:%S", now) + offset[:3] + ":" + offset[3:]


def _loaded() -> None:
    """relive's modules are imported: hide what they made from the garbage collector
    (gc.freeze). It all lives until exit, yet every full collection walked it again, the
    interpreter's last ones at exit included (~35 ms of `relive record /bin/true` here)."""
    gc.freeze()


# -- record ------------------------------------------------------------------------------------
def cmd_record(args: argparse.Namespace) -> int:
    from recorder.errors import UnsupportedError
    from recorder.session import Recorder, exit_code
    from relive import traces
    from tracee.hwcount import has_pmu
    from tracefile.writer import TraceWriter

    _loaded()
    argv = [args.program, *args.args]
    path = _program_path(args.program)
    out = Path(args.output) if args.output else traces.new_trace_dir(args.program)
    writer = TraceWriter(out, force=args.force, file_cache=traces.file_cache_dir())
    writer.set_meta(program=path, argv=argv, cwd=os.getcwd(), host=os.uname().nodename,
                    started=_now_iso(),
                    cpu=_cpu_model(), pmu=has_pmu(), complete=False)
    writer.commit(wait=False)  # the program starts while the SQL thread creates the database
    if not args.output:
        traces.set_latest(out)
    recorder = Recorder(writer, path, argv, dict(os.environ))
    old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the program's to get
    signal.signal(signal.SIGTERM, _terminate)
    try:
        status = recorder.run()
    except (UnsupportedError, TraceError, OSError) as e:
        writer.close(complete=False, error=str(e))
        print(f"relive: {e}", file=sys.stderr)
        print(f"relive: the recording stopped there; partial trace in {out}", file=sys.stderr)
        return TOOL_FAILURE
    except _Terminated:
        writer.close(complete=False, error="recorder terminated")
        print(f"relive: terminated; partial trace in {out}", file=sys.stderr)
        return 128 + signal.SIGTERM
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
    print(f"relive: trace written to {out}  (replay: relive replay {out})", file=sys.stderr)
    return exit_code(status)


class _Terminated(Exception):
    pass


def _terminate(signum: int, frame: object) -> None:
    raise _Terminated()


# -- replay ------------------------------------------------------------------------------------
def cmd_replay(args: argparse.Namespace) -> int:
    from relive import traces
    from replayer.autopilot import autopilot

    _loaded()
    trace = traces.resolve_trace(args.trace)
    if args.autopilot:
        return autopilot(trace)
    from relive.serve import serve_replay
    return serve_replay(trace, host=args.host, port=args.port, pid=args.pid)


# -- inspection --------------------------------------------------------------------------------
def cmd_info(args: argparse.Namespace) -> int:
    from relive import inspect_trace, traces
    print(inspect_trace.info_text(traces.resolve_trace(args.trace)))
    return 0


def cmd_ps(args: argparse.Namespace) -> int:
    from relive import inspect_trace, traces
    print(inspect_trace.ps_text(traces.resolve_trace(args.trace)))
    return 0


def cmd_dump(args: argparse.Namespace) -> int:
    from relive import inspect_trace, traces
    inspect_trace.dump(traces.resolve_trace(args.trace), sys.stdout)
    return 0


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
                   help="overwrite an existing trace in DIR")
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
    rp.add_argument("--port", type=int, default=None,
                    help="only serve on PORT (print the gdb command to connect)")
    rp.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    rp.add_argument("-p", "--pid", type=int, default=None,
                    help="debug this process of the recorded tree (default: the first)")
    rp.add_argument("trace", nargs="?", metavar="DIR")
    rp.set_defaults(func=cmd_replay)


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
    "info": _inspection("info", cmd_info, "summarise a trace"),
    "ps": _inspection("ps", cmd_ps, "list the processes of a trace"),
    "dump": _inspection("dump", cmd_dump, "print a trace's events, one per line"),
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
        if word in ("-o", "--output"):
            i += 2
        elif word.startswith("-"):
            i += 1
        else:
            return argv[:i], argv[i:]
    return argv, []


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    options, program = _split_record_argv(argv)
    i = _command_index(argv)
    parser = build_parser(argv[i] if i < len(argv) and argv[i] in _COMMANDS else None)
    if program:
        args = parser.parse_args([*options, program[0]])
        args.args = program[1:]
    else:
        args = parser.parse_args(argv)
    logging.basicConfig(level=args.log.upper(), format="relive: %(message)s")
    try:
        return int(args.func(args))
    except ReliveError as e:
        print(f"relive: {e}", file=sys.stderr)
        return TOOL_FAILURE if args.command == "record" else 1
    except BrokenPipeError:
        return 1


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
