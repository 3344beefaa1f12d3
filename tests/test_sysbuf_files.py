"""Reads and writes of regular files through the in-process syscall buffer (tracee.sysbuf,
recorder.sysbuf_fds): made without a ptrace stop when the recorder knows the descriptor is a
regular file (its bit in the hook's descriptor bitmap), with a stop otherwise (a pipe, which
may block; relive's own stdout, whose writes replay shows). The bitmap follows open, dup2
and close both on the Python path and in the compiled record loop; every recording replays
byte for byte, a short read and EOF included."""
from __future__ import annotations

import os
import struct
import subprocess
from collections import Counter

import pytest
import trace_rows
from conftest import assert_diverged_at, assert_faithful, describe, record, replay, reseal

from tracee import fastloop, sysbuf
from tracefile.integrity import write_crc
from tracefile.reader import TraceReader
from tracefile.records import Kind

ROUNDS = 60
READ, WRITE, PREAD, FTRUNCATE = 0, 1, 17, 77
_RDI = 14  # in user_regs_struct (a SYSCALL event's registers)
pytestmark = pytest.mark.skipif(sysbuf.hook() is None or fastloop.load() is None,
                                reason="the hook or the fast path could not be built (no gcc?)")


def _by_fd(trace) -> Counter[tuple[Kind, int, int]]:
    """(kind, syscall number, descriptor) -> how many BUFFERED and SYSCALL events."""
    r = TraceReader(trace)
    out: Counter[tuple[Kind, int, int]] = Counter()
    try:
        for ev in r.events():
            if ev.kind == Kind.BUFFERED:
                out[ev.kind, ev.nr, struct.unpack_from("<q", ev.regs, 0)[0]] += 1
            elif ev.kind == Kind.SYSCALL and len(ev.regs) >= 8 * (_RDI + 1):
                out[ev.kind, ev.nr, struct.unpack_from("<q", ev.regs, 8 * _RDI)[0]] += 1
    finally:
        r.close()
    return out


def _fds(stdout: bytes) -> tuple[int, int]:
    line = next(x for x in stdout.splitlines() if x.startswith(b"file "))
    _, file, _, pipe = line.split()
    return int(file), int(pipe)


@pytest.mark.parametrize("fastpath", ["1", "0"], ids=["compiled-loop", "python-path"])
def test_file_reads_are_buffered_pipe_reads_are_not(programs, tmp_path, fastpath):
    """Each round reads a pipe and a file: the file's reads and writes (and the short read,
    the read at EOF, and the reads of a file dup2'ed onto the pipe's number) are BUFFERED
    events, the pipe's (and those of a pipe dup2'ed onto the file's number) stopped ones,
    counted exactly; the replay prints the same checksum of every byte read."""
    env = dict(os.environ, RELIVE_SYSCALLBUF="1", RELIVE_FASTPATH=fastpath)
    work = tmp_path / "work"
    work.mkdir()
    trace = tmp_path / "t"
    rec = record(trace, programs["file_pipe_reads"], work, ROUNDS, env=env)
    assert rec.returncode == 0, describe(rec)
    assert b"short read 30, at the end 0" in rec.stdout, rec.stdout
    file, pipe = _fds(rec.stdout)
    got = _by_fd(trace)
    buffered, stopped = Kind.BUFFERED, Kind.SYSCALL
    # the file: ROUNDS reads, the short one, the one at EOF; then a pipe on its number
    assert got[buffered, READ, file] == ROUNDS + 2, got
    assert got[stopped, READ, file] == ROUNDS, got
    assert got[buffered, WRITE, file] == ROUNDS, got
    assert got[stopped, WRITE, file] == 0, got
    assert got[buffered, PREAD, file] == ROUNDS, got
    # the pipe: ROUNDS reads stopped; then the file dup2'ed onto its number: buffered
    assert got[stopped, READ, pipe] == ROUNDS, got
    assert got[buffered, READ, pipe] == ROUNDS, got
    assert_faithful(rec, replay(trace, env=env))


def test_writes_to_relives_own_stdout_file_stay_shown(programs, tmp_path):
    """relive's stdout is a regular file here: the program's writes to it are not buffered
    (replay shows them as output), whatever the file's type."""
    env = dict(os.environ, RELIVE_SYSCALLBUF="1")
    work = tmp_path / "work"
    work.mkdir()
    trace = tmp_path / "t"
    out = tmp_path / "out.txt"
    with open(out, "wb") as f:
        rec = record(trace, programs["file_pipe_reads"], work, 5, env=env, stdout=f,
                     stderr=subprocess.PIPE, capture_output=False)
    assert rec.returncode == 0, describe(rec)
    assert b"checksum" in out.read_bytes()
    got = _by_fd(trace)
    assert not any(kind == Kind.BUFFERED and nr == WRITE and fd in (1, 2)
                   for kind, nr, fd in got), got
    rep = replay(trace, env=env)
    assert rep.returncode == 0, describe(rep)
    assert rep.stdout == out.read_bytes()


def test_a_buffered_read_replays_the_recorded_bytes_not_the_file(programs, tmp_path):
    """Replay gives back the bytes recorded, not what the file holds now (it is gone)."""
    env = dict(os.environ, RELIVE_SYSCALLBUF="1")
    work = tmp_path / "work"
    work.mkdir()
    trace = tmp_path / "t"
    rec = record(trace, programs["file_pipe_reads"], work, 20, env=env)
    assert rec.returncode == 0, describe(rec)
    assert not (work / "data").exists()  # (the program unlinks it)
    (work / "data").write_bytes(b"x" * 4000)  # another file of that name: not read
    assert_faithful(rec, replay(trace, env=env))


def test_a_vfork_childs_descriptors_set_no_bit(programs, tmp_path):
    """posix_spawn's child shares the parent's memory (the bitmap) but not its descriptor
    table: it opens a regular file at 30, where the parent has a pipe. The parent's reads of
    its pipe at 30 afterwards must still stop (a bit set for the child's file would have the
    hook make them: a read that may block)."""
    env = dict(os.environ, RELIVE_SYSCALLBUF="1")
    work = tmp_path / "work"
    work.mkdir()
    trace = tmp_path / "t"
    rec = record(trace, programs["spawn_fd_reuse"], work, ROUNDS, env=env)
    assert rec.returncode == 0, describe(rec)
    got = _by_fd(trace)
    assert got[Kind.BUFFERED, READ, 30] == 0, got
    assert got[Kind.SYSCALL, READ, 30] == ROUNDS, got
    assert_faithful(rec, replay(trace, env=env))


def test_a_spawning_parents_files_are_buffered_again_once_the_child_execs(tmp_path):
    """Python's subprocess spawns with vfork, and its child closes every descriptor above 2
    before exec: in the shared bitmap that cleared the parent's bits too, so from the first
    spawn on every read of the parent's files stopped (pytest's capture files: ~10 stops a
    test). Once the child has exec'd, the parent's bits are set again, at the next syscall
    event the recorder makes in Python (the compiled loop may make a few first)."""
    script = tmp_path / "spawn_then_read.py"
    script.write_text(
        "import os, subprocess, sys\n"
        "fd = os.open(sys.argv[1], os.O_RDONLY)\n"
        "subprocess.run(['true'], check=True)\n"
        "print(fd, sum(len(os.pread(fd, 64, i)) for i in range(300)))\n")
    data = tmp_path / "data"
    data.write_bytes(os.urandom(4096))
    env = dict(os.environ, RELIVE_SYSCALLBUF="1")
    trace = tmp_path / "t"
    rec = record(trace, "python3", script, data, env=env)
    assert rec.returncode == 0, describe(rec)
    fd = int(rec.stdout.split()[0])
    got = _by_fd(trace)
    assert got[Kind.BUFFERED, PREAD, fd] >= 250, got
    assert_faithful(rec, replay(trace, env=env))


def test_ftruncate_of_a_file_is_buffered_and_of_a_mapped_file_traced(tmp_path):
    """pytest empties its capture files with ftruncate after every test: on a regular
    file's descriptor it is made by the hook. Once the file is mapped (its bit cleared) it
    stops again, and the mapping shows the cut as in the recording."""
    script = tmp_path / "truncates.py"
    script.write_text(
        "import mmap, os, sys\n"
        "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)\n"
        f"for i in range({ROUNDS}):\n"
        "    os.pwrite(fd, b'x' * (i + 1), 0)\n"
        "    os.ftruncate(fd, i // 2)\n"
        "os.ftruncate(fd, 8192)\n"
        "m = mmap.mmap(fd, 8192)\n"
        "os.pwrite(fd, b'mapped', 4096)\n"
        "os.ftruncate(fd, 4100)\n"
        "print(fd, os.fstat(fd).st_size, m[4096:4100])\n")
    env = dict(os.environ, RELIVE_SYSCALLBUF="1")
    trace = tmp_path / "t"
    rec = record(trace, "python3", script, tmp_path / "data", env=env)
    assert rec.returncode == 0, describe(rec)
    fd = int(rec.stdout.split()[0])
    got = _by_fd(trace)
    assert got[Kind.BUFFERED, FTRUNCATE, fd] == ROUNDS + 1, got
    assert got[Kind.SYSCALL, FTRUNCATE, fd] == 1, got
    assert rec.stdout.split()[1:] == [b"4100", b"b'mapp'"], describe(rec)
    assert_faithful(rec, replay(trace, env=env))


def test_a_lost_bitmap_change_diverges_at_the_call_it_decides(programs, tmp_path):
    """Every change of the bitmap is a write of the event of the call that made it: a trace
    whose last change before the file's first buffered call lost the file's bit replays
    with the bit clear, so the hook takes the traced path where the recording buffered the
    call: a divergence reported at that call's event, not a silent one."""
    work = tmp_path / "work"
    work.mkdir()
    trace = tmp_path / "t"
    env = dict(os.environ, RELIVE_SYSCALLBUF="1")
    rec = record(trace, programs["file_pipe_reads"], work, 10, env=env)
    assert rec.returncode == 0, describe(rec)
    file, _ = _fds(rec.stdout)
    bitmap = sysbuf.FDS
    db = trace_rows.connect(trace)
    buffered = db.execute("SELECT seq, regs FROM events WHERE kind = ? ORDER BY seq",
                          (int(Kind.BUFFERED),)).fetchall()
    first_seq = next(s for s, regs in buffered if struct.unpack_from("<q", regs)[0] == file)
    # the last change of the file's word before that call (its bit set: the call buffered)
    seq, order, addr, size, conservative, packed, data = db.execute(
        "SELECT seq, ord, addr, size, conservative, zstd, data FROM writes "
        "WHERE addr = ? AND seq < ? ORDER BY seq DESC LIMIT 1",
        (sysbuf.fd_word(file), first_seq)).fetchone()
    assert not packed and int.from_bytes(data, "little") >> file % 64 & 1, data
    assert bitmap <= addr < bitmap + sysbuf.FDS_MAX // 8
    lost = (int.from_bytes(data, "little") & ~(1 << file % 64)).to_bytes(8, "little")
    db.execute("UPDATE writes SET data = ?, crc = ? WHERE seq = ? AND ord = ?",
               (lost, write_crc(seq, order, addr, size, conservative, 0, lost), seq, order))
    reseal(db)
    db.commit()
    db.close()
    rep = replay(trace, env=env)
    assert_diverged_at(rep, first_seq)
