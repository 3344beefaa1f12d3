"""Checkpoints of multi-threaded processes, in-process (ReplaySession) and through stock gdb.

What a user would notice: a checkpoint taken while threads live must, when gone back to,
replay to the end printing exactly what the program printed (no divergence), with every
thread where it was (registers, FPU/SSE state, signal mask, signal stack: a signal later
delivered on it lands in the same place), and gdb must see the same threads and backtraces;
`monitor checkpoint` works there; reverse-continue with a watchpoint in a worker finds the
same writes a forward run does, and reverse-stepi walks back the instructions a forward
stepi walked.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from checkpointing import printed_after, task_states
from conftest import PROGRAMS_DIR, describe, record
from gdbhelpers import END_OF_HISTORY, gdb_batch, requires_gdb, section, serve

from replayer import registers
from replayer.session import ReplaySession
from tracee import ptrace_api as api
from tracee.digest import memory_digest

__all__ = ["serve"]  # the fixture, imported for pytest
pytestmark = pytest.mark.slow

# threads_pipes_signals: per-thread sigaltstack, SIGUSR2 blocked in readers, EINTR, ENTER;
# exec_from_threads: the main thread execs while the others wait in the kernel.
PROGRAMS = ("threads_pipes_signals", "threads_mutex", "threads_barrier_tls",
            "threads_sigrestart", "threads_condvar", "exec_from_threads")


@pytest.fixture(scope="module")
def traces(programs, tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("mt-checkpoints")
    out = {}
    for name in PROGRAMS:
        rec = record(base / name, "--force", programs[name])
        assert rec.returncode == (3 if name == "exec_from_threads" else 0), describe(rec)
        out[name] = base / name
    return out


def _digest(session: ReplaySession) -> str:
    task = next(iter(session.taskset.tasks.values()))
    return memory_digest(task.pid, task.mem.read_upto)


@pytest.mark.parametrize("name", PROGRAMS)
def test_every_multithreaded_checkpoint_replays_to_the_end_faithfully(traces, name):
    """A checkpoint at every event boundary where several threads live: right after restore
    every thread has its registers, extended state, signal mask and place (at a syscall entry
    or not), memory is the same, and replaying on prints the rest of the output."""
    trace = traces[name]
    want, printed = printed_after(trace)
    out: list[bytes] = []
    session = ReplaySession(trace, output=lambda fd, data: out.append(data))
    try:
        session.step()
        snaps = []
        while not session.finished:
            if len(session.taskset.tasks) > 1 and session.can_snapshot():
                before = (task_states(session), _digest(session))
                snaps.append((session.snapshot(), before))
            session.step()
        assert len(snaps) >= 5, f"only {len(snaps)} multi-threaded checkpoints in {name}"
        for snap, (threads, digest) in snaps:
            session.restore(snap)
            assert session.position == snap.position
            after = task_states(session)
            assert after.keys() == threads.keys(), snap.position
            for tid, (regs, xstate, mask, entered) in threads.items():
                got = after[tid]
                assert not registers.diff(regs, got[0]), (snap.position, tid,
                                                          registers.diff(regs, got[0]))
                assert got[1:] == (xstate, mask, entered), (snap.position, tid)
            assert _digest(session) == digest, snap.position
            out.clear()
            session.run()  # (a divergence raises)
            assert b"".join(out) == want[printed[snap.position]:], snap.position
    finally:
        session.close()


# -- through gdb -----------------------------------------------------------------------------

def _line(text: str, program: str = "threads_mutex.c") -> int:
    lines = (PROGRAMS_DIR / program).read_text().splitlines()
    (found,) = [n for n, line in enumerate(lines, 1) if text in line]
    return found


def _gdb(server, *commands: str) -> str:
    run = gdb_batch(*commands, connect=server.address)
    assert run.returncode == 0 and "Remote failure reply" not in run.output, \
        f"{run}\n{server.describe()}"
    return run.output


def _backtraces(text: str) -> dict[str, str]:
    """`thread apply all bt` by thread (`P.T`), without gdb's own thread numbers and
    [New Thread ...] notes (gdb numbers again threads it saw go)."""
    blocks = re.split(r"^Thread \d+ \(Thread (\S+) [^\n]*\n", text, flags=re.MULTILINE)
    return {tid: re.sub(r"^\[.*\]$\n?", "", body, flags=re.MULTILINE).strip()
            for tid, body in zip(blocks[1::2], blocks[2::2])}


AFTER_LOOP = f"threads_mutex.c:{_line('tls_result[idx] = tls_count')}"


@requires_gdb
def test_monitor_checkpoint_among_threads_and_restart_to_it(traces, serve):
    """`monitor checkpoint` where several threads live, `monitor restart` to it: the same
    threads and backtraces as before, and continuing to the end prints the output again."""
    server = serve(traces["threads_mutex"])
    # back to the event boundary before the breakpoint's stretch: the first worker lives
    goto = ("python here = re.search(r'event: (\\d+)', gdb.execute('monitor when', "
            "to_string=True)).group(1); gdb.execute('monitor goto ' + here)")
    restart = ("python gdb.execute('monitor restart %s' % re.search(r'(\\d+): event %s\\b' "
               "% here, gdb.execute('monitor info checkpoints', to_string=True)).group(1))")
    out = _gdb(server, "python import re", f"break {AFTER_LOOP}", "continue", "delete",
               goto, "maint flush register-cache", "thread 1",
               "monitor checkpoint", "echo ===BEFORE===\\n", "thread apply all bt",
               "echo ===RUN===\\n", "continue", "echo ===RESTART===\\n",
               "monitor info checkpoints", restart, "maint flush register-cache", "thread 1",
               "echo ===AFTER===\\n", "thread apply all bt", "echo ===RUN2===\\n",
               "continue", "echo ===END===\\n")
    assert re.search(r"^Checkpoint 1 at event \d+$", out, re.MULTILINE), out
    before = section(out, "===BEFORE===", "===RUN===")
    after = section(out, "===AFTER===", "===RUN2===")
    assert before.count("Thread ") >= 3 and "start_thread" in before and "main ()" in before, out
    assert len(_backtraces(before)) >= 3, out
    assert _backtraces(before) == _backtraces(after), f"{before}\n--- after ---\n{after}"
    assert END_OF_HISTORY in section(out, "===RUN2===", "===END==="), out
    printed = server.stdout()
    assert printed.count("total 80000\n") == 2, printed  # the whole output, twice
    assert printed[:len(printed) // 2] == printed[len(printed) // 2:], printed


@requires_gdb
def test_reverse_watch_in_a_worker_matches_forward_and_leaves_checkpoints(traces, serve):
    """From the end of the second worker's loop (counter 40000): reverse-continue with
    `watch counter` stops before the write of 40000, then of 39999; continuing forward
    from there reports the same write; checkpoints now exist among the threads."""
    out = _gdb(serve(traces["threads_mutex"]), f"break {AFTER_LOOP}", "continue", "continue",
               "delete", "print counter", "watch counter",
               "echo ===BACK===\\n", "reverse-continue", "print counter", "reverse-continue",
               "print counter", "echo ===FWD===\\n", "continue", "print counter",
               "echo ===CP===\\n", "monitor info checkpoints", "echo ===END===\\n")
    assert "$1 = 40000" in out, out
    back = section(out, "===BACK===", "===FWD===")
    pairs = re.findall(r"Old value = (\d+)\s+New value = (\d+)", back)
    assert pairs == [("40000", "39999"), ("39999", "39998")], out
    assert re.findall(r"^\$\d+ = (\d+)$", back, re.MULTILINE) == ["39999", "39998"], out
    assert len(re.findall(r'^Thread \d+ "threads_mutex" hit Hardware watchpoint',
                          back, re.MULTILINE)) == 2, out
    fwd = section(out, "===FWD===", "===CP===")
    assert re.search(r"Old value = 39998\s+New value = 39999", fwd), out
    threads = re.findall(r"^\s+event \d+ \((\d+) threads\)$",
                         section(out, "===CP===", "===END==="), re.MULTILINE)
    assert threads and all(int(n) >= 2 for n in threads), out  # checkpoints among threads


@requires_gdb
def test_reverse_stepi_in_a_worker_retraces_forward_stepi(traces, serve):
    """In a worker mid-loop: the pcs seen by 4 stepi, walked back by 4 reverse-stepi, in
    the same thread."""
    out = _gdb(serve(traces["threads_mutex"]), f"break {AFTER_LOOP}", "continue", "delete",
               "watch counter", "reverse-continue", "delete", "echo ===FWD===\\n",
               *["output/x $pc", "echo \\n", "stepi"] * 4, "output/x $pc", "echo \\n",
               "echo ===BACK===\\n", *["reverse-stepi", "output/x $pc", "echo \\n"] * 4,
               "echo THREAD=\\n", "output $_thread", "echo \\n", "echo ===END===\\n")
    fwd = re.findall(r"^(0x[0-9a-f]+)$", section(out, "===FWD===", "===BACK==="), re.MULTILINE)
    back = re.findall(r"^(0x[0-9a-f]+)$", section(out, "===BACK===", "===END==="),
                      re.MULTILINE)
    assert len(fwd) == 5 and len(back) == 4, out
    assert back == fwd[-2::-1], out
    assert "THREAD=\n1\n" not in out, out  # a worker, not main


XSTATE_BV = 512  # the XSAVE header's component bitmap, after the 512-byte legacy area
XMM = slice(160, 416)  # xmm0-15 in the legacy area
SSE_BIT = 2


def _sse_in_use_but_zero(xstate: bytes) -> bytes:
    """The same extended state with all-zero xmm registers and the SSE component marked in
    use: an architecturally ordinary state (a thread that zeroed its xmm registers) whose
    header the CPU rewrites (init optimisation) whenever the thread runs and is saved."""
    out = bytearray(xstate)
    out[XMM] = bytes(XMM.stop - XMM.start)
    out[XSTATE_BV] |= SSE_BIT
    return bytes(out)


def test_restored_threads_get_their_extended_state_exactly(traces):
    """Restore gives each thread its XSAVE area as captured, header included: it is given
    after the threads are parked (which runs them), so the CPU cannot rewrite XSTATE_BV
    (an SSE bit for all-zero xmm registers read back cleared at some checkpoints)."""
    session = ReplaySession(traces["threads_pipes_signals"], output=lambda fd, data: None)
    try:
        session.step()
        while not (len(session.taskset.tasks) > 2 and session.can_snapshot()):
            session.step()
        snap = session.snapshot()
        if len(snap.threads[0].state.xstate) <= XSTATE_BV:
            pytest.skip("no XSAVE area on this CPU (FXSAVE only)")
        images = tuple(image._replace(state=image.state._replace(
            xstate=_sse_in_use_but_zero(image.state.xstate))) for image in snap.threads)
        (process,) = snap.processes
        snap = snap._replace(processes=(process._replace(threads=images),))
        for _ in range(5):  # (whether the CPU rewrites the header depends on timing)
            session.restore(snap)
            for image in images:
                got = api.get_xstate(session.taskset.tasks[image.tid].tid)
                assert got[XSTATE_BV] == image.state.xstate[XSTATE_BV], image.tid
                assert got == image.state.xstate, image.tid
    finally:
        session.close()
