"""Record every test program with `relive record`, replay it with `relive replay --autopilot`
and check what a user sees: the replay re-emits the recorded stdout and stderr byte for byte,
`relive record` exits with the program's own status, and traces are self-contained."""
from __future__ import annotations

import os
import re
import select
import shutil
import signal
import stat
import subprocess
import sys
import time

import pytest
from conftest import (
    REPO_ROOT,
    assert_faithful,
    describe,
    record,
    replay,
    run_native,
    run_relive,
    shell_status,
)
from recorder.preempt import after_call
from tracee.address_space import mapping_from_info
from tracefile.reader import TraceReader
from tracefile.records import Kind

# name, args ("{tmp}" becomes a per-test scratch directory), deterministic output?
CASES = [
    ("hello", ["a b", "", "ünïcødé", "--flag", "-o"], True),
    ("time_sources", [], False),
    ("rdtsc", [], False),
    ("randomness", [], False),
    ("pids", [], False),
    ("file_io", ["{tmp}"], False),
    ("getdents", ["{tmp}"], True),
    ("mmap_file", ["{tmp}"], False),
    ("shared_file_rounds", ["{tmp}", "keep"], True),
    ("shared_file_rounds", ["{tmp}", "trunc"], True),
    ("shared_file_rounds", ["{tmp}", "recreate"], True),
    ("shared_readonly_map", ["{tmp}"], True),
    ("mprotect_mremap", [], False),
    ("epoll_timers", [], False),
    ("udp_mmsg", [], True),
    ("itimer_spin", [], False),
    ("sigsegv_altstack", [], False),
    ("raise_signal", [], False),
    ("sigcont_sleep", [], True),
    ("signal_cont_read", [], True),
    ("sigcont_wake", [], True),
    ("amx_tiles", [], True),
    ("exit_status", ["7"], False),
    ("exit_status", ["abort"], False),
    ("many_syscalls", ["2000"], False),
    ("cpu_loop", ["200000"], False),
]


def _fill(directory, names):
    for name in names:
        (directory / name).write_text(f"contents of {name}\n")


@pytest.mark.parametrize("name,args,deterministic", CASES,
                         ids=[f"{n}-{'-'.join(a) or 'noargs'}".replace("{tmp}", "tmp")
                              .replace(" ", "_") for n, a, _ in CASES])
def test_replay_reproduces_recording(programs, tmp_path, name, args, deterministic):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    if name == "getdents":
        _fill(scratch, [f"file-{i:02d}" for i in range(12)])
    argv = [programs[name], *(str(scratch) if a == "{tmp}" else a for a in args)]

    native = run_native(argv, cwd=tmp_path)
    rec = record(tmp_path / "trace", *argv, cwd=tmp_path)
    assert b"Traceback" not in rec.stderr, describe(rec)
    # relive record exits like the program does natively (128+N when killed by signal N).
    assert rec.returncode == shell_status(native.returncode), describe(rec)
    assert rec.returncode != 125, describe(rec)
    assert rec.stdout, "the program printed nothing under relive"
    if deterministic:
        assert rec.stdout == native.stdout

    rep = replay(tmp_path / "trace", cwd=tmp_path)
    assert_faithful(rec, rep)


def test_exit_status_and_abort_statuses(programs, tmp_path):
    """The specific statuses a user expects: 7 for exit(7), 134 (128+SIGABRT) for abort()."""
    rec = record(tmp_path / "t7", programs["exit_status"], "7")
    assert rec.returncode == 7, describe(rec)
    assert b"stderr: exiting with 7\n" in rec.stderr
    rec = record(tmp_path / "tabort", programs["exit_status"], "abort")
    assert rec.returncode == 128 + signal.SIGABRT, describe(rec)
    rep = replay(tmp_path / "tabort")
    assert_faithful(rec, rep)
    assert b"aborting\n" in rep.stdout


@pytest.mark.parametrize("name", ["time_sources", "randomness", "rdtsc", "pids"])
def test_nondeterministic_output_differs_between_recordings(programs, tmp_path, name):
    """Two recordings print different values, and each trace replays its own -- so the
    byte-for-byte comparison above is not comparing two constants."""
    rec1 = record(tmp_path / "t1", programs[name])
    rec2 = record(tmp_path / "t2", programs[name])
    assert rec1.returncode == rec2.returncode == 0, describe(rec1) + describe(rec2)
    assert rec1.stdout != rec2.stdout
    rep1 = replay(tmp_path / "t1")
    assert_faithful(rec1, rep1)
    assert rep1.stdout != rec2.stdout
    assert_faithful(rec2, replay(tmp_path / "t2"))


def test_getdents_replay_does_not_read_the_directory(programs, tmp_path):
    listed = tmp_path / "listed"
    listed.mkdir()
    _fill(listed, [f"before-{i}" for i in range(8)])
    rec = record(tmp_path / "trace", programs["getdents"], listed)
    assert rec.returncode == 0, describe(rec)
    assert b" before-3\n" in rec.stdout and b"count: 10\n" in rec.stdout

    for i in range(0, 8, 2):
        (listed / f"before-{i}").unlink()
    _fill(listed, [f"after-{i}" for i in range(5)])
    now = run_native([programs["getdents"], listed])
    assert now.stdout != rec.stdout and b"after-1" in now.stdout  # the change is visible

    rep = replay(tmp_path / "trace")
    assert_faithful(rec, rep)
    assert b"after-" not in rep.stdout


def test_file_io_replay_needs_no_directory(programs, tmp_path):
    """file_io creates, reads and unlinks a file in its directory; the replay reproduces
    that from the trace even when the directory is gone."""
    work = tmp_path / "work"
    work.mkdir()
    rec = record(tmp_path / "trace", programs["file_io"], work)
    assert rec.returncode == 0, describe(rec)
    assert b"contents(21): 01234567" in rec.stdout
    shutil.rmtree(work)
    assert_faithful(rec, replay(tmp_path / "trace"))


# -- traces are self-contained ---------------------------------------------------------------
def test_replay_after_binary_deleted(programs, tmp_path):
    prog = tmp_path / "prog"
    shutil.copy2(programs["hello"], prog)
    rec = record(tmp_path / "trace", prog, "still", "here")
    assert rec.returncode == 0, describe(rec)
    prog.unlink()
    rep = replay(tmp_path / "trace")
    assert_faithful(rec, rep)
    assert b"argv[2]: here\n" in rep.stdout


def test_replay_after_binary_overwritten(programs, tmp_path):
    prog = tmp_path / "prog"
    shutil.copy2(programs["hello"], prog)
    rec = record(tmp_path / "trace", prog, "x")
    assert rec.returncode == 0, describe(rec)
    prog.unlink()
    shutil.copy2(programs["pids"], prog)  # same path, another program
    assert b"hello" not in run_native([prog]).stdout
    rep = replay(tmp_path / "trace")
    assert_faithful(rec, rep)
    assert rep.stdout.startswith(b"hello, relive\n")


def test_trace_permissions_are_private(programs, tmp_path, trace_root):
    for trace, rec in ((tmp_path / "explicit", record(tmp_path / "explicit", programs["hello"])),
                       (trace_root / "hello-0", run_relive("record", programs["hello"]))):
        assert rec.returncode == 0, describe(rec)
        assert stat.S_IMODE(trace.stat().st_mode) == 0o700
        assert stat.S_IMODE((trace / "trace.db").stat().st_mode) == 0o600
        for f in (trace / "files").iterdir():
            assert stat.S_IMODE(f.stat().st_mode) & 0o077 == 0, f


# -- default trace location, info / ps / dump -------------------------------------------------
def test_default_trace_dir_numbering_and_latest(programs, trace_root):
    first = run_relive("record", programs["hello"], "one")
    second = run_relive("record", programs["hello"], "two")
    assert first.returncode == second.returncode == 0
    assert (trace_root / "hello-0" / "trace.db").is_file()
    assert (trace_root / "hello-1" / "trace.db").is_file()
    assert (trace_root / "latest").resolve() == (trace_root / "hello-1").resolve()
    assert str(trace_root / "hello-1").encode() in second.stderr
    info = run_relive("info", text=True)
    assert info.returncode == 0
    assert str(trace_root / "hello-1") in info.stdout
    assert "argv:     " in info.stdout and " two" in info.stdout


def test_info_ps_dump_describe_the_recording(programs, tmp_path):
    trace = tmp_path / "trace"
    rec = record(trace, programs["exit_status"], "7")
    assert rec.returncode == 7
    pid = int(re.search(rb"pid: (\d+)", rec.stdout).group(1))

    info = run_relive("info", trace, text=True)
    assert info.returncode == 0, info.stderr
    assert "complete: yes" in info.stdout.splitlines()
    assert "status:   exit 7" in info.stdout
    events = int(re.search(r"^events:\s+(\d+)$", info.stdout, re.MULTILINE).group(1))

    dump = run_relive("dump", trace, text=True)
    assert dump.returncode == 0, dump.stderr
    lines = dump.stdout.splitlines()
    assert len(lines) == events > 10
    assert [int(line.split()[0]) for line in lines] == list(range(events))
    assert all(int(line.split()[1]) == pid for line in lines)
    assert lines[0].split()[2] == "EXEC"
    assert re.search(r"(SYSCALL|BUFFERED) getpid\(.*\) = " + hex(pid) + " ", dump.stdout)
    assert re.search(r"SYSCALL write\(0x1, .*\) = 0x[0-9a-f]+ ", dump.stdout)
    assert re.search(r"SYSCALL exit_group\(0x7, ", dump.stdout)
    assert lines[-1].split()[2:] == ["EXIT", "exit", "7"]

    ps = run_relive("ps", trace, text=True)
    assert ps.returncode == 0, ps.stderr
    rows = [row.split("\t") for row in ps.stdout.splitlines()]
    assert rows[0] == ["PID", "PPID", "THREADS", "STATUS", "COMMAND"]
    assert len(rows) == 2
    assert rows[1][0] == str(pid) and rows[1][2] == "1" and rows[1][3] == "exit 7"
    assert rows[1][4] == f"{programs['exit_status']} 7"


# -- a recorder killed mid-recording -----------------------------------------------------------
def _read_until(proc, needle, deadline, stream=None):
    stream = stream or proc.stdout
    got = b""
    while needle not in got:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        ready, _, _ = select.select([stream], [], [], left)
        if ready:
            chunk = os.read(stream.fileno(), 65536)
            if not chunk:
                break
            got += chunk
    return got


def _start_print_loop(programs, trace):
    """Start recording print_loop and return (Popen, stdout so far) once it printed tick 10."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "relive", "record", "-o", str(trace),
         str(programs["print_loop"]), "2000"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    printed = _read_until(proc, b"tick 10\n", time.monotonic() + 60)
    if b"tick 10\n" not in printed:
        proc.kill()
        proc.communicate()
        pytest.fail(f"the recorded program did not get going: {printed!r}")
    time.sleep(0.4)
    return proc, printed


def _stop_recorder(proc, sig):
    """Send `sig` to the recorder (the python process only); return (stdout rest, stderr)."""
    try:
        proc.send_signal(sig)
        try:
            return proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail("the recorded program outlived its recorder (its stdout is still open)")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_killed_recorder_leaves_a_replayable_prefix(programs, tmp_path):
    trace = tmp_path / "trace"
    proc, printed = _start_print_loop(programs, trace)
    rest, _ = _stop_recorder(proc, signal.SIGKILL)
    printed += rest
    assert proc.returncode == -signal.SIGKILL
    assert b"done" not in printed

    info = run_relive("info", trace, text=True)
    assert info.returncode == 0, info.stderr
    assert "complete: NO" in info.stdout
    assert "complete: yes" not in info.stdout

    rep = replay(trace)
    assert rep.returncode == 0, describe(rep)
    assert b"Traceback" not in rep.stderr
    assert b"incomplete" in rep.stderr
    assert rep.stdout.startswith(b"tick 0\ntick 1\n"), describe(rep)
    assert printed.startswith(rep.stdout), (rep.stdout, printed)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT],
                         ids=["TERM", "HUP", "QUIT"])
def test_terminated_recorder_saves_what_was_recorded(programs, tmp_path, sig):
    """SIGTERM, SIGHUP (the terminal went away) and SIGQUIT end a recording alike: what was
    recorded is committed, up to the signal, with the reason stored."""
    trace = tmp_path / "trace"
    proc, printed = _start_print_loop(programs, trace)
    rest, err = _stop_recorder(proc, sig)
    printed += rest
    assert proc.returncode == 128 + sig, err
    assert f"terminated by {sig.name}".encode() in err, err
    assert str(trace).encode() in err and b"Traceback" not in err

    info = run_relive("info", trace, text=True)
    assert "complete: NO" in info.stdout, info.stdout
    assert f"recorder terminated by {sig.name}" in info.stdout, info.stdout

    rep = replay(trace)
    assert rep.returncode == 0, describe(rep)
    assert b"incomplete" in rep.stderr
    assert printed.startswith(rep.stdout)
    # everything up to the signal was saved (the last line may have been mid-write)
    assert len(rep.stdout.splitlines()) >= len(printed.splitlines()) - 1 >= 11


def test_ctrl_c_stops_recording_processes_the_program_left_running(tmp_path):
    """A program that exits leaving a background process: relive says it records on, and
    Ctrl-C (SIGINT, the program's while it ran) then ends the recording with the program's
    status and a trace that replays its whole run."""
    trace = tmp_path / "trace"
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "relive", "record", "-o", str(trace),
         "sh", "-c", "sleep 600 & echo started; exit 3"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    err = _read_until(proc, b"Ctrl-C stops the recording", time.monotonic() + 60, proc.stderr)
    assert b"still recording 1 process it left running" in err, err
    rest, more = _stop_recorder(proc, signal.SIGINT)
    err += more
    assert proc.returncode == 3, err
    assert b"stopped" in err and b"Traceback" not in err, err

    info = run_relive("info", trace, text=True)
    assert "complete: NO" in info.stdout and "stopped by Ctrl-C" in info.stdout, info.stdout
    rep = replay(trace)
    assert rep.returncode == 0, describe(rep)
    assert rep.stdout == b"started\n" == rest


# -- output that is copied, not written: copy_file_range, sendfile, splice, vmsplice, tee ---
COPIED_FROM = "/etc/services"  # any file longer than 120 bytes


def test_output_copied_to_a_stdout_file_is_replayed(programs, tmp_path):
    """`cat FILE > out` copies with copy_file_range when stdout is a regular file: the bytes
    never pass through the program's memory, so the trace keeps them (read back from the
    output file) and replay shows them."""
    for argv in ([programs["copy_to_stdout"], COPIED_FROM, "file"], ["cat", COPIED_FROM]):
        native, out, again = (tmp_path / f"{run}.txt" for run in ("native", "recorded",
                                                                   "replayed"))
        with open(native, "wb") as f:
            assert run_native(argv, stdout=f, capture_output=False).returncode == 0
        with open(out, "wb") as f:
            rec = record(tmp_path / "trace", "--force", *argv, stdout=f,
                         stderr=subprocess.PIPE, capture_output=False)
        assert rec.returncode == 0, describe(rec)
        with open(again, "wb") as f:
            rep = replay(tmp_path / "trace", stdout=f, stderr=subprocess.PIPE,
                         capture_output=False)
        assert rep.returncode == 0, describe(rep)
        assert out.read_bytes() == again.read_bytes() == native.read_bytes()
        if argv[0] == "cat":
            dump = run_relive("dump", tmp_path / "trace", text=True).stdout
            assert re.search(r"copy_file_range\(.*-> stdout$", dump, re.MULTILINE), dump


def test_output_copied_to_a_stdout_pipe_is_replayed(programs, tmp_path):
    rec = record(tmp_path / "trace", programs["copy_to_stdout"], COPIED_FROM, "pipe")
    assert rec.returncode == 0, describe(rec)
    assert b"vmsplice'd bytes\n[vmsplice: 16]" in rec.stdout
    assert_faithful(rec, replay(tmp_path / "trace"))


def test_tee_from_a_pipe_to_a_stdout_pipe_is_refused_at_record_time(programs, tmp_path):
    """Nothing keeps the bytes tee copies from one pipe to another: the recording stops,
    saying so, rather than make a trace that replays without them."""
    rec = record(tmp_path / "trace", programs["copy_to_stdout"], COPIED_FROM, "tee")
    assert rec.returncode == 125, describe(rec)
    assert b"tee from a pipe or socket to relive's stdout" in rec.stderr, describe(rec)
    assert b"partial trace in" in rec.stderr


def _state(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rpartition(")")[2].split()[0]


def test_ctrl_z_suspends_the_recording_and_fg_resumes_it(programs, tmp_path):
    """What a terminal does on Ctrl-Z and `fg`: SIGTSTP, then SIGCONT, to the whole
    foreground process group (relive and the program). The recording is suspended as a
    whole (the program prints nothing meanwhile), then completes and replays."""
    trace = tmp_path / "trace"
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "relive", "record", "-o", str(trace),
         str(programs["print_loop"]), "40"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        process_group=0)  # a job of its own, in pytest's session (not orphaned)
    try:
        printed = _read_until(proc, b"tick 5\n", time.monotonic() + 60)
        assert b"tick 5\n" in printed, printed
        os.killpg(proc.pid, signal.SIGTSTP)
        deadline = time.monotonic() + 10
        while _state(proc.pid) != "T" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _state(proc.pid) == "T"
        time.sleep(0.3)
        printed += _read_until(proc, b"\n", time.monotonic() + 0.1)  # what was under way
        during = _read_until(proc, b"\n", time.monotonic() + 0.5)
        assert during == b"", during  # suspended: no tick for 0.5 s (they come every 50 ms)
        os.killpg(proc.pid, signal.SIGCONT)
        rest, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    printed += rest
    assert proc.returncode == 0, err
    assert printed.endswith(b"tick 39\ndone\n"), printed
    rep = replay(trace)
    assert rep.returncode == 0, describe(rep)
    assert rep.stdout == printed


def test_a_profiling_timer_is_delivered_where_replay_finds_it_quickly(programs, tmp_path):
    """SIGPROF every 10 ms of CPU time while the program computes in blocks of calls (what
    gcc -pg does): each tick is delivered a little late, at the return from a block, which
    the recorder found cold on the stack, and the replay reproduces where every tick
    landed. Delivered where they came, at the hot per-step code, the replay of this one
    second of work had to trap at every execution of that pc: it ran for hours."""
    trace = tmp_path / "trace"
    binary = programs["prof_timer"]
    # (at least 12 ticks seen, however fast the CPU: 12000 blocks alone can take 9)
    rec = record(trace, binary, "12000", "1", "12", capture_output=True, timeout=120)
    assert rec.returncode == 0, describe(rec)
    assert_faithful(rec, replay(trace, capture_output=True, timeout=120))
    ticks = int(re.search(rb"ticks=(\d+)", rec.stdout).group(1))
    reader = TraceReader(trace)
    try:
        maps = [mapping_from_info(m) for m in reader.event(0).info["maps"]]
        points = [ev.info["rip"] for ev in reader.events()
                  if ev.kind == Kind.SIGNAL and ev.info.get("where") == "user"]
    finally:
        reader.close()
    assert len(points) >= ticks // 2 >= 5, (ticks, points)
    code = binary.read_bytes()
    for pc in points:
        m = next(m for m in maps if m.start <= pc < m.end)
        assert m.path and m.path.endswith("prof_timer"), (hex(pc), m)
        offset = m.offset + pc - m.start
        assert after_call(code[offset - 7:offset]), hex(pc)


def test_a_timer_signal_right_after_a_syscall_returned_replays(programs, tmp_path):
    """A timer tick that comes in user mode just after a syscall returned (before the next
    instruction) looks like one delivered on the call's way out: same rip and rax. The kernel
    made no syscall restart decision there (orig_rax is -1), and replay must deliver it in
    that state: it reported 'registers differ at delivery of SIGALRM, orig_rax' in about half
    the recordings of this program."""
    trace = tmp_path / "trace"
    for _ in range(2):
        rec = record(trace, programs["alarm_after_syscall"], "300", timeout=120)
        assert rec.returncode == 0, describe(rec)
        assert_faithful(rec, replay(trace, timeout=120))
        shutil.rmtree(trace)
