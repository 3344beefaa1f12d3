"""Shared helpers for the tests that drive stock gdb against ``relive replay``.

- ``ReplayServer``: ``python -m relive replay --port 0 TRACE`` in its own process group, its
  port parsed from the ``relive: serving ... on 127.0.0.1:PORT`` line, stdout/stderr kept in
  files (stdout is what the replayed program printed); always cleaned up.
- ``serve``: a pytest fixture, ``serve(trace) -> ReplayServer``, that stops every server it
  started at teardown. Import it into a test module to use it.
- ``gdb_batch``: run ``gdb -nx -batch`` (optionally connected to a server, optionally with a
  program file and a script) with a bounded timeout; stdout and stderr are merged in order.
- ``normalise`` / ``section``: make a live and a replayed transcript comparable.
- ``MiSession``: gdb/MI through pygdbmi with the waiting done right: ``write()`` returns when
  output pauses, usually before ``*stopped``, so keep reading until the record arrives, under
  an overall deadline.

Every timeout here is bounded; nothing uses a fixed port.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import pytest
from conftest import REPO_ROOT

GDB = shutil.which("gdb")
requires_gdb = pytest.mark.skipif(GDB is None, reason="gdb is not installed")

#: Settings every gdb in these tests starts with (before any command): no pager, no line
#: wrapping, no questions, no debuginfod downloads, and a generous packet timeout.
GDB_INIT = ("set pagination off", "set width 0", "set height 0", "set confirm off",
            "set debuginfod enabled off", "set remotetimeout 30")

SERVING = re.compile(r"relive: serving (?P<trace>.+) on (?P<host>[0-9.]+):(?P<port>\d+)$",
                     re.MULTILINE)
CONNECT = re.compile(r"relive: connect with: (?P<cmd>.+)$", re.MULTILINE)
END_OF_HISTORY = "No more reverse-execution history."


def gdb_env() -> dict[str, str]:
    """The environment for gdb: no debuginfod, C locale (stable messages)."""
    env = dict(os.environ, DEBUGINFOD_URLS="", LC_ALL="C", LANG="C")
    env.pop("GDBHISTFILE", None)
    return env


def relive_env() -> dict[str, str]:
    """The environment for ``python -m relive`` run from a checkout (like conftest)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    return env


# -- the replay server --------------------------------------------------------------------------

class ReplayServer:
    """``relive replay --port 0 TRACE`` as a subprocess; ``port`` once it is listening."""

    def __init__(self, trace: Path, workdir: Path, *, startup_timeout: float = 60.0,
                 pid: int | None = None, options: Iterable[str] = (),
                 env: dict[str, str] | None = None) -> None:
        self.trace = Path(trace)
        workdir.mkdir(parents=True, exist_ok=True)
        stem = f"server-{os.getpid()}-{time.monotonic_ns()}"
        self.stdout_path = workdir / f"{stem}.out"
        self.stderr_path = workdir / f"{stem}.err"
        self.argv = [sys.executable, "-m", "relive", *options, "replay", "--port", "0",
                     str(self.trace)]
        if pid is not None:  # another process of the recorded tree than the first
            self.argv[-1:-1] = ["-p", str(pid)]
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            # Its own session: cleanup can kill the whole group (relive and the tracee).
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=err, env={**relive_env(), **(env or {})},
                                         start_new_session=True)
        try:
            self.host, self.port = self._wait_until_listening(startup_timeout)
        except BaseException:
            self.close()
            raise

    def _wait_until_listening(self, timeout: float) -> tuple[str, int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = SERVING.search(self.stderr())
            if match:
                return match["host"], int(match["port"])
            if self.proc.poll() is not None:
                raise AssertionError(f"relive replay exited with {self.proc.returncode} "
                                     f"before listening:\n{self.stderr()}")
            time.sleep(0.05)
        raise AssertionError(f"relive replay did not report its port within {timeout} s:\n"
                             f"{self.stderr()}")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stdout(self) -> str:
        """What the replayed program has printed so far (re-emitted by relive)."""
        return self.stdout_path.read_bytes().decode(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_bytes().decode(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_for_stdout(self, text: str, timeout: float = 10.0) -> str:
        """Poll the re-emitted program output until it contains ``text``."""
        deadline = time.monotonic() + timeout
        while text not in (out := self.stdout()) and time.monotonic() < deadline:
            time.sleep(0.05)
        return out

    def close(self) -> None:
        """Stop the server: SIGTERM, then SIGKILL to its process group if it lingers."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        try:  # anything left in the group it led (the tracee, normally killed with it)
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self.proc.poll() is None:
            self.proc.wait(timeout=5)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> str:
        return (f"--- relive replay stdout ---\n{self.stdout()[-3000:]}\n"
                f"--- relive replay stderr ---\n{self.stderr()[-6000:]}")


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., ReplayServer]]:
    """``serve(trace, pid=None)`` starts a replay server (of process `pid` of the tree);
    all of them are stopped at teardown."""
    servers: list[ReplayServer] = []

    def start(trace: Path, pid: int | None = None) -> ReplayServer:
        server = ReplayServer(trace, tmp_path / "servers", pid=pid)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


# -- gdb in batch mode --------------------------------------------------------------------------

@dataclass
class GdbRun:
    argv: list[str]
    returncode: int
    output: str  # stdout and stderr, merged in the order gdb wrote them

    def __str__(self) -> str:
        return f"$ {' '.join(self.argv)}\n(exit {self.returncode})\n{self.output}"


def gdb_batch(*commands: str, connect: str | None = None, extended: bool = False,
              program: Path | str | None = None, program_args: Iterable[str] = (),
              script: Path | None = None, timeout: float = 90.0) -> GdbRun:
    """``gdb -nx -batch``: GDB_INIT, then ``target remote CONNECT`` if given, then the
    ``script``, then ``commands`` (each an ``-ex``). ``program`` is the file argument."""
    assert GDB is not None, "gdb is not installed"
    argv = [GDB, "-nx", "-batch"]
    for setting in GDB_INIT:
        argv += ["-iex", setting]
    if connect is not None:
        argv += ["-ex", f"target {'extended-remote' if extended else 'remote'} {connect}"]
    if script is not None:
        argv += ["-x", str(script)]
    for command in commands:
        argv += ["-ex", command]
    if program is not None:
        argv += ["--args", str(program), *program_args] if program_args else [str(program)]
    proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, env=gdb_env(), timeout=timeout,
                          check=False)
    return GdbRun(argv, proc.returncode, proc.stdout.decode(errors="replace"))


def start_gdb_batch(*commands: str, connect: str, log: Path) -> subprocess.Popen[bytes]:
    """Like ``gdb_batch`` but in the background (output to ``log``); the caller ends it."""
    assert GDB is not None, "gdb is not installed"
    argv = [GDB, "-nx", "-batch"]
    for setting in GDB_INIT:
        argv += ["-iex", setting]
    argv += ["-ex", f"target remote {connect}"]
    for command in commands:
        argv += ["-ex", command]
    with open(log, "wb") as out:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, env=gdb_env())


# -- making transcripts comparable --------------------------------------------------------------

#: Lines that legitimately differ between a live process and a replay (file transfers from
#: the remote target, libthread_db, process start/end banners, debuginfod).
NOISE = [re.compile(p) for p in (
    r"^Reading .* from remote target\.\.\.$",
    r"^Reading symbols from ",
    r"^warning: File transfers from remote targets can be slow",
    r"^warning: .*libthread_db",
    r"^\[Thread debugging using libthread_db enabled\]$",
    r"^Using host libthread_db library ",
    r"^\[Inferior \d+ \(process \d+\) (detached|killed|exited.*)\]$",
    r"^\[New Thread .*\]$",
    r"^\[Switching to .*\]$",
    r"^Starting program: ",
    r"^Program stopped\.$",
    r"^Remote debugging using ",
    r"^Download failed",
    r"^Downloading ",
    r"^Missing separate debuginfo",
    r"^Try: (apt|dnf|yum|zypper)",
    r"^Debuginfod ",
)]

_THREAD_ID = re.compile(r"Thread (0x[0-9a-f]+ \(LWP \d+\)|\d+\.\d+|p[0-9a-f]+\.[0-9a-f]+)")
_LWP = re.compile(r"LWP \d+")
_PROCESS = re.compile(r"process \d+")
_ADDRESS = re.compile(r"0x[0-9a-f]{5,}")  # addresses, not byte values like 0x72
_TARGET_PREFIX = re.compile(r"\btarget:(?=/)")


def normalise(text: str) -> list[str]:
    """Lines with noise dropped, addresses/ids replaced and whitespace runs collapsed.
    Every frame, source line and value line is kept."""
    out = []
    for line in text.splitlines():
        line = line.rstrip()
        if not line or any(p.search(line) for p in NOISE):
            continue
        line = _TARGET_PREFIX.sub("", line)
        line = _THREAD_ID.sub("Thread <id>", line)
        line = _LWP.sub("LWP <n>", line)
        line = _PROCESS.sub("process <pid>", line)
        line = _ADDRESS.sub("0xADDR", line)
        out.append(" ".join(line.split()))
    return out


def section(text: str, begin: str, end: str) -> str:
    """The text between the first ``begin`` marker line and the following ``end`` line."""
    start = text.find(begin)
    assert start >= 0, f"marker {begin!r} missing from:\n{text}"
    start += len(begin)
    stop = text.find(end, start)
    assert stop >= 0, f"marker {end!r} missing after {begin!r} in:\n{text}"
    return text[start:stop]


# -- gdb/MI through pygdbmi ---------------------------------------------------------------------

@dataclass
class MiSession:
    """One gdb/MI process (pygdbmi); every record ever read is kept in ``records``."""

    timeout: float = 30.0
    records: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        from pygdbmi.gdbcontroller import GdbController
        assert GDB is not None, "gdb is not installed"
        argv = [GDB, "-nx", "-q", "--interpreter=mi3"]
        for setting in GDB_INIT:
            argv += ["-iex", setting]
        self._token = 100
        self._consumed: set[int] = set()
        self.mark = 0  # index of the first record after the last command was sent
        self.gdb = GdbController(command=argv)

    # reading
    def _read(self, wait: float) -> list[dict]:
        got = self.gdb.get_gdb_response(timeout_sec=wait, raise_error_on_timeout=False)
        self.records.extend(got)
        return got

    def wait_for(self, predicate: Callable[[dict], bool], timeout: float | None = None,
                 what: str = "record", since: int | None = None) -> dict:
        """The first record from ``since`` (default: the last command) on, not returned
        before, that satisfies ``predicate``; reads more output until it arrives or the
        deadline passes."""
        start = self.mark if since is None else since
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            for i in range(start, len(self.records)):
                if i not in self._consumed and predicate(self.records[i]):
                    self._consumed.add(i)
                    return self.records[i]
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {what} within the deadline; records so far:\n"
                                     + self.transcript())
            self._read(min(0.2, left))

    def wait_stopped(self, timeout: float | None = None) -> dict:
        """The next ``*stopped`` record since the last command (its payload)."""
        record = self.wait_for(lambda r: r["type"] == "notify" and r["message"] == "stopped",
                               timeout, "*stopped")
        return record["payload"] or {}

    # commands
    def send(self, cmd: str) -> int:
        """Write ``cmd`` with a fresh token, without waiting; returns the token."""
        self._token += 1
        self._read(0.0)  # whatever is pending belongs to earlier commands
        self.mark = len(self.records)
        self.gdb.write(f"{self._token}{cmd}", read_response=False)
        return self._token

    def command(self, cmd: str, timeout: float | None = None) -> dict:
        """Send ``cmd`` and return its result record (``^done``, ``^running``,
        ``^connected``, ``^error`` ...). Async records stay available to ``wait_*``."""
        token = self.send(cmd)
        return self.wait_for(lambda r: r["type"] == "result" and r.get("token") == token,
                             timeout, f"result for {cmd!r}")

    def ok(self, cmd: str, timeout: float | None = None,
           expect: tuple[str, ...] = ("done", "running", "connected")) -> dict:
        """``command`` that must succeed; returns the result payload."""
        result = self.command(cmd, timeout)
        assert result["message"] in expect, f"{cmd!r} -> {result}\n{self.transcript()}"
        return result["payload"] or {}

    def console_since(self, index: int) -> str:
        """Console stream output from record ``index`` on."""
        return "".join(r["payload"] for r in self.records[index:]
                       if r["type"] == "console" and isinstance(r["payload"], str))

    def console(self) -> str:
        """All console stream output so far."""
        return self.console_since(0)

    def transcript(self, last: int = 80) -> str:
        return "\n".join(f"{r['type']}:{r.get('message')}:{r.get('token')}:{r['payload']!r}"
                         for r in self.records[-last:])

    def close(self) -> None:
        self.gdb.exit()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def frame_names(bt_output: str) -> list[str]:
    """Function names of ``bt`` lines, outermost last."""
    names = []
    for line in bt_output.splitlines():
        m = re.match(r"#\d+\s+(?:0x[0-9a-f]+ in )?([\w.@<>:~]+)", line)
        if m:
            names.append(m.group(1))
    return names
