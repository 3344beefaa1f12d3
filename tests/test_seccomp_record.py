"""Recording through the seccomp filter (tracee/seccomp.py): syscalls stop the recorder at
PTRACE_EVENT_SECCOMP, and the compiled loop answers clock reads there, one stop instead of
two. The program counts its own stops (voluntary context switches: a ptrace stop is one),
so a recording that silently fell back to two stops a call fails here; RELIVE_SYSCALLBUF=0
is the old path. Either way the replay must print what the recording printed, with SIGALRM
landing among the answered reads, and a tampered answered read must be reported.
These tests are of the filter alone (stage 1): RELIVE_SYSCALLBUF=seccomp keeps the
in-process buffer out (tests/test_syscallbuf.py has the buffer's)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest
import trace_rows
from conftest import (REPO_ROOT, assert_diverged_at, assert_faithful, describe, record, replay,
                      reseal, run_native, set_rdi)

from tracee import fastloop
from tracefile.records import Kind

READS = 20000
CLOCK_GETTIME = 228
pytestmark = pytest.mark.skipif(fastloop.load() is None,
                                reason="the fast path could not be built (no gcc?)")


def _stops(stderr: bytes) -> int:
    m = re.search(rb"^stops (\d+)$", stderr, re.M)
    assert m, stderr
    return int(m.group(1))


STAGE1 = {"RELIVE_SYSCALLBUF": "seccomp"}  # the filter without the in-process buffer


def _record(programs, trace, **env):
    rec = record(trace, programs["clock_reads"], READS, env=dict(os.environ, **{**STAGE1, **env}))
    assert rec.returncode == 0, describe(rec)
    return rec


@pytest.fixture(scope="module")
def answered(programs, tmp_path_factory):
    trace = tmp_path_factory.mktemp("seccomp") / "t"
    return trace, _record(programs, trace)


def test_clock_reads_cost_one_stop_and_replay(programs, answered):
    native = run_native([programs["clock_reads"], READS])
    assert native.returncode == 0, describe(native)
    trace, rec = answered
    # ~21000 reads: two stops each would be 42000 and more (RELIVE_SYSCALLBUF=0 below)
    assert _stops(rec.stderr) < 1.3 * READS, rec.stderr
    assert re.search(rb"alarms [1-9]", rec.stdout), rec.stdout  # signals came meanwhile
    assert_faithful(rec, replay(trace))


def test_kill_switch_records_with_two_stops(programs, tmp_path):
    trace = tmp_path / "t"
    rec = _record(programs, trace, RELIVE_SYSCALLBUF="0")
    assert _stops(rec.stderr) > 1.8 * READS, rec.stderr
    assert_faithful(rec, replay(trace))


def test_without_the_compiled_loop_the_filter_still_records(programs, tmp_path):
    trace = tmp_path / "t"
    rec = _record(programs, trace, RELIVE_FASTPATH="0", RELIVE_SYSCALLBUF="1")
    assert_faithful(rec, replay(trace, env=dict(os.environ, RELIVE_FASTPATH="0")))


def test_a_tampered_answered_read_diverges(answered, tmp_path):
    src, _ = answered
    trace = tmp_path / "t"
    shutil.copytree(src, trace)
    db = trace_rows.connect(trace)
    rows = db.execute("SELECT seq, regs FROM events WHERE kind = ? AND nr = ? ORDER BY seq",
                      (int(Kind.SYSCALL), CLOCK_GETTIME)).fetchall()
    assert len(rows) > READS
    seq, regs = rows[len(rows) // 2]
    old, tampered = set_rdi(regs)
    db.execute("UPDATE events SET regs = ? WHERE seq = ?", (tampered, seq))
    reseal(db)
    db.commit()
    db.close()
    rep = replay(trace)
    err = assert_diverged_at(rep, seq)
    assert re.search(rf"\brdi: recorded {old + 1:#x}, replay {old:#x}\b", err), err


def test_forked_and_execd_programs_keep_the_filter(tmp_path):
    """The filter is inherited across fork and exec: a shell's children are recorded
    (and replayed) with it, and see it as the kernel shows it."""
    sh = shutil.which("sh")
    grep = shutil.which("grep")
    if sh is None or grep is None:
        pytest.skip("needs sh and grep")
    trace = tmp_path / "t"
    rec = record(trace, sh, "-c", f"{grep} ^Seccomp: /proc/self/status; date +%N")
    assert rec.returncode == 0, describe(rec)
    assert re.search(rb"^Seccomp:\s+2$", rec.stdout, re.M), rec.stdout
    assert_faithful(rec, replay(trace))


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root and setpriv to drop CAP_SYS_ADMIN")
def test_without_cap_sys_admin_the_filter_comes_with_no_new_privs(tmp_path):
    """The kernel allows an unprivileged filter only with no_new_privs: the recorder sets it
    then (and only then), and records as before."""
    grep = shutil.which("grep")
    if grep is None:
        pytest.skip("needs grep")
    trace = tmp_path / "t"
    argv = [grep, "-E", "^(Seccomp|NoNewPrivs):", "/proc/self/status"]
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    rec = subprocess.run(["setpriv", "--inh-caps=-sys_admin", "--bounding-set=-sys_admin",
                          sys.executable, "-m", "relive", "record", "-o", str(trace), *argv],
                         env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
    assert rec.returncode == 0, describe(rec)
    assert re.search(rb"^NoNewPrivs:\s+1$", rec.stdout, re.M), rec.stdout
    assert re.search(rb"^Seccomp:\s+2$", rec.stdout, re.M), rec.stdout
    assert_faithful(rec, replay(trace))


def test_the_recorder_resumes_tasks_only_through_task_resume():
    """Under the filter, PTRACE_SYSCALL outside a syscall would add syscall-entry stops to
    the seccomp stops: Task.resume translates it, so no recorder code may call ptrace with
    it directly (the compiled loops follow `record_seccomp` themselves)."""
    direct = re.compile(r"api\.ptrace\(\s*api\.Req\.(SYSCALL|SYSEMU)\b")
    found = [f"{path.name}:{n}" for path in sorted((REPO_ROOT / "recorder").glob("*.py"))
             for n, line in enumerate(path.read_text().splitlines(), 1)
             if direct.search(line)]
    assert not found, found


def test_clock_reads_among_threads_cost_one_stop_and_replay(programs, tmp_path):
    """Two threads reading the clock and handing a mutex back and forth: the recorder's
    multi-thread loop (relive_record_shared_run) answers the reads too."""
    trace = tmp_path / "t"
    reads = 10000  # per thread, plus a gettimeofday and a time every 100
    rec = record(trace, programs["clock_reads_threads"], reads,
                 env=dict(os.environ, **STAGE1))
    assert rec.returncode == 0, describe(rec)
    assert _stops(rec.stderr) < 1.3 * 2 * reads, rec.stderr  # two a read: > 40000
    assert_faithful(rec, replay(trace))
