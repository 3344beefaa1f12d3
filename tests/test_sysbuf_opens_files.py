"""Opens of regular files made by the syscall hook (issue 18: tar's 1,537 opens each
stopped): the hook opens, fstat's and fstatfs's the new descriptor and sets its bit itself
(tracee/sysbuf_hook.c open_file) from buffered results and the watched table the recorder
keeps (recorder.sysbuf_fds table_writes). What must stay as before: a FIFO's open waits
with a stop, /proc/self/status is opened traced (recorder.cpu_view rewrites it), a file
mapped after its open is written with a stop, a vfork child sets no bit, a file that is
relive's stdout is written with a stop (replay shows it); replay checks every call."""
from __future__ import annotations

import os
import re
import shutil
import struct
from pathlib import Path

import pytest
import trace_rows
from conftest import (assert_diverged_at, describe, record, replay, reseal, run_native)

from recorder.sysbuf_fds import PSEUDO_FS
from tracee import fastloop, sysbuf
from tracefile.reader import TraceReader
from tracefile.records import Kind

pytestmark = [pytest.mark.skipif(sysbuf.hook() is None or fastloop.load() is None,
                                 reason="the hook or the fast path could not be built"),
              pytest.mark.usefixtures("syscallbuf_on")]
READ, WRITE, PREAD, PWRITE, OPENAT = 0, 1, 17, 18, 257
TAR_FLAGS = os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC
_RDI, _RSI, _RDX = 14, 13, 12  # in user_regs_struct (a SYSCALL event's registers)


def _fresh(work: Path) -> None:
    """The files open_files reads and changes (m and rw are written to)."""
    tree = work / "tree"
    tree.mkdir(exist_ok=True)
    for i in range(20):
        (tree / f"f{i}").write_bytes(f"file {i}\n".encode() * (i + 1))
    (tree / "rw").write_bytes(b"0123456789abcdef\n")
    (tree / "m").write_bytes(b"m" * 8192)
    if not (work / "fifo").exists():
        os.mkfifo(work / "fifo")


def _events(trace: Path) -> list[tuple[int, int, Kind, int, tuple[int, ...], int]]:
    """(seq, tid, kind, nr, first three arguments, result) of every call."""
    out = []
    r = TraceReader(trace)
    try:
        for ev in r.events():
            if ev.kind == Kind.BUFFERED:
                args = struct.unpack_from("<3Q", ev.regs)
            elif ev.kind == Kind.SYSCALL and len(ev.regs) >= 8 * (_RDI + 1):
                args = tuple(struct.unpack_from("<Q", ev.regs, 8 * i)[0]
                             for i in (_RDI, _RSI, _RDX))
            else:
                continue
            out.append((ev.seq, ev.tid, ev.kind, ev.nr, args, ev.result))
    finally:
        r.close()
    return out


@pytest.fixture(scope="module")
def opened(programs, tmp_path_factory):
    """open_files recorded (relive's stdout a file the program opens too) and replayed,
    with each path: the compiled record loop and Python alone."""
    out = {}
    for fastpath in ("1", "0"):
        work = tmp_path_factory.mktemp(f"open{fastpath}")
        _fresh(work)
        native_out = work / "native.txt"
        with open(native_out, "wb") as f:
            native = run_native([programs["open_files"], "tree", "fifo", native_out],
                                cwd=work, capture_output=False, stdout=f, stderr=-1)
        assert native.returncode == 0
        _fresh(work)
        env = dict(os.environ, RELIVE_FASTPATH=fastpath)
        trace, rec_out = work / "t", work / "out.txt"
        with open(rec_out, "wb") as f:
            rec = record(trace, programs["open_files"], "tree", "fifo", rec_out, env=env,
                         cwd=work, timeout=60, capture_output=False, stdout=f,
                         stderr=-1)
        assert rec.returncode == 0, rec.stderr
        rep = replay(trace, env=env, timeout=60)
        assert rep.returncode == 0, describe(rep)
        out[fastpath] = (trace, native_out.read_bytes(), rec_out.read_bytes(), rep.stdout,
                         env)
    return out


@pytest.mark.parametrize("fastpath", ["1", "0"], ids=["compiled-loop", "python-path"])
def test_regular_files_open_without_a_stop_and_replay_prints_the_same(opened, fastpath):
    """f0..f19 (both ways: with a buffered stat first, and tar's O_NONBLOCK), the missing
    file (both ways) and rw are BUFFERED opens; their reads and rw's pwrite/pread too (the
    hook set their bits); the output is the native one, and replay prints it again."""
    trace, native, recorded, replayed, _ = opened[fastpath]
    assert recorded == native
    assert replayed == recorded
    evs = _events(trace)
    files = [e for e in evs if e[3] == OPENAT and e[2] == Kind.BUFFERED
             and not e[4][2] & os.O_DIRECTORY]
    assert len(files) >= 22, files
    assert sum(1 for e in files if e[4][2] == TAR_FLAGS) >= 10, files
    for flags in (TAR_FLAGS, os.O_RDONLY):  # the missing file (a failed stat first)
        assert any(e[5] == -2 and e[4][2] == flags for e in files), (flags, files)
    for nr in (PWRITE, PREAD):
        assert any(e[3] == nr and e[2] == Kind.BUFFERED for e in evs), nr
    buffered_reads = sum(1 for e in evs if e[3] == READ and e[2] == Kind.BUFFERED)
    assert buffered_reads >= 40, buffered_reads


def test_a_fifo_is_opened_with_a_stop(opened):
    """The FIFO's waiting opens (no O_NONBLOCK) stop in both processes; opened O_NONBLOCK
    the hook makes it, sees a FIFO, closes it and leaves the open traced."""
    trace, _, recorded, _, _ = opened["1"]
    assert b"fifo read 17: through the fifo, nonblocking read 0" in recorded
    evs = _events(trace)
    fifo = [e for e in evs if e[3] == OPENAT and e[2] == Kind.SYSCALL and e[5] >= 0
            and e[4][2] & 3 in (os.O_RDONLY, os.O_WRONLY) and e[4][2] in (0, 1, TAR_FLAGS)]
    assert len({e[1] for e in fifo if e[4][2] != TAR_FLAGS}) == 2, fifo
    assert any(e[4][2] == TAR_FLAGS for e in fifo), fifo


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="one CPU: nothing to rewrite")
def test_proc_self_status_is_still_rewritten(opened):
    """/proc/self/status (proc: a pseudo file system) gets no bit whichever way it is
    opened: its opens stay traced, so the CPU view serves the native Cpus_allowed_list
    (the recorder runs pinned to one CPU)."""
    _, native, recorded, replayed, _ = opened["1"]
    lines = [ln for ln in native.splitlines() if ln.startswith(b"status")]
    assert len(lines) == 2
    for ln in lines:
        assert ln in recorded.splitlines(), (ln, recorded)
        assert ln in replayed.splitlines(), (ln, replayed)


def test_a_file_mapped_after_its_open_is_written_with_a_stop(opened):
    """m opened tar's way (bit set: its read is buffered), then mapped: the recorder clears
    the bit, so the pwrite that changes the mapping stops and replay shows the change."""
    trace, _, recorded, replayed, _ = opened["1"]
    line = b"mapped: read mmmm, then the mapping says XYZmmm"
    assert line in recorded and line in replayed
    evs = _events(trace)
    pwrites = [e for e in evs if e[3] == PWRITE and e[4][2] == 3]
    assert [e[2] for e in pwrites] == [Kind.SYSCALL], pwrites


def test_a_vfork_child_sets_no_bit_for_its_parent(opened):
    """The vfork child (the parent's memory, its own descriptor table) opens f0 at the
    number of the parent's pipe: the open is buffered but sets no bit (getpid is not the
    table's owner), so the parent's read of the pipe, which waits for a child, stops."""
    trace, _, recorded, _, _ = opened["1"]
    m = re.search(rb"vfork: child's file at (\d+), pipe at (\d+) read 4 ping", recorded)
    assert m and m.group(1) == m.group(2), recorded
    fd = int(m.group(1))
    evs = _events(trace)
    parent = evs[0][1]
    child_opens = [e for e in evs if e[3] == OPENAT and e[1] != parent and e[5] == fd
                   and e[4][2] == TAR_FLAGS]
    assert [e[2] for e in child_opens] == [Kind.BUFFERED], child_opens
    after = child_opens[0][0]
    pipe_reads = [e for e in evs if e[3] == READ and e[1] == parent and e[4][0] == fd
                  and e[0] > after and e[5] == 4]
    assert [e[2] for e in pipe_reads] == [Kind.SYSCALL], pipe_reads


@pytest.mark.parametrize("fastpath", ["1", "0"], ids=["compiled-loop", "python-path"])
def test_relives_stdout_file_opened_by_the_program_is_written_with_a_stop(opened,
                                                                           fastpath):
    """relive's stdout is a file the program opens and writes through its own descriptor:
    a watched file (no bit), so the write stops and replay shows it as output."""
    trace, _, recorded, replayed, _ = opened[fastpath]
    assert recorded.endswith(b"through stdout\nthrough another descriptor\n"), recorded
    assert replayed.endswith(b"through stdout\nthrough another descriptor\n"), replayed
    evs = _events(trace)
    writes = [e for e in evs if e[3] == WRITE and e[5] == 27]
    assert [e[2] for e in writes] == [Kind.SYSCALL], writes


def test_a_tampered_buffered_open_diverges_naming_its_event(opened, tmp_path):
    src, _, _, _, env = opened["1"]
    trace = tmp_path / "t"
    shutil.copytree(src, trace)
    db = trace_rows.connect(trace)
    rows = [(seq, regs) for seq, regs in db.execute(
        "SELECT seq, regs FROM events WHERE kind = ? AND nr = ? ORDER BY seq",
        (int(Kind.BUFFERED), OPENAT)).fetchall()
        if struct.unpack_from("<3Q", regs)[2] == TAR_FLAGS]
    seq, regs = rows[len(rows) // 2]
    args = list(struct.unpack("<7Q", regs))
    args[2] ^= os.O_NOFOLLOW
    db.execute("UPDATE events SET regs = ? WHERE seq = ?", (struct.pack("<7Q", *args), seq))
    reseal(db)
    db.commit()
    db.close()
    rep = replay(trace, env=env)
    err = assert_diverged_at(rep, seq)
    assert re.search(rf"\brdx: recorded {args[2]:#x}, replay {TAR_FLAGS:#x}\b", err), err


def test_the_hooks_pseudo_file_systems_are_the_recorders():
    """The hook decides a new descriptor's bit as recorder.sysbuf_fds.plain_file does."""
    src = Path(sysbuf.__file__).with_name("sysbuf_hook.c").read_text()
    body = src[src.index("static int pseudo_fs"):]
    body = body[:body.index("}")]
    assert {int(v, 16) for v in re.findall(r"t == (0x[0-9A-Fa-f]+)", body)} == PSEUDO_FS


@pytest.mark.skipif(shutil.which("tar") is None, reason="no tar")
def test_tar_of_a_tree_stops_at_no_open(tmp_path):
    """tar -cf of /usr/lib/python3.11's json and email: every file's open (O_NONBLOCK) is
    made by the hook; the archive is the native one and replay gives it again."""
    tree = "/usr/lib/python3.11"
    if not os.path.isdir(f"{tree}/email"):
        pytest.skip(f"no {tree}/email")
    argv = ["tar", "-cf", "-", "-C", tree, "json", "email"]
    native = run_native(argv)
    trace = tmp_path / "t"
    rec = record(trace, *argv, timeout=120)
    assert rec.returncode == 0, describe(rec)
    assert rec.stdout == native.stdout
    evs = _events(trace)
    tar_opens = [e for e in evs if e[3] == OPENAT and e[4][2] == TAR_FLAGS]
    assert len(tar_opens) > 60, len(tar_opens)
    assert all(e[2] == Kind.BUFFERED for e in tar_opens), [e for e in tar_opens
                                                           if e[2] != Kind.BUFFERED]
    rep = replay(trace)
    assert rep.returncode == 0, describe(rep)
    assert rep.stdout == rec.stdout
