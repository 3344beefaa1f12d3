"""gdb stays in step with the replay: Ctrl-C in the terminal of `relive replay`, relive's gdb
commands (goto, checkpoint, restart, last-write) refreshing what gdb cached, one event
numbering (`relive dump`'s) everywhere, and progress on long monitor commands without
tripping gdb's default remotetimeout."""
from __future__ import annotations

import functools
import os
import pty
import re
import select
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import PROGRAMS_DIR, REPO_ROOT, describe, record, run_relive
from gdbhelpers import CONNECT, END_OF_HISTORY, GDB, gdb_batch, gdb_env, relive_env, section, serve

__all__ = ["serve"]  # (the fixture, imported for the tests here)

pytestmark = pytest.mark.skipif(GDB is None, reason="gdb is not installed")

LOOP_ITERATIONS = 1_000_000_000  # cpu_loop: about 2.5 s of computing without a syscall
BAD = ("Traceback", "diverged", "Remote failure", "Ignoring packet error",
       "Failed to find new fork")


def _record(trace: Path, *argv: object) -> Path:
    rec = record(trace, "--force", *argv)
    assert rec.returncode == 0, describe(rec)
    return trace


@pytest.fixture(scope="module")
def target_trace(programs, tmp_path_factory) -> Path:
    return _record(tmp_path_factory.mktemp("in-step") / "gdb_target", programs["gdb_target"])


@pytest.fixture(scope="module")
def loop_trace(programs, tmp_path_factory) -> Path:
    return _record(tmp_path_factory.mktemp("in-step") / "cpu_loop", programs["cpu_loop"],
                   LOOP_ITERATIONS)


@pytest.fixture(scope="module")
def syscalls_trace(programs, tmp_path_factory) -> Path:
    """200,000 getppid calls: a goto to the end replays for seconds."""
    return _record(tmp_path_factory.mktemp("in-step") / "many", programs["many_syscalls"],
                   200_000)


def _dump(trace: Path) -> list[str]:
    proc = run_relive("dump", trace, text=True)
    assert proc.returncode == 0, describe(proc)
    return proc.stdout.splitlines()


def _event(dump: list[str], pattern: str) -> int:
    """The number `relive dump` gives the first event whose line matches `pattern`."""
    line = next(line for line in dump if re.search(pattern, line))
    return int(line.split()[0])


def _line_of(source: str, text: str) -> int:
    lines = (PROGRAMS_DIR / source).read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if text in line)


@functools.cache
def _extension() -> str:
    """`relive gdbinit`: where relive's gdb commands are, for `source`."""
    proc = run_relive("gdbinit", text=True)
    assert proc.returncode == 0, describe(proc)
    path = proc.stdout.strip()
    assert Path(path) == REPO_ROOT / "relive" / "gdb_extension.py", path
    return path


def _with_extension(server, *commands: str, timeout: float = 120.0) -> str:
    """gdb connected to `server`, as a `target remote` user: `source $(relive gdbinit)`."""
    run = gdb_batch(f"source {_extension()}", *commands, connect=server.address,
                    timeout=timeout)
    assert "Traceback" not in server.stderr(), server.describe()
    return run.output


def _frames(bt: str) -> list[str]:
    """`bt` lines without addresses: '#1 main () at /path/gdb_target.c:46'."""
    return [re.sub(r"0x[0-9a-f]+ in ", "", " ".join(line.split()))
            for line in bt.splitlines() if line.startswith("#")]


# -- Ctrl-C in `relive replay`'s terminal ----------------------------------------------------

class Terminal:
    """`relive replay TRACE` (gdb started by relive) on a pseudo-terminal, as a user runs it."""

    def __init__(self, trace: Path) -> None:
        env = dict(gdb_env(), PYTHONPATH=relive_env()["PYTHONPATH"], TERM="dumb")
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: the user's shell would exec relive here
            os.execve(sys.executable, [sys.executable, "-m", "relive", "replay", str(trace)],
                      env)
        self.output = bytearray()

    def read(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if select.select([self.fd], [], [], min(left, 0.1))[0]:
                try:
                    data = os.read(self.fd, 65536)
                except OSError:  # the other side is gone
                    return
                if not data:
                    return
                self.output += data

    def text(self) -> str:
        return self.output.decode(errors="replace").replace("\r\n", "\n")

    def wait_prompt(self, timeout: float = 90.0) -> str:
        """Everything gdb printed up to its next `(gdb) ` prompt."""
        start = len(self.output)
        deadline = time.monotonic() + timeout
        while b"(gdb) " not in self.output[start:]:
            if time.monotonic() > deadline:
                raise AssertionError(f"no gdb prompt within {timeout} s:\n{self.text()}")
            self.read(0.1)
        return self.output[start:].decode(errors="replace").replace("\r\n", "\n")

    def command(self, line: str) -> str:
        os.write(self.fd, line.encode() + b"\n")
        return self.wait_prompt()

    def interrupt_after(self, line: str, seconds: float) -> str:
        """Type `line`, wait, press Ctrl-C; what gdb printed until its prompt."""
        start = len(self.output)
        os.write(self.fd, line.encode() + b"\n")
        self.read(seconds)
        assert b"(gdb) " not in self.output[start:], f"{line} ended too soon:\n{self.text()}"
        os.write(self.fd, b"\x03")
        self.wait_prompt()
        return self.output[start:].decode(errors="replace").replace("\r\n", "\n")

    def close(self) -> int:
        with_timeout = time.monotonic() + 30
        os.write(self.fd, b"quit\n")
        while time.monotonic() < with_timeout:
            self.read(0.2)
            if b"(y or n)" in self.output[-200:]:
                os.write(self.fd, b"y\n")
                self.output += b"\n"
            done, status = os.waitpid(self.pid, os.WNOHANG)
            if done:
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status)
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        os.close(self.fd)
        raise AssertionError(f"relive replay did not end after quit:\n{self.text()}")


def test_ctrl_c_in_relive_replay_stops_the_replay_both_ways(loop_trace):
    """Ctrl-C during continue and reverse-continue in the terminal where `relive replay`
    started gdb: gdb reports the stop (the replayed program never gets the signal), and
    the replay goes on to the end as recorded."""
    loop = _line_of("cpu_loop.c", "for (unsigned long i = 0; i < iters; i++)")
    term = Terminal(loop_trace)
    try:
        term.wait_prompt()
        term.command("set confirm off")
        forward = term.interrupt_after("continue", 1.0)
        assert "Program received signal SIGINT, Interrupt." in forward, term.text()
        where = re.search(r"main \(.*\)\s+at .*cpu_loop\.c:(\d+)\n", forward)
        assert where and loop <= int(where.group(1)) <= loop + 3, forward  # in the loop
        to_end = term.command("continue")
        assert f"iterations: {LOOP_ITERATIONS}" in to_end, term.text()
        assert END_OF_HISTORY in to_end, term.text()
        backward = term.interrupt_after("reverse-continue", 1.0)
        assert "Program received signal SIGINT, Interrupt." in backward, term.text()
        assert "cpu_loop.c:" in backward, backward
        again = term.command("continue")
        assert END_OF_HISTORY in again, term.text()
    finally:
        status = term.close()
    text = term.text()
    assert not any(bad in text for bad in BAD), text
    assert status == 0, text


# -- event numbers ---------------------------------------------------------------------------

def test_goto_n_is_right_after_the_event_dump_numbers_n(target_trace, serve):
    """`relive dump` numbers the write of "pid=..." N; `goto N` lands right after that
    write: the syscall instruction is behind, rax holds its recorded result, `when` says N
    and the next event is N + 1."""
    dump = _dump(target_trace)
    write = _event(dump, r"SYSCALL write\(0x1, .*\) = 0x([0-9a-f]+) .*-> stdout$")
    result = int(dump[write].split(") = ")[1].split()[0], 16)
    out = _with_extension(serve(target_trace), f"goto {write}", "when", "print $rax",
                          "print $orig_rax", "x/i $pc - 2", "monitor info")
    assert f"Current event: {write}" in out, out
    assert f"$1 = {result}\n$2 = 1\n" in out, out  # write's result; syscall 1 is write
    assert re.search(r":\s+syscall\s*$", out, re.MULTILINE), out
    assert f"current event: {write} (next: {write + 1} syscall " in out, out


# -- the gdb extension: moves that keep gdb in step ------------------------------------------

def test_the_command_relive_prints_for_gdb_loads_relives_commands(target_trace, serve):
    """`relive replay --port` prints how to connect; that command line has the commands."""
    server = serve(target_trace)
    connect = CONNECT.search(server.stderr())
    assert connect, server.stderr()
    argv = [*shlex.split(connect["cmd"]), "-nx", "-batch", "-ex", "goto 3", "-ex", "when"]
    out = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, env=gdb_env(), timeout=120,
                         check=False).stdout.decode(errors="replace")
    assert "At event 3\n" in out and "Current event: 3\n" in out, out


def test_goto_past_the_loading_of_libc_shows_the_frames_of_a_forward_run(target_trace,
                                                                         serve):
    """Forward to getpid (a libc function called at gdb_target.c:46), then back before libc
    was loaded, then `goto` the getpid syscall: bt shows the same caller, file and line as
    the forward run, not `?? ()` or stale frames."""
    call = _line_of("gdb_target.c", 'printf("pid=%d\\n", getpid());')
    getpid = _event(_dump(target_trace), r"(?:SYSCALL|BUFFERED) getpid\(")
    out = _with_extension(
        serve(target_trace), "break bump", "continue", "delete", "break getpid", "continue",
        "echo ===FORWARD===\\n", "bt", "echo ===END===\\n", "delete", "goto 3",
        "echo ===EARLY===\\n", "bt", "info sharedlibrary", "echo ===END===\\n",
        f"goto {getpid}", "echo ===GOTO===\\n", "bt", "echo ===END===\\n")
    forward = _frames(section(out, "===FORWARD===", "===END==="))
    early = section(out, "===EARLY===", "===END===")
    moved = _frames(section(out, "===GOTO===", "===END==="))
    assert forward[1].endswith(f"main () at {PROGRAMS_DIR}/gdb_target.c:{call}"), out
    assert "libc.so" not in early and "main ()" not in early, out  # libc not loaded yet
    assert "getpid" in moved[0] and moved[1:] == forward[1:], out
    assert "??" not in "".join(moved), out


def test_checkpoint_ids_never_change(target_trace, serve):
    """Checkpoints get ids in the order they are taken, whatever the events and whatever
    automatic checkpoints the replay adds; `restart N` goes exactly there; deleted ids are
    gone; gdb's own fork-based `checkpoint` is replaced."""
    late = _event(_dump(target_trace), r"(?:SYSCALL|BUFFERED) getpid\(")
    out = _with_extension(
        serve(target_trace), f"goto {late}", "checkpoint", "goto 12", "checkpoint",
        "break bump", "continue", "continue", "reverse-continue", "reverse-continue",
        "delete", "info checkpoints",
        "restart 1", "when", "restart 2", "when", "delete checkpoint 1", "info checkpoints",
        "restart 1", "restart 2", "when")
    assert f"Checkpoint 1 at event {late}\n" in out and "Checkpoint 2 at event 12\n" in out, out
    assert re.search(rf"^Checkpoints \(.*\), \d+ KiB private memory:\n"
                     rf"  1: event {late}\n  2: event 12\n", out, re.MULTILINE), out
    whens = re.findall(r"^Current event: (\d+)$", out, re.MULTILINE)
    assert whens == [str(late), "12", "12"], out
    assert "relive: no checkpoint 1; `info checkpoints` lists them" in out, out
    after_delete = out.split("Deleted checkpoint 1")[1]
    assert "  1: event" not in after_delete and "  2: event 12" in after_delete, out
    assert "Failed to find new fork" not in out, out


def test_last_write_goes_back_to_the_writing_line(target_trace, serve):
    """`last-write counter` from the end: just before `counter += by` in the last bump(5),
    counter still 10, called from the loop in main."""
    line = _line_of("gdb_target.c", "counter += by;")
    out = _with_extension(serve(target_trace), "continue", "last-write counter", "bt",
                          "print counter", "print by", "last-write 1 + 1")
    assert re.search(rf"in bump \(by=5\) at .*gdb_target\.c:{line}\n", out), out
    assert "$1 = 10\n$2 = 5\n" in out, out
    assert "relive: 1 + 1 is not in memory" in out, out


# -- progress on long monitor commands -------------------------------------------------------

def test_long_goto_prints_progress_and_gdb_keeps_waiting(syscalls_trace, serve, monkeypatch):
    """A goto that replays 200,000 syscalls for seconds, from plain gdb with its default
    remotetimeout (2 s): progress notes, no "Ignoring packet error", and the next
    command's answer is its own. (The stub's keepalive through long silences is checked
    on a fake target, in test_gdbstub_gdb.py.)"""
    trace = syscalls_trace
    # The last events are exit_group and the exit: a goto stops before the process ends.
    total = len(_dump(trace))
    last = total - 3
    monkeypatch.setenv("RELIVE_PROGRESS_INTERVAL", "0.05")  # (however fast this machine is)
    assert GDB is not None
    argv = [GDB, "-nx", "-batch", "-ex", f"target remote {serve(trace).address}",
            "-ex", "show remotetimeout", "-ex", f"monitor goto {last}", "-ex", "monitor when"]
    out = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, env=gdb_env(), timeout=600,
                         check=False).stdout.decode(errors="replace")
    assert "Timeout limit to wait for target to respond is 2." in out, out
    assert re.search(rf"relive: going to event {last}: at event \d+ of {total - 1}\n", out), out
    assert f"At event {last}" in out and f"Current event: {last}\n" in out, out
    assert not any(bad in out for bad in BAD), out


def test_ctrl_c_during_a_long_goto_stops_it_where_it_is(syscalls_trace):
    """Ctrl-C during `goto`: gdb stops waiting, relive stops the goto at the event it has
    reached, gdb shows that place, and the session stays in step (gdb 13 sends nothing on
    Ctrl-C there: a late answer would be taken for the next command's)."""
    last = len(_dump(syscalls_trace)) - 2
    term = Terminal(syscalls_trace)
    try:
        term.wait_prompt()
        stopped = term.interrupt_after(f"goto {last}", 1.5)
        where = re.search(r"relive: interrupted; the replay is at event (\d+)\n", stopped)
        assert where and 0 < int(where.group(1)) < last, term.text()
        assert f"Current event: {where.group(1)}\n" in term.command("when"), term.text()
        assert f"Current event: {where.group(1)}\n" in term.command("monitor when"), \
            term.text()
        assert "At event 5\n" in term.command("goto 5"), term.text()
        assert "Current event: 5\n" in term.command("when"), term.text()
    finally:
        term.close()
    assert not any(bad in term.text() for bad in BAD), term.text()


def test_gdb_ends_cleanly_after_relives_commands(target_trace, serve):
    """Front ends end gdb with SIGTERM (pygdbmi does). After relive's commands have run,
    gdb must still exit cleanly (gdb 13 aborts at exit on a leftover Python
    TargetConnection object: the commands must not make one)."""
    assert GDB is not None
    gdb = subprocess.Popen([GDB, "-nx", "-q", "--interpreter=mi3", "-iex", "set confirm off",
                            "-x", _extension()], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, env=gdb_env())
    assert gdb.stdin is not None and gdb.stdout is not None
    gdb.stdin.write(f"-target-select remote {serve(target_trace).address}\n"
                    '-interpreter-exec console "goto 3"\n'
                    '-interpreter-exec console "when"\n'.encode())
    gdb.stdin.flush()
    out = b""
    deadline = time.monotonic() + 60
    while b"Current event: 3" not in out and time.monotonic() < deadline:
        if select.select([gdb.stdout], [], [], 0.2)[0]:
            out += os.read(gdb.stdout.fileno(), 65536)
    gdb.terminate()
    rest, _ = gdb.communicate(timeout=30)
    text = (out + rest).decode(errors="replace")
    assert "Current event: 3" in text, text
    assert "internal-error" not in text and gdb.returncode == 0, text
