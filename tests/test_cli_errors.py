"""What a user sees when something is wrong: one clear `relive: ...` line, a meaningful exit
status (127/126 like a shell, 125 when relive cannot record, 1 for a bad trace), never a
Python traceback, and nothing of theirs overwritten."""
from __future__ import annotations

import errno
import os
import re
import resource
import select
import shutil
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import time

import trace_rows
import pytest
from conftest import (
    REPO_ROOT,
    assert_faithful,
    describe,
    record,
    replay,
    run_native,
    run_relive,
)
from gdbhelpers import gdb_batch, requires_gdb

from tracefile.integrity import row_crc


def assert_clean_failure(proc, status, *needles):
    err = proc.stderr.decode(errors="replace")
    assert proc.returncode == status, describe(proc)
    assert "Traceback" not in err, err
    assert err.startswith("relive: "), err
    for needle in needles:
        assert needle in err, (needle, err)


# -- record: the program -----------------------------------------------------------------------
def test_record_command_not_found(tmp_path, trace_root):
    proc = run_relive("record", "no-such-program-relive-test", "arg")
    assert_clean_failure(proc, 127, "no-such-program-relive-test")
    assert list(trace_root.iterdir()) == []  # no empty trace left behind


def test_record_missing_path(tmp_path):
    missing = tmp_path / "bin" / "missing-prog"
    proc = record(tmp_path / "trace", missing)
    assert_clean_failure(proc, 127, str(missing))
    assert not (tmp_path / "trace").exists()


def test_record_not_executable(tmp_path):
    script = tmp_path / "not-exec.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    assert_clean_failure(record(tmp_path / "trace", script), 126, str(script))
    assert_clean_failure(record(tmp_path / "trace", tmp_path), 126, str(tmp_path))
    assert not (tmp_path / "trace").exists()


def test_record_script_without_shebang(tmp_path, trace_root):
    """execve says ENOEXEC: 126 like a shell's "cannot execute", one line with a hint, and no
    trace left (none in -o DIR, no new directory, `latest` unchanged)."""
    script = tmp_path / "no-shebang.sh"
    script.write_text("echo hi\n")
    script.chmod(0o755)
    proc = record(tmp_path / "trace", script)
    assert_clean_failure(proc, 126, str(script), "Exec format error", "#!")
    assert proc.stderr.count(b"\n") == 1, proc.stderr
    assert not (tmp_path / "trace").exists()
    (tmp_path / "empty").mkdir()
    assert_clean_failure(record(tmp_path / "empty", script), 126, "#!")
    assert list((tmp_path / "empty").iterdir()) == []

    assert run_relive("record", "true").returncode == 0
    before = sorted(p.name for p in trace_root.iterdir())
    latest = os.readlink(trace_root / "latest")
    assert_clean_failure(run_relive("record", script), 126, "#!")
    assert sorted(p.name for p in trace_root.iterdir()) == before
    assert os.readlink(trace_root / "latest") == latest


# -- record: the output directory --------------------------------------------------------------
@pytest.mark.parametrize("force", [False, True], ids=["plain", "force"])
def test_record_refuses_non_trace_directory(programs, tmp_path, force):
    target = tmp_path / "precious"
    target.mkdir()
    (target / "notes.txt").write_text("do not touch\n")
    (target / "sub").mkdir()
    (target / "sub" / "data").write_bytes(b"\x00\x01")
    before = sorted(str(p.relative_to(target)) for p in target.rglob("*"))

    proc = run_relive("record", "-o", target, *(["--force"] if force else []), programs["hello"])
    err = proc.stderr.decode()
    assert proc.returncode != 0
    assert "Traceback" not in err
    assert "--force" in err or "not empty" in err, err
    assert b"hello, relive" not in proc.stdout  # refused before running the program
    assert sorted(str(p.relative_to(target)) for p in target.rglob("*")) == before
    assert (target / "notes.txt").read_text() == "do not touch\n"
    assert (target / "sub" / "data").read_bytes() == b"\x00\x01"


def test_record_over_existing_trace_needs_force(programs, tmp_path):
    trace = tmp_path / "trace"
    first = record(trace, programs["hello"], "first")
    assert first.returncode == 0

    refused = record(trace, programs["hello"], "second")
    assert_clean_failure(refused, 125, "--force")
    assert_faithful(first, replay(trace))  # the first trace is intact

    second = run_relive("record", "-o", trace, "--force", programs["hello"], "second")
    assert second.returncode == 0, describe(second)
    rep = replay(trace)
    assert_faithful(second, rep)
    assert b"argv[1]: second\n" in rep.stdout and b"first" not in rep.stdout


# -- record: what relive cannot record ---------------------------------------------------------
def test_unsupported_syscall_is_refused_at_record_time(programs, tmp_path):
    trace = tmp_path / "trace"
    proc = record(trace, programs["unsupported_syscall"])
    assert_clean_failure(proc, 125, "shmat")
    assert proc.stdout == b"before shmat\n"  # stopped there, not after
    info = run_relive("info", trace, text=True)
    assert info.returncode == 0
    assert "complete: NO" in info.stdout and "shmat" in info.stdout
    rep = replay(trace)  # the partial trace still replays what was recorded
    assert rep.returncode == 0, describe(rep)
    assert rep.stdout == b"before shmat\n"
    assert b"incomplete" in rep.stderr


def test_clone_into_a_new_pid_namespace_is_refused(programs, tmp_path):
    """Recorded, the fork inside the namespace had the outer id as its result and replay
    diverged at the wait that used the inner one: refused, the trace up to there replays."""
    trace = tmp_path / "trace"
    proc = record(trace, programs["clone_newpid"])
    assert_clean_failure(proc, 125, "CLONE_NEWPID")
    assert proc.stdout == b"before clone\n"
    rep = replay(trace)
    assert rep.returncode == 0, describe(rep)
    assert rep.stdout == b"before clone\n"
    assert b"incomplete" in rep.stderr


def test_full_disk_while_recording_keeps_what_was_committed(programs, tmp_path):
    """The trace database cannot grow (a file size limit stands in for a full disk): the
    failure, met by the writing thread, stops the recording with one clear line, and what
    was committed before it replays."""
    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (3 << 20, 3 << 20))

    trace = tmp_path / "trace"
    script = f"echo started; exec {programs['many_syscalls']} 300000"
    # its getppid calls traced, each a ptrace stop's event: the buffer's are smaller
    proc = record(trace, "sh", "-c", script, preexec_fn=small_files,
                  env=dict(os.environ, RELIVE_SYSCALLBUF="seccomp"))
    assert_clean_failure(proc, 125, "writing the trace failed", str(trace))
    assert proc.stdout == b"started\n"  # many_syscalls did not get to its end
    info = run_relive("info", trace, text=True)
    assert info.returncode == 0 and "complete: NO" in info.stdout, info.stdout
    rep = replay(trace)
    assert rep.returncode == 0, describe(rep)
    assert b"incomplete" in rep.stderr
    assert rep.stdout == b"started\n"


def test_full_disk_while_copying_a_file_into_the_trace(tmp_path):
    """A mapped file that no longer fits (a file size limit stands in for a full disk): one
    line naming the file and the trace, no half-copied file left, and the trace replays up
    to the exec that needed it, saying it is incomplete."""
    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (3 << 20, 3 << 20))

    big = tmp_path / "big-true"  # a new file: never in the cache of mapped files
    shutil.copy("/bin/true", big)
    with open(big, "ab") as f:
        f.write(os.urandom(5 << 20))
    trace = tmp_path / "trace"
    proc = record(trace, "sh", "-c", f"echo started; exec {big}", preexec_fn=small_files)
    assert_clean_failure(proc, 125, f"copying {big} into the trace {trace} failed",
                         "File too large", f"partial trace in {trace}")
    assert proc.stderr.count(b"\n") == 2, proc.stderr
    assert proc.stdout == b"started\n"
    assert [p.name for p in (trace / "files").iterdir() if p.name.startswith(".")] == []
    info = run_relive("info", trace, text=True)
    assert info.returncode == 0 and "complete: NO" in info.stdout, info.stdout
    rep = replay(trace)
    assert rep.returncode == 0, describe(rep)
    assert rep.stdout == b"started\n"
    assert b"incomplete" in rep.stderr, describe(rep)


# -- replay: bad traces ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def good_trace(programs, tmp_path_factory):
    trace = tmp_path_factory.mktemp("good") / "trace"
    proc = record(trace, programs["many_syscalls"], "1500")
    assert proc.returncode == 0, describe(proc)
    return trace


@pytest.fixture
def trace_copy(good_trace, tmp_path):
    copy = tmp_path / "trace"
    shutil.copytree(good_trace, copy)
    return copy


def test_replay_of_missing_path(tmp_path):
    proc = replay(tmp_path / "nothing-here")
    assert_clean_failure(proc, 1, "nothing-here")


def test_replay_of_directory_that_is_not_a_trace(tmp_path):
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "file.txt").write_text("x")
    proc = replay(tmp_path / "plain")
    assert_clean_failure(proc, 1, "not a relive trace")


def _overwrite_middle(db):
    size = db.stat().st_size
    with open(db, "r+b") as f:
        f.seek(size // 3)
        f.write(bytes((i * 151 + 7) & 0xFF for i in range(size // 3)))


def _truncate_half(db):
    os.truncate(db, db.stat().st_size // 2)


@pytest.mark.parametrize("damage", [_overwrite_middle, _truncate_half],
                         ids=["overwritten-middle", "truncated-half"])
def test_corrupt_trace_db(trace_copy, damage):
    damage(trace_copy / "trace.db")
    for command in (["replay", "--autopilot"], ["info"], ["dump"], ["ps"]):
        proc = run_relive(*command, trace_copy)
        if command == ["ps"] and proc.returncode == 0:
            continue  # ps reads only the small tasks/meta tables, which may be intact
        assert_clean_failure(proc, 1, "corrupt")
        assert str(trace_copy) in proc.stderr.decode()


def test_trace_from_newer_relive(trace_copy):
    db = sqlite3.connect(trace_copy / "trace.db")
    db.execute("UPDATE meta SET value = '999' WHERE key = 'format_version'")
    db.commit()
    db.close()
    for command in (["replay", "-a"], ["info"]):
        proc = run_relive(*command, trace_copy)
        assert_clean_failure(proc, 1, "999", "newer")


def test_empty_trace_db(tmp_path):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "trace.db").write_bytes(b"")
    assert_clean_failure(replay(tmp_path / "t"), 1, str(tmp_path / "t"))


# Bugs: a corrupt trace that SQLite itself accepts crashes relive with a traceback.
def test_corrupt_event_info_is_a_clean_error(trace_copy):
    db = trace_rows.connect(trace_copy)
    info = db.execute("SELECT info FROM events WHERE seq = 0").fetchone()[0]
    assert b'"file_id"' in info
    db.execute("UPDATE events SET info = ? WHERE seq = 0",
               (info.replace(b'"file_id"', b'"fiLe_id"', 1),))
    db.commit()
    db.close()
    assert_clean_failure(replay(trace_copy), 1, "corrupt")


def test_corrupt_schema_text_is_a_clean_error(trace_copy):
    db = sqlite3.connect(trace_copy / "trace.db")
    db.execute("PRAGMA writable_schema = ON")
    sql = db.execute("SELECT sql FROM sqlite_master WHERE name = 'files'").fetchone()[0]
    db.execute("UPDATE sqlite_master SET sql = CAST(? AS TEXT) WHERE name = 'files'",
               (sql.encode().replace(b"CREATE", b"CR\x8aATE", 1),))
    db.commit()
    db.close()
    for command in (["replay", "-a"], ["info"]):
        assert_clean_failure(run_relive(*command, trace_copy), 1, "corrupt")


def test_trace_missing_its_last_events_is_not_faithful(programs, tmp_path):
    trace = tmp_path / "trace"
    rec = record(trace, programs["pids"])
    assert rec.returncode == 0 and rec.stdout
    db = trace_rows.connect(trace)
    last = db.execute("SELECT max(seq) FROM events").fetchone()[0]
    db.execute("DELETE FROM events WHERE seq >= ?", (last - 2,))  # write, exit_group, EXIT
    db.commit()
    db.close()
    rep = replay(trace)
    assert rep.stdout == rec.stdout or rep.returncode == 1, describe(rep)


def test_events_missing_far_into_a_trace_are_reported_cleanly(programs, tmp_path):
    """Events are read ahead on a thread of their own past the first 4096: a damaged
    stretch there is still one clear message, after the output up to it, not a traceback."""
    trace = tmp_path / "trace"
    rec = record(trace, programs["many_syscalls"], "20000")
    assert rec.returncode == 0, describe(rec)
    db = trace_rows.connect(trace)
    # Unsealed: damage, in a chunk of its own (tests/trace_rows.py), read ahead.
    db.execute("UPDATE events SET result = result + 1 WHERE seq = 15000")
    db.commit()
    db.close()
    rep = replay(trace, timeout=300)
    assert rep.returncode == 1, describe(rep)
    assert b"Traceback" not in rep.stderr, describe(rep)
    assert b"is corrupt: damaged at event 15000 (chunk of events: checksum mismatch)" in \
        rep.stderr, describe(rep)


def test_events_missing_are_reported_before_the_replay(programs, tmp_path):
    """A stretch of events gone (a chunk deleted) is said when the trace opens."""
    trace = tmp_path / "trace"
    rec = record(trace, programs["many_syscalls"], "20000")
    assert rec.returncode == 0, describe(rec)
    db = trace_rows.connect(trace)
    db.execute("DELETE FROM events WHERE seq BETWEEN 15000 AND 15010")
    count = str(int(db.execute("SELECT value FROM meta WHERE key = 'events'").fetchone()[0])
                - 11)
    db.execute("UPDATE meta SET value = ?, crc = ? WHERE key = 'events'",
               (count, row_crc("events", count)))  # hide the count, checksum and all
    db.commit()
    db.close()
    rep = replay(trace, timeout=300)
    assert rep.returncode == 1 and rep.stdout == b"", describe(rep)
    assert b"Traceback" not in rep.stderr, describe(rep)
    assert b"is corrupt: damaged at event 15000 (events 15000..15010 missing)" in rep.stderr, \
        describe(rep)


# -- help, and which trace `replay` picks ------------------------------------------------------
@pytest.mark.parametrize("command", [[], ["record"], ["replay"], ["info"], ["ps"], ["dump"]],
                         ids=["relive", "record", "replay", "info", "ps", "dump"])
def test_help(command):
    proc = run_relive(*command, "--help", text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: relive")
    assert proc.stderr == ""


def test_help_documents_record_exit_statuses():
    out = run_relive("record", "--help", text=True).stdout
    assert "125" in out and "128+N" in out


def test_no_command_is_a_usage_error():
    proc = run_relive(text=True)
    assert proc.returncode == 2
    assert "usage: relive" in proc.stderr and "Traceback" not in proc.stderr


def test_replay_without_any_trace(trace_root):
    for command in (["replay", "-a"], ["info"], ["dump"]):
        proc = run_relive(*command)
        assert_clean_failure(proc, 1, "no trace given", "relive record")
        assert str(trace_root) in proc.stderr.decode()


def test_replay_defaults_to_latest_recording(programs, trace_root):
    first = run_relive("record", programs["hello"], "older")
    second = run_relive("record", programs["exit_status"], "5")
    assert first.returncode == 0 and second.returncode == 5
    rep = run_relive("replay", "-a")
    assert_faithful(second, rep)
    assert b"exiting with 5" in rep.stdout and b"older" not in rep.stdout
    # and again after recording something else
    third = run_relive("record", programs["hello"], "newest")
    rep = run_relive("replay", "--autopilot")
    assert_faithful(third, rep)
    assert b"argv[1]: newest\n" in rep.stdout


def test_latest_pointing_at_deleted_trace(programs, trace_root):
    assert run_relive("record", programs["hello"]).returncode == 0
    shutil.rmtree(trace_root / "hello-0")
    proc = run_relive("replay", "-a")
    assert_clean_failure(proc, 1, "no trace given")



# -- the program's arguments are passed through untouched --------------------------------------
def test_program_options_are_not_taken_by_relive(programs, tmp_path):
    argv = [programs["hello"], "-o", "elsewhere", "--force", "--help", "-a"]
    rec = record(tmp_path / "trace", *argv)
    assert rec.returncode == 0, describe(rec)
    assert rec.stdout == run_native(argv).stdout
    assert not (tmp_path / "elsewhere").exists()


@pytest.mark.parametrize("prefix", [[], ["--"]], ids=["prog---x", "--prog---x"])
def test_double_dash_argument_reaches_the_program(programs, tmp_path, prefix):
    argv = [programs["hello"], "--", "x"]
    rec = run_relive("record", "-o", tmp_path / "trace", *prefix, *argv)
    assert rec.returncode == 0, describe(rec)
    assert rec.stdout == run_native(argv).stdout  # argv[1]: --


# -- replay: where it listens, and ordinary mistakes there -------------------------------------
@pytest.fixture(scope="module")
def true_trace(tmp_path_factory):
    trace = tmp_path_factory.mktemp("true") / "trace"
    proc = record(trace, "true")
    assert proc.returncode == 0, describe(proc)
    return trace


def test_no_room_for_another_process_is_one_line(true_trace, monkeypatch, capsys):
    """A machine out of processes (fork: EAGAIN, as pid_max ran out in a CI run) gets one
    line saying so, not a traceback from wherever the fork was."""
    from relive.cli import main as relive_main

    def refuse() -> int:
        raise BlockingIOError(errno.EAGAIN, os.strerror(errno.EAGAIN))

    monkeypatch.setattr(os, "fork", refuse)
    code = relive_main(["replay", "--autopilot", str(true_trace)])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("relive: the system refused to create another "
                                        "process") and err.count("\n") == 1, err


def _start_replay(*args, **kw):
    """`relive replay ARGS` in its own session (signals go to it alone, or to its group)."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    env.update(kw.pop("env", {}))
    return subprocess.Popen([sys.executable, "-m", "relive", "replay", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            start_new_session=True, **kw)


def _wait_for_line(proc, needle, timeout=60.0):
    """stderr read until a line containing `needle` (or the end)."""
    err = b""
    deadline = time.monotonic() + timeout
    while needle not in err and time.monotonic() < deadline:
        if not select.select([proc.stderr], [], [], 0.2)[0]:
            continue
        chunk = os.read(proc.stderr.fileno(), 4096)
        if not chunk:
            break
        err += chunk
    assert needle in err, err
    return err.decode()


@pytest.mark.parametrize("port", ["70000", "-5", "65536", "http"])
def test_replay_port_out_of_range_is_a_usage_error(true_trace, port):
    proc = run_relive("replay", "--port", port, true_trace, text=True)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"argument --port: '{port}' is not a port number" in proc.stderr, proc.stderr


def test_replay_port_in_use(true_trace):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = run_relive("replay", "--port", port, true_trace)
    assert_clean_failure(proc, 1, f"cannot listen on 127.0.0.1:{port}",
                         "address already in use")
    assert proc.stderr.count(b"\n") == 1, proc.stderr


def test_replay_host_this_machine_does_not_have(true_trace):
    proc = run_relive("replay", "--host", "192.0.2.1", "--allow-remote", "--port", "0",
                      true_trace)
    assert_clean_failure(proc, 1, "cannot listen on 192.0.2.1:0", "no network interface")
    assert b"WARNING" not in proc.stderr  # it did not listen: nothing to warn about
    proc = run_relive("replay", "--host", "no-such-host.invalid", "--port", "0", true_trace)
    assert_clean_failure(proc, 1, "--host no-such-host.invalid")


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.1"])
def test_replay_refuses_a_reachable_host_without_allow_remote(true_trace, host):
    proc = run_relive("replay", "--host", host, "--port", "0", true_trace)
    assert_clean_failure(proc, 1, f"--host {host}", "--allow-remote", "--socket")
    assert proc.stderr.count(b"\n") == 1, proc.stderr


def test_replay_allow_remote_warns_loudly_and_serves(true_trace):
    proc = _start_replay("--host", "0.0.0.0", "--allow-remote", "--port", "0", true_trace)
    try:
        err = _wait_for_line(proc, b"relive: connect with:")
        assert re.search(r"^relive: WARNING: listening on 0\.0\.0\.0:\d+, open to other "
                         r"machines: whoever connects can make the replay run any code",
                         err, re.MULTILINE), err
        port = int(re.search(r"serving .* on 0\.0\.0\.0:(\d+)", err)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10):
            pass
    finally:
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM, rest
    assert b"Traceback" not in rest and b"stopped serving (SIGTERM)" in rest, rest


@requires_gdb
def test_replay_on_a_unix_socket(true_trace, tmp_path):
    """--socket PATH: created 0600, gdb connects with `target remote PATH`, and the socket
    is removed when relive stops; a socket left by a killed relive is taken over."""
    path = tmp_path / "gdb.sock"
    for stop in (signal.SIGKILL, signal.SIGHUP):
        proc = _start_replay("--socket", path, true_trace)
        try:
            err = _wait_for_line(proc, b"relive: connect with:")
            assert f"serving {true_trace} on {path}\n" in err, err
            assert f"target remote {path}" in err, err
            assert stat.S_ISSOCK(path.lstat().st_mode)
            assert stat.S_IMODE(path.lstat().st_mode) == 0o600
            run = gdb_batch("info registers rip", connect=str(path))
            assert re.search(r"^rip\s+0x", run.output, re.MULTILINE), run.output
        finally:
            proc.send_signal(stop)
            proc.communicate(timeout=30)
        assert path.exists() == (stop == signal.SIGKILL)  # (killed: left behind, stale)
    path.write_text("precious")
    proc = run_relive("replay", "--socket", path, true_trace)
    assert_clean_failure(proc, 1, f"cannot listen on {path}", "not a socket")
    assert path.read_text() == "precious"


def test_replay_without_gdb_installed(true_trace, tmp_path):
    proc = run_relive("replay", true_trace, env=dict(os.environ, PATH=str(tmp_path)))
    assert_clean_failure(proc, 1, "gdb is not installed", "--port")
    assert proc.stderr.count(b"\n") == 1, proc.stderr


@requires_gdb
def test_ctrl_c_at_the_gdb_prompt_then_quit(true_trace):
    """Ctrl-C in the terminal reaches relive and gdb alike: at gdb's prompt it is gdb's,
    and quitting gdb afterwards ends relive with gdb's status, quietly (it used to exit 130,
    or with trio >= 0.25 print a BaseExceptionGroup traceback)."""
    proc = _start_replay(true_trace, stdin=subprocess.PIPE,
                         env={"LC_ALL": "C", "DEBUGINFOD_URLS": ""})
    try:
        proc.stdin.write(b"set confirm off\necho READY\\n\n")
        proc.stdin.flush()
        deadline = time.monotonic() + 60
        out = b""
        while b"READY" not in out and time.monotonic() < deadline:
            if select.select([proc.stdout], [], [], 0.2)[0]:
                out += os.read(proc.stdout.fileno(), 4096)
        assert b"READY" in out, out
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        time.sleep(0.5)
        proc.stdin.write(b"info registers rip\nquit\n")
        proc.stdin.flush()
        rest, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 0, err
    assert re.search(rb"\(gdb\) rip\s+0x[0-9a-f]+", rest), out + rest
    assert b"Traceback" not in err and b"relive:" not in err, err


def test_ctrl_c_while_serving_stops_in_one_line(true_trace):
    proc = _start_replay("--port", "0", true_trace)
    try:
        _wait_for_line(proc, b"relive: connect with:")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert err == b"relive: stopped serving (Ctrl-C)\n", err


def test_ctrl_c_during_autopilot_replay(tmp_path):
    """Ctrl-C (SIGINT to the terminal's process group) during `replay -a`: one line saying
    where the replay was, exit 130, the replayed processes gone."""
    trace = tmp_path / "trace"
    rec = record(trace, "sh", "-c", "for i in $(seq 1 30000); do echo $i; done")
    assert rec.returncode == 0, describe(rec)
    proc = _start_replay("--autopilot", trace)
    try:
        first = proc.stdout.read(4096)  # (the replay is under way)
        assert first.startswith(b"1\n2\n"), first
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 130, err
    assert re.fullmatch(rb"relive: replay interrupted \(Ctrl-C\) at event \d+ of \d+\n", err), err
    assert not (first + out).endswith(b"30000\n")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # nothing of the group is left (once reaped)
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("processes of the replayed program outlived relive")
