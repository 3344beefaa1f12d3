"""Traces replay wherever they are kept: on a filesystem mounted noexec, on read-only media,
under a program path that is not UTF-8; and a crafted trace cannot name files outside itself.
The mounts need root (relive's CI and developers run as root); they are undone at the end."""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import trace_rows
import pytest
from conftest import assert_faithful, describe, record, replay, reseal, run_relive
from gdbhelpers import gdb_batch, requires_gdb, serve
from tracefile.errors import TraceError
from tracefile.integrity import row_crc

from debugtarget.trace_files import TraceFiles

__all__ = ["serve"]  # the fixture, imported for pytest
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounting needs root")


def mount(*args: str | Path) -> None:
    proc = subprocess.run(["mount", *map(str, args)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount here: {proc.stderr.strip()}")


@pytest.fixture
def mounts():
    """Mount points to unmount after the test, last first."""
    points: list[Path] = []
    yield points
    for point in reversed(points):
        subprocess.run(["umount", "-l", str(point)], check=False)


@pytest.fixture(scope="module")
def recorded(programs, tmp_path_factory):
    """A single-program trace and one with execs and processes, recorded once."""
    base = tmp_path_factory.mktemp("media")
    out = {}
    for name, argv in (("hello", [programs["hello"], "media"]),
                       ("shell", ["sh", "-c", "echo one; /bin/echo two; seq 3 | sort -r"])):
        rec = record(base / name, *argv)
        assert rec.returncode == 0, describe(rec)
        out[name] = (base / name, rec)
    return out


@needs_root
@pytest.mark.parametrize("name", ["hello", "shell"])
def test_replay_from_a_noexec_filesystem(recorded, tmp_path, mounts, name):
    point = tmp_path / "noexec"
    point.mkdir()
    mount("-t", "tmpfs", "-o", "noexec", "tmpfs", point)
    mounts.append(point)
    trace, rec = recorded[name]
    shutil.copytree(trace, point / name)
    assert_faithful(rec, replay(point / name))


@needs_root
def test_recording_onto_a_noexec_filesystem_replays(programs, tmp_path, mounts):
    point = tmp_path / "noexec"
    point.mkdir()
    mount("-t", "tmpfs", "-o", "noexec", "tmpfs", point)
    mounts.append(point)
    rec = record(point / "t", programs["hello"], "there")
    assert rec.returncode == 0, describe(rec)
    assert_faithful(rec, replay(point / "t"))


@needs_root
def test_complete_trace_on_read_only_media(recorded, tmp_path, mounts):
    trace, rec = recorded["shell"]
    copy = tmp_path / "copy"
    shutil.copytree(trace, copy)
    point = tmp_path / "ro"
    point.mkdir()
    mount("--bind", copy, point)
    mounts.append(point)
    mount("-o", "remount,bind,ro", point)
    with pytest.raises(OSError):
        (point / "probe").touch()  # really read-only
    assert_faithful(rec, replay(point))
    info = run_relive("info", point, text=True)
    assert info.returncode == 0 and "complete: yes" in info.stdout, describe(info)
    assert "corrupt" not in info.stdout + info.stderr


def test_program_path_that_is_not_utf8(programs, tmp_path):
    name = os.fsdecode(b"hel\xfflo")
    program = tmp_path / name
    shutil.copy(programs["hello"], program)
    env = {**os.environ, "LC_ALL": "C.UTF-8", "PYTHONIOENCODING": "utf-8"}
    rec = record(tmp_path / "t", program, os.fsdecode(b"arg\xfe"), env=env)
    assert rec.returncode == 0, describe(rec)
    assert b"argv[1]: arg\xfe\n" in rec.stdout
    assert_faithful(rec, replay(tmp_path / "t", env=env))
    for command in ("info", "ps", "dump"):
        proc = run_relive(command, tmp_path / "t", env=env)
        assert proc.returncode == 0, describe(proc)
        assert b"hel\\xfflo" in proc.stdout, (command, proc.stdout)
    env["RELIVE_TRACE_DIR"] = str(tmp_path / "root")
    assert run_relive("record", program, env=env).returncode == 0
    ls = run_relive("ls", env=env)
    assert ls.returncode == 0 and b"hel\\xfflo-0*" in ls.stdout, describe(ls)


def test_crafted_file_id_cannot_name_a_file_outside_the_trace(recorded, tmp_path):
    trace, _ = recorded["hello"]
    crafted = tmp_path / "crafted"
    shutil.copytree(trace, crafted)
    db = sqlite3.connect(crafted / "trace.db")
    (exe_path,) = db.execute("SELECT path FROM files LIMIT 1").fetchone()
    db.execute("UPDATE files SET id = '../../../../../../../../etc/passwd' WHERE path = ?",
               (exe_path,))
    # A crafted trace carries checksums that match what it says (they guard against
    # damage, not against an author): seal the edit, so the file-id check is what is tested.
    db.executemany("UPDATE files SET crc = ? WHERE id = ?",
                   [(row_crc(*row), row[0])
                    for row in db.execute("SELECT id, path, size FROM files").fetchall()])
    db.commit()
    db.close()
    with pytest.raises(TraceError, match="not a file id"):
        TraceFiles(crafted)  # what gdb's file requests are served from
    # the program's own image, from the first event, likewise
    db = trace_rows.connect(crafted)
    (info,) = db.execute("SELECT info FROM events WHERE seq = 0").fetchone()
    data = json.loads(info)
    data["exe_id"] = "../../../../etc/passwd"
    db.execute("UPDATE events SET info = ? WHERE seq = 0", (json.dumps(data).encode(),))
    reseal(db)
    db.commit()
    db.close()
    proc = run_relive("replay", "-a", crafted, text=True)
    assert proc.returncode == 1 and "not a file id" in proc.stderr, describe(proc)
    assert "Traceback" not in proc.stderr



@requires_gdb
def test_gdb_debugs_a_program_whose_path_is_not_utf8(programs, tmp_path, serve):
    program = tmp_path / os.fsdecode(b"hel\xfflo")
    shutil.copy(programs["hello"], program)
    rec = record(tmp_path / "t", program)
    assert rec.returncode == 0, describe(rec)
    server = serve(tmp_path / "t")
    run = gdb_batch("break main", "continue", "info threads", "next", "continue",
                    connect=server.address)
    assert "Breakpoint 1, main" in run.output, f"{run}\n{server.describe()}"
    assert 'hel\ufffdlo' in run.output or "hel\\377lo" in run.output, str(run)  # its name
    assert "Traceback" not in server.stderr(), server.describe()


@requires_gdb
@needs_root
def test_gdb_on_a_trace_on_a_noexec_filesystem(recorded, tmp_path, mounts, serve):
    point = tmp_path / "noexec"
    point.mkdir()
    mount("-t", "tmpfs", "-o", "noexec", "tmpfs", point)
    mounts.append(point)
    trace, _ = recorded["hello"]
    shutil.copytree(trace, point / "hello")
    server = serve(point / "hello")
    run = gdb_batch("break main", "continue", "next", "reverse-next", "info sharedlibrary",
                    connect=server.address)
    assert "Breakpoint 1, main" in run.output and "libc.so.6" in run.output, \
        f"{run}\n{server.describe()}"
    assert "Traceback" not in server.stderr(), server.describe()


def test_copy_that_cannot_be_executed_is_one_line(recorded, tmp_path):
    """Whatever stops the replay's start (here the trace's copy of the program lost its
    execute bits), it is reported in one line, not a SpawnError traceback."""
    trace, _ = recorded["hello"]
    copy = tmp_path / "copy"
    shutil.copytree(trace, copy)
    for f in (copy / "files").iterdir():
        f.chmod(0o600)
    proc = run_relive("replay", "-a", copy, text=True)
    assert proc.returncode == 1, describe(proc)
    assert proc.stderr.startswith("relive: cannot start the replay") and "Traceback" not in \
        proc.stderr, proc.stderr
