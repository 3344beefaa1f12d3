"""Tamper with a recorded trace and check the replay notices: `relive replay --autopilot`
exits 1 and names the event, the register and both values; in-process, ReplaySession raises
ReplayDivergence carrying the event number."""
from __future__ import annotations

import os
import re
import sqlite3
import struct

import trace_rows
import pytest
from conftest import RDI, assert_faithful, describe, record, replay, reseal, set_rdi

from replayer.errors import ReplayDivergence
from replayer.session import ReplaySession
from tracee.ptrace_api import REG_NAMES, REGS_SIZE
from tracefile.records import Kind

NR = {"write": 1, "lseek": 8, "getpid": 39, "getppid": 110}


def test_register_layout_is_user_regs_struct():
    assert REGS_SIZE == 216
    assert REG_NAMES[RDI] == "rdi" and REG_NAMES[15] == "orig_rax"


@pytest.fixture(scope="module")
def recorded(programs, tmp_path_factory):
    """{name: (trace, CompletedProcess)} for file_io and pids, recorded once. Without the
    in-process buffer (RELIVE_SYSCALLBUF=seccomp): these tests tamper with the register
    files of stopped calls (lseek, getpid); tests/test_syscallbuf.py tampers with buffered
    ones."""
    base = tmp_path_factory.mktemp("divergence")
    work = base / "work"
    work.mkdir()
    out = {}
    for name, args in (("file_io", [work]), ("pids", [])):
        proc = record(base / name, programs[name], *args,
                      env=dict(os.environ, RELIVE_SYSCALLBUF="seccomp"))
        assert proc.returncode == 0, describe(proc)
        out[name] = (base / name, proc)
    return out


class Db:
    def __init__(self, trace):
        self.db = trace_rows.connect(trace)

    def syscalls(self, nr):
        """[(seq, regs)] of the SYSCALL events making syscall `nr`, in order."""
        return self.db.execute("SELECT seq, regs FROM events WHERE kind = ? AND nr = ? "
                               "ORDER BY seq", (int(Kind.SYSCALL), nr)).fetchall()

    def event_count(self):
        return self.db.execute("SELECT count(*) FROM events").fetchone()[0]

    def set(self, seq, **values):
        for column, value in values.items():
            self.db.execute(f"UPDATE events SET {column} = ? WHERE seq = ?", (value, seq))
        reseal(self.db)
        self.db.commit()

    def close(self):
        self.db.close()


def first_lseek(trace):
    """The file_io program's lseek(fd, 5, SEEK_SET), mid-trace, with rdi tampered 3 -> 4."""
    db = Db(trace)
    seq, regs = db.syscalls(NR["lseek"])[0]
    assert 10 < seq < db.event_count() - 5  # mid-trace
    old, new_regs = set_rdi(regs, 4)
    assert old == 3
    db.set(seq, regs=new_regs)
    db.close()
    return seq


def assert_diverged(rep, rec, seq):
    err = rep.stderr.decode(errors="replace")
    assert rep.returncode == 1, describe(rep)
    assert "Traceback" not in err, err
    assert re.search(rf"diverged at event {seq}\b", err), err
    # the replay never prints what the recording did not
    assert rec.stdout.startswith(rep.stdout)
    return err


def test_untampered_copy_replays(copy_of):
    trace, rec = copy_of("file_io")
    assert_faithful(rec, replay(trace))


def test_changed_rdi_is_reported_with_both_values(copy_of):
    trace, rec = copy_of("file_io")
    seq = first_lseek(trace)
    err = assert_diverged(replay(trace), rec, seq)
    assert "lseek" in err
    assert re.search(r"\brdi: recorded 0x4, replay 0x3\b", err), err


def test_changed_write_result_changes_control_flow(copy_of):
    """file_io checks write()'s result; recording a short write sends the replayed program
    down its error path, so its next syscall is not the recorded lseek."""
    trace, rec = copy_of("file_io")
    db = Db(trace)
    writes = [(s, r) for s, r in db.syscalls(NR["write"])
              if struct.unpack_from("<Q", r, 8 * RDI)[0] == 3]  # write(3, msg, 20)
    assert len(writes) == 1
    seq = writes[0][0]
    db.set(seq, result=5)
    following = db.db.execute("SELECT nr FROM events WHERE seq = ?", (seq + 1,)).fetchone()[0]
    db.close()
    assert following == NR["lseek"]
    rep = replay(trace)
    err = assert_diverged(rep, rec, seq + 1)
    assert "expected syscall lseek" in err
    assert b"contents(" not in rep.stdout


def test_changed_syscall_number_is_reported(copy_of):
    trace, rec = copy_of("pids")
    db = Db(trace)
    [(seq, _)] = db.syscalls(NR["getpid"])
    db.set(seq, nr=NR["getppid"])
    db.close()
    rep = replay(trace)
    err = assert_diverged(rep, rec, seq)
    assert "expected syscall getppid, replay made getpid" in err
    assert b"pid: " not in rep.stdout


def test_changed_exit_status_is_reported(copy_of):
    trace, rec = copy_of("pids")
    db = Db(trace)
    last = db.event_count() - 1
    kind, result = db.db.execute("SELECT kind, result FROM events WHERE seq = ?",
                                 (last,)).fetchone()
    assert (kind, result) == (int(Kind.EXIT), 0)
    db.set(last, result=3 << 8)
    db.close()
    rep = replay(trace)
    err = assert_diverged(rep, rec, last)
    assert "exit status" in err
    assert rep.stdout == rec.stdout  # everything before the end replayed


# -- in process ---------------------------------------------------------------------------------
def test_session_replays_faithfully_in_process(copy_of):
    trace, rec = copy_of("pids")
    out = []
    session = ReplaySession(trace, output=lambda fd, data: out.append((fd, data)))
    try:
        session.run()
    finally:
        session.close()
    assert b"".join(d for fd, d in out if fd == 1) == rec.stdout
    assert session.exit_status == 0


def test_session_raises_divergence_with_event_number(copy_of):
    trace, _ = copy_of("file_io")
    seq = first_lseek(trace)
    session = ReplaySession(trace, output=lambda fd, data: None)
    try:
        with pytest.raises(ReplayDivergence) as info:
            session.run()
    finally:
        session.close()
    div = info.value
    assert div.event == seq
    assert div.diff.get("rdi") == (4, 3)
    db = sqlite3.connect(trace / "trace.db")
    [(tid,)] = db.execute("SELECT tid FROM tasks").fetchall()
    db.close()
    assert div.tid == tid
    assert f"event {seq} (thread {tid})" in str(div)
