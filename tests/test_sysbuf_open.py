"""Descriptors made and closed without a ptrace stop (issue 18: find, du, tar): the hook
makes every close (clearing the descriptor's bit in the bitmap first: FD_FREES), fcntl
F_DUPFD/F_GETFD/F_SETFD/F_GETFL of a descriptor that has no bit (FD_CLEAR), openat of a
directory, fchdir, fstatfs, readlink and getxattr (tracee/sysbuf_hook.c,
recorder.sysbuf_fds), and opens of regular files (tests/test_sysbuf_opens_files.py). Opens
that may wait (a FIFO) stay stopped; a number freed and reused without a stop is not taken for
the descriptor recorder.blocking knew there; replay checks and gives back every call."""
from __future__ import annotations

import os
import re
import shutil
import struct
from collections import Counter

import pytest
import trace_rows
from conftest import (assert_diverged_at, assert_faithful, describe, record, replay, reseal,
                      run_native)

from tracee import fastloop, sysbuf
from tracefile.reader import TraceReader
from tracefile.records import Kind

pytestmark = [pytest.mark.skipif(sysbuf.hook() is None or fastloop.load() is None,
                                 reason="the hook or the fast path could not be built"),
              pytest.mark.usefixtures("syscallbuf_on")]
OPEN, CLOSE, FCNTL, FCHDIR, OPENAT = 2, 3, 72, 81, 257
O_DIRECTORY = 0o200000
ROUNDS, FILES = 12, 20
_RDI, _RSI, _RDX = 14, 13, 12  # in user_regs_struct (a SYSCALL event's registers)


def _calls(trace) -> Counter[tuple[Kind, int, str]]:
    """(kind, number, what) -> events: `what` says which openat (dir/other) or fcntl
    command."""
    out: Counter[tuple[Kind, int, str]] = Counter()
    r = TraceReader(trace)
    try:
        for ev in r.events():
            if ev.kind == Kind.BUFFERED:
                args = struct.unpack_from("<6Q", ev.regs)
            elif ev.kind == Kind.SYSCALL and len(ev.regs) >= 8 * (_RDI + 1):
                args = tuple(struct.unpack_from("<Q", ev.regs, 8 * i)[0]
                             for i in (_RDI, _RSI, _RDX))
            else:
                continue
            what = ""
            if ev.nr == OPENAT:
                what = "dir" if args[2] & O_DIRECTORY else "other"
            elif ev.nr == FCNTL:
                what = str(args[1] & 0xFFFF_FFFF)
            out[ev.kind, ev.nr, what] += 1
    finally:
        r.close()
    return out


@pytest.fixture(scope="module")
def walked(programs, tmp_path_factory):
    """dir_fds recorded once (and replayed), with each fast path."""
    out = {}
    for fastpath in ("1", "0"):
        work = tmp_path_factory.mktemp(f"walk{fastpath}")
        tree = work / "tree"
        (tree / "sub").mkdir(parents=True)
        for i in range(FILES):
            (tree / f"f{i}").write_bytes(f"file {i}\n".encode() * (i + 1))
        os.mkfifo(work / "fifo")
        env = dict(os.environ, RELIVE_FASTPATH=fastpath)
        trace = work / "t"
        rec = record(trace, programs["dir_fds"], tree, ROUNDS, work / "fifo", work / "out",
                     env=env, cwd=work, timeout=60)
        out[fastpath] = (trace, rec, work, env)
    return out


@pytest.mark.parametrize("fastpath", ["1", "0"], ids=["compiled-loop", "python-path"])
def test_a_directory_walk_opens_copies_and_closes_without_a_stop(walked, programs, fastpath):
    """Each round's directory opens (its own and open(".")), 3 fcntl, 2 fchdir and every
    close are BUFFERED events; the regular files' opens stop (the recorder sets their
    bits), as do the real opens of the FIFO; the replay prints what the recording did."""
    trace, rec, work, env = walked[fastpath]
    assert rec.returncode == 0, describe(rec)
    native = run_native([programs["dir_fds"], work / "tree", ROUNDS, work / "fifo",
                         work / "native-out"], cwd=work)
    assert rec.stdout == native.stdout, describe(rec)
    got = _calls(trace)
    buffered, stopped = Kind.BUFFERED, Kind.SYSCALL
    assert got[buffered, OPENAT, "dir"] == 2 * ROUNDS + 1, got  # (+ the FIFO's ENOTDIR)
    assert got[stopped, OPENAT, "dir"] == 0, got
    for cmd in ("3", "2", "1030"):  # F_GETFL, F_SETFD, F_DUPFD_CLOEXEC
        assert got[buffered, FCNTL, cmd] == ROUNDS, (cmd, got)
        assert got[stopped, FCNTL, cmd] == 0, (cmd, got)
    assert got[buffered, FCHDIR, ""] == 2 * ROUNDS, got
    assert got[stopped, FCHDIR, ""] == 0, got
    # every round's regular files: opened without a stop too (the hook sets their bits:
    # tests/test_sysbuf_opens_files.py), closed without one (the hook clears the bit)
    assert got[buffered, OPENAT, "other"] >= ROUNDS * FILES, got
    assert got[stopped, OPENAT, "other"] < 20, got
    assert got[buffered, CLOSE, ""] >= (FILES + 3) * ROUNDS, got
    assert got[stopped, CLOSE, ""] < 20, got
    assert_faithful(rec, replay(trace, env=env))


def test_a_fifo_open_that_waits_stays_stopped(walked):
    """openat(FIFO, O_DIRECTORY) fails at once (buffered, ENOTDIR); the two real opens of
    the FIFO, which wait for each other, are stopped calls of two processes."""
    trace, rec, _, _ = walked["1"]
    assert b"fifo as a directory: -1 Not a directory" in rec.stdout, describe(rec)
    assert b"fifo read 17: through the fifo" in rec.stdout, describe(rec)
    r = TraceReader(trace)
    try:
        fifo_opens = [ev for ev in r.events() if ev.nr == OPENAT and ev.result >= 0
                      and ev.kind == Kind.SYSCALL
                      and struct.unpack_from("<Q", ev.regs, 8 * _RDX)[0] & 3 in (0, 1)
                      and not struct.unpack_from("<Q", ev.regs, 8 * _RDX)[0] & O_DIRECTORY]
        enotdir = [ev for ev in r.events() if ev.kind == Kind.BUFFERED and ev.nr == OPENAT
                   and ev.result == -20]
    finally:
        r.close()
    assert len(enotdir) == 1, enotdir
    assert len({ev.tid for ev in fifo_opens}) >= 2  # the reader's and the writer's


@pytest.mark.parametrize("fastpath", ["1", "0"], ids=["compiled-loop", "python-path"])
def test_a_number_freed_without_a_stop_is_not_the_descriptor_it_was(walked, fastpath):
    """/dev/null's number, read (a call that never waits: recorder.blocking caches that),
    closed without a stop, becomes a pipe's copy (F_DUPFD, without a stop) whose read waits
    for the child: the recorder must let the child run (with the stale cache it waited for
    the read's return forever)."""
    trace, rec, _, env = walked[fastpath]
    assert rec.returncode == 0, describe(rec)
    assert b"reused yes: /dev/null read 0, pipe read 4" in rec.stdout, describe(rec)


def test_a_closed_files_number_taken_by_a_pipe_is_read_with_a_stop(walked):
    """A regular file read without a stop and closed without one (the hook clears its bit),
    then a pipe at its number: the pipe's read, which waits for a child, stops (with the
    file's bit left set, the hook would make it: a wait nobody sees)."""
    trace, rec, _, _ = walked["1"]
    m = re.search(rb"file (\d+) read 1, then a pipe at (\d+) read 4", rec.stdout)
    assert m and m.group(1) == m.group(2), describe(rec)
    fd = int(m.group(1))
    r = TraceReader(trace)
    try:
        reads = [(ev.kind, ev.result) for ev in r.events() if ev.nr == 0 and (
            (ev.kind == Kind.BUFFERED and struct.unpack_from("<q", ev.regs)[0] == fd)
            or (ev.kind == Kind.SYSCALL and len(ev.regs) >= 8 * (_RDI + 1)
                and struct.unpack_from("<q", ev.regs, 8 * _RDI)[0] == fd))]
    finally:
        r.close()
    assert (Kind.SYSCALL, 4) in reads, reads
    assert (Kind.BUFFERED, 4) not in reads, reads


def test_closing_relives_stdout_and_reusing_its_number(walked):
    """The program closes its stdout (relive's: a pipe here, no bit) without a stop and opens
    a file that takes number 1: its write there is a file write (buffered), not output."""
    trace, rec, work, env = walked["1"]
    assert (work / "out").read_bytes() == b"after stdout closed\n"
    assert b"got number 1, wrote 20" in rec.stderr, describe(rec)
    got = _calls(trace)
    assert got[Kind.BUFFERED, 1, ""] >= 1, got  # write(1, ...) to the file
    rep = replay(trace, env=env)
    assert_faithful(rec, rep)
    assert b"after stdout closed" not in rep.stdout


def test_a_tampered_buffered_close_diverges_naming_its_event(walked, tmp_path):
    src, _, _, env = walked["1"]
    trace = tmp_path / "t"
    shutil.copytree(src, trace)
    db = trace_rows.connect(trace)
    rows = db.execute("SELECT seq, regs FROM events WHERE kind = ? AND nr = ? ORDER BY seq",
                      (int(Kind.BUFFERED), CLOSE)).fetchall()
    seq, regs = rows[len(rows) // 2]
    args = list(struct.unpack("<7Q", regs))
    args[0] += 7
    db.execute("UPDATE events SET regs = ? WHERE seq = ?", (struct.pack("<7Q", *args), seq))
    reseal(db)
    db.commit()
    db.close()
    rep = replay(trace, env=env)
    err = assert_diverged_at(rep, seq)
    assert re.search(rf"\brdi: recorded {args[0]:#x}, replay {args[0] - 7:#x}\b", err), err


@pytest.mark.skipif(shutil.which("find") is None, reason="no find")
def test_find_walks_a_tree_without_a_stop_per_directory(tmp_path):
    """find (fts) over /usr/lib/python3.11: each directory costs an openat, 4-5 fcntl and
    3-4 closes, none of which stops any more; the replay prints the same list."""
    tree = "/usr/lib/python3.11"
    if not os.path.isdir(tree):
        pytest.skip(f"no {tree}")
    trace = tmp_path / "t"
    rec = record(trace, "find", tree, "-type", "f", "-size", "+20k", timeout=120)
    assert rec.returncode == 0, describe(rec)
    assert rec.stdout == run_native(["find", tree, "-type", "f", "-size", "+20k"]).stdout
    got = _calls(trace)
    dirs = got[Kind.BUFFERED, OPENAT, "dir"]
    assert dirs > 50, got
    assert got[Kind.SYSCALL, OPENAT, "dir"] == 0, got
    assert got[Kind.SYSCALL, FCNTL, "1030"] == 0, got
    assert got[Kind.SYSCALL, CLOSE, ""] < 20, got  # (start-up: the locale's files)
    assert sum(n for (kind, _, _), n in got.items() if kind == Kind.SYSCALL) < 200, got
    assert_faithful(rec, replay(trace))


@pytest.mark.skipif(shutil.which("tar") is None, reason="no tar")
def test_tar_archives_byte_for_byte_with_directories_buffered(tmp_path):
    """tar of a directory tree to relive's stdout: the archive is the native one; every
    close costs no stop (the files' included: the hook clears their bits), nor does any
    open of a file or directory (O_NONBLOCK: the hook decides the file's bit)."""
    tree = "/usr/lib/python3.11"
    if not os.path.isdir(f"{tree}/json"):
        pytest.skip(f"no {tree}/json")
    argv = ["tar", "-cf", "-", "-C", tree, "json", "email"]
    native = run_native(argv)
    trace = tmp_path / "t"
    rec = record(trace, *argv, timeout=120)
    assert rec.returncode == 0, describe(rec)
    assert rec.stdout == native.stdout
    got = _calls(trace)
    opened = got[Kind.BUFFERED, OPENAT, "other"]
    assert opened > 80, got
    assert got[Kind.SYSCALL, OPENAT, "other"] < 30, got  # (start-up: the locale's files)
    assert got[Kind.BUFFERED, CLOSE, ""] >= opened - 20, got  # (start-up: mapped files)
    assert got[Kind.SYSCALL, CLOSE, ""] < 20, got
    assert got[Kind.SYSCALL, OPENAT, "dir"] == 0, got
    assert_faithful(rec, replay(trace))


@pytest.mark.skipif(shutil.which("ls") is None, reason="no ls")
def test_ls_l_reads_links_and_attributes_without_a_stop(tmp_path):
    """ls -lR asks every file's ACL (getxattr, lgetxattr: none here, ENODATA) and every
    link's target (readlink): all without a stop; the listing is the native one."""
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    for i in range(10):
        (tree / f"f{i}").write_text("x" * i)
        (tree / "sub" / f"l{i}").symlink_to(f"../f{i}")
    argv = ["ls", "-lR", "--time-style=+", tree]
    native = run_native(argv)
    trace = tmp_path / "t"
    rec = record(trace, *argv, timeout=120)
    assert rec.returncode == 0, describe(rec)
    assert rec.stdout == native.stdout
    got = _calls(trace)
    readlink, lgetxattr, getxattr = 89, 192, 191
    assert got[Kind.BUFFERED, readlink, ""] >= 10, got
    assert got[Kind.BUFFERED, lgetxattr, ""] + got[Kind.BUFFERED, getxattr, ""] >= 20, got
    for nr in (readlink, lgetxattr, getxattr):
        assert got[Kind.SYSCALL, nr, ""] == 0, (nr, got)
    assert_faithful(rec, replay(trace))
