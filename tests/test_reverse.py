"""Reverse execution through stock gdb 13, checked against gdb's own ``record full``.

The oracle: the same gdb command script runs (a) on a live process recorded by gdb itself
(``break main``, ``run``, ``record full``, then the script) and (b) on the relive replay of the
same program (``target remote``, ``break main``, ``continue``, then the script). Both must
print the same frames, source lines and values once addresses are normalised.

Limits of the oracle on these machines, and how the scripts stay inside them:

- ``record full`` aborts on glibc's AVX code: the live process gets GLIBC_TUNABLES hiding AVX.
- gdb 13.1 cannot write the x86 extended state on this kernel (even ``set var $xmm0.uint128
  = 5`` on a plain live process fails with "Couldn't write extended state status: Bad
  address"), so ``record full`` cannot go back over an instruction that changed an SSE/x87
  register: printf, strlen, memset, and the lazy-binding trampoline (_dl_runtime_resolve
  saves and restores the vector registers) all do. The scripts only reverse over the test
  programs' own -O0 code and the open()/read() wrappers, and the live process gets
  LD_BIND_NOW=1 so that no first call goes through the trampoline.
- ``record full``'s hardware watchpoints do not trigger backwards: the live side uses
  software watchpoints (``set can-use-hw-watchpoints 0``), relive uses its debug registers;
  "Hardware watchpoint N" and "Watchpoint N" are the same thing here.
- ``record full`` history begins where recording started (main) and ends where the live
  process got to; a replay's history is the whole run. Every script therefore first runs
  forward to its furthest point and only then goes back, never forward past that point, and
  never back to the start of history (the start differs: main vs the loader's _start).
  Those ends are tested on relive alone.
"""
from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from conftest import describe, record
from gdbhelpers import (
    END_OF_HISTORY,
    MiSession,
    gdb_batch,
    normalise,
    requires_gdb,
    serve,
)

__all__ = ["serve"]  # the fixture, imported for pytest
pytestmark = [requires_gdb, pytest.mark.slow]

GLIBC_TUNABLES = "glibc.cpu.hwcaps=-AVX2,-AVX,-AVX512F,-ERMS,-AVX_Fast_Unaligned_Load"
BEGIN, END = "==reverse-script-begin==", "==reverse-script-end=="
LOOP_ITERATIONS = "200"  # cpu_loop.c: x is seeded with getpid(), so only i is compared
DATA = b"0123456789ABCDEFGHIJ"  # rev_buffer reads 10 bytes, then 4 more into buffer+4

#: Lines only one side prints for reasons that are not about reverse execution.
_ORACLE_NOISE = [re.compile(p) for p in (
    r"^Process record",                 # record full's own messages
    r"^The next instruction is syscall",
    r"^\d+\s+in \S+\.[cS]$",            # "26 in ../sysdeps/...": gdb's second mention of a
    r"^\d+\s+\S+\.[cS]: No such file",  # missing libc source file is worded differently
)]


# -- fixtures -------------------------------------------------------------------------------

def _record(trace: Path, *argv: object) -> Path:
    rec = record(trace, "--force", *argv)
    assert rec.returncode == 0, describe(rec)
    return trace


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("reverse-data") / "data.txt"
    path.write_bytes(DATA)
    return path


@pytest.fixture(scope="module")
def target_trace(programs, tmp_path_factory) -> Path:
    return _record(tmp_path_factory.mktemp("reverse") / "gdb_target", programs["gdb_target"])


@pytest.fixture(scope="module")
def loop_trace(programs, tmp_path_factory) -> Path:
    return _record(tmp_path_factory.mktemp("reverse") / "cpu_loop", programs["cpu_loop"],
                   LOOP_ITERATIONS)


@pytest.fixture(scope="module")
def buffer_trace(programs, tmp_path_factory, data_file) -> Path:
    return _record(tmp_path_factory.mktemp("reverse") / "rev_buffer", programs["rev_buffer"],
                   data_file)


# -- running one script both ways -----------------------------------------------------------

def _script(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def _between_markers(output: str) -> str:
    start = output.find(BEGIN)
    assert start >= 0, f"gdb never reached the script:\n{output}"
    stop = output.find(END, start)
    assert stop >= 0, f"the script did not run to its end (an error stops gdb -batch):\n{output}"
    return output[start + len(BEGIN):stop]


def live_record_full(binary: Path, scenario: str, tmp_path: Path, args=()) -> str:
    """``scenario`` on a live process under gdb's ``record full`` started at main."""
    script = _script(
        tmp_path / "live.gdb",
        f"set environment GLIBC_TUNABLES={GLIBC_TUNABLES}",
        "set environment LD_BIND_NOW=1",
        "set can-use-hw-watchpoints 0",
        "set record full insn-number-max unlimited",
        "break main", "run", "record full",
        f"echo {BEGIN}\\n", scenario.strip(), f"echo {END}\\n")
    run = gdb_batch(program=binary, program_args=[str(a) for a in args], script=script)
    text = _between_markers(run.output)
    # If record full itself failed, the comparison would only show a confusing diff.
    assert "Couldn't write extended state" not in text, f"record full failed:\n{run}"
    assert "Process record does not support" not in text, f"record full failed:\n{run}"
    return text


def on_replay(server, scenario: str, tmp_path: Path) -> str:
    """``scenario`` on the relive replay, after running forward to main."""
    script = _script(tmp_path / "replay.gdb", "break main", "continue",
                     f"echo {BEGIN}\\n", scenario.strip(), f"echo {END}\\n")
    run = gdb_batch(connect=server.address, script=script)
    assert "Traceback" not in server.stderr(), server.describe()
    return _between_markers(run.output)


def comparable(text: str) -> list[str]:
    lines = [line.replace("Hardware watchpoint", "Watchpoint") for line in normalise(text)]
    return [line for line in lines if not any(p.search(line) for p in _ORACLE_NOISE)]


def assert_same(live: str, replay: str) -> list[str]:
    """The two transcripts agree line for line; returns the replay's lines."""
    want, got = comparable(live), comparable(replay)
    assert got == want, ("relive and record full disagree:\n--- record full\n"
                         + "\n".join(want) + "\n--- relive\n" + "\n".join(got))
    return got


def both(binary: Path, trace: Path, scenario: str, serve, tmp_path: Path, args=()) -> list[str]:
    live = live_record_full(binary, scenario, tmp_path, args)
    replay = on_replay(serve(trace), scenario, tmp_path)
    return assert_same(live, replay)


def values(lines: list[str]) -> list[str]:
    """The values printed by ``print`` (``$N = VALUE``), in order."""
    return [m.group(1) for line in lines if (m := re.match(r"^\$\d+ = (.*)$", line))]


def stops(lines: list[str]) -> list[tuple[str, int]]:
    """(function, line) of every frame line gdb printed (``func (args) at file:LINE``)."""
    out = []
    for line in lines:
        m = re.match(r"^(?:#\d+ |\w+ \d+, )?(?:0xADDR in )?(\w+) \(.*\) at \S+:(\d+)$",
                     line)
        if m:
            out.append((m.group(1), int(m.group(2))))
    return out


# -- the record-full oracle -----------------------------------------------------------------

STEPPING = """
break 40
continue
break 38 if i == 3
reverse-continue
print counter
reverse-step
print counter
reverse-step
reverse-step
reverse-step
print counter
print by
reverse-finish
print/x $pc - (long)main
reverse-stepi
reverse-stepi
print/x $pc - (long)main
frame
reverse-next
reverse-next
print i
print total
reverse-step
bt
print x
print result
reverse-stepi
reverse-stepi
print/x $pc - (long)square
next
next
next
next
print i
print total
delete
break 38 if i == 4
continue
print counter
print total
"""


def test_stepping_backwards_matches_record_full(programs, target_trace, serve, tmp_path):
    """reverse-step into a callee's last line, reverse-finish (gdb 13 stops on the call
    instruction, mid-line), reverse-stepi, reverse-next over a call, a conditional
    breakpoint hit backwards, then forward again with next and continue."""
    lines = both(programs["gdb_target"], target_trace, STEPPING, serve, tmp_path)
    assert ("main", 38) in stops(lines)  # break 38 if i == 3, reached backwards
    assert ("bump", 24) in stops(lines)  # reverse-step from line 38: bump's last line
    assert ("square", 18) in stops(lines)  # reverse-step from line 36: square's last line
    vals = values(lines)
    # counter before the 4th bump is done, its old value, by, i and total on the way back,
    # square's x and result, then i/total/counter forward again.
    assert vals[:3] == ["10", "10", "6"], lines
    assert vals[3] == "4", lines  # by
    assert vals[6:8] == ["2", "5"], lines  # i, total at line 36 of the 3rd iteration
    assert vals[8:10] == ["2", "4"], lines  # square(x=2): result 4
    assert vals[-2:] == ["15", "14"], lines  # counter and total at line 38 with i == 4


WATCH_ONCE = """
break 40
continue
watch counter
reverse-continue
bt
print counter
print/x $pc - (long)bump
continue
print counter
delete
reverse-finish
print i
"""


def test_watchpoint_backwards_matches_record_full(programs, target_trace, serve, tmp_path):
    """A reverse watchpoint stops before the writing instruction, with the later value as
    Old and the earlier as New; continuing forward hits the same write the other way."""
    lines = both(programs["gdb_target"], target_trace, WATCH_ONCE, serve, tmp_path)
    text = "\n".join(lines)
    assert "Old value = 15\nNew value = 10" in text
    assert "Old value = 10\nNew value = 15" in text
    assert values(lines)[0] == "10"  # before the write


WATCH_REPEATEDLY = """
break 40
continue
watch counter
reverse-continue
reverse-continue
reverse-continue
print history
continue
print counter
"""


def test_repeated_reverse_watchpoint_matches_record_full(programs, target_trace, serve,
                                                         tmp_path):
    lines = both(programs["gdb_target"], target_trace, WATCH_REPEATEDLY, serve, tmp_path)
    text = "\n".join(lines)
    for old, new in (("15", "10"), ("10", "6"), ("6", "3")):
        assert f"Old value = {old}\nNew value = {new}" in text


REVERSE_STEPI_OVER_WATCHED_WRITE = """
break 40
continue
watch counter
reverse-continue
continue
reverse-stepi
print counter
"""


def test_reverse_stepi_over_watched_write_reports_it(programs, target_trace, serve, tmp_path):
    lines = both(programs["gdb_target"], target_trace, REVERSE_STEPI_OVER_WATCHED_WRITE,
                 serve, tmp_path)
    assert "\n".join(lines).count("Old value = 15\nNew value = 10") == 2


RECURSION = """
break 44
continue
print fact
break factorial if n == 3
reverse-continue
bt
reverse-finish
bt
reverse-stepi
print/x $pc - (long)factorial
delete
reverse-next
reverse-next
print n
finish
next
finish
print $
"""


def test_recursion_and_conditional_breakpoint_match_record_full(programs, target_trace, serve,
                                                                tmp_path):
    """``break factorial if n == 3`` hit backwards, reverse-finish into the caller's frame of
    the same function, then finish forward with the returned values."""
    lines = both(programs["gdb_target"], target_trace, RECURSION, serve, tmp_path)
    # the hit, then bt: factorial(3) <- factorial(4) <- factorial(5) <- main
    assert stops(lines)[:6] == [("main", 44), ("factorial", 28), ("factorial", 28),
                                ("factorial", 30), ("factorial", 30), ("main", 43)], lines
    # reverse-finish: on the call instruction in factorial(4), mid-line (gdb 13)
    assert any(re.fullmatch(r"0xADDR in factorial \(n=4\) at .*/gdb_target\.c:30", line)
               for line in lines), lines
    assert "Value returned is $4 = 24" in lines
    assert "Value returned is $5 = 120" in lines
    assert values(lines)[-2] == "4"  # n in factorial(4), reached by reverse-next


LOOP_CONDITION = """
break 26
continue
break 22 if i == 150
reverse-continue
print i
delete
next
next
next
next
print i
reverse-next
reverse-next
print i
"""


def test_conditional_breakpoint_in_a_loop_matches_record_full(programs, loop_trace, serve,
                                                              tmp_path):
    """Going back to ``i == 150`` of a 200-iteration loop: gdb evaluates the condition at
    every earlier hit and resumes backwards (one reverse search and one reverse step per
    hit), so this also checks that a long run of those lands on the right iteration."""
    lines = both(programs["cpu_loop"], loop_trace, LOOP_CONDITION, serve, tmp_path,
                 args=[LOOP_ITERATIONS])
    assert ("main", 22) in stops(lines)
    assert values(lines) == ["150", "151", "150"], lines


BACK_AND_FORTH = """
break 40
continue
break bump
reverse-continue
print by
reverse-continue
print by
continue
print by
print counter
reverse-continue
print by
reverse-continue
print by
print counter
"""


def test_reverse_forward_reverse_gives_the_same_stops(programs, target_trace, serve, tmp_path):
    lines = both(programs["gdb_target"], target_trace, BACK_AND_FORTH, serve, tmp_path)
    assert values(lines) == ["5", "4", "5", "10", "4", "3", "3"], lines
    assert [s for s in stops(lines) if s[0] == "bump"] == [("bump", 22)] * 5


READ_BUFFER = """
break 28
continue
print buffer
print n
reverse-next
reverse-next
print buffer
print n
reverse-next
reverse-next
print buffer
next
print buffer
print n
next
next
print buffer
"""

BEFORE = '"before the read", \'\\000\' <repeats 16 times>'
AFTER_FIRST = '"0123456789 read", \'\\000\' <repeats 16 times>'
AFTER_SECOND = '"0123ABCD89 read", \'\\000\' <repeats 16 times>'


def test_reversing_over_read_restores_the_buffer(programs, buffer_trace, data_file, serve,
                                                 tmp_path):
    """reverse-next over each read() brings back what the buffer held before the kernel wrote
    into it; next redoes the read."""
    lines = both(programs["rev_buffer"], buffer_trace, READ_BUFFER, serve, tmp_path,
                 args=[data_file])
    assert values(lines) == [AFTER_SECOND, "4", AFTER_FIRST, "10", BEFORE,
                             AFTER_FIRST, "10", AFTER_SECOND], lines


READ_WATCH = """
break 28
continue
watch buffer[5]
reverse-continue
bt 1
print buffer
"""


def test_watchpoint_on_a_kernel_write_matches_record_full(programs, buffer_trace, data_file,
                                                          serve, tmp_path):
    """A watchpoint on bytes that read() filled stops at the read's syscall instruction,
    before the kernel wrote."""
    lines = both(programs["rev_buffer"], buffer_trace, READ_WATCH, serve, tmp_path,
                 args=[data_file])
    text = "\n".join(lines)
    assert "Old value = 66 'B'\nNew value = 53 '5'" in text
    assert "__GI___libc_read (fd=3, buf=0xADDR <buffer+4>, nbytes=4)" in text
    assert values(lines) == [AFTER_FIRST]


READ_WATCH_TWICE = READ_WATCH + """
reverse-continue
bt 1
print buffer
"""


def test_second_reverse_watchpoint_on_kernel_writes(programs, buffer_trace, data_file, serve,
                                                    tmp_path):
    lines = both(programs["rev_buffer"], buffer_trace, READ_WATCH_TWICE, serve, tmp_path,
                 args=[data_file])
    assert "Old value = 53 '5'\nNew value = 101 'e'" in "\n".join(lines)
    assert values(lines) == [AFTER_FIRST, BEFORE]


# -- relive alone: the ends of history, monitor commands ------------------------------------

def _replay_only(server, tmp_path: Path, *commands: str) -> list[str]:
    text = on_replay(server, "\n".join(commands), tmp_path)
    return normalise(text)


def test_reverse_continue_without_breakpoints_reaches_the_start(target_trace, serve, tmp_path):
    server = serve(target_trace)
    lines = _replay_only(server, tmp_path,
                         "break 40", "continue", "delete", "reverse-continue", "monitor when",
                         "reverse-stepi", "reverse-continue",
                         "break main", "continue", "print counter")
    assert lines.count(END_OF_HISTORY) == 3, lines  # reverse-stepi at the start, too
    start = lines.index(END_OF_HISTORY)
    assert lines[start + 1].startswith("0xADDR in _start ()"), lines
    assert "Current event: 0" in lines  # right after event 0, the first exec
    # and forward again from the start of history
    assert any(re.fullmatch(r"Breakpoint 3, main \(\) at .*/gdb_target\.c:35", line)
               for line in lines), lines
    assert values(lines) == ["0"]


def test_reverse_step_from_the_end_of_the_trace(target_trace, serve, tmp_path):
    """At the end the process is parked on its exit_group; stepping back from there."""
    server = serve(target_trace)
    lines = _replay_only(server, tmp_path, "continue", "reverse-stepi", "bt 1",
                         "reverse-finish", "bt 1", "continue")
    assert not any("relive:" in line or "Remote failure" in line for line in lines), lines
    assert lines.count(END_OF_HISTORY) == 2, lines  # going forward, twice
    assert lines[0] == END_OF_HISTORY and "__GI__exit" in lines[1], lines
    assert re.match(r"#0 0xADDR in __GI__exit ", lines[4]), lines  # one instruction back
    assert any(re.match(r"#0 0xADDR in __run_exit_handlers ", line) for line in lines), lines
    assert "__GI__exit" in lines[lines.index(END_OF_HISTORY, 1) + 1], lines


def test_stepi_into_exit_does_not_skip_instructions(target_trace, serve, tmp_path):
    server = serve(target_trace)
    lines = _replay_only(server, tmp_path, "continue", "reverse-finish", "stepi",
                         "print $pc == (long)_exit")
    assert values(lines) == ["1"], lines


def test_reverse_continue_from_the_end_of_the_trace(target_trace, serve, tmp_path):
    server = serve(target_trace)
    lines = _replay_only(server, tmp_path,
                         "continue", "monitor when",
                         "break bump", "reverse-continue", "print by", "print counter")
    assert lines[0] == END_OF_HISTORY, lines
    assert "__GI__exit" in lines[1], lines
    assert ("bump", 22) in stops(lines)
    assert values(lines) == ["5", "10"]


def test_monitor_when_goto_and_checkpoints(target_trace, serve, tmp_path):
    server = serve(target_trace)
    lines = _replay_only(server, tmp_path,
                         "monitor when",
                         "monitor checkpoint",  # at a breakpoint, not an event boundary
                         "monitor goto 5", "monitor when",
                         "monitor checkpoint", "monitor info checkpoints",
                         "maintenance flush register-cache", "bt 1",
                         "delete", "break bump", "continue", "print by",
                         "monitor info")
    text = "\n".join(lines)
    when = [int(m.group(1)) for m in re.finditer(r"Current event: (\d+)", text)]
    assert when[1] == 5 and when[0] > 5, lines
    assert "relive: checkpoints are taken at event boundaries" in text
    assert "Checkpoint 1 at event 5" in text
    listing = next(i for i, line in enumerate(lines) if line.startswith("Checkpoints ("))
    assert lines[listing + 1] == "1: event 5", lines
    assert values(lines) == ["1"], lines  # from event 5 the first bump is bump(1)
    assert re.search(r"events: \d+ \(complete\)", text)


# -- gdb/MI -----------------------------------------------------------------------------------

def _args(frame: dict) -> dict[str, str]:
    return {a["name"]: a["value"] for a in frame.get("args", [])}


def test_reverse_through_mi(target_trace, serve):
    """What front ends send: ``-exec-continue --reverse``, ``-exec-next --reverse``, ... In gdb
    13.1 the *stopped record at the start of history has no reason: the console says it."""
    pytest.importorskip("pygdbmi")
    server = serve(target_trace)
    with MiSession() as mi:
        mi.ok(f"-target-select remote {server.address}", expect=("connected",))
        assert mi.wait_stopped()["frame"]["func"] == "_start"

        def run(cmd: str) -> dict:
            mi.ok(cmd)
            return mi.wait_stopped()

        mi.ok("-break-insert gdb_target.c:40")
        assert run("-exec-continue")["frame"]["line"] == "40"
        mi.ok("-break-insert bump")
        stop = run("-exec-continue --reverse")
        assert stop["reason"] == "breakpoint-hit", mi.transcript()
        assert (stop["frame"]["func"], _args(stop["frame"])) == ("bump", {"by": "5"})

        stop = run("-exec-finish --reverse")
        assert (stop["frame"]["func"], stop["frame"]["line"]) == ("main", "37")
        assert stop["reason"] == "end-stepping-range"
        call_pc = int(stop["frame"]["addr"], 16)
        stop = run("-exec-next --reverse")  # to the start of line 37
        assert stop["frame"]["line"] == "37" and int(stop["frame"]["addr"], 16) < call_pc
        stop = run("-exec-step --reverse")
        assert (stop["frame"]["func"], stop["frame"]["line"]) == ("main", "36")
        stop = run("-exec-step-instruction --reverse")
        assert stop["frame"]["line"] == "38"
        stop = run("-exec-next --reverse")  # back over square(i)
        assert (stop["frame"]["func"], stop["frame"]["line"]) == ("main", "38")
        assert mi.ok("-data-evaluate-expression i")["value"] == "3"
        assert mi.ok("-data-evaluate-expression counter")["value"] == "10"

        mi.ok("-break-delete")
        stop = run("-exec-next-instruction --reverse")  # back over the call to bump(4)
        assert (stop["frame"]["func"], stop["frame"]["line"]) == ("main", "37")
        assert mi.ok("-data-evaluate-expression counter")["value"] == "6"

        mi.ok("-break-watch counter")
        stop = run("-exec-continue --reverse")
        assert stop["reason"] == "watchpoint-trigger", mi.transcript()
        assert stop["value"] == {"old": "6", "new": "3"}
        assert _args(stop["frame"]) == {"by": "3"}
        assert mi.ok("-data-evaluate-expression counter")["value"] == "3"

        stop = run("-exec-continue")  # forward over the same write
        assert stop["reason"] == "watchpoint-trigger"
        assert stop["value"] == {"old": "3", "new": "6"}

        mi.ok("-break-delete")
        mark = len(mi.records)
        stop = run("-exec-continue --reverse")
        assert "reason" not in stop or stop["reason"] == "no-history", stop
        assert END_OF_HISTORY in mi.console_since(mark), mi.transcript()
        assert stop["frame"]["func"] == "_start"


def test_ctrl_c_interrupts_a_long_reverse_search(programs, tmp_path, serve):
    """reverse-continue to hot() from the end replays the whole 100,000-call loop; Ctrl-C
    (-exec-interrupt) stops the search within a second or two, leaves a consistent state
    inside the loop, and the next reverse-continue still finds the previous hot() call."""
    trace = _record(tmp_path / "hot", programs["rev_hot_loop"])
    server = serve(trace)
    with MiSession() as mi:
        mi.ok("-gdb-set mi-async on")
        mi.ok(f"-target-select remote {server.address}", expect=("connected",))
        mi.wait_stopped()
        mi.ok("-break-insert marker")
        mi.ok("-exec-continue")
        assert mi.wait_stopped().get("reason") == "breakpoint-hit"
        mi.ok("-break-insert hot")
        mi.ok("-exec-continue --reverse")
        time.sleep(0.5)
        started = time.monotonic()
        mi.ok("-exec-interrupt")
        stopped = mi.wait_stopped(timeout=10)
        assert time.monotonic() - started < 3, stopped
        assert stopped.get("signal-name") == "SIGINT", stopped
        here = int(mi.ok("-data-evaluate-expression i")["value"])
        assert 0 < here < 100_000
        mi.ok("-exec-continue --reverse")
        assert mi.wait_stopped(timeout=60).get("reason") == "breakpoint-hit"
        before = int(mi.ok("-data-evaluate-expression i")["value"])
        assert here - 2 <= before <= here  # the hot() call just before the interrupted point


def test_reverse_continue_to_a_library_function_in_python(tmp_path, serve):
    """The checkpoint a backward search starts from predates libc being mapped: breakpoints
    in libc must still be planted once the loader maps it (python3 from Debian)."""
    python = Path("/usr/bin/python3")
    if not python.exists():
        pytest.skip("/usr/bin/python3 is not installed")
    trace = _record(tmp_path / "py", python, "-c", "import os; os.getpid(); print(1)")
    server = serve(trace)
    run = gdb_batch("break getpid", "continue", "break read", "reverse-continue", "bt 1",
                    "continue", connect=server.address)
    out = run.output
    assert "Traceback" not in server.describe(), server.describe()
    after = out[out.index("getpid"):]
    assert re.search(r"Breakpoint 2, \S*read \(fd=", after), str(run)  # went back to a read()
    assert re.search(r"Breakpoint 1(\.\d+)?, \S*getpid", after[after.index("Breakpoint 2"):]), \
        str(run)  # and forward again to getpid
