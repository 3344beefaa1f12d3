"""Scripting a replay from Python: a small, synchronous API over gdb/MI and the replay server.

    from relive.api import Replay

    with Replay("/tmp/trace") as r:
        r.break_at("bump")
        r.cont()                        # forward to the first bump()
        r.cont()                        # and the second
        r.next_back(lines=2)            # reverse-next twice
        print(r.eval("counter"), r.frame())
        print(r.last_change("counter"))  # who wrote it last, and what was there before

`Replay(trace)` starts `python -m relive replay --port 0 TRACE` in its own process group,
reads the port it prints, and starts `gdb --interpreter=mi3` connected to it (through
pygdbmi), with relive's gdb commands loaded (relive/gdb_extension.py). Every command that
runs the program waits for gdb's `*stopped` record under a deadline (`timeout`, default 60 s)
and returns a `Stop`. Errors from gdb raise `ScriptError`
with gdb's message; an expired deadline raises `TimeoutError`.

What it is not: a second debugger. Everything goes through stock gdb, so the semantics are
gdb's: `next_back` is `reverse-next`, `finish_back` is `reverse-finish` (gdb 13 stops on the
call instruction, in the middle of the caller's line), values are strings formatted by gdb.

This module knows nothing about relive's internals: it only speaks MI to gdb, runs relive's
gdb commands and reads the server's "relive: serving TRACE on HOST:PORT" line. Event numbers
are `relive dump`'s: "at event N" is the state right after event N.
"""
from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Self

__all__ = ["Change", "Frame", "Replay", "ScriptError", "Stop"]

END_OF_HISTORY = "No more reverse-execution history."
_SERVING = re.compile(r"relive: serving .+ on (?P<host>[0-9.]+):(?P<port>\d+)$", re.MULTILINE)
_WHEN = re.compile(r"Current event: (\d+)")
_CHECKPOINT = re.compile(r"Checkpoint (\d+) at event")
_EXTENSION = Path(__file__).resolve().with_name("gdb_extension.py")
_GDB_SETTINGS = ("set pagination off", "set width 0", "set height 0", "set confirm off",
                 "set debuginfod enabled off", "set remotetimeout 60")
_REASONS = {  # MI stop reasons -> Stop.reason
    "breakpoint-hit": "breakpoint", "watchpoint-trigger": "watchpoint",
    "access-watchpoint-trigger": "watchpoint", "read-watchpoint-trigger": "watchpoint",
    "end-stepping-range": "step", "function-finished": "finish",
    "signal-received": "signal", "no-history": "end-of-history",
    "exited": "exited", "exited-normally": "exited", "exited-signalled": "exited",
}


class ScriptError(RuntimeError):
    """gdb refused a command (its message is the text), or the replay server went away."""


@dataclass(frozen=True, slots=True)
class Frame:
    """Where the program is: function (None without symbols), source file and line (None
    without line information), and the pc."""
    function: str | None
    file: str | None
    line: int | None
    address: int


@dataclass(frozen=True, slots=True)
class Stop:
    """Why the program stopped and where. reason is one of "breakpoint", "watchpoint",
    "step", "finish", "signal", "end-of-history" (either end of the recording), "exited" or
    "other". For a watchpoint, old and new are gdb's Old/New values (going backwards gdb
    shows the later value as Old). returned is the value a finish() printed as "Value
    returned". console is what gdb printed meanwhile."""
    reason: str
    frame: Frame
    old: str | None = None
    new: str | None = None
    returned: str | None = None
    console: str = ""

    @property
    def end_of_history(self) -> bool:
        return self.reason == "end-of-history"


class Change(NamedTuple):
    """The last write to an expression before the current point: the writing code's function
    and line, and the value before (old) and after (new) the write, in program order."""
    function: str | None
    line: int | None
    old: str
    new: str


class Replay:
    """A replay served by relive and driven through gdb/MI. Use it as a context manager, or
    call close()."""

    #: gdb settings given before it connects (`-iex`); a subclass may add its own
    gdb_settings: tuple[str, ...] = _GDB_SETTINGS

    def __init__(self, trace: str | os.PathLike[str], *, gdb: str = "gdb",
                 timeout: float = 60.0, startup_timeout: float = 60.0,
                 pid: int | None = None, die_with_parent: bool = False) -> None:
        self.trace = Path(trace)
        self._die_with_parent = die_with_parent
        self.timeout = timeout
        self.pid = pid
        self._pending: list[dict[str, Any]] = []
        self._token = 0
        self._server: subprocess.Popen[bytes] | None = None
        self._gdb: Any = None
        self._logs = tempfile.TemporaryDirectory(prefix="relive-api-")
        try:
            self.address = self._start_server(startup_timeout)
            self._start_gdb(gdb)
        except BaseException:
            self.close()
            raise

    # -- lifecycle --------------------------------------------------------------------------
    def _start_server(self, timeout: float) -> str:
        logs = Path(self._logs.name)
        self._server_out, self._server_err = logs / "program.out", logs / "server.err"
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parent.parent)  # so a checkout works uninstalled
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        with open(self._server_out, "wb") as out, open(self._server_err, "wb") as err:
            self._server = subprocess.Popen(
                [sys.executable, "-m", "relive", "replay", "--port", "0", str(self.trace),
                 *(["--pid", str(self.pid)] if self.pid is not None else [])],
                stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env,
                start_new_session=True,
                preexec_fn=_terminate_with_parent() if self._die_with_parent else None)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = _SERVING.search(self.server_log())
            if match:
                return f"{match['host']}:{match['port']}"
            if self._server.poll() is not None:
                raise ScriptError(f"relive replay exited with status {self._server.returncode}:"
                                  f"\n{self.server_log()}")
            time.sleep(0.05)
        raise TimeoutError(f"relive replay did not start within {timeout} s:\n"
                           f"{self.server_log()}")

    def _start_gdb(self, gdb: str) -> None:
        from pygdbmi.gdbcontroller import GdbController
        argv = [gdb, "-nx", "-q", "--interpreter=mi3"]
        for setting in self.gdb_settings:
            argv += ["-iex", setting]
        argv += ["-x", str(_EXTENSION)]
        # Return as soon as a burst of output has been read (pygdbmi waits 0.2 s for more by
        # default, which would cost every command 0.2 s); _take keeps reading anyway.
        self._gdb = GdbController(command=argv, time_to_check_for_additional_output_sec=0.005)
        # the replay starts at the program's first instruction
        self._wait_stopped(self._mi_records(f"-target-select remote {self.address}"))

    def close(self) -> None:
        """Quit gdb and stop the replay server (and the replayed process with it)."""
        if self._gdb is not None:
            with contextlib.suppress(OSError):  # already gone
                self._gdb.exit()
            self._gdb = None
        if self._server is not None:
            if self._server.poll() is None:
                self._server.send_signal(signal.SIGTERM)
                try:
                    self._server.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
            try:
                os.killpg(self._server.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            if self._server.poll() is None:
                self._server.wait(timeout=5)
            self._server = None
        self._logs.cleanup()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def server_log(self) -> str:
        """What the replay server printed on stderr (its own messages)."""
        return self._server_err.read_bytes().decode(errors="replace")

    def program_output(self) -> str:
        """What the replayed program has written to stdout so far (relive re-emits it)."""
        return self._server_out.read_bytes().decode(errors="replace")

    # -- running ----------------------------------------------------------------------------
    def cont(self) -> Stop:
        """continue: to the next breakpoint or watchpoint, or the end of the recording."""
        return self._resume("-exec-continue")

    def cont_back(self) -> Stop:
        """reverse-continue: to the previous breakpoint or watchpoint hit, or the start."""
        return self._resume("-exec-continue --reverse")

    def next(self, lines: int = 1) -> Stop:
        """next, `lines` times (stepping over calls)."""
        return self._repeat("-exec-next", lines)

    def next_back(self, lines: int = 1) -> Stop:
        """reverse-next, `lines` times."""
        return self._repeat("-exec-next --reverse", lines)

    def step(self, lines: int = 1) -> Stop:
        """step, `lines` times (into calls that have line information)."""
        return self._repeat("-exec-step", lines)

    def step_back(self, lines: int = 1) -> Stop:
        """reverse-step, `lines` times: back into a callee stops on its last line."""
        return self._repeat("-exec-step --reverse", lines)

    def finish(self) -> Stop:
        """finish: run until the current function returns (Stop.console has its value)."""
        return self._resume("-exec-finish")

    def finish_back(self) -> Stop:
        """reverse-finish: back to where the current function was called."""
        return self._resume("-exec-finish --reverse")

    def _repeat(self, command: str, count: int) -> Stop:
        if count < 1:
            raise ValueError("lines must be at least 1")
        stop = self._resume(command)
        for _ in range(count - 1):
            if stop.reason != "step":  # a breakpoint or an end of history ends the walk
                break
            stop = self._resume(command)
        return stop

    # -- breakpoints ------------------------------------------------------------------------
    def break_at(self, location: str, condition: str | None = None) -> int:
        """A breakpoint at a function, FILE:LINE or *ADDRESS; returns its number."""
        cond = f"-c {_quote(condition)} " if condition else ""
        return int(self._mi(f"-break-insert {cond}{location}")["bkpt"]["number"])

    def delete_breakpoints(self) -> None:
        """Delete every breakpoint and watchpoint."""
        self._mi("-break-delete")

    # -- looking ----------------------------------------------------------------------------
    def eval(self, expression: str) -> str:
        """The value of a C expression, formatted by gdb (e.g. "15", "0x0", "\\"relive\\"")."""
        return str(self._mi(f"-data-evaluate-expression {_quote(expression)}")["value"])

    def frame(self) -> Frame:
        """The innermost frame: function, file, line."""
        return _frame(self._mi("-stack-info-frame")["frame"])

    def last_change(self, expression: str) -> Change | None:
        """Go back to the last write to `expression` before this point (a watchpoint and
        reverse-continue) and stay there, just before the writing instruction. None if it
        was not written since the start of the recording (you are then at the start)."""
        number = self._mi(f"-break-watch {_quote(expression)}")["wpt"]["number"]
        try:
            stop = self.cont_back()
        finally:
            self._mi(f"-break-delete {number}")
        if stop.reason != "watchpoint":
            return None
        # Going backwards gdb shows the later value as "Old" and the earlier as "New".
        assert stop.old is not None and stop.new is not None
        return Change(stop.frame.function, stop.frame.line, old=stop.new, new=stop.old)

    # -- relive's monitor commands ----------------------------------------------------------
    def monitor(self, command: str) -> str:
        """A relive monitor command (`monitor help` lists them); returns its text."""
        return self._console(f"monitor {command}")

    def when(self) -> int:
        """The current event: the last one replayed (0 at the start)."""
        text = self._console("when")
        match = _WHEN.search(text)
        if not match:
            raise ScriptError(f"unexpected answer to `monitor when`: {text!r}")
        return int(match.group(1))

    def goto_event(self, event: int) -> Frame:
        """Go to the state right after event `event` and return the frame there (gdb's
        caches are refreshed: relive's `goto` command)."""
        self._console(f"goto {event}")
        return self.frame()

    def checkpoint(self) -> int:
        """Keep a checkpoint here (at an event boundary, e.g. after goto_event); its id."""
        text = self._console("checkpoint")
        match = _CHECKPOINT.search(text)
        if not match:
            raise ScriptError(f"unexpected answer to `checkpoint`: {text!r}")
        return int(match.group(1))

    def restart(self, checkpoint: int) -> Frame:
        """Go to checkpoint `checkpoint` and return the frame there."""
        self._console(f"restart {checkpoint}")
        return self.frame()

    # -- MI plumbing ------------------------------------------------------------------------
    def _console(self, command: str) -> str:
        """A CLI command through MI; returns what it printed."""
        records = self._mi_records(f"-interpreter-exec console {_quote(command)}")
        return "".join(r["payload"] for r in records
                       if r["type"] in ("console", "target") and isinstance(r["payload"], str))

    def _mi(self, command: str) -> dict[str, Any]:
        """Send an MI command; returns its result payload ({} if none)."""
        return self._mi_records(command)[-1]["payload"] or {}

    def _mi_records(self, command: str) -> list[dict[str, Any]]:
        """Send an MI command; returns the records up to and including its result record."""
        if self._gdb is None:
            raise ScriptError("this Replay is closed")
        self._token += 1
        token = self._token
        self._gdb.write(f"{token}{command}", read_response=False)
        records = self._take(lambda r: r["type"] == "result" and r.get("token") == token,
                             f"gdb's answer to {command!r}")
        result = records[-1]
        if result["message"] == "error":
            msg = (result["payload"] or {}).get("msg", f"{command} failed")
            said = [line for r in records if r["type"] in ("console", "target")
                    and isinstance(r["payload"], str)
                    for line in r["payload"].splitlines() if line.startswith("relive:")]
            raise ScriptError("; ".join([*dict.fromkeys(said), msg]) if msg not in said
                              else msg)
        return records

    def _resume(self, command: str) -> Stop:
        before = self._mi_records(command)
        return self._wait_stopped(before)

    def _wait_stopped(self, before: list[dict[str, Any]] | None = None) -> Stop:
        """The next *stopped record as a Stop; `before` are records already read for the
        command (gdb may print *stopped before the command's result record)."""
        records = list(before or [])
        done = next((i for i, r in enumerate(records) if _is_stopped(r)), None)
        if done is None:
            # gdb may also give up after "^running": a second result, "^error", no *stopped
            # (e.g. "Command aborted." when it cannot insert a watchpoint).
            records += self._take(lambda r: _is_stopped(r) or _is_error(r), "*stopped")
        else:
            self._pending[:0] = records[done + 1:]
            del records[done + 1:]
        if _is_error(records[-1]):
            said = "".join(r["payload"] for r in records
                           if r["type"] == "log" and isinstance(r["payload"], str))
            msg = (records[-1]["payload"] or {}).get("msg", "")
            raise ScriptError(" ".join((said + " " + msg).split()))
        payload = records[-1]["payload"] or {}
        console = "".join(r["payload"] for r in records
                          if r["type"] in ("console", "target") and isinstance(r["payload"], str))
        failure = [r["payload"] for r in records if r["type"] == "log"
                   and "Remote failure reply" in str(r["payload"])]
        if failure:  # the server could not do it; gdb then only says "Program stopped."
            relive_says = [line for line in console.splitlines() if line.startswith("relive:")]
            raise ScriptError("; ".join([failure[0].strip(), *relive_says]))
        reason = _REASONS.get(payload.get("reason", ""), "other")
        if "reason" not in payload and END_OF_HISTORY in console:
            reason = "end-of-history"  # gdb 13.1 gives this stop no reason field
        value = payload.get("value") or {}
        return Stop(reason=reason, frame=_frame(payload.get("frame") or {}),
                    old=value.get("old"), new=value.get("new", value.get("value")),
                    returned=payload.get("return-value"), console=console)

    def _take(self, predicate: Callable[[dict[str, Any]], bool], what: str
              ) -> list[dict[str, Any]]:
        """Remove and return the pending records up to the first one that satisfies
        `predicate`, reading gdb's output until it arrives or the deadline passes (pygdbmi's
        write() returns when output pauses, often before the record we want)."""
        deadline = time.monotonic() + self.timeout
        while True:
            for i, record in enumerate(self._pending):
                if predicate(record):
                    taken, self._pending = self._pending[:i + 1], self._pending[i + 1:]
                    return taken
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {what} from gdb within {self.timeout} s")
            if self._server is not None and self._server.poll() is not None:
                raise ScriptError(f"the replay server exited:\n{self.server_log()}")
            self._pending.extend(self._gdb.get_gdb_response(timeout_sec=0.2,
                                                            raise_error_on_timeout=False))


def _terminate_with_parent() -> Callable[[], None]:
    """For the server's process: SIGTERM when the thread that started it dies, even by
    SIGKILL (PR_SET_PDEATHSIG), so that no replay outlives an editor's adapter. The libc
    function is found here, before the fork: the child only calls it."""
    import ctypes
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    return lambda: prctl(1, signal.SIGTERM, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG


def _is_stopped(record: dict[str, Any]) -> bool:
    return bool(record["type"] == "notify" and record["message"] == "stopped")


def _is_error(record: dict[str, Any]) -> bool:
    return bool(record["type"] == "result" and record["message"] == "error")


def _quote(text: str) -> str:
    """An MI c-string argument."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _frame(frame: dict[str, Any]) -> Frame:
    line = frame.get("line")
    return Frame(function=frame.get("func"),
                 file=frame.get("fullname") or frame.get("file") or frame.get("from"),
                 line=int(line) if line else None,
                 address=int(frame.get("addr", "0"), 16))
