"""Stock gdb (console, batch mode) against ``relive replay --port 0``: real sockets, real gdb.

The main oracle: one gdb command script, run on a live process (``gdb BINARY``, ``starti``)
and on a replay of the same binary (``target remote``, no file argument), must print the same
frames, source lines and values once addresses and transport noise are normalised away.
"""
from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import PROGRAMS_DIR, describe, record
from gdbhelpers import (
    END_OF_HISTORY,
    frame_names,
    gdb_batch,
    normalise,
    relive_env,
    requires_gdb,
    section,
    serve,
    start_gdb_batch,
)

from tracefile.reader import TraceReader

__all__ = ["serve"]  # the fixture, imported for pytest
pytestmark = [requires_gdb, pytest.mark.slow]

REAL_PYTHON = Path("/usr/bin/python3")
CPU_LOOP_ITERS = "1500000000"  # a few seconds of replay with no syscalls in the loop


def _record(trace: Path, *argv: object) -> Path:
    rec = record(trace, "--force", *argv)
    assert rec.returncode == 0, describe(rec)
    return trace


@pytest.fixture(scope="module")
def target_trace(programs, tmp_path_factory) -> Path:
    return _record(tmp_path_factory.mktemp("gdb-replay") / "gdb_target", programs["gdb_target"])


@pytest.fixture(scope="module")
def cpu_loop_trace(programs, tmp_path_factory) -> Path:
    return _record(tmp_path_factory.mktemp("gdb-replay") / "cpu_loop", programs["cpu_loop"],
                   CPU_LOOP_ITERS)


def _line(text: str) -> int:
    """The line of gdb_target.c that contains ``text`` (1-based), so the script follows
    edits of the program."""
    lines = (PROGRAMS_DIR / "gdb_target.c").read_text().splitlines()
    found = [n for n, line in enumerate(lines, 1) if text in line]
    assert len(found) == 1, f"{text!r} occurs {len(found)} times in gdb_target.c"
    return found[0]


def oracle_script() -> str:
    """The commands run both live and on the replay, between two markers."""
    open_line = _line('int fd = open("/nonexistent/relive"')
    errno_line = _line("int saved_errno = errno;")
    summary_line = _line('printf("total=%d counter=%d')
    return f"""\
echo ===BEGIN===\\n
break main
continue
next
next
step
bt
info registers rip
stepi
x/i $pc
next
next
finish
break square
continue
next
next
finish
delete
print counter
print history
print message
x/8xb &message
print total
print i
watch counter
continue
continue
continue
info breakpoints
delete
tbreak gdb_target.c:{open_line}
continue
until {errno_line}
next
print fd
print errno
print saved_errno
break factorial if n == 2
continue
bt
print n
up
print n
frame 3
print n
down
print n
frame 0
delete
finish
tbreak gdb_target.c:{summary_line}
continue
info locals
print fact
print len
print counter
print history
info sharedlibrary
info threads
echo ===END===\\n
"""


# -- 1. the live-vs-replay oracle -----------------------------------------------------------------

def test_live_and_replay_print_the_same_frames_and_values(programs, target_trace, serve,
                                                           tmp_path):
    script = tmp_path / "oracle.gdb"
    script.write_text(oracle_script())
    binary = programs["gdb_target"]

    live = gdb_batch("starti > /dev/null", f"source {script}", program=binary)
    server = serve(target_trace)
    replay = gdb_batch(f"source {script}", connect=server.address)

    live_lines = normalise(section(live.output, "===BEGIN===", "===END==="))
    replay_lines = normalise(section(replay.output, "===BEGIN===", "===END==="))
    context = f"LIVE:\n{live}\n\nREPLAY:\n{replay}\n\n{server.describe()}"
    assert replay_lines == live_lines, context

    # ... and the comparison is not trivially true.
    text = "\n".join(replay_lines)
    expected = [
        "Breakpoint 1, main () at",
        "bump (by=1) at",
        "#1 0xADDR in main () at",
        "rip 0xADDR 0xADDR <bump+",
        "Value returned is $1 = 0",
        "$2 = 1",  # counter
        "$3 = {0, 1, 0, 0, 0, 0, 0, 0}",  # history
        "\"relive\", '\\000' <repeats 25 times>",  # message
        "<message>: 0x72 0x65 0x6c 0x69 0x76 0x65 0x00 0x00",
        "Hardware watchpoint 3: counter",
        "Old value = 1", "New value = 3", "Old value = 3", "New value = 6",
        "Old value = 6", "New value = 10",
        "breakpoint already hit 3 times",
        "Temporary breakpoint 4, main () at",
        "$8 = 2",  # errno after the failing open
        "Breakpoint 5, factorial (n=2) at",
        "#3 0xADDR in factorial (n=5) at",
        "$11 = 3", "$12 = 5", "$13 = 4", "#3 0xADDR in factorial (n=5) at",
        "Value returned is $14 = 2",
        "fact = 120", "len = 6", "total = 30",
        "Thread <id> \"gdb_target\" main () at",
    ]
    missing = [e for e in expected if e not in text]
    assert not missing, f"missing {missing} in:\n{text}"
    assert re.search(r"Yes /lib/x86_64-linux-gnu/libc\.so\.6$", text, re.MULTILINE), text
    assert "Traceback" not in server.stderr(), server.describe()


FOUR_WATCHPOINTS = """\
echo ===BEGIN===\\n
break main
continue
watch history[7]
watch history[6]
watch history[3]
watch history[1]
continue
continue
continue
continue
echo ===END===\\n
"""


def test_a_fourth_watchpoint_triggers_or_is_refused(programs, target_trace, serve, tmp_path):
    """Live gdb has four debug registers; a replay that accepts a fourth watchpoint must
    report it like the live process does, or refuse it when the program is resumed."""
    script = tmp_path / "watch4.gdb"
    script.write_text(FOUR_WATCHPOINTS)
    live = gdb_batch("starti > /dev/null", f"source {script}", program=programs["gdb_target"])
    assert "New value = 15" in live.output, str(live)
    server = serve(target_trace)
    replay = gdb_batch(f"source {script}", connect=server.address)
    if "Could not insert hardware watchpoint" in replay.output:
        # Refusing it (the replay has three debug registers for gdb) is an honest answer too;
        # silently never reporting it is not.
        assert "You may have requested too many hardware" in replay.output, str(replay)
        return
    assert (normalise(section(replay.output, "===BEGIN===", "===END==="))
            == normalise(section(live.output, "===BEGIN===", "===END==="))), \
        f"LIVE:\n{live}\n\nREPLAY:\n{replay}"


# -- the server's own interface -------------------------------------------------------------------

def test_port_zero_prints_the_port_and_the_gdb_command(target_trace, serve):
    server = serve(target_trace)
    err = server.stderr()
    assert f"relive: serving {target_trace} on 127.0.0.1:{server.port}" in err, err
    assert server.port > 0
    connect = re.search(r"relive: connect with: (.+)$", err, re.MULTILINE)
    assert connect and f"target remote 127.0.0.1:{server.port}" in connect.group(1), err


def test_program_output_is_re_emitted_as_the_replay_passes_it(target_trace, serve):
    """Recorded with stdout on a pipe, the program's printf output is one write(2) at exit:
    nothing is re-emitted before the replay passes that write, all of it after."""
    server = serve(target_trace)
    run = gdb_batch("break main", "continue", "break write", "continue", "bt",
                    connect=server.address)
    assert re.search(r"Breakpoint 2, .*_write \(fd=1", run.output), str(run)
    assert server.stdout() == "", server.describe()
    run = gdb_batch("finish", connect=server.address)
    out = server.wait_for_stdout("pid=")
    assert out.startswith("open=-1 errno=2\ntotal=30 counter=15 fact=120 len=6\npid="), \
        f"{run}\n{server.describe()}"
    run = gdb_batch("continue", connect=server.address)
    assert END_OF_HISTORY in run.output, str(run)


def test_output_is_shown_as_the_user_moves_forwards_and_not_by_reverse_searches(
        programs, tmp_path, serve):
    """Going backwards re-runs the replay from checkpoints: that prints nothing. Moving
    forwards again over a write prints it again, as the program did at that point."""
    trace = _record(tmp_path / "trace", programs["print_loop"], "5")
    server = serve(trace)
    everything = "".join(f"tick {i}\n" for i in range(5)) + "done\n"
    run = gdb_batch("continue", "reverse-stepi", "reverse-stepi", "break nanosleep",
                    "reverse-continue", "reverse-continue", connect=server.address)
    assert run.output.count("Breakpoint 1, ") == 2, str(run)
    assert server.wait_for_stdout("done\n") == everything, server.describe()
    time.sleep(0.5)
    assert server.stdout() == everything, server.describe()  # nothing more while going back
    run = gdb_batch("delete", "continue", connect=server.address)
    assert END_OF_HISTORY in run.output, str(run)
    # from the second-last nanosleep (after tick 3) onwards: tick 4 and done, again
    assert server.wait_for_stdout(everything + "tick 4\ndone\n") == (
        everything + "tick 4\ndone\n"), server.describe()


# -- 2. kill, disconnects, one gdb at a time -------------------------------------------------------

def test_kill_ends_gdb_cleanly_and_the_server_serves_again(target_trace, serve):
    server = serve(target_trace)
    run = gdb_batch("break bump", "continue", "kill", connect=server.address)
    assert run.returncode == 0, str(run)
    assert "Breakpoint 1, bump (by=1)" in run.output, str(run)
    assert re.search(r"\[Inferior 1 \(process \d+\) killed\]", run.output), str(run)
    assert server.alive(), server.describe()

    again = gdb_batch("break bump", "continue", "print by", "print counter",
                      connect=server.address)
    assert again.returncode == 0, str(again)
    by, counter = _by_and_counter(again.output)
    assert counter == by * (by - 1) // 2, again  # a consistent state of the replay


def _by_and_counter(output: str) -> tuple[int, int]:
    """``print by`` and ``print counter`` at bump's first line (before `counter += by`)."""
    values = [int(v) for v in re.findall(r"^\$\d+ = (-?\d+)$", output, re.MULTILINE)]
    assert len(values) == 2, output
    return values[0], values[1]


def test_gdb_quitting_midway_leaves_the_server_ready_for_the_next_gdb(target_trace, serve):
    server = serve(target_trace)
    first = gdb_batch("break bump", "continue", "continue", connect=server.address)
    assert "Breakpoint 1, bump (by=2)" in first.output, str(first)
    assert re.search(r"\[Inferior 1 \(process \d+\) detached\]", first.output), str(first)

    second = gdb_batch("break bump", "continue", "print by", "print counter",
                       connect=server.address)
    assert second.returncode == 0, str(second)
    by, counter = _by_and_counter(second.output)
    assert counter == by * (by - 1) // 2, str(second)
    third = gdb_batch("continue", "print counter", connect=server.address)
    assert END_OF_HISTORY in third.output, str(third)
    assert "$1 = 15" in third.output, str(third)
    assert "Traceback" not in server.stderr(), server.describe()


def test_gdb_killed_during_a_resume_does_not_wedge_the_server(cpu_loop_trace, serve, tmp_path):
    server = serve(cpu_loop_trace)
    log = tmp_path / "first-gdb.log"
    first = start_gdb_batch("continue", connect=server.address, log=log)
    try:
        deadline = time.monotonic() + 30
        while "from remote target" not in log.read_text(errors="replace"):
            assert time.monotonic() < deadline and first.poll() is None, log.read_text()
            time.sleep(0.05)
        time.sleep(0.5)  # the continue is now running through the loop
        assert first.poll() is None, "the replay ended before gdb could be killed: " \
            "make CPU_LOOP_ITERS larger"
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)

    second = gdb_batch("info registers rip", "continue", connect=server.address, timeout=60)
    assert "rip " in second.output, f"{second}\n{server.describe()}"
    assert END_OF_HISTORY in second.output, f"{second}\n{server.describe()}"
    assert "iterations: " + CPU_LOOP_ITERS in server.wait_for_stdout("result:"), \
        server.describe()


def test_a_second_gdb_is_refused_while_one_is_attached(target_trace, serve, tmp_path):
    server = serve(target_trace)
    log = tmp_path / "first-gdb.log"
    # The first gdb stops at bump, then holds the connection for a while.
    first = start_gdb_batch("break bump", "continue", "shell sleep 4", "print counter",
                            connect=server.address, log=log)
    try:
        deadline = time.monotonic() + 30
        while "Breakpoint 1, bump" not in log.read_text(errors="replace"):
            assert time.monotonic() < deadline and first.poll() is None, log.read_text()
            time.sleep(0.05)
        refused = gdb_batch("print counter", connect=server.address, timeout=30)
        assert "another gdb is already connected to this replay" in refused.output, str(refused)
        assert refused.returncode != 0, str(refused)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(timeout=10)
    text = log.read_text()
    assert "$1 = 0" in text, text  # the first session was undisturbed
    assert re.search(r"\[Inferior 1 \(process \d+\) detached\]", text), text
    after = gdb_batch("print counter", connect=server.address)
    assert "$1 = 0" in after.output, str(after)


# -- writes and calls: a diversion, never history ---------------------------------------------

def test_writes_and_calls_work_in_a_diversion_and_change_no_history(target_trace, serve):
    server = serve(target_trace)
    run = gdb_batch("break bump", "continue",
                    "set var counter = 42", "print counter",
                    "set var $rax = 12345", "print $rax",
                    "print square(3)",
                    "continue", "print by", "print counter",
                    connect=server.address)
    out = run.output
    assert "Breakpoint 1, bump (by=1)" in out, str(run)
    assert "$1 = 42" in out and "$2 = 12345" in out and "$3 = 9" in out, str(run)
    assert "relive: what gdb wrote is dropped: the replay goes on as recorded" in out, str(run)
    assert "Breakpoint 1, bump (by=2)" in out, str(run)
    assert "$4 = 2" in out and "$5 = 1" in out, str(run)  # as recorded, not 42 + 2
    assert server.alive(), server.describe()


# -- 3. a real binary: /usr/bin/python3 ------------------------------------------------------------

@pytest.mark.skipif(not REAL_PYTHON.exists(), reason="/usr/bin/python3 is not installed")
def test_break_in_libc_of_a_real_python(tmp_path, serve):
    trace = _record(tmp_path / "python", REAL_PYTHON, "-c", "import os; os.getpid(); print(1)")
    server = serve(trace)
    run = gdb_batch("break getpid", "continue", "bt", "info sharedlibrary",
                    connect=server.address)
    assert re.search(r"Breakpoint 1(\.\d+)?, .*getpid", run.output), str(run)
    names = frame_names(run.output)
    assert names and "getpid" in names[0], run  # the libc frame
    assert any("Py" in n for n in names), run  # frames of the interpreter itself
    assert names[-1] == "_start", str(run)
    assert re.search(r"Yes\s+target:/lib/x86_64-linux-gnu/libc\.so\.6", run.output), str(run)
    final = gdb_batch("delete", "continue", connect=server.address)
    assert END_OF_HISTORY in final.output, str(final)
    assert server.wait_for_stdout("1\n") == "1\n", server.describe()


# -- 5. extended-remote: run restarts the replay --------------------------------------------------

def test_extended_remote_run_restarts_and_hits_the_breakpoint(target_trace, serve):
    server = serve(target_trace)
    run = gdb_batch("set confirm off", "break bump", "continue", "continue", "run",
                    "print by", "print counter", connect=server.address, extended=True)
    out = run.output
    assert "Could not write register" not in out, str(run)
    tail = out[out.index("Breakpoint 1, bump (by=2)"):]
    assert "Breakpoint 1, bump (by=1)" in tail, str(run)
    assert "$1 = 1" in tail and "$2 = 0" in tail, str(run)


def test_extended_remote_run_keeps_gdbs_open_files_readable(target_trace, serve):
    server = serve(target_trace)
    run = gdb_batch("set confirm off", "break bump", "continue", "run", "continue", "bt",
                    connect=server.address, extended=True)
    assert run.output.count("Breakpoint 1, bump (by=1)") == 2, str(run)
    assert "Can't read data for section" not in run.output, str(run)
    assert "internal error" not in server.stderr(), server.describe()


# -- `relive replay DIR` without --port starts gdb itself ----------------------------------------

def test_replay_without_port_runs_gdb_connected(target_trace):
    """gdb reads its commands from stdin when it is not a terminal."""
    env = dict(relive_env(), DEBUGINFOD_URLS="", LC_ALL="C", LANG="C")
    proc = subprocess.run(
        [sys.executable, "-m", "relive", "replay", str(target_trace)],
        input=b"break bump\ncontinue\nprint by\ncontinue\nprint counter\nquit\n",
        capture_output=True, env=env, timeout=90, check=False)
    out = proc.stdout.decode(errors="replace") + proc.stderr.decode(errors="replace")
    assert proc.returncode == 0, out
    assert "Breakpoint 1, bump (by=1)" in out, out
    assert "Breakpoint 1, bump (by=2)" in out, out
    assert "$2 = 1" in out, out


# -- the documentation's launch.json -------------------------------------------------------------

def test_the_documented_launch_json_is_valid_and_in_the_guide():
    docs = Path(__file__).resolve().parent.parent / "docs"
    launch = json.loads((docs / "vscode-launch.json").read_text())
    config = launch["configurations"][0]
    assert config["type"] == "cppdbg" and config["MIMode"] == "gdb"
    assert config["miDebuggerServerAddress"].startswith("127.0.0.1:")
    assert config["launchCompleteCommand"] == "exec-continue"
    guide = (docs / "gdb.md").read_text()
    assert (docs / "vscode-launch.json").read_text().strip() in guide


@pytest.mark.parametrize("fast", [True, False], ids=["compiled", "python"])
def test_a_breakpoint_where_a_timer_signal_was_delivered_stops_there(
        programs, tmp_path, serve, monkeypatch, fast):
    """prof_timer's SIGPROFs land in a computation and are delivered at a block's return
    address; replay finds such a point by a debug-register breakpoint on its pc. A gdb
    breakpoint on that same pc must stop there like any other (it used to make replay
    report a divergence: the int3's trap after relive's own was taken for relive's), and
    the replay must then go on to the end. (itimer_spin, a loop that calls nothing, gets its
    signals at jump points now: replay writes the state there and never runs to that pc.)"""
    trace = _record(tmp_path / "prof_timer", programs["prof_timer"], "2000", "1", "4")
    reader = TraceReader(trace)
    try:
        points = [ev.info["rip"] for ev in reader.events()
                  if ev.kind.name == "SIGNAL" and ev.info.get("where") == "user"]
    finally:
        reader.close()
    if not points:
        pytest.skip("every SIGALRM of this recording came at a syscall")
    monkeypatch.setenv("RELIVE_FASTPATH", "1" if fast else "0")
    server = serve(trace)
    run = gdb_batch(f"break *{points[0]:#x}", "continue", "print/x $pc", "continue",
                    "print/x $pc", "delete", "continue", connect=server.address, timeout=180)
    out = run.output
    assert out.count("Breakpoint 1, ") == 2, str(run)
    assert out.count(f"= {points[0]:#x}") == 2, str(run)
    assert "Remote failure" not in out and "diverged" not in server.stderr(), str(run)
    assert END_OF_HISTORY in out, str(run)
