"""The in-process syscall buffer (tracee/sysbuf.py, recorder/sysbuf_record.py): libc's
syscall sites jump to relive's hook, which makes the catalogue's `buffered` calls (clock
reads, the getpid family) without a ptrace stop and keeps them in a buffer the recorder
writes out as BUFFERED events at the next stop; replay stops at the hook's `syscall` for
each. The programs count their own stops (voluntary context switches: a ptrace stop is
one), so a recording that silently fell back to stopping fails here; every recording must
replay byte for byte, a tampered buffered record must be reported by its event, and gdb
must step backwards over a buffered call. The buffer is on by default (RELIVE_SYSCALLBUF=1,
as these tests set, or unset; =seccomp is the filter without it, =0 neither)."""
from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess

import pytest
import trace_rows
from conftest import (REPO_ROOT, assert_diverged_at, assert_faithful, describe, record, replay,
                      reseal, run_native, run_relive)
from gdbhelpers import gdb_batch, requires_gdb, serve

from tracee import fastloop, sysbuf
from tracee.syscalls.catalogue import CATALOGUE
from tracee.syscalls.commands import FUTEX_WAITS, FutexOp
from tracee.syscalls.rules import ArgIs
from tracefile.reader import TraceReader
from tracefile.records import Kind

__all__ = ["serve"]  # the fixture, imported for pytest

READS = 20000
FUTEX = 202
pytestmark = [pytest.mark.skipif(sysbuf.hook() is None or fastloop.load() is None,
                                 reason="the hook or the fast path could not be built (no gcc?)"),
              pytest.mark.usefixtures("syscallbuf_on")]


def _stops(stderr: bytes) -> int:
    m = re.search(rb"^stops (\d+)$", stderr, re.M)
    assert m, stderr
    return int(m.group(1))


def _kinds(trace) -> dict[Kind, int]:
    r = TraceReader(trace)
    try:
        out: dict[Kind, int] = {}
        for ev in r.events():
            out[ev.kind] = out.get(ev.kind, 0) + 1
        return out
    finally:
        r.close()


def _buffered_by_thread(trace) -> dict[int, int]:
    r = TraceReader(trace)
    try:
        out: dict[int, int] = {}
        for ev in r.events():
            if ev.kind == Kind.BUFFERED:
                out[ev.tid] = out.get(ev.tid, 0) + 1
        return out
    finally:
        r.close()


def _debug_count(stderr: bytes, what: bytes) -> int:
    m = re.search(rb"(\d+) " + what, stderr)
    assert m, stderr
    return int(m.group(1))


@pytest.fixture(scope="module")
def clocks(programs, tmp_path_factory):
    trace = tmp_path_factory.mktemp("sysbuf") / "t"
    rec = record(trace, programs["clock_reads"], READS)
    assert rec.returncode == 0, describe(rec)
    return trace, rec


def test_a_clock_loop_records_without_stops_and_replays(programs, clocks):
    """20,000 reads (and a SIGALRM handler reading the clock every 2 ms, among the main
    loop's buffered reads): a few hundred stops, where the seccomp filter alone costs one
    a read (test_seccomp_record.py)."""
    native = run_native([programs["clock_reads"], READS])
    assert native.returncode == 0, describe(native)
    trace, rec = clocks
    assert _stops(rec.stderr) < 0.1 * READS, rec.stderr
    assert re.search(rb"alarms [1-9]", rec.stdout), rec.stdout  # handlers ran meanwhile
    assert _kinds(trace).get(Kind.BUFFERED, 0) > READS
    assert_faithful(rec, replay(trace))


def test_stage_1_stays_available(programs, tmp_path):
    """RELIVE_SYSCALLBUF=seccomp: the filter, no buffer (every read stops once)."""
    trace = tmp_path / "t"
    rec = record(trace, programs["clock_reads"], 2000,
                 env=dict(os.environ, RELIVE_SYSCALLBUF="seccomp"))
    assert rec.returncode == 0, describe(rec)
    assert _stops(rec.stderr) > 2000, rec.stderr
    assert Kind.BUFFERED not in _kinds(trace)
    assert_faithful(rec, replay(trace))


def test_without_the_compiled_loop_the_buffer_still_records(programs, tmp_path):
    """The Python path writes the records at its stops as the compiled loop does."""
    trace = tmp_path / "t"
    rec = record(trace, programs["clock_reads"], 5000,
                 env=dict(os.environ, RELIVE_FASTPATH="0"))
    assert rec.returncode == 0, describe(rec)
    assert _stops(rec.stderr) < 0.2 * 5000, rec.stderr
    assert_faithful(rec, replay(trace, env=dict(os.environ, RELIVE_FASTPATH="0")))


def test_threads_each_get_their_own_records_in_order(programs, tmp_path):
    """Two threads reading the clock and handing a mutex back and forth share one buffer:
    each stretch's records are written as the events of the thread that ran it, so replay
    (which checks every record's arguments where that thread stops) reproduces both."""
    trace = tmp_path / "t"
    reads = 10000
    rec = record(trace, programs["clock_reads_threads"], reads)
    assert rec.returncode == 0, describe(rec)
    per_thread = _buffered_by_thread(trace)
    assert len(per_thread) == 2 and min(per_thread.values()) >= reads, per_thread
    assert_faithful(rec, replay(trace))


def test_futex_wakes_cost_no_stop(programs, tmp_path):
    """A condvar hand-off: the waker's two wakes (the condition variable's, the mutex's) are
    buffered; only the waiting thread's wait stops (entry, and exit when it runs again)."""
    trace = tmp_path / "t"
    rounds = 2000
    handoffs = 2 * rounds
    rec = run_relive("--log", "debug", "record", "-o", trace, programs["threads_handoff"],
                     rounds, stdin=subprocess.DEVNULL, timeout=300)
    assert rec.returncode == 0, describe(rec)
    python_stops = _debug_count(rec.stderr, b"stops handled in Python")
    compiled = _debug_count(rec.stderr, b"syscalls recorded by the compiled loop")
    r = TraceReader(trace)
    try:
        wakes = sum(1 for ev in r.events() if ev.kind == Kind.BUFFERED and ev.nr == FUTEX)
    finally:
        r.close()
    assert wakes >= 2 * handoffs - 300, wakes
    # with the filter alone the wakes run in the compiled loop (test_threads_handoff.py)
    assert compiled < handoffs // 4, compiled
    assert python_stops <= 2 * handoffs + 300, python_stops
    rep = replay(trace)
    assert rep.stdout == rec.stdout, describe(rep)


def test_only_futex_operations_that_never_wait_nor_write_are_buffered():
    buffered = CATALOGUE["futex"].buffered
    assert isinstance(buffered, ArgIs)
    assert buffered.values <= FUTEX_WAITS.values and FUTEX_WAITS.negate  # never wait
    assert not buffered.values & {int(op) for op in FutexOp}              # write no word


@pytest.mark.parametrize("name", ["threads_mutex", "threads_condvar"])
def test_thread_programs_replay_with_the_buffer(programs, tmp_path, name):
    trace = tmp_path / "t"
    rec = record(trace, programs[name])
    assert rec.returncode == 0, describe(rec)
    assert_faithful(rec, replay(trace))


def test_fork_copies_the_buffer_and_exec_starts_a_new_one(programs, tmp_path):
    """Reads before a fork, in both processes after it (the child goes on from the
    parent's cursor in its copy of the buffer) and after the child's exec (a new buffer)."""
    trace = tmp_path / "t"
    n = 5000
    rec = record(trace, programs["fork_clocks"], n)
    assert rec.returncode == 0, describe(rec)
    assert rec.stdout.count(b" 0 bad") == 4, rec.stdout
    per_thread = _buffered_by_thread(trace)
    assert len(per_thread) == 2 and sum(per_thread.values()) > 4 * n, per_thread
    assert_faithful(rec, replay(trace))


@pytest.mark.parametrize("argv", [
    ["tar", "-cvf", "{tmp}/out.tar", "-C", str(REPO_ROOT / "tests" / "programs"), "."],
    ["find", str(REPO_ROOT / "tests"), "-name", "*.c", "-newer", str(REPO_ROOT / "README.md")],
    ["sh", "-c", "date +%N; ls / | wc -l; sh -c 'echo $$ $PPID' | wc -w"],
], ids=["tar", "find", "sh"])
def test_coreutils_replay_with_the_buffer(tmp_path, argv):
    if shutil.which(argv[0]) is None:
        pytest.skip(f"needs {argv[0]}")
    trace = tmp_path / "t"
    rec = run_relive("--log", "debug", "record", "-o", trace,
                     *[a.format(tmp=tmp_path) for a in argv], stdin=subprocess.DEVNULL)
    assert rec.returncode == 0, describe(rec)
    assert _debug_count(rec.stderr, b"syscall sites of libc jump to the hook") > 300
    assert_faithful(rec, replay(trace))


def test_a_tampered_buffered_record_diverges_naming_its_event(clocks, tmp_path):
    src, _ = clocks
    trace = tmp_path / "t"
    shutil.copytree(src, trace)
    db = trace_rows.connect(trace)
    rows = db.execute("SELECT seq, regs FROM events WHERE kind = ? ORDER BY seq",
                      (int(Kind.BUFFERED),)).fetchall()
    assert len(rows) > READS
    seq, regs = rows[len(rows) // 2]
    args = list(struct.unpack("<7Q", regs))
    args[0] += 1  # clock_gettime's clock id
    db.execute("UPDATE events SET regs = ? WHERE seq = ?", (struct.pack("<7Q", *args), seq))
    reseal(db)
    db.commit()
    db.close()
    rep = replay(trace)
    err = assert_diverged_at(rep, seq)
    assert re.search(rf"\brdi: recorded {args[0]:#x}, replay {args[0] - 1:#x}\b", err), err


@requires_gdb
def test_gdb_steps_back_over_a_buffered_call(programs, tmp_path, serve):
    """A reverse watchpoint on a buffered clock_gettime's output stops at the call, shown at
    libc's `syscall` not yet run (rax = the call's number) with its whole backtrace, never
    in the hook (replayer.sysbuf_frames); stepi runs it again (rax = its result)."""
    trace = tmp_path / "t"
    rec = record(trace, programs["clock_steps"])
    assert rec.returncode == 0, describe(rec)
    run = gdb_batch("break after_read", "continue", "continue", "up", "watch -l ts",
                    "reverse-continue", "echo ===BT===\\n", "bt", "x/i $pc",
                    "echo ===END===\\n", "printf \"back %#lx %ld\\n\", $pc, $rax", "stepi",
                    "printf \"again %#lx %ld\\n\", $pc, $rax",
                    connect=serve(trace).address, program=programs["clock_steps"])
    out = run.output
    bt = out.split("===BT===")[1].split("===END===")[0]
    assert re.search(r"^#0 .*clock_gettime", bt, re.M), str(run)
    assert re.search(r"^#\d+ .*\bmain \(", bt, re.M) and "??" not in bt, str(run)
    assert re.search(r"=> 0x[0-9a-f]+ .*:\s+syscall", bt), str(run)
    back = re.search(r"^back (0x[0-9a-f]+) (-?\d+)$", out, re.M)
    again = re.search(r"^again (0x[0-9a-f]+) (-?\d+)$", out, re.M)
    assert back and again, str(run)
    assert int(back.group(2)) == 228 and int(again.group(2)) == 0, str(run)
    assert int(again.group(1), 16) == int(back.group(1), 16) + 2, str(run)


@requires_gdb
def test_gdb_sees_libc_not_the_patched_sites(programs, tmp_path, serve):
    """A thread blocked in a futex wait made through a site's trampoline is shown at the
    site (replayer.sysbuf_view): its backtrace reaches main, the code before its pc is the
    original `syscall` (no `jmp`), and a breakpoint at its pc (inside the patched bytes)
    is hit there when a wait returns (main's or a worker's at the same barrier), while the
    other threads run the patched site."""
    trace = tmp_path / "t"
    rec = record(trace, programs["threads_barrier_tls"])
    assert rec.returncode == 0, describe(rec)
    run = gdb_batch("break worker", "continue", "thread 1", "echo ===BT===\\n", "bt",
                    "echo ===CODE===\\n", "x/2i $pc-2", "echo ===END===\\n",
                    "delete", "break *$pc", "continue", "printf \"at %#lx\\n\", $pc",
                    "bt", "delete", "continue",
                    connect=server_address(serve, trace), program=programs["threads_barrier_tls"])
    out = run.output
    bt = out.split("===BT===")[1].split("===CODE===")[0]
    code = out.split("===CODE===")[1].split("===END===")[0]
    assert re.search(r"^#\d+ .*\bmain \(", bt, re.M), str(run)
    assert re.search(r"\bsyscall\b", code) and "jmp" not in code, str(run)
    planted = re.search(r"^Breakpoint 2 at (0x[0-9a-f]+)", out, re.M)
    assert planted and "Breakpoint 2, " in out, str(run)
    after = out.split("Breakpoint 2, ")[1]  # main or a worker waiting at the same barrier
    assert re.search(rf"^at {planted.group(1)}$", after, re.M), str(run)
    assert re.search(r"^#\d+ .*\b(main|worker) \(", after, re.M), str(run)
    assert "SIGSEGV" not in out and "SIGILL" not in out and "SIGTRAP" not in after, str(run)


def server_address(serve, trace) -> str:
    return serve(trace).address
